/**
 * The matrix runner: loads each model once, quantizes each (model, method, bits) once, evaluates
 * every task, and stores one row per cell.
 *
 * - Cells are content-addressed: the id hashes the model files, method id/version/parameters,
 *   quantizer configuration, task id/version, dataset hash, limit and kernel backend. A rerun
 *   skips cells whose row exists (unless `force`); failed cells are retried, and so are cells
 *   whose file fails its sha256 (edited or corrupted) or has none (written before checksums):
 *   their new row carries a note saying so.
 * - One writer per results directory: the run holds `outDir/.lock` (`results/lock.ts`) from
 *   after planning to the end; a second run on the directory fails with `ResultsLockedError`
 *   (or waits, `lock: { wait: true }`), a stale lock (its run is gone) is taken over.
 * - One failing cell never stops the matrix: an `UnsupportedConfigError` gives an `unsupported`
 *   row, any other error a `failed` row with the message.
 * - `shard: {index, count}` runs one of `count` parts of the cells, balanced by expected cost
 *   (`shard.ts`), for CI fan-out.
 * - Bad ids, unreadable models and missing datasets fail before any compute.
 *
 * @module
 */

import denoJson from "../deno.json" with { type: "json" };
import { UnsupportedConfigError } from "../core/errors.ts";
import { DEFAULT_ACT_OPTIONS } from "../core/act_quantizer.ts";
import { canonicalJson, sha256Hex } from "../core/hash.ts";
import { refKernels } from "../kernels/ref/mod.ts";
import type { Kernels } from "../kernels/types.ts";
import { getMethod } from "../methods/mod.ts";
import { ZERO_FRACTION_WINDOWS } from "../methods/activations.ts";
import { routingConsistency } from "../tasks/routing.ts";
import { type Method, type QuantizedModel, quantLabel, resolveParams } from "../methods/types.ts";
import { bitsPerWeight } from "../core/quantizer.ts";
import type { DownloadEvent } from "../models/hub.ts";
import { countParams, loadModel } from "../models/load.ts";
import type { LoadedModel } from "../models/types.ts";
import { PACKED_SUFFIX, withPackedLinears } from "../kernels/wasm/mod.ts";
import { isStreamed } from "../models/linears.ts";
import { type CellIntegrity, ResultStore } from "../results/store.ts";
import { type LockOptions, lockResultsDir } from "../results/lock.ts";
import { type ResultRow, SCHEMA_VERSION } from "../results/row.ts";
import { getTask } from "../tasks/mod.ts";
import { EvalPool } from "../runners/eval_pool.ts";
import type { DatasetInfo, ReferenceModel, Task, TaskResult } from "../tasks/types.ts";
import type { WindowScorer } from "../runners/types.ts";
import { type CellSpec, expandMatrix, type MatrixSpec } from "./matrix.ts";
import { cellParams, quantizeCell } from "./cell.ts";
import { parseMethodSpec } from "./method_spec.ts";
import { shardIndices } from "./shard.ts";
import {
  calibrationRecord,
  type CalibrationSet,
  drawCalibrationSet,
  methodCalibration,
} from "../methods/calibration/set.ts";
import { type CalibrationTokens, tokenCalibrationSet } from "../methods/calibration/token_file.ts";
import { cellUnsupported } from "../methods/support.ts";
import { ModelRunner } from "../runners/model_runner.ts";
import { fp } from "../methods/fp.ts";
import { isFullPrecision } from "../methods/types.ts";

/** Events the runner reports; the CLI renders them, library users may log them. */
export type RunEvent =
  | { readonly type: "download"; readonly event: DownloadEvent }
  | { readonly type: "plan"; readonly cells: number; readonly todo: number }
  | { readonly type: "cell-start"; readonly index: number; readonly label: string }
  | {
    readonly type: "cell-progress";
    readonly index: number;
    /** `quantize`: calibration passes of the method; `evaluate`: task units. */
    readonly phase: "quantize" | "evaluate";
    readonly done: number;
    readonly total: number;
  }
  | {
    readonly type: "cell-done";
    readonly index: number;
    readonly label: string;
    readonly row: ResultRow;
    readonly skipped: boolean;
  }
  /** Something the user should read even when progress is off: a stale lock, a bad cell file. */
  | { readonly type: "notice"; readonly message: string };

