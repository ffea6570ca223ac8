/**
 * Default locations, relative to the checkout (never to the working directory).
 *
 * @module
 */

import { fileURLToPath } from "node:url";

/**
 * `data/` inside the checkout: the datasets that ship with lowbit (TinyStories' evaluation text,
 * see `data/README.md`), laid out as any data root. The default dataset root; `--data DIR` or
 * `LOWBIT_DATA=DIR` choose another one.
 */
export function bundledDataDir(): string {
  return fileURLToPath(new URL("../data", import.meta.url));
}

/** Whether `path` exists (a dangling symlink counts); errors other than "not found" propagate. */
export async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  }
}
