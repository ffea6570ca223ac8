/**
 * Where GPTQ's time goes on one Llama-7B-sized linear layer, next to the same work done by plain
 * loops.
 *
 * Usage: `deno run -A bench/gptq_layer.ts [--quick]` (`--help` lists every flag).
 *
 * For each shape `[out][in]` (default 4096×4096, the q/k/v/o projections, and 4096×11008,
 * `down_proj` whose Hessian is 11008×11008) it measures, single-threaded:
 *
 * 1. **Hessian accumulation** `H = 2/N · Σ x xᵀ` over synthetic activations. Ours: a batched Gram
 *    through the kernel interface (`refKernels.matmul` on a transposed chunk of tokens, `Xᵀ·X` into
 *    float32, summed into float64 chunk by chunk). Plain: one rank-1 update per token. Both fill
 *    the full square: `tokens · in²` multiply-adds.
 * 2. **Inverse factor** `U` (upper Cholesky factor of `(H + λI)⁻¹`, `in³/3` multiply-adds). Ours:
 *    `upperCholeskyOfInverse` of `methods/gptq_core.ts` on the WASM kernels' float64 products
 *    (one thread; `bench/gptq_numpy.ts` runs GPTQ on the kernel threads next to NumPy). Plain: the same algorithm in textbook
 *    loops (`bench/gptq_layer_naive.ts`).
 * 3. **Layer**: ours is the full `gptqQuantizeLayer` call (factor + lazy-batch sweep); its sweep
 *    time is that call minus the factor measured in step 2. Plain: the column sweep updating every
 *    later column right away (no lazy batches), `rows · in(in−1)/2` multiply-adds.
 *
 * The target calibration set is 128 × 2048 = 262,144 tokens, which plain TypeScript cannot
 * accumulate in minutes, so the Hessian is measured on `--tokens` tokens and the full-size time is
 * EXTRAPOLATED linearly in tokens. Likewise the sweep runs on the first `--rows` output rows
 * (linear in rows), and shapes wider than `--layer-cols` run factor and sweep on the leading
 * `layer-cols` columns (leading block of `H`) and are extrapolated by `in³` (factor) and `in²`
 * (sweep). Every such row of the table says EXTRAPOLATED and by how much. The defaults (256
 * tokens, 2048 rows, at most 5504 columns) cost about 5 minutes of CPU time (5–6 minutes of
 * wall time when the machine is otherwise quiet); `--quick` (512×512 and 512×1376, nothing capped)
 * takes seconds.
 *
 * Data: weights `N(0, 0.02²)`; activations `x = s ⊙ (z + A f)` with `z ~ N(0, I)`, 8 shared
 * factors `f ~ N(0, I)` (loadings `A ~ N(0, 0.3²)`) and a few outlier channels with `s = 10`
 * (else 1). Because a few hundred tokens give a rank-deficient `H`, the layer phases use the
 * population Hessian `2 · E[x xᵀ] = 2 · S (I + A Aᵀ) S` of the same model, which is what the
 * 262,144-token `H` converges to and is positive definite like a real one. Defaults: 4 bits,
 * asymmetric, groups of 128 (parameters in `gptq_core`'s `"updated"` mode, identical to the
 * reference with block size 128), percdamp 0.01, block size 128, no act-order.
 *
 * Timing: every timed function (ours and plain) is first called 20 times on a small problem so V8
 * runs it as function-level optimized code from the first timed call (without that, V8's tiering
 * makes single calls of a once-per-layer kernel vary 2–3×), and each shape runs in a fresh Deno
 * process unless `--in-process`. Single-threaded; other load on the machine shows up as noise (the
 * load average is printed).
 *
 * Checks (the run aborts when they fail badly): ours and plain Hessians agree to float32
 * rounding, both factors agree, and the blocked and unblocked sweeps give the same codes (the
 * fraction of identical codes, max |Δ| of the dequantized weights and the loss are printed).
 *
 * @module
 */

import process from "node:process";
import { parseArgs } from "node:util";
import { unpackCodes } from "../core/quantizer.ts";
import { refKernels } from "../kernels/ref/mod.ts";
import { wasmKernels } from "../kernels/wasm/mod.ts";
import type { Kernels } from "../kernels/types.ts";
import {
  GPTQ_DEFAULTS,
  type GptqLayerOptions,
  type GptqLayerResult,
  gptqQuantizeLayer,
  upperCholeskyOfInverse,
} from "../methods/gptq_core.ts";
import {
  accumulateHessianNaive,
  gptqSweepNaive,
  type NaiveSweepOptions,
  type NaiveSweepResult,
  upperCholeskyOfInverseNaive,
} from "./gptq_layer_naive.ts";

/** Tokens of the calibration set the Hessian phase is extrapolated to (128 × 2048). */
export const TARGET_TOKENS = 128 * 2048;

