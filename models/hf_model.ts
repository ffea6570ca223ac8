/**
 * A transformers-layout model (`config.json`, `model.safetensors` or a sharded
 * `model.safetensors.index.json`, `tokenizer.json` or, without it, a byte-level BPE's
 * `vocab.json` + `merges.txt` (`bpe_files.ts`), optional `tokenizer_config.json`) from a
 * file reader that returns bytes ({@linkcode buildHfModel}; the browser page reads over HTTP
 * with {@linkcode loadHfFromUrl}); files on disk are read by `hf_files.ts`.
 *
 * Every file is parsed and validated before any compute; errors name the file. Checkpoints too
 * large to hold in float32 keep their stored dtype: tensors are read from their files when a
 * block is used (see `residency.ts`).
 *
 * @module
 */

import { sha256Hex } from "../core/hash.ts";
import { FormatError } from "../core/errors.ts";
import { describe } from "../core/describe.ts";
import { parseHfConfig } from "./hf_config.ts";
import { hfWeights, storeSource, type TensorSource } from "./hf_weights.ts";
import {
  configStorageDtype,
  parseQuantizationConfig,
  quantizedTensorSource,
} from "./formats/quantized_import.ts";
import { hfTokenizer } from "./hf_tokenizer.ts";
import { tokenizerJsonFromBpeFiles } from "./bpe_files.ts";
import { WEIGHT_BUDGET } from "./residency.ts";
import { parseShardIndex, SAFETENSORS_DTYPE_BYTES } from "./safetensors.ts";
import { memoryTensorStore, type TensorStore } from "./tensor_store.ts";
import type { LlamaConfig, LlamaWeights, LoadedModel, SourceFile, Tokenizer } from "./types.ts";

/**
 * Reads one file of the model by its name in the layout: its bytes and the path or URL to name
 * in errors; `undefined` when `optional` and absent (a missing required file throws).
 */
export type ModelFileReader = (
  name: string,
  optional?: boolean,
) => Promise<{ bytes: Uint8Array; path: string } | undefined>;

/**
 * How weights are held: `eager` converts every tensor to float32 at load, `lazy` keeps the
 * stored dtype and materializes blocks on access, `auto` (default) is eager when the model's
 * float32 size is at most half of `LOWBIT_RESIDENT_BYTES` (`WEIGHT_BUDGET`).
 */
export type Residence = "auto" | "eager" | "lazy";

/** Options of the transformers-layout loaders. */
export interface HfLoadOptions {
  /** How weights are held (default `auto`). */
  readonly residence?: Residence;
}

/** Parses a JSON file, naming it on error. */
export function parseJson(bytes: Uint8Array, path: string): unknown {
  try {
    return JSON.parse(new TextDecoder().decode(bytes));
  } catch (e) {
    throw new FormatError(path, `not valid JSON (${(e as Error).message})`, { cause: e });
  }
}

/** Float32 bytes of every tensor of a store. */
function float32Bytes(store: TensorStore): number {
  let n = 0;
  for (const t of store.tensors.values()) {
    n += (t.length / (SAFETENSORS_DTYPE_BYTES[t.dtype] ?? 4)) * 4;
  }
  return n;
}

function isLazy(residence: Residence, store: TensorStore): boolean {
  if (residence === "auto") return float32Bytes(store) > WEIGHT_BUDGET / 2;
  return residence === "lazy";
}

/** The provenance order of a model's files: config, index, shards, tokenizer files. */
const FILE_ORDER = ["config.json", "model.safetensors.index.json"];
const FILE_LAST = ["tokenizer.json", "vocab.json", "merges.txt", "tokenizer_config.json"];

function fileRank(path: string): number {
  const first = FILE_ORDER.indexOf(path);
  if (first >= 0) return first;
  const last = FILE_LAST.indexOf(path);
  return last >= 0 ? 100 + last : 50;
}

