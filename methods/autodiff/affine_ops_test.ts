import assert from "node:assert/strict";
import type { ActivationQuantization } from "../../core/act_quantizer.ts";
import { roundHalfEven } from "../../core/quantizer.ts";
import { assertClose, dot, numericGrad } from "../../testing/gradcheck.ts";
import { random64, randomMatrix } from "../../testing/random.ts";
import { actQuantBackward, actQuantForward } from "./act_quant.ts";
import { inverseBackward, invertMatrix, SingularMatrixError } from "./inverse.ts";
import { initLwc, lwcBackward, lwcForward } from "./lwc.ts";

const all = (n: number) => Array.from({ length: n }, (_, i) => i);

Deno.test("invertMatrix: hand-computed 2×2 and 3×3 inverses, A·A⁻¹ = I with pivoting, singular matrices rejected", () => {
  // [[4, 7], [2, 6]]⁻¹ = [[0.6, −0.7], [−0.2, 0.4]] (det 10).
  assertClose(invertMatrix([4, 7, 2, 6], 2), [0.6, -0.7, -0.2, 0.4], 1e-14, 1e-15, "2×2");
  // A zero leading entry needs a row swap: [[0, 1], [1, 0]] is its own inverse.
  assertClose(invertMatrix([0, 1, 1, 0], 2), [0, 1, 1, 0], 0, 1e-15, "swap");
  // Upper triangular [[1, 2, 3], [0, 1, 4], [0, 0, 1]]⁻¹ = [[1, −2, 5], [0, 1, −4], [0, 0, 1]].
  assertClose(
    invertMatrix([1, 2, 3, 0, 1, 4, 0, 0, 1], 3),
    [1, -2, 5, 0, 1, -4, 0, 0, 1],
    1e-14,
    1e-14,
    "3×3",
  );
  const n = 7;
  const a = random64(n * n, 3);
  const inv = invertMatrix(a, n);
  const eye = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let k = 0; k < n; k++) s += a[i * n + k]! * inv[k * n + j]!;
      eye[i * n + j] = s;
    }
  }
  assertClose(
    eye,
    Float64Array.from(all(n * n), (i) => (i % (n + 1) === 0 ? 1 : 0)),
    0,
    1e-12,
    "A A⁻¹",
  );
  assert.throws(() => invertMatrix([1, 2, 2, 4], 2), SingularMatrixError);
  assert.throws(() => invertMatrix([1, 0, 0, 0], 2), /singular at column 1/);
  assert.throws(() => invertMatrix([1, NaN, 0, 1], 2), SingularMatrixError);
  assert.throws(() => invertMatrix([1, 2, 3], 2), RangeError);
});

Deno.test("inverseBackward matches central finite differences of Σ R ⊙ A⁻¹", () => {
  const n = 5;
  const a = random64(n * n, 11);
  for (let i = 0; i < n; i++) a[i * n + i] = a[i * n + i]! + 3;
  const r = random64(n * n, 12);
  const f = () => dot(r, invertMatrix(a, n));
  const dA = new Float64Array(n * n);
  inverseBackward(invertMatrix(a, n), r, n, dA);
  assertClose(dA, numericGrad(f, a, all(n * n), 1e-6), 1e-6, 1e-9, "d(A⁻¹)");
});

Deno.test("lwcForward: hand-computed grid (σ(γ)·max, σ(β)·min), identity at 16 bits", () => {
  // One row [−1, 0.2, 0.5, 1] at 2 bits, γ = β = large (σ → 1): scale (1 − (−1))/3 = 2/3,
  // zero round(1.5) = 2 (half to even); codes clamp(round(w/s) + 2, 0, 3).
  const p = initLwc(1, 4, { bits: 2, symmetric: false });
  p.up.fill(40);
  p.low.fill(40);
  const w = Float64Array.of(-1, 0.2, 0.5, 1);
  const out = new Float64Array(4);
  lwcForward(w, p, out);
  // round(−1.5) = −2 → code 0 → −2·s; round(0.3) = 0 → 0; round(0.75) = 1 → s; round(1.5) = 2 →
  // code 4 clamped to 3 → s.
  const s = 2 / 3;
  assertClose(out, [-2 * s, 0, s, s], 1e-12, 1e-12, "2-bit row");
  const id = initLwc(1, 4, { bits: 16, symmetric: false });
  lwcForward(w, id, out);
  assert.deepEqual(Array.from(out), Array.from(w));
});

