/**
 * Published quantized checkpoints in transformers layout, read as our model: `config.json`'s
 * `quantization_config` names the format, and each quantized linear `P` (stored as `P.qweight`
 * … or `P.weight_packed` … instead of `P.weight`) reads as a `PackedMatrix` whose values are
 * what the format's loader computes, `scale · (q − z)` with the stored (float16) scales, rounded
 * to the checkpoint's `torch_dtype` when that is float16 / bfloat16 (the dtype transformers'
 * kernels dequantize in; the float32 product of a float16 scale and a code difference below 256
 * is exact, so the rounding equals a float16 multiply).
 *
 * | `quant_method` | tensors | codec |
 * |---|---|---|
 * | `gptq` (`checkpoint_format` `gptq` = v1 or `gptq_v2`; bits 2, 3, 4, 8; `desc_act` `g_idx`) | `qweight`, `qzeros`, `scales`, `g_idx` | `gptq.ts` |
 * | `awq` (`version` `gemm`, 4 bits, zero points) | `qweight`, `qzeros`, `scales` | `awq.ts` |
 * | `compressed-tensors` (`format` `pack-quantized`, 4/8 bits, group or channel) | `weight_packed`, `weight_scale`, `weight_zero_point`, `weight_shape`, `weight_g_idx` | `compressed_tensors.ts` |
 *
 * The loader (`models/hf_model.ts`) wraps its tensor source with
 * {@linkcode quantizedTensorSource}: the weights builder then asks for `P.weight` as for any
 * checkpoint, and gets the packed matrix (rows sliced for Phi-3's fused tensors). Modules left
 * unquantized (`lm_head`, AWQ `modules_to_not_convert`, compressed-tensors `ignore`) keep their
 * `P.weight` and read as usual.
 *
 * @module
 */

import { describe, isRecord } from "../../core/describe.ts";
import { FormatError, UnsupportedConfigError } from "../../core/errors.ts";
import type { PackedWeight } from "../../core/quantizer.ts";
import type { StorageDtype } from "../../core/storage_dtype.ts";
import type { TensorSource } from "../hf_weights.ts";
import { PackedMatrix } from "../lazy_matrix.ts";
import type { TensorStore } from "../tensor_store.ts";
import { importAwqGemm } from "./awq.ts";
import { importCompressedTensors } from "./compressed_tensors.ts";
import { GPTQ_BITS, type GptqCheckpointFormat, importGptq } from "./gptq.ts";
import { slicePackedRows } from "./packed_rows.ts";
import { readIntegers, type TensorLike } from "./tensor.ts";

/** `quant_method` values whose checkpoints load. */
export const QUANTIZED_CHECKPOINT_METHODS: readonly string[] = [
  "gptq",
  "awq",
  "compressed-tensors",
];

/** The weights arguments of one compressed-tensors config group. */
export interface CompressedTensorsGroup {
  readonly targets: readonly string[];
  readonly bits: number;
  /** Null for `strategy: "channel"`. */
  readonly groupSize: number | null;
  readonly symmetric: boolean;
}

/** A parsed `quantization_config`. */
export type QuantizationScheme =
  | {
    readonly method: "gptq";
    readonly bits: number;
    readonly groupSize: number;
    readonly checkpointFormat: GptqCheckpointFormat;
  }
  | { readonly method: "awq"; readonly groupSize: number }
  | { readonly method: "compressed-tensors"; readonly groups: readonly CompressedTensorsGroup[] };

/**
 * Parses `quantization_config`.
 *
 * @throws {UnsupportedConfigError} Naming the `quant_method`, `checkpoint_format`, `version`,
 *   `format`, strategy or field value that is not read (e.g. `bitsandbytes`, AWQ `gemv`,
 *   compressed-tensors `float-quantized` or activation quantization).
 * @throws {FormatError} When a field has the wrong type.
 */
