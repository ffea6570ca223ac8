/**
 * Method specs: a method id with parameter overrides, as written in presets and on the command
 * line — `gptq`, `gptq:actOrder=true`, `gptq:groupParams=static:percdamp=0.1`.
 *
 * Values `true`/`false` are booleans, numbers are numbers, anything else is a string. The
 * parameters are checked against the method's registry entry when the matrix is planned.
 * Chains join two specs with `+` (`smoothquant:alpha=0.8+gptq:actOrder=true`): the id is
 * `smoothquant+gptq` and parameters are namespaced by method (`smoothquant.alpha`), as the chain
 * method (`methods/chain.ts`) expects.
 *
 * @module
 */

import { CHAIN_SEPARATOR } from "../methods/chain.ts";

/** A parsed method spec. */
export interface MethodSpec {
  /** The spec as written (also the cell's method label). */
  readonly spec: string;
  /** The registry id. */
  readonly id: string;
  /** The registry ids of its members: one, or a chain's two in order. */
  readonly steps: readonly string[];
  /** Parameter overrides, in the order given. */
  readonly params: Readonly<Record<string, number | boolean | string>>;
}

function parseValue(v: string): number | boolean | string {
  if (v === "true") return true;
  if (v === "false") return false;
  if (v.trim() !== "" && Number.isFinite(Number(v))) return Number(v);
  return v;
}

/** Parses `id[:key=value]*[+id[:key=value]*]`; throws a `SyntaxError` naming the malformed part. */
export function parseMethodSpec(text: string): MethodSpec {
  const spec = text.trim();
  if (spec.includes(CHAIN_SEPARATOR)) {
    const steps = spec.split(CHAIN_SEPARATOR).map((s) => parseOne(s.trim()));
    if (steps.length !== 2) {
      throw new SyntaxError(
        `Method chain "${spec}": a chain is a transform and a weight quantizer, e.g. smoothquant+gptq`,
      );
    }
    const params: Record<string, number | boolean | string> = {};
    for (const st of steps) {
      for (const [k, v] of Object.entries(st.params)) params[`${st.id}.${k}`] = v;
    }
    const ids = steps.map((s) => s.id);
    return { spec, id: ids.join(CHAIN_SEPARATOR), steps: ids, params };
  }
  return parseOne(spec);
}

function parseOne(spec: string): MethodSpec {
  const [id, ...parts] = spec.split(":");
  if (!id) throw new SyntaxError(`Method spec "${spec}" has no method id`);
  const params: Record<string, number | boolean | string> = {};
  for (const p of parts) {
    const m = /^([A-Za-z_][A-Za-z0-9_]*)=(.+)$/.exec(p);
    if (!m) {
      throw new SyntaxError(
        `Method spec "${spec}": cannot parse "${p}", expected key=value (e.g. gptq:actOrder=true)`,
      );
    }
    if (m[1]! in params) throw new SyntaxError(`Method spec "${spec}" sets "${m[1]}" twice`);
    params[m[1]!] = parseValue(m[2]!);
  }
  return { spec, id, steps: [id], params };
}

/**
 * One spec per value of parameter `name` for a spec whose method (or, in a chain, member)
 * `hasParam` accepts it — `smoothquant` with α 0.1, 0.5 → `smoothquant:alpha=0.1`,
 * `smoothquant:alpha=0.5`; `smoothquant+gptq` → `smoothquant:alpha=0.1+gptq`. Specs that already
 * set the parameter, or whose methods lack it, are returned unchanged.
 */
export function sweepParam(
  spec: string,
  name: string,
  values: readonly number[],
  hasParam: (id: string) => boolean,
): string[] {
  const steps = spec.split(CHAIN_SEPARATOR);
  const i = steps.findIndex((st) => {
    const one = parseOne(st.trim());
    return hasParam(one.id) && !(name in one.params);
  });
  if (i < 0) return [spec];
  return values.map((v) =>
    steps.map((st, j) => (j === i ? `${st.trim()}:${name}=${v}` : st.trim())).join(CHAIN_SEPARATOR)
  );
}
