/**
 * The matrix: models × methods × bit configurations × tasks, from a preset and flag overrides.
 *
 * A preset is a JSON file in `bench/presets/` (`{id, description, models, methods, bits, groups,
 * tasks, symmetric, limit?, calibration?}`). A `methods` entry is a method spec (`gptq`,
 * `gptq:actOrder=true`) or `{method, bits?, groups?}` to give that method its own bit-widths or
 * groups. Every model × task pair also gets the full-precision cell (`fp`), the reference of KL and
 * agreement metrics.
 *
 * @module
 */

import type { CalibrationSpec } from "../calibration/set.ts";
import type { QuantConfig } from "../methods/types.ts";

/** A group setting: per output channel, per tensor, or a number of input columns. */
export type GroupSetting = "channel" | "tensor" | number;

/** A method spec with, optionally, its own bit-widths and groups. */
export interface MethodEntry {
  /** Method spec: `rtn`, `gptq:actOrder=true`. */
  readonly method: string;
  readonly bits?: readonly number[];
  readonly groups?: readonly GroupSetting[];
}

/** Everything that defines a matrix. */
export interface MatrixSpec {
  readonly id: string;
  readonly description?: string;
  readonly models: readonly string[];
  /** Method specs, or entries with their own bits/groups (which override `bits`/`groups`). */
  readonly methods: readonly (string | MethodEntry)[];
  readonly bits: readonly number[];
  readonly groups: readonly GroupSetting[];
  readonly tasks: readonly string[];
  readonly symmetric: boolean;
  /** Keep only the first N evaluation units of each task. */
  readonly limit?: number;
  /** Calibration set of methods that need one (defaults: `DEFAULT_CALIBRATION`). */
  readonly calibration?: Partial<CalibrationSpec>;
}

/** One cell of the matrix. */
export interface CellSpec {
  readonly model: string;
  /** Method spec (`gptq:actOrder=true`). */
  readonly method: string;
  readonly quant: QuantConfig;
  readonly task: string;
  readonly limit?: number;
}

/** The unquantized configuration. */
export const FP_QUANT: QuantConfig = {
  wBits: 32,
  aBits: 16,
  granularity: "tensor",
  symmetric: false,
};

/** The quantizer configuration of a bit-width and group setting (weights only). */
export function quantFor(bits: number, group: GroupSetting, symmetric: boolean): QuantConfig {
  if (group === "channel" || group === "tensor") {
    return { wBits: bits, aBits: 16, granularity: group, symmetric };
  }
  return { wBits: bits, aBits: 16, granularity: "group", groupSize: group, symmetric };
}

/** Expands a spec into cells: per model and task the `fp` cell, then methods × bits × groups. */
export function expandMatrix(spec: MatrixSpec): CellSpec[] {
  const cells: CellSpec[] = [];
  const lim = spec.limit !== undefined ? { limit: spec.limit } : {};
  for (const model of spec.models) {
    for (const task of spec.tasks) {
      cells.push({ model, method: "fp", quant: FP_QUANT, task, ...lim });
      for (const entry of spec.methods) {
        const e: MethodEntry = typeof entry === "string" ? { method: entry } : entry;
        const method = e.method;
        if (method === "fp") continue;
        for (const bits of e.bits ?? spec.bits) {
          for (const group of e.groups ?? spec.groups) {
            cells.push({
              model,
              method,
              quant: quantFor(bits, group, spec.symmetric),
              task,
              ...lim,
            });
          }
        }
      }
    }
  }
  return cells;
}

/** Parses `2-8`, `2,3,4` or `2-4,8` into a sorted list of distinct integers. */
export function parseIntList(text: string, what: string): number[] {
  const out = new Set<number>();
  for (const part of text.split(",").map((s) => s.trim()).filter(Boolean)) {
    const m = /^(\d+)(?:-(\d+))?$/.exec(part);
    if (!m) {
      throw new SyntaxError(`Cannot parse ${what} "${part}": expected N, N-M or a comma list`);
    }
    const a = Number(m[1]);
    const b = m[2] === undefined ? a : Number(m[2]);
    if (b < a) throw new SyntaxError(`Cannot parse ${what} "${part}": range end below start`);
    for (let i = a; i <= b; i++) out.add(i);
  }
  if (out.size === 0) throw new SyntaxError(`Empty ${what} list`);
  return [...out].sort((x, y) => x - y);
}

