/**
 * Test helper: stories260K loaded the way users load it — downloaded from a local mirror of its
 * Hub files (`../shared/hf-mirror`, or fetched from the Hub: see `testing/fixtures.ts`) through
 * `HF_ENDPOINT` into a fresh Hugging Face cache — once per test module. Tests using it pass
 * `await needs("hf-mirror")`.
 *
 * @module
 */

import { loadModel } from "../models/load.ts";
import type { LoadedModel } from "../models/types.ts";
import { startMirror } from "./mirror_server.ts";

let cached: Promise<LoadedModel> | undefined;

/** Downloads (into a temporary cache) and loads stories260K; the same promise on later calls. */
export function stories260K(): Promise<LoadedModel> {
  cached ??= (async () => {
    const mirror = await startMirror();
    const cache = await Deno.makeTempDir({ prefix: "lowbit-hf-cache-" });
    try {
      const env = (name: string) =>
        ({ HF_ENDPOINT: mirror.endpoint, HF_HUB_CACHE: cache } as Record<string, string>)[name];
      return await loadModel("stories260K", { env });
    } finally {
      await mirror.close();
      await Deno.remove(cache, { recursive: true });
    }
  })();
  return cached;
}
