import assert from "node:assert/strict";
import { planMatrix, type RunEvent, runMatrix } from "./runner.ts";
import type { MatrixSpec } from "./matrix.ts";
import { sandbox } from "../testing/sandbox.ts";
import { bundledDataDir, needs } from "../testing/fixtures.ts";
import type { ResultRow } from "../results/row.ts";
import { wasmKernels } from "../kernels/wasm/mod.ts";

const stories = await needs("hf-mirror");

const dataDir = bundledDataDir();
const cli = new URL("../cli.ts", import.meta.url).pathname;

async function readJsonl(path: string): Promise<ResultRow[]> {
  const text = await Deno.readTextFile(path);
  return text.trim().split("\n").map((l) => JSON.parse(l));
}

stories.test("runMatrix(): unsupported and failing cells become rows, never stop the matrix; reruns skip finished cells", async () => {
  await using sb = await sandbox("lowbit-run-");
  const short = `${sb.dir}/short.txt`;
  await Deno.writeTextFile(short, "Too short for one window of 511 tokens.");
  const spec: MatrixSpec = {
    id: "t",
    models: ["stories260K"],
    methods: ["rtn"],
    bits: [2, 9],
    groups: ["channel", 5],
    tasks: ["tinystories", `file:${short}`],
    symmetric: false,
    limit: 1,
  };
  const out = `${sb.dir}/out`;
  const rows = await runMatrix(spec, { outDir: out, dataDir, env: sb.env });
  const failed = rows.filter((r) => r.task.id.startsWith("file:"));
  assert.equal(failed.length, 5);
  assert.deepEqual(failed.map((r) => r.status), [
    "failed",
    "failed",
    "failed",
    "unsupported",
    "unsupported",
  ]);
  assert.match(failed[0]!.error!, /tokens do not fill one window of 511 tokens/);
  const stories = rows.filter((r) => r.task.id === "tinystories");
  const byLabel = new Map(stories.map((r) => [r.quant.label, r]));
  assert.equal(rows.length, 10);
  assert.equal(byLabel.get("FP32")!.status, "ok");
  assert.equal(byLabel.get("W2A16")!.status, "ok");
  assert.equal(byLabel.get("W2A16g5")!.status, "ok");
  assert.equal(byLabel.get("W9A16")!.status, "unsupported");
  assert.equal(byLabel.get("W9A16g5")!.status, "unsupported");
  // The W2 row carries provenance: hashes of the model files, the dataset, the protocol.
  const w2 = byLabel.get("W2A16")!;
  assert.deepEqual(w2.model.files.map((f) => f.sha256), [
    "b0a507e7ad0f626624f17112325e66691f9076d622e1d3274d103d00299f2696",
    "037cb335abb25d1fa9e8ecae30ed2a3a8ace9302862ebcdc05d51a6bbb10c312",
  ]);
  assert.equal(
    w2.task.dataset!.bytes,
    (await Deno.stat(`${dataDir}/text/tinystories/tinystories_val_head.txt`)).size,
  );
  assert.equal(w2.task.protocol!.windows, 1);
  assert.ok(w2.metrics.find((m) => m.metric === "kl")!.value > 0);
  // 2-bit codes + float32 scale + 8-bit zero per row of 64 or 172 columns.
  assert.ok(w2.quant.bitsPerWeight! > 2 && w2.quant.bitsPerWeight! < 3);
  assert.equal((await readJsonl(`${out}/results.jsonl`)).length, 10);
  const csv = (await Deno.readTextFile(`${out}/results.csv`)).trim().split("\r\n");
  assert.ok(csv[0]!.startsWith("cellId,status,model,method"));
  assert.equal(csv.length, 1 + 3 * 4 + 7); // header, 4 metrics per ok row, 1 line per other row

  // Rerun: ok and unsupported cells are skipped, the failed one is retried.
  const events: RunEvent[] = [];
  const again = await runMatrix(spec, {
    outDir: out,
    dataDir,
    env: sb.env,
    onEvent: (e) => events.push(e),
  });
  const done = events.filter((e) => e.type === "cell-done");
  assert.deepEqual(done.map((e) => e.skipped), rows.map((r) => r.status !== "failed"));
  assert.deepEqual(again.map((r) => r.cellId), rows.map((r) => r.cellId));
  assert.equal((await readJsonl(`${out}/results.jsonl`)).length, 10);
});

