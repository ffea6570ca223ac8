/**
 * onnxruntime-web's MatMul (its WASM execution provider) on one linear layer, for the kernel
 * benchmarks: our weights `[out][in]` transposed once to MatMul's `[in][out]` (outside any timing)
 * into the one-node graph of `onnx_matmul.ts`. Its thread count is `ort.env.wasm.numThreads`, which
 * onnxruntime-web fixes once per process.
 *
 * @module
 */

import * as ort from "onnxruntime-web";
import { onnxMatMulModel } from "./onnx_matmul.ts";

/** A MatMul session of `tokens × in` activations by fixed weights. */
export interface OrtMatMul {
  /** `Y = X · Wᵀ`, `[tokens][out]`. */
  run(x: Float32Array): Promise<Float32Array>;
  release(): Promise<void>;
}

/** A session computing `x · wᵀ` for `w` `[rows][cols]` (a linear layer) and `tokens` rows of x. */
export async function ortMatMul(
  tokens: number,
  rows: number,
  cols: number,
  w: Float32Array,
): Promise<OrtMatMul> {
  const b = new Float32Array(cols * rows);
  for (let o = 0; o < rows; o++) for (let i = 0; i < cols; i++) b[i * rows + o] = w[o * cols + i]!;
  const session = await ort.InferenceSession.create(onnxMatMulModel(tokens, cols, rows, b));
  return {
    run: async (x) =>
      (await session.run({ X: new ort.Tensor("float32", x, [tokens, cols]) })).Y!
        .data as Float32Array,
    release: () => session.release(),
  };
}

/**
 * Throws unless `ours` and onnxruntime-web's `theirs` agree within 1e-4 of the largest output
 * (float32 sums in other orders), so a benchmark never times two different computations.
 */
export function assertSameProduct(what: string, ours: Float32Array, theirs: Float32Array): void {
  let diff = 0, scale = 0;
  for (let i = 0; i < ours.length; i++) {
    diff = Math.max(diff, Math.abs(ours[i]! - theirs[i]!));
    scale = Math.max(scale, Math.abs(theirs[i]!));
  }
  if (ours.length !== theirs.length || !(diff <= 1e-4 * scale)) {
    throw new Error(
      `${what}: ours and onnxruntime-web differ by ${diff} (largest output ${scale})`,
    );
  }
}
