/**
 * A kernel worker thread (see `threads.ts`): instantiates `kernels_mt.wasm` over the shared
 * memory, then sleeps in `Atomics.wait` until the next job, runs its share and counts itself
 * done. It never returns to its event loop after starting, so it needs no further messages.
 *
 * @module
 */

/// <reference lib="deno.worker" />

import { instantiateWasm, WASM_MT_URL, type WasmExports } from "./load.ts";
import { DONE, FAILED, MAX_ARGS, SEQ, SLOT, SLOT_WORDS, STOP, type ThreadInit } from "./threads.ts";

function serve(wasm: WasmExports, ctrl: Int32Array, index: number): void {
  const ops = [
    wasm.gemm_f32,
    wasm.gemv_f32,
    wasm.dq_gemv,
    wasm.attention_heads,
    wasm.gemm_f64,
  ] as unknown as ((...a: number[]) => unknown)[];
  const slot = SLOT + index * SLOT_WORDS;
  const args = new Array<number>(MAX_ARGS);
  // No job runs before every worker said "ready", so the first one will be number 1.
  let seen = 0;
  for (;;) {
    while (Atomics.load(ctrl, SEQ) === seen) Atomics.wait(ctrl, SEQ, seen);
    seen = Atomics.load(ctrl, SEQ);
    if (Atomics.load(ctrl, STOP) !== 0) return;
    try {
      const code = ctrl[slot]!;
      if (code >= 0) {
        for (let j = 0; j < MAX_ARGS; j++) args[j] = ctrl[slot + 1 + j]!;
        const op = ops[code];
        if (op === undefined) throw new RangeError(`unknown op ${code}`);
        op(...args);
      }
    } catch {
      Atomics.add(ctrl, FAILED, 1);
    }
    Atomics.add(ctrl, DONE, 1);
    Atomics.notify(ctrl, DONE);
  }
}

self.onmessage = async (e: MessageEvent<ThreadInit>) => {
  const { module, memory, control, index, stackTop } = e.data;
  let wasm: WasmExports;
  try {
    wasm = await instantiateWasm(module, WASM_MT_URL, memory);
    if (!wasm.__stack_pointer) throw new Error("the module does not export __stack_pointer");
    wasm.__stack_pointer.value = stackTop;
  } catch (err) {
    self.postMessage(err instanceof Error ? err.message : String(err));
    return;
  }
  self.postMessage("ready");
  serve(wasm, new Int32Array(control), index);
  self.close();
};
