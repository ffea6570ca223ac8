import assert from "node:assert/strict";
import { withZeroRouters } from "../../testing/moe.ts";
import { refKernels } from "../../kernels/ref/mod.ts";
import { createKvCache, embedTokens, layerForward } from "../../runners/forward.ts";
import { loadModel } from "../../models/load.ts";
import type { LlamaWeights, Matrix } from "../../models/types.ts";
import { bundledDataDir, needs, sharedPath } from "../../testing/fixtures.ts";
import { stories260K } from "../../testing/stories.ts";
import {
  type LinearInputs,
  type LinearQuantizer,
  quantizeSequential,
  relativeReconstructionError,
} from "./sequential.ts";
import { type CalibrationSet, DEFAULT_CALIBRATION, drawCalibrationSet } from "./set.ts";
import { accumulate, type Accumulator, complete, newAccumulator } from "./gram.ts";
import { wasmKernels } from "../../kernels/wasm/mod.ts";

const stories = await needs("hf-mirror");
const storiesMoe = await needs("hf-mirror", "models/stories260K-moe");

const dataDir = bundledDataDir();
const kernels = refKernels;

async function smallSet(): Promise<CalibrationSet> {
  const model = await stories260K();
  return await drawCalibrationSet(
    { ...DEFAULT_CALIBRATION, samples: 4, seqLen: 32 },
    model.tokenizer,
    model.config.maxSeqLen,
    dataDir,
  );
}

/** Runs the pipeline with `fn` deciding each linear's replacement; records every input seen. */
function collect(
  model: { config: Awaited<ReturnType<typeof stories260K>>["config"]; weights: LlamaWeights },
  calib: CalibrationSet,
  fn: (inp: LinearInputs) => Matrix = (inp) => inp.matrix,
  trueSequential = true,
) {
  const seen = new Map<string, LinearInputs>();
  const quantize: LinearQuantizer = (inp) => {
    seen.set(inp.site.name, { ...inp, gram: inp.gram.slice() });
    return { matrix: fn(inp) };
  };
  const result = quantizeSequential(model, calib, quantize, { kernels, trueSequential });
  return { seen, result };
}

/** `Σ x xᵀ` of layer `l`'s q input over the calibration windows, by a plain forward. */
function gramOfAttentionInput(
  model: { config: Awaited<ReturnType<typeof stories260K>>["config"]; weights: LlamaWeights },
  calib: CalibrationSet,
  l: number,
): Float64Array {
  const dim = model.config.dim;
  const g = new Float64Array(dim * dim);
  for (const w of calib.windows) {
    const x = embedTokens(model, w);
    const cache = createKvCache(model.config, w.length);
    for (let i = 0; i < l; i++) layerForward(model, i, x, w.length, cache, kernels);
    layerForward(model, l, x, w.length, cache, kernels, (kind, xn, T) => {
      if (kind !== "q") return;
      for (let t = 0; t < T; t++) {
        for (let a = 0; a < dim; a++) {
          for (let b = 0; b < dim; b++) g[a * dim + b]! += xn[t * dim + a]! * xn[t * dim + b]!;
        }
      }
      return true;
    });
  }
  return g;
}

function maxRelDiff(a: Float64Array, b: Float64Array): number {
  let num = 0, den = 0;
  for (let i = 0; i < a.length; i++) {
    num = Math.max(num, Math.abs(a[i]! - b[i]!));
    den = Math.max(den, Math.abs(b[i]!));
  }
  return num / den;
}

