import assert from "node:assert/strict";
import { FormatError } from "../core/errors.ts";
import { sharedPath } from "../testing/fixtures.ts";
import { archFeatures, unsupportedFeatures } from "./arch.ts";
import { parseHfConfig } from "./hf_config.ts";
import { hfTensorSpecs, hfWeights } from "./hf_weights.ts";

/** Parameter counts published for each model (shared/models/configs/README.md, from the Hub). */
const PUBLISHED: Record<string, number> = {
  "HuggingFaceTB/SmolLM2-135M": 134_515_008,
  "Qwen/Qwen2.5-0.5B": 494_032_768,
  "Qwen/Qwen3-0.6B": 596_049_920,
  "meta-llama/Llama-3.2-1B": 1_235_814_400,
  "TinyLlama/TinyLlama-1.1B-Chat-v1.0": 1_100_048_384,
  "meta-llama/Llama-2-7b-hf": 6_738_415_616,
  "mistralai/Mixtral-8x7B-v0.1": 46_702_792_704,
};

async function realConfig(repo: string) {
  const file = sharedPath("models", "configs", repo, "config.json");
  return parseHfConfig(JSON.parse(await Deno.readTextFile(file)), file);
}

const haveConfigs = await Deno.stat(sharedPath("models", "configs")).then(() => true, () => false);

Deno.test({
  name: "hfTensorSpecs(): the tensors of real configs add up to the published parameter counts",
  ignore: !haveConfigs,
  async fn() {
    for (const [repo, params] of Object.entries(PUBLISHED)) {
      const specs = hfTensorSpecs(await realConfig(repo));
      const n = specs.reduce((a, s) => a + s.shape.reduce((x, y) => x * y, 1), 0);
      assert.equal(n, params, repo);
      assert.equal(new Set(specs.map((s) => s.name)).size, specs.length, `${repo}: unique names`);
    }
  },
});

Deno.test({
  name: "archFeatures() of real configs name what each family adds to Llama",
  ignore: !haveConfigs,
  async fn() {
    const features = async (repo: string) => archFeatures(await realConfig(repo));
    assert.deepEqual(await features("TinyLlama/TinyLlama-1.1B-Chat-v1.0"), []);
    assert.deepEqual(await features("meta-llama/Llama-2-7b-hf"), []);
    assert.deepEqual(await features("meta-llama/Llama-3.2-1B"), ["ropeScaling"]);
    assert.deepEqual(await features("Qwen/Qwen2.5-0.5B"), ["qkvBias"]);
    assert.deepEqual(await features("Qwen/Qwen3-0.6B"), ["qkNormHead"]);
    assert.deepEqual(await features("mistralai/Mixtral-8x7B-v0.1"), ["moe"]);
    const c = await realConfig("Qwen/Qwen3-0.6B");
    assert.equal(c.headDim, 128);
    assert.equal(c.nHeads * c.headDim, 2048); // o_proj [1024, 2048]
    assert.match(
      unsupportedFeatures("the X path", c, ["qkvBias"])!,
      /the X path does not implement qkNormHead \(RMSNorm of q and k per head/,
    );
    assert.equal(unsupportedFeatures("the X path", c, ["qkNormHead"]), undefined);
  },
});

/** A tiny config of a family, as transformers writes it. */
function tiny(type: string, extra: Record<string, unknown> = {}) {
  return parseHfConfig({
    model_type: type,
    hidden_size: 16,
    intermediate_size: 24,
    ffn_dim: 24,
    num_hidden_layers: 2,
    num_attention_heads: 4,
    num_key_value_heads: 2,
    vocab_size: 32,
    max_position_embeddings: 64,
    ...extra,
  }, "config.json");
}

Deno.test("hfTensorSpecs(): family names — Phi-3 fused, Gemma 2 sandwich norms, OPT decoder, Qwen2 biases", () => {
  const names = (type: string, extra?: Record<string, unknown>) =>
    hfTensorSpecs(tiny(type, extra)).map((s) => `${s.name} ${s.shape.join("x")}`);
  const phi = names("phi3");
  assert.ok(phi.includes("model.layers.0.self_attn.qkv_proj.weight 32x16")); // 16 + 2·8 rows
  assert.ok(phi.includes("model.layers.0.mlp.gate_up_proj.weight 48x16"));
  assert.ok(!phi.some((n) => n.includes("q_proj")));
  const gemma = names("gemma2", { head_dim: 8 });
  for (
    const norm of [
      "input_layernorm",
      "post_attention_layernorm",
      "pre_feedforward_layernorm",
      "post_feedforward_layernorm",
    ]
  ) {
    assert.ok(gemma.includes(`model.layers.1.${norm}.weight 16`), norm);
  }
  assert.ok(gemma.includes("model.layers.0.self_attn.q_proj.weight 32x16")); // 4 heads × 8
  assert.ok(!gemma.some((n) => n.startsWith("lm_head"))); // tied by default
  const opt = names("opt", { num_key_value_heads: undefined });
  for (
    const n of [
      "model.decoder.embed_positions.weight 66x16",
      "model.decoder.layers.0.self_attn.out_proj.bias 16",
      "model.decoder.layers.0.fc1.weight 24x16",
      "model.decoder.layers.0.self_attn_layer_norm.bias 16",
      "model.decoder.final_layer_norm.bias 16",
    ]
  ) assert.ok(opt.includes(n), n);
  const qwen2 = names("qwen2");
  assert.ok(qwen2.includes("model.layers.0.self_attn.k_proj.bias 8"));
  assert.ok(!qwen2.some((n) => n.includes("o_proj.bias")));
});

Deno.test("hfWeights(): a tensor the config does not declare is refused by name", () => {
  const config = tiny("llama");
  const specs = hfTensorSpecs(config);
  const shapes = new Map(specs.map((s) => [s.name, s.shape]));
  shapes.set("model.layers.1.self_attn.o_proj.bias", [16]);
  assert.throws(
    () =>
      hfWeights(config, {
        names: () => shapes.keys(),
        shape: (n) => shapes.get(n),
        matrix: (_n, rows, cols) => ({ rows, cols, data: new Float32Array(rows * cols) }),
        vector: (n) => new Float32Array(shapes.get(n)!.reduce((a, b) => a * b, 1)),
      }, "m.safetensors"),
    (e: unknown) =>
      e instanceof FormatError && e.message.includes('"model.layers.1.self_attn.o_proj.bias"') &&
      e.message.includes("llama"),
  );
});

Deno.test("parseHfConfig(): sliding windows per family, as transformers decides them", () => {
  // Mistral: 4096 when the key is absent, none when null; every layer.
  assert.deepEqual(tiny("mistral").slidingWindows, [4096, 4096]);
  assert.equal(tiny("mistral", { sliding_window: null }).slidingWindows, undefined);
  // Qwen2: only with use_sliding_window, from max_window_layers on.
  assert.equal(tiny("qwen2", { sliding_window: 8 }).slidingWindows, undefined);
  assert.deepEqual(
    tiny("qwen2", { use_sliding_window: true, sliding_window: 8, max_window_layers: 1 })
      .slidingWindows,
    [0, 8],
  );
  // Gemma 2: even layers slide.
  assert.deepEqual(tiny("gemma2", { sliding_window: 5 }).slidingWindows, [5, 0]);
  // layer_types wins.
  assert.deepEqual(
    tiny("gemma2", { sliding_window: 5, layer_types: ["full_attention", "sliding_attention"] })
      .slidingWindows,
    [0, 5],
  );
});
