import assert from "node:assert/strict";
import { adapterInfo, GpuDevice, GpuDeviceLostError, requestAdapter } from "./device.ts";
import { GpuKernels } from "./kernels.ts";

const adapter = await requestAdapter();
const opts = { ignore: !adapter, sanitizeResources: false, sanitizeOps: false };

Deno.test({
  name: "adapterInfo() flags software adapters as fallback, whatever the runtime reports",
  ...opts,
  fn() {
    const fake = (description: string, isFallbackAdapter: boolean) =>
      ({
        info: { vendor: "v", architecture: "", device: "", description, isFallbackAdapter },
      }) as unknown as GPUAdapter;
    assert.equal(adapterInfo(fake("llvmpipe (LLVM 15.0.6, 256 bits)", false)).fallback, true);
    assert.equal(adapterInfo(fake("SwiftShader Device", false)).fallback, true);
    assert.equal(adapterInfo(fake("NVIDIA GeForce RTX 4090", false)).fallback, false);
    assert.equal(adapterInfo(fake("anything", true)).fallback, true);
    const real = adapterInfo(adapter!);
    assert.equal(typeof real.description, "string");
  },
});

Deno.test({
  name: "GpuDevice work on a lost device rejects with the reason instead of hanging",
  ...opts,
  async fn() {
    const dev = await GpuDevice.create();
    const k = await GpuKernels.on(dev);
    const out = new Float32Array(2);
    const w = { rows: 2, cols: 2, data: new Float32Array([1, 0, 0, 1]) };
    await k.matmul(new Float32Array([3, 4]), 1, w, out);
    assert.deepEqual([...out], [3, 4]);
    dev.device.destroy();
    // Loss is reported asynchronously; wait for it.
    for (let i = 0; i < 100 && !dev.lost; i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal(dev.lost, true);
    await assert.rejects(
      k.matmul(new Float32Array([3, 4]), 1, w, out),
      (e: unknown) => e instanceof GpuDeviceLostError && /^WebGPU device lost: /.test(e.message),
    );
  },
});

Deno.test({
  name: "GpuDevice names the limit a buffer would exceed, and refuses fallback adapters on request",
  ...opts,
  async fn() {
    const dev = await GpuDevice.create();
    try {
      const max = Math.min(
        dev.device.limits.maxStorageBufferBindingSize,
        dev.device.limits.maxBufferSize,
      );
      assert.throws(
        () => dev.acquire(max + 1, "logits"),
        /^RangeError: Cannot allocate logits: \d+ bytes exceed the device limit max(StorageBufferBindingSize|BufferSize) = \d+$/,
      );
    } finally {
      dev.destroy();
    }
    if (adapterInfo(adapter!).fallback) {
      await assert.rejects(
        GpuDevice.create({ allowFallback: false }),
        /Cannot use WebGPU: only a fallback adapter \(.+\) exists/,
      );
    }
  },
});
