/**
 * GPTQ on one linear layer, ours next to NumPy float64 (OpenBLAS) on the same data in the same
 * run: the real-scale issue's yardstick (Hessian from 65,536 tokens, inverse factor, sweep).
 *
 * Data: activations `x = z + A f` (`z ~ N(0, I)`, 8 shared factors, loadings `N(0, 0.3²)`) and
 * weights `N(0, 0.02²)`, seeded. Ours, as the GPTQ method runs it: the Hessian summed from
 * float32 Gram matrices (their lower triangles) of windows of 2048 tokens through the kernels'
 * `matmul` into float64 (`methods/calibration/gram.ts`), then `gptqQuantizeLayer` on the kernels' float64
 * products (its factor also timed alone; the sweep is the layer call minus that). NumPy:
 * `bench/gptq_numpy.py` (float64 `XᵀX`; LAPACK `potrf`, `potri`, `potrf` as torch's cholesky,
 * cholesky_inverse, cholesky(upper); GPTQ's lazy-batch loop) with OpenBLAS on the
 * same number of threads. 4 bits, asymmetric, groups of 128, block 128, percdamp 0.01.
 *
 * Usage: `deno run -A bench/gptq_numpy.ts [--n 4096] [--rows 4096] [--tokens 65536]
 * [--threads 2] [--python python3] [--quick]` (`--quick`: 512 columns, 4096 tokens). Prints
 * seconds per phase, the ratio ours / NumPy, and the fraction of identical codes (the two
 * differ only in float64 summation order, so nearly all codes agree).
 *
 * @module
 */

import { parseArgs } from "node:util";
import { wasmKernels } from "../kernels/wasm/mod.ts";
import type { Kernels } from "../kernels/types.ts";
import { gptqQuantizeLayer, upperCholeskyOfInverse } from "../methods/gptq_core.ts";
import { unpackCodes } from "../core/quantizer.ts";
import { SeededRng } from "../core/rng.ts";
import { accumulate, complete, newAccumulator } from "../methods/calibration/gram.ts";

/** Seconds per phase of one side. */
export interface GptqPhases {
  readonly hessian: number;
  readonly prep: number;
  readonly sweep: number;
}

/** A float32 `.npy` (format 1.0, C order) of a `[rows][cols]` array. */
export function npyF32(data: Float32Array, rows: number, cols: number): Uint8Array {
  let header = `{'descr': '<f4', 'fortran_order': False, 'shape': (${rows}, ${cols}), }`;
  const total = Math.ceil((10 + header.length + 1) / 64) * 64;
  header = header.padEnd(total - 10 - 1, " ") + "\n";
  const out = new Uint8Array(total + data.byteLength);
  out.set([
    0x93,
    ...new TextEncoder().encode("NUMPY"),
    1,
    0,
    header.length & 255,
    header.length >> 8,
  ]);
  out.set(new TextEncoder().encode(header), 10);
  out.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), total);
  return out;
}

function normals(rng: SeededRng, n: number, std: number): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i += 2) {
    const r = Math.sqrt(-2 * Math.log(1 - rng.float64())) * std;
    const th = 2 * Math.PI * rng.float64();
    out[i] = r * Math.cos(th);
    if (i + 1 < n) out[i + 1] = r * Math.sin(th);
  }
  return out;
}

/** Activations `[tokens][n]`: noise plus 8 shared factors. */
function activations(rng: SeededRng, tokens: number, n: number): Float32Array {
  const F = 8;
  const loadings = normals(rng, n * F, 0.3);
  const x = normals(rng, tokens * n, 1);
  const f = normals(rng, tokens * F, 1);
  for (let t = 0; t < tokens; t++) {
    for (let i = 0; i < n; i++) {
      let s = 0;
      for (let k = 0; k < F; k++) s += loadings[i * F + k]! * f[t * F + k]!;
      x[t * n + i] = x[t * n + i]! + s;
    }
  }
  return x;
}

/** `Σ x xᵀ` over windows of 2048 tokens, as calibration accumulates it (`methods/calibration/gram.ts`). */
function gram(kernels: Kernels, x: Float32Array, tokens: number, n: number): Float64Array {
  const acc = newAccumulator(n);
  for (let t0 = 0; t0 < tokens; t0 += 2048) {
    const c = Math.min(2048, tokens - t0);
    accumulate(acc, x.subarray(t0 * n, (t0 + c) * n), c, kernels);
  }
  complete(acc);
  return acc.gram;
}

