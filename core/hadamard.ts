/**
 * QuaRot's rotations (spcl/QuaRot `fake_quant/hadamard_utils.py`, `fake_quant/rotation_utils.py`):
 * normalised Hadamard transforms of any size n = K·2^m with a known ±1 table of order K, the
 * fusions of those transforms into linear weights, and the residual rotation Q (random Hadamard or
 * random orthogonal).
 *
 * Convention used throughout. For a size n, `getHadK(n)` picks K and the K×K table `hadK`, and
 *
 *     M_n = (hadK ⊗ H_{n/K}) / √n
 *
 * with H_{n/K} the natural-order Sylvester matrix. Acting on a length-n vector v viewed as a
 * K × (n/K) row-major array: Walsh–Hadamard transform of every row, left-multiplication by hadK,
 * division by √n. M_n is orthogonal, and symmetric only when hadK is: the Paley I, doubled and
 * Williamson tables (among them QuaRot's own had12/20/40/52/156/172) are not, the Paley II tables
 * here (K = 28, 36) are. So M_n and M_nᵀ are in general different transforms. What QuaRot computes,
 * in these terms:
 *
 * - `matmul_hadU(X)` / `matmul_hadU_cuda(X, hadK, K)` replace every row x of X by M_n·x, i.e. they
 *   return X·M_nᵀ. `matmul_hadU(X, transpose=True)` (`matmul_hadUt`) uses hadKᵀ: rows x ↦ M_nᵀ·x.
 * - `apply_exact_had_to_linear(W, had_dim=-1, output=False)`: W ← W·M_nᵀ (n = in features); the
 *   forward then applies x ← M_n·x to the linear's input (`ActQuantWrapper.online_full_had`, for
 *   down_proj), so W·M_nᵀ·M_n·x = W·x.
 * - `apply_exact_had_to_linear(W, had_dim=-1, output=True)`: W ← M_n·W (n = out features).
 * - `apply_exact_had_to_linear(W, had_dim=hd, output=True)` (v_proj): W ← (I ⊗ H_hd/√hd)·W.
 * - `random_hadamard_matrix(d)` = `matmul_hadU(diag(ε))` = diag(ε)·M_dᵀ, the default residual Q.
 *
 * Deviations: QuaRot fuses the extra Hadamards in float32 (`W_.float()`) and the residual Q in
 * float64; here every fusion computes in float64 and rounds once when it writes a float32 array.
 * `getHadK` returns `undefined` where QuaRot asserts. The cross-head online transform applies the
 * full M_{n_heads} ⊗ I_hd, where QuaRot applies only hadK (so works only for n_heads = K or K = 1);
 * both agree wherever QuaRot's runs. Random draws use pure-rand, not torch's generator.
 *
 * @module
 */

import { SeededRng } from "./rng.ts";
import {
  cachedHadamardTable,
  type HadamardTable,
  hadamardTable,
  isPowerOfTwo,
} from "./hadamard_tables.ts";

export {
  HADAMARD_TABLE_ORDERS,
  type HadamardTable,
  hadamardTable,
  isPowerOfTwo,
  sylvester,
} from "./hadamard_tables.ts";

/** A float array transformed in place; computation is float64 either way. */
export type FloatArray = Float32Array | Float64Array;

/**
 * Orders K tried by {@linkcode getHadK}, in QuaRot's `get_hadK` order (spcl/QuaRot
 * `fake_quant/hadamard_utils.py` @5008669). The version of `hadamard_utils.py` read for this port
 * (12e33bad) also tries 148 (Qwen2.5-7B's 18944 = 148·128) between 156 and 140; it is left out
 * here.
 */
export const HAD_K_CHOICE_ORDER: readonly number[] = [
  172,
  156,
  140,
  108,
  60,
  52,
  36,
  28,
  40,
  20,
  12,
];

/** Random source of {@linkcode randomOrthogonal} and {@linkcode randomHadamardQ}, for protocols. */
export const ROTATION_RNG =
  "pure-rand xoroshiro128plus(seed); signs uniformInt(0, 1); normals Box–Muller on uniformFloat64";

