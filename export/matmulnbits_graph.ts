/**
 * A MatMulNBits linear layer as ONNX graph pieces (the node, an `Add` for a bias, the
 * initializers), and a one-node model around it for runtime checks.
 *
 * The bias is a separate `Add` rather than MatMulNBits' optional sixth input, so runtimes that
 * accept only 3–4 inputs (onnxruntime-web's JSEP kernel) still load the graph. `accuracy_level`
 * is left unset (0: computations in A's type); level 4 would quantize A to int8.
 *
 * @module
 */

import type { MatMulNBitsWeight } from "./matmulnbits.ts";
import {
  encodeOnnxModel,
  onnxInitializer,
  type OnnxModelOptions,
  type OnnxNode,
  onnxNode,
  type OnnxTensor,
  onnxValueInfo,
} from "./onnx_proto.ts";
import { floatTensor } from "../models/formats/tensor.ts";

/** Options of {@linkcode matMulNBitsNodes}. */
export interface MatMulNBitsNodeOptions {
  /** Bias `[N]`, added by an `Add` node after the product. */
  readonly bias?: Float32Array;
  /** `accuracy_level` attribute; omitted when undefined. */
  readonly accuracyLevel?: number;
}

/**
 * Nodes and initializers computing `output = input · dequant(W)ᵀ (+ bias)` for `input` of shape
 * `[…, K]`; initializers are named `{prefix}.B`, `{prefix}.scales`, `{prefix}.zero_points`,
 * `{prefix}.bias`.
 */
export function matMulNBitsNodes(
  prefix: string,
  input: string,
  output: string,
  w: MatMulNBitsWeight,
  options: MatMulNBitsNodeOptions = {},
): { nodes: OnnxNode[]; initializers: OnnxTensor[] } {
  const { K, N, bits, block_size } = w.attributes;
  const t = w.tensors;
  const initializers = [
    onnxInitializer(`${prefix}.B`, t.B),
    onnxInitializer(`${prefix}.scales`, t.scales),
  ];
  const inputs = [input, `${prefix}.B`, `${prefix}.scales`];
  if (t.zero_points) {
    initializers.push(onnxInitializer(`${prefix}.zero_points`, t.zero_points));
    inputs.push(`${prefix}.zero_points`);
  }
  const attrs = {
    K: { int: K },
    N: { int: N },
    bits: { int: bits },
    block_size: { int: block_size },
    ...(options.accuracyLevel === undefined
      ? {}
      : { accuracy_level: { int: options.accuracyLevel } }),
  };
  const product = options.bias ? `${prefix}/MatMulNBits_output` : output;
  const nodes = [
    onnxNode("MatMulNBits", inputs, [product], attrs, {
      domain: "com.microsoft",
      name: `${prefix}/MatMulNBits`,
    }),
  ];
  if (options.bias) {
    if (options.bias.length !== N) {
      throw new RangeError(`${prefix}.bias: ${options.bias.length} values, expected N = ${N}`);
    }
    initializers.push(
      onnxInitializer(`${prefix}.bias`, floatTensor(`${prefix}.bias`, options.bias, [N], "F32")),
    );
    nodes.push(
      onnxNode("Add", [product, `${prefix}.bias`], [output], {}, { name: `${prefix}/Add` }),
    );
  }
  return { nodes, initializers };
}

/**
 * A model with input `A` `[tokens, K]` (float32; `tokens` a number or a symbolic name) and
 * output `Y` `[tokens, N]`: one MatMulNBits node (plus `Add` with a bias).
 */
export function matMulNBitsModel(
  w: MatMulNBitsWeight,
  tokens: number | string = "tokens",
  options: MatMulNBitsNodeOptions & OnnxModelOptions = {},
): Uint8Array {
  const { nodes, initializers } = matMulNBitsNodes("linear", "A", "Y", w, options);
  return encodeOnnxModel(
    {
      name: "matmulnbits",
      nodes,
      initializers,
      inputs: [onnxValueInfo("A", "F32", [tokens, w.attributes.K])],
      outputs: [onnxValueInfo("Y", "F32", [tokens, w.attributes.N])],
    },
    options,
  );
}
