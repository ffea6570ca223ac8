/**
 * One decoder block's forward + backward time (`methods/autodiff/block.ts`), as a ratio to the
 * forward-only time measured in the same run, with a breakdown of the backward pass.
 *
 * Usage: `deno run -A bench/block_backward.ts [--backend wasm|ts] [--tokens N] [--reps N]`.
 *
 * Blocks:
 * - `stories260K`: block 0 of the real model (dim 64, 8 heads / 4 KV heads, hidden 172), one
 *   calibration window of `--tokens` tokens (default 256, the calibration length);
 * - `synthetic-768`: random weights of a 768-hidden Llama block (12 heads of 64, no GQA, MLP
 *   hidden 2048), the same number of tokens.
 *
 * Per block it reports the median over `--reps` runs (default 15; the four measurements called
 * round-robin, after 20 warm-up rounds for stories260K and 2 for the synthetic block, so V8 runs
 * optimized code and load from other processes affects all alike) of: `forward` (the
 * differentiable forward, which keeps activations), `layerForward` (the inference forward of
 * `runners/forward.ts`), `forward+backward` (`blockForward` then `blockBackward` of an MSE
 * gradient), the FlexRound extra (fake-quantizing the seven linears and the STE backward to
 * the rounding parameters) and the AffineQuant extra (truncation, masks, inverses, merging the
 * transforms into the seven linears, LWC, and the backward of all of it to the transforms and
 * clipping factors, at the last epoch's full mask), each with its ratio to `forward`. AffineQuant
 * runs with its weight-only setting (full `dim × dim` q/k/v and gate/up matrices) on stories260K
 * and with diagonal q/k/v and gate/up transforms on the synthetic block (its W·A setting: float64
 * `768 × 768` products in TypeScript would dominate the measurement).
 *
 * @module
 */

import { parseArgs } from "node:util";
import { blockBackward, blockForward, zeroLinearGrads } from "../methods/autodiff/block.ts";
import { LinearScratch } from "../methods/autodiff/linear.ts";
import { denseBlockWeights } from "../methods/calibration/reconstruct.ts";
import { selectKernels } from "../runners/backend.ts";
import type { Kernels } from "../kernels/types.ts";
import { createKvCache, layerForward } from "../runners/forward.ts";
import type { LlamaConfig, LlamaLayer, Matrix } from "../models/types.ts";
import { flexRoundLearner } from "../methods/flexround_learner.ts";
import { affineQuantLearner } from "../methods/affinequant_learner.ts";
import { stories260K } from "../testing/stories.ts";
import { randomMatrix } from "../testing/random.ts";

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

/**
 * Medians of `reps` timed calls of each function, called round-robin (so load from other processes
 * affects all of them alike) after `warmup` untimed rounds.
 */
function timeAll(fns: readonly (() => void)[], reps: number, warmup: number): number[] {
  for (let i = 0; i < warmup; i++) for (const fn of fns) fn();
  const ts = fns.map(() => [] as number[]);
  for (let i = 0; i < reps; i++) {
    fns.forEach((fn, k) => {
      const t0 = performance.now();
      fn();
      ts[k]!.push(performance.now() - t0);
    });
  }
  return ts.map(median);
}

function syntheticBlock(): { config: LlamaConfig; layer: LlamaLayer } {
  const dim = 768, hidden = 2048;
  const config: LlamaConfig = {
    dim,
    hiddenDim: hidden,
    nLayers: 1,
    nHeads: 12,
    nKvHeads: 12,
    headDim: 64,
    vocabSize: 32,
    maxSeqLen: 2048,
    normEps: 1e-5,
    ropeTheta: 10000,
    ropeStyle: "half",
    tiedEmbeddings: false,
  };
  let seed = 1;
  const m = (rows: number, cols: number): Matrix => ({
    rows,
    cols,
    data: randomMatrix(rows * cols, seed++, 0.04),
  });
  return {
    config,
    layer: {
      attnNorm: new Float32Array(dim).fill(1),
      mlpNorm: new Float32Array(dim).fill(1),
      q: m(dim, dim),
      k: m(dim, dim),
      v: m(dim, dim),
      o: m(dim, dim),
      mlp: { kind: "dense", gate: m(hidden, dim), up: m(hidden, dim), down: m(dim, hidden) },
    },
  };
}

