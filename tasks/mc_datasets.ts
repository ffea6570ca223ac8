/**
 * Readers and prompts of the zero-shot datasets, each following its lm-evaluation-harness task
 * YAML. Files live under a data root (`--data DIR`, `LOWBIT_DATA=DIR`; none ships with lowbit) in
 * `tasks/…`, or come from the Hub in the dataset's own columns (`TASK=hf`); the original
 * formats are read where we have them (PIQA, WinoGrande, BoolQ, HellaSwag), the llm-foundry
 * normalized files otherwise (ARC-Easy, ARC-Challenge, LAMBADA OpenAI).
 *
 * Bad input: a line (or item) that cannot be parsed or lacks a field throws a `SyntaxError` /
 * `TypeError` naming the file and line, or, with `skipMalformed` (`--skip-malformed`), is skipped
 * and counted (see `malformed.ts`); an empty choice list always throws; a gold label that is not
 * one of the choices is kept as an out-of-range gold index, which scoring counts and reports.
 *
 * @module
 */

import { sha256Hex } from "../core/hash.ts";
import { NotAvailableError } from "../core/errors.ts";
import { dataPath, type DatasetInfo, missingDatasetHint } from "./corpora/text.ts";
import { MalformedRows, type SkippedRows } from "./malformed.ts";
import { type McDoc, pyStrip } from "./multiple_choice.ts";

/** One file of a dataset, fingerprinted. */
export interface DatasetFile {
  readonly path: string;
  readonly bytes: number;
  readonly sha256: string;
}

/**
 * A task dataset's fingerprint: `path`/`bytes`/`sha256` describe the main file; `files` lists
 * every file read (the main one first, then e.g. a labels file).
 */
export interface TaskDatasetInfo extends DatasetInfo {
  readonly files: readonly DatasetFile[];
  /**
   * `original` (the dataset's own release format), `llm-foundry` (normalized JSONL) or `hf` (rows
   * in the Hugging Face dataset's column schema, from the Hub or a local parquet/JSON file).
   */
  readonly format: "original" | "llm-foundry" | "hf";
  /** The dataset source as given (`hf://datasets/…` or a local path), for `hf` data. */
  readonly source?: string;
}

/**
 * The tasks that can be read from the Hub instead (`--tasks TASK=hf`), for the hint of a missing
 * file; `tasks/mod.ts`'s `HF_TASK_IDS` (checked equal by a test).
 */
export const HUB_READABLE_TASKS: readonly string[] = [
  "arc_easy",
  "arc_challenge",
  "piqa",
  "hellaswag",
  "winogrande",
  "boolq",
  "gsm8k",
];

/** A file's bytes and fingerprint; a missing file names the data root and the alternatives. */
export async function readDataFile(
  dataDir: string,
  rel: string,
): Promise<{ bytes: Uint8Array; file: DatasetFile }> {
  const path = dataPath(dataDir, rel);
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(path);
  } catch (e) {
    throw new NotAvailableError(
      `Dataset file ${rel} not found at ${path}: ${missingDatasetHint(rel)}; or read ` +
        `${HUB_READABLE_TASKS.join(", ")} from the Hub with --tasks TASK=hf or ` +
        `TASK=hf://datasets/OWNER/NAME/PATH`,
      { cause: e },
    );
  }
  return { bytes, file: { path, bytes: bytes.length, sha256: await sha256Hex(bytes) } };
}

/** UTF-8 text of a file (fatal on invalid bytes). */
export function utf8(path: string, bytes: Uint8Array): string {
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch (e) {
    throw new TypeError(`${path} is not valid UTF-8 text`, { cause: e });
  }
}

/** Gunzips bytes with the web `DecompressionStream`. */
export async function gunzip(path: string, bytes: Uint8Array): Promise<Uint8Array> {
  try {
    const stream = new Blob([bytes as Uint8Array<ArrayBuffer>]).stream().pipeThrough(
      new DecompressionStream("gzip"),
    );
    return new Uint8Array(await new Response(stream).arrayBuffer());
  } catch (e) {
    throw new TypeError(`${path} is not a valid gzip file`, { cause: e });
  }
}

