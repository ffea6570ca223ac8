/**
 * Loading a model by id or reference: files from the Hugging Face cache (downloading through
 * `HF_ENDPOINT` when needed) or a local directory, parsed into a {@linkcode LoadedModel}.
 *
 * References:
 * - a registry id (`stories260K`);
 * - `hf:owner/repo[@rev]`: a Hugging Face repository in transformers layout (`config.json`,
 *   `model.safetensors` or a sharded `model.safetensors.index.json`, `tokenizer.json`);
 * - a local directory in the same layout.
 *
 * Every file is parsed and validated before any compute; errors name the file.
 *
 * @module
 */

import { sha256Hex } from "../core/hash.ts";
import { FormatError, NotAvailableError } from "../core/errors.ts";
import { type DownloadEvent, hubFile, parseHfRef } from "./hub.ts";
import type { Residence } from "./hf_model.ts";
import { loadHfFiles } from "./hf_files.ts";
import { parseLlama2cCheckpoint, parseLlama2cTokenizer } from "./llama2c.ts";
import { MODELS } from "./registry.ts";
import { unknownIdError } from "../core/registry.ts";
import { expertMlps, type LoadedModel, type Matrix, type SourceFile } from "./types.ts";

/** Options of {@linkcode loadModel}. */
export interface LoadOptions {
  /** Download progress, as `{status, file, loaded, total}` events. */
  onProgress?: (e: DownloadEvent) => void;
  /** Environment lookup (default `Deno.env.get`), for HF_ENDPOINT, HF_HUB_OFFLINE, caches. */
  env?: (name: string) => string | undefined;
  /** How transformers-layout weights are held (default `auto`, see `hf_model.ts`). */
  residence?: Residence;
  /**
   * The `tok*.bin` of a llama2.c checkpoint given by path (default: `tokenizer.bin` beside it,
   * else the one `tok*.bin` there).
   */
  tokenizer?: string;
}

/** Loads a model by registry id, `hf:` reference or local directory. */
export async function loadModel(ref: string, options: LoadOptions = {}): Promise<LoadedModel> {
  if (MODELS.has(ref)) {
    const entry = MODELS.get(ref);
    if (entry.format === "llama2c") {
      const fetchFile = (f: { path: string; sha256?: string; bytes?: number }) =>
        hubFile(entry.repo, f.path, {
          revision: entry.revision,
          ...(f.sha256 ? { sha256: f.sha256 } : {}),
          ...(f.bytes ? { size: f.bytes } : {}),
          ...hubOptions(options),
        });
      const ckpt = await fetchFile(entry.checkpoint!);
      const tok = await fetchFile(entry.tokenizer!);
      return loadLlama2c(ckpt, tok, ref);
    }
    return loadHf(`hf:${entry.repo}@${entry.revision}`, options, ref);
  }
  if (ref.startsWith("hf:")) return loadHf(ref, options, ref);
  let stat: Deno.FileInfo | undefined;
  try {
    stat = await Deno.stat(ref);
  } catch {
    // fall through to the error below
  }
  if (stat?.isDirectory) return loadHf(ref, options, ref);
  if (stat?.isFile && ref.endsWith(".bin")) {
    return loadLlama2c(ref, options.tokenizer ?? await siblingTokenizer(ref), ref);
  }
  const e = unknownIdError("model", ref, MODELS.items.map((m) => m.id));
  throw new TypeError(
    `${e.message}; a model may also be named hf:owner/repo[@rev], by a directory in ` +
      `transformers layout, or by the path of a llama2.c checkpoint (.bin)`,
  );
}

/** The tokenizer beside a llama2.c checkpoint: `tokenizer.bin`, else its one `tok*.bin`. */
async function siblingTokenizer(checkpoint: string): Promise<string> {
  const slash = checkpoint.lastIndexOf("/");
  const dir = slash < 0 ? "." : checkpoint.slice(0, slash) || "/";
  const names: string[] = [];
  for await (const e of Deno.readDir(dir)) {
    if (e.isFile && /^tok.*\.bin$/.test(e.name)) names.push(e.name);
  }
  const pick = names.includes("tokenizer.bin")
    ? "tokenizer.bin"
    : names.length === 1
    ? names[0]
    : undefined;
  if (pick === undefined) {
    throw new FormatError(
      checkpoint,
      names.length === 0
        ? `no tokenizer beside this llama2.c checkpoint (tokenizer.bin or tok*.bin in ${dir}); ` +
          `name it with --tokenizer`
        : `several tokenizers beside this llama2.c checkpoint (${names.sort().join(", ")}); ` +
          `choose one with --tokenizer`,
    );
  }
  return `${dir}/${pick}`;
}