stories.test("runMatrix(): unknown ids fail before any compute, listing the valid ones", async () => {
  await using sb = await sandbox("lowbit-run-");
  const base: MatrixSpec = {
    id: "t",
    models: ["stories260K"],
    methods: ["rtn"],
    bits: [4],
    groups: ["channel"],
    tasks: ["tinystories"],
    symmetric: false,
  };
  const opts = { outDir: `${sb.dir}/out`, dataDir, env: sb.env };
  await assert.rejects(
    runMatrix({ ...base, methods: ["rnt"] }, opts),
    /Cannot find method "rnt". Did you mean "rtn"\? Available: affinequant, awq, crossquant, eaquant, flexround, fp, gptq, quarot, rtn, smoothquant/,
  );
  await assert.rejects(
    runMatrix({ ...base, tasks: ["tinystory"] }, opts),
    /Cannot find task "tinystory". Did you mean "tinystories"/,
  );
  await assert.rejects(
    runMatrix({ ...base, models: ["stories260k"] }, opts),
    /Cannot find model "stories260k"/,
  );
  assert.equal(sb.mirror.requests.length, 0, "nothing was downloaded");
  await assert.rejects(Deno.stat(`${sb.dir}/out`), Deno.errors.NotFound);
});

stories.test("a killed bench run leaves no partial row and resumes without duplicates", async () => {
  await using sb = await sandbox("lowbit-run-");
  const out = `${sb.dir}/out`;
  const args = [
    "run",
    "-A",
    cli,
    "--matrix",
    "w2-w8",
    "--methods",
    "rtn",
    "--limit",
    "3",
    "--out",
    out,
    "--data",
    dataDir,
    "--quiet",
  ];
  const env = { ...sb.vars, NO_COLOR: "1" };
  const child = new Deno.Command(Deno.execPath(), { args, env, stdout: "null", stderr: "null" })
    .spawn();
  // Wait for at least three finished cells, then kill the process without warning.
  const deadline = Date.now() + 120_000;
  let finished = 0;
  while (Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 100));
    try {
      finished = [...Deno.readDirSync(`${out}/cells`)].filter((e) =>
        e.name.endsWith(".json")
      ).length;
    } catch {
      finished = 0;
    }
    if (finished >= 3) break;
  }
  child.kill("SIGKILL");
  await child.status;
  assert.ok(finished >= 3, "the run produced rows before it was killed");
  const before = [...Deno.readDirSync(`${out}/cells`)].filter((e) => e.name.endsWith(".json"));
  assert.ok(before.length < 13, "killed before the end");
  for (const e of before) JSON.parse(await Deno.readTextFile(`${out}/cells/${e.name}`)); // complete JSON

  const resumed = await new Deno.Command(Deno.execPath(), {
    args,
    env,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stderr = new TextDecoder().decode(resumed.stderr);
  assert.equal(resumed.code, 0, stderr);
  const rows = await readJsonl(`${out}/results.jsonl`);
  assert.equal(rows.length, 13);
  assert.equal(new Set(rows.map((r) => r.cellId)).size, 13);
  assert.ok(rows.every((r) => r.status === "ok"));
  const cells = [...Deno.readDirSync(`${out}/cells`)].filter((e) => e.name.endsWith(".json"));
  assert.equal(cells.length, 13);
  // The summary table is on stdout.
  const stdout = new TextDecoder().decode(resumed.stdout);
  assert.match(stdout, /\| stories260K \| tinystories:eval \(3 win\) \| rtn +\| W2A16g32/);
});