/** Options of {@linkcode runMatrix}. */
export interface RunOptions {
  /** Results directory (cells/, results.jsonl, results.csv). */
  readonly outDir: string;
  /** Dataset root. */
  readonly dataDir: string;
  /** Recompute cells that already have a row. */
  readonly force?: boolean;
  readonly kernels?: Kernels;
  /** Scores perplexity windows on a GPU (backend `webgpu`); its adapter is recorded in rows. */
  readonly windowScorer?: WindowScorer;
  /** Only the cells of this shard (see `shard.ts`). */
  readonly shard?: { readonly index: number; readonly count: number };
  /** Method parameters by method id (defaults fill the rest; a method spec's own win). */
  readonly methodParams?: Readonly<Record<string, Readonly<Record<string, unknown>>>>;
  /** Bytes of full-precision outputs kept in memory for KL metrics (default 1 GiB). */
  readonly referenceCacheBytes?: number;
  /** Worker threads for evaluation (default 1 = this thread; the CLI defaults to the core count). */
  readonly threads?: number;
  readonly env?: (name: string) => string | undefined;
  /** The `tok*.bin` of llama2.c checkpoints given by path (default: the one beside each). */
  readonly tokenizer?: string;
  /** Skip and count malformed dataset rows instead of failing the cell (`--skip-malformed`). */
  readonly skipMalformed?: boolean;
  /**
   * Calibration windows replayed from a file (`--calib-tokens`): every calibrated cell uses
   * them instead of drawing a set from the matrix's calibration spec.
   */
  readonly calibrationTokens?: CalibrationTokens;
  /**
   * The lock of `outDir` (default `{}`: fail if another run holds it). `wait` polls until it is
   * free; `signals: false` leaves SIGINT/SIGTERM alone (by default they remove the lock file, then
   * end the process as usual); `false` takes no lock.
   */
  readonly lock?: false | Omit<LockOptions, "onNote">;
  readonly onEvent?: (e: RunEvent) => void;
}

/** A cell with everything resolved, ready to run or skip. */
export interface PlannedCell {
  readonly spec: CellSpec;
  readonly cellId: string;
  readonly label: string;
  readonly method: Method;
  /** Calibration windows, for methods that need them. */
  readonly calibration?: CalibrationSet;
  readonly params: Record<string, number | boolean | string>;
  readonly task: Task;
  readonly dataset: DatasetInfo;
}

/** Short human label of a cell: `stories260K rtn W4A16g32 tinystories`. */
export function cellLabel(c: CellSpec): string {
  return `${c.model} ${c.method} ${quantLabel(c.quant)} ${c.task}`;
}

/** The options {@linkcode planMatrix} reads. */
type PlanOptions = Parameters<typeof planMatrix>[1];

/** A method of the matrix and the parameters given for it (flag-level, then its spec's own). */
interface ResolvedMethod {
  readonly method: Method;
  readonly given: Record<string, unknown>;
}

/** Resolves every method spec of the matrix (and `fp`), rejecting unknown or ill-typed parameters. */
function resolveMethods(
  spec: MatrixSpec,
  methodParams: RunOptions["methodParams"],
): Map<string, ResolvedMethod> {
  const methodSpecs = new Set([
    fp.id,
    ...spec.methods.map((e) => typeof e === "string" ? e : e.method),
  ]);
  const methods = new Map<string, ResolvedMethod>();
  for (const text of methodSpecs) {
    const ms = parseMethodSpec(text);
    const method = getMethod(ms.id);
    // Flag-level parameters by method id; a chain's are namespaced by its members' ids.
    const byFlag: Record<string, unknown> = {};
    for (const id of ms.steps) {
      for (const [k, v] of Object.entries(methodParams?.[id] ?? {})) {
        byFlag[ms.id === id ? k : `${id}.${k}`] = v;
      }
    }
    const given = { ...byFlag, ...ms.params };
    resolveParams(method, given); // reject unknown or ill-typed parameters before any compute
    methods.set(text, { method, given });
  }
  return methods;
}

