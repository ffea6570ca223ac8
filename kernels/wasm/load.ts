/**
 * Loads the committed `kernels.wasm` that sits next to this module.
 *
 * @module
 */

/** The exports of `kernels.c` (pointers are byte offsets into `memory`). */
export interface WasmExports {
  readonly memory: WebAssembly.Memory;
  readonly __heap_base: WebAssembly.Global;
  /** Only in `kernels_mt.wasm`: each thread's instance gets its own stack. */
  readonly __stack_pointer?: WebAssembly.Global;
  gemm_f32(
    m: number,
    n: number,
    k: number,
    a: number,
    bp: number,
    c: number,
    ws: number,
    p0: number,
    p1: number,
  ): void;
  gemv_f32(n: number, k: number, x: number, bp: number, out: number, p0: number, p1: number): void;
  rmsnorm_f32(tokens: number, d: number, x: number, w: number, eps: number, out: number): void;
  dq_gemv(
    bits: number,
    planes: number,
    tokens: number,
    rows: number,
    r0: number,
    r1: number,
    chunks: number,
    segments: number,
    codes: number,
    scales: number,
    zeros: number,
    segmentEnds: number,
    xp: number,
    xq: number,
    sxs: number,
    out: number,
  ): number;
  attention_f32(
    T: number,
    start: number,
    nHeads: number,
    nKvHeads: number,
    headDim: number,
    q: number,
    k: number,
    v: number,
    out: number,
    scores: number,
  ): void;
  /** Floats of scratch `forward_window` needs for `T` tokens of the model described at `desc`. */
  fwd_scratch_floats(T: number, desc: number): number;
  /**
   * A whole window (`forward.c`; see `window_forward.ts`): its log-probabilities into `out`, or
   * with `out` 0 its final hidden states left in `x`.
   */
  forward_window(desc: number, T: number, x: number, out: number): void;
  /** Log-probabilities of `rows` final hidden states: final norm, classifier, log-softmax. */
  window_head(desc: number, rows: number, x: number, xn: number, out: number): void;
  /**
   * The whole-window pass's causal attention for query heads `[h0, h1)`, with its own scratch
   * `kT`, `qT` (`headDim × ⌈T/4⌉·4` floats each) and `sc` (`4 · ⌈T/4⌉·4 + 8`).
   */
  attention_heads(
    T: number,
    nHeads: number,
    nKvHeads: number,
    headDim: number,
    q: number,
    k: number,
    v: number,
    kT: number,
    qT: number,
    out: number,
    sc: number,
    h0: number,
    h1: number,
  ): void;
  /** Fake-quantizes the activations `x [T][n]` in place under the descriptor's words 15–19. */
  act_quant_rows(desc: number, x: number, T: number, n: number): void;
  /**
   * Float64 `C[i][j] −= Σ_k A[i][k] · B'(k, j)` for rows `[i0, i1)` and `j < n` (`B'(k, j)` is
   * `B[k][j]`, or `B[j][k]` when `tb` is 1), with a thread's GEMM workspace `ws`.
   */
  gemm_f64(
    n: number,
    k: number,
    a: number,
    lda: number,
    b: number,
    ldb: number,
    tb: number,
    c: number,
    ldc: number,
    ws: number,
    i0: number,
    i1: number,
  ): void;
}

const REQUIRED = [
  "memory",
  "__heap_base",
  "gemm_f32",
  "gemv_f32",
  "rmsnorm_f32",
  "dq_gemv",
  "attention_f32",
  "fwd_scratch_floats",
  "forward_window",
  "window_head",
  "attention_heads",
  "act_quant_rows",
  "gemm_f64",
];

/** URL of the kernel binary (beside this module, wherever it is served from). */
export const WASM_URL: URL = new URL("./kernels.wasm", import.meta.url);

/** URL of the same kernels over an imported shared memory, for kernel threads. */
export const WASM_MT_URL: URL = new URL("./kernels_mt.wasm", import.meta.url);

/** URL of the same kernels built with relaxed-SIMD `f32x4.relaxed_madd` (FMA where available). */
export const WASM_FMA_URL: URL = new URL("./kernels_fma.wasm", import.meta.url);

/** `(func (result v128) v128.const 0 ×3 f32x4.relaxed_madd)`: validates iff relaxed SIMD runs. */
const RELAXED_PROBE = new Uint8Array([
  0x00,
  0x61,
  0x73,
  0x6d,
  0x01,
  0x00,
  0x00,
  0x00, // magic, version
  0x01,
  0x05,
  0x01,
  0x60,
  0x00,
  0x01,
  0x7b, // type: () -> v128
  0x03,
  0x02,
  0x01,
  0x00, // one function of type 0
  0x0a,
  0x3d,
  0x01,
  0x3b,
  0x00, // code: one body of 59 bytes, no locals
  ...[0, 1, 2].flatMap(() => [0xfd, 0x0c, ...new Array(16).fill(0)]), // v128.const 0
  0xfd,
  0x85,
  0x02, // f32x4.relaxed_madd (0xfd 0x105)
  0x0b, // end
]);

