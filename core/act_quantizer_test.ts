import assert from "node:assert/strict";
import {
  type ActivationQuantization,
  type ActQuantOptions,
  DEFAULT_ACT_OPTIONS,
  fakeQuantActivations,
  validateActQuant,
  ZeroCounter,
} from "./act_quantizer.ts";
import { randomMatrix } from "../testing/random.ts";

const uniform = (bits: number, o: Partial<ActQuantOptions> = {}): ActivationQuantization => ({
  bits,
  kernel: "uniform",
  options: { ...DEFAULT_ACT_OPTIONS, ...o },
});

function close(actual: Float32Array, expected: number[], tol = 1e-6) {
  assert.equal(actual.length, expected.length);
  actual.forEach((v, i) =>
    assert.ok(Math.abs(v - expected[i]!) <= tol, `[${i}] ${v} vs ${expected[i]}`)
  );
}

Deno.test("per-token symmetric: step max|x|/(2^(b−1)−1) per row, ties to even, zeros counted", () => {
  // Row 0 at 4 bits: step 7/7 = 1; −3.5 → −4 (tie to even), 2.5 → 2 (tie to even), 0.7 → 1.
  // Row 1: step 2/7; 0.1/step = 0.35 → 0, −0.1 → 0, 0 → 0, 2 → 7.
  const x = Float32Array.from([7, -3.5, 2.5, 0.7, 0.1, -0.1, 0, 2]);
  const counter = new ZeroCounter();
  const out = fakeQuantActivations(uniform(4), x, 2, 4, undefined, counter, "qkv");
  close(out, [7, -4, 2, 1, 0, 0, 0, 7 * Math.fround(2 / 7)]);
  assert.equal(counter.zeros.qkv, 3);
  assert.equal(counter.fraction("qkv"), 3 / 8);
  assert.equal(x[1], -3.5, "input unchanged");
});

Deno.test("per-tensor dynamic uses one step for the whole call; static uses the calibrated range", () => {
  const x = Float32Array.from([1, 0.5, 1.5, 6]);
  // Dynamic tensor at 3 bits: step 6/3 = 2; 1 → 0 (tie to even), 0.5 → 0, 1.5 → 1, 6 → 3.
  const dyn = uniform(3, { granularity: "tensor" });
  close(fakeQuantActivations(dyn, x, 2, 2, undefined), [0, 0, 2, 6]);
  // Static range [−3, 3] at 3 bits: step 1; 0.5 → 0, 1.5 → 2 (tie to even), 6 saturates at 3.
  const st = uniform(3, { granularity: "tensor", static: true });
  close(fakeQuantActivations(st, x, 2, 2, { range: { lo: -3, hi: 3 } }), [1, 0, 2, 3]);
  assert.throws(
    () => fakeQuantActivations(st, x, 2, 2, undefined, undefined, "o"),
    /o has no range/,
  );
});

Deno.test("asymmetric per-token: min-max range with zero in it, codes in [0, 2^b − 1]", () => {
  // [−1, 2] at 2 bits: scale 1, zero 1 → −1, 0.4 → 0, 2 exact; 1.5 → 2 (tie to even).
  const x = Float32Array.from([-1, 0.4, 2, 1.5]);
  const counter = new ZeroCounter();
  const asym = uniform(2, { symmetric: false });
  close(fakeQuantActivations(asym, x, 1, 4, undefined, counter, "o"), [-1, 0, 2, 2]);
  assert.equal(counter.zeros.o, 1);
});

Deno.test("clipping shrinks the range and saturates beyond it", () => {
  // clip 0.5 of max 6 at 3 bits: step 1; 6 saturates at code 3; 1.5 → 2 (tie to even).
  const x = Float32Array.from([6, 1.5]);
  close(fakeQuantActivations(uniform(3, { clip: 0.5 }), x, 1, 2, undefined), [3, 2]);
});

