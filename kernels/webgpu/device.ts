/**
 * A WebGPU device for the WGSL kernels: adapter and device acquisition (with the adapter's info
 * recorded), a pipeline cache keyed by WGSL source and entry point, a pool of storage buffers,
 * asynchronous readback, limit checks that name the limit, and device-lost handling that rejects
 * pending and later work instead of hanging.
 *
 * Works wherever `navigator.gpu` exists: Deno (a software adapter such as llvmpipe when there is no
 * GPU) and browsers.
 *
 * @module
 */

/** What is known about the adapter a device runs on; recorded in result rows. */
export interface GpuAdapterInfo {
  readonly vendor: string;
  readonly architecture: string;
  readonly device: string;
  readonly description: string;
  /**
   * True for a software or otherwise degraded adapter (llvmpipe, SwiftShader, WARP): its timings
   * are never GPU speed.
   */
  readonly fallback: boolean;
}

/** Thrown for work on a lost device (and by work that was pending when it was lost). */
export class GpuDeviceLostError extends Error {
  /** Creates the error with the reason the runtime gave. */
  constructor(reason: string) {
    super(`WebGPU device lost: ${reason}`);
    this.name = "GpuDeviceLostError";
  }
}

/** Options of {@linkcode GpuDevice.create}. */
export interface GpuDeviceOptions {
  /** Accept a fallback (software) adapter; default true. */
  readonly allowFallback?: boolean;
  /** Power preference passed to `requestAdapter`. */
  readonly powerPreference?: GPUPowerPreference;
  /** Use this adapter instead of requesting one (tests; a page that chose its own). */
  readonly adapter?: GPUAdapter;
}

/** Storage buffer usage of every kernel buffer (read, written and copied both ways). */
const STORAGE = 0x80 | 0x4 | 0x8; // STORAGE | COPY_SRC | COPY_DST

/** The adapter's info, in the form rows record. */
export function adapterInfo(adapter: GPUAdapter): GpuAdapterInfo {
  const info = adapter.info as GPUAdapterInfo & { isFallbackAdapter?: boolean };
  const legacy = (adapter as GPUAdapter & { isFallbackAdapter?: boolean }).isFallbackAdapter;
  const description = info.description ?? "";
  return {
    vendor: info.vendor ?? "",
    architecture: info.architecture ?? "",
    device: info.device ?? "",
    description,
    // Some runtimes do not flag software rasterizers; their names do.
    fallback: info.isFallbackAdapter === true || legacy === true ||
      /llvmpipe|lavapipe|swiftshader|software|warp/i.test(`${description} ${info.architecture}`),
  };
}

/** Requests an adapter; undefined when this runtime has none (no `navigator.gpu` or no adapter). */
export async function requestAdapter(
  powerPreference: GPUPowerPreference = "high-performance",
): Promise<GPUAdapter | undefined> {
  // Typed structurally: worker scopes have a WorkerNavigator, not a Navigator.
  const gpu = (globalThis as { navigator?: { gpu?: GPU } }).navigator?.gpu;
  if (!gpu) return undefined;
  try {
    return (await gpu.requestAdapter({ powerPreference })) ?? undefined;
  } catch {
    return undefined;
  }
}

/** A WebGPU device with the caches and checks the kernels need. */
export class GpuDevice {
  /** The underlying device. */
  readonly device: GPUDevice;
  /** Adapter description and whether it is a fallback adapter. */
  readonly info: GpuAdapterInfo;
  readonly #pipelines = new Map<string, GPUComputePipeline>();
  readonly #modules = new Map<string, GPUShaderModule>();
  readonly #pool = new Map<number, GPUBuffer[]>();
  readonly #uniforms = new Map<string, GPUBuffer>();
  readonly #lost: Promise<never>;
  #lostReason: string | undefined;