stories.test("layer 0's q Gram is Σ x xᵀ of the RMS-normalized embeddings (computed by hand)", async () => {
  const model = await stories260K();
  const calib = await smallSet();
  const { seen, result } = collect(model, calib);
  const { dim, normEps } = model.config;
  const norm = model.weights.layers[0]!.attnNorm;
  const g = new Float64Array(dim * dim);
  for (const w of calib.windows) {
    for (const id of w) {
      const e = model.weights.embed.data.subarray(id * dim, (id + 1) * dim);
      let ss = 0;
      for (const v of e) ss += v * v;
      const inv = 1 / Math.sqrt(ss / dim + normEps);
      for (let a = 0; a < dim; a++) {
        for (let b = 0; b < dim; b++) {
          g[a * dim + b]! += e[a]! * inv * norm[a]! * e[b]! * inv * norm[b]!;
        }
      }
    }
  }
  const q0 = seen.get("layers.0.q")!;
  assert.equal(q0.tokens, 4 * 32);
  assert.equal(q0.sequences, 4);
  assert.ok(maxRelDiff(q0.gram, g) < 1e-5, `max rel diff ${maxRelDiff(q0.gram, g)}`);
  // Unchanged weights: zero reconstruction error everywhere, and all 35 linears visited in order.
  assert.equal(result.diagnostics.length, 35);
  assert.ok(result.diagnostics.every((d) => d.relError === 0));
  assert.deepEqual(result.diagnostics.slice(0, 7).map((d) => d.kind), [
    "q",
    "k",
    "v",
    "o",
    "gate",
    "up",
    "down",
  ]);
});

stories.test("layer 0's down Gram (172 columns: several row blocks of the lower triangle) is Σ x xᵀ, symmetric", async () => {
  const model = await stories260K();
  const calib = await smallSet();
  const { seen } = collect(model, calib);
  const n = model.config.hiddenDim;
  const g = new Float64Array(n * n);
  for (const w of calib.windows) {
    const x = embedTokens(model, w);
    const cache = createKvCache(model.config, w.length);
    layerForward(model, 0, x, w.length, cache, kernels, (kind, h, T) => {
      if (kind !== "down") return;
      for (let t = 0; t < T; t++) {
        for (let a = 0; a < n; a++) {
          for (let b = 0; b < n; b++) g[a * n + b]! += h[t * n + a]! * h[t * n + b]!;
        }
      }
      return true;
    });
  }
  const got = seen.get("layers.0.down")!.gram;
  assert.ok(maxRelDiff(got, g) < 1e-5, `max rel diff ${maxRelDiff(got, g)}`);
  for (let a = 0; a < n; a++) {
    for (let b = 0; b < a; b++) assert.equal(got[b * n + a], got[a * n + b], `(${b}, ${a})`);
  }
});

stories.test("with unchanged weights the staged and one-stage passes see the same inputs", async () => {
  const model = await stories260K();
  const calib = await smallSet();
  const staged = collect(model, calib, undefined, true);
  const single = collect(model, calib, undefined, false);
  assert.equal(staged.seen.size, 35);
  for (const [name, inp] of staged.seen) {
    const d = maxRelDiff(inp.gram, single.seen.get(name)!.gram);
    assert.ok(d < 1e-5, `${name}: ${d}`);
    assert.deepEqual([...inp.absMax], [...single.seen.get(name)!.absMax]);
  }
});

stories.test("the next block is calibrated on the quantized block's outputs", async () => {
  const model = await stories260K();
  const calib = await smallSet();
  const zeroDown = (inp: LinearInputs): Matrix =>
    inp.site.name === "layers.0.down"
      ? { ...inp.matrix, data: new Float32Array(inp.matrix.data.length) }
      : inp.matrix;
  const { seen, result } = collect(model, calib, zeroDown);
  const expected = gramOfAttentionInput({ ...model, weights: result.weights }, calib, 1);
  const fp = gramOfAttentionInput(model, calib, 1);
  const got = seen.get("layers.1.q")!.gram;
  assert.ok(maxRelDiff(got, expected) < 1e-5);
  assert.ok(maxRelDiff(got, fp) > 1e-2, "the FP inputs would differ");
  // Zeroing a layer is a total loss of its output: relative error 1.
  const d = result.diagnostics.find((x) => x.name === "layers.0.down")!;
  assert.ok(Math.abs(d.relError - 1) < 1e-6);
  // The original model is untouched.
  assert.ok(model.weights.layers[0]!.mlp.kind === "dense");
  assert.ok(model.weights.layers[0]!.mlp.down.data.some((v) => v !== 0));
});

