/**
 * Our WASM GEMM/GEMV against onnxruntime-web's MatMul (its WASM execution provider) at equal
 * thread counts, on the shapes of the kernels issue: medians of `reps` runs each, ours first, then
 * onnxruntime-web (its thread pool spins after each run, so interleaving would steal our threads'
 * cores); prints GFLOP/s and the ratio of medians. onnxruntime-web gets
 * the weights pre-transposed to `[in][out]` (its MatMul layout, a one-time conversion) in a
 * one-node graph built in code (`onnx_matmul.ts`); ours reads them as stored, `[out][in]`.
 *
 * Usage: `deno run --allow-read --allow-env --allow-sys=loadavg bench/kernels_ort.ts
 * [--threads N] [--reps R] [--fma]` (onnxruntime-web fixes its thread count once per process, so
 * run once per thread count; `--fma`: our relaxed-SIMD build, one thread only). Ratios are
 * meaningful only on an otherwise idle machine.
 *
 * @module
 */

import { parseArgs } from "node:util";
import * as ort from "onnxruntime-web";
import { wasmKernels } from "../kernels/wasm/mod.ts";
import { randomFloats } from "../kernels/wasm/test_util.ts";
import { assertSameProduct, ortMatMul } from "./ort_matmul.ts";

const SHAPES = [
  { name: "GEMM", m: 512, n: 768, k: 768 },
  { name: "GEMM", m: 512, n: 3072, k: 768 },
  { name: "GEMM", m: 128, n: 4096, k: 4096 },
  { name: "GEMM", m: 2048, n: 2048, k: 2048 },
  { name: "GEMV", m: 1, n: 4096, k: 4096 },
] as const;

/** Pause after onnxruntime-web's last run before timing ours (its pool's spin ends well before). */
const SETTLE_MS = 500;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      threads: { type: "string", default: "1" },
      reps: { type: "string", default: "9" },
      fma: { type: "boolean", default: false },
    },
  });
  const threads = Number(values.threads);
  const reps = Number(values.reps);
  ort.env.wasm.numThreads = threads;
  const ours = await wasmKernels(threads > 1 ? { threads, fma: values.fma } : { fma: values.fma });
  console.log(`threads ${threads}, ${reps} runs each per shape; ours: ${ours.id}`);
  console.log("| shape | ours GFLOP/s | onnxruntime-web GFLOP/s | ours / ort |");
  console.log("| --- | ---: | ---: | ---: |");
  const load0 = Deno.loadavg()[0]!;
  for (const s of SHAPES) {
    const w = randomFloats(s.n * s.k, 1);
    const x = randomFloats(s.m * s.k, 2);
    const out = new Float32Array(s.m * s.n);
    const matrix = { rows: s.n, cols: s.k, data: w };
    const mm = await ortMatMul(s.m, s.n, s.k, w);
    // Warm-up (tier-up of both WASM modules) and a check that both compute the same product.
    for (let i = 0; i < 3; i++) {
      ours.matmul(x, s.m, matrix, out);
      assertSameProduct(s.name, out, await mm.run(x));
    }
    // Ours first, then onnxruntime-web, in blocks: its thread pool spins for a while after each
    // run, which would steal our threads' cores if the two were interleaved. The warm-up just ran
    // it, so its spinning threads are let go first: without the pause, the 2-thread GEMV (2 ms a
    // run) was timed entirely against them and came out at 0.77× instead of ~1.1×.
    await new Promise((resolve) => setTimeout(resolve, SETTLE_MS));
    const a: number[] = [], r: number[] = [];
    for (let i = 0; i < reps; i++) {
      const t0 = performance.now();
      ours.matmul(x, s.m, matrix, out);
      a.push(performance.now() - t0);
    }
    for (let i = 0; i < reps; i++) {
      const t0 = performance.now();
      await mm.run(x);
      r.push(performance.now() - t0);
    }
    await mm.release();
    const flops = 2 * s.m * s.n * s.k;
    const gf = (ms: number) => (flops / ms / 1e6).toFixed(1);
    console.log(
      `| ${s.name} ${s.m}×${s.n}×${s.k} | ${gf(median(a))} | ${gf(median(r))} | ${
        (median(r) / median(a)).toFixed(2)
      }× |`,
    );
  }
  ours.close?.();
  console.log(`load average ${load0.toFixed(2)} → ${Deno.loadavg()[0]!.toFixed(2)}`);
}
