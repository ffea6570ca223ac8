/**
 * Activation quantizers: fake quantization of the inputs of linear layers, applied in the forward
 * pass of weight-activation cells (W8A8, W4A8, W4A4; SmoothQuant's and CrossQuant's quantizers).
 *
 * Two kernels, each simulating integer arithmetic in float32 ("fake quantization": the value a
 * dequantized integer activation would have):
 * - `uniform`: one step per token (dynamic, SmoothQuant `quantize_activation_per_token_absmax`),
 *   per tensor (dynamic: the whole call, i.e. the evaluation window; in decoding one token), or per
 *   tensor with a range calibrated beforehand (static, SmoothQuant's O3). Symmetric absmax:
 *   `Δ = max|x| / (2^(b−1) − 1)`, codes in `[−(2^(b−1) − 1), 2^(b−1) − 1]`; asymmetric min-max
 *   with zero in range, codes in `[0, 2^b − 1]` (the weight quantizer's convention, `core/quantizer.ts`).
 * - `crossquant` (CrossQuant, arXiv 2410.07505): one step per element,
 *   `Δ_ij = t_i^α · c_j^(1−α) / (2^(b−1) − 1)`, with `t_i` the absolute maximum of token `i` and
 *   `c_j` that of channel `j` (over the current call, or calibrated: see {@linkcode SiteQuant}).
 *   α = 1 is per-token quantization. The paper's placement of α (on the token or the channel factor)
 *   could not be checked against its equation; we put α on the token factor (our assumption).
 *
 * Floors (no division by zero): an absolute maximum below `1e-5` is raised to `1e-5` before it
 * sets a step, as SmoothQuant's `clamp(min=1e-5)`; an asymmetric range narrower than `1e-5` is
 * widened to `1e-5`. A clipping ratio `clip ∈ (0, 1]` shrinks the range (or `t_i`) before the step
 * is computed; values beyond it saturate at the extreme codes.
 * Rounding is half-to-even, as `torch.round`. Steps are rounded to float32.
 *
 * The quantization kernel (CrossQuant's term) is the set of elements that quantize to zero; the
 * functions here count it when given a {@linkcode ZeroCounter}.
 *
 * @module
 */

import { roundHalfEven } from "./quantizer.ts";

/** Smallest and largest activation bit-widths; 16 and above means unquantized. */
export const MIN_ACT_BITS = 2;
/** Activation bit-widths at or above this are not quantized. */
export const FLOAT_ACT_BITS = 16;

/** Floor of absolute maxima and ranges before they set a step. */
export const ACT_FLOOR = 1e-5;

/** How activation steps are chosen. */
export interface ActQuantOptions {
  /** One step per token, or one per tensor. */
  readonly granularity: "token" | "tensor";
  /** Per-tensor range calibrated beforehand (requires `granularity: "tensor"`). */
  readonly static: boolean;
  /** Symmetric absmax (true) or asymmetric min-max with zero in range (false). */
  readonly symmetric: boolean;
  /** Clipping ratio in (0, 1] applied to the range. */
  readonly clip: number;
  /** Also quantize the q, k and v projection outputs (the inputs of the attention products). */
  readonly bmm: boolean;
}

/** Per-token dynamic symmetric absmax without clipping: SmoothQuant's default. */
export const DEFAULT_ACT_OPTIONS: ActQuantOptions = {
  granularity: "token",
  static: false,
  symmetric: true,
  clip: 1,
  bmm: false,
};

/** The four places a Llama block quantizes activations: inputs of q/k/v, o, gate/up and down. */
export const ACT_SITES = ["qkv", "o", "gateup", "down"] as const;
/** One of {@linkcode ACT_SITES}. */
export type ActSite = typeof ACT_SITES[number];

/** Calibrated data of one quantization site. */
export interface SiteQuant {
  /** Static per-tensor range `[lo, hi]` (`uniform` kernel with `static`). */
  readonly range?: { readonly lo: number; readonly hi: number };
  /** Calibrated per-channel absolute maxima `c` (`crossquant`; absent: from the current call). */
  readonly channelMax?: Float32Array;
  /**
   * Per-channel factors folded out of this input: the runtime input is the original one divided
   * by them (static CrossQuant folds `c^(1−α)` into the preceding norm or linear). The quantizer
   * works in the original units, so folding does not change the result.
   */
  readonly folded?: Float32Array;
}

