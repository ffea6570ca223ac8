/**
 * Parquet files as rows of plain objects, through `hyparquet` (pure JS, no native code; snappy,
 * the Hub's codec, built in). Nested columns come out as nested objects and arrays (e.g. ARC's
 * `choices: {text: [...], label: [...]}`); 64-bit integers become numbers when they are safe
 * integers. The reader is imported on first use, so runs without parquet files never load it.
 *
 * @module
 */

/**
 * Reads every row of a parquet file.
 *
 * @param path The file's path, for error messages.
 * @param bytes The whole file.
 * @returns One object per row, keyed by column name.
 * @throws {SyntaxError} When the bytes are not a parquet file hyparquet can read (the message names
 *   the file and hyparquet's reason, e.g. an unsupported compression codec).
 */
export async function readParquetRows(
  path: string,
  bytes: Uint8Array,
): Promise<Record<string, unknown>[]> {
  const file = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
  const { parquetReadObjects } = await import("hyparquet");
  let rows: Record<string, unknown>[];
  try {
    rows = await parquetReadObjects({ file: file as ArrayBuffer });
  } catch (e) {
    const reason = e instanceof Error ? e.message : String(e);
    throw new SyntaxError(`Cannot read parquet file ${path}: ${reason}`, { cause: e });
  }
  return rows.map((r) => plain(r) as Record<string, unknown>);
}

/** Converts safe bigints to numbers, recursively through arrays and plain objects. */
function plain(v: unknown): unknown {
  if (typeof v === "bigint") {
    return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER)
      ? Number(v)
      : v;
  }
  if (Array.isArray(v)) return v.map(plain);
  if (v !== null && typeof v === "object" && Object.getPrototypeOf(v) === Object.prototype) {
    const o: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) o[k] = plain(x);
    return o;
  }
  return v;
}