/** The factorisation n = K · m chosen by {@linkcode getHadK}. */
export interface HadK {
  /** The transform size. */
  readonly n: number;
  /** The order of the ±1 table (1: a plain Sylvester transform). */
  readonly k: number;
  /** n / K, a power of two: the order of the Sylvester factor. */
  readonly m: number;
  /** The K×K table (a copy; `identity-1` when K = 1). */
  readonly table: HadamardTable;
  /** Id of M_n to record: `kron(<table id>,sylvester-<m>)`, or `sylvester-<n>` when K = 1. */
  readonly id: string;
}

/**
 * QuaRot's `get_hadK(n)`: the first K of {@linkcode HAD_K_CHOICE_ORDER} that divides n, which must
 * then leave a power of two; with no such K, n itself must be a power of two (K = 1). Like QuaRot it
 * does not try a later K when n/K is not a power of two (with these orders a later K never could).
 *
 * Deviation: returns `undefined` where QuaRot fails an assert (e.g. 4864 = 76·64, 14), so the caller
 * can fall back (our extension: a seeded {@linkcode randomOrthogonal}).
 */
export function getHadK(n: number): HadK | undefined {
  const k = chooseK(n);
  if (k === undefined) return undefined;
  const m = n / k;
  const table = hadamardTable(k);
  return { n, k, m, table, id: k === 1 ? `sylvester-${n}` : `kron(${table.id},sylvester-${m})` };
}

function chooseK(n: number): number | undefined {
  if (!Number.isSafeInteger(n) || n < 1) return undefined;
  for (const k of HAD_K_CHOICE_ORDER) {
    if (n % k === 0) return isPowerOfTwo(n / k) ? k : undefined;
  }
  return isPowerOfTwo(n) ? 1 : undefined;
}

/**
 * Unnormalised fast Walsh–Hadamard transform of `x[offset .. offset + n)` in place, natural
 * (Sylvester) order: y = H_n·x, H[i][j] = (−1)^popcount(i & j), as `fast_hadamard_transform` with
 * scale 1. A Float32Array is rounded after every butterfly stage.
 *
 * @throws {RangeError} if `n` is not a power of two or the range is outside `x`.
 */
export function fwhtInPlace(x: FloatArray, offset: number, n: number): void {
  if (!isPowerOfTwo(n)) {
    throw new RangeError(`fwhtInPlace: n = ${n}: expected a power of two`);
  }
  if (!Number.isSafeInteger(offset) || offset < 0 || offset + n > x.length) {
    throw new RangeError(
      `fwhtInPlace: offset ${offset} + n = ${n} is outside an array of length ${x.length}`,
    );
  }
  const end = offset + n;
  for (let h = 1; h < n; h <<= 1) {
    for (let i = offset; i < end; i += 2 * h) {
      for (let j = i; j < i + h; j++) {
        const a = x[j]!;
        const b = x[j + h]!;
        x[j] = a + b;
        x[j + h] = a - b;
      }
    }
  }
}

/** Whether to apply M_n (default) or its transpose. */
export interface HadamardOptions {
  /** Apply M_nᵀ = (hadKᵀ ⊗ H_{n/K})/√n instead of M_n (QuaRot's `transpose=True`). */
  readonly transpose?: boolean;
}

/**
 * Replaces each of the `rows` contiguous length-n vectors v of `x` (a row-major [rows][n] array) by
 * M_n·v, or M_nᵀ·v with `transpose`: the matrix is replaced by X·M_nᵀ (or X·M_n). This is QuaRot's
 * `matmul_hadU` / `matmul_hadU_cuda` (and `matmul_hadUt` with `transpose`): view v as K × (n/K),
 * transform every row with H_{n/K}, left-multiply by hadK, divide by √n. Used online before
 * down_proj (`online_full_had`) and, on a weight's rows, for input-side fusion (see
 * {@linkcode fuseHadamardIntoInput}). In place; returns `x`.
 *
 * @throws {RangeError} if n has no factorisation K·2^m ({@linkcode getHadK}) or `x.length ≠ rows·n`.
 */