/** Lines of a text, without a final empty line. */
function lines(text: string): string[] {
  const ls = text.split("\n").map((l) => (l.endsWith("\r") ? l.slice(0, -1) : l));
  if (ls.length > 0 && ls[ls.length - 1] === "") ls.pop();
  return ls;
}

/** A parsed JSON line: its 1-based line, 0-based index among the non-blank lines, and object. */
export interface JsonlRow {
  readonly line: number;
  readonly index: number;
  readonly value: Record<string, unknown>;
}

/**
 * Parses JSON lines: each non-blank line must be a JSON object; errors name file and line. With
 * `rows` skipping malformed rows, a bad line is skipped and counted instead.
 */
export function parseJsonl(path: string, text: string, rows?: MalformedRows): JsonlRow[] {
  const out: JsonlRow[] = [];
  let index = 0;
  lines(text).forEach((l, i) => {
    if (!l.trim()) return;
    const row = (rows ?? new MalformedRows()).guard(() => {
      let v: unknown;
      try {
        v = JSON.parse(l);
      } catch (e) {
        throw new SyntaxError(`${path}:${i + 1}: not valid JSON`, { cause: e });
      }
      if (v === null || typeof v !== "object" || Array.isArray(v)) {
        throw new TypeError(`${path}:${i + 1}: expected a JSON object`);
      }
      return { line: i + 1, index, value: v as Record<string, unknown> };
    });
    index++;
    if (row) out.push(row);
  });
  return out;
}

/** Maps rows with `parse`, skipping (and counting) the malformed ones when `rows` says so. */
function mapRows<R, T>(items: readonly R[], parse: (r: R) => T, rows?: MalformedRows): T[] {
  const policy = rows ?? new MalformedRows();
  const out: T[] = [];
  for (const item of items) {
    const t = policy.guard(() => parse(item));
    if (t !== undefined) out.push(t);
  }
  return out;
}

/** Options of the dataset readers. */
export interface ReadOptions {
  /** Skip and count malformed rows instead of throwing (`--skip-malformed`). */
  readonly skipMalformed?: boolean;
}

function str(path: string, line: number, o: Record<string, unknown>, key: string): string {
  const v = o[key];
  if (typeof v !== "string") {
    throw new TypeError(`${path}:${line}: expected a string field "${key}"`);
  }
  return v;
}

function strList(path: string, line: number, o: Record<string, unknown>, key: string): string[] {
  const v = o[key];
  if (!Array.isArray(v) || v.some((x) => typeof x !== "string")) {
    throw new TypeError(`${path}:${line}: expected a list of strings "${key}"`);
  }
  if (v.length === 0) throw new RangeError(`${path}:${line}: the choice list "${key}" is empty`);
  return v as string[];
}

function intField(path: string, line: number, o: Record<string, unknown>, key: string): number {
  const v = o[key];
  if (typeof v !== "number" || !Number.isInteger(v)) {
    throw new TypeError(`${path}:${line}: expected an integer field "${key}"`);
  }
  return v;
}

/** Parses a label line as an integer; anything else is malformed. */
function labelLine(path: string, line: number, text: string): number {
  const t = text.trim();
  if (!/^-?\d+$/.test(t)) {
    throw new SyntaxError(`${path}:${line}: expected an integer label, got "${t}"`);
  }
  return Number(t);
}

/** Docs read from a dataset, with its fingerprint, how the file was read and what was skipped. */
export interface McDataset {
  readonly docs: McDoc[];
  readonly info: TaskDatasetInfo;
  /** Malformed rows skipped (present when the reader was asked to skip them). */
  readonly skipped?: SkippedRows;
}

function policy(options: ReadOptions | undefined): MalformedRows {
  return new MalformedRows(options?.skipMalformed ?? false);
}

function info(
  id: string,
  format: TaskDatasetInfo["format"],
  files: DatasetFile[],
): TaskDatasetInfo {
  const main = files[0]!;
  return { id, path: main.path, bytes: main.bytes, sha256: main.sha256, files, format };
}

