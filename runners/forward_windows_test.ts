import assert from "node:assert/strict";
import { forwardHidden } from "./forward.ts";
import { forwardHiddenWindows, windowGroups } from "./forward_windows.ts";
import { refKernels } from "../kernels/ref/mod.ts";
import { wasmKernels } from "../kernels/wasm/mod.ts";
import { loadModel } from "../models/load.ts";
import { needs, sharedPath } from "../testing/fixtures.ts";
import { stories260K } from "../testing/stories.ts";
import type { ForwardModel } from "./forward.ts";
import type { Kernels } from "../kernels/types.ts";

const moe = await needs("models/stories260K-moe");

/** Windows of different lengths (attention must stay within each; the MLP sees them all). */
function windowsOf(vocab: number): number[][] {
  return [37, 5, 64, 1].map((T, w) =>
    Array.from({ length: T }, (_, t) => (t === 0 ? 1 : (t * 31 + w * 17 + 3) % vocab))
  );
}

/**
 * Merged (block by block) or not, the results equal each window's own forward pass bit for bit,
 * router decisions included: the WASM kernels' one-row products (a one-token window, an expert's
 * only row in a window) sum in another order than their many-row ones, so this fails unless those
 * run alone.
 */
function checkSame(
  model: ForwardModel,
  kernels: Kernels,
  merged: boolean,
  maxRows?: number,
): void {
  const windows = windowsOf(model.config.vocabSize);
  const seen: string[][] = windows.map(() => []);
  const got = forwardHiddenWindows(model, windows, {
    kernels,
    merged,
    ...(maxRows !== undefined ? { maxRows } : {}),
    routing: (w, l, probs, chosen, T) => {
      assert.equal(T, windows[w]!.length);
      seen[w]!.push(`${l}:${[...chosen]}:${[...probs]}`);
    },
  });
  windows.forEach((w, i) => {
    const own: string[] = [];
    const want = forwardHidden(model, w, {
      kernels,
      routing: (l, probs, chosen) => own.push(`${l}:${[...chosen]}:${[...probs]}`),
    });
    assert.deepEqual(got[i], want, `window ${i}`);
    assert.deepEqual(seen[i], own, `window ${i}'s router decisions`);
  });
}

for (const merged of [true, false]) {
  const how = merged ? "merged" : "window by window";
  Deno.test(`forwardHiddenWindows() ${how}: each window as its own forward pass (dense)`, async () => {
    const model = await stories260K();
    checkSame(model, refKernels, merged);
    checkSame(model, await wasmKernels(), merged);
  });

  moe.test(`forwardHiddenWindows() ${how}: each window as its own forward pass (MoE)`, async () => {
    const model = await loadModel(sharedPath("models", "stories260K-moe"));
    checkSame(model, refKernels, merged);
    checkSame(model, await wasmKernels(), merged);
    // In groups of at most 70 rows: [37, 5] then [64].
    checkSame(model, await wasmKernels(), merged, 70);
  });
}

Deno.test("forwardHiddenWindows(): attention does not cross windows", async () => {
  const model = await stories260K();
  const a = [1, 50, 60, 70];
  const b = [1, 80, 90, 100];
  const [, hb] = forwardHiddenWindows(model, [a, b], { merged: true });
  const [hb2] = forwardHiddenWindows(model, [b], { merged: true });
  // Window b's states do not depend on window a being run beside it.
  assert.deepEqual(hb, hb2);
  // … and a window's states do depend on its earlier tokens (the check above could fail).
  const [hc] = forwardHiddenWindows(model, [[1, 81, 90, 100]], { merged: true });
  assert.notDeepEqual(hc!.subarray(3 * model.config.dim), hb!.subarray(3 * model.config.dim));
});

Deno.test("windowGroups(): consecutive windows up to the row cap, a longer one alone, zeros left out", () => {
  assert.deepEqual(windowGroups([37, 5, 64, 0, 10], 70), [[0, 1], [2], [4]]);
  assert.deepEqual(windowGroups([100, 3, 3], 50), [[0], [1, 2]]);
  assert.deepEqual(windowGroups([4, 4, 4], 8), [[0, 1], [2]]);
  assert.deepEqual(windowGroups([0, 0], 8), []);
});
