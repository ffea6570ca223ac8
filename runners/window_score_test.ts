import assert from "node:assert/strict";
import { refKernels } from "../kernels/ref/mod.ts";
import type { Kernels } from "../kernels/types.ts";
import { wasmKernels } from "../kernels/wasm/mod.ts";
import { forward, type ForwardModel } from "./forward.ts";
import { randomDecoder, smallConfig } from "../testing/random_model.ts";
import {
  CHUNK_BYTES,
  chunkRows,
  scoreWindow,
  scoreWindowChunked,
  windowHidden,
  windowLogProbs,
} from "./window_score.ts";

const config = smallConfig({ vocabSize: 301, maxSeqLen: 64 });
const model: ForwardModel = { config, weights: randomDecoder(config, 1) };
const other: ForwardModel = { config, weights: randomDecoder(config, 2) };
const window = (T: number) => Array.from({ length: T }, (_, i) => (i * 37 + 5) % 301);
const wasm = await wasmKernels();
Deno.test.afterAll(() => wasm.close?.());

/** KL(p ‖ q) and argmax agreement of one row, from logits, in float64 with no shared code. */
function naiveRow(p: Float32Array, q: Float32Array): { kl: number; agree: boolean } {
  const lse = (x: Float32Array) => {
    const m = Math.max(...x);
    return m + Math.log(x.reduce((s, v) => s + Math.exp(v - m), 0));
  };
  const lp = lse(p), lq = lse(q);
  let kl = 0;
  for (let i = 0; i < p.length; i++) kl += Math.exp(p[i]! - lp) * ((p[i]! - lp) - (q[i]! - lq));
  const argmax = (x: Float32Array) => x.indexOf(Math.max(...x));
  return { kl, agree: argmax(p) === argmax(q) };
}

for (const [name, kernels] of [["js-ref", refKernels], ["wasm-simd", wasm]] as const) {
  Deno.test(`${name}: chunked scoring equals whole-window scoring bit for bit`, () => {
    // Lengths around the chunk (12 rows): one row, a tail of one row (merged), exact multiples.
    for (const T of [2, 3, 12, 13, 14, 24, 25, 37, 64]) {
      const w = window(T);
      const whole = scoreWindow(
        windowLogProbs(model, w, kernels),
        windowLogProbs(other, w, kernels),
        w,
        config.vocabSize,
      );
      const ref = { model: other, hidden: windowHidden(other, w, kernels) };
      for (const rows of [12, 24, chunkRows(config.vocabSize)]) {
        const chunked = scoreWindowChunked(
          model,
          windowHidden(model, w, kernels),
          w,
          kernels,
          ref,
          rows,
        );
        assert.deepEqual(chunked, whole, `T=${T}, ${rows} rows per chunk`);
      }
      const self = scoreWindowChunked(
        model,
        windowHidden(model, w, kernels),
        w,
        kernels,
        undefined,
        12,
      );
      assert.deepEqual(
        self,
        scoreWindow(windowLogProbs(model, w, kernels), undefined, w, config.vocabSize),
      );
    }
  });
}

Deno.test("chunked scoring: NLL, KL and top-1 agree with a naive float64 computation from logits", () => {
  const w = window(29);
  const p = forward(other, w), q = forward(model, w);
  const V = config.vocabSize;
  let nll = 0, kl = 0, agree = 0;
  for (let t = 0; t < w.length - 1; t++) {
    const row = q.subarray(t * V, (t + 1) * V);
    const m = Math.max(...row);
    const lse = m + Math.log(row.reduce((s, v) => s + Math.exp(v - m), 0));
    nll += lse - row[w[t + 1]!]!;
    const r = naiveRow(p.subarray(t * V, (t + 1) * V), row);
    kl += r.kl;
    if (r.agree) agree++;
  }
  const s = scoreWindowChunked(
    model,
    windowHidden(model, w, refKernels),
    w,
    refKernels,
    { model: other, hidden: windowHidden(other, w, refKernels) },
    12,
  );
  assert.equal(s.scored, 28);
  assert.ok(Math.abs(s.sumNll - nll) <= 1e-4 * nll, `${s.sumNll} vs ${nll}`);
  assert.ok(Math.abs(s.sumKl - kl) <= 1e-4 * kl + 1e-6, `${s.sumKl} vs ${kl}`);
  assert.ok(kl > 0.1, "two random models disagree");
  assert.equal(s.agree, agree);
});

Deno.test("chunked scoring never asks for more than one chunk of rows (plus a merged tail)", () => {
  let most = 0, calls = 0;
  const spy: Kernels = {
    ...refKernels,
    headLogProbs: (_m, _x, rows) => {
      most = Math.max(most, rows);
      calls++;
      return undefined; // the generic head computes them
    },
  };
  const w = window(61);
  scoreWindowChunked(model, windowHidden(model, w, spy), w, spy, {
    model: other,
    hidden: windowHidden(other, w, spy),
  }, 12);
  assert.equal(most, 13, "chunks of 12 rows, the last one taking the single row left");
  assert.equal(calls, 2 * 5, "five chunks, model and reference");
});

Deno.test("chunkRows: whole GEMM row tiles, within CHUNK_BYTES for real vocabularies", () => {
  for (const vocab of [512, 32000, 49152, 128256, 151936, 256000]) {
    const rows = chunkRows(vocab);
    assert.equal(rows % 12, 0);
    assert.ok(rows >= 12);
    assert.ok(rows * vocab * 4 <= CHUNK_BYTES, `${vocab}: ${rows} rows`);
  }
  assert.equal(chunkRows(2 ** 22), 12, "at least one tile of rows, whatever the vocabulary");
});