/** Fingerprints the dataset of every task, in task order. */
async function taskDatasets(
  tasks: ReadonlyMap<string, Task>,
  options: PlanOptions,
): Promise<Map<string, DatasetInfo>> {
  const datasets = new Map<string, DatasetInfo>();
  for (const [id, task] of tasks) {
    datasets.set(
      id,
      await task.dataset({
        dataDir: options.dataDir,
        ...(options.env ? { env: options.env } : {}),
      }),
    );
  }
  return datasets;
}

/** Loads every model of the matrix, in order, reporting downloads as events. */
async function loadModels(
  ids: readonly string[],
  options: PlanOptions,
): Promise<Map<string, LoadedModel>> {
  const models = new Map<string, LoadedModel>();
  for (const id of ids) {
    models.set(
      id,
      await loadModel(id, {
        onProgress: (event) => options.onEvent?.({ type: "download", event }),
        ...(options.env ? { env: options.env } : {}),
        ...(options.tokenizer ? { tokenizer: options.tokenizer } : {}),
      }),
    );
  }
  return models;
}

/** Rejects a `--context` that is not an integer in [2, maxSeqLen] of every model. */
function checkContext(
  context: number | undefined,
  models: ReadonlyMap<string, LoadedModel>,
): void {
  if (context === undefined) return;
  for (const [id, model] of models) {
    if (!Number.isInteger(context) || context < 2 || context > model.config.maxSeqLen) {
      throw new RangeError(
        `--context ${context} must be an integer in [2, ${model.config.maxSeqLen}] ` +
          `(the context of ${id})`,
      );
    }
  }
}

/**
 * Whether a cell runs on calibration windows: methods that need them, weight-activation cells
 * (static ranges, the quantization kernel) and MoE cells (routing consistency).
 */
function isCalibrated(
  method: Method,
  c: CellSpec,
  models: ReadonlyMap<string, LoadedModel>,
): boolean {
  return method.needsCalibration || c.quant.aBits < 16 ||
    (!isFullPrecision(method) && models.get(c.model)!.config.moe !== undefined);
}

/** A cell's calibration set: one per model and distinct spec, drawn (or replayed) once. */
type CalibrationOf = (method: Method, modelId: string) => Promise<CalibrationSet>;

/** The {@linkcode CalibrationOf} of a matrix, memoizing sets by model and calibration spec. */
function calibrationSource(
  spec: MatrixSpec,
  models: ReadonlyMap<string, LoadedModel>,
  options: PlanOptions,
): CalibrationOf {
  const calibrations = new Map<string, CalibrationSet>();
  return async (method, modelId) => {
    const cs = methodCalibration(method, spec.calibration, models.get(modelId)!.config.maxSeqLen);
    const key = canonicalJson([modelId, cs]);
    let set = calibrations.get(key);
    if (!set) {
      const model = models.get(modelId)!;
      set = options.calibrationTokens
        ? await tokenCalibrationSet(
          options.calibrationTokens,
          model.config.vocabSize,
          model.config.maxSeqLen,
        )
        : await drawCalibrationSet(cs, model.tokenizer, model.config.maxSeqLen, options.dataDir);
      calibrations.set(key, set);
    }
    return set;
  };
}

/**
 * What a cell's id hashes: the model files, method id/version/parameters, calibration, quantizer
 * configuration, task id/version, dataset, limit (context and skip-malformed when set), backend.
 */
function cellIdentity(
  cell: Omit<PlannedCell, "cellId" | "label">,
  model: LoadedModel,
  skipMalformed: boolean | undefined,
  backend: string,
): Record<string, unknown> {
  const { spec: c, method, params: p, task, dataset, calibration } = cell;
  return {
    schemaVersion: SCHEMA_VERSION,
    model: model.files.map((f) => f.sha256),
    method: { id: method.id, version: method.version, params: p },
    ...(calibration
      ? {
        calibration: {
          ...calibration.spec,
          dataset: calibration.dataset.sha256,
          split: calibration.dataset.split ?? null,
          tokens: calibration.tokensSha256,
        },
      }
      : {}),
    quant: c.quant,
    task: {
      id: task.id,
      version: task.version,
      dataset: dataset.sha256,
      // Tasks reading several files (items + labels) list them all.
      files: (dataset as { files?: readonly { sha256: string }[] }).files?.map((f) => f.sha256) ??
        null,
      split: dataset.split ?? null,
      limit: c.limit ?? null,
      // Only when set, so that cell ids of runs without the flag stay as they were.
      ...(c.context !== undefined ? { context: c.context } : {}),
      // Only when set, so that cell ids of runs without the flag stay as they were.
      ...(skipMalformed ? { skipMalformed: true } : {}),
    },
    backend,
  };
}

