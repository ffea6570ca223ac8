/**
 * lowbit: post-training quantization of LLMs, benchmarked.
 *
 * Everything the CLI does is available here: load a model, quantize it with a registered method,
 * evaluate a task, run a whole matrix.
 *
 * @example Quantize stories260K to 4 bits and measure perplexity
 * ```ts ignore
 * import { bundledDataDir, loadModel, METHODS, getTask, refKernels } from "./mod.ts";
 * const model = await loadModel("stories260K");
 * const q = await METHODS.get("rtn").quantize(model, {
 *   wBits: 4, aBits: 16, granularity: "group", groupSize: 32, symmetric: false,
 * }, {}, { kernels: refKernels });
 * const result = await getTask("tinystories").run(
 *   { ...q, tokenizer: model.tokenizer },
 *   { kernels: refKernels, dataDir: bundledDataDir(), limit: 8 },
 * );
 * ```
 *
 * @example GPTQ at 3 bits, calibrated on TinyStories' first half, evaluated on its second half
 * ```ts ignore
 * import { bundledDataDir, drawCalibrationSet, DEFAULT_CALIBRATION, getTask, loadModel, METHODS,
 *   refKernels, resolveParams } from "./mod.ts";
 * const model = await loadModel("stories260K");
 * const calibration = await drawCalibrationSet(
 *   DEFAULT_CALIBRATION, model.tokenizer, model.config.maxSeqLen, bundledDataDir());
 * const gptq = METHODS.get("gptq");
 * const q = await gptq.quantize(model, {
 *   wBits: 3, aBits: 16, granularity: "channel", symmetric: false,
 * }, resolveParams(gptq, { actOrder: true }), { kernels: refKernels, calibration });
 * console.log(q.diagnostics?.relErrorByKind);
 * ```
 *
 * @example SmoothQuant + GPTQ at W4A8 (per-token activations), with the quantization-kernel share
 * ```ts ignore
 * import { applyActivationQuant, DEFAULT_ACT_OPTIONS, getMethod, resolveParams } from "./mod.ts";
 * const chain = getMethod("smoothquant+gptq");
 * const q = { wBits: 4, aBits: 8, granularity: "channel", symmetric: true, act: DEFAULT_ACT_OPTIONS };
 * const ctx = { kernels: refKernels, calibration };
 * const wq = await chain.quantize(model, q, resolveParams(chain, { "smoothquant.alpha": 0.5 }), ctx);
 * const qm = applyActivationQuant(wq, q, ctx); // attaches the activation quantizer
 * console.log(qm.activationZeros?.bySite);
 * ```
 *
 * @module
 */

