import assert from "node:assert/strict";
import { join } from "node:path";
import { NotAvailableError } from "../core/errors.ts";
import { refKernels } from "../kernels/ref/mod.ts";
import { datasetMirror } from "../testing/dataset_mirror.ts";
import { needs, sharedPath } from "../testing/fixtures.ts";
import { type ColumnType, writeParquet } from "../testing/parquet_writer.ts";
import { stories260K } from "../testing/stories.ts";
import { readGsm8k } from "./gsm8k.ts";
import { hellaswagPreprocess, HF_SCHEMAS, readHfDataset } from "./hf_schemas.ts";
import {
  parseJsonl,
  readArc,
  readBoolq,
  readHellaswag,
  readPiqa,
  readWinogrande,
} from "./mc_datasets.ts";
import { getTask } from "./mod.ts";

const tasks = await needs("data/tasks");
const storiesTasks = await needs("hf-mirror", "data/tasks");

const dataDir = sharedPath("data");
const ARC_FILE = "ARC-Easy/test-00000-of-00001.parquet";
const ARC_URL = `/datasets/allenai/ai2_arc/resolve/main/${ARC_FILE}`;

/** Lower-case hex sha256, computed with WebCrypto (independent of the code under test). */
async function sha256(bytes: Uint8Array): Promise<string> {
  const d = await crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>);
  return [...new Uint8Array(d)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

function jsonlFixture(rel: string): Record<string, unknown>[] {
  return parseJsonl(rel, Deno.readTextFileSync(sharedPath("data", rel))).map((r) => r.value);
}

function lines(rel: string): string[] {
  return Deno.readTextFileSync(sharedPath("data", rel)).trimEnd().split("\n");
}

const ARC_COLUMNS: Record<string, ColumnType> = {
  id: "string",
  question: "string",
  choices: { text: "string[]", label: "string[]" },
  answerKey: "string",
};

/**
 * ARC rows in `allenai/ai2_arc`'s schema, rebuilt from llm-foundry's normalized file; labels
 * alternate between the dataset's two conventions (letters, digits).
 */
function arcRows(name: string): Record<string, unknown>[] {
  return jsonlFixture(`tasks/llm-foundry/${name}.jsonl`).map((o, i) => {
    const text = o.choices as string[];
    const label = (i % 2 === 0 ? ["A", "B", "C", "D", "E"] : ["1", "2", "3", "4", "5"])
      .slice(0, text.length);
    return {
      id: `item-${i}`,
      question: (o.query as string).slice("Question: ".length),
      choices: { text, label },
      answerKey: label[o.gold as number],
    };
  });
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch {
    return false;
  }
}

tasks.test("ARC-Easy from the Hub's parquet equals the llm-foundry file; cache layout; offline", async () => {
  const bytes = writeParquet(ARC_COLUMNS, arcRows("arc_easy"));
  await using m = await datasetMirror([{ repo: "allenai/ai2_arc", path: ARC_FILE, bytes }]);
  const want = await readArc(dataDir, "arc_easy");

  const got = await readHfDataset(HF_SCHEMAS.arc_easy, "hf", { env: m.env() });
  assert.equal(got.docs.length, 2376);
  assert.deepEqual(got.docs, want.docs);
  assert.deepEqual(m.mirror.requests, [ARC_URL]);
  // huggingface_hub's layout: datasets--{owner}--{name}/{blobs,refs,snapshots}
  const repoDir = join(m.cache, "datasets--allenai--ai2_arc");
  const snap = join(repoDir, "snapshots", "main", ...ARC_FILE.split("/"));
  assert.equal(got.info.path, snap);
  assert.ok((await Deno.lstat(snap)).isSymlink);
  assert.equal(
    await Deno.realPath(snap),
    join(await Deno.realPath(repoDir), "blobs", got.info.sha256),
  );
  assert.equal((await Deno.readTextFile(join(repoDir, "refs", "main"))).trim(), "main");
  assert.equal(await exists(join(m.cache, "models--allenai--ai2_arc")), false);
  // Fingerprint: the sha256 of the bytes served.
  assert.equal(got.info.sha256, await sha256(bytes));
  assert.equal(got.info.bytes, bytes.length);
  assert.equal(got.info.format, "hf");
  assert.equal(got.info.id, `hf://datasets/allenai/ai2_arc/${ARC_FILE}`);
  assert.deepEqual(got.skipped, { skipMalformed: false, skippedMalformed: 0, skippedExamples: [] });

  // HF_HUB_OFFLINE=1 with the file cached: no request.
  const offline = m.env({ HF_HUB_OFFLINE: "1" });
  const again = await readHfDataset(HF_SCHEMAS.arc_easy, "hf", { env: offline });
  assert.deepEqual(again.docs, want.docs);
  assert.equal(m.mirror.requests.length, 1);

  // HF_HUB_OFFLINE=1 and not cached: the error names the file and the setting, no request.
  await assert.rejects(
    readHfDataset(HF_SCHEMAS.arc_challenge, "hf", { env: offline }),
    (e: unknown) => {
      assert.ok(e instanceof NotAvailableError);
      assert.match(e.message, /ARC-Challenge\/test-00000-of-00001\.parquet/);
      assert.match(e.message, /allenai\/ai2_arc/);
      assert.match(e.message, /HF_HUB_OFFLINE=1/);
      return true;
    },
  );
  assert.equal(m.mirror.requests.length, 1);
});

storiesTasks.test("arc_easy=hf scores like arc_easy on stories260K; the row records source and fingerprint", async () => {
  const bytes = writeParquet(ARC_COLUMNS, arcRows("arc_easy"));
  await using m = await datasetMirror([{ repo: "allenai/ai2_arc", path: ARC_FILE, bytes }]);
  const model = await stories260K();
  const env = m.env();
  const ctx = { kernels: refKernels, dataDir, limit: 5, env };
  const local = await getTask("arc_easy").run(model, ctx);
  const hubTask = getTask("arc_easy=hf");
  assert.equal(hubTask.id, "arc_easy=hf");
  const planned = await hubTask.dataset({ dataDir, env });
  const hub = await hubTask.run(model, ctx);
  assert.deepEqual(hub.metrics, local.metrics);
  assert.deepEqual(hub.dataset, planned);
  assert.equal(hub.dataset.sha256, await sha256(bytes));
  assert.equal(hub.protocol.dataFormat, "hf");
  assert.equal(hub.protocol.source, `hf://datasets/allenai/ai2_arc/${ARC_FILE}`);
  assert.equal(hub.protocol.hfDataset, "allenai/ai2_arc ARC-Easy");
  assert.equal(hub.protocol.skippedMalformed, 0);
  assert.equal(hub.protocol.fileDocs, 2376);
  assert.equal(local.protocol.dataFormat, "llm-foundry");
  assert.equal(local.protocol.skippedMalformed, 0);
});

tasks.test("GSM8K from openai/gsm8k's parquet equals the JSONL file (gsm8k=hf)", async () => {
  const rows = jsonlFixture("tasks/gsm8k/test.jsonl");
  const bytes = writeParquet({ question: "string", answer: "string" }, rows);
  const path = "main/test-00000-of-00001.parquet";
  await using m = await datasetMirror([{ repo: "openai/gsm8k", path, bytes }]);
  const env = m.env();
  const got = await readHfDataset(HF_SCHEMAS.gsm8k, "hf", { env });
  const want = await readGsm8k(dataDir);
  assert.equal(got.docs.length, 1319);
  // Parquet row numbers equal the JSONL's line numbers (no blank lines in the file).
  assert.deepEqual(got.docs, want.docs);
  const info = await getTask("gsm8k=hf").dataset({ dataDir, env });
  assert.equal(info.sha256, await sha256(bytes));
  assert.equal(
    info.path,
    join(
      m.cache,
      "datasets--openai--gsm8k",
      "snapshots",
      "main",
      "main",
      "test-00000-of-00001.parquet",
    ),
  );
  assert.deepEqual(m.mirror.requests, [`/datasets/openai/gsm8k/resolve/main/${path}`]);
});

tasks.test("PIQA, WinoGrande and BoolQ from local parquet files in the HF schema equal the original files", async () => {
  const dir = await Deno.makeTempDir({ prefix: "lowbit-hf-local-" });
  try {
    // ybisk/piqa: {goal, sol1, sol2, label}
    const labels = lines("tasks/piqa/valid-labels.lst");
    const piqa = jsonlFixture("tasks/piqa/valid.jsonl").map((o, i) => ({
      ...o,
      label: Number(labels[i]),
    }));
    const piqaFile = `${dir}/piqa.parquet`;
    await Deno.writeFile(
      piqaFile,
      writeParquet({ goal: "string", sol1: "string", sol2: "string", label: "int64" }, piqa),
    );
    const gotPiqa = await readHfDataset(HF_SCHEMAS.piqa, piqaFile);
    assert.equal(gotPiqa.docs.length, 1838);
    assert.deepEqual(gotPiqa.docs, (await readPiqa(dataDir)).docs);
    assert.equal(gotPiqa.info.path, piqaFile);

    // allenai/winogrande: {sentence, option1, option2, answer}
    const wino = jsonlFixture("tasks/winogrande/dev.jsonl");
    const winoFile = `${dir}/winogrande.parquet`;
    await Deno.writeFile(
      winoFile,
      writeParquet(
        { sentence: "string", option1: "string", option2: "string", answer: "string" },
        wino,
      ),
    );
    const gotWino = await readHfDataset(HF_SCHEMAS.winogrande, winoFile);
    assert.equal(gotWino.docs.length, 1267);
    assert.deepEqual(gotWino.docs, (await readWinogrande(dataDir)).docs);

    // super_glue boolq: {question, passage: "{title} -- {passage}", idx, label}
    const original = JSON.parse(
      Deno.readTextFileSync(sharedPath("data", "tasks", "boolq", "v6_test.json")),
    ) as { question: string; title: string; passage: string; answer: boolean }[];
    const boolq = original.map((o, idx) => ({
      question: o.question,
      passage: `${o.title} -- ${o.passage}`,
      idx,
      label: o.answer ? 1 : 0,
    }));
    const boolqFile = `${dir}/boolq.parquet`;
    await Deno.writeFile(
      boolqFile,
      writeParquet({ question: "string", passage: "string", idx: "int64", label: "int64" }, boolq),
    );
    const gotBoolq = await readHfDataset(HF_SCHEMAS.boolq, boolqFile);
    assert.equal(gotBoolq.docs.length, 3270);
    assert.deepEqual(gotBoolq.docs, (await readBoolq(dataDir)).docs);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

tasks.test("HellaSwag rows in Rowan/hellaswag's schema: lm-eval's process_docs", async () => {
  // The first validation item, as the Hub stores it (before lm-eval's preprocessing).
  const row = {
    where: "hellaswag.parquet: row 1",
    value: {
      activity_label: "Roof shingle removal",
      ctx_a: "A man is sitting on a roof.",
      ctx_b: "he",
      endings: [
        "is using wrap to wrap a pair of skis.",
        "is ripping level tiles off.",
        "is holding a rubik's cube.",
        "starts pulling up roofing on a roof.",
      ],
      label: "3",
    },
  };
  const doc = HF_SCHEMAS.hellaswag.toDoc(row);
  assert.deepEqual(doc, {
    kind: "choices",
    context: "Roof shingle removal: A man is sitting on a roof. He",
    choices: row.value.endings,
    gold: 3,
  });
  // …which is also the first item of llama.cpp's preprocessed file.
  assert.deepEqual(doc, (await readHellaswag(dataDir)).docs[0]);
  // WikiHow artefacts: " [title]" becomes ". ", other brackets go, double spaces collapse.
  assert.equal(
    hellaswagPreprocess("Home and Garden: [header] How to clean a grill [title] Heat the grill. "),
    "Home and Garden: How to clean a grill. Heat the grill.",
  );
  // The test split's empty label is out of range (counted, not scored).
  assert.equal(HF_SCHEMAS.hellaswag.toDoc({ ...row, value: { ...row.value, label: "" } }).gold, -1);
});

Deno.test("BoolQ in google/boolq's schema (answer: bool, no title) and lm-eval's prompt", () => {
  const doc = HF_SCHEMAS.boolq.toDoc({
    where: "boolq.jsonl:1",
    value: { question: "is the sky blue", answer: true, passage: "The sky is blue." },
  });
  assert.deepEqual(doc, {
    kind: "choices",
    context: "The sky is blue.\nQuestion: is the sky blue?\nAnswer:",
    choices: ["no", "yes"],
    gold: 1,
  });
});

Deno.test("bad HF rows: missing column and empty choice list name the row; bad gold kept as -1", async () => {
  // A valid row in allenai/ai2_arc's schema.
  const good = {
    id: "item-0",
    question: "Which gas do plants take in from the air?",
    choices: { text: ["oxygen", "carbon dioxide", "helium", "neon"], label: ["A", "B", "C", "D"] },
    answerKey: "B",
  };
  const dir = await Deno.makeTempDir({ prefix: "lowbit-hf-bad-" });
  try {
    const write = async (name: string, rows: Record<string, unknown>[]) => {
      const path = `${dir}/${name}`;
      await Deno.writeFile(path, writeParquet(ARC_COLUMNS, rows));
      return path;
    };
    const missing = await write("missing.parquet", [good, { ...good, question: null }]);
    await assert.rejects(
      readHfDataset(HF_SCHEMAS.arc_easy, missing),
      (e: unknown) =>
        e instanceof TypeError && e.message.includes(`${missing}: row 2`) &&
        e.message.includes('"question"'),
    );
    const empty = await write("empty.parquet", [good, {
      ...good,
      choices: { text: [], label: [] },
    }]);
    await assert.rejects(
      readHfDataset(HF_SCHEMAS.arc_easy, empty, { skipMalformed: true }),
      (e: unknown) =>
        e instanceof RangeError && e.message.includes(`${empty}: row 2`) &&
        e.message.includes("choices.text") && e.message.includes("empty"),
    );
    const mixed = await write("mixed.parquet", [
      good,
      { ...good, answerKey: "Z" },
      { ...good, question: null },
    ]);
    const r = await readHfDataset(HF_SCHEMAS.arc_easy, mixed, { skipMalformed: true });
    assert.equal(r.docs.length, 2);
    assert.equal(r.docs[1]!.gold, -1);
    assert.equal(r.skipped.skipMalformed, true);
    assert.equal(r.skipped.skippedMalformed, 1);
    assert.match(r.skipped.skippedExamples[0]!, /mixed\.parquet: row 3: .*"question"/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("TASK=SOURCE: only tasks with a schema take a source; an empty source is an error", () => {
  assert.throws(() => getTask("lambada_openai=hf"), /cannot read a dataset source/);
  assert.throws(() => getTask("tinystories=hf"), /cannot read a dataset source.*arc_easy/);
  assert.throws(() => getTask("arc_easy="), /needs a source/);
  assert.throws(() => getTask("arc_easy=hf://models/x/y/z.parquet"), TypeError);
  assert.equal(getTask("gsm8k=hf").id, "gsm8k=hf");
});
