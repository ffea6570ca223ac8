/**
 * ±1 Hadamard matrices (H·Hᵀ = K·I): the natural-order Sylvester matrices and the small orders K
 * that QuaRot combines with them (`get_hadK` in spcl/QuaRot `fake_quant/hadamard_utils.py`).
 *
 * QuaRot ships every K×K table as a literal transcribed from Sloane's library. Any Hadamard matrix
 * of the right order keeps a rotated model's function unchanged (only the rotation differs), so
 * here the orders with a simple construction are generated, and each table carries an id to record:
 *
 * | K | construction | id |
 * |---|---|---|
 * | 1 | [1] | `identity-1` |
 * | 12, 20, 60, 108, 140 | Paley I, q = K − 1 (prime, q ≡ 3 mod 4) | `paley1-11`, … |
 * | 28, 36 | Paley II, q = K/2 − 1 (prime, q ≡ 1 mod 4) | `paley2-13`, `paley2-17` |
 * | 40 | H₂ ⊗ (K = 20 table) (Sylvester doubling) | `sylvester2-paley1-19` |
 * | 52, 156, 172 | Williamson array of four stored circulants | `sloane-had.52.will`, … |
 *
 * Paley I is built in the orientation of QuaRot's `get_had12`/`get_had20` (first row +1 then −1s,
 * first column all +1), which it reproduces entry for entry, and QuaRot's `get_had40` is H₂ ⊗ its
 * `get_had20` (checked on rows 0, 1 and 20), so K ∈ {12, 20, 40} are QuaRot's own tables. QuaRot's
 * tables for 28, 36, 60, 108 and 140 (by its comment Sloane's had.36.pal2, had.60.pal,
 * had.108.pal, had.140.pal) were not compared; ours are other valid matrices of those orders.
 *
 * 52, 156 and 172 have no construction this simple (Williamson orders m = 13, 39, 43). Their data
 * are Sloane's had.52.will, had.156.will and had.172.will (N. J. A. Sloane, "A Library of Hadamard
 * Matrices", http://neilsloane.com/hadamard/), as transcribed in spcl/QuaRot
 * `fake_quant/hadamard_utils.py` (`get_had52`, `get_had156`, `get_had172`; stored version at commit
 * 12e33badbadf8a40d671fa7d85afa2dbb6a335d4), from which they were read. Each of those tables is the
 * Williamson array
 *
 *     [ A  B  C  D]
 *     [−B  A −D  C]
 *     [−C  D  A −B]
 *     [−D −C  B  A]
 *
 * of four symmetric circulant m×m blocks (row r of a block is its first row rotated right by r), so
 * only the four first rows are stored, as `+`/`-` strings (the first row of the table, split in four).
 * The array regenerated the transcribed rows checked (12–14 rows of each table, in every block row);
 * the full QuaRot literals were not compared entry by entry, but H·Hᵀ = K·I is tested.
 *
 * @module
 */

/** A ±1 Hadamard matrix of order `order` (H·Hᵀ = order·I) and the id that names it. */
export interface HadamardTable {
  /** The order K. */
  readonly order: number;
  /** Id to record with results, e.g. `paley1-59` or `sloane-had.172.will`. */
  readonly id: string;
  /** K×K entries ±1, row-major. */
  readonly matrix: Float64Array;
}

/** The orders {@linkcode hadamardTable} provides, ascending. */
export const HADAMARD_TABLE_ORDERS: readonly number[] = [
  1,
  12,
  20,
  28,
  36,
  40,
  52,
  60,
  108,
  140,
  156,
  172,
];

/** True when `n` is a positive integer power of two (1 included), as QuaRot's `is_pow2`. */
export function isPowerOfTwo(n: number): boolean {
  if (!Number.isSafeInteger(n) || n < 1) return false;
  return n <= 0x40000000 ? (n & (n - 1)) === 0 : Number.isInteger(Math.log2(n));
}

/**
 * The natural-order Sylvester (Walsh–Hadamard) matrix of order `n`, row-major:
 * H[i][j] = (−1)^popcount(i & j). It is symmetric; the fast transform `fast_hadamard_transform`
 * (and `fwhtInPlace` in `hadamard.ts`) multiplies by it.
 *
 * @throws {RangeError} if `n` is not a power of two, or above 2^14 (the dense matrix is n²).
 */
