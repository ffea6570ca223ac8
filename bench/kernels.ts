/**
 * Kernel benchmark: prints one table of GFLOP/s (and effective GB/s of weights read for the
 * fused dequant kernels) for the `wasm-simd` kernels next to the plain-TS reference and, for f32
 * weights, onnxruntime-web's MatMul (its WASM execution provider on one thread, a one-node graph
 * built in code: `onnx_matmul.ts`), with the ratios, all measured in the same run; then
 * stories260K perplexity tokens/s through the perplexity task with the TS reference and with
 * `wasm-simd` (`kernels_e2e.ts`). Medians of repeated timings after a warm-up.
 *
 * Two more tables, from the same run: **kernel threads** (GEMM and the fused 4-bit GEMV at 1
 * and N threads, N = 2 by default, measured alternately so both see the same machine load; the
 * ratio is the median of the per-pair ratios) and **decoding** (the fused dequant-GEMV against
 * the f32 GEMV on 1×4096×4096, also alternated). Each table prints the load average while it ran.
 * On Linux with autogroup scheduling, a process gets one session's fair share of the cores
 * whatever its thread count: thread ratios are meaningful only on an otherwise idle machine.
 *
 * Where a WebGPU adapter exists, the kernel table gains WebGPU columns (`bench/kernels_webgpu.ts`)
 * labelled with the adapter; a fallback (software) adapter is marked, its numbers are not GPU
 * speed. `--no-webgpu` leaves them out.
 *
 * Usage: `deno run --allow-read --allow-write --allow-env --allow-net --allow-sys=loadavg
 * bench/kernels.ts [--quick] [--smoke] [--best] [--threads N] [--only kernels,e2e,threads,decode]
 * [--no-webgpu]` (`--quick`: fewer repetitions and windows; `--smoke`: tiny shapes, one timing
 * each, no warm-up: proves the benchmark runs, its numbers mean nothing; `--best`: fastest run
 * instead of the median, the uncontended speed on a shared machine; `--only`: some tables). onnxruntime-web at
 * two threads: `bench/kernels_ort.ts --threads 2` (it fixes its thread count once per process).
 * The reference is timed on fewer tokens where it would take minutes; its rate is per FLOP, so
 * the ratio stays meaningful.
 *
 * @module
 */

import { quantizeMatrix } from "../core/quantizer.ts";
import { attentionRef, matmulPackedRef, matmulRef } from "../kernels/ref/mod.ts";
import { wasmKernels } from "../kernels/wasm/mod.ts";
import { randomFloats } from "../kernels/wasm/test_util.ts";
import * as ort from "onnxruntime-web";
import { refKernels } from "../kernels/ref/mod.ts";
import { perplexitySpeed } from "./kernels_e2e.ts";
import { WebGpuBench } from "./kernels_webgpu.ts";
import { assertSameProduct, ortMatMul } from "./ort_matmul.ts";
import { median } from "../core/stats.ts";

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
  { name: "GEMM", m: 512, n: 3072, k: 768, refM: 16 },
  { name: "GEMM", m: 128, n: 4096, k: 4096, refM: 4 },
  { name: "GEMM", m: 2048, n: 2048, k: 2048, refM: 4 },
  { name: "GEMV", m: 1, n: 4096, k: 4096 },
  { name: "GEMV", m: 16, n: 4096, k: 4096, refM: 2 },
  { name: "dequant-GEMV 4-bit g128", m: 1, n: 4096, k: 4096, bits: 4 },
  { name: "dequant-GEMV 2-bit g128", m: 1, n: 4096, k: 4096, bits: 2 },
  { name: "dequant-GEMM 4-bit g128", m: 128, n: 4096, k: 4096, bits: 4, refM: 2 },
];

