/**
 * End-to-end kernel benchmark: stories260K perplexity on the TinyStories file (the perplexity
 * task's windows and per-window scoring, in this thread) with the plain-TS reference kernels and
 * with `wasm-simd` (whose whole-window path runs each window in one WASM call), alternating window
 * by window; prints tokens/s of each, their ratio and both perplexities, which must agree to 1e-5
 * relative (the script fails otherwise); then times the task itself with `wasm-simd` and checks it
 * reports the same perplexity (to 1e-12: only the order of its sum may differ).
 *
 * Usage: `deno run --allow-read --allow-write --allow-env --allow-net bench/kernels_e2e.ts
 * [--windows N] [--context T] [--backend wasm|wasm-fma]` (default: every window of the file at
 * the model's context of 512; the reference takes a few minutes). The model comes from the
 * `../shared` mirror (or the Hub), as in tests; the text is the repository's copy (`data/`).
 * Ratios are meaningful only on an otherwise idle machine.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { selectKernels } from "../runners/backend.ts";
import { refKernels } from "../kernels/ref/mod.ts";
import type { Kernels } from "../kernels/types.ts";
import { evaluatePerplexity, makeWindows } from "../tasks/perplexity.ts";
import { scoreWindow, windowLogProbs } from "../runners/window_score.ts";
import { bundledDataDir } from "../testing/fixtures.ts";
import { stories260K } from "../testing/stories.ts";

/** One backend's perplexity run. */
export interface PerplexitySpeed {
  readonly backend: string;
  readonly windows: number;
  /** Evaluated tokens per second over the alternated windows (the task's per-window work). */
  readonly tokensPerS: number;
  /** Seconds of that work. */
  readonly seconds: number;
  /** Perplexity of the alternated windows: exp of the mean NLL of the scored tokens. */
  readonly ppl: number;
}

/**
 * Times stories260K perplexity over the TinyStories file with each of `kernels`: the windows of
 * the perplexity task (`makeWindows` over the file's tokens at the model's context), each scored
 * as the task scores it in this thread (`windowLogProbs` then `scoreWindow`), the backends
 * alternating window by window (in turn first), so a drift of the machine's speed during the
 * minutes of the run weighs on both alike. `windows` limits the windows (default: all).
 */
export async function perplexitySpeed(
  kernels: readonly Kernels[],
  options: { readonly windows?: number; readonly context?: number } = {},
): Promise<{ readonly context: number; runs: PerplexitySpeed[] }> {
  const model = await stories260K();
  const context = options.context ?? model.config.maxSeqLen;
  if (context > model.config.maxSeqLen) {
    throw new RangeError(`context ${context} exceeds stories260K's ${model.config.maxSeqLen}`);
  }
  const text = await Deno.readTextFile(`${bundledDataDir()}/${FILE}`);
  const stream = model.tokenizer.encode(text, { bos: false });
  const windows = makeWindows(stream, context, model.tokenizer.bosId, options.windows);
  const vocab = model.config.vocabSize;
  const score = (k: Kernels, w: number[]) =>
    scoreWindow(windowLogProbs(model, w, k), undefined, w, vocab);
  for (const k of kernels) for (const w of windows.slice(0, 2)) score(k, w); // V8 tier-up
  const seconds = kernels.map(() => 0), nll = kernels.map(() => 0), scored = kernels.map(() => 0);
  for (const [i, w] of windows.entries()) {
    for (let j = 0; j < kernels.length; j++) {
      const b = (i + j) % kernels.length;
      const t0 = performance.now();
      const s = score(kernels[b]!, w);
      seconds[b]! += (performance.now() - t0) / 1000;
      nll[b]! += s.sumNll;
      scored[b]! += s.scored;
    }
  }
  const runs = kernels.map((k, b) => ({
    backend: k.id,
    windows: windows.length,
    seconds: seconds[b]!,
    tokensPerS: (windows.length * context) / seconds[b]!,
    ppl: Math.exp(nll[b]! / scored[b]!),
  }));
  return { context, runs };
}

/** Wall seconds and perplexity of the perplexity task itself (tokenization included). */
export async function perplexityTask(
  kernels: Kernels,
  windows?: number,
): Promise<{ readonly seconds: number; readonly ppl: number }> {
  const model = await stories260K();
  const path = `${bundledDataDir()}/${FILE}`;
  const text = await Deno.readTextFile(path);
  const dataset = { id: "tinystories", path, bytes: text.length, sha256: "bench" };
  const t0 = performance.now();
  const r = await evaluatePerplexity(model, text, {
    kernels,
    dataDir: bundledDataDir(),
    ...(windows === undefined ? {} : { limit: windows }),
  }, dataset);
  return {
    seconds: (performance.now() - t0) / 1000,
    ppl: r.metrics.find((m) => m.metric === "ppl")!.value,
  };
}

const FILE = "text/tinystories/tinystories_val_head.txt";

async function main(): Promise<void> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      windows: { type: "string" },
      context: { type: "string" },
      backend: { type: "string", default: "wasm" },
    },
  });
  const count = (flag: string, v: string | undefined, min: number) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min) {
      throw new RangeError(`--${flag} must be an integer ≥ ${min}, got "${v}"`);
    }
    return n;
  };
  const windows = values.windows === undefined ? undefined : count("windows", values.windows, 1);
  if (values.context !== undefined) count("context", values.context, 2);
  const { kernels: fast } = await selectKernels(values.backend);
  const { context, runs } = await perplexitySpeed([refKernels, fast], {
    ...(windows === undefined ? {} : { windows }),
    ...(values.context === undefined ? {} : { context: Number(values.context) }),
  });
  const [ref, ours] = runs as [PerplexitySpeed, PerplexitySpeed];
  console.log(
    `stories260K perplexity, ${ref.windows} windows × ${context} tokens (${FILE}), one thread, ` +
      "backends alternating window by window",
  );
  for (const r of runs) {
    console.log(
      `${r.backend}: ${r.tokensPerS.toFixed(0)} tokens/s (${r.seconds.toFixed(1)} s), ppl ${r.ppl}`,
    );
  }
  const rel = Math.abs(ours.ppl / ref.ppl - 1);
  console.log(
    `ratio ${(ours.tokensPerS / ref.tokensPerS).toFixed(2)}×, relative ppl difference ${
      rel.toExponential(2)
    }`,
  );
  if (!(rel <= 1e-5)) throw new Error(`perplexities differ by ${rel} relative (budget 1e-5)`);
  if (values.context === undefined) {
    // The task itself, as `deno task bench` runs it (its own tokenization and windows).
    const task = await perplexityTask(fast, windows);
    // The same windows and log-probabilities; only the order of the NLL sum may differ.
    const taskRel = Math.abs(task.ppl / ours.ppl - 1);
    console.log(
      `perplexity task with ${fast.id}: ${task.seconds.toFixed(1)} s in all, ppl ${task.ppl} ` +
        `(${taskRel.toExponential(1)} from the alternated run's)`,
    );
    if (!(taskRel <= 1e-12)) throw new Error(`the task's perplexity differs by ${taskRel}`);
  }
}

if (import.meta.main) await main();
