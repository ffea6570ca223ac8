/**
 * Text corpora: where they are, what their bytes hash to, and their named splits.
 *
 * Corpora live under a data root chosen by the caller: the CLI's default is `data/` inside the
 * checkout, which holds the corpora marked `bundled` (TinyStories; see `data/README.md`), and
 * `--data DIR` or `LOWBIT_DATA=DIR` name a directory of the same layout holding the others. A
 * corpus is named `id` (the whole file) or `id:split` (a documented part of it, see `splits.ts`);
 * `file:PATH` names any local text file. Plain-text corpora are read as one text; JSON-lines corpora (C4) as
 * a list of documents.
 *
 * @module
 */

import { sha256Hex } from "../../core/hash.ts";
import { NotAvailableError } from "../../core/errors.ts";
import { unknownIdError } from "../../core/registry.ts";
import { applySplit, type SplitInfo } from "./splits.ts";

/** A corpus file with its fingerprint (and, for a split, which part of the file was used). */
export interface DatasetInfo {
  /** Corpus reference as given: `tinystories`, `tinystories:eval`, `file:…`. */
  readonly id: string;
  /** Path as resolved on this machine. */
  readonly path: string;
  /** Size of the whole file. */
  readonly bytes: number;
  /** sha256 of the whole file. */
  readonly sha256: string;
  /** The part of the file used, when a split was named. */
  readonly split?: SplitInfo;
}

/** A corpus known by id. */
export interface TextCorpus {
  readonly id: string;
  readonly title: string;
  /** Path below the data root. */
  readonly path: string;
  readonly license: string;
  /** `text`: one running text; `jsonl`: one JSON object per line with a `text` field. */
  readonly format: "text" | "jsonl";
  /** Named splits of the file (see `splits.ts`); absent = none. */
  readonly splits?: readonly string[];
  /** Said in rows and `--help` where using the corpus needs a caveat. */
  readonly caveat?: string;
  /** Whether the file ships in the repository's `data/` (the default data root). */
  readonly bundled?: boolean;
}

/** Text corpora for perplexity and calibration. */
export const TEXT_DATASETS: readonly TextCorpus[] = [
  {
    id: "tinystories",
    title: "TinyStories validation (first 794 KB)",
    path: "text/tinystories/tinystories_val_head.txt",
    license: "CDLA-Sharing-1.0",
    format: "text",
    splits: ["calib", "eval"],
    bundled: true,
  },
  {
    id: "wikitext2",
    title: "WikiText-2 raw test",
    path: "text/wikitext2/wiki.test.raw",
    license: "CC BY-SA 3.0 / GFDL",
    format: "text",
    caveat: "only the test split is available offline: calibrating on it overlaps wikitext2 " +
      "evaluation",
  },
  {
    id: "c4",
    title: "C4-en, 2,000 validation documents",
    path: "text/c4/c4_validation_2k.jsonl",
    license: "ODC-BY",
    format: "jsonl",
    caveat: "a 2k-document subset of undocumented selection, not GPTQ's c4 train shard: " +
      "calibration on it is not GPTQ's c4 protocol",
  },
];

/** Joins a data root and a relative path. */
export function dataPath(dataDir: string, rel: string): string {
  return `${dataDir.replace(/\/+$/, "")}/${rel}`;
}

/** A corpus reference resolved against the registry: the corpus, the split, and the file. */
export interface CorpusRef {
  /** The reference as given. */
  readonly ref: string;
  /** The registered corpus, absent for `file:PATH`. */
  readonly corpus?: TextCorpus;
  readonly split?: string;
  readonly path: string;
}

/** Resolves `id`, `id:split` or `file:PATH`; unknown ids and splits list the valid ones. */
export function resolveCorpus(ref: string, dataDir: string): CorpusRef {
  if (ref.startsWith("file:")) {
    const path = ref.slice(5);
    if (!path) throw new TypeError(`"file:" needs a path, e.g. file:./my_text.txt`);
    return { ref, path };
  }
  const [id, split, ...rest] = ref.split(":");
  const corpus = TEXT_DATASETS.find((d) => d.id === id);
  if (!corpus || rest.length > 0) {
    throw unknownIdError("corpus", ref, TEXT_DATASETS.map((d) => d.id));
  }
  if (split !== undefined && !(corpus.splits ?? []).includes(split)) {
    const valid = (corpus.splits ?? []).map((s) => `${id}:${s}`);
    throw new TypeError(
      `Corpus "${id}" has no split "${split}"; ${
        valid.length ? `valid: ${valid.join(", ")}` : "it has no named splits"
      }`,
    );
  }
  return {
    ref,
    corpus,
    ...(split !== undefined ? { split } : {}),
    path: dataPath(dataDir, corpus.path),
  };
}

