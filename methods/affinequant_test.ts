import assert from "node:assert/strict";
import { drawCalibrationSet } from "./calibration/set.ts";
import { reconstructBlocks } from "./calibration/reconstruct.ts";
import { refKernels } from "../kernels/ref/mod.ts";
import { wasmKernels } from "../kernels/wasm/mod.ts";
import { listLinears } from "../models/linears.ts";
import { bundledDataDir, needs } from "../testing/fixtures.ts";
import { stories260K } from "../testing/stories.ts";
import { affineInitScales, affinequant, columnMax, quantizeAffineQuant } from "./affinequant.ts";
import { affineQuantLearner, type AffineQuantSpec } from "./affinequant_learner.ts";
import { METHODS } from "./mod.ts";
import { type QuantConfig, resolveParams } from "./types.ts";

const stories = await needs("hf-mirror");

const dataDir = bundledDataDir();

/** stories260K cut to its first `n` blocks, and a small calibration set (16 × 64 tokens). */
async function setup(n: number, samples = 16, seqLen = 64) {
  const model = await stories260K();
  const small = {
    config: { ...model.config, nLayers: n },
    weights: { ...model.weights, layers: model.weights.layers.slice(0, n) },
  };
  const calib = await drawCalibrationSet(
    { source: "tinystories", samples, seqLen, seed: 0 },
    model.tokenizer,
    model.config.maxSeqLen,
    dataDir,
  );
  return { model, small, calib };
}

const W3: QuantConfig = { wBits: 3, aBits: 16, granularity: "channel", symmetric: false };
const unitInit = (dim: number, kv: number) => ({
  qkv: new Float32Array(dim).fill(1),
  fc1: new Float32Array(dim).fill(1),
  out: new Float32Array(kv).fill(1),
});

Deno.test("affineInitScales and columnMax: hand-computed SmoothQuant diagonal with the official signed column maximum and 1e-5 floors", () => {
  // Columns of [[1, −4], [3, −2]]: signed maxima 3 and −2 (floored to 1e-5 in the scale).
  const m = { rows: 2, cols: 2, data: Float32Array.of(1, -4, 3, -2) };
  assert.deepEqual(Array.from(columnMax(m)), [3, -2]);
  const s = affineInitScales([4, 9], columnMax(m), 0.5);
  assert.ok(Math.abs(s[0]! - 2 / Math.sqrt(3)) < 1e-6);
  assert.ok(Math.abs(s[1]! - 3 / Math.sqrt(1e-5)) < 1e-6 * s[1]!);
  // Zero activations: the scale floor.
  assert.ok(Math.abs(affineInitScales([0], [1], 1)[0]! - 1e-5) < 1e-12);
});

stories.test("reconstructBlocks with the AffineQuant learner lowers a stories260K block's loss from its initial state, epoch by epoch in expectation, with the mask growing to full", async () => {
  const { small, calib } = await setup(1);
  const c = small.config;
  const spec: AffineQuantSpec = {
    bits: 3,
    symmetric: false,
    lnMatrix: true,
    qkMatrix: true,
    sf: 0.01,
    epochs: 4,
    letLrScale: 0.5,
  };
  const init = unitInit(c.dim, c.nKvHeads * c.headDim);
  const r = reconstructBlocks(
    small,
    calib,
    (l, _i, k) => affineQuantLearner(l, c, spec, init, k),
    { kernels: refKernels, epochs: 4, batchSize: 2, lr: 1e-2, seed: 0, schedule: "constant" },
  );
  const b = r.blocks[0]!;
  assert.equal(b.diverged, undefined);
  assert.equal(b.epochLosses.length, 4);
  assert.ok(b.finalLoss < 0.9 * b.initialLoss, `final ${b.finalLoss} vs initial ${b.initialLoss}`);
  assert.ok(b.epochLosses.at(-1)! < b.epochLosses[0]!, `epochs ${b.epochLosses}`);
  assert.ok(b.epochLosses[0]! < b.initialLoss);
  assert.equal(r.packed.size, 7);
});

stories.test("AffineQuant W4A4: training through the per-token activation quantizer lowers a block's loss", async () => {
  const { small, calib } = await setup(1);
  const c = small.config;
  const spec: AffineQuantSpec = {
    bits: 4,
    symmetric: true,
    lnMatrix: false,
    qkMatrix: true,
    sf: 0.1,
    epochs: 3,
    letLrScale: 0.5,
  };
  const activations = {
    bits: 4,
    kernel: "uniform" as const,
    options: { granularity: "token" as const, static: false, symmetric: true, clip: 1, bmm: false },
  };
  const r = reconstructBlocks(
    small,
    calib,
    (l, _i, k) => affineQuantLearner(l, c, spec, unitInit(c.dim, c.nKvHeads * c.headDim), k),
    {
      kernels: refKernels,
      epochs: 3,
      batchSize: 2,
      lr: 1e-2,
      seed: 0,
      schedule: "constant",
      activations,
    },
  );
  const b = r.blocks[0]!;
  assert.equal(b.diverged, undefined);
  assert.ok(b.finalLoss < b.initialLoss, `final ${b.finalLoss} vs initial ${b.initialLoss}`);
  // The diagonal transforms were folded into the norms.
  assert.notDeepEqual(r.weights.layers[0]!.attnNorm, small.weights.layers[0]!.attnNorm);
});

