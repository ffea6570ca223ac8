/**
 * The result row: one JSON object per matrix cell, self-describing enough to reproduce the cell.
 *
 * Schema version 1. Fields are camelCase; a new field is added without bumping the version, a
 * changed meaning bumps it.
 *
 * @module
 */

import type { CalibrationRecord } from "../methods/calibration/set.ts";
import type { ActQuantOptions } from "../core/act_quantizer.ts";
import type { ActivationZeros, QuantDiagnostics } from "../methods/types.ts";
import type { DatasetInfo, Metric } from "../tasks/types.ts";

/** The schema version written in every row. */
export const SCHEMA_VERSION = 1;

/** Outcome of a cell. */
export type RowStatus = "ok" | "unsupported" | "failed";

/** One matrix cell's result. */
export interface ResultRow {
  readonly schemaVersion: number;
  /** Content hash of everything that determines the cell's numbers (see `bench/runner.ts` `planMatrix`). */
  readonly cellId: string;
  readonly status: RowStatus;
  /** Why the cell is unsupported or failed. */
  readonly error?: string;
  readonly model: {
    readonly id: string;
    readonly format: string;
    readonly files: readonly { path: string; bytes: number; sha256: string }[];
    readonly params: number;
  };
  readonly method: {
    /** The method spec as given, with its parameter overrides: `gptq:actOrder=true`. */
    readonly spec?: string;
    readonly id: string;
    readonly version: number;
    readonly taxonomy: string;
    readonly scope: string;
    readonly params: Readonly<Record<string, unknown>>;
  };
  readonly quant: {
    readonly label: string;
    readonly wBits: number;
    readonly aBits: number;
    readonly granularity: string;
    readonly groupSize: number | null;
    readonly symmetric: boolean;
    readonly rangeIncludesZero: boolean;
    readonly rounding: "half-even";
    /** Average storage bits per quantized weight (codes + scales + zeros), null for FP. */
    readonly bitsPerWeight: number | null;
    /** The activation quantizer's settings (A < 16), null for weight-only cells. */
    readonly act?: ActQuantOptions | null;
  };
  readonly task: {
    readonly id: string;
    readonly family: string;
    readonly version: number;
    readonly limit: number | null;
    readonly dataset: DatasetInfo | null;
    readonly protocol: Readonly<Record<string, unknown>> | null;
  };
  readonly metrics: readonly Metric[];
  /**
   * Per evaluation unit (perplexity window), in unit order, the values the metrics average
   * (`nll`, and against full precision `kl` and `top1`): the regression check pairs them.
   */
  readonly units?: Readonly<Record<string, readonly number[]>>;
  /** The calibration set of calibrated methods: source, seed, offsets, token hash. */
  readonly calibration?: CalibrationRecord;
  /** Per-linear diagnostics of calibrated methods (reconstruction error, the method's loss). */
  readonly diagnostics?: QuantDiagnostics;
  /** Weight-activation cells: the share of activations quantized to zero, per site. */
  readonly activationZeros?: ActivationZeros;
  /** MoE cells: tokens routed to each expert per block, full precision and quantized. */
  readonly routing?: {
    readonly loadFp: readonly (readonly number[])[];
    readonly loadQuantized: readonly (readonly number[])[];
    readonly windows: number;
    readonly source: string;
  };
  readonly notes: readonly string[];
  readonly env: {
    readonly lowbit: string;
    readonly git: { commit: string | null; dirty: boolean | null };
    readonly deno: string;
    readonly v8: string;
    readonly typescript: string;
    readonly os: string;
    readonly arch: string;
    readonly cpus: number;
    readonly backend: string;
    /**
     * The WebGPU adapter perplexity windows ran on (backend `webgpu+…`); `fallback` marks a
     * software adapter, whose timings are not GPU speed.
     */
    readonly gpu?: {
      readonly vendor: string;
      readonly architecture: string;
      readonly device: string;
      readonly description: string;
      readonly fallback: boolean;
    };
  };
  /** ISO time the cell finished. */
  readonly finishedAt: string;
  /** Wall time of the cell, quantization and evaluation. */
  readonly wallMs: number;
  /**
   * Wall time of quantization (calibration and the method) within `wallMs`; absent when the
   * cell reused the previous cell's quantized model, or has none (`fp`).
   */
  readonly quantizeMs?: number;
}
