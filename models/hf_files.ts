/**
 * A transformers-layout model from files on disk (the Hugging Face cache or a directory):
 * config, index and tokenizer parsed before any tensor is read, tensors read from their shards
 * on demand (`file_tensor_store.ts`), every file hashed (streamed) for the provenance record.
 *
 * @module
 */

import { createHash } from "node:crypto";
import { sha256Hex } from "../core/hash.ts";
import { parseHfConfig } from "./hf_config.ts";
import {
  assemble,
  checkSpecialTokens,
  type HfLoadOptions,
  parseJson,
  readHfTokenizer,
} from "./hf_model.ts";
import { parseShardIndex } from "./safetensors.ts";
import { fileTensorStore } from "./file_tensor_store.ts";
import type { LoadedModel, SourceFile } from "./types.ts";

/** sha256 of a file, streamed (checkpoints may not fit in memory). */
async function hashFile(path: string): Promise<{ bytes: number; sha256: string }> {
  const hash = createHash("sha256");
  using file = await Deno.open(path, { read: true });
  const buf = new Uint8Array(1 << 22);
  let bytes = 0;
  while (true) {
    const n = await file.read(buf);
    if (n === null) break;
    hash.update(buf.subarray(0, n));
    bytes += n;
  }
  return { bytes, sha256: hash.digest("hex") };
}

/**
 * Loads a transformers-layout model from files on disk: `resolve` maps a file of the layout to
 * its path (`undefined` when `optional` and absent; a missing required file throws). Config,
 * index and tokenizer are parsed before any tensor is read; every file is hashed for the
 * provenance record.
 */
export async function loadHfFiles(
  resolve: (name: string, optional?: boolean) => Promise<string | undefined>,
  id: string,
  options: HfLoadOptions = {},
): Promise<LoadedModel> {
  const files: SourceFile[] = [];
  const record = async (name: string, path: string) => {
    files.push({ path: name, ...await hashFile(path) });
  };
  const readFile = async (name: string, optional = false) => {
    const path = await resolve(name, optional);
    if (path === undefined) return undefined;
    const bytes = await Deno.readFile(path);
    files.push({ path: name, bytes: bytes.length, sha256: await sha256Hex(bytes) });
    return { bytes, path };
  };
  const readJson = async (name: string, optional = false): Promise<unknown> => {
    const got = await readFile(name, optional);
    return got === undefined ? undefined : parseJson(got.bytes, got.path);
  };
  const configPath = await resolve("config.json");
  const configJson = await readJson("config.json");
  const config = parseHfConfig(configJson, configPath!);
  const index = await readJson("model.safetensors.index.json", true);
  const shardNames = index === undefined
    ? ["model.safetensors"]
    : parseShardIndex(index, "model.safetensors.index.json").files;
  const tokenizer = await readHfTokenizer(readFile);
  checkSpecialTokens(configJson, tokenizer, configPath!);
  const paths: string[] = [];
  for (const shard of shardNames) {
    const path = (await resolve(shard))!;
    paths.push(path);
  }
  const store = fileTensorStore(paths);
  try {
    for (const [i, shard] of shardNames.entries()) await record(shard, paths[i]!);
  } catch (e) {
    store.close();
    throw e;
  }
  return assemble(id, config, store, paths, tokenizer, files, options, configJson);
}
