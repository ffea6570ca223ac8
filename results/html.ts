/**
 * HTML escaping for strings that come from data (model names, method specs, error messages).
 *
 * @module
 */

const ENTITIES: Record<string, string> = {
  "&": "&amp;",
  "<": "&lt;",
  ">": "&gt;",
  '"': "&quot;",
  "'": "&#39;",
};

/** Escapes text for element content and quoted attribute values. */
export function escapeHtml(s: unknown): string {
  return String(s).replace(/[&<>"']/g, (c) => ENTITIES[c]!);
}

/** A file-name-safe slug of `s` (letters, digits, `.`, `_`, `-`), never empty. */
export function slug(s: string): string {
  const t = s.replace(/[^A-Za-z0-9._-]+/g, "_").replace(/^[._]+/, "").slice(0, 80);
  return t || "model";
}
