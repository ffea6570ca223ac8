/**
 * The Hugging Face column schemas of the lm-eval tasks, mapped onto our task inputs the way
 * lm-evaluation-harness's task YAMLs read them (`doc_to_text`, `doc_to_choice`, `doc_to_target`,
 * `process_docs`). Rows come from any dataset source (`dataset_source.ts`): a Hub parquet file or
 * a local parquet/JSON file with the same columns.
 *
 * | task | lm-eval dataset (split) | columns | context | choices | gold |
 * |---|---|---|---|---|---|
 * | `arc_easy`, `arc_challenge` | `allenai/ai2_arc` ARC-Easy / ARC-Challenge (test) | `question, choices: {text, label}, answerKey` | `Question: {question}\nAnswer:` | `choices.text` | `choices.label.index(answerKey)` |
 * | `piqa` | `ybisk/piqa` (validation) | `goal, sol1, sol2, label` | `Question: {goal}\nAnswer:` | `[sol1, sol2]` | `label` |
 * | `hellaswag` | `Rowan/hellaswag` (validation) | `activity_label, ctx_a, ctx_b, endings, label` | `preprocess({activity_label}: {ctx_a} {ctx_b.capitalize()})` | `preprocess(endings)` | `int(label)` |
 * | `winogrande` | `allenai/winogrande` winogrande_xl (validation) | `sentence, option1, option2, answer` | partial: `sentence[:_] + option` | `sentence[_+1:].strip()` | `answer` "1" → 0, "2" → 1 |
 * | `boolq` | `super_glue` boolq (validation); also `google/boolq` | `passage, question, label` (or `answer: bool`) | `{passage}\nQuestion: {question}?\nAnswer:` | `["no", "yes"]` | `label` (or `answer`) |
 * | `gsm8k` | `openai/gsm8k` main (test) | `question, answer` | few-shot prompt, see `gsm8k.ts` | — | the number after `####` |
 *
 * A gold label that names no choice (a missing `answerKey`, the test splits' `-1` or `""`) is kept
 * as an out-of-range gold index, which scoring counts and reports; an empty choice list throws; a
 * missing or ill-typed column is a malformed row (thrown, or skipped with `--skip-malformed`).
 *
 * @module
 */

import type { SkippedRows } from "./malformed.ts";
import { type McDoc, pyStrip } from "./multiple_choice.ts";
import { pyCapitalize, type TaskDatasetInfo } from "./mc_datasets.ts";
import {
  type DatasetRow,
  type DatasetSource,
  type DatasetSourceOptions,
  fetchDatasetSource,
  parseDatasetSource,
  readDatasetSource,
} from "./dataset_source.ts";
import { type Gsm8kDoc, parseGold } from "./answer_extract.ts";

/** How a task reads rows of its Hugging Face dataset. */
export interface HfSchema<D> {
  /** The lm-eval `dataset_path` (and `dataset_name`), e.g. `allenai/ai2_arc ARC-Easy`. */
  readonly dataset: string;
  /** The split lm-eval evaluates on. */
  readonly split: string;
  /**
   * The Hub file of that split, used for the source `hf`. Script-based repositories are read
   * from the Hub's parquet conversion (`refs/convert/parquet`). Written from the Hub's layout as
   * documented, not fetched here (no network): pass an explicit `hf://` source if it moved.
   */
  readonly defaultSource: string;
  /** The columns read, for the row's protocol. */
  readonly columns: string;
  /** How choices and gold come from the columns (lm-eval `doc_to_choice`/`doc_to_target`). */
  readonly choices: string;
  /** Maps one row; throws `TypeError` naming the row for a missing or ill-typed column. */
  toDoc(row: DatasetRow): D;
}

function field(row: DatasetRow, key: string): unknown {
  return row.value[key];
}

function str(row: DatasetRow, key: string): string {
  const v = field(row, key);
  if (typeof v !== "string") {
    throw new TypeError(`${row.where}: expected a string column "${key}", got ${describe(v)}`);
  }
  return v;
}

function strList(row: DatasetRow, v: unknown, key: string): string[] {
  if (!Array.isArray(v) || v.some((x) => typeof x !== "string")) {
    throw new TypeError(`${row.where}: expected a list of strings "${key}", got ${describe(v)}`);
  }
  if (v.length === 0) throw new RangeError(`${row.where}: the choice list "${key}" is empty`);
  return v as string[];
}

function describe(v: unknown): string {
  if (v === undefined) return "no such column";
  if (v === null) return "null";
  return Array.isArray(v) ? "a list" : typeof v;
}

