/**
 * The committed baseline (`bench/baselines/w2-w8.jsonl`) against what `bench.yml`'s shards plan:
 * the regression check matches cells by id, so the ids the default matrix gets on a fresh
 * checkout (data from the repository, `--backend wasm`) must be the baseline's.
 *
 * @module
 */

import assert from "node:assert/strict";
import { needs } from "../testing/fixtures.ts";
import { sandbox } from "../testing/sandbox.ts";

const stories = await needs("hf-mirror");
const BASELINE = new URL("./baselines/w2-w8.jsonl", import.meta.url);

stories.test("the w2-w8 baseline's cell ids are those the bench workflow's shards plan (bundled data, --backend wasm)", async () => {
  await using sb = await sandbox("lowbit-baseline-");
  const baseline = (await Deno.readTextFile(BASELINE)).trim().split("\n").map((l) =>
    JSON.parse(l) as { cellId: string; env: { backend: string }; task: { dataset: unknown } }
  );
  const { LOWBIT_DATA: _, ...inherited } = Deno.env.toObject();
  const plan = async (...args: string[]) => {
    const o = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", new URL("../cli.ts", import.meta.url).pathname, "--matrix", "w2-w8"]
        .concat(args, ["--backend", "wasm", "--dry-run", "--quiet"]),
      env: { ...inherited, ...sb.vars },
      clearEnv: true,
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(o.code, 0, new TextDecoder().decode(o.stderr));
    const lines = new TextDecoder().decode(o.stdout).trim().split("\n");
    const ids = lines.slice(0, -1).map((l) => l.split(" ")[0]!);
    assert.equal(lines.at(-1), `${ids.length} cells`);
    return ids;
  };
  const ids = baseline.map((r) => r.cellId).sort();
  assert.equal(ids.length, 30);
  assert.ok(baseline.every((r) => r.env.backend === "wasm-simd"));
  assert.deepEqual((await plan()).sort(), ids);
  // The three shards of the workflow plan every baseline cell exactly once.
  const shards = await Promise.all([0, 1, 2].map((i) => plan("--shard", `${i}/3`)));
  assert.deepEqual(shards.flat().sort(), ids);
});
