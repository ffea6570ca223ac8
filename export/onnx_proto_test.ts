import assert from "node:assert/strict";
import * as ort from "onnxruntime-web";
import type { onnx as O } from "onnx-proto";
import {
  decodeOnnxModel,
  encodeOnnxModel,
  onnxInitializer,
  onnxNode,
  onnxValueInfo,
} from "./onnx_proto.ts";
import { floatTensor, rawTensor } from "../models/formats/tensor.ts";

Deno.test("encodeOnnxModel(): fields decode back (opsets, attributes of every kind, raw_data, symbolic dims)", () => {
  const bytes = encodeOnnxModel(
    {
      name: "g",
      nodes: [
        onnxNode("Custom", ["X", "", "W"], ["Y"], {
          i: { int: -3 },
          f: { float: 0.5 },
          s: { string: "héllo" },
          is: { ints: [1, 2, 2 ** 40] },
          fs: { floats: [0.25, -1] },
          t: { tensor: rawTensor("t", "I32", [2], new Int32Array([7, -7])) },
        }, { domain: "com.example", name: "n0" }),
      ],
      initializers: [
        onnxInitializer("W", rawTensor("W", "U8", [2, 2], new Uint8Array([1, 2, 3, 4]))),
      ],
      inputs: [onnxValueInfo("X", "F32", ["batch", 4])],
      outputs: [onnxValueInfo("Y", "F16", [3])],
    },
    { opsets: { "": 17, "com.example": 2 }, irVersion: 9, producerName: "t" },
  );
  const m = decodeOnnxModel(bytes);
  assert.equal(Number(m.irVersion), 9);
  assert.equal(m.producerName, "t");
  assert.deepEqual(m.opsetImport.map((o) => [o.domain, Number(o.version)]), [["", 17], [
    "com.example",
    2,
  ]]);
  // Decoded messages are class instances whose repeated fields are always arrays.
  const g = m.graph as O.GraphProto;
  const n = g.node[0] as O.NodeProto;
  assert.deepEqual([n.opType, n.domain, n.name, n.input, n.output], [
    "Custom",
    "com.example",
    "n0",
    ["X", "", "W"],
    ["Y"],
  ]);
  const a = Object.fromEntries(n.attribute.map((x) => [x.name, x as O.AttributeProto]));
  // AttributeProto.AttributeType: FLOAT 1, INT 2, STRING 3, TENSOR 4, FLOATS 6, INTS 7.
  assert.deepEqual(n.attribute.map((x) => x.type), [2, 1, 3, 7, 6, 4]);
  assert.equal(Number(a.i!.i), -3);
  assert.equal(a.f!.f, 0.5);
  assert.equal(new TextDecoder().decode(a.s!.s), "héllo");
  assert.deepEqual(a.is!.ints.map(Number), [1, 2, 2 ** 40]);
  assert.deepEqual(a.fs!.floats, [0.25, -1]);
  assert.equal(a.t!.t!.dataType, 6); // INT32
  assert.deepEqual(Array.from(a.t!.t!.rawData), [7, 0, 0, 0, 0xf9, 0xff, 0xff, 0xff]);
  const w = g.initializer[0] as O.TensorProto;
  assert.deepEqual([w.name, w.dims.map(Number), w.dataType, Array.from(w.rawData)], [
    "W",
    [2, 2],
    2,
    [1, 2, 3, 4],
  ]);
  const dims = (g.input[0]!.type!.tensorType!.shape as O.TensorShapeProto).dim;
  assert.deepEqual([dims[0]!.dimParam, Number(dims[1]!.dimValue)], ["batch", 4]);
  assert.equal((g.output as O.ValueInfoProto[])[0]!.type!.tensorType!.elemType, 10); // FLOAT16
});

Deno.test("encodeOnnxModel(): clear errors for dangling inputs, duplicate names, bad attributes", () => {
  const x = onnxValueInfo("X", "F32", [2]);
  const y = onnxValueInfo("Y", "F32", [2]);
  assert.throws(
    () =>
      encodeOnnxModel({
        name: "g",
        nodes: [onnxNode("Add", ["X", "B"], ["Y"])],
        initializers: [],
        inputs: [x],
        outputs: [y],
      }),
    /ONNX graph "g": node 0 \(Add ""\) reads "B", which no input, initializer or earlier node provides/,
  );
  assert.throws(
    () =>
      encodeOnnxModel({
        name: "g",
        nodes: [onnxNode("Relu", ["X"], ["X"])],
        initializers: [],
        inputs: [x],
        outputs: [x],
      }),
    /"X" is defined twice/,
  );
  assert.throws(
    () => encodeOnnxModel({ name: "g", nodes: [], initializers: [], inputs: [x], outputs: [y] }),
    /graph output "Y" is never produced/,
  );
  assert.throws(
    () => onnxNode("Foo", [], [], { k: { int: 1.5 } }),
    /attribute "k": 1.5 is not a \(safe\) integer/,
  );
});

Deno.test({
  name:
    "encodeOnnxModel(): onnxruntime-web runs a standard-op graph with int, float and ints attributes and I64/F32 initializers",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    // Y = LeakyRelu(Transpose(Reshape(X, [3, 2]) · 2 + b, perm [1, 0]), alpha 0.1), then Softmax(axis 1)
    const graph = {
      name: "std",
      nodes: [
        onnxNode("Reshape", ["X", "shape"], ["r"]),
        onnxNode("Mul", ["r", "two"], ["m"]),
        onnxNode("Add", ["m", "b"], ["a"]),
        onnxNode("Transpose", ["a"], ["t"], { perm: { ints: [1, 0] } }),
        onnxNode("LeakyRelu", ["t"], ["l"], { alpha: { float: 0.1 } }),
        onnxNode("Softmax", ["l"], ["Y"], { axis: { int: 1 } }),
      ],
      initializers: [
        onnxInitializer("shape", rawTensor("shape", "I64", [2], new BigInt64Array([3n, 2n]))),
        onnxInitializer("two", floatTensor("two", [2], [], "F32")),
        onnxInitializer("b", floatTensor("b", [0.5, -4], [2], "F32")),
      ],
      inputs: [onnxValueInfo("X", "F32", [6])],
      outputs: [onnxValueInfo("Y", "F32", [2, 3])],
    };
    ort.env.wasm.numThreads = 1;
    const session = await ort.InferenceSession.create(encodeOnnxModel(graph));
    const x = new Float32Array([1, -1, 0.5, 2, -3, 0]);
    const y = (await session.run({ X: new ort.Tensor("float32", x, [6]) })).Y!;
    await session.release();
    assert.deepEqual(y.dims, [2, 3]);
    // By hand: r = [[1, −1], [0.5, 2], [−3, 0]]; ·2 + b = [[2.5, −6], [1.5, 0], [−5.5, −4]];
    // transposed [[2.5, 1.5, −5.5], [−6, 0, −4]]; leaky → [[2.5, 1.5, −0.55], [−0.6, 0, −0.4]].
    const rows = [[2.5, 1.5, -0.55], [-0.6, 0, -0.4]];
    const want = rows.flatMap((r) => {
      const e = r.map(Math.exp);
      const s = e.reduce((p, q) => p + q, 0);
      return e.map((v) => v / s);
    });
    const got = Array.from(y.data as Float32Array);
    got.forEach((v, i) =>
      assert.ok(Math.abs(v - want[i]!) < 1e-6, `Y[${i}] = ${v}, want ${want[i]}`)
    );
  },
});