const HELP = `Usage: deno run -A bench/gptq_layer.ts [options]

GPTQ on synthetic Llama-7B-sized layers: Hessian accumulation, inverse factor and column sweep,
each next to a plain-loop baseline. Full-size times are extrapolated from measured subsets.

Options:
  --quick              Small shapes (512x512, 512x1376), 256 tokens: a smoke run of seconds
  --shapes LIST        Comma-separated OUTxIN shapes (default 4096x4096,4096x11008)
  --tokens N           Tokens measured for the Hessian (default 256)
  --rows N             Output rows for the sweep (default 2048; quick all)
  --layer-cols N       Widest layer run for factor and sweep; wider shapes use the leading N
                       columns and are extrapolated (default 5504; quick no limit)
  --chunk N            Tokens per batched Gram call (default 256)
  --bits N             Bits per weight (default 4)
  --group N            Group size, 0 for per-channel (default 128)
  --block N            GPTQ lazy-batch block size (default 128)
  --symmetric          Symmetric quantization (default asymmetric)
  --seed N             PRNG seed (default 1)
  --json PATH          Also write the numbers as JSON
  --in-process         Run all shapes in this process (default: one fresh Deno process per
                       shape, so V8's JIT state from one shape cannot slow down the next)
  -h, --help           This text
`;

/** mulberry32: a small seeded PRNG returning floats in [0, 1). */
function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Fill `out` with `N(0, std²)` samples (Box–Muller over mulberry32). */
function fillNormal(out: Float32Array | Float64Array, seed: number, std: number): void {
  const rand = mulberry32(seed);
  for (let i = 0; i < out.length; i += 2) {
    const r = Math.sqrt(-2 * Math.log(1 - rand())) * std;
    const th = 2 * Math.PI * rand();
    out[i] = r * Math.cos(th);
    if (i + 1 < out.length) out[i + 1] = r * Math.sin(th);
  }
}

const FACTORS = 8;
const LOADING_STD = 0.3;
const OUTLIER_SCALE = 10;

/** The synthetic activation model `x = s ⊙ (z + A f)`. */
interface ActivationModel {
  readonly cols: number;
  /** Channel scales (1, or 10 for outlier channels). */
  readonly scale: Float64Array;
  /** Loadings `A` `[cols][FACTORS]`. */
  readonly loadings: Float64Array;
  readonly outliers: number[];
}

function activationModel(cols: number, seed: number): ActivationModel {
  const scale = new Float64Array(cols).fill(1);
  const rand = mulberry32(seed ^ 0x5bd1e995);
  const count = Math.max(4, Math.round(cols / 1024));
  const outliers: number[] = [];
  while (outliers.length < count) {
    const c = Math.floor(rand() * cols);
    if (!outliers.includes(c)) outliers.push(c);
  }
  outliers.sort((a, b) => a - b);
  for (const c of outliers) scale[c] = OUTLIER_SCALE;
  const loadings = new Float64Array(cols * FACTORS);
  fillNormal(loadings, seed + 17, LOADING_STD);
  return { cols, scale, loadings, outliers };
}

/** `tokens` activations `[tokens][cols]` drawn from the model. */
function sampleActivations(m: ActivationModel, tokens: number, seed: number): Float32Array {
  const { cols, scale, loadings } = m;
  const z = new Float32Array(tokens * cols);
  fillNormal(z, seed + 101, 1);
  const f = new Float64Array(tokens * FACTORS);
  fillNormal(f, seed + 202, 1);
  for (let t = 0; t < tokens; t++) {
    for (let i = 0; i < cols; i++) {
      let v = z[t * cols + i]!;
      for (let k = 0; k < FACTORS; k++) v += loadings[i * FACTORS + k]! * f[t * FACTORS + k]!;
      z[t * cols + i] = scale[i]! * v;
    }
  }
  return z;
}

/** Leading `n×n` block of the population Hessian `2 · S (I + A Aᵀ) S`. */
function populationHessian(m: ActivationModel, n: number): Float64Array {
  const { scale, loadings } = m;
  const h = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j <= i; j++) {
      let s = i === j ? 1 : 0;
      for (let k = 0; k < FACTORS; k++) {
        s += loadings[i * FACTORS + k]! * loadings[j * FACTORS + k]!;
      }
      const v = 2 * scale[i]! * scale[j]! * s;
      h[i * n + j] = v;
      h[j * n + i] = v;
    }
  }
  return h;
}

/**
 * `h += Σ_t x[t] x[t]ᵀ` as batched Gram products through the kernel interface: each chunk of
 * tokens is transposed to `Xᵀ` `[cols][chunk]` and `matmul(Xᵀ, cols, Xᵀ)` gives `XᵀX` `[cols][cols]`
 * in float32, which is added to the float64 accumulator.
 *
 * @param kernels Kernel set providing `matmul`.
 * @param x Activations `[tokens][cols]`, row-major.
 * @param tokens Rows of `x` to use.
 * @param cols Features per token.
 * @param h Accumulator `[cols][cols]`, updated in place.
 * @param chunk Tokens per `matmul` call.
 */
export function accumulateHessianGram(
  kernels: Kernels,
  x: Float32Array,
  tokens: number,
  cols: number,
  h: Float64Array,
  chunk: number,
): void {
  const xt = new Float32Array(cols * Math.min(chunk, tokens));
  const out = new Float32Array(cols * cols);
  for (let t0 = 0; t0 < tokens; t0 += chunk) {
    const c = Math.min(chunk, tokens - t0);
    for (let t = 0; t < c; t++) {
      const xr = (t0 + t) * cols;
      for (let i = 0; i < cols; i++) xt[i * c + t] = x[xr + i]!;
    }
    const xtc = xt.subarray(0, cols * c);
    kernels.matmul(xtc, cols, { rows: cols, cols: c, data: xtc }, out);
    for (let k = 0; k < h.length; k++) h[k] = h[k]! + out[k]!;
  }
}

