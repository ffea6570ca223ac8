/**
 * Writes a synthetic checkpoint of a real model's shape: the model's own `config.json`, random
 * weights in the config's dtype (bf16 by default) sharded as the Hub shards them (5 GB), and a
 * tokenizer. Speed and memory do not depend on trained values, so this is how real-scale runs
 * are measured where the real weights cannot be downloaded.
 *
 * Weights: linear layers and embeddings `N(0, 0.02²)` (transformers' `initializer_range`),
 * norm weights 1 (Gemma: 0, its norms multiply by `1 + w`), biases 0. The tensor names and
 * shapes come from `models/hf_weights.ts` (`hfTensorSpecs`), the description the loader reads.
 * The tokenizer files (`tokenizer.json`, or `vocab.json` + `merges.txt`, with
 * `tokenizer_config.json`) are copied from `--tokenizer` (default: the config's folder); they may
 * come from another model (e.g. Llama 2's for a model whose tokenizer is not at hand), and
 * config.json's `bos_token_id`/`eos_token_id` are then set to that tokenizer's.
 *
 * ```sh
 * deno run -A bench/synthetic_checkpoint.ts --config ../shared/models/configs/meta-llama/Llama-2-7b-hf \
 *   --tokenizer ../shared/models/configs/meta-llama/Llama-2-7b-hf --out /tmp/llama-2-7b-synthetic
 * ```
 *
 * @module
 */

import { parseArgs } from "node:util";
import { parseHfConfig } from "../models/hf_config.ts";
import { hfTensorSpecs } from "../models/hf_weights.ts";
import { readHfTokenizer } from "../models/hf_model.ts";
import { type TensorEntry, writeShardedSafetensors } from "../models/formats/safetensors_write.ts";

/** Options of {@linkcode writeSyntheticCheckpoint}. */
export interface SyntheticOptions {
  /** Directory holding the model's `config.json`. */
  readonly configDir: string;
  /** Directory to copy the tokenizer files (`tokenizer.json` or `vocab.json` + `merges.txt`) from. */
  readonly tokenizerDir: string;
  readonly outDir: string;
  /** Storage dtype (default BF16). */
  readonly dtype?: "BF16" | "F16" | "F32";
  /** Shard size limit in bytes (default 5e9, as `save_pretrained`). */
  readonly maxShardBytes?: number;
  /** Seed of the weights (default 0). */
  readonly seed?: number;
  /** Override the layer count (smaller runs of the same widths). */
  readonly layers?: number;
}

/** A fast seeded normal generator (xorshift128+ and Box–Muller). */
function normalSource(seed: number): () => number {
  let s0 = (seed * 0x9e3779b1 + 0x7f4a7c15) >>> 0 || 1;
  let s1 = 0x6c078965 ^ seed;
  const next = () => {
    let x = s0;
    const y = s1;
    s0 = y;
    x ^= x << 23;
    x ^= x >>> 17;
    x ^= y ^ (y >>> 26);
    s1 = x >>> 0;
    return ((s0 + s1) >>> 0) / 4294967296;
  };
  let spare: number | undefined;
  return () => {
    if (spare !== undefined) {
      const v = spare;
      spare = undefined;
      return v;
    }
    const u = Math.max(next(), 1e-12);
    const r = Math.sqrt(-2 * Math.log(u));
    const t = 2 * Math.PI * next();
    spare = r * Math.sin(t);
    return r * Math.cos(t);
  };
}

