import assert from "node:assert/strict";
import {
  gunzip,
  parseArc,
  parseBoolq,
  parseHellaswag,
  parseJsonl,
  parseLambada,
  parsePiqa,
  parseWinogrande,
  pyCapitalize,
  readArc,
  readBoolq,
  readHellaswag,
  readLambada,
  readPiqa,
  readWinogrande,
  recapitalizeHellaswag,
} from "./mc_datasets.ts";
import { NotAvailableError } from "../core/errors.ts";
import { getTask, HF_TASK_IDS } from "./mod.ts";
import { evaluateMultipleChoice, type LogProbModel, type McDoc } from "./multiple_choice.ts";
import { MalformedRows } from "./malformed.ts";
import { parseGsm8k } from "./gsm8k.ts";
import { bundledDataDir, needs, sharedPath } from "../testing/fixtures.ts";

const sumsTasks = await needs("SHA256SUMS", "data/tasks");

const dataDir = sharedPath("data");

/** The pinned checksums of the shared fixtures. */
async function pinned(rel: string): Promise<string> {
  const sums = await Deno.readTextFile(sharedPath("SHA256SUMS"));
  const line = sums.split("\n").find((l) => l.endsWith(`  ${rel}`));
  assert.ok(line, rel);
  return line.split(" ")[0]!;
}

function foundry(name: string): Record<string, unknown>[] {
  const text = Deno.readTextFileSync(sharedPath("data", "tasks", "llm-foundry", `${name}.jsonl`));
  return parseJsonl(name, text).map((r) => r.value);
}

sumsTasks.test("ARC readers: 2,376 / 1,172 test items, lm-eval prompt, fingerprint of the file", async () => {
  const easy = await readArc(dataDir, "arc_easy");
  const challenge = await readArc(dataDir, "arc_challenge");
  assert.equal(easy.docs.length, 2376);
  assert.equal(challenge.docs.length, 1172);
  const d = easy.docs[0]!;
  assert.equal(d.kind, "choices");
  if (d.kind !== "choices") return;
  assert.equal(
    d.context,
    "Question: Which statement best explains why photosynthesis is the foundation of most food " +
      "webs?\nAnswer:",
  );
  assert.equal(d.choices.length, 4);
  assert.equal(d.gold, 0);
  assert.equal(easy.info.sha256, await pinned("data/tasks/llm-foundry/arc_easy.jsonl"));
  assert.equal(challenge.info.sha256, await pinned("data/tasks/llm-foundry/arc_challenge.jsonl"));
  assert.equal(easy.info.format, "llm-foundry");
});

sumsTasks.test("PIQA reader: 1,838 items from valid.jsonl + labels, golds agree with llm-foundry's", async () => {
  const { docs, info } = await readPiqa(dataDir);
  assert.equal(docs.length, 1838);
  assert.equal(info.files.length, 2);
  assert.equal(info.sha256, await pinned("data/tasks/piqa/valid.jsonl"));
  assert.equal(info.files[1]!.sha256, await pinned("data/tasks/piqa/valid-labels.lst"));
  const d1 = docs[1]!;
  assert.ok(d1.kind === "choices");
  assert.equal(d1.context, "Question: dresser\nAnswer:");
  // Choices as in the file: the trailing space is kept (it counts for acc_norm).
  assert.deepEqual(d1.choices, [
    "replace drawer with bobby pin ",
    "finish, woodgrain with  bobby pin ",
  ]);
  const ref = foundry("piqa");
  assert.equal(ref.length, docs.length);
  docs.forEach((d, i) => assert.equal(d.gold, ref[i]!.gold, `item ${i}`));
});

sumsTasks.test("WinoGrande reader: 1,267 dev items, partial contexts equal llm-foundry's", async () => {
  const { docs, info } = await readWinogrande(dataDir);
  assert.equal(docs.length, 1267);
  assert.equal(info.sha256, await pinned("data/tasks/winogrande/dev.jsonl"));
  const ref = foundry("winogrande");
  assert.equal(ref.length, docs.length);
  let sameContinuation = 0;
  docs.forEach((d, i) => {
    assert.ok(d.kind === "partial");
    assert.deepEqual(d.contexts, ref[i]!.context_options, `item ${i}`);
    assert.equal(d.gold, ref[i]!.gold, `item ${i}`);
    if (d.continuation === ref[i]!.continuation) sameContinuation++;
  });
  assert.equal(sameContinuation, docs.length);
});

