import assert from "node:assert/strict";
import { random64, randomMatrix } from "../testing/random.ts";
import {
  applyCrossHeadHadamard,
  applyHadamard,
  applyHeadwiseHadamard,
  crossHeadFactorises,
  fuseHadamardIntoInput,
  fuseHadamardIntoOutput,
  fuseHeadwiseHadamardIntoOutput,
  fwhtInPlace,
  getHadK,
  HAD_K_CHOICE_ORDER,
  HADAMARD_TABLE_ORDERS,
  hadamardTable,
  orthogonalFactor,
  randomHadamardQ,
  randomOrthogonal,
  sylvester,
} from "./hadamard.ts";

// ---------------------------------------------------------------------------------------------
// Independent helpers (dense, naive).

function popcount(v: number): number {
  let c = 0;
  for (; v; v >>>= 1) c += v & 1;
  return c;
}

/** Natural-order Sylvester entry, from the definition. */
function walsh(i: number, j: number): number {
  return popcount(i & j) % 2 === 0 ? 1 : -1;
}

/** C = A·B for row-major A (r×k) and B (k×c). */
function matmul(a: Float64Array, b: Float64Array, r: number, k: number, c: number): Float64Array {
  const out = new Float64Array(r * c);
  for (let i = 0; i < r; i++) {
    for (let t = 0; t < k; t++) {
      const v = a[i * k + t]!;
      for (let j = 0; j < c; j++) out[i * c + j]! += v * b[t * c + j]!;
    }
  }
  return out;
}

function transposed(a: Float64Array, r: number, c: number): Float64Array {
  const out = new Float64Array(r * c);
  for (let i = 0; i < r; i++) for (let j = 0; j < c; j++) out[j * r + i] = a[i * c + j]!;
  return out;
}

/** Dense M_n = (hadK ⊗ H_{n/K})/√n built entry by entry from a K×K table. */
function denseM(n: number, k: number, hadK: Float64Array): Float64Array {
  const m = n / k;
  const out = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      const a = hadK[Math.floor(i / m) * k + Math.floor(j / m)]!;
      out[i * n + j] = (a * walsh(i % m, j % m)) / Math.sqrt(n);
    }
  }
  return out;
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let d = 0;
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i]! - b[i]!));
  return d;
}

function norm(a: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i]! * a[i]!;
  return Math.sqrt(s);
}

/** max |A·Aᵀ − c·I| for a row-major n×n A. */
function gramError(a: Float64Array, n: number, c: number): number {
  let d = 0;
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let t = 0; t < n; t++) s += a[i * n + t]! * a[j * n + t]!;
      d = Math.max(d, Math.abs(s - (i === j ? c : 0)));
    }
  }
  return d;
}

function fromSigns(rows: readonly string[]): Float64Array {
  return Float64Array.from(rows.join(""), (ch) => (ch === "+" ? 1 : -1));
}

function signsOf(a: Float64Array, from: number, length: number): string {
  return Array.from(a.subarray(from, from + length), (v) => (v > 0 ? "+" : "-")).join("");
}

/**
 * A port of QuaRot's `matmul_hadU` loop for one vector, kept close to the Python: the vector is
 * viewed as (n, 1); while it has more than K rows, view (rows/2, 2, cols), output[:, 0] = in0 + in1,
 * output[:, 1] = in0 − in1, view (rows/2, 2·cols); then hadK @ input; then / √n.
 */
function quarotMatmulHadU(x: Float64Array, hadK: Float64Array, k: number): Float64Array {
  const n = x.length;
  let input: Float64Array = x.slice();
  let output: Float64Array = x.slice();
  let rows = n;
  let cols = 1;
  while (rows > k) {
    for (let a = 0; a < rows / 2; a++) {
      for (let c = 0; c < cols; c++) {
        const i0 = (2 * a) * cols + c;
        const i1 = (2 * a + 1) * cols + c;
        output[i0] = input[i0]! + input[i1]!;
        output[i1] = input[i0]! - input[i1]!;
      }
    }
    rows /= 2;
    cols *= 2;
    [input, output] = [output, input];
  }
  if (k > 1) input = matmul(hadK, input, k, k, cols);
  return input.map((v) => v / Math.sqrt(n));
}

// ---------------------------------------------------------------------------------------------
// Tables.