export * from "./models/types.ts";
export { countParams, loadLlama2c, loadModel, type LoadOptions } from "./models/load.ts";
export { buildHfModel, loadHfFromUrl, type ModelFileReader } from "./models/hf_model.ts";
export { type ModelEntry, MODELS } from "./models/registry.ts";
export { hubCacheDir, hubFile, hubRepoDir, parseHfRef, type RepoType } from "./models/hub.ts";
export {
  createKvCache,
  denseMlp,
  embedTokens,
  forward,
  type ForwardModel,
  type ForwardOptions,
  generateGreedy,
  type KvCache,
  layerForward,
  type LayerHooks,
  type LinearObserver,
  mlpForward,
  type RoutingObserver,
  selfAttention,
} from "./runners/forward.ts";
export { type LinearSite, linearSite, listLinears, mapLinears } from "./models/linears.ts";
export * from "./core/quantizer.ts";
export * from "./core/errors.ts";
export { createRegistry, type Registry } from "./core/registry.ts";
export { getMethod, METHODS } from "./methods/mod.ts";
export { smoothingFactors, smoothquant, smoothQuantAlpha } from "./methods/smoothquant.ts";
export { crossquant } from "./methods/crossquant.ts";
export { chainMethods } from "./methods/chain.ts";
export { alignRouter, clipSearchMse, eaquant, topkKl } from "./methods/eaquant.ts";
export { flexround, quantizeFlexRound } from "./methods/flexround.ts";
export { affinequant, quantizeAffineQuant } from "./methods/affinequant.ts";
export {
  affineQuantLearner,
  type AffineQuantSpec,
  gradualMask,
  unmaskedBands,
} from "./methods/affinequant_learner.ts";
export { inverseBackward, invertMatrix, SingularMatrixError } from "./methods/autodiff/inverse.ts";
export { initLwc, lwcBackward, lwcForward, type LwcParams } from "./methods/autodiff/lwc.ts";
export { actQuantBackward, actQuantForward } from "./methods/autodiff/act_quant.ts";
export {
  BlockDivergedError,
  type BlockLearner,
  type BlockReport,
  reconstructBlocks,
  type ReconstructionOptions,
  type ReconstructionResult,
} from "./methods/calibration/reconstruct.ts";
export {
  blockBackward,
  blockForward,
  blockForwardBackward,
  type BlockWeights,
} from "./methods/autodiff/block.ts";
export { routingConsistency, type RoutingReport } from "./tasks/routing.ts";
export { type Shard, shardIndices } from "./bench/shard.ts";
export { foldSmoothing, type LayerSmoothing } from "./methods/smoothing.ts";
export { applyActivationQuant, ZERO_FRACTION_WINDOWS } from "./methods/activations.ts";
export {
  parseRouterQuant,
  quantizeRouters,
  ROUTER_WBITS,
  validateRouterQuant,
} from "./methods/router.ts";
export * from "./core/act_quantizer.ts";
export {
  type ActivationStats,
  type ChannelStats,
  collectActivationStats,
  type ExpertStats,
  type LayerActivationStats,
} from "./methods/calibration/act_stats.ts";
export { gptq } from "./methods/gptq.ts";
export {
  GPTQ_DEFAULTS,
  type GptqLayerOptions,
  type GptqLayerResult,
  gptqQuantizeLayer,
  groupParamsMse,
  HessianNotPositiveDefiniteError,
  upperCholeskyOfInverse,
} from "./methods/gptq_core.ts";
export { rtn } from "./methods/rtn.ts";
export { awq } from "./methods/awq.ts";
export { awqGroupParams, awqQuantizeMatrix } from "./methods/awq_quantizer.ts";
export {
  type AwqGroupRecord,
  type AwqOptions,
  type AwqResult,
  runAwq,
} from "./methods/awq_pipeline.ts";
export {
  CALIBRATION_RECIPES,
  type CalibrationRecipe,
  type CalibrationRecord,
  calibrationRecord,
  type CalibrationSet,
  type CalibrationSpec,
  DEFAULT_CALIBRATION,
  drawCalibrationSet,
  methodCalibration,
} from "./methods/calibration/set.ts";
export { PILEVAL_AWQ, samplePilevalAwq } from "./methods/calibration/pileval_awq.ts";
export {
  type LinearDiagnostic,
  type LinearInputs,
  type LinearOutcome,
  type LinearQuantizer,
  quantizeSequential,
  relativeReconstructionError,
  type SequentialOptions,
  type SequentialResult,
} from "./methods/calibration/sequential.ts";
export { type MethodSpec, parseMethodSpec, sweepParam } from "./bench/method_spec.ts";
export * from "./methods/types.ts";
export { getTask, HF_TASK_IDS, TASK_IDS } from "./tasks/mod.ts";
export {
  type DatasetRow,
  datasetRows,
  type DatasetSource,
  type DatasetSourceOptions,
  fetchDatasetSource,
  parseDatasetSource,
  readDatasetSource,
} from "./tasks/dataset_source.ts";
export { HF_SCHEMAS, type HfSchema, type HfTaskId, readHfDataset } from "./tasks/hf_schemas.ts";
export { MalformedRows, type SkippedRows } from "./tasks/malformed.ts";
export { readParquetRows } from "./tasks/parquet.ts";
export { evaluatePerplexity, makeWindows, perplexityTask } from "./tasks/perplexity.ts";
export { EvalPool } from "./runners/eval_pool.ts";
export { ModelRunner, type ScoredWindows, type WindowReference } from "./runners/model_runner.ts";
export {
  datasetInfo,
  readDocuments,
  readTextDataset,
  TEXT_DATASETS,
} from "./tasks/corpora/text.ts";
export type { CorpusRef, DatasetInfo, TextCorpus } from "./tasks/corpora/text.ts";
export { applySplit, type SplitInfo } from "./tasks/corpora/splits.ts";
export { bundledDataDir } from "./core/paths.ts";
export type * from "./tasks/types.ts";
export type { Kernels } from "./kernels/types.ts";
export { refKernels } from "./kernels/ref/mod.ts";
export { type WasmKernels, wasmKernels, type WasmKernelsOptions } from "./kernels/wasm/mod.ts";
export * from "./kernels/webgpu/mod.ts";
export { GpuWindowScorer, type GpuWindowScorerOptions } from "./runners/webgpu_scorer.ts";
export type { WindowScorer } from "./runners/types.ts";
export {
  type Backend,
  BACKENDS,
  kernelsById,
  type SelectedKernels,
  selectKernels,
} from "./runners/backend.ts";
export {
  type CellSpec,
  expandMatrix,
  type GroupSetting,
  LEVELS,
  type MatrixSpec,
  type MethodEntry,
  parseAct,
  parseConfig,
  parsePreset,
  quantFor,
} from "./bench/matrix.ts";
export { planMatrix, type RunEvent, runMatrix, type RunOptions } from "./bench/runner.ts";
export { cellParams, quantizeCell } from "./bench/cell.ts";
export { type ResultRow, SCHEMA_VERSION } from "./results/row.ts";
export { ResultStore, rowsToCsv } from "./results/store.ts";
export { formatSummary } from "./results/summary.ts";
