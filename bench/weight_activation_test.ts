import assert from "node:assert/strict";
import { expandMatrix, parseAct, parseConfig, parsePreset } from "./matrix.ts";
import { parseMethodSpec, sweepParam } from "./method_spec.ts";
import { runMatrix } from "./runner.ts";
import { quantLabel } from "../methods/types.ts";
import { sandbox } from "../testing/sandbox.ts";
import { bundledDataDir, needs } from "../testing/fixtures.ts";

const stories = await needs("hf-mirror");

const preset = async (id: string) => {
  const file = new URL(`./presets/${id}.json`, import.meta.url);
  return parsePreset(JSON.parse(await Deno.readTextFile(file)), file.pathname);
};

Deno.test("the wa preset: exactly W8A8, W6A6, W4A8, W4A4 for every method but AffineQuant and FlexRound (W4A8, W4A4), per-token symmetric activations", async () => {
  const cells = expandMatrix(await preset("wa"));
  assert.equal(cells.length, 1 + 5 * 4 + 2 + 2);
  for (const id of ["affinequant", "flexround"]) {
    assert.deepEqual(
      cells.filter((c) => c.method.startsWith(id)).map((c) => quantLabel(c.quant)),
      ["W4A8s", "W4A4s"],
    );
  }
  const labels = cells.filter((c) => c.method === "smoothquant+gptq").map((c) =>
    quantLabel(c.quant)
  );
  assert.deepEqual(labels, ["W8A8s", "W6A6s", "W4A8s", "W4A4s"]);
  for (const c of cells.slice(1)) {
    assert.deepEqual(c.quant.act, {
      granularity: "token",
      static: false,
      symmetric: true,
      clip: 1,
      bmm: false,
    });
  }
  // The α sweep is one preset: 9 values for each of the two methods, all at W4A8.
  const sweep = expandMatrix(await preset("wa-alpha")).slice(1);
  assert.equal(sweep.length, 18);
  assert.ok(sweep.every((c) => quantLabel(c.quant) === "W4A8s"));
});

Deno.test("the quarot preset: RTN, GPTQ, QuaRot (RTN and GPTQ weights) at W4A16/W4A8/W4A4, clip 0.9 and the code's 1.0", async () => {
  const cells = expandMatrix(await preset("quarot"));
  const labels = (m: string) => cells.filter((c) => c.method === m).map((c) => quantLabel(c.quant));
  assert.deepEqual(labels("rtn"), ["W4A16s", "W4A8s", "W4A4s"]);
  for (const m of ["quarot", "quarot+gptq"]) {
    assert.deepEqual(labels(m), [
      "W4A16s",
      "W4A8s-clip0.9",
      "W4A4s-clip0.9",
      "W4A8s",
      "W4A4s",
    ]);
  }
  assert.ok(cells.slice(1).every((c) => c.quant.granularity === "channel" && c.quant.symmetric));
  assert.equal(cells.length, 1 + 3 * 2 + 5 * 2);
});

Deno.test("SmoothQuant levels: O1 per-token, O2 per-tensor dynamic, O3 per-tensor static, all with per-tensor weights", async () => {
  const cells = expandMatrix(await preset("wa-levels")).filter((c) => c.method === "smoothquant");
  assert.deepEqual(cells.map((c) => quantLabel(c.quant)), [
    "W8A8ts",
    "W8A8ts-tensor",
    "W8A8ts-static",
  ]);
  assert.ok(cells.every((c) => c.quant.granularity === "tensor"));
  assert.equal(cells[2]!.quant.act!.static, true);
});

