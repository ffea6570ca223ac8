/**
 * Reading result rows back for the leaderboard and the regression comparison: every
 * `*.jsonl` file below a directory (or one file), validated, with identical duplicates merged.
 *
 * @module
 */

import { type ResultRow, SCHEMA_VERSION } from "./row.ts";

/** Bad input (missing file, empty results, newer schema, conflicting duplicates, bad JSON). */
export class ResultsInputError extends Error {
  /** Creates the error with a message meant for the user. */
  constructor(message: string) {
    super(message);
    this.name = "ResultsInputError";
  }
}

/**
 * Every JSON-lines file (`*.jsonl`: a run's `results.jsonl`, the committed baselines) at or
 * below `path` (a file is returned as is), sorted.
 */
export async function findResultFiles(path: string): Promise<string[]> {
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) throw new ResultsInputError(`${path}: no such file`);
    throw e;
  }
  if (info.isFile) return [path];
  const out: string[] = [];
  const walk = async (dir: string): Promise<void> => {
    for await (const e of Deno.readDir(dir)) {
      const p = `${dir}/${e.name}`;
      if (e.isDirectory) await walk(p);
      else if (e.isFile && e.name.endsWith(".jsonl")) out.push(p);
    }
  };
  await walk(path.replace(/\/+$/, ""));
  return out.sort();
}

/** Parses JSONL text into rows, checking each row's shape and schema version. */
export function parseRows(text: string, source: string): ResultRow[] {
  const rows: ResultRow[] = [];
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.trim();
    if (!line) continue;
    const where = `${source}:${i + 1}`;
    let row: unknown;
    try {
      row = JSON.parse(line);
    } catch (e) {
      throw new ResultsInputError(`${where}: not valid JSON (${(e as Error).message})`);
    }
    if (typeof row !== "object" || row === null) {
      throw new ResultsInputError(`${where}: a row must be a JSON object`);
    }
    const r = row as Partial<ResultRow>;
    if (typeof r.schemaVersion !== "number") {
      throw new ResultsInputError(`${where}: missing schemaVersion`);
    }
    if (r.schemaVersion > SCHEMA_VERSION) {
      throw new ResultsInputError(
        `${where}: row has schemaVersion ${r.schemaVersion}, newer than this lowbit's ` +
          `${SCHEMA_VERSION}; update lowbit to read it`,
      );
    }
    if (
      typeof r.cellId !== "string" || typeof r.status !== "string" || !r.model || !r.method ||
      !r.quant || !r.task || !Array.isArray(r.metrics)
    ) {
      throw new ResultsInputError(
        `${where}: not a result row (needs cellId, status, model, method, quant, task, metrics)`,
      );
    }
    rows.push(r as ResultRow);
  }
  return rows;
}

/** What makes two rows of the same cell the same result: status, error and metric values. */
function outcome(r: ResultRow): string {
  return JSON.stringify({
    status: r.status,
    error: r.error ?? null,
    metrics: r.metrics.map((m) => [m.metric, m.value, m.stderr, m.n]),
  });
}

/**
 * Merges rows by cell id: identical duplicates (same outcome) are kept once; duplicates with
 * different values are an error.
 */
export function dedupeRows(rows: readonly (ResultRow & { source?: string })[]): ResultRow[] {
  const byId = new Map<string, ResultRow>();
  for (const r of rows) {
    const prev = byId.get(r.cellId);
    if (!prev) {
      byId.set(r.cellId, r);
      continue;
    }
    if (outcome(prev) !== outcome(r)) {
      throw new ResultsInputError(
        `cell ${r.cellId} (${r.model.id} ${r.method.spec ?? r.method.id} ${r.quant.label} ` +
          `${r.task.id}) appears twice with different values; remove one of the runs`,
      );
    }
  }
  return [...byId.values()];
}

/**
 * Loads every row at or below `path` (a `results.jsonl` file or a directory searched for them),
 * deduplicated. Throws {@linkcode ResultsInputError} when nothing is found or a row is bad.
 */
export async function loadRows(path: string): Promise<ResultRow[]> {
  const files = await findResultFiles(path);
  if (!files.length) {
    throw new ResultsInputError(
      `${path}: no results.jsonl found (expected a results.jsonl file, or a directory holding ` +
        `the results.jsonl files that deno task bench writes)`,
    );
  }
  const rows: ResultRow[] = [];
  for (const f of files) rows.push(...parseRows(await Deno.readTextFile(f), f));
  if (!rows.length) {
    throw new ResultsInputError(
      `${path}: no result rows (empty results in ${files.join(", ")}); nothing to show`,
    );
  }
  return dedupeRows(rows);
}
