import assert from "node:assert/strict";
import { groupParams, quantizeValue } from "../core/quantizer.ts";
import { randomMatrix } from "../testing/random.ts";
import { initFlexRound, searchGroupRange } from "./flexround_learner.ts";

function err24(w: ArrayLike<number>, from: number, to: number, s: number, z: number, bits: number) {
  let e = 0;
  for (let i = from; i < to; i++) {
    e += Math.abs(s * (quantizeValue(w[i]!, s, z, 2 ** bits - 1) - z) - w[i]!) ** 2.4;
  }
  return e;
}

Deno.test("searchGroupRange (official MSE clipping init) never does worse than min-max in the 2.4-norm, and clips an outlier", () => {
  for (const bits of [2, 3, 4]) {
    const w = randomMatrix(64, 10 + bits, 1);
    for (let g = 0; g < 4; g++) {
      const from = g * 16, to = from + 16;
      const mm = groupParams(w, from, to, bits, false);
      const s = searchGroupRange(w, from, to, bits);
      assert.ok(
        err24(w, from, to, s.scale, s.zero, bits) <= err24(w, from, to, mm.scale, mm.zero, bits),
      );
    }
  }
  const outlier = Float32Array.from([...Array.from({ length: 15 }, (_, i) => i / 15 - 0.5), 8]);
  const mm = groupParams(outlier, 0, 16, 3, false);
  const s = searchGroupRange(outlier, 0, 16, 3);
  assert.ok(s.scale < mm.scale, `clipped scale ${s.scale} < min-max ${mm.scale}`);
  assert.ok(
    err24(outlier, 0, 16, s.scale, s.zero, 3) < err24(outlier, 0, 16, mm.scale, mm.zero, 3),
  );
});

Deno.test("initFlexRound: one log-scale and zero per group, δ₂ and δ₃ zero; rejects bad bits and group sizes", () => {
  const m = { rows: 3, cols: 10, data: randomMatrix(30, 3, 1) };
  const p = initFlexRound(m, { bits: 3, groupSize: 4, symmetric: false, clipping: false });
  assert.equal(p.logScale.length, 9);
  assert.equal(p.zero.length, 9);
  assert.ok(p.elem.every((v) => v === 0) && p.row.every((v) => v === 0));
  const g = groupParams(m.data, 4, 8, 3, false);
  assert.ok(Math.abs(Math.exp(p.logScale[1]!) - g.scale) < 1e-12 * g.scale + 1e-9);
  assert.equal(p.zero[1], g.zero);
  assert.throws(() => initFlexRound(m, { bits: 1, symmetric: false, clipping: false }), RangeError);
  assert.throws(
    () => initFlexRound(m, { bits: 3, groupSize: 0, symmetric: false, clipping: false }),
    /Group size must be a positive integer/,
  );
});
