import assert from "node:assert/strict";
import { compareMetric, comparePaired, compareRuns, formatMarkdown } from "./compare.ts";
import { compareMain } from "./compare_cli.ts";
import { loadRows } from "./load.ts";
import { makeRow } from "./make_row.ts";
import type { ResultRow } from "./row.ts";

const BASE: ResultRow[] = [
  makeRow({ method: "fp", metrics: { ppl: [6.1, 0.13], kl: [0, 0] } }),
  makeRow({ method: "rtn", wBits: 4, metrics: { ppl: [6.7, 0.15], kl: [0.14, 0.01] } }),
  makeRow({ method: "gptq", wBits: 4, metrics: { ppl: [6.6, 0.15] } }),
  makeRow({ method: "fp", task: "arc", metrics: { acc: [0.5, 0.02], acc_norm: [0.52, 0.02] } }),
  makeRow({ method: "rtn", task: "arc", metrics: { acc: [0.48, 0.02], acc_norm: [0.5, 0.02] } }),
];

/** A copy of `rows` with one metric of one cell replaced. */
function withMetric(
  rows: readonly ResultRow[],
  cellId: string,
  metric: string,
  f: (v: number) => number,
  se?: number,
): ResultRow[] {
  return rows.map((r) =>
    r.cellId !== cellId ? r : {
      ...r,
      metrics: r.metrics.map((m) =>
        m.metric !== metric ? m : { ...m, value: f(m.value), stderr: se ?? m.stderr }
      ),
    }
  );
}

const RTN4 = BASE[1]!.cellId;
const RTN_ARC = BASE[4]!.cellId;

Deno.test("compare: an unchanged run has no regression", () => {
  const c = compareRuns(BASE, structuredClone(BASE));
  assert.equal(c.regressions, 0);
  assert.equal(c.common, 5);
  // ppl of 3 cells, kl of 2, acc and acc_norm of 2
  assert.equal(c.metrics.length, 9);
  assert.ok(c.metrics.every((m) => m.verdict === "unchanged"));
  assert.match(formatMarkdown(c, { baseline: "b", current: "c" }), /✅ no regressions/);
});

Deno.test("compare: a 5% perplexity bump is a regression, 0.5% is not", () => {
  const bumped = compareRuns(BASE, withMetric(BASE, RTN4, "ppl", (v) => v * 1.05));
  assert.equal(bumped.regressions, 1);
  const r = bumped.metrics.find((m) => m.verdict === "regression")!;
  assert.equal(r.cellId, RTN4);
  assert.equal(r.metric, "ppl");
  assert.ok(Math.abs(r.current! - 7.035) < 1e-9);
  const md = formatMarkdown(bumped, { baseline: "b", current: "c" });
  assert.match(md, /❌ 1 regression/);
  assert.match(
    md,
    /### Regressions\n\n\| model .*\n.*\n\| tiny \| tinystories:eval \| rtn \| W4A16 \| ppl \|/,
  );

  assert.equal(compareRuns(BASE, withMetric(BASE, RTN4, "ppl", (v) => v * 1.005)).regressions, 0);
  const better = compareRuns(BASE, withMetric(BASE, RTN4, "ppl", (v) => v * 0.95));
  assert.equal(better.regressions, 0);
  assert.equal(better.metrics.filter((m) => m.verdict === "improvement").length, 1);
  // a tighter tolerance flags the 0.5% bump
  const tight = compareRuns(BASE, withMetric(BASE, RTN4, "ppl", (v) => v * 1.005), {
    pplTolerance: 0.001,
  });
  assert.equal(tight.regressions, 1);
});

