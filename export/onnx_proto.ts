/**
 * ONNX `ModelProto` bytes from a small graph description: nodes with typed attributes (any
 * domain, e.g. `com.microsoft`), initializers stored as `raw_data`, graph inputs and outputs with
 * shapes (fixed or symbolic dimensions), and opset imports.
 *
 * The protobuf encoding is done by the npm package `onnx-proto` (protobufjs static code generated
 * from onnx.proto, ONNX 1.10.2 schema: IR version 8, every message and field a model writer
 * needs); this module only maps our {@linkcode RawTensor} and plain values onto its messages.
 * Models must stay under protobuf's 2 GB limit (no external-data tensors yet).
 *
 * @module
 */

import onnxProto from "onnx-proto";
import type { onnx as OnnxTypes } from "onnx-proto";
import {
  assertLittleEndianHost,
  bytesOf,
  checkRawTensor,
  type RawTensor,
  type SafetensorsDtype,
} from "../models/formats/tensor.ts";

const { onnx } = onnxProto;

/** The decoded model type, for readers and tests. */
export type OnnxModelProto = OnnxTypes.ModelProto;
/** A node message. */
export type OnnxNode = OnnxTypes.INodeProto;
/** A tensor message (initializer). */
export type OnnxTensor = OnnxTypes.ITensorProto;
/** A value info message (graph input or output). */
export type OnnxValueInfo = OnnxTypes.IValueInfoProto;

/** ONNX `TensorProto.DataType` of each safetensors dtype. */
export const ONNX_DATA_TYPE: Readonly<Record<SafetensorsDtype, number>> = {
  F32: 1,
  U8: 2,
  I8: 3,
  U16: 4,
  I16: 5,
  I32: 6,
  I64: 7,
  BOOL: 9,
  F16: 10,
  F64: 11,
  U32: 12,
  U64: 13,
  BF16: 16,
};

/** An attribute value, tagged with its ONNX type (JavaScript numbers cannot tell int from float). */
export type OnnxAttributeValue =
  | { readonly int: number }
  | { readonly float: number }
  | { readonly string: string }
  | { readonly ints: readonly number[] }
  | { readonly floats: readonly number[] }
  | { readonly tensor: RawTensor };

/** An initializer: a named tensor stored in the model as `raw_data` (little-endian). */
export function onnxInitializer(name: string, t: RawTensor): OnnxTensor {
  assertLittleEndianHost();
  checkRawTensor(name, t);
  return {
    name,
    dims: [...t.shape],
    dataType: ONNX_DATA_TYPE[t.dtype],
    rawData: bytesOf(t.data).slice(),
  };
}

function attribute(name: string, v: OnnxAttributeValue): OnnxTypes.IAttributeProto {
  const T = onnx.AttributeProto.AttributeType;
  const checkInt = (x: number) => {
    if (!Number.isSafeInteger(x)) {
      throw new RangeError(`attribute "${name}": ${x} is not a (safe) integer`);
    }
    return x;
  };
  if ("int" in v) return { name, type: T.INT, i: checkInt(v.int) };
  if ("float" in v) return { name, type: T.FLOAT, f: v.float };
  if ("string" in v) return { name, type: T.STRING, s: new TextEncoder().encode(v.string) };
  if ("ints" in v) return { name, type: T.INTS, ints: v.ints.map(checkInt) };
  if ("floats" in v) return { name, type: T.FLOATS, floats: [...v.floats] };
  return { name, type: T.TENSOR, t: onnxInitializer(name, v.tensor) };
}

/** Options of {@linkcode onnxNode}. */
export interface OnnxNodeOptions {
  /** Operator domain: `""` (ai.onnx, default) or e.g. `com.microsoft`. */
  readonly domain?: string;
  /** Node name (optional in ONNX; helps error messages of runtimes). */
  readonly name?: string;
}

/**
 * A node `opType(inputs) → outputs` with attributes; an empty string in `inputs` skips an
 * optional input, as ONNX specifies.
 */