sumsTasks.test("BoolQ reader: 3,270 dev items, lm-eval prompt, golds agree with llm-foundry's", async () => {
  const { docs, info } = await readBoolq(dataDir);
  assert.equal(docs.length, 3270);
  assert.equal(info.sha256, await pinned("data/tasks/boolq/v6_test.json"));
  const d = docs[0]!;
  assert.ok(d.kind === "choices");
  // SuperGLUE's passage (what lm-eval reads) is "{title} -- {passage}" of the original release.
  assert.ok(
    d.context.startsWith("Ethanol fuel -- All biomass goes through at least some of these"),
  );
  assert.ok(
    d.context.endsWith("\nQuestion: does ethanol take more energy make that produces?\nAnswer:"),
  );
  assert.deepEqual(d.choices, ["no", "yes"]);
  assert.equal(d.gold, 0);
  const ref = foundry("boolq");
  docs.forEach((x, i) => assert.equal(x.gold, ref[i]!.gold, `item ${i}`));
});

sumsTasks.test("HellaSwag reader: 10,042 items from the gzip file, ctx_b re-capitalised", async () => {
  const { docs, info, recapitalized } = await readHellaswag(dataDir);
  assert.equal(docs.length, 10042);
  assert.equal(info.sha256, await pinned("data/tasks/hellaswag/hellaswag_val_full.txt.gz"));
  const d = docs[0]!;
  assert.ok(d.kind === "choices");
  assert.equal(d.context, "Roof shingle removal: A man is sitting on a roof. He");
  assert.equal(d.gold, 3);
  assert.equal(d.choices[3], "starts pulling up roofing on a roof.");
  // Roughly the ActivityNet third of the split has a ctx_b to capitalise.
  assert.ok(recapitalized > 3000 && recapitalized < 3300, `${recapitalized}`);
  const golds = new Set(docs.map((x) => x.gold));
  assert.deepEqual([...golds].sort(), [0, 1, 2, 3]);
});

Deno.test("HellaSwag re-capitalisation follows Python's str.capitalize on the ctx_b fragment", () => {
  assert.equal(pyCapitalize("the man in the Red shirt"), "The man in the red shirt");
  assert.equal(pyCapitalize(""), "");
  assert.deepEqual(
    recapitalizeHellaswag("Clean and jerk: A lady walks. She bends down. the lady"),
    {
      text: "Clean and jerk: A lady walks. She bends down. The lady",
      changed: true,
    },
  );
  // A context ending a sentence has an empty ctx_b (WikiHow items).
  assert.equal(recapitalizeHellaswag("Health: How to rest. Sleep well.").changed, false);
  // No sentence end: everything after the activity label is ctx_b.
  assert.equal(
    recapitalizeHellaswag("Archery: a man holds a bow").text,
    "Archery: A man holds a bow",
  );
});

sumsTasks.test("LAMBADA reader: 5,153 items split as lm-eval (context, ' ' + last word)", async () => {
  const { docs, info } = await readLambada(dataDir);
  assert.equal(docs.length, 5153);
  assert.equal(info.sha256, await pinned("data/tasks/llm-foundry/lambada_openai.jsonl"));
  assert.equal(docs[0]!.continuation, " signs");
  assert.ok(docs[0]!.context.endsWith("I don't care about"));
  for (const d of docs) {
    assert.ok(d.continuation.startsWith(" ") && !d.continuation.slice(1).includes(" "));
  }
  // A last "word" is whatever follows the last space, as text.split(' ')[-1].
  assert.deepEqual(parseLambada("l", JSON.stringify({ context: "a b", continuation: "c\nd" })), [
    { context: "a b", continuation: " c\nd" },
  ]);
});