/** Resolves ids, loads models and fingerprints datasets: everything that can fail before compute. */
export async function planMatrix(
  spec: MatrixSpec,
  options: Pick<
    RunOptions,
    | "dataDir"
    | "kernels"
    | "methodParams"
    | "env"
    | "onEvent"
    | "shard"
    | "skipMalformed"
    | "calibrationTokens"
    | "tokenizer"
  >,
): Promise<{ cells: PlannedCell[]; models: Map<string, LoadedModel> }> {
  const kernels = options.kernels ?? refKernels;
  const methods = resolveMethods(spec, options.methodParams);
  const tasks = new Map(spec.tasks.map((id) => [id, getTask(id)]));
  const datasets = await taskDatasets(tasks, options);
  const models = await loadModels(spec.models, options);
  checkContext(spec.context, models);
  const expanded = expandMatrix(spec);
  const calibrationOf = calibrationSource(spec, models, options);
  let cells: PlannedCell[] = [];
  for (const c of expanded) {
    const model = models.get(c.model)!;
    const { method, given } = methods.get(c.method)!;
    // Parameters of the method for the model: the method's model defaults, then the given ones.
    const p = cellParams(method, c.model, given);
    const task = tasks.get(c.task)!;
    const dataset = datasets.get(c.task)!;
    const calibration = isCalibrated(method, c, models)
      ? await calibrationOf(method, c.model)
      : undefined;
    const planned = {
      spec: c,
      method,
      params: p,
      task,
      dataset,
      ...(calibration ? { calibration } : {}),
    };
    const identity = cellIdentity(planned, model, options.skipMalformed, kernels.id);
    const cellId = (await sha256Hex(canonicalJson(identity))).slice(0, 24);
    cells.push({
      spec: c,
      cellId,
      label: cellLabel(c),
      method,
      params: p,
      task,
      dataset,
      ...(calibration ? { calibration } : {}),
    });
  }
  if (options.shard) {
    const keep = new Set(shardIndices(cells.map((c) => c.method.relativeCost ?? 1), options.shard));
    cells = cells.filter((_, i) => keep.has(i));
  }
  return { cells, models };
}

/**
 * Packed evaluation (`--packed`): the quantized linears whose codes reproduce them bit for bit
 * become packed matrices, which the kernels run fused; noted in the row. The model then counts
 * as streamed (evaluated in this thread: workers would receive plain copies).
 */
function packedForEvaluation(qm: QuantizedModel): QuantizedModel {
  if (qm.packed.size === 0) return qm;
  const r = withPackedLinears(qm.weights, qm.packed);
  return {
    ...qm,
    weights: r.weights,
    notes: [
      ...qm.notes,
      `packed evaluation: ${r.packed} of ${r.linears} linears through the fused dequant kernel` +
      (r.packed < r.linears ? " (the others, e.g. bf16/f16-rounded weights, in float32)" : ""),
    ],
  };
}

/** Runs (or resumes) a matrix; returns the rows of its cells in matrix order. */
export async function runMatrix(spec: MatrixSpec, options: RunOptions): Promise<ResultRow[]> {
  const { cells, models } = await planMatrix(spec, options);
  // Taken after planning (bad ids fail without touching outDir), before reading finished cells
  // (a run that waited reuses what the other one finished).
  const lock = options.lock === false ? undefined : await lockResultsDir(options.outDir, {
    ...options.lock,
    onNote: (message) => options.onEvent?.({ type: "notice", message }),
  });
  try {
    return await runLocked(options, cells, models);
  } finally {
    lock?.release();
  }
}

/** Why a cached cell is recomputed, as a note in its new row. */
function recomputeNote(cellId: string, integrity: Exclude<CellIntegrity, "ok">): string {
  return integrity === "mismatch"
    ? `recomputed: the cached cell file cells/${cellId}.json failed its sha256 checksum ` +
      `(edited or corrupted after it was written)`
    : `recomputed: the cached cell file cells/${cellId}.json had no sha256 checksum ` +
      `(written before cell files carried one)`;
}