export function applyHadamard<T extends FloatArray>(
  x: T,
  n: number,
  rows: number,
  options: HadamardOptions = {},
): T {
  const plan = planFor(n, "applyHadamard");
  checkShape(x, rows, n, "applyHadamard", "rows", "n");
  const s = new Float64Array(n);
  const acc = new Float64Array(plan.k > 1 ? n : 0);
  for (let r = 0; r < rows; r++) {
    transformBlock(x, r * n, 1, 1, plan, options.transpose === true, s, acc);
  }
  return x;
}

/**
 * Input-side fusion into a weight W (row-major [outFeatures][inFeatures]): W ← W·M_nᵀ with
 * n = inFeatures, i.e. every row w ↦ M_n·w; QuaRot's `apply_exact_had_to_linear(output=False)`
 * (down_proj and o_proj). Pair it with the online x ← M_n·x ({@linkcode applyHadamard}) on the
 * input. With `transpose`: W ← W·M_n. In place; returns `w`.
 *
 * @throws {RangeError} if inFeatures has no factorisation or `w` has the wrong length.
 */
export function fuseHadamardIntoInput<T extends FloatArray>(
  w: T,
  outFeatures: number,
  inFeatures: number,
  options: HadamardOptions = {},
): T {
  const plan = planFor(inFeatures, "fuseHadamardIntoInput");
  checkShape(w, outFeatures, inFeatures, "fuseHadamardIntoInput", "outFeatures", "inFeatures");
  const s = new Float64Array(inFeatures);
  const acc = new Float64Array(plan.k > 1 ? inFeatures : 0);
  for (let r = 0; r < outFeatures; r++) {
    transformBlock(w, r * inFeatures, 1, 1, plan, options.transpose === true, s, acc);
  }
  return w;
}

/**
 * Output-side fusion into a weight W (row-major [outFeatures][inFeatures]): W ← M_n·W with
 * n = outFeatures, i.e. every column c ↦ M_n·c; QuaRot's
 * `apply_exact_had_to_linear(output=True, had_dim=-1)`. With `transpose`: W ← M_nᵀ·W. A bias b
 * transforms as a one-column matrix: `applyHadamard(b, n, 1)`. In place; returns `w`.
 *
 * @throws {RangeError} if outFeatures has no factorisation or `w` has the wrong length.
 */
export function fuseHadamardIntoOutput<T extends FloatArray>(
  w: T,
  outFeatures: number,
  inFeatures: number,
  options: HadamardOptions = {},
): T {
  const plan = planFor(outFeatures, "fuseHadamardIntoOutput");
  checkShape(w, outFeatures, inFeatures, "fuseHadamardIntoOutput", "outFeatures", "inFeatures");
  transformColumns(w, 0, outFeatures, inFeatures, plan, options.transpose === true);
  return w;
}

/**
 * Head-wise output-side fusion (v_proj): W ← (I_{outFeatures/hd} ⊗ H_hd/√hd)·W, i.e. the columns
 * of every head's block of `headDim` rows are transformed by the symmetric H_hd/√hd; QuaRot's
 * `apply_exact_had_to_linear(output=True, had_dim=head_dim)`. A bias transforms with
 * {@linkcode applyHeadwiseHadamard}. In place; returns `w`.
 *
 * @throws {RangeError} if `headDim` is not a power of two, does not divide `outFeatures`, or `w`
 *   has the wrong length.
 */
export function fuseHeadwiseHadamardIntoOutput<T extends FloatArray>(
  w: T,
  outFeatures: number,
  inFeatures: number,
  headDim: number,
): T {
  const fn = "fuseHeadwiseHadamardIntoOutput";
  const plan = headPlan(headDim, fn);
  checkShape(w, outFeatures, inFeatures, fn, "outFeatures", "inFeatures");
  if (outFeatures % headDim !== 0) {
    throw new RangeError(
      `${fn}: outFeatures = ${outFeatures} is not a multiple of headDim ${headDim}`,
    );
  }
  for (let h = 0; h < outFeatures / headDim; h++) {
    transformColumns(w, h * headDim * inFeatures, headDim, inFeatures, plan, false);
  }
  return w;
}

