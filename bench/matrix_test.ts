import assert from "node:assert/strict";
import { expandMatrix, parseGroups, parseIntList, parsePreset } from "./matrix.ts";
import { quantLabel } from "../methods/types.ts";

Deno.test("the w2-w8 preset: FP32, RTN W2–W8, GPTQ W2,W3,W4,W8 and FlexRound W2–W4, per-channel and g32; AffineQuant W2–W4 per-channel", async () => {
  const file = new URL("./presets/w2-w8.json", import.meta.url);
  const spec = parsePreset(JSON.parse(await Deno.readTextFile(file)), file.pathname);
  const cells = expandMatrix(spec);
  assert.deepEqual(cells.map((c) => `${c.method} ${quantLabel(c.quant)}`), [
    "fp FP32",
    "rtn W2A16",
    "rtn W2A16g32",
    "rtn W3A16",
    "rtn W3A16g32",
    "rtn W4A16",
    "rtn W4A16g32",
    "rtn W5A16",
    "rtn W5A16g32",
    "rtn W6A16",
    "rtn W6A16g32",
    "rtn W8A16",
    "rtn W8A16g32",
    "gptq W2A16",
    "gptq W2A16g32",
    "gptq W3A16",
    "gptq W3A16g32",
    "gptq W4A16",
    "gptq W4A16g32",
    "gptq W8A16",
    "gptq W8A16g32",
    "flexround:epochs=1 W2A16",
    "flexround:epochs=1 W2A16g32",
    "flexround:epochs=1 W3A16",
    "flexround:epochs=1 W3A16g32",
    "flexround:epochs=1 W4A16",
    "flexround:epochs=1 W4A16g32",
    "affinequant:epochs=2 W2A16",
    "affinequant:epochs=2 W3A16",
    "affinequant:epochs=2 W4A16",
  ]);
  assert.ok(cells.every((c) => c.model === "stories260K" && c.task === "tinystories:eval"));
  assert.deepEqual(spec.calibration, { source: "tinystories", samples: 128, seqLen: 256, seed: 0 });
});

Deno.test("the awq preset: RTN, AWQ (both scale rules), GPTQ and AWQ + GPTQ at W3/W4, g128, g32 and per channel; each method's own calibration", async () => {
  const file = new URL("./presets/awq.json", import.meta.url);
  const spec = parsePreset(JSON.parse(await Deno.readTextFile(file)), file.pathname);
  const cells = expandMatrix(spec);
  const awq = cells.filter((c) => c.method === "awq").map((c) => quantLabel(c.quant));
  assert.deepEqual(awq, ["W3A16g128", "W3A16g32", "W3A16", "W4A16g128", "W4A16g32", "W4A16"]);
  assert.equal(cells.length, 1 + 5 * 6);
  assert.equal(spec.calibration, undefined, "no matrix-level calibration: each method's own");
  const { getMethod } = await import("../methods/mod.ts");
  for (const c of cells) getMethod(c.method.split(":")[0]!);
});

Deno.test("parsePreset() reads a calibration recipe and rejects unknown ones", () => {
  const base = {
    id: "x",
    models: ["m"],
    methods: [],
    bits: [4],
    groups: ["channel"],
    tasks: ["t"],
  };
  assert.deepEqual(
    parsePreset({ ...base, calibration: { recipe: "pileval-awq", seed: 42 } }, "p.json")
      .calibration,
    { recipe: "pileval-awq", seed: 42 },
  );
  assert.throws(
    () => parsePreset({ ...base, calibration: { recipe: "pile" } }, "p.json"),
    /p\.json: calibration\.recipe is not valid .*recipe: windows \| pileval-awq/,
  );
});

Deno.test("parseIntList() reads ranges and lists; rejects garbage with SyntaxError", () => {
  assert.deepEqual(parseIntList("2-4,8", "bits"), [2, 3, 4, 8]);
  assert.deepEqual(parseIntList("8,3,3", "bits"), [3, 8]);
  assert.throws(() => parseIntList("4-2", "bits"), SyntaxError);
  assert.throws(() => parseIntList("four", "bits"), /Cannot parse bits "four"/);
});