/**
 * The tokenizer of a transformers-layout model, through `read` (which records what it reads):
 * `tokenizer.json` with the optional `tokenizer_config.json`; when `tokenizer.json` is absent,
 * `vocab.json` + `merges.txt` converted as transformers does (`bpe_files.ts`). The BPE files are
 * requested only when `tokenizer.json` is absent.
 *
 * @throws {FormatError} When neither `tokenizer.json` nor `vocab.json` + `merges.txt` exists, or
 *   the files are malformed.
 */
export async function readHfTokenizer(read: ModelFileReader): Promise<Tokenizer> {
  const json = (got: { bytes: Uint8Array; path: string } | undefined) =>
    got === undefined ? undefined : parseJson(got.bytes, got.path);
  const tokJson = await read("tokenizer.json", true);
  const tokConfig = json(await read("tokenizer_config.json", true)) ?? {};
  if (tokJson !== undefined) {
    return hfTokenizer(parseJson(tokJson.bytes, tokJson.path), tokConfig, "tokenizer.json");
  }
  const vocab = await read("vocab.json", true);
  const merges = vocab === undefined ? undefined : await read("merges.txt", true);
  if (vocab === undefined || merges === undefined) {
    throw new FormatError(
      "tokenizer.json",
      `no tokenizer: the model has no tokenizer.json, and no vocab.json + merges.txt to build ` +
        `one from (${vocab === undefined ? "vocab.json" : "merges.txt"} is missing)`,
    );
  }
  const built = tokenizerJsonFromBpeFiles(
    parseJson(vocab.bytes, vocab.path),
    new TextDecoder().decode(merges.bytes),
    tokConfig,
    { vocab: vocab.path, merges: merges.path },
  );
  return hfTokenizer(built, tokConfig, "vocab.json + merges.txt");
}

/**
 * Checks the special tokens of `config.json` (`bos_token_id`, `eos_token_id`, a number or a
 * list) against the tokenizer's: a mismatch means the tokenizer is not the model's, and every
 * window would start with the wrong token.
 */
export function checkSpecialTokens(json: unknown, tokenizer: Tokenizer, file: string): void {
  if (typeof json !== "object" || json === null) return;
  const c = json as Record<string, unknown>;
  /** The ids of a field: a number or a list of numbers; absent or null: none. */
  const ids = (field: string): number[] | undefined => {
    const v = c[field];
    if (v === undefined || v === null) return undefined;
    if (typeof v === "number") return [v];
    if (Array.isArray(v) && v.every((x) => typeof x === "number")) return v as number[];
    throw new FormatError(
      file,
      `config field "${field}" must be a token id or a list of token ids, got ${describe(v)}`,
    );
  };
  const bos = ids("bos_token_id");
  if (bos && bos.length > 0 && tokenizer.hasBos !== false && !bos.includes(tokenizer.bosId)) {
    throw new FormatError(
      file,
      bos.length === 1
        ? `bos_token_id ${bos[0]} but the tokenizer's BOS token is ${tokenizer.bosId}: the ` +
          `tokenizer does not belong to this model`
        : `bos_token_id ${JSON.stringify(bos)} does not include the tokenizer's BOS token ` +
          `${tokenizer.bosId}: the tokenizer does not belong to this model`,
    );
  }
  const eos = ids("eos_token_id");
  if (eos && eos.length > 0 && !eos.includes(tokenizer.eosId)) {
    throw new FormatError(
      file,
      `eos_token_id ${JSON.stringify(c.eos_token_id)} does not include the tokenizer's EOS ` +
        `token ${tokenizer.eosId}: the tokenizer does not belong to this model`,
    );
  }
}

/**
 * The model from its parsed parts (shared with the disk loader, `hf_files.ts`); a `configJson`
 * with a `quantization_config` routes the quantized linears to `models/formats/quantized_import.ts`.
 */