function seconds(f: () => void): number {
  const t0 = performance.now();
  f();
  return (performance.now() - t0) / 1000;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      n: { type: "string", default: "4096" },
      rows: { type: "string", default: "4096" },
      tokens: { type: "string", default: "65536" },
      threads: { type: "string", default: "2" },
      python: { type: "string", default: "python3" },
      quick: { type: "boolean", default: false },
    },
  });
  const quick = values.quick;
  const n = quick ? 512 : Number(values.n);
  const rows = quick ? 512 : Number(values.rows);
  const tokens = quick ? 4096 : Number(values.tokens);
  const threads = Number(values.threads);
  for (const [k, v] of Object.entries({ n, rows, tokens, threads })) {
    if (!Number.isInteger(v) || v < 1) {
      console.error(`gptq_numpy: --${k} must be a positive integer, got ${v}`);
      Deno.exit(2);
    }
  }
  const rng = new SeededRng(1);
  const x = activations(rng, tokens, n);
  const w = normals(rng, rows * n, 0.02);
  const dir = await Deno.makeTempDir({ prefix: "gptq_numpy" });
  try {
    await Deno.writeFile(`${dir}/x.npy`, npyF32(x, tokens, n));
    await Deno.writeFile(`${dir}/w.npy`, npyF32(w, rows, n));
    console.log(
      `GPTQ W4 g128 on ${rows}×${n}, Hessian from ${tokens} tokens, ${threads} thread(s); ` +
        `load average ${Deno.loadavg().map((v) => v.toFixed(2)).join(" ")}`,
    );
    const kernels = threads > 1 ? await wasmKernels({ threads }) : await wasmKernels();
    let h: Float64Array = new Float64Array(0);
    const tH = seconds(() => (h = gram(kernels, x, tokens, n)));
    const hs = 2 / tokens;
    const damped = Float64Array.from(h, (v) => v * hs);
    let mean = 0;
    for (let i = 0; i < n; i++) mean += damped[i * n + i]!;
    for (let i = 0; i < n; i++) damped[i * n + i] = damped[i * n + i]! + 0.01 * (mean / n);
    const tPrep = seconds(() => upperCholeskyOfInverse(damped, n, kernels.f64));
    let codes: Uint8Array = new Uint8Array(0);
    const tLayer = seconds(() => {
      const r = gptqQuantizeLayer(w, rows, n, h, {
        bits: 4,
        groupSize: 128,
        symmetric: false,
        percdamp: 0.01,
        blockSize: 128,
        actOrder: false,
        groupParams: "reference",
        mse: false,
        hessianScale: hs,
        f64: kernels.f64,
      });
      codes = unpackCodes(r.packed);
    });
    kernels.close();
    const ours: GptqPhases = { hessian: tH, prep: tPrep, sweep: tLayer - tPrep };
    const py = new Deno.Command(values.python, {
      args: [new URL("./gptq_numpy.py", import.meta.url).pathname, dir, "4", "128"],
      env: { OPENBLAS_NUM_THREADS: String(threads), OMP_NUM_THREADS: String(threads) },
      stderr: "inherit",
    });
    const res = await py.output();
    if (!res.success) throw new Error(`gptq_numpy: ${values.python} failed`);
    const numpy = JSON.parse(new TextDecoder().decode(res.stdout)) as GptqPhases & {
      lapack: string;
    };
    const theirs = await Deno.readFile(`${dir}/codes_numpy.npy`);
    const off = theirs.length - rows * n;
    let same = 0;
    for (let i = 0; i < codes.length; i++) if (codes[i] === theirs[off + i]) same++;
    const row = (name: string, a: number, b: number) =>
      console.log(
        `| ${name.padEnd(14)} | ${a.toFixed(2).padStart(8)} | ${b.toFixed(2).padStart(8)} | ${
          (a / b).toFixed(2).padStart(6)
        } |`,
      );
    console.log("| phase          |  ours, s | NumPy, s |  ratio |");
    console.log("| -------------- | -------: | -------: | -----: |");
    row("Hessian", ours.hessian, numpy.hessian);
    row("inverse factor", ours.prep, numpy.prep);
    row("sweep", ours.sweep, numpy.sweep);
    const sum = (p: GptqPhases) => p.hessian + p.prep + p.sweep;
    row("total", sum(ours), sum(numpy));
    console.log(`identical codes: ${(same / codes.length * 100).toFixed(4)} %`);
    console.log(`NumPy's inverse factor: ${numpy.lapack}`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

if (import.meta.main) await main();
