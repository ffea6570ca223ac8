/**
 * Test helper: writes rows as a parquet file with the column layout `datasets`/pyarrow give
 * Hugging Face datasets (optional columns, 3-level `LIST` for sequences, groups for structs),
 * through `hyparquet-writer` (test-only dependency; snappy compression, as on the Hub).
 *
 * @module
 */

import { parquetWriteBuffer } from "hyparquet-writer";

/** A column's type: a scalar, a list of strings, or a struct of named fields. */
export type ColumnType =
  | "string"
  | "int64"
  | "boolean"
  | "string[]"
  | { readonly [field: string]: ColumnType };

interface SchemaElement {
  name: string;
  type?: string;
  converted_type?: string;
  repetition_type: "OPTIONAL" | "REPEATED" | "REQUIRED";
  num_children?: number;
}

function elements(name: string, t: ColumnType): SchemaElement[] {
  const optional = "OPTIONAL" as const;
  if (t === "string") {
    return [{ name, type: "BYTE_ARRAY", converted_type: "UTF8", repetition_type: optional }];
  }
  if (t === "int64") return [{ name, type: "INT64", repetition_type: optional }];
  if (t === "boolean") return [{ name, type: "BOOLEAN", repetition_type: optional }];
  if (t === "string[]") {
    return [
      { name, converted_type: "LIST", repetition_type: optional, num_children: 1 },
      { name: "list", repetition_type: "REPEATED", num_children: 1 },
      ...elements("element", "string"),
    ];
  }
  const fields = Object.entries(t);
  return [
    { name, repetition_type: optional, num_children: fields.length },
    ...fields.flatMap(([f, ft]) => elements(f, ft)),
  ];
}

/** int64 columns take bigints. */
function encode(v: unknown, t: ColumnType): unknown {
  if (v === null || v === undefined) return null;
  if (t === "int64") return BigInt(v as number);
  if (typeof t === "object") {
    const o: Record<string, unknown> = {};
    for (const [f, ft] of Object.entries(t)) o[f] = encode((v as Record<string, unknown>)[f], ft);
    return o;
  }
  return v;
}

/**
 * The bytes of a parquet file holding `rows`, with `columns` in order.
 *
 * @param columns Column names and types, in file order.
 * @param rows One object per row (missing fields are written as nulls).
 */
export function writeParquet(
  columns: Readonly<Record<string, ColumnType>>,
  rows: readonly Record<string, unknown>[],
): Uint8Array {
  const entries = Object.entries(columns);
  const buffer = parquetWriteBuffer({
    columnData: entries.map(([name, t]) => ({
      name,
      data: rows.map((r) => encode(r[name], t)) as never[],
    })),
    schema: [
      { name: "root", num_children: entries.length },
      ...entries.flatMap(([name, t]) => elements(name, t)),
    ] as never,
  });
  return new Uint8Array(buffer);
}