export function assemble(
  id: string,
  config: LlamaConfig,
  store: TensorStore,
  shards: readonly string[],
  tokenizer: Tokenizer,
  files: SourceFile[],
  options: HfLoadOptions,
  configJson?: unknown,
): LoadedModel {
  const lazy = isLazy(options.residence ?? "auto", store);
  let weights: LlamaWeights;
  try {
    if (tokenizer.vocabSize > config.vocabSize) {
      throw new FormatError(
        "tokenizer.json",
        `the tokenizer has ${tokenizer.vocabSize} tokens but config.json's vocab_size is ` +
          `${config.vocabSize}: ids past the embedding would be out of range (wrong tokenizer?)`,
      );
    }
    let src: TensorSource = storeSource(store, lazy);
    const qc = (configJson as { quantization_config?: unknown } | undefined)?.quantization_config;
    if (qc !== undefined && qc !== null) {
      const scheme = parseQuantizationConfig(qc, "config.json");
      src = quantizedTensorSource(
        scheme,
        src,
        store,
        shards.join(", "),
        configStorageDtype(configJson),
      );
    }
    weights = hfWeights(config, src, shards.join(", "));
  } catch (e) {
    store.close(); // a checkpoint that does not load leaves no file open
    throw e;
  }
  if (!lazy) store.close();
  const ordered = files
    .map((f, i) => ({ f, i }))
    .sort((a, b) => fileRank(a.f.path) - fileRank(b.f.path) || a.i - b.i)
    .map(({ f }) => f);
  return { id, format: "hf", config, weights, tokenizer, files: ordered };
}

/** Builds a model from the files `read` returns (in memory); `id` is recorded as its id. */
export async function buildHfModel(
  read: ModelFileReader,
  id: string,
  options: HfLoadOptions = {},
): Promise<LoadedModel> {
  const files: SourceFile[] = [];
  const readFile = async (name: string, optional = false) => {
    const got = await read(name, optional);
    if (got === undefined) return undefined;
    files.push({ path: name, bytes: got.bytes.length, sha256: await sha256Hex(got.bytes) });
    return got;
  };
  const readJson = async (name: string, optional = false): Promise<unknown> => {
    const got = await readFile(name, optional);
    return got === undefined ? undefined : parseJson(got.bytes, got.path);
  };
  const configJson = await readJson("config.json");
  const config = parseHfConfig(configJson, "config.json");
  const index = await readJson("model.safetensors.index.json", true);
  const shards = index === undefined
    ? ["model.safetensors"]
    : parseShardIndex(index, "model.safetensors.index.json").files;
  const tokenizer = await readHfTokenizer(readFile);
  checkSpecialTokens(configJson, tokenizer, "config.json");
  const bytes: { path: string; bytes: Uint8Array }[] = [];
  for (const shard of shards) bytes.push((await readFile(shard))!);
  const store = memoryTensorStore(bytes);
  return assemble(
    id,
    config,
    store,
    bytes.map((b) => b.path),
    tokenizer,
    files,
    options,
    configJson,
  );
}

/**
 * Loads a transformers-layout model whose files are served under `base` (a directory URL, e.g.
 * `https://host/models/stories260K-hf/` or a Hub `…/resolve/main/` URL), with `fetch`: for the
 * browser, or any host without a file system. A 404 on an optional file means absent (so
 * `vocab.json` and `merges.txt` are fetched after a 404 on `tokenizer.json`).
 */
export function loadHfFromUrl(
  base: string | URL,
  id = String(base),
  options: HfLoadOptions = {},
): Promise<LoadedModel> {
  const root = new URL(String(base).endsWith("/") ? String(base) : `${base}/`);
  return buildHfModel(
    async (name, optional) => {
      const url = new URL(name, root);
      const res = await fetch(url);
      if (!res.ok) {
        await res.body?.cancel();
        if (optional && res.status === 404) return undefined;
        throw new FormatError(url.href, `HTTP ${res.status} (expected a file of the model)`);
      }
      return { bytes: new Uint8Array(await res.arrayBuffer()), path: url.href };
    },
    id,
    options,
  );
}
