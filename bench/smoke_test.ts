/**
 * The benchmarks run: each command-line benchmark is started as the README starts it, with its
 * smallest settings, and must exit 0 and print its tables. Their numbers are not checked (speed is
 * never asserted); a benchmark that crashes, hangs on a worker or lost a flag fails here.
 */
import assert from "node:assert/strict";
import { needs, sharedPath } from "../testing/fixtures.ts";

const ROOT = new URL("..", import.meta.url);

/** Runs `deno run -A <script> …args` from the repository root; stdout, stderr and exit code. */
async function runBench(script: string, args: string[]): Promise<{ out: string; err: string }> {
  const p = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--v8-flags=--expose-gc", script, ...args],
    cwd: ROOT,
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).output();
  const out = new TextDecoder().decode(p.stdout);
  const err = new TextDecoder().decode(p.stderr);
  assert.equal(p.code, 0, `${script} ${args.join(" ")} exited ${p.code}:\n${err.slice(-2000)}`);
  return { out, err };
}

/** Every `headers` line appears in `out`, in that order. */
function assertInOrder(out: string, headers: readonly (string | RegExp)[], what: string): void {
  let at = 0;
  for (const h of headers) {
    const rest = out.slice(at);
    const i = typeof h === "string" ? rest.indexOf(h) : rest.search(h);
    assert.ok(i >= 0, `${what}: "${h}" missing after offset ${at} of:\n${out}`);
    at += i + 1;
  }
}

const stories = await needs("hf-mirror");

stories.test(
  "bench:kernels --smoke: all four tables, kernel threads after onnxruntime-web",
  async () => {
    // The kernels table runs onnxruntime-web, which replaces globalThis.Worker under Deno; the
    // threads table after it then died with "self is not defined" in its workers.
    const { out } = await runBench("bench/kernels.ts", ["--smoke", "--no-webgpu"]);
    assertInOrder(out, [
      /^kernel +M×N×K +wasm-simd GFLOP\/s/m,
      /^GEMM +16×64×64 /m,
      /^dequant-GEMM 2-bit g128 +8×64×256 /m,
      "End to end: stories260K perplexity",
      /^wasm-simd +\d+ +\d\.\d+/m,
      "Kernel threads",
      /^GEMM +128×4096×4096 +[\d.]+ +[\d.]+ +[\d.]+× +1 *$/m,
      /[Dd]ecod/,
    ], "bench/kernels.ts");
  },
);

/** Whether `python3` with NumPy runs here (the NumPy baseline needs it). */
async function hasNumpy(): Promise<boolean> {
  try {
    const p = await new Deno.Command("python3", {
      args: ["-c", "import numpy"],
      stdout: "null",
      stderr: "null",
    }).output();
    return p.success;
  } catch {
    return false;
  }
}

Deno.test({
  name: "gptq_numpy --quick: our GPTQ and an independent NumPy GPTQ give the same codes",
  ignore: !(await hasNumpy()),
  fn: async () => {
    const { out } = await runBench("bench/gptq_numpy.ts", ["--quick"]);
    assertInOrder(out, ["| Hessian ", "| inverse factor ", "| sweep ", "| total "], "gptq_numpy");
    // Both are float64 GPTQ (IST-DASLab's loop in NumPy vs ours): only summation order differs.
    const same = Number(/identical codes: ([\d.]+) %/.exec(out)?.[1]);
    assert.ok(same >= 99.9, `identical codes ${same} %:\n${out}`);
  },
});

Deno.test("gptq_layer --quick: both small shapes measured in one process", async () => {
  const { out } = await runBench("bench/gptq_layer.ts", ["--quick", "--in-process"]);
  assertInOrder(out, ["512x512", "512x1376"], "bench/gptq_layer.ts");
});

stories.test("block_backward: stories260K's block and the synthetic one", async () => {
  const { out } = await runBench("bench/block_backward.ts", ["--tokens", "16", "--reps", "1"]);
  assertInOrder(out, [
    "16 tokens, median of 1",
    /^stories260K +forward \(T=16\)/m,
    /^stories260K +AffineQuant/m,
    /^synthetic-768 +forward \(T=16\)/m,
  ], "bench/block_backward.ts");
});

const tokenizers = await needs(
  "models/configs/meta-llama/Llama-2-7b-hf",
  "models/configs/microsoft/Phi-3-mini-4k-instruct",
  "models/configs/Qwen/Qwen2.5-0.5B",
  "data/text/wikitext2/wiki.test.raw",
);

tokenizers.test("tokenizers --chars: the three real tokenizers load and encode", async () => {
  const { out } = await runBench("bench/tokenizers.ts", ["--chars", "2000"]);
  assertInOrder(out, [
    "WikiText-2 raw test: 2000 chars",
    /^\| Llama-2 \(tokenizer\.json\) +\| \d+ +\| [\d.]+ +\| [1-9]\d* +\|/m,
    /^\| Phi-3 \(tokenizer\.json\) +\| \d+ +\| [\d.]+ +\| [1-9]\d* +\|/m,
    /^\| Qwen2\.5 \(vocab\.json \+ merges\.txt\) +\| \d+ +\| [\d.]+ +\| [1-9]\d* +\|/m,
  ], "bench/tokenizers.ts");
});

Deno.test("llama_cpp: without node-llama-cpp it says where to install it, exit 2", async () => {
  const p = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "bench/llama_cpp.ts",
      "--model",
      "stories260K",
      "--llama-cpp",
      "/nonexistent",
    ],
    cwd: ROOT,
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1", LOWBIT_LLAMA_CPP: "" },
  }).output();
  assert.equal(p.code, 2);
  assert.match(new TextDecoder().decode(p.stderr), /--llama-cpp DIR .* node-llama-cpp/);
});

// Runs only where node-llama-cpp is installed (LOWBIT_LLAMA_CPP=DIR): llama.cpp and lowbit score
// the same window of stories260K's transformers-layout copy (rotate-half RoPE, so the GGUF's q/k
// rows are reordered) to within llama.cpp's float16 KV cache.
const llamaCpp = Deno.env.get("LOWBIT_LLAMA_CPP");
const hfCopy = await needs("models/stories260K-hf");
hfCopy.test({
  name: "llama_cpp: llama.cpp and lowbit agree on the same GGUF weights (needs LOWBIT_LLAMA_CPP)",
  ignore: !llamaCpp,
  fn: async () => {
    const { out } = await runBench("bench/llama_cpp.ts", [
      "--model",
      sharedPath("models/stories260K-hf"),
      "--context",
      "64",
      "--pairs",
      "1",
      "--threads",
      "1",
    ]);
    const m = out.match(/mean NLL: lowbit ([\d.]+), llama.cpp ([\d.]+)/);
    assert.ok(m, out);
    assert.ok(Math.abs(Number(m[1]) - Number(m[2])) < 2e-3, out);
  },
});
