/**
 * Kernel benchmark: prints one table of GFLOP/s (and effective GB/s of weights read for the
 * fused dequant kernels) for the `wasm-simd` kernels next to the plain-TS reference, with their
 * ratio, all measured in the same run. Medians of repeated timings after a warm-up.
 *
 * Usage: `deno run --allow-read bench/kernels.ts [--quick]` (`--quick`: fewer repetitions, and
 * the reference measured on fewer tokens where it would take minutes; its rate is per FLOP, so
 * the ratio stays meaningful).
 *
 * @module
 */

import { quantizeMatrix } from "../core/quantizer.ts";
import { matmulPackedRef, matmulRef } from "../kernels/ref/mod.ts";
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
];

/** Median seconds of `fn` over `reps` runs after one warm-up, stopping early after `budget` s. */
export function timeMedian(fn: () => void, reps: number, budget = 5): number {
  fn();
  const t: number[] = [];
  const start = performance.now();
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    fn();
    t.push((performance.now() - t0) / 1000);
    if ((performance.now() - start) / 1000 > budget && t.length >= 3) break;
  }
  t.sort((a, b) => a - b);
  return t[Math.floor(t.length / 2)]!;
}

async function main(): Promise<void> {
  const quick = Deno.args.includes("--quick");
  const reps = quick ? 5 : 21;
  const kernels = await wasmKernels();
  const rows: string[][] = [[
    "kernel",
    "M×N×K",
    "wasm GFLOP/s",
    "ts-ref GFLOP/s",
    "wasm/ref",
    "wasm GB/s (weights)",
  ]];
  for (const c of CASES) {
    const flops = 2 * c.m * c.n * c.k;
    const x = randomFloats(c.m * c.k, 1);
    const out = new Float32Array(c.m * c.n);
    const wdata = randomFloats(c.n * c.k, 2);
    const refM = Math.min(c.refM ?? c.m, c.m);
    const refFlops = 2 * refM * c.n * c.k;
    let wasmS: number, refS: number, bytes: number;
    if (c.bits === undefined) {
      const w = { rows: c.n, cols: c.k, data: wdata };
      wasmS = timeMedian(() => kernels.matmul(x, c.m, w, out), reps);
      refS = timeMedian(() => matmulRef(x, refM, w, out), quick ? 1 : 3);
      bytes = c.n * c.k * 4;
    } else {
      const spec = {
        bits: c.bits,
        granularity: "group" as const,
        groupSize: 128,
        symmetric: false,
      };
      const { packed } = quantizeMatrix(wdata, c.n, c.k, spec);
      wasmS = timeMedian(() => kernels.matmulPacked(x, c.m, packed, out), reps);
      refS = timeMedian(() => matmulPackedRef(x, refM, packed, out), quick ? 1 : 3);
      bytes = packed.words.byteLength + packed.scales.byteLength + packed.zeros.byteLength;
    }
    const wasmG = flops / wasmS / 1e9;
    const refG = refFlops / refS / 1e9;
    rows.push([
      c.name,
      `${c.m}×${c.n}×${c.k}`,
      wasmG.toFixed(2),
      refG.toFixed(3),
      `${(wasmG / refG).toFixed(1)}×`,
      (bytes / wasmS / 1e9).toFixed(2),
    ]);
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  for (const r of rows) console.log(r.map((v, i) => v.padEnd(widths[i]!)).join("  "));
}

if (import.meta.main) await main();
