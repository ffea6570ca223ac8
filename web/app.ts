/// <reference lib="dom" />
/**
 * The browser page: pick a model fixture, a method and a bit configuration, and see perplexity, KL
 * and top-1 agreement against the full-precision model, computed in the tab with the library's own
 * code (model loading, the method, the activation stage and the perplexity task are the CLI's).
 *
 * Everything is fetched over HTTP: the model's files from a transformers-layout directory URL,
 * the TinyStories text from a data root URL laid out like the repository's `data/` (the form's
 * default, relative to `web/dist/`). Perplexity windows run on WebGPU when the tab has an adapter
 * (a software one is labelled), else on the WASM kernels.
 * Query parameters fill the form (`model`, `method`, `config`, `group`, `limit`, `data`,
 * `backend`) and `run=1` starts at once; the outcome is also left on `globalThis.lowbitResult`
 * for automation.
 *
 * @module
 */

import { cellParams, quantizeCell } from "../bench/cell.ts";
import { parseConfig, quantFor } from "../bench/matrix.ts";
import { parseMethodSpec } from "../bench/method_spec.ts";
import { drawCalibrationSet, methodCalibration } from "../calibration/set.ts";
import { type SelectedKernels, selectKernels } from "../kernels/backend.ts";
import type { GpuAdapterInfo } from "../kernels/webgpu/device.ts";
import { getMethod, METHODS } from "../methods/mod.ts";
import { quantLabel } from "../methods/types.ts";
import { loadHfFromUrl } from "../models/hf_model.ts";
import { perplexityTask } from "../tasks/perplexity.ts";
import type { Metric } from "../tasks/types.ts";

/** What a finished run leaves on `globalThis.lowbitResult`. */
export interface PageResult {
  readonly status: "done" | "failed";
  readonly error?: string;
  /** Kernel id, as in the CLI's rows (`webgpu+wasm-simd`, `wasm-simd`, `js-ref`). */
  readonly backend?: string;
  /** The WebGPU adapter the perplexity windows ran on (`fallback`: a software adapter). */
  readonly gpu?: GpuAdapterInfo;
  readonly model?: string;
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
  const modelUrl = $<HTMLInputElement>("model").value.trim();
  const methodSpec = $<HTMLSelectElement>("method").value.trim();
  const configText = $<HTMLInputElement>("config").value.trim();
  const group = $<HTMLInputElement>("group").value.trim();
  const limit = Number($<HTMLInputElement>("limit").value);
  const backend = $<HTMLSelectElement>("backend").value;
  const dataRoot = new URL($<HTMLInputElement>("data").value.trim(), location.href).href;
  if (!Number.isInteger(limit) || limit < 1) {
    throw new RangeError("windows must be a positive integer");
  }

  const { kernels, windowScorer } = await pickBackend(backend);
  log(`loading ${modelUrl} …`);
  const model = await loadHfFromUrl(new URL(modelUrl, location.href), modelUrl);
  const task = perplexityTask(TASK);
  const ms = parseMethodSpec(methodSpec);
  const method = getMethod(ms.id);
  const params = cellParams(method, model.id, ms.params);
  const c = parseConfig(configText);
  const g = c.group ?? (group === "channel" || group === "tensor" ? group : Number(group));
  const q = quantFor(c.wBits, g, false, c.aBits);
  const calibration = method.needsCalibration
    ? await drawCalibrationSet(
      methodCalibration(method),
      model.tokenizer,
      model.config.maxSeqLen,
      dataRoot,
    )
    : undefined;
  const ctx = { kernels, limit, dataDir: dataRoot, ...(windowScorer ? { windowScorer } : {}) };
  log("full precision …");
  const fp = await task.run(model, ctx);
  log(`quantizing with ${methodSpec} at ${quantLabel(q)} …`);
  const qm = await quantizeCell(model, method, params, q, {
    kernels,
    ...(calibration ? { calibration } : {}),
  });
  log("evaluating …");
  const reference = { model, cache: new Map(), cacheBudgetBytes: 2 ** 28 };
  const quantized = await task.run(
    { config: qm.config, weights: qm.weights, tokenizer: model.tokenizer },
    { ...ctx, reference, onProgress: (d, n) => log(`evaluating: window ${d} of ${n}`) },
  );
  return {
    status: "done",
    backend: kernels.id,
    ...(windowScorer?.adapter ? { gpu: windowScorer.adapter } : {}),
    model: modelUrl,
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
  log(`done on the ${r.backend} backend${gpu}, ${r.limit} windows`);
}

function init(): void {
  const select = $<HTMLSelectElement>("method");
  for (const m of METHODS.items) {
    if (m.id === "fp") continue;
    const o = document.createElement("option");
    o.value = m.id;
    o.textContent = `${m.id} (${m.taxonomy})`;
    select.append(o);
  }
  const params = new URLSearchParams(location.search);
  for (const id of ["model", "method", "config", "group", "limit", "data", "backend"]) {
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
    }
    (globalThis as { lowbitResult?: PageResult }).lowbitResult = result;
    ($("run") as HTMLButtonElement).disabled = false;
  };
  $("run").addEventListener("click", go);
  if (params.get("run") === "1") go();
}

init();
