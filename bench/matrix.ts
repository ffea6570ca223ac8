/**
 * The matrix: models × methods × bit configurations × tasks, from a preset and flag overrides.
 *
 * A preset is a JSON file in `bench/presets/` (`{id, description, models, methods, bits, groups,
 * tasks, symmetric, abits?, configs?, act?, router?, limit?, calibration?}`). A `methods` entry is a
 * method spec (`gptq`, `gptq:actOrder=true`, `smoothquant+gptq`) or `{method, bits?, abits?,
 * groups?, configs?, act?, router?, level?}` to give that method its own settings.
 *
 * Bit configurations are `bits × abits × groups` (abits default `[16]`: weight-only), or, when
 * `configs` is given, exactly the listed pairs (`["W8A8", "W4A8", "W4A16g32"]`; a `g` suffix
 * overrides `groups`). `act` sets the activation quantizer of cells with A < 16 (granularity
 * `token`/`tensor`, `static`, `symmetric`, `clip`, `bmm`; default per-token dynamic symmetric).
 * `router` (`W8A8`) quantizes MoE routers after the method (see `methods/router.ts`).
 * `level` names SmoothQuant's efficiency levels: `O1` per-tensor weights and per-token dynamic
 * activations, `O2` per-tensor dynamic, `O3` per-tensor static. Every model × task pair also gets
 * the full-precision cell (`fp`), the reference of KL and agreement metrics.
 *
 * @module
 */

import {
  CALIBRATION_RECIPES,
  type CalibrationRecipe,
  type CalibrationSpec,
} from "../methods/calibration/set.ts";
import { type ActQuantOptions, DEFAULT_ACT_OPTIONS } from "../core/act_quantizer.ts";
import type { QuantConfig, RouterQuant } from "../methods/types.ts";
import { parseRouterQuant } from "../methods/router.ts";
import { fp } from "../methods/fp.ts";

/** A group setting: per output channel, per tensor, or a number of input columns. */
export type GroupSetting = "channel" | "tensor" | number;

/** SmoothQuant's efficiency levels as weight granularity and activation settings. */
export const LEVELS: Readonly<
  Record<string, { group: GroupSetting; act: Partial<ActQuantOptions> }>
> = {
  O1: { group: "tensor", act: { granularity: "token", static: false } },
  O2: { group: "tensor", act: { granularity: "tensor", static: false } },
  O3: { group: "tensor", act: { granularity: "tensor", static: true } },
};

/** A method spec with, optionally, its own bit configurations. */
export interface MethodEntry {
  /** Method spec: `rtn`, `gptq:actOrder=true`. */
  readonly method: string;
  readonly bits?: readonly number[];
  /** Activation bit-widths (16 = unquantized). */
  readonly abits?: readonly number[];
  readonly groups?: readonly GroupSetting[];
  /** Exact configurations (`W8A8`, `W4A16g32`) instead of bits × abits × groups. */
  readonly configs?: readonly string[];
  /** Activation quantizer settings for this entry. */
  readonly act?: Partial<ActQuantOptions>;
  /** MoE router quantization for this entry (`W8A8`, or `fp` for none). */
  readonly router?: string;
  /** `O1`, `O2` or `O3` (see {@linkcode LEVELS}). */
  readonly level?: string;
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
  /** Activation bit-widths (default `[16]`). */
  readonly abits?: readonly number[];
  /** Exact configurations (`W8A8`), replacing bits × abits × groups. */
  readonly configs?: readonly string[];
  /** Activation quantizer settings (cells with A < 16). */
  readonly act?: Partial<ActQuantOptions>;
  /** MoE router quantization of every quantized cell (`W8A8`; default and `fp`: none). */
  readonly router?: string;
  readonly tasks: readonly string[];
  readonly symmetric: boolean;
  /** Keep only the first N evaluation units of each task. */
  readonly limit?: number;
  /** Tokens per perplexity window (default: the model's context, at most 2048). */
  readonly context?: number;
  /**
   * Calibration set of methods that need one, field by field over each method's own settings
   * (`Method.calibration`, e.g. AWQ's `pileval-awq` recipe) over `DEFAULT_CALIBRATION`.
   */
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
  /** Tokens per perplexity window, when set explicitly. */
  readonly context?: number;
}

