import assert from "node:assert/strict";
import { kernelsById, selectKernels } from "./backend.ts";
import { adapterInfo, requestAdapter } from "../kernels/webgpu/device.ts";

Deno.test("selectKernels() maps backend names to kernel ids; auto prefers WASM", async () => {
  assert.equal((await selectKernels("ts")).kernels.id, "js-ref");
  assert.equal((await selectKernels("wasm")).kernels.id, "wasm-simd");
  // Without a WebGPU adapter, auto is WASM.
  const auto = await selectKernels("auto", { requestAdapter: () => Promise.resolve(undefined) });
  assert.equal(auto.kernels.id, "wasm-simd");
  assert.equal(auto.fallback, undefined);
  assert.equal(auto.note, "WebGPU not used: no adapter");
  await assert.rejects(
    selectKernels("gpu"),
    /Unknown backend "gpu"; valid: ts, wasm, wasm-fma, wasm-mt, webgpu, auto/,
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
  // WebGPU rows: the synchronous work (and worker threads) runs on the named kernels.
  const gpuSide = await kernelsById("webgpu+wasm-simd");
  assert.equal(gpuSide.id, "webgpu+wasm-simd");
  gpuSide.matmul(new Float32Array([1, -1]), 1, w, out);
  assert.deepEqual([...out], [-1, -1, -1]);
  await assert.rejects(kernelsById("wasm-simd-mt0"), /Unknown kernel id/);
});

const realAdapter = await requestAdapter();

/** The real adapter presented as a hardware GPU (as on a machine with one). */
function asHardware(a: GPUAdapter): GPUAdapter {
  return {
    info: {
      vendor: "test",
      architecture: "",
      device: "",
      description: "Test GPU",
      isFallbackAdapter: false,
    } as unknown as GPUAdapterInfo,
    limits: a.limits,
    features: a.features,
    requestDevice: (d?: GPUDeviceDescriptor) => a.requestDevice(d),
  } as unknown as GPUAdapter;
}

Deno.test({
  name:
    "selectKernels(auto) takes WebGPU only on a hardware adapter, and webgpu records the adapter",
  ignore: !realAdapter,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const adapter = realAdapter!;
    // A hardware adapter: auto picks WebGPU, with WASM for the synchronous work.
    const hw = await selectKernels("auto", {
      requestAdapter: () => Promise.resolve(asHardware(adapter)),
    });
    assert.equal(hw.kernels.id, "webgpu+wasm-simd");
    assert.equal(hw.windowScorer?.id, "webgpu");
    assert.deepEqual(hw.windowScorer?.adapter, {
      vendor: "test",
      architecture: "",
      device: "",
      description: "Test GPU",
      fallback: false,
    });
    // This machine's adapter, whatever it is: auto takes it only when it is not a fallback.
    const info = adapterInfo(adapter);
    const here = await selectKernels("auto", { requestAdapter: () => Promise.resolve(adapter) });
    if (info.fallback) {
      assert.equal(here.kernels.id, "wasm-simd");
      assert.equal(here.windowScorer, undefined);
      assert.equal(here.note, `WebGPU not used: only a fallback adapter (${info.description})`);
    } else {
      assert.equal(here.kernels.id, "webgpu+wasm-simd");
    }
    // Asked for by name, WebGPU runs on any adapter, and says whether it is a fallback one.
    const named = await selectKernels("webgpu", { requestAdapter: () => Promise.resolve(adapter) });
    assert.equal(named.kernels.id, "webgpu+wasm-simd");
    assert.equal(named.windowScorer?.adapter?.fallback, info.fallback);
    await assert.rejects(
      selectKernels("webgpu", { requestAdapter: () => Promise.resolve(undefined) }),
      /Cannot use --backend webgpu: no WebGPU adapter found/,
    );
    for (const s of [hw, here, named]) s.windowScorer?.close?.();
  },
});
