import assert from "node:assert/strict";
import { refKernels } from "../../kernels/ref/mod.ts";
import { dequantizePacked, quantizeMatrix } from "../../core/quantizer.ts";
import { flexRoundLearner } from "../flexround_learner.ts";
import { LINEAR_KINDS, type LlamaWeights } from "../../models/types.ts";
import { listLinears } from "../../models/linears.ts";
import { bundledDataDir, needs } from "../../testing/fixtures.ts";
import { stories260K } from "../../testing/stories.ts";
import { drawCalibrationSet } from "./set.ts";
import { reconstructBlocks, type ReconstructionOptions } from "./reconstruct.ts";

const stories = await needs("hf-mirror");

const kernels = refKernels;
const spec = { bits: 3, symmetric: false, clipping: false };

/** stories260K cut to its first `n` blocks, and a small calibration set (16 × 64 tokens). */
async function setup(n: number) {
  const model = await stories260K();
  const small = {
    config: { ...model.config, nLayers: n },
    weights: { ...model.weights, layers: model.weights.layers.slice(0, n) },
  };
  const calib = await drawCalibrationSet(
    { source: "tinystories", samples: 16, seqLen: 64, seed: 0 },
    model.tokenizer,
    model.config.maxSeqLen,
    bundledDataDir(),
  );
  return { small, calib };
}

const base: ReconstructionOptions = { kernels, epochs: 4, batchSize: 2, lr: 3e-3, seed: 0 };

function rtnLinears(w: LlamaWeights) {
  return listLinears(w).map(({ matrix: m }) =>
    quantizeMatrix(m.data, m.rows, m.cols, { bits: 3, granularity: "channel", symmetric: false })
      .dequantized
  );
}

stories.test("reconstructBlocks with FlexRound lowers the reconstruction loss of a stories260K block from its RTN start, epoch by epoch in expectation, and folds to packed codes", async () => {
  const { small, calib } = await setup(1);
  const r = reconstructBlocks(small, calib, (l, _i, k) => flexRoundLearner(l, spec, k), base);
  const b = r.blocks[0]!;
  assert.equal(b.diverged, undefined);
  assert.equal(b.epochLosses.length, 4);
  assert.equal(b.steps, 4 * 8);
  assert.ok(b.finalLoss < 0.9 * b.initialLoss, `final ${b.finalLoss} vs initial ${b.initialLoss}`);
  assert.ok(b.epochLosses.at(-1)! < b.epochLosses[0]!, `epochs ${b.epochLosses}`);
  assert.ok(b.epochLosses[0]! < b.initialLoss);
  // Packed codes read back to exactly the weights in use, with the requested bits.
  assert.equal(r.packed.size, 7);
  for (const { site, matrix } of listLinears(r.weights)) {
    const p = r.packed.get(site.name)!;
    assert.equal(p.bits, 3);
    assert.deepEqual(dequantizePacked(p), matrix.data);
  }
  // Every linear gets a reconstruction diagnostic; the block's losses sit on its q entry.
  assert.equal(r.diagnostics.length, 7);
  assert.ok(r.diagnostics.every((d) => d.relError > 0 && d.relError < 1));
  assert.equal(r.diagnostics[0]!.stats!.reconLossFinal, b.finalLoss);
});

stories.test("flexRoundLearner starts on the RTN grid: its initial fold equals round-to-nearest", async () => {
  const { small } = await setup(1);
  const folded = flexRoundLearner(small.weights.layers[0]!, spec, kernels).fold();
  const rtn = rtnLinears(small.weights);
  LINEAR_KINDS.forEach((k, i) => {
    const a = folded[k].matrix.data, e = rtn[i]!;
    let same = 0;
    for (let j = 0; j < a.length; j++) if (a[j] === e[j]) same++;
    // exp(log(scale)) may differ from scale in the last bit: only exact ties could flip.
    assert.ok(same >= a.length - 2, `${k}: ${a.length - same} of ${a.length} differ`);
  });
});

stories.test("NaN/Inf guard: a NaN injected at a step stops that block, which falls back to its RTN state and is reported; other blocks train", async () => {
  const { small, calib } = await setup(2);
  const r = reconstructBlocks(small, calib, (l, _i, k) => flexRoundLearner(l, spec, k), {
    ...base,
    epochs: 1,
    injectNaN: { block: 0, step: 3 },
  });
  const [b0, b1] = r.blocks;
  assert.match(b0!.diverged!, /non-finite loss \(NaN\) at step 3 \(epoch 0\)/);
  assert.equal(b0!.steps, 3);
  assert.equal(b1!.diverged, undefined);
  assert.ok(b1!.finalLoss < b1!.initialLoss);
  assert.equal(r.diagnostics[0]!.stats!.diverged, 1);
  // Block 0 is exactly its initial (RTN) state again.
  const rtn = rtnLinears(small.weights).slice(0, 7);
  listLinears(r.weights).slice(0, 7).forEach(({ matrix }, i) => {
    let differ = 0;
    for (let j = 0; j < matrix.data.length; j++) if (matrix.data[j] !== rtn[i]![j]) differ++;
    assert.ok(differ <= 2, `linear ${i}: ${differ} weights differ from RTN`);
  });
  // And its final loss is the RTN loss it started from.
  assert.ok(Math.abs(b0!.finalLoss - b0!.initialLoss) <= 1e-6 * b0!.initialLoss);
});

stories.test("reconstructBlocks is deterministic for a seed and refuses non-positive epochs, batch size or learning rate", async () => {
  const { small, calib } = await setup(1);
  const run = (seed: number) =>
    reconstructBlocks(small, calib, (l, _i, k) => flexRoundLearner(l, spec, k), {
      ...base,
      epochs: 1,
      seed,
    });
  const a = run(3), b = run(3), c = run(4);
  assert.deepEqual(listLinears(a.weights), listLinears(b.weights));
  assert.deepEqual(a.blocks.map((x) => x.epochLosses), b.blocks.map((x) => x.epochLosses));
  assert.notDeepEqual(c.blocks[0]!.epochLosses, a.blocks[0]!.epochLosses);
  const learner = (l: Parameters<typeof flexRoundLearner>[0]) => flexRoundLearner(l, spec, kernels);
  for (
    const [bad, re] of [
      [{ epochs: 0 }, /epochs must be a positive integer, got 0/],
      [{ epochs: 1.5 }, /epochs must be a positive integer/],
      [{ batchSize: 0 }, /batchSize must be a positive integer/],
      [{ lr: 0 }, /learning rate lr must be positive, got 0/],
      [{ lr: -1e-3 }, /learning rate lr must be positive/],
      [{ lr: NaN }, /learning rate lr must be positive/],
    ] as const
  ) {
    assert.throws(() => reconstructBlocks(small, calib, learner, { ...base, ...bad }), RangeError);
    assert.throws(() => reconstructBlocks(small, calib, learner, { ...base, ...bad }), re);
  }
});
