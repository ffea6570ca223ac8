/**
 * `deno task bench` as users run it, with the permissions of the `bench` task in deno.json:
 * nonsense flags and unwritable `--out` exit 2 before any compute; one run at a time writes a
 * results directory; edited cell files are recomputed.
 */
import assert from "node:assert/strict";
import denoJson from "../deno.json" with { type: "json" };
import { sandbox } from "../testing/sandbox.ts";
import { bundledDataDir, needs } from "../testing/fixtures.ts";
import { lockResultsDir } from "../results/lock.ts";
import type { ResultRow } from "../results/row.ts";

const stories = await needs("hf-mirror");
const cli = new URL("../cli.ts", import.meta.url).pathname;
const dataDir = bundledDataDir();

/** The `--allow-*` flags of the bench task. */
const PERMISSIONS = denoJson.tasks.bench.command.split(" ").filter((a) => a.startsWith("--allow"));

/** Two cells: FP32 and RTN W4 per channel, one TinyStories window each. */
const TINY = [
  "--model",
  "stories260K",
  "--methods",
  "rtn",
  "--bits",
  "4",
  "--group",
  "channel",
  "--limit",
  "1",
  "--tasks",
  "tinystories:eval",
  "--backend",
  "ts",
  "--threads",
  "1",
  "--data",
  dataDir,
];

