/**
 * Small statistics helpers: means and standard errors, accumulated in float64.
 *
 * @module
 */

/** Running mean and variance (Welford), for standard errors over independent units. */
export class RunningStats {
  #n = 0;
  #mean = 0;
  #m2 = 0;

  /** Adds one observation. */
  push(x: number): void {
    this.#n++;
    const d = x - this.#mean;
    this.#mean += d / this.#n;
    this.#m2 += d * (x - this.#mean);
  }

  /** Number of observations. */
  get n(): number {
    return this.#n;
  }

  /** Arithmetic mean (NaN when empty). */
  get mean(): number {
    return this.#n === 0 ? NaN : this.#mean;
  }

  /** Sample standard deviation (n − 1 denominator; NaN below two observations). */
  get std(): number {
    return this.#n < 2 ? NaN : Math.sqrt(this.#m2 / (this.#n - 1));
  }

  /** Standard error of the mean, `std / √n` (as lm-evaluation-harness `mean_stderr`). */
  get stderr(): number {
    return this.std / Math.sqrt(this.#n);
  }
}

/** The middle value of `xs` (the upper one of an even count); `xs` is not modified. */
export function median(xs: readonly number[]): number {
  if (xs.length === 0) throw new RangeError("median of no values");
  return [...xs].sort((a, b) => a - b)[xs.length >> 1]!;
}
