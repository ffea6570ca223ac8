/**
 * Runs MatMulNBits models on onnxruntime-web's WebGPU execution provider (1.20.1's JSEP kernels)
 * and prints, as one JSON line, each case's largest error relative to our packed reference
 * (`kernels/ref/packed.ts`). `matmulnbits_webgpu_test.ts` runs it in a child process: on a
 * software adapter (Mesa's lavapipe/llvmpipe) the GPU's memory is the process's heap, and the
 * WebGPU EP computes blocks above 32 wrongly there, so its faults stay out of the test process.
 *
 * ```sh
 * deno run -A export/matmulnbits_webgpu_probe.ts   # {"adapter": …, "cases": [{…, "webgpu": rel, "wasm": rel}]}
 * ```
 *
 * @module
 */
import * as ort from "onnxruntime-web/webgpu";
import { quantizeMatrix } from "../core/quantizer.ts";
import { matmulPackedRef } from "../kernels/ref/packed.ts";
import { randomMatrix } from "../testing/random.ts";
import { exportMatMulNBits } from "./matmulnbits.ts";
import { matMulNBitsModel } from "./matmulnbits_graph.ts";
import { relDiff } from "./rel_diff.ts";

/** One probed configuration and the relative error each execution provider gave. */
export interface ProbeCase {
  readonly K: number;
  readonly block: number;
  readonly zeroPoints: boolean;
  readonly tokens: number;
  /** max |ours − theirs| / max |ours| on each EP that ran it. */
  readonly rel: Record<string, number>;
}

/** Blocks 16 and 32 (asserted by the test) and 64/128 (reported), each with and without zero points. */
export const PROBE_CASES: readonly [K: number, block: number, zp: boolean, tokens: number][] = [
  [256, 32, true, 1],
  [256, 32, true, 3],
  [256, 32, false, 1],
  [256, 32, false, 3],
  [96, 32, true, 1],
  [96, 32, true, 3],
  [256, 16, true, 1],
  [256, 16, true, 3],
  [256, 128, true, 2],
  [256, 128, false, 2],
  [256, 64, true, 2],
];

async function probe(): Promise<{ adapter: string | undefined; cases: ProbeCase[] }> {
  const adapter = await navigator.gpu?.requestAdapter().catch(() => null);
  if (!adapter) return { adapter: undefined, cases: [] };
  ort.env.wasm.numThreads = 1;
  ort.env.wasm.wasmBinary = await Deno.readFile(
    new URL("ort-wasm-simd-threaded.jsep.wasm", import.meta.resolve("onnxruntime-web/webgpu")),
  );
  const N = 64;
  const cases: ProbeCase[] = [];
  for (const [K, block, zp, tokens] of PROBE_CASES) {
    const p = quantizeMatrix(randomMatrix(N * K, K + block), N, K, {
      bits: 4,
      granularity: "group",
      groupSize: block,
      symmetric: !zp,
    }).packed;
    const x = randomMatrix(tokens * K, 7 + tokens);
    const ref = new Float32Array(tokens * N);
    matmulPackedRef(x, tokens, p, ref);
    const model = matMulNBitsModel(exportMatMulNBits(p), tokens);
    const rel: Record<string, number> = {};
    for (const ep of block > 32 ? ["wasm", "webgpu"] : ["webgpu"]) {
      const s = await ort.InferenceSession.create(model, { executionProviders: [ep] });
      const out = await s.run({ A: new ort.Tensor("float32", x, [tokens, K]) });
      await s.release();
      rel[ep] = relDiff(ref, out.Y!.data as Float32Array);
    }
    cases.push({ K, block, zeroPoints: zp, tokens, rel });
  }
  return { adapter: adapter.info.description, cases };
}

if (import.meta.main) {
  console.log(JSON.stringify(await probe()));
  // The EP's device is never released by onnxruntime-web; leave without waiting for it.
  Deno.exit(0);
}