stories.test("affinequant: a forced NaN is caught, reported in the notes and the block falls back to its initial state; a singular affine matrix is recorded per block the same way", async () => {
  const { small, calib } = await setup(2, 8, 32);
  const kernels = await wasmKernels();
  const params = resolveParams(affinequant, { epochs: 2, batchSize: 2 });
  const qm = quantizeAffineQuant(small, W3, params, { kernels, calibration: calib }, {
    injectNaN: { block: 0, step: 1 },
  });
  const stop = qm.notes.filter((n) => /stopped/.test(n));
  assert.equal(stop.length, 1);
  assert.match(stop[0]!, /^layers\.0: stopped: non-finite loss \(NaN\) at step 1 \(epoch 0\)/);
  assert.equal(qm.diagnostics!.statTotals.diverged, 1);
  assert.ok(listLinears(qm.weights).every(({ matrix }) => matrix.data.every(Number.isFinite)));
  // Block 0's final loss is its initial loss (the fallback state), block 1 trained.
  const [b0, b1] = qm.diagnostics!.linears.filter((d) => d.kind === "q").map((d) => d.stats!);
  assert.ok(Math.abs(b0!.reconLossFinal! - b0!.reconLossInitial!) <= 1e-6 * b0!.reconLossInitial!);
  assert.ok(b1!.reconLossFinal! < b1!.reconLossInitial!);

  // A learner whose q/k/v matrix becomes singular at its third step.
  const c = small.config;
  const spec: AffineQuantSpec = {
    bits: 3,
    symmetric: false,
    lnMatrix: true,
    qkMatrix: false,
    sf: 0.01,
    epochs: 2,
    letLrScale: 0.5,
  };
  const r = reconstructBlocks(small, calib, (layer, l, k) => {
    const lrn = affineQuantLearner(layer, c, spec, unitInit(c.dim, c.nKvHeads * c.headDim), k);
    let calls = 0;
    return {
      ...lrn,
      weights(e?: number) {
        if (l === 1 && ++calls === 4) (lrn.params[0] as Float64Array).fill(0, 0, c.dim);
        return lrn.weights(e);
      },
    };
  }, { kernels, epochs: 2, batchSize: 2, lr: 1e-2, seed: 0, schedule: "constant" });
  assert.equal(r.blocks[0]!.diverged, undefined);
  assert.match(r.blocks[1]!.diverged!, /^singular affine matrix qkv: .* at step 2 \(epoch 0\)$/);
  const b = r.blocks[1]!;
  assert.ok(Math.abs(b.finalLoss - b.initialLoss) <= 1e-6 * b.initialLoss);
});

stories.test("affinequant: registered as optimization class; bad parameters and configurations are refused with errors naming them", async () => {
  const m = METHODS.get("affinequant");
  assert.equal(m.taxonomy, "optimization");
  assert.equal(m.needsCalibration, true);
  const { small, calib } = await setup(1, 2, 16);
  const ctx = { kernels: refKernels, calibration: calib };
  for (
    const [bad, re] of [
      [{ lwcLr: 0 }, /Parameter "lwcLr" of "affinequant" must be positive, got 0/],
      [{ letLr: -1e-3 }, /Parameter "letLr" of "affinequant" must be positive/],
      [{ epochs: 0 }, /Parameter "epochs" of "affinequant" must be a positive integer, got 0/],
      [{ epochs: 2.5 }, /"epochs" .* positive integer/],
      [{ batchSize: 0 }, /"batchSize" .* positive integer/],
      [{ sf: 0 }, /Parameter "sf" of "affinequant" must be in \(0, 1\], got 0/],
      [{ sf: 1.5 }, /"sf" .* \(0, 1\], got 1.5/],
      [{ sf: -0.1 }, /"sf" .* \(0, 1\]/],
    ] as const
  ) {
    assert.throws(
      () => quantizeAffineQuant(small, W3, { ...resolveParams(affinequant), ...bad }, ctx),
      (e: unknown) => e instanceof RangeError && re.test(e.message),
    );
  }
  await assert.rejects(
    affinequant.quantize(small, { ...W3, granularity: "tensor" }, resolveParams(affinequant), ctx),
    /not per tensor/,
  );
  await assert.rejects(
    affinequant.quantize(small, W3, resolveParams(affinequant), { kernels: refKernels }),
    /needs a calibration set/,
  );
  await assert.rejects(
    affinequant.quantize(
      small,
      {
        ...W3,
        aBits: 4,
        act: { granularity: "tensor", static: true, symmetric: true, clip: 1, bmm: false },
      },
      resolveParams(affinequant),
      ctx,
    ),
    /per-token dynamic/,
  );
});

stories.test("affinequant is deterministic for a seed", async () => {
  const { small, calib } = await setup(1, 4, 32);
  const kernels = await wasmKernels();
  const run = () =>
    quantizeAffineQuant(
      small,
      W3,
      resolveParams(affinequant, { epochs: 2, seed: 3 }),
      { kernels, calibration: calib },
    );
  const a = run(), b = run();
  assert.deepEqual(listLinears(a.weights), listLinears(b.weights));
  assert.deepEqual(a.diagnostics!.statTotals, b.diagnostics!.statTotals);
});