Deno.test("bad lines: file and line number in the error", () => {
  const good = JSON.stringify({ query: "Question: q", choices: ["a", "b"], gold: 1 });
  assert.throws(
    () => parseArc("arc.jsonl", `${good}\n{"query": \n${good}\n`),
    /arc\.jsonl:2: not valid JSON/,
  );
  assert.throws(
    () => parseArc("arc.jsonl", `${good}\n${JSON.stringify({ query: "Question: q", gold: 0 })}\n`),
    /arc\.jsonl:2: expected a list of strings "choices"/,
  );
  assert.throws(
    () => parseArc("arc.jsonl", JSON.stringify({ query: "Question: q", choices: [], gold: 0 })),
    /arc\.jsonl:1: the choice list "choices" is empty/,
  );
  assert.throws(
    () => parseArc("arc.jsonl", JSON.stringify({ query: "q", choices: ["a"], gold: 0 })),
    /arc\.jsonl:1: expected "query" to start with "Question: "/,
  );
  assert.throws(() => parseArc("arc.jsonl", "[1, 2]\n"), /arc\.jsonl:1: expected a JSON object/);
  const piqa = JSON.stringify({ goal: "g", sol1: "a", sol2: "b" });
  assert.throws(
    () => parsePiqa("p.jsonl", `${piqa}\n${piqa}\n`, "p.lst", "0\nx\n"),
    /p\.lst:2: expected an integer label/,
  );
  assert.throws(
    () => parsePiqa("p.jsonl", `${piqa}\n${piqa}\n`, "p.lst", "0\n"),
    /p\.lst: 1 labels for 2 items/,
  );
  assert.throws(
    () => parsePiqa("p.jsonl", `${piqa}\n{"goal": "g", "sol1": "a"}\n`, "p.lst", "0\n1\n"),
    /p\.jsonl:2: expected a string field "sol2"/,
  );
  const wino = (s: string, answer = "1") =>
    JSON.stringify({ sentence: s, option1: "A", option2: "B", answer });
  assert.throws(
    () => parseWinogrande("w.jsonl", `${wino("a _ b")}\n${wino("no blank")}\n`),
    /w\.jsonl:2: the sentence has no blank/,
  );
  assert.throws(
    () => parseWinogrande("w.jsonl", `${wino("a _ b")}\n`, "w.lst", "2\n"),
    /w\.lst:1: label "2" disagrees with answer "1"/,
  );
  assert.throws(
    () =>
      parseBoolq(
        "b.json",
        '[{"question": "q", "title": "t", "passage": "p", "answer": true},\n {"question": ]',
      ),
    /b\.json:2(:\d+)?: not valid JSON/,
  );
  assert.throws(
    () => parseBoolq("b.json", '[{"question": "q", "title": "t", "answer": true}]'),
    /b\.json:item 1: expected a string field "passage"/,
  );
  const hs = "Label: ctx.\n1\na\nb\nc\nd\n";
  assert.equal(parseHellaswag("h.txt", hs).docs.length, 1);
  assert.throws(
    () => parseHellaswag("h.txt", hs + "Label: more.\n0\na\n"),
    /h\.txt:9: 9 lines is not a multiple of 6/,
  );
  assert.throws(
    () => parseHellaswag("h.txt", hs + "Label: more.\none\na\nb\nc\nd\n"),
    /h\.txt:8: expected an integer label/,
  );
  assert.throws(
    () => parseLambada("l.jsonl", `{"context": "a b"}\n`),
    /l\.jsonl:1: expected a string field "continuation"/,
  );
});

Deno.test("gold labels out of range are kept, then counted and reported by scoring", () => {
  const arc = parseArc(
    "arc.jsonl",
    JSON.stringify({ query: "Question: q", choices: ["a", "b"], gold: 5 }),
  );
  const piqa = parsePiqa(
    "p.jsonl",
    JSON.stringify({ goal: "g", sol1: "a", sol2: "b" }),
    "p.lst",
    "2\n",
  );
  const wino = parseWinogrande(
    "w.jsonl",
    JSON.stringify({ sentence: "a _ b", option1: "A", option2: "B", answer: "3" }),
  );
  const boolq = parseBoolq(
    "b.json",
    '[{"question": "q", "title": "t", "passage": "p", "answer": "maybe"}]',
  );
  const hs = parseHellaswag("h.txt", "Label: ctx.\n4\na\nb\nc\nd\n").docs;
  const docs: McDoc[] = [...arc, ...piqa, ...wino, ...boolq, ...hs];
  assert.deepEqual(docs.map((d) => d.gold), [5, 2, -1, -1, 4]);
  const lm: LogProbModel = {
    vocabSize: 512,
    maxLength: 64,
    nextLogProbs: (t, from) => new Float32Array((t.length - from) * 512).fill(-6),
  };
  const tok = {
    bosId: 1,
    encode: (s: string) => s ? [...` ${s}`].map((c) => 3 + (c.charCodeAt(0) % 500)) : [],
  };
  const ok: McDoc = { kind: "choices", context: "Q", choices: ["a", "b"], gold: 0 };
  const r = evaluateMultipleChoice(lm, tok, [ok, ...docs]);
  assert.equal(r.counts.invalidGold, 5);
  assert.equal(r.counts.scored, 1);
});

Deno.test("gunzip: a corrupt gzip file is an error naming it", async () => {
  await assert.rejects(
    () => gunzip("x.gz", new Uint8Array([1, 2, 3, 4])),
    /x\.gz is not a valid gzip file/,
  );
});

