import assert from "node:assert/strict";
import { refKernels } from "../kernels/ref/mod.ts";
import { randomDecoder, smallConfig } from "../testing/random_model.ts";
import { EvalPool } from "./eval_pool.ts";
import type { EncodedPair } from "./loglikelihood.ts";
import { ModelRunner } from "./model_runner.ts";

Deno.test("ModelRunner: one pool serves log-likelihoods and windows of several models, as this thread does", async () => {
  const config = smallConfig({ vocabSize: 53, maxSeqLen: 32 });
  const a = { config, weights: randomDecoder(config, 1) };
  const b = { config, weights: randomDecoder(config, 2) };
  const docs: EncodedPair[][] = [
    [{ context: [5, 6, 7], continuation: [8] }, { context: [5, 6, 7], continuation: [9, 10] }],
    [{ context: [11], continuation: [12, 13, 14] }],
    [{ context: [1, 2, 3, 4], continuation: [20] }, { context: [1, 2, 3, 4], continuation: [21] }],
  ];
  const windows = [[1, 4, 9, 16, 25, 36, 49, 3], [1, 2, 3, 5, 8, 13, 21, 34]];
  const here = new ModelRunner(refKernels);
  const pool = new EvalPool(2, 2 ** 20, refKernels.id);
  try {
    const there = new ModelRunner(refKernels, { pool });
    const reference = () => ({
      model: a,
      cache: new Map<string, Float32Array>(),
      cacheBudgetBytes: 2 ** 20,
    });
    const keyOf = (w: number) => `w${w}`;
    // A's log-likelihoods, then B's windows against A, then B's and A's log-likelihoods again:
    // every switch of the pool's model must drop the workers' key/value caches.
    assert.deepEqual(await there.loglikelihood(a, 1, docs), await here.loglikelihood(a, 1, docs));
    const wt = await there.scoreWindows(b, windows, { reference: reference(), keyOf });
    const wh = await here.scoreWindows(b, windows, { reference: reference(), keyOf });
    assert.deepEqual(wt.scores, wh.scores);
    assert.equal(wt.compared, true);
    assert.equal(wt.windowsOn, "js-ref: op by op on 2 worker threads");
    assert.deepEqual(await there.loglikelihood(b, 1, docs), await here.loglikelihood(b, 1, docs));
    assert.deepEqual(await there.loglikelihood(a, 1, docs), await here.loglikelihood(a, 1, docs));
    assert.notDeepEqual(await here.loglikelihood(a, 1, docs), await here.loglikelihood(b, 1, docs));
  } finally {
    pool.close();
  }
});

Deno.test("ModelRunner: a pool computing with other kernels is not used for log-likelihoods", async () => {
  const config = smallConfig({ vocabSize: 53, maxSeqLen: 32 });
  const a = { config, weights: randomDecoder(config, 1) };
  const pool = new EvalPool(2, 2 ** 20, "wasm-simd");
  try {
    // The pool's workers would compute with wasm-simd; these kernels are the reference's.
    const runner = new ModelRunner(refKernels, { pool });
    let used = false;
    const original = pool.loglikelihood.bind(pool);
    pool.loglikelihood = (...args) => (used = true, original(...args));
    await runner.loglikelihood(a, 1, [[{ context: [2], continuation: [3] }]]);
    assert.equal(used, false);
  } finally {
    pool.close();
  }
});

Deno.test("ModelRunner records where windows ran: the path the kernels took for the model", async () => {
  const { wasmKernels } = await import("../kernels/wasm/mod.ts");
  const config = smallConfig({ vocabSize: 53, maxSeqLen: 32 });
  const model = { config, weights: randomDecoder(config, 3) };
  const window = [1, 2, 3, 4, 5, 6];
  const keyOf = (w: number) => `w${w}`;
  const ref = await new ModelRunner(refKernels).scoreWindows(model, [window], { keyOf });
  assert.equal(ref.windowsOn, "js-ref: op by op");
  const k = await wasmKernels();
  try {
    const whole = await new ModelRunner(k).scoreWindows(model, [window], { keyOf });
    assert.equal(whole.windowsOn, "wasm-simd: whole window");
    // A feature forward.c lacks (attention score soft-capping): refused by name, op by op.
    const capped = { config: { ...config, attnSoftcap: 50 }, weights: model.weights };
    const op = await new ModelRunner(k).scoreWindows(capped, [window], { keyOf });
    assert.match(op.windowsOn, /^wasm-simd: op by op \(.*attnSoftcap/);
  } finally {
    k.close?.();
  }
});
