/**
 * Decode benchmark: batch 1, a prompt of 128 tokens, then N (default 64) greedy tokens through
 * the KV cache (`runners/forward.ts`, as `generateGreedy` does), on an RTN W4 g128 model, with
 * the quantized linears evaluated two ways by one WASM kernel set (`wasmKernels({ packed: true
 * })`):
 *
 * - **f32**: the dequantized float32 weights as plain matrices, run by the float32 GEMV on
 *   panels (how evaluation runs without `--packed`);
 * - **packed**: the same weights as packed codes (`PackedMatrix`), run by the fused dequant
 *   kernel `matmulPacked` (`--packed`).
 *
 * One warm-up pair (weights copied into WASM memory), then `--pairs` pairs; in each pair both
 * paths decode from their own KV caches alternating token by token (f32, packed, packed, f32,
 * …), so the machine's drift weighs on both alike. Prints the median decode tokens/s of each
 * over the pairs (prefill not counted, its median shown apart), their ratio (and the median of
 * the per-pair ratios), the
 * kernel threads, how many linears ran fused and whether both paths chose the same greedy
 * tokens. Embeddings, norms, attention and the classifier (stories260K and SmolLM2 tie it to the
 * embeddings, so it stays float32) are the same in both.
 *
 * onnxruntime-web is not compared here: lowbit's ONNX export (`export/onnx.ts`) has no KV cache,
 * so it would recompute the whole sequence for every token, which is not a fair decode baseline.
 *
 * Packed dispatch needs float32 storage: a bf16/f16 checkpoint's quantized weights are rounded to
 * that format (as the reference's `W.to(dtype)`), which the fused kernel does not do, so they
 * stay on float32 (the line "fused linears: 0 of N" says so). `--dtype f32` keeps the quantized
 * weights in float32 instead (the speed question only; such weights are not the reference's).
 *
 * Usage: `deno run --allow-read --allow-write --allow-env --allow-net --allow-sys=loadavg
 * bench/decode.ts [--model ID|DIR] [--steps N] [--prompt N] [--pairs N] [--kernel-threads N]
 * [--bits B] [--group G] [--dtype checkpoint|f32]` (default stories260K from the `../shared`
 * mirror or the Hub, as in tests; a directory in transformers layout, e.g. a synthetic checkpoint
 * from `deno task synth`). The prompt is the start of the repository's TinyStories text in the
 * model's tokenizer (ids beyond the model's vocabulary wrap). Ratios mean something only on an
 * otherwise idle machine: the load average is printed.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { listLinears, mapLinears } from "../models/linears.ts";
import { loadModel } from "../models/load.ts";
import { createKvCache, forward, type ForwardModel, type KvCache } from "../runners/forward.ts";
import type { LlamaWeights, LoadedModel } from "../models/types.ts";
import {
  PANEL_BUDGET,
  type WasmKernels,
  wasmKernels,
  withPackedLinears,
} from "../kernels/wasm/mod.ts";
import { quantizeCell } from "./cell.ts";
import { rtn } from "../methods/rtn.ts";
import type { QuantConfig } from "../methods/types.ts";
import { bundledDataDir } from "../testing/fixtures.ts";
import { stories260K } from "../testing/stories.ts";

/** Options of {@linkcode decodeBench}. */
export interface DecodeOptions {
  /** Registry id or model directory (default `stories260K`). */
  readonly model?: string;
  /** Prompt tokens (default 128). */
  readonly prompt?: number;
  /** Greedy tokens after the prompt (default 64). */
  readonly steps?: number;
  /** Timed pairs (default 5). */
  readonly pairs?: number;
  /** Kernel threads, the caller included (default 1). */
  readonly threads?: number;
  /** Weight bits (default 4). */
  readonly bits?: number;
  /** Group size (default 128). */
  readonly group?: number;
  /**
   * `checkpoint` (default): quantized weights rounded to the checkpoint's storage dtype, as the
   * matrix does; `f32`: kept in float32.
   */
  readonly dtype?: "checkpoint" | "f32";
  /** Where lines go (default `console.log`). */
  readonly log?: (line: string) => void;
}

/** One path's timings over the pairs. */
export interface PathSpeed {
  /** Median decode tokens/s. */
  readonly tokensPerS: number;
  /** Median prefill milliseconds. */
  readonly prefillMs: number;
}

/** What {@linkcode decodeBench} measured. */
export interface DecodeResult {
  readonly kernels: string;
  readonly threads: number;
  readonly f32: PathSpeed;
  readonly packed: PathSpeed;
  /** packed / f32 decode tokens/s. */
  readonly ratio: number;
  /** Linears run by the fused kernel, of all linears. */
  readonly fused: number;
  readonly linears: number;
  /** Greedy tokens on which both paths agree (of `steps`), in the last pair. */
  readonly sameTokens: number;
  readonly steps: number;
}

