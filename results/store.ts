/**
 * The results directory of a run: one file per finished cell, and derived JSONL and CSV.
 *
 * Layout of `outDir`:
 * - `cells/<cellId>.json`: one row per cell, written to a temporary file and renamed, so a killed
 *   run never leaves a partial row; a rerun finds finished cells by id. The file carries its own
 *   checksum: field `sha256`, the sha256 of the canonical JSON (sorted keys) of the row without
 *   that field, so an edited or corrupted cell is told from a good one ({@linkcode CellIntegrity}).
 * - `results.jsonl`: every row, one per line, sorted; rebuilt (temp + rename) after each cell.
 * - `results.csv`: the same rows in long form (one line per metric), via papaparse.
 * - `.lock`: while a run writes the directory (see `lock.ts`).
 *
 * @module
 */

import Papa from "papaparse";
import { canonicalJson, sha256Hex } from "../core/hash.ts";
import type { ResultRow } from "./row.ts";
import { isFullPrecision } from "../methods/types.ts";

/** The field of a cell file holding the checksum of the rest of the row. */
export const CELL_CHECKSUM_FIELD = "sha256";

/**
 * Whether a cell file's row matches its checksum: `ok`; `mismatch` (edited or corrupted after it
 * was written); `missing` (no checksum: written before cells carried one).
 */
export type CellIntegrity = "ok" | "mismatch" | "missing";

/** A row read from a cell file, without its checksum field, and whether it matched. */
export interface StoredCell {
  /** The row; undefined when the file is not valid JSON (truncated, garbled: `mismatch`). */
  readonly row: ResultRow | undefined;
  readonly integrity: CellIntegrity;
}

/** The checksum of a row: sha256 of its canonical JSON, the checksum field left out. */
export async function rowChecksum(row: ResultRow): Promise<string> {
  const { [CELL_CHECKSUM_FIELD]: _, ...rest } = JSON.parse(JSON.stringify(row));
  return await sha256Hex(canonicalJson(rest));
}

/** The text of a cell file: the row as JSON, with its checksum as the last field. */
export async function cellFileText(row: ResultRow): Promise<string> {
  const { [CELL_CHECKSUM_FIELD]: _, ...rest } = JSON.parse(JSON.stringify(row));
  return JSON.stringify({ ...rest, [CELL_CHECKSUM_FIELD]: await rowChecksum(rest) }, null, 2) +
    "\n";
}

/**
 * Parses a cell file's text and checks its checksum (throws `SyntaxError` on bad JSON). The row
 * comes back without the checksum field.
 */
export async function parseCellFile(
  text: string,
): Promise<{ readonly row: ResultRow; readonly integrity: CellIntegrity }> {
  const value = JSON.parse(text);
  if (!value || typeof value !== "object" || Array.isArray(value)) {
    return { row: value as ResultRow, integrity: "missing" }; // not a row: the caller says so
  }
  const { [CELL_CHECKSUM_FIELD]: sum, ...row } = value as Record<string, unknown>;
  const integrity: CellIntegrity = sum === undefined
    ? "missing"
    : sum === await rowChecksum(row as unknown as ResultRow)
    ? "ok"
    : "mismatch";
  return { row: row as unknown as ResultRow, integrity };
}

/** Writes `text` to `path` atomically: a temporary file in the same directory, then a rename. */
export async function writeFileAtomic(path: string, text: string): Promise<void> {
  const tmp = `${path}.tmp-${Deno.pid}-${crypto.randomUUID().slice(0, 8)}`;
  try {
    await Deno.writeTextFile(tmp, text);
    await Deno.rename(tmp, path);
  } catch (e) {
    await Deno.remove(tmp).catch(() => {});
    throw e;
  }
}

/** A run's results directory. */
export class ResultStore {
  /** The directory. */
  readonly dir: string;

  /** Opens (and creates) a results directory. */
  constructor(dir: string) {
    this.dir = dir.replace(/\/+$/, "");
  }

