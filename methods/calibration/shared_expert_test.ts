/**
 * Shared experts (Qwen2-MoE) through the calibration paths: sequential GPTQ-style calibration,
 * activation statistics and smoothing, on stories260K-moe given a shared expert (the dense FFN
 * of stories260K) with a sigmoid gate and q/k/v biases.
 */
import assert from "node:assert/strict";
import { refKernels } from "../../kernels/ref/mod.ts";
import { forward } from "../../runners/forward.ts";
import { loadModel } from "../../models/load.ts";
import type {
  DenseMlp,
  LlamaConfig,
  LlamaLayer,
  LlamaWeights,
  MoeMlp,
} from "../../models/types.ts";
import { foldSmoothing } from "../smoothing.ts";
import { bundledDataDir, needs, sharedPath } from "../../testing/fixtures.ts";
import { randomMatrix } from "../../testing/random.ts";
import { collectActivationStats } from "./act_stats.ts";
import { type LinearInputs, quantizeSequential } from "./sequential.ts";
import { type CalibrationSet, DEFAULT_CALIBRATION, drawCalibrationSet } from "./set.ts";

const moeHf = await needs("models/stories260K-moe", "models/stories260K-hf");

async function qwenLike(): Promise<{ config: LlamaConfig; weights: LlamaWeights }> {
  const moe = await loadModel(sharedPath("models", "stories260K-moe"));
  const dense = await loadModel(sharedPath("models", "stories260K-hf"));
  const layers = moe.weights.layers.map((l, i): LlamaLayer => {
    if (l.mlp.kind !== "moe") throw new Error("MoE expected");
    return {
      ...l,
      qBias: randomMatrix(64, 10 + i, 0.1),
      kBias: randomMatrix(32, 20 + i, 0.1),
      vBias: randomMatrix(32, 30 + i, 0.1),
      mlp: {
        ...l.mlp,
        shared: dense.weights.layers[i]!.mlp as DenseMlp,
        sharedGate: { rows: 1, cols: 64, data: randomMatrix(64, 40 + i, 0.3) },
      },
    };
  });
  return {
    config: {
      ...moe.config,
      qkvBias: true,
      moe: { ...moe.config.moe!, normTopK: false, sharedHiddenDim: 172 },
    },
    weights: { ...moe.weights, layers },
  };
}

async function smallSet(model: { config: LlamaConfig }): Promise<CalibrationSet> {
  const tok = (await loadModel(sharedPath("models", "stories260K-moe"))).tokenizer;
  return await drawCalibrationSet(
    { ...DEFAULT_CALIBRATION, samples: 4, seqLen: 32 },
    tok,
    model.config.maxSeqLen,
    bundledDataDir(),
  );
}

moeHf.test("sequential calibration: the shared expert is calibrated on every token, routed experts on theirs", async () => {
  const model = await qwenLike();
  const calib = await smallSet(model);
  const N = calib.windows.reduce((n, w) => n + w.length, 0);
  const seen = new Map<string, LinearInputs>();
  const result = quantizeSequential(model, calib, (inp) => {
    seen.set(inp.site.name, inp);
    return { matrix: inp.matrix };
  }, { kernels: refKernels });
  for (let l = 0; l < 5; l++) {
    for (const kind of ["gate", "up", "down"]) {
      const s = seen.get(`layers.${l}.shared.${kind}`);
      assert.ok(s, `layers.${l}.shared.${kind} calibrated`);
      assert.equal(s.tokens, N);
      assert.equal(s.site.expert, 4);
    }
    const routed = [0, 1, 2, 3].map((e) => seen.get(`layers.${l}.experts.${e}.gate`)!.tokens);
    assert.equal(routed.reduce((a, b) => a + b, 0), 2 * N);
    // The shared expert's down input is 172 wide, the routed experts' 43.
    assert.equal(seen.get(`layers.${l}.shared.down`)!.matrix.cols, 172);
  }
  // Identity replacement: the model computes what it did.
  const ids = calib.windows[0]!;
  const a = forward(model, ids);
  const b = forward({ config: model.config, weights: result.weights }, ids);
  assert.deepEqual(b, a);
});

moeHf.test("smoothing a block with a shared expert scales every reader of the MLP input: logits unchanged", async () => {
  const model = await qwenLike();
  const layers = model.weights.layers.map((_, l) => ({
    qkv: randomMatrix(64, 50 + l, 0.5).map((x) => Math.exp(x)),
    gateup: randomMatrix(64, 60 + l, 0.5).map((x) => Math.exp(x)),
  }));
  const smoothed = { config: model.config, weights: foldSmoothing(model.weights, layers) };
  const ids = [1, 403, 261, 16, 30, 75, 9, 300];
  const a = forward(model, ids);
  const b = forward(smoothed, ids);
  let d = 0;
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i]! - b[i]!));
  assert.ok(d < 1e-4, `max |Δlogit| = ${d}`);
  // Without scaling the shared gate the function would change: the check can fail.
  const l0 = smoothed.weights.layers[0]!;
  assert.ok(l0.mlp.kind === "moe" && l0.mlp.sharedGate);
  const originalGate = (i: number) => (model.weights.layers[i]!.mlp as MoeMlp).sharedGate!;
  const broken = {
    config: model.config,
    weights: {
      ...smoothed.weights,
      layers: smoothed.weights.layers.map((l, i): LlamaLayer => ({
        ...l,
        mlp: { ...(l.mlp as MoeMlp), sharedGate: originalGate(i) },
      })),
    },
  };
  const c = forward(broken, ids);
  let e = 0;
  for (let i = 0; i < a.length; i++) e = Math.max(e, Math.abs(a[i]! - c[i]!));
  assert.ok(e > 1e-3);
});

moeHf.test("activation statistics: the shared expert is the last expert, sees every token, uncapped", async () => {
  const model = await qwenLike();
  const calib = await smallSet(model);
  const N = calib.windows.reduce((n, w) => n + w.length, 0);
  const stats = collectActivationStats(model, calib.windows, refKernels, { expertTokenCap: 10 });
  for (const layer of stats) {
    assert.equal(layer.experts!.length, 5);
    const shared = layer.experts![4]!;
    assert.equal(shared.tokens, N);
    assert.equal(shared.down.absMax.length, 172);
    for (const e of layer.experts!.slice(0, 4)) assert.ok(e.tokens <= 10);
  }
});
