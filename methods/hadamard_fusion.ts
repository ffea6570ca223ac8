/**
 * QuaRot's extra Hadamard transforms on the inputs of o_proj and down_proj (spcl/QuaRot
 * `fake_quant/rotation_utils.py` `rotate_mlp_output`, `rotate_ov_proj`; `fake_quant/main.py`
 * `online_full_had` / `online_partial_had`): an orthogonal transform of the linear's input is
 * applied online in the forward pass (before the activation quantizer; `models/online_rotation.ts`)
 * and its transpose is fused into the weight, so the float model is unchanged while the quantized
 * input has its outliers spread out.
 *
 * - down (n = intermediate size): W_down ← W_down·M_nᵀ, online x ← M_n·x (`hadamard`).
 * - o (n = heads·head_dim): v_proj's output rows are transformed per KV head by the Sylvester
 *   H_hd/√hd (and its bias, which QuaRot's Llama-only code never has), o_proj's input by the full
 *   M_nᵀ, and the online transform before o is the Hadamard across heads, (M_heads ⊗ I_hd)·x
 *   (`cross-head`). Attention mixes the (transformed) values of a head linearly, so the head-wise
 *   transform reaches o's input, and (M_heads ⊗ I)(I ⊗ H_hd/√hd) = M_n when both factors come from
 *   the same K (`crossHeadFactorises`); the product with o's M_nᵀ is then the identity. Under
 *   grouped-query attention each KV head's transform reaches all the query heads that read it.
 *
 * Our extension, recorded per site (`onlineRotation: "hadamard" | "orthogonal"`): where QuaRot's
 * transform does not exist or is not exact — an intermediate size with no Hadamard of that order
 * (Qwen2.5-0.5B's 4864 = 76·64), a head count with none (14), a head count whose K differs from
 * that of heads·head_dim (20 heads: K = 20 against K = 40, where QuaRot's fusion is wrong), or a
 * head_dim that is not a power of two — the site gets a seeded random orthogonal matrix R of the
 * input's size instead (QR of a Gaussian matrix, `randomOrthogonal`): W ← W·Rᵀ and online x ← R·x
 * (`matrix`, a dense product). For o, v_proj is then left as it is. R is rounded to float32 once
 * and the fused product uses those same values, so the online and fused factors match.
 *
 * Fusion products are taken in float64 and rounded once to float32 (QuaRot fuses these in
 * float32). New arrays are made for everything changed; the input is not modified.
 *
 * @module
 */

import {
  applyHeadwiseHadamard,
  crossHeadFactorises,
  fuseHadamardIntoInput,
  fuseHeadwiseHadamardIntoOutput,
  getHadK,
  randomOrthogonal,
} from "../core/hadamard.ts";
import type {
  DenseMlp,
  LlamaConfig,
  LlamaLayer,
  LlamaWeights,
  Matrix,
  OnlineRotation,
} from "../models/types.ts";

/** What one site's online transform is, for the row. */
export interface OnlineSiteRecord {
  /** `hadamard` (QuaRot's transform) or `orthogonal` (our dense fallback). */
  readonly onlineRotation: "hadamard" | "orthogonal";
  /** The transform and its table ids, or the fallback's seed. */
  readonly id: string;
  /** Why the site fell back to a dense orthogonal matrix. */
  readonly reason?: string;
}

/** The result of {@linkcode fuseOnlineRotations}. */
export interface OnlineFusion {
  /** The weights with the transforms fused and `online` set. */
  readonly weights: LlamaWeights;
  readonly o: OnlineSiteRecord;
  readonly down: OnlineSiteRecord;
}

/** Seeds of the dense fallbacks: the method's seed plus these offsets (wrapped to 32 bits). */
export const FALLBACK_SEED_OFFSET = { o: 1, down: 2 } as const;

/**
 * Fuses QuaRot's extra transforms of the o and down inputs into the weights and attaches their
 * online halves (see the module documentation). `seed` seeds the dense fallbacks.
 *
 * @throws {TypeError} for MoE blocks or weights that already carry online rotations.
 */