  private constructor(device: GPUDevice, info: GpuAdapterInfo) {
    this.device = device;
    this.info = info;
    this.#lost = device.lost.then((i) => {
      this.#lostReason = i.message || i.reason || "unknown reason";
      throw new GpuDeviceLostError(this.#lostReason);
    });
    this.#lost.catch(() => {}); // observed by `#guard`
  }

  /**
   * Acquires an adapter and a device with the adapter's largest buffer limits. Throws an `Error`
   * when no adapter exists, or when only a fallback adapter does and `allowFallback` is false.
   */
  static async create(options: GpuDeviceOptions = {}): Promise<GpuDevice> {
    const adapter = options.adapter ?? await requestAdapter(options.powerPreference);
    if (!adapter) throw new Error("Cannot use WebGPU: no adapter found");
    const info = adapterInfo(adapter);
    if (info.fallback && options.allowFallback === false) {
      throw new Error(`Cannot use WebGPU: only a fallback adapter (${info.description}) exists`);
    }
    const device = await adapter.requestDevice({
      requiredLimits: {
        maxBufferSize: adapter.limits.maxBufferSize,
        maxStorageBufferBindingSize: adapter.limits.maxStorageBufferBindingSize,
        maxStorageBuffersPerShaderStage: adapter.limits.maxStorageBuffersPerShaderStage,
      },
    });
    return new GpuDevice(device, info);
  }

  /** Whether the device was lost (then every call rejects with {@linkcode GpuDeviceLostError}). */
  get lost(): boolean {
    return this.#lostReason !== undefined;
  }

  /** Throws when the device is lost. */
  checkAlive(): void {
    if (this.#lostReason !== undefined) throw new GpuDeviceLostError(this.#lostReason);
  }

  /** Throws a `RangeError` naming the limit when `bytes` do not fit one storage binding. */
  checkBindingSize(bytes: number, what: string): void {
    const l = this.device.limits;
    const max = Math.min(l.maxStorageBufferBindingSize, l.maxBufferSize);
    if (bytes > max) {
      const name = l.maxStorageBufferBindingSize <= l.maxBufferSize
        ? "maxStorageBufferBindingSize"
        : "maxBufferSize";
      throw new RangeError(
        `Cannot allocate ${what}: ${bytes} bytes exceed the device limit ${name} = ${max}`,
      );
    }
  }

  /** Throws a `RangeError` naming the limit when a dispatch needs more workgroups than allowed. */
  checkWorkgroups(count: number, what: string): void {
    const max = this.device.limits.maxComputeWorkgroupsPerDimension;
    if (count > max * max) {
      throw new RangeError(
        `Cannot dispatch ${what}: ${count} workgroups exceed maxComputeWorkgroupsPerDimension² = ${
          max * max
        }`,
      );
    }
  }

  /** The compute pipeline of `entry` in `code`, compiled once per device. */
  pipeline(code: string, entry: string): GPUComputePipeline {
    const key = `${entry}\n${code}`;
    let p = this.#pipelines.get(key);
    if (!p) {
      let module = this.#modules.get(code);
      if (!module) {
        module = this.device.createShaderModule({ code });
        this.#modules.set(code, module);
      }
      p = this.device.createComputePipeline({
        layout: "auto",
        compute: { module, entryPoint: entry },
      });
      this.#pipelines.set(key, p);
    }
    return p;
  }

  /** A storage buffer of at least `bytes` (from the pool when one is free). */
  acquire(bytes: number, what = "a buffer"): GPUBuffer {
    this.checkAlive();
    const size = poolSize(bytes);
    this.checkBindingSize(size, what);
    const free = this.#pool.get(size);
    const b = free?.pop();
    if (b) return b;
    return this.device.createBuffer({ size, usage: STORAGE, label: what });
  }

  /** Returns a buffer from {@linkcode acquire} to the pool. */
  release(buffer: GPUBuffer): void {
    if (this.lost) return;
    let free = this.#pool.get(buffer.size);
    if (!free) this.#pool.set(buffer.size, free = []);
    free.push(buffer);
  }

  /** A pooled storage buffer holding `data`. */
  upload(data: ArrayBufferView, what = "an input"): GPUBuffer {
    const b = this.acquire(Math.max(data.byteLength, 4), what);
    this.write(b, data);
    return b;
  }

  /** Writes `data` at the start of `buffer` (padded to 4 bytes). */
  write(buffer: GPUBuffer, data: ArrayBufferView, offset = 0): void {
    this.checkAlive();
    const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength) as Uint8Array<
      ArrayBuffer
    >;
    if (bytes.byteLength % 4 === 0) {
      this.device.queue.writeBuffer(buffer, offset, bytes);
    } else {
      const padded = new Uint8Array(Math.ceil(bytes.byteLength / 4) * 4);
      padded.set(bytes);
      this.device.queue.writeBuffer(buffer, offset, padded);
    }
  }

  /**
   * A uniform buffer of 32-bit words (u32, or f32 at the positions in `floats`); cached by
   * content, since the same shapes recur window after window.
   */
  uniform(words: readonly number[], floats: readonly number[] = []): GPUBuffer {
    this.checkAlive();
    const key = `${words.join(",")}|${floats.join(",")}`;
    const hit = this.#uniforms.get(key);
    if (hit) return hit;
    const data = new ArrayBuffer(Math.max(16, Math.ceil(words.length / 4) * 16));
    const u = new Uint32Array(data);
    const f = new Float32Array(data);
    words.forEach((w, i) => {
      if (floats.includes(i)) f[i] = w;
      else u[i] = w;
    });
    const b = this.device.createBuffer({ size: data.byteLength, usage: 0x40 | 0x8 }); // UNIFORM|COPY_DST
    this.device.queue.writeBuffer(b, 0, data);
    this.#uniforms.set(key, b);
    return b;
  }

  /**
   * Records one dispatch of `entry` over `workgroups` groups (split into a 2-D grid when beyond the
   * per-dimension limit; kernels compute their linear group index from `num_workgroups`).
   */
  dispatch(
    pass: GPUComputePassEncoder,
    code: string,
    entry: string,
    buffers: readonly GPUBuffer[],
    workgroups: number | readonly [number, number, number],
  ): void {
    const pipeline = this.pipeline(code, entry);
    const group = this.device.createBindGroup({
      layout: pipeline.getBindGroupLayout(0),
      entries: buffers.map((buffer, binding) => ({ binding, resource: { buffer } })),
    });
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, group);
    if (typeof workgroups === "number") {
      this.checkWorkgroups(workgroups, entry);
      const max = this.device.limits.maxComputeWorkgroupsPerDimension;
      if (workgroups <= max) pass.dispatchWorkgroups(Math.max(workgroups, 1));
      else pass.dispatchWorkgroups(max, Math.ceil(workgroups / max));
    } else {
      pass.dispatchWorkgroups(...workgroups);
    }
  }

  /**
   * Records work with `record` in one compute pass, submits it and waits for completion;
   * rejects with the validation error of the work, or with {@linkcode GpuDeviceLostError}.
   */
  async run(record: (pass: GPUComputePassEncoder) => void): Promise<void> {
    this.checkAlive();
    this.device.pushErrorScope("validation");
    this.device.pushErrorScope("out-of-memory");
    const enc = this.device.createCommandEncoder();
    const pass = enc.beginComputePass();
    try {
      record(pass);
    } finally {
      pass.end();
      this.device.queue.submit([enc.finish()]);
    }
    const oom = this.device.popErrorScope();
    const invalid = this.device.popErrorScope();
    const [e1, e2] = await this.#guard(Promise.all([oom, invalid]));
    const err = e1 ?? e2;
    if (err) throw new Error(`WebGPU error: ${err.message}`);
  }

  /** Waits until the work submitted so far has finished on the device (for timing). */
  async finish(): Promise<void> {
    await this.#guard(this.device.queue.onSubmittedWorkDone());
  }

  /** Reads `bytes` bytes of `buffer` back to the CPU. */
  async read(buffer: GPUBuffer, bytes: number): Promise<ArrayBuffer> {
    this.checkAlive();
    const size = Math.ceil(bytes / 4) * 4;
    const staging = this.device.createBuffer({ size, usage: 0x1 | 0x8 }); // MAP_READ | COPY_DST
    try {
      const enc = this.device.createCommandEncoder();
      enc.copyBufferToBuffer(buffer, 0, staging, 0, size);
      this.device.queue.submit([enc.finish()]);
      await this.#guard(staging.mapAsync(1 /* GPUMapMode.READ */));
      return staging.getMappedRange().slice(0, bytes);
    } finally {
      staging.destroy();
    }
  }

  /** Reads a buffer back as float32 values. */
  async readFloats(buffer: GPUBuffer, count: number): Promise<Float32Array> {
    return new Float32Array(await this.read(buffer, count * 4));
  }

  /** Frees every pooled buffer and destroys the device. */
  destroy(): void {
    for (const list of this.#pool.values()) for (const b of list) b.destroy();
    this.#pool.clear();
    for (const b of this.#uniforms.values()) b.destroy();
    this.#uniforms.clear();
    this.#pipelines.clear();
    this.#modules.clear();
    this.device.destroy();
  }

  /**
   * The error to report for `e`, thrown by work on this device: a {@linkcode GpuDeviceLostError}
   * when the device is (or within a moment turns out to be) lost, since runtimes reject pending
   * work with a bare `DOMException` before they report the loss; `e` otherwise.
   */
  async explain(e: unknown): Promise<unknown> {
    if (e instanceof GpuDeviceLostError) return e;
    if (!this.lost) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([
        this.#lost.catch(() => {}),
        new Promise((r) => timer = setTimeout(r, 250)),
      ]);
      clearTimeout(timer);
    }
    return this.#lostReason !== undefined ? new GpuDeviceLostError(this.#lostReason) : e;
  }

  /** Races `p` against device loss, so pending work rejects instead of hanging. */
  async #guard<T>(p: Promise<T>): Promise<T> {
    this.checkAlive();
    try {
      return await Promise.race([p, this.#lost]);
    } catch (e) {
      throw await this.explain(e);
    }
  }
}

/** Pool size classes: multiples of 256 bytes below 64 KiB, then of 64 KiB. */
function poolSize(bytes: number): number {
  const unit = bytes <= 65536 ? 256 : 65536;
  return Math.max(unit, Math.ceil(bytes / unit) * unit);
}
