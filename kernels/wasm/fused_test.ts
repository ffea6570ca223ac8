import assert from "node:assert/strict";
import { dequantizePacked, type PackedWeight, quantizeMatrix } from "../../core/quantizer.ts";
import { matmulPackedRef, matmulRef } from "../ref/mod.ts";
import { fusedLayout } from "./fused_layout.ts";
import { wasmKernels } from "./mod.ts";
import { assertWithin, randomFloats } from "./test_util.ts";

/**
 * Error budget of the fused dequant-matmul against the float64 reference. The kernel rounds each
 * token's activations to int16 per segment of ≤ 256 columns (step max|x_seg| / 32767, so an error
 * of at most max|x_t| / 65534 < 2^−15 · max|x_t| per value) and then computes exactly in integers
 * and float32. Budget per output: Σ_c (FUSED_REL · |x_c| + 2^−15 · max|x_t|) · |s_g(c)| · 2^bits,
 * which bounds both the float32 rounding (the kernel sums x·q and x·z separately) and the
 * activation rounding (|q − z| < 2^bits).
 */
const FUSED_REL = 1e-5;

const kernels = await wasmKernels();
/** Both builds: plain SIMD128 and (where the engine runs it) relaxed-SIMD FMA. */
const variants = [kernels, await wasmKernels({ fma: true })];

/** The budget above, per output (already multiplied by its factors; checked with rel 1). */
function fusedScale(x: Float32Array, tokens: number, p: PackedWeight): Float64Array {
  const bound = new Float64Array(tokens * p.rows);
  for (let t = 0; t < tokens; t++) {
    let max = 0;
    for (let c = 0; c < p.cols; c++) max = Math.max(max, Math.abs(x[t * p.cols + c]!));
    for (let o = 0; o < p.rows; o++) {
      let a = 0;
      for (let c = 0; c < p.cols; c++) {
        const g = p.groupIndex ? p.groupIndex[c]! : Math.floor(c / p.groupSize);
        const s = Math.abs(p.scales[o * p.groupsPerRow + g]!) * 2 ** p.bits;
        a += (FUSED_REL * Math.abs(x[t * p.cols + c]!) + 2 ** -15 * max) * s;
      }
      bound[t * p.rows + o] = a;
    }
  }
  return bound;
}

function check(p: PackedWeight, tokens: number, seed: number): void {
  const x = randomFloats(tokens * p.cols, seed);
  const want = new Float32Array(tokens * p.rows);
  matmulPackedRef(x, tokens, p, want);
  const scale = fusedScale(x, tokens, p);
  for (const k of variants) {
    const got = new Float32Array(tokens * p.rows).fill(NaN);
    k.matmulPacked(x, tokens, p, got);
    const what = `${k.id} matmulPacked ${tokens}×${p.rows}×${p.cols} ${p.bits}-bit ` +
      `g${p.groupSize}${p.groupIndex ? " act-order" : ""}`;
    assertWithin(got, want, scale, 1, what);
  }
}

Deno.test("reference fused matmul equals matmul over the dequantized weights", () => {
  const rows = 7, cols = 65, tokens = 3;
  const w = randomFloats(rows * cols, 1);
  const { packed, dequantized } = quantizeMatrix(w, rows, cols, {
    bits: 3,
    granularity: "group",
    groupSize: 16,
    symmetric: false,
  });
  const x = randomFloats(tokens * cols, 2);
  const a = new Float32Array(tokens * rows);
  const b = new Float32Array(tokens * rows);
  matmulPackedRef(x, tokens, packed, a);
  matmulRef(x, tokens, { rows, cols, data: dequantized }, b);
  assert.deepEqual(a, b);
});

Deno.test("wasm fused dequant-matmul matches the reference for every bit-width and group size", () => {
  let seed = 10;
  for (let bits = 2; bits <= 8; bits++) {
    const shapes = [[1, 1], [1, 7], [7, 63], [9, 64], [17, 65], [63, 1], [64, 172], [5, 300]];
    for (const [rows, cols] of shapes) {
      for (const groupSize of [8, 10, 32, 64, 128, 0]) {
        const spec = groupSize === 0
          ? { bits, granularity: "channel" as const, symmetric: seed % 2 === 0 }
          : { bits, granularity: "group" as const, groupSize, symmetric: seed % 2 === 0 };
        const { packed } = quantizeMatrix(randomFloats(rows! * cols!, seed++), rows!, cols!, spec);
        for (const tokens of [1, 3, 9]) check(packed, tokens, seed++);
      }
    }
  }
});

Deno.test("wasm fused dequant-matmul on long rows (K = 4097) and per-tensor scales", () => {
  for (const bits of [2, 3, 4, 8]) {
    const { packed } = quantizeMatrix(randomFloats(9 * 4097, bits), 9, 4097, {
      bits,
      granularity: "group",
      groupSize: 128,
      symmetric: false,
    });
    check(packed, 5, 40 + bits);
  }
  const { packed } = quantizeMatrix(randomFloats(12 * 40, 3), 12, 40, {
    bits: 4,
    granularity: "tensor",
    symmetric: true,
  });
  check(packed, 1, 50);
  // Per-channel rows of 4097: one group cut into many segments, the last one short.
  for (const bits of [3, 4, 5, 8]) {
    const { packed } = quantizeMatrix(randomFloats(7 * 4097, bits + 80), 7, 4097, {
      bits,
      granularity: "channel",
      symmetric: false,
    });
    check(packed, 2, 90 + bits);
  }
});