Deno.test("compare: accuracy drops must exceed tolerance and 2 se of the difference", () => {
  // drop 0.03 with se 0.02 each: se of difference 0.0283, 1.06 se → not significant
  const within = compareRuns(BASE, withMetric(BASE, RTN_ARC, "acc", (v) => v - 0.03));
  assert.equal(within.regressions, 0);
  assert.match(within.metrics.find((m) => m.cellId === RTN_ARC)!.reason, /not significant/);
  // drop 0.10: 3.5 se → regression
  const big = compareRuns(BASE, withMetric(BASE, RTN_ARC, "acc", (v) => v - 0.1));
  assert.equal(big.regressions, 1);
  // drop 0.005 with tiny stderr: significant but within the 0.01 tolerance
  const tiny = withMetric(
    withMetric(BASE, RTN_ARC, "acc", (v) => v, 0.0001),
    RTN_ARC,
    "acc",
    (v) => v,
    0.0001,
  );
  assert.equal(
    compareRuns(tiny, withMetric(tiny, RTN_ARC, "acc", (v) => v - 0.005)).regressions,
    0,
  );
  assert.equal(compareRuns(tiny, withMetric(tiny, RTN_ARC, "acc", (v) => v - 0.02)).regressions, 1);
});

Deno.test("compareMetric: direction follows higherIsBetter", () => {
  const up = compareMetric("relative", true, { value: 1, stderr: null }, {
    value: 0.9,
    stderr: null,
  });
  assert.equal(up.verdict, "regression");
  const down = compareMetric("relative", false, { value: 1, stderr: null }, {
    value: 0.9,
    stderr: null,
  });
  assert.equal(down.verdict, "improvement");
  const noSe = compareMetric("stderr", true, { value: 0.5, stderr: null }, {
    value: 0.45,
    stderr: null,
  });
  assert.equal(noSe.verdict, "regression");
});

