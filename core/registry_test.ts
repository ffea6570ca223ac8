import assert from "node:assert/strict";
import { createRegistry, editDistance, unknownIdError } from "./registry.ts";

Deno.test("editDistance() matches hand-computed Levenshtein distances", () => {
  assert.equal(editDistance("gptq", "gtpq"), 2);
  assert.equal(editDistance("kitten", "sitting"), 3);
  assert.equal(editDistance("", "abc"), 3);
  assert.equal(editDistance("rtn", "rtn"), 0);
});

Deno.test("createRegistry().get() suggests the closest id and lists all ids", () => {
  const reg = createRegistry("method", [{ id: "rtn" }, { id: "gptq" }, { id: "awq" }]);
  assert.deepEqual(reg.items.map((i) => i.id), ["awq", "gptq", "rtn"]);
  assert.throws(() => reg.get("gtpq"), (e: unknown) =>
    e instanceof TypeError &&
    e.message === 'Cannot find method "gtpq". Did you mean "gptq"? Available: awq, gptq, rtn');
  // Nothing close: no suggestion, still the list.
  assert.throws(
    () => reg.get("smoothquant"),
    (e: unknown) =>
      e instanceof TypeError && !/Did you mean/.test(e.message) &&
      /Available: awq, gptq, rtn/.test(e.message),
  );
});

Deno.test("createRegistry() rejects duplicate ids", () => {
  assert.throws(() => createRegistry("task", [{ id: "a" }, { id: "a" }]), /Duplicate task id "a"/);
});

Deno.test("unknownIdError() is case-insensitive in its suggestion", () => {
  assert.match(
    unknownIdError("model", "Stories260k", ["stories260K"]).message,
    /Did you mean "stories260K"/,
  );
});
