/**
 * Test helper: MoE models with altered routers.
 *
 * @module
 */

import type { LlamaConfig, LlamaLayer, LlamaWeights } from "../models/types.ts";

/**
 * The model with every router zeroed: all experts tie, and ties go to the lowest indices, so with
 * top-k every token goes to experts `0 … k−1` and the others receive no token.
 */
export function withZeroRouters<M extends { config: LlamaConfig; weights: LlamaWeights }>(
  model: M,
): { config: LlamaConfig; weights: LlamaWeights } {
  const layers = model.weights.layers.map((l): LlamaLayer =>
    l.mlp.kind === "moe"
      ? {
        ...l,
        mlp: {
          ...l.mlp,
          router: { ...l.mlp.router, data: new Float32Array(l.mlp.router.data.length) },
        },
      }
      : l
  );
  return { config: model.config, weights: { ...model.weights, layers } };
}