/** Tiny shapes of each kind for `--smoke` (the test that keeps the benchmark running). */
export const SMOKE_CASES: readonly KernelCase[] = [
  { name: "GEMM", m: 16, n: 64, k: 64 },
  { name: "GEMV", m: 1, n: 128, k: 128 },
  { name: "dequant-GEMV 4-bit g128", m: 1, n: 64, k: 256, bits: 4 },
  { name: "dequant-GEMM 2-bit g128", m: 8, n: 64, k: 256, bits: 2 },
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

/**
 * Alternates `a` and `b` (after a warm-up of each) for `reps` pairs or `budget` seconds; returns
 * the median seconds of each and the median of the per-pair ratios `a / b`.
 */
export function timePairs(
  a: () => void,
  b: () => void,
  reps: number,
  budget = 20,
): { a: number; b: number; ratio: number } {
  for (const fn of [a, b]) {
    const w0 = performance.now();
    for (let i = 0; i < 2 || performance.now() - w0 < 500; i++) fn();
  }
  const ta: number[] = [], tb: number[] = [], r: number[] = [];
  const start = performance.now();
  for (let i = 0; i < reps; i++) {
    let t0 = performance.now();
    a();
    const x = performance.now() - t0;
    t0 = performance.now();
    b();
    const y = performance.now() - t0;
    ta.push(x / 1000);
    tb.push(y / 1000);
    r.push(x / y);
    if ((performance.now() - start) / 1000 > budget && r.length >= 3) break;
  }
  return { a: median(ta), b: median(tb), ratio: median(r) };
}

/** The 1-, 5- and 15-minute load averages (needs `--allow-sys=loadavg`), or "?". */
export function loadAverage(): string {
  try {
    return Deno.loadavg().map((v) => v.toFixed(2)).join(" ");
  } catch {
    return "?";
  }
}

function printTable(rows: string[][]): void {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  for (const r of rows) console.log(r.map((v, i) => v.padEnd(widths[i]!)).join("  "));
}

/** GEMM and the fused 4-bit GEMV at 1 and `threads` kernel threads, alternated. */
async function threadsTable(threads: number, reps: number): Promise<void> {
  const one = await wasmKernels();
  const many = await wasmKernels({ threads });
  try {
    const load0 = loadAverage();
    const rows: string[][] = [[
      "kernel",
      "M×N×K",
      `${one.id} GFLOP/s`,
      `${many.id} GFLOP/s`,
      `${threads} threads / 1`,
      "pairs",
    ]];
    for (const [m, n, k] of [[512, 768, 768], [128, 4096, 4096]] as const) {
      const x = randomFloats(m * k, 1);
      const w = { rows: n, cols: k, data: randomFloats(n * k, 2) };
      const out = new Float32Array(m * n);
      const t = timePairs(() => one.matmul(x, m, w, out), () => many.matmul(x, m, w, out), reps);
      const flops = 2 * m * n * k;
      rows.push([
        "GEMM",
        `${m}×${n}×${k}`,
        (flops / t.a / 1e9).toFixed(2),
        (flops / t.b / 1e9).toFixed(2),
        `${t.ratio.toFixed(2)}×`,
        String(reps),
      ]);
    }
    {
      const n = 4096, k = 4096;
      const data = randomFloats(n * k, 3);
      const x = randomFloats(k, 4);
      const out = new Float32Array(n);
      const { packed } = quantizeMatrix(data, n, k, {
        bits: 4,
        granularity: "group",
        groupSize: 128,
        symmetric: false,
      });
      const t = timePairs(
        () => one.matmulPacked(x, 1, packed, out),
        () => many.matmulPacked(x, 1, packed, out),
        reps,
      );
      const flops = 2 * n * k;
      rows.push([
        "dequant-GEMV 4-bit g128",
        `1×${n}×${k}`,
        (flops / t.a / 1e9).toFixed(2),
        (flops / t.b / 1e9).toFixed(2),
        `${t.ratio.toFixed(2)}×`,
        String(reps),
      ]);
    }
    console.log(`\nKernel threads (load average before: ${load0}, after: ${loadAverage()})`);
    printTable(rows);
  } finally {
    many.close();
  }
}

/** Fused dequant-GEMV against the f32 GEMV on 1×4096×4096, alternated. */
async function decodeTable(reps: number): Promise<void> {
  const kernels = await wasmKernels();
  const load0 = loadAverage();
  const n = 4096, k = 4096;
  const data = randomFloats(n * k, 3);
  const w = { rows: n, cols: k, data };
  const x = randomFloats(k, 4);
  const out = new Float32Array(n);
  const rows: string[][] = [[
    "1×4096×4096",
    "f32 GEMV ms",
    "fused ms",
    "fused / f32 speed",
    "GB/s of weights (f32, fused)",
  ]];
  for (const bits of [8, 4, 3, 2]) {
    const { packed } = quantizeMatrix(data, n, k, {
      bits,
      granularity: "group",
      groupSize: 128,
      symmetric: false,
    });
    const t = timePairs(
      () => kernels.matmul(x, 1, w, out),
      () => kernels.matmulPacked(x, 1, packed, out),
      reps,
    );
    const bytes = packed.words.byteLength + packed.scales.byteLength + packed.zeros.byteLength;
    rows.push([
      `${bits}-bit g128 vs f32`,
      (t.a * 1e3).toFixed(3),
      (t.b * 1e3).toFixed(3),
      `${t.ratio.toFixed(2)}×`,
      `${(n * k * 4 / t.a / 1e9).toFixed(1)}, ${(bytes / t.b / 1e9).toFixed(1)}`,
    ]);
  }
  console.log(
    `\nDecoding, ${kernels.id} (load average before: ${load0}, after: ${loadAverage()})`,
  );
  printTable(rows);
}

async function main(): Promise<void> {
  const smoke = Deno.args.includes("--smoke");
  const quick = smoke || Deno.args.includes("--quick");
  const reps = smoke ? 1 : quick ? 5 : 21;
  const best = Deno.args.includes("--best");
  const ti = Deno.args.indexOf("--threads");
  const threads = ti >= 0 ? Number(Deno.args[ti + 1]) : 2;
  const oi = Deno.args.indexOf("--only");
  const only = oi >= 0 ? Deno.args[oi + 1]!.split(",") : ["kernels", "e2e", "threads", "decode"];
  if (only.includes("kernels")) await kernelsTable(quick, reps, best, smoke);
  if (only.includes("e2e")) await e2eTable(smoke ? 1 : quick ? 8 : 64);
  if (only.includes("threads")) await threadsTable(threads, smoke ? 1 : quick ? 7 : 21);
  if (only.includes("decode")) await decodeTable(smoke ? 1 : quick ? 11 : 41);
}

async function kernelsTable(
  quick: boolean,
  reps: number,
  best: boolean,
  smoke: boolean,
): Promise<void> {
  const time = (fn: () => void) => timeMedian(fn, reps, 5, smoke ? 0 : 0.5, best);
  const load0 = loadAverage();
  const kernels = await wasmKernels();
  const fmaKernels = await wasmKernels({ fma: true });
  const gpu = Deno.args.includes("--no-webgpu") ? undefined : await WebGpuBench.create();
  const rows: string[][] = [[
    "kernel",
    "M×N×K",
    `${kernels.id} GFLOP/s`,
    `${fmaKernels.id} GFLOP/s`,
    "ts-ref GFLOP/s",
    "simd/ref",
    "fma/ref",
    "GB/s of weights (simd, fma)",
    "ort-web GFLOP/s",
    "simd/ort",
    ...(gpu ? ["webgpu GFLOP/s", "webgpu/simd"] : []),
  ]];
  ort.env.wasm.numThreads = 1;
  for (const c of smoke ? SMOKE_CASES : CASES) {
    const flops = 2 * c.m * c.n * c.k;
    const x = randomFloats(c.m * c.k, 1);
    const out = new Float32Array(c.m * c.n);
    const wdata = randomFloats(c.n * c.k, 2);
    const refM = Math.min(c.refM ?? c.m, c.m);
    const refFlops = 2 * refM * c.n * c.k;
    let wasmS: number, fmaS: number, refS: number, bytes: number;
    let ortS: number | undefined;
    if (c.bits === undefined) {
      const w = { rows: c.n, cols: c.k, data: wdata };
      wasmS = time(() => kernels.matmul(x, c.m, w, out));
      fmaS = time(() => fmaKernels.matmul(x, c.m, w, out));
      refS = timeMedian(() => matmulRef(x, refM, w, out), quick ? 1 : 3, 5, 0, best);
      bytes = c.n * c.k * 4;
      ortS = await timeOrt(c, wdata, x, out, quick ? 5 : 11, best);
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
      ortS === undefined ? "-" : (flops / ortS / 1e9).toFixed(2),
      ortS === undefined ? "-" : `${(ortS / wasmS).toFixed(2)}×`,
      ...(gpu ? await gpuColumns(gpu, c, flops, wasmS, quick ? 3 : 11, best) : []),
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
      "-",
      "-",
      ...(gpu ? ["-", "-"] : []),
    ]);
  }
  console.log(`Kernels (load average before: ${load0}, after: ${loadAverage()})`);
  if (gpu) console.log(`WebGPU columns: ${gpu.label}`);
  printTable(rows);
  gpu?.close();
}

