import assert from "node:assert/strict";
import { drawCalibrationSet } from "./calibration/set.ts";
import { dequantizePacked } from "../core/quantizer.ts";
import { wasmKernels } from "../kernels/wasm/mod.ts";
import { listLinears } from "../models/linears.ts";
import { getTask } from "../tasks/mod.ts";
import { bundledDataDir, needs } from "../testing/fixtures.ts";
import { stories260K } from "../testing/stories.ts";
import { flexround, quantizeFlexRound } from "./flexround.ts";
import { METHODS } from "./mod.ts";
import { rtn } from "./rtn.ts";
import { type QuantConfig, resolveParams } from "./types.ts";
import { applyActivationQuant } from "./activations.ts";
import { DEFAULT_ACT_OPTIONS } from "../core/act_quantizer.ts";

const stories = await needs("hf-mirror");

const dataDir = bundledDataDir();
/** Evaluation windows of the eval half (of 389), as in the GPTQ test. */
const EVAL_WINDOWS = 64;
/** A small calibration budget for CI: 32 windows × 128 tokens, 2 epochs (64 steps per block). */
const CALIB = { source: "tinystories", samples: 32, seqLen: 128, seed: 0 };

async function evalPpl(weights: Awaited<ReturnType<typeof stories260K>>["weights"]) {
  const model = await stories260K();
  const r = await getTask("tinystories:eval").run(
    { config: model.config, weights, tokenizer: model.tokenizer },
    { kernels: await wasmKernels(), dataDir, limit: EVAL_WINDOWS },
  );
  return r.metrics.find((m) => m.metric === "ppl")!.value;
}

stories.test("FlexRound beats RTN at W3 and W4 per-channel: perplexity on the eval half of TinyStories, losses recorded per block", async () => {
  const model = await stories260K();
  const kernels = await wasmKernels();
  const calib = await drawCalibrationSet(CALIB, model.tokenizer, model.config.maxSeqLen, dataDir);
  for (const bits of [3, 4]) {
    const q: QuantConfig = { wBits: bits, aBits: 16, granularity: "channel", symmetric: false };
    const pr = await evalPpl((await rtn.quantize(model, q, {}, { kernels })).weights);
    const f = await flexround.quantize(model, q, resolveParams(flexround, { epochs: 2 }), {
      kernels,
      calibration: calib,
    });
    const pf = await evalPpl(f.weights);
    assert.ok(pf < pr, `W${bits}: FlexRound ppl ${pf} should be below RTN ${pr}`);
    assert.equal(f.packed.size, 35);
    for (const { site, matrix } of listLinears(f.weights)) {
      assert.deepEqual(dequantizePacked(f.packed.get(site.name)!), matrix.data);
    }
    const totals = f.diagnostics!.statTotals;
    assert.ok(totals.reconLossFinal! < totals.reconLossInitial!);
    assert.equal(totals.diverged, 0);
    assert.equal(
      f.notes.filter((n) => /^layers\.\d: loss .* → epochs \[.*, .*\]/.test(n)).length,
      5,
    );
  }
});

stories.test("flexround: registered as an optimization-class method; bad parameters and configurations are refused before compute", async () => {
  const m = METHODS.get("flexround");
  assert.equal(m.taxonomy, "optimization");
  assert.equal(m.scope, "weight-activation");
  assert.equal(m.needsCalibration, true);
  const model = await stories260K();
  const kernels = await wasmKernels();
  const q: QuantConfig = { wBits: 3, aBits: 16, granularity: "channel", symmetric: false };
  const calib = await drawCalibrationSet(
    { ...CALIB, samples: 2, seqLen: 16 },
    model.tokenizer,
    model.config.maxSeqLen,
    dataDir,
  );
  const ctx = { kernels, calibration: calib };
  for (
    const [bad, re] of [
      [{ lr: 0 }, /Parameter "lr" of "flexround" must be positive, got 0/],
      [{ lr: -0.01 }, /"lr" .* must be positive/],
      [{ epochs: 0 }, /"epochs" .* positive integer/],
      [{ epochs: -2 }, /"epochs" .* positive integer/],
    ] as const
  ) {
    // The registry's bounds catch epochs; the method itself catches lr (no registry bound).
    assert.throws(
      () => quantizeFlexRound(model, q, { ...resolveParams(flexround), ...bad }, ctx),
      (e: unknown) => e instanceof RangeError && re.test(e.message),
    );
  }
  assert.throws(() => resolveParams(flexround, { epochs: 0 }), /"epochs" .* ≥ 1/);
  assert.throws(() => resolveParams(flexround, { batchSize: 1.5 }), /integer/);
  await assert.rejects(
    flexround.quantize(model, { ...q, granularity: "tensor" }, resolveParams(flexround), ctx),
    /not per tensor/,
  );
  // Training goes through per-token dynamic activation quantizers only.
  await assert.rejects(
    flexround.quantize(
      model,
      { ...q, aBits: 8, act: { ...DEFAULT_ACT_OPTIONS, granularity: "tensor", static: true } },
      resolveParams(flexround),
      ctx,
    ),
    /static/,
  );
  await assert.rejects(
    flexround.quantize(model, q, resolveParams(flexround), { kernels }),
    /needs a calibration set/,
  );
});

stories.test("flexround is deterministic for a seed (packed codes and notes' losses)", async () => {
  const model = await stories260K();
  const kernels = await wasmKernels();
  const calib = await drawCalibrationSet(
    { ...CALIB, samples: 4, seqLen: 32 },
    model.tokenizer,
    model.config.maxSeqLen,
    dataDir,
  );
  const q: QuantConfig = {
    wBits: 2,
    aBits: 16,
    granularity: "group",
    groupSize: 32,
    symmetric: false,
  };
  const run = () =>
    quantizeFlexRound(model, q, resolveParams(flexround, { epochs: 1, seed: 5 }), {
      kernels,
      calibration: calib,
    });
  const a = run(), b = run();
  assert.deepEqual(
    [...a.packed.values()].map((p) => p.words),
    [...b.packed.values()].map((p) => p.words),
  );
  assert.deepEqual(a.diagnostics!.statTotals, b.diagnostics!.statTotals);
  // g32: one scale per 32 input columns (down has 172 inputs: 6 groups).
  assert.equal(a.packed.get("layers.0.down")!.groupsPerRow, 6);
});

stories.test("FlexRound trained through the cell's activation quantizer beats RTN at W4A8 (both evaluated with A8 activations)", async () => {
  const model = await stories260K();
  const kernels = await wasmKernels();
  const calib = await drawCalibrationSet(CALIB, model.tokenizer, model.config.maxSeqLen, dataDir);
  const q: QuantConfig = {
    wBits: 4,
    aBits: 8,
    granularity: "channel",
    symmetric: false,
    act: DEFAULT_ACT_OPTIONS,
  };
  const ctx = { kernels, calibration: calib };
  const r = applyActivationQuant(await rtn.quantize(model, q, {}, ctx), q, ctx);
  const f = applyActivationQuant(
    await flexround.quantize(model, q, resolveParams(flexround, { epochs: 2 }), ctx),
    q,
    ctx,
  );
  assert.equal(f.weights.activations?.bits, 8);
  const pr = await evalPpl(r.weights), pf = await evalPpl(f.weights);
  assert.ok(pf < pr, `W4A8: FlexRound ppl ${pf} should be below RTN ${pr}`);
  assert.ok(
    f.diagnostics!.statTotals.reconLossFinal! < f.diagnostics!.statTotals.reconLossInitial!,
  );
});
