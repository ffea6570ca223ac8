/**
 * Bad input never becomes a row: each case below must exit with code 2 and a message naming
 * what is wrong, before any compute, and leave no results file behind.
 */
import assert from "node:assert/strict";
import { sharedPath } from "../testing/fixtures.ts";
import { parseSafetensors } from "../models/safetensors.ts";
import { serializeSafetensors } from "../models/formats/safetensors_write.ts";
import type { SafetensorsDtype } from "../models/formats/tensor.ts";
import { evaluatePerplexity } from "../tasks/perplexity.ts";
import { loadModel } from "../models/load.ts";
import { refKernels } from "../kernels/ref/mod.ts";

const cli = new URL("../cli.ts", import.meta.url).pathname;
const HF = sharedPath("models", "stories260K-hf");
const haveFixture = await Deno.stat(HF).then(() => true, () => false);

async function run(out: string, ...args: string[]) {
  const o = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", cli, ...args, "--out", out, "--quiet"],
    env: { HF_HUB_OFFLINE: "1", LOWBIT_DATA: sharedPath("data") },
    stdout: "piped",
    stderr: "piped",
  }).output();
  return { code: o.code, err: new TextDecoder().decode(o.stderr) };
}

/** A copy of the stories260K-hf fixture, edited. */
async function editedModel(
  dir: string,
  edit: {
    config?: (c: Record<string, unknown>) => void;
    tensors?: (name: string, values: Float32Array) => void;
  },
): Promise<string> {
  await Deno.mkdir(dir, { recursive: true });
  for await (const f of Deno.readDir(HF)) {
    await Deno.copyFile(`${HF}/${f.name}`, `${dir}/${f.name}`);
  }
  if (edit.config) {
    const c = JSON.parse(await Deno.readTextFile(`${dir}/config.json`));
    edit.config(c);
    await Deno.writeTextFile(`${dir}/config.json`, JSON.stringify(c));
  }
  if (edit.tensors) {
    const bytes = await Deno.readFile(`${HF}/model.safetensors`);
    const entries = [...parseSafetensors(bytes, "model.safetensors")].map(([name, t]) => {
      const values = new Float32Array(t.data.slice().buffer);
      edit.tensors!(name, values);
      return { name, dtype: "F32" as SafetensorsDtype, shape: t.shape, data: values };
    });
    await Deno.writeFile(`${dir}/model.safetensors`, serializeSafetensors(entries));
  }
  return dir;
}

Deno.test({
  name: "bad input exits 2 naming the flag, file or field, before compute and without a row",
  ignore: !haveFixture,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "lowbit-loud-" });
    try {
      const out = `${dir}/out`;
      const cases: [string[], RegExp][] = [
        [["--model", HF, "--methods", "rtn", "--bits", "9"], /--bits 9 is outside 2–8/],
        [
          ["--model", HF, "--methods", "rtn", "--bits", "4", "--context", "4096"],
          /--context 4096 must be an integer in \[2, 512\]/,
        ],
        [
          [
            "--model",
            await editedModel(`${dir}/quantized`, {
              config: (
                c,
              ) => (c.quantization_config = { quant_method: "bitsandbytes", load_in_4bit: true }),
            }),
          ],
          /a quantized checkpoint \(quantization_config.quant_method "bitsandbytes"\)/,
        ],
        [
          [
            "--model",
            await editedModel(`${dir}/nan`, {
              tensors: (n, v) => {
                if (n === "model.layers.2.mlp.down_proj.weight") v[17] = NaN;
              },
            }),
          ],
          /tensor "model.layers.2.mlp.down_proj.weight" holds NaN at element 17/,
        ],
        [
          ["--model", await editedModel(`${dir}/bos`, { config: (c) => (c.bos_token_id = 2) })],
          /bos_token_id 2 but the tokenizer's BOS token is 1/,
        ],
        [
          [
            "--model",
            await editedModel(`${dir}/bias`, {
              config: (c) => (c.model_type = "qwen2"),
            }),
          ],
          /tensor "model.layers.0.self_attn.q_proj.bias" is missing/,
        ],
      ];
      for (const [args, expected] of cases) {
        const r = await run(out, ...args);
        assert.equal(r.code, 2, `${args.join(" ")}: ${r.err}`);
        assert.match(r.err, expected);
        assert.equal(
          await Deno.stat(`${out}/results.jsonl`).then(() => true, () => false),
          false,
          `${args.join(" ")} wrote results`,
        );
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "a model whose outputs are not finite fails its perplexity, naming the window",
  ignore: !haveFixture,
  async fn() {
    const model = await loadModel(HF);
    const l = model.weights.layers[1]!;
    const q = { ...l.q, data: l.q.data.slice() };
    q.data[5] = Infinity; // injected after loading (the loader refuses such checkpoints)
    const broken = {
      ...model,
      weights: {
        ...model.weights,
        layers: model.weights.layers.map((x, i) => (i === 1 ? { ...x, q } : x)),
      },
    };
    await assert.rejects(
      () =>
        evaluatePerplexity(
          broken,
          "Once upon a time there was a little girl. ".repeat(40),
          { kernels: refKernels, dataDir: sharedPath("data"), limit: 1, context: 64 },
          { id: "text", path: "text", bytes: 0, sha256: "0" },
        ),
      /window 0 scores NaN nats .*not finite/,
    );
  },
});
