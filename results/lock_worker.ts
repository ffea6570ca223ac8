/**
 * Worker of `lock.ts`: on SIGINT or SIGTERM, removes the lock file (when it is still the one this
 * process holds) and lets the signal end the process as it would have without the lock.
 *
 * It runs in its own thread so that a signal is acted on at once, even while the main thread is
 * busy in a long synchronous computation (a listener there would wait for it to yield).
 *
 * Protocol: the first message is `{path, dev, ino}` of the held lock file; the worker answers
 * `"ready"` once its listeners are in place.
 *
 * @module
 */

/// <reference no-default-lib="true" />
/// <reference lib="deno.worker" />

const SIGNALS = ["SIGINT", "SIGTERM"] as const;

self.onmessage = (e: MessageEvent<{ path: string; dev: number; ino: number | null }>) => {
  const { path, dev, ino } = e.data;
  const listeners = new Map<Deno.Signal, () => void>();
  for (const sig of SIGNALS) {
    const fn = () => {
      try {
        const s = Deno.statSync(path);
        if (s.dev === dev && s.ino === ino) Deno.removeSync(path);
      } catch {
        // already gone
      }
      for (const [s, f] of listeners) Deno.removeSignalListener(s, f);
      // No listener left: the signal's default action ends the process (exit 130 / 143).
      Deno.kill(Deno.pid, sig);
    };
    try {
      Deno.addSignalListener(sig, fn);
      listeners.set(sig, fn);
    } catch {
      // not supported here (SIGTERM on Windows)
    }
  }
  self.postMessage("ready");
};
