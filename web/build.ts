/**
 * Builds the in-browser benchmark page into a directory any static host can serve: `app.js`
 * (the library bundled for the browser by `deno bundle`), `index.html`, the WASM binaries and WGSL
 * kernels next to it (both are loaded relative to the bundle), and the fixtures: a llama2.c model
 * and an evaluation text, listed in `fixtures.json`.
 *
 * Usage: `deno task build:web [--out DIR] [--model DIR] [--data DIR]` (defaults: `site-web`, the
 * stories260K files of `../shared/hf-mirror`, `../shared/data`). Serve the directory over HTTP
 * (ES modules and `fetch` do not work from `file:`), e.g. `python3 -m http.server -d site-web`.
 *
 * @module
 */

import { parseArgs } from "node:util";

const root = new URL("..", import.meta.url);
const here = (p: string) => new URL(p, root).pathname;

/** Options of {@linkcode buildWeb}. */
export interface BuildWebOptions {
  /** Output directory. */
  readonly out: string;
  /** Directory with `stories260K.bin` and `tok512.bin`. */
  readonly modelDir: string;
  /** Data root holding `text/tinystories/tinystories_val_head.txt`. */
  readonly dataDir: string;
}

/** Default fixture locations (the shared mirror and data root next to the repository). */
export const DEFAULT_FIXTURES = {
  modelDir: here("../shared/hf-mirror/karpathy/tinyllamas/resolve/main/stories260K"),
  dataDir: here("../shared/data"),
};

/** Writes the page into `options.out`; throws naming a missing fixture or a failed bundle. */
export async function buildWeb(options: BuildWebOptions): Promise<void> {
  const { out } = options;
  await Deno.mkdir(`${out}/fixtures`, { recursive: true });
  const bundle = await new Deno.Command(Deno.execPath(), {
    args: ["bundle", "--quiet", "--platform", "browser", "-o", `${out}/app.js`, here("web/app.ts")],
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!bundle.success) {
    throw new Error(`Cannot bundle web/app.ts: ${new TextDecoder().decode(bundle.stderr)}`);
  }
  await Deno.copyFile(here("web/index.html"), `${out}/index.html`);
  for (const f of ["kernels.wasm", "kernels_fma.wasm", "kernels_mt.wasm"]) {
    await Deno.copyFile(here(`kernels/wasm/${f}`), `${out}/${f}`);
  }
  for (const e of Deno.readDirSync(here("kernels/webgpu"))) {
    if (e.name.endsWith(".wgsl")) {
      await Deno.copyFile(here(`kernels/webgpu/${e.name}`), `${out}/${e.name}`);
    }
  }
  const fixtures: [string, string][] = [
    [`${options.modelDir}/stories260K.bin`, "fixtures/stories260K.bin"],
    [`${options.modelDir}/tok512.bin`, "fixtures/tok512.bin"],
    [
      `${options.dataDir}/text/tinystories/tinystories_val_head.txt`,
      "fixtures/tinystories_val_head.txt",
    ],
  ];
  for (const [from, to] of fixtures) {
    try {
      await Deno.copyFile(from, `${out}/${to}`);
    } catch (e) {
      throw new Error(
        `Cannot copy fixture ${from}: ${e instanceof Error ? e.message : String(e)}`,
      );
    }
  }
  const manifest = {
    models: [{
      id: "stories260K",
      checkpoint: "fixtures/stories260K.bin",
      tokenizer: "fixtures/tok512.bin",
    }],
    text: { id: "tinystories", path: "fixtures/tinystories_val_head.txt" },
  };
  await Deno.writeTextFile(`${out}/fixtures.json`, JSON.stringify(manifest, null, 2) + "\n");
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      out: { type: "string", default: "site-web" },
      model: { type: "string", default: DEFAULT_FIXTURES.modelDir },
      data: { type: "string", default: DEFAULT_FIXTURES.dataDir },
    },
  });
  await buildWeb({ out: values.out, modelDir: values.model, dataDir: values.data });
  console.log(`page: ${values.out}/index.html (serve the directory over HTTP)`);
}
