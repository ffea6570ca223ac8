import assert from "node:assert/strict";
import { matmulRef, rmsnormRef } from "../ref/mod.ts";
import { wasmKernels } from "./mod.ts";
import { quantizeMatrix } from "../../core/quantizer.ts";
import { PackedMatrix } from "../../models/lazy_matrix.ts";
import { residency } from "../../models/residency.ts";
import { absProducts, assertWithin, randomFloats } from "./test_util.ts";

/** Error budget of f32 matmul against the float64-accumulating reference, relative to Σ|x·w|. */
const MATMUL_REL = 1e-5;

const kernels = await wasmKernels();
/** Both builds: plain SIMD128 and (where the engine runs it) relaxed-SIMD FMA. */
const variants = [kernels, await wasmKernels({ fma: true })];

function check(tokens: number, rows: number, cols: number, seed: number): void {
  const x = randomFloats(tokens * cols, seed);
  const w = { rows, cols, data: randomFloats(rows * cols, seed + 1) };
  const want = new Float32Array(tokens * rows);
  matmulRef(x, tokens, w, want);
  const scale = absProducts(x, tokens, w.data, rows, cols);
  for (const k of variants) {
    const got = new Float32Array(tokens * rows).fill(NaN);
    k.matmul(x, tokens, w, got);
    assertWithin(got, want, scale, MATMUL_REL, `${k.id} matmul ${tokens}×${rows}×${cols}`);
  }
}

Deno.test("wasm matmul matches the reference on awkward shapes (GEMV and GEMM paths)", () => {
  const sizes = [1, 7, 63, 64, 65, 172];
  let seed = 1;
  for (const tokens of [1, 2, 5, 8, 65]) {
    for (const rows of sizes) {
      for (const cols of sizes) check(tokens, rows, cols, seed++);
    }
  }
});

Deno.test("wasm matmul handles long rows (K = 4097, several K blocks) and many tokens", () => {
  check(1, 9, 4097, 100);
  check(3, 17, 4097, 101);
  check(130, 33, 300, 102);
  check(300, 21, 70, 103); // several row blocks of A (at most 128 or 132 rows each)
});

Deno.test("wasm matmul reuses the cached weight copy and notices in-place changes", () => {
  const rows = 13, cols = 29, tokens = 3;
  const w = { rows, cols, data: randomFloats(rows * cols, 7) };
  const x = randomFloats(tokens * cols, 8);
  const a = new Float32Array(tokens * rows);
  const b = new Float32Array(tokens * rows);
  kernels.matmul(x, tokens, w, a);
  kernels.matmul(x, tokens, w, b);
  assert.deepEqual(b, a);
  // Overwrite every value in place (as a quantizer would): the copy must be refreshed.
  w.data.set(randomFloats(rows * cols, 9));
  kernels.matmul(x, tokens, w, b);
  const want = new Float32Array(tokens * rows);
  matmulRef(x, tokens, w, want);
  assertWithin(b, want, absProducts(x, tokens, w.data, rows, cols), MATMUL_REL, "after change");
});

Deno.test("wasm matmul rejects shape mismatches with both shapes in the message", () => {
  const w = { rows: 4, cols: 6, data: new Float32Array(24) };
  assert.throws(
    () => kernels.matmul(new Float32Array(11), 2, w, new Float32Array(8)),
    (e: unknown) => e instanceof RangeError && /^matmul: .*2×6.*weight 4×6/.test(e.message),
  );
  assert.throws(
    () => kernels.matmul(new Float32Array(12), 2, w, new Float32Array(7)),
    /matmul: .*out 7 for 2×4/,
  );
  assert.throws(
    () =>
      kernels.matmul(
        new Float32Array(12),
        2,
        { rows: 4, cols: 6, data: new Float32Array(23) },
        new Float32Array(8),
      ),
    /weight 4×6 holds 23/,
  );
});

Deno.test("wasm rmsnorm matches the reference within 1e-6 relative", () => {
  let seed = 500;
  for (const d of [1, 7, 63, 64, 65, 172, 4097]) {
    for (const tokens of [1, 3]) {
      const x = randomFloats(tokens * d, seed++);
      const weight = randomFloats(d, seed++);
      const want = new Float32Array(tokens * d);
      rmsnormRef(x, tokens, weight, 1e-5, want);
      const scale = Float64Array.from(want, (v) => Math.abs(v));
      for (const k of variants) {
        const got = new Float32Array(tokens * d).fill(NaN);
        k.rmsnorm(x, tokens, weight, 1e-5, got);
        assertWithin(got, want, scale, 1e-6, `${k.id} rmsnorm ${tokens}×${d}`);
      }
    }
  }
  assert.throws(
    () => kernels.rmsnorm(new Float32Array(5), 2, new Float32Array(3), 1e-5, new Float32Array(6)),
    /rmsnorm: x holds 5 .* need 2×3/,
  );
});

Deno.test("wasm kernel methods work detached from their object, like the reference's", () => {
  const { matmul, rmsnorm } = kernels;
  const w = { rows: 3, cols: 5, data: randomFloats(15, 1) };
  const x = randomFloats(10, 2);
  const got = new Float32Array(6);
  const want = new Float32Array(6);
  matmul(x, 2, w, got);
  matmulRef(x, 2, w, want);
  assertWithin(got, want, absProducts(x, 2, w.data, 3, 5), MATMUL_REL, "detached matmul");
  const n = new Float32Array(10);
  rmsnorm(x, 2, randomFloats(5, 3), 1e-5, n);
  assert.ok(n.every(Number.isFinite) && n.some((v) => v !== 0));
});

Deno.test("a lazy weight's panels are copied without making its float32 values resident", () => {
  const rows = 24, cols = 40, tokens = 5;
  const q = quantizeMatrix(randomFloats(rows * cols, 7), rows, cols, {
    bits: 4,
    granularity: "channel",
    symmetric: false,
  });
  const w = new PackedMatrix(q.packed);
  const x = randomFloats(tokens * cols, 8);
  residency.clear();
  const got = new Float32Array(tokens * rows);
  kernels.matmul(x, tokens, w, got);
  assert.equal(residency.peek(w), undefined, "the kernel read the values once, uncached");
  assert.equal(residency.used, 0);
  const want = new Float32Array(tokens * rows);
  kernels.matmul(x, tokens, { rows, cols, data: q.dequantized }, want);
  assert.deepEqual(got, want);
  // The panels stay valid for the matrix's life: a second call copies nothing new.
  kernels.matmul(x, tokens, w, got);
  assert.deepEqual(got, want);
});
