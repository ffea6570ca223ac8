/**
 * A quantized model written as a deployable directory, atomically: the format's files are built
 * in memory (so a refused model writes nothing), written into a temporary sibling directory and
 * renamed onto the target, with a `lowbit_export.json` manifest naming the source files and
 * their hashes, the method, parameters and quantizer, the format and how the export relates to
 * our model (scale rounding, float dtype, runtime caveats), and the lowbit commit.
 *
 * | format | files |
 * |---|---|
 * | `gptq` | `config.json` (+ `quantization_config`), `quantize_config.json`, `model.safetensors` or shards + index, tokenizer files |
 * | `compressed-tensors` | `config.json` (+ `quantization_config`), safetensors, tokenizer files |
 * | `onnx` | `model.onnx` (`onnx_decoder.ts`), and the source's `config.json` and tokenizer files when it has them |
 *
 * @module
 */

import { sha256Hex } from "../core/hash.ts";
import { exists } from "../core/paths.ts";
import type { CalibrationRecord } from "../methods/calibration/set.ts";
import { type QuantConfig, type QuantizedModel, quantLabel } from "../methods/types.ts";
import type { LoadedModel, SourceFile } from "../models/types.ts";
import {
  type CheckpointFormat,
  type CheckpointReport,
  type QuantizedCheckpoint,
  quantizedCheckpoint,
  type QuantizedCheckpointOptions,
} from "./hf_checkpoint.ts";
import { onnxDecoder, type OnnxDecoderOptions, type OnnxDecoderReport } from "./onnx_decoder.ts";
import { writeShardedSafetensors } from "../models/formats/safetensors_write.ts";

/** The formats {@linkcode exportModel} writes. */
export const EXPORT_FORMATS = ["gptq", "compressed-tensors", "onnx"] as const;
/** One of {@linkcode EXPORT_FORMATS}. */
export type ExportFormat = typeof EXPORT_FORMATS[number];

/** Version of the `lowbit_export.json` layout. */
export const EXPORT_MANIFEST_VERSION = 1;

/** The manifest's file name. */
export const MANIFEST_FILE = "lowbit_export.json";

/** Files besides config and weights that make a transformers directory usable, copied as found. */
export const TOKENIZER_FILES: readonly string[] = [
  "tokenizer.json",
  "tokenizer_config.json",
  "special_tokens_map.json",
  "generation_config.json",
  "tokenizer.model",
  "vocab.json",
  "merges.txt",
  "added_tokens.json",
];

/** The source model and a reader of its files by layout name (`config.json`, …). */
export interface ExportSource {
  readonly model: LoadedModel;
  /** A file of the source's layout, or undefined when it has none (e.g. a llama2.c model). */
  readFile(name: string): Promise<Uint8Array | undefined>;
}

/** A reader of a directory's files by name (undefined for a missing file). */
export function directoryReader(dir: string): (name: string) => Promise<Uint8Array | undefined> {
  const root = dir.replace(/\/+$/, "");
  return async (name) => {
    try {
      return await Deno.readFile(`${root}/${name}`);
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) return undefined;
      throw e;
    }
  };
}

/** How the model was made, for the manifest. */
export interface ExportProvenance {
  readonly method: {
    readonly id: string;
    readonly version: number;
    readonly params: Readonly<Record<string, unknown>>;
  };
  readonly quant: QuantConfig;
  readonly calibration?: CalibrationRecord;
  readonly lowbit: {
    readonly version: string;
    readonly commit: string | null;
    readonly dirty: boolean | null;
  };
  /** Anything else worth keeping (e.g. the command line). */
  readonly extra?: Readonly<Record<string, unknown>>;
}

/** Options of {@linkcode exportModel}. */
export interface ExportOptions {
  readonly format: ExportFormat;
  /** Float tensors' dtype in safetensors formats (see `hf_checkpoint.ts`). */
  readonly floatDtype?: QuantizedCheckpointOptions["floatDtype"];
  readonly gptqFormat?: QuantizedCheckpointOptions["gptqFormat"];
  /** Largest shard (default 5 GB, as transformers). */
  readonly maxShardBytes?: number;
  readonly onnx?: OnnxDecoderOptions;
  readonly provenance: ExportProvenance;
}