Deno.test("an all-zero row gives zeros (floored step), never NaN", () => {
  for (
    const a of [uniform(8), uniform(8, { symmetric: false }), {
      ...uniform(8),
      kernel: "crossquant" as const,
      alpha: 0.5,
    }]
  ) {
    const out = fakeQuantActivations(a, new Float32Array(6), 2, 3, undefined);
    assert.deepEqual([...out], [0, 0, 0, 0, 0, 0]);
  }
});

Deno.test("CrossQuant: Δ_ij = t_i^α c_j^(1−α) / qmax by hand; α = 1 is per-token", () => {
  const x = Float32Array.from([1, 0.01, 0.5, 0.02]);
  const cq: ActivationQuantization = { ...uniform(8), kernel: "crossquant", alpha: 0.5 };
  // t = [1, 0.5], c = [1, 0.02]; Δ_01 = √1·√0.02/127 → 0.01/Δ = 8.98 → 9; Δ_11 = √0.5·√0.02/127 →
  // 0.02/Δ = 25.4 → 25; Δ_10 = √0.5·√1/127 → 0.5/Δ = 89.8 → 90.
  const d = (t: number, c: number) => Math.fround(Math.sqrt(t) * Math.sqrt(c) / 127);
  close(fakeQuantActivations(cq, x, 2, 2, undefined), [
    127 * d(1, 1),
    9 * d(1, 0.02),
    90 * d(0.5, 1),
    25 * d(0.5, 0.02),
  ]);
  const y = randomMatrix(5 * 16, 3, 2);
  assert.deepEqual(
    fakeQuantActivations({ ...cq, alpha: 1 }, y, 5, 16, undefined),
    fakeQuantActivations(uniform(8), y, 5, 16, undefined),
  );
});

Deno.test("CrossQuant has a smaller quantization kernel than per-token when a channel holds outliers", () => {
  const T = 64, n = 32;
  const x = randomMatrix(T * n, 7);
  // Channel 5 holds outliers in every token, as LLM activations do.
  for (let t = 0; t < T; t++) x[t * n + 5] = 80 + 20 * x[t * n + 5]!;
  for (const bits of [4, 6, 8]) {
    const pt = new ZeroCounter(), cq = new ZeroCounter();
    fakeQuantActivations(uniform(bits), x, T, n, undefined, pt, "s");
    fakeQuantActivations(
      { ...uniform(bits), kernel: "crossquant", alpha: 0.5 },
      x,
      T,
      n,
      undefined,
      cq,
      "s",
    );
    assert.ok(cq.fraction() < pt.fraction(), `A${bits}: ${cq.fraction()} vs ${pt.fraction()}`);
  }
});

Deno.test("folded factors: quantizing x/f with `folded: f` equals quantizing x, divided by f", () => {
  const T = 4, n = 8;
  const x = randomMatrix(T * n, 11);
  const f = randomMatrix(n, 12, 0.5).map((v) => 1 + v);
  const c = randomMatrix(n, 13, 0.5).map((v) => 1.5 + v);
  const cq: ActivationQuantization = { ...uniform(6), kernel: "crossquant", alpha: 0.3 };
  const folded = x.map((v, i) => v / f[i % n]!);
  const a = fakeQuantActivations(cq, folded, T, n, { channelMax: c, folded: f });
  const b = fakeQuantActivations(cq, x, T, n, { channelMax: c });
  a.forEach((v, i) => assert.ok(Math.abs(v - b[i]! / f[i % n]!) < 1e-6, `${i}`));
});

Deno.test("validateActQuant names the bad field", () => {
  assert.throws(
    () => validateActQuant(1, DEFAULT_ACT_OPTIONS),
    /Activation bits .* \[2, 16\].* got 1/,
  );
  assert.throws(() => validateActQuant(17, DEFAULT_ACT_OPTIONS), /got 17/);
  assert.throws(() => validateActQuant(8, { ...DEFAULT_ACT_OPTIONS, clip: 0 }), /clipping ratio/);
  assert.throws(() => validateActQuant(8, { ...DEFAULT_ACT_OPTIONS, static: true }), /per tensor/);
  validateActQuant(8, DEFAULT_ACT_OPTIONS);
});
