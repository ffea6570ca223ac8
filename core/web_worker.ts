/**
 * The Web `Worker` constructor as it was when lowbit's modules loaded.
 *
 * onnxruntime-web's Emscripten runtime, once a session starts under Deno (which it takes for
 * Node), replaces `globalThis.Worker` with Node's `worker_threads` Worker, whose workers have no
 * `self`: a pool started after it (the kernel threads after `bench:kernels`' onnxruntime
 * columns) died with "self is not defined". Every pool starts its workers through this.
 *
 * @module
 */

/** The Web `Worker` constructor captured before any library could replace the global. */
export const WebWorker: typeof Worker = globalThis.Worker;