/** The finished rows a run reuses, and the notes of cells recomputed for a bad cached file. */
interface FinishedCells {
  /** Rows of cells that need no compute, by cell id (failed cells are retried). */
  readonly existing: Map<string, ResultRow>;
  /** Notes for the rows of cells whose cached file failed its checksum. */
  readonly recomputed: Map<string, string>;
}

/** Reads the rows `outDir` holds for the cells (none with `force`), noticing bad cell files. */
async function readFinished(
  options: RunOptions,
  store: ResultStore,
  cells: readonly PlannedCell[],
): Promise<FinishedCells> {
  const existing = new Map<string, ResultRow>();
  const recomputed = new Map<string, string>();
  let unchecked = 0;
  for (const c of cells) {
    const stored = options.force ? undefined : await store.read(c.cellId);
    if (!stored) continue;
    const { row } = stored;
    if (!row || row.cellId !== c.cellId || stored.integrity !== "ok") {
      const why = row?.cellId === c.cellId && stored.integrity === "missing"
        ? "missing"
        : "mismatch";
      recomputed.set(c.cellId, recomputeNote(c.cellId, why));
      if (why === "mismatch") {
        options.onEvent?.({
          type: "notice",
          message: `${store.dir}/cells/${c.cellId}.json (${c.label}) fails its sha256 checksum ` +
            `(edited or corrupted): recomputing the cell`,
        });
      } else unchecked++;
      continue;
    }
    if (row.status !== "failed") existing.set(c.cellId, row);
  }
  if (unchecked) {
    options.onEvent?.({
      type: "notice",
      message: `${unchecked} cached cell file(s) in ${store.dir}/cells have no sha256 checksum ` +
        `(written before cell files carried one): recomputing them`,
    });
  }
  return { existing, recomputed };
}

/** A quantized model (with its MoE routing consistency), kept while consecutive cells share it. */
interface QuantizedEntry {
  readonly key: string;
  readonly model: QuantizedModel;
  readonly routing?: ReturnType<typeof routingConsistency>;
}

/** What the cells of one locked run share. */
interface RunContext extends FinishedCells {
  readonly options: RunOptions;
  readonly kernels: Kernels;
  readonly store: ResultStore;
  readonly models: ReadonlyMap<string, LoadedModel>;
  readonly env: Env;
  /** The full-precision reference of each model (its cache of outputs for KL metrics). */
  readonly references: Map<string, ReferenceModel>;
  readonly pool: EvalPool | undefined;
  /** The last quantized model; released before the next one is built. */
  quantized: QuantizedEntry | undefined;
}

/** Runs the planned cells under the lock: reuses finished rows, computes and stores the rest. */
async function runLocked(
  options: RunOptions,
  cells: readonly PlannedCell[],
  models: ReadonlyMap<string, LoadedModel>,
): Promise<ResultRow[]> {
  const kernels = options.kernels ?? refKernels;
  const store = new ResultStore(options.outDir);
  const { existing, recomputed } = await readFinished(options, store, cells);
  options.onEvent?.({ type: "plan", cells: cells.length, todo: cells.length - existing.size });
  const env = await environment(kernels, options.windowScorer);
  const references = new Map<string, ReferenceModel>();
  const threads = options.threads ?? 1;
  const pool = threads > 1 && cells.length > existing.size
    ? new EvalPool(threads, options.referenceCacheBytes, kernels.id)
    : undefined;
  const ctx: RunContext = {
    options,
    kernels,
    store,
    models,
    existing,
    recomputed,
    env,
    references,
    pool,
    quantized: undefined,
  };
  try {
    return await runCells(ctx, cells);
  } finally {
    pool?.close();
  }
}

/** Runs the cells in order: a finished one is skipped, any other computed and its row stored. */
async function runCells(ctx: RunContext, cells: readonly PlannedCell[]): Promise<ResultRow[]> {
  const { options } = ctx;
  const rows: ResultRow[] = [];
  for (const [index, cell] of cells.entries()) {
    options.onEvent?.({ type: "cell-start", index, label: cell.label });
    const done = ctx.existing.get(cell.cellId);
    if (done) {
      rows.push(done);
      options.onEvent?.({
        type: "cell-done",
        index,
        label: cell.label,
        row: done,
        skipped: true,
      });
      continue;
    }
    const row = await computeCell(ctx, index, cell);
    await ctx.store.put(row);
    rows.push(row);
    options.onEvent?.({ type: "cell-done", index, label: cell.label, row, skipped: false });
  }
  return rows;
}

