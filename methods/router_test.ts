import assert from "node:assert/strict";
import { refKernels } from "../kernels/ref/mod.ts";
import { createKvCache, embedTokens, layerForward } from "../runners/forward.ts";
import { loadModel } from "../models/load.ts";
import type { MoeMlp } from "../models/types.ts";
import { needs, sharedPath } from "../testing/fixtures.ts";
import { parseRouterQuant, quantizeRouters } from "./router.ts";
import { type QuantizedModel, quantLabel } from "./types.ts";
import { DEFAULT_ACT_OPTIONS } from "../core/act_quantizer.ts";

const moe = await needs("models/stories260K-moe");

async function moeModel(): Promise<QuantizedModel> {
  const m = await loadModel(sharedPath("models", "stories260K-moe"));
  return { config: m.config, weights: m.weights, packed: new Map(), notes: [] };
}

Deno.test("parseRouterQuant: W8A8, fp, and bad settings name the flag", () => {
  assert.deepEqual(parseRouterQuant("W8A8"), { wBits: 8, aBits: 8 });
  assert.deepEqual(parseRouterQuant("W4A16"), { wBits: 4, aBits: 16 });
  assert.equal(parseRouterQuant("fp"), undefined);
  assert.throws(
    () => parseRouterQuant("W9A8"),
    /--router: router weight bits must be one of 2, .*8, got 9/,
  );
  assert.throws(() => parseRouterQuant("W8A1"), /--router: router activation bits .* got 1/);
  assert.throws(
    () => parseRouterQuant("8bit", 'preset.json: field "router"'),
    /preset\.json.*"8bit"/,
  );
});

moe.test("quantizeRouters: each router row lands on a 2^b-level grid; experts are untouched", async () => {
  const qm = await moeModel();
  for (const bits of [2, 8]) {
    const out = quantizeRouters(qm, { wBits: bits, aBits: 8 });
    assert.equal(out.routerQuantized, true);
    assert.equal(out.routerAbits, 8);
    out.weights.layers.forEach((layer, l) => {
      const mlp = layer.mlp as MoeMlp;
      const before = qm.weights.layers[l]!.mlp as MoeMlp;
      assert.equal(mlp.experts, before.experts);
      for (let r = 0; r < mlp.router.rows; r++) {
        const row = mlp.router.data.subarray(r * 64, (r + 1) * 64);
        const orig = before.router.data.subarray(r * 64, (r + 1) * 64);
        const levels = new Set(row);
        assert.ok(levels.size <= 2 ** bits, `${levels.size} levels at ${bits} bits`);
        // Min-max grid: the step is (max − min)/(2^b − 1); every value within half a step.
        let lo = 0, hi = 0;
        for (const v of orig) [lo, hi] = [Math.min(lo, v), Math.max(hi, v)];
        const step = (hi - lo) / (2 ** bits - 1);
        for (let i = 0; i < 64; i++) assert.ok(Math.abs(row[i]! - orig[i]!) <= step / 2 + 1e-6);
      }
    });
    assert.match(out.notes.at(-1)!, new RegExp(`router W${bits}A8`));
  }
  // 16 input bits: the router's own copy of its input stays in float (see the forward test below).
  const a16 = quantizeRouters(qm, { wBits: 8, aBits: 16 });
  assert.equal(a16.routerAbits, 16);
  assert.match(a16.notes.at(-1)!, /its input in float/);
  // A method that quantized its own router is left alone, and says so.
  const own = quantizeRouters({ ...qm, routerQuantized: true }, { wBits: 4, aBits: 8 });
  assert.equal(own.weights, qm.weights);
  assert.match(own.notes.at(-1)!, /quantized by the method itself/);
  assert.equal(
    quantLabel({
      wBits: 4,
      aBits: 4,
      granularity: "channel",
      symmetric: false,
      router: { wBits: 8, aBits: 8 },
      act: DEFAULT_ACT_OPTIONS,
    }),
    "W4A4-rW8A8",
  );
});

moe.test("a router with 16 input bits reads the float MLP input even when the experts' input is 4-bit", async () => {
  const qm = await moeModel();
  const ids = [1, 403, 261, 16, 30, 75, 9, 300, 47, 12];
  const run = (routerBits?: number) => {
    const weights = {
      ...qm.weights,
      activations: {
        bits: 4,
        kernel: "uniform" as const,
        options: DEFAULT_ACT_OPTIONS,
        ...(routerBits !== undefined ? { routerBits } : {}),
      },
    };
    const model = { config: qm.config, weights };
    const x = embedTokens(model, ids);
    let input: Float32Array | undefined;
    let probs: Float64Array | undefined;
    layerForward(
      model,
      0,
      x,
      ids.length,
      createKvCache(qm.config, ids.length),
      refKernels,
      (k, v) => {
        if (k === "router") input = v.slice();
      },
      { routing: (_l, p) => (probs = p.slice()) },
    );
    return { input: input!, probs: probs! };
  };
  const router = (qm.weights.layers[0]!.mlp as MoeMlp).router;
  const softmaxOf = (xn: Float32Array, t: number) => {
    const z = [0, 1, 2, 3].map((e) => {
      let s = 0;
      for (let j = 0; j < 64; j++) s += router.data[e * 64 + j]! * xn[t * 64 + j]!;
      return s;
    });
    const m = Math.max(...z);
    const ex = z.map((v) => Math.exp(v - m));
    const sum = ex.reduce((a, b) => a + b, 0);
    return ex.map((v) => v / sum);
  };
  const float = run(16);
  const quant = run();
  let dFloat = 0, dQuant = 0;
  for (let t = 0; t < ids.length; t++) {
    const p = softmaxOf(float.input, t);
    for (let e = 0; e < 4; e++) {
      dFloat = Math.max(dFloat, Math.abs(float.probs[t * 4 + e]! - p[e]!));
      dQuant = Math.max(dQuant, Math.abs(quant.probs[t * 4 + e]! - softmaxOf(quant.input, t)[e]!));
    }
  }
  assert.ok(dFloat < 1e-5, `router on float input: ${dFloat}`);
  // By default the router reads the experts' 4-bit input: its probabilities differ.
  assert.ok(dQuant > 1e-4, `router on quantized input: ${dQuant}`);
});
