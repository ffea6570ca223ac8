/**
 * Test helper: gradients by central finite differences, independent of the code under test.
 *
 * @module
 */

/** A writable numeric buffer. */
export type Buf = Float32Array | Float64Array;

/**
 * `(f(p + ε e_i) − f(p − ε e_i)) / 2ε` for each index `i` of `indices`, restoring `p[i]` after.
 */
export function numericGrad(
  f: () => number,
  p: Buf,
  indices: readonly number[],
  eps: number,
): number[] {
  return indices.map((i) => {
    const orig = p[i]!;
    p[i] = orig + eps;
    const up = f();
    p[i] = orig - eps;
    const down = f();
    p[i] = orig;
    return (up - down) / (2 * eps);
  });
}

/** Directional derivative `(f(p + εd) − f(p − εd)) / 2ε`, restoring `p` after. */
export function directionalGrad(f: () => number, p: Buf, d: Buf, eps: number): number {
  const orig = Float64Array.from(p);
  for (let i = 0; i < p.length; i++) p[i] = orig[i]! + eps * d[i]!;
  const up = f();
  for (let i = 0; i < p.length; i++) p[i] = orig[i]! - eps * d[i]!;
  const down = f();
  for (let i = 0; i < p.length; i++) p[i] = orig[i]!;
  return (up - down) / (2 * eps);
}

/** `Σ a_i b_i` in float64. */
export function dot(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i]! * b[i]!;
  return s;
}

/** Asserts `|a − b| ≤ atol + rtol · max(|a|, |b|)` elementwise, naming the first mismatch. */
export function assertClose(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  rtol: number,
  atol: number,
  what: string,
): void {
  if (actual.length !== expected.length) {
    throw new Error(`${what}: length ${actual.length} vs ${expected.length}`);
  }
  for (let i = 0; i < actual.length; i++) {
    const a = actual[i]!, b = expected[i]!;
    if (!(Math.abs(a - b) <= atol + rtol * Math.max(Math.abs(a), Math.abs(b)))) {
      throw new Error(`${what}: index ${i}: got ${a}, expected ${b}`);
    }
  }
}
