/**
 * Dataset files: where they are and what their bytes hash to.
 *
 * Datasets live under a data root chosen by the caller (CLI flag `--data`, environment variable
 * `LOWBIT_DATA`; the CLI's default is `../shared/data` beside the checkout). `file:PATH` names any
 * local text file.
 *
 * @module
 */

import { sha256Hex } from "../core/hash.ts";
import { NotAvailableError } from "../core/errors.ts";
import type { DatasetInfo } from "./types.ts";

/** A text corpus known by id. */
export interface TextDataset {
  readonly id: string;
  readonly title: string;
  /** Path below the data root. */
  readonly path: string;
  readonly license: string;
}

/** Text corpora for perplexity and calibration. */
export const TEXT_DATASETS: readonly TextDataset[] = [
  {
    id: "tinystories",
    title: "TinyStories validation (first 794 KB)",
    path: "text/tinystories/tinystories_val_head.txt",
    license: "CDLA-Sharing-1.0",
  },
  {
    id: "wikitext2",
    title: "WikiText-2 raw test",
    path: "text/wikitext2/wiki.test.raw",
    license: "CC BY-SA 3.0 / GFDL",
  },
];

/** Joins a data root and a relative path. */
export function dataPath(dataDir: string, rel: string): string {
  return `${dataDir.replace(/\/+$/, "")}/${rel}`;
}

/** Reads a dataset file, returning its text and fingerprint; a missing file names the data root. */
export async function readTextDataset(
  id: string,
  path: string,
): Promise<{ text: string; info: DatasetInfo }> {
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(path);
  } catch (e) {
    throw new NotAvailableError(
      `Dataset "${id}" not found at ${path}: set --data or LOWBIT_DATA to the directory holding ` +
        `the datasets (the default is ../shared/data beside the checkout)`,
      { cause: e },
    );
  }
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch (e) {
    throw new TypeError(`Dataset "${id}" at ${path} is not valid UTF-8 text`, { cause: e });
  }
  return { text, info: { id, path, bytes: bytes.length, sha256: await sha256Hex(bytes) } };
}