Deno.test("every ±1 table and Sylvester matrix satisfies HᵀH = H·Hᵀ = K·I", () => {
  for (const k of HADAMARD_TABLE_ORDERS) {
    const t = hadamardTable(k);
    assert.equal(t.order, k);
    assert.equal(t.matrix.length, k * k);
    assert.ok(t.matrix.every((v) => v === 1 || v === -1), `${t.id}: entries ±1`);
    assert.equal(gramError(t.matrix, k, k), 0, `${t.id}: H·Hᵀ`);
    assert.equal(gramError(transposed(t.matrix, k, k), k, k), 0, `${t.id}: HᵀH`);
  }
  for (const n of [1, 2, 4, 8, 16, 64, 128]) {
    const h = sylvester(n);
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < n; j++) assert.equal(h[i * n + j], walsh(i, j));
    }
    assert.equal(gramError(h, n, n), 0, `sylvester(${n})`);
  }
});

Deno.test("table ids name their construction", () => {
  const ids = Object.fromEntries(HADAMARD_TABLE_ORDERS.map((k) => [k, hadamardTable(k).id]));
  assert.deepEqual(ids, {
    1: "identity-1",
    12: "paley1-11",
    20: "paley1-19",
    28: "paley2-13",
    36: "paley2-17",
    40: "sylvester2-paley1-19",
    52: "sloane-had.52.will",
    60: "paley1-59",
    108: "paley1-107",
    140: "paley1-139",
    156: "sloane-had.156.will",
    172: "sloane-had.172.will",
  });
  // hadamardTable returns a copy: modifying it does not change later tables.
  const t = hadamardTable(12);
  t.matrix.fill(0);
  assert.equal(hadamardTable(12).matrix[0], 1);
});

Deno.test("K = 12, 20, 40 equal QuaRot's get_had12 / get_had20 / get_had40 (transcribed rows)", () => {
  // spcl/QuaRot fake_quant/hadamard_utils.py, get_had12 and get_had20, all rows.
  const had12 = [
    "+-----------",
    "++-+---+++-+",
    "+++-+---+++-",
    "+-++-+---+++",
    "++-++-+---++",
    "+++-++-+---+",
    "++++-++-+---",
    "+-+++-++-+--",
    "+--+++-++-+-",
    "+---+++-++-+",
    "++---+++-++-",
    "+-+---+++-++",
  ];
  const had20 = [
    "+-------------------",
    "++-++----+-+-++++--+",
    "+++-++----+-+-++++--",
    "+-++-++----+-+-++++-",
    "+--++-++----+-+-++++",
    "++--++-++----+-+-+++",
    "+++--++-++----+-+-++",
    "++++--++-++----+-+-+",
    "+++++--++-++----+-+-",
    "+-++++--++-++----+-+",
    "++-++++--++-++----+-",
    "+-+-++++--++-++----+",
    "++-+-++++--++-++----",
    "+-+-+-++++--++-++---",
    "+--+-+-++++--++-++--",
    "+---+-+-++++--++-++-",
    "+----+-+-++++--++-++",
    "++----+-+-++++--++-+",
    "+++----+-+-++++--++-",
    "+-++----+-+-++++--++",
  ];
  assert.deepEqual(hadamardTable(12).matrix, fromSigns(had12));
  assert.deepEqual(hadamardTable(20).matrix, fromSigns(had20));
  // get_had40 rows 0, 1 and 20.
  const h40 = hadamardTable(40).matrix;
  assert.equal(signsOf(h40, 0, 40), "+-------------------+-------------------");
  assert.equal(signsOf(h40, 40, 40), "++-++----+-+-++++--+++-++----+-+-++++--+");
  assert.equal(signsOf(h40, 20 * 40, 40), "+--------------------+++++++++++++++++++");
});