function hubOptions(options: LoadOptions) {
  return {
    ...(options.onProgress ? { onProgress: options.onProgress } : {}),
    ...(options.env ? { env: options.env } : {}),
  };
}

async function readSource(path: string, name: string): Promise<[Uint8Array, SourceFile]> {
  const bytes = await Deno.readFile(path);
  return [bytes, { path: name, bytes: bytes.length, sha256: await sha256Hex(bytes) }];
}

/** Loads a llama2.c checkpoint and its `tok*.bin` tokenizer from local paths. */
export async function loadLlama2c(
  checkpointPath: string,
  tokenizerPath: string,
  id = checkpointPath,
): Promise<LoadedModel> {
  const [ckptBytes, ckptFile] = await readSource(checkpointPath, baseName(checkpointPath));
  const [tokBytes, tokFile] = await readSource(tokenizerPath, baseName(tokenizerPath));
  const { config, weights } = parseLlama2cCheckpoint(ckptBytes, checkpointPath);
  const tokenizer = parseLlama2cTokenizer(tokBytes, config.vocabSize, tokenizerPath);
  return { id, format: "llama2c", config, weights, tokenizer, files: [ckptFile, tokFile] };
}

/** Loads a transformers-layout model from `hf:owner/repo[@rev]` or a local directory. */
async function loadHf(ref: string, options: LoadOptions, id: string): Promise<LoadedModel> {
  let resolve: (path: string, optional?: boolean) => Promise<string | undefined>;
  if (ref.startsWith("hf:")) {
    const { repo, revision } = parseHfRef(ref);
    resolve = async (path, optional) => {
      try {
        return await hubFile(repo, path, { revision, ...hubOptions(options) });
      } catch (e) {
        // An optional file is absent when the repository has no such file (404) or, offline,
        // when the cache does not hold it; a network failure or a refused token is reported.
        const absent = e instanceof NotAvailableError &&
          /returned 404|HF_HUB_OFFLINE=\S* forbids/.test(e.message);
        if (optional && absent) return undefined;
        throw e;
      }
    };
  } else {
    const dir = ref.replace(/\/+$/, "");
    let root: string | undefined;
    resolve = async (path, optional) => {
      const full = `${dir}/${path}`;
      try {
        await Deno.stat(full);
      } catch {
        if (optional) return undefined;
        throw new FormatError(full, "file not found (expected in a transformers-layout directory)");
      }
      root ??= await modelRoot(dir);
      const real = await Deno.realPath(full);
      if (!real.startsWith(`${root}/`)) {
        throw new FormatError(
          full,
          `resolves to ${real}, outside the model directory ${root} (a symlink out of it is ` +
            `refused like a ../ path)`,
        );
      }
      return full;
    };
  }
  return await loadHfFiles(resolve, id, {
    ...(options.residence ? { residence: options.residence } : {}),
  });
}

/**
 * The directory a model's files must resolve into: the model directory itself, or for a Hugging
 * Face cache snapshot (`models--owner--name/snapshots/REV`, whose files link to `../../blobs/`)
 * the repository's cache folder.
 */
async function modelRoot(dir: string): Promise<string> {
  const real = await Deno.realPath(dir);
  const snapshot = /^(.*\/models--[^/]+)\/snapshots\/[^/]+$/.exec(real);
  return snapshot ? snapshot[1]! : real;
}

function baseName(path: string): string {
  return path.slice(path.lastIndexOf("/") + 1);
}

/** Number of parameters (embedding and classifier counted once when tied). */
export function countParams(model: Pick<LoadedModel, "weights" | "config">): number {
  const w = model.weights;
  const size = (m: Matrix | undefined) => (m ? m.rows * m.cols : 0);
  const len = (v: Float32Array | undefined) => v?.length ?? 0;
  let n = size(w.embed) + len(w.norm) + len(w.normBias) + size(w.positions);
  if (w.lmHead !== w.embed) n += size(w.lmHead);
  for (const l of w.layers) {
    n += size(l.q) + size(l.k) + size(l.v) + size(l.o);
    for (
      const v of [
        l.attnNorm,
        l.mlpNorm,
        l.attnNormBias,
        l.mlpNormBias,
        l.postAttnNorm,
        l.postMlpNorm,
        l.qBias,
        l.kBias,
        l.vBias,
        l.oBias,
        l.qNorm,
        l.kNorm,
      ]
    ) n += len(v);
    const experts = l.mlp.kind === "dense" ? [l.mlp] : expertMlps(l.mlp);
    if (l.mlp.kind === "moe") n += size(l.mlp.router) + size(l.mlp.sharedGate);
    for (const e of experts) {
      n += size(e.gate) + size(e.up) + size(e.down) + len(e.gateBias) + len(e.upBias) +
        len(e.downBias);
    }
  }
  return n;
}
