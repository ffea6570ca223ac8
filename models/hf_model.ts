/**
 * A transformers-layout model (`config.json`, `model.safetensors` or a sharded
 * `model.safetensors.index.json`, `tokenizer.json`, optional `tokenizer_config.json`) built from
 * a file reader, with no file-system access of its own: the CLI reads from the Hugging Face cache
 * or a directory (`load.ts`), the browser page over HTTP ({@linkcode loadHfFromUrl}).
 *
 * Every file is parsed and validated before any compute; errors name the file.
 *
 * @module
 */

import { sha256Hex } from "../core/hash.ts";
import { FormatError } from "../core/errors.ts";
import { hfWeightsFromTensors, parseHfConfig } from "./hf_config.ts";
import { hfTokenizer } from "./hf_tokenizer.ts";
import { parseSafetensors, parseShardIndex, toFloat32 } from "./safetensors.ts";
import type { LoadedModel, SourceFile } from "./types.ts";

/**
 * Reads one file of the model by its name in the layout: its bytes and the path or URL to name
 * in errors; `undefined` when `optional` and absent (a missing required file throws).
 */
export type ModelFileReader = (
  name: string,
  optional?: boolean,
) => Promise<{ bytes: Uint8Array; path: string } | undefined>;

/** Builds a model from the files `read` returns; `id` is recorded as the model's id. */
export async function buildHfModel(read: ModelFileReader, id: string): Promise<LoadedModel> {
  const files: SourceFile[] = [];
  const readFile = async (name: string, optional = false) => {
    const got = await read(name, optional);
    if (got === undefined) return undefined;
    files.push({ path: name, bytes: got.bytes.length, sha256: await sha256Hex(got.bytes) });
    return got;
  };
  const readJson = async (name: string, optional = false): Promise<unknown> => {
    const got = await readFile(name, optional);
    if (got === undefined) return undefined;
    try {
      return JSON.parse(new TextDecoder().decode(got.bytes));
    } catch (e) {
      throw new FormatError(got.path, `not valid JSON (${(e as Error).message})`, { cause: e });
    }
  };
  const config = parseHfConfig(await readJson("config.json"), "config.json");
  const index = await readJson("model.safetensors.index.json", true);
  const shards = index === undefined
    ? ["model.safetensors"]
    : parseShardIndex(index, "model.safetensors.index.json").files;
  const byName = new Map<
    string,
    { dtype: string; shape: number[]; data: Uint8Array; file: string }
  >();
  for (const shard of shards) {
    const { bytes, path } = (await readFile(shard))!;
    for (const [name, t] of parseSafetensors(bytes, path)) byName.set(name, { ...t, file: path });
  }
  const weights = hfWeightsFromTensors(
    config,
    (name) => {
      const t = byName.get(name);
      return t ? toFloat32(t, name, t.file) : undefined;
    },
    (name) => byName.get(name)?.shape,
    shards.join(", "),
  );
  const tokJson = await readJson("tokenizer.json");
  const tokConfig = await readJson("tokenizer_config.json", true);
  const tokenizer = hfTokenizer(tokJson, tokConfig ?? {}, "tokenizer.json");
  return { id, format: "hf", config, weights, tokenizer, files };
}

/**
 * Loads a transformers-layout model whose files are served under `base` (a directory URL, e.g.
 * `https://host/models/stories260K-hf/` or a Hub `…/resolve/main/` URL), with `fetch`: for the
 * browser, or any host without a file system. A 404 on an optional file means absent.
 */
export function loadHfFromUrl(base: string | URL, id = String(base)): Promise<LoadedModel> {
  const root = new URL(String(base).endsWith("/") ? String(base) : `${base}/`);
  return buildHfModel(async (name, optional) => {
    const url = new URL(name, root);
    const res = await fetch(url);
    if (!res.ok) {
      await res.body?.cancel();
      if (optional && res.status === 404) return undefined;
      throw new FormatError(url.href, `HTTP ${res.status} (expected a file of the model)`);
    }
    return { bytes: new Uint8Array(await res.arrayBuffer()), path: url.href };
  }, id);
}
