import assert from "node:assert/strict";
import { randomMatrix } from "../testing/random.ts";
import type { Matrix } from "../models/types.ts";
import {
  hadamardRotationFromSigns,
  residualRotation,
  rotateBias,
  rotateInput,
  rotateOutput,
} from "./rotation.ts";

/** Dense float64 products with Q, written out. */
function times(a: Float64Array, ar: number, ac: number, b: Float64Array, bc: number): Float64Array {
  const out = new Float64Array(ar * bc);
  for (let i = 0; i < ar; i++) {
    for (let k = 0; k < ac; k++) {
      for (let j = 0; j < bc; j++) {
        out[i * bc + j] = out[i * bc + j]! + a[i * ac + k]! * b[k * bc + j]!;
      }
    }
  }
  return out;
}

function transpose(a: Float64Array, n: number): Float64Array {
  const t = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) t[j * n + i] = a[i * n + j]!;
  return t;
}

function close(a: Float32Array, b: Float64Array, tol: number, what: string): void {
  let m = 0;
  for (const x of b) m = Math.max(m, Math.abs(x));
  for (let i = 0; i < a.length; i++) {
    assert.ok(Math.abs(a[i]! - b[i]!) <= tol * m, `${what}[${i}]: ${a[i]} vs ${b[i]}`);
  }
}

Deno.test("residual rotation: W·Q, Qᵀ·W and Qᵀ·b equal the dense products for both modes", () => {
  // 48 = 12·4 (Paley table, M not symmetric), 64 (Sylvester), 40 = 40·1.
  for (const d of [48, 64, 40]) {
    for (const mode of ["hadamard", "random"] as const) {
      const r = residualRotation(d, mode, 3);
      assert.equal(r.mode, mode);
      assert.equal(r.signs !== undefined, mode === "hadamard");
      const q = r.matrix;
      // Q is orthogonal.
      const qtq = times(transpose(q, d), d, d, q, d);
      for (let i = 0; i < d; i++) {
        for (let j = 0; j < d; j++) {
          assert.ok(Math.abs(qtq[i * d + j]! - (i === j ? 1 : 0)) < 1e-12, `${mode} ${d}`);
        }
      }
      const w: Matrix = { rows: 5, cols: d, data: randomMatrix(5 * d, d + 1) };
      close(rotateInput(w, r).data, times(Float64Array.from(w.data), 5, d, q, d), 1e-6, "W·Q");
      const o: Matrix = { rows: d, cols: 7, data: randomMatrix(7 * d, d + 2) };
      const qt = transpose(q, d);
      close(rotateOutput(o, r).data, times(qt, d, d, Float64Array.from(o.data), 7), 1e-6, "QᵀW");
      const b = randomMatrix(d, d + 3);
      close(rotateBias(b, r), times(qt, d, d, Float64Array.from(b), 1), 1e-6, "Qᵀb");
    }
  }
});

Deno.test("residual rotation: Q = diag(ε)·M_dᵀ from given signs; no Hadamard falls back to random", () => {
  const signs = Int8Array.from([1, -1, -1, 1]);
  const r = hadamardRotationFromSigns(signs);
  // M_4 = H_4/2 (Sylvester, symmetric): row i of Q is ε_i times row i of H_4 / 2.
  const h4 = [1, 1, 1, 1, 1, -1, 1, -1, 1, 1, -1, -1, 1, -1, -1, 1];
  assert.deepEqual([...r.matrix], h4.map((x, k) => (signs[Math.floor(k / 4)]! * x) / 2));
  assert.match(r.id, /sylvester-4/);
  // The draw from a seed is the same Q as its own signs give.
  const drawn = residualRotation(64, "hadamard", 7);
  assert.deepEqual(hadamardRotationFromSigns(drawn.signs!).matrix, drawn.matrix);
  const fallback = residualRotation(76, "hadamard", 7);
  assert.equal(fallback.mode, "random");
  assert.equal(fallback.requested, "hadamard");
  assert.throws(() => hadamardRotationFromSigns(Int8Array.from([1, 2])), /±1/);
});