Deno.test("Williamson tables reproduce rows of QuaRot's transcription of Sloane's *.will", () => {
  // Rows of get_had52 / get_had156 / get_had172 other than block-row starts (which are the stored
  // data), transcribed from spcl/QuaRot fake_quant/hadamard_utils.py.
  const rows: [number, number, string][] = [
    [52, 14, "+-+++------++-+-+--++++--++-++++-++-++++++-+--++--+-"],
    [52, 40, "+-++++-++-+++---+-++--++-+-+---++++++---+-+--++++--+"],
    [
      156,
      118,
      "+-+++--+-+-+++++---+--+---+++++-+-+--++----++--+-+++-+-++-++++-++-+-+++-+--++-+++++---+--++" +
      "----+-+--+-+----++--+---++++++--+-+-----+--++----++--+-----+-+--+",
    ],
    [
      156,
      155,
      "+++--+-+-+++++---+--+---+++++-+-+--+++---++--+-+++-+-++-++++-++-+-+++-+--++---+++---+--++--" +
      "--+-+--+-+----++--+---++++++--+-+-----+--++----++--+-----+-+--+++",
    ],
    [
      172,
      130,
      "---+++----+-++-++--++++++++--++-++-+----+++----+-+--++-+-+----+-++++-+----+-+-++--+-+-+++-+" +
      "+++++----+-+--++-++-++--+-+----++++++--+---++--++++-+-+++-++--++-+++-+-++++--++--",
    ],
    [
      172,
      171,
      "-+++----+-++-++--++++++++--++-++-+----+++----+-+--++-+-+----+-++++-+----+-+-++--+-+---+-+++" +
      "+++----+-+--++-++-++--+-+----++++++-++---++--++++-+-+++-++--++-+++-+-++++--++---+",
    ],
  ];
  for (const [k, r, want] of rows) {
    assert.equal(signsOf(hadamardTable(k).matrix, r * k, k), want, `had${k} row ${r}`);
  }
});

// ---------------------------------------------------------------------------------------------
// Fast Walsh–Hadamard transform and get_hadK.

Deno.test("fwhtInPlace() equals the explicit Sylvester product, in natural order", () => {
  for (const n of [1, 2, 4, 8, 32, 256]) {
    const x = random64(n + 3, 17 + n);
    const y = x.slice();
    fwhtInPlace(y, 3, n);
    assert.deepEqual(y.subarray(0, 3), x.subarray(0, 3));
    for (let i = 0; i < n; i++) {
      let s = 0;
      for (let j = 0; j < n; j++) s += walsh(i, j) * x[3 + j]!;
      assert.ok(Math.abs(y[3 + i]! - s) <= 1e-12 * n, `n = ${n}, i = ${i}`);
    }
    const x32 = randomMatrix(n, 5 + n);
    const y32 = x32.slice();
    fwhtInPlace(y32, 0, n);
    for (let i = 0; i < n; i++) {
      let s = 0;
      for (let j = 0; j < n; j++) s += walsh(i, j) * x32[j]!;
      assert.ok(Math.abs(y32[i]! - s) <= 1e-5 * n, `float32 n = ${n}`);
    }
  }
});

Deno.test("getHadK() follows QuaRot's choice order", () => {
  assert.deepEqual(HAD_K_CHOICE_ORDER, [172, 156, 140, 108, 60, 52, 36, 28, 40, 20, 12]);
  const pick = (n: number) => {
    const h = getHadK(n);
    return h && [h.k, h.m];
  };
  assert.deepEqual(pick(11008), [172, 64]); // Llama-2-7B intermediate
  assert.deepEqual(pick(14336), [28, 512]); // Llama-3-8B intermediate
  assert.deepEqual(pick(5120), [40, 128]); // 40 is tried before 20
  assert.deepEqual(pick(4096), [1, 4096]);
  assert.deepEqual(pick(896), [28, 32]); // Qwen2.5-0.5B hidden
  assert.deepEqual(pick(12), [12, 1]);
  assert.deepEqual(pick(1), [1, 1]);
  assert.equal(getHadK(4864), undefined); // Qwen2.5-0.5B intermediate, 76·64: no table of 76
  assert.equal(getHadK(14), undefined); // Qwen2.5-0.5B heads
  assert.equal(getHadK(168), undefined); // 28·6: QuaRot asserts on the first K dividing n
  for (const bad of [0, -4, 2.5, NaN]) assert.equal(getHadK(bad), undefined);
  const h = getHadK(11008)!;
  assert.equal(h.id, "kron(sloane-had.172.will,sylvester-64)");
  assert.equal(h.table.id, "sloane-had.172.will");
  assert.equal(getHadK(4096)!.id, "sylvester-4096");
});

// ---------------------------------------------------------------------------------------------
// M_n.

