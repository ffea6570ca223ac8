/**
 * Per-channel smoothing folded into the weights: the input of a group of linears is divided by a
 * vector `s` and the linears' weight columns are multiplied by it, so `(x/s)·(W·diag(s))ᵀ = x·Wᵀ`
 * and the full-precision model computes the same function (SmoothQuant `smooth.py`
 * `smooth_ln_fcs_llama_like`). Used by SmoothQuant and by static CrossQuant.
 *
 * Where the division goes:
 * - q/k/v input: the attention RMSNorm weight (`attnNorm /= s`);
 * - gate/up input: the MLP RMSNorm weight; in MoE blocks the router and every expert's gate and
 *   up share that input and are all scaled;
 * - down input: the rows of up (`silu(gate x) · (up x)/s = (silu(gate x) · up x)/s`), since the
 *   SwiGLU product is linear in up. SmoothQuant does not smooth down; static CrossQuant does.
 *
 * New arrays are made for everything changed; the input weights are not modified.
 *
 * @module
 */

import type { DenseMlp, LlamaLayer, LlamaWeights, Matrix } from "../models/types.ts";

/** Smoothing vectors of one block (absent: that input is not smoothed). */
export interface LayerSmoothing {
  readonly qkv?: Float32Array;
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
  const data = new Float32Array(m.data.length);
  for (let r = 0; r < m.rows; r++) {
    for (let j = 0; j < m.cols; j++) data[r * m.cols + j] = m.data[r * m.cols + j]! * s[j]!;
  }
  return { rows: m.rows, cols: m.cols, data };
}

/** `diag(1/s)·W`: row `i` divided by `s_i`. */
function divideRows(m: Matrix, s: Float32Array): Matrix {
  if (s.length !== m.rows) {
    throw new RangeError(`Smoothing vector of length ${s.length} for a matrix with ${m.rows} rows`);
  }
  const data = new Float32Array(m.data.length);
  for (let r = 0; r < m.rows; r++) {
    for (let j = 0; j < m.cols; j++) data[r * m.cols + j] = m.data[r * m.cols + j]! / s[r]!;
  }
  return { rows: m.rows, cols: m.cols, data };
}

function divide(v: Float32Array, s: Float32Array): Float32Array {
  if (s.length !== v.length) {
    throw new RangeError(`Smoothing vector of length ${s.length} for a norm of length ${v.length}`);
  }
  return v.map((x, j) => x / s[j]!);
}

function smoothMlp(mlp: DenseMlp, gateup?: Float32Array, down?: Float32Array): DenseMlp {
  let { gate, up, down: d } = mlp;
  if (gateup) {
    gate = scaleColumns(gate, gateup);
    up = scaleColumns(up, gateup);
  }
  if (down) {
    up = divideRows(up, down);
    d = scaleColumns(d, down);
  }
  return { kind: "dense", gate, up, down: d };
}

/**
 * Folds per-block smoothing vectors into the weights (see the module documentation); every
 * entry must be positive and finite. `layers[l]` may be absent or empty to leave block `l` as is.
 */
export function foldSmoothing(
  w: LlamaWeights,
  layers: readonly (LayerSmoothing | undefined)[],
): LlamaWeights {
  const out = w.layers.map((layer, l): LlamaLayer => {
    const s = layers[l];
    if (!s) return layer;
    for (const [site, v] of Object.entries(s)) {
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
        q: scaleColumns(next.q, s.qkv),
        k: scaleColumns(next.k, s.qkv),
        v: scaleColumns(next.v, s.qkv),
      };
    }
    if (s.gateup || s.down) {
      const mlpNorm = s.gateup ? divide(next.mlpNorm, s.gateup) : next.mlpNorm;
      if (next.mlp.kind === "moe" && s.down) {
        throw new RangeError("Smoothing the down input of MoE experts is not supported");
      }
      // In MoE blocks every reader of the MLP input is scaled: router, experts, shared expert
      // and its gate.
      const cols = (m: Matrix) => s.gateup ? scaleColumns(m, s.gateup) : m;
      const mlp = next.mlp.kind === "dense" ? smoothMlp(next.mlp, s.gateup, s.down) : {
        ...next.mlp,
        router: cols(next.mlp.router),
        experts: next.mlp.experts.map((e) => smoothMlp(e, s.gateup)),
        ...(next.mlp.shared ? { shared: smoothMlp(next.mlp.shared, s.gateup) } : {}),
        ...(next.mlp.sharedGate ? { sharedGate: cols(next.mlp.sharedGate) } : {}),
      };
      next = { ...next, mlpNorm, mlp };
    }
    return next;
  });
  return { ...w, layers: out };
}
