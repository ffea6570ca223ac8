/**
 * AWQ end to end: the fold leaves the full-precision model unchanged on every dense family
 * (oracle §5.1), r = 0 is round-to-nearest and never beaten by it in the searched loss (§5.2),
 * what AWQ refuses, and stories260K against RTN.
 */

import assert from "node:assert/strict";
import { UnsupportedConfigError } from "../core/errors.ts";
import type { CalibrationSet } from "./calibration/set.ts";
import { drawCalibrationSet, methodCalibration } from "./calibration/set.ts";
import { refKernels } from "../kernels/ref/mod.ts";
import { wasmKernels } from "../kernels/wasm/mod.ts";
import {
  attnInput,
  createKvCache,
  embedTokens,
  forward,
  layerForward,
  selfAttention,
} from "../runners/forward.ts";
import { listLinears } from "../models/linears.ts";
import { loadModel } from "../models/load.ts";
import type {
  LlamaConfig,
  LlamaLayer,
  LlamaWeights,
  LoadedModel,
  Matrix,
} from "../models/types.ts";
import { getTask } from "../tasks/mod.ts";
import { bundledDataDir, needs } from "../testing/fixtures.ts";

const stories = await needs("hf-mirror");
import { random64 } from "../testing/random.ts";
import { stories260K } from "../testing/stories.ts";
import { awq } from "./awq.ts";
import { CLIP_DEFAULTS } from "./awq_clip.ts";
import { runAwq, voApplies } from "./awq_pipeline.ts";
import { awqQuantizeMatrix, awqSpec } from "./awq_quantizer.ts";
import { getMethod } from "./mod.ts";
import { rtn } from "./rtn.ts";
import { foldSmoothing, type LayerSmoothing } from "./smoothing.ts";
import { type QuantConfig, resolveParams } from "./types.ts";

const kernels = refKernels;
/** stories260K runs on the WASM kernels (the bench's default backend), about 5× the reference's speed. */
const fast = await wasmKernels();
const dataDir = bundledDataDir();
const GOLDEN = decodeURIComponent(new URL("../testing/golden", import.meta.url).pathname);
/** The dense golden families (random tiny checkpoints, `testing/golden/README.md`). */
const DENSE = ["llama_bias", "llama3", "mistral", "qwen2", "qwen3", "phi3", "gemma2", "opt"];

type Model = { config: LlamaConfig; weights: LlamaWeights };

async function golden(name: string): Promise<{ model: LoadedModel; tokens: number[] }> {
  const model = await loadModel(`${GOLDEN}/${name}`, { residence: "eager" });
  const expected = JSON.parse(await Deno.readTextFile(`${GOLDEN}/${name}/expected.json`));
  return { model, tokens: expected.tokens };
}

/** The same model with grouped-query attention expanded to one k/v head per query head. */
function toMha(m: Model): Model {
  const c = m.config;
  const g = c.nHeads / c.nKvHeads;
  const hd = c.headDim;
  if (g === 1) return m;
  const repeat = (w: Matrix): Matrix => {
    const data = new Float32Array(c.nHeads * hd * w.cols);
    for (let h = 0; h < c.nHeads; h++) {
      const src = Math.floor(h / g) * hd * w.cols;
      data.set(w.data.subarray(src, src + hd * w.cols), h * hd * w.cols);
    }
    return { rows: c.nHeads * hd, cols: w.cols, data };
  };
  const repeatBias = (b?: Float32Array) => b && repeat({ rows: b.length, cols: 1, data: b }).data;
  const layers = m.weights.layers.map((l): LlamaLayer => ({
    ...l,
    k: repeat(l.k),
    v: repeat(l.v),
    ...(l.kBias ? { kBias: repeatBias(l.kBias)! } : {}),
    ...(l.vBias ? { vBias: repeatBias(l.vBias)! } : {}),
  }));
  return { config: { ...c, nKvHeads: c.nHeads }, weights: { ...m.weights, layers } };
}

/** Largest |a − b| relative to the largest |b|. */
function relDiff(a: Float32Array, b: Float32Array): number {
  let d = 0, m = 0;
  for (let i = 0; i < a.length; i++) {
    d = Math.max(d, Math.abs(a[i]! - b[i]!));
    m = Math.max(m, Math.abs(b[i]!));
  }
  return d / m;
}

/** Positive scales `exp(u)`, u uniform in [−1, 1]. */
function randomScales(n: number, seed: number): Float32Array {
  return Float32Array.from(random64(n, seed), (u) => Math.exp(u));
}

