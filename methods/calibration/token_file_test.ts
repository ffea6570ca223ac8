import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { FormatError } from "../../core/errors.ts";
import { runMatrix } from "../../bench/runner.ts";
import type { MatrixSpec } from "../../bench/matrix.ts";
import { refKernels } from "../../kernels/ref/mod.ts";
import { bundledDataDir, needs } from "../../testing/fixtures.ts";
import {
  type CalibrationTokens,
  parseJsonTokens,
  parseNpyTokens,
  readCalibrationTokens,
  tokenCalibrationSet,
} from "./token_file.ts";

const stories = await needs("hf-mirror");

/** An NPY v1.0 file as `numpy.save` writes it: magic, header padded to 64 bytes, data. */
function npy(descr: string, shape: number[], data: Uint8Array, fortran = false): Uint8Array {
  let header = `{'descr': '${descr}', 'fortran_order': ${fortran ? "True" : "False"}, 'shape': (${
    shape.join(", ")
  }${shape.length === 1 ? "," : ""}), }`;
  header += " ".repeat(63 - ((10 + header.length) % 64)) + "\n";
  const out = new Uint8Array(10 + header.length + data.length);
  out.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0]);
  new DataView(out.buffer).setUint16(8, header.length, true);
  out.set(new TextEncoder().encode(header), 10);
  out.set(data, 10 + header.length);
  return out;
}

const IDS = [[1, 5, 9, 300], [1, 0, 65535, 7]];
const le = (Array: Int32ArrayConstructor | Uint16ArrayConstructor | BigInt64ArrayConstructor) =>
  Array === BigInt64Array
    ? new Uint8Array(BigInt64Array.from(IDS.flat().map(BigInt)).buffer)
    : new Uint8Array((Array as Int32ArrayConstructor).from(IDS.flat()).buffer);

Deno.test("token files: JSON and NPY (int32, int64, uint16) give the same windows", () => {
  const json = parseJsonTokens(new TextEncoder().encode(JSON.stringify(IDS)), "t.json");
  assert.deepEqual(json.map((w) => [...w]), IDS);
  for (
    const [descr, type] of [["<i4", Int32Array], ["<i8", BigInt64Array], [
      "<u2",
      Uint16Array,
    ]] as const
  ) {
    const got = parseNpyTokens(npy(descr, [2, 4], le(type as Int32ArrayConstructor)), "t.npy");
    assert.deepEqual(got, json, descr);
  }
});

Deno.test("token files: every malformed file is a FormatError naming it and what was expected", () => {
  const bad: [Uint8Array, RegExp][] = [
    [new TextEncoder().encode("[[1, 2], [3]]"), /window 1 has 1 tokens, window 0 has 2/],
    [new TextEncoder().encode("[[1, -2]]"), /token \[0\]\[1\] is -2, expected a non-negative/],
    [new TextEncoder().encode("[[1, 2.5]]"), /token \[0\]\[1\] is 2.5/],
    [new TextEncoder().encode('[[1, "a"]]'), /token \[0\]\[1\] is NaN/],
    [new TextEncoder().encode("[]"), /non-empty JSON array/],
    [new TextEncoder().encode("[[1]]"), /shape \[1, 1\], expected \[samples ≥ 1, seqLen ≥ 2\]/],
    [new TextEncoder().encode("not json"), /neither an NPY file nor JSON/],
    [npy("<f4", [2, 4], le(Int32Array)), /dtype <f4 is not a token-id type/],
    [npy("<i4", [2, 4], le(Int32Array), true), /Fortran order/],
    [npy("<i4", [8], le(Int32Array)), /not 2-D/],
    [npy("<i4", [2, 4], le(Int32Array).subarray(4)), /holds 28 bytes, expected 32/],
  ];
  for (const [bytes, re] of bad) {
    assert.throws(
      () => bytes[0] === 0x93 ? parseNpyTokens(bytes, "x.npy") : parseJsonTokens(bytes, "x.json"),
      (e: Error) =>
        e instanceof FormatError && /^x\.(npy|json): /.test(e.message) && re.test(e.message),
      re.source,
    );
  }
});

