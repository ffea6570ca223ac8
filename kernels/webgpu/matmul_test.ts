import { dequantizePacked, type PackedWeight, quantizeMatrix } from "../../core/quantizer.ts";
import { matmulPackedRef, matmulRef } from "../ref/mod.ts";
import { absProducts, assertWithin, randomFloats } from "../wasm/test_util.ts";
import { gemmVariants, gpuTest, U32 } from "./test_util.ts";
import type { GpuKernels } from "./kernels.ts";
import { GEMV_MAX_TOKENS } from "./ops.ts";

/**
 * Error budget of a float32 dot product of length K against the float64 reference rounded to
 * float32, for any summation order (tiles, trees, fma): |Δ| ≤ (K + 2) · 2⁻²⁴ · Σ|x·w|.
 */
const budget = (K: number) => (K + 2) * U32;

const SIZES = [1, 7, 63, 64, 65, 172];

gpuTest(
  "webgpu matmul (tiled and blocked GEMM, GEMV) matches the reference on awkward sizes",
  async () => {
    let seed = 1;
    for (const tokens of [1, 2, 5, 7, 64, 65, 130]) {
      for (const rows of SIZES) {
        for (const cols of [1, 7, 63, 64, 65, 172]) {
          if (tokens * rows * cols > 600_000) continue;
          const x = randomFloats(tokens * cols, seed++);
          const w = { rows, cols, data: randomFloats(rows * cols, seed++) };
          const want = new Float32Array(tokens * rows);
          matmulRef(x, tokens, w, want);
          const scale = absProducts(x, tokens, w.data, rows, cols);
          for (const v of gemmVariants) {
            const got = new Float32Array(tokens * rows).fill(NaN);
            await v.matmul(x, tokens, w, got);
            assertWithin(
              got,
              want,
              scale,
              budget(cols),
              `matmul ${v.ops.gemm} ${tokens}×${rows}×${cols}`,
            );
          }
        }
      }
    }
  },
);

gpuTest("webgpu matmul on long rows (K = 4097) and a hand-computed case", async (k) => {
  const x = randomFloats(9 * 4097, 3), w = { rows: 5, cols: 4097, data: randomFloats(5 * 4097, 4) };
  const want = new Float32Array(45), got = new Float32Array(45);
  matmulRef(x, 9, w, want);
  for (const v of gemmVariants) {
    await v.matmul(x, 9, w, got);
    const what = `matmul ${v.ops.gemm} K=4097`;
    assertWithin(got, want, absProducts(x, 9, w.data, 5, 4097), budget(4097), what);
  }
  // [1 2; 3 4] · [[1 0], [1 1], [2 −1]]ᵀ = [[1 3 0], [3 7 2]].
  const out = new Float32Array(6);
  await k.matmul(new Float32Array([1, 2, 3, 4]), 2, {
    rows: 3,
    cols: 2,
    data: new Float32Array([1, 0, 1, 1, 2, -1]),
  }, out);
  if (out.join() !== "1,3,0,3,7,2") throw new Error(`hand case: ${out.join()}`);
});

/** Checks `p` on both GEMM variants (`_k` is the shared kernel set, unused). */
function checkPacked(p: PackedWeight, tokens: number, seed: number) {
  return async (_k: unknown, k?: GpuKernels) => {
    const x = randomFloats(tokens * p.cols, seed);
    const want = new Float32Array(tokens * p.rows);
    matmulPackedRef(x, tokens, p, want);
    // The kernel decodes each weight to the same float32 as the reference (scale · integer, one
    // rounding), so the only error is the float32 dot product's.
    const scale = absProducts(x, tokens, dequantizePacked(p), p.rows, p.cols);
    // Up to GEMV_MAX_TOKENS tokens, both variants run the same GEMV.
    const variants = tokens <= GEMV_MAX_TOKENS ? gemmVariants.slice(0, 1) : gemmVariants;
    for (const v of k ? [k] : variants) {
      const got = new Float32Array(tokens * p.rows).fill(NaN);
      await v.matmulPacked(x, tokens, p, got);
      const what = `matmulPacked ${v.ops.gemm} ${tokens}×${p.rows}×${p.cols} ${p.bits}-bit ` +
        `g${p.groupSize}${p.groupIndex ? " act-order" : ""}`;
      assertWithin(got, want, scale, budget(p.cols), what);
    }
  };
}

gpuTest(
  "webgpu fused dequant-matmul matches the reference for every bit-width and group size",
  async (k) => {
    let seed = 100;
    for (const bits of [2, 3, 4, 8]) {
      for (const [rows, cols] of [[1, 1], [7, 63], [64, 64], [65, 172], [172, 65]]) {
        for (const groupSize of [8, 10, 32, 64, 128, 0]) {
          const spec = groupSize === 0
            ? { bits, granularity: "channel" as const, symmetric: seed % 2 === 0 }
            : { bits, granularity: "group" as const, groupSize, symmetric: seed % 2 === 0 };
          const { packed } = quantizeMatrix(
            randomFloats(rows! * cols!, seed++),
            rows!,
            cols!,
            spec,
          );
          for (const tokens of [1, 65]) await checkPacked(packed, tokens, seed++)(k);
        }
      }
    }
  },
);

gpuTest(
  "webgpu fused dequant-matmul follows an act-order groupIndex and per-tensor scales",
  async (k) => {
    for (const bits of [2, 3, 4, 8]) {
      const rows = 9, cols = 70, groupSize = 16;
      const { packed } = quantizeMatrix(randomFloats(rows * cols, bits), rows, cols, {
        bits,
        granularity: "group",
        groupSize,
        symmetric: false,
      });
      // A permutation of columns into groups, as GPTQ act-order produces.
      const groupIndex = new Uint32Array(cols).map((_, c) => (c * 7) % packed.groupsPerRow);
      await checkPacked({ ...packed, groupIndex }, 5, 200 + bits)(k);
      await checkPacked({ ...packed, groupIndex }, 1, 300 + bits)(k);
    }
    const { packed } = quantizeMatrix(randomFloats(12 * 40, 3), 12, 40, {
      bits: 4,
      granularity: "tensor",
      symmetric: true,
    });
    await checkPacked(packed, 66, 50)(k);
    // The bit-widths between 4 and 8 share the code path; one shape each.
    for (const bits of [5, 6, 7]) {
      const { packed } = quantizeMatrix(randomFloats(65 * 172, bits), 65, 172, {
        bits,
        granularity: "group",
        groupSize: 32,
        symmetric: false,
      });
      await checkPacked(packed, 7, 60 + bits)(k);
    }
  },
);

gpuTest("webgpu fused dequant-matmul rejects a packed buffer of the wrong length", async (k) => {
  const { packed } = quantizeMatrix(randomFloats(4 * 16, 1), 4, 16, {
    bits: 4,
    granularity: "channel",
    symmetric: false,
  });
  const bad = { ...packed, words: packed.words.subarray(1) };
  let msg = "";
  try {
    await k.matmulPacked(new Float32Array(16), 1, bad, new Float32Array(4));
  } catch (e) {
    msg = (e as Error).message;
  }
  if (!/^matmulPacked: packed words hold 7 values, expected 4×2/.test(msg)) {
    throw new Error(`unexpected error: ${msg}`);
  }
});
