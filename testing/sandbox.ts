/**
 * Test helper: a fresh Hugging Face cache and scratch directory, with a mirror serving
 * stories260K's Hub files (`../shared/hf-mirror`, or fetched from the Hub: see
 * `testing/fixtures.ts`) on 127.0.0.1, removed again by `await using`. Tests using it pass
 * `await needs("hf-mirror")`.
 *
 * @module
 */

import { type Mirror, startMirror } from "./mirror_server.ts";

/** What {@linkcode sandbox} gives a test. */
export interface Sandbox extends AsyncDisposable {
  readonly mirror: Mirror;
  /** Scratch directory (the HF cache is `${dir}/hf`). */
  readonly dir: string;
  /** `HF_ENDPOINT` and `HF_HUB_CACHE` for child processes. */
  readonly vars: Record<string, string>;
  /** The same variables as an `env` lookup for `loadModel`/`runMatrix`. */
  readonly env: (name: string) => string | undefined;
}

/** Starts a mirror and makes a temporary directory named `prefix…`. */
export async function sandbox(prefix = "lowbit-test-"): Promise<Sandbox> {
  const mirror = await startMirror();
  const dir = await Deno.makeTempDir({ prefix });
  const vars: Record<string, string> = { HF_ENDPOINT: mirror.endpoint, HF_HUB_CACHE: `${dir}/hf` };
  return {
    mirror,
    dir,
    vars,
    env: (name: string) => vars[name],
    async [Symbol.asyncDispose]() {
      await mirror.close();
      await Deno.remove(dir, { recursive: true });
    },
  };
}
