/**
 * The tensors of a transformers checkpoint for a (quantized) model's weights, named by the
 * loader's own description (`models/hf_weights.ts`): the weights builder is run in planning mode
 * with a source that hands out marked placeholders, and the placeholders are matched
 * structurally against the real weights. So every family the loader reads (Llama, Qwen2/3,
 * Mistral, Phi-3's fused `qkv_proj` / `gate_up_proj`, Gemma 2, OPT, MoE) is written under the
 * names it is read from, with no second list of names to keep in step.
 *
 * Gemma 2 norm weights are held as `1 + w` (`hf_weights.ts` folds them at load); they are
 * written back as `(1 + w) − 1` in float32.
 *
 * @module
 */

import type { PackedWeight } from "../core/quantizer.ts";
import { hfWeights } from "../models/hf_weights.ts";
import { listLinears } from "../models/linears.ts";
import type { LlamaConfig, LlamaWeights, Matrix } from "../models/types.ts";
import { concatPackedRows } from "../models/formats/packed_rows.ts";

/** A float tensor of the checkpoint (embedding, norm, bias, unquantized matrix). */
export interface FloatCheckpointTensor {
  readonly kind: "float";
  /** Full tensor name, e.g. `model.norm.weight`. */
  readonly name: string;
  readonly shape: readonly number[];
  /** The values to store (float32; the writer rounds them to its dtype). */
  readonly values: Float32Array;
  /** Storage dtype of the source tensor when known (`BF16`, `F16`, `F32`). */
  readonly sourceDtype?: string;
  /** Our linear sites stored in this tensor when it is an unquantized linear layer. */
  readonly sites?: readonly string[];
}

/** A quantized linear of the checkpoint: its module name and packed weight (fused parts joined). */
export interface QuantizedCheckpointLinear {
  readonly kind: "linear";
  /** Module name, e.g. `model.layers.0.self_attn.q_proj` (the tensor was `{module}.weight`). */
  readonly module: string;
  readonly packed: PackedWeight;
  /** Our linear sites stored in this tensor, in row order (two or three when fused). */
  readonly sites: readonly string[];
}

/** One entry of {@linkcode checkpointLayout}. */
export type CheckpointEntry = FloatCheckpointTensor | QuantizedCheckpointLinear;

const MARK = Symbol("checkpoint tensor");

interface Marked extends Matrix {
  readonly [MARK]: { readonly name: string; readonly rowStart: number };
}

interface Part {
  readonly rowStart: number;
  readonly matrix: Matrix;
}

/**
 * The checkpoint tensors of `weights` in the loader's reading order: linears whose site is in
 * `packed` become {@linkcode QuantizedCheckpointLinear}s, everything else float tensors (the
 * classifier only when not tied).
 *
 * @throws {RangeError} When a fused tensor mixes quantized and unquantized parts, or its parts
 *   cannot be fused (see `concatPackedRows`).
 */
export function checkpointLayout(
  config: LlamaConfig,
  weights: LlamaWeights,
  packed: ReadonlyMap<string, PackedWeight> = new Map(),
): CheckpointEntry[] {
  const vectorNames = new Map<Float32Array, string>();
  const empty = new Float32Array(0);
  const plan = hfWeights(config, {
    names: () => [],
    shape: () => undefined,
    matrix: (name, rows, cols, rowStart): Marked => ({
      rows,
      cols,
      data: empty,
      [MARK]: { name, rowStart },
    }),
    vector: (name) => {
      const v = new Float32Array(0);
      vectorNames.set(v, name);
      return v;
    },
    declare: () => {},
  }, "plan");

  const order: string[] = [];
  const matrices = new Map<string, Part[]>();
  const vectors = new Map<string, Float32Array>();
  const seen = new Set<unknown>();
  const zip = (planned: unknown, actual: unknown, path: string): void => {
    if (planned === null || typeof planned !== "object") return;
    if (planned instanceof Float32Array) {
      const name = vectorNames.get(planned);
      if (name === undefined) return;
      if (!(actual instanceof Float32Array)) {
        throw new RangeError(`checkpoint layout: ${path} (${name}) is missing in the weights`);
      }
      if (!vectors.has(name)) order.push(name);
      vectors.set(name, actual);
      return;
    }
    if (MARK in planned) {
      if (seen.has(planned)) return; // the tied classifier is the embedding
      seen.add(planned);
      const { name, rowStart } = (planned as Marked)[MARK];
      const m = actual as Matrix | undefined;
      if (!m || typeof m.rows !== "number") {
        throw new RangeError(`checkpoint layout: ${path} (${name}) is missing in the weights`);
      }
      if (!matrices.has(name)) {
        order.push(name);
        matrices.set(name, []);
      }
      matrices.get(name)!.push({ rowStart, matrix: m });
      return;
    }
    if (actual === null || typeof actual !== "object") {
      throw new RangeError(`checkpoint layout: ${path} is missing in the weights`);
    }
    for (const [key, value] of Object.entries(planned)) {
      zip(value, (actual as Record<string, unknown>)[key], path ? `${path}.${key}` : key);
    }
  };
  zip(plan, weights, "");

  const siteOf = new Map<Matrix, string>();
  for (const { site, matrix } of listLinears(weights)) siteOf.set(matrix, site.name);
  const gemma = config.family === "gemma2";
  const out: CheckpointEntry[] = [];
  for (const name of order) {
    const v = vectors.get(name);
    if (v) {
      const values = gemma && /norm\.weight$/.test(name)
        ? v.map((x) => Math.fround(x - 1))
        : v.slice();
      out.push({ kind: "float", name, shape: [v.length], values });
      continue;
    }
    const parts = matrices.get(name)!.sort((a, b) => a.rowStart - b.rowStart);
    const sites = parts.map((p) => siteOf.get(p.matrix));
    const packs = sites.map((s) => (s === undefined ? undefined : packed.get(s)));
    const cols = parts[0]!.matrix.cols;
    const rows = parts.reduce((n, p) => n + p.matrix.rows, 0);
    if (packs.every((p) => p !== undefined)) {
      const module = name.replace(/\.weight$/, "");
      out.push({
        kind: "linear",
        module,
        packed: concatPackedRows(module, packs as PackedWeight[]),
        sites: sites as string[],
      });
      continue;
    }
    if (packs.some((p) => p !== undefined)) {
      throw new RangeError(
        `${name}: fused tensor of quantized (${
          sites.filter((_, i) => packs[i]).join(", ")
        }) and unquantized parts`,
      );
    }
    const values = new Float32Array(rows * cols);
    let at = 0;
    for (const p of parts) {
      values.set(p.matrix.data, at);
      at += p.matrix.rows * cols;
    }
    const dtype = parts[0]!.matrix.dtype;
    const linearSites = sites.filter((s) => s !== undefined);
    out.push({
      kind: "float",
      name,
      shape: [rows, cols],
      values,
      ...(dtype ? { sourceDtype: dtype } : {}),
      ...(linearSites.length > 0 ? { sites: linearSites } : {}),
    });
  }
  return out;
}
