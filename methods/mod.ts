/**
 * The method registry. Adding a method: one file exporting a {@linkcode Method}, one import and
 * one entry below.
 *
 * @module
 */

import { createRegistry, type Registry } from "../core/registry.ts";
import { affinequant } from "./affinequant.ts";
import { awq } from "./awq.ts";
import { CHAIN_SEPARATOR, chainMethods } from "./chain.ts";
import { crossquant } from "./crossquant.ts";
import { eaquant } from "./eaquant.ts";
import { flexround } from "./flexround.ts";
import { fp } from "./fp.ts";
import { gptq } from "./gptq.ts";
import { quarot } from "./quarot.ts";
import { rtn } from "./rtn.ts";
import { smoothquant } from "./smoothquant.ts";
import type { Method } from "./types.ts";

/** All registered methods. */
export const METHODS: Registry<Method> = createRegistry("method", [
  fp,
  rtn,
  gptq,
  flexround,
  affinequant,
  smoothquant,
  crossquant,
  eaquant,
  awq,
  quarot,
]);

/**
 * The method of an id: a registered one, or a chain `a+b` of two (see `chain.ts`). Throws a
 * `TypeError` listing the valid ids for an unknown one.
 */
export function getMethod(id: string): Method {
  if (!id.includes(CHAIN_SEPARATOR)) return METHODS.get(id);
  const [a, b, ...rest] = id.split(CHAIN_SEPARATOR);
  if (rest.length > 0 || !a || !b) {
    throw new TypeError(`Method chain "${id}": expected two methods, e.g. smoothquant+gptq`);
  }
  return chainMethods(METHODS.get(a), METHODS.get(b));
}
