import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { makeRow } from "./make_row.ts";
import { mergeResultDirs, readResultDir } from "./merge.ts";
import { ResultsInputError } from "./load.ts";
import { parseCellFile, ResultStore } from "./store.ts";

/** Sorted-key JSON, written here independently of `core/hash.ts`. */
function sortedJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(sortedJson).join(",")}]`;
  if (v && typeof v === "object") {
    const keys = Object.keys(v).sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${sortedJson((v as never)[k])}`).join(",")}}`;
  }
  return JSON.stringify(v);
}

const sha256 = (text: string) => createHash("sha256").update(text).digest("hex");

Deno.test("store: cell files carry the sha256 of their row's canonical JSON; derived files do not", async () => {
  const dir = await Deno.makeTempDir({ prefix: "lowbit-store-" });
  try {
    const store = new ResultStore(dir);
    const row = makeRow({ cellId: "c1", metrics: { ppl: [6.25, 0.125] } });
    await store.put(row);
    const file = JSON.parse(await Deno.readTextFile(`${dir}/cells/c1.json`));
    const { sha256: sum, ...rest } = file;
    assert.equal(sum, sha256(sortedJson(row)));
    assert.deepEqual(rest, JSON.parse(JSON.stringify(row)));
    assert.deepEqual(await store.read("c1"), { row: rest, integrity: "ok" });
    // results.jsonl holds the row as before, without the checksum.
    const line = JSON.parse((await Deno.readTextFile(`${dir}/results.jsonl`)).trim());
    assert.equal("sha256" in line, false);
    assert.deepEqual(line, rest);

    // Key order and whitespace do not matter; a changed value does.
    const reordered = Object.fromEntries(Object.entries(file).reverse());
    assert.equal((await parseCellFile(JSON.stringify(reordered))).integrity, "ok");
    const edited = structuredClone(file);
    edited.metrics[0].value = 6.2;
    assert.equal((await parseCellFile(JSON.stringify(edited))).integrity, "mismatch");
    assert.equal(
      (await parseCellFile(JSON.stringify({ ...file, status: "failed" }))).integrity,
      "mismatch",
    );
    assert.equal((await parseCellFile(JSON.stringify(rest))).integrity, "missing");

    // A truncated file is corrupted too; a missing one is just absent.
    const text = await Deno.readTextFile(`${dir}/cells/c1.json`);
    await Deno.writeTextFile(`${dir}/cells/c1.json`, text.slice(0, text.length >> 1));
    assert.deepEqual(await store.read("c1"), { row: undefined, integrity: "mismatch" });
    assert.equal(await store.read("c2"), undefined);
    assert.deepEqual(await store.rows(), []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("merge: an input cell failing its checksum is refused; one without a checksum is read and written with one", async () => {
  const dir = await Deno.makeTempDir({ prefix: "lowbit-store-" });
  try {
    const a = new ResultStore(`${dir}/a`);
    await a.put(makeRow({ cellId: "c1" }));
    const cell = JSON.parse(await Deno.readTextFile(`${dir}/a/cells/c1.json`));
    cell.metrics[0].value = 9;
    await Deno.writeTextFile(`${dir}/a/cells/c1.json`, JSON.stringify(cell));
    await assert.rejects(
      readResultDir(`${dir}/a`),
      (e: Error) =>
        e instanceof ResultsInputError &&
        e.message === `${dir}/a/cells/c1.json: fails its sha256 checksum (edited or corrupted ` +
            `after it was written); rerun the cell or remove the file`,
    );
    await assert.rejects(mergeResultDirs([`${dir}/a`], `${dir}/m`), ResultsInputError);
    await assert.rejects(Deno.stat(`${dir}/m`), Deno.errors.NotFound, "nothing written");

    // A cell written before checksums: accepted, and the merged copy carries one.
    const legacy = makeRow({ cellId: "c2" });
    await Deno.mkdir(`${dir}/b/cells`, { recursive: true });
    await Deno.writeTextFile(`${dir}/b/cells/c2.json`, JSON.stringify(legacy));
    const rows = await readResultDir(`${dir}/b`);
    assert.deepEqual(rows.map((r) => r.row), [legacy]);
    await mergeResultDirs([`${dir}/b`], `${dir}/m`);
    const merged = JSON.parse(await Deno.readTextFile(`${dir}/m/cells/c2.json`));
    assert.equal(merged.sha256, sha256(sortedJson(legacy)));
    assert.equal((await new ResultStore(`${dir}/m`).read("c2"))?.integrity, "ok");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
