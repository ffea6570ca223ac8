/**
 * Helpers for error messages about parsed JSON: what a value is, shortly.
 *
 * @module
 */

/** A short JSON-ish rendering of a value for "expected X, got Y" messages. */
export function describe(value: unknown): string {
  if (value === undefined) return "nothing";
  const json = JSON.stringify(value);
  return json === undefined ? String(value) : json.length > 60 ? `${json.slice(0, 57)}...` : json;
}

/** Whether a value is a plain JSON object (not null, not an array). */
export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