Deno.test("lwcBackward is torch's gradient of the official forward: finite differences with rounding, zero point, clamp side and extreme indices frozen", async (t) => {
  for (
    const [bits, groupSize, symmetric] of [[3, 6, false], [2, 4, false], [4, 6, true]] as const
  ) {
    await t.step(`${bits} bits, group ${groupSize}, ${symmetric ? "sym" : "asym"}`, () => {
      const rows = 3, cols = 12;
      const p = initLwc(rows, cols, { bits, groupSize, symmetric });
      const gpr = Math.ceil(cols / groupSize);
      p.up.set(random64(rows * gpr, 70, 1.5).map((v) => v + 1));
      p.low.set(random64(rows * gpr, 71, 1.5).map((v) => v + 1));
      const w = random64(rows * cols, 72, 0.5);
      const r = random64(rows * cols, 73);
      const sig = (x: number) => 1 / (1 + Math.exp(-x));
      // Frozen at the evaluation point: extreme indices, zero points, offsets and clamp sides.
      const frozen = all(rows * gpr).map((gi) => {
        const row = Math.floor(gi / gpr), g = gi % gpr;
        const from = row * cols + g * groupSize,
          to = row * cols + Math.min(cols, (g + 1) * groupSize);
        let kMax = from, kMin = from;
        for (let i = from; i < to; i++) {
          if (w[i]! > w[kMax]!) kMax = i;
          if (w[i]! < w[kMin]!) kMin = i;
        }
        return { from, to, kMax, kMin };
      });
      const grid = (gi: number) => {
        const { kMax, kMin } = frozen[gi]!;
        const hi = sig(p.up[gi]!) * w[kMax]!, lo = sig(p.low[gi]!) * w[kMin]!;
        if (symmetric) {
          const half = 2 ** (bits - 1);
          return {
            s: Math.max(Math.abs(hi), Math.abs(lo)) / (half - 1),
            lo,
            qmin: -half,
            qmax: half - 1,
          };
        }
        return { s: (hi - lo) / (2 ** bits - 1), lo, qmin: 0, qmax: 2 ** bits - 1 };
      };
      const zeros = all(rows * gpr).map((gi) => {
        const G = grid(gi);
        return symmetric ? 0 : roundHalfEven(-G.lo / G.s);
      });
      const rho = new Float64Array(rows * cols), side = new Int8Array(rows * cols);
      frozen.forEach(({ from, to }, gi) => {
        const G = grid(gi), z = zeros[gi]!;
        for (let i = from; i < to; i++) {
          const u = w[i]! / G.s, q = roundHalfEven(u) + z;
          rho[i] = roundHalfEven(u) - u;
          side[i] = q < G.qmin ? -1 : q > G.qmax ? 1 : 0;
        }
      });
      const surrogate = () => {
        let s = 0;
        frozen.forEach(({ from, to }, gi) => {
          const G = grid(gi), z = zeros[gi]!;
          for (let i = from; i < to; i++) {
            const v = side[i]! < 0
              ? (G.qmin - z) * G.s
              : side[i]! > 0
              ? (G.qmax - z) * G.s
              : (w[i]! / G.s + rho[i]!) * G.s;
            s += r[i]! * v;
          }
        });
        return s;
      };
      const out = new Float64Array(rows * cols);
      lwcForward(w, p, out);
      assert.ok(Math.abs(dot(r, out) - surrogate()) < 1e-12, "forward equals the surrogate");
      const grads = { up: new Float64Array(p.up.length), low: new Float64Array(p.low.length) };
      const dW = new Float64Array(rows * cols);
      lwcBackward(w, p, r, grads, dW);
      assertClose(grads.up, numericGrad(surrogate, p.up, all(p.up.length), 1e-7), 1e-5, 1e-8, "γ");
      assertClose(
        grads.low,
        numericGrad(surrogate, p.low, all(p.low.length), 1e-7),
        1e-5,
        1e-8,
        "β",
      );
      assertClose(dW, numericGrad(surrogate, w, all(w.length), 1e-7), 1e-5, 1e-8, "w");
      if (!symmetric) assert.ok(side.some((v) => v !== 0), "the case should exercise the clamp");
    });
  }
});

