/**
 * A first-fit allocator over a WebAssembly memory, with coalescing frees and growth on demand.
 *
 * Views of the memory must be re-created after any allocation (growth detaches old buffers);
 * use {@linkcode WasmHeap.f32} and friends at the point of use.
 *
 * @module
 */

const ALIGN = 16;
const PAGE = 65536;
/** Most bytes a growth adds beyond what an allocation needs. */
const GROW_STEP = 32 * 2 ** 20;

/** Allocator of 16-byte-aligned blocks in a growable WebAssembly memory. */
export class WasmHeap {
  readonly #memory: WebAssembly.Memory;
  /** Free blocks sorted by address, never adjacent. */
  #free: { ptr: number; size: number }[] = [];
  readonly #sizes = new Map<number, number>();

  /** Manages `memory` from byte `base` on. */
  constructor(memory: WebAssembly.Memory, base: number) {
    this.#memory = memory;
    const start = Math.ceil(base / ALIGN) * ALIGN;
    const end = memory.buffer.byteLength;
    if (end > start) this.#free.push({ ptr: start, size: end - start });
  }

  /** Bytes currently handed out. */
  get used(): number {
    let n = 0;
    for (const s of this.#sizes.values()) n += s;
    return n;
  }

  /** Allocates `bytes` (rounded up to 16); returns the byte offset. */
  alloc(bytes: number): number {
    const size = Math.max(ALIGN, Math.ceil(bytes / ALIGN) * ALIGN);
    for (let i = 0; i < this.#free.length; i++) {
      const b = this.#free[i]!;
      if (b.size < size) continue;
      const ptr = b.ptr;
      if (b.size === size) this.#free.splice(i, 1);
      else {
        b.ptr += size;
        b.size -= size;
      }
      this.#sizes.set(ptr, size);
      return ptr;
    }
    this.#grow(size);
    return this.alloc(bytes);
  }

  /** Returns a block from {@linkcode alloc}; freeing anything else throws. */
  free(ptr: number): void {
    const size = this.#sizes.get(ptr);
    if (size === undefined) throw new Error(`WasmHeap.free: ${ptr} is not an allocated block`);
    this.#sizes.delete(ptr);
    this.#insert(ptr, size);
  }

  /** A float32 view of `n` values at `ptr` (valid until the next allocation). */
  f32(ptr: number, n: number): Float32Array {
    return new Float32Array(this.#memory.buffer, ptr, n);
  }

  /** A uint16 view of `n` values at `ptr` (valid until the next allocation). */
  u16(ptr: number, n: number): Uint16Array {
    return new Uint16Array(this.#memory.buffer, ptr, n);
  }

  /** A uint32 view of `n` values at `ptr` (valid until the next allocation). */
  u32(ptr: number, n: number): Uint32Array {
    return new Uint32Array(this.#memory.buffer, ptr, n);
  }

  /** An int32 view of `n` values at `ptr` (valid until the next allocation). */
  i32(ptr: number, n: number): Int32Array {
    return new Int32Array(this.#memory.buffer, ptr, n);
  }

  /** A float64 view of `n` values at `ptr`, a multiple of 8 (valid until the next allocation). */
  f64(ptr: number, n: number): Float64Array {
    return new Float64Array(this.#memory.buffer, ptr, n);
  }

  #insert(ptr: number, size: number): void {
    const f = this.#free;
    let i = 0;
    while (i < f.length && f[i]!.ptr < ptr) i++;
    f.splice(i, 0, { ptr, size });
    const next = f[i + 1];
    if (next && ptr + size === next.ptr) {
      f[i]!.size += next.size;
      f.splice(i + 1, 1);
    }
    const prev = f[i - 1];
    if (prev && prev.ptr + prev.size === ptr) {
      prev.size += f[i]!.size;
      f.splice(i, 1);
    }
  }

  #grow(size: number): void {
    const end = this.#memory.buffer.byteLength;
    const last = this.#free[this.#free.length - 1];
    const tail = last && last.ptr + last.size === end ? last.size : 0;
    // Grow by half the current size up to a step of GROW_STEP, to keep growth (and detached
    // views) rare without reserving memory nothing asked for: a memory never shrinks.
    const need = Math.max(size - tail, Math.min(end >>> 1, GROW_STEP));
    const pages = Math.ceil(need / PAGE);
    try {
      this.#memory.grow(pages);
    } catch {
      throw new RangeError(
        `wasm kernels: out of memory (have ${end} bytes, need ${size} more in one block)`,
      );
    }
    this.#insert(end, pages * PAGE);
  }
}
