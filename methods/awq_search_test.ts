import assert from "node:assert/strict";
import { randomMatrix } from "../testing/random.ts";
import type { Matrix } from "../models/types.ts";
import { awqQuantizeMatrix } from "./awq_quantizer.ts";
import {
  AWQ_SCALE_FLOOR,
  candidateScales,
  meanAbs,
  searchScales,
  trialWeight,
  weightMeanNormalized,
} from "./awq_search.ts";

const LLM_AWQ = { duoScaling: false, grid: 20 };
const DUO = { duoScaling: true, grid: 20 };
const SPEC = { bits: 4, granularity: "group" as const, groupSize: 4, symmetric: false };

function close(a: ArrayLike<number>, b: ArrayLike<number>, rel: number, what: string) {
  assert.equal(a.length, b.length, what);
  for (let i = 0; i < a.length; i++) {
    assert.ok(
      Math.abs(a[i]! - b[i]!) <= rel * Math.abs(b[i]!),
      `${what}[${i}]: ${a[i]} vs ${b[i]}`,
    );
  }
}

Deno.test("x̄: mean |x| per channel over every token of every window", () => {
  const xs = [Float32Array.from([1, -2, 3, -4]), Float32Array.from([-5, 6])];
  // 3 tokens of 2 channels: |1|,|3|,|5| and |2|,|4|,|6|
  assert.deepEqual([...meanAbs(xs, 2)], [3, 4]);
});

Deno.test("w̄ (AutoAWQ duo scaling): |W| over its group's absmax, averaged over the stacked rows", () => {
  const a: Matrix = { rows: 1, cols: 4, data: Float32Array.from([1, -2, 0.5, 4]) };
  const b: Matrix = { rows: 1, cols: 4, data: Float32Array.from([2, 2, -1, 1]) };
  const spec = { ...SPEC, groupSize: 2 };
  // row a: groups (1, −2) → 0.5, 1; (0.5, 4) → 0.125, 1. Row b: 1, 1; 1, 1.
  close(weightMeanNormalized([a, b], spec), [0.75, 1, 0.5625, 1], 1e-5, "w̄");
});

Deno.test("llm-awq candidate scales by hand: x̄^r, floored at 1e-4, normalised by sqrt(max·min)", () => {
  const xbar = Float32Array.from([4, 1, 0.25]);
  assert.deepEqual([...candidateScales(xbar, undefined, 0, LLM_AWQ)], [1, 1, 1]);
  // r = 0.5: [2, 1, 0.5], max · min = 1.
  assert.deepEqual([...candidateScales(xbar, undefined, 10, LLM_AWQ)], [2, 1, 0.5]);
  // A silent channel: 0^0.5 = 0 → floor 1e-4; norm sqrt(2 · 1e-4).
  const s = candidateScales(Float32Array.from([0, 4]), undefined, 10, LLM_AWQ);
  const norm = Math.sqrt(2 * 1e-4);
  close(s, [1e-4 / norm, 2 / norm], 1e-6, "silent channel");
  // r = 0 is exactly 1 even for a silent channel (0^0 = 1).
  assert.deepEqual([...candidateScales(Float32Array.from([0, 4]), undefined, 0, LLM_AWQ)], [1, 1]);
});

Deno.test("duo candidate scales by hand: x̄^r / (w̄^(1−r) + 1e-4), normalised", () => {
  const xbar = Float32Array.from([4, 1]);
  const wbar = Float32Array.from([1, 0.25]);
  const raw = [2 / (1 + 1e-4), 1 / (0.5 + 1e-4)];
  const norm = Math.sqrt(Math.max(...raw) * Math.min(...raw));
  close(candidateScales(xbar, wbar, 10, DUO), raw.map((v) => v / norm), 1e-6, "r = 0.5");
  // r = 0 is not RTN: s ∝ 1 / (w̄ + 1e-4).
  const r0 = [1 / (1 + 1e-4), 1 / (0.25 + 1e-4)];
  const n0 = Math.sqrt(r0[0]! * r0[1]!);
  close(candidateScales(xbar, wbar, 0, DUO), r0.map((v) => v / n0), 1e-6, "r = 0");
  assert.equal(AWQ_SCALE_FLOOR, Math.fround(1e-4));
});

Deno.test("trial weight Q(W·s)/s: s ≡ 1 is round-to-nearest with AWQ's quantizer bit for bit", () => {
  const m: Matrix = { rows: 3, cols: 8, data: randomMatrix(24, 5) };
  const ones = new Float32Array(8).fill(1);
  assert.deepEqual(
    trialWeight(m, ones, SPEC).data,
    awqQuantizeMatrix(m.data, 3, 8, SPEC).dequantized,
  );
  // Otherwise columns are scaled before and unscaled after rounding.
  const s = Float32Array.from([2, 1, 1, 1, 0.5, 1, 1, 4]);
  const t = trialWeight(m, s, SPEC);
  const scaled = m.data.map((v, i) => v * s[i % 8]!);
  const q = awqQuantizeMatrix(scaled, 3, 8, SPEC).dequantized;
  assert.deepEqual(t.data, q.map((v, i) => v / s[i % 8]!));
});

Deno.test("search: llm-awq r = 0 is RTN (the chosen loss is never above it); strict argmin keeps the smaller ratio on ties", () => {
  const m: Matrix = { rows: 4, cols: 8, data: randomMatrix(32, 9) };
  const xbar = Float32Array.from([1, 2, 8, 0.5, 1, 3, 0.1, 1]);
  const rtn = awqQuantizeMatrix(m.data, 4, 8, SPEC).dequantized;
  const seen: Float32Array[] = [];
  const r = searchScales([m], xbar, SPEC, LLM_AWQ, (trials) => {
    seen.push(trials[0]!.data);
    // Squared distance to the full-precision weights, weighted by x̄².
    let e = 0;
    trials[0]!.data.forEach((v, i) => e += (v - m.data[i]!) ** 2 * xbar[i % 8]! ** 2);
    return e;
  });
  assert.equal(seen.length, 20);
  assert.deepEqual(seen[0], rtn);
  assert.ok(r.loss <= r.losses[0]!);
  assert.equal(r.loss, Math.min(...r.losses));
  assert.equal(r.ratio, r.index / 20);
  // Ties: a constant loss keeps r = 0; a minimum reached twice keeps the first.
  assert.equal(searchScales([m], xbar, SPEC, LLM_AWQ, () => 1).index, 0);
  let i = 0;
  const pattern = [5, 4, 2, 3, 2, 1, 6, 1];
  const t = searchScales([m], xbar, SPEC, LLM_AWQ, () => pattern[i++ % pattern.length]!);
  assert.equal(t.index, 5);
  assert.throws(() => searchScales([m], xbar, SPEC, LLM_AWQ, () => NaN), /no finite loss/);
});
