import { attentionRef, rmsnormRef } from "../ref/mod.ts";
import { applyRope, ropeTable } from "../../models/rope.ts";
import { assertWithin, randomFloats } from "../wasm/test_util.ts";
import { gpuTest, U32 } from "./test_util.ts";

gpuTest("webgpu rmsnorm matches the reference on awkward widths", async (k) => {
  let seed = 1;
  for (const D of [1, 7, 63, 64, 65, 172, 4097]) {
    for (const tokens of [1, 7, 65]) {
      const x = randomFloats(tokens * D, seed++).map((v, i) => i % 5 === 0 ? v * 30 : v);
      const w = randomFloats(D, seed++);
      const want = new Float32Array(tokens * D), got = new Float32Array(tokens * D).fill(NaN);
      rmsnormRef(x, tokens, w, 1e-5, want);
      await k.rmsnorm(x, tokens, w, 1e-5, got);
      // Σx² in float32 is off by ≤ D·u relative, its inverse square root by about half that
      // plus a few roundings; budget (D + 8)·2⁻²⁴ of each output's magnitude.
      const scale = Float64Array.from(want, (v) => Math.abs(v) + 1e-30);
      assertWithin(got, want, scale, (D + 8) * U32, `rmsnorm ${tokens}×${D}`);
    }
  }
  // Hand case: x = [3, 4], eps 0 → rms = √12.5; weights [1, 2].
  const out = new Float32Array(2);
  await k.rmsnorm(new Float32Array([3, 4]), 1, new Float32Array([1, 2]), 0, out);
  const r = Math.sqrt(12.5);
  assertWithin(out, new Float32Array([3 / r, 8 / r]), new Float64Array([1, 1]), 4 * U32, "hand");
});

gpuTest("webgpu RoPE matches models/rope.ts in both pairings, at an offset", async (k) => {
  let seed = 10;
  for (const style of ["half", "interleaved"] as const) {
    for (
      const [T, heads, headDim, start] of [[1, 1, 2, 0], [7, 3, 8, 5], [65, 4, 64, 0], [
        63,
        2,
        128,
        100,
      ]]
    ) {
      const table = ropeTable(headDim!, 10000, start! + T!);
      const v = randomFloats(T! * heads! * headDim!, seed++);
      const want = v.slice();
      applyRope(want, T!, heads!, headDim!, start!, table, style);
      const got = v.slice();
      await k.rope(got, T!, heads!, headDim!, start!, table, style);
      // Each output is x0·cos − x1·sin (or +) in float32: ≤ 3 roundings of terms ≤ |x0| + |x1|.
      const scale = new Float64Array(v.length);
      const half = headDim! / 2;
      for (let i = 0; i < v.length; i++) {
        const d = i % headDim!;
        const partner = style === "half"
          ? (d < half ? i + half : i - half)
          : (d % 2 === 0 ? i + 1 : i - 1);
        scale[i] = Math.abs(v[i]!) + Math.abs(v[partner]!);
      }
      assertWithin(got, want, scale, 4 * U32, `rope ${style} ${T}×${heads}×${headDim} @${start}`);
    }
  }
});

gpuTest("webgpu causal GQA attention (both kernels) matches the reference", async (k) => {
  // Head sizes ≤ 32 run attention_small (a thread per query and head), larger ones attention.
  let seed = 20;
  const shapes = [
    { T: 1, start: 0, nHeads: 1, nKvHeads: 1, headDim: 1 },
    { T: 7, start: 0, nHeads: 4, nKvHeads: 2, headDim: 8 },
    { T: 63, start: 9, nHeads: 8, nKvHeads: 4, headDim: 8 },
    { T: 40, start: 3, nHeads: 4, nKvHeads: 2, headDim: 32 },
    { T: 9, start: 1, nHeads: 2, nKvHeads: 2, headDim: 33 },
    { T: 65, start: 0, nHeads: 2, nKvHeads: 1, headDim: 64 },
    { T: 172, start: 0, nHeads: 3, nKvHeads: 3, headDim: 65 },
    { T: 2, start: 200, nHeads: 4, nKvHeads: 1, headDim: 256 },
  ];
  for (const s of shapes) {
    const qDim = s.nHeads * s.headDim, kvDim = s.nKvHeads * s.headDim, n = s.start + s.T;
    const q = randomFloats(s.T * qDim, seed++).map((x) => x * 3);
    const kk = randomFloats(n * kvDim, seed++);
    const v = randomFloats(n * kvDim, seed++);
    const want = new Float32Array(s.T * qDim), got = new Float32Array(s.T * qDim).fill(NaN);
    attentionRef(q, kk, v, s.T, s.start, s, want);
    await k.attention(q, kk, v, s.T, s.start, s, got);
    // Budget: an output is a convex combination of values |v| ≤ 1. Scores carry a float32 dot
    // product error (headDim·u·|q||k|/√headDim), which perturbs the weights relatively by as much
    // (twice, through the sum); the weighted sum over n keys adds n·u. Budget
    // (2·headDim·max|q| + n + 8)·2⁻²⁴, with max|v| = 1.
    const budget = (2 * s.headDim * 3 + n + 8) * U32;
    assertWithin(
      got,
      want,
      new Float64Array(got.length).fill(1),
      budget,
      `attention ${JSON.stringify(s)}`,
    );
  }
});

gpuTest("webgpu attention rejects a head size beyond its limit and bad shapes", async (k) => {
  const s = { nHeads: 1, nKvHeads: 1, headDim: 258 };
  const a = new Float32Array(258);
  let msg = "";
  try {
    await k.attention(a, a, a, 1, 0, s, new Float32Array(258));
  } catch (e) {
    msg = (e as Error).message;
  }
  if (!msg.includes("MAX_HEAD_DIM 256")) throw new Error(`unexpected: ${msg}`);
  msg = "";
  try {
    await k.attention(a, a, a, 1, 0, { nHeads: 3, nKvHeads: 2, headDim: 2 }, a);
  } catch (e) {
    msg = (e as Error).message;
  }
  if (!msg.includes("do not share 2 KV heads evenly")) throw new Error(`unexpected: ${msg}`);
});
