/**
 * What the runners layer offers the tasks above it.
 *
 * @module
 */

import type { ForwardModel } from "../models/types.ts";
import type { GpuAdapterInfo } from "../kernels/webgpu/device.ts";
import type { WindowScore } from "./window_score.ts";

/**
 * Scores perplexity windows asynchronously, off the synchronous kernels (the WebGPU backend:
 * `runners/webgpu_scorer.ts`); numbers equal `scoreWindow` over `windowLogProbs` up to
 * float32 rounding.
 */
export interface WindowScorer {
  /** Id recorded in the protocol of the rows it computed, e.g. `webgpu`. */
  readonly id: string;
  /** The adapter the windows run on, recorded in every row. */
  readonly adapter?: GpuAdapterInfo;
  /** Why `model` cannot run here (it then stays on the CPU path), or undefined. */
  unsupported(model: ForwardModel): string | undefined;
  /** Scores one window, against the reference's distribution when given. */
  score(
    model: ForwardModel,
    window: readonly number[],
    reference?: { readonly model: ForwardModel; readonly cacheKey: string },
  ): Promise<WindowScore>;
  /** Releases the device (call once, when no window is being scored). */
  close?(): void;
}
