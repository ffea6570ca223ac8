/**
 * End-to-end kernel benchmark: stories260K perplexity windows (TinyStories, 256-token
 * windows) scored with the plain-TS reference kernels and with `wasm-simd`, in the same run;
 * prints tokens/s of each, their ratio, and both perplexities (which must agree).
 *
 * Usage: `deno run --allow-read --allow-write --allow-env --allow-net bench/kernels_e2e.ts
 * [windows]` (default 8 windows). The model comes from the `../shared` mirror, as in tests.
 *
 * @module
 */

import { refKernels } from "../kernels/ref/mod.ts";
import type { Kernels } from "../kernels/types.ts";
import { wasmKernels } from "../kernels/wasm/mod.ts";
import { makeWindows } from "../tasks/perplexity.ts";
import { scoreWindow, windowLogProbs } from "../tasks/window_score.ts";
import { sharedPath } from "../testing/fixtures.ts";
import { stories260K } from "../testing/stories.ts";

async function main(): Promise<void> {
  const count = Number(Deno.args[0] ?? 8);
  const model = await stories260K();
  const text = await Deno.readTextFile(
    sharedPath("data/text/tinystories/tinystories_val_head.txt"),
  );
  const stream = model.tokenizer.encode(text.slice(0, 200_000));
  const windows = makeWindows(stream, 256, model.tokenizer.bosId, count);
  const vocab = model.config.vocabSize;
  const run = (kernels: Kernels) => {
    let nll = 0, n = 0;
    const t0 = performance.now();
    for (const w of windows) {
      const s = scoreWindow(windowLogProbs(model, w, kernels), undefined, w, vocab);
      nll += s.sumNll;
      n += s.scored;
    }
    const seconds = (performance.now() - t0) / 1000;
    return { tokensPerS: (windows.length * 256) / seconds, ppl: Math.exp(nll / n) };
  };
  const wasm = await wasmKernels();
  run(wasm); // warm-up (V8 tiers WASM up between calls)
  run(refKernels);
  const ref = run(refKernels);
  const fast = run(wasm);
  console.log(`stories260K, ${windows.length} windows × 256 tokens`);
  console.log(`${refKernels.id}: ${ref.tokensPerS.toFixed(0)} tokens/s, ppl ${ref.ppl}`);
  console.log(`${wasm.id}: ${fast.tokensPerS.toFixed(0)} tokens/s, ppl ${fast.ppl}`);
  console.log(
    `ratio ${(fast.tokensPerS / ref.tokensPerS).toFixed(2)}×, ` +
      `relative ppl difference ${Math.abs(fast.ppl / ref.ppl - 1).toExponential(2)}`,
  );
}

if (import.meta.main) await main();