/** The manifest written as `lowbit_export.json`. */
export interface ExportManifest {
  readonly lowbit_export: number;
  readonly format: ExportFormat;
  readonly source: {
    readonly id: string;
    readonly format: string;
    readonly files: readonly SourceFile[];
  };
  readonly method: ExportProvenance["method"];
  readonly quant: QuantConfig & { readonly label: string };
  readonly calibration?: CalibrationRecord;
  readonly lowbit: ExportProvenance["lowbit"];
  /** The format's own settings and how the export relates to our model. */
  readonly export: CheckpointReport | (OnnxDecoderReport & { readonly format: "onnx" });
  /** True when a loader of the export computes exactly our quantized model's weights. */
  readonly lossless: boolean;
  /** Every way the exported model differs from ours, in words. */
  readonly deviations: readonly string[];
  /** The method's notes. */
  readonly notes: readonly string[];
  /** Files written (the manifest excluded). */
  readonly files: readonly SourceFile[];
  readonly extra?: Readonly<Record<string, unknown>>;
}

/** What {@linkcode exportModel} wrote. */
export interface ExportResult {
  readonly dir: string;
  readonly manifest: ExportManifest;
}

function parentAndBase(path: string): [string, string] {
  const p = path.replace(/\/+$/, "");
  const i = p.lastIndexOf("/");
  return i < 0 ? [".", p] : [p.slice(0, i) || "/", p.slice(i + 1)];
}

/** Thrown when the output directory already exists (nothing is overwritten). */
export class ExportTargetExistsError extends Error {
  override name = "ExportTargetExistsError";
}

/** The safetensors entries `writeShardedSafetensors` writes. */
type SafetensorsEntries = Parameters<typeof writeShardedSafetensors>[1];

/** An export built in memory: files by name, tensors to shard, the report and deviations. */
interface BuiltExport {
  readonly written: Map<string, Uint8Array>;
  readonly safetensors?: SafetensorsEntries;
  readonly report: ExportManifest["export"];
  readonly deviations: string[];
}

/** The `onnx` export: `model.onnx` and the source's `config.json` when it has one. */
function buildOnnx(
  quantized: QuantizedModel,
  configBytes: Uint8Array | undefined,
  onnx: OnnxDecoderOptions | undefined,
): BuiltExport {
  const written = new Map<string, Uint8Array>();
  const r = onnxDecoder(quantized.config, quantized.weights, quantized.packed, onnx);
  written.set("model.onnx", r.model);
  if (configBytes) written.set("config.json", configBytes);
  return { written, report: { format: "onnx", ...r.report }, deviations: [...r.report.notes] };
}

/** The source's `config.json` with the checkpoint's `torch_dtype` and `quantization_config`. */
function checkpointConfig(configBytes: Uint8Array, ck: QuantizedCheckpoint): Uint8Array {
  const config = JSON.parse(new TextDecoder().decode(configBytes)) as Record<string, unknown>;
  delete config.quantization_config;
  config.torch_dtype = ck.torchDtype;
  if ("dtype" in config) config.dtype = ck.torchDtype;
  config.quantization_config = ck.quantizationConfig;
  return json(config);
}

/** Every way a loader of checkpoint `ck` computes differently from `quantized`, in words. */
function checkpointDeviations(
  source: ExportSource,
  quantized: QuantizedModel,
  ck: QuantizedCheckpoint,
): string[] {
  const deviations: string[] = [];
  const s = ck.report.scales;
  if (s.changed > 0) {
    deviations.push(
      `${s.changed} of ${s.count} scales change when stored as ${s.dtype} (largest relative ` +
        `change ${s.maxRelativeChange.toExponential(3)}): loaders compute with the rounded ` +
        "scales; quantize with float16-exact scales (fp16ScaleChooser) for a lossless export",
    );
  }
  const src = source.model.weights.embed.dtype ?? "F32";
  // Widening to float32 keeps every value; any other change of dtype rounds.
  if (ck.report.floatDtype !== src && ck.report.floatDtype !== "F32") {
    deviations.push(
      `float tensors (embeddings, norms, biases, classifier) stored as ${ck.report.floatDtype}, ` +
        `the source holds ${src}`,
    );
  }
  if (ck.report.keptFloat32.length > 0) {
    deviations.push(
      `${ck.report.keptFloat32.length} tensor(s) exceed float16's range and stay float32: ` +
        ck.report.keptFloat32.join(", "),
    );
  }
  const ours = quantized.weights.layers[0]?.q.dtype ?? "F32";
  if (ours !== ck.report.floatDtype) {
    deviations.push(
      `loaders dequantize the linears in the torch_dtype ${ck.torchDtype} ` +
        `(${ck.report.floatDtype}); our model holds them in ${ours}`,
    );
  }
  return deviations;
}