/** Writes the checkpoint; returns the files written. */
export async function writeSyntheticCheckpoint(o: SyntheticOptions): Promise<string[]> {
  const configText = await Deno.readTextFile(`${o.configDir}/config.json`);
  const json = JSON.parse(configText) as Record<string, unknown>;
  if (o.layers !== undefined) json.num_hidden_layers = o.layers;
  const config = parseHfConfig(json, `${o.configDir}/config.json`);
  // The tokenizer is read and checked before any weight is written (a missing one is an error
  // after seconds, not after gigabytes). A tokenizer borrowed from another model (the real one is
  // not available offline) brings its own special tokens: config.json names those, or the loader
  // would refuse the mismatch.
  const tok = await readHfTokenizer(async (name, optional) => {
    const path = `${o.tokenizerDir}/${name}`;
    try {
      return { bytes: await Deno.readFile(path), path };
    } catch (e) {
      if (optional && e instanceof Deno.errors.NotFound) return undefined;
      throw e;
    }
  }).catch((e) => {
    throw new Error(`--tokenizer ${o.tokenizerDir}: ${(e as Error).message}`, { cause: e });
  });
  if (tok.vocabSize > config.vocabSize) {
    throw new RangeError(
      `--tokenizer ${o.tokenizerDir}: ${tok.vocabSize} tokens, more than the model's ` +
        `vocab_size ${config.vocabSize}`,
    );
  }
  const dtype = o.dtype ?? "BF16";
  const normal = normalSource(o.seed ?? 0);
  const gemma = config.family === "gemma2";
  const entries: TensorEntry[] = hfTensorSpecs(config).map(({ name, shape }) => ({
    name,
    dtype,
    shape,
    data: () => {
      const n = shape.reduce((a, b) => a * b, 1);
      const isNorm = /norm\.weight$|layernorm\.weight$|layer_norm\.weight$/.test(name);
      const isBias = name.endsWith(".bias");
      const value = isBias ? () => 0 : isNorm ? () => (gemma ? 0 : 1) : () => 0.02 * normal();
      const f32 = new Float32Array(n);
      for (let i = 0; i < n; i++) f32[i] = value();
      if (dtype === "F32") return f32;
      if (dtype === "F16") return new Float16Array(f32);
      // float32 → bfloat16, round to nearest even (finite values only here).
      const u = new Uint32Array(f32.buffer);
      const out = new Uint16Array(n);
      for (let i = 0; i < n; i++) {
        const x = u[i]!;
        out[i] = ((x + 0x7fff + ((x >>> 16) & 1)) >>> 16) & 0xffff;
      }
      return out;
    },
  }));
  await Deno.mkdir(o.outDir, { recursive: true });
  const { files } = await writeShardedSafetensors(o.outDir, entries, {
    ...(o.maxShardBytes ? { maxShardBytes: o.maxShardBytes } : {}),
  });
  const torchDtype = { BF16: "bfloat16", F16: "float16", F32: "float32" }[dtype];
  // The tokenizer files that exist: tokenizer.json, or vocab.json + merges.txt (Qwen2.5's).
  const tokFiles = [
    "tokenizer.json",
    "vocab.json",
    "merges.txt",
    "tokenizer_config.json",
    "special_tokens_map.json",
  ];
  for (const f of tokFiles) {
    try {
      await Deno.copyFile(`${o.tokenizerDir}/${f}`, `${o.outDir}/${f}`);
      files.push(f);
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
  }
  await Deno.writeTextFile(
    `${o.outDir}/config.json`,
    JSON.stringify(
      {
        ...json,
        torch_dtype: torchDtype,
        bos_token_id: tok.hasBos === false ? null : tok.bosId,
        eos_token_id: tok.eosId,
      },
      null,
      2,
    ) + "\n",
  );
  return ["config.json", ...files];
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      config: { type: "string" },
      tokenizer: { type: "string" },
      out: { type: "string" },
      dtype: { type: "string", default: "BF16" },
      seed: { type: "string", default: "0" },
      layers: { type: "string" },
      "max-shard-bytes": { type: "string" },
    },
  });
  if (!values.config || !values.out) {
    console.error(
      "usage: synthetic_checkpoint.ts --config DIR --tokenizer DIR --out DIR " +
        "[--dtype BF16|F16|F32] [--seed N] [--layers N] [--max-shard-bytes N]",
    );
    Deno.exit(2);
  }
  const dtype = values.dtype!.toUpperCase();
  if (dtype !== "BF16" && dtype !== "F16" && dtype !== "F32") {
    console.error(`--dtype must be BF16, F16 or F32, got "${values.dtype}"`);
    Deno.exit(2);
  }
  for (const flag of ["layers", "seed", "max-shard-bytes"] as const) {
    const v = values[flag];
    if (v !== undefined && !(/^\d+$/.test(v) && (flag === "seed" || Number(v) > 0))) {
      console.error(
        `--${flag} must be a ${flag === "seed" ? "non-negative" : "positive"} integer, got "${v}"`,
      );
      Deno.exit(2);
    }
  }
  const t0 = performance.now();
  const files = await writeSyntheticCheckpoint({
    configDir: values.config,
    tokenizerDir: values.tokenizer ?? values.config,
    outDir: values.out,
    dtype,
    seed: Number(values.seed),
    ...(values.layers ? { layers: Number(values.layers) } : {}),
    ...(values["max-shard-bytes"] ? { maxShardBytes: Number(values["max-shard-bytes"]) } : {}),
  }).catch((e) => {
    console.error(`synth: ${(e as Error).message}`);
    Deno.exit(2);
  });
  console.log(
    `wrote ${files.join(", ")} to ${values.out} in ${
      ((performance.now() - t0) / 1000).toFixed(1)
    } s`,
  );
}
