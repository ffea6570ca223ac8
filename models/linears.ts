/**
 * Walking and rewriting the linear layers of a model: the seven kinds methods quantize, in the
 * attention, the dense MLPs and every expert of MoE blocks (the shared one included; ungated
 * MLPs have no gate). Biases stay with the layer. Routers and
 * the shared expert's gate are not among them (see `methods/router.ts`).
 *
 * @module
 */

import {
  type DenseMlp,
  expertMlps,
  type LinearKind,
  type LlamaLayer,
  type LlamaWeights,
  type Matrix,
  type MoeMlp,
} from "./types.ts";
import { isLazy } from "./lazy_matrix.ts";

/** Where a linear layer sits: its layer, kind and (in MoE blocks) its expert. */
export interface LinearSite {
  readonly layer: number;
  readonly kind: LinearKind;
  /**
   * Expert number inside a MoE block (the shared expert is number `nExperts`); absent for dense
   * and attention linears.
   */
  readonly expert?: number;
  /** A stable name like `layers.3.gate`, `layers.3.experts.1.down` or `layers.3.shared.up`. */
  readonly name: string;
}

/**
 * The site of a linear: in MoE blocks `expert` numbers the routed experts, and `nExperts` (the
 * routed count) names the shared expert.
 */
export function linearSite(
  layer: number,
  kind: LinearKind,
  expert?: number,
  nExperts?: number,
): LinearSite {
  if (expert === undefined) return { layer, kind, name: `layers.${layer}.${kind}` };
  const name = expert === nExperts
    ? `layers.${layer}.shared.${kind}`
    : `layers.${layer}.experts.${expert}.${kind}`;
  return { layer, kind, expert, name };
}

/** Every linear layer of the model, in forward order, with its matrix. */
export function listLinears(w: LlamaWeights): { site: LinearSite; matrix: Matrix }[] {
  const out: { site: LinearSite; matrix: Matrix }[] = [];
  w.layers.forEach((layer, l) => {
    for (const kind of ["q", "k", "v", "o"] as const) {
      out.push({ site: linearSite(l, kind), matrix: layer[kind] });
    }
    const moe = layer.mlp.kind === "moe" ? layer.mlp : undefined;
    const experts = moe ? expertMlps(moe) : [layer.mlp as DenseMlp];
    experts.forEach((mlp, e) => {
      for (const kind of ["gate", "up", "down"] as const) {
        const matrix = mlp[kind];
        if (!matrix) continue; // ungated MLPs (OPT) have no gate
        const site = moe ? linearSite(l, kind, e, moe.experts.length) : linearSite(l, kind);
        out.push({ site, matrix });
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
  const mapDense = (mlp: DenseMlp, l: number, e?: number, n?: number): DenseMlp => ({
    ...mlp,
    ...(mlp.gate ? { gate: fn(linearSite(l, "gate", e, n), mlp.gate) } : {}),
    up: fn(linearSite(l, "up", e, n), mlp.up),
    down: fn(linearSite(l, "down", e, n), mlp.down),
  });
  const mapMoe = (mlp: MoeMlp, l: number): MoeMlp => {
    const n = mlp.experts.length;
    const experts = mlp.experts.map((m, e) => mapDense(m, l, e, n));
    return mlp.shared
      ? { ...mlp, experts, shared: mapDense(mlp.shared, l, n, n) }
      : { ...mlp, experts };
  };
  const layers = w.layers.map((layer, l): LlamaLayer => ({
    ...layer,
    q: fn(linearSite(l, "q"), layer.q),
    k: fn(linearSite(l, "k"), layer.k),
    v: fn(linearSite(l, "v"), layer.v),
    o: fn(linearSite(l, "o"), layer.o),
    mlp: layer.mlp.kind === "dense" ? mapDense(layer.mlp, l) : mapMoe(layer.mlp, l),
  }));
  return { ...w, layers };
}

/** Whether a model's weights are kept in their stored dtype and materialized per block. */
export function isStreamed(w: LlamaWeights): boolean {
  return isLazy(w.embed) || listLinears(w).some(({ matrix }) => isLazy(matrix));
}