/** The unquantized configuration. */
export const FP_QUANT: QuantConfig = {
  wBits: 32,
  aBits: 16,
  granularity: "tensor",
  symmetric: false,
};

/**
 * The quantizer configuration of a bit-width and group setting; with `aBits` < 16 the activation
 * settings `act` (over the per-token dynamic symmetric default) are included.
 */
export function quantFor(
  bits: number,
  group: GroupSetting,
  symmetric: boolean,
  aBits = 16,
  act: Partial<ActQuantOptions> = {},
  router?: RouterQuant,
): QuantConfig {
  const a = {
    ...(aBits < 16 ? { act: { ...DEFAULT_ACT_OPTIONS, ...act } } : {}),
    ...(router ? { router } : {}),
  };
  if (group === "channel" || group === "tensor") {
    return { wBits: bits, aBits, granularity: group, symmetric, ...a };
  }
  return { wBits: bits, aBits, granularity: "group", groupSize: group, symmetric, ...a };
}

/** Parses `W4A8`, `W4A16g32`: weight bits, activation bits, and an optional group size. */
export function parseConfig(text: string): { wBits: number; aBits: number; group?: number } {
  const m = /^W(\d+)A(\d+)(?:g(\d+))?$/.exec(text.trim());
  if (!m) {
    throw new SyntaxError(
      `Cannot parse configuration "${text}": expected W<bits>A<bits>[g<group>], e.g. W4A8`,
    );
  }
  return {
    wBits: Number(m[1]),
    aBits: Number(m[2]),
    ...(m[3] !== undefined ? { group: Number(m[3]) } : {}),
  };
}

/** Expands a spec into cells: per model and task the `fp` cell, then each method's configurations. */
export function expandMatrix(spec: MatrixSpec): CellSpec[] {
  const cells: CellSpec[] = [];
  const lim = {
    ...(spec.limit !== undefined ? { limit: spec.limit } : {}),
    ...(spec.context !== undefined ? { context: spec.context } : {}),
  };
  for (const model of spec.models) {
    for (const task of spec.tasks) {
      cells.push({ model, method: fp.id, quant: FP_QUANT, task, ...lim });
      for (const entry of spec.methods) {
        const e: MethodEntry = typeof entry === "string" ? { method: entry } : entry;
        const method = e.method;
        if (method === fp.id) continue;
        for (const quant of entryConfigs(spec, e)) {
          cells.push({ model, method, quant, task, ...lim });
        }
      }
    }
  }
  return cells;
}

