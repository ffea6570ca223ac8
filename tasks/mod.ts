/**
 * The task registry. Perplexity tasks are named by corpus (`tinystories`, `wikitext2`), by a
 * corpus split (`tinystories:eval`, the half of TinyStories no calibration set draws from), or by
 * a local file (`file:PATH`).
 *
 * @module
 */

import { unknownIdError } from "../core/registry.ts";
import { TEXT_DATASETS } from "../corpora/text.ts";
import { perplexityTask } from "./perplexity.ts";
import type { Task } from "./types.ts";

/** Ids of the registered tasks (besides `file:PATH`). */
export const TASK_IDS: readonly string[] = TEXT_DATASETS.filter((d) => d.format === "text")
  .flatMap((
    d,
  ) => [d.id, ...(d.splits ?? []).filter((s) => s === "eval").map((s) => `${d.id}:${s}`)]);

/** The task with this id; throws a `TypeError` listing valid ids for an unknown one. */
export function getTask(id: string): Task {
  if (id.startsWith("file:")) {
    if (id.length === 5) throw new TypeError(`Task "file:" needs a path, e.g. file:./my_text.txt`);
    return perplexityTask(id);
  }
  if (TASK_IDS.includes(id)) return perplexityTask(id);
  throw unknownIdError("task", id, [...TASK_IDS, "file:PATH"]);
}