/** A running `deno task bench`, its stderr collected as it comes. */
function spawnBench(env: Record<string, string>, args: string[]) {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", ...PERMISSIONS, cli, ...args],
    env: { ...env, NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let err = "";
  const reading = (async () => {
    for await (const chunk of child.stderr.pipeThrough(new TextDecoderStream())) err += chunk;
  })();
  const output = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let out = "";
  const readingOut = (async () => {
    for (;;) {
      const { value, done } = await output.read();
      if (done) return;
      out += value;
    }
  })();
  return {
    child,
    stderr: () => err,
    /** Resolves once stderr matches `re` (rejects if the process ends first). */
    async waitFor(re: RegExp): Promise<void> {
      const deadline = Date.now() + 60_000;
      let ended = false;
      child.status.then(() => (ended = true));
      while (!re.test(err)) {
        if (ended) throw new Error(`ended without ${re}: ${err}`);
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${re}: ${err}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    },
    async done(): Promise<{ code: number; err: string; out: string }> {
      const { code } = await child.status;
      await reading;
      await readingOut;
      return { code, err, out };
    },
  };
}

const runBench = (env: Record<string, string>, args: string[]) => spawnBench(env, args).done();

async function exists(path: string): Promise<boolean> {
  return await Deno.stat(path).then(() => true, () => false);
}

async function readJsonl(path: string): Promise<ResultRow[]> {
  return (await Deno.readTextFile(path)).trim().split("\n").map((l) => JSON.parse(l));
}

stories.test("cli: nonsense flags and an unwritable --out exit 2 naming the flag and what is allowed, before any compute", async () => {
  await using sb = await sandbox("lowbit-flags-");
  const out = `${sb.dir}/out`;
  const cases: [string[], RegExp][] = [
    [
      ["--group", "-3"],
      /--group: Cannot parse group "-3": expected "channel", "tensor" or a positive number of columns/,
    ],
    [["--group", "channel,0"], /--group: Cannot parse group "0"/],
    [["--limit", "-1"], /--limit must be a positive integer, got "-1"/],
    [["--limit", "0"], /--limit must be a positive integer, got "0"/],
    [["--context", "-5"], /--context must be an integer ≥ 2, got "-5"/],
    [["--context", "1"], /--context must be an integer ≥ 2, got "1"/],
    [["--bits", "-3"], /--bits: Cannot parse bits "-3": .*each in 2–8/],
    [["--abits", "17"], /--abits 17 is outside 2–16/],
    [["--threads", "-2"], /--threads must be a positive integer, got "-2"/],
    [["--kernel-threads", "0"], /--kernel-threads must be a positive integer, got "0"/],
    [["--shard", "3/3"], /--shard must be I\/N with 0 ≤ I < N \(e\.g\. 0\/4\), got "3\/3"/],
    [["--seed", "-1"], /--seed must be an integer ≥ 0, got "-1"/],
    [["--alpha", "-0.5"], /--alpha values must be in \[0, 1\], got "-0.5"/],
    [
      ["--calib-tokens", `${sb.dir}/ids.json`, "--calib-samples", "4"],
      /--calib-tokens gives the calibration windows; it cannot be combined with --calib-samples/,
    ],
    [["--calib-tokens", `${sb.dir}/none.npy`], /none\.npy: cannot read the calibration token file/],
    [["--calib-tokens", `${sb.dir}/ragged.json`], /ragged\.json: window 1 has 1 tokens/],
  ];
  await Deno.writeTextFile(`${sb.dir}/ids.json`, "[[1, 2, 3]]");
  await Deno.writeTextFile(`${sb.dir}/ragged.json`, "[[1, 2], [3]]");
  for (const [flag, expected] of cases) {
    const r = await runBench(sb.vars, [...TINY, ...flag, "--out", out, "--quiet"]);
    assert.equal(r.code, 2, `${flag.join(" ")}: ${r.err}`);
    assert.match(r.err, expected, flag.join(" "));
    assert.doesNotMatch(r.err, /ambiguous/);
    assert.equal(await exists(out), false, `${flag.join(" ")} made ${out}`);
  }
  // --out where no directory can be: Deno's own paths, and below a regular file.
  const file = `${sb.dir}/file`;
  await Deno.writeTextFile(file, "");
  const outs: [string, RegExp][] = [
    [
      "/proc/self/nope",
      /^error: --out \/proc\/self\/nope: cannot write the results directory: Deno does not let this command write there/m,
    ],
    [
      `${file}/out`,
      new RegExp(
        `^error: --out ${file}/out: cannot write the results directory: Not a directory \\(os error 20\\)`,
        "m",
      ),
    ],
  ];
  for (const [dir, expected] of outs) {
    const r = await runBench(sb.vars, [...TINY, "--out", dir, "--quiet"]);
    assert.equal(r.code, 2, r.err);
    assert.match(r.err, expected);
    assert.doesNotMatch(r.err, /--allow-all/);
  }
  assert.equal(sb.mirror.requests.length, 0, "nothing was downloaded");
});

stories.test("cli: one run per --out: a second exits 2 naming the holder; --wait runs after it and reuses its cells; a stale lock is taken over", async () => {
  await using sb = await sandbox("lowbit-lock-cli-");
  const out = `${sb.dir}/out`;
  const args = [...TINY, "--out", out];
  // This process holds the directory, as a running bench would.
  const held = await lockResultsDir(out, { signals: false });
  const refused = await runBench(sb.vars, [...args, "--quiet"]);
  assert.equal(refused.code, 2, refused.err);
  assert.match(
    refused.err,
    new RegExp(
      `error: results directory ${out} is in use by another run \\(pid ${Deno.pid} on host ` +
        `${Deno.hostname()}, started ${held.holder.startedAt.replace(/[.]/g, "\\.")}; lock file ` +
        `${out}/\\.lock\\)`,
    ),
  );
  assert.match(refused.err, /Pass --wait/);
  assert.equal(await exists(`${out}/cells`), false, "the refused run wrote cells");

  // Two waiting runs: whichever gets the directory first computes both cells, the other none.
  const a = spawnBench(sb.vars, [...args, "--wait"]);
  const b = spawnBench(sb.vars, [...args, "--wait"]);
  const waiting = new RegExp(`note: waiting for ${out}: in use by pid ${Deno.pid} `);
  await a.waitFor(waiting);
  await b.waitFor(waiting);
  assert.equal(await exists(`${out}/cells`), false, "a waiting run wrote cells");
  held.release();
  const [ra, rb] = [await a.done(), await b.done()];
  assert.equal(ra.code, 0, ra.err);
  assert.equal(rb.code, 0, rb.err);
  const plans = [ra.err, rb.err].map((e) => /^2 cells, (\d) to run, (\d) already done$/m.exec(e));
  assert.deepEqual(plans.map((m) => m && [m[1], m[2]]).sort(), [["0", "2"], ["2", "0"]]);
  const rows = await readJsonl(`${out}/results.jsonl`);
  assert.equal(rows.length, 2);
  assert.equal([...Deno.readDirSync(`${out}/cells`)].length, 2);
  assert.equal(await exists(`${out}/.lock`), false, "the lock outlived its runs");

  // A lock file whose run is gone (here: a pid that has exited) is taken over with a note.
  const gone = new Deno.Command(Deno.execPath(), { args: ["eval", ""] }).spawn();
  await gone.status;
  const startedAt = "2020-01-01T00:00:00.000Z";
  await Deno.writeTextFile(
    `${out}/.lock`,
    JSON.stringify({ pid: gone.pid, host: Deno.hostname(), startedAt }),
  );
  const resumed = await runBench(sb.vars, [...args, "--quiet"]);
  assert.equal(resumed.code, 0, resumed.err);
  assert.match(
    resumed.err,
    new RegExp(
      `note: took over the stale lock ${out}/\\.lock \\(pid ${gone.pid} on host ` +
        `${Deno.hostname()}, started ${startedAt.replace(/[.]/g, "\\.")}\\): that run is gone`,
    ),
  );
  assert.equal(await exists(`${out}/.lock`), false);
  assert.deepEqual(await readJsonl(`${out}/results.jsonl`), rows, "nothing recomputed");
});

stories.test("cli: a hand-edited cell file fails its checksum and is recomputed with a note; so is one without a checksum", async () => {
  await using sb = await sandbox("lowbit-sum-cli-");
  const out = `${sb.dir}/out`;
  const args = [...TINY, "--out", out, "--quiet"];
  const first = await runBench(sb.vars, args);
  assert.equal(first.code, 0, first.err);
  const rows = await readJsonl(`${out}/results.jsonl`);
  const [fp, w4] = rows;
  assert.deepEqual(rows.map((r) => r.quant.label), ["FP32", "W4A16"]);
  const ppl = (r: ResultRow) => r.metrics.find((m) => m.metric === "ppl")!.value;

  // Edit W4's perplexity in its cell file (still valid JSON); drop FP32's checksum.
  const w4File = `${out}/cells/${w4!.cellId}.json`;
  const cell = JSON.parse(await Deno.readTextFile(w4File));
  cell.metrics.find((m: { metric: string }) => m.metric === "ppl").value = 1.5;
  await Deno.writeTextFile(w4File, JSON.stringify(cell, null, 2));
  const fpFile = `${out}/cells/${fp!.cellId}.json`;
  const { sha256: _, ...legacy } = JSON.parse(await Deno.readTextFile(fpFile));
  await Deno.writeTextFile(fpFile, JSON.stringify(legacy));

  const again = await runBench(sb.vars, args);
  assert.equal(again.code, 0, again.err);
  assert.match(
    again.err,
    new RegExp(`note: ${w4File} \\(stories260K rtn W4A16 tinystories:eval\\) fails its sha256`),
  );
  assert.match(again.err, /note: 1 cached cell file\(s\) in .* have no sha256 checksum/);
  const [fp2, w42] = await readJsonl(`${out}/results.jsonl`);
  assert.equal(ppl(w42!), ppl(w4!), "the recomputed value is the original one");
  assert.notEqual(w42!.finishedAt, w4!.finishedAt, "recomputed, not copied");
  assert.equal(
    w42!.notes[0],
    `recomputed: the cached cell file cells/${w4!.cellId}.json failed its sha256 checksum ` +
      `(edited or corrupted after it was written)`,
  );
  assert.equal(
    fp2!.notes[0],
    `recomputed: the cached cell file cells/${fp!.cellId}.json had no sha256 checksum ` +
      `(written before cell files carried one)`,
  );
  assert.equal(ppl(fp2!), ppl(fp!));
  // Both files are whole again: a third run reuses them.
  const third = await runBench(sb.vars, TINY.concat(["--out", out]));
  assert.match(third.err, /^2 cells, 0 to run, 2 already done$/m);
});

stories.test("cli: without a terminal, each cell's phases print a progress line (a CI log shows a long cell moving)", async () => {
  await using sb = await sandbox("lowbit-progress-");
  const args = TINY.map((a) => (a === "rtn" ? "gptq" : a));
  const calib = ["--calib-samples", "4", "--calib-seqlen", "32"];
  const r = await runBench(sb.vars, [...args, ...calib, "--out", `${sb.dir}/out`]);
  assert.equal(r.code, 0, r.err);
  // The GPTQ cell (2 of 2) quantizes and evaluates; the FP cell only evaluates.
  assert.match(r.err, /^\[2\/2\] quantize \d+\/\d+ \(\d+ s\)$/m);
  assert.match(r.err, /^\[2\/2\] evaluate \d+\/\d+ \(\d+ s\)$/m);
  assert.match(r.err, /^\[1\/2\] evaluate \d+\/\d+ \(\d+ s\)$/m);
  assert.ok(!r.err.includes("\x1b["), "no terminal control codes in a log");
});
