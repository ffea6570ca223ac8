/**
 * Shared types of the differentiation ops.
 *
 * @module
 */

/**
 * A dense row-major buffer. Training runs in float32; the ops that do not go through the
 * {@linkcode Kernels} interface also accept float64, so gradient checks can use central finite
 * differences without float32 cancellation.
 */
export type Vec = Float32Array | Float64Array;

/** Head layout of attention (a `LlamaConfig` has these fields). */
export interface HeadShape {
  readonly nHeads: number;
  readonly nKvHeads: number;
  readonly headDim: number;
}
