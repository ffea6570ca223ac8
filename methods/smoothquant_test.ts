import assert from "node:assert/strict";
import { drawCalibrationSet } from "./calibration/set.ts";
import { refKernels } from "../kernels/ref/mod.ts";
import { forward } from "../runners/forward.ts";
import type { LlamaWeights } from "../models/types.ts";
import { getTask } from "../tasks/mod.ts";
import { bundledDataDir, needs } from "../testing/fixtures.ts";
import { stories260K } from "../testing/stories.ts";
import { applyActivationQuant } from "./activations.ts";
import { crossquant } from "./crossquant.ts";
import { getMethod } from "./mod.ts";
import { columnAbsMax, smoothingFactors, smoothquant, smoothQuantAlpha } from "./smoothquant.ts";
import { type QuantConfig, resolveParams } from "./types.ts";
import { DEFAULT_ACT_OPTIONS, ZeroCounter } from "../core/act_quantizer.ts";

const stories = await needs("hf-mirror");

const dataDir = bundledDataDir();
const kernels = refKernels;
const SMALL_CALIB = { source: "tinystories", samples: 8, seqLen: 64, seed: 0 };
const TOKENS = [1, 403, 407, 261, 378, 429, 282, 344, 306, 262, 477, 379, 270, 274, 341, 269];

