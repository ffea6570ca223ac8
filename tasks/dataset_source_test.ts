import assert from "node:assert/strict";
import { NotAvailableError } from "../core/errors.ts";
import { writeParquet } from "../testing/parquet_writer.ts";
import { datasetRows, parseDatasetSource, readDatasetSource } from "./dataset_source.ts";
import { MalformedRows } from "./malformed.ts";

const enc = (s: string) => new TextEncoder().encode(s);

async function gzip(bytes: Uint8Array): Promise<Uint8Array> {
  const stream = new Blob([bytes as Uint8Array<ArrayBuffer>]).stream()
    .pipeThrough(new CompressionStream("gzip"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

Deno.test("parseDatasetSource(): hf://datasets/owner/name[@rev]/path, or a local path", () => {
  assert.deepEqual(parseDatasetSource("hf://datasets/allenai/ai2_arc/ARC-Easy/test.parquet"), {
    kind: "hub",
    spec: "hf://datasets/allenai/ai2_arc/ARC-Easy/test.parquet",
    repo: "allenai/ai2_arc",
    revision: "main",
    path: "ARC-Easy/test.parquet",
  });
  const rev = parseDatasetSource(
    "hf://datasets/ybisk/piqa@refs%2Fconvert%2Fparquet/plain_text/validation/0000.parquet",
  );
  assert.equal(rev.kind, "hub");
  if (rev.kind === "hub") {
    assert.equal(rev.revision, "refs/convert/parquet");
    assert.equal(rev.path, "plain_text/validation/0000.parquet");
  }
  const commit = "0123456789abcdef0123456789abcdef01234567";
  const c = parseDatasetSource(`hf://datasets/openai/gsm8k@${commit}/main/test.parquet`);
  assert.equal(c.kind === "hub" && c.revision, commit);
  assert.deepEqual(parseDatasetSource("./data/arc.parquet"), {
    kind: "file",
    spec: "./data/arc.parquet",
    path: "./data/arc.parquet",
  });
  for (
    const bad of [
      "",
      "hf://openai/gsm8k/x.parquet",
      "hf://datasets/openai/gsm8k",
      "hf://models/a/b/c",
    ]
  ) {
    assert.throws(() => parseDatasetSource(bad), TypeError, bad);
  }
});

Deno.test("datasetRows(): parquet, JSON lines, a JSON array, gzip; rows name file and line or row", async () => {
  const objs = [{ q: "a", n: 1 }, { q: "b", n: 2 }];
  const pq = await datasetRows("x.parquet", writeParquet({ q: "string", n: "int64" }, objs));
  assert.deepEqual(pq, [
    { where: "x.parquet: row 1", value: { q: "a", n: 1 } },
    { where: "x.parquet: row 2", value: { q: "b", n: 2 } },
  ]);
  const text = '{"q":"a","n":1}\n\n{"q":"b","n":2}\n';
  const jl = await datasetRows("x.jsonl", enc(text));
  assert.deepEqual(jl, [
    { where: "x.jsonl:1", value: objs[0] },
    { where: "x.jsonl:3", value: objs[1] },
  ]);
  assert.deepEqual(
    (await datasetRows("x.jsonl.gz", await gzip(enc(text)))).map((r) => r.value),
    objs,
  );
  assert.deepEqual(
    await datasetRows("x.json", enc(JSON.stringify(objs))),
    [{ where: "x.json: item 1", value: objs[0] }, { where: "x.json: item 2", value: objs[1] }],
  );
  assert.deepEqual((await datasetRows("x.json", enc(text))).map((r) => r.value), objs);
  await assert.rejects(datasetRows("x.csv", enc("a,b")), /unknown type.*\.parquet/);
  await assert.rejects(
    datasetRows("broken.parquet", enc("PAR1 not really")),
    (e: unknown) =>
      e instanceof SyntaxError && /Cannot read parquet file broken\.parquet/.test(e.message),
  );
});

Deno.test("datasetRows(): a malformed line throws naming file and line, or is skipped and counted", async () => {
  const text = '{"q":"a"}\n{"q": oops}\n[1]\n{"q":"d"}\n';
  await assert.rejects(
    datasetRows("bad.jsonl", enc(text)),
    (e: unknown) => e instanceof SyntaxError && e.message.startsWith("bad.jsonl:2: not valid JSON"),
  );
  const rows = new MalformedRows(true);
  const got = await datasetRows("bad.jsonl", enc(text), rows);
  assert.deepEqual(got.map((r) => r.where), ["bad.jsonl:1", "bad.jsonl:4"]);
  assert.deepEqual(rows.summary(), {
    skipMalformed: true,
    skippedMalformed: 2,
    skippedExamples: ["bad.jsonl:2: not valid JSON", "bad.jsonl:3: expected a JSON object"],
  });
  // A JSON array that does not parse cannot be skipped row by row.
  await assert.rejects(datasetRows("bad.json", enc("[{"), new MalformedRows(true)), SyntaxError);
});

Deno.test("readDatasetSource(): a local file is fingerprinted in place; a missing one names it", async () => {
  const dir = await Deno.makeTempDir({ prefix: "lowbit-source-" });
  try {
    const path = `${dir}/rows.jsonl`;
    const bytes = enc('{"q":"a"}\n');
    await Deno.writeFile(path, bytes);
    const r = await readDatasetSource(parseDatasetSource(path));
    assert.equal(r.file.path, path);
    assert.equal(r.file.bytes, bytes.length);
    // sha256 of '{"q":"a"}\n', from `printf '{"q":"a"}\n' | sha256sum`
    assert.equal(r.file.sha256, "3d6d726590fe19ded00460f58c6a528ee76299724b2adbbe4def8b1a727093a6");
    assert.deepEqual(r.rows.map((x) => x.value), [{ q: "a" }]);
    await assert.rejects(
      readDatasetSource(parseDatasetSource(`${dir}/missing.parquet`)),
      (e: unknown) => e instanceof NotAvailableError && e.message.includes("missing.parquet"),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