/** One row of the result table. */
export interface PhaseRow {
  /** Shape label, e.g. `4096x11008`. */
  readonly shape: string;
  /** Phase name. */
  readonly phase: string;
  /** What was (or would be) computed, e.g. `64 tok` or `512x4096`. */
  readonly size: string;
  /** Nominal multiply-adds of the phase (the same for ours and plain). */
  readonly macs: number;
  /** Our time in milliseconds (undefined when not applicable). */
  readonly oursMs: number | undefined;
  /** Plain-loop time in milliseconds (undefined when not applicable). */
  readonly plainMs: number | undefined;
  /** Measured, or extrapolated from a measured row by the given factor. */
  readonly kind: "measured" | "derived" | "extrapolated";
  /** How the row was obtained, for the reader. */
  readonly note: string;
}

/** Correctness checks of one shape. */
export interface ShapeChecks {
  /** `max |H_ours − H_plain| / max |H_plain|`. */
  readonly hessianRelDiff: number;
  /** `max |U_ours − U_plain| / max |U_plain|`. */
  readonly factorRelDiff: number;
  /** Fraction of codes equal in the blocked and the unblocked sweep. */
  readonly identicalCodes: number;
  /** `max |Ŵ_ours − Ŵ_plain|`. */
  readonly maxDequantDiff: number;
  /** Largest dequantized magnitude, for scale. */
  readonly maxDequant: number;
  /** GPTQ loss of ours and of the plain sweep. */
  readonly lossOurs: number;
  /** GPTQ loss of the plain sweep. */
  readonly lossPlain: number;
}

interface Config {
  shapes: { out: number; in: number }[];
  tokens: number;
  rows: number;
  layerCols: number;
  chunk: number;
  bits: number;
  group: number;
  block: number;
  symmetric: boolean;
  seed: number;
}

function time<T>(f: () => T): [T, number] {
  const t0 = performance.now();
  const r = f();
  return [r, performance.now() - t0];
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): [number, number] {
  let d = 0;
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    const x = Math.abs(a[i]! - b[i]!);
    if (x > d) d = x;
    const y = Math.abs(b[i]!);
    if (y > m) m = y;
  }
  return [d, m];
}

const fmtInt = (n: number): string => n.toLocaleString("en-US");

function log(msg: string): void {
  console.error(`  · ${msg}`);
}

/** Ours: GPTQ's float64 products on the single-threaded WASM kernels (`gemm_f64`). */
const F64 = (await wasmKernels()).f64;

function layerOptions(cfg: Config): GptqLayerOptions {
  return {
    ...GPTQ_DEFAULTS,
    f64: F64,
    bits: cfg.bits,
    symmetric: cfg.symmetric,
    groupSize: cfg.group,
    blockSize: cfg.block,
    groupParams: "updated",
  };
}

function naiveOptions(cfg: Config): NaiveSweepOptions {
  return { bits: cfg.bits, symmetric: cfg.symmetric, groupSize: cfg.group };
}

/** Calls of every timed function on small inputs before any timing. */
const WARMUP_CALLS = 20;

/**
 * Run every timed function, ours and plain, {@linkcode WARMUP_CALLS} times on a small problem
 * (384 columns, 8 rows, 32 tokens) so V8 has compiled each of them at function level before the
 * timed calls. Without this a kernel called once per layer runs from on-stack-replaced optimized
 * code on its first calls, then for a call or two from a function-level Maglev version that is
 * 2–3× slower, until TurboFan's version is installed; single timings then vary by 2–3×.
 */
function warmUp(cfg: Config): void {
  const n = 384;
  const rows = 8;
  const tokens = 32;
  const model = activationModel(n, cfg.seed + 7);
  const x = sampleActivations(model, tokens, cfg.seed + 7);
  const h = populationHessian(model, n);
  const hd = Float64Array.from(h);
  for (let i = 0; i < n; i++) hd[i * n + i] = hd[i * n + i]! * 1.01;
  const w = new Float32Array(rows * n);
  fillNormal(w, cfg.seed + 9, 0.02);
  const t0 = performance.now();
  for (let r = 0; r < WARMUP_CALLS; r++) {
    accumulateHessianGram(refKernels, x, tokens, n, new Float64Array(n * n), cfg.chunk);
    accumulateHessianNaive(x, tokens, n, new Float64Array(n * n));
    upperCholeskyOfInverse(hd, n, F64);
    const u = upperCholeskyOfInverseNaive(hd, n)!;
    gptqQuantizeLayer(w, rows, n, h, layerOptions(cfg));
    gptqSweepNaive(w, rows, n, u, naiveOptions(cfg));
  }
  log(
    `warm-up: ${WARMUP_CALLS} calls of every timed function, ${
      (performance.now() - t0).toFixed(0)
    } ms`,
  );
}

/** Time both Hessian accumulations on `tokens` sampled activations and compare the results. */
function benchHessian(
  shape: string,
  model: ActivationModel,
  tokens: number,
  cfg: Config,
): { hOursMs: number; hPlainMs: number; hessianRelDiff: number } {
  const inF = model.cols;
  const T = tokens;
  log(`${shape}: sampling ${fmtInt(T)} activations (${model.outliers.length} outlier channels)`);
  const x = sampleActivations(model, T, cfg.seed);
  log(`${shape}: Hessian, batched Gram (${fmtInt(T * inF * inF)} multiply-adds)`);
  const hOurs = new Float64Array(inF * inF);
  const [, hOursMs] = time(() => {
    accumulateHessianGram(refKernels, x, T, inF, hOurs, cfg.chunk);
    for (let k = 0; k < hOurs.length; k++) hOurs[k] = hOurs[k]! * (2 / T);
  });
  log(`${shape}: Hessian, plain rank-1 loop`);
  const hPlain = new Float64Array(inF * inF);
  const [, hPlainMs] = time(() => {
    accumulateHessianNaive(x, T, inF, hPlain);
    for (let k = 0; k < hPlain.length; k++) hPlain[k] = hPlain[k]! * (2 / T);
  });
  const [hd, hm] = maxAbsDiff(hOurs, hPlain);
  return { hOursMs, hPlainMs, hessianRelDiff: hd / hm };
}