/**
 * Median (or best) seconds of onnxruntime-web's MatMul on case `c` (one thread, set by the
 * caller), after checking it computes the product `out` holds (ours, just run).
 */
async function timeOrt(
  c: KernelCase,
  w: Float32Array,
  x: Float32Array,
  ours: Float32Array,
  reps: number,
  best: boolean,
): Promise<number> {
  const mm = await ortMatMul(c.m, c.n, c.k, w);
  try {
    assertSameProduct(c.name, ours, await mm.run(x));
    for (let i = 0; i < 2; i++) await mm.run(x);
    const t: number[] = [];
    const start = performance.now();
    for (let i = 0; i < reps; i++) {
      const t0 = performance.now();
      await mm.run(x);
      t.push((performance.now() - t0) / 1000);
      if (performance.now() - start > 5000 && t.length >= 3) break;
    }
    t.sort((p, q) => p - q);
    return best ? t[0]! : t[Math.floor(t.length / 2)]!;
  } finally {
    await mm.release();
  }
}

/** stories260K perplexity tokens/s, the TS reference against `wasm-simd`, `windows` windows. */
async function e2eTable(windows: number): Promise<void> {
  const load0 = loadAverage();
  const wasm = await wasmKernels();
  const { context, runs } = await perplexitySpeed([refKernels, wasm], { windows });
  const [ref, ours] = runs as [(typeof runs)[0], (typeof runs)[0]];
  console.log(
    `\nEnd to end: stories260K perplexity, ${ours.windows} windows × ${context} tokens, ` +
      `one thread (load average before: ${load0}, after: ${loadAverage()})`,
  );
  printTable([
    ["backend", "tokens/s", "ppl", "vs ts-ref"],
    ...runs.map((r) => [
      r.backend,
      r.tokensPerS.toFixed(0),
      r.ppl.toPrecision(10),
      `${(r.tokensPerS / ref.tokensPerS).toFixed(2)}×`,
    ]),
  ]);
  const rel = Math.abs(ours.ppl / ref.ppl - 1);
  if (!(rel <= 1e-5)) throw new Error(`perplexities differ by ${rel} relative (budget 1e-5)`);
}

/** WebGPU GFLOP/s of case `c` and its speed relative to `wasm-simd` (`wasmS` seconds). */
async function gpuColumns(
  gpu: WebGpuBench,
  c: KernelCase,
  flops: number,
  wasmS: number,
  reps: number,
  best: boolean,
): Promise<string[]> {
  const s = await gpu.time(c, reps, best);
  return [(flops / s / 1e9).toFixed(2), `${(wasmS / s).toFixed(2)}×`];
}

if (import.meta.main) await main();