/** Parses `channel,32,tensor` into group settings. */
export function parseGroups(text: string): GroupSetting[] {
  return text.split(",").map((s) => s.trim()).filter(Boolean).map((s) => {
    if (s === "channel" || s === "tensor") return s;
    if (/^\d+$/.test(s) && Number(s) > 0) return Number(s);
    throw new SyntaxError(
      `Cannot parse group "${s}": expected "channel", "tensor" or a positive number of columns`,
    );
  });
}

/** Checks a parsed preset file, naming the file and field on error. */
export function parsePreset(json: unknown, file: string): MatrixSpec {
  if (!json || typeof json !== "object") throw new SyntaxError(`${file}: expected a JSON object`);
  const o = json as Record<string, unknown>;
  const strings = (k: string): string[] => {
    const v = o[k];
    if (!Array.isArray(v) || !v.every((x) => typeof x === "string")) {
      throw new SyntaxError(`${file}: field "${k}" must be an array of strings`);
    }
    return v;
  };
  if (typeof o.id !== "string") throw new SyntaxError(`${file}: field "id" must be a string`);
  const bits = o.bits;
  if (!Array.isArray(bits) || !bits.every((b) => Number.isInteger(b))) {
    throw new SyntaxError(`${file}: field "bits" must be an array of integers`);
  }
  const groups = o.groups;
  if (!Array.isArray(groups)) throw new SyntaxError(`${file}: field "groups" must be an array`);
  const models = strings("models");
  if (!Array.isArray(o.methods)) {
    throw new SyntaxError(`${file}: field "methods" must be an array`);
  }
  const methods = o.methods.map((m, i): string | MethodEntry => {
    if (typeof m === "string") return m;
    const e = m as Record<string, unknown> | null;
    if (!e || typeof e !== "object" || typeof e.method !== "string") {
      throw new SyntaxError(
        `${file}: methods[${i}] must be a method spec string or {"method", "bits"?, "groups"?}`,
      );
    }
    if (e.bits !== undefined && !(Array.isArray(e.bits) && e.bits.every(Number.isInteger))) {
      throw new SyntaxError(`${file}: methods[${i}].bits must be an array of integers`);
    }
    if (e.groups !== undefined && !Array.isArray(e.groups)) {
      throw new SyntaxError(`${file}: methods[${i}].groups must be an array`);
    }
    return {
      method: e.method,
      ...(e.bits !== undefined ? { bits: e.bits as number[] } : {}),
      ...(e.groups !== undefined ? { groups: parseGroups((e.groups as unknown[]).join(",")) } : {}),
    };
  });
  let calibration: Partial<CalibrationSpec> | undefined;
  if (o.calibration !== undefined) {
    const c = o.calibration as Record<string, unknown> | null;
    if (!c || typeof c !== "object") {
      throw new SyntaxError(`${file}: field "calibration" must be an object`);
    }
    const out: { -readonly [K in keyof CalibrationSpec]?: CalibrationSpec[K] } = {};
    for (const [k, v] of Object.entries(c)) {
      if (k === "source" && typeof v === "string") out.source = v;
      else if ((k === "samples" || k === "seqLen" || k === "seed") && Number.isInteger(v)) {
        out[k] = v as number;
      } else {
        throw new SyntaxError(
          `${file}: calibration.${k} is not valid (source: string; samples, seqLen, seed: integers)`,
        );
      }
    }
    calibration = out;
  }
  const spec: MatrixSpec = {
    id: o.id,
    ...(typeof o.description === "string" ? { description: o.description } : {}),
    models,
    methods,
    bits,
    groups: parseGroups(groups.join(",")),
    tasks: strings("tasks"),
    symmetric: o.symmetric === true,
    ...(typeof o.limit === "number" ? { limit: o.limit } : {}),
    ...(calibration ? { calibration } : {}),
  };
  return spec;
}
