import assert from "node:assert/strict";
import { WasmHeap } from "./heap.ts";

Deno.test("WasmHeap hands out aligned, disjoint blocks, reuses freed space and grows", () => {
  const memory = new WebAssembly.Memory({ initial: 1, maximum: 100 });
  const heap = new WasmHeap(memory, 1000);
  const a = heap.alloc(10);
  const b = heap.alloc(100);
  assert.equal(a % 16, 0);
  assert.ok(a >= 1000 && b >= a + 16);
  heap.f32(a, 4).fill(1);
  heap.f32(b, 25).fill(2);
  assert.deepEqual([...heap.f32(a, 4)], [1, 1, 1, 1]);
  heap.free(a);
  assert.equal(heap.alloc(16), a, "first fit reuses the freed block");
  // Larger than the memory: grows, and the new block lies past the old end.
  const big = heap.alloc(200_000);
  assert.ok(memory.buffer.byteLength >= big + 200_000);
  heap.f32(big, 50_000).fill(3);
  heap.free(big);
  heap.free(b);
  assert.throws(() => heap.free(b), /not an allocated block/);
  // After freeing, the coalesced space serves one large block without growing again.
  const size = memory.buffer.byteLength;
  heap.alloc(200_000);
  assert.equal(memory.buffer.byteLength, size);
});

Deno.test("WasmHeap reports running out of memory as a RangeError", () => {
  const heap = new WasmHeap(new WebAssembly.Memory({ initial: 1, maximum: 2 }), 0);
  assert.throws(() => heap.alloc(1 << 20), /out of memory/);
});

Deno.test("WasmHeap grows by what is asked plus at most 32 MiB, never by half of a large memory", () => {
  const PAGE = 65536, MIB = 2 ** 20;
  const memory = new WebAssembly.Memory({ initial: 1, maximum: 65536 });
  const heap = new WasmHeap(memory, 0);
  heap.alloc(256 * MIB); // a memory of 256 MiB and a page
  const before = memory.buffer.byteLength;
  assert.ok(before >= 256 * MIB && before <= 256 * MIB + 33 * MIB);
  heap.alloc(MIB); // past the end: half the memory would be 128 MiB more
  const grown = memory.buffer.byteLength - before;
  assert.ok(grown >= MIB && grown <= 32 * MIB + PAGE, `grew by ${grown} bytes`);
});