stories.test("cli: bad flags and ids exit with code 2 and a message naming what is valid", async () => {
  await using sb = await sandbox("lowbit-run-");
  let env: Record<string, string> = { HF_HUB_OFFLINE: "1" };
  const run = async (...args: string[]) => {
    const o = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", cli, ...args],
      env,
      stdout: "piped",
      stderr: "piped",
    }).output();
    return { code: o.code, err: new TextDecoder().decode(o.stderr) };
  };
  env = { ...sb.vars, LOWBIT_DATA: dataDir };
  const big = await run("--methods", "gptq", "--calib-samples", "100000", "--dry-run");
  env = { HF_HUB_OFFLINE: "1" };
  assert.equal(big.code, 2, big.err);
  assert.match(big.err, /needs 25500000 tokens, more than the \d+ tokens of "tinystories:calib"/);
  const a = await run("--methods", "gptqq", "--dry-run");
  assert.equal(a.code, 2);
  assert.match(
    a.err,
    /Cannot find method "gptqq".*Available: affinequant, awq, crossquant, eaquant, flexround, fp, gptq, quarot, rtn, smoothquant/,
  );
  const b = await run("--matrix", "w2-w9");
  assert.equal(b.code, 2);
  assert.match(b.err, /Cannot find matrix preset "w2-w9". Did you mean "w2-w8"/);
  const c = await run("--bitz", "4");
  assert.equal(c.code, 2);
  assert.match(c.err, /bitz/);
  const d = await run("--bits", "4-2");
  assert.equal(d.code, 2);
  assert.match(d.err, /range end below start/);
});

stories.test("GPTQ rows: the same seed gives identical rows with the offsets recorded; another seed other offsets", async () => {
  await using sb = await sandbox("lowbit-run-");
  const spec: MatrixSpec = {
    id: "g",
    models: ["stories260K"],
    methods: ["gptq", "gptq:actOrder=true"],
    bits: [3],
    groups: [32],
    tasks: ["tinystories:eval"],
    symmetric: false,
    limit: 2,
    calibration: { samples: 8, seqLen: 64 },
  };
  const run = (s: MatrixSpec, out: string) =>
    runMatrix(s, { outDir: `${sb.dir}/${out}`, dataDir, env: sb.env });
  const a = await run(spec, "a");
  const b = await run(spec, "b");
  const c = await run({ ...spec, calibration: { ...spec.calibration, seed: 1 } }, "c");
  const stable = (r: ResultRow) => ({
    ...r,
    wallMs: 0,
    ...(r.quantizeMs !== undefined ? { quantizeMs: 0 } : {}),
    finishedAt: "",
    env: null,
  });
  assert.deepEqual(a.map(stable), b.map(stable));
  // Quantization time is recorded for quantized cells only, within the cell's wall time.
  assert.equal(a[0]!.quantizeMs, undefined);
  for (const r of a.slice(1)) assert.ok(r.quantizeMs! > 0 && r.quantizeMs! <= r.wallMs);
  const [fp, g, ao] = a;
  assert.equal(fp!.calibration, undefined, "the FP cell has no calibration");
  assert.ok(g!.status === "ok" && ao!.status === "ok");
  assert.equal(g!.method.spec, "gptq");
  assert.equal(ao!.method.spec, "gptq:actOrder=true");
  assert.equal(ao!.method.params.actOrder, true);
  const cal = g!.calibration!;
  assert.equal(cal.source, "tinystories");
  assert.equal(cal.dataset.split?.name, "calib");
  assert.equal(cal.offsets.length, 8);
  assert.equal(g!.task.dataset?.split?.name, "eval");
  assert.deepEqual(Object.keys(g!.diagnostics!.relErrorByKind).sort(), [
    "down",
    "gate",
    "k",
    "o",
    "q",
    "up",
    "v",
  ]);
  // Act-order groups are stored with their column map, which costs storage bits.
  assert.ok(ao!.quant.bitsPerWeight! > g!.quant.bitsPerWeight!);
  const cg = c[1]!;
  assert.notDeepEqual(cg.calibration!.offsets, cal.offsets);
  assert.notEqual(cg.cellId, g!.cellId);
  assert.equal(c[0]!.cellId, fp!.cellId, "the FP cell does not depend on calibration");
});