/**
 * Replaces each of `count` contiguous chunks of `headDim` values of `x` by H_hd·chunk/√hd (H the
 * symmetric Sylvester matrix): QuaRot's per-head q/k transform after RoPE (`QKRotationWrapper`,
 * `hadamard_transform(·, scale=1/√hd)`), and the bias counterpart of
 * {@linkcode fuseHeadwiseHadamardIntoOutput}. In place; returns `x`.
 *
 * @throws {RangeError} if `headDim` is not a power of two or `x.length ≠ count·headDim`.
 */
export function applyHeadwiseHadamard<T extends FloatArray>(
  x: T,
  headDim: number,
  count: number,
): T {
  const plan = headPlan(headDim, "applyHeadwiseHadamard");
  checkShape(x, count, headDim, "applyHeadwiseHadamard", "count", "headDim");
  const s = new Float64Array(headDim);
  for (let r = 0; r < count; r++) transformBlock(x, r * headDim, 1, 1, plan, false, s, s);
  return x;
}

/**
 * The online transform before o_proj (`ActQuantWrapper.online_partial_had`): each row of `x`
 * ([rows][numHeads·headDim], head-major) becomes (M_{numHeads} ⊗ I_hd)·row, a Hadamard across
 * heads applied to every within-head position; with `transpose`, (M_{numHeads}ᵀ ⊗ I_hd)·row.
 * With v_proj fused by {@linkcode fuseHeadwiseHadamardIntoOutput} and o_proj by
 * {@linkcode fuseHadamardIntoInput} (n = numHeads·headDim), the product is the identity, because
 * M_{nh·hd} = M_nh ⊗ H_hd/√hd when both use the same K.
 *
 * Deviation: QuaRot multiplies by hadK alone when K > 1 (`had_K @ x.reshape(-1, nh, hd) / √nh`),
 * which equals this only when numHeads = K (otherwise its shapes do not match); this applies the
 * full M_{numHeads} for every numHeads with a factorisation. In place; returns `x`.
 *
 * @throws {RangeError} if numHeads has no factorisation ({@linkcode getHadK}) or the shape is wrong.
 */
export function applyCrossHeadHadamard<T extends FloatArray>(
  x: T,
  numHeads: number,
  headDim: number,
  rows: number,
  options: HadamardOptions = {},
): T {
  const fn = "applyCrossHeadHadamard";
  const plan = planFor(numHeads, fn);
  if (!Number.isSafeInteger(headDim) || headDim < 1) {
    throw new RangeError(`${fn}: headDim = ${headDim}: expected a positive integer`);
  }
  const width = numHeads * headDim;
  checkShape(x, rows, width, fn, "rows", "numHeads·headDim");
  const s = new Float64Array(width);
  const acc = new Float64Array(plan.k > 1 ? width : 0);
  for (let r = 0; r < rows; r++) {
    transformBlock(x, r * width, headDim, headDim, plan, options.transpose === true, s, acc);
  }
  return x;
}

/**
 * Whether QuaRot's v/o fusion (`rotate_ov_proj` with the online `online_partial_had`) is exact for
 * these heads: `headDim` is a power of two, both `numHeads` and `numHeads·headDim` have a
 * factorisation, and {@linkcode getHadK} picks the same K for both, so that
 * M_{nh·hd} = M_nh ⊗ H_hd/√hd. Of the head counts with a factorisation only 20 fails (K = 20 for
 * the heads, K = 40 for 20·hd): there QuaRot's v/o fusion with its `online_partial_had` is not
 * exact; fall back instead.
 */
export function crossHeadFactorises(numHeads: number, headDim: number): boolean {
  if (!isPowerOfTwo(headDim)) return false;
  const k = chooseK(numHeads);
  return k !== undefined && chooseK(numHeads * headDim) === k;
}

