/**
 * Test helpers for the WASM kernels: a seeded generator and the error budget check.
 *
 * @module
 */

/** Seeded uniform floats in [−1, 1) (mulberry32), reproducible across runs. */
export function randomFloats(n: number, seed: number): Float32Array {
  let a = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    out[i] = (((t ^ (t >>> 14)) >>> 0) / 4294967296) * 2 - 1;
  }
  return out;
}

/**
 * Asserts `|got[i] − want[i]| ≤ rel · scale[i]` for every i, where `scale[i]` is the sum of
 * absolute products behind value i (the standard bound for a float32 dot product); names the
 * first offending index.
 */
export function assertWithin(
  got: Float32Array,
  want: Float32Array,
  scale: Float64Array,
  rel: number,
  what: string,
): void {
  if (got.length !== want.length) {
    throw new Error(`${what}: ${got.length} values, expected ${want.length}`);
  }
  for (let i = 0; i < got.length; i++) {
    const err = Math.abs(got[i]! - want[i]!);
    if (!(err <= rel * scale[i]! + 1e-30)) {
      throw new Error(
        `${what}: value ${i} is ${got[i]}, reference ${want[i]} (error ${err}, budget ${
          rel * scale[i]!
        })`,
      );
    }
  }
}

/** `scale[t][o] = Σ_i |x[t][i]| · |w[o][i]|` for `[out][in]` weights. */
export function absProducts(
  x: Float32Array,
  tokens: number,
  w: Float32Array,
  rows: number,
  cols: number,
): Float64Array {
  const s = new Float64Array(tokens * rows);
  for (let t = 0; t < tokens; t++) {
    for (let o = 0; o < rows; o++) {
      let a = 0;
      for (let i = 0; i < cols; i++) a += Math.abs(x[t * cols + i]! * w[o * cols + i]!);
      s[t * rows + o] = a;
    }
  }
  return s;
}