/** The full-precision reference of a model, created on first use. */
function referenceOf(ctx: RunContext, modelId: string, model: LoadedModel): ReferenceModel {
  let reference = ctx.references.get(modelId);
  if (!reference) {
    reference = {
      model,
      cache: new Map(),
      cacheBudgetBytes: ctx.options.referenceCacheBytes ?? 2 ** 30,
    };
    ctx.references.set(modelId, reference);
  }
  return reference;
}

/**
 * Computes one cell's row; never throws for the cell's own failures: an `UnsupportedConfigError`
 * gives an `unsupported` row, any other error a `failed` row with the message.
 */
async function computeCell(ctx: RunContext, index: number, cell: PlannedCell): Promise<ResultRow> {
  const model = ctx.models.get(cell.spec.model)!;
  const reference = referenceOf(ctx, cell.spec.model, model);
  const t0 = performance.now();
  const cacheNote = ctx.recomputed.get(cell.cellId);
  const preNotes = cacheNote ? [cacheNote] : [];
  try {
    checkSupported(cell, model.config);
    const { entry, quantizeMs } = await quantizedFor(ctx, index, cell, model);
    const result = await evaluateCell(ctx, index, cell, model, entry.model, reference);
    return okRow(ctx, cell, model, { result, entry, preNotes, t0, quantizeMs });
  } catch (e) {
    const unsupported = e instanceof UnsupportedConfigError;
    return buildRow(cell, model, ctx.env, ctx.options.dataDir, {
      status: unsupported ? "unsupported" : "failed",
      error: e instanceof Error ? `${e.name}: ${e.message}` : String(e),
      metrics: [],
      dataset: cell.dataset,
      protocol: null,
      notes: preNotes,
      bpw: null,
      wallMs: performance.now() - t0,
    });
  }
}

/**
 * Throws an `UnsupportedConfigError` when the method's declaration (bits, granularities, dense or
 * MoE models) excludes the cell, before anything is quantized.
 */
function checkSupported(cell: PlannedCell, config: LoadedModel["config"]): void {
  const why = cellUnsupported(cell.method, config, cell.spec.quant);
  if (why) throw new UnsupportedConfigError(why);
}

/**
 * The cell's quantized model: the previous cell's when model, method, parameters, bits and
 * calibration match, else quantized now (`quantizeMs` timed then, except for `fp`).
 */
async function quantizedFor(
  ctx: RunContext,
  index: number,
  cell: PlannedCell,
  model: LoadedModel,
): Promise<{ entry: QuantizedEntry; quantizeMs: number | undefined }> {
  const { kernels, options } = ctx;
  const q = cell.spec.quant;
  const qKey = canonicalJson([
    cell.spec.model,
    cell.method.id,
    cell.params,
    q,
    cell.calibration?.tokensSha256 ?? null,
  ]);
  if (ctx.quantized?.key === qKey) return { entry: ctx.quantized, quantizeMs: undefined };
  ctx.quantized = undefined; // release the previous model before building the next
  const qctx = {
    kernels,
    ...(cell.calibration ? { calibration: cell.calibration } : {}),
    onProgress: (d: number, total: number) =>
      options.onEvent?.({
        type: "cell-progress",
        index,
        phase: "quantize",
        done: d,
        total,
      }),
  };
  const tq = performance.now();
  let qmodel = await quantizeCell(model, cell.method, cell.params, q, qctx);
  if (kernels.id.endsWith(PACKED_SUFFIX)) qmodel = packedForEvaluation(qmodel);
  const quantizeMs = !isFullPrecision(cell.method) ? performance.now() - tq : undefined;
  const routing = model.config.moe && cell.calibration
    ? routingConsistency(
      model,
      qmodel,
      cell.calibration.windows.slice(0, ZERO_FRACTION_WINDOWS),
      kernels,
      `first ${ZERO_FRACTION_WINDOWS} calibration windows`,
    )
    : undefined;
  ctx.quantized = { key: qKey, model: qmodel, ...(routing ? { routing } : {}) };
  return { entry: ctx.quantized, quantizeMs };
}