Deno.test("parseGroups() accepts channel, tensor and column counts", () => {
  assert.deepEqual(parseGroups("channel,32,tensor"), ["channel", 32, "tensor"]);
  assert.throws(() => parseGroups("g32"), /Cannot parse group "g32"/);
  assert.throws(() => parseGroups("0"), SyntaxError);
});

Deno.test("parsePreset() names the file and field that is wrong", () => {
  assert.throws(
    () => parsePreset({ id: "x", models: "stories260K", bits: [4], groups: [] }, "p.json"),
    /p\.json: field "models" must be an array of strings/,
  );
  assert.throws(
    () =>
      parsePreset(
        { id: "x", models: [], methods: [], bits: ["4"], groups: [], tasks: [] },
        "p.json",
      ),
    /p\.json: field "bits" must be an array of integers/,
  );
});

Deno.test("parsePreset() reads method entries with their own bits and checks calibration", () => {
  const base = { id: "x", models: ["m"], bits: [4], groups: ["channel"], tasks: ["t"] };
  const spec = parsePreset(
    { ...base, methods: ["rtn", { method: "gptq:actOrder=true", bits: [3], groups: [32] }] },
    "p.json",
  );
  assert.deepEqual(expandMatrix(spec).map((c) => `${c.method} ${quantLabel(c.quant)}`), [
    "fp FP32",
    "rtn W4A16",
    "gptq:actOrder=true W3A16g32",
  ]);
  assert.throws(
    () => parsePreset({ ...base, methods: [{ bits: [3] }] }, "p.json"),
    /p\.json: methods\[0\] must be a method spec string/,
  );
  assert.throws(
    () => parsePreset({ ...base, methods: [], calibration: { samples: "many" } }, "p.json"),
    /p\.json: calibration\.samples is not valid/,
  );
});

Deno.test("the tasks preset names only registered tasks: FP32, RTN W3 and W4 on each", async () => {
  const { getTask } = await import("../tasks/mod.ts");
  const file = new URL("./presets/tasks.json", import.meta.url);
  const spec = parsePreset(JSON.parse(await Deno.readTextFile(file)), file.pathname);
  const cells = expandMatrix(spec);
  assert.equal(cells.length, 3 * spec.tasks.length);
  for (const t of spec.tasks) assert.equal(getTask(t).id, t);
  assert.ok(spec.tasks.includes("tinystories_cloze"));
});

Deno.test("router: a preset's W8A8 router reaches every quantized cell (not FP) and its label; bad values name the field", () => {
  const base = {
    id: "r",
    models: ["stories260K-moe"],
    bits: [4],
    groups: ["channel"],
    tasks: ["tinystories:eval"],
  };
  const spec = parsePreset({
    ...base,
    methods: ["rtn", { method: "gptq", router: "fp" }],
    configs: ["W4A4"],
    router: "W8A8",
  }, "p.json");
  const cells = expandMatrix(spec);
  const fp = cells.find((c) => c.method === "fp")!;
  assert.equal(fp.quant.router, undefined);
  const rtn = cells.find((c) => c.method === "rtn")!;
  assert.deepEqual(rtn.quant.router, { wBits: 8, aBits: 8 });
  assert.match(quantLabel(rtn.quant), /^W4A4.*-rW8A8$/);
  // A method entry's own "fp" overrides the preset's router.
  assert.equal(cells.find((c) => c.method === "gptq")!.quant.router, undefined);
  assert.throws(
    () => parsePreset({ ...base, methods: ["rtn"], router: "W12A8" }, "p.json"),
    /router weight bits must be one of/,
  );
  assert.throws(
    () => parsePreset({ ...base, methods: [{ method: "rtn", router: 8 }] }, "p.json"),
    /p\.json: methods\[0\]\.router must be a string/,
  );
});