Deno.test("actQuantBackward is the gradient of the evaluation quantizer with rounding, zero point and extreme element frozen (per token, sym and asym)", async (t) => {
  for (const symmetric of [true, false]) {
    for (const clip of [1, 0.8]) {
      await t.step(`${symmetric ? "sym" : "asym"} clip ${clip}`, () => {
        const T = 3, n = 10, bits = 4;
        const aq: ActivationQuantization = {
          bits,
          kernel: "uniform",
          options: { granularity: "token", static: false, symmetric, clip, bmm: false },
        };
        const x = randomMatrix(T * n, 80 + (symmetric ? 1 : 0), 2);
        const r = random64(T * n, 82);
        const out = actQuantForward(aq, x, T, n);
        // Analytic gradient.
        const dx = new Float32Array(T * n);
        actQuantBackward(aq, x, T, n, Float32Array.from(r), dx);
        // Surrogate in float64 with frozen offsets; x perturbed in float64.
        const x64 = Float64Array.from(x);
        const frozen = all(T).map((t) => {
          let kMax = t * n, kMin = t * n, kAbs = t * n;
          for (let j = t * n; j < (t + 1) * n; j++) {
            if (x64[j]! > x64[kMax]!) kMax = j;
            if (x64[j]! < x64[kMin]!) kMin = j;
            if (Math.abs(x64[j]!) > Math.abs(x64[kAbs]!)) kAbs = j;
          }
          return { kMax, kMin, kAbs };
        });
        const stepOf = (t: number) => {
          const { kMax, kMin, kAbs } = frozen[t]!;
          if (symmetric) return { s: (clip * Math.abs(x64[kAbs]!)) / (2 ** (bits - 1) - 1), lo: 0 };
          const hi = Math.max(x64[kMax]!, 0) * clip, lo = Math.min(x64[kMin]!, 0) * clip;
          return { s: (hi - lo) / (2 ** bits - 1), lo };
        };
        const meta = all(T).map((t) => {
          const { s, lo } = stepOf(t);
          const z = symmetric ? 0 : roundHalfEven(-lo / s);
          const qmin = symmetric ? -(2 ** (bits - 1) - 1) : 0;
          const qmax = symmetric ? 2 ** (bits - 1) - 1 : 2 ** bits - 1;
          const rho: number[] = [], side: number[] = [];
          for (let j = t * n; j < (t + 1) * n; j++) {
            const u = x64[j]! / s, q = roundHalfEven(u) + z;
            rho.push(roundHalfEven(u) - u);
            side.push(q < qmin ? -1 : q > qmax ? 1 : 0);
          }
          return { z, qmin, qmax, rho, side };
        });
        const surrogate = () => {
          let acc = 0;
          for (let t = 0; t < T; t++) {
            const { s } = stepOf(t);
            const { z, qmin, qmax, rho, side } = meta[t]!;
            for (let j = 0; j < n; j++) {
              const i = t * n + j;
              const v = side[j]! < 0
                ? (qmin - z) * s
                : side[j]! > 0
                ? (qmax - z) * s
                : (x64[i]! / s + rho[j]!) * s;
              acc += r[i]! * v;
            }
          }
          return acc;
        };
        // The forward (float32 steps) is the surrogate up to float32 rounding.
        assert.ok(Math.abs(dot(r, out) - surrogate()) < 1e-4, "forward equals the surrogate");
        assertClose(dx, numericGrad(surrogate, x64, all(T * n), 1e-6), 1e-4, 1e-5, "dx");
        if (clip < 1) assert.ok(meta.some((m) => m.side.some((s) => s !== 0)), "clamped elements");
      });
    }
  }
});