/** A calibration set of random token windows (tiny golden vocabularies have no corpus). */
function randomCalibration(c: LlamaConfig, windows: number, T: number): CalibrationSet {
  const ids = random64(windows * T, 11, 1);
  const w = Array.from(
    { length: windows },
    (_, i) =>
      Int32Array.from(
        { length: T },
        (_, t) => Math.floor(Math.abs(ids[i * T + t]!) * c.vocabSize) % c.vocabSize,
      ),
  );
  return {
    spec: { source: "random", samples: windows, seqLen: T, seed: 11 },
    dataset: { id: "random", path: "", bytes: 0, sha256: "" },
    windows: w,
    offsets: w.map(() => 0),
    streamTokens: windows * T,
    tokensSha256: "",
    protocol: {},
  };
}

Deno.test("§5.1 fold invariance: random positive scales folded as AWQ does leave the FP logits unchanged (≤ 1e-5), every dense family, GQA and MHA", async () => {
  let voFolded = 0;
  for (const name of DENSE) {
    const { model, tokens } = await golden(name);
    for (const m of [model as Model, toMha(model)]) {
      const ref = forward(m, tokens);
      const layers = m.weights.layers.map((l, i): LayerSmoothing => {
        const s = (n: number, k: number) => randomScales(n, 100 * i + k);
        const mlp = l.mlp.kind === "dense" ? l.mlp : undefined;
        assert.ok(mlp);
        return {
          qkv: s(m.config.dim, 1),
          ...(voApplies(l) ? { o: s(l.o.cols, 2) } : {}),
          gateup: s(m.config.dim, 3),
          down: s(mlp.down.cols, 4),
        };
      });
      voFolded += layers.filter((l) => l.o).length;
      const folded = { config: m.config, weights: foldSmoothing(m.weights, layers, m.config) };
      // The weights did change.
      assert.notDeepEqual(folded.weights.layers[0]!.q.data, m.weights.layers[0]!.q.data);
      const d = relDiff(forward(folded, tokens), ref);
      assert.ok(d <= 1e-5, `${name} (${m.config.nKvHeads} kv heads): ${d}`);
    }
  }
  // v→o ran on the MHA variants (llama_bias, mistral, qwen2, phi3) and OPT.
  assert.ok(voFolded >= 10, `${voFolded} v→o folds`);
});

Deno.test("the AWQ transform (searched scales, no clipping) leaves the FP logits unchanged on every dense family", async () => {
  for (const name of DENSE) {
    const { model, tokens } = await golden(name);
    for (const m of [model as Model, toMha(model)]) {
      const calibration = randomCalibration(m.config, 2, 12);
      const q: QuantConfig = {
        wBits: 3,
        aBits: 16,
        granularity: "group",
        groupSize: 16,
        symmetric: false,
      };
      const params = resolveParams(awq, { clip: false });
      const t = await awq.transform!(m, q, params, { kernels, calibration });
      const d = relDiff(forward(t, tokens), forward(m, tokens));
      assert.ok(d <= 1e-5, `${name} (${m.config.nKvHeads} kv heads): ${d}`);
      assert.ok(t.notes.some((n) => n.startsWith("chosen r per block")));
    }
  }
});

Deno.test("AWQ refuses what it cannot handle, naming it: MoE, per-tensor, activation bits, ungated GELU MLPs, online rotations", async () => {
  const q: QuantConfig = { wBits: 4, aBits: 16, granularity: "channel", symmetric: false };
  const { model: moe } = await golden("mixtral");
  const ctx = { kernels, calibration: randomCalibration(moe.config, 1, 8) };
  const params = resolveParams(awq);
  await assert.rejects(
    awq.quantize(moe, q, params, ctx),
    (e: unknown) => e instanceof UnsupportedConfigError && /Mixture-of-Experts/.test(e.message),
  );
  const { model: opt } = await golden("opt");
  const octx = { kernels, calibration: randomCalibration(opt.config, 1, 8) };
  await assert.rejects(
    awq.quantize(opt, { ...q, granularity: "tensor" }, params, octx),
    UnsupportedConfigError,
  );
  await assert.rejects(awq.quantize(opt, { ...q, aBits: 8 }, params, octx), /weight-only/);
  const gelu = { config: { ...opt.config, mlpAct: "gelu_tanh" as const }, weights: opt.weights };
  await assert.rejects(awq.quantize(gelu, q, params, octx), /ungated gelu_tanh MLP/);
  const rotated = {
    ...opt,
    weights: { ...opt.weights, online: { down: { kind: "hadamard" as const, n: 64 } } },
  };
  await assert.rejects(awq.quantize(rotated, q, params, octx), /online rotations/);
  await assert.rejects(awq.quantize(opt, q, params, { kernels }), /needs a calibration set/);
});

