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

async function main(): Promise<void> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      windows: { type: "string" },
      context: { type: "string" },
      backend: { type: "string", default: "wasm" },
    },
  });
  const loaded = await stories260K();
  const context = Number(values.context ?? loaded.config.maxSeqLen);
  const model = { ...loaded, config: { ...loaded.config, maxSeqLen: context } };
  const file = "data/text/tinystories/tinystories_val_head.txt";
  const text = await Deno.readTextFile(sharedPath(file));
  const path = sharedPath(file);
  const dataset = { id: "tinystories", path, bytes: text.length, sha256: "bench" };
  // Both runs tokenize the whole file first (the task's protocol); timed here on its own.
  const t0 = performance.now();
  model.tokenizer.encode(text, { bos: false });
  const encodeS = (performance.now() - t0) / 1000;
  const limit = values.windows === undefined ? undefined : Number(values.windows);
  const run = async (kernels: Kernels) => {
    const t0 = performance.now();
    const r = await evaluatePerplexity(model, text, {
      kernels,
      dataDir: sharedPath("data"),
      ...(limit === undefined ? {} : { limit }),
    }, dataset);
    const seconds = (performance.now() - t0) / 1000;
    const windows = r.metrics.find((m) => m.metric === "ppl")!.n;
    const ppl = r.metrics.find((m) => m.metric === "ppl")!.value;
    return { windows, tokensPerS: (windows * context) / (seconds - encodeS), seconds, ppl };
  };
  const { kernels: fast } = await selectKernels(values.backend);
  await evaluatePerplexity(model, text, { kernels: fast, dataDir: "", limit: 2 }, dataset); // warm-up
  const ref = await run(refKernels);
  const ours = await run(fast);
  const rel = Math.abs(ours.ppl / ref.ppl - 1);
  console.log(`stories260K perplexity, ${ref.windows} windows × ${context} tokens (${file})`);
  console.log(`tokenizing the file: ${encodeS.toFixed(2)} s (in both runs, not in tokens/s)`);
  for (const [k, r] of [[refKernels, ref], [fast, ours]] as const) {
    console.log(
      `${k.id}: ${r.tokensPerS.toFixed(0)} tokens/s, task ${r.seconds.toFixed(1)} s, ppl ${r.ppl}`,
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
