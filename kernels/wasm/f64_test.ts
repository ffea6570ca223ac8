import assert from "node:assert/strict";
import { gemmSubRef } from "../ref/f64.ts";
import { GEMM_F64_KC } from "../types.ts";
import { wasmKernels } from "./mod.ts";
import { randomFloats } from "./test_util.ts";

/** Seeded float64 values in [−1, 1) with full 53-bit mantissas. */
function randomDoubles(n: number, seed: number): Float64Array {
  const hi = randomFloats(n, seed);
  const lo = randomFloats(n, seed + 7919);
  return Float64Array.from(hi, (h, i) => h + lo[i]! * 2 ** -24);
}

/** `C −= A·B′` as textbook triple loops with one running sum per entry (another order). */
function naive(
  m: number,
  n: number,
  k: number,
  a: Float64Array,
  lda: number,
  b: Float64Array,
  ldb: number,
  tb: boolean,
  c: Float64Array,
  ldc: number,
): void {
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let t = 0; t < k; t++) s += a[i * lda + t]! * (tb ? b[j * ldb + t]! : b[t * ldb + j]!);
      c[i * ldc + j] = c[i * ldc + j]! - s;
    }
  }
}

Deno.test("gemmSubRef: a hand-computed product, B plain and transposed", () => {
  // A = [[1, 2], [3, 4]], B = [[5, 6], [7, 8]]: A·B = [[19, 22], [43, 50]]; A·Bᵀ = [[17, 23],
  // [39, 53]]. C starts at 100.
  const a = new Float64Array([1, 2, 3, 4]), b = new Float64Array([5, 6, 7, 8]);
  const c = new Float64Array(4).fill(100);
  gemmSubRef(2, 2, 2, a, 0, 2, b, 0, 2, false, c, 0, 2);
  assert.deepEqual([...c], [81, 78, 57, 50]);
  c.fill(100);
  gemmSubRef(2, 2, 2, a, 0, 2, b, 0, 2, true, c, 0, 2);
  assert.deepEqual([...c], [83, 77, 61, 47]);
  assert.throws(
    () => gemmSubRef(2, 2, 2, a, 1, 2, b, 0, 2, false, c, 0, 2),
    /gemmSub: A 2×2 at offset 1, stride 2, exceeds its 4 values/,
  );
});

Deno.test("gemm_f64 equals the reference bit for bit, on one thread and split over threads", async () => {
  const kernels = [await wasmKernels(), await wasmKernels({ threads: 2, minSplit: 1 })];
  try {
    let seed = 11;
    const shapes = [
      [1, 1, 1],
      [3, 5, 7],
      [4, 4, 4],
      [9, 13, 129],
      [37, 390, 64],
      [66, 389, 2 * GEMM_F64_KC + 3],
    ];
    for (const kern of kernels) {
      const f = kern.f64;
      for (const [m, n, k] of shapes as [number, number, number][]) {
        for (const tb of [false, true]) {
          // Strided sub-matrices at offsets, inside arrays from alloc.
          const lda = k + 3, ldb = (tb ? k : n) + 2, ldc = n + 5;
          const bRows = tb ? n : k;
          const [a, b, c] = f.alloc([2 + m * lda, 1 + bRows * ldb, 4 + m * ldc]);
          a!.set(randomDoubles(a!.length, seed++));
          b!.set(randomDoubles(b!.length, seed++));
          c!.set(randomDoubles(c!.length, seed++));
          const want = Float64Array.from(c!);
          gemmSubRef(m, n, k, a!, 2, lda, b!, 1, ldb, tb, want, 4, ldc);
          const indep = Float64Array.from(c!);
          naive(
            m,
            n,
            k,
            a!.subarray(2),
            lda,
            b!.subarray(1),
            ldb,
            tb,
            indep.subarray(4),
            ldc,
          );
          f.gemmSub(m, n, k, a!, 2, lda, b!, 1, ldb, tb, c!, 4, ldc);
          const what = `${f.id} ${m}×${n}×${k}${tb ? " Bᵀ" : ""}`;
          for (let i = 0; i < c!.length; i++) {
            if (!Object.is(c![i], want[i])) {
              throw new Error(`${what}: value ${i} is ${c![i]}, the reference gives ${want[i]}`);
            }
            // The reference is the product (another summation order agrees to rounding).
            assert.ok(Math.abs(want[i]! - indep[i]!) <= 1e-13 * (k + 1), what);
          }
          f.release([a!, b!, c!]);
        }
      }
    }
  } finally {
    for (const k of kernels) k.close();
  }
});

Deno.test("gemm_f64 on arrays outside WASM memory computes the reference's values", async () => {
  const k = await wasmKernels();
  const a = randomDoubles(6, 1), b = randomDoubles(6, 2), c = randomDoubles(4, 3);
  const want = Float64Array.from(c);
  gemmSubRef(2, 2, 3, a, 0, 3, b, 0, 2, false, want, 0, 2);
  k.f64.gemmSub(2, 2, 3, a, 0, 3, b, 0, 2, false, c, 0, 2);
  assert.deepEqual([...c], [...want]);
});

Deno.test("f64 alloc that does not fit frees what it took and throws", async () => {
  const k = await wasmKernels();
  const [first] = k.f64.alloc([1000]);
  const at = first!.byteOffset;
  k.f64.release([first!]);
  // 2^29 doubles are 4 GiB: more than a WASM memory can hold.
  assert.throws(() => k.f64.alloc([1000, 2 ** 29]), RangeError);
  const [again] = k.f64.alloc([1000]);
  assert.equal(again!.byteOffset, at, "the first block of the failed call was returned");
  k.f64.release([again!]);
});
