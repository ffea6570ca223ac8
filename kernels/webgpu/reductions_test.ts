import assert from "node:assert/strict";
import { logSoftmaxRows, scoreWindow } from "../../runners/window_score.ts";
import { assertWithin, randomFloats } from "../wasm/test_util.ts";
import { gpuTest, U32 } from "./test_util.ts";

gpuTest("webgpu log-softmax matches logSoftmaxRows on awkward vocabularies", async (k) => {
  let seed = 1;
  for (const V of [1, 7, 63, 64, 65, 172, 512, 4097]) {
    for (const rows of [1, 7]) {
      const x = randomFloats(rows * V, seed++).map((v, i) => i % 11 === 0 ? v * 40 : v * 5);
      const want = logSoftmaxRows(x.slice(), V);
      const got = x.slice();
      await k.logSoftmax(got, V);
      // x − lse with lse = max + log Σ exp(x − max): the sum of V terms ≤ 1 carries ≤ (V + 4)·u
      // relative error, hence log Σ an absolute one, plus the roundings of the subtraction.
      const scale = Float64Array.from(want, (v, i) => Math.abs(v) + Math.abs(x[i]!) + 1);
      assertWithin(got, want, scale, (V + 8) * U32, `logSoftmax ${rows}×${V}`);
    }
  }
});

gpuTest("webgpu window scores (NLL, KL, argmax agreement) match scoreWindow", async (k) => {
  let seed = 50;
  for (const V of [1, 7, 64, 65, 172, 512]) {
    for (const len of [2, 7, 65]) {
      const lp = logSoftmaxRows(randomFloats(len * V, seed++).map((v) => v * 4), V);
      // A reference close to lp (a quantized model against the full-precision one).
      const refLp = logSoftmaxRows(lp.map((v, i) => v + 0.3 * Math.sin(i)), V);
      const window = Array.from({ length: len }, (_, i) => (i * 37 + seed) % V);
      const want = scoreWindow(lp, refLp, window, V);
      const rows = await k.score(lp, refLp, window, V);
      let nll = 0, kl = 0, klScale = 0, agree = 0;
      for (let t = 0; t < len - 1; t++) {
        // NLL is read, not computed: exact.
        assert.equal(rows[t * 4], -lp[t * V + window[t + 1]!]!);
        nll += rows[t * 4]!;
        kl += rows[t * 4 + 1]!;
        agree += rows[t * 4 + 2]!;
        for (let i = 0; i < V; i++) {
          const r = refLp[t * V + i]!;
          klScale += Math.exp(r) * (Math.abs(r) + Math.abs(lp[t * V + i]!));
        }
      }
      assert.ok(Math.abs(nll - want.sumNll) <= 1e-9 * Math.abs(want.sumNll) + 1e-9);
      // A float32 sum of V terms of e^r·(r − q), each ≤ 3 roundings: (V + 4)·u · Σ|terms|.
      const budget = (V + 4) * U32 * klScale;
      assert.ok(Math.abs(kl - want.sumKl) <= budget, `kl ${kl} vs ${want.sumKl} (V ${V})`);
      assert.equal(agree, want.agree, `agreement V ${V} len ${len}`);
    }
  }
});

gpuTest("webgpu argmax breaks ties toward the lowest index, like scoreWindow", async (k) => {
  // Row 0: tie between 1 and 3 → 1. Row 1: the maximum is last. Reference argmaxes 1 and 2.
  const lp = new Float32Array([-2, -1, -3, -1, -5, -5, -5, -0.5]);
  const refLp = new Float32Array([-2, -0.5, -3, -1, -5, -5, -0.1, -0.5]);
  const rows = await k.score(lp, refLp, [0, 2, 1], 4);
  assert.deepEqual([rows[3], rows[7]], [1, 3]);
  assert.deepEqual([rows[2], rows[6]], [1, 0]);
  assert.equal(scoreWindow(lp, refLp, [0, 2, 1], 4).agree, 1);
  // Without a reference: KL 0 and full agreement.
  const self = await k.score(lp, undefined, [0, 2, 1], 4);
  assert.deepEqual([self[1], self[2], self[5], self[6]], [0, 1, 0, 1]);
  assert.deepEqual([self[0], self[4]], [3, 5]);
});
