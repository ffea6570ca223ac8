/**
 * What an evaluation task is, and what it returns.
 *
 * @module
 */

import type { DatasetInfo } from "./corpora/text.ts";
import type { Kernels } from "../kernels/types.ts";

export type { DatasetInfo };
import type { EvalPool } from "../runners/eval_pool.ts";
import type { WindowScorer } from "../runners/types.ts";
import { ModelRunner } from "../runners/model_runner.ts";
import type { LlamaConfig, LlamaWeights, Tokenizer } from "../models/types.ts";

/** Perplexity windows are at most this long unless a context is asked for (GPTQ's 2048). */
export const DEFAULT_MAX_CONTEXT = 2048;

/** A model as tasks see it: config, weights and tokenizer. */
export interface EvalModel {
  readonly config: LlamaConfig;
  readonly weights: LlamaWeights;
  readonly tokenizer: Tokenizer;
}

/** One reported number with its uncertainty. */
export interface Metric {
  /** Stable metric id, e.g. `ppl`, `nll`, `kl`, `top1`, `acc`, `acc_norm`. */
  readonly metric: string;
  readonly value: number;
  /** Standard error of `value`, or null where none is defined. */
  readonly stderr: number | null;
  /** Number of independent units the stderr is computed over (windows, documents). */
  readonly n: number;
  readonly higherIsBetter: boolean;
  /** Unit, e.g. `nats/token`. */
  readonly unit?: string;
}

/** The outcome of running a task on a model. */
export interface TaskResult {
  readonly metrics: readonly Metric[];
  readonly dataset: DatasetInfo;
  /** Everything that defines how the numbers were computed (windowing, BOS, limits…). */
  readonly protocol: Readonly<Record<string, unknown>>;
  /**
   * Per evaluation unit (perplexity window), in unit order, the values the metrics average:
   * what a paired comparison of two runs needs (`results/compare.ts`).
   */
  readonly units?: UnitValues;
}

/** Per-unit values by name (`nll`, `kl`, `top1` for perplexity windows). */
export type UnitValues = Readonly<Record<string, readonly number[]>>;

/** Inputs a task gets besides the model. */
export interface TaskContext {
  readonly kernels: Kernels;
  /** The unquantized model, for KL divergence and agreement metrics; absent for the FP cell itself. */
  readonly reference?: ReferenceModel;
  /** Keep only the first N evaluation units (windows, documents). */
  readonly limit?: number;
  /**
   * Tokens per perplexity window (`--context`); default: the model's context, at most
   * {@linkcode DEFAULT_MAX_CONTEXT}.
   */
  readonly context?: number;
  /** Root directory of datasets (flag `--data`, env `LOWBIT_DATA`). */
  readonly dataDir: string;
  readonly onProgress?: (done: number, total: number) => void;
  /** Worker threads to spread evaluation units over; absent = this thread. */
  readonly pool?: EvalPool;
  /** Environment lookup for Hugging Face dataset sources (`HF_ENDPOINT`, `HF_HUB_OFFLINE`, …). */
  readonly env?: (name: string) => string | undefined;
  /** Skip and count malformed dataset rows instead of failing (`--skip-malformed`). */
  readonly skipMalformed?: boolean;
  /** Scores perplexity windows on a GPU (`--backend webgpu`); preferred over `pool` when set. */
  readonly windowScorer?: WindowScorer;
  /**
   * Where and how the model runs (`runners/model_runner.ts`), built once by the caller; absent:
   * one is built from `kernels`, `pool` and `windowScorer`.
   */
  readonly runner?: ModelRunner;
}

/** The context's model runner, or one built from its kernels, pool and window scorer. */
export function runnerOf(
  ctx: Pick<TaskContext, "kernels" | "pool" | "windowScorer" | "runner">,
): ModelRunner {
  return ctx.runner ?? new ModelRunner(ctx.kernels, {
    ...(ctx.pool ? { pool: ctx.pool } : {}),
    ...(ctx.windowScorer ? { windowScorer: ctx.windowScorer } : {}),
  });
}

/** The full-precision model plus a cache of its per-window outputs, shared by all cells of a run. */
export interface ReferenceModel {
  readonly model: EvalModel;
  /** Cache keyed by task-defined strings; the task decides what to store. */
  readonly cache: Map<string, Float32Array>;
  /** Bytes the cache may hold; beyond it, reference outputs are recomputed. */
  readonly cacheBudgetBytes: number;
}

/** A registered evaluation task. */
export interface Task {
  readonly id: string;
  readonly title: string;
  readonly family: "perplexity" | "zero-shot" | "ruler" | "reasoning";
  /** Bumped whenever the task's numbers may change; stored in every row. */
  readonly version: number;
  /** The dataset the task reads, fingerprinted (read before any compute; part of the cell id). */
  dataset(ctx: Pick<TaskContext, "dataDir" | "env">): Promise<DatasetInfo>;
  run(model: EvalModel, ctx: TaskContext): Promise<TaskResult>;
}