Deno.test("compare: missing, new and failed cells", () => {
  const extra = makeRow({ method: "rtn", wBits: 3, metrics: { ppl: [9, 0.2] } });
  const failed = { ...BASE[2]!, status: "failed" as const, error: "OOM", metrics: [] };
  const current = [BASE[0]!, BASE[1]!, failed, BASE[3]!, extra];
  const c = compareRuns(BASE, current);
  assert.deepEqual(c.missing.map((m) => m.cellId), [RTN_ARC]);
  assert.deepEqual(c.added.map((m) => m.cellId), [extra.cellId]);
  assert.equal(c.statusChanges.length, 1);
  assert.equal(c.statusChanges[0]!.verdict, "regression");
  assert.equal(c.regressions, 1);
  const md = formatMarkdown(c, { baseline: "b", current: "c" });
  assert.match(md, /### Missing cells/);
  assert.match(md, /### New cells/);
  assert.match(md, /\| ok \| failed \| regression \| OOM \|/);
  // a lost metric is a regression too
  const lost = BASE.map((r) =>
    r.cellId === RTN4 ? { ...r, metrics: r.metrics.filter((m) => m.metric !== "ppl") } : r
  );
  assert.equal(compareRuns(BASE, lost).regressions, 1);
});

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir();
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const jsonl = (rows: readonly unknown[]) => rows.map((r) => JSON.stringify(r)).join("\n") + "\n";

async function run(args: string[]) {
  let out = "";
  let err = "";
  const code = await compareMain(args, {
    out: (t) => void (out += t + "\n"),
    err: (t) => void (err += t + "\n"),
  });
  return { code, out, err };
}

Deno.test("compare CLI: exit 0 unchanged, 1 on regression, Markdown on stdout", async () => {
  await withDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/baseline.jsonl`, jsonl(BASE));
    await Deno.mkdir(`${dir}/cur/shard-1`, { recursive: true });
    await Deno.mkdir(`${dir}/cur/shard-2`, { recursive: true });
    await Deno.writeTextFile(`${dir}/cur/shard-1/results.jsonl`, jsonl(BASE.slice(0, 3)));
    await Deno.writeTextFile(`${dir}/cur/shard-2/results.jsonl`, jsonl(BASE.slice(3)));
    const ok = await run(["--baseline", `${dir}/baseline.jsonl`, "--current", `${dir}/cur`]);
    assert.equal(ok.code, 0, ok.err);
    assert.match(ok.out, /^## lowbit regression check: ✅/);
    assert.match(ok.out, /\| 5 \| 0 \| 0 \| 0 \| 0 \|/);

    await Deno.writeTextFile(
      `${dir}/cur/shard-1/results.jsonl`,
      jsonl(withMetric(BASE.slice(0, 3), RTN4, "ppl", (v) => v * 1.05)),
    );
    const bad = await run(["--baseline", `${dir}/baseline.jsonl`, "--current", `${dir}/cur`]);
    assert.equal(bad.code, 1);
    assert.match(bad.out, /❌ 1 regression/);
    // and with a 10% tolerance it passes
    const loose = await run([
      "--baseline",
      `${dir}/baseline.jsonl`,
      "--current",
      `${dir}/cur`,
      "--ppl-tol=0.1",
    ]);
    assert.equal(loose.code, 0);
    // missing cells fail only with --fail-on-missing
    await Deno.remove(`${dir}/cur/shard-2`, { recursive: true });
    const args = [
      "--baseline",
      `${dir}/baseline.jsonl`,
      "--current",
      `${dir}/cur`,
      "--ppl-tol",
      "1",
    ];
    assert.equal((await run(args)).code, 0);
    assert.equal((await run([...args, "--fail-on-missing"])).code, 1);
    // the KL tolerance and the paired floors are flags
    const flags = await run([
      ...args,
      "--kl-tol",
      "0.05",
      "--nll-floor=0.001",
      "--top1-floor",
      "0",
    ]);
    assert.equal(flags.code, 0, flags.err);
    assert.match(flags.out, /NLL 0\.001 nats, KL 5% of the baseline, top-1 0\)/);
    assert.equal((await run([...args, "--nll-floor", "-1"])).code, 2);
    // no cell of the baseline in the current run: nothing compared is a failure too
    await Deno.remove(`${dir}/cur/shard-1`, { recursive: true });
    await Deno.mkdir(`${dir}/other`);
    await Deno.writeTextFile(
      `${dir}/other/results.jsonl`,
      jsonl([makeRow({ method: "awq", wBits: 3, metrics: { ppl: [9, 0.1] } })]),
    );
    const none = await run(["--baseline", `${dir}/baseline.jsonl`, "--current", `${dir}/other`]);
    assert.equal(none.code, 1);
    assert.match(none.err, /nothing was compared/);
  });
});

Deno.test("compare CLI: bad inputs exit 2 with clear messages", async () => {
  await withDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/base.jsonl`, jsonl(BASE));
    await Deno.mkdir(`${dir}/empty`);
    await Deno.mkdir(`${dir}/blank`);
    await Deno.writeTextFile(`${dir}/blank/results.jsonl`, "\n");
    await Deno.mkdir(`${dir}/newer`);
    await Deno.writeTextFile(
      `${dir}/newer/results.jsonl`,
      jsonl([BASE[0], { ...BASE[1]!, schemaVersion: 99 }]),
    );
    await Deno.mkdir(`${dir}/dup/a`, { recursive: true });
    await Deno.mkdir(`${dir}/dup/b`, { recursive: true });
    await Deno.writeTextFile(`${dir}/dup/a/results.jsonl`, jsonl(BASE));
    await Deno.writeTextFile(
      `${dir}/dup/b/results.jsonl`,
      jsonl(withMetric(BASE, RTN4, "ppl", (v) => v + 1)),
    );
    await Deno.mkdir(`${dir}/same/a`, { recursive: true });
    await Deno.mkdir(`${dir}/same/b`, { recursive: true });
    await Deno.writeTextFile(`${dir}/same/a/results.jsonl`, jsonl(BASE));
    await Deno.writeTextFile(`${dir}/same/b/results.jsonl`, jsonl(BASE));
    await Deno.mkdir(`${dir}/junk`);
    await Deno.writeTextFile(`${dir}/junk/results.jsonl`, "{not json\n");

    const cases: [string[], RegExp][] = [
      [["--baseline", `${dir}/nope.jsonl`, "--current", `${dir}/same`], /baseline: .*no such file/],
      [["--baseline", `${dir}/base.jsonl`, "--current", `${dir}/empty`], /no results\.jsonl found/],
      [["--baseline", `${dir}/base.jsonl`, "--current", `${dir}/blank`], /empty results/],
      [
        ["--baseline", `${dir}/base.jsonl`, "--current", `${dir}/newer`],
        /results\.jsonl:2: row has schemaVersion 99, newer than this lowbit's 1/,
      ],
      [
        ["--baseline", `${dir}/base.jsonl`, "--current", `${dir}/dup`],
        /cell .* appears twice with different values/,
      ],
      [["--baseline", `${dir}/base.jsonl`, "--current", `${dir}/junk`], /:1: not valid JSON/],
      [["--baseline", `${dir}/base.jsonl`], /--baseline and --current are required/],
      [["--baseline", `${dir}/base.jsonl`, "--current", dir, "--z", "x"], /non-negative number/],
      [["--bogus"], /unknown argument --bogus/],
    ];
    for (const [args, message] of cases) {
      const r = await run(args);
      assert.equal(r.code, 2, `${args.join(" ")}: ${r.err}`);
      assert.match(r.err, message);
      assert.equal(r.out, "");
    }
    // identical duplicates (the same run twice) are merged, not an error
    const same = await run(["--baseline", `${dir}/base.jsonl`, "--current", `${dir}/same`]);
    assert.equal(same.code, 0, same.err);
  });
});