/** Times and sizes measured for one shape, from which its table rows are built. */
interface ShapeTimings {
  readonly out: number;
  readonly inF: number;
  /** Tokens of the measured Hessian. */
  readonly tokens: number;
  /** Columns of the measured factor and sweep. */
  readonly n: number;
  /** Rows of the measured sweep. */
  readonly rows: number;
  readonly hOursMs: number;
  readonly hPlainMs: number;
  readonly fOursMs: number;
  readonly fPlainMs: number;
  /** Our full `gptqQuantizeLayer` call (factor + sweep). */
  readonly layerMs: number;
  readonly sOursMs: number;
  readonly sPlainMs: number;
}

/** Time both inverse factors of the damped leading `n×n` block `h` and compare them. */
function benchFactor(
  shape: string,
  h: Float64Array,
  n: number,
): { uPlain: Float64Array; fOursMs: number; fPlainMs: number; factorRelDiff: number } {
  let meanDiag = 0;
  for (let i = 0; i < n; i++) meanDiag += h[i * n + i]!;
  meanDiag /= n;
  const hDamped = Float64Array.from(h);
  for (let i = 0; i < n; i++) {
    hDamped[i * n + i] = hDamped[i * n + i]! + GPTQ_DEFAULTS.percdamp * meanDiag;
  }
  const fMacs = n ** 3 / 3;
  log(`${shape}: factor U, n = ${n} (${fmtInt(Math.round(fMacs))} multiply-adds)`);
  const [uOurs, fOursMs] = time(() => upperCholeskyOfInverse(hDamped, n, F64));
  log(`${shape}: factor U, plain loops`);
  const [uPlain, fPlainMs] = time(() => upperCholeskyOfInverseNaive(hDamped, n));
  if (!uOurs || !uPlain) throw new Error(`${shape}: damped Hessian is not positive definite`);
  const [ud, um] = maxAbsDiff(uOurs, uPlain);
  return { uPlain, fOursMs, fPlainMs, factorRelDiff: ud / um };
}

/** Time the full `gptqQuantizeLayer` call and the plain sweep on `R×n` synthetic weights. */
function benchLayer(
  shape: string,
  h: Float64Array,
  uPlain: Float64Array,
  R: number,
  n: number,
  cfg: Config,
): { res: GptqLayerResult; plain: NaiveSweepResult; layerMs: number; sPlainMs: number } {
  const w = new Float32Array(R * n);
  fillNormal(w, cfg.seed + 303, 0.02);
  const opts = layerOptions(cfg);
  log(`${shape}: gptqQuantizeLayer ${R}x${n} (factor + sweep)`);
  const [res, layerMs] = time(() => gptqQuantizeLayer(w, R, n, h, opts));
  if (res.dampRetries !== 0) throw new Error(`${shape}: unexpected damping retries`);
  log(`${shape}: plain sweep ${R}x${n}`);
  const [plain, sPlainMs] = time(() => gptqSweepNaive(w, R, n, uPlain, naiveOptions(cfg)));
  return { res, plain, layerMs, sPlainMs };
}

/** Agreement of the blocked (ours) and the unblocked (plain) sweep: codes, dequantized, loss. */
function sweepAgreement(
  res: GptqLayerResult,
  plain: NaiveSweepResult,
): Omit<ShapeChecks, "hessianRelDiff" | "factorRelDiff"> {
  const codes = unpackCodes(res.packed);
  let same = 0;
  for (let i = 0; i < codes.length; i++) if (codes[i] === plain.codes[i]) same++;
  const identicalCodes = same / codes.length;
  const [dd, dm] = maxAbsDiff(res.dequantized, plain.dequantized);
  return {
    identicalCodes,
    maxDequantDiff: dd,
    maxDequant: dm,
    lossOurs: res.loss,
    lossPlain: plain.loss,
  };
}

/** Table rows of the measured phases, plus the Hessian extrapolated to the target tokens. */
function measuredRows(t: ShapeTimings, cfg: Config): Omit<PhaseRow, "shape">[] {
  const { tokens: T, n, rows: R } = t;
  const hMacs = T * t.inF * t.inF;
  const hScale = TARGET_TOKENS / T;
  const fMacs = n ** 3 / 3;
  const sMacs = R * n * (n - 1) / 2;
  return [
    {
      phase: "Hessian 2/N·ΣxxT",
      size: `${fmtInt(T)} tok`,
      macs: hMacs,
      oursMs: t.hOursMs,
      plainMs: t.hPlainMs,
      kind: "measured",
      note: `chunk ${Math.min(cfg.chunk, T)}`,
    },
    {
      phase: "Hessian 2/N·ΣxxT",
      size: `${fmtInt(TARGET_TOKENS)} tok`,
      macs: hMacs * hScale,
      oursMs: t.hOursMs * hScale,
      plainMs: t.hPlainMs * hScale,
      kind: "extrapolated",
      note: `×${fmtNum(hScale)} tokens`,
    },
    {
      phase: "factor U=chol(H⁻¹)",
      size: `n=${n}`,
      macs: fMacs,
      oursMs: t.fOursMs,
      plainMs: t.fPlainMs,
      kind: "measured",
      note: "upperCholeskyOfInverse",
    },
    {
      phase: "sweep",
      size: `${R}x${n}`,
      macs: sMacs,
      oursMs: t.sOursMs,
      plainMs: t.sPlainMs,
      kind: "derived",
      note: `ours = layer − factor; block ${cfg.block}`,
    },
    {
      phase: "layer (factor+sweep)",
      size: `${R}x${n}`,
      macs: fMacs + sMacs,
      oursMs: t.layerMs,
      plainMs: t.fPlainMs + t.sPlainMs,
      kind: "measured",
      note: "ours = gptqQuantizeLayer",
    },
  ];
}

