import assert from "node:assert/strict";
import { collectActivationStats } from "./act_stats.ts";
import { refKernels } from "../../kernels/ref/mod.ts";
import { needs } from "../../testing/fixtures.ts";
import { stories260K } from "../../testing/stories.ts";
import type { LlamaLayer } from "../../models/types.ts";

const stories = await needs("hf-mirror");

const WINDOW = [1, 403, 407, 261, 378, 429, 282, 344];

stories.test("activation statistics: per-channel extremes of each site; the q/k/v input is the normed embedding", async () => {
  const model = await stories260K();
  const stats = collectActivationStats(model, [WINDOW], refKernels);
  assert.equal(stats.length, model.config.nLayers);
  // Block 0's q/k/v input is RMSNorm(embedding) · attnNorm, computable by hand.
  const { dim, normEps } = model.config;
  const w = model.weights;
  const expMax = new Float64Array(dim).fill(-Infinity);
  for (const id of WINDOW) {
    const e = w.embed.data.subarray(id * dim, (id + 1) * dim);
    let ss = 0;
    for (const v of e) ss += v * v;
    const r = 1 / Math.sqrt(ss / dim + normEps);
    for (let j = 0; j < dim; j++) {
      expMax[j] = Math.max(expMax[j]!, e[j]! * r * w.layers[0]!.attnNorm[j]!);
    }
  }
  stats[0]!.qkv.max.forEach((v, j) => assert.ok(Math.abs(v - expMax[j]!) < 1e-4, `channel ${j}`));
  for (const l of stats) {
    for (const s of [l.qkv, l.o, l.gateup, l.down]) {
      s.absMax.forEach((a, j) => assert.equal(a, Math.max(-s.min[j]!, s.max[j]!)));
    }
  }
  assert.equal(stats[0]!.down.absMax.length, model.config.hiddenDim);
});

stories.test("NaN reaching the calibration statistics fails naming the layer and site", async () => {
  const model = await stories260K();
  const layers = [...model.weights.layers];
  const o = layers[2]!.o;
  const data = o.data.slice();
  data[0] = NaN;
  layers[2] = { ...layers[2]!, o: { ...o, data } } as LlamaLayer;
  assert.throws(
    () =>
      collectActivationStats({ config: model.config, weights: { ...model.weights, layers } }, [
        WINDOW,
      ], refKernels),
    /layer 2 \(gateup input, channel \d+\) are not finite/,
  );
});
