/**
 * One benchmark cell computed wherever the library runs (a browser tab, or Deno): a llama2.c
 * model from its bytes, quantized by a method, scored for perplexity, KL and top-1 agreement on a
 * text against the full-precision model. The same code as the CLI's cells (`methods/`,
 * `tasks/perplexity.ts`), with WebGPU windows when an adapter exists and WASM kernels otherwise.
 *
 * @module
 */

import { sha256Hex } from "../core/hash.ts";
import { selectKernels } from "../kernels/backend.ts";
import type { GpuAdapterInfo } from "../kernels/webgpu/device.ts";
import { fp } from "../methods/fp.ts";
import { rtn } from "../methods/rtn.ts";
import { type Method, resolveParams } from "../methods/types.ts";
import { parseLlama2cCheckpoint, parseLlama2cTokenizer } from "../models/llama2c.ts";
import { evaluatePerplexity } from "../tasks/perplexity.ts";

/** Methods the page offers (no calibration data needed in the tab). */
export const WEB_METHODS: Readonly<Record<string, Method>> = { fp, rtn };

/** What to compute. */
export interface WebCell {
  /** llama2.c checkpoint bytes and its tokenizer's. */
  readonly checkpoint: Uint8Array;
  readonly tokenizer: Uint8Array;
  /** Evaluation text, and its id for the dataset record (e.g. `tinystories`). */
  readonly text: string;
  readonly textId: string;
  /** `fp` or `rtn`. */
  readonly method: string;
  readonly bits: number;
  /** `channel` or a group size in columns. */
  readonly group: "channel" | number;
  /** Windows to score (the CLI's `--limit`). */
  readonly limit: number;
  /** `webgpu` (any adapter), `wasm`, `ts`, or `auto` (default: WebGPU when an adapter exists). */
  readonly backend?: string;
}

/** The cell's numbers and where they were computed. */
export interface WebCellResult {
  readonly ppl: number;
  readonly nll: number;
  readonly kl: number;
  readonly top1: number;
  readonly windows: number;
  /** Kernel id, as in the CLI's rows (`webgpu+wasm-simd`, `wasm-simd`, `js-ref`). */
  readonly backend: string;
  /** The WebGPU adapter, when windows ran on one. */
  readonly gpu?: GpuAdapterInfo;
  readonly ms: number;
}

/** Computes `cell`. */
export async function runWebCell(cell: WebCell): Promise<WebCellResult> {
  const t0 = performance.now();
  const method = WEB_METHODS[cell.method];
  if (!method) {
    throw new TypeError(
      `Unknown method "${cell.method}"; valid: ${Object.keys(WEB_METHODS).join(", ")}`,
    );
  }
  const { config, weights } = parseLlama2cCheckpoint(cell.checkpoint, "checkpoint");
  const tokenizer = parseLlama2cTokenizer(cell.tokenizer, config.vocabSize, "tokenizer");
  const model = { config, weights, tokenizer };
  const selected = await pickBackend(cell.backend ?? "auto");
  const { kernels, windowScorer } = selected;
  const q = {
    wBits: cell.method === "fp" ? 16 : cell.bits,
    aBits: 16,
    granularity: cell.group === "channel" ? "channel" as const : "group" as const,
    ...(cell.group === "channel" ? {} : { groupSize: cell.group }),
    symmetric: false,
  };
  const qm = await method.quantize(model, q, resolveParams(method, {}), { kernels });
  const bytes = new TextEncoder().encode(cell.text);
  const dataset = {
    id: cell.textId,
    path: cell.textId,
    bytes: bytes.length,
    sha256: await sha256Hex(bytes),
  };
  const r = await evaluatePerplexity(
    { config: qm.config, weights: qm.weights, tokenizer },
    cell.text,
    {
      kernels,
      dataDir: "",
      limit: cell.limit,
      ...(cell.method === "fp" ? {} : {
        reference: { model, cache: new Map(), cacheBudgetBytes: 2 ** 28 },
      }),
      ...(windowScorer ? { windowScorer } : {}),
    },
    dataset,
  );
  const get = (m: string) => r.metrics.find((x) => x.metric === m)!.value;
  return {
    ppl: get("ppl"),
    nll: get("nll"),
    kl: get("kl"),
    top1: get("top1"),
    windows: r.protocol.windows as number,
    backend: kernels.id,
    ...(windowScorer?.adapter ? { gpu: windowScorer.adapter } : {}),
    ms: performance.now() - t0,
  };
}

/** `auto` in a tab: WebGPU on any adapter (a fallback one is labelled), else WASM, else TS. */
async function pickBackend(backend: string) {
  if (backend !== "auto") return await selectKernels(backend);
  try {
    return await selectKernels("webgpu");
  } catch {
    return await selectKernels("auto");
  }
}
