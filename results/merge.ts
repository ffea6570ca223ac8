/**
 * Joining the results directories of sharded runs (`--shard I/N`) into one results directory.
 *
 * Each input is a results directory written by {@linkcode ResultStore} (its `cells/*.json`; a
 * directory with only a `results.jsonl` is read from that file). A cell file failing its sha256
 * checksum is refused; one without a checksum (written before cells carried one) is read as is.
 * Rows are joined by `cellId`: a cell found in several inputs with the same outcome (status, error, metric values) is kept
 * once; with different outcomes the merge is refused before anything is written. The output is
 * written through the same atomic store (one file per cell, then `results.jsonl` and
 * `results.csv` rebuilt). Cells already in the output directory take part in the check.
 *
 * @module
 */

import { parseRows, ResultsInputError } from "./load.ts";
import type { ResultRow } from "./row.ts";
import { cellFileText, parseCellFile, ResultStore, writeFileAtomic } from "./store.ts";

/** A row and the file it came from. */
export interface SourcedRow {
  /** The row. */
  readonly row: ResultRow;
  /** The file (or `file:line`) it was read from. */
  readonly source: string;
}

/** What {@linkcode mergeResultDirs} did. */
export interface MergeSummary {
  /** The output directory. */
  readonly outDir: string;
  /** Distinct cells written. */
  readonly cells: number;
  /** Rows read from every input (and the output directory's existing cells). */
  readonly rowsRead: number;
  /** Identical duplicate rows dropped. */
  readonly duplicates: number;
  /** Cells read per input directory, in the order given. */
  readonly perInput: readonly { readonly dir: string; readonly cells: number }[];
}

async function isDirectory(path: string): Promise<boolean | undefined> {
  try {
    return (await Deno.stat(path)).isDirectory;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw e;
  }
}

/**
 * Reads the rows of one results directory: `cells/*.json` when present, else `results.jsonl`.
 * Every row is checked like {@linkcode parseRows} does (shape, schema version). A missing
 * directory is a {@linkcode ResultsInputError}; a directory without rows gives `[]`.
 */
export async function readResultDir(dir: string): Promise<SourcedRow[]> {
  const root = dir.replace(/\/+$/, "") || "/";
  const kind = await isDirectory(root);
  if (kind === undefined) throw new ResultsInputError(`${root}: no such directory`);
  if (!kind) throw new ResultsInputError(`${root}: not a directory (expected a results directory)`);
  const out: SourcedRow[] = [];
  if (await isDirectory(`${root}/cells`)) {
    const names: string[] = [];
    for await (const e of Deno.readDir(`${root}/cells`)) {
      if (e.isFile && e.name.endsWith(".json")) names.push(e.name);
    }
    for (const name of names.sort()) {
      const source = `${root}/cells/${name}`;
      let value: unknown;
      try {
        const cell = await parseCellFile(await Deno.readTextFile(source));
        if (cell.integrity === "mismatch") {
          throw new ResultsInputError(
            `${source}: fails its sha256 checksum (edited or corrupted after it was written); ` +
              `rerun the cell or remove the file`,
          );
        }
        value = cell.row;
      } catch (e) {
        if (e instanceof ResultsInputError) throw e;
        throw new ResultsInputError(`${source}: not valid JSON (${(e as Error).message})`);
      }
      for (const row of parseRows(JSON.stringify(value), source)) {
        if (`${row.cellId}.json` !== name) {
          throw new ResultsInputError(`${source}: holds cell ${row.cellId}, not ${name}`);
        }
        out.push({ row, source });
      }
    }
    return out;
  }
  const jsonl = `${root}/results.jsonl`;
  let text: string;
  try {
    text = await Deno.readTextFile(jsonl);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return [];
    throw e;
  }
  return parseRows(text, jsonl).map((row) => ({ row, source: jsonl }));
}

function describe(r: ResultRow): string {
  return `${r.model.id} ${r.method.spec ?? r.method.id} ${r.quant.label} ${r.task.id}`;
}

/** The first difference between two rows' outcomes, or undefined when they agree. */
export function outcomeDifference(a: ResultRow, b: ResultRow): string | undefined {
  if (a.status !== b.status) return `status ${a.status} vs ${b.status}`;
  if ((a.error ?? null) !== (b.error ?? null)) {
    return `error ${JSON.stringify(a.error ?? null)} vs ${JSON.stringify(b.error ?? null)}`;
  }
  const key = (r: ResultRow) =>
    new Map(r.metrics.map((m) => [m.metric, JSON.stringify([m.value, m.stderr ?? null, m.n])]));
  const ma = key(a);
  const mb = key(b);
  for (const name of new Set([...ma.keys(), ...mb.keys()])) {
    const va = ma.get(name);
    const vb = mb.get(name);
    if (va !== vb) {
      return `metric ${name} [value, stderr, n] ${va ?? "absent"} vs ${vb ?? "absent"}`;
    }
  }
  return undefined;
}

/**
 * Joins rows by cell id. Identical duplicates are kept once (the first seen); a cell with two
 * different outcomes throws a {@linkcode ResultsInputError} naming the cell, both sources and
 * the difference.
 */
export function joinRows(rows: readonly SourcedRow[]): { rows: SourcedRow[]; duplicates: number } {
  const byId = new Map<string, SourcedRow>();
  let duplicates = 0;
  for (const r of rows) {
    const prev = byId.get(r.row.cellId);
    if (!prev) {
      byId.set(r.row.cellId, r);
      continue;
    }
    const diff = outcomeDifference(prev.row, r.row);
    if (diff) {
      throw new ResultsInputError(
        `conflicting duplicate: cell ${r.row.cellId} (${describe(r.row)}) differs between ` +
          `${prev.source} and ${r.source}: ${diff}; remove or rerun one of them`,
      );
    }
    duplicates++;
  }
  return { rows: [...byId.values()], duplicates };
}

/**
 * Merges the results directories `inputs` into `outDir` (created if needed). Throws a
 * {@linkcode ResultsInputError} on no inputs, a missing input, an input without rows, no rows at
 * all, bad rows, or conflicting duplicates; nothing is written then.
 */
export async function mergeResultDirs(
  inputs: readonly string[],
  outDir: string,
): Promise<MergeSummary> {
  if (!inputs.length) throw new ResultsInputError("no input directories to merge");
  const all: SourcedRow[] = [];
  const perInput: { dir: string; cells: number }[] = [];
  for (const dir of inputs) {
    const rows = await readResultDir(dir);
    if (!rows.length) {
      throw new ResultsInputError(
        `${dir}: no result rows (expected cells/*.json or results.jsonl from a bench run)`,
      );
    }
    perInput.push({ dir, cells: rows.length });
    all.push(...rows);
  }
  const store = new ResultStore(outDir);
  const existing = (await isDirectory(store.dir)) ? await readResultDir(store.dir) : [];
  const { rows, duplicates } = joinRows([...existing, ...all]);
  await Deno.mkdir(`${store.dir}/cells`, { recursive: true });
  for (const { row, source } of rows) {
    if (source.startsWith(`${store.dir}/cells/`)) continue; // already stored there
    await writeFileAtomic(`${store.dir}/cells/${row.cellId}.json`, await cellFileText(row));
  }
  await store.rebuild();
  return {
    outDir: store.dir,
    cells: rows.length,
    rowsRead: existing.length + all.length,
    duplicates,
    perInput,
  };
}
