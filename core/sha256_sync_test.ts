import assert from "node:assert/strict";
import { sha256Hex } from "./hash.ts";
import { Sha256 } from "./sha256_sync.ts";

Deno.test("Sha256 equals WebCrypto's SHA-256 on published vectors and random inputs of every block edge", async () => {
  assert.equal(
    new Sha256().update("abc").hex(),
    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
  );
  assert.equal(
    new Sha256().hex(),
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
  );
  for (const n of [1, 55, 56, 63, 64, 65, 119, 120, 127, 128, 1000, 70_000]) {
    const bytes = Uint8Array.from({ length: n }, (_, i) => (i * 131 + n) & 255);
    const split = new Sha256().update(bytes.subarray(0, n >> 1)).update(bytes.subarray(n >> 1));
    assert.equal(split.hex(), await sha256Hex(bytes), `${n} bytes`);
  }
});
