import assert from "node:assert/strict";
import * as ort from "onnxruntime-web";
import { onnxMatMulModel } from "./onnx_matmul.ts";
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