export function parseQuantizationConfig(qc: unknown, file: string): QuantizationScheme {
  if (!isRecord(qc)) {
    throw new FormatError(file, `quantization_config must be an object, got ${describe(qc)}`);
  }
  const method = qc.quant_method;
  const unsupported = (what: string) =>
    new UnsupportedConfigError(
      `${file}: a quantized checkpoint (quantization_config.quant_method ${
        describe(method)
      }) with ${what} is not supported`,
    );
  const int = (v: unknown, field: string): number => {
    if (typeof v !== "number" || !Number.isInteger(v)) {
      throw new FormatError(
        file,
        `quantization_config.${field} must be an integer, got ${describe(v)}`,
      );
    }
    return v;
  };
  if (method === "gptq") {
    const bits = int(qc.bits, "bits");
    if (!GPTQ_BITS.includes(bits)) throw unsupported(`bits ${bits} (GPTQ stores 2, 3, 4 or 8)`);
    const groupSize = int(qc.group_size ?? -1, "group_size");
    const fmt = qc.checkpoint_format ?? "gptq";
    if (fmt !== "gptq" && fmt !== "gptq_v2") {
      throw unsupported(`checkpoint_format ${describe(fmt)} (read: "gptq", "gptq_v2")`);
    }
    return { method, bits, groupSize, checkpointFormat: fmt };
  }
  if (method === "awq") {
    const bits = int(qc.bits ?? qc.w_bit ?? 4, "bits");
    if (bits !== 4) throw unsupported(`bits ${bits} (AutoAWQ GEMM stores 4)`);
    const version = String(qc.version ?? "gemm").toLowerCase();
    if (version !== "gemm") throw unsupported(`version ${describe(qc.version)} (read: "gemm")`);
    if (qc.zero_point === false) throw unsupported("zero_point false");
    return { method, groupSize: int(qc.group_size ?? qc.q_group_size ?? -1, "group_size") };
  }
  if (method === "compressed-tensors") {
    const format = qc.format ?? "pack-quantized";
    if (format !== "pack-quantized") {
      throw unsupported(`format ${describe(format)} (read: "pack-quantized")`);
    }
    if (!isRecord(qc.config_groups)) {
      throw new FormatError(file, "quantization_config.config_groups must be an object");
    }
    const groups: CompressedTensorsGroup[] = [];
    for (const [key, g] of Object.entries(qc.config_groups)) {
      if (!isRecord(g) || !isRecord(g.weights)) {
        throw new FormatError(file, `quantization_config.config_groups.${key}.weights is missing`);
      }
      for (const act of ["input_activations", "output_activations"] as const) {
        if (g[act] !== undefined && g[act] !== null) {
          throw unsupported(`${key}.${act} (activation quantization)`);
        }
      }
      if (g.format !== undefined && g.format !== null && g.format !== "pack-quantized") {
        throw unsupported(`${key}.format ${describe(g.format)}`);
      }
      const w = g.weights;
      if ((w.type ?? "int") !== "int") throw unsupported(`${key}.weights.type ${describe(w.type)}`);
      const strategy = w.strategy ?? "group";
      if (strategy !== "group" && strategy !== "channel") {
        throw unsupported(`${key}.weights.strategy ${describe(strategy)} (read: group, channel)`);
      }
      if (w.dynamic === true) throw unsupported(`${key}.weights.dynamic true`);
      const targets = Array.isArray(g.targets) ? g.targets.map(String) : ["Linear"];
      groups.push({
        targets,
        bits: int(w.num_bits, `config_groups.${key}.weights.num_bits`),
        groupSize: strategy === "channel"
          ? null
          : int(w.group_size, `config_groups.${key}.weights.group_size`),
        symmetric: w.symmetric !== false,
      });
    }
    if (groups.length === 0) {
      throw new FormatError(file, "quantization_config.config_groups is empty");
    }
    return { method, groups };
  }
  throw new UnsupportedConfigError(
    `${file}: a quantized checkpoint (quantization_config.quant_method ${describe(method)}) is ` +
      `not supported; quantized checkpoints load for quant_method ${
        QUANTIZED_CHECKPOINT_METHODS.map((m) => `"${m}"`).join(", ")
      }`,
  );
}

/** The storage dtype of `torch_dtype` (or transformers v5's `dtype`): F16, BF16, else F32. */
export function configStorageDtype(configJson: unknown): StorageDtype {
  const c = isRecord(configJson) ? configJson : {};
  const d = c.torch_dtype ?? c.dtype;
  return d === "float16" ? "F16" : d === "bfloat16" ? "BF16" : "F32";
}

/** Whether a compressed-tensors target names a module (`Linear`, `re:…`, or a name). */
function targetMatches(target: string, module: string): boolean {
  if (target === "Linear") return true;
  if (target.startsWith("re:")) return new RegExp(target.slice(3)).test(module);
  return module === target || module.endsWith(`.${target}`);
}

const SUFFIXES = {
  gptq: ["qweight", "qzeros", "scales", "g_idx"],
  awq: ["qweight", "qzeros", "scales"],
  "compressed-tensors": [
    "weight_packed",
    "weight_scale",
    "weight_zero_point",
    "weight_shape",
    "weight_g_idx",
  ],
} as const;