const SMALL_SIZES = [1, 2, 8, 12, 24, 20, 40, 80, 28, 56, 36, 52, 60, 108, 140, 156, 172, 344];

Deno.test("applyHadamard() is y = M_n·v with M_n = (hadK ⊗ H)/√n built densely", () => {
  for (const n of SMALL_SIZES) {
    const { k, table } = getHadK(n)!;
    const m = denseM(n, k, table.matrix);
    const rows = 3;
    const x = random64(rows * n, 100 + n);
    const want = transposed(matmul(m, transposed(x, rows, n), n, n, rows), n, rows); // X·Mᵀ
    const wantT = matmul(x, m, rows, n, n); // X·M: rows v ↦ Mᵀ·v
    const y = applyHadamard(x.slice(), n, rows);
    const yT = applyHadamard(x.slice(), n, rows, { transpose: true });
    assert.ok(maxAbsDiff(y, want) < 1e-13, `M_${n}`);
    assert.ok(maxAbsDiff(yT, wantT) < 1e-13, `M_${n}ᵀ`);
    // Paley II tables (28, 36) are symmetric, so M_n = M_nᵀ; the other tables of K > 1 are not.
    const symmetric = k === 1 || k === 28 || k === 36;
    assert.equal(maxAbsDiff(y, yT) < 1e-13, symmetric, `M_${n} symmetric: ${symmetric}`);
  }
});

Deno.test("applyHadamard() equals a port of QuaRot's matmul_hadU loop", () => {
  for (const n of [12, 48, 28, 112, 40, 160, 52, 172, 688, 156, 64]) {
    const { k, table } = getHadK(n)!;
    const x = random64(n, 7 * n);
    const want = quarotMatmulHadU(x, table.matrix, k);
    assert.ok(maxAbsDiff(applyHadamard(x.slice(), n, 1), want) < 1e-13, `n = ${n}`);
    // matmul_hadU(X, transpose=True) uses hadK.T.
    const wantT = quarotMatmulHadU(x, transposed(table.matrix, k, k), k);
    assert.ok(maxAbsDiff(applyHadamard(x.slice(), n, 1, { transpose: true }), wantT) < 1e-13);
  }
});

Deno.test("M_n is orthogonal for n = 12·2^m, 28·2^m, 172·2^m and 2^m", () => {
  for (const n of [12, 24, 96, 28, 56, 224, 172, 344, 688, 1, 4, 64, 256]) {
    // Rows of applyHadamard(I) are the columns of M_n: check they are orthonormal.
    const eye = new Float64Array(n * n);
    for (let i = 0; i < n; i++) eye[i * n + i] = 1;
    const cols = applyHadamard(eye, n, n);
    assert.ok(gramError(cols, n, 1) < 1e-13, `n = ${n}`);
  }
});

Deno.test("M_11008 (172·64): norms kept, Mᵀ(Mx) = x, basis columns orthonormal", () => {
  const n = 11008;
  const x = random64(2 * n, 11008);
  const y = applyHadamard(x.slice(), n, 2);
  for (let r = 0; r < 2; r++) {
    const a = norm(x.subarray(r * n, (r + 1) * n));
    assert.ok(Math.abs(norm(y.subarray(r * n, (r + 1) * n)) - a) < 1e-12 * a);
  }
  assert.ok(maxAbsDiff(applyHadamard(y, n, 2, { transpose: true }), x) < 1e-13);
  const picks = [0, 1, 63, 64, 5000, 11007];
  const cols = new Float64Array(picks.length * n);
  picks.forEach((p, i) => (cols[i * n + p] = 1));
  applyHadamard(cols, n, picks.length);
  for (let i = 0; i < picks.length; i++) {
    for (let j = 0; j < picks.length; j++) {
      let s = 0;
      for (let t = 0; t < n; t++) s += cols[i * n + t]! * cols[j * n + t]!;
      assert.ok(Math.abs(s - (i === j ? 1 : 0)) < 1e-12, `columns ${picks[i]}, ${picks[j]}`);
    }
  }
});

Deno.test("Float32Array input: computed in float64, rounded once", () => {
  const n = 172 * 4;
  const x32 = randomMatrix(2 * n, 3);
  const x64 = Float64Array.from(x32);
  applyHadamard(x32, n, 2);
  applyHadamard(x64, n, 2);
  assert.deepEqual(x32, Float32Array.from(x64));
});