Deno.test("§5.2 llm-awq mode: r = 0 is RTN with AWQ's quantizer (a grid of one point, no clip, reproduces it bit for bit); the chosen loss is ≤ RTN's in every group", async () => {
  const { model } = await golden("llama_bias");
  const m = toMha(model);
  const calibration = randomCalibration(m.config, 3, 16);
  const q: QuantConfig = { wBits: 3, aBits: 16, granularity: "channel", symmetric: false };
  const one = await awq.quantize(m, q, resolveParams(awq, { grid: 1, clip: false }), {
    kernels,
    calibration,
  });
  const spec = awqSpec(q);
  for (const { site, matrix } of listLinears(m.weights)) {
    const want = awqQuantizeMatrix(matrix.data, matrix.rows, matrix.cols, spec).dequantized;
    const got = listLinears(one.weights).find((x) => x.site.name === site.name)!.matrix.data;
    assert.deepEqual(got, want, site.name);
  }
  // Every norm and bias is unchanged too (s ≡ 1 folds to nothing).
  assert.deepEqual(one.weights.layers[0]!.attnNorm, m.weights.layers[0]!.attnNorm);
  // The full grid: r = 0's loss is RTN's, and the chosen one is never above it.
  for (const duoScaling of [false, true]) {
    const r = runAwq(m, calibration.windows, {
      spec,
      rule: { duoScaling, grid: 20 },
      scale: true,
      propagate: "fp",
      quantize: true,
      kernels,
    });
    assert.equal(r.groups.length, 2 * 4);
    for (const g of r.groups) {
      if (!duoScaling) {
        assert.equal(g.rtnLoss, g.losses[0], `${g.layer} ${g.group}`);
        assert.ok(g.loss <= g.rtnLoss, `${g.layer} ${g.group}: ${g.loss} > ${g.rtnLoss}`);
      }
      assert.equal(g.loss, Math.min(...g.losses));
      assert.equal(g.losses.indexOf(g.loss), Math.round(g.ratio * 20));
    }
  }
});

Deno.test("propagate: block 1 is searched on the full-precision block 0's output (fp) or the quantized one's (quantized)", async () => {
  const { model } = await golden("llama_bias");
  const m = toMha(model);
  const calibration = randomCalibration(m.config, 2, 12);
  const q: QuantConfig = { wBits: 3, aBits: 16, granularity: "channel", symmetric: false };
  const spec = awqSpec(q);
  const c = m.config;
  const seen: number[] = [];
  for (const propagate of ["fp", "quantized"] as const) {
    const r = runAwq(m, calibration.windows, {
      spec,
      rule: { duoScaling: false, grid: 20 },
      scale: true,
      clip: CLIP_DEFAULTS,
      propagate,
      quantize: true,
      kernels,
    });
    // Independently: block 1's inputs, then RTN's loss of its q/k/v group on them.
    const block0 = propagate === "fp" ? m : { config: c, weights: r.weights };
    const l1 = m.weights.layers[1]!;
    const rtnLayer = {
      ...l1,
      ...Object.fromEntries(
        (["q", "k", "v"] as const).map((k) => [k, {
          ...l1[k],
          data: awqQuantizeMatrix(l1[k].data, l1[k].rows, l1[k].cols, spec).dequantized,
        }]),
      ),
    };
    const withLayer1 = (layer: LlamaLayer): Model => ({
      config: c,
      weights: { ...m.weights, layers: [m.weights.layers[0]!, layer] },
    });
    let s = 0, n = 0;
    for (const w of calibration.windows) {
      const x = embedTokens(m, w);
      const T = w.length;
      layerForward(block0, 0, x, T, createKvCache(c, T), kernels);
      const out = (mm: Model) => {
        const cache = createKvCache(c, T);
        const xn = attnInput(mm, 1, x, T, kernels);
        const att = new Float32Array(T * c.nHeads * c.headDim);
        selfAttention(mm, 1, xn, T, cache, kernels, att);
        const y = new Float32Array(T * c.dim);
        kernels.matmul(att, T, l1.o, y);
        return y.map((v, i) => v + (l1.oBias ? l1.oBias[i % c.dim]! : 0));
      };
      const a = out(withLayer1(l1)), b = out(withLayer1(rtnLayer));
      for (let i = 0; i < a.length; i++) s += (a[i]! - b[i]!) ** 2;
      n += a.length;
    }
    const g = r.groups.find((x) => x.layer === 1 && x.group === "qkv")!;
    assert.ok(
      Math.abs(g.rtnLoss - s / n) <= 1e-6 * (s / n),
      `${propagate}: ${g.rtnLoss} vs ${s / n}`,
    );
    seen.push(g.rtnLoss);
  }
  // The two inputs differ enough for the check to tell them apart.
  assert.ok(Math.abs(seen[0]! - seen[1]!) > 1e-3 * seen[0]!, `${seen}`);
});

