import assert from "node:assert/strict";
import { forward } from "../runners/forward.ts";
import type { LlamaConfig } from "../models/types.ts";
import { randomDecoder, smallConfig } from "../testing/random_model.ts";
import { centerRows, fuseNorms } from "./norm_fusion.ts";

function relDiff(a: Float32Array, b: Float32Array): number {
  let d = 0, m = 0;
  for (let i = 0; i < a.length; i++) {
    d = Math.max(d, Math.abs(a[i]! - b[i]!));
    m = Math.max(m, Math.abs(b[i]!));
  }
  return d / m;
}

Deno.test("fuseNorms: folding γ into the consumers keeps the logits, norms become ones", () => {
  const cases: Partial<LlamaConfig>[] = [
    {},
    { tiedEmbeddings: true, qkvBias: true, normEps: 1e-6 },
    { mlpGated: false, mlpAct: "relu", mlpBias: true, oBias: true },
  ];
  for (const [i, c] of cases.entries()) {
    const config = smallConfig(c);
    const weights = randomDecoder(config, 40 + i);
    const ids = [1, 5, 9, 2, 7, 3, 8];
    const f = fuseNorms(config, weights, { centerEmbeddings: false });
    assert.ok(relDiff(forward(f, ids), forward({ config, weights }, ids)) <= 1e-5);
    assert.equal(f.config.tiedEmbeddings, false);
    assert.equal(f.config.normEps, config.normEps);
    assert.notEqual(f.weights.lmHead, f.weights.embed);
    assert.equal(f.weights.embed, weights.embed);
    // By hand: column j of q scaled by γ_j.
    const q0 = weights.layers[0]!.q, g = weights.layers[0]!.attnNorm;
    assert.equal(f.weights.layers[0]!.q.data[3], Math.fround(q0.data[3]! * g[3]!));
    for (const v of [f.weights.norm, f.weights.layers[1]!.attnNorm, f.weights.layers[1]!.mlpNorm]) {
      assert.ok(v.every((x) => x === 1));
    }
  }
});

Deno.test("fuseNorms: centring subtracts each embedding (and position) row's mean", () => {
  const config = smallConfig({ positions: "learned" });
  const weights = randomDecoder(config, 2);
  const f = fuseNorms(config, weights, { centerEmbeddings: true });
  for (const m of [f.weights.embed, f.weights.positions!]) {
    for (let r = 0; r < m.rows; r++) {
      const row = m.data.subarray(r * m.cols, (r + 1) * m.cols);
      assert.ok(Math.abs(row.reduce((a, b) => a + b, 0)) < 1e-5);
    }
  }
  const m = { rows: 1, cols: 4, data: Float32Array.from([1, 2, 3, 6]) };
  assert.deepEqual([...centerRows(m).data], [-2, -1, 0, 3]);
});

Deno.test("fuseNorms refuses LayerNorm, sandwich norms and MoE blocks", () => {
  const config = smallConfig();
  const w = randomDecoder(config, 1);
  const opts = { centerEmbeddings: false };
  assert.throws(() => fuseNorms({ ...config, norm: "layer" }, w, opts), /LayerNorm/);
  const sandwich = { ...w, layers: w.layers.map((l) => ({ ...l, postAttnNorm: l.attnNorm })) };
  assert.throws(() => fuseNorms(config, sandwich, opts), /sandwich/);
  const moe = {
    ...w,
    layers: w.layers.map((l) => ({
      ...l,
      mlp: { kind: "moe" as const, router: l.q, experts: [] },
    })),
  };
  assert.throws(() => fuseNorms(config, moe, opts), /Mixture-of-Experts/);
});