// ---------------------------------------------------------------------------------------------
// Heads and the Kronecker identity.

Deno.test("M_{nh·hd} = M_nh ⊗ H_hd/√hd when both come from the same K", () => {
  for (const [nh, hd] of [[12, 8], [40, 128], [28, 4], [172, 2], [56, 16], [32, 64], [1, 8]]) {
    assert.ok(crossHeadFactorises(nh!, hd!), `${nh}·${hd}`);
    const n = nh! * hd!;
    assert.equal(getHadK(n)!.k, getHadK(nh!)!.k);
    const x = random64(2 * n, n + 1);
    const want = applyHadamard(x.slice(), n, 2);
    const y = applyHeadwiseHadamard(x.slice(), hd!, 2 * nh!); // I ⊗ H_hd/√hd
    applyCrossHeadHadamard(y, nh!, hd!, 2); // then M_nh ⊗ I
    assert.ok(maxAbsDiff(y, want) < 1e-13, `${nh} heads of ${hd}`);
  }
  // Dense check of one case: (M_12 ⊗ H_8/√8) built entry by entry.
  const mh = denseM(12, 12, hadamardTable(12).matrix);
  const kron = new Float64Array(96 * 96);
  for (let i = 0; i < 96; i++) {
    for (let j = 0; j < 96; j++) {
      kron[i * 96 + j] = mh[Math.floor(i / 8) * 12 + Math.floor(j / 8)]! * walsh(i % 8, j % 8) /
        Math.sqrt(8);
    }
  }
  assert.ok(maxAbsDiff(kron, denseM(96, 12, hadamardTable(12).matrix)) < 1e-15);
});

Deno.test("20 heads of 128: K(2560) = 40 ≠ K(20) = 20, the Kronecker identity fails", () => {
  assert.equal(getHadK(2560)!.k, 40);
  assert.equal(getHadK(20)!.k, 20);
  assert.equal(crossHeadFactorises(20, 128), false);
  assert.equal(crossHeadFactorises(14, 64), false); // no Hadamard of 14
  assert.equal(crossHeadFactorises(32, 96), false); // head_dim not a power of two
  const n = 2560;
  const x = random64(n, 2560);
  const full = applyHadamard(x.slice(), n, 1);
  const split = applyCrossHeadHadamard(applyHeadwiseHadamard(x.slice(), 128, 20), 20, 128, 1);
  assert.ok(maxAbsDiff(full, split) > 0.1);
});

Deno.test("v/o fusion with the online cross-head transform is the identity (12 heads of 8)", () => {
  const nh = 12;
  const hd = 8;
  const d = nh * hd;
  const wv = random64(d * d, 1);
  const wo = random64(d * d, 2);
  const x = random64(d * 3, 3); // three tokens
  // Reference: o = W_o·W_v·x per token (attention mixing over tokens commutes with per-head maps).
  const want = transposed(matmul(wo, matmul(wv, transposed(x, 3, d), d, d, 3), d, d, 3), d, 3);
  const wv2 = fuseHeadwiseHadamardIntoOutput(wv.slice(), d, d, hd);
  const wo2 = fuseHadamardIntoInput(wo.slice(), d, d);
  const v = transposed(matmul(wv2, transposed(x, 3, d), d, d, 3), d, 3);
  applyCrossHeadHadamard(v, nh, hd, 3);
  const got = transposed(matmul(wo2, transposed(v, 3, d), d, d, 3), d, 3);
  assert.ok(maxAbsDiff(got, want) < 1e-11);
});

Deno.test("applyCrossHeadHadamard() is (M_nh ⊗ I_hd) per row, and its transpose", () => {
  const nh = 20;
  const hd = 3;
  const m = denseM(nh, 20, hadamardTable(20).matrix);
  const x = random64(2 * nh * hd, 9);
  const y = applyCrossHeadHadamard(x.slice(), nh, hd, 2);
  const yT = applyCrossHeadHadamard(x.slice(), nh, hd, 2, { transpose: true });
  for (let r = 0; r < 2; r++) {
    for (let h = 0; h < nh; h++) {
      for (let t = 0; t < hd; t++) {
        let s = 0;
        let sT = 0;
        for (let h2 = 0; h2 < nh; h2++) {
          const v = x[r * nh * hd + h2 * hd + t]!;
          s += m[h * nh + h2]! * v;
          sT += m[h2 * nh + h]! * v;
        }
        assert.ok(Math.abs(y[r * nh * hd + h * hd + t]! - s) < 1e-13);
        assert.ok(Math.abs(yT[r * nh * hd + h * hd + t]! - sT) < 1e-13);
      }
    }
  }
});