export function onnxNode(
  opType: string,
  inputs: readonly string[],
  outputs: readonly string[],
  attributes: Readonly<Record<string, OnnxAttributeValue>> = {},
  options: OnnxNodeOptions = {},
): OnnxNode {
  return {
    opType,
    input: [...inputs],
    output: [...outputs],
    name: options.name ?? "",
    domain: options.domain ?? "",
    attribute: Object.entries(attributes).map(([k, v]) => attribute(k, v)),
  };
}

/**
 * A graph input or output: element type and shape; a string dimension is symbolic (`dim_param`),
 * e.g. `"tokens"`.
 */
export function onnxValueInfo(
  name: string,
  dtype: SafetensorsDtype,
  dims: readonly (number | string)[],
): OnnxValueInfo {
  return {
    name,
    type: {
      tensorType: {
        elemType: ONNX_DATA_TYPE[dtype],
        shape: {
          dim: dims.map((d) => (typeof d === "string" ? { dimParam: d } : { dimValue: d })),
        },
      },
    },
  };
}

/** A graph to encode. */
export interface OnnxGraph {
  readonly name: string;
  readonly nodes: readonly OnnxNode[];
  readonly initializers: readonly OnnxTensor[];
  readonly inputs: readonly OnnxValueInfo[];
  readonly outputs: readonly OnnxValueInfo[];
}

/** Options of {@linkcode encodeOnnxModel}. */
export interface OnnxModelOptions {
  /** Opset version per domain (default `{"": 17, "com.microsoft": 1}`). */
  readonly opsets?: Readonly<Record<string, number>>;
  /** `ir_version` (default 8, the schema's own; ONNX Runtime 1.20 reads up to 10). */
  readonly irVersion?: number;
  readonly producerName?: string;
  readonly producerVersion?: string;
}

/**
 * Encodes a model. Node inputs must be graph inputs, initializers or earlier nodes' outputs
 * (nodes are expected in topological order, as ONNX requires).
 *
 * @throws {RangeError} Naming the node and the input that nothing produces, or a name produced
 *   twice.
 */
export function encodeOnnxModel(graph: OnnxGraph, options: OnnxModelOptions = {}): Uint8Array {
  const known = new Set<string>([""]);
  const define = (n: string, what: string) => {
    if (known.has(n)) {
      throw new RangeError(`ONNX graph "${graph.name}": ${what} "${n}" is defined twice`);
    }
    known.add(n);
  };
  for (const i of graph.inputs) define(i.name ?? "", "input");
  for (const t of graph.initializers) define(t.name ?? "", "initializer");
  graph.nodes.forEach((node, k) => {
    for (const i of node.input ?? []) {
      if (!known.has(i)) {
        throw new RangeError(
          `ONNX graph "${graph.name}": node ${k} (${node.opType} "${
            node.name ?? ""
          }") reads "${i}", ` +
            `which no input, initializer or earlier node provides`,
        );
      }
    }
    for (const o of node.output ?? []) define(o, `output of node ${k} (${node.opType})`);
  });
  for (const o of graph.outputs) {
    if (!known.has(o.name ?? "")) {
      throw new RangeError(
        `ONNX graph "${graph.name}": graph output "${o.name}" is never produced`,
      );
    }
  }
  const opsets = options.opsets ?? { "": 17, "com.microsoft": 1 };
  const model = onnx.ModelProto.create({
    irVersion: options.irVersion ?? 8,
    producerName: options.producerName ?? "lowbit",
    producerVersion: options.producerVersion ?? "",
    opsetImport: Object.entries(opsets).map(([domain, version]) => ({ domain, version })),
    graph: {
      name: graph.name,
      node: [...graph.nodes],
      initializer: [...graph.initializers],
      input: [...graph.inputs],
      output: [...graph.outputs],
    },
  });
  return onnx.ModelProto.encode(model).finish();
}

/** Decodes model bytes (for tests and importers). */
export function decodeOnnxModel(bytes: Uint8Array): OnnxModelProto {
  return onnx.ModelProto.decode(bytes);
}
