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
    /Unknown backend "gpu"; valid: ts, wasm, wasm-fma, auto/,
  );
});

Deno.test("kernelsById() rebuilds a backend from the id in a row, and refuses unknown ids", async () => {
  assert.equal((await kernelsById("js-ref")).id, "js-ref");
  assert.equal((await kernelsById("wasm-simd")).id, "wasm-simd");
  await assert.rejects(kernelsById("cuda"), /Unknown kernel id "cuda"/);
});