/** Evaluates the cell's task on the quantized model; a non-finite metric throws. */
async function evaluateCell(
  ctx: RunContext,
  index: number,
  cell: PlannedCell,
  model: LoadedModel,
  qm: QuantizedModel,
  reference: ReferenceModel,
): Promise<TaskResult> {
  const { kernels, options, pool } = ctx;
  const result = await cell.task.run(
    { config: qm.config, weights: qm.weights, tokenizer: model.tokenizer },
    {
      kernels,
      dataDir: options.dataDir,
      ...(options.env ? { env: options.env } : {}),
      ...(options.skipMalformed ? { skipMalformed: true } : {}),
      // The full-precision cell fills the reference's cache (perplexity compares a
      // model with its own weights against nothing).
      reference,
      ...(cell.spec.limit !== undefined ? { limit: cell.spec.limit } : {}),
      ...(cell.spec.context !== undefined ? { context: cell.spec.context } : {}),
      // Where the model runs: worker threads get copies of the weights, so models streamed
      // from their files stay in this thread (their kernels may still use threads).
      runner: new ModelRunner(kernels, {
        ...(pool && !isStreamed(model.weights) ? { pool } : {}),
        ...(options.windowScorer ? { windowScorer: options.windowScorer } : {}),
      }),
      onProgress: (d, total) =>
        options.onEvent?.({
          type: "cell-progress",
          index,
          phase: "evaluate",
          done: d,
          total,
        }),
    },
  );
  // A non-finite number is never a result: the model produced NaN or ±Infinity somewhere.
  const bad = result.metrics.find((m) => !Number.isFinite(m.value));
  if (bad) {
    throw new RangeError(
      `${cell.task.id}: metric "${bad.metric}" is ${bad.value}: the model's outputs are not ` +
        `finite (a NaN or ±Infinity in its weights or activations), so no row is reported`,
    );
  }
  return result;
}

/** The row of a cell that ran: the task's metrics, activation zeros and routing, notes, timings. */
function okRow(
  ctx: RunContext,
  cell: PlannedCell,
  model: LoadedModel,
  r: {
    result: TaskResult;
    entry: QuantizedEntry;
    preNotes: readonly string[];
    t0: number;
    quantizeMs: number | undefined;
  },
): ResultRow {
  const { result, preNotes, t0, quantizeMs } = r;
  const qm = r.entry.model;
  const zeros = qm.activationZeros;
  const routing = r.entry.routing;
  return buildRow(cell, model, ctx.env, ctx.options.dataDir, {
    status: "ok",
    metrics: [
      ...result.metrics,
      ...(zeros
        ? [{
          metric: "act_zero_frac",
          value: zeros.fraction,
          stderr: zeros.stderr,
          n: zeros.windows,
          higherIsBetter: false,
          unit: "fraction",
        }]
        : []),
      ...(routing?.metrics ?? []),
    ],
    ...(zeros ? { activationZeros: zeros } : {}),
    ...(routing
      ? {
        routing: {
          loadFp: routing.loadFp,
          loadQuantized: routing.loadQuantized,
          windows: routing.windows,
          source: routing.source,
        },
      }
      : {}),
    dataset: result.dataset,
    protocol: result.protocol,
    ...(result.units ? { units: result.units } : {}),
    notes: [...preNotes, ...qm.notes],
    ...(qm.diagnostics ? { diagnostics: qm.diagnostics } : {}),
    bpw: averageBpw(qm),
    wallMs: performance.now() - t0,
    ...(quantizeMs !== undefined ? { quantizeMs } : {}),
  });
}

function averageBpw(qm: QuantizedModel): number | null {
  let bits = 0, n = 0;
  for (const p of qm.packed.values()) {
    bits += bitsPerWeight(p) * p.rows * p.cols;
    n += p.rows * p.cols;
  }
  return n ? bits / n : null;
}

type Env = ResultRow["env"];

/**
 * The dataset record of a row without this machine's directories: a file under the data root is
 * recorded by its path below the root (the sha256 identifies the content); a file given by the
 * user elsewhere (`file:PATH`) keeps its path.
 */
