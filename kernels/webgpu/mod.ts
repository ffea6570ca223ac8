/**
 * The WebGPU backend: WGSL kernels on a {@linkcode GpuDevice}, as asynchronous one-call kernels
 * ({@linkcode GpuKernels}) and as a GPU-resident perplexity window scorer
 * ({@linkcode GpuWindowScorer}) that `--backend webgpu` plugs into the perplexity task.
 *
 * @example Score a window on the GPU
 * ```ts ignore
 * const scorer = await GpuWindowScorer.create();
 * const s = await scorer.score(model, [1, ...model.tokenizer.encode("Once upon a time")]);
 * console.log(Math.exp(s.sumNll / s.scored), scorer.adapter.fallback);
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
export { GpuWindowScorer, type GpuWindowScorerOptions } from "./window_scorer.ts";
