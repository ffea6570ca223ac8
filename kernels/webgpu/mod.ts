/**
 * The WebGPU backend: WGSL kernels on a {@linkcode GpuDevice}, as asynchronous one-call kernels
 * ({@linkcode GpuKernels}). The GPU-resident perplexity window scorer built on them is a runner:
 * `runners/webgpu_scorer.ts`.
 *
 * @example Multiply on the GPU
 * ```ts ignore
 * const gpu = await GpuKernels.create();
 * await gpu.matmul(x, T, weight, out); // out: Float32Array(T * weight.rows)
 * ```
 *
 * @module
 */

export {
  adapterInfo,
  type GpuAdapterInfo,
  GpuDevice,
  GpuDeviceLostError,
  type GpuDeviceOptions,
  requestAdapter,
} from "./device.ts";
export { type AsyncKernels, GpuKernels, uploadPacked } from "./kernels.ts";
