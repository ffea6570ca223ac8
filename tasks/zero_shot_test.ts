import assert from "node:assert/strict";
import { getTask } from "./mod.ts";
import { refKernels } from "../kernels/ref/mod.ts";
import { sharedPath } from "../testing/fixtures.ts";
import { stories260K } from "../testing/stories.ts";
import type { TaskResult } from "./types.ts";

const dataDir = sharedPath("data");
const ids = (r: TaskResult) => r.metrics.map((m) => m.metric);

Deno.test("lm-eval tasks run end to end on stories260K with small limits", async () => {
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

Deno.test("BoolQ passages longer than the context are left-truncated, and counted", async () => {
  const model = await stories260K();
  const r = await getTask("boolq").run(model, { kernels: refKernels, dataDir, limit: 40 });
  const truncated = r.protocol.truncatedRequests as number;
  assert.ok(truncated >= 0 && truncated <= 80);
  assert.equal(r.protocol.requests, 80);
});

Deno.test("--limit must be a positive integer", async () => {
  const model = await stories260K();
  await assert.rejects(
    () => getTask("piqa").run(model, { kernels: refKernels, dataDir, limit: 0 }),
    /positive integer/,
  );
});
