import assert from "node:assert/strict";
import { attentionRef, type AttentionShape } from "../ref/mod.ts";
import { wasmKernels } from "./mod.ts";
import { assertWithin, randomFloats } from "./test_util.ts";

/** Error budget: float32 scores, sums and a polynomial exp against float64, relative to max|v|. */
const ATTENTION_REL = 1e-5;

const variants = [await wasmKernels(), await wasmKernels({ fma: true })];

function check(shape: AttentionShape, T: number, start: number, seed: number): void {
  const qDim = shape.nHeads * shape.headDim, kvDim = shape.nKvHeads * shape.headDim;
  // Scaled keys give peaked (large-logit) and flat softmaxes across seeds.
  const q = randomFloats(T * qDim, seed).map((x) => x * (1 + (seed % 4)));
  const k = randomFloats((start + T + 3) * kvDim, seed + 1).map((x) => x * 2);
  const v = randomFloats((start + T + 3) * kvDim, seed + 2);
  const want = new Float32Array(T * qDim);
  attentionRef(q, k, v, T, start, shape, want);
  let vmax = 0;
  for (const x of v) vmax = Math.max(vmax, Math.abs(x));
  const scale = new Float64Array(want.length).fill(vmax);
  for (const kern of variants) {
    const got = new Float32Array(T * qDim).fill(NaN);
    kern.attention(q, k, v, T, start, shape, got);
    const what = `${kern.id} attention T ${T} start ${start} ` +
      `${shape.nHeads}/${shape.nKvHeads}×${shape.headDim}`;
    assertWithin(got, want, scale, ATTENTION_REL, what);
  }
}

Deno.test("wasm attention matches the reference (prefill and decode, GQA, odd head sizes)", () => {
  let seed = 1;
  for (
    const shape of [
      { nHeads: 8, nKvHeads: 4, headDim: 8 },
      { nHeads: 4, nKvHeads: 4, headDim: 7 },
      { nHeads: 2, nKvHeads: 1, headDim: 64 },
      { nHeads: 3, nKvHeads: 3, headDim: 65 },
    ]
  ) {
    for (const [T, start] of [[1, 0], [7, 0], [1, 63], [65, 0], [5, 172]]) {
      check(shape, T!, start!, seed++);
    }
  }
});

Deno.test("wasm attention softmax survives extreme logits without NaN", () => {
  const shape = { nHeads: 1, nKvHeads: 1, headDim: 4 };
  const q = new Float32Array([100, 0, 0, 0]);
  const k = new Float32Array([100, 0, 0, 0, -100, 0, 0, 0, 0, 0, 0, 0]);
  const v = new Float32Array([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
  const want = new Float32Array(4);
  attentionRef(q, k, v, 1, 2, shape, want);
  for (const kern of variants) {
    const got = new Float32Array(4);
    kern.attention(q, k, v, 1, 2, shape, got);
    assert.deepEqual([...got], [...want]);
  }
});

Deno.test("wasm attention rejects bad shapes naming the op and the shapes", () => {
  const [kern] = variants;
  const shape = { nHeads: 4, nKvHeads: 2, headDim: 8 };
  const buf = (n: number) => new Float32Array(n);
  assert.throws(
    () => kern!.attention(buf(63), buf(48), buf(48), 2, 1, shape, buf(64)),
    /attention: q holds 63 values \(q 2×4×8, k\/v 3×2×8\)/,
  );
  assert.throws(
    () => kern!.attention(buf(64), buf(47), buf(48), 2, 1, shape, buf(64)),
    /attention: k holds 47/,
  );
  assert.throws(
    () => kern!.attention(buf(64), buf(48), buf(48), 2, 1, { ...shape, nKvHeads: 3 }, buf(64)),
    /do not share 3 KV heads/,
  );
});
