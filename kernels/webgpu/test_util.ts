/**
 * Test helpers for the WebGPU kernels: one shared kernel set (undefined where this runtime has no
 * adapter, so tests are registered as ignored and reported skipped, not failed), and float32
 * error bounds.
 *
 * @module
 */

import { requestAdapter } from "./device.ts";
import { GpuKernels } from "./kernels.ts";

/** Unit roundoff of float32. */
export const U32 = 2 ** -24;

/** Kernels on the first adapter, or undefined without one. */
export const gpu: GpuKernels | undefined = (await requestAdapter())
  ? await GpuKernels.create()
  : undefined;

/** Both GEMM variants on the shared device (`tiled` and `blocked`), for the matmul tests. */
export const gemmVariants: GpuKernels[] = gpu
  ? [await GpuKernels.on(gpu.device, "tiled"), await GpuKernels.on(gpu.device, "blocked")]
  : [];

// Release the shared device when the module's tests are done, not at process exit: a software
// adapter's driver (Mesa's lavapipe/llvmpipe) can abort when torn down under a live device.
Deno.test.afterAll(() => gpu?.close());

/** Registers a test that needs an adapter; ignored (reported skipped) without one. */
export function gpuTest(name: string, fn: (k: GpuKernels) => Promise<void>): void {
  Deno.test({
    name,
    ignore: gpu === undefined,
    // The device's internal resources live for the whole module.
    sanitizeResources: false,
    sanitizeOps: false,
    fn: () => fn(gpu!),
  });
}