// ---------------------------------------------------------------------------------------------
// ARC (llm-foundry normalized files)

/** Relative paths of the files each dataset reads. */
export const DATASET_FILES = {
  arc_easy: ["tasks/llm-foundry/arc_easy.jsonl"],
  arc_challenge: ["tasks/llm-foundry/arc_challenge.jsonl"],
  piqa: ["tasks/piqa/valid.jsonl", "tasks/piqa/valid-labels.lst"],
  winogrande: ["tasks/winogrande/dev.jsonl", "tasks/winogrande/dev-labels.lst"],
  boolq: ["tasks/boolq/v6_test.json"],
  hellaswag: ["tasks/hellaswag/hellaswag_val_full.txt.gz"],
  lambada_openai: ["tasks/llm-foundry/lambada_openai.jsonl"],
} as const;

/**
 * ARC from llm-foundry's `{query: "Question: …", choices, gold}`: lm-eval's prompt
 * `"Question: {question}\nAnswer:"` is the query plus `"\nAnswer:"`; choices are `choices.text`.
 */
export function parseArc(path: string, text: string, rows?: MalformedRows): McDoc[] {
  return mapRows(parseJsonl(path, text, rows), ({ line, value }): McDoc => {
    const query = str(path, line, value, "query");
    if (!query.startsWith("Question: ")) {
      throw new TypeError(`${path}:${line}: expected "query" to start with "Question: "`);
    }
    return {
      kind: "choices",
      context: `${query}\nAnswer:`,
      choices: strList(path, line, value, "choices"),
      gold: intField(path, line, value, "gold"),
    };
  }, rows);
}

/** Reads ARC-Easy or ARC-Challenge (test split, llm-foundry file). */
export async function readArc(
  dataDir: string,
  which: "arc_easy" | "arc_challenge",
  options?: ReadOptions,
): Promise<McDataset> {
  const rel = DATASET_FILES[which][0];
  const { bytes, file } = await readDataFile(dataDir, rel);
  const rows = policy(options);
  return {
    docs: parseArc(file.path, utf8(file.path, bytes), rows),
    info: info(rel, "llm-foundry", [file]),
    skipped: rows.summary(),
  };
}

// ---------------------------------------------------------------------------------------------
// PIQA (original validation release: valid.jsonl + valid-labels.lst)

/** PIQA: `"Question: {goal}\nAnswer:"`, choices `[sol1, sol2]` (unstripped), gold from the labels file. */
export function parsePiqa(
  dataPath: string,
  text: string,
  labelsPath: string,
  labelsText: string,
  rows?: MalformedRows,
): McDoc[] {
  const items = nonBlankLines(text);
  const labels = lines(labelsText);
  if (labels.length !== items) {
    throw new RangeError(
      `${labelsPath}: ${labels.length} labels for ${items} items in ${dataPath}`,
    );
  }
  return mapRows(parseJsonl(dataPath, text, rows), ({ line, index, value }): McDoc => ({
    kind: "choices",
    context: `Question: ${str(dataPath, line, value, "goal")}\nAnswer:`,
    choices: [str(dataPath, line, value, "sol1"), str(dataPath, line, value, "sol2")],
    gold: labelLine(labelsPath, index + 1, labels[index]!),
  }), rows);
}

function nonBlankLines(text: string): number {
  return lines(text).filter((l) => l.trim()).length;
}

/** Reads PIQA validation (1,838 items). */
export async function readPiqa(dataDir: string, options?: ReadOptions): Promise<McDataset> {
  const [relData, relLabels] = DATASET_FILES.piqa;
  const d = await readDataFile(dataDir, relData);
  const l = await readDataFile(dataDir, relLabels);
  const rows = policy(options);
  return {
    docs: parsePiqa(
      d.file.path,
      utf8(d.file.path, d.bytes),
      l.file.path,
      utf8(l.file.path, l.bytes),
      rows,
    ),
    info: info(relData, "original", [d.file, l.file]),
    skipped: rows.summary(),
  };
}

