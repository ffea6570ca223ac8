/**
 * `deno task export`: quantizes one model with one method exactly as a bench cell does
 * (`bench/cell.ts` `quantizeCell`, calibration drawn as the runner draws it) and writes it as a
 * GPTQ checkpoint, a compressed-tensors checkpoint or an ONNX model (`export_model.ts`).
 *
 * Exit codes: 0 written; 2 bad flags (the message names the flag) or an existing `--out`;
 * 1 the model or format refused the export (nothing is written) or another failure.
 *
 * @module
 */

import { parseArgs } from "node:util";
import denoJson from "../deno.json" with { type: "json" };
import {
  calibrationRecord,
  type CalibrationSet,
  drawCalibrationSet,
} from "../methods/calibration/set.ts";
import { DEFAULT_CALIBRATION } from "../methods/calibration/set.ts";
import { cellParams, quantizeCell } from "../bench/cell.ts";
import { type MethodSpec, parseMethodSpec } from "../bench/method_spec.ts";
import { type GroupSetting, quantFor } from "../bench/matrix.ts";
import { gitState } from "../bench/runner.ts";
import { bundledDataDir } from "../core/paths.ts";
import { selectKernels } from "../runners/backend.ts";
import { getMethod, METHODS } from "../methods/mod.ts";
import type { Method } from "../methods/types.ts";
import { hubFile, parseHfRef } from "../models/hub.ts";
import { loadModel } from "../models/load.ts";
import type { LoadedModel } from "../models/types.ts";
import { MODELS } from "../models/registry.ts";
import {
  directoryReader,
  EXPORT_FORMATS,
  type ExportFormat,
  exportModel,
  type ExportResult,
  type ExportSource,
  ExportTargetExistsError,
} from "./export_model.ts";
import { rtnFp16Scales } from "./fp16_rtn.ts";
import { isFullPrecision } from "../methods/types.ts";

const HELP = `lowbit export: quantize a model and write it for deployment

Usage: deno task export --model ID --method SPEC --bits N --group G --format FORMAT --out DIR

  --model ID         registry id, hf:owner/repo[@rev] or a transformers-layout directory
  --method SPEC      method spec as in the bench (${METHODS.items.map((m) => m.id).join(", ")}),
                     e.g. gptq:actOrder=true
  --bits N           weight bits (gptq: 2, 3, 4, 8; compressed-tensors: 4, 8; onnx: 4)
  --group G          channel or a group size in columns (onnx: a power of two ≥ 16)
  --symmetric        symmetric absmax instead of asymmetric min-max
  --format FORMAT    ${EXPORT_FORMATS.join(", ")}
  --out DIR          output directory (must not exist; written atomically)
  --float-dtype D    safetensors float tensors: F16 (default), BF16, F32 or source
  --gptq-format F    auto (default: v1 "gptq" when every zero point is ≥ 1, else "gptq_v2"),
                     gptq or gptq_v2
  --max-shard-size N largest safetensors shard in bytes                     [5000000000]
  --tokens T         onnx: a fixed token count instead of the symbolic T
  --calib SOURCE     calibration corpus for calibrated methods                [tinystories]
  --calib-samples N  calibration windows                                      [128]
  --calib-seqlen N   tokens per calibration window                            [256]
  --data DIR         dataset root (env LOWBIT_DATA)              [data/ in the repository]
  --backend NAME     kernels for the method (as the bench)                    [auto]
  --help

RTN exported to gptq or compressed-tensors quantizes with float16-exact scales (lossless);
other methods' scales are rounded to float16 on storage and the manifest reports by how much.

Exit codes: 0 written, 2 bad flags or an existing --out, 1 the export was refused or failed.`;

/** A command-line mistake: exit 2, the message names the flag. */
export class UsageError extends Error {
  override name = "UsageError";
}

function positiveInt(flag: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!/^\d+$/.test(v.trim()) || !Number.isSafeInteger(n) || n < 1) {
    throw new UsageError(`${flag} must be a positive integer, got "${v}"`);
  }
  return n;
}

function required(flag: string, v: string | undefined): string {
  if (v === undefined || v === "") throw new UsageError(`${flag} is required (see --help)`);
  return v;
}

/** Reads the source model's files by layout name, where it has them. */
function sourceReader(ref: string): (name: string) => Promise<Uint8Array | undefined> {
  const entry = MODELS.has(ref) ? MODELS.get(ref) : undefined;
  if (entry?.format === "llama2c") return () => Promise.resolve(undefined);
  const hf = entry ? `hf:${entry.repo}@${entry.revision}` : ref.startsWith("hf:") ? ref : undefined;
  if (!hf) return directoryReader(ref);
  const { repo, revision } = parseHfRef(hf);
  return async (name) => {
    let path: string;
    try {
      path = await hubFile(repo, name, { revision });
    } catch {
      return undefined; // not in the repository
    }
    return await Deno.readFile(path);
  };
}

