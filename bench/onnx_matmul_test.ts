import assert from "node:assert/strict";
import * as ort from "onnxruntime-web";
import { onnxMatMulModel } from "./onnx_matmul.ts";
import { assertSameProduct, ortMatMul } from "./ort_matmul.ts";
import { randomMatrix } from "../testing/random.ts";

Deno.test({
  name:
    "onnxMatMulModel(): onnxruntime-web runs the one-node graph and computes X·B (checked by hand loops)",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const [m, k, n] = [3, 7, 5];
    const b = randomMatrix(k * n, 1);
    const x = randomMatrix(m * k, 2);
    ort.env.wasm.numThreads = 1;
    const session = await ort.InferenceSession.create(onnxMatMulModel(m, k, n, b));
    const out = await session.run({ X: new ort.Tensor("float32", x, [m, k]) });
    const y = out.Y!.data as Float32Array;
    assert.deepEqual(out.Y!.dims, [m, n]);
    for (let i = 0; i < m; i++) {
      for (let j = 0; j < n; j++) {
        let s = 0;
        for (let t = 0; t < k; t++) s += x[i * k + t]! * b[t * n + j]!;
        assert.ok(
          Math.abs(y[i * n + j]! - s) < 1e-5,
          `Y[${i}][${j}] = ${y[i * n + j]}, expected ${s}`,
        );
      }
    }
    await session.release();
    assert.throws(
      () => onnxMatMulModel(2, 3, 4, new Float32Array(5)),
      /B holds 5 values, expected 3×4/,
    );
  },
});

Deno.test({
  name:
    "ortMatMul(): x·wᵀ for weights stored [out][in]; assertSameProduct() rejects a wrong product",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const [m, rows, cols] = [2, 3, 4];
    const w = randomMatrix(rows * cols, 3);
    const x = randomMatrix(m * cols, 4);
    ort.env.wasm.numThreads = 1;
    const mm = await ortMatMul(m, rows, cols, w);
    const y = await mm.run(x);
    await mm.release();
    const want = new Float32Array(m * rows);
    for (let t = 0; t < m; t++) {
      for (let o = 0; o < rows; o++) {
        let s = 0;
        for (let i = 0; i < cols; i++) s += x[t * cols + i]! * w[o * cols + i]!;
        want[t * rows + o] = s;
      }
    }
    assertSameProduct("2×3×4", want, y);
    const wrong = want.slice();
    wrong[5] = wrong[5]! + 0.1;
    assert.throws(
      () => assertSameProduct("2×3×4", wrong, y),
      /2×3×4: ours and onnxruntime-web differ by/,
    );
  },
});
