/**
 * Dataset sources: where a task's rows come from when they are not the bundled fixture files.
 *
 * A source is written as one of:
 *
 * - `hf://datasets/{owner}/{name}/{path}` or `hf://datasets/{owner}/{name}@{revision}/{path}`: a
 *   file of a Hugging Face dataset repository (the `huggingface_hub` `HfFileSystem` syntax; a
 *   revision containing `/`, such as `refs/convert/parquet`, is written URL-encoded:
 *   `@refs%2Fconvert%2Fparquet`). It is fetched through `models/hub.ts` (`HF_ENDPOINT`, the standard
 *   cache under `datasets--{owner}--{name}/`, `HF_HUB_OFFLINE`), the same code that fetches models.
 * - anything else: a local file path (relative to the working directory).
 *
 * The file's type comes from its name: `.parquet` (read with `hyparquet`), `.jsonl`/`.ndjson` (one
 * JSON object per line), `.json` (a JSON array of objects, or JSON lines); `.jsonl.gz` and
 * `.json.gz` are gunzipped first. Every source is fingerprinted by the sha256 of its bytes.
 *
 * @module
 */

import { resolve } from "node:path";
import { sha256Hex } from "../core/hash.ts";
import { NotAvailableError } from "../core/errors.ts";
import { type DownloadEvent, type EnvGetter, hubFile } from "../models/hub.ts";
import { type DatasetFile, gunzip, parseJsonl, utf8 } from "./mc_datasets.ts";
import { MalformedRows } from "./malformed.ts";
import { readParquetRows } from "./parquet.ts";

/** A parsed dataset source. */
export type DatasetSource =
  | {
    readonly kind: "hub";
    /** The source as written. */
    readonly spec: string;
    /** The dataset repository, `owner/name`. */
    readonly repo: string;
    readonly revision: string;
    /** The file's path inside the repository. */
    readonly path: string;
  }
  | { readonly kind: "file"; readonly spec: string; readonly path: string };

const HF_PREFIX = "hf://";
const HUB_RE = /^hf:\/\/datasets\/([^/@]+)\/([^/@]+)(?:@([^/]+))?\/(.+)$/;

/**
 * Parses a dataset source (see the module doc).
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseDatasetSource } from "./dataset_source.ts";
 * assert.deepEqual(
 *   parseDatasetSource("hf://datasets/openai/gsm8k/main/test-00000-of-00001.parquet"),
 *   {
 *     kind: "hub",
 *     spec: "hf://datasets/openai/gsm8k/main/test-00000-of-00001.parquet",
 *     repo: "openai/gsm8k",
 *     revision: "main",
 *     path: "main/test-00000-of-00001.parquet",
 *   },
 * );
 * assert.equal(parseDatasetSource("./my_arc.parquet").kind, "file");
 * ```
 *
 * @param spec `hf://datasets/{owner}/{name}[@{revision}]/{path}` or a local path.
 * @returns The source.
 * @throws {TypeError} For an empty spec or an `hf://` URL that is not a dataset file.
 */
export function parseDatasetSource(spec: string): DatasetSource {
  if (!spec) throw new TypeError("Cannot parse dataset source: it is empty");
  if (!spec.startsWith(HF_PREFIX)) return { kind: "file", spec, path: spec };
  const m = HUB_RE.exec(spec);
  let revision: string | undefined;
  try {
    revision = m ? decodeURIComponent(m[3] ?? "main") : undefined;
  } catch {
    revision = undefined;
  }
  if (!m || revision === undefined) {
    throw new TypeError(
      `Cannot parse dataset source "${spec}": expected ` +
        `hf://datasets/{owner}/{name}[@{revision}]/{path} (or a local file path)`,
    );
  }
  return { kind: "hub", spec, repo: `${m[1]}/${m[2]}`, revision, path: m[4]! };
}

/** Options of {@linkcode fetchDatasetSource} and {@linkcode readDatasetSource}. */
export interface DatasetSourceOptions {
  /** Environment lookup for the hub (`HF_ENDPOINT`, `HF_HUB_CACHE`, `HF_HUB_OFFLINE`, `HF_TOKEN`). */
  readonly env?: EnvGetter;
  /** Download progress of a hub file. */
  readonly onProgress?: (event: DownloadEvent) => void;
  /** Skip and count malformed rows instead of throwing (`--skip-malformed`). */
  readonly skipMalformed?: boolean;
}

