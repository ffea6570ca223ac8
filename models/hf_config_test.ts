import assert from "node:assert/strict";
import { FormatError, UnsupportedConfigError } from "../core/errors.ts";
import { hfMirrorRoot, needs, sharedPath } from "../testing/fixtures.ts";
import { parseHfConfig } from "./hf_config.ts";
import { hfWeightsFromTensors } from "./hf_weights.ts";
import { parseLlama2cCheckpoint } from "./llama2c.ts";
import { parseSafetensors, toFloat32 } from "./safetensors.ts";
import type { DenseMlp, LlamaConfig, LlamaWeights, Matrix } from "./types.ts";

const hf = await needs("models/stories260K-hf");
const moe = await needs("models/stories260K-moe");
const storiesHf = await needs("models/stories260K-hf", "hf-mirror");
const moeHf = await needs("models/stories260K-moe", "models/stories260K-hf");

const HF = sharedPath("models/stories260K-hf");
const MOE = sharedPath("models/stories260K-moe");
const CKPT = `${await hfMirrorRoot()}/karpathy/tinyllamas/resolve/main/stories260K/stories260K.bin`;

async function readJson(path: string): Promise<Record<string, unknown>> {
  return JSON.parse(await Deno.readTextFile(path));
}

interface Loaded {
  config: LlamaConfig;
  weights: LlamaWeights;
  shapes: Map<string, number[]>;
  get: (name: string) => Float32Array | undefined;
}

async function loadHf(dir: string): Promise<Loaded> {
  const config = parseHfConfig(await readJson(`${dir}/config.json`), `${dir}/config.json`);
  const file = `${dir}/model.safetensors`;
  const tensors = parseSafetensors(await Deno.readFile(file), file);
  const shapes = new Map([...tensors].map(([k, v]) => [k, v.shape]));
  const get = (name: string) => {
    const t = tensors.get(name);
    return t && toFloat32(t, name, file);
  };
  const weights = hfWeightsFromTensors(config, get, (n: string) => shapes.get(n), file);
  return { config, weights, shapes, get };
}

function row(m: Matrix, r: number): Float32Array {
  return m.data.subarray(r * m.cols, (r + 1) * m.cols);
}

/** HF q/k rows → llama2.c rows: within each head, HF row r < half is llama2.c row 2r, r ≥ half is 2(r - half) + 1. */
function unpermute(m: Matrix, headDim: number): Float32Array {
  const out = new Float32Array(m.data.length);
  const half = headDim / 2;
  for (let h = 0; h < m.rows / headDim; h++) {
    for (let r = 0; r < headDim; r++) {
      const src = r < half ? 2 * r : 2 * (r - half) + 1;
      out.set(row(m, h * headDim + r), (h * headDim + src) * m.cols);
    }
  }
  return out;
}

const REQUIRED = {
  model_type: "llama",
  hidden_size: 64,
  intermediate_size: 172,
  num_hidden_layers: 5,
  num_attention_heads: 8,
  vocab_size: 512,
};

hf.test("parseHfConfig() reads the stories260K-hf config", async () => {
  const config = parseHfConfig(await readJson(`${HF}/config.json`), "config.json");
  assert.deepEqual(config, {
    dim: 64,
    hiddenDim: 172,
    nLayers: 5,
    nHeads: 8,
    nKvHeads: 4,
    headDim: 8,
    vocabSize: 512,
    maxSeqLen: 512,
    normEps: 1e-5,
    ropeTheta: 10000,
    ropeStyle: "half",
    tiedEmbeddings: true,
    family: "llama",
  });
});

Deno.test("parseHfConfig() applies transformers' Llama defaults", () => {
  const c = parseHfConfig({ ...REQUIRED, rope_scaling: null }, "config.json");
  assert.equal(c.nKvHeads, 8);
  assert.equal(c.headDim, 8);
  assert.equal(c.normEps, 1e-6);
  assert.equal(c.ropeTheta, 10000);
  assert.equal(c.tiedEmbeddings, false);
  assert.equal(c.maxSeqLen, 2048);
  assert.equal(c.moe, undefined);
});