stories.test("runMatrix(): a malformed dataset line fails the cell naming file and line; --skip-malformed counts it in the row", async () => {
  await using sb = await sandbox("lowbit-run-skip-");
  // ARC rows in allenai/ai2_arc's schema: a good item, an answerKey naming no choice, a broken
  // line, and a good item with digit labels.
  const item = (answerKey: string, label = ["A", "B"]) =>
    JSON.stringify({ question: "Is it?", choices: { text: ["yes", "no"], label }, answerKey });
  const file = `${sb.dir}/arc.jsonl`;
  await Deno.writeTextFile(
    file,
    `${item("A")}\n${item("Z")}\n{"question": oops\n${item("2", ["1", "2"])}\n`,
  );
  const spec: MatrixSpec = {
    id: "t",
    models: ["stories260K"],
    methods: [],
    bits: [],
    groups: ["channel"],
    tasks: [`arc_easy=${file}`],
    symmetric: false,
  };
  const strict = await runMatrix(spec, { outDir: `${sb.dir}/strict`, dataDir, env: sb.env });
  assert.equal(strict.length, 1);
  assert.equal(strict[0]!.status, "failed");
  assert.match(strict[0]!.error!, new RegExp(`SyntaxError: ${file}:3: not valid JSON`));

  const skipping = await runMatrix(spec, {
    outDir: `${sb.dir}/skip`,
    dataDir,
    env: sb.env,
    skipMalformed: true,
  });
  const row = skipping[0]!;
  assert.equal(row.status, "ok");
  assert.equal(row.task.id, `arc_easy=${file}`);
  assert.notEqual(row.cellId, strict[0]!.cellId);
  const p = row.task.protocol!;
  assert.equal(p.dataFormat, "hf");
  assert.equal(p.source, file);
  assert.equal(p.skipMalformed, true);
  assert.equal(p.skippedMalformed, 1);
  assert.deepEqual(p.skippedExamples, [`${file}:3: not valid JSON`]);
  assert.equal(p.docs, 3);
  assert.equal(p.invalidGold, 1);
  assert.deepEqual(p.invalidGoldDocs, [1]);
  assert.equal(p.scored, 2);
  assert.deepEqual(row.metrics.map((m) => m.n), [2, 2]);
  assert.equal(row.task.dataset!.path, file);
});

stories.test("cli: --tasks TASK=FILE with --skip-malformed records the skipped lines in every row", async () => {
  await using sb = await sandbox("lowbit-cli-skip-");
  const file = `${sb.dir}/gsm8k.jsonl`;
  const q = (answer: string) => JSON.stringify({ question: "1 + 1?", answer });
  await Deno.writeTextFile(file, `${q("1 + 1 = 2\n#### 2")}\nnot json\n${q("no final answer")}\n`);
  const out = `${sb.dir}/out`;
  const args = [
    "run",
    "-A",
    cli,
    "--methods",
    "rtn",
    "--bits",
    "4",
    "--group",
    "channel",
    "--tasks",
    `gsm8k=${file}`,
    "--skip-malformed",
    "--threads",
    "1",
    "--out",
    out,
    "--data",
    dataDir,
    "--quiet",
  ];
  const r = await new Deno.Command(Deno.execPath(), {
    args,
    env: sb.vars,
    stdout: "piped",
    stderr: "piped",
  })
    .output();
  assert.equal(r.code, 0, new TextDecoder().decode(r.stderr));
  const rows = await readJsonl(`${out}/results.jsonl`);
  assert.deepEqual(rows.map((x) => x.quant.label), ["FP32", "W4A16"]);
  for (const row of rows) {
    assert.equal(row.status, "ok");
    assert.equal(row.task.protocol!.skippedMalformed, 2);
    assert.equal(row.task.protocol!.docs, 1);
    assert.equal(row.task.dataset!.sha256, row.task.protocol!.datasetSha256);
  }
  const help = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", cli, "--help"],
    stdout: "piped",
  })
    .output();
  const text = new TextDecoder().decode(help.stdout);
  assert.match(text, /--skip-malformed/);
  assert.match(text, /TASK=SOURCE/);
});

