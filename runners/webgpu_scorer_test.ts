import assert from "node:assert/strict";
import { refKernels } from "../kernels/ref/mod.ts";
import { rtn } from "../methods/rtn.ts";
import { getTask } from "../tasks/mod.ts";
import type { Metric, TaskResult } from "../tasks/types.ts";
import { scoreWindow, windowLogProbs } from "./window_score.ts";
import { bundledDataDir, needs } from "../testing/fixtures.ts";
import { stories260K } from "../testing/stories.ts";
import { GpuDeviceLostError, requestAdapter } from "../kernels/webgpu/device.ts";
import { GpuWindowScorer } from "./webgpu_scorer.ts";

const dataDir = bundledDataDir();
const get = (r: TaskResult, id: string): Metric => r.metrics.find((m) => m.metric === id)!;
const scorer = (await requestAdapter()) ? await GpuWindowScorer.create() : undefined;
// Released when the module is done (see test_util.ts).
Deno.test.afterAll(() => scorer?.close());
const opts = { ignore: !scorer, sanitizeResources: false, sanitizeOps: false };
const stories = await needs("hf-mirror");
const rel = (a: number, b: number) => Math.abs(a - b) / Math.abs(b);

stories.test({
  name: "stories260K perplexity through WebGPU equals the TS reference to 1e-4 relative",
  ...opts,
  async fn() {
    const model = await stories260K();
    const task = getTask("tinystories");
    const want = await task.run(model, { kernels: refKernels, dataDir, limit: 3 });
    const got = await task.run(model, {
      kernels: refKernels,
      dataDir,
      limit: 3,
      windowScorer: scorer!,
    });
    assert.equal(got.protocol.windowsOn, "webgpu");
    assert.equal(want.protocol.windowsOn, "js-ref: op by op");
    assert.equal(got.protocol.scoredTokens, want.protocol.scoredTokens);
    for (const m of ["ppl", "nll"]) {
      const [a, b] = [get(got, m).value, get(want, m).value];
      assert.ok(rel(a, b) <= 1e-4, `${m}: webgpu ${a}, reference ${b}`);
    }
    assert.equal(get(got, "top1").value, 1);
    assert.equal(get(got, "kl").value, 0);
  },
});

stories.test({
  name: "WebGPU KL and top-1 of a W3 model against the FP model match the TS reference",
  ...opts,
  async fn() {
    const model = await stories260K();
    const q = await rtn.quantize(
      model,
      { wBits: 3, aBits: 16, granularity: "group", groupSize: 16, symmetric: false },
      {},
      { kernels: refKernels },
    );
    const quantized = { ...q, tokenizer: model.tokenizer };
    const task = getTask("tinystories");
    const ref = () => ({ model, cache: new Map(), cacheBudgetBytes: 2 ** 30 });
    const want = await task.run(quantized, {
      kernels: refKernels,
      dataDir,
      limit: 2,
      reference: ref(),
    });
    const got = await task.run(quantized, {
      kernels: refKernels,
      dataDir,
      limit: 2,
      reference: ref(),
      windowScorer: scorer!,
    });
    const [pa, pb] = [get(got, "ppl").value, get(want, "ppl").value];
    assert.ok(rel(pa, pb) <= 1e-4, `ppl: webgpu ${pa}, reference ${pb}`);
    // KL is a mean of small differences of log-probabilities: float32 logits carry ~1e-6
    // absolute error, so the budget is relative 1e-3 of a KL of order 0.1.
    const [ka, kb] = [get(got, "kl").value, get(want, "kl").value];
    assert.ok(kb > 0.01 && rel(ka, kb) <= 1e-3, `kl: webgpu ${ka}, reference ${kb}`);
    // An argmax may flip only at a near-tie: at most one position in a thousand.
    const [ta, tb] = [get(got, "top1").value, get(want, "top1").value];
    assert.ok(Math.abs(ta - tb) <= 1e-3, `top1: webgpu ${ta}, reference ${tb}`);
    // A second run reads the reference's log-probabilities from the device cache: same numbers.
    const again = await task.run(quantized, {
      kernels: refKernels,
      dataDir,
      limit: 2,
      reference: ref(),
      windowScorer: scorer!,
    });
    assert.deepEqual(again.metrics, got.metrics);
  },
});

stories.test({
  name: "GpuWindowScorer scores one short window like scoreWindow over windowLogProbs",
  ...opts,
  async fn() {
    const model = await stories260K();
    const window = [1, ...model.tokenizer.encode("Once upon a time, there was a cat.")];
    const lp = windowLogProbs(model, window, refKernels);
    const want = scoreWindow(lp, undefined, window, model.config.vocabSize);
    // Both GEMM variants (the default one depends on the adapter).
    for (const gemm of ["tiled", "blocked"] as const) {
      const s = await GpuWindowScorer.create({ device: scorer!.device, gemm });
      const got = await s.score(model, window);
      assert.equal(got.scored, want.scored);
      assert.ok(rel(got.sumNll, want.sumNll) <= 1e-5, `${gemm}: ${got.sumNll} vs ${want.sumNll}`);
      assert.ok(rel(got.sumSqNll, want.sumSqNll) <= 1e-5);
    }
    await assert.rejects(scorer!.score(model, [1, 99999]), /token id 99999 at 1 is outside/);
    const moe = {
      ...model,
      config: {
        ...model.config,
        moe: { nExperts: 2, topK: 1, normTopK: true, expertHiddenDim: 8, denseLayers: [] },
      },
    };
    assert.match(scorer!.unsupported(moe)!, /Mixture-of-Experts/);
    const biased = { ...model, config: { ...model.config, qkvBias: true } };
    assert.match(scorer!.unsupported(biased)!, /qkvBias/);
  },
});

stories.test({
  name: "perplexity on a WebGPU device lost mid-run fails with the reason instead of hanging",
  ...opts,
  async fn() {
    const model = await stories260K();
    const lost = await GpuWindowScorer.create();
    let windows = 0;
    const run = getTask("tinystories").run(model, {
      kernels: refKernels,
      dataDir,
      limit: 4,
      windowScorer: lost,
      onProgress: (done) => {
        windows = done;
        // Lose the device after the first window.
        if (done === 1) lost.device.device.destroy();
      },
    });
    await assert.rejects(run, GpuDeviceLostError);
    assert.equal(windows, 1);
    // Later work rejects at once.
    await assert.rejects(lost.score(model, [1, 2, 3]), /^GpuDeviceLostError: WebGPU device lost/);
  },
});

stories.test({
  name: "GpuWindowScorer keeps reference log-probabilities per reference model",
  ...opts,
  async fn() {
    // Two different "reference" models scored under the same cache key must not share outputs.
    const model = await stories260K();
    const window = [1, ...model.tokenizer.encode("The dog ran to the park.")];
    const scaled = {
      ...model,
      weights: { ...model.weights, norm: model.weights.norm.map((v) => v * 2) },
    };
    const a = await scorer!.score(model, window, { model, cacheKey: "k" });
    const b = await scorer!.score(model, window, { model: scaled, cacheKey: "k" });
    assert.ok(Math.abs(a.sumKl) < 1e-4, `self KL ${a.sumKl}`);
    assert.ok(b.sumKl > 0.01, `KL against another model ${b.sumKl}`);
  },
});