export function fuseOnlineRotations(
  config: LlamaConfig,
  weights: LlamaWeights,
  seed: number,
): OnlineFusion {
  if (weights.online) throw new TypeError("fuseOnlineRotations: the model is already rotated");
  const { nHeads, nKvHeads, headDim, dim } = config;
  const width = nHeads * headDim;
  const hidden = config.hiddenDim;

  // Before down.
  let down: OnlineSiteRecord;
  let downRot: OnlineRotation;
  let fuseDown: (m: Matrix) => Matrix;
  const hadDown = getHadK(hidden);
  if (hadDown) {
    down = { onlineRotation: "hadamard", id: `M_${hidden} = ${hadDown.id}` };
    downRot = { kind: "hadamard", n: hidden };
    fuseDown = (m) => ({
      rows: m.rows,
      cols: m.cols,
      data: fuseHadamardIntoInput(m.data.slice(), m.rows, m.cols),
    });
  } else {
    const s = fallbackSeed(seed, FALLBACK_SEED_OFFSET.down);
    const r = Float32Array.from(randomOrthogonal(hidden, s));
    down = {
      onlineRotation: "orthogonal",
      id: `qr-gaussian-${hidden} seed ${s}`,
      reason: `no Hadamard transform of order ${hidden} (intermediate size)`,
    };
    downRot = { kind: "matrix", n: hidden, matrix: r };
    fuseDown = (m) => fuseMatrixIntoInput(m, r);
  }

  // Before o (v_proj's output side too when the Hadamard factorises).
  let o: OnlineSiteRecord;
  let oRot: OnlineRotation;
  let fuseVO: (layer: LlamaLayer) => Partial<LlamaLayer>;
  if (crossHeadFactorises(nHeads, headDim)) {
    const heads = getHadK(nHeads)!;
    const full = getHadK(width)!;
    o = {
      onlineRotation: "hadamard",
      id: `(M_${nHeads} ⊗ I_${headDim}) online, M_${nHeads} = ${heads.id}; v_proj ← ` +
        `(I_${nKvHeads} ⊗ H_${headDim}/√${headDim})·W; o_proj ← W·M_${width}ᵀ, M_${width} = ${full.id}`,
    };
    oRot = { kind: "cross-head", heads: nHeads, headDim };
    fuseVO = (layer) => {
      const v = layer.v;
      const vData = fuseHeadwiseHadamardIntoOutput(v.data.slice(), v.rows, v.cols, headDim);
      return {
        v: { rows: v.rows, cols: v.cols, data: vData },
        ...(layer.vBias
          ? { vBias: applyHeadwiseHadamard(layer.vBias.slice(), headDim, nKvHeads) }
          : {}),
        o: {
          rows: layer.o.rows,
          cols: width,
          data: fuseHadamardIntoInput(layer.o.data.slice(), layer.o.rows, width),
        },
      };
    };
  } else {
    const s = fallbackSeed(seed, FALLBACK_SEED_OFFSET.o);
    const r = Float32Array.from(randomOrthogonal(width, s));
    o = {
      onlineRotation: "orthogonal",
      id: `qr-gaussian-${width} seed ${s}; v_proj unchanged`,
      reason: crossHeadReason(nHeads, headDim),
    };
    oRot = { kind: "matrix", n: width, matrix: r };
    fuseVO = (layer) => ({ o: fuseMatrixIntoInput(layer.o, r) });
  }

  const layers = weights.layers.map((layer, l): LlamaLayer => {
    if (layer.mlp.kind !== "dense") {
      throw new TypeError(`fuseOnlineRotations: layer ${l} is a Mixture-of-Experts block`);
    }
    if (layer.o.cols !== width || layer.mlp.down.cols !== hidden || layer.v.cols !== dim) {
      throw new RangeError(`fuseOnlineRotations: layer ${l} does not have the config's shapes`);
    }
    const mlp: DenseMlp = layer.mlp;
    return { ...layer, ...fuseVO(layer), mlp: { ...mlp, down: fuseDown(mlp.down) } };
  });
  return { weights: { ...weights, layers, online: { o: oRot, down: downRot } }, o, down };
}

/** `W·Rᵀ` for an orthogonal `R` (`[n][n]`, n = W's columns): each row w becomes R·w. */
export function fuseMatrixIntoInput(m: Matrix, r: Float32Array): Matrix {
  const n = m.cols;
  if (r.length !== n * n) {
    throw new RangeError(`fuseMatrixIntoInput: a ${n}×${n} matrix holds ${r.length} values`);
  }
  const src = m.data;
  const data = new Float32Array(src.length);
  for (let row = 0; row < m.rows; row++) {
    const o = row * n;
    for (let i = 0; i < n; i++) {
      let s = 0;
      for (let j = 0; j < n; j++) s += r[i * n + j]! * src[o + j]!;
      data[o + i] = s;
    }
  }
  return { rows: m.rows, cols: n, data };
}

function fallbackSeed(seed: number, offset: number): number {
  return (seed + offset) | 0;
}

function crossHeadReason(nHeads: number, headDim: number): string {
  if ((headDim & (headDim - 1)) !== 0) return `head_dim ${headDim} is not a power of two`;
  const kHeads = getHadK(nHeads)?.k;
  if (kHeads === undefined) return `no Hadamard transform of order ${nHeads} (heads)`;
  const kFull = getHadK(nHeads * headDim)?.k;
  return `the Hadamard of ${nHeads} heads (K = ${kHeads}) is not a factor of that of ` +
    `${nHeads * headDim} = heads·head_dim (K = ${
      kFull ?? "none"
    }): QuaRot's v/o fusion is not exact`;
}
