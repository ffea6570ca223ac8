/**
 * Per-channel smoothing folded into the weights: the input of a group of linears is divided by a
 * vector `s` and the linears' weight columns are multiplied by it, so `(x/s)·(W·diag(s))ᵀ = x·Wᵀ`
 * and the full-precision model computes the same function (SmoothQuant `smooth.py`
 * `smooth_ln_fcs_llama_like`; AWQ `scale.py` `scale_ln_fcs` / `scale_fc_fc`). Used by
 * SmoothQuant, static CrossQuant and AWQ.
 *
 * Where the division goes:
 * - q/k/v input: the attention norm weight (and a LayerNorm's bias): `attnNorm /= s`;
 * - gate/up input: the MLP norm weight (and bias); in MoE blocks the router and every expert's
 *   gate and up share that input and are all scaled;
 * - o input (`o`): the rows of v and its bias, per output feature (valid when v's outputs reach
 *   o's inputs one to one: no grouped-query attention, AWQ's `v_proj.weight.shape ==
 *   o_proj.weight.shape` rule);
 * - down input: the rows of up and its bias (`act(gate x) · (up x)/s = (act(gate x) · up x)/s`,
 *   since the gated product is linear in up); in an ungated ReLU MLP the rows of the first
 *   projection (ReLU(z/s) = ReLU(z)/s for s > 0). SmoothQuant does not smooth down; static
 *   CrossQuant and AWQ do.
 *
 * New arrays are made for everything changed; the input weights are not modified.
 *
 * @module
 */

import type { DenseMlp, LlamaConfig, LlamaLayer, LlamaWeights, Matrix } from "../models/types.ts";

/** Smoothing vectors of one block (absent: that input is not smoothed). */
export interface LayerSmoothing {
  readonly qkv?: Float32Array;
  readonly o?: Float32Array;
  readonly gateup?: Float32Array;
  readonly down?: Float32Array;
}

/** `W·diag(s)`: column `j` times `s_j`. */
export function scaleColumns(m: Matrix, s: Float32Array): Matrix {
  if (s.length !== m.cols) {
    throw new RangeError(
      `Smoothing vector of length ${s.length} for a matrix with ${m.cols} columns`,
    );
  }
  const src = m.data;
  const data = new Float32Array(src.length);
  for (let r = 0; r < m.rows; r++) {
    for (let j = 0; j < m.cols; j++) data[r * m.cols + j] = src[r * m.cols + j]! * s[j]!;
  }
  return { rows: m.rows, cols: m.cols, data };
}

/** `diag(1/s)·W`: row `i` divided by `s_i`. */
export function divideRows(m: Matrix, s: Float32Array): Matrix {
  if (s.length !== m.rows) {
    throw new RangeError(`Smoothing vector of length ${s.length} for a matrix with ${m.rows} rows`);
  }
  const src = m.data;
  const data = new Float32Array(src.length);
  for (let r = 0; r < m.rows; r++) {
    for (let j = 0; j < m.cols; j++) data[r * m.cols + j] = src[r * m.cols + j]! / s[r]!;
  }
  return { rows: m.rows, cols: m.cols, data };
}

function divide(v: Float32Array, s: Float32Array): Float32Array {
  if (s.length !== v.length) {
    throw new RangeError(`Smoothing vector of length ${s.length} for a norm of length ${v.length}`);
  }
  return v.map((x, j) => x / s[j]!);
}

function smoothMlp(
  mlp: DenseMlp,
  config: SmoothingConfig,
  gateup?: Float32Array,
  down?: Float32Array,
): DenseMlp {
  let { gate, up, down: d, upBias } = mlp;
  if (gateup) {
    if (gate) gate = scaleColumns(gate, gateup);
    up = scaleColumns(up, gateup);
  }
  if (down) {
    if (!gate && (config.mlpAct ?? "silu") !== "relu") {
      throw new RangeError(
        `Smoothing the down input of an ungated ${config.mlpAct ?? "silu"} MLP is not exact ` +
          `(only ReLU commutes with a positive scale)`,
      );
    }
    up = divideRows(up, down);
    if (upBias) upBias = divide(upBias, down);
    d = scaleColumns(d, down);
  }
  return {
    ...mlp,
    ...(gate ? { gate } : {}),
    up,
    down: d,
    ...(upBias ? { upBias } : {}),
  };
}

/** The config fields smoothing depends on. */
export type SmoothingConfig = Partial<Pick<LlamaConfig, "mlpAct" | "nHeads" | "nKvHeads">>;

/**
 * Folds per-block smoothing vectors into the weights (see the module documentation); every
 * entry must be positive and finite. `layers[l]` may be absent or empty to leave block `l` as is.
 */
export function foldSmoothing(
  w: LlamaWeights,
  layers: readonly (LayerSmoothing | undefined)[],
  config: SmoothingConfig = {},
): LlamaWeights {
  const out = w.layers.map((layer, l): LlamaLayer => {
    const s = layers[l];
    if (!s) return layer;
    for (const [site, v] of Object.entries(s)) {
      if (v === undefined) continue;
      const bad = (v as Float32Array).findIndex((x) => !(x > 0 && Number.isFinite(x)));
      if (bad >= 0) {
        throw new RangeError(
          `Smoothing factor ${bad} of layer ${l} (${site} input) must be positive and finite, got ${
            (v as Float32Array)[bad]
          }`,
        );
      }
    }
    let next: LlamaLayer = layer;
    if (s.qkv) {
      next = {
        ...next,
        attnNorm: divide(next.attnNorm, s.qkv),
        ...(next.attnNormBias ? { attnNormBias: divide(next.attnNormBias, s.qkv) } : {}),
        q: scaleColumns(next.q, s.qkv),
        k: scaleColumns(next.k, s.qkv),
        v: scaleColumns(next.v, s.qkv),
      };
    }
    if (s.o) {
      if (next.v.rows !== next.o.cols) {
        throw new RangeError(
          `Smoothing the o input of layer ${l} needs v's ${next.v.rows} outputs to match o's ` +
            `${next.o.cols} inputs (no grouped-query attention)`,
        );
      }
      next = {
        ...next,
        v: divideRows(next.v, s.o),
        ...(next.vBias ? { vBias: divide(next.vBias, s.o) } : {}),
        o: scaleColumns(next.o, s.o),
      };
    }
    if (s.gateup || s.down) {
      const mlpNorm = s.gateup ? divide(next.mlpNorm, s.gateup) : next.mlpNorm;
      const mlpNormBias = s.gateup && next.mlpNormBias
        ? divide(next.mlpNormBias, s.gateup)
        : next.mlpNormBias;
      if (next.mlp.kind === "moe" && s.down) {
        throw new RangeError("Smoothing the down input of MoE experts is not supported");
      }
      // In MoE blocks every reader of the MLP input is scaled: router, experts, shared expert
      // and its gate.
      const cols = (m: Matrix) => s.gateup ? scaleColumns(m, s.gateup) : m;
      const mlp = next.mlp.kind === "dense" ? smoothMlp(next.mlp, config, s.gateup, s.down) : {
        ...next.mlp,
        router: cols(next.mlp.router),
        experts: next.mlp.experts.map((e) => smoothMlp(e, config, s.gateup)),
        ...(next.mlp.shared ? { shared: smoothMlp(next.mlp.shared, config, s.gateup) } : {}),
        ...(next.mlp.sharedGate ? { sharedGate: cols(next.mlp.sharedGate) } : {}),
      };
      next = { ...next, mlpNorm, ...(mlpNormBias ? { mlpNormBias } : {}), mlp };
    }
    return next;
  });
  return { ...w, layers: out };
}