/** QuaRot's default residual rotation, drawn by {@linkcode randomHadamardQ}. */
export interface RandomHadamardQ {
  /** Q = diag(ε)·M_dᵀ, d×d row-major: row i is ε_i times column i of M_d. */
  readonly matrix: Float64Array;
  /** The signs ε_i ∈ {−1, +1}, in draw order. */
  readonly signs: Int8Array;
  /** Id of M_d ({@linkcode HadK.id}), to record with the seed. */
  readonly hadamardId: string;
  /** The seed the signs were drawn from. */
  readonly seed: number;
}

/**
 * QuaRot's `random_hadamard_matrix(d)` (`rotate_mode` "hadamard", `get_orthogonal_matrix`): signs
 * ε drawn uniformly, then `matmul_hadU(diag(ε))`, which replaces each row ε_i·e_iᵀ by (M_d·ε_i·e_i)ᵀ,
 * so Q = diag(ε)·M_dᵀ: the signs multiply Q's rows (on the left) and the Hadamard enters
 * transposed. The model is then rotated as E ← E·Q, W_in ← W_in·Q, W_out ← Qᵀ·W_out, so a hidden
 * state h (column) becomes M_d·(ε ⊙ h). Computed in float64.
 *
 * Deviation: the signs come from {@linkcode ROTATION_RNG} with `seed`, not from torch's generator
 * after `transformers.set_seed`; record the seed and {@linkcode RandomHadamardQ.hadamardId}.
 *
 * @throws {RangeError} if d has no factorisation ({@linkcode getHadK}; fall back to
 *   {@linkcode randomOrthogonal}) or `seed` is not a 32-bit integer.
 */
export function randomHadamardQ(d: number, seed: number): RandomHadamardQ {
  const plan = planFor(d, "randomHadamardQ");
  const rng = seededRng(seed, "randomHadamardQ");
  const signs = new Int8Array(d);
  for (let i = 0; i < d; i++) signs[i] = rng.int(0, 1) * 2 - 1;
  const q = new Float64Array(d * d);
  for (let i = 0; i < d; i++) q[i * d + i] = signs[i]!;
  const s = new Float64Array(d);
  const acc = new Float64Array(plan.k > 1 ? d : 0);
  for (let r = 0; r < d; r++) transformBlock(q, r * d, 1, 1, plan, false, s, acc);
  return { matrix: q, signs, hadamardId: getHadK(d)!.id, seed };
}

/**
 * QuaRot's `random_orthogonal_matrix(n)` (`rotate_mode` "random"): a standard normal n×n matrix G
 * (float64, filled row by row), its QR decomposition, and Q's columns multiplied by sign(diag R),
 * which makes the result the unique orthogonal factor of G with a positive-diagonal R (so it does
 * not depend on how the QR is computed; here Householder). Also the fallback rotation for sizes
 * with no Hadamard transform (our extension; QuaRot asserts there). O(n³); n×n row-major float64.
 *
 * Deviation: G comes from {@linkcode ROTATION_RNG} with `seed` (Box–Muller pairs on uniform
 * doubles), not `torch.randn`; the same seed gives the same matrix on every platform.
 *
 * @throws {RangeError} if `n` is not a positive integer of at most 2^14 or `seed` is not a 32-bit
 *   integer.
 */
export function randomOrthogonal(n: number, seed: number): Float64Array {
  if (!Number.isSafeInteger(n) || n < 1 || n > 2 ** 14) {
    throw new RangeError(`randomOrthogonal: n = ${n}: expected an integer in [1, 2^14]`);
  }
  const rng = seededRng(seed, "randomOrthogonal");
  const g = new Float64Array(n * n);
  for (let i = 0; i < g.length; i += 2) {
    // Box–Muller: u1 ∈ (0, 1] keeps the logarithm finite.
    const u1 = 1 - rng.float64();
    const u2 = rng.float64();
    const r = Math.sqrt(-2 * Math.log(u1));
    g[i] = r * Math.cos(2 * Math.PI * u2);
    if (i + 1 < g.length) g[i + 1] = r * Math.sin(2 * Math.PI * u2);
  }
  return orthogonalFactor(g, n);
}

