import assert from "node:assert/strict";
import { roundHalfEven } from "../../core/quantizer.ts";
import { attentionRef } from "../../kernels/ref/attention.ts";
import { refKernels } from "../../kernels/ref/mod.ts";
import { assertClose, type Buf, dot, numericGrad } from "../../testing/gradcheck.ts";
import { random64 } from "../../testing/random.ts";
import { Adam, cosineLr } from "./adam.ts";
import { attentionBackward, attentionBackwardLoop, attentionForward } from "./attention.ts";
import { wasmKernels } from "../../kernels/wasm/mod.ts";
import {
  fakeQuantBackward,
  fakeQuantForward,
  type FakeQuantParams,
  groupsPerRow,
} from "./fake_quant.ts";
import { linearInputGrad, LinearScratch, linearWeightGrad } from "./linear.ts";
import { squaredError } from "./mse.ts";
import { rmsnormBackward, rmsnormForward } from "./rmsnorm.ts";
import { applyRope, ropeTable } from "./rope.ts";
import { swigluBackward, swigluForward } from "./swiglu.ts";

const all = (n: number) => Array.from({ length: n }, (_, i) => i);

Deno.test("rmsnormBackward matches central finite differences (float64)", () => {
  const T = 3, d = 6, eps = 1e-5;
  const x = random64(T * d, 1), w = random64(d, 2), r = random64(T * d, 3);
  const y = new Float64Array(T * d), inv = new Float64Array(T);
  const f = () => {
    rmsnormForward(x, T, w, eps, y, inv);
    return dot(r, y);
  };
  f();
  const dx = new Float64Array(T * d);
  rmsnormBackward(x, T, w, inv, r, dx);
  assertClose(dx, numericGrad(f, x, all(T * d), 1e-6), 1e-6, 1e-9, "rmsnorm dx");
});

Deno.test("applyRope: both styles rotate pairs, the inverse undoes it, and the backward is the inverse rotation (finite differences)", async (t) => {
  for (const style of ["interleaved", "half"] as const) {
    await t.step(style, () => {
      const T = 4, heads = 2, hd = 6;
      const table = ropeTable(hd, 10000, T);
      const v = random64(T * heads * hd, 7), r = random64(T * heads * hd, 8);
      // Norm of every rotated pair is preserved; position 0 is unchanged.
      const rot = Float64Array.from(v);
      applyRope(rot, T, heads, hd, table, style);
      assertClose(rot.subarray(0, heads * hd), v.subarray(0, heads * hd), 0, 1e-15, "pos 0");
      const back = Float64Array.from(rot);
      applyRope(back, T, heads, hd, table, style, true);
      assertClose(back, v, 1e-6, 1e-7, "inverse");
      const f = () => {
        const y = Float64Array.from(v);
        applyRope(y, T, heads, hd, table, style);
        return dot(r, y);
      };
      const grad = Float64Array.from(r);
      applyRope(grad, T, heads, hd, table, style, true);
      assertClose(grad, numericGrad(f, v, all(v.length), 1e-6), 1e-6, 1e-9, "rope grad");
    });
  }
});

Deno.test("attentionForward equals attentionRef; attentionBackwardLoop matches finite differences for q, k and v (GQA, float64); attentionBackward through the kernels equals it", async () => {
  const T = 5, shape = { nHeads: 4, nKvHeads: 2, headDim: 3 };
  const qDim = 12, kvDim = 6;
  const q = random64(T * qDim, 11, 2), k = random64(T * kvDim, 12, 2), v = random64(T * kvDim, 13);
  const out = new Float64Array(T * qDim);
  attentionForward(q, k, v, T, shape, out);
  const ref = new Float32Array(T * qDim);
  attentionRef(
    Float32Array.from(q),
    Float32Array.from(k),
    Float32Array.from(v),
    T,
    0,
    shape,
    ref,
  );
  assertClose(out, ref, 1e-5, 1e-6, "forward vs attentionRef");
  const r = random64(T * qDim, 14);
  const f = () => {
    const o = new Float64Array(T * qDim);
    attentionForward(q, k, v, T, shape, o);
    return dot(r, o);
  };
  const dq = new Float64Array(q.length), dk = new Float64Array(k.length);
  const dv = new Float64Array(v.length);
  attentionBackwardLoop(q, k, v, out, r, T, shape, { dq, dk, dv });
  assertClose(dq, numericGrad(f, q, all(q.length), 1e-6), 1e-6, 1e-9, "dq");
  assertClose(dk, numericGrad(f, k, all(k.length), 1e-6), 1e-6, 1e-9, "dk");
  assertClose(dv, numericGrad(f, v, all(v.length), 1e-6), 1e-6, 1e-9, "dv");
  // Causality: the first query sees only the first value.
  assertClose(out.subarray(0, 3), v.subarray(0, 3), 0, 1e-12, "t=0 head 0");
  // The kernel version (float32, reference and WASM backends) equals the loop version.
  const f32 = (a: Float64Array) => Float32Array.from(a);
  for (const kernels of [refKernels, await wasmKernels()]) {
    const g = {
      dq: new Float32Array(q.length),
      dk: new Float32Array(k.length),
      dv: new Float32Array(v.length),
    };
    attentionBackward(f32(q), f32(k), f32(v), f32(out), f32(r), T, shape, g, kernels);
    assertClose(g.dq, dq, 1e-4, 1e-5, `${kernels.id} dq`);
    assertClose(g.dk, dk, 1e-4, 1e-5, `${kernels.id} dk`);
    assertClose(g.dv, dv, 1e-4, 1e-5, `${kernels.id} dv`);
  }
});