/**
 * The bytes of a source and their fingerprint: a hub file comes from the cache or is downloaded
 * into it (its `path` is then the cache snapshot's path); a local file is read in place.
 *
 * @throws {NotAvailableError} When the local file does not exist, or the hub file is neither
 *   cached nor downloadable (offline, 404, network), naming the file.
 */
export async function fetchDatasetSource(
  source: DatasetSource,
  options: DatasetSourceOptions = {},
): Promise<{ bytes: Uint8Array; file: DatasetFile }> {
  let path: string;
  if (source.kind === "hub") {
    path = await hubFile(source.repo, source.path, {
      repoType: "dataset",
      revision: source.revision,
      ...(options.env ? { env: options.env } : {}),
      ...(options.onProgress ? { onProgress: options.onProgress } : {}),
    });
  } else {
    path = resolve(source.path);
  }
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(path);
  } catch (e) {
    throw new NotAvailableError(`Dataset file ${source.spec} not found at ${path}`, { cause: e });
  }
  return { bytes, file: { path, bytes: bytes.length, sha256: await sha256Hex(bytes) } };
}

/** One row of a dataset file: where it is (`path:line`, `path: row N`) and its fields. */
export interface DatasetRow {
  readonly where: string;
  readonly value: Record<string, unknown>;
}

/**
 * The rows of a dataset file, by its name's extension (see the module doc).
 *
 * @param path The file's name: its extension picks the reader, and messages name it.
 * @param bytes The file's bytes.
 * @param rows The malformed-row policy: a row that is not a JSON object throws, or is skipped.
 * @throws {TypeError} For an unknown extension.
 * @throws {SyntaxError} For a file that cannot be parsed as a whole (parquet, a JSON array).
 */
export async function datasetRows(
  path: string,
  bytes: Uint8Array,
  rows: MalformedRows = new MalformedRows(),
): Promise<DatasetRow[]> {
  let name = path.toLowerCase();
  if (name.endsWith(".gz")) {
    bytes = await gunzip(path, bytes);
    name = name.slice(0, -3);
  }
  if (name.endsWith(".parquet")) {
    return (await readParquetRows(path, bytes)).map((value, i) => ({
      where: `${path}: row ${i + 1}`,
      value,
    }));
  }
  if (name.endsWith(".jsonl") || name.endsWith(".ndjson")) return jsonLines(path, bytes, rows);
  if (name.endsWith(".json")) {
    const text = utf8(path, bytes);
    if (!text.trimStart().startsWith("[")) return jsonLines(path, bytes, rows);
    let v: unknown;
    try {
      v = JSON.parse(text);
    } catch (e) {
      throw new SyntaxError(`${path}: not valid JSON`, { cause: e });
    }
    if (!Array.isArray(v)) throw new TypeError(`${path}: expected a JSON array of objects`);
    const items: unknown[] = v;
    const out: DatasetRow[] = [];
    items.forEach((x, i) => {
      const row = rows.guard(() => {
        if (x === null || typeof x !== "object" || Array.isArray(x)) {
          throw new TypeError(`${path}: item ${i + 1}: expected a JSON object`);
        }
        return { where: `${path}: item ${i + 1}`, value: x as Record<string, unknown> };
      });
      if (row) out.push(row);
    });
    return out;
  }
  throw new TypeError(
    `Cannot read dataset file ${path}: unknown type; expected .parquet, .jsonl, .ndjson or ` +
      `.json (optionally .gz)`,
  );
}

function jsonLines(path: string, bytes: Uint8Array, rows: MalformedRows): DatasetRow[] {
  return parseJsonl(path, utf8(path, bytes), rows).map(({ line, value }) => ({
    where: `${path}:${line}`,
    value,
  }));
}

/**
 * Fetches a source and reads its rows.
 *
 * @returns The rows, the fingerprinted file, and the malformed-row policy (pass it on to the
 *   row mapping so that skipped rows are counted together).
 */
export async function readDatasetSource(
  source: DatasetSource,
  options: DatasetSourceOptions = {},
): Promise<{ rows: DatasetRow[]; file: DatasetFile; malformed: MalformedRows }> {
  const { bytes, file } = await fetchDatasetSource(source, options);
  const malformed = new MalformedRows(options.skipMalformed ?? false);
  // Rows of a hub file are named by the source (hf://…), not by the cache path.
  const name = source.kind === "hub" ? source.spec : file.path;
  return { rows: await datasetRows(name, bytes, malformed), file, malformed };
}