const OPTIONS = {
  model: { type: "string" },
  method: { type: "string" },
  bits: { type: "string" },
  group: { type: "string" },
  symmetric: { type: "boolean", default: false },
  format: { type: "string" },
  out: { type: "string" },
  "float-dtype": { type: "string" },
  "gptq-format": { type: "string" },
  "max-shard-size": { type: "string" },
  tokens: { type: "string" },
  calib: { type: "string" },
  "calib-samples": { type: "string" },
  "calib-seqlen": { type: "string" },
  data: { type: "string" },
  backend: { type: "string", default: "auto" },
  help: { type: "boolean", default: false },
} as const;

/** Parses the command line strictly (no positionals). */
function parseFlags(args: string[]) {
  const { values } = parseArgs({
    args,
    options: OPTIONS,
    strict: true,
    allowPositionals: false,
  });
  return values;
}

/** The parsed flags. */
type Flags = ReturnType<typeof parseFlags>;

/** The flags' checked values. */
interface ExportFlags {
  modelRef: string;
  methodText: string;
  format: ExportFormat;
  out: string;
  bits: number;
  group: GroupSetting;
  floatDtype: string | undefined;
  gptqFormat: string | undefined;
  maxShard: number | undefined;
  tokens: number | undefined;
  samples: number | undefined;
  seqLen: number | undefined;
}

/** `--group`: channel or a positive column count (no format stores a per-tensor scale). */
function groupFlag(text: string): GroupSetting {
  if (text === "channel") return "channel";
  if (text === "tensor") {
    throw new UsageError("--group tensor: no export format stores one scale per tensor");
  }
  return positiveInt("--group", text)!;
}

/** Checks the required flags and each flag's value; a `UsageError` names the first bad one. */
function checkFlags(values: Flags): ExportFlags {
  const modelRef = required("--model", values.model);
  const methodText = required("--method", values.method);
  const format = required("--format", values.format) as ExportFormat;
  if (!EXPORT_FORMATS.includes(format)) {
    throw new UsageError(`--format must be one of ${EXPORT_FORMATS.join(", ")}, got "${format}"`);
  }
  const out = required("--out", values.out);
  const bits = positiveInt("--bits", required("--bits", values.bits))!;
  if (bits < 2 || bits > 8) throw new UsageError(`--bits ${bits} is outside 2–8`);
  const group = groupFlag(required("--group", values.group));
  const floatDtype = values["float-dtype"];
  if (floatDtype !== undefined && !["F16", "BF16", "F32", "source"].includes(floatDtype)) {
    throw new UsageError(`--float-dtype must be F16, BF16, F32 or source, got "${floatDtype}"`);
  }
  const gptqFormat = values["gptq-format"];
  if (gptqFormat !== undefined && !["auto", "gptq", "gptq_v2"].includes(gptqFormat)) {
    throw new UsageError(`--gptq-format must be auto, gptq or gptq_v2, got "${gptqFormat}"`);
  }
  const maxShard = positiveInt("--max-shard-size", values["max-shard-size"]);
  const tokens = positiveInt("--tokens", values.tokens);
  const samples = positiveInt("--calib-samples", values["calib-samples"]);
  const seqLen = positiveInt("--calib-seqlen", values["calib-seqlen"]);
  return {
    modelRef,
    methodText,
    format,
    out,
    bits,
    group,
    floatDtype,
    gptqFormat,
    maxShard,
    tokens,
    samples,
    seqLen,
  };
}

/** `--method`'s spec and method, which must be weight-only and support `--bits`. */
function methodFlag(text: string, bits: number): { spec: MethodSpec; method: Method } {
  let spec;
  try {
    spec = parseMethodSpec(text);
  } catch (e) {
    throw new UsageError(`--method: ${(e as Error).message}`);
  }
  let method: Method;
  try {
    method = getMethod(spec.id);
  } catch (e) {
    throw new UsageError(`--method: ${(e as Error).message}`);
  }
  if (method.scope === "weight-activation") {
    throw new UsageError(
      `--method ${spec.id} quantizes activations; the export formats are weight-only`,
    );
  }
  if (!isFullPrecision(method) && !method.wBits.includes(bits)) {
    throw new UsageError(`--bits ${bits}: ${method.id} supports ${method.wBits.join(", ")}`);
  }
  return { spec, method };
}