// ---------------------------------------------------------------------------------------------
// WinoGrande (original v1.1 dev = winogrande_xl validation)

/**
 * WinoGrande partial scoring: contexts `sentence[:blank] + option{1,2}`, the continuation
 * `sentence[blank+1:].strip()`, gold `answer` "1" → 0, "2" → 1 (anything else: out of range).
 * When a labels file is given, it must agree with each item's `answer`.
 */
export function parseWinogrande(
  dataPath: string,
  text: string,
  labelsPath?: string,
  labelsText?: string,
  rows?: MalformedRows,
): McDoc[] {
  const items = nonBlankLines(text);
  const labels = labelsText === undefined ? undefined : lines(labelsText);
  if (labels && labels.length !== items) {
    throw new RangeError(
      `${labelsPath}: ${labels.length} labels for ${items} items in ${dataPath}`,
    );
  }
  return mapRows(parseJsonl(dataPath, text, rows), ({ line, index: i, value }): McDoc => {
    const sentence = str(dataPath, line, value, "sentence");
    const blank = sentence.indexOf("_");
    if (blank < 0) throw new TypeError(`${dataPath}:${line}: the sentence has no blank "_"`);
    const answer = str(dataPath, line, value, "answer");
    if (labels && labels[i]!.trim() !== answer.trim()) {
      throw new RangeError(
        `${labelsPath}:${i + 1}: label "${labels[i]!.trim()}" disagrees with answer "${answer}" ` +
          `at ${dataPath}:${line}`,
      );
    }
    const prefix = sentence.slice(0, blank);
    return {
      kind: "partial",
      contexts: [
        prefix + str(dataPath, line, value, "option1"),
        prefix + str(dataPath, line, value, "option2"),
      ],
      continuation: pyStrip(sentence.slice(blank + 1)),
      gold: answer === "1" ? 0 : answer === "2" ? 1 : -1,
    };
  }, rows);
}

/** Reads WinoGrande dev (1,267 items). */
export async function readWinogrande(dataDir: string, options?: ReadOptions): Promise<McDataset> {
  const [relData, relLabels] = DATASET_FILES.winogrande;
  const d = await readDataFile(dataDir, relData);
  const l = await readDataFile(dataDir, relLabels);
  const rows = policy(options);
  return {
    docs: parseWinogrande(
      d.file.path,
      utf8(d.file.path, d.bytes),
      l.file.path,
      utf8(l.file.path, l.bytes),
      rows,
    ),
    info: info(relData, "original", [d.file, l.file]),
    skipped: rows.summary(),
  };
}

// ---------------------------------------------------------------------------------------------
// BoolQ (original dev release, one JSON array)

/**
 * `path:line[:column]` of a `JSON.parse` error, as far as V8's message tells: a `position N`,
 * or else the line of the quoted snippet it shows; `path` alone when neither is there.
 */
function jsonErrorWhere(path: string, text: string, message: string): string {
  const pos = /position (\d+)/.exec(message);
  if (pos) return `${path}:${lineCol(text, Number(pos[1]))}`;
  const snip = /"([\s\S]+?)"(?:\.\.\.)? is not valid JSON$/.exec(message);
  const at = snip ? text.indexOf(snip[1]!) : -1;
  if (at >= 0 && text.indexOf(snip![1]!, at + 1) < 0) {
    return `${path}:${text.slice(0, at + snip![1]!.length - 1).split("\n").length}`;
  }
  return path;
}

/** Line and column of a character offset. */
function lineCol(text: string, offset: number): string {
  const before = text.slice(0, offset);
  const line = before.split("\n").length;
  return `${line}:${offset - before.lastIndexOf("\n")}`;
}

/**
 * BoolQ (super_glue, lm-eval `boolq`): `"{passage}\nQuestion: {question}?\nAnswer:"`, where
 * SuperGLUE's `passage` is the original release's `"{title} -- {passage}"`; choices
 * `["no", "yes"]`, gold = `answer` (false → 0, true → 1; a non-boolean answer is out of range).
 * The file is a JSON array, or JSON lines.
 */
