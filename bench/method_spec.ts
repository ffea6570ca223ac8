/**
 * Method specs: a method id with parameter overrides, as written in presets and on the command
 * line — `gptq`, `gptq:actOrder=true`, `gptq:groupParams=static:percdamp=0.1`.
 *
 * Values `true`/`false` are booleans, numbers are numbers, anything else is a string. The
 * parameters are checked against the method's registry entry when the matrix is planned.
 * Chains (`smoothquant+gptq`) are reserved for methods that transform weights before another
 * quantizes them, and are rejected until such a method exists.
 *
 * @module
 */

/** A parsed method spec. */
export interface MethodSpec {
  /** The spec as written (also the cell's method label). */
  readonly spec: string;
  /** The registry id. */
  readonly id: string;
  /** Parameter overrides, in the order given. */
  readonly params: Readonly<Record<string, number | boolean | string>>;
}

function parseValue(v: string): number | boolean | string {
  if (v === "true") return true;
  if (v === "false") return false;
  if (v.trim() !== "" && Number.isFinite(Number(v))) return Number(v);
  return v;
}

/** Parses `id[:key=value]*`; throws a `SyntaxError` naming the malformed part. */
export function parseMethodSpec(text: string): MethodSpec {
  const spec = text.trim();
  if (spec.includes("+")) {
    throw new SyntaxError(
      `Method chain "${spec}": chains (a+b) are not supported yet; give one method per spec`,
    );
  }
  const [id, ...parts] = spec.split(":");
  if (!id) throw new SyntaxError(`Method spec "${text}" has no method id`);
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
  return { spec, id, params };
}
