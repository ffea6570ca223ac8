/**
 * A one-node ONNX model `Y = X · B` (MatMul, opset 13, float32, B an initializer), written as
 * protobuf bytes in code, so the kernel benchmark can time onnxruntime-web's MatMul on exactly
 * our shapes with no model file. Only the few ModelProto fields such a graph needs are written
 * (onnx.proto3: ModelProto 1 ir_version, 7 graph, 8 opset_import; GraphProto 1 node, 2 name,
 * 5 initializer, 11 input, 12 output; NodeProto 1 input, 2 output, 4 op_type; TensorProto 1 dims,
 * 2 data_type, 8 name, 9 raw_data).
 *
 * @module
 */

/** A protobuf message under construction (wire types 0 and 2 only). */
class Proto {
  readonly bytes: number[] = [];

  #varint(v: number): void {
    while (v > 127) {
      this.bytes.push((v % 128) | 128);
      v = Math.floor(v / 128);
    }
    this.bytes.push(v);
  }

  int(field: number, v: number): this {
    this.#varint(field * 8);
    this.#varint(v);
    return this;
  }

  raw(field: number, v: ArrayLike<number>): this {
    this.#varint(field * 8 + 2);
    this.#varint(v.length);
    for (let i = 0; i < v.length; i++) this.bytes.push(v[i]!);
    return this;
  }

  str(field: number, s: string): this {
    return this.raw(field, new TextEncoder().encode(s));
  }

  msg(field: number, m: Proto): this {
    return this.raw(field, m.bytes);
  }
}

const FLOAT = 1;

function valueInfo(name: string, dims: readonly number[]): Proto {
  const shape = new Proto();
  for (const d of dims) shape.msg(1, new Proto().int(1, d));
  const tensorType = new Proto().int(1, FLOAT).msg(2, shape);
  return new Proto().str(1, name).msg(2, new Proto().msg(1, tensorType));
}

/**
 * The model `Y[m][n] = Σ_k X[m][k] · B[k][n]` with input `X` `[m][k]`, output `Y` `[m][n]`
 * and `B` (`[k][n]`, row-major) stored in the model.
 */
export function onnxMatMulModel(m: number, k: number, n: number, b: Float32Array): Uint8Array {
  if (b.length !== k * n) throw new RangeError(`B holds ${b.length} values, expected ${k}×${n}`);
  const node = new Proto().str(1, "X").str(1, "B").str(2, "Y").str(4, "MatMul");
  const init = new Proto().int(1, k).int(1, n).int(2, FLOAT).str(8, "B")
    .raw(9, new Uint8Array(b.buffer, b.byteOffset, b.byteLength));
  const graph = new Proto().msg(1, node).str(2, "matmul").msg(5, init)
    .msg(11, valueInfo("X", [m, k])).msg(12, valueInfo("Y", [m, n]));
  const opset = new Proto().str(1, "").int(2, 13);
  const model = new Proto().int(1, 8).msg(8, opset).msg(7, graph);
  return new Uint8Array(model.bytes);
}