export function sylvester(n: number): Float64Array {
  if (!isPowerOfTwo(n) || n > 2 ** 14) {
    throw new RangeError(`sylvester: n = ${n}: expected a power of two of at most 2^14`);
  }
  const h = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) h[i * n + j] = popcount(i & j) & 1 ? -1 : 1;
  }
  return h;
}

/**
 * The ±1 table of order `k` (see the module documentation for the construction of each order), as
 * a fresh copy.
 *
 * @throws {RangeError} if `k` is not one of {@linkcode HADAMARD_TABLE_ORDERS}.
 */
export function hadamardTable(k: number): HadamardTable {
  const t = cachedHadamardTable(k);
  return { order: t.order, id: t.id, matrix: t.matrix.slice() };
}

/**
 * The cached table of order `k`, shared: callers must not modify `matrix`. Used by the transforms
 * in `hadamard.ts`, which would otherwise copy a table per call.
 *
 * @throws {RangeError} if `k` is not one of {@linkcode HADAMARD_TABLE_ORDERS}.
 */
export function cachedHadamardTable(k: number): HadamardTable {
  let t = cache.get(k);
  if (t === undefined) {
    t = buildTable(k);
    cache.set(k, t);
  }
  return t;
}

const cache = new Map<number, HadamardTable>();

function buildTable(k: number): HadamardTable {
  switch (k) {
    case 1:
      return { order: 1, id: "identity-1", matrix: Float64Array.of(1) };
    case 12:
    case 20:
    case 60:
    case 108:
    case 140:
      return { order: k, id: `paley1-${k - 1}`, matrix: paleyI(k - 1) };
    case 28:
    case 36:
      return { order: k, id: `paley2-${k / 2 - 1}`, matrix: paleyII(k / 2 - 1) };
    case 40: {
      const h20 = cachedHadamardTable(20);
      return { order: 40, id: `sylvester2-${h20.id}`, matrix: doubled(h20.matrix, 20) };
    }
    case 52:
    case 156:
    case 172: {
      const w = WILLIAMSON[k]!;
      return { order: k, id: w.id, matrix: williamson(w.blocks) };
    }
  }
  throw new RangeError(
    `hadamardTable: K = ${k}: expected one of ${HADAMARD_TABLE_ORDERS.join(", ")}`,
  );
}

/** Legendre symbol χ(a) mod the odd prime q: 0, +1 (quadratic residue) or −1. */
function legendre(a: number, q: number): number {
  const r = ((a % q) + q) % q;
  if (r === 0) return 0;
  // Euler's criterion a^((q−1)/2) mod q; q < 2^12 here, so products stay exact.
  let e = (q - 1) / 2;
  let base = r;
  let acc = 1;
  while (e > 0) {
    if (e & 1) acc = (acc * base) % q;
    base = (base * base) % q;
    e >>= 1;
  }
  return acc === 1 ? 1 : -1;
}

function isOddPrime(q: number): boolean {
  if (!Number.isInteger(q) || q < 3 || q % 2 === 0) return false;
  for (let d = 3; d * d <= q; d += 2) if (q % d === 0) return false;
  return true;
}

/**
 * Paley I, order q + 1 for a prime q ≡ 3 (mod 4): H[0][0] = 1, H[0][j] = −1, H[i][0] = 1 and
 * H[i][j] = δ_ij + χ(i − j) for i, j ≥ 1 (the transpose of I + [[0, 1ᵀ], [−1, Q]] with the
 * Jacobsthal matrix Q_ij = χ(j − i); the orientation of QuaRot's had12/had20).
 */
function paleyI(q: number): Float64Array {
  if (!isOddPrime(q) || q % 4 !== 3) {
    throw new RangeError(`paleyI: q = ${q}: expected a prime q ≡ 3 (mod 4)`);
  }
  const n = q + 1;
  const h = new Float64Array(n * n);
  h[0] = 1;
  for (let j = 1; j < n; j++) h[j] = -1;
  for (let i = 1; i < n; i++) {
    h[i * n] = 1;
    for (let j = 1; j < n; j++) h[i * n + j] = (i === j ? 1 : 0) + legendre(i - j, q);
  }
  return h;
}

