/**
 * Qwen2-MoE and OLMoE layouts: config parsing, tensor names, shared experts, top-k without
 * renormalisation, q/k/v biases and q/k norms, checked against the Mixtral and dense stories260K
 * fixtures (the same trained weights written in the other layouts) and a hand-written attention.
 */
import assert from "node:assert/strict";
import { createKvCache, forward, mlpForward, selfAttention } from "../runners/forward.ts";
import { parseHfConfig } from "./hf_config.ts";
import { listLinears } from "./linears.ts";
import { loadModel } from "./load.ts";
import type { DenseMlp, LlamaConfig, LlamaLayer, LoadedModel, Matrix } from "./types.ts";
import { refKernels } from "../kernels/ref/mod.ts";
import { needs, sharedPath } from "../testing/fixtures.ts";
import { writeMoeCheckpoint } from "../testing/moe_layouts.ts";
import { randomMatrix } from "../testing/random.ts";

const moe = await needs("models/stories260K-moe");
const moeHf = await needs("models/stories260K-moe", "models/stories260K-hf");

const MOE_DIR = sharedPath("models", "stories260K-moe");
const DENSE_DIR = sharedPath("models", "stories260K-hf");

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

const scaled = (m: Matrix, k: number): Matrix => ({ ...m, data: m.data.map((x) => x * k) });