/** The activation quantization of a model, carried with its weights (`LlamaWeights.activations`). */
export interface ActivationQuantization {
  readonly bits: number;
  readonly kernel: "uniform" | "crossquant";
  readonly options: ActQuantOptions;
  /** CrossQuant's exponent. */
  readonly alpha?: number;
  /** Activation bits of MoE routers' input when it differs from the experts' (EAQuant: 8). */
  readonly routerBits?: number;
  /** Per layer, calibrated data of each site (static ranges, CrossQuant channel maxima). */
  readonly layers?: readonly Readonly<Partial<Record<ActSite, SiteQuant>>>[];
}

/** Counts elements that quantize to zero, per site. */
export class ZeroCounter {
  /** Zero-quantized elements by site. */
  readonly zeros: Record<string, number> = {};
  /** All quantized elements by site. */
  readonly total: Record<string, number> = {};

  /** Adds `zeros` of `total` elements at `site`. */
  add(site: string, zeros: number, total: number): void {
    this.zeros[site] = (this.zeros[site] ?? 0) + zeros;
    this.total[site] = (this.total[site] ?? 0) + total;
  }

  /** Fraction over all sites, NaN when nothing was counted. */
  fraction(site?: string): number {
    if (site !== undefined) return (this.zeros[site] ?? 0) / (this.total[site] ?? NaN);
    let z = 0, n = 0;
    for (const k of Object.keys(this.total)) {
      z += this.zeros[k]!;
      n += this.total[k]!;
    }
    return n ? z / n : NaN;
  }
}

/** Checks an activation configuration; throws a `RangeError` naming the bad field. */
export function validateActQuant(bits: number, o: ActQuantOptions): void {
  if (!Number.isInteger(bits) || bits < MIN_ACT_BITS || bits > FLOAT_ACT_BITS) {
    throw new RangeError(
      `Activation bits must be an integer in [${MIN_ACT_BITS}, ${FLOAT_ACT_BITS}] ` +
        `(${FLOAT_ACT_BITS} = unquantized), got ${bits}`,
    );
  }
  if (!(o.clip > 0 && o.clip <= 1)) {
    throw new RangeError(`Activation clipping ratio must be in (0, 1], got ${o.clip}`);
  }
  if (o.static && o.granularity !== "tensor") {
    throw new RangeError("Static activation ranges are per tensor: set granularity to tensor");
  }
}

/**
 * The quantizer of the attention products' inputs (q, k, v outputs) when `aq.options.bmm` is set:
 * the uniform kernel, per token and dynamic, with `aq`'s bits, symmetry and clipping.
 */
export function bmmQuantization(aq: ActivationQuantization): ActivationQuantization {
  return {
    ...aq,
    kernel: "uniform",
    options: { ...aq.options, granularity: "token", static: false },
  };
}

/** The quantizer of a MoE router's own input (EAQuant's `routerBits`): `aq` at those bits. */
export function routerQuantization(
  aq: ActivationQuantization,
  bits: number,
): ActivationQuantization {
  return { ...aq, bits };
}

/** Symmetric step `max(m, floor) / qmax` in float32. */
function symStep(m: number, qmax: number): number {
  return Math.fround(Math.max(m, ACT_FLOOR) / qmax);
}

/** `[lo, hi]` of `x[from..to)`, widened to hold zero. */
function range(x: Float32Array, from: number, to: number): { lo: number; hi: number } {
  let lo = 0, hi = 0;
  for (let i = from; i < to; i++) {
    const v = x[i]!;
    if (v < lo) lo = v;
    else if (v > hi) hi = v;
  }
  return { lo, hi };
}

/**
 * Fake-quantizes `x[from..to)` into `out` with one step: symmetric (`lo` unused, `hi` = absmax)
 * or asymmetric over `[lo, hi]`; returns the number of zero results.
 */