/**
 * The orthogonal factor Q of G = Q·R for an n×n row-major G, normalised as QuaRot's
 * `random_orthogonal_matrix` (`q *= sign(diag(r))`): Householder QR, then Q's columns multiplied by
 * sign(R_kk), so that R = QᵀG has a positive diagonal. `g` is not modified. A zero R_kk (G singular)
 * keeps its column's sign where torch would zero the column.
 *
 * @throws {RangeError} if `g.length ≠ n·n`.
 */
export function orthogonalFactor(g: Float64Array, n: number): Float64Array {
  checkShape(g, n, n, "orthogonalFactor", "n", "n");
  const t = new Float64Array(n * n); // t[j*n + i] = G[i][j]: column j of G, contiguous
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) t[j * n + i] = g[i * n + j]!;
  const v = new Float64Array(n * n); // reflector k in v[k*n + k .. k*n + n)
  const beta = new Float64Array(n); // H_k = I − beta_k·v_k·v_kᵀ (0: no reflection)
  const rSign = new Float64Array(n);
  for (let k = 0; k < n; k++) {
    const col = k * n;
    let norm2 = 0;
    for (let i = k; i < n; i++) norm2 += t[col + i]! * t[col + i]!;
    const norm = Math.sqrt(norm2);
    if (norm === 0) {
      rSign[k] = 1;
      continue;
    }
    const x0 = t[col + k]!;
    const alpha = x0 >= 0 ? -norm : norm; // H_k·x = alpha·e_k, so R_kk = alpha
    rSign[k] = alpha > 0 ? 1 : -1;
    let vnorm2 = 0;
    for (let i = k; i < n; i++) {
      const vi = i === k ? x0 - alpha : t[col + i]!;
      v[col + i] = vi;
      vnorm2 += vi * vi;
    }
    const b = 2 / vnorm2;
    beta[k] = b;
    for (let j = k + 1; j < n; j++) reflect(t, j * n, v, col, k, n, b);
  }
  // Q = H_0·H_1·…·H_{n−1}, accumulated backwards; qt's row j is Q's column j. H_k leaves the
  // columns j < k of H_{k+1}·…·H_{n−1} (which are e_j) unchanged.
  const qt = new Float64Array(n * n);
  for (let j = 0; j < n; j++) qt[j * n + j] = 1;
  for (let k = n - 1; k >= 0; k--) {
    const b = beta[k]!;
    if (b === 0) continue;
    for (let j = k; j < n; j++) reflect(qt, j * n, v, k * n, k, n, b);
  }
  const q = new Float64Array(n * n);
  for (let j = 0; j < n; j++) {
    const sgn = rSign[j]!;
    for (let i = 0; i < n; i++) q[i * n + j] = sgn * qt[j * n + i]!;
  }
  return q;
}

/** y[k..n) ← y − b·(v·y)·v for the row y at `yo` and the reflector at `vo` (entries k..n). */
function reflect(
  y: Float64Array,
  yo: number,
  v: Float64Array,
  vo: number,
  k: number,
  n: number,
  b: number,
): void {
  let dot = 0;
  for (let i = k; i < n; i++) dot += v[vo + i]! * y[yo + i]!;
  const f = b * dot;
  if (f === 0) return;
  for (let i = k; i < n; i++) y[yo + i] = y[yo + i]! - f * v[vo + i]!;
}

/** A factorisation n = K·m with the shared (cached) table. */
interface Plan {
  readonly n: number;
  readonly k: number;
  readonly m: number;
  readonly table: Float64Array;
}

function planFor(n: number, fn: string): Plan {
  const k = chooseK(n);
  if (k === undefined) {
    throw new RangeError(
      `${fn}: n = ${n}: no Hadamard transform of this size; expected n = K·2^m with K in ` +
        `{${HAD_K_CHOICE_ORDER.join(", ")}} (the first K dividing n must leave a power of two) ` +
        `or n a power of two`,
    );
  }
  return { n, k, m: n / k, table: cachedHadamardTable(k).matrix };
}

function headPlan(headDim: number, fn: string): Plan {
  if (!isPowerOfTwo(headDim)) {
    throw new RangeError(`${fn}: headDim = ${headDim}: expected a power of two`);
  }
  return { n: headDim, k: 1, m: headDim, table: cachedHadamardTable(1).matrix };
}

