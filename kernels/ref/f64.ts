/**
 * The reference float64 products ({@linkcode F64Kernels}): plain loops in the order every backend
 * reproduces bit for bit.
 *
 * @module
 */

import { type F64Kernels, GEMM_F64_KC, type GemmSubArgs } from "../types.ts";

/**
 * Checks that every sub-matrix of a {@linkcode F64Kernels.gemmSub} call lies inside its array;
 * throws a `RangeError` naming the operand otherwise.
 */
export function validateGemmSub(...args: GemmSubArgs): void {
  const [m, n, k, a, aOff, lda, b, bOff, ldb, transB, c, cOff, ldc] = args;
  const dims = [m, n, k, aOff, lda, bOff, ldb, cOff, ldc];
  if (!dims.every((d) => Number.isInteger(d) && d >= 0)) {
    throw new RangeError(`gemmSub: sizes, offsets and strides must be integers ≥ 0, got ${dims}`);
  }
  if (m === 0 || n === 0 || k === 0) return;
  const span = (rows: number, cols: number, off: number, ld: number, len: number, what: string) => {
    if (cols > ld || off + (rows - 1) * ld + cols > len) {
      throw new RangeError(
        `gemmSub: ${what} ${rows}×${cols} at offset ${off}, stride ${ld}, exceeds its ${len} values`,
      );
    }
  };
  span(m, k, aOff, lda, a.length, "A");
  if (transB) span(n, k, bOff, ldb, b.length, "Bᵀ");
  else span(k, n, bOff, ldb, b.length, "B");
  span(m, n, cOff, ldc, c.length, "C");
}

/** {@linkcode F64Kernels.gemmSub} in plain loops. */
export function gemmSubRef(...args: GemmSubArgs): void {
  const [m, n, k, a, aOff, lda, b, bOff, ldb, transB, c, cOff, ldc] = args;
  validateGemmSub(...args);
  if (m === 0 || n === 0 || k === 0) return;
  const acc = new Float64Array(n);
  const bt = transB ? new Float64Array(Math.min(k, GEMM_F64_KC) * n) : b;
  for (let pc = 0; pc < k; pc += GEMM_F64_KC) {
    const kc = Math.min(GEMM_F64_KC, k - pc);
    // B′ rows pc … pc+kc−1, contiguous over j.
    let bo = bOff + pc * ldb;
    let ld = ldb;
    if (transB) {
      for (let kk = 0; kk < kc; kk++) {
        for (let j = 0; j < n; j++) bt[kk * n + j] = b[bOff + j * ldb + pc + kk]!;
      }
      bo = 0;
      ld = n;
    }
    for (let i = 0; i < m; i++) {
      acc.fill(0);
      const ar = aOff + i * lda + pc;
      for (let kk = 0; kk < kc; kk++) {
        const x = a[ar + kk]!;
        const br = bo + kk * ld;
        for (let j = 0; j < n; j++) acc[j] = acc[j]! + x * bt[br + j]!;
      }
      const cr = cOff + i * ldc;
      for (let j = 0; j < n; j++) c[cr + j] = c[cr + j]! - acc[j]!;
    }
  }
}

/** The reference {@linkcode F64Kernels}: plain `Float64Array`s and {@linkcode gemmSubRef}. */
export const refF64: F64Kernels = {
  id: "js-ref",
  alloc: (lengths) => lengths.map((n) => new Float64Array(n)),
  release: () => {},
  gemmSub: gemmSubRef,
};
