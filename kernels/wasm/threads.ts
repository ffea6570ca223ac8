/**
 * Kernel threads: Web Workers running their own instances of `kernels_mt.wasm` over one shared
 * `WebAssembly.Memory`, so a weight copied into WASM memory once is read by every thread.
 *
 * The calling thread is thread 0 and takes a share of every job itself; `n − 1` workers take the
 * rest. A job is an export index and, per worker, its integer arguments (pointers and the
 * range of output rows it owns), written to a small control `SharedArrayBuffer`. Workers sleep
 * in `Atomics.wait` between jobs and the caller sleeps in `Atomics.wait` until they are done
 * (allowed on Deno's main thread): nobody spins, so a neighbour taking a core costs only the
 * time it takes, never a collapse.
 *
 * @module
 */

import { WebWorker } from "../../core/web_worker.ts";

/** Exports a job may run (their index is the job's op code). */
export const THREAD_OPS = [
  "gemm_f32",
  "gemv_f32",
  "dq_gemv",
  "attention_heads",
  "gemm_f64",
] as const;

/** An op a job may run. */
export type ThreadOp = typeof THREAD_OPS[number];

/** Most integer arguments of one job. */
export const MAX_ARGS = 16;

/** Control words: job sequence number, workers done, workers failed, stop flag. */
export const SEQ = 0, DONE = 1, FAILED = 2, STOP = 3;
/** First word of worker `i`'s job slot: `SLOT + i · SLOT_WORDS` (op code, then arguments). */
export const SLOT = 8, SLOT_WORDS = 1 + MAX_ARGS;

/** What the caller posts to a new worker (see `thread_worker.ts`). */
export interface ThreadInit {
  readonly module: WebAssembly.Module;
  readonly memory: WebAssembly.Memory;
  readonly control: SharedArrayBuffer;
  readonly index: number;
  /** Top of this worker's stack in the shared memory. */
  readonly stackTop: number;
}

/** Start and end of share `i` of `units` split into `parts` nearly equal ranges. */
export function shareOf(units: number, parts: number, i: number): [number, number] {
  return [Math.floor((units * i) / parts), Math.floor((units * (i + 1)) / parts)];
}

/** A pool of kernel worker threads over a shared WASM memory. */
export class KernelThreads {
  /** Threads including the caller. */
  readonly threads: number;
  readonly #workers: Worker[];
  readonly #ctrl: Int32Array;
  #closed = false;

  private constructor(workers: Worker[], ctrl: Int32Array) {
    this.#workers = workers;
    this.#ctrl = ctrl;
    this.threads = workers.length + 1;
  }

  /**
   * Starts `threads − 1` workers, each instantiating `module` over `memory` with its stack
   * ending at `stackTops[i]`; resolves once all are ready.
   */
  static async start(
    module: WebAssembly.Module,
    memory: WebAssembly.Memory,
    stackTops: readonly number[],
  ): Promise<KernelThreads> {
    const control = new SharedArrayBuffer((SLOT + stackTops.length * SLOT_WORDS) * 4);
    const workers: Worker[] = [];
    const ready: Promise<void>[] = [];
    for (let i = 0; i < stackTops.length; i++) {
      const w = new WebWorker(new URL("./thread_worker.ts", import.meta.url), { type: "module" });
      workers.push(w);
      ready.push(
        new Promise((resolve, reject) => {
          w.onmessage = (e: MessageEvent) => {
            if (e.data === "ready") resolve();
            else reject(new Error(`wasm kernels: thread ${i + 1} failed to start: ${e.data}`));
          };
          w.onerror = (e: ErrorEvent) => {
            e.preventDefault();
            reject(new Error(`wasm kernels: thread ${i + 1} failed to start: ${e.message}`));
          };
        }),
      );
      w.postMessage(
        { module, memory, control, index: i, stackTop: stackTops[i]! } satisfies ThreadInit,
      );
    }
    try {
      await Promise.all(ready);
    } catch (e) {
      for (const w of workers) w.terminate();
      throw e;
    }
    return new KernelThreads(workers, new Int32Array(control));
  }

  /**
   * Runs `op` on worker `i` with the arguments `args[i]` (workers past `args.length` idle), runs
   * `own` (the caller's share) meanwhile, and returns when all are done. Throws when a worker's
   * call failed.
   */
  run(op: ThreadOp, args: readonly (readonly number[])[], own: () => void): void {
    if (this.#closed) throw new Error("wasm kernels: the kernel threads were closed");
    const ctrl = this.#ctrl;
    const n = this.#workers.length;
    if (args.length > n) throw new RangeError(`KernelThreads.run: ${args.length} shares for ${n}`);
    const code = THREAD_OPS.indexOf(op);
    for (let i = 0; i < n; i++) {
      const a = args[i];
      if (a === undefined) {
        ctrl[SLOT + i * SLOT_WORDS] = -1; // nothing for this worker this time
        continue;
      }
      if (a.length > MAX_ARGS) throw new RangeError(`KernelThreads.run: ${a.length} arguments`);
      const s = SLOT + i * SLOT_WORDS;
      ctrl[s] = code;
      for (let j = 0; j < a.length; j++) ctrl[s + 1 + j] = a[j]!;
    }
    Atomics.store(ctrl, DONE, 0);
    Atomics.store(ctrl, FAILED, 0);
    Atomics.add(ctrl, SEQ, 1);
    Atomics.notify(ctrl, SEQ);
    let error: unknown;
    try {
      own();
    } catch (e) {
      error = e;
    }
    for (let d = Atomics.load(ctrl, DONE); d < n; d = Atomics.load(ctrl, DONE)) {
      Atomics.wait(ctrl, DONE, d);
    }
    if (error !== undefined) throw error;
    if (Atomics.load(ctrl, FAILED) > 0) {
      throw new Error(`wasm kernels: ${op} failed on ${Atomics.load(ctrl, FAILED)} thread(s)`);
    }
  }

  /** Stops the workers (pending and later jobs fail). */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    Atomics.store(this.#ctrl, STOP, 1);
    Atomics.add(this.#ctrl, SEQ, 1);
    Atomics.notify(this.#ctrl, SEQ);
    for (const w of this.#workers) w.terminate();
  }
}