stories.test("AWQ rows: each method's own calibration (AWQ's pileval-awq recipe, GPTQ's windows), AWQ's quantizer convention; a matrix recipe overrides", async () => {
  await using sb = await sandbox("lowbit-run-awq-");
  const spec: MatrixSpec = {
    id: "a",
    models: ["stories260K"],
    methods: ["awq", "gptq", "awq+gptq"],
    bits: [4],
    groups: ["channel"],
    tasks: ["tinystories:eval"],
    symmetric: false,
    limit: 2,
    calibration: { samples: 16, seqLen: 64 },
  };
  const kernels = await wasmKernels();
  const rows = await runMatrix(spec, { outDir: `${sb.dir}/out`, dataDir, env: sb.env, kernels });
  const [fp, a, g, ag] = rows;
  assert.deepEqual(rows.map((r) => r.status), ["ok", "ok", "ok", "ok"]);
  assert.equal(fp!.calibration, undefined);
  // AWQ: its recipe and seed under the matrix's sizes; its quantizer keeps zero out of range.
  const ac = a!.calibration!;
  assert.equal(ac.recipe, "pileval-awq");
  assert.deepEqual([ac.samples, ac.seqLen, ac.seed], [16, 64, 42]);
  assert.equal(ac.protocol.blocks, ac.offsets.length);
  assert.equal((ac.protocol.keptDocuments as number[]).length, 16);
  assert.equal(a!.method.taxonomy, "salience");
  assert.equal(a!.quant.rangeIncludesZero, false);
  assert.ok(a!.notes.some((n) => n.includes("float32 arithmetic")));
  const t = a!.diagnostics!.statTotals;
  assert.ok(t.scaleLoss! <= t.scaleLossRtn!);
  // GPTQ: the suite's windows, zero in range.
  const gc = g!.calibration!;
  assert.equal(gc.recipe, undefined);
  assert.deepEqual([gc.samples, gc.seqLen, gc.seed], [16, 64, 0]);
  assert.equal(g!.quant.rangeIncludesZero, true);
  // The chain: AWQ's calibration feeds both; GPTQ's grid rounds the weights.
  assert.equal(ag!.calibration!.recipe, "pileval-awq");
  assert.equal(ag!.calibration!.tokensSha256, ac.tokensSha256);
  assert.equal(ag!.quant.rangeIncludesZero, true);
  assert.equal(ag!.method.id, "awq+gptq");
  // A matrix-level recipe applies to every method.
  const { cells } = await planMatrix(
    { ...spec, calibration: { ...spec.calibration, recipe: "windows" } },
    { dataDir, env: sb.env, kernels },
  );
  const awqCell = cells.find((c) => c.method.id === "awq")!;
  assert.equal(awqCell.calibration!.spec.recipe, "windows");
  assert.equal(awqCell.calibration!.spec.seed, 42, "AWQ's seed, the matrix sets none");
  assert.equal(awqCell.calibration!.windows[0]![0], 1, "BOS windows");
  assert.notEqual(awqCell.cellId, a!.cellId);
});