function checkShape(
  x: FloatArray,
  rows: number,
  cols: number,
  fn: string,
  rowsName: string,
  colsName: string,
): void {
  if (!Number.isSafeInteger(rows) || rows < 0) {
    throw new RangeError(`${fn}: ${rowsName} = ${rows}: expected a non-negative integer`);
  }
  if (x.length !== rows * cols) {
    throw new RangeError(
      `${fn}: array of length ${x.length}, expected ${rowsName}·${colsName} = ${rows}·${cols}`,
    );
  }
}

function seededRng(seed: number, fn: string): SeededRng {
  if (!Number.isInteger(seed) || seed < -(2 ** 31) || seed >= 2 ** 31) {
    throw new RangeError(`${fn}: seed = ${seed}: expected a 32-bit integer`);
  }
  return new SeededRng(seed);
}

/** Columns processed together by {@linkcode transformColumns}. */
const COLUMN_CHUNK = 64;

/** M_n (or M_nᵀ) applied to every column of the n×cols row-major block starting at `base`. */
function transformColumns(
  w: FloatArray,
  base: number,
  n: number,
  cols: number,
  plan: Plan,
  transpose: boolean,
): void {
  const chunk = Math.min(COLUMN_CHUNK, cols);
  const s = new Float64Array(n * chunk);
  const acc = new Float64Array(plan.k > 1 ? n * chunk : 0);
  for (let c0 = 0; c0 < cols; c0 += chunk) {
    transformBlock(w, base + c0, cols, Math.min(chunk, cols - c0), plan, transpose, s, acc);
  }
}

/**
 * M_n (or M_nᵀ) along the item axis of a strided block: item i < n, lane t < width is
 * `data[base + i·stride + t]`; each lane is transformed independently. Computes in float64 in `s`
 * (and `acc` when K > 1, both of at least n·width), then writes back divided by √n.
 */
function transformBlock(
  data: FloatArray,
  base: number,
  stride: number,
  width: number,
  plan: Plan,
  transpose: boolean,
  s: Float64Array,
  acc: Float64Array,
): void {
  const { n, k, m, table } = plan;
  for (let i = 0; i < n; i++) {
    const src = base + i * stride;
    const dst = i * width;
    for (let t = 0; t < width; t++) s[dst + t] = data[src + t]!;
  }
  // Walsh–Hadamard transform of each of the K groups of m consecutive items (the rows of the
  // K × (n/K) view), lanes in step: the items [i, i+h) of a group are contiguous in s.
  const gw = m * width;
  for (let g = 0; g < k; g++) {
    const gb = g * gw;
    for (let h = 1; h < m; h <<= 1) {
      const hw = h * width;
      for (let i = 0; i < m; i += 2 * h) {
        const start = gb + i * width;
        for (let u = start; u < start + hw; u++) {
          const a = s[u]!;
          const b = s[u + hw]!;
          s[u] = a + b;
          s[u + hw] = a - b;
        }
      }
    }
  }
  let y = s;
  if (k > 1) {
    // Group r of the result = Σ_r2 hadK[r][r2] (or hadK[r2][r]) · group r2.
    acc.fill(0, 0, n * width);
    for (let r = 0; r < k; r++) {
      const ob = r * gw;
      for (let r2 = 0; r2 < k; r2++) {
        const ib = r2 * gw;
        if ((transpose ? table[r2 * k + r]! : table[r * k + r2]!) > 0) {
          for (let u = 0; u < gw; u++) acc[ob + u] = acc[ob + u]! + s[ib + u]!;
        } else {
          for (let u = 0; u < gw; u++) acc[ob + u] = acc[ob + u]! - s[ib + u]!;
        }
      }
    }
    y = acc;
  }
  const sqrtN = Math.sqrt(n);
  for (let i = 0; i < n; i++) {
    const dst = base + i * stride;
    const src = i * width;
    for (let t = 0; t < width; t++) data[dst + t] = y[src + t]! / sqrtN;
  }
}
