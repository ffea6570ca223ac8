import assert from "node:assert/strict";
import { randomMatrix } from "../testing/random.ts";
import { wasmKernels } from "../kernels/wasm/mod.ts";
import { refF64 } from "../kernels/ref/f64.ts";
import type { F64Kernels } from "../kernels/types.ts";
import {
  dequantizePacked,
  groupParams,
  quantizeMatrix,
  type QuantizerSpec,
  quantizeValue,
  roundHalfEven,
  unpackCodes,
} from "../core/quantizer.ts";
import {
  GPTQ_DEFAULTS,
  type GptqLayerOptions,
  type GptqLayerResult,
  gptqQuantizeLayer,
  groupParamsMse,
  HessianNotPositiveDefiniteError,
  upperCholeskyOfInverse,
} from "./gptq_core.ts";

// ---------------------------------------------------------------------------------------------
// Independent helpers (none of them call into gptq_core.ts)
// ---------------------------------------------------------------------------------------------

/**
 * Calibration-like inputs X `[cols][samples]` with correlated features (a few shared factors plus
 * noise, varied feature scales), as real activations have.
 */
function randomInputs(cols: number, samples: number, seed: number): Float64Array {
  const z = randomMatrix(cols * samples, seed);
  const f = randomMatrix(4 * samples, seed + 1);
  const mix = randomMatrix(cols * 4, seed + 2);
  const x = new Float64Array(cols * samples);
  for (let i = 0; i < cols; i++) {
    const featureScale = 0.5 + (i % 7) / 3;
    for (let t = 0; t < samples; t++) {
      let v = z[i * samples + t]!;
      for (let k = 0; k < 4; k++) v += 1.5 * mix[i * 4 + k]! * f[k * samples + t]!;
      x[i * samples + t] = featureScale * v;
    }
  }
  return x;
}

/** H = X Xᵀ / samples + ridge·I, exactly symmetric. */
function hessianOf(x: Float64Array, cols: number, samples: number, ridge = 0): Float64Array {
  const h = new Float64Array(cols * cols);
  for (let i = 0; i < cols; i++) {
    for (let j = 0; j <= i; j++) {
      let s = 0;
      for (let t = 0; t < samples; t++) s += x[i * samples + t]! * x[j * samples + t]!;
      s /= samples;
      h[i * cols + j] = s;
      h[j * cols + i] = s;
    }
    h[i * cols + i] = h[i * cols + i]! + ridge;
  }
  return h;
}

function identity(n: number, d = 1): Float64Array {
  const h = new Float64Array(n * n);
  for (let i = 0; i < n; i++) h[i * n + i] = d;
  return h;
}

/** tr((W − Ŵ) H (W − Ŵ)ᵀ), plus `lambda`·‖W − Ŵ‖² (a damped H). */
function objective(
  w: ArrayLike<number>,
  q: ArrayLike<number>,
  rows: number,
  cols: number,
  h: Float64Array,
  lambda = 0,
): number {
  let total = 0;
  const d = new Float64Array(cols);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) d[c] = w[r * cols + c]! - q[r * cols + c]!;
    for (let i = 0; i < cols; i++) {
      let s = lambda * d[i]!;
      for (let j = 0; j < cols; j++) s += h[i * cols + j]! * d[j]!;
      total += d[i]! * s;
    }
  }
  return total;
}

function opts(o: Partial<GptqLayerOptions> & { bits: number }): GptqLayerOptions {
  return { ...GPTQ_DEFAULTS, symmetric: false, ...o };
}

function rtnSpec(bits: number, g: number, symmetric: boolean): QuantizerSpec {
  return g > 0
    ? { bits, granularity: "group", groupSize: g, symmetric }
    : { bits, granularity: "channel", symmetric };
}

/** Plain lower Cholesky factor (textbook, column by column); undefined if not positive definite. */
function naiveCholesky(a: number[][]): number[][] | undefined {
  const n = a.length;
  const l = a.map(() => new Array<number>(n).fill(0));
  for (let j = 0; j < n; j++) {
    let s = a[j]![j]!;
    for (let k = 0; k < j; k++) s -= l[j]![k]! ** 2;
    if (!(s > 0)) return undefined;
    l[j]![j] = Math.sqrt(s);
    for (let i = j + 1; i < n; i++) {
      let t = a[i]![j]!;
      for (let k = 0; k < j; k++) t -= l[i]![k]! * l[j]![k]!;
      l[i]![j] = t / l[j]![j]!;
    }
  }
  return l;
}

