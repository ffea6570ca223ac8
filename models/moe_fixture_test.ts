/**
 * The MoE fixture's published perplexities (shared/models/README.md, "MoE"), reproduced under that
 * README's own protocol — not the suite's perplexity task: the text after the first blank line
 * past the middle character, encoded once with BOS and the dummy prefix, cut into non-overlapping
 * 512-token windows (a last shorter window kept if it has ≥ 2 tokens), each window scoring its own
 * next-token predictions.
 */
import assert from "node:assert/strict";
import { wasmKernels } from "../kernels/wasm/mod.ts";
import { forward } from "../runners/forward.ts";
import { loadModel } from "./load.ts";
import type { LoadedModel } from "./types.ts";
import { bundledDataDir, needs, sharedPath } from "../testing/fixtures.ts";

const hfMoe = await needs("models/stories260K-hf", "models/stories260K-moe");

async function readmePerplexity(model: LoadedModel): Promise<{ ppl: number; predicted: number }> {
  const text = await Deno.readTextFile(
    `${bundledDataDir()}/text/tinystories/tinystories_val_head.txt`,
  );
  const chars = [...text];
  const middle = chars.slice(0, Math.floor(chars.length / 2)).join("").length; // UTF-16 offset
  const cut = text.indexOf("\n\n", middle);
  const second = text.slice(cut).replace(/^\n+/, "");
  const ids = model.tokenizer.encode(second, { bos: true });
  const kernels = await wasmKernels();
  let nll = 0, predicted = 0;
  for (let s = 0; s < ids.length; s += 512) {
    const w = ids.slice(s, s + 512);
    if (w.length < 2) break;
    const V = model.config.vocabSize;
    const logits = forward(model, w, { kernels });
    for (let t = 0; t + 1 < w.length; t++) {
      let max = -Infinity;
      for (let v = 0; v < V; v++) max = Math.max(max, logits[t * V + v]!);
      let sum = 0;
      for (let v = 0; v < V; v++) sum += Math.exp(logits[t * V + v]! - max);
      nll += max + Math.log(sum) - logits[t * V + w[t + 1]!]!;
      predicted++;
    }
  }
  return { ppl: Math.exp(nll / predicted), predicted };
}

hfMoe.test("stories260K-hf and stories260K-moe reproduce the fixture README's perplexities (1e-3 relative)", async () => {
  const dense = await readmePerplexity(await loadModel(sharedPath("models", "stories260K-hf")));
  assert.equal(dense.predicted, 198835);
  assert.ok(Math.abs(dense.ppl / 5.785 - 1) < 1e-3, `dense ${dense.ppl}`);
  const moe = await readmePerplexity(await loadModel(sharedPath("models", "stories260K-moe")));
  assert.ok(Math.abs(moe.ppl / 28.013 - 1) < 1e-3, `MoE ${moe.ppl}`);
});
