import assert from "node:assert/strict";
import { refKernels } from "../kernels/ref/mod.ts";
import { randomMatrix } from "../testing/random.ts";
import { applyClip, searchClip, subsampleTokens } from "./awq_clip.ts";

const kernels = refKernels;

Deno.test("clip tokens: every max(1, ⌊n/keep⌋)-th token of the windows taken as one stream", () => {
  // Windows of 3 and 4 tokens (1 column): n = 7, keep 2 → step 3 → tokens 0, 3, 6.
  const xs = [Float32Array.from([0, 1, 2]), Float32Array.from([3, 4, 5, 6])];
  const r = subsampleTokens(xs, 1, 2);
  assert.equal(r.step, 3);
  assert.deepEqual([...r.x], [0, 3, 6]);
  // Fewer tokens than asked: all of them (llm-awq's ⌊n/512⌋ would be 0 there).
  assert.deepEqual([...subsampleTokens(xs, 1, 512).x], [0, 1, 2, 3, 4, 5, 6]);
  // Two columns.
  const two = subsampleTokens([Float32Array.from([1, 2, 3, 4, 5, 6])], 2, 1);
  assert.deepEqual([...two.x], [1, 2]);
  assert.equal(two.step, 3);
});

Deno.test("clip i = 0 is the max-abs range: weights the quantizer represents exactly stay unclipped and unchanged", () => {
  // Rows already on the 4-bit grid of their own min-max range: i = 0 has zero error and no
  // shrink can be strictly better.
  const rows = 3, cols = 16, T = 64;
  const w = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    for (let j = 0; j < cols; j++) w[r * cols + j] = (((j * 7 + r) % 16) - 5) * 0.25 * (r + 1);
  }
  const x = randomMatrix(T * cols, 3);
  const spec = { bits: 4, granularity: "group" as const, groupSize: 16, symmetric: false };
  const res = searchClip({ rows, cols, data: w }, x, T, spec, kernels);
  assert.deepEqual([...res.shrink], [0, 0, 0]);
  for (let r = 0; r < rows; r++) {
    let m = 0;
    for (let j = 0; j < cols; j++) m = Math.max(m, Math.abs(w[r * cols + j]!));
    assert.equal(res.maxVal[r], m);
  }
  assert.deepEqual(applyClip({ rows, cols, data: w }, res).data, w);
});

Deno.test("clip: one outlier column with zero input picks the largest shrink (i = 9 of 20 × 0.5)", () => {
  // The outlier (±10) never reaches the output, so clipping it only buys resolution for the
  // other columns: 63–127 values evenly spread over [−1, 1], each read alone by one token.
  for (const bits of [3, 4, 8]) {
    for (const cols of [64, 128]) {
      const rows = 2;
      const w = new Float32Array(rows * cols);
      for (let r = 0; r < rows; r++) {
        let k = 0;
        for (let j = 0; j < cols; j++) {
          w[r * cols + j] = j === 3 ? (r ? -10 : 10) : -1 + (2 * k++) / (cols - 2);
        }
      }
      const T = cols - 1;
      const x = new Float32Array(T * cols);
      let t = 0;
      for (let j = 0; j < cols; j++) if (j !== 3) x[(t++) * cols + j] = 1;
      const spec = { bits, granularity: "channel" as const, symmetric: false };
      const res = searchClip({ rows, cols, data: w }, x, T, spec, kernels);
      assert.deepEqual([...res.shrink], [9, 9], `W${bits}, ${cols} columns`);
      assert.deepEqual([...res.maxVal], [Math.fround(10 * 0.55), Math.fround(10 * 0.55)]);
      const c = applyClip({ rows, cols, data: w }, res);
      assert.equal(c.data[3], Math.fround(5.5));
      assert.equal(c.data[cols + 3], -Math.fround(5.5));
      assert.equal(c.data[4], w[4]);
    }
  }
});

Deno.test("clip groups are searched independently per (row, group)", () => {
  // Group 0 holds an outlier with zero input; group 1 is on its grid: only group 0 clips.
  const cols = 128, g = 64;
  const w = new Float32Array(cols);
  let k = 0;
  for (let j = 0; j < g; j++) w[j] = j === 3 ? 10 : -1 + (2 * k++) / (g - 2);
  for (let j = g; j < cols; j++) w[j] = ((j % 16) - 5) * 0.25;
  const T = cols;
  const x = new Float32Array(T * cols);
  for (let t = 0; t < T; t++) if (t !== 3) x[t * cols + t] = 1;
  const spec = { bits: 4, granularity: "group" as const, groupSize: g, symmetric: false };
  const res = searchClip({ rows: 1, cols, data: w }, x, T, spec, kernels);
  assert.deepEqual([...res.shrink], [9, 0]);
});