Deno.test("skip-malformed: bad lines are skipped and counted with file and line; the rest still errors", () => {
  const good = (gold: number) =>
    JSON.stringify({ query: "Question: q", choices: ["a", "b"], gold });
  const arcText = `${good(0)}\n{"query": \n${JSON.stringify({ query: "Question: q" })}\n${
    good(1)
  }\n`;
  const rows = new MalformedRows(true);
  assert.deepEqual(parseArc("arc.jsonl", arcText, rows).map((d) => d.gold), [0, 1]);
  assert.deepEqual(rows.summary(), {
    skipMalformed: true,
    skippedMalformed: 2,
    skippedExamples: [
      "arc.jsonl:2: not valid JSON",
      'arc.jsonl:3: expected a list of strings "choices"',
    ],
  });
  // An empty choice list is never skipped.
  assert.throws(
    () =>
      parseArc(
        "arc.jsonl",
        JSON.stringify({ query: "Question: q", choices: [], gold: 0 }),
        new MalformedRows(true),
      ),
    /arc\.jsonl:1: the choice list "choices" is empty/,
  );

  // PIQA: a skipped item keeps the labels aligned with the items after it.
  const piqa = (goal: string) => JSON.stringify({ goal, sol1: "a", sol2: "b" });
  const piqaRows = new MalformedRows(true);
  const docs = parsePiqa(
    "p.jsonl",
    `${piqa("one")}\n{broken\n${piqa("three")}\n`,
    "p.lst",
    "0\n1\n1\n",
    piqaRows,
  );
  assert.deepEqual(
    docs.map((d) => [d.kind === "choices" ? d.context : "", d.gold]),
    [["Question: one\nAnswer:", 0], ["Question: three\nAnswer:", 1]],
  );
  assert.equal(piqaRows.summary().skippedMalformed, 1);
  // The labels file must still match the item count (a structural error, never skipped).
  assert.throws(
    () =>
      parsePiqa("p.jsonl", `${piqa("one")}\n{broken\n`, "p.lst", "0\n", new MalformedRows(true)),
    /p\.lst: 1 labels for 2 items/,
  );

  // BoolQ as a JSON array: an item without its fields is skipped, named by item number.
  const boolqRows = new MalformedRows(true);
  const b = parseBoolq(
    "b.json",
    JSON.stringify([
      { question: "q", title: "t", passage: "p", answer: true },
      { question: "q" },
      { question: "q", title: "t", passage: "p", answer: "maybe" },
    ]),
    boolqRows,
  );
  assert.deepEqual(b.map((d) => d.gold), [1, -1]);
  assert.match(boolqRows.summary().skippedExamples[0]!, /^b\.json:item 2: /);

  // HellaSwag: an item whose label line is not an integer is skipped as a whole.
  const hs = ["ctx one", "1", "a", "b", "c", "d", "ctx two", "x", "a", "b", "c", "d"].join("\n");
  const hsRows = new MalformedRows(true);
  assert.deepEqual(parseHellaswag("h.txt", hs, hsRows).docs.map((d) => d.gold), [1]);
  assert.deepEqual(hsRows.summary().skippedExamples, [
    'h.txt:8: expected an integer label, got "x"',
  ]);

  // GSM8K: a missing "#### n" answer is malformed.
  const g = (answer: string) => JSON.stringify({ question: "q", answer });
  const gRows = new MalformedRows(true);
  const gsm = parseGsm8k("g.jsonl", `${g("so 3\n#### 3")}\n${g("no answer")}\n`, gRows);
  assert.deepEqual(gsm.map((d) => [d.line, d.gold]), [[1, "3"]]);
  assert.match(gRows.summary().skippedExamples[0]!, /^g\.jsonl:2: /);
  assert.throws(() => parseGsm8k("g.jsonl", `${g("no answer")}\n`), /g\.jsonl:1: /);
});

Deno.test("a task file that does not ship names --data, LOWBIT_DATA and, where the task has one, its Hub source", async () => {
  // data/ of the repository holds TinyStories only.
  const missing = async (run: () => Promise<unknown>) => {
    const e = await run().then(() => assert.fail("expected a missing-file error"), (e) => e);
    assert.ok(e instanceof NotAvailableError, String(e));
    return e.message;
  };
  const arc = await missing(() => readArc(bundledDataDir(), "arc_easy"));
  assert.match(
    arc,
    /^Dataset file tasks\/llm-foundry\/arc_easy\.jsonl not found at .*\/data\/tasks\//,
  );
  assert.match(
    arc,
    /set --data DIR or LOWBIT_DATA=DIR to a directory holding tasks\/llm-foundry\/arc_easy\.jsonl/,
  );
  assert.match(arc, /--tasks TASK=hf or TASK=hf:\/\/datasets\//);
  // The tasks the message offers from the Hub are exactly those that take a source.
  const offered = arc.match(/or read (.*) from the Hub/)![1]!.split(", ");
  assert.deepEqual([...offered].sort(), [...HF_TASK_IDS].sort());
  for (const task of offered) assert.equal(getTask(`${task}=hf`).id, `${task}=hf`);
  assert.throws(() => getTask("lambada_openai=hf"), /cannot read a dataset source/);
  const lambada = await missing(() =>
    getTask("lambada_openai").dataset({ dataDir: bundledDataDir() })
  );
  assert.match(lambada, /tasks\/llm-foundry\/lambada_openai\.jsonl/);
});
