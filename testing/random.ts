/**
 * Test helper: deterministic pseudo-random floats (xorshift32), independent of the code under
 * test.
 *
 * @module
 */

/** `n` pseudo-random floats uniform in [−a, a] from `seed` (xorshift32). */
export function randomMatrix(n: number, seed: number, a = 1): Float32Array {
  return Float32Array.from(randomValues(n, seed, a));
}

/** The same values as {@linkcode randomMatrix}, unrounded (float64). */
export function random64(n: number, seed: number, a = 1): Float64Array {
  return randomValues(n, seed, a);
}

function randomValues(n: number, seed: number, a: number): Float64Array {
  let s = seed >>> 0 || 1;
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    out[i] = ((s / 2 ** 32) * 2 - 1) * a;
  }
  return out;
}