/** An integer label column (number or numeric string); anything else is out of range (−1). */
function intLabel(row: DatasetRow, key: string): number {
  const v = field(row, key);
  if (v === undefined) throw new TypeError(`${row.where}: expected a label column "${key}"`);
  if (typeof v === "number" && Number.isInteger(v)) return v;
  if (typeof v === "string" && /^-?\d+$/.test(v.trim())) return Number(v.trim());
  return -1;
}

/** lm-eval hellaswag `preprocess`: strip, " [title]" → ". ", drop `[…]`, "  " → " ". */
export function hellaswagPreprocess(text: string): string {
  return pyStrip(text).replaceAll(" [title]", ". ").replace(/\[.*?\]/g, "").replaceAll("  ", " ");
}

function arc(config: "ARC-Easy" | "ARC-Challenge"): HfSchema<McDoc> {
  return {
    dataset: `allenai/ai2_arc ${config}`,
    split: "test",
    defaultSource: `hf://datasets/allenai/ai2_arc/${config}/test-00000-of-00001.parquet`,
    columns: "question, choices.text, choices.label, answerKey",
    choices: "choices.text; gold = choices.label.index(answerKey)",
    toDoc(row) {
      const choices = field(row, "choices") as Record<string, unknown> | null | undefined;
      if (choices === null || typeof choices !== "object" || Array.isArray(choices)) {
        throw new TypeError(
          `${row.where}: expected a struct column "choices" {text, label}, got ${
            describe(choices)
          }`,
        );
      }
      const text = strList(row, choices.text, "choices.text");
      const labels = choices.label;
      if (!Array.isArray(labels) || labels.length !== text.length) {
        throw new TypeError(
          `${row.where}: expected "choices.label" to be a list as long as "choices.text"`,
        );
      }
      return {
        kind: "choices",
        context: `Question: ${str(row, "question")}\nAnswer:`,
        choices: text,
        gold: labels.indexOf(str(row, "answerKey")),
      };
    },
  };
}

/** The Hugging Face schema of each task that has one. */
export const HF_SCHEMAS = {
  arc_easy: arc("ARC-Easy"),
  arc_challenge: arc("ARC-Challenge"),
  piqa: {
    dataset: "ybisk/piqa plain_text",
    split: "validation",
    defaultSource:
      "hf://datasets/ybisk/piqa@refs%2Fconvert%2Fparquet/plain_text/validation/0000.parquet",
    columns: "goal, sol1, sol2, label",
    choices: "[sol1, sol2]; gold = label",
    toDoc: (row) => ({
      kind: "choices",
      context: `Question: ${str(row, "goal")}\nAnswer:`,
      choices: [str(row, "sol1"), str(row, "sol2")],
      gold: intLabel(row, "label"),
    }),
  },
  hellaswag: {
    dataset: "Rowan/hellaswag",
    split: "validation",
    defaultSource:
      "hf://datasets/Rowan/hellaswag@refs%2Fconvert%2Fparquet/default/validation/0000.parquet",
    columns: "activity_label, ctx_a, ctx_b, endings, label",
    choices: "[preprocess(e) for e in endings]; gold = int(label)",
    toDoc(row) {
      const ctx = `${str(row, "ctx_a")} ${pyCapitalize(str(row, "ctx_b"))}`;
      return {
        kind: "choices",
        context: hellaswagPreprocess(`${str(row, "activity_label")}: ${ctx}`),
        choices: strList(row, field(row, "endings"), "endings").map(hellaswagPreprocess),
        gold: intLabel(row, "label"),
      };
    },
  },
  winogrande: {
    dataset: "allenai/winogrande winogrande_xl",
    split: "validation",
    defaultSource:
      "hf://datasets/allenai/winogrande/winogrande_xl/validation-00000-of-00001.parquet",
    columns: "sentence, option1, option2, answer",
    choices: "the shared continuation sentence[blank+1:].strip(); gold = answer '1' → 0, '2' → 1",
    toDoc(row) {
      const sentence = str(row, "sentence");
      const blank = sentence.indexOf("_");
      if (blank < 0) throw new TypeError(`${row.where}: the sentence has no blank "_"`);
      const answer = field(row, "answer");
      const a = typeof answer === "number" ? String(answer) : str(row, "answer").trim();
      const prefix = sentence.slice(0, blank);
      return {
        kind: "partial",
        contexts: [prefix + str(row, "option1"), prefix + str(row, "option2")],
        continuation: pyStrip(sentence.slice(blank + 1)),
        gold: a === "1" ? 0 : a === "2" ? 1 : -1,
      };
    },
  },
  boolq: {
    dataset: "super_glue boolq (aps/super_glue)",
    split: "validation",
    defaultSource: "hf://datasets/aps/super_glue/boolq/validation-00000-of-00001.parquet",
    columns: "passage, question, label (or answer: bool; title when present)",
    choices: '["no", "yes"]; gold = label (or answer: false → 0, true → 1)',
    toDoc(row) {
      const title = field(row, "title");
      const passage = typeof title === "string"
        ? `${title} -- ${str(row, "passage")}`
        : str(row, "passage");
      const answer = field(row, "answer");
      const gold = typeof answer === "boolean" ? (answer ? 1 : 0) : intLabel(row, "label");
      return {
        kind: "choices",
        context: `${passage}\nQuestion: ${str(row, "question")}?\nAnswer:`,
        choices: ["no", "yes"],
        gold: gold === 0 || gold === 1 ? gold : -1,
      };
    },
  },
  gsm8k: {
    dataset: "openai/gsm8k main",
    split: "test",
    defaultSource: "hf://datasets/openai/gsm8k/main/test-00000-of-00001.parquet",
    columns: "question, answer",
    choices: "generated; gold = the number after '#### ' in answer",
    toDoc(row) {
      const question = str(row, "question");
      const answer = str(row, "answer");
      let gold: string;
      try {
        gold = parseGold(answer);
      } catch (e) {
        throw new SyntaxError(`${row.where}: ${(e as Error).message}`, { cause: e });
      }
      return { question, answer, gold, line: rowNumber(row) };
    },
  },
} as const satisfies
  & {
    readonly [K in "arc_easy" | "arc_challenge" | "piqa" | "hellaswag" | "winogrande" | "boolq"]:
      HfSchema<McDoc>;
  }
  & { readonly gsm8k: HfSchema<Gsm8kDoc> };