/**
 * A tensor source over a quantized checkpoint's store: every quantized module `P` appears as a
 * `P.weight` of shape `[out, in]` that reads as a `PackedMatrix` (dequantized values rounded to
 * `dtype`); its packed tensors are hidden. Other names pass through to `base`.
 *
 * @throws {FormatError} Naming the tensor when a quantized module's tensors are missing or
 *   malformed (on first access), or a compressed-tensors module no config group targets.
 */
export function quantizedTensorSource(
  scheme: QuantizationScheme,
  base: TensorSource,
  store: TensorStore,
  file: string,
  dtype: StorageDtype,
): TensorSource {
  const suffixes: readonly string[] = SUFFIXES[scheme.method];
  const marker = scheme.method === "compressed-tensors" ? "weight_packed" : "qweight";
  const modules = new Set<string>();
  for (const name of store.tensors.keys()) {
    if (name.endsWith(`.${marker}`)) modules.add(name.slice(0, -marker.length - 1));
  }
  const hidden = new Set<string>();
  for (const m of modules) for (const s of suffixes) hidden.add(`${m}.${s}`);
  const raw = (name: string): TensorLike | undefined => {
    const info = store.tensors.get(name);
    return info && { dtype: info.dtype, shape: info.shape, data: store.bytes(name) };
  };
  const tensorsOf = (m: string): Record<string, TensorLike | undefined> =>
    Object.fromEntries(suffixes.map((s) => [s, raw(`${m}.${s}`)]));
  const fail = (e: unknown): never => {
    if (e instanceof RangeError) throw new FormatError(file, e.message, { cause: e });
    throw e;
  };
  const ctGroup = (m: string): CompressedTensorsGroup => {
    if (scheme.method !== "compressed-tensors") throw new Error("unreachable");
    const g = scheme.groups.find((g) => g.targets.some((t) => targetMatches(t, m)));
    if (!g) {
      throw new FormatError(file, `module "${m}" is quantized but no config group targets it`);
    }
    return g;
  };
  const cache = new Map<string, PackedWeight>();
  const load = (m: string): PackedWeight => {
    const hit = cache.get(m);
    if (hit) return hit;
    let p: PackedWeight;
    try {
      if (scheme.method === "gptq") {
        p = importGptq(tensorsOf(m), { ...scheme, name: m }).packed;
      } else if (scheme.method === "awq") {
        p = importAwqGemm(tensorsOf(m), { groupSize: scheme.groupSize, name: m }).packed;
      } else {
        const g = ctGroup(m);
        p = importCompressedTensors(tensorsOf(m), {
          bits: g.bits,
          groupSize: g.groupSize,
          symmetric: g.symmetric,
          name: m,
        });
      }
    } catch (e) {
      return fail(e);
    }
    cache.set(m, p);
    return p;
  };
  const shapeOf = (m: string): number[] => {
    const qw = store.tensors.get(`${m}.${marker}`)!;
    if (scheme.method === "gptq") {
      return [qw.shape[1] ?? 0, ((qw.shape[0] ?? 0) * 32) / scheme.bits];
    }
    if (scheme.method === "awq") return [(qw.shape[1] ?? 0) * 8, qw.shape[0] ?? 0];
    const st = raw(`${m}.weight_shape`);
    if (!st) throw new FormatError(file, `tensor "${m}.weight_shape" is missing`);
    return readIntegers(`${m}.weight_shape`, st);
  };
  const moduleOf = (name: string) => {
    if (!name.endsWith(".weight")) return undefined;
    const m = name.slice(0, -".weight".length);
    return modules.has(m) ? m : undefined;
  };
  return {
    *names() {
      for (const n of base.names()) if (!hidden.has(n)) yield n;
      for (const m of modules) yield `${m}.weight`;
    },
    shape(name) {
      const m = moduleOf(name);
      return m === undefined ? base.shape(name) : shapeOf(m);
    },
    matrix(name, rows, cols, rowStart) {
      const m = moduleOf(name);
      if (m === undefined) return base.matrix(name, rows, cols, rowStart);
      const p = load(m);
      if (p.cols !== cols) {
        throw new FormatError(file, `module "${m}" has ${p.cols} inputs, expected ${cols}`);
      }
      return new PackedMatrix(slicePackedRows(p, rowStart, rows), dtype);
    },
    vector: (name) => base.vector(name),
  };
}
