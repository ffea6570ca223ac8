import assert from "node:assert/strict";
import { loadWasm, relaxedSimdSupported, WASM_FMA_URL, WASM_URL } from "./load.ts";
import { wasmKernels } from "./mod.ts";

Deno.test("the committed kernels.wasm loads and exports every kernel", async () => {
  const wasm = await loadWasm();
  for (const name of ["gemm_f32", "gemv_f32", "rmsnorm_f32", "dq_gemv"] as const) {
    assert.equal(typeof wasm[name], "function", name);
  }
  assert.equal((await wasmKernels()).id, "wasm-simd");
  // Deno's V8 runs relaxed SIMD; the FMA build must load there and say so in its id.
  assert.equal(relaxedSimdSupported(), true);
  assert.equal((await wasmKernels({ fma: true })).id, "wasm-simd-fma");
  const fma = await loadWasm(WASM_FMA_URL);
  assert.equal(typeof fma.gemm_f32, "function");
  assert.ok(WASM_URL.pathname.endsWith("/kernels/wasm/kernels.wasm"));
});

Deno.test("a missing or corrupt kernels.wasm gives an error naming the file", async () => {
  const dir = await Deno.makeTempDir({ prefix: "lowbit-wasm-" });
  try {
    const missing = new URL(`file://${dir}/kernels.wasm`);
    await assert.rejects(() => wasmKernels({ url: missing }), (e: unknown) => {
      assert.ok(e instanceof Error);
      assert.match(e.message, /cannot read .*kernels\.wasm/);
      assert.ok(e.message.includes(missing.pathname), e.message);
      return true;
    });
    const corrupt = new URL(`file://${dir}/corrupt.wasm`);
    const bytes = await Deno.readFile(WASM_URL);
    await Deno.writeFile(corrupt, bytes.subarray(0, bytes.length >> 1));
    await assert.rejects(
      () => wasmKernels({ url: corrupt }),
      /corrupt\.wasm is not a valid kernel module/,
    );
    // A valid module without the kernels' exports (the empty module).
    const empty = new URL(`file://${dir}/empty.wasm`);
    await Deno.writeFile(empty, new Uint8Array([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0]));
    await assert.rejects(() => loadWasm(empty), /empty\.wasm lacks the exports memory/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