Deno.test("parseHfConfig() names missing and ill-typed fields", () => {
  for (const field of Object.keys(REQUIRED).filter((k) => k !== "model_type")) {
    const json: Record<string, unknown> = { ...REQUIRED };
    delete json[field];
    assert.throws(
      () => parseHfConfig(json, "my/config.json"),
      (e: unknown) =>
        e instanceof FormatError && e.file === "my/config.json" &&
        e.message.includes(`"${field}"`) && e.message.includes("positive integer"),
    );
  }
  assert.throws(
    () => parseHfConfig({ ...REQUIRED, hidden_size: "64" }, "c.json"),
    /c\.json: .*"hidden_size" must be a positive integer, got "64"/,
  );
  assert.throws(
    () => parseHfConfig({ ...REQUIRED, num_hidden_layers: 2.5 }, "c.json"),
    FormatError,
  );
  assert.throws(
    () => parseHfConfig({ ...REQUIRED, tie_word_embeddings: "yes" }, "c.json"),
    /"tie_word_embeddings" must be a boolean/,
  );
  assert.throws(
    () => parseHfConfig({ ...REQUIRED, rms_norm_eps: -1 }, "c.json"),
    /"rms_norm_eps" must be a positive number/,
  );
  assert.throws(
    () => parseHfConfig({ ...REQUIRED, num_key_value_heads: 3 }, "c.json"),
    /not divisible by num_key_value_heads 3/,
  );
  assert.throws(() => parseHfConfig([], "c.json"), FormatError);
});

Deno.test("parseHfConfig() rejects unknown model types and unsupported features", () => {
  assert.throws(
    () => parseHfConfig({ ...REQUIRED, model_type: "gpt2" }, "c.json"),
    (e: unknown) =>
      e instanceof FormatError && e.message.includes('"gpt2"') &&
      e.message.includes('"llama"') && e.message.includes('"mixtral"'),
  );
  assert.throws(() => parseHfConfig({ ...REQUIRED, model_type: undefined }, "c.json"), FormatError);
  assert.throws(
    () => parseHfConfig({ ...REQUIRED, rope_scaling: { type: "yarn", factor: 2 } }, "c.json"),
    (e: unknown) =>
      e instanceof UnsupportedConfigError && e.message.includes("c.json") &&
      e.message.includes("rope_scaling") && e.message.includes("not supported"),
  );
  assert.throws(
    () => parseHfConfig({ ...REQUIRED, hidden_act: "gelu" }, "c.json"),
    UnsupportedConfigError,
  );
  assert.throws(
    () => parseHfConfig({ ...REQUIRED, model_type: "mixtral", attention_bias: true }, "c.json"),
    UnsupportedConfigError,
  );
});

moe.test("parseHfConfig() reads the Mixtral MoE fixture config", async () => {
  const c = parseHfConfig(await readJson(`${MOE}/config.json`), "config.json");
  assert.deepEqual(c.moe, {
    nExperts: 4,
    topK: 2,
    normTopK: true,
    expertHiddenDim: 43,
    denseLayers: [],
  });
  assert.equal(c.hiddenDim, 43);
  assert.equal(c.dim, 64);
  assert.equal(c.nKvHeads, 4);
  assert.equal(c.tiedEmbeddings, true);
  assert.equal(c.ropeStyle, "half");
});

storiesHf.test("HF safetensors weights equal the llama2.c checkpoint's", async () => {
  const hf = await loadHf(HF);
  const ref = parseLlama2cCheckpoint(await Deno.readFile(CKPT), CKPT);
  const w = hf.weights;
  assert.equal(w.lmHead, w.embed, "tied");
  assert.deepEqual(w.embed, ref.weights.embed);
  assert.deepEqual(w.norm, ref.weights.norm);
  const headDim = hf.config.headDim;
  for (let l = 0; l < 5; l++) {
    const a = w.layers[l]!;
    const b = ref.weights.layers[l]!;
    assert.deepEqual(a.attnNorm, b.attnNorm);
    assert.deepEqual(a.mlpNorm, b.mlpNorm);
    assert.deepEqual(a.v, b.v);
    assert.deepEqual(a.o, b.o);
    assert.deepEqual(a.mlp, b.mlp);
    // q and k: the same rows once HF's rotate_half permutation is undone...
    assert.deepEqual(unpermute(a.q, headDim), b.q.data);
    assert.deepEqual(unpermute(a.k, headDim), b.k.data);
    // ...and not before (the permutation is real).
    assert.notDeepEqual(a.q.data, b.q.data);
  }
});