stories.test("true-sequential: o's inputs see the already quantized v (halving v scales o's Gram by ¼)", async () => {
  const model = await stories260K();
  const calib = await smallSet();
  const halveV = (inp: LinearInputs): Matrix =>
    inp.site.kind === "v" ? { ...inp.matrix, data: inp.matrix.data.map((x) => x / 2) } : inp.matrix;
  const staged = collect(model, calib, halveV, true).seen.get("layers.0.o")!.gram;
  const oneStage = collect(model, calib, halveV, false).seen.get("layers.0.o")!.gram;
  const fp = collect(model, calib).seen.get("layers.0.o")!.gram;
  // Attention outputs are linear in v: att(v/2) = att(v)/2, so Σ att attᵀ shrinks by 4.
  assert.ok(maxRelDiff(staged, fp.map((x) => x / 4)) < 1e-5);
  assert.ok(maxRelDiff(oneStage, fp) < 1e-6, "without stages, o sees full-precision inputs");
});

Deno.test("relativeReconstructionError() = tr(ΔW G ΔWᵀ) / tr(W G Wᵀ), by hand", () => {
  const w = { rows: 2, cols: 2, data: new Float32Array([1, 0, 0, 1]) };
  const wq = { rows: 2, cols: 2, data: new Float32Array([1, 0, 0, 0]) };
  // G = diag(3, 1): ΔW = [[0,0],[0,1]] gives 1; W = I gives tr(G) = 4.
  const g = new Float64Array([3, 0, 0, 1]);
  assert.equal(relativeReconstructionError(w, wq, g, kernels), 0.25);
  assert.equal(relativeReconstructionError(w, w, g, kernels), 0);
});

Deno.test("relativeReconstructionError(): G taken a block of rows at a time gives the whole product's value, bit for bit", async () => {
  // 37 × 300 weights, a 300 × 300 Gram: blocks of 128 and 7 rows end mid-panel.
  const rows = 37, cols = 300;
  let seed = 7;
  const rnd = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32) - 0.5;
  const x = Float64Array.from({ length: 50 * cols }, rnd);
  const gram = new Float64Array(cols * cols);
  for (let t = 0; t < 50; t++) {
    for (let i = 0; i < cols; i++) {
      for (let j = 0; j < cols; j++) gram[i * cols + j]! += x[t * cols + i]! * x[t * cols + j]!;
    }
  }
  const w = { rows, cols, data: Float32Array.from({ length: rows * cols }, rnd) };
  const wq = { rows, cols, data: w.data.map((v) => Math.round(v * 8) / 8) };
  for (const k of [refKernels, await wasmKernels()]) {
    const whole = relativeReconstructionError(w, wq, gram, k, cols);
    for (const b of [128, 7, 1]) {
      assert.equal(relativeReconstructionError(w, wq, gram, k, b), whole);
    }
    // … and the value is the float64 formula's to float32 rounding.
    let num = 0, den = 0;
    for (let r = 0; r < rows; r++) {
      for (let i = 0; i < cols; i++) {
        for (let j = 0; j < cols; j++) {
          const g = gram[i * cols + j]!;
          const di = w.data[r * cols + i]! - wq.data[r * cols + i]!;
          const dj = w.data[r * cols + j]! - wq.data[r * cols + j]!;
          num += di * g * dj;
          den += w.data[r * cols + i]! * g * w.data[r * cols + j]!;
        }
      }
    }
    assert.ok(Math.abs(whole - num / den) < 1e-5 * (num / den));
  }
});

