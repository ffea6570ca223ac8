import assert from "node:assert/strict";
import {
  buildClozeItems,
  CLOZE_SEED,
  paragraphs,
  sentences,
  tinystoriesClozeTask,
} from "./tinystories_cloze.ts";
import { readTextDataset } from "./corpora/text.ts";
import { refKernels } from "../kernels/ref/mod.ts";
import { bundledDataDir, needs, sharedPath } from "../testing/fixtures.ts";
import { stories260K } from "../testing/stories.ts";
import { getTask, TASK_IDS } from "./mod.ts";
import { rtn } from "../methods/rtn.ts";

const stories = await needs("hf-mirror");
const tasks = await needs("data/tasks");

const dataDir = bundledDataDir();

Deno.test("sentences(): cut after . ! ? (and closing quotes) before a capital or an opening quote", () => {
  assert.deepEqual(
    sentences('"Look, Mia, a big hill!" Sam said. "Let\'s go up." They went up. it was fun.'),
    ['"Look, Mia, a big hill!"', "Sam said.", '"Let\'s go up."', "They went up. it was fun."],
  );
  assert.deepEqual(paragraphs("A b.\nC d.\n\n\n  E f.  \n\n"), ["A b. C d.", "E f."]);
});

Deno.test("cloze items are deterministic for a seed and follow the generation rules", async () => {
  const { text } = await readTextDataset("tinystories:eval", dataDir);
  const items = buildClozeItems(text);
  assert.deepEqual(buildClozeItems(text, CLOZE_SEED), items);
  assert.notDeepEqual(buildClozeItems(text, 7).map((i) => i.gold), items.map((i) => i.gold));
  assert.ok(items.length > 1500, `${items.length}`);
  const paras = paragraphs(text).map(sentences);
  const golds = [0, 0, 0, 0];
  for (const it of items) {
    assert.equal(it.choices.length, 4);
    assert.equal(new Set(it.choices).size, 4);
    const ss = paras[it.paragraph]!;
    const truth = it.choices[it.gold]!;
    assert.equal(truth, ss[1]);
    assert.ok(it.context.endsWith(ss[0]!));
    if (it.paragraph > 0) assert.ok(it.context.startsWith(paras[it.paragraph - 1]!.join(" ")));
    for (const c of it.choices) {
      const r = c.length / truth.length;
      assert.ok(r <= 1.3 && r >= 1 / 1.3, `${c} vs ${truth}`);
    }
    golds[it.gold]!++;
  }
  // The true sentence's position is spread over the four slots.
  for (const g of golds) assert.ok(g > items.length / 6, `${golds}`);
});

stories.test("stories260K FP32 scores clearly above chance (25 %) on 200 tinystories_cloze items", async () => {
  const model = await stories260K();
  const r = await getTask("tinystories_cloze").run(model, {
    kernels: refKernels,
    dataDir,
    limit: 200,
  });
  const accNorm = r.metrics.find((m) => m.metric === "acc_norm")!;
  const acc = r.metrics.find((m) => m.metric === "acc")!;
  assert.equal(accNorm.n, 200);
  // Measured: acc 0.320 ± 0.033, acc_norm 0.345 ± 0.034 (all 1,974 items: 0.394 / 0.418).
  assert.ok(
    accNorm.value - 2 * accNorm.stderr! > 0.25,
    `acc_norm ${accNorm.value} ± ${accNorm.stderr}`,
  );
  assert.ok(acc.value > 0.28, `acc ${acc.value}`);
  assert.equal(r.protocol.generatorVersion, 1);
  assert.match(String(r.protocol.setSha256), /^[0-9a-f]{64}$/);
  assert.equal(r.protocol.docs, 200);
  assert.equal(r.dataset.id, "tinystories:eval");
  assert.equal(r.dataset.split?.name, "eval");
});

tasks.test("registry: zero-shot ids resolve, perplexity ids still work, unknown ids list them", async () => {
  for (
    const id of [
      "arc_easy",
      "arc_challenge",
      "piqa",
      "hellaswag",
      "winogrande",
      "boolq",
      "lambada_openai",
      "tinystories_cloze",
    ]
  ) {
    assert.ok(TASK_IDS.includes(id), id);
    const t = getTask(id);
    assert.equal(t.id, id);
    assert.equal(t.family, "zero-shot");
    assert.ok(t.version >= 1);
    const info = await t.dataset({ dataDir: sharedPath("data") });
    assert.match(info.sha256, /^[0-9a-f]{64}$/);
  }
  for (const id of ["tinystories", "tinystories:eval", "wikitext2"]) {
    assert.equal(getTask(id).family, "perplexity");
  }
  assert.equal(tinystoriesClozeTask().id, "tinystories_cloze");
  assert.throws(() => getTask("arc_medium"), /arc_easy/);
});

stories.test("RTN W2 scores below W8 on tinystories_cloze (100 items): quantization moves it", async () => {
  const model = await stories260K();
  const acc = async (wBits: number) => {
    const q = { wBits, aBits: 16, granularity: "channel" as const, symmetric: false };
    const qm = await rtn.quantize(model, q, {}, { kernels: refKernels });
    const r = await getTask("tinystories_cloze").run(
      { config: qm.config, weights: qm.weights, tokenizer: model.tokenizer },
      { kernels: refKernels, dataDir, limit: 100 },
    );
    return r.metrics.find((m) => m.metric === "acc_norm")!;
  };
  const w2 = await acc(2);
  const w8 = await acc(8);
  // Measured: 100 items W8 0.28, W2 0.14; 400 items W8 0.363 ± 0.024, W2 0.178 ± 0.019.
  assert.ok(w8.value - w2.value > 0.08, `W2 ${w2.value} vs W8 ${w8.value}`);
});
