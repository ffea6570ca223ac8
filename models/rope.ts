/**
 * Rotary position embeddings (RoPE), shared by the forward pass and the differentiable block:
 * the cos/sin table (float32 frequencies and angles, Llama 3 frequency scaling) and the rotation
 * of every head, in both pairings — `interleaved` (llama2.c: pairs `(2i, 2i+1)`) and `half`
 * (Hugging Face `rotate_half`: pairs `(i, i + rotaryDim/2)`), over the first `rotaryDim`
 * dimensions of each head (partial rotary). A rotation is orthogonal, so its backward pass is the rotation by
 * the opposite angle (`inverse`).
 *
 * @module
 */

import { UnsupportedConfigError } from "../core/errors.ts";
import type { LlamaConfig, RopeScaling, RopeStyle } from "./types.ts";

/** cos/sin of `pos · invFreq[i]`, `[positions][rotaryDim/2]`. */
export interface RopeTable {
  readonly positions: number;
  readonly cos: Float32Array;
  readonly sin: Float32Array;
}

const f = Math.fround;

/**
 * RoPE inverse frequencies in float32, computed as transformers does in float32:
 * `1 / θ^(2i/d)` (each operation rounded to float32), then the config's scaling (`llama3`:
 * `_compute_llama3_parameters`; `linear`: divided by the factor).
 */
export function ropeInvFreq(
  rotaryDim: number,
  theta: number,
  scaling?: RopeScaling,
): Float32Array {
  if (!Number.isInteger(rotaryDim) || rotaryDim < 2 || rotaryDim % 2 !== 0) {
    throw new RangeError(`RoPE dimension must be a positive even integer, got ${rotaryDim}`);
  }
  const half = rotaryDim / 2;
  const inv = new Float32Array(half);
  for (let i = 0; i < half; i++) inv[i] = f(1 / f(Math.pow(theta, f((2 * i) / rotaryDim))));
  if (!scaling) return inv;
  if (scaling.type === "linear") return inv.map((x) => f(x / scaling.factor));
  if (scaling.type === "longrope") {
    if (scaling.shortFactor.length !== half) {
      throw new RangeError(
        `longrope: ${scaling.shortFactor.length} short factors for ${half} frequencies`,
      );
    }
    return inv.map((_, i) =>
      f(1 / f(f(scaling.shortFactor[i]!) * f(Math.pow(theta, f((2 * i) / rotaryDim)))))
    );
  }
  const { factor, lowFreqFactor: low, highFreqFactor: high, originalMaxPositions: old } = scaling;
  const lowWavelen = old / low;
  const highWavelen = old / high;
  return inv.map((x) => {
    const wavelen = f(f(2 * Math.PI) / x);
    const scaled = wavelen > lowWavelen ? f(x / factor) : x;
    if (wavelen < highWavelen || wavelen > lowWavelen) return scaled;
    const smooth = f(f(f(old / wavelen) - low) / (high - low));
    return f(f(f(f(1 - smooth) * scaled) / factor) + f(smooth * scaled));
  });
}

/** The RoPE table for positions `0 … positions − 1` (float32 angles, as transformers). */
export function ropeTable(
  rotaryDim: number,
  theta: number,
  positions: number,
  scaling?: RopeScaling,
): RopeTable {
  const half = rotaryDim / 2;
  const inv = ropeInvFreq(rotaryDim, theta, scaling);
  const cos = new Float32Array(positions * half);
  const sin = new Float32Array(positions * half);
  for (let i = 0; i < half; i++) {
    const freq = inv[i]!;
    for (let p = 0; p < positions; p++) {
      const angle = f(p * freq);
      cos[p * half + i] = Math.cos(angle);
      sin[p * half + i] = Math.sin(angle);
    }
  }
  if (scaling?.type === "longrope" && scaling.attentionFactor !== 1) {
    const a = f(scaling.attentionFactor);
    for (let i = 0; i < cos.length; i++) {
      cos[i] = cos[i]! * a;
      sin[i] = sin[i]! * a;
    }
  }
  return { positions, cos, sin };
}

const cache = new Map<string, RopeTable>();

/**
 * A shared table covering at least `positions`; grown (never shrunk) when a longer one is asked
 * for. Entries depend only on the position, so every caller sees the same values.
 */
export function cachedRopeTable(
  rotaryDim: number,
  theta: number,
  positions: number,
  scaling?: RopeScaling,
): RopeTable {
  const key = `${rotaryDim}:${theta}:${scaling ? JSON.stringify(scaling) : ""}`;
  const t = cache.get(key);
  if (t && t.positions >= positions) return t;
  const table = ropeTable(rotaryDim, theta, Math.max(positions, t?.positions ?? 0), scaling);
  cache.set(key, table);
  return table;
}

/** The dimensions of each head a config's RoPE rotates. */
export function rotaryDims(
  c: Pick<LlamaConfig, "headDim" | "rotaryDim">,
): number {
  return c.rotaryDim ?? c.headDim;
}

/**
 * The RoPE table of a model's config covering positions `0 … positions − 1` (at least the
 * first 4096, so short calls share one table).
 */
export function configRopeTable(
  c: Pick<LlamaConfig, "headDim" | "rotaryDim" | "ropeTheta" | "ropeScaling" | "maxSeqLen">,
  positions: number,
): RopeTable {
  const s = c.ropeScaling;
  if (s?.type === "longrope" && positions > s.originalMaxPositions) {
    throw new UnsupportedConfigError(
      `longrope beyond the original ${s.originalMaxPositions} positions (${positions} asked; ` +
        `transformers switches to the long factors there) is not supported yet`,
    );
  }
  return cachedRopeTable(
    rotaryDims(c),
    c.ropeTheta,
    Math.max(
      positions,
      Math.min(c.maxSeqLen, s?.type === "longrope" ? s.originalMaxPositions : 4096, 4096),
    ),
    c.ropeScaling,
  );
}

/**
 * Rotates every head of `v` (`[T][heads·headDim]`, positions `start … start+T−1`) in place: by
 * `+angle`, or by `−angle` with `inverse`. Only the first `rotaryDim` dimensions of each head
 * turn (partial rotary); the table must be built for `rotaryDim`.
 */
export function applyRope(
  v: Float32Array | Float64Array,
  T: number,
  heads: number,
  headDim: number,
  start: number,
  table: RopeTable,
  style: RopeStyle,
  inverse = false,
  rotaryDim = headDim,
): void {
  if (table.positions < start + T) {
    throw new RangeError(`RoPE table holds ${table.positions} positions, ${start + T} needed`);
  }
  if (table.cos.length !== table.positions * (rotaryDim / 2)) {
    throw new RangeError(
      `RoPE table has ${table.cos.length / table.positions} frequencies, ${rotaryDim / 2} needed`,
    );
  }
  const half = rotaryDim / 2;
  const stride = heads * headDim;
  const sign = inverse ? -1 : 1;
  for (let t = 0; t < T; t++) {
    const row = (start + t) * half;
    for (let h = 0; h < heads; h++) {
      const base = t * stride + h * headDim;
      for (let i = 0; i < half; i++) {
        const cs = table.cos[row + i]!;
        const sn = sign * table.sin[row + i]!;
        const a = style === "interleaved" ? base + 2 * i : base + i;
        const b = style === "interleaved" ? a + 1 : a + half;
        const x0 = v[a]!;
        const x1 = v[b]!;
        v[a] = x0 * cs - x1 * sn;
        v[b] = x0 * sn + x1 * cs;
      }
    }
  }
}
