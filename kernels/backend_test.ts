import assert from "node:assert/strict";
import { kernelsById, selectKernels } from "./backend.ts";

Deno.test("selectKernels() maps backend names to kernel ids; auto prefers WASM", async () => {
  assert.equal((await selectKernels("ts")).kernels.id, "js-ref");
  assert.equal((await selectKernels("wasm")).kernels.id, "wasm-simd");
  const auto = await selectKernels("auto");
  assert.equal(auto.kernels.id, "wasm-simd");
  assert.equal(auto.fallback, undefined);
  await assert.rejects(
    selectKernels("gpu"),
    /Unknown backend "gpu"; valid: ts, wasm, wasm-fma, wasm-mt, auto/,
  );
  const mt = (await selectKernels("wasm-mt", { kernelThreads: 2 })).kernels;
  try {
    assert.equal(mt.id, "wasm-simd-mt2");
  } finally {
    mt.close?.();
  }
  // One kernel thread is plain wasm-simd: same numbers, same cells.
  assert.equal((await selectKernels("wasm-mt", { kernelThreads: 1 })).kernels.id, "wasm-simd");
});

Deno.test("kernelsById() rebuilds a backend from the id in a row, and refuses unknown ids", async () => {
  assert.equal((await kernelsById("js-ref")).id, "js-ref");
  assert.equal((await kernelsById("wasm-simd")).id, "wasm-simd");
  // Evaluation workers compute wasm-simd-mt<N> rows on one thread (same numbers, no
  // oversubscription), under the same id.
  const mt = await kernelsById("wasm-simd-mt2");
  assert.equal(mt.id, "wasm-simd-mt2");
  const w = { rows: 3, cols: 2, data: new Float32Array([1, 2, 3, 4, 5, 6]) };
  const out = new Float32Array(3);
  mt.matmul(new Float32Array([1, -1]), 1, w, out);
  assert.deepEqual([...out], [-1, -1, -1]);
  await assert.rejects(kernelsById("cuda"), /Unknown kernel id "cuda"/);
  await assert.rejects(kernelsById("wasm-simd-mt0"), /Unknown kernel id/);
});
