import assert from "node:assert/strict";
import { quantizeMatrix } from "../core/quantizer.ts";
import { serializeSafetensors } from "./formats/safetensors_write.ts";
import { floatTensor } from "./formats/tensor.ts";
import {
  isLazy,
  matrixRow,
  PackedMatrix,
  StoredMatrix,
  valuesOf,
  withData,
} from "./lazy_matrix.ts";
import { Residency, residency } from "./residency.ts";
import { memoryTensorStore, readFloat32 } from "./tensor_store.ts";
import { fileTensorStore } from "./file_tensor_store.ts";

Deno.test("Residency: least recently used arrays go first, within the byte budget", () => {
  const r = new Residency(3 * 16); // three 4-float arrays
  const owners = [{}, {}, {}, {}];
  let loads = 0;
  const load = (i: number) => () => {
    loads++;
    return new Float32Array(4).fill(i);
  };
  for (let i = 0; i < 3; i++) r.get(owners[i]!, load(i));
  assert.equal(r.used, 48);
  r.get(owners[0]!, load(0)); // hit: 0 becomes the most recent
  assert.equal(loads, 3);
  r.get(owners[3]!, load(3)); // evicts 1, the least recent
  assert.equal(r.used, 48);
  r.get(owners[0]!, load(0));
  r.get(owners[2]!, load(2));
  assert.equal(loads, 4, "0 and 2 stayed");
  assert.deepEqual([...r.get(owners[1]!, load(1))], [1, 1, 1, 1]);
  assert.equal(loads, 5, "1 was reloaded");
  assert.equal(r.peak, 48);
  r.budget = 16;
  assert.equal(r.used, 16);
  assert.throws(() => (r.budget = 0), RangeError);
});

function checkpoint(): Uint8Array {
  // a: 3×4 bf16 with values that bf16 holds exactly; b: 2×2 f32.
  const a = Float32Array.from({ length: 12 }, (_, i) => (i - 6) * 0.375);
  return serializeSafetensors([
    { name: "a", ...floatTensor("a", a, [3, 4], "BF16") },
    { name: "b", ...floatTensor("b", new Float32Array([1.5, -2, 3.25, 4]), [2, 2], "F32") },
  ]);
}

Deno.test("tensor stores: a file read on demand equals the file in memory, whole and by range", async () => {
  const bytes = checkpoint();
  const path = await Deno.makeTempFile({ suffix: ".safetensors" });
  try {
    await Deno.writeFile(path, bytes);
    const disk = fileTensorStore([path]);
    const mem = memoryTensorStore([{ path: "m.safetensors", bytes }]);
    for (const store of [disk, mem]) {
      assert.deepEqual(store.tensors.get("a")!.shape, [3, 4]);
      assert.deepEqual(
        [...readFloat32(store, "a")],
        Array.from({ length: 12 }, (_, i) => (i - 6) * 0.375),
      );
      assert.deepEqual([...readFloat32(store, "a", 4, 8)], [-0.75, -0.375, 0, 0.375]);
      assert.deepEqual([...readFloat32(store, "b", 2, 4)], [3.25, 4]);
      assert.throws(() => store.bytes("a", 0, 100), /byte range \[0, 100\) outside \[0, 24\)/);
    }
    disk.close();
    assert.throws(
      () => fileTensorStore([path, path]),
      /tensor "a" is also in/,
    );
  } finally {
    await Deno.remove(path);
  }
});

Deno.test("StoredMatrix reads its rows from the store; PackedMatrix dequantizes exactly", () => {
  const store = memoryTensorStore([{ path: "m.safetensors", bytes: checkpoint() }]);
  const rows = new StoredMatrix(2, 4, store, "a", 1);
  assert.ok(isLazy(rows));
  assert.equal(rows.dtype, "BF16");
  assert.deepEqual([...rows.data], [-0.75, -0.375, 0, 0.375, 0.75, 1.125, 1.5, 1.875]);
  assert.equal(rows.data, rows.data, "resident between accesses");
  const before = residency.loads;
  residency.drop(rows);
  assert.deepEqual([...rows.data].slice(0, 2), [-0.75, -0.375]);
  assert.equal(residency.loads, before + 1, "reloaded after being dropped");

  const w = Float32Array.from({ length: 24 }, (_, i) => Math.sin(i) * (i % 5));
  const q = quantizeMatrix(w, 4, 6, {
    bits: 3,
    granularity: "group",
    groupSize: 4,
    symmetric: false,
  });
  const p = new PackedMatrix(q.packed);
  assert.ok(isLazy(p));
  assert.deepEqual([p.rows, p.cols], [4, 6]);
  assert.deepEqual([...p.data], [...q.dequantized]);
  assert.ok(!isLazy(withData(p, p.data)));
  assert.throws(() => withData(p, new Float32Array(3)), /3 values for a 4×6 matrix/);
});

Deno.test("values() and matrixRow() read a streamed tensor without making it resident", () => {
  const store = memoryTensorStore([{ path: "m.safetensors", bytes: checkpoint() }]);
  const m = new StoredMatrix(3, 4, store, "a");
  residency.clear();
  const want = Array.from({ length: 12 }, (_, i) => (i - 6) * 0.375);
  assert.deepEqual([...m.values()], want);
  assert.deepEqual([...matrixRow(m, 1)], want.slice(4, 8));
  assert.equal(residency.peek(m), undefined, "a one-off read leaves nothing cached");
  const resident = m.data; // now cached: values() and matrixRow() read the cached copy
  assert.equal(m.values(), resident);
  assert.equal(matrixRow(m, 2).buffer, resident.buffer);
  assert.deepEqual([...valuesOf({ rows: 1, cols: 2, data: new Float32Array([1, 2]) })], [1, 2]);
  const q = quantizeMatrix(new Float32Array(want), 3, 4, {
    bits: 4,
    granularity: "channel",
    symmetric: false,
  });
  const p = new PackedMatrix(q.packed);
  assert.deepEqual(p.values(), q.dequantized);
  assert.equal(residency.peek(p), undefined);
  residency.clear();
});