Deno.test("a token calibration set checks ids against the model and hashes them as int32", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/calib.json`, JSON.stringify(IDS));
    const tokens = await readCalibrationTokens(`${dir}/calib.json`);
    assert.equal(tokens.name, "calib.json", "no directory in what rows record");
    const set = await tokenCalibrationSet(tokens, 65536, 16);
    assert.equal(set.spec.samples, 2);
    assert.equal(set.spec.seqLen, 4);
    assert.deepEqual(set.windows.map((w) => [...w]), IDS, "ids as given, no BOS added");
    const want = createHash("sha256").update(new Uint8Array(Int32Array.from(IDS.flat()).buffer))
      .digest("hex");
    assert.equal(set.tokensSha256, want);
    const file = createHash("sha256").update(JSON.stringify(IDS)).digest("hex");
    assert.equal(set.dataset.sha256, file);
    await assert.rejects(
      () => tokenCalibrationSet(tokens, 256, 16),
      /calib\.json: calibration token \[0\]\[3\] is 300, outside the model's vocabulary of 256/,
    );
    await assert.rejects(
      () => tokenCalibrationSet(tokens, 65536, 3),
      /exceed the model's context of 3/,
    );
    await assert.rejects(
      () => readCalibrationTokens(`${dir}/missing.npy`),
      /missing\.npy: cannot read/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

stories.test("--calib-tokens replays a drawn calibration set: GPTQ gives the same row numbers", async () => {
  const dir = await Deno.makeTempDir({ prefix: "lowbit-calib-tokens-" });
  try {
    const spec: MatrixSpec = {
      id: "replay",
      models: ["stories260K"],
      methods: ["gptq"],
      bits: [3],
      groups: ["channel"],
      tasks: ["tinystories:eval"],
      symmetric: false,
      limit: 2,
      calibration: { samples: 8, seqLen: 64 },
    };
    const common = {
      dataDir: bundledDataDir(),
      kernels: refKernels,
      threads: 1,
      lock: false as const,
    };
    const drawn = await runMatrix(spec, { ...common, outDir: `${dir}/drawn` });
    const gptq = drawn.find((r) => r.method.id === "gptq")!;
    assert.equal(gptq.status, "ok");
    // The windows the drawn run used, written as NPY int64 (as torch's input_ids.numpy() gives).
    const { drawCalibrationSet } = await import("./set.ts");
    const { stories260K } = await import("../../testing/stories.ts");
    const model = await stories260K();
    const set = await drawCalibrationSet(
      { source: "tinystories", samples: 8, seqLen: 64, seed: 0 },
      model.tokenizer,
      model.config.maxSeqLen,
      bundledDataDir(),
    );
    assert.equal(set.tokensSha256, gptq.calibration?.tokensSha256, "the set the drawn run used");
    const ids = BigInt64Array.from(set.windows.flatMap((w) => [...w]).map(BigInt));
    await Deno.writeFile(`${dir}/calib.npy`, npy("<i8", [8, 64], new Uint8Array(ids.buffer)));
    const calibrationTokens: CalibrationTokens = await readCalibrationTokens(`${dir}/calib.npy`);
    const replayed = await runMatrix(spec, {
      ...common,
      outDir: `${dir}/replay`,
      calibrationTokens,
    });
    const again = replayed.find((r) => r.method.id === "gptq")!;
    assert.equal(again.status, "ok");
    assert.deepEqual(again.metrics, gptq.metrics, "the same windows give the same quantized model");
    assert.equal(again.calibration?.tokensSha256, set.tokensSha256);
    assert.equal(again.calibration?.source, "tokens:calib.npy");
    assert.notEqual(again.cellId, gptq.cellId, "a replayed set is another cell");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