moeHf.test("hfWeightsFromTensors() reads the Mixtral fixture as a partition of the dense FFN", async () => {
  const moe = await loadHf(MOE);
  const dense = await loadHf(HF);
  const info = await readJson(`${MOE}/moefication.json`) as {
    w2_scale: number;
    layers: { expert_of_neuron: number[] }[];
  };
  for (let l = 0; l < 5; l++) {
    const m = moe.weights.layers[l]!;
    const d = dense.weights.layers[l]!;
    assert.deepEqual(m.q, d.q);
    assert.deepEqual(m.attnNorm, d.attnNorm);
    const mm = m.mlp;
    const dm = d.mlp;
    if (mm.kind !== "moe" || dm.kind !== "dense") throw new Error(`layer ${l}: wrong MLP kinds`);
    assert.deepEqual([mm.router.rows, mm.router.cols], [4, 64]);
    assert.equal(mm.experts.length, 4);
    const owner = info.layers[l]!.expert_of_neuron;
    for (let e = 0; e < 4; e++) {
      const x: DenseMlp = mm.experts[e]!;
      assert.deepEqual([x.gate!.rows, x.gate!.cols, x.down.rows, x.down.cols], [43, 64, 64, 43]);
      const neurons = owner.flatMap((o, j) => (o === e ? [j] : []));
      assert.equal(neurons.length, 43);
      neurons.forEach((j, k) => {
        assert.deepEqual(row(x.gate!, k), row(dm.gate!, j)); // w1 = gate
        assert.deepEqual(row(x.up, k), row(dm.up, j)); // w3 = up
        for (let i = 0; i < 64; i++) {
          // w2 = down, columns scaled by w2_scale
          assert.equal(
            x.down.data[i * 43 + k],
            Math.fround(info.w2_scale * dm.down.data[i * 172 + j]!),
          );
        }
      });
    }
  }
});

hf.test("hfWeightsFromTensors() names missing and misshapen tensors", async () => {
  const hf = await loadHf(HF);
  const shapeOf = (override: Record<string, number[] | undefined>) => (n: string) =>
    n in override ? override[n] : hf.shapes.get(n);
  const name = "model.layers.2.self_attn.k_proj.weight";
  assert.throws(
    () => hfWeightsFromTensors(hf.config, hf.get, shapeOf({ [name]: [64, 64] }), "m.safetensors"),
    (e: unknown) =>
      e instanceof FormatError && e.file === "m.safetensors" && e.message.includes(name) &&
      e.message.includes("[64, 64]") && e.message.includes("[32, 64]"),
  );
  assert.throws(
    () => hfWeightsFromTensors(hf.config, hf.get, shapeOf({ [name]: undefined }), "m.safetensors"),
    (e: unknown) => e instanceof FormatError && e.message.includes(`"${name}" is missing`),
  );
  // Untied: lm_head.weight is required.
  const untied = { ...hf.config, tiedEmbeddings: false };
  assert.throws(
    () => hfWeightsFromTensors(untied, hf.get, (n: string) => hf.shapes.get(n), "m.safetensors"),
    /"lm_head.weight" is missing \(expected shape \[512, 64\]\)/,
  );
  // get() disagreeing with shapeOf() is caught too.
  assert.throws(
    () =>
      hfWeightsFromTensors(
        hf.config,
        (n: string) => (n === "model.norm.weight" ? new Float32Array(3) : hf.get(n)),
        (n: string) => hf.shapes.get(n),
        "m.safetensors",
      ),
    /"model.norm.weight" has 3 values, expected 64/,
  );
});