/** The reference's route: L = chol(H); H⁻¹ = L⁻ᵀ L⁻¹; U = chol(H⁻¹)ᵀ. */
function literalInverseFactor(a: number[][]): number[][] {
  const n = a.length;
  const l = naiveCholesky(a)!;
  // L⁻¹ by forward substitution, column by column.
  const li = a.map(() => new Array<number>(n).fill(0));
  for (let c = 0; c < n; c++) {
    for (let i = c; i < n; i++) {
      let s = i === c ? 1 : 0;
      for (let k = c; k < i; k++) s -= l[i]![k]! * li[k]![c]!;
      li[i]![c] = s / l[i]![i]!;
    }
  }
  const hinv = a.map(() => new Array<number>(n).fill(0));
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let k = 0; k < n; k++) s += li[k]![i]! * li[k]![j]!;
      hinv[i]![j] = s;
    }
  }
  const l2 = naiveCholesky(hinv)!;
  return a.map((_, i) => a.map((_, j) => (j >= i ? l2[j]![i]! : 0)));
}

/**
 * GPTQ written straight from the reference algorithm (IST-DASLab/gptq `GPTQ.fasterquant`) with no
 * lazy batching: every column's error is applied to all later columns at once, the inverse factor
 * is computed the reference's way, and in "reference" mode the group parameters are taken from a
 * snapshot of W at the block start.
 */
function naiveGptq(
  w: Float32Array,
  rows: number,
  cols: number,
  h: Float64Array,
  o: GptqLayerOptions,
): { dequantized: Float32Array; loss: number } {
  const g = o.groupSize ?? 0;
  const maxq = 2 ** o.bits - 1;
  const W = Array.from(
    { length: rows },
    (_, r) => Array.from(w.subarray(r * cols, (r + 1) * cols)),
  );
  const rowP = W.map((row) => groupParams(row, 0, cols, o.bits, o.symmetric));
  const d = Array.from({ length: cols }, (_, i) => h[i * cols + i]!);
  for (let i = 0; i < cols; i++) {
    if (d[i] === 0) {
      d[i] = 1;
      for (const row of W) row[i] = 0;
    }
  }
  const staticP = W.map((row) => {
    const ps = [];
    for (let c = 0; c < cols; c += g || cols) {
      ps.push(groupParams(row, c, Math.min(c + (g || cols), cols), o.bits, o.symmetric));
    }
    return ps;
  });
  const perm = Array.from({ length: cols }, (_, i) => i);
  if (o.actOrder) perm.sort((a, b) => d[b]! - d[a]! || a - b);
  const Wp = W.map((row) => perm.map((c) => row[c]!));
  const mean = d.reduce((a, b) => a + b, 0) / cols;
  const hp = perm.map((a, i) =>
    perm.map((b, j) => (i === j ? d[a]! + o.percdamp * mean : h[a * cols + b]!))
  );
  const U = literalInverseFactor(hp);
  const outP = Wp.map(() => new Array<number>(cols).fill(0));
  let loss = 0;
  for (let r = 0; r < rows; r++) {
    const row = Wp[r]!;
    let p = rowP[r]!;
    let snapshot = row.slice();
    for (let i = 0; i < cols; i++) {
      if (i % o.blockSize === 0) snapshot = row.slice();
      if (g > 0) {
        if (o.groupParams === "static") p = staticP[r]![Math.floor(perm[i]! / g)]!;
        else if (i % g === 0) {
          const src = o.groupParams === "reference" ? snapshot : row;
          p = groupParams(src, i, Math.min(i + g, cols), o.bits, o.symmetric);
        }
      }
      const code = quantizeValue(row[i]!, p.scale, p.zero, maxq);
      const q = p.scale * (code - p.zero);
      outP[r]![i] = q;
      const e = (row[i]! - q) / U[i]![i]!;
      loss += e * e / 2;
      for (let j = i + 1; j < cols; j++) row[j] = row[j]! - e * U[i]![j]!;
    }
  }
  const dequantized = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    for (let i = 0; i < cols; i++) dequantized[r * cols + perm[i]!] = outP[r]![i]!;
  }
  return { dequantized, loss };
}

/** Check Ŵ = fround(scale[r, group(c)] · (code − zero)) for every element. */
function assertPackedMatches(res: GptqLayerResult, label: string): void {
  const p = res.packed;
  const codes = unpackCodes(p);
  for (let r = 0; r < p.rows; r++) {
    for (let c = 0; c < p.cols; c++) {
      const gcol = res.groupIndex ? res.groupIndex[c]! : Math.floor(c / p.groupSize);
      assert.ok(gcol < p.groupsPerRow, `${label}: group ${gcol} out of range`);
      const gi = r * p.groupsPerRow + gcol;
      const want = Math.fround(p.scales[gi]! * (codes[r * p.cols + c]! - p.zeros[gi]!));
      assert.equal(res.dequantized[r * p.cols + c], want, `${label}: (${r}, ${c})`);
    }
  }
  if (!res.groupIndex) assert.deepEqual(dequantizePacked(p), res.dequantized, label);
}

