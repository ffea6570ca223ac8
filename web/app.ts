/// <reference lib="dom" />
/**
 * The browser page: pick a model fixture, a method and a bit configuration, and see perplexity, KL
 * and top-1 agreement against the full-precision model, computed in the tab with the library's own
 * code (model loading, the method, the activation stage and the perplexity task are the CLI's).
 *
 * Everything is fetched over HTTP: the model from the Hugging Face Hub's resolve URLs (a registry
 * id such as the default `stories260K`, llama2.c files checked against the registry's sha256, or
 * `hf:owner/repo[@rev]`) or from a transformers-layout directory URL (see `model_source.ts`); the
 * TinyStories text from a data root URL laid out like the repository's `data/` (default `data/`
 * beside the page: `web/build.ts` copies the repository's TinyStories file there). Perplexity
 * windows run on WebGPU when the tab has an adapter (a software one is labelled), else on the
 * WASM kernels. A progress bar follows the downloads (bytes received of the file's size), the
 * method's own progress, and the evaluation windows.
 * Query parameters fill the form (`model`, `endpoint` — the Hub, default https://huggingface.co —,
 * `method`, `config`, `group`, `limit`, `data`, `backend`) and `run=1` starts at once; the outcome
 * is also left on `globalThis.lowbitResult` for automation.
 *
 * @module
 */

import { cellParams, quantizeCell } from "../bench/cell.ts";
import { parseConfig, quantFor } from "../bench/matrix.ts";
import { parseMethodSpec } from "../bench/method_spec.ts";
import { drawCalibrationSet, methodCalibration } from "../methods/calibration/set.ts";
import { type SelectedKernels, selectKernels } from "../runners/backend.ts";
import type { GpuAdapterInfo } from "../kernels/webgpu/device.ts";
import { getMethod, METHODS } from "../methods/mod.ts";
import { quantLabel } from "../methods/types.ts";
import { perplexityTask } from "../tasks/perplexity.ts";
import type { Metric } from "../tasks/types.ts";
import type { SourceFile } from "../models/types.ts";
import { DEFAULT_ENDPOINT, loadModelFromSource, resolveModelSource } from "./model_source.ts";
import { isFullPrecision } from "../methods/types.ts";

/** What a finished run leaves on `globalThis.lowbitResult`. */
export interface PageResult {
  readonly status: "done" | "failed";
  readonly error?: string;
  /** Kernel id, as in the CLI's rows (`webgpu+wasm-simd`, `wasm-simd`, `js-ref`). */
  readonly backend?: string;
  /** The WebGPU adapter the perplexity windows ran on (`fallback`: a software adapter). */
  readonly gpu?: GpuAdapterInfo;
  readonly model?: string;
  /** The model's files as downloaded (name, size, sha256). */
  readonly files?: readonly SourceFile[];
  readonly method?: string;
  readonly label?: string;
  readonly limit?: number;
  readonly fp?: Readonly<Record<string, Metric>>;
  readonly quantized?: Readonly<Record<string, Metric>>;
}

const TASK = "tinystories:eval";

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;

function log(text: string): void {
  $("status").textContent = text;
}

/**
 * Shows a step's progress: the text, and the bar at `done / total` (indeterminate without a
 * total). The bar's `value` is the fraction done, in [0, 1].
 */
function progress(text: string, done?: number, total?: number): void {
  const bar = $<HTMLProgressElement>("progress");
  if (done === undefined || !total) bar.removeAttribute("value");
  else bar.value = Math.min(1, done / total);
  $("progress-text").textContent = text;
}

/** Lets the tab paint before a step that computes without yielding. */
const paint = () => new Promise((r) => setTimeout(r, 0));

const count = (n: number) => n.toLocaleString("en-US");

/**
 * `auto` in a tab: WebGPU on any adapter (a software one is labelled fallback in the result),
 * else WASM, else the TypeScript reference; other names as the CLI's `--backend`.
 */
async function pickBackend(name: string): Promise<SelectedKernels> {
  if (name !== "auto") return await selectKernels(name);
  try {
    return await selectKernels("webgpu");
  } catch {
    return await selectKernels("auto");
  }
}

function byMetric(metrics: readonly Metric[]): Record<string, Metric> {
  return Object.fromEntries(metrics.map((m) => [m.metric, m]));
}