/** Table rows extrapolated to the full layer (`in³` factor, `rows · in²` sweep) and the total. */
function extrapolatedRows(t: ShapeTimings): Omit<PhaseRow, "shape">[] {
  const { out, inF, tokens: T, n, rows: R } = t;
  const hMacs = T * inF * inF;
  const hScale = TARGET_TOKENS / T;
  const fMacs = n ** 3 / 3;
  const sMacs = R * n * (n - 1) / 2;
  const fScale = (inF / n) ** 3;
  const sScale = (out * inF * (inF - 1)) / (R * n * (n - 1));
  const fullSize = `${out}x${inF}`;
  const sweepNote = [
    R < out ? `rows ×${fmtNum(out / R)}` : "",
    n < inF ? `cols ${n}→${inF} (×in²)` : "",
  ].filter(Boolean).join(", ");
  const rows: Omit<PhaseRow, "shape">[] = [];
  if (n < inF) {
    rows.push({
      phase: "factor U=chol(H⁻¹)",
      size: `n=${inF}`,
      macs: inF ** 3 / 3,
      oursMs: t.fOursMs * fScale,
      plainMs: t.fPlainMs * fScale,
      kind: "extrapolated",
      note: `×${fmtNum(fScale)} (in³)`,
    });
  }
  if (sScale !== 1) {
    rows.push({
      phase: "sweep",
      size: fullSize,
      macs: sMacs * sScale,
      oursMs: t.sOursMs * sScale,
      plainMs: t.sPlainMs * sScale,
      kind: "extrapolated",
      note: sweepNote,
    }, {
      phase: "layer (factor+sweep)",
      size: fullSize,
      macs: fMacs * fScale + sMacs * sScale,
      oursMs: t.fOursMs * fScale + t.sOursMs * sScale,
      plainMs: (t.fPlainMs * fScale) + t.sPlainMs * sScale,
      kind: "extrapolated",
      note: "factor + sweep",
    });
  }
  rows.push({
    phase: "TOTAL Hessian+layer",
    size: `${fullSize}, ${fmtInt(TARGET_TOKENS)} tok`,
    macs: hMacs * hScale + fMacs * fScale + sMacs * sScale,
    oursMs: t.hOursMs * hScale + t.fOursMs * fScale + t.sOursMs * sScale,
    plainMs: t.hPlainMs * hScale + t.fPlainMs * fScale + t.sPlainMs * sScale,
    kind: "extrapolated",
    note: "",
  });
  return rows;
}

/** Run every phase for one shape; returns the table rows and checks. */
function benchShape(
  out: number,
  inF: number,
  cfg: Config,
): { rows: PhaseRow[]; checks: ShapeChecks } {
  const shape = `${out}x${inF}`;
  warmUp(cfg);
  const model = activationModel(inF, cfg.seed);
  // 1. Hessian. In its own function so the two in×in accumulators are garbage before the layer
  // phases.
  const T = cfg.tokens;
  const { hOursMs, hPlainMs, hessianRelDiff } = benchHessian(shape, model, T, cfg);
  // 2. Inverse factor, on the leading n×n block of the population Hessian.
  const n = Math.min(inF, cfg.layerCols);
  const R = Math.min(out, cfg.rows);
  const h = populationHessian(model, n);
  const { uPlain, fOursMs, fPlainMs, factorRelDiff } = benchFactor(shape, h, n);
  // 3. Layer: full gptqQuantizeLayer vs plain sweep.
  const { res, plain, layerMs, sPlainMs } = benchLayer(shape, h, uPlain, R, n, cfg);
  const t: ShapeTimings = {
    out,
    inF,
    tokens: T,
    n,
    rows: R,
    hOursMs,
    hPlainMs,
    fOursMs,
    fPlainMs,
    layerMs,
    sOursMs: Math.max(0, layerMs - fOursMs),
    sPlainMs,
  };
  const rows = [...measuredRows(t, cfg), ...extrapolatedRows(t)].map((r) => ({ shape, ...r }));
  const checks: ShapeChecks = { hessianRelDiff, factorRelDiff, ...sweepAgreement(res, plain) };
  return { rows, checks };
}

function fmtNum(v: number): string {
  if (!Number.isFinite(v)) return String(v);
  if (Math.abs(v) >= 100) return fmtInt(Math.round(v));
  if (Math.abs(v) >= 10) return v.toFixed(1);
  return v.toFixed(2);
}