function measure(
  name: string,
  config: LlamaConfig,
  layer: LlamaLayer,
  T: number,
  kernels: Kernels,
  reps: number,
  warmup: number,
  lnMatrix: boolean,
) {
  const w = denseBlockWeights(layer);
  const x = randomMatrix(T * config.dim, 77, 1);
  const model = {
    config: { ...config, nLayers: 1 },
    weights: {
      embed: { rows: 1, cols: config.dim, data: new Float32Array(config.dim) },
      layers: [layer],
      norm: new Float32Array(config.dim),
      lmHead: { rows: 1, cols: config.dim, data: new Float32Array(config.dim) },
    },
  };
  const dOut = randomMatrix(T * config.dim, 78, 1e-3);
  const scratch = new LinearScratch();
  const learner = flexRoundLearner(layer, { bits: 3, symmetric: false, clipping: false }, kernels);
  const grads = learner.params.map((p) => new Float64Array(p.length));
  const dW = zeroLinearGrads(w);
  const kv = config.nKvHeads * config.headDim;
  const ones = (n: number) => new Float32Array(n).fill(1);
  const epochs = 2;
  const affine = affineQuantLearner(
    layer,
    config,
    { bits: 3, symmetric: false, lnMatrix, qkMatrix: true, sf: 0.01, epochs, letLrScale: 0.5 },
    { qkv: ones(config.dim), fc1: ones(config.dim), out: ones(kv) },
    kernels,
  );
  const affineGrads = affine.params.map((p) => new Float64Array(p.length));
  const dNorms = { attn: new Float64Array(config.dim), mlp: new Float64Array(config.dim) };
  const [fwd, inf, fb, fq, aq] = timeAll(
    [
      () => blockForward(w, config, x, T, kernels),
      () => layerForward(model, 0, x.slice(), T, createKvCache(config, T), kernels),
      () => {
        const act = blockForward(w, config, x, T, kernels);
        blockBackward(w, config, act, dOut, kernels, zeroLinearGrads(w), { scratch });
      },
      () => {
        learner.weights();
        learner.backward(dW, grads);
      },
      () => {
        affine.weights(epochs - 1);
        affine.backward(dW, affineGrads, dNorms);
      },
    ],
    reps,
    warmup,
  ) as [number, number, number, number, number];
  const row = (what: string, ms: number) =>
    console.log(
      `${name.padEnd(14)} ${what.padEnd(48)} ${ms.toFixed(2).padStart(9)} ms  ${
        (ms / fwd).toFixed(2).padStart(6)
      }× forward`,
    );
  row(`forward (T=${T})`, fwd);
  row("layerForward (inference)", inf);
  row("forward+backward", fb);
  row("FlexRound fake-quant fwd+bwd (per step)", fq);
  row(`AffineQuant transforms+LWC fwd+bwd${lnMatrix ? "" : " (diag LN)"}`, aq);
}

const { values: args } = parseArgs({
  args: Deno.args,
  options: {
    backend: { type: "string", default: "wasm" },
    tokens: { type: "string", default: "256" },
    reps: { type: "string", default: "15" },
  },
});
const { kernels } = await selectKernels(args.backend);
const T = Number(args.tokens);
const reps = Number(args.reps);
console.log(`backend ${kernels.id}, ${T} tokens, median of ${reps}`);
const model = await stories260K();
measure("stories260K", model.config, model.weights.layers[0]!, T, kernels, reps, 20, true);
const syn = syntheticBlock();
measure(
  "synthetic-768",
  syn.config,
  syn.layer,
  T,
  kernels,
  Math.max(1, Math.min(reps, 3)),
  2,
  false,
);
