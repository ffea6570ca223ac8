/**
 * WebGPU columns of the kernel benchmark (`bench/kernels.ts`): the same shapes through the WGSL
 * kernels with inputs and weights already on the device, timed from submission to completion
 * (`onSubmittedWorkDone`), medians after a warm-up. The adapter labels the columns; a fallback
 * (software) adapter is marked as such, its numbers are CPU speed, not GPU speed.
 *
 * @module
 */

import { quantizeMatrix } from "../core/quantizer.ts";
import { randomFloats } from "../kernels/wasm/test_util.ts";
import { GpuDevice, requestAdapter } from "../kernels/webgpu/device.ts";
import { uploadPacked } from "../kernels/webgpu/kernels.ts";
import { GpuOps } from "../kernels/webgpu/ops.ts";

/** The shape of a case of `kernels.ts` (its `KernelCase`): tokens, output rows, input columns. */
interface GemmShape {
  readonly m: number;
  readonly n: number;
  readonly k: number;
  /** Fused dequant over packed codes of this many bits (absent: f32 weights). */
  readonly bits?: number;
}

/** Median seconds of an asynchronous `fn` over `reps` runs (≤ `budget` s), after two warm-ups. */
export async function timeMedianAsync(
  fn: () => Promise<void>,
  reps: number,
  budget = 5,
  best = false,
): Promise<number> {
  await fn();
  await fn();
  const t: number[] = [];
  const start = performance.now();
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    await fn();
    t.push((performance.now() - t0) / 1000);
    if ((performance.now() - start) / 1000 > budget && t.length >= 3) break;
  }
  t.sort((a, b) => a - b);
  return best ? t[0]! : t[Math.floor(t.length / 2)]!;
}

/** Times kernel cases on one WebGPU device. */
export class WebGpuBench {
  readonly #ops: GpuOps;

  private constructor(ops: GpuOps) {
    this.#ops = ops;
  }

  /** A bench on the first adapter, or undefined when this runtime has none. */
  static async create(): Promise<WebGpuBench | undefined> {
    if (!(await requestAdapter())) return undefined;
    return new WebGpuBench(await GpuOps.create(await GpuDevice.create()));
  }

  /** Column label: `webgpu (<adapter>[, fallback])`. */
  get label(): string {
    const i = this.#ops.dev.info;
    return `webgpu (${i.description || i.vendor}${i.fallback ? ", fallback: not GPU speed" : ""})`;
  }

  /** Median seconds of case `c` (GEMM/GEMV, or fused dequant when `c.bits` is set). */
  async time(c: GemmShape, reps: number, best = false): Promise<number> {
    const dev = this.#ops.dev;
    const wdata = randomFloats(c.n * c.k, 2);
    const x = dev.upload(randomFloats(c.m * c.k, 1), "input");
    const out = dev.acquire(c.m * c.n * 4, "output");
    const held: GPUBuffer[] = [x, out];
    try {
      let record: (pass: GPUComputePassEncoder) => void;
      if (c.bits === undefined) {
        const w = dev.upload(wdata, "weights");
        held.push(w);
        record = (pass) => this.#ops.matmul(pass, x, w, out, { M: c.m, N: c.n, K: c.k });
      } else {
        const { packed } = quantizeMatrix(wdata, c.n, c.k, {
          bits: c.bits,
          granularity: "group",
          groupSize: 128,
          symmetric: false,
        });
        const p = uploadPacked(dev, packed);
        held.push(p.words, p.scales, p.zeros, p.groupIndex);
        record = (pass) => this.#ops.matmulPacked(pass, x, p, out, { M: c.m });
      }
      return await timeMedianAsync(
        async () => {
          await dev.run(record);
          await dev.finish();
        },
        reps,
        5,
        best,
      );
    } finally {
      for (const b of held) dev.release(b);
    }
  }

  /** Frees the device. */
  close(): void {
    this.#ops.dev.destroy();
  }
}