Deno.test("configurations, activation settings and chains parse, or fail naming what is wrong", () => {
  assert.deepEqual(parseConfig("W4A16g32"), { wBits: 4, aBits: 16, group: 32 });
  assert.throws(() => parseConfig("4/8"), /Cannot parse configuration "4\/8"/);
  assert.deepEqual(parseAct({ granularity: "tensor", clip: 0.9 }, "x"), {
    granularity: "tensor",
    clip: 0.9,
  });
  assert.throws(() => parseAct({ clip: 1.5 }, 'p.json: field "act"'), /p\.json: field "act"\.clip/);
  const chain = parseMethodSpec("smoothquant:alpha=0.8+gptq:actOrder=true");
  assert.equal(chain.id, "smoothquant+gptq");
  assert.deepEqual(chain.steps, ["smoothquant", "gptq"]);
  assert.deepEqual(parseMethodSpec("gptq:actOrder=true").steps, ["gptq"]);
  assert.deepEqual(chain.params, { "smoothquant.alpha": 0.8, "gptq.actOrder": true });
  assert.throws(() => parseMethodSpec("a+b+c"), /a transform and a weight quantizer/);
  const has = (id: string) => id === "smoothquant";
  assert.deepEqual(sweepParam("smoothquant+gptq", "alpha", [0.1, 0.9], has), [
    "smoothquant:alpha=0.1+gptq",
    "smoothquant:alpha=0.9+gptq",
  ]);
  assert.deepEqual(sweepParam("rtn", "alpha", [0.1], has), ["rtn"]);
  assert.deepEqual(sweepParam("smoothquant:alpha=0.3", "alpha", [0.1], has), [
    "smoothquant:alpha=0.3",
  ]);
});

stories.test("runMatrix(): weight-activation rows record the activation quantizer and its zero share; activation widths a method does not train through and impossible bits are unsupported", async () => {
  await using sb = await sandbox("lowbit-wa-");
  const rows = await runMatrix({
    id: "wa-test",
    models: ["stories260K"],
    methods: ["rtn", { method: "flexround", configs: ["W8A3"] }, "smoothquant:alpha=0.6+gptq"],
    bits: [8],
    groups: ["channel"],
    configs: ["W8A8", "W8A17", "W8A1"],
    tasks: ["tinystories:eval"],
    symmetric: true,
    limit: 1,
    calibration: { source: "tinystories", samples: 4, seqLen: 64, seed: 0 },
  }, { outDir: `${sb.dir}/out`, dataDir: bundledDataDir(), env: sb.env });
  const row = (method: string, label: string) =>
    rows.find((r) => r.method.spec === method && r.quant.label === label)!;
  const rtn = row("rtn", "W8A8s");
  assert.equal(rtn.status, "ok");
  assert.equal(rtn.quant.aBits, 8);
  assert.equal(rtn.quant.act!.granularity, "token");
  const zeros = rtn.metrics.find((m) => m.metric === "act_zero_frac")!;
  assert.ok(zeros.value > 0 && zeros.value < 1 && zeros.n === 4);
  assert.deepEqual(Object.keys(rtn.activationZeros!.bySite).sort(), ["down", "gateup", "o", "qkv"]);
  assert.ok(rtn.calibration, "weight-activation cells record their calibration windows");
  // FlexRound trains through 4–8-bit activation quantizers only.
  assert.equal(row("flexround", "W8A3s").status, "unsupported");
  assert.match(
    row("flexround", "W8A3s").error!,
    /flexround supports .*A4\/5\/6\/7\/8\/16, not W8A3s/,
  );
  for (const bad of ["W8A17s", "W8A1s"]) assert.equal(row("rtn", bad).status, "unsupported");
  const chain = row("smoothquant:alpha=0.6+gptq", "W8A8s");
  assert.equal(chain.status, "ok", chain.error ?? "");
  assert.equal(chain.method.id, "smoothquant+gptq");
  assert.equal(chain.method.taxonomy, "compensation");
  assert.equal(chain.method.params["smoothquant.alpha"], 0.6);
  assert.equal(chain.method.params["gptq.actOrder"], false);
  assert.ok(chain.notes.some((n) => n.includes("smoothquant α=0.6")));
});
