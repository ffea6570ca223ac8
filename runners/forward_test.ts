import assert from "node:assert/strict";
import { createKvCache, forward, generateGreedy } from "./forward.ts";
import { loadModel } from "../models/load.ts";
import { bundledDataDir, needs, sharedPath } from "../testing/fixtures.ts";
import { stories260K } from "../testing/stories.ts";

const stories = await needs("hf-mirror");
const storiesHf = await needs("hf-mirror", "models/stories260K-hf");
const hfMoe = await needs("models/stories260K-hf", "models/stories260K-moe");

stories.test("greedy decoding of stories260K from BOS gives llama2.c's documented sample", async () => {
  const model = await stories260K();
  const ids = generateGreedy(model, [model.tokenizer.bosId], 40);
  const text = model.tokenizer.decode(ids);
  assert.ok(
    text.startsWith(
      "Once upon a time, there was a little girl named Lily. She loved to play outside in the park.",
    ),
    text,
  );
});

storiesHf.test("Hugging Face layout logits equal llama2.c logits within 1e-4 (rotate-half vs interleaved RoPE)", async () => {
  const l2c = await stories260K();
  const hf = await loadModel(sharedPath("models", "stories260K-hf"));
  assert.equal(hf.config.ropeStyle, "half");
  assert.equal(l2c.config.ropeStyle, "interleaved");
  const text =
    (await Deno.readTextFile(`${bundledDataDir()}/text/tinystories/tinystories_val_head.txt`))
      .slice(0, 4000);
  const ids = [1, ...l2c.tokenizer.encode(text).slice(0, 511)];
  assert.equal(ids.length, 512);
  const a = forward(l2c, ids);
  const b = forward(hf, ids);
  let maxDiff = 0, maxAbs = 0;
  for (let i = 0; i < a.length; i++) {
    maxDiff = Math.max(maxDiff, Math.abs(a[i]! - b[i]!));
    maxAbs = Math.max(maxAbs, Math.abs(a[i]!));
  }
  assert.ok(maxAbs > 5, "logits are not trivially small");
  assert.ok(maxDiff < 1e-4, `max |Δlogit| = ${maxDiff}`);
});

stories.test("KV-cache decoding gives the same logits as batched prefill", async () => {
  const model = await stories260K();
  const ids = [1, ...model.tokenizer.encode("Tom had a red ball. He liked to kick it.")];
  const all = forward(model, ids);
  const cache = createKvCache(model.config, ids.length);
  const vocab = model.config.vocabSize;
  // First half as one prefill, then token by token.
  const half = Math.floor(ids.length / 2);
  forward(model, ids.slice(0, half), { cache });
  for (let t = half; t < ids.length; t++) {
    const step = forward(model, [ids[t]!], { cache, logits: "last" });
    for (let i = 0; i < vocab; i++) {
      assert.ok(Math.abs(step[i]! - all[t * vocab + i]!) < 1e-4, `position ${t}, logit ${i}`);
    }
  }
  assert.equal(cache.pos, ids.length);
});

stories.test("forward() rejects token ids outside the vocabulary and cache overflow", async () => {
  const model = await stories260K();
  assert.throws(() => forward(model, [1, 512]), /token id 512 at 1 is outside \[0, 512\)/);
  const cache = createKvCache(model.config, 2);
  assert.throws(() => forward(model, [1, 2, 3], { cache }), /exceed the cache capacity 2/);
});

hfMoe.test("MoE forward: all experts with equal weights reproduce the dense model (MoEfication partition)", async () => {
  // stories260K-moe splits each dense FFN into 4 experts whose down projections are scaled by 2
  // (shared/models/README.md). With a zero router every expert gets softmax weight 1/4, so scaling
  // each expert's down by another 2 makes Σ_e ¼ · 4 · partial_e equal the dense FFN.
  const dense = await loadModel(sharedPath("models", "stories260K-hf"));
  const moe = await loadModel(sharedPath("models", "stories260K-moe"));
  assert.equal(moe.config.moe?.nExperts, 4);
  assert.equal(moe.config.moe?.topK, 2);
  const scale = (m: { rows: number; cols: number; data: Float32Array }, k: number) => ({
    ...m,
    data: m.data.map((x) => x * k),
  });
  const layers = moe.weights.layers.map((l) => {
    if (l.mlp.kind !== "moe") throw new Error("expected MoE layers");
    return {
      ...l,
      mlp: {
        ...l.mlp,
        router: scale(l.mlp.router, 0),
        experts: l.mlp.experts.map((e) => ({ ...e, down: scale(e.down, 2) })),
      },
    };
  });
  const allExperts = {
    config: { ...moe.config, moe: { ...moe.config.moe!, topK: 4 } },
    weights: { ...moe.weights, layers },
  };
  const ids = [1, ...dense.tokenizer.encode("Lily and Ben went to the park to play with a ball.")];
  const a = forward(dense, ids);
  const b = forward(allExperts, ids);
  let maxDiff = 0;
  for (let i = 0; i < a.length; i++) maxDiff = Math.max(maxDiff, Math.abs(a[i]! - b[i]!));
  assert.ok(maxDiff < 1e-4, `max |Δlogit| = ${maxDiff}`);
  // The saved top-2 model is a different (lossy) function.
  const top2 = forward(moe, ids);
  let diff2 = 0;
  for (let i = 0; i < a.length; i++) diff2 = Math.max(diff2, Math.abs(a[i]! - top2[i]!));
  assert.ok(diff2 > 0.1);
});
