import assert from "node:assert/strict";
import { getTask } from "./mod.ts";
import { refKernels } from "../kernels/ref/mod.ts";
import { needs, sharedPath } from "../testing/fixtures.ts";
import { stories260K } from "../testing/stories.ts";
import type { Metric, TaskResult } from "./types.ts";
import { formatSummary } from "../results/summary.ts";
import type { ResultRow } from "../results/row.ts";
import { EvalPool } from "../runners/eval_pool.ts";

const storiesTasks = await needs("hf-mirror", "data/tasks");

const dataDir = sharedPath("data");
const ids = (r: TaskResult) => r.metrics.map((m) => m.metric);

storiesTasks.test("lm-eval tasks run end to end on stories260K with small limits", async () => {
  const model = await stories260K();
  const cases: [string, number, string[]][] = [
    ["arc_easy", 12, ["acc", "acc_norm"]],
    ["arc_challenge", 8, ["acc", "acc_norm"]],
    ["piqa", 8, ["acc", "acc_norm"]],
    ["hellaswag", 6, ["acc", "acc_norm"]],
    ["winogrande", 12, ["acc"]],
    ["boolq", 4, ["acc", "acc_norm"]],
    ["lambada_openai", 12, ["acc", "ppl", "nll"]],
  ];
  for (const [id, limit, metrics] of cases) {
    const task = getTask(id);
    const r = await task.run(model, { kernels: refKernels, dataDir, limit });
    assert.deepEqual(ids(r), metrics, id);
    for (const m of r.metrics) {
      assert.equal(m.n, limit, id);
      assert.ok(Number.isFinite(m.value), `${id} ${m.metric}`);
      if (m.metric.startsWith("acc")) assert.ok(m.value >= 0 && m.value <= 1);
    }
    assert.equal(r.protocol.limit, limit);
    assert.equal(r.protocol.docs, limit);
    assert.equal(r.protocol.bosPerSequence, true);
    assert.equal(r.protocol.context, 512);
    assert.equal(typeof r.protocol.lmEvalYamlVersion, "string");
    // The row's dataset is the fingerprint the planner saw before compute.
    assert.deepEqual(r.dataset, await task.dataset({ dataDir }));
  }
});

storiesTasks.test("BoolQ passages longer than the context are left-truncated, and counted", async () => {
  const model = await stories260K();
  // With the 512-piece vocabulary the first two passages take 943 and 834 tokens, the third 280.
  const r = await getTask("boolq").run(model, { kernels: refKernels, dataDir, limit: 3 });
  assert.equal(r.protocol.requests, 6);
  assert.equal(r.protocol.truncatedRequests, 4);
  assert.equal(r.metrics[0]!.n, 3);
});

storiesTasks.test("--limit must be a positive integer", async () => {
  const model = await stories260K();
  await assert.rejects(
    () => getTask("piqa").run(model, { kernels: refKernels, dataDir, limit: 0 }),
    /positive integer/,
  );
});

Deno.test("summary table: acc and acc_norm (± se) for zero-shot rows, Δacc against FP", () => {
  const row = (method: string, family: string, task: string, metrics: Metric[]) =>
    ({
      model: { id: "m" },
      method: { id: method, scope: method === "fp" ? "none" : "weight-only" },
      quant: {
        label: method === "fp" ? "FP32" : "W4A16",
        bitsPerWeight: method === "fp" ? null : 4.5,
      },
      task: { id: task, family, limit: 100 },
      metrics,
      status: "ok",
    }) as unknown as ResultRow;
  const m = (metric: string, value: number, stderr: number | null): Metric => ({
    metric,
    value,
    stderr,
    n: 100,
    higherIsBetter: true,
  });
  const table = formatSummary([
    row("fp", "zero-shot", "arc_easy", [m("acc", 0.5, 0.05), m("acc_norm", 0.25, 0.04)]),
    row("rtn", "zero-shot", "arc_easy", [m("acc", 0.375, 0.048), m("acc_norm", 0.3, 0.046)]),
    row("fp", "zero-shot", "winogrande", [m("acc", 0.5, null)]),
    row("fp", "perplexity", "tinystories", [{ ...m("ppl", 5.5, 0.1), higherIsBetter: false }]),
  ]);
  const lines = table.split("\n");
  assert.match(lines[0]!, /\|\s+acc ± se \|\s+acc_norm ± se \|\s+Δacc \|/);
  assert.match(lines[2]!, /arc_easy \(100 items\).*0\.5000 ±0\.0500 \|\s+0\.2500 ±0\.0400 \|/);
  assert.match(lines[3]!, /0\.3750 ±0\.0480 \|\s+0\.3000 ±0\.0460 \|\s+-0\.1250 \|/);
  assert.match(lines[4]!, /winogrande.*\|\s+0\.5000 \|\s+\|/);
  assert.match(lines[5]!, /tinystories \(100 win\).*5\.5000/);
});

storiesTasks.test("worker threads give the same numbers as this thread (results independent of threads)", async () => {
  const model = await stories260K();
  const pool = new EvalPool(2); // the run's one worker pool, the reference kernels
  try {
    for (
      const [id, limit] of [["tinystories_cloze", 24], ["winogrande", 10], [
        "lambada_openai",
        10,
      ]] as const
    ) {
      const base = { kernels: refKernels, dataDir, limit };
      const seen: number[] = [];
      const one = await getTask(id).run(model, base);
      const two = await getTask(id).run(model, { ...base, pool, onProgress: (d) => seen.push(d) });
      assert.deepEqual(two.metrics, one.metrics, id);
      assert.deepEqual(two.protocol, one.protocol, id);
      assert.equal(seen.length, limit);
      assert.equal(seen[seen.length - 1], limit);
    }
  } finally {
    pool.close();
  }
});