/** Mean next-token negative log-likelihood of a model over calibration windows. */
function meanNll(m: Model, windows: readonly Int32Array[]): number {
  let s = 0, n = 0;
  for (const w of windows) {
    const logits = forward(m, w, { kernels: fast });
    const V = m.config.vocabSize;
    for (let t = 0; t + 1 < w.length; t++) {
      let max = -Infinity;
      for (let v = 0; v < V; v++) max = Math.max(max, logits[t * V + v]!);
      let z = 0;
      for (let v = 0; v < V; v++) z += Math.exp(logits[t * V + v]! - max);
      s += Math.log(z) + max - logits[t * V + w[t + 1]!]!;
      n++;
    }
  }
  return s / n;
}

stories.test("stories260K: AWQ is not worse than RTN on the calibration loss, and its perplexity is reported (W4 and W3 per channel)", async () => {
  const model = await stories260K();
  // AWQ's recipe over TinyStories' calib half; fewer documents and shorter blocks than the
  // defaults (128 × 512) keep the test quick.
  const spec = methodCalibration(awq, { samples: 48, seqLen: 256 });
  const calibration = await drawCalibrationSet(spec, model.tokenizer, 512, dataDir);
  assert.equal(calibration.spec.recipe, "pileval-awq");
  const task = getTask("tinystories:eval");
  const ppl = async (weights: LlamaWeights) =>
    (await task.run({ config: model.config, weights, tokenizer: model.tokenizer }, {
      kernels: fast,
      dataDir,
      limit: 32,
    })).metrics.find((x) => x.metric === "ppl")!.value;
  // Per channel: stories260K's inputs are 64 (q/k/v/gate/up and o) and 172 (down) wide, so
  // AWQ's g128 does not divide them (and g32 does not divide 172); per-channel groups are whole
  // rows, where AWQ's quantizer needs no short group.
  for (const bits of [4, 3]) {
    const q: QuantConfig = { wBits: bits, aBits: 16, granularity: "channel", symmetric: false };
    const a = await awq.quantize(model, q, resolveParams(awq), { kernels: fast, calibration });
    const r = await rtn.quantize(model, q, {}, { kernels: fast });
    const totals = a.diagnostics!.statTotals;
    assert.ok(totals.scaleLoss! <= totals.scaleLossRtn!, JSON.stringify(totals));
    const nllA = meanNll({ config: model.config, weights: a.weights }, calibration.windows);
    const nllR = meanNll({ config: model.config, weights: r.weights }, calibration.windows);
    const pa = await ppl(a.weights), pr = await ppl(r.weights);
    console.log(
      `W${bits} per channel: calibration NLL AWQ ${nllA.toFixed(4)} RTN ${nllR.toFixed(4)}; ` +
        `eval ppl (32 windows) AWQ ${pa.toFixed(3)} RTN ${pr.toFixed(3)}; searched loss ` +
        `${totals.scaleLoss!.toFixed(4)} vs RTN ${totals.scaleLossRtn!.toFixed(4)}`,
    );
    assert.ok(nllA <= nllR, `W${bits}: calibration NLL AWQ ${nllA} > RTN ${nllR}`);
    assert.ok(Number.isFinite(pa) && pa > 1);
    // Packed codes reproduce the dequantized weights.
    assert.equal(a.packed.size, 5 * 7);
    assert.ok(a.notes.some((n) => /v→o scaling skipped in every block: v is 32×64/.test(n)));
  }
});

stories.test("awq+gptq: AWQ's scaling and clipping, then GPTQ on the transformed weights", async () => {
  const model = await stories260K();
  const chain = getMethod("awq+gptq");
  assert.equal(chain.taxonomy, "compensation");
  assert.equal(chain.calibration?.recipe, "pileval-awq");
  assert.equal(chain.rangeIncludesZero, undefined, "GPTQ rounds: zero in range");
  assert.equal(
    awq.rangeIncludesZero!({ wBits: 4, aBits: 16, granularity: "channel", symmetric: false }),
    false,
  );
  const spec = methodCalibration(chain, { samples: 16, seqLen: 128 });
  const calibration = await drawCalibrationSet(spec, model.tokenizer, 512, dataDir);
  const q: QuantConfig = { wBits: 4, aBits: 16, granularity: "channel", symmetric: false };
  const qm = await chain.quantize(model, q, resolveParams(chain), { kernels: fast, calibration });
  assert.ok(qm.notes.some((n) => n === "awq transform: scaled and clipped, not rounded"));
  assert.ok(qm.notes.includes("weights: gptq"));
  assert.ok(qm.diagnostics!.statTotals.loss! > 0, "GPTQ's own diagnostics");
  // The norms carry AWQ's scales; the weights are on GPTQ's grid.
  assert.notDeepEqual(qm.weights.layers[0]!.attnNorm, model.weights.layers[0]!.attnNorm);
  assert.equal(qm.packed.size, 35);
});
