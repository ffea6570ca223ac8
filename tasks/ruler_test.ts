import assert from "node:assert/strict";
import { UnsupportedConfigError } from "../core/errors.ts";
import { readTextDataset } from "./corpora/text.ts";
import { refKernels } from "../kernels/ref/mod.ts";
import { needs, sharedPath } from "../testing/fixtures.ts";
import { stories260K } from "../testing/stories.ts";
import { getTask, TASK_IDS } from "./mod.ts";
import {
  defaultLengths,
  parseRulerId,
  RULER_DEVIATIONS,
  RULER_SEED,
  RULER_TASK_NAMES,
  rulerTask,
} from "./ruler.ts";
import { stringMatchAll } from "./ruler_score.ts";

const storiesWikitext = await needs("hf-mirror", "data/text/wikitext2/wiki.test.raw");

const dataDir = sharedPath("data");

Deno.test("RULER ids: every task is registered, lengths parse, bad input names itself", () => {
  assert.equal(RULER_TASK_NAMES.length, 13);
  for (const name of RULER_TASK_NAMES) {
    assert.ok(TASK_IDS.includes(`ruler:${name}`));
    const task = getTask(`ruler:${name}`);
    assert.equal(task.id, `ruler:${name}`);
    assert.equal(task.family, "ruler");
  }
  assert.deepEqual(parseRulerId("ruler:cwe@256+512").lengths, [256, 512]);
  assert.equal(parseRulerId("ruler:niah_single_1@512").task.tokensToGenerate, 128);
  assert.equal(parseRulerId("ruler:niah_single_1").lengths, undefined);
  assert.equal(getTask("ruler:fwe@512").id, "ruler:fwe@512");

  assert.throws(
    () => getTask("ruler:niah_single_9"),
    (e: unknown) =>
      e instanceof TypeError && /niah_single_9/.test(e.message) &&
      /niah_single_1, niah_single_2/.test(e.message) && /qa_2/.test(e.message),
  );
  for (const bad of ["ruler:vt@", "ruler:vt@abc", "ruler:vt@0", "ruler:vt@-5", "ruler:vt@256+x"]) {
    assert.throws(
      () => getTask(bad),
      (e: unknown) => e instanceof SyntaxError && e.message.includes(`"${bad}"`),
      bad,
    );
  }
  assert.throws(() => parseRulerId("ruler:vt@256+256"), SyntaxError);
});

Deno.test("defaultLengths(): RULER's lengths the context holds, else half and whole context", () => {
  assert.deepEqual(defaultLengths(512), [256, 512]);
  assert.deepEqual(defaultLengths(2048), [1024, 2048]);
  assert.deepEqual(defaultLengths(4096), [4096]);
  assert.deepEqual(defaultLengths(16384), [4096, 8192, 16384]);
});

storiesWikitext.test("RULER cells that cannot run are unsupported with the reason", async () => {
  const model = await stories260K();
  const ctx = { kernels: refKernels, dataDir, limit: 2 };
  await assert.rejects(
    () => getTask("ruler:niah_single_1@1024").run(model, ctx),
    (e: unknown) =>
      e instanceof UnsupportedConfigError &&
      /length 1024 exceeds the model's context of 512 tokens/.test(e.message),
  );
  await assert.rejects(
    () => getTask("ruler:niah_single_1@256").run(model, ctx),
    (e: unknown) => e instanceof UnsupportedConfigError && /does not fit/.test(e.message),
  );
  await assert.rejects(
    () => getTask("ruler:qa_2").run(model, ctx),
    (e: unknown) => e instanceof UnsupportedConfigError && /HotpotQA/.test(e.message),
  );
  // No default length fits (the smallest cwe prompt is far longer than 512 tokens).
  await assert.rejects(
    () => getTask("ruler:cwe").run(model, ctx),
    (e: unknown) => e instanceof UnsupportedConfigError && /no default length fits/.test(e.message),
  );
});

storiesWikitext.test("ruler:niah_single_2 runs end to end on stories260K (3 samples per length)", async () => {
  const model = await stories260K();
  const task = getTask("ruler:niah_single_2");
  const progress: number[] = [];
  const r = await task.run(model, {
    kernels: refKernels,
    dataDir,
    limit: 3,
    onProgress: (d) => progress.push(d),
  });
  // 256 cannot hold the prompt plus 128 generated tokens: skipped, named; 512 runs.
  assert.deepEqual(r.metrics.map((m) => m.metric), ["string_match_all@512"]);
  const m = r.metrics[0]!;
  assert.equal(m.n, 3);
  assert.equal(m.unit, "fraction");
  assert.ok(m.value >= 0 && m.value <= 1);
  assert.ok(m.higherIsBetter);
  assert.deepEqual(progress, [1, 2, 3]);
  const p = r.protocol;
  assert.deepEqual(p.lengths, [512]);
  assert.deepEqual(p.lengthsRequested, [256, 512]);
  assert.match((p.skippedLengths as Record<string, string>)["256"]!, /does not fit/);
  assert.equal(p.seed, RULER_SEED);
  assert.equal(p.samplesPerLength, 3);
  assert.equal(p.tokensToGenerate, 128);
  assert.deepEqual(p.deviations, RULER_DEVIATIONS);
  const sets = p.sets as { sha256: string; samples: number; length: number; nulls: number }[];
  assert.equal(sets.length, 1);
  assert.match(sets[0]!.sha256, /^[0-9a-f]{64}$/);
  assert.equal(sets[0]!.samples, 3);
  // The dataset is the essay corpus, fingerprinted the same way before compute.
  assert.deepEqual(r.dataset, await task.dataset({ dataDir }));
  assert.equal(r.dataset.sha256, (await readTextDataset("wikitext2", dataDir)).info.sha256);
  // Same run again: the same generated set (hash) and the same scores.
  const again = await task.run(model, { kernels: refKernels, dataDir, limit: 3 });
  assert.equal((again.protocol.sets as { sha256: string }[])[0]!.sha256, sets[0]!.sha256);
  assert.deepEqual(again.metrics, r.metrics);
});

storiesWikitext.test("scores are the mean of per-sample string_match_all (a fraction)", async () => {
  const model = await stories260K();
  // stories260K's own answers are scored per sample and averaged: check the mean against a
  // recomputation from the predictions.
  const { evaluateRulerSet, rulerResources } = await import("./ruler.ts");
  const { generateRulerSet } = await import("./ruler_fit.ts");
  const { RULER_TASKS } = await import("./ruler_generate.ts");
  const def = RULER_TASKS.find((t) => t.name === "fwe")!;
  const res = rulerResources((await readTextDataset("wikitext2", dataDir)).text);
  const set = await generateRulerSet(def, res, model.tokenizer, { length: 512, samples: 2 });
  const out = evaluateRulerSet(model, def, set, { kernels: refKernels });
  assert.equal(out.length, 2);
  out.forEach((o, i) => {
    assert.equal(o.score, stringMatchAll(o.prediction.trim(), set.samples[i]!.outputs));
  });
  const r = await rulerTask("ruler:fwe@512").run(model, { kernels: refKernels, dataDir, limit: 2 });
  const mean = (out[0]!.score + out[1]!.score) / 2;
  assert.ok(Math.abs(r.metrics[0]!.value - mean) < 1e-9);
});
