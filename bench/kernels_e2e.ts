/**
 * End-to-end kernel benchmark: stories260K perplexity on the TinyStories file (the perplexity
 * task's own protocol: `evaluatePerplexity`, windows of the model's context, in this thread),
 * once with the plain-TS reference kernels and once with `wasm-simd` (whose whole-window path
 * runs each window in one WASM call), in the same run; prints tokens/s of each, their ratio and
 * both perplexities, which must agree to 1e-5 relative (the script fails otherwise).
 *
 * Usage: `deno run --allow-read --allow-write --allow-env --allow-net bench/kernels_e2e.ts
 * [--windows N] [--context T] [--backend wasm|wasm-fma]` (default: every window of the file at
 * the model's context of 512; the reference takes a few minutes). The model comes from the
 * `../shared` mirror, as in tests. Ratios are meaningful only on an otherwise idle machine.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { selectKernels } from "../kernels/backend.ts";
import { refKernels } from "../kernels/ref/mod.ts";
import type { Kernels } from "../kernels/types.ts";
import { evaluatePerplexity } from "../tasks/perplexity.ts";
import { sharedPath } from "../testing/fixtures.ts";
import { stories260K } from "../testing/stories.ts";

/** One backend's perplexity run. */
export interface PerplexitySpeed {
  readonly backend: string;
  readonly windows: number;
  /** Evaluated tokens per second, the shared tokenization of the file left out. */
  readonly tokensPerS: number;
  /** Wall time of the whole task, tokenization included. */
  readonly seconds: number;
  readonly ppl: number;
}

/**
 * Times the perplexity task on stories260K over the TinyStories file with each of `kernels`, in
 * order (after a two-window warm-up of each); `windows` limits the windows (default: all).
 */
export async function perplexitySpeed(
  kernels: readonly Kernels[],
  options: { readonly windows?: number; readonly context?: number } = {},
): Promise<{ readonly context: number; readonly encodeS: number; runs: PerplexitySpeed[] }> {
  const loaded = await stories260K();
  const context = options.context ?? loaded.config.maxSeqLen;
  const model = { ...loaded, config: { ...loaded.config, maxSeqLen: context } };
  const path = sharedPath(FILE);
  const text = await Deno.readTextFile(path);
  const dataset = { id: "tinystories", path, bytes: text.length, sha256: "bench" };
  const run = async (k: Kernels, limit?: number) => {
    const t0 = performance.now();
    const r = await evaluatePerplexity(model, text, {
      kernels: k,
      dataDir: sharedPath("data"),
      ...(limit === undefined ? {} : { limit }),
    }, dataset);
    const ppl = r.metrics.find((m) => m.metric === "ppl")!;
    return { seconds: (performance.now() - t0) / 1000, windows: ppl.n, ppl: ppl.value };
  };
  for (const k of kernels) await run(k, 2); // warm-up: V8 tiers WASM and JS up between calls
  // Every run tokenizes the whole file first (the task's protocol); timed here on its own.
  const t0 = performance.now();
  model.tokenizer.encode(text, { bos: false });
  const encodeS = (performance.now() - t0) / 1000;
  const runs: PerplexitySpeed[] = [];
  for (const k of kernels) {
    const r = await run(k, options.windows);
    const tokensPerS = (r.windows * context) / Math.max(1e-9, r.seconds - encodeS);
    runs.push({ backend: k.id, ...r, tokensPerS });
  }
  return { context, encodeS, runs };
}

const FILE = "data/text/tinystories/tinystories_val_head.txt";

async function main(): Promise<void> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      windows: { type: "string" },
      context: { type: "string" },
      backend: { type: "string", default: "wasm" },
    },
  });
  const { kernels: fast } = await selectKernels(values.backend);
  const { context, encodeS, runs } = await perplexitySpeed([refKernels, fast], {
    ...(values.windows === undefined ? {} : { windows: Number(values.windows) }),
    ...(values.context === undefined ? {} : { context: Number(values.context) }),
  });
  const [ref, ours] = runs as [PerplexitySpeed, PerplexitySpeed];
  const rel = Math.abs(ours.ppl / ref.ppl - 1);
  console.log(`stories260K perplexity, ${ref.windows} windows × ${context} tokens (${FILE})`);
  console.log(`tokenizing the file: ${encodeS.toFixed(2)} s (in both runs, not in tokens/s)`);
  for (const r of runs) {
    console.log(
      `${r.backend}: ${r.tokensPerS.toFixed(0)} tokens/s, task ${r.seconds.toFixed(1)} s, ` +
        `ppl ${r.ppl}`,
    );
  }
  console.log(
    `ratio ${(ours.tokensPerS / ref.tokensPerS).toFixed(2)}× (whole task ` +
      `${(ref.seconds / ours.seconds).toFixed(2)}×), relative ppl difference ${
        rel.toExponential(2)
      }`,
  );
  if (!(rel <= 1e-5)) throw new Error(`perplexities differ by ${rel} relative (budget 1e-5)`);
}

if (import.meta.main) await main();
