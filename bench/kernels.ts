/**
 * Kernel benchmark: prints one table of GFLOP/s (and effective GB/s of weights read for the
 * fused dequant kernels) for the `wasm-simd` kernels next to the plain-TS reference, with their
 * ratio, all measured in the same run. Medians of repeated timings after a warm-up.
 *
 * Usage: `deno run --allow-read bench/kernels.ts [--quick] [--best]` (`--quick`: fewer
 * repetitions; `--best`: fastest run instead of the median, the uncontended speed on a shared
 * machine). The reference is timed on fewer tokens where it would take minutes; its rate is
 * per FLOP, so the ratio stays meaningful.
 *
 * @module
 */

import { quantizeMatrix } from "../core/quantizer.ts";
import { attentionRef, matmulPackedRef, matmulRef } from "../kernels/ref/mod.ts";
import { wasmKernels } from "../kernels/wasm/mod.ts";
import { randomFloats } from "../kernels/wasm/test_util.ts";

/** One benchmark row. */
export interface KernelCase {
  readonly name: string;
  /** Tokens, output rows, input columns. */
  readonly m: number;
  readonly n: number;
  readonly k: number;
  /** Fused dequant over packed codes of this many bits (absent: f32 weights). */
  readonly bits?: number;
  /** Tokens to time the (slow) reference on; its rate is scaled per FLOP. */
  readonly refM?: number;
}

/** The shapes of issue 3. */
export const CASES: readonly KernelCase[] = [
  { name: "GEMM", m: 512, n: 768, k: 768, refM: 64 },
  { name: "GEMM", m: 128, n: 4096, k: 4096, refM: 4 },
  { name: "GEMV", m: 1, n: 4096, k: 4096 },
  { name: "dequant-GEMV 4-bit g128", m: 1, n: 4096, k: 4096, bits: 4 },
  { name: "dequant-GEMV 2-bit g128", m: 1, n: 4096, k: 4096, bits: 2 },
  { name: "dequant-GEMM 4-bit g128", m: 128, n: 4096, k: 4096, bits: 4, refM: 2 },
];

/**
 * Median seconds of `fn` over `reps` runs, stopping early after `budget` s. Warm-up: at least
 * two calls and `warmup` seconds, so V8 has tiered WASM up from Liftoff to TurboFan (tier-up
 * happens between calls, never inside a running one).
 */
export function timeMedian(
  fn: () => void,
  reps: number,
  budget = 5,
  warmup = 0.5,
  best = false,
): number {
  const w0 = performance.now();
  for (let i = 0; i < 2 || (performance.now() - w0) / 1000 < warmup; i++) fn();
  const t: number[] = [];
  const start = performance.now();
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    fn();
    t.push((performance.now() - t0) / 1000);
    if ((performance.now() - start) / 1000 > budget && t.length >= 3) break;
  }
  t.sort((a, b) => a - b);
  return best ? t[0]! : t[Math.floor(t.length / 2)]!;
}

async function main(): Promise<void> {
  const quick = Deno.args.includes("--quick");
  const reps = quick ? 5 : 21;
  const best = Deno.args.includes("--best");
  const time = (fn: () => void) => timeMedian(fn, reps, 5, 0.5, best);
  const kernels = await wasmKernels();
  const fmaKernels = await wasmKernels({ fma: true });
  const rows: string[][] = [[
    "kernel",
    "M×N×K",
    `${kernels.id} GFLOP/s`,
    `${fmaKernels.id} GFLOP/s`,
    "ts-ref GFLOP/s",
    "simd/ref",
    "fma/ref",
    "GB/s of weights (simd, fma)",
  ]];
  for (const c of CASES) {
    const flops = 2 * c.m * c.n * c.k;
    const x = randomFloats(c.m * c.k, 1);
    const out = new Float32Array(c.m * c.n);
    const wdata = randomFloats(c.n * c.k, 2);
    const refM = Math.min(c.refM ?? c.m, c.m);
    const refFlops = 2 * refM * c.n * c.k;
    let wasmS: number, fmaS: number, refS: number, bytes: number;
    if (c.bits === undefined) {
      const w = { rows: c.n, cols: c.k, data: wdata };
      wasmS = time(() => kernels.matmul(x, c.m, w, out));
      fmaS = time(() => fmaKernels.matmul(x, c.m, w, out));
      refS = timeMedian(() => matmulRef(x, refM, w, out), quick ? 1 : 3, 5, 0, best);
      bytes = c.n * c.k * 4;
    } else {
      const spec = {
        bits: c.bits,
        granularity: "group" as const,
        groupSize: 128,
        symmetric: false,
      };
      const { packed } = quantizeMatrix(wdata, c.n, c.k, spec);
      wasmS = time(() => kernels.matmulPacked(x, c.m, packed, out));
      fmaS = time(() => fmaKernels.matmulPacked(x, c.m, packed, out));
      refS = timeMedian(() => matmulPackedRef(x, refM, packed, out), quick ? 1 : 3, 5, 0, best);
      bytes = packed.words.byteLength + packed.scales.byteLength + packed.zeros.byteLength;
    }
    const wasmG = flops / wasmS / 1e9;
    const fmaG = flops / fmaS / 1e9;
    const refG = refFlops / refS / 1e9;
    rows.push([
      c.name,
      `${c.m}×${c.n}×${c.k}`,
      wasmG.toFixed(2),
      fmaG.toFixed(2),
      refG.toFixed(3),
      `${(wasmG / refG).toFixed(1)}×`,
      `${(fmaG / refG).toFixed(1)}×`,
      c.m === 1 ? `${(bytes / wasmS / 1e9).toFixed(2)}, ${(bytes / fmaS / 1e9).toFixed(2)}` : "-",
    ]);
  }
  // Attention of stories260K's shape over a 256-token window (8 heads, 4 KV heads, head 8).
  {
    const shape = { nHeads: 8, nKvHeads: 4, headDim: 8 };
    const T = 256, qDim = 64, kvDim = 32;
    const q = randomFloats(T * qDim, 5), k = randomFloats(T * kvDim, 6);
    const v = randomFloats(T * kvDim, 7), out = new Float32Array(T * qDim);
    // q·k and p·v: 2 · 2 · headDim FLOPs per (query, key, head) pair, T(T+1)/2 pairs per head.
    const flops = 4 * shape.headDim * shape.nHeads * (T * (T + 1)) / 2;
    const wasmS = time(() => kernels.attention(q, k, v, T, 0, shape, out));
    const fmaS = time(() => fmaKernels.attention(q, k, v, T, 0, shape, out));
    const refS = timeMedian(() => attentionRef(q, k, v, T, 0, shape, out), 5, 5, 0, best);
    rows.push([
      "attention (stories260K)",
      `T ${T}, 8/4 heads × 8`,
      (flops / wasmS / 1e9).toFixed(2),
      (flops / fmaS / 1e9).toFixed(2),
      (flops / refS / 1e9).toFixed(3),
      `${(refS / wasmS).toFixed(1)}×`,
      `${(refS / fmaS).toFixed(1)}×`,
      "-",
    ]);
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  for (const r of rows) console.log(r.map((v, i) => v.padEnd(widths[i]!)).join("  "));
}

if (import.meta.main) await main();
