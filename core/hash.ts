/**
 * Content hashes: sha256 of bytes, and of canonical JSON (sorted keys) for cell ids.
 *
 * @module
 */

import { Sha256 } from "./sha256_sync.ts";

/**
 * Lower-case hex sha256 of parts (bytes or UTF-8 strings), each followed by a zero byte so
 * different splits of the same bytes differ; synchronous.
 */
export function sha256Parts(...parts: (string | Uint8Array)[]): string {
  const h = new Sha256();
  for (const p of parts) h.update(p).update("\0");
  return h.hex();
}

/** Lower-case hex sha256 of bytes or a UTF-8 string. */
export async function sha256Hex(data: Uint8Array | string): Promise<string> {
  const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
  const digest = await crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>);
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

/** JSON with object keys sorted at every level, so equal values give equal strings. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_key, v) => {
    if (v && typeof v === "object" && !Array.isArray(v)) {
      return Object.fromEntries(Object.entries(v).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
    }
    return v;
  });
}
