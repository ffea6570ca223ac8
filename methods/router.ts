/**
 * Router quantization of MoE models, applied after any method when a cell asks for it
 * (`QuantConfig.router`, e.g. `W8A8`; `--router W8A8`). By default router weights stay in full
 * precision and the router reads the experts' (quantized, in weight-activation cells) input;
 * EAQuant quantizes its router itself (W8A8, with its KL-aligned clipping) and is left alone.
 *
 * Weights: per-row asymmetric min-max round-to-nearest at `wBits`, for the router `[E][dim]` and
 * the shared expert's gate `[1][dim]` (Qwen2-MoE). Activations, in weight-activation cells: the
 * router's input (and with it the shared gate's) gets its own copy, fake-quantized at `aBits`
 * (per-token, the cell's activation options) or left in float when `aBits` is 16.
 *
 * @module
 */

import { quantizeMatrix } from "../core/quantizer.ts";
import type { LlamaLayer, Matrix } from "../models/types.ts";
import type { QuantizedModel, RouterQuant } from "./types.ts";

/** Bit-widths a router may be quantized to. */
export const ROUTER_WBITS = [2, 3, 4, 5, 6, 7, 8] as const;

/** Checks a router setting; throws a `RangeError` naming the field and the accepted values. */
export function validateRouterQuant(r: RouterQuant): void {
  if (!(ROUTER_WBITS as readonly number[]).includes(r.wBits)) {
    throw new RangeError(
      `router weight bits must be one of ${ROUTER_WBITS.join(", ")}, got ${r.wBits}`,
    );
  }
  if (!Number.isInteger(r.aBits) || r.aBits < 2 || r.aBits > 16) {
    throw new RangeError(`router activation bits must be an integer in [2, 16], got ${r.aBits}`);
  }
}

/** `W8A8` → `{wBits: 8, aBits: 8}`; `fp` → undefined. */
export function parseRouterQuant(text: string, where = "--router"): RouterQuant | undefined {
  const t = text.trim();
  if (t === "fp") return undefined;
  const m = /^W(\d+)A(\d+)$/.exec(t);
  if (!m) {
    throw new SyntaxError(`${where}: expected "fp" or W<bits>A<bits> (e.g. W8A8), got "${t}"`);
  }
  const r = { wBits: Number(m[1]), aBits: Number(m[2]) };
  try {
    validateRouterQuant(r);
  } catch (e) {
    throw new RangeError(`${where}: ${(e as Error).message}`);
  }
  return r;
}

function rtnRows(m: Matrix, bits: number): Matrix {
  const q = quantizeMatrix(m.data, m.rows, m.cols, {
    bits,
    granularity: "channel",
    symmetric: false,
  });
  return { ...m, data: q.dequantized };
}

/**
 * Quantizes the routers (and shared-expert gates) of a method's output as `r` says. A dense model,
 * or a method that already quantized its router (`routerQuantized`), is returned unchanged with a
 * note.
 */
export function quantizeRouters(qm: QuantizedModel, r: RouterQuant): QuantizedModel {
  validateRouterQuant(r);
  if (!qm.weights.layers.some((l) => l.mlp.kind === "moe")) {
    return {
      ...qm,
      notes: [...qm.notes, "router quantization asked, but the model has no router"],
    };
  }
  if (qm.routerQuantized) {
    return {
      ...qm,
      notes: [
        ...qm.notes,
        "router quantized by the method itself; the cell's router setting is not applied",
      ],
    };
  }
  const layers = qm.weights.layers.map((layer): LlamaLayer => {
    if (layer.mlp.kind !== "moe") return layer;
    const mlp = layer.mlp;
    return {
      ...layer,
      mlp: {
        ...mlp,
        router: rtnRows(mlp.router, r.wBits),
        ...(mlp.sharedGate ? { sharedGate: rtnRows(mlp.sharedGate, r.wBits) } : {}),
      },
    };
  });
  return {
    ...qm,
    weights: { ...qm.weights, layers },
    routerQuantized: true,
    // 16 bits: the router reads the float MLP input rather than the experts' quantized one.
    routerAbits: r.aBits,
    notes: [
      ...qm.notes,
      `router W${r.wBits}A${r.aBits}: per-row asymmetric min-max weights, ` +
      (r.aBits < 16 ? `its input at ${r.aBits} bits` : "its input in float"),
    ],
  };
}
