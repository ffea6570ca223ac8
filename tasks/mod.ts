/**
 * The task registry.
 *
 * - Perplexity tasks are named by corpus (`tinystories`, `wikitext2`), by a corpus split
 *   (`tinystories:eval`, the half of TinyStories no calibration set draws from), or by a local
 *   file (`file:PATH`).
 * - Zero-shot tasks (family `zero-shot`) follow lm-evaluation-harness: `arc_easy`,
 *   `arc_challenge`, `piqa`, `hellaswag`, `winogrande`, `boolq`, `lambada_openai`
 *   (see `zero_shot.ts`), plus `tinystories_cloze` (see `tinystories_cloze.ts`).
 * - Reasoning tasks (family `reasoning`): `gsm8k`, few-shot chain-of-thought generation scored
 *   by exact match (see `gsm8k.ts`).
 * - RULER tasks (family `ruler`): `ruler:{task}` or `ruler:{task}@{length}[+{length}…]` for the
 *   13 RULER tasks (`niah_single_1` … `fwe`, `qa_1`, `qa_2`), see `ruler.ts`.
 * - `TASK=SOURCE` reads a task's data from a Hugging Face dataset instead of the bundled file, for
 *   `arc_easy`, `arc_challenge`, `piqa`, `hellaswag`, `winogrande`, `boolq` and `gsm8k`: `SOURCE`
 *   is `hf` (the lm-eval dataset's Hub parquet file), `hf://datasets/{owner}/{name}[@{rev}]/{path}`
 *   or a local `.parquet`/`.jsonl`/`.json` file with the dataset's columns (see `hf_schemas.ts`).
 *
 * @module
 */

import { unknownIdError } from "../core/registry.ts";
import { TEXT_DATASETS } from "./corpora/text.ts";
import { gsm8kTask } from "./gsm8k.ts";
import { perplexityTask } from "./perplexity.ts";
import { RULER_TASK_NAMES, rulerTask } from "./ruler.ts";
import { tinystoriesClozeTask } from "./tinystories_cloze.ts";
import type { Task } from "./types.ts";
import { HF_ZERO_SHOT_TASK_IDS, ZERO_SHOT_TASK_IDS, zeroShotTask } from "./zero_shot.ts";

/** Ids of the perplexity tasks (besides `file:PATH`). */
export const PERPLEXITY_TASK_IDS: readonly string[] = TEXT_DATASETS.filter((d) =>
  d.format === "text"
).flatMap((d) => [
  d.id,
  ...(d.splits ?? []).filter((s) => s === "eval").map((s) => `${d.id}:${s}`),
]);

/** Ids of the zero-shot tasks. */
export const ZERO_SHOT_IDS: readonly string[] = [...ZERO_SHOT_TASK_IDS, "tinystories_cloze"];

/** Ids of the reasoning (generation) tasks. */
export const REASONING_IDS: readonly string[] = ["gsm8k"];

/** Ids of the RULER tasks at their default lengths (`ruler:{task}@{length}` also works). */
export const RULER_IDS: readonly string[] = RULER_TASK_NAMES.map((t) => `ruler:${t}`);

/** Ids of the registered tasks (besides `file:PATH`). */
export const TASK_IDS: readonly string[] = [
  ...PERPLEXITY_TASK_IDS,
  ...ZERO_SHOT_IDS,
  ...REASONING_IDS,
  ...RULER_IDS,
];

/** Ids of the tasks that take a dataset source (`TASK=SOURCE`). */
export const HF_TASK_IDS: readonly string[] = [...HF_ZERO_SHOT_TASK_IDS, "gsm8k"];

/**
 * The task with this id (or `TASK=SOURCE`, whose task id is that whole string); throws a `TypeError` listing valid ids for an
 * unknown one, or naming the tasks that take a source.
 */
export function getTask(id: string): Task {
  const eq = id.indexOf("=");
  if (eq >= 0 && !id.startsWith("file:")) {
    const [name, source] = [id.slice(0, eq), id.slice(eq + 1)];
    if (!HF_TASK_IDS.includes(name)) {
      throw new TypeError(
        `Task "${name}" cannot read a dataset source ("${id}"); tasks that can: ` +
          HF_TASK_IDS.join(", "),
      );
    }
    if (!source) {
      throw new TypeError(
        `Task "${id}" needs a source after "=": hf, hf://datasets/{owner}/{name}/{path} or a ` +
          `file path`,
      );
    }
    return name === "gsm8k" ? gsm8kTask({ source }) : zeroShotTask(name, source)!;
  }
  if (id.startsWith("file:")) {
    if (id.length === 5) throw new TypeError(`Task "file:" needs a path, e.g. file:./my_text.txt`);
    return perplexityTask(id);
  }
  if (PERPLEXITY_TASK_IDS.includes(id)) return perplexityTask(id);
  if (id === "tinystories_cloze") return tinystoriesClozeTask();
  if (id === "gsm8k") return gsm8kTask();
  if (id.startsWith("ruler:")) return rulerTask(id);
  const zs = zeroShotTask(id);
  if (zs) return zs;
  throw unknownIdError("task", id, [...TASK_IDS, "file:PATH"]);
}