const ROWS = 16;
const COLS = 64;
const W16x64 = randomMatrix(ROWS * COLS, 11, 1.5);
const X = randomInputs(COLS, 256, 5);
const H_SPD = hessianOf(X, COLS, 256, 1e-3);

// ---------------------------------------------------------------------------------------------

Deno.test("gptqQuantizeLayer() with H = I equals RTN exactly (per-row and groups, asym and sym)", () => {
  const rows = 12, cols = 40;
  const w = randomMatrix(rows * cols, 3, 2);
  const h = identity(cols);
  for (const bits of [2, 3, 4, 8]) {
    for (const symmetric of [false, true]) {
      for (const g of [0, 8, 12]) {
        for (const groupParams of ["reference", "updated"] as const) {
          for (const blockSize of [16, 128]) {
            const label = `b${bits} g${g} sym=${symmetric} ${groupParams} B${blockSize}`;
            const res = gptqQuantizeLayer(
              w,
              rows,
              cols,
              h,
              opts({ bits, symmetric, groupSize: g, groupParams, blockSize }),
            );
            const rtn = quantizeMatrix(w, rows, cols, rtnSpec(bits, g, symmetric));
            assert.deepEqual(res.dequantized, rtn.dequantized, label);
            assert.deepEqual(res.packed, rtn.packed, label);
            assert.equal(res.dampRetries, 0);
            assert.equal(res.percdampUsed, 0.01);
            assert.equal(res.deadColumns, 0);
          }
        }
      }
    }
  }
});

Deno.test("gptqQuantizeLayer() loss with H = I is Σ(w − q)²/2, scaled by 1 + percdamp", () => {
  const rows = 8, cols = 24;
  const w = randomMatrix(rows * cols, 9);
  let sse = 0;
  const rtn = quantizeMatrix(w, rows, cols, rtnSpec(3, 0, false));
  for (let i = 0; i < w.length; i++) sse += (w[i]! - rtn.dequantized[i]!) ** 2;
  assert.ok(sse > 0);
  const undamped = gptqQuantizeLayer(w, rows, cols, identity(cols), opts({ bits: 3, percdamp: 0 }));
  assert.ok(Math.abs(undamped.loss - sse / 2) <= 1e-6 * sse, `${undamped.loss} vs ${sse / 2}`);
  const damped = gptqQuantizeLayer(w, rows, cols, identity(cols), opts({ bits: 3 }));
  // U = (1.01)^(-1/2) I, so each term is divided by 1/1.01.
  assert.ok(Math.abs(damped.loss - 1.01 * sse / 2) <= 1e-6 * sse, `${damped.loss}`);
});

Deno.test("gptqQuantizeLayer() matches a direct, unbatched implementation of the spec", () => {
  const configs: Partial<GptqLayerOptions>[] = [
    {},
    { groupSize: 16 },
    { groupSize: 16, blockSize: 24 }, // groups straddle block boundaries
    { groupSize: 8, blockSize: 32, groupParams: "updated" },
    { groupSize: 16, groupParams: "static" },
    { actOrder: true },
    { actOrder: true, groupSize: 16, blockSize: 24 },
    { actOrder: true, groupSize: 16, groupParams: "static" },
    { symmetric: true, groupSize: 12, blockSize: 20 },
    { percdamp: 0.1, blockSize: 7 },
  ];
  for (const bits of [2, 3, 4]) {
    for (const c of configs) {
      const o = opts({ bits, blockSize: 32, ...c });
      const label = JSON.stringify({ bits, ...c });
      const got = gptqQuantizeLayer(W16x64, ROWS, COLS, H_SPD, o);
      const want = naiveGptq(W16x64, ROWS, COLS, H_SPD, o);
      assert.deepEqual(got.dequantized, want.dequantized, label);
      assert.ok(Math.abs(got.loss - want.loss) <= 1e-9 * want.loss, `${label}: loss`);
    }
  }
});

Deno.test("gptqQuantizeLayer() matches the direct implementation on odd shapes", () => {
  // Odd rows and a column count that is not a multiple of the kernels' 4- and 16-row blocks.
  const rows = 7, cols = 37;
  const w = randomMatrix(rows * cols, 61, 1);
  const h = hessianOf(randomInputs(cols, 90, 62), cols, 90, 1e-3);
  const configs: Partial<GptqLayerOptions>[] = [
    { blockSize: 10 },
    { blockSize: 10, groupSize: 6 },
    { blockSize: 10, groupSize: 6, groupParams: "updated", actOrder: true },
    { blockSize: 128, groupSize: 6, groupParams: "static", actOrder: true },
  ];
  for (const c of configs) {
    const o = opts({ bits: 3, ...c });
    const got = gptqQuantizeLayer(w, rows, cols, h, o);
    const want = naiveGptq(w, rows, cols, h, o);
    assert.deepEqual(got.dequantized, want.dequantized, JSON.stringify(c));
    assert.ok(Math.abs(got.loss - want.loss) <= 1e-9 * want.loss, `${JSON.stringify(c)}: loss`);
  }
});

