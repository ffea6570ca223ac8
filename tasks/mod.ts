/**
 * The task registry. Perplexity tasks are named by dataset (`tinystories`, `wikitext2`) or by a
 * local file (`file:PATH`).
 *
 * @module
 */

import { unknownIdError } from "../core/registry.ts";
import { TEXT_DATASETS } from "./datasets.ts";
import { perplexityTask } from "./perplexity.ts";
import type { Task } from "./types.ts";

/** Ids of the registered tasks (besides `file:PATH`). */
export const TASK_IDS: readonly string[] = TEXT_DATASETS.map((d) => d.id);

/** The task with this id; throws a `TypeError` listing valid ids for an unknown one. */
export function getTask(id: string): Task {
  if (id.startsWith("file:")) {
    const path = id.slice(5);
    if (!path) throw new TypeError(`Task "file:" needs a path, e.g. file:./my_text.txt`);
    return perplexityTask({ kind: "file", path });
  }
  if (TASK_IDS.includes(id)) return perplexityTask({ kind: "dataset", id });
  throw unknownIdError("task", id, [...TASK_IDS, "file:PATH"]);
}