stories.test("cli: datasets come from data/ in the repository unless --data or LOWBIT_DATA is given; a dataset that is not bundled exits 2 naming them, with no row", async () => {
  await using sb = await sandbox("lowbit-cli-data-");
  // The child sees this process's environment without LOWBIT_DATA, plus `env`.
  const { LOWBIT_DATA: _, ...inherited } = Deno.env.toObject();
  const run = async (env: Record<string, string>, ...args: string[]) => {
    const o = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        cli,
        "--methods",
        "rtn",
        "--bits",
        "4",
        "--group",
        "channel",
        "--quiet",
        ...args,
      ],
      env: { ...inherited, ...sb.vars, ...env },
      clearEnv: true,
      stdout: "piped",
      stderr: "piped",
    }).output();
    const dec = new TextDecoder();
    return { code: o.code, out: dec.decode(o.stdout), err: dec.decode(o.stderr) };
  };
  const ids = (stdout: string) =>
    stdout.trim().split("\n").filter((l) => / stories260K /.test(l)).map((l) => l.split(" ")[0]);
  // The committed copy, and its checksum from the shared fixtures' SHA256SUMS.
  const bundled = new URL("../data/text/tinystories/tinystories_val_head.txt", import.meta.url);
  const sha = "5fc1fb0113df62b567fb271806cd645ce8d75f59c58ca0b764c03d3b6ff34ca6";

  // No --data and no LOWBIT_DATA: the bundled file.
  const out = `${sb.dir}/default`;
  const def = await run({}, "--tasks", "tinystories:eval", "--limit", "1", "--out", out);
  assert.equal(def.code, 0, def.err);
  const rows = await readJsonl(`${out}/results.jsonl`);
  assert.equal(rows.length, 2);
  for (const r of rows) {
    assert.equal(r.status, "ok");
    // Recorded below the data root: no directory of this machine in the row.
    assert.equal(r.task.dataset!.path, "text/tinystories/tinystories_val_head.txt");
    assert.equal(r.task.dataset!.sha256, sha);
  }

  // The same bytes elsewhere (--data or LOWBIT_DATA): the same cell ids and rows.
  const other = `${sb.dir}/my data`;
  await Deno.mkdir(`${other}/text/tinystories`, { recursive: true });
  await Deno.copyFile(bundled, `${other}/text/tinystories/tinystories_val_head.txt`);
  const plan = ["--tasks", "tinystories:eval", "--limit", "1", "--dry-run"];
  const byFlag = await run({}, ...plan, "--data", other);
  const byEnv = await run({ LOWBIT_DATA: other }, ...plan);
  assert.equal(byFlag.code, 0, byFlag.err);
  assert.equal(byEnv.code, 0, byEnv.err);
  assert.deepEqual(ids(byFlag.out), rows.map((r) => r.cellId));
  assert.deepEqual(ids(byEnv.out), rows.map((r) => r.cellId));
  // An empty LOWBIT_DATA (an unset repository variable in a workflow) means unset.
  const byEmpty = await run({ LOWBIT_DATA: "" }, ...plan);
  assert.equal(byEmpty.code, 0, byEmpty.err);
  assert.deepEqual(ids(byEmpty.out), rows.map((r) => r.cellId));
  const copied = await run(
    { LOWBIT_DATA: other },
    "--tasks",
    "tinystories:eval",
    "--limit",
    "1",
    "--out",
    `${sb.dir}/copied`,
  );
  assert.equal(copied.code, 0, copied.err);
  const moved = await readJsonl(`${sb.dir}/copied/results.jsonl`);
  assert.equal(moved[0]!.task.dataset!.path, "text/tinystories/tinystories_val_head.txt");
  assert.ok(!JSON.stringify(moved).includes(other), "a row holds the data directory's path");
  assert.equal(moved[0]!.task.dataset!.sha256, sha);
  assert.deepEqual(moved.map((r) => r.metrics), rows.map((r) => r.metrics));

  // A data directory replaces data/: TinyStories missing there is an error, not a fallback.
  const empty = `${sb.dir}/empty`;
  await Deno.mkdir(empty);
  const noStories = await run({}, ...plan, "--data", empty);
  assert.equal(noStories.code, 2);
  assert.match(noStories.err, /"tinystories:eval" not found at .*empty\/text\/tinystories\//);

  // Datasets that do not ship: exit 2 before any compute, naming where they can come from.
  for (
    const [task, rel, hub] of [
      ["wikitext2", "text/wikitext2/wiki.test.raw", false],
      ["arc_easy", "tasks/llm-foundry/arc_easy.jsonl", true],
      ["gsm8k", "tasks/gsm8k/test.jsonl", true],
    ] as const
  ) {
    const o = `${sb.dir}/missing-${task}`;
    const r = await run({}, "--tasks", task, "--limit", "1", "--out", o);
    assert.equal(r.code, 2, `${task}: ${r.err}`);
    assert.ok(r.err.includes(rel), `${task}: names ${rel}: ${r.err}`);
    assert.match(r.err, /--data DIR or LOWBIT_DATA=DIR/);
    if (hub) assert.match(r.err, new RegExp(`${task}.*--tasks TASK=hf or TASK=hf://datasets/`));
    await assert.rejects(Deno.stat(o), Deno.errors.NotFound, `${task}: no results directory`);
  }
});
