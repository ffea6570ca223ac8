/**
 * A llama2.c checkpoint given by path runs from the CLI with no extra flags, also when its
 * context (128 tokens) is shorter than the default calibration windows (256): the windows are cut
 * to the context and the row says from what.
 */
import assert from "node:assert/strict";
import { hfMirrorRoot, needs } from "../testing/fixtures.ts";
import { stories260K } from "../models/registry.ts";

const stories = await needs("hf-mirror");

/** stories260K's files with `seq_len` 128 in the header (and its unused RoPE tables cut to fit). */
async function shortContextCopy(dir: string): Promise<string> {
  const src =
    `${(await hfMirrorRoot())!}/karpathy/tinyllamas/resolve/${stories260K.revision}/stories260K`;
  const bytes = await Deno.readFile(`${src}/stories260K.bin`);
  const header = new Int32Array(bytes.buffer, bytes.byteOffset, 7);
  const [dim, , , nHeads, , , seqLen] = [...header];
  assert.equal(seqLen, 512);
  const headDim = dim! / nHeads!;
  // Tied classifier: the two freq_cis tables (seq_len · head_size / 2 floats each) end the file.
  const freqBytes = (n: number) => 4 * 2 * Math.floor((n * headDim) / 2);
  const out = new Uint8Array(bytes.length - freqBytes(512) + freqBytes(128));
  out.set(bytes.subarray(0, bytes.length - freqBytes(512)));
  new Int32Array(out.buffer, 0, 7)[6] = 128;
  await Deno.writeFile(`${dir}/model.bin`, out);
  await Deno.copyFile(`${src}/tok512.bin`, `${dir}/tok512.bin`);
  return `${dir}/model.bin`;
}

async function cli(...args: string[]) {
  const o = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", new URL("../cli.ts", import.meta.url).pathname, ...args, "--quiet"],
    stdout: "piped",
    stderr: "piped",
  }).output();
  return {
    code: o.code,
    out: new TextDecoder().decode(o.stdout),
    err: new TextDecoder().decode(o.stderr),
  };
}

stories.test("--model path/model.bin: a 128-token llama2.c model runs FP, RTN and GPTQ cells with no extra flags", async () => {
  const dir = await Deno.makeTempDir({ prefix: "lowbit-llama2c-" });
  try {
    const model = await shortContextCopy(dir);
    const run = await cli(
      "--model",
      model,
      "--methods",
      "rtn,gptq",
      "--bits",
      "4",
      "--limit",
      "2",
      "--tasks",
      "tinystories:eval",
      "--out",
      `${dir}/out`,
    );
    assert.equal(run.code, 0, run.err);
    const rows = (await Deno.readTextFile(`${dir}/out/results.jsonl`)).trim().split("\n")
      .map((l) => JSON.parse(l));
    // The default preset's groups: per channel and 32, for each method.
    assert.deepEqual(rows.map((r) => `${r.method.id} ${r.quant.label} ${r.status}`).sort(), [
      "fp FP32 ok",
      "gptq W4A16 ok",
      "gptq W4A16g32 ok",
      "rtn W4A16 ok",
      "rtn W4A16g32 ok",
    ]);
    // The tokenizer beside the checkpoint was used, and both files are in the provenance.
    assert.deepEqual(rows[0].model.files.map((f: { path: string }) => f.path), [
      "model.bin",
      "tok512.bin",
    ]);
    const repo = new URL("..", import.meta.url).pathname;
    for (const r of rows) {
      // Dataset paths below the data root, no directory of this machine (but the model's, given).
      assert.equal(r.task.dataset.path, "text/tinystories/tinystories_val_head.txt");
      assert.ok(!JSON.stringify(r).includes(repo), "a row holds the repository's absolute path");
      assert.equal(r.task.protocol.context, 128);
      assert.ok(r.metrics.every((m: { value: number }) => Number.isFinite(m.value)));
    }
    const gptq = rows.find((r) => r.method.id === "gptq");
    assert.ok(gptq);
    assert.equal(gptq.calibration.seqLen, 128);
    assert.equal(gptq.calibration.seqLenClampedFrom, 256);
    // An explicit --tokenizer is used; a missing one is named.
    await Deno.rename(`${dir}/tok512.bin`, `${dir}/other.bin`);
    const none = await cli("--model", model, "--methods", "rtn", "--dry-run", "--out", `${dir}/o2`);
    assert.equal(none.code, 2);
    assert.match(none.err, /no tokenizer beside this llama2\.c checkpoint.*--tokenizer/);
    const named = await cli(
      "--model",
      model,
      "--tokenizer",
      `${dir}/other.bin`,
      "--methods",
      "rtn",
      "--dry-run",
      "--out",
      `${dir}/o3`,
    );
    assert.equal(named.code, 0, named.err);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