Deno.test("compare CLI as a process: exit code 1 reaches the shell", async () => {
  await withDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/base.jsonl`, jsonl(BASE));
    await Deno.mkdir(`${dir}/cur`);
    await Deno.writeTextFile(
      `${dir}/cur/results.jsonl`,
      jsonl(withMetric(BASE, RTN4, "ppl", (v) => v * 1.05)),
    );
    const cli = new URL("./compare_cli.ts", import.meta.url).pathname;
    const out = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--allow-read",
        cli,
        "--baseline",
        `${dir}/base.jsonl`,
        "--current",
        `${dir}/cur`,
      ],
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(out.code, 1, new TextDecoder().decode(out.stderr));
    assert.match(new TextDecoder().decode(out.stdout), /❌ 1 regression/);
  });
});

/** Real rows: the committed w2-w8 baseline (what pages.yml publishes on manual dispatch). */
const REAL = new URL("../bench/baselines/w2-w8.jsonl", import.meta.url).pathname;

Deno.test({
  name: "compare over the real w2-w8 rows (the committed baseline)",
  fn: async () => {
    const rows = await loadRows(REAL);
    assert.equal(compareRuns(rows, rows).regressions, 0);
    const target = rows.find((r) => r.method.id === "rtn" && r.status === "ok")!;
    // The rows carry each window's NLL: a run 0.05 nats worse in every window (5% in perplexity)
    // is the regression, whatever the aggregate says.
    assert.equal(target.units?.nll?.length, 389);
    const worse = rows.map((r) =>
      r.cellId !== target.cellId
        ? r
        : { ...r, units: { ...r.units, nll: r.units!.nll!.map((x) => x + 0.05) } }
    );
    const c = compareRuns(rows, worse);
    assert.equal(c.regressions, 1);
    assert.equal(c.metrics.find((m) => m.verdict === "regression")!.cellId, target.cellId);
    // Older rows without them: the 1% perplexity tolerance.
    const bare = rows.map(({ units: _u, ...r }) => r);
    const old = compareRuns(bare, withMetric(bare, target.cellId, "ppl", (v) => v * 1.05));
    assert.equal(old.regressions, 1);
  },
});

/** `rows` with per-window values on the RTN cell (`f` maps the window index to its values). */
function withUnits(
  rows: readonly ResultRow[],
  f: (w: number) => { nll: number; kl: number; top1: number },
): ResultRow[] {
  const ws = Array.from({ length: 16 }, (_, w) => f(w));
  return rows.map((r) =>
    r.cellId !== RTN4 ? r : {
      ...r,
      units: { nll: ws.map((x) => x.nll), kl: ws.map((x) => x.kl), top1: ws.map((x) => x.top1) },
    }
  );
}

Deno.test("compare: per-window values are paired; the gate follows their spread, not a fixed 1%", () => {
  // Windows whose NLL differs a lot between windows (±0.3 nats) but move together.
  const base = withUnits(BASE, (w) => ({
    nll: 1.9 + 0.3 * Math.sin(w),
    kl: 0.14 + 0.02 * Math.cos(w),
    top1: 0.8,
  }));
  // +0.005 nats in every window (0.5% in perplexity, under the old 1%): a regression when paired.
  const shifted = withUnits(base, (w) => ({
    nll: 1.905 + 0.3 * Math.sin(w),
    kl: 0.14 + 0.02 * Math.cos(w),
    top1: 0.8,
  }));
  const c = compareRuns(base, shifted);
  const ppl = c.metrics.find((m) => m.cellId === RTN4 && m.metric === "ppl")!;
  assert.equal(ppl.verdict, "regression", ppl.reason);
  assert.match(ppl.reason, /mean Δ nll \+5\.00e-3 over 16 windows/);
  // Identical windows: unchanged, whatever the floor.
  const same = compareRuns(base, structuredClone(base), { nllFloor: 0 });
  assert.equal(same.regressions, 0);
  assert.ok(same.metrics.filter((m) => m.cellId === RTN4).every((m) => /identical/.test(m.reason)));
  // Noise of float rounding (1e-7 per window, either sign): under the floor.
  const noisy = withUnits(base, (w) => ({
    nll: 1.9 + 0.3 * Math.sin(w) + (w % 2 ? 1e-7 : -1e-7),
    kl: 0.14 + 0.02 * Math.cos(w),
    top1: 0.8,
  }));
  assert.equal(compareRuns(base, noisy).regressions, 0);
  // A change of mixed sign larger than the floor but within 2 paired se: not significant.
  const mixed = withUnits(base, (w) => ({
    nll: 1.9 + 0.3 * Math.sin(w) + (w % 2 ? 0.02 : -0.019),
    kl: 0.14 + 0.02 * Math.cos(w),
    top1: 0.8,
  }));
  const m = compareRuns(base, mixed).metrics.find((x) => x.cellId === RTN4 && x.metric === "ppl")!;
  assert.equal(m.verdict, "unchanged");
  assert.match(m.reason, /not significant/);
  // KL up 10% and top-1 down 5 points in every window: both gated.
  const worse = withUnits(base, (w) => ({
    nll: 1.9 + 0.3 * Math.sin(w),
    kl: 1.1 * (0.14 + 0.02 * Math.cos(w)),
    top1: 0.75,
  }));
  const kw = compareRuns(base, worse);
  assert.deepEqual(
    kw.metrics.filter((x) => x.verdict === "regression").map((x) => x.metric).sort(),
    ["kl"],
    "top1 is a metric of the row: it is gated through its per-window values once the row has it",
  );
});

Deno.test("comparePaired: hand-computed mean, standard error and verdicts", () => {
  // Differences 0.1, 0.3: mean 0.2, sd √0.02 ≈ 0.1414, se 0.1 → 2 se.
  assert.equal(comparePaired([1, 1], [1.1, 1.3], false, 0.01, 2.5, "nll").verdict, "unchanged");
  assert.equal(comparePaired([1, 1], [1.1, 1.3], false, 0.01, 1.5, "nll").verdict, "regression");
  assert.equal(comparePaired([1, 1], [0.9, 0.7], false, 0.01, 1.5, "nll").verdict, "improvement");
  // …and above 0.25 nats of floor, even 2 se do not count.
  assert.equal(comparePaired([1, 1], [1.1, 1.3], false, 0.25, 1.5, "nll").verdict, "unchanged");
  // Higher is better (agreement): a rise is an improvement.
  assert.equal(comparePaired([0.5, 0.5], [0.7, 0.7], true, 0.01, 2, "top1").verdict, "improvement");
  // One window: no spread, the floor alone decides.
  assert.equal(comparePaired([1], [1.00005], false, 1e-4, 2, "nll").verdict, "unchanged");
  assert.equal(comparePaired([1], [1.001], false, 1e-4, 2, "nll").verdict, "regression");
});
