/**
 * Perplexity speed beside llama.cpp on the same weights, in the same run: the model is written
 * as an F32 GGUF (`models/formats/gguf.ts`), and one window of `--context` tokens is scored alternately by
 * lowbit (the perplexity task's path: final hidden states by the whole-window WASM forward, then
 * classifier and log-softmax in row chunks, `--threads` kernel threads) and by llama.cpp
 * (node-llama-cpp's prebuilt CPU build in a Node process, `--threads` threads, every position's
 * logits computed as its perplexity tool does; `bench/llama_cpp_eval.mjs`). Loading is timed for
 * neither. Each pair gives a ratio (llama.cpp seconds / lowbit seconds: above 1, lowbit is
 * faster); the median ratio is reported with both mean NLLs, which must agree (llama.cpp keeps
 * its KV cache in float16, so to ~1e-3 nats, not bit for bit).
 *
 * Needs Node and node-llama-cpp installed in a directory given by `--llama-cpp DIR` or
 * `LOWBIT_LLAMA_CPP` (`npm install --omit=optional node-llama-cpp @node-llama-cpp/linux-x64` there,
 * or the package of your platform); not a dependency of lowbit.
 *
 * Usage: `deno run -A --v8-flags=--expose-gc bench/llama_cpp.ts --model DIR --llama-cpp DIR
 * [--context 2048] [--threads 2] [--pairs 3] [--gguf FILE]` (`--gguf`: where the GGUF is
 * written, reused when it exists; default a temporary file, removed at the end).
 *
 * @module
 */

import { parseArgs } from "node:util";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { loadModel } from "../models/load.ts";
import { wasmKernels } from "../kernels/wasm/mod.ts";
import { scoreWindowChunked, windowHidden } from "../runners/window_score.ts";
import { SeededRng } from "../core/rng.ts";
import { ggufUnsupported, llamaGguf, writeGguf } from "../models/formats/gguf.ts";
import { median } from "../core/stats.ts";

/** One llama.cpp timing from `llama_cpp_eval.mjs`. */
interface LlamaCppRun {
  readonly seconds: number;
  readonly sumNll: number;
  readonly scored: number;
}

/** Fails with exit 2 and `message` (bad flags or a missing llama.cpp install). */
function usage(message: string): never {
  console.error(`bench/llama_cpp.ts: ${message}`);
  Deno.exit(2);
}

/** Runs the Node side once: `repeats` timed windows of `tokensFile` on `threads` threads. */
async function llamaCppRuns(
  dir: string,
  gguf: string,
  tokensFile: string,
  threads: number,
  repeats: number,
): Promise<LlamaCppRun[]> {
  const script = new URL("./llama_cpp_eval.mjs", import.meta.url).pathname;
  const p = await new Deno.Command("node", {
    args: [script, gguf, tokensFile, String(threads), String(repeats)],
    env: { LOWBIT_LLAMA_CPP: dir },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const out = new TextDecoder().decode(p.stdout);
  if (p.code !== 0) {
    throw new Error(`llama.cpp run failed (${p.code}): ${new TextDecoder().decode(p.stderr)}`);
  }
  return out.trim().split("\n").map((l) => JSON.parse(l) as LlamaCppRun);
}

/** The flags, checked before anything runs. */
function parseFlags() {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      model: { type: "string" },
      "llama-cpp": { type: "string" },
      context: { type: "string", default: "2048" },
      threads: { type: "string", default: "2" },
      pairs: { type: "string", default: "3" },
      gguf: { type: "string" },
    },
  });
  if (!values.model) usage("--model DIR is required");
  const dir = values["llama-cpp"] ?? Deno.env.get("LOWBIT_LLAMA_CPP");
  if (!dir || !existsSync(join(dir, "node_modules", "node-llama-cpp"))) {
    usage(
      "--llama-cpp DIR (or LOWBIT_LLAMA_CPP) must name a directory with node-llama-cpp in its " +
        "node_modules (npm install --omit=optional node-llama-cpp @node-llama-cpp/linux-x64)",
    );
  }
  const int = (name: "context" | "threads" | "pairs") => {
    const v = Number(values[name]);
    if (!Number.isInteger(v) || v < 1) usage(`--${name}: expected a positive integer`);
    return v;
  };
  return {
    model: values.model,
    dir,
    context: int("context"),
    threads: int("threads"),
    pairs: int("pairs"),
    gguf: values.gguf,
  };
}

if (import.meta.main) {
  const f = parseFlags();
  const model = await loadModel(f.model);
  const c = model.config;
  const why = ggufUnsupported(c, model.weights);
  if (why) usage(why);
  const T = Math.min(f.context, c.maxSeqLen);
  const rng = new SeededRng(1);
  const window = [
    model.tokenizer.bosId,
    ...Array.from({ length: T - 1 }, () => rng.int(3, c.vocabSize - 1)),
  ];
  const tmp = await Deno.makeTempDir({ prefix: "lowbit-llama-cpp-" });
  const gguf = f.gguf ?? join(tmp, "model.gguf");
  try {
    if (!existsSync(gguf)) {
      const t0 = performance.now();
      const ids = { bos: model.tokenizer.bosId, eos: model.tokenizer.eosId };
      const { meta, tensors } = llamaGguf(c, model.weights, ids);
      const bytes = await writeGguf(gguf, meta, tensors);
      console.log(
        `wrote ${gguf}: ${(bytes / 1e6).toFixed(0)} MB in ${
          ((performance.now() - t0) / 1000).toFixed(1)
        } s`,
      );
    }
    const tokensFile = join(tmp, "window.json");
    await Deno.writeTextFile(tokensFile, JSON.stringify(window));
    const ratios: number[] = [], ours: number[] = [], theirs: number[] = [];
    let nll = { ours: 0, theirs: 0 };
    const k = await wasmKernels({ threads: f.threads });
    try {
      const lowbit = () => {
        const t0 = performance.now();
        const s = scoreWindowChunked(model, windowHidden(model, window, k), window, k);
        return { seconds: (performance.now() - t0) / 1000, sumNll: s.sumNll, scored: s.scored };
      };
      lowbit(); // warm-up: panels into WASM memory, as llama.cpp's load maps its weights
      console.log(`${f.model}: one window of ${T} tokens, ${f.threads} threads, ${f.pairs} pairs`);
      for (let p = 0; p < f.pairs; p++) {
        const a = lowbit();
        const [b] = await llamaCppRuns(f.dir, gguf, tokensFile, f.threads, 1);
        ours.push(a.seconds), theirs.push(b!.seconds), ratios.push(b!.seconds / a.seconds);
        nll = { ours: a.sumNll / a.scored, theirs: b!.sumNll / b!.scored };
        console.log(
          `  pair ${p + 1}: lowbit ${a.seconds.toFixed(2)} s, llama.cpp ${
            b!.seconds.toFixed(2)
          } s, ` +
            `ratio ${(b!.seconds / a.seconds).toFixed(3)}`,
        );
      }
    } finally {
      k.close?.();
    }
    const tps = (s: number) => ((T - 1) / s).toFixed(1);
    console.log(
      `lowbit ${tps(median(ours))} tokens/s, llama.cpp ${tps(median(theirs))} tokens/s; ` +
        `median ratio (llama.cpp s / lowbit s) ${median(ratios).toFixed(3)}`,
    );
    console.log(
      `mean NLL: lowbit ${nll.ours.toFixed(6)}, llama.cpp ${nll.theirs.toFixed(6)} ` +
        `(|Δ| ${Math.abs(nll.ours - nll.theirs).toExponential(2)} nats/token)`,
    );
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
}
