/**
 * `deno bench bench/kernels_bench.ts`: the kernel shapes of `bench/kernels.ts` that the
 * reference finishes in reasonable time, each group comparing `wasm-simd`, `wasm-simd-fma` and
 * the plain-TS reference (the baseline), and the fused dequant-GEMV against the f32 GEMV.
 *
 * @module
 */

import { quantizeMatrix } from "../core/quantizer.ts";
import { matmulPackedRef, matmulRef } from "../kernels/ref/mod.ts";
import { wasmKernels } from "../kernels/wasm/mod.ts";
import { randomFloats } from "../kernels/wasm/test_util.ts";

const simd = await wasmKernels();
const fma = await wasmKernels({ fma: true });

for (const [m, n, k] of [[512, 768, 768], [1, 4096, 4096]] as const) {
  const group = `matmul ${m}×${n}×${k}`;
  const x = randomFloats(m * k, 1);
  const w = { rows: n, cols: k, data: randomFloats(n * k, 2) };
  const out = new Float32Array(m * n);
  Deno.bench({ name: "ts-ref", group, baseline: true, fn: () => matmulRef(x, m, w, out) });
  Deno.bench({ name: simd.id, group, fn: () => simd.matmul(x, m, w, out) });
  Deno.bench({ name: fma.id, group, fn: () => fma.matmul(x, m, w, out) });
}

// Decoding: the fused dequant-GEMV against the f32 GEMV on the same shape (the baseline), so
// `deno bench` prints their ratio from one run (issue 3 asks ≥ 3× at 4 bits).
{
  const n = 4096, k = 4096;
  const group = `GEMV 1×${n}×${k}: f32 vs fused dequant`;
  const data = randomFloats(n * k, 3);
  const w = { rows: n, cols: k, data };
  const x = randomFloats(k, 4);
  const out = new Float32Array(n);
  Deno.bench({
    name: `${simd.id} f32`,
    group,
    baseline: true,
    fn: () => simd.matmul(x, 1, w, out),
  });
  for (const bits of [8, 4, 3, 2]) {
    const { packed } = quantizeMatrix(data, n, k, {
      bits,
      granularity: "group",
      groupSize: 128,
      symmetric: false,
    });
    Deno.bench({
      name: `${simd.id} ${bits}-bit g128`,
      group,
      fn: () => simd.matmulPacked(x, 1, packed, out),
    });
  }
}

for (const bits of [4, 2]) {
  const n = 4096, k = 4096;
  const group = `dequant-GEMV ${bits}-bit g128 1×${n}×${k}`;
  const { packed } = quantizeMatrix(randomFloats(n * k, 3), n, k, {
    bits,
    granularity: "group",
    groupSize: 128,
    symmetric: false,
  });
  const x = randomFloats(k, 4);
  const out = new Float32Array(n);
  Deno.bench({
    name: "ts-ref",
    group,
    baseline: true,
    fn: () => matmulPackedRef(x, 1, packed, out),
  });
  Deno.bench({ name: simd.id, group, fn: () => simd.matmulPacked(x, 1, packed, out) });
  Deno.bench({ name: fma.id, group, fn: () => fma.matmulPacked(x, 1, packed, out) });
}
