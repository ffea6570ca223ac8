/**
 * QuaRot's residual rotation, `rotate_model` without the extra Hadamards (spcl/QuaRot
 * `fake_quant/rotation_utils.py`): one orthogonal d×d matrix Q (d = hidden size) rotates the
 * residual stream, h ↦ h·Q for a row h, and is fused into every weight that writes to or reads from
 * it, so a model whose norms were fused first (`norm_fusion.ts`) computes the same function:
 *
 * - embeddings (and learned positions): E ← E·Q;
 * - readers of the stream, q/k/v, gate/up and lm_head: W ← W·Q;
 * - writers, o and down: W ← Qᵀ·W and a bias b ← Qᵀ·b (q/k/v and gate/up biases are unchanged:
 *   only their input is rotated).
 *
 * Q is `rotate_mode` "hadamard" (QuaRot's default: Q = diag(ε)·M_dᵀ, random signs ε, the
 * normalised Hadamard M_d of `core/hadamard.ts`) or "random" (the orthogonal factor of a Gaussian
 * matrix), both drawn from our seeded generator (`ROTATION_RNG`), not torch's, so the seed and the
 * Hadamard id are what a row records. A hidden size with no Hadamard transform (no K·2^m
 * factorisation, where QuaRot's `get_hadK` fails its assert) falls back to "random", and says so.
 *
 * Arithmetic: every product is taken in float64 and rounded once to float32 (QuaRot rotates in
 * float64 and casts back to the checkpoint's dtype). With a Hadamard Q the products use the fast
 * transform: W·Q replaces each row w by M_d·(ε ⊙ w), and Qᵀ·W = M_d·diag(ε)·W.
 *
 * @module
 */

import {
  applyHadamard,
  fuseHadamardIntoInput,
  fuseHadamardIntoOutput,
  getHadK,
  randomHadamardQ,
  randomOrthogonal,
  ROTATION_RNG,
} from "../core/hadamard.ts";
import type { DenseMlp, LlamaLayer, LlamaWeights, Matrix } from "../models/types.ts";

/** QuaRot's `rotate_mode`. */
export type RotateMode = "hadamard" | "random";

/** The residual rotation Q and how it was drawn. */
export interface ResidualRotation {
  /** The hidden size. */
  readonly d: number;
  /** How Q was drawn (after any fallback). */
  readonly mode: RotateMode;
  /** The mode that was asked for. */
  readonly requested: RotateMode;
  readonly seed: number;
  /** Q, d×d row-major, float64. */
  readonly matrix: Float64Array;
  /** The signs ε when Q = diag(ε)·M_dᵀ (the fast path uses them). */
  readonly signs?: Int8Array;
  /** What Q is, to record: `diag(ε)·M_dᵀ, M_d = <Hadamard id>` or `qr-gaussian-<d>`. */
  readonly id: string;
}

/**
 * Draws the residual rotation of a hidden size `d`: {@linkcode randomHadamardQ} for "hadamard"
 * (or "random" when d has no Hadamard transform), {@linkcode randomOrthogonal} for "random".
 */
export function residualRotation(d: number, mode: RotateMode, seed: number): ResidualRotation {
  if (mode === "hadamard" && getHadK(d) !== undefined) {
    const q = randomHadamardQ(d, seed);
    return hadamardRotationFromSigns(q.signs, seed, q.matrix);
  }
  return {
    d,
    mode: "random",
    requested: mode,
    seed,
    matrix: randomOrthogonal(d, seed),
    id: `qr-gaussian-${d} (${ROTATION_RNG})`,
  };
}

/**
 * The Hadamard rotation Q = diag(ε)·M_dᵀ of given signs (d = `signs.length`), as
 * {@linkcode residualRotation} builds it from drawn ones; for tests that supply their own ε.
 *
 * @throws {RangeError} if d has no Hadamard transform or a sign is not ±1.
 */
export function hadamardRotationFromSigns(
  signs: Int8Array,
  seed = -1,
  matrix?: Float64Array,
): ResidualRotation {
  const d = signs.length;
  const had = getHadK(d);
  if (!had) throw new RangeError(`hadamardRotationFromSigns: no Hadamard transform of order ${d}`);
  if (signs.some((s) => s !== 1 && s !== -1)) {
    throw new RangeError("hadamardRotationFromSigns: signs must be ±1");
  }
  let q = matrix;
  if (!q) {
    // Row i of Q is ε_i times row i of M_dᵀ, i.e. M_d·(ε_i e_i) written as a row.
    q = new Float64Array(d * d);
    for (let i = 0; i < d; i++) q[i * d + i] = signs[i]!;
    applyHadamard(q, d, d);
  }
  return {
    d,
    mode: "hadamard",
    requested: "hadamard",
    seed,
    matrix: q,
    signs,
    id: `diag(ε)·M_dᵀ, M_d = ${had.id}`,
  };
}

