/**
 * Storage dtypes of weights: the 16-bit float formats checkpoints are stored in, and rounding
 * float32 values to them (round to nearest, ties to even, as `Tensor.to(dtype)`).
 *
 * @module
 */

/** A float storage dtype, by its safetensors name. */
export type StorageDtype = "F32" | "F16" | "BF16";

/** Whether `dtype` (a safetensors dtype name) is a 16-bit float format values are rounded to. */
export function isHalfDtype(dtype: string | undefined): dtype is "F16" | "BF16" {
  return dtype === "F16" || dtype === "BF16";
}

/**
 * Rounds every value of `a` to `dtype` in place (`F32`: unchanged; `F16`: IEEE half, overflow to
 * ±Infinity; `BF16`: the upper 16 bits of float32 after rounding to nearest even, NaN kept NaN).
 * Returns `a`.
 */
export function roundToStorage(a: Float32Array, dtype: StorageDtype): Float32Array {
  if (dtype === "F16") {
    for (let i = 0; i < a.length; i++) a[i] = Math.f16round(a[i]!);
  } else if (dtype === "BF16") {
    const u = new Uint32Array(a.buffer, a.byteOffset, a.length);
    for (let i = 0; i < u.length; i++) {
      const x = u[i]!;
      if ((x & 0x7fffffff) > 0x7f800000) {
        u[i] = (x | 0x00400000) & 0xffff0000; // NaN stays a (quiet) NaN
      } else {
        u[i] = ((x + 0x7fff + ((x >>> 16) & 1)) & 0xffff0000) >>> 0;
      }
    }
  }
  return a;
}
