/**
 * Walking and rewriting the linear layers of a model: the seven kinds methods quantize.
 *
 * @module
 */

import type { DenseMlp, LinearKind, LlamaLayer, LlamaWeights, Matrix } from "./types.ts";

/** Where a linear layer sits: its layer, kind and (in MoE blocks) its expert. */
export interface LinearSite {
  readonly layer: number;
  readonly kind: LinearKind;
  /** Expert index inside a MoE block; absent for dense and attention linears. */
  readonly expert?: number;
  /** A stable name like `layers.3.gate` or `layers.3.experts.1.down`. */
  readonly name: string;
}

function site(layer: number, kind: LinearKind, expert?: number): LinearSite {
  const name = expert === undefined
    ? `layers.${layer}.${kind}`
    : `layers.${layer}.experts.${expert}.${kind}`;
  return expert === undefined ? { layer, kind, name } : { layer, kind, expert, name };
}

/** Every linear layer of the model, in forward order, with its matrix. */
export function listLinears(w: LlamaWeights): { site: LinearSite; matrix: Matrix }[] {
  const out: { site: LinearSite; matrix: Matrix }[] = [];
  w.layers.forEach((layer, l) => {
    for (const kind of ["q", "k", "v", "o"] as const) {
      out.push({ site: site(l, kind), matrix: layer[kind] });
    }
    const experts = layer.mlp.kind === "dense" ? [layer.mlp] : layer.mlp.experts;
    experts.forEach((mlp, e) => {
      const ex = layer.mlp.kind === "dense" ? undefined : e;
      for (const kind of ["gate", "up", "down"] as const) {
        out.push({ site: site(l, kind, ex), matrix: mlp[kind] });
      }
    });
  });
  return out;
}

/**
 * A copy of the weights with each linear replaced by `fn(site, matrix)`; embeddings, norms,
 * routers and the classifier are shared with the input (not copied).
 */
export function mapLinears(
  w: LlamaWeights,
  fn: (site: LinearSite, matrix: Matrix) => Matrix,
): LlamaWeights {
  const mapDense = (mlp: DenseMlp, l: number, e?: number): DenseMlp => ({
    kind: "dense",
    gate: fn(site(l, "gate", e), mlp.gate),
    up: fn(site(l, "up", e), mlp.up),
    down: fn(site(l, "down", e), mlp.down),
  });
  const layers = w.layers.map((layer, l): LlamaLayer => ({
    ...layer,
    q: fn(site(l, "q"), layer.q),
    k: fn(site(l, "k"), layer.k),
    v: fn(site(l, "v"), layer.v),
    o: fn(site(l, "o"), layer.o),
    mlp: layer.mlp.kind === "dense"
      ? mapDense(layer.mlp, l)
      : { ...layer.mlp, experts: layer.mlp.experts.map((m, e) => mapDense(m, l, e)) },
  }));
  return { ...w, layers };
}