export function parseBoolq(path: string, text: string, rows?: MalformedRows): McDoc[] {
  let items: { where: string; value: Record<string, unknown> }[];
  if (text.trimStart().startsWith("[")) {
    let v: unknown;
    try {
      v = JSON.parse(text);
    } catch (e) {
      const where = jsonErrorWhere(path, text, (e as Error).message);
      throw new SyntaxError(`${where}: not valid JSON`, { cause: e });
    }
    if (!Array.isArray(v)) throw new TypeError(`${path}: expected a JSON array of items`);
    items = mapRows(v.map((x, i) => ({ x, i })), ({ x, i }) => {
      if (x === null || typeof x !== "object" || Array.isArray(x)) {
        throw new TypeError(`${path}: item ${i + 1} is not a JSON object`);
      }
      return { where: `item ${i + 1}`, value: x as Record<string, unknown> };
    }, rows);
  } else {
    items = parseJsonl(path, text, rows).map(({ line, value }) => ({ where: `${line}`, value }));
  }
  return mapRows(items, ({ where, value }): McDoc => {
    const field = (k: string) => {
      const s = value[k];
      if (typeof s !== "string") {
        throw new TypeError(`${path}:${where}: expected a string field "${k}"`);
      }
      return s;
    };
    const answer = value.answer;
    return {
      kind: "choices",
      context: `${field("title")} -- ${field("passage")}\nQuestion: ${field("question")}?\nAnswer:`,
      choices: ["no", "yes"],
      gold: answer === true ? 1 : answer === false ? 0 : -1,
    };
  }, rows);
}

/** Reads BoolQ dev (3,270 items). */
export async function readBoolq(dataDir: string, options?: ReadOptions): Promise<McDataset> {
  const rel = DATASET_FILES.boolq[0];
  const { bytes, file } = await readDataFile(dataDir, rel);
  const rows = policy(options);
  return {
    docs: parseBoolq(file.path, utf8(file.path, bytes), rows),
    info: info(rel, "original", [file]),
    skipped: rows.summary(),
  };
}

// ---------------------------------------------------------------------------------------------
// HellaSwag (llama.cpp text format of the validation split)

/** Python `str.capitalize()`: first character upper case, the rest lower case. */
export function pyCapitalize(s: string): string {
  const [first = "", ...rest] = [...s];
  return first.toUpperCase() + rest.join("").toLowerCase();
}

/**
 * Re-capitalises `ctx_b` in a HellaSwag context of the llama.cpp file, where
 * `activity_label: ctx_a ctx_b` is already preprocessed but `ctx_b` was not capitalised. The
 * file has lost the `ctx_a`/`ctx_b` boundary, so it is recovered heuristically: a context that
 * does not end with `.`, `!` or `?` has a non-empty `ctx_b`, taken as the text after the last
 * sentence end (`. `, `! `, `? `) or, without one, after the activity label; that fragment gets
 * Python's `capitalize()` (as lm-eval's `ctx_b.capitalize()`). Contexts ending a sentence are left
 * alone (`ctx_b` empty, as in the WikiHow items). Returns the context and whether it changed.
 */
export function recapitalizeHellaswag(ctx: string): { text: string; changed: boolean } {
  if (/[.!?]$/.test(ctx)) return { text: ctx, changed: false };
  let cut = -1;
  for (const m of ctx.matchAll(/[.!?] /g)) cut = m.index! + 2;
  if (cut < 0) {
    const colon = ctx.indexOf(": ");
    if (colon < 0) return { text: ctx, changed: false };
    cut = colon + 2;
  }
  const text = ctx.slice(0, cut) + pyCapitalize(ctx.slice(cut));
  return { text, changed: text !== ctx };
}

/**
 * HellaSwag from llama.cpp's format: 6 lines per item (context, gold index, 4 endings), context
 * `preprocess(activity_label + ": " + ctx_a + " " + ctx_b)` and endings preprocessed as lm-eval's
 * `utils.process_docs`; `ctx_b` is re-capitalised by {@linkcode recapitalizeHellaswag}.
 */