function fmtMs(ms: number | undefined): string {
  if (ms === undefined) return "—";
  if (ms >= 3_600_000) return `${fmtInt(Math.round(ms))} (${(ms / 3_600_000).toFixed(1)} h)`;
  if (ms >= 60_000) return `${fmtInt(Math.round(ms))} (${(ms / 60_000).toFixed(1)} min)`;
  return ms >= 100 ? fmtInt(Math.round(ms)) : ms.toFixed(1);
}

function fmtLoad(l: number[]): string {
  return l.map((v) => v.toFixed(2)).join(" ");
}

function fmtDur(ms: number): string {
  if (ms >= 3_600_000) return `${(ms / 3_600_000).toFixed(2)} h`;
  if (ms >= 60_000) return `${(ms / 60_000).toFixed(1)} min`;
  return `${(ms / 1000).toFixed(1)} s`;
}

function gflops(macs: number, ms: number | undefined): string {
  return ms === undefined || ms <= 0 ? "—" : (2 * macs / ms / 1e6).toFixed(2);
}

/** Render rows as an aligned text table. */
function renderTable(rows: readonly PhaseRow[]): string {
  const head = [
    "shape",
    "phase",
    "size",
    "ours ms",
    "plain ms",
    "plain/ours",
    "ours GFLOP/s",
    "plain GFLOP/s",
    "how",
    "note",
  ];
  const body = rows.map((r) => [
    r.shape,
    r.phase,
    r.size,
    fmtMs(r.oursMs),
    fmtMs(r.plainMs),
    r.oursMs && r.plainMs ? `${(r.plainMs / r.oursMs).toFixed(2)}×` : "—",
    gflops(r.macs, r.oursMs),
    gflops(r.macs, r.plainMs),
    r.kind === "extrapolated" ? "EXTRAPOLATED" : r.kind,
    r.note,
  ]);
  const all = [head, ...body];
  const width = head.map((_, c) => Math.max(...all.map((r) => [...r[c]!].length)));
  const right = new Set([3, 4, 5, 6, 7]);
  const line = (r: string[]): string =>
    r.map((v, c) => {
      const pad = " ".repeat(width[c]! - [...v].length);
      return right.has(c) ? pad + v : v + pad;
    }).join("  ").trimEnd();
  const sep = width.map((w) => "-".repeat(w)).join("  ");
  const out: string[] = [line(head), sep];
  let prev = "";
  for (const r of body) {
    if (prev && r[0] !== prev) out.push(sep);
    prev = r[0]!;
    out.push(line(r));
  }
  return out.join("\n");
}

/** Rows or columns without a limit. */
const ALL = Number.MAX_SAFE_INTEGER;

/** What {@linkcode benchShape} returns, plus the wall time of the shape. */
interface ShapeResult {
  rows: PhaseRow[];
  checks: ShapeChecks;
  wallMs: number;
  /** Process CPU time (all threads) while the shape ran; well below `wallMs` means contention. */
  cpuMs: number;
}

/** Run one shape here, with its wall and process CPU time. */
function benchShapeTimed(out: number, inF: number, cfg: Config): ShapeResult {
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  const r = benchShape(out, inF, cfg);
  const wallMs = performance.now() - t0;
  const c = process.cpuUsage(c0);
  return { ...r, wallMs, cpuMs: (c.user + c.system) / 1000 };
}

/**
 * Run one shape in a fresh Deno process (this module with `--child`), so JIT state left by an
 * earlier shape cannot change its timings. Progress goes to our stderr. Returns undefined when
 * the child cannot be started (no `--allow-run`).
 */
async function benchShapeInChild(cfg: Config): Promise<ShapeResult | undefined> {
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", import.meta.filename ?? import.meta.url, "--child", JSON.stringify(cfg)],
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
  } catch {
    return undefined;
  }
  const out = await child.output();
  const text = new TextDecoder().decode(out.stdout).trim();
  if (!out.success) {
    throw new Error(`child process for ${cfg.shapes[0]!.out}x${cfg.shapes[0]!.in} failed: ${text}`);
  }
  return JSON.parse(text.slice(text.lastIndexOf("\n") + 1)) as ShapeResult;
}

function positiveInt(name: string, v: string | undefined, dflt: number, min = 1): number {
  if (v === undefined) return dflt;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) {
    throw new RangeError(`--${name} must be an integer ≥ ${min}, got "${v}"`);
  }
  return n;
}

function parseShapes(s: string): { out: number; in: number }[] {
  return s.split(",").map((p) => {
    const m = /^\s*(\d+)x(\d+)\s*$/.exec(p);
    if (!m) throw new SyntaxError(`--shapes entries must look like OUTxIN, got "${p}"`);
    return { out: Number(m[1]), in: Number(m[2]) };
  });
}

/** Parse the command line (strict: unknown flags and positionals throw). */
function parseFlags(argv: string[]) {
  return parseArgs({
    args: argv,
    strict: true,
    allowPositionals: false,
    options: {
      quick: { type: "boolean", default: false },
      shapes: { type: "string" },
      tokens: { type: "string" },
      rows: { type: "string" },
      "layer-cols": { type: "string" },
      chunk: { type: "string" },
      bits: { type: "string" },
      group: { type: "string" },
      block: { type: "string" },
      symmetric: { type: "boolean", default: false },
      seed: { type: "string" },
      json: { type: "string" },
      "in-process": { type: "boolean", default: false },
      child: { type: "string" },
      help: { type: "boolean", short: "h", default: false },
    },
  }).values;
}

/** Parsed command-line flags. */
type Flags = ReturnType<typeof parseFlags>;