storiesMoe.test("MoE blocks: each expert is calibrated on its routed tokens; a starved expert falls back to every token, never NaN", async () => {
  const calib = await smallSet();
  const moe = await loadModel(sharedPath("models/stories260K-moe"));
  const N = calib.windows.reduce((n, w) => n + w.length, 0);
  const K = moe.config.moe!.topK;
  const { seen, result } = collect(moe, calib);
  for (let l = 0; l < moe.config.nLayers; l++) {
    const tokens = [0, 1, 2, 3].map((e) => seen.get(`layers.${l}.experts.${e}.gate`)!.tokens);
    // Every token goes to exactly K experts; gate and up of an expert share the same inputs.
    assert.equal(tokens.reduce((a, b) => a + b, 0), K * N);
    assert.deepEqual(
      seen.get(`layers.${l}.experts.1.up`)!.gram,
      seen.get(`layers.${l}.experts.1.gate`)!.gram,
    );
  }
  // Identity quantizer: zero reconstruction error everywhere, and the model is unchanged.
  assert.ok(result.diagnostics.every((d) => d.relError === 0));

  // A zero router ties every expert; ties go to the lowest indices, so experts 2 and 3 starve.
  const starved = collect(withZeroRouters(moe), calib, (inp) => ({
    ...inp.matrix,
    data: inp.matrix.data.map((v) => Math.round(v * 8) / 8),
  }));
  const d = (e: number, kind: string) =>
    starved.result.diagnostics.find((x) => x.name === `layers.0.experts.${e}.${kind}`)!;
  assert.equal(d(0, "gate").tokens, N);
  assert.equal(d(0, "gate").fallback, undefined);
  for (const kind of ["gate", "up", "down"]) {
    assert.equal(d(3, kind).tokens, 0);
    assert.equal(d(3, kind).fallback, true);
    assert.ok(Number.isFinite(d(3, kind).relError));
  }
  // The fallback Gram is that of every token of the block's router input.
  assert.deepEqual(
    starved.seen.get("layers.0.experts.3.gate")!.gram,
    starved.seen.get("layers.0.experts.2.up")!.gram,
  );
  assert.equal(starved.seen.get("layers.0.experts.3.gate")!.tokens, N);
  for (const layer of starved.result.weights.layers) {
    if (layer.mlp.kind !== "moe") throw new Error("MoE expected");
    for (const e of layer.mlp.experts) assert.ok(e.down.data.every(Number.isFinite));
  }
});

stories.test("quantizeSequential() names a layer fed NaN", async () => {
  const calib = await smallSet();
  const model = await stories260K();
  const layers = [...model.weights.layers];
  const l1 = layers[1]!;
  if (l1.mlp.kind !== "dense") throw new Error("dense expected");
  const up = l1.mlp.up.data.slice();
  up[5] = NaN;
  layers[1] = { ...l1, mlp: { ...l1.mlp, up: { ...l1.mlp.up, data: up } } };
  assert.throws(
    () => collect({ ...model, weights: { ...model.weights, layers } }, calib),
    /layers\.1\.down: the calibration inputs hold NaN/,
  );
});

storiesMoe.test("MoE blocks: every expert's Grams are those of a forward pass per window, bit for bit (WASM, windows with one routed row)", async () => {
  const set = await smallSet();
  // Short windows route a single token to some experts: that row runs alone in a merged pass.
  const calib = {
    ...set,
    windows: [...set.windows, Int32Array.from([1, 400, 27]), Int32Array.from([1, 93])],
  };
  const moe = await loadModel(sharedPath("models/stories260K-moe"));
  const wasm = await wasmKernels();
  const seen = new Map<string, LinearInputs>();
  quantizeSequential(moe, calib, (inp) => {
    seen.set(inp.site.name, { ...inp, gram: inp.gram.slice() });
    return { matrix: inp.matrix }; // identity: the model stays the full-precision one
  }, { kernels: wasm });
  // Merged products in small groups of windows give the same Grams.
  const grouped = new Map<string, Float64Array>();
  quantizeSequential(moe, calib, (inp) => {
    grouped.set(inp.site.name, inp.gram.slice());
    return { matrix: inp.matrix };
  }, { kernels: wasm, maxMergedRows: 40 });
  for (const [name, inp] of seen) assert.deepEqual(grouped.get(name), inp.gram, name);
  // Independently: each window through the model, the experts' inputs accumulated window by window.
  const { nLayers } = moe.config;
  const accs = new Map<string, Accumulator>();
  const acc = (name: string, n: number) => {
    if (!accs.has(name)) accs.set(name, newAccumulator(n));
    return accs.get(name)!;
  };
  let singles = 0;
  for (const w of calib.windows) {
    const x = embedTokens(moe, w);
    const cache = createKvCache(moe.config, w.length);
    for (let l = 0; l < nLayers; l++) {
      layerForward(moe, l, x, w.length, cache, wasm, (kind, v, n, e) => {
        if (e === undefined || (kind !== "gate" && kind !== "down")) return;
        if (kind === "gate" && n === 1) singles++;
        accumulate(acc(`layers.${l}.experts.${e}.${kind}`, v.length / n), v, n, wasm);
      });
    }
  }
  assert.ok(singles > 0, "no expert got a single row of a window: the case is not exercised");
  for (const [name, a] of accs) {
    complete(a);
    assert.deepEqual(seen.get(name)!.gram, a.gram, name);
  }
  assert.equal(accs.size, nLayers * 4 * 2);
});