function quantizeSpan(
  x: Float32Array,
  out: Float32Array,
  from: number,
  to: number,
  bits: number,
  symmetric: boolean,
  lo: number,
  hi: number,
): number {
  let zeros = 0;
  if (symmetric) {
    const qmax = 2 ** (bits - 1) - 1;
    const step = symStep(Math.max(-lo, hi), qmax);
    for (let i = from; i < to; i++) {
      let q = roundHalfEven(x[i]! / step);
      q = q < -qmax ? -qmax : q > qmax ? qmax : q;
      if (q === 0) zeros++;
      out[i] = q * step;
    }
    return zeros;
  }
  const maxq = 2 ** bits - 1;
  const scale = Math.fround(Math.max(hi - lo, ACT_FLOOR) / maxq);
  const zero = Math.min(maxq, Math.max(0, roundHalfEven(-lo / scale)));
  for (let i = from; i < to; i++) {
    let q = roundHalfEven(x[i]! / scale) + zero;
    q = q < 0 ? 0 : q > maxq ? maxq : q;
    if (q === zero) zeros++;
    out[i] = (q - zero) * scale;
  }
  return zeros;
}

/**
 * Fake-quantizes the `[T][n]` activations `x` of `site` under `aq`, returning a new array (the
 * input is not modified). `site` data supplies static ranges and CrossQuant's channel maxima.
 */
export function fakeQuantActivations(
  aq: ActivationQuantization,
  x: Float32Array,
  T: number,
  n: number,
  site: SiteQuant | undefined,
  counter?: ZeroCounter,
  siteName = "",
): Float32Array {
  const { bits, options: o } = aq;
  const folded = site?.folded;
  // Work in the original units when factors were folded out of this input.
  const src = folded ? unfold(x, T, n, folded) : x;
  const out = new Float32Array(T * n);
  let zeros = 0;
  if (aq.kernel === "crossquant") {
    zeros = crossQuant(src, out, T, n, bits, aq.alpha ?? 1, o.clip, site?.channelMax);
  } else if (o.granularity === "token") {
    for (let t = 0; t < T; t++) {
      const { lo, hi } = range(src, t * n, (t + 1) * n);
      zeros += quantizeSpan(
        src,
        out,
        t * n,
        (t + 1) * n,
        bits,
        o.symmetric,
        lo * o.clip,
        hi * o.clip,
      );
    }
  } else {
    let r = o.static ? site?.range : undefined;
    if (o.static && !r) {
      throw new RangeError(
        `Static activation quantization of ${siteName || "a site"} has no range`,
      );
    }
    r ??= range(src, 0, T * n);
    const lo = o.static ? r.lo : r.lo * o.clip;
    const hi = o.static ? r.hi : r.hi * o.clip;
    zeros = quantizeSpan(src, out, 0, T * n, bits, o.symmetric, lo, hi);
  }
  counter?.add(siteName, zeros, T * n);
  if (folded) {
    for (let t = 0; t < T; t++) {
      for (let j = 0; j < n; j++) out[t * n + j] = out[t * n + j]! / folded[j]!;
    }
  }
  return out;
}

function unfold(x: Float32Array, T: number, n: number, f: Float32Array): Float32Array {
  const y = new Float32Array(T * n);
  for (let t = 0; t < T; t++) for (let j = 0; j < n; j++) y[t * n + j] = x[t * n + j]! * f[j]!;
  return y;
}

function crossQuant(
  x: Float32Array,
  out: Float32Array,
  T: number,
  n: number,
  bits: number,
  alpha: number,
  clip: number,
  channelMax: Float32Array | undefined,
): number {
  const qmax = 2 ** (bits - 1) - 1;
  let c = channelMax;
  if (!c) {
    const m = new Float32Array(n);
    for (let t = 0; t < T; t++) {
      for (let j = 0; j < n; j++) {
        const a = Math.abs(x[t * n + j]!);
        if (a > m[j]!) m[j] = a;
      }
    }
    c = m;
  }
  const cPow = new Float64Array(n);
  for (let j = 0; j < n; j++) cPow[j] = Math.pow(Math.max(c[j]!, ACT_FLOOR), 1 - alpha);
  let zeros = 0;
  for (let t = 0; t < T; t++) {
    let tMax = 0;
    for (let j = 0; j < n; j++) tMax = Math.max(tMax, Math.abs(x[t * n + j]!));
    const tPow = Math.pow(Math.max(tMax * clip, ACT_FLOOR), alpha);
    for (let j = 0; j < n; j++) {
      const step = Math.fround((tPow * cPow[j]!) / qmax);
      let q = roundHalfEven(x[t * n + j]! / step);
      q = q < -qmax ? -qmax : q > qmax ? qmax : q;
      if (q === 0) zeros++;
      out[t * n + j] = q * step;
    }
  }
  return zeros;
}