async function setup() {
  const model = await stories260K();
  const calibration = await drawCalibrationSet(
    SMALL_CALIB,
    model.tokenizer,
    model.config.maxSeqLen,
    dataDir,
  );
  return { model, calibration };
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

Deno.test("smoothing factors by hand: s = max|X|^α / max|W|^(1−α), floored at 1e-5", () => {
  // α = 0.5: √4/√1 = 2, √1/√4 = 0.5; a channel never active → floor.
  const s = smoothingFactors(Float32Array.from([4, 1, 0]), Float32Array.from([1, 4, 9]), 0.5);
  assert.deepEqual([...s].map((v) => Math.fround(v)), [2, 0.5, Math.fround(1e-5)]);
  // α = 1: all of the activation range moves to the weights.
  assert.deepEqual([...smoothingFactors(Float32Array.from([3]), Float32Array.from([7]), 1)], [3]);
  // The weight maximum runs over every matrix sharing the input.
  const wMax = columnAbsMax([
    { rows: 2, cols: 2, data: Float32Array.from([1, -5, 2, 0]) },
    { rows: 1, cols: 2, data: Float32Array.from([-3, 1]) },
  ]);
  assert.deepEqual([...wMax], [3, 5]);
});

Deno.test("SmoothQuant α defaults follow the official README per family, 0.5 otherwise", () => {
  assert.equal(smoothQuantAlpha("meta-llama/Llama-2-7b-hf"), 0.85);
  assert.equal(smoothQuantAlpha("meta-llama/Llama-2-70b-hf"), 0.9);
  assert.equal(smoothQuantAlpha("mistralai/Mixtral-8x7B-v0.1"), 0.8);
  assert.equal(smoothQuantAlpha("stories260K"), 0.5);
});

stories.test("SmoothQuant and static CrossQuant transforms leave the full-precision logits unchanged (1e-5)", async () => {
  const { model, calibration } = await setup();
  const fp = forward(model, TOKENS);
  const q: QuantConfig = {
    wBits: 8,
    aBits: 8,
    granularity: "channel",
    symmetric: true,
    act: DEFAULT_ACT_OPTIONS,
  };
  for (const alpha of [0.5, 0.85]) {
    const t = await smoothquant.transform!(model, q, { alpha }, { kernels, calibration });
    assert.notDeepEqual(t.weights.layers[0]!.attnNorm, model.weights.layers[0]!.attnNorm);
    assert.ok(relDiff(forward(t, TOKENS), fp) < 1e-5, `smoothquant α=${alpha}`);
  }
  const params = resolveParams(crossquant, { variant: "static", alpha: 0.3 });
  const t = await crossquant.transform!(model, q, params, { kernels, calibration });
  const unquantized: LlamaWeights = { ...t.weights, activations: undefined };
  assert.ok(relDiff(forward({ config: model.config, weights: unquantized }, TOKENS), fp) < 1e-5);
  // The down input is folded into up's rows: its weights did change.
  const mlp = t.weights.layers[0]!.mlp;
  assert.ok(
    mlp.kind === "dense" &&
      mlp.up.data[0] !== (model.weights.layers[0]!.mlp as typeof mlp).up.data[0],
  );
});

stories.test("static CrossQuant: the folded model quantizes exactly like the unfolded one", async () => {
  const { model, calibration } = await setup();
  const q: QuantConfig = {
    wBits: 8,
    aBits: 4,
    granularity: "channel",
    symmetric: true,
    act: DEFAULT_ACT_OPTIONS,
  };
  const params = resolveParams(crossquant, { variant: "static" });
  const t = await crossquant.transform!(model, q, params, { kernels, calibration });
  const aq = t.weights.activations!;
  // Unfolded: original weights, the same calibrated channel maxima, nothing folded.
  const unfolded = {
    ...aq,
    layers: aq.layers!.map((sites) =>
      Object.fromEntries(
        Object.entries(sites).map(([k, v]) => [k, { channelMax: v!.channelMax! }]),
      )
    ),
  };
  const a = forward(t, TOKENS);
  const b = forward(
    { config: model.config, weights: { ...model.weights, activations: unfolded } },
    TOKENS,
  );
  assert.ok(relDiff(a, b) < 1e-4, `${relDiff(a, b)}`);
  // And A4 quantization does change the logits.
  assert.ok(relDiff(b, forward(model, TOKENS)) > 1e-3);
});

stories.test("W8A8 SmoothQuant stays within 1 % of FP32 perplexity on the eval half; chains run", async () => {
  const { model, calibration } = await setup();
  const task = getTask("tinystories:eval");
  const ppl = async (weights: LlamaWeights) =>
    (await task.run({ config: model.config, weights, tokenizer: model.tokenizer }, {
      kernels,
      dataDir,
      limit: 16,
    })).metrics.find((m) => m.metric === "ppl")!.value;
  const q: QuantConfig = {
    wBits: 8,
    aBits: 8,
    granularity: "channel",
    symmetric: true,
    act: DEFAULT_ACT_OPTIONS,
  };
  const fp = await ppl(model.weights);
  const sq = applyActivationQuant(
    await smoothquant.quantize(model, q, { alpha: 0.5 }, { kernels, calibration }),
    q,
    { kernels, calibration },
  );
  assert.equal(sq.weights.activations?.bits, 8);
  const p = await ppl(sq.weights);
  assert.ok(Math.abs(p / fp - 1) < 0.01, `W8A8 ${p} vs FP ${fp}`);
  assert.ok(
    sq.activationZeros && sq.activationZeros.fraction >= 0 && sq.activationZeros.fraction < 1,
  );

  const chain = getMethod("smoothquant+gptq");
  assert.equal(chain.taxonomy, "compensation");
  assert.ok("smoothquant.alpha" in chain.params && "gptq.actOrder" in chain.params);
  const cq = await chain.quantize(
    model,
    q,
    resolveParams(chain, { "smoothquant.alpha": 0.5 }),
    { kernels, calibration },
  );
  assert.ok(cq.notes.some((n) => n.includes("smoothquant α=0.5")));
  const pc = await ppl(applyActivationQuant(cq, q, { kernels, calibration }).weights);
  assert.ok(Math.abs(pc / fp - 1) < 0.01, `smoothquant+gptq W8A8 ${pc} vs FP ${fp}`);
  assert.throws(() => getMethod("gptq+rtn"), /cannot start a chain/);
});

stories.test("bmm: the q, k and v outputs are fake-quantized too, every element counted", async () => {
  const { model } = await setup();
  const c = model.config;
  const base = { bits: 4, kernel: "uniform" as const, options: DEFAULT_ACT_OPTIONS };
  const run = (bmm: boolean) => {
    const zeroCounter = new ZeroCounter();
    const aq = { ...base, options: { ...DEFAULT_ACT_OPTIONS, bmm } };
    const logits = forward({ config: c, weights: { ...model.weights, activations: aq } }, TOKENS, {
      zeroCounter,
    });
    return { logits, zeroCounter };
  };
  const off = run(false), on = run(true);
  assert.equal(off.zeroCounter.total.bmm, undefined);
  const T = TOKENS.length;
  const kv = c.nKvHeads * c.headDim;
  assert.equal(on.zeroCounter.total.bmm, c.nLayers * T * (c.nHeads * c.headDim + 2 * kv));
  // The four linear-input sites are counted in both runs: q/k/v, o, gate/up, down.
  assert.equal(on.zeroCounter.total.qkv, c.nLayers * T * c.dim);
  assert.equal(on.zeroCounter.total.down, c.nLayers * T * c.hiddenDim);
  assert.ok(relDiff(on.logits, off.logits) > 1e-4);
});