Deno.test("wasm fused dequant-matmul handles activations of very different magnitudes", () => {
  // One huge value per row of x: the other values of its segment round to coarse int16 steps,
  // which the budget's 2^−15 · max|x| term allows for; zeros and tiny values stay finite.
  const rows = 9, cols = 300;
  const { packed } = quantizeMatrix(randomFloats(rows * cols, 5), rows, cols, {
    bits: 4,
    granularity: "group",
    groupSize: 64,
    symmetric: false,
  });
  const x = randomFloats(2 * cols, 6).map((v, i) => i % 97 === 3 ? v * 1e4 : v * 1e-3);
  x.fill(0, cols, cols + 70);
  const want = new Float32Array(2 * rows);
  matmulPackedRef(x, 2, packed, want);
  const got = new Float32Array(2 * rows);
  kernels.matmulPacked(x, 2, packed, got);
  assertWithin(got, want, fusedScale(x, 2, packed), 1, "mixed magnitudes");
});

Deno.test("wasm fused dequant-matmul follows an act-order groupIndex", () => {
  for (const bits of [2, 3, 4, 8]) {
    const rows = 11, cols = 70, groupSize = 16, groups = Math.ceil(cols / groupSize);
    const { packed } = quantizeMatrix(randomFloats(rows * cols, bits + 60), rows, cols, {
      bits,
      granularity: "group",
      groupSize,
      symmetric: false,
    });
    // A permutation-derived grouping: column c belongs to group (perm(c) / groupSize).
    const groupIndex = new Uint32Array(cols);
    for (let c = 0; c < cols; c++) groupIndex[c] = Math.floor(((c * 37) % cols) / groupSize);
    const scales = randomFloats(rows * groups, bits).map((v) => 0.01 + Math.abs(v));
    const p: PackedWeight = { ...packed, scales, groupIndex };
    // The reference honours groupIndex (checked against dequantizePacked) ...
    const x = randomFloats(cols, 70);
    const a = new Float32Array(rows);
    const b = new Float32Array(rows);
    matmulPackedRef(x, 1, p, a);
    matmulRef(x, 1, { rows, cols, data: dequantizePacked(p) }, b);
    assert.deepEqual(a, b);
    // ... and so does the kernel.
    check(p, 6, 71 + bits);
  }
});

Deno.test("wasm fused dequant-matmul rejects bad shapes naming the op and both shapes", () => {
  const { packed } = quantizeMatrix(randomFloats(4 * 20, 1), 4, 20, {
    bits: 4,
    granularity: "group",
    groupSize: 8,
    symmetric: false,
  });
  const ok = (p: PackedWeight, xLen = 40, outLen = 8) =>
    kernels.matmulPacked(new Float32Array(xLen), 2, p, new Float32Array(outLen));
  ok(packed);
  const both = /matmulPacked: .*\(x 2×20, weight 4×20 \(4-bit, group 8\)\)$/;
  assert.throws(() => ok(packed, 39), both);
  assert.throws(() => ok(packed, 40, 7), both);
  assert.throws(() => ok({ ...packed, words: packed.words.subarray(1) }), /packed words hold 11/);
  assert.throws(() => ok({ ...packed, scales: packed.scales.subarray(1) }), /scales\/zeros/);
  assert.throws(() => ok({ ...packed, wordsPerRow: 2 }), /wordsPerRow 2, expected 3/);
  assert.throws(
    () => ok({ ...packed, groupIndex: new Uint32Array(20).fill(3) }),
    /groupIndex\[0\] = 3/,
  );
  assert.throws(() => ok({ ...packed, bits: 9 }), /bits 9/);
});

Deno.test("fusedLayout() picks the plane count that pads fewer columns", () => {
  const layout = (bits: number, cols: number, groupSize: number) =>
    fusedLayout(
      quantizeMatrix(randomFloats(4 * cols, bits), 4, cols, {
        bits,
        granularity: "group",
        groupSize,
        symmetric: false,
      }).packed,
    );
  // 3 bits, groups of 128: 4 planes (chunks of 32) pad nothing; 5 planes would need 160.
  const a = layout(3, 256, 128);
  assert.deepEqual([a.planes, a.kp, a.segments], [4, 256, 2]);
  // 3 bits, one group of 300 (segments of ≤ 256 columns): 5 planes, 240 + 80 = 320 columns
  // (4 planes would pad to 256 + 64 = 320 too; ties keep the denser packing).
  const b = layout(3, 300, 300);
  assert.deepEqual([b.planes, b.kp, b.segments], [5, 320, 2]);
  // 4 bits: always 4 planes; 8 bits: 2.
  assert.equal(layout(4, 64, 32).planes, 4);
  assert.equal(layout(8, 64, 32).planes, 2);
});