Deno.test("swigluBackward matches finite differences (float64)", () => {
  const n = 10;
  const g = random64(n, 21, 4), u = random64(n, 22), r = random64(n, 23);
  const f = () => {
    const a = new Float64Array(n);
    swigluForward(g, u, a);
    return dot(r, a);
  };
  const dg = new Float64Array(n), du = new Float64Array(n);
  swigluBackward(g, u, r, dg, du);
  assertClose(dg, numericGrad(f, g, all(n), 1e-6), 1e-6, 1e-9, "dg");
  assertClose(du, numericGrad(f, u, all(n), 1e-6), 1e-6, 1e-9, "du");
  // silu(0) = 0, silu'(0) = 1/2.
  const a = new Float64Array(1);
  swigluForward(new Float64Array([0]), new Float64Array([3]), a);
  assert.equal(a[0], 0);
});

Deno.test("squaredError: value by hand and gradient by finite differences", () => {
  assert.equal(squaredError(new Float64Array([1, 2]), new Float64Array([0, 4]), 0.5), 2.5);
  const p = random64(7, 31), t = random64(7, 32), g = new Float64Array(7);
  squaredError(p, t, 1 / 7, g);
  const f = () => squaredError(p, t, 1 / 7);
  assertClose(g, numericGrad(f, p, all(7), 1e-6), 1e-6, 1e-10, "mse grad");
});

Deno.test("linear backward through the kernels: dW and dx equal float64 hand products and finite differences", () => {
  const T = 5, nIn = 7, nOut = 4;
  const x = Float32Array.from(random64(T * nIn, 41));
  const w = { rows: nOut, cols: nIn, data: Float32Array.from(random64(nOut * nIn, 42)) };
  const dy = Float32Array.from(random64(T * nOut, 43));
  const dW = new Float32Array(nOut * nIn), dx = new Float32Array(T * nIn);
  const s = new LinearScratch();
  linearWeightGrad(refKernels, x, dy, T, w, dW, s);
  linearInputGrad(refKernels, dy, T, w, dx, s);
  const eW = new Float64Array(nOut * nIn), eX = new Float64Array(T * nIn);
  for (let t = 0; t < T; t++) {
    for (let o = 0; o < nOut; o++) {
      for (let i = 0; i < nIn; i++) {
        eW[o * nIn + i] = eW[o * nIn + i]! + dy[t * nOut + o]! * x[t * nIn + i]!;
        eX[t * nIn + i] = eX[t * nIn + i]! + dy[t * nOut + o]! * w.data[o * nIn + i]!;
      }
    }
  }
  assertClose(dW, eW, 1e-5, 1e-6, "dW");
  assertClose(dx, eX, 1e-5, 1e-6, "dx");
  const f = () => {
    const y = new Float32Array(T * nOut);
    refKernels.matmul(x, T, w, y);
    return dot(dy, y);
  };
  assertClose(dW, numericGrad(f, w.data, all(nOut * nIn), 1e-2), 1e-3, 1e-4, "dW fd");
  assertClose(dx, numericGrad(f, x, all(T * nIn), 1e-2), 1e-3, 1e-4, "dx fd");
  // Accumulation adds.
  linearWeightGrad(refKernels, x, dy, T, w, dW, s);
  assertClose(dW, eW.map((v) => 2 * v), 1e-5, 1e-6, "dW accumulated");
});

function fqParams(rows: number, cols: number, groupSize: number, bits: number, seed: number) {
  const gpr = Math.ceil(cols / groupSize);
  const zero = new Float64Array(rows * gpr).map((_, i) => i % 2 ** bits);
  return {
    rows,
    cols,
    groupSize,
    bits,
    logScale: random64(rows * gpr, seed, 0.3).map((v) => v - 2),
    elem: random64(rows * cols, seed + 1, 0.2),
    row: random64(rows, seed + 2, 0.2),
    zero,
  } satisfies FakeQuantParams;
}

