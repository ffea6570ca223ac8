/**
 * Paths of the shared fixtures (`../shared` beside the checkout) for tests.
 *
 * The root is `LOWBIT_SHARED` when set, otherwise `../shared` relative to the project root
 * (never to the working directory). Fixture files are read in place, never copied.
 *
 * @module
 */

/** The shared fixture root, without a trailing slash. */
export function sharedRoot(): string {
  let fromEnv: string | undefined;
  try {
    fromEnv = Deno.env.get("LOWBIT_SHARED");
  } catch {
    // no --allow-env: use the default location
  }
  if (fromEnv) return fromEnv.replace(/\/+$/, "");
  return decodeURIComponent(new URL("../../shared", import.meta.url).pathname);
}

/** Path of a shared fixture, e.g. `sharedPath("models", "stories260K-hf", "config.json")`. */
export function sharedPath(...parts: string[]): string {
  return [sharedRoot(), ...parts].join("/");
}
