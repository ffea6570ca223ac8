/**
 * Test helper: writes a model's weights as a Qwen2-MoE or OLMoE checkpoint directory
 * (`config.json`, `model.safetensors`, the tokenizer files of a source directory), so the loaders
 * of those layouts can be tested on real trained weights (stories260K-moe) without a download.
 *
 * @module
 */

import { join } from "node:path";
import type { DenseMlp, LlamaConfig, LlamaWeights, Matrix } from "../models/types.ts";
import { type TensorIn, writeSafetensors } from "./safetensors_writer.ts";

/** Layout-specific extras of {@linkcode writeMoeCheckpoint}. */
export interface MoeCheckpointOptions {
  /** Config fields written on top of the derived ones (e.g. `norm_topk_prob`). */
  readonly config?: Record<string, unknown>;
  /** Per layer: q/k/v biases (Qwen2-MoE; zeros when absent). */
  readonly biases?: (l: number) => { q: Float32Array; k: Float32Array; v: Float32Array };
  /** Per layer: q/k norm weights (OLMoE; ones when absent). */
  readonly qkNorms?: (l: number) => { q: Float32Array; k: Float32Array };
  /** Per layer: the shared expert and its `[1][dim]` gate (Qwen2-MoE; zeros when absent). */
  readonly shared?: (l: number) => { mlp: DenseMlp; gate: Matrix };
}

/**
 * Writes `model` (a MoE with routed experts in every layer) to `dir` in the transformers layout
 * of `layout`, copying `tokenizer.json`, `tokenizer_config.json` and
 * `special_tokens_map.json` from `tokenizerDir`.
 */
export async function writeMoeCheckpoint(
  dir: string,
  model: { readonly config: LlamaConfig; readonly weights: LlamaWeights },
  layout: "qwen2_moe" | "olmoe",
  tokenizerDir: string,
  options: MoeCheckpointOptions = {},
): Promise<void> {
  const c = model.config;
  const moe = c.moe;
  if (!moe) throw new TypeError("writeMoeCheckpoint needs a MoE model");
  const tensors = new Map<string, TensorIn>();
  const put = (name: string, shape: number[], data: Float32Array) =>
    tensors.set(name, { shape, data });
  const mat = (name: string, m: Matrix) => put(name, [m.rows, m.cols], m.data);
  const qDim = c.nHeads * c.headDim;
  const kvDim = c.nKvHeads * c.headDim;
  const sharedHidden = layout === "qwen2_moe"
    ? (options.shared?.(0).mlp.up.rows ?? moe.expertHiddenDim)
    : 0;
  put("model.embed_tokens.weight", [c.vocabSize, c.dim], model.weights.embed.data);
  model.weights.layers.forEach((layer, l) => {
    const p = `model.layers.${l}`;
    put(`${p}.input_layernorm.weight`, [c.dim], layer.attnNorm);
    put(`${p}.post_attention_layernorm.weight`, [c.dim], layer.mlpNorm);
    for (const kind of ["q", "k", "v", "o"] as const) {
      mat(`${p}.self_attn.${kind}_proj.weight`, layer[kind]);
    }
    if (layout === "qwen2_moe") {
      const b = options.biases?.(l) ??
        { q: new Float32Array(qDim), k: new Float32Array(kvDim), v: new Float32Array(kvDim) };
      put(`${p}.self_attn.q_proj.bias`, [qDim], b.q);
      put(`${p}.self_attn.k_proj.bias`, [kvDim], b.k);
      put(`${p}.self_attn.v_proj.bias`, [kvDim], b.v);
    } else {
      const n = options.qkNorms?.(l) ??
        { q: new Float32Array(qDim).fill(1), k: new Float32Array(kvDim).fill(1) };
      put(`${p}.self_attn.q_norm.weight`, [qDim], n.q);
      put(`${p}.self_attn.k_norm.weight`, [kvDim], n.k);
    }
    if (layer.mlp.kind !== "moe") throw new TypeError(`layer ${l} is not a MoE layer`);
    mat(`${p}.mlp.gate.weight`, layer.mlp.router);
    const expert = (prefix: string, e: DenseMlp) => {
      mat(`${prefix}.gate_proj.weight`, e.gate!);
      mat(`${prefix}.up_proj.weight`, e.up);
      mat(`${prefix}.down_proj.weight`, e.down);
    };
    layer.mlp.experts.forEach((e, i) => expert(`${p}.mlp.experts.${i}`, e));
    if (layout === "qwen2_moe") {
      const s = options.shared?.(l) ?? {
        mlp: {
          kind: "dense" as const,
          gate: { rows: sharedHidden, cols: c.dim, data: new Float32Array(sharedHidden * c.dim) },
          up: { rows: sharedHidden, cols: c.dim, data: new Float32Array(sharedHidden * c.dim) },
          down: { rows: c.dim, cols: sharedHidden, data: new Float32Array(sharedHidden * c.dim) },
        },
        gate: { rows: 1, cols: c.dim, data: new Float32Array(c.dim) },
      };
      expert(`${p}.mlp.shared_expert`, s.mlp);
      mat(`${p}.mlp.shared_expert_gate.weight`, s.gate);
    }
  });
  put("model.norm.weight", [c.dim], model.weights.norm);
  if (!c.tiedEmbeddings) mat("lm_head.weight", model.weights.lmHead);

  const base: Record<string, unknown> = {
    model_type: layout,
    hidden_size: c.dim,
    intermediate_size: moe.expertHiddenDim,
    num_hidden_layers: c.nLayers,
    num_attention_heads: c.nHeads,
    num_key_value_heads: c.nKvHeads,
    head_dim: c.headDim,
    vocab_size: c.vocabSize,
    max_position_embeddings: c.maxSeqLen,
    rms_norm_eps: c.normEps,
    rope_theta: c.ropeTheta,
    tie_word_embeddings: c.tiedEmbeddings,
    hidden_act: "silu",
    num_experts: moe.nExperts,
    num_experts_per_tok: moe.topK,
    ...(layout === "qwen2_moe"
      ? {
        moe_intermediate_size: moe.expertHiddenDim,
        shared_expert_intermediate_size: sharedHidden,
        decoder_sparse_step: 1,
        mlp_only_layers: [],
        use_sliding_window: false,
        sliding_window: 4096,
      }
      : { clip_qkv: null }),
  };
  await Deno.mkdir(dir, { recursive: true });
  await Deno.writeTextFile(
    join(dir, "config.json"),
    JSON.stringify({ ...base, ...options.config }, null, 2),
  );
  await Deno.writeFile(join(dir, "model.safetensors"), writeSafetensors(tensors));
  for (const f of ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"]) {
    await Deno.copyFile(join(tokenizerDir, f), join(dir, f));
  }
}