export function parseHellaswag(
  path: string,
  text: string,
  rows?: MalformedRows,
): { docs: McDoc[]; recapitalized: number } {
  const ls = lines(text);
  if (ls.length % 6 !== 0) {
    throw new SyntaxError(
      `${path}:${ls.length}: ${ls.length} lines is not a multiple of 6 (context, label, 4 endings)`,
    );
  }
  const docs: McDoc[] = [];
  let recapitalized = 0;
  const policy = rows ?? new MalformedRows();
  for (let i = 0; i < ls.length; i += 6) {
    const ctx = ls[i]!;
    const gold = policy.guard(() => {
      if (!ctx.trim()) throw new SyntaxError(`${path}:${i + 1}: empty context line`);
      return labelLine(path, i + 2, ls[i + 1]!);
    });
    if (gold === undefined) continue;
    const r = recapitalizeHellaswag(ctx);
    if (r.changed) recapitalized++;
    docs.push({ kind: "choices", context: r.text, choices: ls.slice(i + 2, i + 6), gold });
  }
  return { docs, recapitalized };
}

/** Reads HellaSwag validation (10,042 items). */
export async function readHellaswag(
  dataDir: string,
  options?: ReadOptions,
): Promise<McDataset & { recapitalized: number }> {
  const rel = DATASET_FILES.hellaswag[0];
  const { bytes, file } = await readDataFile(dataDir, rel);
  const text = utf8(file.path, await gunzip(file.path, bytes));
  const rows = policy(options);
  const { docs, recapitalized } = parseHellaswag(file.path, text, rows);
  return { docs, recapitalized, info: info(rel, "original", [file]), skipped: rows.summary() };
}

// ---------------------------------------------------------------------------------------------
// LAMBADA OpenAI (llm-foundry file)

/** A LAMBADA item: the text without its last word, and `" " + last word`. */
export interface LambadaDoc {
  readonly context: string;
  readonly continuation: string;
}

/**
 * LAMBADA from llm-foundry's `{context, continuation}`: the text is rebuilt as
 * `context + " " + continuation` and split as lm-eval's `lambada_openai` YAML does: the context
 * is every `" "`-separated word but the last, joined by `" "`; the target is `" " + last word`
 * (no target delimiter: `output_type: loglikelihood`).
 */
export function parseLambada(path: string, text: string, rows?: MalformedRows): LambadaDoc[] {
  return mapRows(parseJsonl(path, text, rows), ({ line, value }): LambadaDoc => {
    const whole = `${str(path, line, value, "context")} ${str(path, line, value, "continuation")}`;
    const words = whole.split(" ");
    const last = words.pop()!;
    if (!last) throw new TypeError(`${path}:${line}: the text has no last word`);
    return { context: words.join(" "), continuation: ` ${last}` };
  }, rows);
}

/** Reads LAMBADA OpenAI (5,153 items). */
export async function readLambada(
  dataDir: string,
  options?: ReadOptions,
): Promise<{ docs: LambadaDoc[]; info: TaskDatasetInfo; skipped: SkippedRows }> {
  const rel = DATASET_FILES.lambada_openai[0];
  const { bytes, file } = await readDataFile(dataDir, rel);
  const rows = policy(options);
  return {
    docs: parseLambada(file.path, utf8(file.path, bytes), rows),
    info: info(rel, "llm-foundry", [file]),
    skipped: rows.summary(),
  };
}

/** Fingerprints a dataset's files without parsing them (for cell ids before compute). */
export async function datasetFingerprint(
  dataDir: string,
  id: keyof typeof DATASET_FILES,
  format: TaskDatasetInfo["format"],
): Promise<TaskDatasetInfo> {
  const files: DatasetFile[] = [];
  for (const rel of DATASET_FILES[id]) files.push((await readDataFile(dataDir, rel)).file);
  return info(DATASET_FILES[id][0], format, files);
}