/** Runs the benchmark and prints its lines; returns the figures. */
export async function decodeBench(options: DecodeOptions = {}): Promise<DecodeResult> {
  const log = options.log ?? ((l: string) => console.log(l));
  const ref = options.model ?? "stories260K";
  const promptLen = options.prompt ?? 128;
  const steps = options.steps ?? 64;
  const pairs = options.pairs ?? 5;
  const threads = options.threads ?? 1;
  const bits = options.bits ?? 4;
  const group = options.group ?? 128;
  const model = ref === "stories260K" ? await stories260K() : await loadModel(ref);
  const c = model.config;
  if (promptLen + steps > c.maxSeqLen) {
    throw new RangeError(`prompt ${promptLen} + ${steps} steps exceed the context ${c.maxSeqLen}`);
  }
  const prompt = await promptTokens(model, promptLen);

  let fusedCalls = 0;
  const kernels = await wasmKernels({
    packed: true,
    threads,
    // Decoding reads every weight per token: both runs keep all their weights resident, so the
    // ratio compares kernels, not re-copies (the default budget bounds evaluation's memory).
    panelBudget: PANEL_BUDGET,
    onPackedMatmul: (_w, fused) => void (fused && fusedCalls++),
  });
  try {
    const q: QuantConfig = {
      wBits: bits,
      aBits: 16,
      granularity: "group",
      groupSize: group,
      symmetric: false,
    };
    const qm = options.dtype === "f32"
      ? await rtn.quantize(model, q, {}, { kernels })
      : await quantizeCell(model, rtn, {}, q, { kernels });
    const packedW = withPackedLinears(qm.weights, qm.packed);
    const f32W = materialized(qm.weights);
    const packedModel: ForwardModel = { config: c, weights: packedW.weights };
    const f32Model: ForwardModel = { config: c, weights: f32W };
    const dtypes = [
      ...new Set(listLinears(packedW.weights).map(({ matrix: m }) => m.dtype ?? "F32")),
    ];

    log(
      `${model.id}: dim ${c.dim}, ${c.nLayers} layers, vocab ${c.vocabSize}; RTN W${bits} g${group}` +
        ` (weights stored ${dtypes.join("/")}); kernels ${kernels.id}, ${threads} kernel ` +
        `thread${
          threads === 1 ? "" : "s"
        }; batch 1, prompt ${promptLen}, ${steps} greedy tokens, ` +
        `${pairs} pair${pairs === 1 ? "" : "s"}`,
    );
    log(`fused linears: ${packedW.packed} of ${packedW.linears}`);
    if (packedW.packed === 0) {
      log(
        "note: no linear runs fused (16-bit storage is rounded, which the fused kernel does not " +
          "do); pass --dtype f32 or use a float32 checkpoint",
      );
    }

    // Warm-up: weights into WASM memory (f32 panels, fused layouts).
    fusedCalls = 0;
    decodePair(f32Model, packedModel, kernels, prompt, steps, 0);
    // Every forward pass of a dense model calls each linear once: prefill plus `steps` tokens.
    const expected = packedW.packed * (steps + 1);
    const dense = packedW.weights.layers.every((l) => l.mlp.kind === "dense");
    if (dense ? fusedCalls !== expected : packedW.packed > 0 && fusedCalls === 0) {
      throw new Error(`the packed run made ${fusedCalls} fused matmuls, expected ${expected}`);
    }
    log(`fused matmuls per packed run: ${fusedCalls}`);
    const a: Run[] = [], b: Run[] = [];
    for (let i = 0; i < pairs; i++) {
      const [ra, rb] = decodePair(f32Model, packedModel, kernels, prompt, steps, i + 1);
      a.push(ra);
      b.push(rb);
    }
    const f32 = speed(a, steps), packed = speed(b, steps);
    const ta = a.at(-1)!.tokens, tb = b.at(-1)!.tokens;
    let same = 0;
    while (same < steps && ta[same] === tb[same]) same++;
    const ratio = packed.tokensPerS / f32.tokensPerS;
    const pairRatio = median(a.map((r, i) => r.decodeMs / b[i]!.decodeMs));
    log(
      `f32:    ${f32.tokensPerS.toFixed(1)} tokens/s decode (prefill ${
        f32.prefillMs.toFixed(1)
      } ms)`,
    );
    log(
      `packed: ${packed.tokensPerS.toFixed(1)} tokens/s decode (prefill ${
        packed.prefillMs.toFixed(1)
      } ms)`,
    );
    log(
      `ratio packed/f32: ${ratio.toFixed(2)}× (median of the per-pair ratios ${
        pairRatio.toFixed(2)
      }×)`,
    );
    log(`greedy tokens equal before the first difference: ${same} of ${steps}`);
    log(`load average: ${loadAverage()}`);
    return {
      kernels: kernels.id,
      threads,
      f32,
      packed,
      ratio,
      fused: packedW.packed,
      linears: packedW.linears,
      sameTokens: same,
      steps,
    };
  } finally {
    kernels.close();
  }
}

interface Run {
  readonly prefillMs: number;
  readonly decodeMs: number;
  readonly tokens: number[];
}