/** `W·Q` for a reader of the residual stream (`W` is `[out][d]`). */
export function rotateInput(m: Matrix, r: ResidualRotation): Matrix {
  const { d } = r;
  if (m.cols !== d) throw new RangeError(`rotateInput: ${m.cols} columns, expected ${d}`);
  const src = m.data;
  if (r.signs) {
    const data = new Float32Array(src.length);
    for (let o = 0; o < m.rows; o++) {
      for (let j = 0; j < d; j++) data[o * d + j] = src[o * d + j]! * r.signs[j]!;
    }
    return { rows: m.rows, cols: d, data: fuseHadamardIntoInput(data, m.rows, d) };
  }
  const q = r.matrix;
  const data = new Float32Array(src.length);
  const acc = new Float64Array(d);
  for (let o = 0; o < m.rows; o++) {
    acc.fill(0);
    for (let i = 0; i < d; i++) {
      const w = src[o * d + i]!;
      if (w === 0) continue;
      for (let j = 0; j < d; j++) acc[j] = acc[j]! + w * q[i * d + j]!;
    }
    data.set(acc, o * d);
  }
  return { rows: m.rows, cols: d, data };
}

/** `Qᵀ·W` for a writer to the residual stream (`W` is `[d][in]`). */
export function rotateOutput(m: Matrix, r: ResidualRotation): Matrix {
  const { d } = r;
  if (m.rows !== d) throw new RangeError(`rotateOutput: ${m.rows} rows, expected ${d}`);
  const n = m.cols;
  const src = m.data;
  if (r.signs) {
    const data = new Float32Array(src.length);
    for (let k = 0; k < d; k++) {
      const s = r.signs[k]!;
      for (let c = 0; c < n; c++) data[k * n + c] = src[k * n + c]! * s;
    }
    return { rows: d, cols: n, data: fuseHadamardIntoOutput(data, d, n) };
  }
  const q = r.matrix;
  const data = new Float32Array(src.length);
  const acc = new Float64Array(n);
  for (let i = 0; i < d; i++) {
    acc.fill(0);
    for (let k = 0; k < d; k++) {
      const qki = q[k * d + i]!;
      for (let c = 0; c < n; c++) acc[c] = acc[c]! + qki * src[k * n + c]!;
    }
    data.set(acc, i * n);
  }
  return { rows: d, cols: n, data };
}

/** `Qᵀ·b` for the bias of a writer to the residual stream. */
export function rotateBias(b: Float32Array, r: ResidualRotation): Float32Array {
  return rotateOutput({ rows: r.d, cols: 1, data: b }, r).data;
}

/**
 * The weights with the residual stream rotated by `r` (see the module documentation). A tied
 * classifier comes out untied (embedding and lm_head are rotated separately). New arrays are made
 * for everything changed; the input is not modified.
 *
 * @throws {TypeError} for MoE blocks (their routers and experts are not rotated here).
 */
export function rotateResidual(w: LlamaWeights, r: ResidualRotation): LlamaWeights {
  const layers = w.layers.map((layer, l): LlamaLayer => {
    if (layer.mlp.kind !== "dense") {
      throw new TypeError(`rotateResidual: layer ${l} is a Mixture-of-Experts block`);
    }
    const mlp: DenseMlp = layer.mlp;
    return {
      ...layer,
      q: rotateInput(layer.q, r),
      k: rotateInput(layer.k, r),
      v: rotateInput(layer.v, r),
      o: rotateOutput(layer.o, r),
      ...(layer.oBias ? { oBias: rotateBias(layer.oBias, r) } : {}),
      mlp: {
        ...mlp,
        ...(mlp.gate ? { gate: rotateInput(mlp.gate, r) } : {}),
        up: rotateInput(mlp.up, r),
        down: rotateOutput(mlp.down, r),
        ...(mlp.downBias ? { downBias: rotateBias(mlp.downBias, r) } : {}),
      },
    };
  });
  return {
    ...w,
    embed: rotateInput(w.embed, r),
    ...(w.positions ? { positions: rotateInput(w.positions, r) } : {}),
    layers,
    lmHead: rotateInput(w.lmHead, r),
  };
}