Deno.test("gptqQuantizeLayer() beats RTN on tr((W−Ŵ)H(W−Ŵ)ᵀ) at 2, 3 and 4 bits", () => {
  for (const bits of [2, 3, 4]) {
    for (const g of [0, 16]) {
      for (const actOrder of [false, true]) {
        const label = `b${bits} g${g} actOrder=${actOrder}`;
        const rtn = quantizeMatrix(W16x64, ROWS, COLS, rtnSpec(bits, g, false));
        const res = gptqQuantizeLayer(
          W16x64,
          ROWS,
          COLS,
          H_SPD,
          opts({ bits, groupSize: g, actOrder }),
        );
        const eR = objective(W16x64, rtn.dequantized, ROWS, COLS, H_SPD);
        const eG = objective(W16x64, res.dequantized, ROWS, COLS, H_SPD);
        assert.ok(eG < eR, `${label}: GPTQ ${eG} not below RTN ${eR}`);
      }
    }
  }
});

Deno.test("gptqQuantizeLayer() loss equals ½·tr((W−Ŵ)(H+λI)(W−Ŵ)ᵀ) (telescoping OBS errors)", () => {
  let meanDiag = 0;
  for (let i = 0; i < COLS; i++) meanDiag += H_SPD[i * COLS + i]!;
  meanDiag /= COLS;
  const configs: Partial<GptqLayerOptions>[] = [
    {},
    { groupSize: 16 },
    { groupSize: 16, groupParams: "updated" },
    { groupSize: 16, groupParams: "static", actOrder: true },
    { actOrder: true, groupSize: 8, blockSize: 16 },
  ];
  for (const bits of [3, 4]) {
    for (const c of configs) {
      const label = JSON.stringify({ bits, ...c });
      const res = gptqQuantizeLayer(W16x64, ROWS, COLS, H_SPD, opts({ bits, ...c }));
      const want = objective(W16x64, res.dequantized, ROWS, COLS, H_SPD, 0.01 * meanDiag) / 2;
      assert.ok(res.loss > 0);
      assert.ok(Math.abs(res.loss - want) <= 1e-5 * want, `${label}: ${res.loss} vs ${want}`);
    }
  }
});

Deno.test("gptqQuantizeLayer() act-order with a diagonal H equals RTN in the original order", () => {
  const rows = 10, cols = 48;
  const w = randomMatrix(rows * cols, 21, 1);
  const h = new Float64Array(cols * cols);
  // Distinct diagonal, far from sorted: the permutation is non-trivial.
  for (let i = 0; i < cols; i++) h[i * cols + i] = 1 + ((i * 17) % cols);
  for (const symmetric of [false, true]) {
    const perRow = gptqQuantizeLayer(
      w,
      rows,
      cols,
      h,
      opts({ bits: 3, symmetric, actOrder: true }),
    );
    const rtn = quantizeMatrix(w, rows, cols, rtnSpec(3, 0, symmetric));
    assert.deepEqual(perRow.dequantized, rtn.dequantized);
    assert.deepEqual(perRow.packed, rtn.packed);
    assert.equal(perRow.groupIndex, undefined);
    // Static groups keep the original column groups: RTN per group.
    const st = gptqQuantizeLayer(
      w,
      rows,
      cols,
      h,
      opts({ bits: 3, symmetric, actOrder: true, groupSize: 8, groupParams: "static" }),
    );
    const rtnG = quantizeMatrix(w, rows, cols, rtnSpec(3, 8, symmetric));
    assert.deepEqual(st.dequantized, rtnG.dequantized);
    assert.equal(st.groupIndex, undefined);
  }
});

