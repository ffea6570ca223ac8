import assert from "node:assert/strict";
import {
  budgetFor,
  buildPrompt,
  encodePrompt,
  evaluateGsm8k,
  FEWSHOT_EXEMPLARS,
  parseGsm8k,
  PROMPT_VERSION,
  readGsm8k,
  STOP_SEQUENCES,
} from "./gsm8k.ts";
import { getTask, TASK_IDS } from "./mod.ts";
import { refKernels } from "../kernels/ref/mod.ts";
import { needs, sharedPath } from "../testing/fixtures.ts";
import { stories260K } from "../testing/stories.ts";

const tasks = await needs("data/tasks/gsm8k/test.jsonl");
const storiesTasks = await needs("hf-mirror", "data/tasks/gsm8k/test.jsonl");

const dataDir = sharedPath("data");

Deno.test("the prompt of a hand-built item equals the hand-written string", () => {
  const expected = "Question: There are 15 trees in the grove. Grove workers will plant trees in " +
    "the grove today. After they are done, there will be 21 trees. How many trees did the grove " +
    "workers plant today?\nAnswer: There are 15 trees originally. Then there were 21 trees " +
    "after some more were planted. So there must have been 21 - 15 = 6.\n#### 6\n\n" +
    "Question: If there are 3 cars in the parking lot and 2 more cars arrive, how many cars " +
    "are in the parking lot?\nAnswer: There are originally 3 cars. 2 more cars arrive. " +
    "3 + 2 = 5.\n#### 5\n\n" +
    "Question: Tom has 2 apples and buys 3 more. How many apples does he have?\nAnswer:";
  assert.equal(
    buildPrompt("Tom has 2 apples and buys 3 more. How many apples does he have?", 2),
    expected,
  );
  assert.equal(buildPrompt("Q?", 0), "Question: Q?\nAnswer:");
  assert.equal(FEWSHOT_EXEMPLARS.length, 8);
  const full = buildPrompt("Q?");
  assert.equal(full.split("\n\n").length, 9);
  assert.ok(full.endsWith(
    "Answer: Olivia had 23 dollars. 5 bagels for 3 dollars each will be " +
      "5 x 3 = 15 dollars. So she has 23 - 15 dollars left. 23 - 15 is 8.\n#### 8\n\nQuestion: Q?\nAnswer:",
  ));
  // No exemplar contains a stop sequence.
  for (const e of FEWSHOT_EXEMPLARS) {
    for (const s of STOP_SEQUENCES) assert.ok(!e.answer.includes(s));
  }
  assert.throws(() => buildPrompt("Q?", 9), RangeError);
});

tasks.test("GSM8K file: 1,319 problems, gold from '#### n'; malformed lines name file and line", async () => {
  const { docs, info } = await readGsm8k(dataDir);
  assert.equal(docs.length, 1319);
  assert.equal(docs[0]!.line, 1);
  assert.match(docs[0]!.question, /^Janet’s ducks lay 16 eggs/);
  assert.equal(docs[0]!.gold, "18");
  assert.ok(docs.every((d) => /^-?[0-9.]+$/.test(d.gold)), "every gold is a plain number");
  assert.match(info.sha256, /^[0-9a-f]{64}$/);

  const good = '{"question": "Q", "answer": "A\\n#### 1,000"}';
  assert.equal(parseGsm8k("f.jsonl", good + "\n")[0]!.gold, "1000");
  assert.throws(
    () => parseGsm8k("f.jsonl", `${good}\n{"question": "Q"`),
    /f\.jsonl:2: not valid JSON/,
  );
  assert.throws(
    () => parseGsm8k("f.jsonl", `${good}\n\n{"question": 3, "answer": "#### 1"}`),
    /f\.jsonl:3: .*"question"/,
  );
  assert.throws(
    () => parseGsm8k("f.jsonl", '{"question": "Q", "answer": "no marker"}'),
    /f\.jsonl:1: .*####/,
  );
});

Deno.test("budget and left truncation of the prompt", () => {
  assert.deepEqual(budgetFor(512, 256), { budget: 256, room: 256 });
  assert.deepEqual(budgetFor(512, 1000), { budget: 511, room: 1 });
  assert.deepEqual(budgetFor(4096, 256), { budget: 256, room: 3840 });
  assert.throws(() => budgetFor(512, 0), RangeError);
  const tok = { bosId: 1, encode: (t: string) => [...t].map((c) => c.charCodeAt(0)) };
  assert.deepEqual(encodePrompt(tok, "abc", 10), {
    tokens: [1, 97, 98, 99],
    full: 4,
    truncated: false,
  });
  assert.deepEqual(encodePrompt(tok, "abc", 2), { tokens: [98, 99], full: 4, truncated: true });
});

storiesTasks.test("gsm8k runs end to end on stories260K (3 problems, 256-token budget)", async () => {
  const model = await stories260K();
  assert.ok(TASK_IDS.includes("gsm8k"));
  const task = getTask("gsm8k");
  assert.equal(task.family, "reasoning");
  const r = await task.run(model, { kernels: refKernels, dataDir, limit: 3 });
  assert.deepEqual(r.metrics.map((m) => m.metric), ["exact_match_strict", "exact_match_flexible"]);
  for (const m of r.metrics) {
    assert.equal(m.n, 3);
    assert.ok(m.value >= 0 && m.value <= 1);
    assert.ok(m.higherIsBetter);
  }
  const p = r.protocol;
  assert.equal(p.promptVersion, PROMPT_VERSION);
  assert.equal(p.fewshot, 8);
  assert.deepEqual(p.until, STOP_SEQUENCES);
  assert.equal(p.maxGenToks, 256);
  assert.equal(p.tokenBudget, 256);
  assert.equal(p.promptRoom, 256);
  assert.equal(p.truncatedPrompts, 3);
  assert.equal(p.docs, 3);
  assert.equal(p.datasetSha256, r.dataset.sha256);
  assert.deepEqual(r.dataset, await task.dataset({ dataDir }));
  assert.equal(
    (p.stoppedBySequence as number) + (p.stoppedByEos as number) + (p.stoppedByBudget as number),
    3,
  );

  // A smaller budget through the evaluator: structure of each sample.
  const { docs } = await readGsm8k(dataDir);
  const samples = evaluateGsm8k(model, docs.slice(0, 2), { kernels: refKernels, maxGenToks: 16 });
  assert.equal(samples.length, 2);
  for (const s of samples) {
    assert.ok(s.truncated);
    for (const stop of STOP_SEQUENCES) assert.ok(!s.generation.includes(stop));
    assert.equal(s.strictCorrect, false);
  }
});