/** The benchmark configuration from the flags, with `--quick` defaults; throws on bad values. */
function configFromFlags(values: Flags): Config {
  const quick = values.quick;
  const cfg: Config = {
    shapes: parseShapes(values.shapes ?? (quick ? "512x512,512x1376" : "4096x4096,4096x11008")),
    tokens: positiveInt("tokens", values.tokens, 256),
    rows: positiveInt("rows", values.rows, quick ? ALL : 2048),
    layerCols: positiveInt("layer-cols", values["layer-cols"], quick ? ALL : 5504),
    chunk: positiveInt("chunk", values.chunk, 256),
    bits: positiveInt("bits", values.bits, 4, 2),
    group: positiveInt("group", values.group, 128, 0),
    block: positiveInt("block", values.block, GPTQ_DEFAULTS.blockSize),
    symmetric: values.symmetric,
    seed: positiveInt("seed", values.seed, 1, 0),
  };
  if (cfg.bits > 8) throw new RangeError(`--bits must be in [2, 8], got ${cfg.bits}`);
  return cfg;
}

/** Print the header: settings, runtime, what is measured, the data model and process isolation. */
function printHeader(cfg: Config, loadStart: number[], isolated: boolean): void {
  const settings = `${cfg.bits}-bit ${cfg.symmetric ? "symmetric" : "asymmetric"}, ` +
    `${cfg.group ? `group ${cfg.group}` : "per-channel"}, block ${cfg.block}, ` +
    `percdamp ${GPTQ_DEFAULTS.percdamp}, no act-order`;
  console.log(`GPTQ layer benchmark — ${settings}`);
  console.log(
    `Deno ${Deno.version.deno}, V8 ${Deno.version.v8}, ${Deno.build.os}/${Deno.build.arch}, ` +
      `${navigator.hardwareConcurrency} logical CPUs; single-threaded; seed ${cfg.seed}; ` +
      `load average at start ${fmtLoad(loadStart)}`,
  );
  const limit = (v: number, what: string): string =>
    v < ALL ? `≤ ${fmtInt(v)} ${what}` : `all ${what}`;
  console.log(
    `Measured: Hessian on ${fmtInt(cfg.tokens)} tokens (target ${fmtInt(TARGET_TOKENS)}), ` +
      `sweep on ${limit(cfg.rows, "rows")}, factor and sweep on ${
        limit(cfg.layerCols, "columns")
      }; full-size rows are EXTRAPOLATED from those.`,
  );
  console.log(
    "Data: W ~ N(0, 0.02²); x = s⊙(z + A·f), 8 factors, outlier channels ×10; the layer phases " +
      "use the population Hessian 2·E[xxT]\n(what 262,144 tokens converge to). " +
      "plain/ours = ratio of times in this run; GFLOP/s = 2 × nominal multiply-adds / time; " +
      "'derived': ours sweep = gptqQuantizeLayer − factor. Every timed function is warmed up " +
      "first (20 calls on a small problem).",
  );
  console.log(
    isolated
      ? "Each shape runs in a fresh Deno process (--in-process to share one).\n"
      : "All shapes run in this process.\n",
  );
}

/** One line of the checks section for a shape. */
function checkLine(shape: string, checks: ShapeChecks): string {
  return `${shape}: H max|Δ|/max|H| ${checks.hessianRelDiff.toExponential(1)}; ` +
    `U max|Δ|/max|U| ${checks.factorRelDiff.toExponential(1)}; ` +
    `blocked vs unblocked sweep: ${(100 * checks.identicalCodes).toFixed(4)}% identical codes, ` +
    `max|ΔŴ| ${checks.maxDequantDiff.toExponential(2)} (max|Ŵ| ${
      checks.maxDequant.toExponential(2)
    }), loss ${checks.lossOurs.toPrecision(6)} vs ${checks.lossPlain.toPrecision(6)}`;
}

/** Whether ours and the plain loop disagree badly: beyond a few code flips from rounding order. */
function checksFailBadly(checks: ShapeChecks): boolean {
  const lossRel = Math.abs(checks.lossOurs - checks.lossPlain) / checks.lossPlain;
  return !(checks.hessianRelDiff < 1e-5) || !(checks.factorRelDiff < 1e-8) ||
    !(checks.identicalCodes > 0.99) || !(lossRel < 1e-3);
}

/** Checks and wall/CPU time of one shape, as printed and written to JSON. */
interface ShapeSummary {
  shape: string;
  checks: ShapeChecks;
  wallMs: number;
  cpuMs: number;
}

/** Everything {@linkcode runShapes} collected. */
interface RunResult {
  allRows: PhaseRow[];
  perShape: ShapeSummary[];
  checkLines: string[];
  failed: boolean;
  /** Whether shapes ran in child processes (false once a child could not be started). */
  isolated: boolean;
}

/** Run every shape (in a child process when `isolated`), stopping after the first failed check. */
async function runShapes(cfg: Config, isolated: boolean): Promise<RunResult> {
  const allRows: PhaseRow[] = [];
  const perShape: ShapeSummary[] = [];
  const checkLines: string[] = [];
  let failed = false;
  for (const s of cfg.shapes) {
    let result: ShapeResult | undefined;
    if (isolated) {
      result = await benchShapeInChild({ ...cfg, shapes: [s] });
      if (!result) {
        isolated = false;
        console.error("  · cannot start a child process (needs --allow-run); running in-process");
      }
    }
    result ??= benchShapeTimed(s.out, s.in, cfg);
    const { rows, checks } = result;
    const shape = `${s.out}x${s.in}`;
    allRows.push(...rows);
    perShape.push({ shape, checks, wallMs: result.wallMs, cpuMs: result.cpuMs });
    checkLines.push(checkLine(shape, checks));
    if (checksFailBadly(checks)) {
      failed = true;
      checkLines.push(`${shape}: CHECK FAILED — ours and the plain loop disagree (see above)`);
      break;
    }
  }
  return { allRows, perShape, checkLines, failed, isolated };
}

