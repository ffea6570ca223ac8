import assert from "node:assert/strict";
import { runMatrix } from "../bench/runner.ts";
import type { MatrixSpec } from "../bench/matrix.ts";
import { refKernels } from "../kernels/ref/mod.ts";
import { sandbox } from "../testing/sandbox.ts";
import { bundledDataDir, needs } from "../testing/fixtures.ts";
import type { ResultRow } from "./row.ts";
import { mergeMain } from "./merge_cli.ts";

const stories = await needs("hf-mirror");

const dataDir = bundledDataDir();

async function readJsonl(path: string): Promise<ResultRow[]> {
  const text = await Deno.readTextFile(path);
  return text.trim().split("\n").map((l) => JSON.parse(l));
}

/** A row without what legitimately differs between runs (timing, time stamp, environment). */
function comparable(
  r: ResultRow,
): Omit<ResultRow, "wallMs" | "quantizeMs" | "finishedAt" | "env"> {
  const { wallMs: _w, quantizeMs: _q, finishedAt: _f, env: _e, ...rest } = r;
  return rest;
}

function capture() {
  const out: string[] = [];
  const err: string[] = [];
  return { out, err, io: { out: (t: string) => out.push(t), err: (t: string) => err.push(t) } };
}

const SPEC: MatrixSpec = {
  id: "merge-t",
  models: ["stories260K"],
  methods: ["rtn"],
  bits: [4, 8],
  groups: ["channel", 32],
  tasks: ["tinystories:eval"],
  symmetric: false,
  limit: 1,
};

stories.test("results:merge: 3 shards merged give exactly the rows of the unsharded run; conflicts and empty inputs are refused", async () => {
  await using sb = await sandbox("lowbit-merge-");
  const base = { dataDir, env: sb.env, kernels: refKernels };
  const full = await runMatrix(SPEC, { ...base, outDir: `${sb.dir}/full` });
  assert.equal(full.length, 5); // FP32 + W4, W8 × channel, g32
  const shardDirs: string[] = [];
  for (let index = 0; index < 3; index++) {
    const outDir = `${sb.dir}/shard-${index}`;
    const rows = await runMatrix(SPEC, { ...base, outDir, shard: { index, count: 3 } });
    assert.ok(rows.length >= 1 && rows.length <= 2);
    shardDirs.push(outDir);
  }

  const merged = `${sb.dir}/merged`;
  const c = capture();
  assert.equal(await mergeMain(["--out", merged, ...shardDirs], c.io), 0, c.err.join("\n"));
  assert.match(c.out.join("\n"), /5 cells into .*merged \(5 rows read, 0 identical duplicates/);
  const want = (await readJsonl(`${sb.dir}/full/results.jsonl`)).map(comparable);
  const got = (await readJsonl(`${merged}/results.jsonl`)).map(comparable);
  const byId = (rows: ReturnType<typeof comparable>[]) =>
    new Map(rows.map((r) => [r.cellId, r] as const));
  assert.deepEqual(byId(got), byId(want));
  assert.deepEqual(got.map((r) => r.cellId), want.map((r) => r.cellId), "same stable order");
  const cells = [...Deno.readDirSync(`${merged}/cells`)].map((e) => e.name).sort();
  assert.deepEqual(cells, want.map((r) => `${r.cellId}.json`).sort());
  const csv = (await Deno.readTextFile(`${merged}/results.csv`)).trim().split("\r\n");
  assert.equal(csv.length, 1 + 5 * 4, "header + 4 metrics per row");

  // Identical duplicates (a shard given twice, the unsharded run on top) merge into one row each;
  // merging again into the same directory is a no-op.
  const again = capture();
  assert.equal(
    await mergeMain(["--out", merged, ...shardDirs, shardDirs[0]!, `${sb.dir}/full`], again.io),
    0,
    again.err.join("\n"),
  );
  assert.match(again.out.join("\n"), /5 cells .*\(17 rows read, 12 identical duplicates/);
  assert.deepEqual((await readJsonl(`${merged}/results.jsonl`)).map(comparable), got);

  // A conflicting duplicate: the same cell with another perplexity in a copy of shard 1.
  const bad = `${sb.dir}/bad`;
  await Deno.mkdir(`${bad}/cells`, { recursive: true });
  const victim = (await readJsonl(`${shardDirs[1]}/results.jsonl`))[0]!;
  const changed = {
    ...victim,
    metrics: victim.metrics.map((m) => m.metric === "ppl" ? { ...m, value: m.value * 1.05 } : m),
  };
  await Deno.writeTextFile(`${bad}/cells/${victim.cellId}.json`, JSON.stringify(changed));
  const conflictOut = `${sb.dir}/conflict`;
  const k = capture();
  assert.equal(await mergeMain(["--out", conflictOut, ...shardDirs, bad], k.io), 2);
  const msg = k.err.join("\n");
  assert.match(msg, new RegExp(`conflicting duplicate: cell ${victim.cellId} \\(stories260K`));
  assert.ok(msg.includes(`${shardDirs[1]}/cells/${victim.cellId}.json`), msg);
  assert.ok(msg.includes(`${bad}/cells/${victim.cellId}.json`), msg);
  assert.match(msg, /metric ppl/);
  await assert.rejects(Deno.stat(conflictOut), Deno.errors.NotFound, "nothing written");

  // A different status is a conflict too.
  await Deno.writeTextFile(
    `${bad}/cells/${victim.cellId}.json`,
    JSON.stringify({ ...victim, status: "failed", error: "boom", metrics: [] }),
  );
  const s = capture();
  assert.equal(await mergeMain(["--out", conflictOut, bad, shardDirs[1]!], s.io), 2);
  assert.match(s.err.join("\n"), /status failed vs ok/);
});

Deno.test("results:merge: empty or missing inputs, newer schema versions and bad arguments exit 2", async () => {
  const dir = await Deno.makeTempDir({ prefix: "lowbit-merge-" });
  try {
    const run = async (...args: string[]) => {
      const c = capture();
      const code = await mergeMain(args, c.io);
      return { code, err: c.err.join("\n") };
    };
    await Deno.mkdir(`${dir}/empty/cells`, { recursive: true });
    let r = await run("--out", `${dir}/o`, `${dir}/empty`);
    assert.equal(r.code, 2);
    assert.match(r.err, /empty: no result rows \(expected cells\/\*\.json or results\.jsonl/);
    r = await run("--out", `${dir}/o`, `${dir}/nope`);
    assert.equal(r.code, 2);
    assert.match(r.err, /nope: no such directory/);
    r = await run("--out", `${dir}/o`);
    assert.equal(r.code, 2);
    assert.match(r.err, /no input directories given/);
    r = await run(`${dir}/empty`);
    assert.equal(r.code, 2);
    assert.match(r.err, /--out is required/);
    r = await run("--out", `${dir}/o`, "--bogus", `${dir}/empty`);
    assert.equal(r.code, 2);
    assert.match(r.err, /unknown argument --bogus/);

    await Deno.mkdir(`${dir}/newer/cells`, { recursive: true });
    await Deno.writeTextFile(
      `${dir}/newer/cells/abc.json`,
      JSON.stringify({ schemaVersion: 99, cellId: "abc" }),
    );
    r = await run("--out", `${dir}/o`, `${dir}/newer`);
    assert.equal(r.code, 2);
    assert.match(r.err, /schemaVersion 99, newer than/);
    await assert.rejects(Deno.stat(`${dir}/o`), Deno.errors.NotFound, "nothing written");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