/** A safetensors (`gptq`, `compressed-tensors`) export; needs the source's `config.json`. */
function buildCheckpoint(
  source: ExportSource,
  quantized: QuantizedModel,
  configBytes: Uint8Array | undefined,
  format: CheckpointFormat,
  options: ExportOptions,
): BuiltExport {
  if (!configBytes) {
    throw new RangeError(
      `the ${format} format is a transformers directory and needs the source's ` +
        `config.json; ${source.model.id} is a ${source.model.format} model without one ` +
        "(export its transformers-layout copy)",
    );
  }
  const ck = quantizedCheckpoint(quantized.config, quantized.weights, quantized.packed, {
    format,
    ...(options.floatDtype ? { floatDtype: options.floatDtype } : {}),
    ...(options.gptqFormat ? { gptqFormat: options.gptqFormat } : {}),
    ...(typeof options.provenance.method.params.percdamp === "number"
      ? { dampPercent: options.provenance.method.params.percdamp }
      : {}),
  });
  const written = new Map<string, Uint8Array>();
  written.set("config.json", checkpointConfig(configBytes, ck));
  if (ck.quantizeConfig) written.set("quantize_config.json", json(ck.quantizeConfig));
  const deviations = checkpointDeviations(source, quantized, ck);
  return { written, safetensors: ck.tensors, report: ck.report, deviations };
}

/** Writes the built files and safetensors into `dir`, returning their records in order. */
async function writeBuiltFiles(
  dir: string,
  built: BuiltExport,
  maxShardBytes: number | undefined,
): Promise<SourceFile[]> {
  const files: SourceFile[] = [];
  const record = async (name: string, bytes: Uint8Array) =>
    files.push({ path: name, bytes: bytes.length, sha256: await sha256Hex(bytes) });
  for (const [name, bytes] of built.written) {
    await Deno.writeFile(`${dir}/${name}`, bytes);
    await record(name, bytes);
  }
  if (built.safetensors) {
    const r = await writeShardedSafetensors(dir, built.safetensors, {
      ...(maxShardBytes ? { maxShardBytes } : {}),
    });
    for (const name of r.files) await record(name, await Deno.readFile(`${dir}/${name}`));
  }
  return files;
}

/** The `lowbit_export.json` manifest of an export that wrote `files`. */
function exportManifest(
  source: ExportSource,
  quantized: QuantizedModel,
  options: ExportOptions,
  built: BuiltExport,
  files: readonly SourceFile[],
): ExportManifest {
  const p = options.provenance;
  return {
    lowbit_export: EXPORT_MANIFEST_VERSION,
    format: options.format,
    source: { id: source.model.id, format: source.model.format, files: source.model.files },
    method: p.method,
    quant: { ...p.quant, label: quantLabel(p.quant) },
    ...(p.calibration ? { calibration: p.calibration } : {}),
    lowbit: p.lowbit,
    export: built.report,
    lossless: built.deviations.length === 0,
    deviations: built.deviations,
    notes: quantized.notes,
    files,
    ...(p.extra ? { extra: p.extra } : {}),
  };
}

/**
 * Writes `quantized` (the output of `quantizeCell` for `source.model`) to `outDir` in `format`.
 *
 * @throws {ExportTargetExistsError} When `outDir` exists.
 * @throws {RangeError | UnsupportedConfigError} From the format (see `hf_checkpoint.ts`,
 *   `onnx_decoder.ts`), or when a safetensors format is asked of a source without
 *   `config.json`; nothing is written then.
 */
export async function exportModel(
  source: ExportSource,
  quantized: QuantizedModel,
  outDir: string,
  options: ExportOptions,
): Promise<ExportResult> {
  if (await exists(outDir)) {
    throw new ExportTargetExistsError(
      `${outDir} exists; exports never overwrite (choose a new --out)`,
    );
  }
  const configBytes = await source.readFile("config.json");
  const built = options.format === "onnx"
    ? buildOnnx(quantized, configBytes, options.onnx)
    : buildCheckpoint(source, quantized, configBytes, options.format, options);
  for (const name of TOKENIZER_FILES) {
    const bytes = await source.readFile(name);
    if (bytes) built.written.set(name, bytes);
  }

  const [parent, base] = parentAndBase(outDir);
  await Deno.mkdir(parent, { recursive: true });
  const tmp = `${parent}/.${base}.lowbit-tmp-${crypto.randomUUID().slice(0, 8)}`;
  await Deno.mkdir(tmp);
  try {
    const files = await writeBuiltFiles(tmp, built, options.maxShardBytes);
    const manifest = exportManifest(source, quantized, options, built, files);
    await Deno.writeFile(`${tmp}/${MANIFEST_FILE}`, json(manifest));
    if (await exists(outDir)) {
      throw new ExportTargetExistsError(`${outDir} appeared while exporting; not overwritten`);
    }
    await Deno.rename(tmp, outDir);
    return { dir: outDir, manifest };
  } catch (e) {
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
    throw e;
  }
}

function json(value: unknown): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(value, null, 2) + "\n");
}