Deno.test("gptqQuantizeLayer() act-order groups are formed in the permuted order", () => {
  const rows = 10, cols = 48, g = 8;
  const w = randomMatrix(rows * cols, 23, 1);
  const h = new Float64Array(cols * cols);
  for (let i = 0; i < cols; i++) h[i * cols + i] = 1 + ((i * 17) % cols);
  // Expected order: descending diagonal (distinct values).
  const order = Array.from({ length: cols }, (_, i) => i).sort(
    (a, b) => h[b * cols + b]! - h[a * cols + a]!,
  );
  // With a diagonal H there is no compensation: the result is RTN of the permuted matrix.
  const wPerm = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    for (let j = 0; j < cols; j++) wPerm[r * cols + j] = w[r * cols + order[j]!]!;
  }
  const rtnPerm = quantizeMatrix(wPerm, rows, cols, rtnSpec(3, g, false));
  for (const groupParams of ["reference", "updated"] as const) {
    const res = gptqQuantizeLayer(
      w,
      rows,
      cols,
      h,
      opts({ bits: 3, actOrder: true, groupSize: g, groupParams, blockSize: 16 }),
    );
    assert.ok(res.groupIndex, "groupIndex is set");
    for (let j = 0; j < cols; j++) assert.equal(res.groupIndex[order[j]!], Math.floor(j / g));
    for (let r = 0; r < rows; r++) {
      for (let j = 0; j < cols; j++) {
        assert.equal(res.dequantized[r * cols + order[j]!], rtnPerm.dequantized[r * cols + j]);
      }
    }
    assert.deepEqual(res.packed.scales, rtnPerm.packed.scales);
    assertPackedMatches(res, groupParams);
  }
});

Deno.test("gptqQuantizeLayer(): Ŵ = scale[row, group(col)]·(code − zero) for every element", () => {
  const configs: Partial<GptqLayerOptions>[] = [
    {},
    { groupSize: 16 },
    { groupSize: 12 }, // ragged last group
    { groupSize: 16, actOrder: true },
    { groupSize: 12, actOrder: true, groupParams: "updated" },
    { groupSize: 16, actOrder: true, groupParams: "static" },
    { actOrder: true, symmetric: true },
    { groupSize: 8, mse: true, actOrder: true },
  ];
  for (const bits of [2, 3, 4, 8]) {
    for (const c of configs) {
      const label = JSON.stringify({ bits, ...c });
      const res = gptqQuantizeLayer(W16x64, ROWS, COLS, H_SPD, opts({ bits, ...c }));
      assert.equal(
        res.groupIndex !== undefined,
        !!c.actOrder && !!c.groupSize && c.groupParams !== "static",
        label,
      );
      assertPackedMatches(res, label);
    }
  }
});

Deno.test("gptqQuantizeLayer() zeroes dead columns (H_ii = 0) and counts them", () => {
  const samples = 128;
  const x = randomInputs(COLS, samples, 31);
  for (const dead of [5, 40]) x.fill(0, dead * samples, (dead + 1) * samples);
  const h = hessianOf(x, COLS, samples);
  assert.equal(h[5 * COLS + 5], 0);
  for (
    const c of [{}, { symmetric: true }, { actOrder: true, groupSize: 16 }, {
      groupSize: 16,
      groupParams: "static" as const,
    }]
  ) {
    const res = gptqQuantizeLayer(W16x64, ROWS, COLS, h, opts({ bits: 3, ...c }));
    assert.equal(res.deadColumns, 2);
    for (let r = 0; r < ROWS; r++) {
      assert.equal(res.dequantized[r * COLS + 5], 0, `row ${r}`);
      assert.equal(res.dequantized[r * COLS + 40], 0, `row ${r}`);
    }
    assert.ok(res.dequantized.some((v) => v !== 0));
    assert.ok(Number.isFinite(res.loss));
    assertPackedMatches(res, JSON.stringify(c));
  }
});

Deno.test("gptqQuantizeLayer() 'reference' and 'updated' group modes differ unless blockSize = g", () => {
  for (const bits of [2, 3]) {
    const ref = gptqQuantizeLayer(
      W16x64,
      ROWS,
      COLS,
      H_SPD,
      opts({ bits, groupSize: 8, blockSize: 32, groupParams: "reference" }),
    );
    const upd = gptqQuantizeLayer(
      W16x64,
      ROWS,
      COLS,
      H_SPD,
      opts({ bits, groupSize: 8, blockSize: 32, groupParams: "updated" }),
    );
    assert.notDeepEqual(ref.packed.scales, upd.packed.scales);
    assert.notDeepEqual(ref.dequantized, upd.dequantized);
    // "updated" equals the reference run with block size g.
    const refG = gptqQuantizeLayer(
      W16x64,
      ROWS,
      COLS,
      H_SPD,
      opts({ bits, groupSize: 8, blockSize: 8, groupParams: "reference" }),
    );
    assert.deepEqual(upd.dequantized, refG.dequantized);
    const updG = gptqQuantizeLayer(
      W16x64,
      ROWS,
      COLS,
      H_SPD,
      opts({ bits, groupSize: 8, blockSize: 8, groupParams: "updated" }),
    );
    assert.deepEqual(updG, refG);
  }
});

