/**
 * Oracle §5.8 on onnxruntime-web's WASM execution provider (CPU kernels): a one-node
 * MatMulNBits graph equals our packed GEMV (`kernels/ref/packed.ts`) within 1e-5 of the largest
 * output, float32 activations.
 */
import assert from "node:assert/strict";
import * as ort from "onnxruntime-web";
import { quantizeMatrix, type QuantizerSpec } from "../core/quantizer.ts";
import { matmulPackedRef } from "../kernels/ref/packed.ts";
import { randomMatrix } from "../testing/random.ts";
import { exportMatMulNBits } from "./matmulnbits.ts";
import { matMulNBitsModel } from "./matmulnbits_graph.ts";
import { relDiff } from "./rel_diff.ts";

const CASES: readonly { K: number; block: number; zp: boolean }[] = [
  { K: 256, block: 32, zp: true },
  { K: 256, block: 32, zp: false },
  { K: 256, block: 128, zp: true },
  { K: 256, block: 128, zp: false },
  { K: 96, block: 32, zp: true }, // k_blocks = 3: a pad nibble per zero-point row
  { K: 100, block: 0, zp: true }, // per-channel: one block of 128, 28 padded positions
];

Deno.test({
  name:
    "MatMulNBits oracle §5.8 (WASM EP): 4-bit one-node graphs equal the reference packed GEMV within 1e-5",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    ort.env.wasm.numThreads = 1;
    const N = 64;
    for (const { K, block, zp } of CASES) {
      // Symmetric weights have every zero point 8 (the default), so no zero_points input.
      const spec: QuantizerSpec = block === 0
        ? { bits: 4, granularity: "channel", symmetric: !zp }
        : { bits: 4, granularity: "group", groupSize: block, symmetric: !zp };
      const p = quantizeMatrix(randomMatrix(N * K, K + block), N, K, spec).packed;
      const w = exportMatMulNBits(p);
      assert.equal(w.tensors.zero_points !== undefined, zp);
      const bias = randomMatrix(N, 5);
      for (const withBias of [false, true]) {
        const session = await ort.InferenceSession.create(
          matMulNBitsModel(w, "tokens", withBias ? { bias } : {}),
        );
        for (const tokens of [1, 3]) {
          const x = randomMatrix(tokens * K, 11 + tokens);
          const out = await session.run({ A: new ort.Tensor("float32", x, [tokens, K]) });
          assert.deepEqual(out.Y!.dims, [tokens, N]);
          const ref = new Float32Array(tokens * N);
          matmulPackedRef(x, tokens, p, ref);
          if (withBias) { for (let i = 0; i < ref.length; i++) ref[i] = ref[i]! + bias[i % N]!; }
          const rel = relDiff(ref, out.Y!.data as Float32Array);
          assert.ok(
            rel <= 1e-5,
            `K ${K} block ${block} zp ${zp} bias ${withBias} M ${tokens}: rel ${rel}`,
          );
        }
        await session.release();
      }
    }
  },
});

Deno.test({
  name:
    "MatMulNBits on onnxruntime-web 1.20.1 WASM: 2- and 8-bit graphs are refused at session creation",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    ort.env.wasm.numThreads = 1;
    for (const bits of [2, 8]) {
      const p = quantizeMatrix(randomMatrix(64 * 256, bits), 64, 256, {
        bits,
        granularity: "group",
        groupSize: 32,
        symmetric: false,
      }).packed;
      // The layout is the documented one (importMatMulNBits reads it back); this runtime's CPU
      // kernel takes only 4 bits. If a later runtime accepts them, extend the oracle above.
      await assert.rejects(() =>
        ort.InferenceSession.create(matMulNBitsModel(exportMatMulNBits(p), 1))
      );
    }
  },
});
