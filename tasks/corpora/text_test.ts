import assert from "node:assert/strict";
import { NotAvailableError } from "../../core/errors.ts";
import { bundledDataDir } from "../../core/paths.ts";
import { needs, sharedPath } from "../../testing/fixtures.ts";
import { datasetInfo, readTextDataset } from "./text.ts";

/** The published checksum of the TinyStories file (the shared fixtures' SHA256SUMS). */
const TINYSTORIES_SHA256 = "5fc1fb0113df62b567fb271806cd645ce8d75f59c58ca0b764c03d3b6ff34ca6";
const REL = "text/tinystories/tinystories_val_head.txt";
const shared = await needs("SHA256SUMS", `data/${REL}`);

Deno.test("the default data root is data/ of the repository, and its TinyStories file is the published one", async () => {
  const root = new URL("../../data/", import.meta.url);
  assert.equal(bundledDataDir(), decodeURIComponent(root.pathname).replace(/\/$/, ""));
  const info = await datasetInfo("tinystories", bundledDataDir());
  assert.equal(info.path, decodeURIComponent(new URL(REL, root).pathname));
  assert.equal(info.bytes, 794_375);
  assert.equal(info.sha256, TINYSTORIES_SHA256);
  // The licence and provenance ship beside it.
  const readme = await Deno.readTextFile(new URL("text/tinystories/README.md", root));
  assert.match(readme, /CDLA-Sharing-1\.0/);
  assert.ok(readme.includes(TINYSTORIES_SHA256));
  const licence = await Deno.readTextFile(
    new URL("text/tinystories/LICENSE-CDLA-Sharing-1.0.txt", root),
  );
  assert.match(licence, /^Community Data License Agreement – Sharing – Version 1\.0/);
});

shared.test("the bundled TinyStories is byte-identical to the shared fixture listed in SHA256SUMS", async () => {
  const sums = await Deno.readTextFile(sharedPath("SHA256SUMS"));
  const line = sums.split("\n").find((l) => l.endsWith(`  data/${REL}`));
  assert.equal(line?.split("  ")[0], TINYSTORIES_SHA256);
  assert.deepEqual(
    await Deno.readFile(`${bundledDataDir()}/${REL}`),
    await Deno.readFile(sharedPath("data", REL)),
  );
});

Deno.test("a corpus that is not bundled names --data, LOWBIT_DATA and the file it expects", async () => {
  const err = await readTextDataset("wikitext2", bundledDataDir()).then(
    () => assert.fail("wikitext2 does not ship with lowbit"),
    (e: unknown) => e,
  );
  assert.ok(err instanceof NotAvailableError);
  assert.match(
    err.message,
    /^Dataset "wikitext2" not found at .*\/data\/text\/wikitext2\/wiki\.test\.raw: /,
  );
  assert.match(
    err.message,
    /--data DIR or LOWBIT_DATA=DIR to a directory holding text\/wikitext2\/wiki\.test\.raw/,
  );
  assert.match(err.message, /file:PATH/);
  // An explicit data root replaces data/, TinyStories included.
  const empty = await Deno.makeTempDir();
  try {
    await assert.rejects(
      readTextDataset("tinystories:eval", empty),
      (e: Error) => e instanceof NotAvailableError && e.message.includes(`${empty}/${REL}`),
    );
  } finally {
    await Deno.remove(empty);
  }
});