async function run(): Promise<PageResult> {
  const modelRef = $<HTMLInputElement>("model").value.trim();
  const endpoint = $<HTMLInputElement>("endpoint").value.trim() || DEFAULT_ENDPOINT;
  const methodSpec = $<HTMLSelectElement>("method").value.trim();
  const configText = $<HTMLInputElement>("config").value.trim();
  const group = $<HTMLInputElement>("group").value.trim();
  const limit = Number($<HTMLInputElement>("limit").value);
  const backend = $<HTMLSelectElement>("backend").value;
  const dataRoot = new URL($<HTMLInputElement>("data").value.trim(), location.href).href;
  if (!Number.isInteger(limit) || limit < 1) {
    throw new RangeError("windows must be a positive integer");
  }

  const source = resolveModelSource(modelRef, endpoint, location.href);
  const { kernels, windowScorer } = await pickBackend(backend);
  log(`loading ${modelRef} …`);
  const model = await loadModelFromSource(source, {
    onProgress: ({ url, loaded, total }) => {
      const name = decodeURIComponent(new URL(url).pathname.split("/").pop() ?? url);
      progress(
        `downloading ${name}: ${count(loaded)}${total ? ` of ${count(total)}` : ""} bytes`,
        loaded,
        total,
      );
    },
  });
  const task = perplexityTask(TASK);
  const ms = parseMethodSpec(methodSpec);
  const method = getMethod(ms.id);
  const params = cellParams(method, model.id, ms.params);
  const c = parseConfig(configText);
  const g = c.group ?? (group === "channel" || group === "tensor" ? group : Number(group));
  const q = quantFor(c.wBits, g, false, c.aBits);
  let calibration;
  if (method.needsCalibration) {
    progress("drawing calibration windows …");
    await paint();
    calibration = await drawCalibrationSet(
      methodCalibration(method),
      model.tokenizer,
      model.config.maxSeqLen,
      dataRoot,
    );
  }
  const ctx = { kernels, limit, dataDir: dataRoot, ...(windowScorer ? { windowScorer } : {}) };
  log("full precision …");
  progress("full precision: reading TinyStories …");
  await paint();
  const fp = await task.run(model, {
    ...ctx,
    onProgress: (d, n) => progress(`full precision: window ${d} of ${n}`, d, n),
  });
  log(`quantizing with ${methodSpec} at ${quantLabel(q)} …`);
  progress(`quantizing with ${methodSpec} …`);
  await paint();
  const qm = await quantizeCell(model, method, params, q, {
    kernels,
    ...(calibration ? { calibration } : {}),
    onProgress: (d, n) => progress(`quantizing with ${methodSpec}: ${d} of ${n}`, d, n),
  });
  log("evaluating …");
  progress("evaluating …");
  await paint();
  const reference = { model, cache: new Map(), cacheBudgetBytes: 2 ** 28 };
  const quantized = await task.run(
    { config: qm.config, weights: qm.weights, tokenizer: model.tokenizer },
    {
      ...ctx,
      reference,
      onProgress: (d, n) => progress(`evaluating: window ${d} of ${n}`, d, n),
    },
  );
  return {
    status: "done",
    backend: kernels.id,
    ...(windowScorer?.adapter ? { gpu: windowScorer.adapter } : {}),
    model: model.id,
    files: model.files,
    method: methodSpec,
    label: quantLabel(q),
    limit,
    fp: byMetric(fp.metrics),
    quantized: byMetric(quantized.metrics),
  };
}

function show(r: PageResult): void {
  const rows = $("results");
  rows.replaceChildren();
  const line = (name: string, m?: Readonly<Record<string, Metric>>) => {
    const tr = document.createElement("tr");
    const cell = (t: string) => {
      const td = document.createElement("td");
      td.textContent = t;
      tr.append(td);
    };
    const fmt = (k: string, d: number) => {
      const x = m?.[k];
      return x ? `${x.value.toFixed(d)} ± ${(x.stderr ?? 0).toFixed(d)}` : "";
    };
    cell(name);
    cell(fmt("ppl", 4));
    cell(fmt("kl", 5));
    cell(fmt("top1", 4));
    rows.append(tr);
  };
  line("FP32", r.fp);
  line(`${r.method} ${r.label}`, r.quantized);
  const gpu = r.gpu
    ? ` (${r.gpu.description || r.gpu.vendor}${
      r.gpu.fallback ? ", a software adapter: not GPU speed" : ""
    })`
    : "";
  progress("done", 1, 1);
  log(`done on the ${r.backend} backend${gpu}, ${r.limit} windows`);
}

function init(): void {
  const select = $<HTMLSelectElement>("method");
  for (const m of METHODS.items) {
    if (isFullPrecision(m)) continue;
    const o = document.createElement("option");
    o.value = m.id;
    o.textContent = `${m.id} (${m.taxonomy})`;
    select.append(o);
  }
  // The registry lists methods by id (affinequant first, minutes of optimization): start on RTN.
  select.value = "rtn";
  const params = new URLSearchParams(location.search);
  for (
    const id of ["model", "endpoint", "method", "config", "group", "limit", "data", "backend"]
  ) {
    const v = params.get(id);
    if (v !== null) ($(id) as HTMLInputElement).value = v;
  }
  const go = async () => {
    ($("run") as HTMLButtonElement).disabled = true;
    let result: PageResult;
    try {
      result = await run();
      show(result);
    } catch (e) {
      result = { status: "failed", error: String((e as Error)?.message ?? e) };
      log(`failed: ${result.error}`);
      progress("");
    }
    (globalThis as { lowbitResult?: PageResult }).lowbitResult = result;
    ($("run") as HTMLButtonElement).disabled = false;
  };
  $("run").addEventListener("click", go);
  if (params.get("run") === "1") go();
}

init();