async function withTempDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await Deno.makeTempDir({ prefix: "lowbit-moe-layout-" });
  try {
    return await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

function ids(model: LoadedModel): number[] {
  return [1, ...model.tokenizer.encode("Lily and Ben went to the park. They saw a big red ball.")];
}

moe.test("Qwen2-MoE layout: the Mixtral fixture rewritten with a zero shared expert and zero biases gives the same logits", async () => {
  const mixtral = await loadModel(MOE_DIR);
  await withTempDir(async (dir) => {
    await writeMoeCheckpoint(dir, mixtral, "qwen2_moe", MOE_DIR, {
      config: { norm_topk_prob: true },
    });
    const qwen = await loadModel(dir);
    assert.equal(qwen.config.qkvBias, true);
    assert.equal(qwen.config.moe?.normTopK, true);
    assert.equal(qwen.config.moe?.sharedHiddenDim, 43);
    const l0 = qwen.weights.layers[0]!;
    assert.ok(l0.mlp.kind === "moe" && l0.mlp.shared && l0.mlp.sharedGate);
    assert.ok(l0.qBias && l0.kBias && l0.vBias);
    const d = maxAbsDiff(forward(mixtral, ids(mixtral)), forward(qwen, ids(qwen)));
    assert.ok(d < 1e-5, `max |Δlogit| = ${d}`);
    // The shared expert's linears are quantization sites.
    const names = listLinears(qwen.weights).map((x) => x.site.name);
    assert.ok(names.includes("layers.0.shared.gate") && names.includes("layers.4.shared.down"));
    assert.ok(names.includes("layers.0.experts.3.up"));
    assert.equal(names.length, 5 * (4 + 3 * 5));
  });
});

moeHf.test("Qwen2-MoE layout: a shared expert holding the dense FFN (×2, gate logit 0 → weight ½) with silent routed experts reproduces the dense model", async () => {
  const mixtral = await loadModel(MOE_DIR);
  const dense = await loadModel(DENSE_DIR);
  const silent = {
    ...mixtral,
    weights: {
      ...mixtral.weights,
      layers: mixtral.weights.layers.map((l): LlamaLayer => {
        if (l.mlp.kind !== "moe") throw new Error("expected MoE layers");
        return {
          ...l,
          mlp: { ...l.mlp, experts: l.mlp.experts.map((e) => ({ ...e, down: scaled(e.down, 0) })) },
        };
      }),
    },
  };
  await withTempDir(async (dir) => {
    await writeMoeCheckpoint(dir, silent, "qwen2_moe", MOE_DIR, {
      shared: (l) => {
        const mlp = dense.weights.layers[l]!.mlp as DenseMlp;
        return {
          mlp: { ...mlp, down: scaled(mlp.down, 2) },
          gate: { rows: 1, cols: 64, data: new Float32Array(64) },
        };
      },
    });
    const qwen = await loadModel(dir);
    assert.equal(qwen.config.moe?.normTopK, false);
    assert.equal(qwen.config.moe?.sharedHiddenDim, 172);
    const d = maxAbsDiff(forward(dense, ids(dense)), forward(qwen, ids(qwen)));
    assert.ok(d < 1e-4, `max |Δlogit| = ${d}`);
  });
});

Deno.test("OLMoE top-k without renormalisation: output = Σ p_e · expert_e over the chosen experts (hand-built router)", () => {
  // dim 2, 3 experts; expert e maps x to (e+1)·x through gate/up/down chosen so that
  // down(silu(gate x)·up x) is easy to compute by hand for x = (1, 0).
  const dim = 2;
  const expert = (scale: number): DenseMlp => ({
    kind: "dense",
    gate: { rows: 1, cols: dim, data: new Float32Array([1, 0]) },
    up: { rows: 1, cols: dim, data: new Float32Array([scale, 0]) },
    down: { rows: dim, cols: 1, data: new Float32Array([1, 2]) },
  });
  // Router logits for x = (1, 0): (0, ln 2, ln 4) → probs (1/7, 2/7, 4/7); top-2 = experts 2, 1.
  const router = {
    rows: 3,
    cols: dim,
    data: new Float32Array([0, 0, Math.LN2, 0, 2 * Math.LN2, 0]),
  };
  const layer = {
    attnNorm: new Float32Array(dim),
    q: { rows: 0, cols: dim, data: new Float32Array(0) },
    k: { rows: 0, cols: dim, data: new Float32Array(0) },
    v: { rows: 0, cols: dim, data: new Float32Array(0) },
    o: { rows: dim, cols: 0, data: new Float32Array(0) },
    mlpNorm: new Float32Array(dim),
    mlp: { kind: "moe" as const, router, experts: [expert(1), expert(2), expert(3)] },
  };
  const silu1 = 1 / (1 + Math.exp(-1));
  for (const normTopK of [false, true]) {
    const config = {
      dim,
      moe: { nExperts: 3, topK: 2, normTopK, expertHiddenDim: 1, denseLayers: [] },
    } as unknown as LlamaConfig;
    const out = new Float32Array(dim);
    mlpForward(
      { config, weights: { layers: [layer] } as never },
      0,
      new Float32Array([1, 0]),
      1,
      refKernels,
      out,
    );
    // expert e on (1, 0): silu(1) · scale_e · (1, 2).
    const [p1, p2] = [2 / 7, 4 / 7];
    const mix = normTopK ? (p1 * 2 + p2 * 3) / (p1 + p2) : p1 * 2 + p2 * 3;
    assert.ok(Math.abs(out[0]! - silu1 * mix) < 1e-6, `${normTopK}: ${out[0]} vs ${silu1 * mix}`);
    assert.ok(Math.abs(out[1]! - 2 * silu1 * mix) < 1e-6);
  }
});

Deno.test("Attention with q/k/v biases, RMSNorm over the q and k projections and clip_qkv equals a hand-written float64 version", () => {
  const dim = 8, nHeads = 2, nKvHeads = 1, headDim = 4, T = 3, eps = 1e-5, clip = 0.9;
  const qDim = nHeads * headDim, kvDim = nKvHeads * headDim;
  const m = (rows: number, cols: number, seed: number): Matrix => ({
    rows,
    cols,
    data: randomMatrix(rows * cols, seed, 0.8),
  });
  const layer: LlamaLayer = {
    attnNorm: new Float32Array(dim).fill(1),
    q: m(qDim, dim, 1),
    k: m(kvDim, dim, 2),
    v: m(kvDim, dim, 3),
    o: m(dim, qDim, 4),
    qBias: randomMatrix(qDim, 5, 0.5),
    kBias: randomMatrix(kvDim, 6, 0.5),
    vBias: randomMatrix(kvDim, 7, 0.5),
    qNorm: randomMatrix(qDim, 8, 1).map((x) => 1 + x),
    kNorm: randomMatrix(kvDim, 9, 1).map((x) => 1 + x),
    mlpNorm: new Float32Array(dim),
    mlp: { kind: "dense", gate: m(1, dim, 10), up: m(1, dim, 11), down: m(dim, 1, 12) },
  };
  const config: LlamaConfig = {
    dim,
    hiddenDim: 1,
    nLayers: 1,
    nHeads,
    nKvHeads,
    headDim,
    vocabSize: 4,
    maxSeqLen: 8,
    normEps: eps,
    ropeTheta: 10000,
    ropeStyle: "half",
    tiedEmbeddings: true,
    qkvBias: true,
    qkNorm: "projection",
    clipQkv: clip,
  };
  const x = randomMatrix(T * dim, 13, 1.5);
  const att = new Float32Array(T * qDim);
  const model = {
    config,
    weights: {
      embed: m(4, dim, 14),
      layers: [layer],
      norm: new Float32Array(dim),
      lmHead: m(4, dim, 14),
    },
  };
  selfAttention(model, 0, x, T, createKvCache(config, T), refKernels, att);

  // Reference, float64, written out.
  const project = (w: Matrix, b: Float32Array, norm: Float32Array) => {
    const out: number[][] = [];
    for (let t = 0; t < T; t++) {
      const row: number[] = [];
      for (let o = 0; o < w.rows; o++) {
        let s = b[o]!;
        for (let i = 0; i < dim; i++) s += w.data[o * dim + i]! * x[t * dim + i]!;
        row.push(s);
      }
      if (norm.length > 0) {
        const ms = row.reduce((a, v) => a + v * v, 0) / row.length;
        for (let o = 0; o < row.length; o++) row[o] = row[o]! / Math.sqrt(ms + eps) * norm[o]!;
      }
      out.push(row.map((v) => Math.min(clip, Math.max(-clip, v))));
    }
    return out;
  };
  const q = project(layer.q, layer.qBias!, layer.qNorm!);
  const k = project(layer.k, layer.kBias!, layer.kNorm!);
  const v = project(layer.v, layer.vBias!, new Float32Array(0));
  const rope = (row: number[], heads: number, pos: number) => {
    for (let h = 0; h < heads; h++) {
      for (let i = 0; i < headDim / 2; i++) {
        const f = pos / Math.pow(10000, (2 * i) / headDim);
        const a = row[h * headDim + i]!, b = row[h * headDim + i + headDim / 2]!;
        row[h * headDim + i] = a * Math.cos(f) - b * Math.sin(f);
        row[h * headDim + i + headDim / 2] = b * Math.cos(f) + a * Math.sin(f);
      }
    }
  };
  q.forEach((r, t) => rope(r, nHeads, t));
  k.forEach((r, t) => rope(r, nKvHeads, t));
  for (let t = 0; t < T; t++) {
    for (let h = 0; h < nHeads; h++) {
      const scores: number[] = [];
      for (let s = 0; s <= t; s++) {
        let d = 0;
        for (let i = 0; i < headDim; i++) d += q[t]![h * headDim + i]! * k[s]![i]!;
        scores.push(d / Math.sqrt(headDim));
      }
      const mx = Math.max(...scores);
      const e = scores.map((s) => Math.exp(s - mx));
      const z = e.reduce((a, b) => a + b, 0);
      for (let i = 0; i < headDim; i++) {
        let o = 0;
        for (let s = 0; s <= t; s++) o += (e[s]! / z) * v[s]![i]!;
        const got = att[t * qDim + h * headDim + i]!;
        assert.ok(Math.abs(got - o) < 1e-5, `t ${t} head ${h} dim ${i}: ${got} vs ${o}`);
      }
    }
  }
});

moe.test("MoE configs: Qwen2-MoE dense layers, OLMoE defaults, and bad expert counts name the field or tensor", async () => {
  const base = {
    hidden_size: 64,
    intermediate_size: 172,
    num_hidden_layers: 6,
    num_attention_heads: 8,
    vocab_size: 512,
  };
  const qwen = parseHfConfig({
    ...base,
    model_type: "qwen2_moe",
    decoder_sparse_step: 2,
    mlp_only_layers: [5],
    num_experts: 4,
    num_experts_per_tok: 2,
    moe_intermediate_size: 43,
    shared_expert_intermediate_size: 86,
    sliding_window: 32,
  }, "config.json");
  assert.deepEqual(qwen.moe?.denseLayers, [0, 2, 4, 5]);
  assert.equal(qwen.moe?.expertHiddenDim, 43);
  assert.equal(qwen.moe?.sharedHiddenDim, 86);
  assert.equal(qwen.moe?.normTopK, false);
  assert.equal(qwen.qkvBias, true);
  const olmoe = parseHfConfig({ ...base, model_type: "olmoe", clip_qkv: 8 }, "config.json");
  assert.deepEqual(
    [olmoe.moe?.nExperts, olmoe.moe?.topK, olmoe.moe?.normTopK, olmoe.qkNorm, olmoe.clipQkv],
    [64, 8, false, "projection", 8],
  );
  assert.throws(
    () => parseHfConfig({ ...base, model_type: "olmoe", num_experts: 4 }, "c.json"),
    /c\.json.*num_experts_per_tok 8 is more than num_experts 4/,
  );
  assert.throws(
    () => parseHfConfig({ ...base, model_type: "qwen2_moe", mlp_only_layers: ["1"] }, "c.json"),
    /"mlp_only_layers" must be a list of non-negative integers/,
  );

  const mixtral = await loadModel(MOE_DIR);
  await withTempDir(async (dir) => {
    // The file holds 4 experts per layer; a config declaring 3 must be refused.
    await writeMoeCheckpoint(dir, mixtral, "olmoe", MOE_DIR, { config: { num_experts: 3 } });
    await assert.rejects(
      () => loadModel(dir),
      /"model\.layers\.0\.mlp\.experts\.3\.gate_proj\.weight" exists but the config declares 3/,
    );
    // One more than the file holds: the missing expert is named.
    await writeMoeCheckpoint(dir, mixtral, "olmoe", MOE_DIR, { config: { num_experts: 5 } });
    await assert.rejects(
      () => loadModel(dir),
      /"model\.layers\.0\.mlp\.experts\.4\.gate_proj\.weight" is missing/,
    );
    // A shared expert the config promises but the file lacks.
    await writeMoeCheckpoint(dir, mixtral, "olmoe", MOE_DIR, {
      config: {
        model_type: "qwen2_moe",
        moe_intermediate_size: 43,
        shared_expert_intermediate_size: 43,
        qkv_bias: false,
      },
    });
    await assert.rejects(
      () => loadModel(dir),
      /"model\.layers\.0\.mlp\.shared_expert\.gate_proj\.weight" is missing/,
    );
  });
});

moe.test("OLMoE layout loads q/k norms and routes without renormalisation", async () => {
  const mixtral = await loadModel(MOE_DIR);
  await withTempDir(async (dir) => {
    await writeMoeCheckpoint(dir, mixtral, "olmoe", MOE_DIR, {
      qkNorms: (l) => ({
        q: new Float32Array(64).fill(1 + l / 10),
        k: new Float32Array(32).fill(1),
      }),
    });
    const olmoe = await loadModel(dir);
    assert.equal(olmoe.config.qkNorm, "projection");
    assert.equal(olmoe.config.moe?.normTopK, false);
    assert.equal(olmoe.weights.layers[3]!.qNorm![0], Math.fround(1.3));
    const logits = forward(olmoe, ids(olmoe));
    assert.ok(logits.every(Number.isFinite));
    // A different function from the Mixtral file (norms and unnormalised top-2 weights).
    assert.ok(maxAbsDiff(logits, forward(mixtral, ids(mixtral))) > 1e-2);
    // RMSNorm makes q and k scale-free: scaling q_proj and k_proj by 5 changes nothing
    // (up to the norm's epsilon).
    const bigger = {
      ...olmoe,
      weights: {
        ...olmoe.weights,
        layers: olmoe.weights.layers.map((l) => ({ ...l, q: scaled(l.q, 5), k: scaled(l.k, 5) })),
      },
    };
    const d = maxAbsDiff(logits, forward(bigger, ids(olmoe)));
    assert.ok(d < 1e-3, `max |Δlogit| = ${d}`);
  });
});
