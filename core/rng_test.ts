import assert from "node:assert/strict";
import { uniformInt } from "pure-rand/distribution/uniformInt";
import { xoroshiro128plus } from "pure-rand/generator/xoroshiro128plus";
import { SeededRng } from "./rng.ts";

Deno.test("SeededRng: the same seed gives the same draws; int() stays in [lo, hi] and reaches both ends", () => {
  const a = new SeededRng(42), b = new SeededRng(42), c = new SeededRng(43);
  const da = Array.from({ length: 200 }, () => a.int(-3, 3));
  assert.deepEqual(Array.from({ length: 200 }, () => b.int(-3, 3)), da);
  assert.notDeepEqual(Array.from({ length: 200 }, () => c.int(-3, 3)), da);
  assert.ok(da.every((v) => Number.isInteger(v) && v >= -3 && v <= 3));
  assert.ok(da.includes(-3) && da.includes(3));
  const f = Array.from({ length: 1000 }, () => a.float64());
  assert.ok(f.every((v) => v >= 0 && v < 1));
  const mean = f.reduce((s, v) => s + v, 0) / f.length;
  assert.ok(Math.abs(mean - 0.5) < 0.05, `mean ${mean}`); // 5 σ of 1000 uniforms is 0.046
});

Deno.test("SeededRng: permutation() is Fisher–Yates from the last index down over pure-rand's uniformInt", () => {
  // Written out independently on the raw generator.
  const g = xoroshiro128plus(7);
  const want = Array.from({ length: 50 }, (_, i) => i);
  for (let i = want.length - 1; i > 0; i--) {
    const j = uniformInt(g, 0, i);
    const t = want[i]!;
    want[i] = want[j]!;
    want[j] = t;
  }
  const got = new SeededRng(7).permutation(50);
  assert.deepEqual(got, want);
  assert.deepEqual([...got].sort((x, y) => x - y), Array.from({ length: 50 }, (_, i) => i));
  assert.deepEqual(new SeededRng(1).permutation(0), []);
  assert.deepEqual(new SeededRng(1).permutation(1), [0]);
});

Deno.test("SeededRng: sample() draws distinct items, pick() one of them, both refuse what cannot be drawn", () => {
  const rng = new SeededRng(3);
  const items = ["a", "b", "c", "d", "e"];
  const s = rng.sample(items, 4);
  assert.equal(new Set(s).size, 4);
  assert.ok(s.every((x) => items.includes(x)));
  assert.ok(items.includes(rng.pick(items)));
  assert.throws(() => rng.sample(items, 6), RangeError);
  assert.throws(() => rng.pick([]), RangeError);
});
