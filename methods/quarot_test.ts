import assert from "node:assert/strict";
import { drawCalibrationSet } from "./calibration/set.ts";
import { DEFAULT_ACT_OPTIONS } from "../core/act_quantizer.ts";
import { UnsupportedConfigError } from "../core/errors.ts";
import { refKernels } from "../kernels/ref/mod.ts";
import { createKvCache, embedTokens, forward, layerForward } from "../runners/forward.ts";
import type { LlamaConfig, LlamaWeights } from "../models/types.ts";
import { getTask } from "../tasks/mod.ts";
import { bundledDataDir, needs } from "../testing/fixtures.ts";
import { randomDecoder, smallConfig } from "../testing/random_model.ts";
import { stories260K } from "../testing/stories.ts";
import { quantizeCell } from "../bench/cell.ts";
import { centerRows } from "./norm_fusion.ts";
import { getMethod } from "./mod.ts";
import { quarot, quarotTransform } from "./quarot.ts";
import { residualRotation } from "./rotation.ts";
import { type QuantConfig, resolveParams } from "./types.ts";

const kernels = refKernels;
const dataDir = bundledDataDir();
const stories = await needs("hf-mirror");
const DEFAULTS = { rotateMode: "hadamard" as const, seed: 0, centerEmbeddings: false };

/** Largest |a − b| relative to the largest |b|. */
function relDiff(a: Float32Array, b: Float32Array): number {
  assert.equal(a.length, b.length);
  let d = 0, m = 0;
  for (let i = 0; i < a.length; i++) {
    d = Math.max(d, Math.abs(a[i]! - b[i]!));
    m = Math.max(m, Math.abs(b[i]!));
  }
  return d / m;
}

function tokens(n: number, vocab: number, salt = 0): number[] {
  return Array.from({ length: n }, (_, t) => (t * 7 + 3 * salt + 1) % vocab);
}

const W4A4: QuantConfig = {
  wBits: 4,
  aBits: 4,
  granularity: "channel",
  symmetric: true,
  act: DEFAULT_ACT_OPTIONS,
};

/** Random models covering the features the rotation must keep exact, and the fallbacks. */
const CASES: { name: string; config: Partial<LlamaConfig>; o: string; down: string }[] = [
  { name: "GQA Llama", config: {}, o: "hadamard", down: "hadamard" },
  {
    name: "MHA, interleaved RoPE, tied classifier",
    config: { nKvHeads: 4, ropeStyle: "interleaved", tiedEmbeddings: true, hiddenDim: 64 },
    o: "hadamard",
    down: "hadamard",
  },
  {
    name: "Qwen2-style q/k/v biases, tied, ε 1e-6, θ 1e6, 1 KV head",
    config: {
      qkvBias: true,
      tiedEmbeddings: true,
      normEps: 1e-6,
      ropeTheta: 1e6,
      nKvHeads: 1,
      family: "qwen2",
    },
    o: "hadamard",
    down: "hadamard",
  },
  {
    name: "20 heads (K differs from that of 20·head_dim): dense fallback before o",
    config: { dim: 80, nHeads: 20, nKvHeads: 10, headDim: 4, hiddenDim: 96 },
    o: "orthogonal",
    down: "hadamard",
  },
  {
    name: "14 heads and intermediate 76 (no Hadamard): dense fallbacks at both sites",
    config: { dim: 56, nHeads: 14, nKvHeads: 2, headDim: 4, hiddenDim: 76 },
    o: "orthogonal",
    down: "orthogonal",
  },
  {
    name: "head_dim 12 (not a power of two), Qwen3-style per-head q/k norms, heads·hd ≠ dim",
    config: { nHeads: 4, nKvHeads: 2, headDim: 12, qkNorm: "head" },
    o: "orthogonal",
    down: "hadamard",
  },
  {
    name: "o and MLP biases, ungated ReLU MLP, learned positions, query scale",
    config: {
      oBias: true,
      mlpBias: true,
      mlpGated: false,
      mlpAct: "relu",
      positions: "learned",
      queryScale: 0.35,
      attnScale: 1,
    },
    o: "hadamard",
    down: "hadamard",
  },
  {
    name: "GeGLU, embedding scale, soft-caps, sliding window, partial RoPE",
    config: {
      mlpAct: "gelu_tanh",
      embedScale: Math.fround(Math.sqrt(32)),
      attnSoftcap: 20,
      finalSoftcap: 15,
      slidingWindows: [5, 0],
      rotaryDim: 4,
    },
    o: "hadamard",
    down: "hadamard",
  },
];