Deno.test("gptqQuantizeLayer() static groups take their parameters from the original W", () => {
  for (const actOrder of [false, true]) {
    for (const symmetric of [false, true]) {
      const res = gptqQuantizeLayer(
        W16x64,
        ROWS,
        COLS,
        H_SPD,
        opts({ bits: 3, groupSize: 16, groupParams: "static", actOrder, symmetric }),
      );
      const rtn = quantizeMatrix(W16x64, ROWS, COLS, rtnSpec(3, 16, symmetric));
      assert.deepEqual(res.packed.scales, rtn.packed.scales);
      assert.deepEqual(res.packed.zeros, rtn.packed.zeros);
      // ...but the codes are GPTQ's, not RTN's.
      assert.notDeepEqual(res.dequantized, rtn.dequantized);
    }
  }
});

Deno.test("gptqQuantizeLayer() retries with ×10 damping when H + λI is not positive definite", async (t) => {
  const rows = 4, cols = 8;
  const w = randomMatrix(rows * cols, 41);
  await t.step("an indefinite diagonal fixed by the first retry", () => {
    // mean(diag) = 6.95/8 ≈ 0.87: λ = 0.0087 leaves −0.041, λ = 0.087 makes it positive.
    const h = identity(cols);
    h[3 * cols + 3] = -0.05;
    const res = gptqQuantizeLayer(w, rows, cols, h, opts({ bits: 4 }));
    assert.equal(res.dampRetries, 1);
    assert.ok(Math.abs(res.percdampUsed - 0.1) < 1e-15);
  });
  await t.step("a singular H with percdamp 0 retries at 0.01", () => {
    const h = identity(cols);
    h[0 * cols + 1] = 1;
    h[1 * cols + 0] = 1; // columns 0 and 1 identical: exactly singular
    const res = gptqQuantizeLayer(w, rows, cols, h, opts({ bits: 4, percdamp: 0 }));
    assert.equal(res.dampRetries, 1);
    assert.ok(Math.abs(res.percdampUsed - 0.01) < 1e-15);
  });
  await t.step("a strongly indefinite H fails after maxDampRetries, naming every damping", () => {
    const h = identity(cols);
    h[0 * cols + 1] = 10;
    h[1 * cols + 0] = 10; // eigenvalue −9; mean(diag) = 1
    assert.throws(
      () => gptqQuantizeLayer(w, rows, cols, h, opts({ bits: 4, maxDampRetries: 2 })),
      (e: unknown) =>
        e instanceof HessianNotPositiveDefiniteError &&
        /percdamp 0\.01, 0\.1, 1 /.test(e.message) &&
        e.percdampsTried.length === 3,
    );
    assert.throws(
      () => gptqQuantizeLayer(w, rows, cols, h, opts({ bits: 4, maxDampRetries: 0 })),
      (e: unknown) => e instanceof HessianNotPositiveDefiniteError && e.percdampsTried.length === 1,
    );
    // Enough retries: percdamp 10 (λ = 10) makes it positive definite.
    const res = gptqQuantizeLayer(w, rows, cols, h, opts({ bits: 4 }));
    assert.equal(res.dampRetries, 3);
  });
});

Deno.test("gptqQuantizeLayer() rejects bad bits, shapes, options and non-finite inputs", () => {
  const rows = 2, cols = 6;
  const w = randomMatrix(rows * cols, 1);
  const h = identity(cols);
  for (const bits of [1, 9, 2.5, NaN]) {
    assert.throws(
      () => gptqQuantizeLayer(w, rows, cols, h, opts({ bits })),
      (e: unknown) =>
        e instanceof RangeError && /bits must be an integer in \[2, 8\]/.test(e.message),
    );
  }
  assert.throws(() => gptqQuantizeLayer(w, rows, cols, identity(5), opts({ bits: 4 })), RangeError);
  assert.throws(() => gptqQuantizeLayer(w, rows, 5, h, opts({ bits: 4 })), RangeError);
  assert.throws(
    () => gptqQuantizeLayer(w, rows, cols, h, opts({ bits: 4, blockSize: 0 })),
    RangeError,
  );
  assert.throws(
    () => gptqQuantizeLayer(w, rows, cols, h, opts({ bits: 4, groupSize: -8 })),
    RangeError,
  );
  assert.throws(
    () => gptqQuantizeLayer(w, rows, cols, h, opts({ bits: 4, percdamp: -1 })),
    RangeError,
  );
  const wNaN = w.slice();
  wNaN[7] = NaN;
  assert.throws(
    () => gptqQuantizeLayer(wNaN, rows, cols, h, opts({ bits: 4 })),
    (e: unknown) => e instanceof RangeError && /value NaN at row 1, column 1/.test(e.message),
  );
  const hInf = h.slice();
  hInf[3] = Infinity;
  assert.throws(
    () => gptqQuantizeLayer(w, rows, cols, hInf, opts({ bits: 4 })),
    /Hessian value Infinity/,
  );
});

