import assert from "node:assert/strict";
import { type PackedWeight, quantizeMatrix } from "../../core/quantizer.ts";
import { matmulPackedRef, matmulRef } from "../ref/mod.ts";
import { wasmKernels } from "./mod.ts";
import { shareOf } from "./threads.ts";
import { absProducts, assertWithin, randomFloats } from "./test_util.ts";

/** Bit-for-bit equality (NaN-safe), naming the first difference. */
function assertSame(got: Float32Array, want: Float32Array, what: string): void {
  assert.equal(got.length, want.length, what);
  for (let i = 0; i < got.length; i++) {
    if (!Object.is(got[i], want[i])) {
      throw new Error(`${what}: value ${i} is ${got[i]}, one thread gives ${want[i]}`);
    }
  }
}

Deno.test("shareOf() splits a range into contiguous, nearly equal shares", () => {
  assert.deepEqual([0, 1, 2].map((i) => shareOf(7, 3, i)), [[0, 2], [2, 4], [4, 7]]);
  assert.deepEqual([0, 1].map((i) => shareOf(1, 2, i)), [[0, 0], [0, 1]]);
});

Deno.test("kernel threads compute exactly what one thread computes, on awkward shapes", async () => {
  const one = await wasmKernels();
  // minSplit 1: every call is split, even the smallest.
  for (const threads of [2, 3]) {
    const mt = await wasmKernels({ threads, minSplit: 1 });
    try {
      assert.equal(mt.id, `wasm-simd-mt${threads}`);
      let seed = 1;
      for (const tokens of [1, 2, 7, 65]) {
        for (const [rows, cols] of [[1, 7], [7, 63], [9, 64], [17, 65], [63, 172], [65, 300]]) {
          const x = randomFloats(tokens * cols!, seed++);
          const w = { rows: rows!, cols: cols!, data: randomFloats(rows! * cols!, seed++) };
          const a = new Float32Array(tokens * rows!), b = new Float32Array(tokens * rows!);
          one.matmul(x, tokens, w, a);
          mt.matmul(x, tokens, w, b);
          const what = `${mt.id} matmul ${tokens}×${rows}×${cols}`;
          assertSame(b, a, what);
          // And (independently of the single-thread kernel) within the reference's budget.
          const want = new Float32Array(tokens * rows!);
          matmulRef(x, tokens, w, want);
          assertWithin(b, want, absProducts(x, tokens, w.data, rows!, cols!), 1e-5, what);
        }
      }
    } finally {
      mt.close();
    }
  }
});

Deno.test("kernel threads split the fused dequant-matmul exactly, act-order included", async () => {
  const one = await wasmKernels();
  const mt = await wasmKernels({ threads: 2, minSplit: 1 });
  try {
    let seed = 100;
    for (const bits of [2, 3, 4, 8]) {
      for (
        const [rows, cols, groupSize] of [[1, 7, 4], [7, 63, 16], [13, 172, 64], [37, 300, 128]]
      ) {
        const { packed } = quantizeMatrix(randomFloats(rows! * cols!, seed++), rows!, cols!, {
          bits,
          granularity: "group",
          groupSize: groupSize!,
          symmetric: false,
        });
        const groupIndex = new Uint32Array(cols!);
        for (let c = 0; c < cols!; c++) {
          groupIndex[c] = Math.floor(((c * 37) % cols!) / groupSize!);
        }
        for (const p of [packed, { ...packed, groupIndex } as PackedWeight]) {
          for (const tokens of [1, 5]) {
            const x = randomFloats(tokens * cols!, seed++);
            const a = new Float32Array(tokens * rows!), b = new Float32Array(tokens * rows!);
            one.matmulPacked(x, tokens, p, a);
            mt.matmulPacked(x, tokens, p, b);
            const what = `matmulPacked ${tokens}×${rows}×${cols} ${bits}-bit` +
              (p.groupIndex ? " act-order" : "");
            assertSame(b, a, what);
            const want = new Float32Array(tokens * rows!);
            matmulPackedRef(x, tokens, p, want);
            // Loose sanity bound here; fused_test.ts holds the exact budget.
            for (let i = 0; i < want.length; i++) {
              assert.ok(Math.abs(b[i]! - want[i]!) <= 1e-3 * (1 + Math.abs(want[i]!)), what);
            }
          }
        }
      }
    }
  } finally {
    mt.close();
  }
});

Deno.test("kernel threads: bad shapes are refused before any thread runs; close() ends them", async () => {
  const mt = await wasmKernels({ threads: 2, minSplit: 1 });
  try {
    const w = { rows: 4, cols: 6, data: new Float32Array(24) };
    assert.throws(
      () => mt.matmul(new Float32Array(11), 2, w, new Float32Array(8)),
      /^RangeError: matmul: x holds 11 values for 2×6, out 8 for 2×4, weight 4×6 holds 24$/,
    );
    const out = new Float32Array(8);
    mt.matmul(new Float32Array(12).fill(1), 2, { ...w, data: new Float32Array(24).fill(2) }, out);
    assert.deepEqual([...out], new Array(8).fill(12));
  } finally {
    mt.close();
  }
  assert.throws(
    () =>
      mt.matmul(
        new Float32Array(12),
        2,
        { rows: 16, cols: 6, data: new Float32Array(96) },
        new Float32Array(32),
      ),
    /kernel threads were closed/,
  );
  await assert.rejects(() => wasmKernels({ threads: 0 }), /threads must be a positive integer/);
  await assert.rejects(() => wasmKernels({ threads: 2, fma: true }), /cannot be combined/);
});

Deno.test("kernel threads: a missing kernels_mt.wasm gives an error naming the file", async () => {
  const dir = await Deno.makeTempDir({ prefix: "lowbit-wasm-mt-" });
  try {
    const missing = new URL(`file://${dir}/kernels_mt.wasm`);
    await assert.rejects(
      () => wasmKernels({ threads: 2, url: missing }),
      (e: unknown) => e instanceof Error && e.message.includes(`cannot read ${missing.pathname}`),
    );
    // The single-threaded binary imports no memory: refused, naming it.
    await assert.rejects(
      () => wasmKernels({ threads: 2, url: new URL("./kernels.wasm", import.meta.url) }),
      /kernels\.wasm imports no shared memory/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("kernel threads start after a library replaced globalThis.Worker (onnxruntime-web does under Deno)", async () => {
  const original = globalThis.Worker;
  let used = 0;
  // What onnxruntime-web's runtime leaves behind: a global Worker whose workers lack `self`.
  globalThis.Worker = class extends original {
    constructor(url: string | URL, options?: WorkerOptions) {
      used++;
      super(url, options);
    }
  };
  try {
    const mt = await wasmKernels({ threads: 2, minSplit: 1 });
    try {
      const x = randomFloats(3 * 40, 1);
      const w = { rows: 9, cols: 40, data: randomFloats(9 * 40, 2) };
      const a = new Float32Array(27), b = new Float32Array(27);
      mt.matmul(x, 3, w, a);
      matmulRef(x, 3, w, b);
      assertWithin(a, b, absProducts(x, 3, w.data, 9, 40), 1e-5, "matmul");
    } finally {
      mt.close();
    }
  } finally {
    globalThis.Worker = original;
  }
  assert.equal(used, 0, "the replaced global Worker was used");
});