  #cellPath(cellId: string): string {
    return `${this.dir}/cells/${cellId}.json`;
  }

  /**
   * The stored row of a cell (without its checksum field) and whether it matches its checksum;
   * a file that is not valid JSON is a `mismatch` without a row; undefined when there is no file
   * (or it cannot be read).
   */
  async read(cellId: string): Promise<StoredCell | undefined> {
    let text: string;
    try {
      text = await Deno.readTextFile(this.#cellPath(cellId));
    } catch {
      return undefined;
    }
    try {
      return await parseCellFile(text);
    } catch {
      return { row: undefined, integrity: "mismatch" };
    }
  }

  /**
   * The stored row of a cell, or undefined (unreadable rows count as absent). The checksum is
   * not checked here: see {@linkcode ResultStore.read}.
   */
  async get(cellId: string): Promise<ResultRow | undefined> {
    return (await this.read(cellId))?.row;
  }

  /** Stores a row atomically, with its checksum, and rebuilds the derived files. */
  async put(row: ResultRow): Promise<void> {
    await Deno.mkdir(`${this.dir}/cells`, { recursive: true });
    await writeFileAtomic(this.#cellPath(row.cellId), await cellFileText(row));
    await this.rebuild();
  }

  /**
   * All stored rows (without checksum fields), in a stable order. Rows failing their checksum are
   * included: `runMatrix` recomputes those of its cells, the rest are not this store's to drop.
   */
  async rows(): Promise<ResultRow[]> {
    const rows: ResultRow[] = [];
    try {
      for await (const e of Deno.readDir(`${this.dir}/cells`)) {
        if (!e.isFile || !e.name.endsWith(".json")) continue;
        const row = await this.get(e.name.slice(0, -5));
        if (row) rows.push(row);
      }
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
    return rows.sort(compareRows);
  }

  /** Rewrites `results.jsonl` and `results.csv` from the cell files. */
  async rebuild(): Promise<void> {
    const rows = await this.rows();
    await Deno.mkdir(this.dir, { recursive: true });
    await writeFileAtomic(
      `${this.dir}/results.jsonl`,
      rows.map((r) => JSON.stringify(r)).join("\n") + (rows.length ? "\n" : ""),
    );
    await writeFileAtomic(`${this.dir}/results.csv`, rowsToCsv(rows));
  }
}

/** Orders rows by model, task, method, weight bits (descending), then label. */
export function compareRows(a: ResultRow, b: ResultRow): number {
  return a.model.id.localeCompare(b.model.id) || a.task.id.localeCompare(b.task.id) ||
    (isFullPrecision(a.method) ? -1 : 0) - (isFullPrecision(b.method) ? -1 : 0) ||
    a.method.id.localeCompare(b.method.id) || b.quant.wBits - a.quant.wBits ||
    a.quant.label.localeCompare(b.quant.label) || a.cellId.localeCompare(b.cellId);
}

/** Columns of the long-form CSV, in order. */
export const CSV_COLUMNS = [
  "cellId",
  "status",
  "model",
  "method",
  "methodVersion",
  "taxonomy",
  "quant",
  "wBits",
  "aBits",
  "granularity",
  "groupSize",
  "symmetric",
  "task",
  "taskVersion",
  "limit",
  "metric",
  "value",
  "stderr",
  "n",
  "higherIsBetter",
  "datasetSha256",
  "commit",
  "wallMs",
  "quantizeMs",
] as const;

/** Long-form CSV (one line per metric; a cell without metrics gets one line with empty metric). */
export function rowsToCsv(rows: readonly ResultRow[]): string {
  const data = rows.flatMap((r) => {
    const base = {
      cellId: r.cellId,
      status: r.status,
      model: r.model.id,
      method: r.method.spec ?? r.method.id,
      methodVersion: r.method.version,
      taxonomy: r.method.taxonomy,
      quant: r.quant.label,
      wBits: r.quant.wBits,
      aBits: r.quant.aBits,
      granularity: r.quant.granularity,
      groupSize: r.quant.groupSize ?? "",
      symmetric: r.quant.symmetric,
      task: r.task.id,
      taskVersion: r.task.version,
      limit: r.task.limit ?? "",
      datasetSha256: r.task.dataset?.sha256 ?? "",
      commit: r.env.git.commit ?? "",
      wallMs: Math.round(r.wallMs),
      quantizeMs: r.quantizeMs === undefined ? "" : Math.round(r.quantizeMs),
    };
    const metrics = r.metrics.length ? r.metrics : [undefined];
    return metrics.map((m) => ({
      ...base,
      metric: m?.metric ?? "",
      value: m?.value ?? "",
      stderr: m?.stderr ?? "",
      n: m?.n ?? "",
      higherIsBetter: m?.higherIsBetter ?? "",
    }));
  });
  return Papa.unparse(data, { columns: [...CSV_COLUMNS] }) + "\r\n";
}