/** Whether this engine runs relaxed-SIMD instructions (checked by validating a probe module). */
export function relaxedSimdSupported(): boolean {
  return WebAssembly.validate(RELAXED_PROBE);
}

async function readBytes(url: URL): Promise<Uint8Array> {
  if (url.protocol === "file:") return await Deno.readFile(url);
  const res = await fetch(url);
  if (!res.ok) throw new Error(`HTTP ${res.status}`);
  return new Uint8Array(await res.arrayBuffer());
}

function fileName(url: URL): string {
  return url.protocol === "file:" ? url.pathname : url.href;
}

/**
 * Reads and compiles the kernel module at `url`. Throws an error naming the file when it is
 * missing or not WebAssembly.
 */
export async function compileWasm(url: URL = WASM_URL): Promise<WebAssembly.Module> {
  const name = fileName(url);
  let bytes: Uint8Array;
  try {
    bytes = await readBytes(url);
  } catch (e) {
    throw new Error(
      `wasm kernels: cannot read ${name} (${e instanceof Error ? e.message : e}); ` +
        "rebuild it with `deno task build:wasm`",
    );
  }
  try {
    return await WebAssembly.compile(bytes as Uint8Array<ArrayBuffer>);
  } catch (e) {
    throw new Error(
      `wasm kernels: ${name} is not a valid kernel module (${
        e instanceof Error ? e.message : e
      }); rebuild it with \`deno task build:wasm\``,
    );
  }
}

/**
 * What a kernel instance calls back into (its imports besides the memory), set per call by
 * `window_forward.ts`. `act` fake-quantizes the activations `x [T][n]` at byte offset `ptr` in
 * place: `forward_window`'s activation quantizer (`lowbit_act` in `forward.c`).
 */
export interface WasmHost {
  act?: (site: number, layer: number, ptr: number, T: number, n: number) => void;
  /**
   * Routes the `T` tokens of MoE block `layer` from the router logits at `logits`, writing the
   * chosen experts (int32) at `chosen` and their weights (float64) at `gates` (`lowbit_route`).
   */
  route?: (layer: number, logits: number, T: number, chosen: number, gates: number) => void;
  /**
   * `c[m][n] = a[m][k] · panels bp` on the kernel threads (`lowbit_gemm`: the whole-window
   * passes' GEMMs when their descriptor asks for threads).
   */
  gemm?: (m: number, n: number, k: number, a: number, bp: number, c: number) => void;
  /** The whole-window pass's attention on the kernel threads (`lowbit_attention`). */
  attention?: (
    T: number,
    nHeads: number,
    nKvHeads: number,
    headDim: number,
    q: number,
    k: number,
    v: number,
    out: number,
  ) => void;
}

/**
 * Instantiates a compiled kernel module (`url` only names it in errors); `memory` is the shared
 * memory a `kernels_mt.wasm` instance imports, `host` what it calls back into. Throws when an
 * export is missing.
 */
export async function instantiateWasm(
  module: WebAssembly.Module,
  url: URL,
  memory?: WebAssembly.Memory,
  host: WasmHost = {},
): Promise<WasmExports> {
  const name = fileName(url);
  const lowbit_act = (site: number, layer: number, ptr: number, T: number, n: number) => {
    if (!host.act) throw new Error(`wasm kernels: ${name} asked for an activation quantizer`);
    host.act(site, layer, ptr, T, n);
  };
  const lowbit_route = (layer: number, logits: number, T: number, chosen: number, g: number) => {
    if (!host.route) throw new Error(`wasm kernels: ${name} asked for a MoE routing`);
    host.route(layer, logits, T, chosen, g);
  };
  const lowbit_gemm = (m: number, n: number, k: number, a: number, bp: number, c: number) => {
    if (!host.gemm) throw new Error(`wasm kernels: ${name} asked for threaded GEMMs`);
    host.gemm(m, n, k, a, bp, c);
  };
  const lowbit_attention = (
    ...a: [number, number, number, number, number, number, number, number]
  ) => {
    if (!host.attention) throw new Error(`wasm kernels: ${name} asked for threaded attention`);
    host.attention(...a);
  };
  const env = { lowbit_act, lowbit_route, lowbit_gemm, lowbit_attention };
  let instance: WebAssembly.Instance;
  try {
    instance = await WebAssembly.instantiate(module, { env: memory ? { memory, ...env } : env });
  } catch (e) {
    throw new Error(
      `wasm kernels: ${name} is not a valid kernel module (${
        e instanceof Error ? e.message : e
      }); rebuild it with \`deno task build:wasm\``,
    );
  }
  const missing = REQUIRED.filter((k) => !(k in instance.exports));
  if (missing.length > 0) {
    throw new Error(`wasm kernels: ${name} lacks the exports ${missing.join(", ")}`);
  }
  return instance.exports as unknown as WasmExports;
}

/**
 * Reads, compiles and instantiates the kernel module at `url` (default {@linkcode WASM_URL}).
 * Throws an error naming the file when it is missing, not WebAssembly, or lacks an export.
 */
export async function loadWasm(url: URL = WASM_URL, host?: WasmHost): Promise<WasmExports> {
  return await instantiateWasm(await compileWasm(url), url, undefined, host);
}