function entryConfigs(spec: MatrixSpec, e: MethodEntry): QuantConfig[] {
  let level: (typeof LEVELS)[string] | undefined;
  if (e.level !== undefined) {
    level = LEVELS[e.level];
    if (!level) {
      throw new SyntaxError(
        `Unknown level "${e.level}" of ${e.method}: expected ${Object.keys(LEVELS).join(", ")}`,
      );
    }
  }
  const act = { ...spec.act, ...e.act, ...level?.act };
  const routerText = e.router ?? spec.router;
  const router = routerText === undefined ? undefined : parseRouterQuant(routerText);
  const groups = level ? [level.group] : e.groups ?? spec.groups;
  const out: QuantConfig[] = [];
  const configs = e.configs ?? spec.configs;
  if (configs) {
    for (const text of configs) {
      const c = parseConfig(text);
      for (const group of c.group !== undefined ? [c.group] : groups) {
        out.push(quantFor(c.wBits, group, spec.symmetric, c.aBits, act, router));
      }
    }
    return out;
  }
  for (const bits of e.bits ?? spec.bits) {
    for (const aBits of e.abits ?? spec.abits ?? [16]) {
      for (const group of groups) {
        out.push(quantFor(bits, group, spec.symmetric, aBits, act, router));
      }
    }
  }
  return out;
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
    if (e.abits !== undefined && !(Array.isArray(e.abits) && e.abits.every(Number.isInteger))) {
      throw new SyntaxError(`${file}: methods[${i}].abits must be an array of integers`);
    }
    if (e.level !== undefined && !(typeof e.level === "string" && e.level in LEVELS)) {
      throw new SyntaxError(
        `${file}: methods[${i}].level must be one of ${Object.keys(LEVELS).join(", ")}`,
      );
    }
    return {
      method: e.method,
      ...(e.bits !== undefined ? { bits: e.bits as number[] } : {}),
      ...(e.abits !== undefined ? { abits: e.abits as number[] } : {}),
      ...(e.groups !== undefined ? { groups: parseGroups((e.groups as unknown[]).join(",")) } : {}),
      ...(e.configs !== undefined
        ? { configs: parseConfigs(e.configs, `${file}: methods[${i}].configs`) }
        : {}),
      ...(e.act !== undefined ? { act: parseAct(e.act, `${file}: methods[${i}].act`) } : {}),
      ...(e.router !== undefined
        ? { router: routerField(e.router, `${file}: methods[${i}].router`) }
        : {}),
      ...(e.level !== undefined ? { level: e.level as string } : {}),
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
      } else if (
        k === "recipe" && CALIBRATION_RECIPES.includes(v as CalibrationRecipe)
      ) {
        out.recipe = v as CalibrationRecipe;
      } else {
        throw new SyntaxError(
          `${file}: calibration.${k} is not valid (source: string; samples, seqLen, seed: ` +
            `integers; recipe: ${CALIBRATION_RECIPES.join(" | ")})`,
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
    ...(o.abits !== undefined ? { abits: integers(o.abits, `${file}: field "abits"`) } : {}),
    ...(o.configs !== undefined
      ? { configs: parseConfigs(o.configs, `${file}: field "configs"`) }
      : {}),
    ...(o.act !== undefined ? { act: parseAct(o.act, `${file}: field "act"`) } : {}),
    ...(o.router !== undefined ? { router: routerField(o.router, `${file}: field "router"`) } : {}),
    tasks: strings("tasks"),
    symmetric: o.symmetric === true,
    ...(typeof o.limit === "number" ? { limit: o.limit } : {}),
    ...(typeof o.context === "number" ? { context: o.context } : {}),
    ...(calibration ? { calibration } : {}),
  };
  return spec;
}

function routerField(v: unknown, where: string): string {
  if (typeof v !== "string") throw new SyntaxError(`${where} must be a string like "W8A8" or "fp"`);
  parseRouterQuant(v, where);
  return v;
}

function integers(v: unknown, where: string): number[] {
  if (!Array.isArray(v) || !v.every(Number.isInteger)) {
    throw new SyntaxError(`${where} must be an array of integers`);
  }
  return v;
}

function parseConfigs(v: unknown, where: string): string[] {
  if (!Array.isArray(v) || !v.every((x) => typeof x === "string")) {
    throw new SyntaxError(`${where} must be an array of strings like "W4A8"`);
  }
  for (const c of v) parseConfig(c);
  return v;
}

/** Checks activation settings (`{granularity?, static?, symmetric?, clip?, bmm?}`). */
export function parseAct(v: unknown, where: string): Partial<ActQuantOptions> {
  if (!v || typeof v !== "object" || Array.isArray(v)) {
    throw new SyntaxError(
      `${where} must be an object {granularity?, static?, symmetric?, clip?, bmm?}`,
    );
  }
  const out: { -readonly [K in keyof ActQuantOptions]?: ActQuantOptions[K] } = {};
  for (const [k, x] of Object.entries(v)) {
    if (k === "granularity" && (x === "token" || x === "tensor")) out.granularity = x;
    else if ((k === "static" || k === "symmetric" || k === "bmm") && typeof x === "boolean") {
      out[k] = x;
    } else if (k === "clip" && typeof x === "number" && x > 0 && x <= 1) out.clip = x;
    else {
      throw new SyntaxError(
        `${where}.${k} is not valid (granularity: "token" | "tensor"; static, symmetric, bmm: booleans; clip: a number in (0, 1])`,
      );
    }
  }
  return out;
}
