/**
 * Test helper: a complete, plausible {@linkcode ResultRow} from a few fields.
 *
 * @module
 */

import { type ResultRow, SCHEMA_VERSION } from "./row.ts";
import type { Metric } from "../tasks/types.ts";

/** The fields a test usually varies. */
export interface RowSpec {
  readonly cellId?: string;
  readonly status?: ResultRow["status"];
  readonly error?: string;
  readonly model?: string;
  /** Method spec, e.g. `gptq:actOrder=true`; the id is the part before `:`. */
  readonly method?: string;
  readonly taxonomy?: string;
  readonly wBits?: number;
  readonly groupSize?: number | null;
  readonly task?: string;
  readonly family?: "perplexity" | "zero-shot";
  /** Metric values: `{ppl: [6.1, 0.13]}` (value, stderr). */
  readonly metrics?: Readonly<Record<string, readonly [number, number | null]>>;
  readonly schemaVersion?: number;
}

const HIGHER_IS_BETTER = new Set(["acc", "acc_norm", "top1"]);

/** Builds a row; the cell id defaults to a readable key of model, method, bits and task. */
export function makeRow(s: RowSpec = {}): ResultRow {
  const method = s.method ?? "rtn";
  const id = method.split(":")[0]!;
  const wBits = s.wBits ?? (id === "fp" ? 32 : 4);
  const g = s.groupSize ?? null;
  const label = wBits >= 32 ? "FP32" : `W${wBits}A16${g ? `g${g}` : ""}`;
  const task = s.task ?? "tinystories:eval";
  const model = s.model ?? "tiny";
  const metrics: Metric[] = Object.entries(s.metrics ?? { ppl: [10, 0.2] }).map((
    [metric, [value, stderr]],
  ) => ({ metric, value, stderr, n: 100, higherIsBetter: HIGHER_IS_BETTER.has(metric) }));
  return {
    schemaVersion: s.schemaVersion ?? SCHEMA_VERSION,
    cellId: s.cellId ?? `${model}|${method}|${label}|${task}`,
    status: s.status ?? "ok",
    ...(s.error !== undefined ? { error: s.error } : {}),
    model: { id: model, format: "llama2c", files: [], params: 1000 },
    method: {
      spec: method,
      id,
      version: 1,
      taxonomy: s.taxonomy ?? (id === "fp" || id === "rtn" ? "baseline" : "compensation"),
      scope: id === "fp" ? "none" : "weight-only",
      params: {},
    },
    quant: {
      label,
      wBits,
      aBits: 16,
      granularity: g ? "group" : wBits >= 32 ? "tensor" : "channel",
      groupSize: g,
      symmetric: false,
      rangeIncludesZero: true,
      rounding: "half-even",
      bitsPerWeight: wBits >= 32 ? null : wBits + (g ? 32 / g : 0.5),
    },
    task: {
      id: task,
      family: s.family ?? (task.startsWith("tinystories:eval") ? "perplexity" : "zero-shot"),
      version: 1,
      limit: null,
      dataset: null,
      protocol: null,
    },
    metrics: s.status && s.status !== "ok" ? [] : metrics,
    notes: [],
    env: {
      lowbit: "0.1.0",
      git: { commit: "abc", dirty: false },
      deno: "2",
      v8: "1",
      typescript: "5",
      os: "linux",
      arch: "x86_64",
      cpus: 2,
      backend: "js-ref",
    },
    finishedAt: "2026-12-01T00:00:00.000Z",
    wallMs: 1,
  };
}