Deno.test("fakeQuantBackward is the straight-through gradient: finite differences of the same function with each rounding offset frozen", async (t) => {
  for (const [bits, groupSize] of [[3, 8], [2, 3], [4, 8]] as const) {
    await t.step(`${bits} bits, group ${groupSize}`, () => {
      const rows = 3, cols = 8;
      const p = fqParams(rows, cols, groupSize, bits, 50 + bits);
      const w = random64(rows * cols, 60, 0.5);
      const r = random64(rows * cols, 61);
      const gpr = groupsPerRow(p), maxq = 2 ** bits - 1;
      // Rounding offsets ρ = round(u) − u at the evaluation point, then frozen, and the clamp
      // branch frozen too (torch's clamp passes the gradient when the value equals a bound).
      const rho = new Float64Array(rows * cols);
      const side = new Int8Array(rows * cols);
      const idx = (r: number, c: number) => r * gpr + Math.floor(c / groupSize);
      for (let i = 0; i < rows; i++) {
        for (let c = 0; c < cols; c++) {
          const u = w[i * cols + c]! /
            Math.exp(p.logScale[idx(i, c)]! + p.elem[i * cols + c]! + p.row[i]!);
          rho[i * cols + c] = roundHalfEven(u) - u;
          const z = p.zero[idx(i, c)]!;
          side[i * cols + c] = roundHalfEven(u) < -z ? -1 : roundHalfEven(u) > maxq - z ? 1 : 0;
        }
      }
      const surrogate = () => {
        let s = 0;
        for (let i = 0; i < rows; i++) {
          for (let c = 0; c < cols; c++) {
            const g = idx(i, c), z = p.zero[g]!;
            const u = w[i * cols + c]! /
              Math.exp(p.logScale[g]! + p.elem[i * cols + c]! + p.row[i]!);
            const sd = side[i * cols + c]!;
            const v = sd < 0 ? -z : sd > 0 ? maxq - z : u + rho[i * cols + c]!;
            s += r[i * cols + c]! * v * Math.exp(p.logScale[g]!);
          }
        }
        return s;
      };
      // The op's forward is the surrogate's value at the evaluation point.
      const out = new Float64Array(rows * cols);
      fakeQuantForward(w, p, out);
      assert.ok(Math.abs(dot(r, out) - surrogate()) < 1e-12);
      const grads = {
        logScale: new Float64Array(p.logScale.length),
        elem: new Float64Array(p.elem.length),
        row: new Float64Array(p.row.length),
      };
      fakeQuantBackward(w, p, r, grads);
      // Reusing the forward's quotients gives the same gradients.
      const u = new Float64Array(rows * cols);
      fakeQuantForward(w, p, new Float64Array(rows * cols), u);
      const again = {
        logScale: new Float64Array(p.logScale.length),
        elem: new Float64Array(p.elem.length),
        row: new Float64Array(p.row.length),
      };
      fakeQuantBackward(w, p, r, again, u);
      assert.deepEqual(again, grads);
      for (const name of ["logScale", "elem", "row"] as const) {
        const param: Buf = p[name];
        const fd = numericGrad(surrogate, param, all(param.length), 1e-7);
        assertClose(grads[name], fd, 1e-5, 1e-8, name);
      }
      // Clamped weights pass no gradient to δ₂; the case exercises the clamp.
      assert.ok(side.some((v) => v !== 0), "the case should exercise the clamp");
      side.forEach((v, i) => v !== 0 && assert.equal(grads.elem[i], 0));
    });
  }
});

Deno.test("Adam: first step moves each parameter by lr against the gradient's sign; cosine schedule endpoints; minimises a quadratic", () => {
  const p = new Float64Array([1, -2, 3]);
  const opt = new Adam([p], { lr: 0.1, steps: 10 });
  opt.update([new Float64Array([4, -0.5, 0])]);
  assertClose(p, [0.9, -1.9, 3], 1e-7, 0, "first step");
  assert.equal(cosineLr(2, 0, 8), 2);
  assert.ok(Math.abs(cosineLr(2, 4, 8) - 1) < 1e-15);
  assert.ok(Math.abs(cosineLr(2, 8, 8)) < 1e-15);
  const x = new Float64Array([5, -3]);
  const o2 = new Adam([x], { lr: 0.5, steps: 300 });
  for (let i = 0; i < 300; i++) o2.update([x.map((v) => 2 * (v - 1))]);
  assertClose(x, [1, 1], 0, 1e-2, "quadratic minimum");
  assert.throws(() => new Adam([x], { lr: 0, steps: 1 }), /learning rate lr must be positive/);
  assert.throws(() => new Adam([x], { lr: 1, steps: 0 }), /steps must be a positive integer/);
});
