/**
 * Perplexity speed at a real model's shape, against what this machine's GEMM allows for it.
 *
 * For a checkpoint (a real one, or `deno task synth`'s of a real shape), at a context of 2048 on
 * `--threads` kernel threads:
 * 1. **GEMM rate**: every linear shape of the model (q, k, v, o, gate, up, down, the classifier)
 *    timed as one `[T × in] · [in × out]` product through the WASM kernels' `matmul` on threads,
 *    panels already in WASM memory (median of `--repeats`); the sum over the model's linears is
 *    the forward pass's GEMM time, the bound its speed is compared to.
 * 2. **Window**: one perplexity window of T tokens scored as the task scores it (final hidden
 *    states, then the classifier and log-softmax a chunk of rows at a time), once by the
 *    whole-window path (`forward.c`, one thread, block by block when the weights are streamed)
 *    and once op by op (every linear through the threaded `matmul`), alternating, median of
 *    `--repeats`. Tokens/s = (T − 1) / seconds; ratio = GEMM time / window time (1.0: nothing but
 *    the linears' products at the measured rate), and with causal attention's products (q·k and
 *    p·v, `T(T+1)/2` pairs per head) added to the bound at the same rate; norms, RoPE, SwiGLU and
 *    the softmaxes are the rest.
 *
 * Usage: `deno run -A --v8-flags=--expose-gc bench/shape_speed.ts --model DIR [--context 2048]
 * [--threads 2] [--repeats 3]`. Ratios, not seconds, are what carries to other machines; on a
 * shared machine both sides of each ratio are measured in the same run.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { loadModel } from "../models/load.ts";
import type { ForwardModel } from "../runners/forward.ts";
import type { Matrix } from "../models/types.ts";
import { listLinears } from "../models/linears.ts";
import { wasmKernels } from "../kernels/wasm/mod.ts";
import type { Kernels } from "../kernels/types.ts";
import { scoreWindowChunked, windowHidden } from "../runners/window_score.ts";
import { median } from "../core/stats.ts";

/** What {@linkcode shapeSpeed} measured. */
export interface ShapeSpeed {
  readonly model: string;
  readonly context: number;
  readonly threads: number;
  /** Seconds of every linear's product for one window (the GEMM bound). */
  readonly gemmSeconds: number;
  /** Multiply-adds of those products. */
  readonly gemmMacs: number;
  /** Seconds causal attention's products would take at the same rate (a bound with them). */
  readonly attnSeconds: number;
  readonly windowSeconds: number;
  readonly opByOpSeconds: number;
  readonly tokensPerS: number;
  readonly opByOpTokensPerS: number;
}

function time(f: () => void): number {
  const t0 = performance.now();
  f();
  return (performance.now() - t0) / 1000;
}

/** Measures `model` at `context` tokens on `threads` kernel threads (see the module doc). */
export async function shapeSpeed(
  model: ForwardModel & { readonly id: string },
  options: { context?: number; threads?: number; repeats?: number; log?: (l: string) => void } = {},
): Promise<ShapeSpeed> {
  const log = options.log ?? ((l: string) => console.log(l));
  const c = model.config;
  const T = Math.min(options.context ?? 2048, c.maxSeqLen);
  const threads = options.threads ?? 2;
  const repeats = options.repeats ?? 3;
  const k = await wasmKernels({ threads });
  try {
    // 1. The GEMM bound: each distinct shape once, times how often the model has it.
    const shapes = new Map<string, { m: Matrix; count: number }>();
    for (const { matrix } of listLinears(model.weights)) {
      const key = `${matrix.rows}x${matrix.cols}`;
      const s = shapes.get(key);
      if (s) s.count++;
      else shapes.set(key, { m: matrix, count: 1 });
    }
    const head = model.weights.lmHead;
    const headKey = `${head.rows}x${head.cols}`;
    shapes.set(headKey, { m: head, count: (shapes.get(headKey)?.count ?? 0) + 1 });
    let gemmSeconds = 0, gemmMacs = 0;
    for (const [key, { m, count }] of shapes) {
      const x = new Float32Array(T * m.cols).map((_, i) => Math.sin(i));
      const out = new Float32Array(T * m.rows);
      k.matmul(x, T, m, out); // panels into WASM memory
      const s = median(Array.from({ length: repeats }, () => time(() => k.matmul(x, T, m, out))));
      const macs = T * m.rows * m.cols;
      log(
        `  ${key} ×${count}: ${(s * 1000).toFixed(1)} ms, ${
          (2 * macs / s / 1e9).toFixed(1)
        } GFLOP/s`,
      );
      gemmSeconds += s * count;
      gemmMacs += macs * count;
    }
    // Causal attention's products (q·k and p·v over T(T+1)/2 pairs per head), at the GEMM rate.
    const attnMacs = c.nLayers * c.nHeads * c.headDim * 2 * (T * (T + 1)) / 2;
    const attnSeconds = attnMacs * gemmSeconds / gemmMacs;
    // 2. One window, both paths, alternating.
    const window = Array.from({ length: T }, (_, i) => (i * 7919 + 1) % c.vocabSize);
    const opByOp: Kernels = { ...k, windowHidden: undefined, headLogProbs: undefined };
    const score = (kk: Kernels) =>
      time(() => scoreWindowChunked(model, windowHidden(model, window, kk), window, kk));
    const whole: number[] = [], perOp: number[] = [];
    for (let r = 0; r < repeats; r++) {
      whole.push(score(k));
      perOp.push(score(opByOp));
    }
    const windowSeconds = median(whole), opByOpSeconds = median(perOp);
    const result: ShapeSpeed = {
      model: model.id,
      context: T,
      threads,
      gemmSeconds,
      gemmMacs,
      attnSeconds,
      windowSeconds,
      opByOpSeconds,
      tokensPerS: (T - 1) / windowSeconds,
      opByOpTokensPerS: (T - 1) / opByOpSeconds,
    };
    log(
      `${model.id}: context ${T}, ${threads} kernel threads; GEMM bound ${
        gemmSeconds.toFixed(2)
      } s ` +
        `(${(2 * gemmMacs / gemmSeconds / 1e9).toFixed(1)} GFLOP/s over ${
          (gemmMacs / 1e9).toFixed(1)
        } G multiply-adds)`,
    );
    const bounds = (t: number) =>
      `bound / time ${(gemmSeconds / t).toFixed(2)} (linears), ${
        ((gemmSeconds + attnSeconds) / t).toFixed(2)
      } (with attention's ${attnSeconds.toFixed(2)} s)`;
    log(
      `  whole-window path: ${windowSeconds.toFixed(2)} s, ${
        result.tokensPerS.toFixed(1)
      } tokens/s, ${bounds(windowSeconds)}`,
    );
    log(
      `  op by op:          ${opByOpSeconds.toFixed(2)} s, ${
        result.opByOpTokensPerS.toFixed(1)
      } tokens/s, ${bounds(opByOpSeconds)}`,
    );
    return result;
  } finally {
    k.close?.();
  }
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      model: { type: "string" },
      context: { type: "string" },
      threads: { type: "string" },
      repeats: { type: "string" },
    },
  });
  if (!values.model) throw new SyntaxError("--model DIR is required");
  const model = await loadModel(values.model);
  await shapeSpeed(model, {
    ...(values.context ? { context: Number(values.context) } : {}),
    ...(values.threads ? { threads: Number(values.threads) } : {}),
    ...(values.repeats ? { repeats: Number(values.repeats) } : {}),
  });
}
