import assert from "node:assert/strict";
import type { ResultRow } from "../../results/row.ts";
import { sandbox } from "../../testing/sandbox.ts";
import { bundledDataDir, needs } from "../../testing/fixtures.ts";
import { adapterInfo, requestAdapter } from "./device.ts";

const adapter = await requestAdapter();
const stories = await needs("hf-mirror");
const cli = new URL("../../cli.ts", import.meta.url).pathname;

/** Runs the CLI on one window of stories260K (FP and RTN W4) with `backend`; returns its rows. */
async function bench(backend: string, dir: string, vars: Record<string, string>) {
  const out = `${dir}/${backend}`;
  const o = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      cli,
      "--matrix",
      "w2-w8",
      "--methods",
      "rtn",
      "--bits",
      "4",
      "--tasks",
      "tinystories",
      "--limit",
      "1",
      "--threads",
      "1",
      "--backend",
      backend,
      "--out",
      out,
      "--data",
      bundledDataDir(),
      "--quiet",
    ],
    env: { ...vars, NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stderr = new TextDecoder().decode(o.stderr);
  assert.equal(o.code, 0, stderr);
  const text = await Deno.readTextFile(`${out}/results.jsonl`);
  return { rows: text.trim().split("\n").map((l) => JSON.parse(l) as ResultRow), stderr };
}

stories.test({
  name: "cli --backend webgpu: rows record the adapter and equal --backend ts to 1e-4 relative",
  ignore: !adapter,
  async fn() {
    await using sb = await sandbox("lowbit-webgpu-");
    const ts = await bench("ts", sb.dir, sb.vars);
    const gpu = await bench("webgpu", sb.dir, sb.vars);
    const info = adapterInfo(adapter!);
    assert.equal(gpu.rows.length, ts.rows.length);
    assert.ok(gpu.rows.length >= 2);
    for (const [i, row] of gpu.rows.entries()) {
      assert.equal(row.status, "ok", row.error ?? "");
      assert.equal(row.quant.label, ts.rows[i]!.quant.label);
      assert.equal(row.env.backend, "webgpu+wasm-simd");
      assert.deepEqual(row.env.gpu, info);
      assert.equal(row.task.protocol!.windowsOn, "webgpu");
      const want = ts.rows[i]!;
      assert.equal(want.env.gpu, undefined);
      assert.notEqual(row.cellId, want.cellId, "another backend is another cell");
      for (const m of ["ppl", "nll"]) {
        const a = row.metrics.find((x) => x.metric === m)!.value;
        const b = want.metrics.find((x) => x.metric === m)!.value;
        assert.ok(Math.abs(a - b) / b <= 1e-4, `${row.quant.label} ${m}: ${a} vs ${b}`);
      }
    }
    if (info.fallback) assert.match(gpu.stderr, /WebGPU runs on a software adapter/);
  },
});
