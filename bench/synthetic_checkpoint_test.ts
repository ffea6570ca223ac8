import assert from "node:assert/strict";
import { loadModel } from "../models/load.ts";
import { forward } from "../runners/forward.ts";
import { refKernels } from "../kernels/ref/mod.ts";
import { needs, sharedPath } from "../testing/fixtures.ts";
import { writeSyntheticCheckpoint } from "./synthetic_checkpoint.ts";

const configs = await needs("models/configs");

configs.test("synthetic SmolLM2-135M (one layer) loads with the config's widths and the borrowed tokenizer's special tokens", async () => {
  const dir = await Deno.makeTempDir({ prefix: "lowbit-synth-" });
  try {
    const files = await writeSyntheticCheckpoint({
      configDir: sharedPath("models", "configs", "HuggingFaceTB", "SmolLM2-135M"),
      tokenizerDir: sharedPath("models", "configs", "meta-llama", "Llama-2-7b-hf"),
      outDir: dir,
      layers: 1,
    });
    assert.ok(files.includes("model.safetensors") && files.includes("tokenizer.json"));
    const real = JSON.parse(
      await Deno.readTextFile(
        sharedPath("models", "configs", "HuggingFaceTB", "SmolLM2-135M", "config.json"),
      ),
    );
    const written = JSON.parse(await Deno.readTextFile(`${dir}/config.json`));
    // SmolLM2's own ids are 0/0 (<|endoftext|>); Llama 2's tokenizer has <s> = 1 and </s> = 2.
    assert.equal(real.bos_token_id, 0);
    assert.deepEqual([written.bos_token_id, written.eos_token_id], [1, 2]);
    assert.equal(written.torch_dtype, "bfloat16");
    const model = await loadModel(dir);
    const c = model.config;
    assert.deepEqual(
      [c.dim, c.hiddenDim, c.nHeads, c.nKvHeads, c.vocabSize, c.nLayers, c.tiedEmbeddings],
      [real.hidden_size, real.intermediate_size, real.num_attention_heads, 3, 49152, 1, true],
    );
    // Weights drawn as N(0, 0.02²) and stored as bf16: the embedding's spread says so.
    const e = model.weights.embed.data;
    let sq = 0;
    for (let i = 0; i < 100_000; i++) sq += e[i]! ** 2;
    const std = Math.sqrt(sq / 100_000);
    assert.ok(Math.abs(std - 0.02) < 0.0005, `embedding std ${std}`);
    const logits = forward(model, [1, 400, 500], { kernels: refKernels });
    assert.equal(logits.length, 3 * 49152);
    assert.ok(logits.every(Number.isFinite));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

configs.test("a config folder without a tokenizer fails naming --tokenizer and what is missing, before any weight is written", async () => {
  const out = await Deno.makeTempDir({ prefix: "lowbit-synth-" });
  try {
    await assert.rejects(
      writeSyntheticCheckpoint({
        configDir: sharedPath("models", "configs", "mistralai", "Mixtral-8x7B-v0.1"),
        tokenizerDir: sharedPath("models", "configs", "mistralai", "Mixtral-8x7B-v0.1"),
        outDir: `${out}/ckpt`,
        layers: 1,
      }),
      /--tokenizer .*Mixtral-8x7B-v0\.1: .*no tokenizer/,
    );
    // Nothing was written: not a shard, not even the folder.
    assert.equal(await Deno.stat(`${out}/ckpt`).then(() => true, () => false), false);
  } finally {
    await Deno.remove(out, { recursive: true });
  }
});