Deno.test("gptqQuantizeLayer() leaves its inputs unchanged", () => {
  const w = W16x64.slice();
  const h = H_SPD.slice();
  gptqQuantizeLayer(w, ROWS, COLS, h, opts({ bits: 3, actOrder: true, groupSize: 16 }));
  assert.deepEqual(w, W16x64);
  assert.deepEqual(h, H_SPD);
});

Deno.test("upperCholeskyOfInverse() equals the reference's cholesky → inverse → cholesky(upper)", () => {
  for (const n of [1, 5, 23, 24, 41]) {
    const x = randomInputs(n, 40, 77);
    const h = hessianOf(x, n, 40, 0.05);
    checkInverseFactor(h, n);
  }
  assert.equal(upperCholeskyOfInverse(new Float64Array([1, 2, 2, 1]), 2), undefined);
});

Deno.test("upperCholeskyOfInverse() across several 128-column blocks of the blocked factor", () => {
  // 128 + 128 + 44 and 128 + 1 columns: the trailing updates and the block inverse's updates run.
  for (const n of [129, 300]) {
    const h = hessianOf(randomInputs(n, 2 * n, 78), n, 2 * n, 0.05);
    const u = upperCholeskyOfInverse(h, n)!;
    const rowsH = Array.from({ length: n }, (_, i) => Array.from(h.subarray(i * n, (i + 1) * n)));
    const want = literalInverseFactor(rowsH);
    let maxAbs = 0;
    for (const r of want) for (const v of r) maxAbs = Math.max(maxAbs, Math.abs(v));
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < n; j++) {
        assert.ok(Math.abs(u[i * n + j]! - want[i]![j]!) <= 1e-10 * maxAbs, `n ${n} (${i}, ${j})`);
      }
    }
  }
});

Deno.test("gptqQuantizeLayer() on 300 columns matches the direct implementation, and WASM products give its bits", async () => {
  const rows = 9, cols = 300;
  const w = randomMatrix(rows * cols, 63, 1);
  const h = hessianOf(randomInputs(cols, 400, 64), cols, 400, 1e-3);
  const kernels = [await wasmKernels(), await wasmKernels({ threads: 2, minSplit: 1 })];
  try {
    for (const c of [{ groupSize: 32 }, { actOrder: true, blockSize: 50 }]) {
      const o = opts({ bits: 3, ...c });
      const got = gptqQuantizeLayer(w, rows, cols, h, o);
      const want = naiveGptq(w, rows, cols, h, o);
      assert.deepEqual(got.dequantized, want.dequantized, JSON.stringify(c));
      assert.ok(Math.abs(got.loss - want.loss) <= 1e-9 * want.loss, `${JSON.stringify(c)}: loss`);
      for (const k of kernels) {
        const viaWasm = gptqQuantizeLayer(w, rows, cols, h, { ...o, f64: k.f64 });
        assert.deepEqual(viaWasm.dequantized, got.dequantized, `${k.id} ${JSON.stringify(c)}`);
        assert.equal(viaWasm.loss, got.loss, `${k.id}: loss bit for bit`);
      }
    }
  } finally {
    for (const k of kernels) k.close();
  }
});

Deno.test("gptqQuantizeLayer() falls back to the reference products when the backend cannot hold its arrays", () => {
  const rows = 5, cols = 20;
  const w = randomMatrix(rows * cols, 65, 1);
  const h = hessianOf(randomInputs(cols, 40, 66), cols, 40, 1e-3);
  const o = opts({ bits: 4, blockSize: 8 });
  let products = 0;
  const full: F64Kernels = {
    ...refF64,
    id: "full",
    alloc: () => {
      throw new RangeError("wasm kernels: out of memory");
    },
    gemmSub: (...args) => {
      products++;
      refF64.gemmSub(...args);
    },
  };
  const got = gptqQuantizeLayer(w, rows, cols, h, { ...o, f64: full });
  assert.deepEqual(got.dequantized, gptqQuantizeLayer(w, rows, cols, h, o).dequantized);
  assert.equal(products, 0, "the backend that could not allocate computes nothing");
  // Any other failure is not swallowed.
  const broken: F64Kernels = {
    ...refF64,
    alloc: () => {
      throw new TypeError("broken");
    },
  };
  assert.throws(() => gptqQuantizeLayer(w, rows, cols, h, { ...o, f64: broken }), TypeError);
});

function checkInverseFactor(h: Float64Array, n: number): void {
  const u = upperCholeskyOfInverse(h, n)!;
  const rowsH = Array.from({ length: n }, (_, i) => Array.from(h.subarray(i * n, (i + 1) * n)));
  const want = literalInverseFactor(rowsH);
  let maxAbs = 0;
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) maxAbs = Math.max(maxAbs, Math.abs(want[i]![j]!));
  }
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      assert.ok(Math.abs(u[i * n + j]! - want[i]![j]!) <= 1e-10 * maxAbs, `(${i}, ${j})`);
    }
  }
  // UᵀU H = I.
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let k = 0; k < n; k++) {
        let uu = 0;
        for (let m = 0; m <= Math.min(i, k); m++) uu += u[m * n + i]! * u[m * n + k]!;
        s += uu * h[k * n + j]!;
      }
      assert.ok(Math.abs(s - (i === j ? 1 : 0)) < 1e-9, `(UᵀU H)[${i}][${j}] = ${s}`);
    }
  }
}

