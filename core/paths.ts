/**
 * Default locations, relative to the checkout (never to the working directory).
 *
 * @module
 */

/** `../shared/data` beside the checkout: the default dataset root (override: `--data`, `LOWBIT_DATA`). */
export function sharedDataDir(): string {
  return new URL("../../shared/data", import.meta.url).pathname;
}