/** Greedy decoding of one model through its own KV cache, a token per `step()`, timed. */
class Decoder {
  readonly tokens: number[] = [];
  readonly prefillMs: number;
  decodeMs = 0;
  readonly #cache: KvCache;
  #logits: Float32Array;

  constructor(
    readonly model: ForwardModel,
    readonly kernels: WasmKernels,
    prompt: readonly number[],
    steps: number,
  ) {
    this.#cache = createKvCache(model.config, prompt.length + steps);
    const t0 = performance.now();
    this.#logits = forward(model, prompt, { cache: this.#cache, kernels, logits: "last" });
    this.prefillMs = performance.now() - t0;
  }

  /** Appends the argmax token and runs it through the model. */
  step(): void {
    const t0 = performance.now();
    const l = this.#logits;
    let best = 0;
    for (let i = 1; i < l.length; i++) if (l[i]! > l[best]!) best = i;
    this.tokens.push(best);
    this.#logits = forward(this.model, [best], {
      cache: this.#cache,
      kernels: this.kernels,
      logits: "last",
    });
    this.decodeMs += performance.now() - t0;
  }
}

/**
 * One pair: both models decode `steps` tokens after `prompt`, alternating token by token (the
 * first to go swaps every step and every pair), so a change of the machine's speed weighs on
 * both alike.
 */
function decodePair(
  a: ForwardModel,
  b: ForwardModel,
  kernels: WasmKernels,
  prompt: readonly number[],
  steps: number,
  pair: number,
): [Run, Run] {
  let da: Decoder, db: Decoder;
  if (pair % 2 === 0) {
    da = new Decoder(a, kernels, prompt, steps);
    db = new Decoder(b, kernels, prompt, steps);
  } else {
    db = new Decoder(b, kernels, prompt, steps);
    da = new Decoder(a, kernels, prompt, steps);
  }
  for (let s = 0; s < steps; s++) {
    if ((s + pair) % 2 === 0) {
      da.step();
      db.step();
    } else {
      db.step();
      da.step();
    }
  }
  return [da, db];
}

function speed(runs: Run[], steps: number): PathSpeed {
  return {
    tokensPerS: median(runs.map((r) => (steps * 1000) / r.decodeMs)),
    prefillMs: median(runs.map((r) => r.prefillMs)),
  };
}

function median(v: number[]): number {
  const s = [...v].sort((x, y) => x - y);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** The weights with every linear as a plain float32 matrix (its materialized values). */
function materialized(w: LlamaWeights): LlamaWeights {
  return mapLinears(w, (_site, m) => ({
    rows: m.rows,
    cols: m.cols,
    data: m.data.slice(),
    ...(m.dtype !== undefined ? { dtype: m.dtype } : {}),
  }));
}

/** The first `n` tokens of the bundled TinyStories text (BOS first), wrapped into the vocabulary. */
async function promptTokens(model: LoadedModel, n: number): Promise<number[]> {
  const text = await Deno.readTextFile(`${bundledDataDir()}/${TEXT}`);
  const ids = model.tokenizer.encode(text.slice(0, 20 * n), { bos: true });
  if (ids.length < n) throw new RangeError(`the prompt text has only ${ids.length} tokens`);
  return ids.slice(0, n).map((t) => t % model.config.vocabSize);
}

const TEXT = "text/tinystories/tinystories_val_head.txt";

function loadAverage(): string {
  try {
    return Deno.loadavg().map((v) => v.toFixed(2)).join(" ");
  } catch {
    return "? (needs --allow-sys=loadavg)";
  }
}

function count(flag: string, v: string | undefined, fallback: number, min: number): number {
  if (v === undefined) return fallback;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) {
    throw new RangeError(`--${flag} must be an integer ≥ ${min}, got "${v}"`);
  }
  return n;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    args: Deno.args,
    strict: true,
    options: {
      model: { type: "string", default: "stories260K" },
      prompt: { type: "string" },
      steps: { type: "string" },
      pairs: { type: "string" },
      "kernel-threads": { type: "string" },
      bits: { type: "string" },
      group: { type: "string" },
      dtype: { type: "string", default: "checkpoint" },
    },
  });
  if (values.dtype !== "checkpoint" && values.dtype !== "f32") {
    throw new RangeError(`--dtype must be checkpoint or f32, got "${values.dtype}"`);
  }
  await decodeBench({
    model: values.model,
    prompt: count("prompt", values.prompt, 128, 1),
    steps: count("steps", values.steps, 64, 1),
    pairs: count("pairs", values.pairs, 5, 1),
    threads: count("kernel-threads", values["kernel-threads"], 1, 1),
    bits: count("bits", values.bits, 4, 2),
    group: count("group", values.group, 128, 1),
    dtype: values.dtype,
  });
}

if (import.meta.main) {
  try {
    await main();
  } catch (e) {
    console.error(`error: ${e instanceof Error ? e.message : String(e)}`);
    Deno.exit(2);
  }
}
