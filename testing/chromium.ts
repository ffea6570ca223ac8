/**
 * Test helper: the Chromium executable for browser tests — `$CHROMIUM_PATH`, or Debian's
 * `chromium` — or undefined when none is installed (the tests are then skipped).
 *
 * @module
 */

const CANDIDATES = [
  Deno.env.get("CHROMIUM_PATH"),
  "/usr/bin/chromium",
  "/usr/bin/chromium-browser",
  "/usr/bin/google-chrome",
].filter((p): p is string => !!p);

/** The first installed Chromium of the candidates, or undefined. */
export function findChromium(): string | undefined {
  for (const p of CANDIDATES) {
    try {
      if (Deno.statSync(p).isFile) return p;
    } catch {
      // not there
    }
  }
  return undefined;
}
