/**
 * `deno task export` as a subprocess: bad flags exit 2 naming the flag and write nothing; a
 * refused export exits 1 and leaves no directory; a good one writes the files and a manifest
 * whose hashes match them.
 */
import assert from "node:assert/strict";
import { sha256Hex } from "../core/hash.ts";
import { needs, sharedPath } from "../testing/fixtures.ts";

const CLI = new URL("./cli.ts", import.meta.url).pathname;
const MODEL = sharedPath("models", "stories260K-hf");
const storiesHf = await needs("models/stories260K-hf");

async function run(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-read",
      "--allow-write",
      "--allow-env",
      "--allow-net",
      "--allow-sys",
      "--allow-run=git",
      CLI,
      ...args,
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

async function entries(dir: string): Promise<string[]> {
  const names: string[] = [];
  for await (const e of Deno.readDir(dir)) names.push(e.name);
  return names.sort();
}

Deno.test("export CLI: bad flags exit 2 naming the flag, before anything is written", async () => {
  const dir = await Deno.makeTempDir({ prefix: "lowbit-export-cli-" });
  try {
    const base = ["--model", MODEL, "--method", "rtn", "--bits", "4", "--group", "32"];
    const out = ["--out", `${dir}/out`];
    const cases: [string[], RegExp][] = [
      [
        [...base, "--format", "gguf", ...out],
        /--format must be one of gptq, compressed-tensors, onnx, got "gguf"/,
      ],
      [
        ["--model", MODEL, "--method", "rtn", "--group", "32", "--format", "onnx", ...out],
        /--bits is required/,
      ],
      [[
        "--model",
        MODEL,
        "--method",
        "rtn",
        "--bits",
        "9",
        "--group",
        "32",
        "--format",
        "onnx",
        ...out,
      ], /--bits 9 is outside 2–8/],
      [[
        "--model",
        MODEL,
        "--method",
        "rtn",
        "--bits",
        "4",
        "--group",
        "x",
        "--format",
        "onnx",
        ...out,
      ], /--group must be a positive integer, got "x"/],
      [[
        "--model",
        MODEL,
        "--method",
        "rtn",
        "--bits",
        "4",
        "--group",
        "tensor",
        "--format",
        "onnx",
        ...out,
      ], /--group tensor/],
      [[...base, "--format", "onnx"], /--out is required/],
      [[
        "--model",
        MODEL,
        "--method",
        "nope",
        "--bits",
        "4",
        "--group",
        "32",
        "--format",
        "onnx",
        ...out,
      ], /--method: .*nope/],
      [[
        "--model",
        MODEL,
        "--method",
        "rtn:foo=1",
        "--bits",
        "4",
        "--group",
        "32",
        "--format",
        "onnx",
        ...out,
      ], /--method: .*no parameter "foo"/],
      [[
        "--model",
        MODEL,
        "--method",
        "smoothquant",
        "--bits",
        "8",
        "--group",
        "32",
        "--format",
        "onnx",
        ...out,
      ], /--method smoothquant quantizes activations/],
      [
        [...base, "--format", "gptq", "--float-dtype", "F8", ...out],
        /--float-dtype must be F16, BF16, F32 or source/,
      ],
      [
        [...base, "--format", "gptq", "--gptq-format", "v3", ...out],
        /--gptq-format must be auto, gptq or gptq_v2/,
      ],
      [
        [...base, "--format", "onnx", "--tokens", "0", ...out],
        /--tokens must be a positive integer/,
      ],
      [[...base, "--format", "onnx", "--bogus", ...out], /Unknown option '--bogus'/],
      [[...base, "--format", "onnx", "--out", dir], /--out .* exists; exports never overwrite/],
    ];
    for (const [args, re] of cases) {
      const r = await run(args);
      assert.equal(r.code, 2, `${args.join(" ")}: exit ${r.code}\n${r.stderr}`);
      assert.match(r.stderr, re);
    }
    assert.deepEqual(await entries(dir), []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

storiesHf.test("export CLI: a refused export exits 1 and leaves nothing; a written one lists its files with their hashes", async () => {
  const dir = await Deno.makeTempDir({ prefix: "lowbit-export-cli-" });
  try {
    // stories260K's MLP width 172 is not a multiple of the 8 outputs a 4-bit GPTQ word packs.
    const refused = await run([
      "--model",
      MODEL,
      "--method",
      "rtn",
      "--bits",
      "4",
      "--group",
      "32",
      "--format",
      "gptq",
      "--out",
      `${dir}/gptq4`,
    ]);
    assert.equal(refused.code, 1, refused.stderr);
    assert.match(
      refused.stderr,
      /gate_proj: GPTQ qzeros packs 8 outputs per word at 4 bits; out_features 172/,
    );
    assert.deepEqual(await entries(dir), []);

    const ok = await run([
      "--model",
      MODEL,
      "--method",
      "rtn",
      "--bits",
      "4",
      "--group",
      "32",
      "--format",
      "compressed-tensors",
      "--float-dtype",
      "source",
      "--out",
      `${dir}/ct`,
    ]);
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, /lossless/);
    assert.deepEqual(await entries(dir), ["ct"]);
    const manifest = JSON.parse(await Deno.readTextFile(`${dir}/ct/lowbit_export.json`));
    assert.equal(manifest.format, "compressed-tensors");
    assert.equal(manifest.lossless, true);
    assert.equal(manifest.method.id, "rtn");
    assert.equal(manifest.quant.label, "W4A16g32");
    assert.equal(manifest.extra.fp16ExactScales, true);
    assert.deepEqual(
      manifest.source.files.map((f: { path: string }) => f.path),
      ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"],
    );
    const written = manifest.files.map((f: { path: string }) => f.path).sort();
    assert.deepEqual([...written, "lowbit_export.json"].sort(), await entries(`${dir}/ct`));
    for (const f of manifest.files) {
      const bytes = await Deno.readFile(`${dir}/ct/${f.path}`);
      assert.equal(f.bytes, bytes.length);
      assert.equal(f.sha256, await sha256Hex(bytes));
    }
    const config = JSON.parse(await Deno.readTextFile(`${dir}/ct/config.json`));
    assert.equal(config.quantization_config.format, "pack-quantized");
    assert.equal(config.torch_dtype, "float32");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
