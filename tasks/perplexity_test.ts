import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { makeWindows } from "./perplexity.ts";
import { logSoftmaxRows } from "../runners/window_score.ts";
import { getTask } from "./mod.ts";
import { refKernels } from "../kernels/ref/mod.ts";
import { rtn } from "../methods/rtn.ts";
import { bundledDataDir, needs, sharedPath } from "../testing/fixtures.ts";
import { stories260K } from "../testing/stories.ts";
import type { Metric, ReferenceModel, TaskResult } from "./types.ts";
import { kernelsById } from "../runners/backend.ts";
import { EvalPool } from "../runners/eval_pool.ts";

const stories = await needs("hf-mirror");
const storiesWikitext = await needs("hf-mirror", "data/text/wikitext2/wiki.test.raw");

const dataDir = bundledDataDir();
const get = (r: TaskResult, id: string): Metric => r.metrics.find((m) => m.metric === id)!;

Deno.test("makeWindows() prepends BOS to non-overlapping (context − 1)-token slices, drops the rest", () => {
  const stream = [10, 11, 12, 13, 14, 15, 16];
  assert.deepEqual(makeWindows(stream, 4, 1), [[1, 10, 11, 12], [1, 13, 14, 15]]);
  assert.deepEqual(makeWindows(stream, 4, 1, 1), [[1, 10, 11, 12]]);
  assert.deepEqual(makeWindows([5, 6], 4, 1), []);
  assert.throws(() => makeWindows(stream, 1, 1), RangeError);
});

Deno.test("logSoftmaxRows(): each row's probabilities sum to 1 and keep the logits' order", () => {
  const x = new Float32Array([1, 2, 3, -1000, 0, 1000]);
  logSoftmaxRows(x, 3);
  for (const r of [0, 1]) {
    const s = Math.exp(x[3 * r]!) + Math.exp(x[3 * r + 1]!) + Math.exp(x[3 * r + 2]!);
    assert.ok(Math.abs(s - 1) < 1e-6);
  }
  assert.ok(x[0]! < x[1]! && x[1]! < x[2]!);
  assert.ok(Math.abs(x[2]! - (3 - Math.log(Math.exp(1) + Math.exp(2) + Math.exp(3)))) < 1e-6);
});

stories.test("FP32 perplexity of stories260K on the whole TinyStories file is 5.32 ± 0.01", async () => {
  // Independent measurement (issue #2): mean NLL 1.672 nats/token over 393K tokens, PPL 5.32.
  const model = await stories260K();
  const r = await getTask("tinystories").run(model, { kernels: refKernels, dataDir });
  const ppl = get(r, "ppl");
  assert.ok(Math.abs(ppl.value - 5.32) <= 0.01, `ppl ${ppl.value}`);
  assert.ok(Math.abs(get(r, "nll").value - 1.672) <= 0.002, `nll ${get(r, "nll").value}`);
  // 393,018 tokens → ⌊393018 / 511⌋ = 769 windows, 769 × 511 = 392,959 scored tokens.
  assert.equal(r.protocol.streamTokens, 393018);
  assert.equal(r.protocol.windows, 769);
  assert.equal(r.protocol.scoredTokens, 392959);
  assert.equal(ppl.n, 769);
  // Tokens inside a window are positively correlated, so the stderr over windows exceeds the naive
  // per-token one; both are small against the mean.
  const nll = get(r, "nll");
  assert.ok(nll.stderr! > (r.protocol.tokenStderrNll as number), `${nll.stderr} vs token-level`);
  assert.ok(nll.stderr! < 0.02 && ppl.stderr! < 0.1);
  assert.equal(
    r.dataset.bytes,
    (await Deno.stat(`${bundledDataDir()}/text/tinystories/tinystories_val_head.txt`)).size,
  );
});

stories.test("KL of a model against itself is 0 and top-1 agreement is 1", async () => {
  const model = await stories260K();
  // Another weights object with the same matrices: compared, not recognised as the model's own.
  const copy = { ...model, weights: { ...model.weights } };
  const reference: ReferenceModel = { model: copy, cache: new Map(), cacheBudgetBytes: 2 ** 30 };
  const r = await getTask("tinystories").run(model, {
    kernels: refKernels,
    dataDir,
    limit: 2,
    reference,
  });
  assert.ok(Math.abs(get(r, "kl").value) < 1e-6, `kl ${get(r, "kl").value}`);
  assert.equal(get(r, "top1").value, 1);
});

stories.test("the full-precision cell fills the reference cache; later cells score against it", async () => {
  const model = await stories260K();
  const task = getTask("tinystories");
  const reference: ReferenceModel = { model, cache: new Map(), cacheBudgetBytes: 2 ** 30 };
  const alone = await task.run(model, { kernels: refKernels, dataDir, limit: 3 });
  const own = await task.run(model, { kernels: refKernels, dataDir, limit: 3, reference });
  assert.deepEqual(own, alone, "a reference with the model's own weights changes nothing");
  assert.equal(reference.cache.size, 3, "one entry per window");
  const q = await rtn.quantize(
    model,
    { wBits: 3, aBits: 16, granularity: "channel", symmetric: false },
    {},
    { kernels: refKernels },
  );
  const quantized = { ...q, tokenizer: model.tokenizer };
  const cached = await task.run(quantized, { kernels: refKernels, dataDir, limit: 3, reference });
  const fresh = await task.run(quantized, {
    kernels: refKernels,
    dataDir,
    limit: 3,
    reference: { model, cache: new Map(), cacheBudgetBytes: 0 },
  });
  assert.deepEqual(cached, fresh, "cached hidden states give the recomputed numbers");
  assert.ok(get(cached, "kl").value > 1e-4, `kl ${get(cached, "kl").value}`);
});