Deno.test("quarot transform: rotated FP model with online transforms gives the original logits (≤ 1e-4 of max|logit|)", () => {
  for (const [i, c] of CASES.entries()) {
    const config = smallConfig(c.config);
    const weights = randomDecoder(config, 11 + i);
    const model = { config, weights };
    const ids = tokens(23, config.vocabSize, i);
    const ref = forward(model, ids);
    for (const rotateMode of ["hadamard", "random"] as const) {
      const t = quarotTransform(config, weights, { ...DEFAULTS, rotateMode, seed: 5 + i });
      const err = relDiff(forward(t, ids), ref);
      assert.ok(err <= 1e-4, `${c.name} (${rotateMode}): ${err}`);
      assert.ok(t.notes.some((n) => n.includes(`onlineRotation.o=${c.o}`)), `${c.name}: o`);
      assert.ok(t.notes.some((n) => n.includes(`onlineRotation.down=${c.down}`)), c.name);
      assert.equal(t.weights.online?.o?.kind, c.o === "hadamard" ? "cross-head" : "matrix");
      assert.equal(t.weights.online?.down?.kind, c.down === "hadamard" ? "hadamard" : "matrix");
      // Token by token through the KV cache too.
      const cache = createKvCache(config, ids.length);
      const last = ids.map((id) => forward(t, [id], { cache, logits: "last" })).at(-1)!;
      const refLast = ref.subarray((ids.length - 1) * config.vocabSize);
      assert.ok(relDiff(last, refLast) <= 1e-4, `${c.name}: decoding`);
    }
    // The input model is not modified, and the rotation does change the weights.
    assert.deepEqual(forward(model, ids), ref);
  }
});

stories.test("quarot transform on stories260K: the same logits (≤ 1e-4 of max|logit|); centring changes them", async () => {
  const model = await stories260K();
  const ids = model.tokenizer.encode(
    "Once upon a time, there was a little girl named Lily. She loved to play outside.",
    { bos: true },
  );
  const ref = forward(model, ids);
  for (const rotateMode of ["hadamard", "random"] as const) {
    const t = quarotTransform(model.config, model.weights, { ...DEFAULTS, rotateMode });
    const err = relDiff(forward(t, ids), ref);
    assert.ok(err <= 1e-4, `${rotateMode}: ${err}`);
  }
  // With centring the rotated model computes the original with centred embedding rows (its tied
  // classifier not centred): a different function for this RMSNorm model.
  const t = quarotTransform(model.config, model.weights, { ...DEFAULTS, centerEmbeddings: true });
  const centred = {
    config: model.config,
    weights: { ...model.weights, embed: centerRows(model.weights.embed) },
  };
  const got = forward(t, ids);
  assert.ok(relDiff(got, forward(centred, ids)) <= 1e-4);
  assert.ok(relDiff(got, ref) > 1e-3);
});

Deno.test("quarot transform: every block's residual output is the original's times Q", () => {
  for (const [i, c] of CASES.slice(0, 5).entries()) {
    const config = smallConfig(c.config);
    const weights = randomDecoder(config, 31 + i);
    const p = { ...DEFAULTS, seed: 9 };
    const t = quarotTransform(config, weights, p);
    const q = residualRotation(config.dim, p.rotateMode, p.seed).matrix;
    const ids = tokens(17, config.vocabSize, i);
    const T = ids.length, d = config.dim;
    const x = embedTokens({ config, weights }, ids);
    const xr = embedTokens(t, ids);
    const cache = createKvCache(config, T), cacheR = createKvCache(config, T);
    for (let l = 0; l <= config.nLayers; l++) {
      // h·Q in float64 from the original stream.
      const expect = new Float32Array(T * d);
      let scale = 0;
      for (let r = 0; r < T; r++) {
        for (let j = 0; j < d; j++) {
          let s = 0;
          for (let k = 0; k < d; k++) s += x[r * d + k]! * q[k * d + j]!;
          expect[r * d + j] = s;
          scale = Math.max(scale, Math.abs(s));
        }
      }
      const err = relDiff(xr, expect);
      assert.ok(err <= 1e-5, `${c.name}, after block ${l - 1}: ${err} (scale ${scale})`);
      if (l === config.nLayers) break;
      layerForward({ config, weights }, l, x, T, cache, kernels);
      layerForward(t, l, xr, T, cacheR, kernels);
    }
  }
});