function portableDataset(d: DatasetInfo, dataDir: string): DatasetInfo {
  const root = dataDir.replace(/\/+$/, "") + "/";
  const rel = (p: string) => p.startsWith(root) ? p.slice(root.length) : p;
  const files = (d as { files?: readonly { path: string }[] }).files;
  return {
    ...d,
    path: rel(d.path),
    ...(files ? { files: files.map((f) => ({ ...f, path: rel(f.path) })) } : {}),
  };
}

function buildRow(
  cell: PlannedCell,
  model: LoadedModel,
  env: Env,
  dataDir: string,
  r: {
    status: ResultRow["status"];
    error?: string;
    metrics: ResultRow["metrics"];
    dataset: DatasetInfo;
    protocol: ResultRow["task"]["protocol"];
    units?: ResultRow["units"];
    notes: readonly string[];
    diagnostics?: ResultRow["diagnostics"];
    activationZeros?: ResultRow["activationZeros"];
    routing?: ResultRow["routing"];
    bpw: number | null;
    wallMs: number;
    quantizeMs?: number;
  },
): ResultRow {
  const q = cell.spec.quant;
  return {
    schemaVersion: SCHEMA_VERSION,
    cellId: cell.cellId,
    status: r.status,
    ...(r.error !== undefined ? { error: r.error } : {}),
    model: { id: model.id, format: model.format, files: model.files, params: countParams(model) },
    method: {
      spec: cell.spec.method,
      id: cell.method.id,
      version: cell.method.version,
      taxonomy: cell.method.taxonomy,
      scope: cell.method.scope,
      params: cell.params,
    },
    quant: {
      label: quantLabel(q),
      wBits: q.wBits,
      aBits: q.aBits,
      granularity: q.granularity,
      groupSize: q.granularity === "group" ? q.groupSize ?? null : null,
      symmetric: q.symmetric,
      rangeIncludesZero: cell.method.rangeIncludesZero?.(q) ?? !q.symmetric,
      rounding: "half-even",
      bitsPerWeight: r.bpw,
      act: q.aBits < 16 ? q.act ?? DEFAULT_ACT_OPTIONS : null,
    },
    task: {
      id: cell.task.id,
      family: cell.task.family,
      version: cell.task.version,
      limit: cell.spec.limit ?? null,
      dataset: portableDataset(r.dataset, dataDir),
      protocol: r.protocol,
    },
    metrics: r.metrics,
    ...(r.units ? { units: r.units } : {}),
    ...(cell.calibration
      ? {
        calibration: (({ dataset, ...rest }) => ({
          ...rest,
          dataset: portableDataset(dataset, dataDir),
        }))(calibrationRecord(cell.calibration)),
      }
      : {}),
    ...(r.diagnostics ? { diagnostics: r.diagnostics } : {}),
    ...(r.activationZeros ? { activationZeros: r.activationZeros } : {}),
    ...(r.routing ? { routing: r.routing } : {}),
    notes: r.notes,
    env,
    finishedAt: new Date().toISOString(),
    wallMs: r.wallMs,
    ...(r.quantizeMs !== undefined ? { quantizeMs: r.quantizeMs } : {}),
  };
}

async function environment(kernels: Kernels, scorer?: WindowScorer): Promise<Env> {
  return {
    lowbit: denoJson.version,
    git: await gitState(),
    deno: Deno.version.deno,
    v8: Deno.version.v8,
    typescript: Deno.version.typescript,
    os: Deno.build.os,
    arch: Deno.build.arch,
    cpus: navigator.hardwareConcurrency,
    backend: kernels.id,
    ...(scorer?.adapter ? { gpu: { ...scorer.adapter } } : {}),
  };
}

/** The checkout's commit and whether tracked files differ from it (nulls outside a git checkout). */
export async function gitState(): Promise<Env["git"]> {
  try {
    const dir = new URL("..", import.meta.url).pathname;
    const run = async (...args: string[]) => {
      const out = await new Deno.Command("git", { args, cwd: dir, stdout: "piped", stderr: "null" })
        .output();
      if (!out.success) throw new Error("git failed");
      return new TextDecoder().decode(out.stdout).trim();
    };
    const commit = await run("rev-parse", "HEAD");
    const dirty = (await run("status", "--porcelain", "--untracked-files=no")).length > 0;
    return { commit, dirty };
  } catch {
    return { commit: null, dirty: null };
  }
}