/**
 * What to do about a dataset file missing under a data root: `rel` is its path below the root.
 * Only TinyStories ships with lowbit (in `data/`, the default root); the others come from a data
 * directory of the same layout.
 */
export function missingDatasetHint(rel: string): string {
  return `lowbit bundles only ${
    TEXT_DATASETS.filter((d) => d.bundled).map((d) => d.path).join(", ")
  } (in data/ of the repository, the default data root); for other datasets set --data DIR ` +
    `or LOWBIT_DATA=DIR to a directory holding ${rel}`;
}

/**
 * Reads a corpus file, naming the data root and how to set it when the file is missing. A data
 * root that is an `http(s):` URL (the browser page) is read with `fetch`.
 */
async function readBytes(r: CorpusRef): Promise<Uint8Array> {
  const { ref, path } = r;
  try {
    if (/^https?:\/\//.test(path)) {
      const res = await fetch(path);
      if (!res.ok) {
        await res.body?.cancel();
        throw new Error(`HTTP ${res.status}`);
      }
      return new Uint8Array(await res.arrayBuffer());
    }
    return await Deno.readFile(path);
  } catch (e) {
    throw new NotAvailableError(
      r.corpus
        ? `Dataset "${ref}" not found at ${path}: ${missingDatasetHint(r.corpus.path)}, or give ` +
          `the file itself as file:PATH`
        : `Dataset "${ref}" not found at ${path}: expected a readable text file`,
      { cause: e },
    );
  }
}

function decodeUtf8(ref: string, path: string, bytes: Uint8Array): string {
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch (e) {
    throw new TypeError(`Dataset "${ref}" at ${path} is not valid UTF-8 text`, { cause: e });
  }
}

/** Reads a text corpus (or its split), returning the text and its fingerprint. */
export async function readTextDataset(
  ref: string,
  dataDir: string,
): Promise<{ text: string; info: DatasetInfo }> {
  const r = resolveCorpus(ref, dataDir);
  if (r.corpus?.format === "jsonl") {
    throw new TypeError(`Corpus "${ref}" is a set of documents; read it with readDocuments()`);
  }
  const bytes = await readBytes(r);
  const base = { id: ref, path: r.path, bytes: bytes.length, sha256: await sha256Hex(bytes) };
  if (r.split === undefined) return { text: decodeUtf8(ref, r.path, bytes), info: base };
  const part = applySplit(r.corpus!.id, r.split, bytes);
  return {
    text: decodeUtf8(ref, r.path, bytes.subarray(part.byteStart, part.byteEnd)),
    info: { ...base, split: part },
  };
}

/** Reads a JSON-lines corpus as documents (the `text` field of each line), with its fingerprint. */
export async function readDocuments(
  ref: string,
  dataDir: string,
): Promise<{ documents: string[]; info: DatasetInfo }> {
  const r = resolveCorpus(ref, dataDir);
  if (r.corpus?.format !== "jsonl") {
    throw new TypeError(`Corpus "${ref}" is one running text; read it with readTextDataset()`);
  }
  const bytes = await readBytes(r);
  const text = decodeUtf8(ref, r.path, bytes);
  const documents: string[] = [];
  text.split("\n").forEach((line, i) => {
    if (!line.trim()) return;
    let o: unknown;
    try {
      o = JSON.parse(line);
    } catch (e) {
      throw new SyntaxError(`${r.path}:${i + 1}: not valid JSON`, { cause: e });
    }
    const t = (o as { text?: unknown } | null)?.text;
    if (typeof t !== "string") {
      throw new TypeError(`${r.path}:${i + 1}: expected an object with a string field "text"`);
    }
    documents.push(t);
  });
  if (documents.length === 0) throw new RangeError(`${r.path}: no documents`);
  return {
    documents,
    info: { id: ref, path: r.path, bytes: bytes.length, sha256: await sha256Hex(bytes) },
  };
}

/** Fingerprint of a corpus reference without keeping its text (for cell ids before compute). */
export async function datasetInfo(ref: string, dataDir: string): Promise<DatasetInfo> {
  const r = resolveCorpus(ref, dataDir);
  if (r.corpus?.format === "jsonl") return (await readDocuments(ref, dataDir)).info;
  return (await readTextDataset(ref, dataDir)).info;
}
