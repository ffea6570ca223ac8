/**
 * The method registry. Adding a method: one file exporting a {@linkcode Method}, one import and
 * one entry below.
 *
 * @module
 */

import { createRegistry, type Registry } from "../core/registry.ts";
import { flexround } from "./flexround.ts";
import { fp } from "./fp.ts";
import { gptq } from "./gptq.ts";
import { rtn } from "./rtn.ts";
import type { Method } from "./types.ts";

/** All registered methods. */
export const METHODS: Registry<Method> = createRegistry("method", [fp, rtn, gptq, flexround]);