/** Print each shape's split of the full-size time into Hessian, factor and sweep. */
function printTimeShares(allRows: readonly PhaseRow[], perShape: readonly ShapeSummary[]): void {
  console.log("\nWhere the time goes (full size, extrapolated):");
  for (const s of perShape) {
    const rs = allRows.filter((r) => r.shape === s.shape);
    const share = (which: "oursMs" | "plainMs"): string => {
      const pick = (phase: string): number => {
        const cands = rs.filter((r) => r.phase === phase);
        return cands[cands.length - 1]![which] ?? 0;
      };
      const hh = pick("Hessian 2/N·ΣxxT");
      const ff = pick("factor U=chol(H⁻¹)");
      const ss = pick("sweep");
      const tot = hh + ff + ss;
      const pct = (v: number): string => `${(100 * v / tot).toFixed(1)}%`;
      return `Hessian ${pct(hh)}, factor ${pct(ff)}, sweep ${pct(ss)} of ${fmtDur(tot)}`;
    };
    console.log(`  ${s.shape} ours:  ${share("oursMs")}`);
    console.log(`  ${s.shape} plain: ${share("plainMs")}`);
    console.log(
      `  ${s.shape} (measured part: ${(s.wallMs / 1000).toFixed(1)} s wall, ` +
        `${(s.cpuMs / 1000).toFixed(1)} s CPU = ${(100 * s.cpuMs / s.wallMs).toFixed(0)}% ` +
        "— well below 100% means the process waited for a CPU and the times are inflated)",
    );
  }
}

/** Write the run's configuration, rows, per-shape checks and timings as JSON to `path`. */
async function writeJson(
  path: string,
  cfg: Config,
  run: RunResult,
  wallMs: number,
  loadAverage: { start: number[]; end: number[] },
): Promise<void> {
  const doc = {
    benchmark: "gptq_layer",
    date: new Date().toISOString(),
    runtime: {
      deno: Deno.version.deno,
      v8: Deno.version.v8,
      os: Deno.build.os,
      arch: Deno.build.arch,
      cpus: navigator.hardwareConcurrency,
    },
    config: {
      ...cfg,
      isolatedProcesses: run.isolated,
      targetTokens: TARGET_TOKENS,
      percdamp: GPTQ_DEFAULTS.percdamp,
    },
    rows: run.allRows.map((r) => ({
      ...r,
      ratioPlainOverOurs: r.oursMs && r.plainMs ? r.plainMs / r.oursMs : null,
      oursGflops: r.oursMs ? 2 * r.macs / r.oursMs / 1e6 : null,
      plainGflops: r.plainMs ? 2 * r.macs / r.plainMs / 1e6 : null,
    })),
    shapes: run.perShape,
    checksPassed: !run.failed,
    wallMs,
    loadAverage,
  };
  await Deno.writeTextFile(path, JSON.stringify(doc, (_k, v) => v === ALL ? "all" : v, 2) + "\n");
}

/**
 * Run the benchmark with command-line arguments; prints the table to stdout and progress to
 * stderr.
 *
 * @param argv Arguments without the program name.
 * @returns The process exit code.
 */
export async function main(argv: string[]): Promise<number> {
  const values = parseFlags(argv);
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  if (values.child !== undefined) {
    // Internal: run one shape for the parent process and report on stdout.
    const c = JSON.parse(values.child) as Config;
    const s = c.shapes[0]!;
    console.log(JSON.stringify(benchShapeTimed(s.out, s.in, c)));
    return 0;
  }
  const cfg = configFromFlags(values);

  const t0 = performance.now();
  const loadStart = Deno.loadavg();
  const isolated = !values["in-process"] && cfg.shapes.length > 1;
  printHeader(cfg, loadStart, isolated);
  const run = await runShapes(cfg, isolated);
  console.log(renderTable(run.allRows));
  console.log("\nChecks (ours vs plain loop on the benchmark inputs):");
  for (const l of run.checkLines) console.log(`  ${l}`);
  printTimeShares(run.allRows, run.perShape);
  const wallMs = performance.now() - t0;
  const loadEnd = Deno.loadavg();
  console.log(
    `\nTotal wall time: ${(wallMs / 1000).toFixed(1)} s; load average at end ${fmtLoad(loadEnd)} ` +
      "(above 1 means other processes shared the CPU: expect noise)",
  );

  if (values.json) {
    await writeJson(values.json, cfg, run, wallMs, { start: loadStart, end: loadEnd });
    console.log(`Wrote ${values.json}`);
  }
  if (run.failed) {
    console.error("ABORTED: the blocked and unblocked computations disagree beyond rounding.");
    return 1;
  }
  return 0;
}

if (import.meta.main) {
  let code: number;
  try {
    code = await main(Deno.args);
  } catch (e: unknown) {
    console.error(`error: ${e instanceof Error ? e.message : String(e)}`);
    code = 2;
  }
  Deno.exit(code);
}
