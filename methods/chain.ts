/**
 * Method chains: a transform followed by a weight quantizer, written `smoothquant+gptq`. The seed
 * paper recommends combining compensation with other strategies; a chain is one method to the
 * runner, recorded as such in the row.
 *
 * The first method's `transform` runs on the full-precision model (SmoothQuant's smoothing, static
 * CrossQuant's folding, with its activation quantizer); the second quantizes the transformed
 * weights as a weight-only method (calibrating, if it does, on the transformed model with float
 * activations); the activation quantizer of the first is then carried over. Parameters are
 * namespaced by method: `smoothquant.alpha`, `gptq.actOrder`.
 *
 * @module
 */

import type {
  Method,
  MethodContext,
  ParamSpec,
  QuantConfig,
  QuantizedModel,
  TransformedModel,
} from "./types.ts";

/** Separator of chained method ids. */
export const CHAIN_SEPARATOR = "+";

/**
 * The chain `first+second` as one method. Throws a `TypeError` when `first` has no transform or
 * `second` quantizes activations itself.
 */
export function chainMethods(first: Method, second: Method): Method {
  if (!first.transform) {
    throw new TypeError(
      `Method "${first.id}" cannot start a chain: it does not transform weights (chains start ` +
        `with a transform such as smoothquant)`,
    );
  }
  const transform = first.transform.bind(first);
  const params: Record<string, ParamSpec> = {};
  for (const [k, v] of Object.entries(first.params)) params[`${first.id}.${k}`] = v;
  for (const [k, v] of Object.entries(second.params)) params[`${second.id}.${k}`] = v;
  const split = (p: Readonly<Record<string, number | boolean | string>>, id: string) => {
    const out: Record<string, number | boolean | string> = {};
    for (const [k, v] of Object.entries(p)) {
      if (k.startsWith(`${id}.`)) out[k.slice(id.length + 1)] = v;
    }
    return out;
  };
  return {
    id: `${first.id}${CHAIN_SEPARATOR}${second.id}`,
    title: `${first.title} + ${second.title}`,
    // A chain is listed under its weight quantizer's class unless that is the baseline, or the
    // chain starts with a rotation (quarot+gptq is QuaRot's own main setting).
    taxonomy: second.taxonomy === "baseline" || first.taxonomy === "rotation"
      ? first.taxonomy
      : second.taxonomy,
    scope: first.scope === "weight-activation" || second.scope === "weight-activation"
      ? "weight-activation"
      : second.scope,
    // Both versions in one number: a change in either changes the chain's cells.
    version: first.version * 1000 + second.version,
    wBits: second.wBits.filter((b) => first.wBits.includes(b)),
    aBits: first.aBits,
    needsCalibration: first.needsCalibration || second.needsCalibration,
    ...chainedSupport(first, second),
    // The first method's reference calibration (AWQ's recipe) feeds both.
    ...(first.calibration || second.calibration
      ? { calibration: { ...second.calibration, ...first.calibration } }
      : {}),
    // The weights are rounded by the second method's quantizer.
    ...(second.rangeIncludesZero ? { rangeIncludesZero: second.rangeIncludesZero } : {}),
    relativeCost: (first.relativeCost ?? 1) + (second.relativeCost ?? 1) - 1,
    reference: `${first.reference ?? first.id}; then ${second.reference ?? second.id}`,
    params,
    modelDefaults: (modelId) => {
      const out: Record<string, number | boolean | string> = {};
      for (const m of [first, second]) {
        for (const [k, v] of Object.entries(m.modelDefaults?.(modelId) ?? {})) {
          out[`${m.id}.${k}`] = v;
        }
      }
      return out;
    },
    async quantize(model, q, p, ctx) {
      const t = await transform(model, q, split(p, first.id), ctx);
      return quantizeTransformed(t, second, q, split(p, second.id), ctx);
    },
  };
}

/**
 * Quantizes the weights of a transformed model with `second` as a weight-only method, then
 * carries the transform's activation quantizer (if any) over; notes of both are kept.
 */
export async function quantizeTransformed(
  t: TransformedModel,
  second: Method,
  q: QuantConfig,
  params: Readonly<Record<string, number | boolean | string>>,
  ctx: MethodContext,
): Promise<QuantizedModel> {
  const activations = t.weights.activations;
  const qm = await second.quantize(
    { config: t.config, weights: { ...t.weights, activations: undefined } },
    { ...q, aBits: 16 },
    params,
    ctx,
  );
  return {
    ...qm,
    weights: { ...qm.weights, activations },
    notes: [...t.notes, ...qm.notes, `weights: ${second.id}`],
  };
}

/** A chain runs what both steps run: the granularities they share, and either one's model kind. */
function chainedSupport(first: Method, second: Method): Pick<Method, "granularities" | "models"> {
  const g = first.granularities && second.granularities
    ? first.granularities.filter((x) => second.granularities!.includes(x))
    : first.granularities ?? second.granularities;
  const models = first.models ?? second.models;
  return { ...(g ? { granularities: g } : {}), ...(models ? { models } : {}) };
}