Deno.test("quarot transform: norms become ones with the model's ε, a tied classifier is untied", () => {
  const config = smallConfig({ tiedEmbeddings: true, normEps: 1e-6, qkvBias: true });
  const weights = randomDecoder(config, 3);
  const embedBefore = weights.embed.data.slice();
  const t = quarotTransform(config, weights, DEFAULTS);
  assert.equal(t.config.tiedEmbeddings, false);
  assert.equal(t.config.normEps, 1e-6);
  assert.notEqual(t.weights.lmHead, t.weights.embed);
  assert.notDeepEqual(t.weights.lmHead.data, t.weights.embed.data);
  assert.deepEqual(weights.embed.data, embedBefore);
  assert.equal(weights.lmHead, weights.embed);
  for (const v of [t.weights.norm, ...t.weights.layers.flatMap((l) => [l.attnNorm, l.mlpNorm])]) {
    assert.ok(v.every((x) => x === 1));
  }
  // q and k biases are untouched by the input-side rotation; v's is transformed head by head.
  const [a, b] = [weights.layers[0]!, t.weights.layers[0]!];
  assert.deepEqual(b.qBias, a.qBias);
  assert.deepEqual(b.kBias, a.kBias);
  assert.notDeepEqual(b.vBias, a.vBias);
  assert.ok(t.notes.some((n) => n.includes("lm_head untied")));
});

Deno.test("quarot centerEmbeddings: the rotated model computes the original with centred embeddings", () => {
  const config = smallConfig({ tiedEmbeddings: true });
  const weights = randomDecoder(config, 21);
  // Embedding rows with a clear mean, so that centring matters.
  const embed = { ...weights.embed, data: weights.embed.data.map((x, i) => x + 0.3 * (i % 3)) };
  const model = { config, weights: { ...weights, embed, lmHead: embed } };
  const ids = tokens(19, config.vocabSize);
  const t = quarotTransform(config, model.weights, { ...DEFAULTS, centerEmbeddings: true });
  // The independent expectation: only the embedding lookup is centred (the classifier is not).
  const centred = { config, weights: { ...model.weights, embed: centerRows(embed) } };
  const got = forward(t, ids);
  assert.ok(relDiff(got, forward(centred, ids)) <= 1e-4);
  // For an RMSNorm model this is a different function: not the original logits.
  assert.ok(relDiff(got, forward(model, ids)) > 1e-3);
  assert.ok(t.notes.some((n) => n.includes("centerEmbeddings=true")));
});

Deno.test("quarot refuses LayerNorm, sandwich norms, MoE, clip_qkv, KV (bmm), per-tensor and static settings", async () => {
  const ctx = { kernels };
  const run = (c: Partial<LlamaConfig>, q: QuantConfig = W4A4, params = {}) => {
    const config = smallConfig(c);
    return quarot.quantize(
      { config, weights: randomDecoder(config, 1) },
      q,
      resolveParams(quarot, params),
      ctx,
    );
  };
  await assert.rejects(
    run({ norm: "layer" }),
    (e) => e instanceof UnsupportedConfigError && /layerNorm/.test(e.message),
  );
  await assert.rejects(
    run({ sandwichNorms: true }),
    (e) => e instanceof UnsupportedConfigError && /sandwichNorms/.test(e.message),
  );
  await assert.rejects(
    run({ clipQkv: 8 }),
    (e) => e instanceof UnsupportedConfigError && /clipQkv/.test(e.message),
  );
  const moe = {
    moe: { nExperts: 2, topK: 1, normTopK: true, expertHiddenDim: 8, denseLayers: [] },
  };
  await assert.rejects(
    run(moe),
    (e) => e instanceof UnsupportedConfigError && /moe/.test(e.message),
  );
  await assert.rejects(
    run({}, { ...W4A4, act: { ...DEFAULT_ACT_OPTIONS, bmm: true } }),
    (e) => e instanceof UnsupportedConfigError && /KV-cache/.test(e.message),
  );
  await assert.rejects(
    run({}, { ...W4A4, act: { ...DEFAULT_ACT_OPTIONS, granularity: "tensor", static: true } }),
    UnsupportedConfigError,
  );
  await assert.rejects(run({}, { ...W4A4, granularity: "tensor" }), UnsupportedConfigError);
  // wClip belongs to quarot's own RTN: in a chain the quantizer's clipping is used instead.
  const chain = getMethod("quarot+gptq");
  const config = smallConfig();
  await assert.rejects(
    chain.quantize(
      { config, weights: randomDecoder(config, 1) },
      W4A4,
      resolveParams(chain, { "quarot.wClip": true }),
      ctx,
    ),
    (e) => e instanceof UnsupportedConfigError && /gptq\.mse/.test(e.message),
  );
});