// ---------------------------------------------------------------------------------------------
// Fusion into weights.

Deno.test("fuseHadamardIntoInput(): W·M_nᵀ (W·M_n with transpose), and W·Mᵀ·(M·x) = W·x", () => {
  const out = 5;
  const n = 56;
  const { k, table } = getHadK(n)!;
  const m = denseM(n, k, table.matrix);
  const w = random64(out * n, 21);
  assert.ok(
    maxAbsDiff(
      fuseHadamardIntoInput(w.slice(), out, n),
      matmul(w, transposed(m, n, n), out, n, n),
    ) < 1e-13,
  );
  assert.ok(
    maxAbsDiff(
      fuseHadamardIntoInput(w.slice(), out, n, { transpose: true }),
      matmul(w, m, out, n, n),
    ) <
      1e-13,
  );
  // down_proj: offline W ← W·M_nᵀ, online x ← M_n·x.
  const x = random64(n, 22);
  const wx = matmul(w, x, out, n, 1);
  const got = matmul(
    fuseHadamardIntoInput(w.slice(), out, n),
    applyHadamard(x.slice(), n, 1),
    out,
    n,
    1,
  );
  assert.ok(maxAbsDiff(got, wx) < 1e-12);
});

Deno.test("fuseHadamardIntoOutput(): M_n·W (M_nᵀ·W with transpose), columns in chunks", () => {
  const n = 40;
  const cols = 130; // more than one 64-column chunk, the last one partial
  const { k, table } = getHadK(n)!;
  const m = denseM(n, k, table.matrix);
  const w = random64(n * cols, 31);
  assert.ok(
    maxAbsDiff(fuseHadamardIntoOutput(w.slice(), n, cols), matmul(m, w, n, n, cols)) < 1e-13,
  );
  const mt = transposed(m, n, n);
  assert.ok(
    maxAbsDiff(
      fuseHadamardIntoOutput(w.slice(), n, cols, { transpose: true }),
      matmul(mt, w, n, n, cols),
    ) <
      1e-13,
  );
  // Float32 weights: float64 result rounded once.
  const w32 = Float32Array.from(w);
  fuseHadamardIntoOutput(w32, n, cols);
  assert.deepEqual(
    w32,
    Float32Array.from(fuseHadamardIntoOutput(Float64Array.from(Float32Array.from(w)), n, cols)),
  );
});

Deno.test("fuseHeadwiseHadamardIntoOutput(): (I ⊗ H_hd/√hd)·W; bias via applyHeadwiseHadamard", () => {
  const heads = 3;
  const hd = 8;
  const out = heads * hd;
  const cols = 70;
  const blockDiag = new Float64Array(out * out);
  for (let h = 0; h < heads; h++) {
    for (let i = 0; i < hd; i++) {
      for (let j = 0; j < hd; j++) {
        blockDiag[(h * hd + i) * out + h * hd + j] = walsh(i, j) / Math.sqrt(hd);
      }
    }
  }
  const w = random64(out * cols, 41);
  const got = fuseHeadwiseHadamardIntoOutput(w.slice(), out, cols, hd);
  assert.ok(maxAbsDiff(got, matmul(blockDiag, w, out, out, cols)) < 1e-13);
  const b = random64(out, 42);
  assert.ok(
    maxAbsDiff(applyHeadwiseHadamard(b.slice(), hd, heads), matmul(blockDiag, b, out, out, 1)) <
      1e-13,
  );
});

// ---------------------------------------------------------------------------------------------
// Residual rotations.

Deno.test("randomOrthogonal(): orthogonal, deterministic per seed", () => {
  for (const n of [1, 2, 7, 64]) {
    const q = randomOrthogonal(n, 5);
    assert.ok(gramError(q, n, 1) < 1e-13, `QQᵀ, n = ${n}`);
    assert.ok(gramError(transposed(q, n, n), n, 1) < 1e-13, `QᵀQ, n = ${n}`);
    assert.deepEqual(randomOrthogonal(n, 5), q);
  }
  assert.ok(maxAbsDiff(randomOrthogonal(16, 5), randomOrthogonal(16, 6)) > 0.1);
  assert.equal(Math.abs(randomOrthogonal(1, 9)[0]!), 1);
});