Deno.test("groupParamsMse() never has a larger Σ|x̂ − x|^2.4 than min-max, and often a smaller one", () => {
  const err = (x: Float32Array, p: { scale: number; zero: number }, bits: number): number => {
    let e = 0;
    for (const v of x) {
      const q = Math.min(2 ** bits - 1, Math.max(0, roundHalfEven(v / p.scale) + p.zero));
      e += Math.abs(Math.fround(p.scale * (q - p.zero)) - v) ** 2.4;
    }
    return e;
  };
  let strictlyBetter = 0, total = 0;
  for (let trial = 0; trial < 60; trial++) {
    const size = 8 + (trial % 5) * 14;
    const x = randomMatrix(size, 1000 + trial);
    // Heavy tails: cube some values, add an outlier in half the trials.
    for (let i = 0; i < size; i += 3) x[i] = x[i]! ** 3;
    if (trial % 2 === 0) x[trial % size] = 4 * (trial % 4 === 0 ? 1 : -1);
    for (const bits of [2, 3, 4]) {
      for (const symmetric of [false, true]) {
        const mm = groupParams(x, 0, size, bits, symmetric);
        const ms = groupParamsMse(x, 0, size, bits, symmetric);
        const eMm = err(x, mm, bits), eMs = err(x, ms, bits);
        assert.ok(
          eMs <= eMm * (1 + 1e-12),
          `trial ${trial} b${bits} sym=${symmetric}: ${eMs} > ${eMm}`,
        );
        if (symmetric) assert.equal(ms.zero, 2 ** (bits - 1));
        else assert.ok(ms.zero >= 0 && ms.zero <= 2 ** bits - 1);
        total++;
        if (eMs < eMm * (1 - 1e-9)) strictlyBetter++;
      }
    }
  }
  assert.ok(strictlyBetter > total / 4, `only ${strictlyBetter}/${total} improved`);
  // An all-zero group falls back to min-max (range (−1, 1)).
  assert.deepEqual(
    groupParamsMse([0, 0, 0], 0, 3, 3, false),
    groupParams([0, 0, 0], 0, 3, 3, false),
  );
});

Deno.test("gptqQuantizeLayer() with mse and H = I uses groupParamsMse for every row or group", () => {
  const rows = 6, cols = 32;
  const w = randomMatrix(rows * cols, 51, 1);
  for (let i = 0; i < w.length; i += 5) w[i] = w[i]! ** 3;
  for (const g of [0, 8]) {
    const res = gptqQuantizeLayer(
      w,
      rows,
      cols,
      identity(cols),
      opts({ bits: 3, groupSize: g, mse: true }),
    );
    const gs = g || cols;
    for (let r = 0; r < rows; r++) {
      for (let k = 0; k < cols / gs; k++) {
        const p = groupParamsMse(w, r * cols + k * gs, r * cols + (k + 1) * gs, 3, false);
        assert.equal(res.packed.scales[r * (cols / gs) + k], p.scale);
        assert.equal(res.packed.zeros[r * (cols / gs) + k], p.zero);
      }
    }
    assertPackedMatches(res, `mse g${g}`);
  }
});

Deno.test("hessianScale gives bit for bit the result of a scaled copy of the Hessian", () => {
  const rows = 6, n = 24, N = 40;
  const w = Float32Array.from({ length: rows * n }, (_, i) => Math.sin(i * 1.3) * 0.2);
  const x = Float64Array.from({ length: N * n }, (_, i) => Math.cos(i * 0.7) + (i % 5) * 0.1);
  const gram = new Float64Array(n * n);
  for (let t = 0; t < N; t++) {
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < n; j++) {
        gram[i * n + j] = gram[i * n + j]! + x[t * n + i]! * x[t * n + j]!;
      }
    }
  }
  const f = 2 / 7;
  const scaled = gram.map((g) => f * g);
  for (const actOrder of [false, true]) {
    const options = {
      ...GPTQ_DEFAULTS,
      bits: 3,
      groupSize: 8,
      symmetric: false,
      actOrder,
    };
    const a = gptqQuantizeLayer(w, rows, n, scaled, options);
    const b = gptqQuantizeLayer(w, rows, n, gram, { ...options, hessianScale: f });
    assert.deepEqual(b.dequantized, a.dequantized);
    assert.equal(b.loss, a.loss);
  }
});
