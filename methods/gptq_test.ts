import assert from "node:assert/strict";
import { quantizeSequential } from "./calibration/sequential.ts";
import { DEFAULT_CALIBRATION, drawCalibrationSet } from "./calibration/set.ts";
import { quantizeMatrix } from "../core/quantizer.ts";
import { refKernels } from "../kernels/ref/mod.ts";
import { getTask } from "../tasks/mod.ts";
import { bundledDataDir, needs } from "../testing/fixtures.ts";
import { stories260K } from "../testing/stories.ts";
import { gptq } from "./gptq.ts";
import { rtn } from "./rtn.ts";
import { type QuantConfig, resolveParams, summarizeDiagnostics } from "./types.ts";

const stories = await needs("hf-mirror");

const dataDir = bundledDataDir();
const kernels = refKernels;
/** Evaluation windows of the eval half (of 389): enough to separate the methods, fast in CI. */
const EVAL_WINDOWS = 64;

async function evalPpl(weights: Awaited<ReturnType<typeof stories260K>>["weights"]) {
  const model = await stories260K();
  const r = await getTask("tinystories:eval").run(
    { config: model.config, weights, tokenizer: model.tokenizer },
    { kernels, dataDir, limit: EVAL_WINDOWS },
  );
  return r.metrics.find((m) => m.metric === "ppl")!.value;
}

/** RTN through the same calibration pipeline, for its reconstruction errors on calibration data. */
function rtnReconByKind(
  model: Awaited<ReturnType<typeof stories260K>>,
  calib: Awaited<ReturnType<typeof drawCalibrationSet>>,
  q: QuantConfig,
): Record<string, number> {
  const spec = { bits: q.wBits, granularity: q.granularity, symmetric: q.symmetric };
  const r = quantizeSequential(model, calib, (inp) => ({
    matrix: {
      ...inp.matrix,
      data: quantizeMatrix(inp.matrix.data, inp.matrix.rows, inp.matrix.cols, spec).dequantized,
    },
  }), { kernels });
  return { ...summarizeDiagnostics(r.diagnostics).relErrorByKind };
}

stories.test("GPTQ, with and without act-order, beats RTN at W3 and W4 per-channel: perplexity on the eval half and reconstruction of every linear kind", async () => {
  const model = await stories260K();
  const calib = await drawCalibrationSet(
    DEFAULT_CALIBRATION,
    model.tokenizer,
    model.config.maxSeqLen,
    dataDir,
  );
  for (const bits of [3, 4]) {
    const q: QuantConfig = { wBits: bits, aBits: 16, granularity: "channel", symmetric: false };
    const r = await rtn.quantize(model, q, {}, { kernels });
    const pr = await evalPpl(r.weights);
    const rErr = rtnReconByKind(model, calib, q);
    for (const actOrder of [false, true]) {
      const what = `W${bits}${actOrder ? " act-order" : ""}`;
      const g = await gptq.quantize(model, q, resolveParams(gptq, { actOrder }), {
        kernels,
        calibration: calib,
      });
      const pg = await evalPpl(g.weights);
      assert.ok(pg < pr, `${what}: GPTQ ppl ${pg} should be below RTN ${pr}`);
      const gErr = g.diagnostics!.relErrorByKind;
      for (const kind of ["q", "k", "v", "o", "gate", "up", "down"]) {
        assert.ok(
          gErr[kind]! < rErr[kind]!,
          `${what} ${kind}: GPTQ recon ${gErr[kind]} should be below RTN ${rErr[kind]}`,
        );
      }
      assert.equal(g.packed.size, 35);
      assert.ok(g.diagnostics!.statTotals.loss! > 0);
    }
  }
});

stories.test("gptq: unsupported and invalid configurations are refused before compute", async () => {
  const model = await stories260K();
  const q: QuantConfig = { wBits: 4, aBits: 16, granularity: "tensor", symmetric: false };
  await assert.rejects(
    gptq.quantize(model, q, resolveParams(gptq), { kernels }),
    /per output channel or per group, not per tensor/,
  );
  await assert.rejects(
    gptq.quantize(model, { ...q, granularity: "channel" }, resolveParams(gptq), { kernels }),
    /needs a calibration set/,
  );
  assert.throws(() => resolveParams(gptq, { groupParams: "dynamic" }), /one of reference, updated/);
  assert.throws(() => resolveParams(gptq, { blockSize: 0 }), /integer ≥ 1/);
  assert.throws(() => resolveParams(gptq, { percdamp: -1 }), /≥ 0/);
});