stories.test("RTN degrades monotonically from W8 to W2: KL and perplexity rise as bits fall", async () => {
  const model = await stories260K();
  const reference: ReferenceModel = { model, cache: new Map(), cacheBudgetBytes: 2 ** 30 };
  const task = getTask("tinystories");
  const fp = await task.run(model, { kernels: refKernels, dataDir, limit: 8 });
  const results: { bits: number; kl: number; ppl: number; top1: number }[] = [];
  for (const bits of [8, 6, 5, 4, 3, 2]) {
    const q = await rtn.quantize(
      model,
      { wBits: bits, aBits: 16, granularity: "channel", symmetric: false },
      {},
      {
        kernels: refKernels,
      },
    );
    const r = await task.run({ ...q, tokenizer: model.tokenizer }, {
      kernels: refKernels,
      dataDir,
      limit: 8,
      reference,
    });
    results.push({
      bits,
      kl: get(r, "kl").value,
      ppl: get(r, "ppl").value,
      top1: get(r, "top1").value,
    });
  }
  const fpPpl = get(fp, "ppl").value;
  assert.ok(
    Math.abs(results[0]!.ppl / fpPpl - 1) < 0.01,
    `W8 ppl ${results[0]!.ppl} vs FP ${fpPpl}`,
  );
  for (let i = 1; i < results.length; i++) {
    const [hi, lo] = [results[i - 1]!, results[i]!];
    assert.ok(lo.kl > hi.kl, `KL W${lo.bits} ${lo.kl} ≤ W${hi.bits} ${hi.kl}`);
    assert.ok(lo.top1 < hi.top1, `top-1 W${lo.bits} ${lo.top1} ≥ W${hi.bits} ${hi.top1}`);
  }
  // Perplexity, coarser: each of W4, W3, W2 worse than the next higher width.
  for (let i = 3; i < results.length; i++) assert.ok(results[i]!.ppl > results[i - 1]!.ppl);
  assert.ok(results.every((r) => r.kl > 0));
});

stories.test("a missing dataset names the path and how to set the data root", async () => {
  const model = await stories260K();
  await assert.rejects(
    getTask("tinystories").run(model, { kernels: refKernels, dataDir: "/nonexistent" }),
    /not found at \/nonexistent\/text\/tinystories\/tinystories_val_head\.txt: .*set --data DIR or LOWBIT_DATA=DIR/,
  );
});

for (const backend of ["js-ref", "wasm-simd"]) {
  stories.test(`the worker pool gives exactly the numbers of the in-thread path (${backend})`, async () => {
    const kernels = await kernelsById(backend);
    const model = await stories260K();
    const q = await rtn.quantize(
      model,
      { wBits: 3, aBits: 16, granularity: "channel", symmetric: false },
      {},
      { kernels },
    );
    const quantized = { ...q, tokenizer: model.tokenizer };
    const task = getTask("tinystories");
    const inline = await task.run(quantized, {
      kernels,
      dataDir,
      limit: 5,
      reference: { model, cache: new Map(), cacheBudgetBytes: 2 ** 30 },
    });
    const pool = new EvalPool(2, 2 ** 30, kernels.id);
    try {
      const pooled = await task.run(quantized, {
        kernels,
        dataDir,
        limit: 5,
        reference: { model, cache: new Map(), cacheBudgetBytes: 0 },
        pool,
      });
      assert.deepEqual(pooled.metrics, inline.metrics);
      assert.ok(get(pooled, "kl").value > 0);
    } finally {
      pool.close();
    }
  });
}

stories.test("WASM and reference kernels give the same perplexity within 1e-5 relative", async () => {
  const model = await stories260K();
  const task = getTask("tinystories:eval");
  const wasm = await kernelsById("wasm-simd");
  const a = await task.run(model, { kernels: refKernels, dataDir, limit: 8 });
  const b = await task.run(model, { kernels: wasm, dataDir, limit: 8 });
  const pa = get(a, "ppl").value, pb = get(b, "ppl").value;
  assert.ok(Math.abs(pa - pb) / pa < 1e-5, `${pa} vs ${pb}`);
});

storiesWikitext.test("wikitext2 reads the canonical raw test file and fingerprints it", async () => {
  const model = await stories260K();
  const r = await getTask("wikitext2").run(model, {
    kernels: refKernels,
    dataDir: sharedPath("data"),
    limit: 1,
  });
  // Published facts about wikitext-2-raw-v1 wiki.test.raw: 1,290,590 bytes, md5 7c0137fc….
  assert.equal(r.dataset.bytes, 1290590);
  const bytes = await Deno.readFile(r.dataset.path);
  assert.equal(createHash("md5").update(bytes).digest("hex"), "7c0137fc034ddbc56a296bce31b4f7fb");
  assert.equal(r.dataset.sha256, createHash("sha256").update(bytes).digest("hex"));
  // A children's-story model finds Wikipedia far harder than TinyStories.
  assert.ok(get(r, "ppl").value > 20, `ppl ${get(r, "ppl").value}`);
  assert.equal(r.protocol.windows, 1);
});
