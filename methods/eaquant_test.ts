import assert from "node:assert/strict";
import { withZeroRouters } from "../testing/moe.ts";
import { drawCalibrationSet } from "./calibration/set.ts";
import { groupParams, quantizeValue } from "../core/quantizer.ts";
import { refKernels } from "../kernels/ref/mod.ts";
import { forward } from "../runners/forward.ts";
import { loadModel } from "../models/load.ts";
import { bundledDataDir, needs, sharedPath } from "../testing/fixtures.ts";
import { randomMatrix } from "../testing/random.ts";
import { alignRouter, clipSearchMse, eaquant, topkKl } from "./eaquant.ts";
import { foldSmoothing } from "./smoothing.ts";
import { resolveParams } from "./types.ts";

const moe = await needs("models/stories260K-moe");
const moeHf = await needs("models/stories260K-moe", "models/stories260K-hf");

const kernels = refKernels;
const moePath = sharedPath("models", "stories260K-moe");

Deno.test("topkKl(): KL over the full-precision top-k experts, by hand", () => {
  // One token, 3 experts, k = 1: fp logits [0, ln 2, 0] → p = [¼, ½, ¼]; quantized [0, 0, 0] → ⅓.
  const fp = Float32Array.from([0, Math.log(2), 0]);
  const q = new Float32Array(3);
  const v = topkKl(fp, q, 1, 3, 1);
  assert.ok(Math.abs(v - 0.5 * Math.log(0.5 / (1 / 3))) < 1e-6);
  assert.equal(topkKl(fp, fp, 1, 3, 2), 0);
});

Deno.test("clipping searches never do worse than min-max: weight MSE and router KL", () => {
  const w = randomMatrix(64, 5);
  w[7] = 9; // an outlier a clipped range should give up on
  const bits = 3, maxq = 7;
  const err = (p: { scale: number; zero: number }) =>
    w.reduce(
      (a, x) => a + (x - p.scale * (quantizeValue(x, p.scale, p.zero, maxq) - p.zero)) ** 2,
      0,
    );
  const mm = groupParams(w, 0, 64, bits, false);
  const cs = clipSearchMse(w, 0, 64, bits, false);
  assert.ok(err(cs) < err(mm));

  const dim = 16, E = 4, N = 64;
  const router = { rows: E, cols: dim, data: randomMatrix(E * dim, 9) };
  router.data[3] = 12; // one outlier in expert 0's row
  const x = randomMatrix(N * dim, 11);
  // The outlier's input channel is silent, so the outlier only costs resolution: clipping pays.
  for (let t = 0; t < N; t++) x[t * dim + 3] = 0;
  const a = alignRouter(router, x, N, 2, 3);
  assert.ok(a.kl <= a.klMinMax);
  assert.ok(a.ratios.some((r) => r < 1), `${a.ratios}`);
  assert.ok(a.matrix.data.every(Number.isFinite));
});

moe.test("smoothing an MoE block scales the router with the experts: logits unchanged", async () => {
  const moe = await loadModel(moePath);
  const ids = moe.tokenizer.encode("Tom had a red ball. He threw it to Sue.", { bos: true });
  const s = (seed: number) => randomMatrix(moe.config.dim, seed, 0.5).map((v) => 1 + v);
  const weights = foldSmoothing(
    moe.weights,
    moe.weights.layers.map((_, l) => ({ qkv: s(l), gateup: s(l + 10) })),
  );
  const a = forward(moe, ids), b = forward({ config: moe.config, weights }, ids);
  let d = 0, m = 0;
  a.forEach((v, i) => {
    d = Math.max(d, Math.abs(v - b[i]!));
    m = Math.max(m, Math.abs(v));
  });
  assert.ok(d / m < 1e-5, `${d / m}`);
});

moeHf.test("EAQuant on the MoE fixture: finite weights, W8 router, starved experts handled by the documented rules", async () => {
  const moe = await loadModel(moePath);
  const calibration = await drawCalibrationSet(
    { source: "tinystories", samples: 4, seqLen: 64, seed: 0 },
    moe.tokenizer,
    moe.config.maxSeqLen,
    bundledDataDir(),
  );
  const q = { wBits: 4, aBits: 4, granularity: "channel" as const, symmetric: false };
  const r = await eaquant.quantize(moe, q, resolveParams(eaquant, {}), { kernels, calibration });
  assert.equal(r.routerAbits, 8);
  assert.equal(r.packed.size, moe.config.nLayers * (4 + 4 * 3));
  for (const layer of r.weights.layers) {
    if (layer.mlp.kind !== "moe") throw new Error("MoE expected");
    // 8-bit per-row router: at most 256 distinct values per row.
    const row = layer.mlp.router.data.subarray(0, moe.config.dim);
    assert.ok(new Set(row).size <= 256);
    for (const e of layer.mlp.experts) assert.ok(e.gate!.data.every(Number.isFinite));
  }
  // A zero router sends every token to experts 0 and 1: experts 2 and 3 starve.
  const starved = withZeroRouters(moe);
  const balanced = await eaquant.quantize(
    starved,
    q,
    resolveParams(eaquant, { routerAlign: false }),
    {
      kernels,
      calibration,
    },
  );
  assert.ok(
    balanced.notes.some((n) =>
      /layer 0 expert 3: no routed calibration token; statistics of every token/.test(n)
    ),
  );
  assert.ok(balanced.weights.layers.every((l) => l.mlpNorm.every(Number.isFinite)));
  const plain = await eaquant.quantize(
    starved,
    q,
    resolveParams(eaquant, { routerAlign: false, balance: false }),
    {
      kernels,
      calibration,
    },
  );
  assert.ok(
    plain.notes.some((n) =>
      /layer 0 expert 2: no routed calibration token; left out of the merge/.test(n)
    ),
  );
  assert.ok(plain.weights.layers.every((l) => l.mlpNorm.every(Number.isFinite)));
  // Dense models are not EAQuant's business.
  const dense = await loadModel(sharedPath("models", "stories260K-hf"));
  await assert.rejects(
    () => eaquant.quantize(dense, q, resolveParams(eaquant, {}), { kernels, calibration }),
    /Mixture-of-Experts/,
  );
});