Deno.test("orthogonalFactor(): G = Q·R with R upper triangular and diag R > 0", () => {
  const n = 9;
  const g = random64(n * n, 77);
  const q = orthogonalFactor(g, n);
  assert.ok(gramError(q, n, 1) < 1e-13);
  const r = matmul(transposed(q, n, n), g, n, n, n);
  for (let i = 0; i < n; i++) {
    assert.ok(r[i * n + i]! > 0, `R_${i}${i} > 0`);
    for (let j = 0; j < i; j++) assert.ok(Math.abs(r[i * n + j]!) < 1e-13, `R_${i}${j} = 0`);
  }
  assert.ok(maxAbsDiff(matmul(q, r, n, n, n), g) < 1e-13);
});

Deno.test("randomHadamardQ(): Q = diag(ε)·M_dᵀ, orthogonal, deterministic per seed", () => {
  for (const d of [12, 28, 64, 172]) {
    const { matrix: q, signs, hadamardId, seed } = randomHadamardQ(d, 3);
    assert.equal(seed, 3);
    assert.equal(hadamardId, getHadK(d)!.id);
    assert.ok(gramError(q, d, 1) < 1e-13, `d = ${d}`);
    assert.ok(signs.every((s) => s === 1 || s === -1));
    assert.ok(signs.some((s) => s === 1) && signs.some((s) => s === -1));
    // Row i = ε_i · (column i of M_d), from the dense M_d.
    const { k, table } = getHadK(d)!;
    const m = denseM(d, k, table.matrix);
    const want = new Float64Array(d * d);
    for (let i = 0; i < d; i++) {
      for (let j = 0; j < d; j++) want[i * d + j] = signs[i]! * m[j * d + i]!;
    }
    assert.ok(maxAbsDiff(q, want) < 1e-15);
    assert.deepEqual(randomHadamardQ(d, 3).matrix, q);
  }
  assert.notDeepEqual(randomHadamardQ(64, 3).signs, randomHadamardQ(64, 4).signs);
  assert.equal(randomHadamardQ(896, 0).hadamardId, "kron(paley2-13,sylvester-32)");
});

// ---------------------------------------------------------------------------------------------
// Impossible sizes.

Deno.test("impossible sizes throw RangeError naming n and what was expected", () => {
  const throwsWith = (f: () => unknown, re: RegExp) =>
    assert.throws(f, (e: unknown) => e instanceof RangeError && re.test(e.message));
  throwsWith(() => applyHadamard(new Float64Array(4864), 4864, 1), /n = 4864.*K·2\^m/);
  throwsWith(() => applyHadamard(new Float64Array(10), 12, 1), /length 10.*rows·n = 1·12/);
  throwsWith(() => randomHadamardQ(14, 0), /randomHadamardQ: n = 14/);
  throwsWith(() => randomHadamardQ(16, 0.5), /seed = 0.5/);
  throwsWith(() => sylvester(12), /n = 12: expected a power of two/);
  throwsWith(() => hadamardTable(76), /K = 76: expected one of 1, 12, 20/);
  throwsWith(() => fwhtInPlace(new Float64Array(6), 0, 6), /n = 6: expected a power of two/);
  throwsWith(() => fwhtInPlace(new Float64Array(6), 4, 4), /offset 4 \+ n = 4/);
  throwsWith(
    () => applyHeadwiseHadamard(new Float64Array(24), 12, 2),
    /headDim = 12: expected a power of two/,
  );
  throwsWith(
    () => fuseHeadwiseHadamardIntoOutput(new Float64Array(12 * 4), 12, 4, 8),
    /outFeatures = 12 is not a multiple of headDim 8/,
  );
  throwsWith(() => applyCrossHeadHadamard(new Float64Array(14 * 64), 14, 64, 1), /n = 14/);
  throwsWith(
    () => fuseHadamardIntoOutput(new Float64Array(14 * 2), 14, 2),
    /fuseHadamardIntoOutput: n = 14/,
  );
  throwsWith(() => randomOrthogonal(0, 1), /n = 0: expected an integer/);
});