/** Refuses an existing `--out` (a `UsageError`) before any compute. */
async function refuseExistingOut(out: string): Promise<void> {
  try {
    await Deno.lstat(out);
    throw new UsageError(`--out ${out} exists; exports never overwrite`);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
}

/** The method's parameters for the model, as a bench cell resolves them (`--method` errors). */
function methodParams(
  method: Method,
  modelRef: string,
  given: MethodSpec["params"],
): ReturnType<typeof cellParams> {
  try {
    return cellParams(method, modelRef, given);
  } catch (e) {
    throw new UsageError(`--method: ${(e as Error).message}`);
  }
}

/** The calibration set, drawn as the runner draws it, for calibrated methods and MoE models. */
async function exportCalibration(
  method: Method,
  model: LoadedModel,
  values: Flags,
  flags: ExportFlags,
): Promise<CalibrationSet | undefined> {
  const calibrated = method.needsCalibration || (!isFullPrecision(method) && model.config.moe);
  if (!calibrated) return undefined;
  const { samples, seqLen } = flags;
  return await drawCalibrationSet(
    {
      ...DEFAULT_CALIBRATION,
      ...(values.calib !== undefined ? { source: values.calib } : {}),
      ...(samples !== undefined ? { samples } : {}),
      ...(seqLen !== undefined ? { seqLen } : {}),
    },
    model.tokenizer,
    model.config.maxSeqLen,
    values.data ?? (Deno.env.get("LOWBIT_DATA") || bundledDataDir()),
  );
}

/** Prints what was written and whether the export is lossless (else its deviations). */
function printResult(format: ExportFormat, result: ExportResult): void {
  const m = result.manifest;
  const fmt = "checkpointFormat" in m.export && m.export.checkpointFormat
    ? ` (checkpoint_format ${m.export.checkpointFormat})`
    : "";
  console.log(`wrote ${format}${fmt} to ${result.dir}`);
  for (const f of m.files) console.log(`  ${f.path}  ${f.bytes} bytes`);
  console.log(m.lossless ? "lossless: the export computes our quantized model" : "deviations:");
  for (const d of m.deviations) console.log(`  - ${d}`);
}

/** Runs the command; returns the exit code. */
export async function main(args: string[]): Promise<number> {
  const values = parseFlags(args);
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  const flags = checkFlags(values);
  const { modelRef, format, out, floatDtype, gptqFormat, maxShard, tokens } = flags;
  const { spec, method } = methodFlag(flags.methodText, flags.bits);
  await refuseExistingOut(out);
  const q = quantFor(flags.bits, flags.group, values.symmetric);
  const params = methodParams(method, modelRef, spec.params);

  const model = await loadModel(modelRef);
  const { kernels } = await selectKernels(values.backend);
  const calibration = await exportCalibration(method, model, values, flags);
  // RTN's scales are chosen by a pluggable chooser: for formats that store float16 scales, pick
  // them float16-exact, so the checkpoint computes exactly the model we quantized.
  const fp16Scales = method.id === "rtn" && format !== "onnx";
  const run: Method = fp16Scales ? rtnFp16Scales : method;
  const quantized = await quantizeCell(model, run, params, q, {
    kernels,
    ...(calibration ? { calibration } : {}),
    onProgress: (done, total) => console.error(`quantize: ${done}/${total}`),
  });
  const source: ExportSource = { model, readFile: sourceReader(modelRef) };
  const result = await exportModel(source, quantized, out, {
    format,
    ...(floatDtype ? { floatDtype: floatDtype as "F16" } : {}),
    ...(gptqFormat ? { gptqFormat: gptqFormat as "auto" } : {}),
    ...(maxShard ? { maxShardBytes: maxShard } : {}),
    ...(tokens ? { onnx: { tokens } } : {}),
    provenance: {
      method: { id: method.id, version: method.version, params },
      quant: q,
      ...(calibration ? { calibration: calibrationRecord(calibration) } : {}),
      lowbit: { version: denoJson.version, ...await gitState() },
      extra: { command: ["deno", "task", "export", ...args], fp16ExactScales: fp16Scales },
    },
  });
  printResult(format, result);
  return 0;
}

if (import.meta.main) {
  try {
    Deno.exit(await main(Deno.args));
  } catch (e) {
    const err = e as Error & { code?: string };
    console.error(`error: ${err.message}`);
    const usage = e instanceof UsageError || e instanceof ExportTargetExistsError ||
      err.code?.startsWith("ERR_PARSE_ARGS");
    if (usage) console.error("Run with --help for the flags.");
    Deno.exit(usage ? 2 : 1);
  }
}