/** Ids of the tasks that can read a Hugging Face dataset. */
export type HfTaskId = keyof typeof HF_SCHEMAS;

/** The 1-based line or row number in a row's `where` (`path:12`, `path: row 12`), else 0. */
function rowNumber(row: DatasetRow): number {
  const m = /(?::|row |item )(\d+)$/.exec(row.where);
  return m ? Number(m[1]) : 0;
}

/**
 * The source a task reads for `spec`: `hf` is the schema's default Hub file, anything else a
 * dataset source (`hf://datasets/…` or a local path). Throws a `TypeError` for a malformed one.
 */
export function resolveHfSource(schema: HfSchema<unknown>, spec: string): DatasetSource {
  return parseDatasetSource(spec === "hf" ? schema.defaultSource : spec);
}

/**
 * Reads a task's docs from a dataset source through its schema, fingerprinted.
 *
 * @param schema The task's schema (from {@linkcode HF_SCHEMAS}).
 * @param spec `hf`, `hf://datasets/…` or a local path.
 * @param options Hub environment, progress, `skipMalformed`.
 * @returns The docs, the dataset info (format `hf`) and the malformed rows skipped.
 */
export async function readHfDataset<D>(
  schema: HfSchema<D>,
  spec: string,
  options: DatasetSourceOptions = {},
): Promise<{ docs: D[]; info: TaskDatasetInfo; skipped: SkippedRows }> {
  const source = resolveHfSource(schema, spec);
  const { rows, file, malformed } = await readDatasetSource(source, options);
  const docs: D[] = [];
  for (const row of rows) {
    const d = malformed.guard(() => schema.toDoc(row));
    if (d !== undefined) docs.push(d);
  }
  return { docs, info: hfInfo(source.spec, file), skipped: malformed.summary() };
}

/** The dataset info of a source's file. */
export function hfInfo(
  spec: string,
  file: { path: string; bytes: number; sha256: string },
): TaskDatasetInfo {
  return {
    id: spec,
    path: file.path,
    bytes: file.bytes,
    sha256: file.sha256,
    files: [file],
    format: "hf",
    source: spec,
  };
}

/** Fingerprints a task's source without parsing it (fetching a hub file into the cache). */
export async function hfFingerprint(
  schema: HfSchema<unknown>,
  spec: string,
  options: DatasetSourceOptions = {},
): Promise<TaskDatasetInfo> {
  const source = resolveHfSource(schema, spec);
  const { file } = await fetchDatasetSource(source, options);
  return hfInfo(source.spec, file);
}