/**
 * Paley II, order 2(q + 1) for a prime q ≡ 1 (mod 4): the symmetric conference matrix
 * C = [[0, 1ᵀ], [1, Q]] (Q_ij = χ(j − i)) with each 0 replaced by [[1, −1], [−1, −1]] and each ±1
 * by ±[[1, 1], [1, −1]].
 */
function paleyII(q: number): Float64Array {
  if (!isOddPrime(q) || q % 4 !== 1) {
    throw new RangeError(`paleyII: q = ${q}: expected a prime q ≡ 1 (mod 4)`);
  }
  const c = q + 1;
  const n = 2 * c;
  const h = new Float64Array(n * n);
  for (let i = 0; i < c; i++) {
    for (let j = 0; j < c; j++) {
      const v = i === 0 ? (j === 0 ? 0 : 1) : j === 0 ? 1 : legendre(j - i, q);
      const block = v === 0 ? [1, -1, -1, -1] : [v, v, v, -v];
      const o = 2 * i * n + 2 * j;
      h[o] = block[0]!;
      h[o + 1] = block[1]!;
      h[o + n] = block[2]!;
      h[o + n + 1] = block[3]!;
    }
  }
  return h;
}

/** [[H, H], [H, −H]] = H₂ ⊗ H for a K×K table H. */
function doubled(h: Float64Array, k: number): Float64Array {
  const n = 2 * k;
  const out = new Float64Array(n * n);
  for (let i = 0; i < k; i++) {
    for (let j = 0; j < k; j++) {
      const v = h[i * k + j]!;
      out[i * n + j] = v;
      out[i * n + k + j] = v;
      out[(k + i) * n + j] = v;
      out[(k + i) * n + k + j] = -v;
    }
  }
  return out;
}

/** Block (row, column) of the Williamson array: which of A, B, C, D and its sign. */
const WILLIAMSON_ARRAY: readonly (readonly (readonly [number, number])[])[] = [
  [[0, 1], [1, 1], [2, 1], [3, 1]],
  [[1, -1], [0, 1], [3, -1], [2, 1]],
  [[2, -1], [3, 1], [0, 1], [1, -1]],
  [[3, -1], [2, -1], [1, 1], [0, 1]],
];

/** The Williamson array of four circulants given by their first rows (`+`/`-` strings). */
function williamson(blocks: readonly string[]): Float64Array {
  const m = blocks[0]!.length;
  const rows = blocks.map((s) => Array.from(s, (ch) => (ch === "+" ? 1 : -1)));
  const n = 4 * m;
  const h = new Float64Array(n * n);
  for (let br = 0; br < 4; br++) {
    for (let bc = 0; bc < 4; bc++) {
      const [which, sign] = WILLIAMSON_ARRAY[br]![bc]!;
      const first = rows[which]!;
      for (let r = 0; r < m; r++) {
        const o = (br * m + r) * n + bc * m;
        for (let j = 0; j < m; j++) h[o + j] = sign * first[(j - r + m) % m]!;
      }
    }
  }
  return h;
}

/**
 * First rows of the circulants A, B, C, D of Sloane's Williamson tables (read from QuaRot's
 * transcription; see the module documentation). Row 0 of each table is A‖B‖C‖D.
 */
const WILLIAMSON: Readonly<Record<number, { id: string; blocks: readonly string[] }>> = {
  52: {
    id: "sloane-had.52.will",
    blocks: ["+-+--++++--+-", "+---++++++---", "++-+--++--+-+", "+----+--+----"],
  },
  156: {
    id: "sloane-had.156.will",
    blocks: [
      "+++--+-+-----+--++----++--+-----+-+--++",
      "++++---+--++----+-+--+-+----++--+---+++",
      "+++--++-+---+-+--+----+--+-+---+-++--++",
      "+---++-+-+-----+++-++-+++-----+-+-++---",
    ],
  },
  172: {
    id: "sloane-had.172.will",
    blocks: [
      "+---++--++++-+-+++-++--++-+++-+-++++--++---",
      "++-++++++----+-+--++-++-++--+-+----++++++-+",
      "+++-+-++--+-+-++++-+----+-++++-+-+--++-+-++",
      "++---++++-+--+--++--------++--+--+-++++---+",
    ],
  },
};

function popcount(v: number): number {
  let c = 0;
  while (v) {
    v &= v - 1;
    c++;
  }
  return c;
}