Deno.test("quarot quantizes only the seven linears: embeddings, lm_head and online transforms stay", async () => {
  const config = smallConfig();
  const weights = randomDecoder(config, 4);
  const params = resolveParams(quarot, {});
  const q = { ...W4A4, aBits: 16 };
  delete (q as { act?: unknown }).act;
  const qm = await quarot.quantize({ config, weights }, q, params, { kernels });
  const t = quarotTransform(config, weights, DEFAULTS);
  assert.deepEqual(qm.weights.lmHead.data, t.weights.lmHead.data);
  assert.deepEqual(qm.weights.embed.data, t.weights.embed.data);
  assert.deepEqual(qm.weights.online, t.weights.online);
  assert.equal(qm.packed.size, config.nLayers * 7);
  // Symmetric 4-bit rows: at most 15 distinct values, the largest |w| exactly representable.
  const row = qm.weights.layers[0]!.q.data.subarray(0, config.dim);
  assert.ok(new Set(row).size <= 15);
  const src = t.weights.layers[0]!.q.data.subarray(0, config.dim);
  const max = Math.max(...src.map(Math.abs));
  assert.ok(row.some((x) => Math.abs(Math.abs(x) - max) <= 1e-6 * max));
  assert.ok(qm.notes.some((n) => n.startsWith("weights: RTN")));
});

stories.test("quarot and quarot+gptq run end to end on stories260K at W4A16 and W4A4", async () => {
  const model = await stories260K();
  const calibration = await drawCalibrationSet(
    { source: "tinystories", samples: 8, seqLen: 64, seed: 0 },
    model.tokenizer,
    model.config.maxSeqLen,
    dataDir,
  );
  const ctx = { kernels, calibration };
  const task = getTask("tinystories:eval");
  const ppl = async (weights: LlamaWeights) =>
    (await task.run({ config: model.config, weights, tokenizer: model.tokenizer }, {
      kernels,
      dataDir,
      limit: 4,
    })).metrics.find((m) => m.metric === "ppl")!.value;
  const fp = await ppl(model.weights);
  // The rotated full-precision model: the same perplexity.
  const t = quarotTransform(model.config, model.weights, DEFAULTS);
  assert.ok(Math.abs((await ppl(t.weights)) / fp - 1) < 1e-5);
  for (const id of ["quarot", "quarot+gptq"]) {
    const method = getMethod(id);
    assert.equal(method.taxonomy, "rotation");
    for (const q of [{ ...W4A4, aBits: 16, act: undefined }, W4A4]) {
      const { act: _, ...rest } = q;
      const cfg: QuantConfig = q.act ? q : rest;
      const qm = await quantizeCell(model, method, resolveParams(method, {}), cfg, ctx);
      assert.ok(qm.weights.online?.down && qm.weights.online.o, id);
      assert.equal(qm.weights.activations?.bits, cfg.aBits < 16 ? 4 : undefined);
      const p = await ppl(qm.weights);
      assert.ok(Number.isFinite(p) && p > fp, `${id} W4A${cfg.aBits}: ${p} (FP ${fp})`);
    }
  }
});
