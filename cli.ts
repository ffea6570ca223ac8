/**
 * The `deno task bench` command line: runs a quantization matrix and prints a summary table.
 *
 * Progress goes to stderr, the table to stdout, rows to `--out` (JSONL + CSV).
 *
 * @module
 */

import { parseArgs } from "node:util";
import { bundledDataDir } from "./core/paths.ts";
import {
  type GroupSetting,
  type MatrixSpec,
  type MethodEntry,
  parseAct,
  parseGroups,
  parseIntList,
  parsePreset,
} from "./bench/matrix.ts";
import { sweepParam } from "./bench/method_spec.ts";
import { planMatrix, type RunEvent, runMatrix } from "./bench/runner.ts";
import { LOCK_FILE, ResultsLockedError } from "./results/lock.ts";
import { type SelectedKernels, selectKernels } from "./runners/backend.ts";
import { formatSummary } from "./results/summary.ts";
import { getMethod, METHODS } from "./methods/mod.ts";
import { MODELS } from "./models/registry.ts";
import { HF_TASK_IDS, TASK_IDS } from "./tasks/mod.ts";
import { quantLabel } from "./methods/types.ts";
import { unknownIdError } from "./core/registry.ts";
import {
  CALIBRATION_RECIPES,
  type CalibrationRecipe,
  type CalibrationSpec,
} from "./methods/calibration/set.ts";
import { type CalibrationTokens, readCalibrationTokens } from "./methods/calibration/token_file.ts";

const HELP = `lowbit bench: run a post-training quantization matrix

Usage: deno task bench --matrix w2-w8 [flags]

  --matrix ID|FILE   preset id (bench/presets/ID.json) or a preset JSON file   [w2-w8]
  --model IDS        models: registry id, hf:owner/repo[@rev], a directory in transformers
                     layout, or a llama2.c checkpoint path (.bin) (comma list)
  --tokenizer PATH   tok*.bin of llama2.c checkpoints given by path [the one beside each]
  --methods SPECS    method specs (comma list) from: ${METHODS.items.map((m) => m.id).join(", ")};
                     parameters as id:key=value[:key=value], e.g. gptq:actOrder=true
  --bits LIST        weight bits, e.g. 2-8 or 3,4,8
  --abits LIST       activation bits, e.g. 4,8 (16 = unquantized)                [16]
  --configs LIST     exact configurations instead of bits × abits, e.g. W8A8,W4A8,W4A16g32
  --group LIST       channel, tensor or a column count (positive), e.g. channel,32
  --symmetric        symmetric absmax instead of asymmetric min-max
  --act OPTS         activation quantizer (A < 16), comma list of: token (default), tensor,
                     static (calibrated per-tensor range), asym, clip=R, bmm
  --router CFG       MoE routers quantized after the method: W8A8 (EAQuant's setting), or fp
                     (their weights in full precision; EAQuant always quantizes its own)   [fp]
  --alpha LIST       sweep α: one spec per value for each method with an α parameter,
                     e.g. 0.1,0.3,0.5,0.7,0.9
  --tasks IDS        tasks (comma list): ${TASK_IDS.join(", ")}, file:PATH;
                     TASK=SOURCE reads ${HF_TASK_IDS.join(", ")} from a
                     Hugging Face dataset: SOURCE is hf (the lm-eval dataset's Hub parquet),
                     hf://datasets/OWNER/NAME[@REV]/PATH, or a local .parquet/.jsonl/.json file
                     with the dataset's columns, e.g. arc_easy=hf
  --skip-malformed   skip malformed dataset rows and count them in the row (default: fail,
                     naming the file and line)
  --limit N          keep the first N windows/documents of each task (N ≥ 1)
  --context N        tokens per perplexity window, ≥ 2 (default: the model's context, at most
                     2048)
  --calib SOURCE     calibration corpus: tinystories (its calib half), c4, wikitext2  [tinystories]
  --calib-samples N  calibration windows (pileval-awq: documents)                [128]
  --calib-seqlen N   tokens per calibration window, BOS included                 [256]
  --calib-recipe R   how calibration sets are drawn, for every method: windows (seeded BOS
                     windows) or pileval-awq (AWQ's: documents concatenated and cut into
                     blocks); default: each method's own (AWQ: pileval-awq, 512 tokens, seed 42)
  --seed N           calibration sampling seed                                   [0]
  --calib-tokens FILE  calibration windows as token ids, used as given (no BOS added): JSON
                     [[id, …], …] or NPY [samples, seqLen] (int32/int64/uint16/uint32/uint64),
                     to replay another implementation's exact set; replaces the flags above
  --data DIR         dataset root (env LOWBIT_DATA); default: data/ in the repository, which
                     holds TinyStories only (the default matrix's data)
  --out DIR          results directory (default results/runs/<matrix id>); one run at a time
                     writes it (DIR/${LOCK_FILE}): a second run exits 2 naming the first one
  --wait             wait until the run writing --out DIR has finished, then resume from its
                     cells (default: exit 2)
  --shard I/N        run part I of N (0-based; parts balanced by expected cost), for CI fan-out
  --threads N        worker threads for evaluation, ≥ 1 (default: the number of cores)
  --backend NAME     kernels: ts (reference), wasm (SIMD128), wasm-fma (relaxed SIMD),
                     wasm-mt (SIMD128 on kernel threads, the numbers of wasm),
                     webgpu (perplexity windows on the GPU, the rest on wasm; a
                     software adapter is used, and recorded as fallback),
                     auto (webgpu on a hardware adapter, else wasm, else ts)     [auto]
  --kernel-threads N kernel threads (≥ 1) of --backend wasm-mt in the main thread (single-stream
                     work: calibration, GPTQ); evaluation workers stay single-threaded
                     (default: the number of cores)
  --packed           evaluate float32 RTN/GPTQ weights through the fused dequant kernel on their
                     packed codes instead of float32 panels (--backend wasm, wasm-fma or
                     wasm-mt; backend id +packed, so rows and cell ids tell the paths apart;
                     activations are rounded to int16 per segment, bf16/f16 checkpoints'
                     weights stay on float32; evaluation then runs in the main thread)
  --force            recompute cells that already have a row
  --dry-run          list the cells and exit
  --quiet            no progress on stderr
  -h, --help         this text

Models: ${MODELS.items.map((m) => m.id).join(", ")} (downloads go through HF_ENDPOINT into the
Hugging Face cache; HF_HUB_OFFLINE=1 forbids the network).

Datasets: TinyStories ships in data/ of the repository (the default root). The others (wikitext2,
c4, the zero-shot and gsm8k files) are read from --data DIR or LOWBIT_DATA=DIR, a directory laid
out as data/ (text/..., tasks/...), or, for ${HF_TASK_IDS.join(", ")},
from the Hub with --tasks TASK=hf or TASK=hf://datasets/OWNER/NAME/PATH.`;

/** `--act tensor,static,asym,clip=0.9,bmm` → activation settings. */
function parseActFlag(text: string): ReturnType<typeof parseAct> {
  const o: Record<string, unknown> = {};
  for (const part of text.split(",").map((x) => x.trim()).filter(Boolean)) {
    if (part === "token" || part === "tensor") o.granularity = part;
    else if (part === "static") {
      o.static = true;
      o.granularity = "tensor";
    } else if (part === "asym") o.symmetric = false;
    else if (part === "bmm") o.bmm = true;
    else if (part.startsWith("clip=")) o.clip = Number(part.slice(5));
    else {
      throw new SyntaxError(
        `--act: unknown option "${part}" (token, tensor, static, asym, clip=R, bmm)`,
      );
    }
  }
  return parseAct(o, "--act");
}

/** `--calib-recipe`: one of the calibration recipes. */
function calibrationRecipe(text: string): CalibrationRecipe {
  if (!CALIBRATION_RECIPES.includes(text as CalibrationRecipe)) {
    throw new SyntaxError(
      `--calib-recipe must be one of ${CALIBRATION_RECIPES.join(", ")}, got "${text}"`,
    );
  }
  return text as CalibrationRecipe;
}

function list(s: string | undefined): string[] | undefined {
  return s === undefined ? undefined : s.split(",").map((x) => x.trim()).filter(Boolean);
}

async function loadPreset(name: string): Promise<MatrixSpec> {
  const isFile = name.endsWith(".json");
  const url = isFile
    ? new URL(name, `file://${Deno.cwd()}/`)
    : new URL(`./bench/presets/${name}.json`, import.meta.url);
  let text: string;
  try {
    text = await Deno.readTextFile(url);
  } catch {
    const presets: string[] = [];
    for await (const e of Deno.readDir(new URL("./bench/presets/", import.meta.url))) {
      if (e.name.endsWith(".json")) presets.push(e.name.slice(0, -5));
    }
    throw unknownIdError("matrix preset", name, presets.sort());
  }
  try {
    return parsePreset(JSON.parse(text), url.pathname);
  } catch (e) {
    if (e instanceof SyntaxError && !e.message.startsWith(url.pathname)) {
      throw new SyntaxError(`${url.pathname}: ${e.message}`);
    }
    throw e;
  }
}

function progressRenderer(quiet: boolean): (e: RunEvent) => void {
  const tty = Deno.stderr.isTerminal();
  const enc = new TextEncoder();
  const write = (s: string) => Deno.stderr.writeSync(enc.encode(s));
  let total = 0;
  let started = 0;
  let lastDraw = 0;
  let phase = "";
  const t0 = performance.now();
  let doneCells = 0;
  let workDone = 0;
  return (e) => {
    if (e.type === "notice") {
      write(`${tty ? "\r\x1b[K" : ""}note: ${e.message}\n`);
      return;
    }
    if (quiet) return;
    if (e.type === "plan") {
      total = e.cells;
      write(`${e.cells} cells, ${e.todo} to run, ${e.cells - e.todo} already done\n`);
    } else if (e.type === "download") {
      const ev = e.event;
      if (ev.status === "progress" && tty) {
        const pct = ev.total ? ` ${((100 * ev.loaded) / ev.total).toFixed(0)}%` : "";
        write(
          `\r\x1b[Kdownloading ${ev.repo}/${ev.file} ${(ev.loaded / 2 ** 20).toFixed(1)} MiB${pct}`,
        );
      } else if (ev.status === "initiate" || ev.status === "done") {
        const what = ev.status === "done" ? "downloaded" : "downloading";
        write(`${tty ? "\r\x1b[K" : ""}${what} ${ev.repo}/${ev.file}\n`);
      }
    } else if (e.type === "cell-start") {
      started = performance.now();
      phase = "";
    } else if (e.type === "cell-progress" && !tty) {
      // A log (CI, a file): a line when a phase starts and at most one a minute after, so an
      // hour-long GPTQ cell shows it is moving.
      const now = performance.now();
      if (e.phase === phase && now - lastDraw < 60_000) return;
      if (e.phase !== phase) started = now;
      phase = e.phase;
      lastDraw = now;
      const s = ((now - started) / 1000).toFixed(0);
      write(`[${e.index + 1}/${total}] ${e.phase} ${e.done}/${e.total} (${s} s)\n`);
    } else if (e.type === "cell-progress") {
      if (e.phase !== phase) {
        phase = e.phase;
        started = performance.now();
      }
      const now = performance.now();
      if (now - lastDraw < 100 && e.done < e.total) return;
      lastDraw = now;
      const frac = e.done / e.total;
      const eta = frac > 0 ? ((now - started) / frac - (now - started)) / 1000 : NaN;
      const bar = "#".repeat(Math.round(frac * 20)).padEnd(20, ".");
      write(
        `\r\x1b[K[${e.index + 1}/${total}] ${e.phase} [${bar}] ${e.done}/${e.total} ETA ${
          eta.toFixed(0)
        }s`,
      );
    } else if (e.type === "cell-done") {
      doneCells++;
      if (!e.skipped) workDone++;
      const r = e.row;
      const ppl = r.metrics.find((m) => m.metric === "ppl");
      const what = r.status === "ok" ? (ppl ? `ppl=${ppl.value.toFixed(4)}` : "ok") : r.status;
      const elapsed = (performance.now() - t0) / 1000;
      const remaining = total - doneCells;
      const eta = workDone ? (elapsed / workDone) * remaining : NaN;
      write(
        `${tty ? "\r\x1b[K" : ""}[${e.index + 1}/${total}] ${e.label} ${what}` +
          `${e.skipped ? " (cached)" : ` (${(r.wallMs / 1000).toFixed(1)}s)`}` +
          `${remaining && Number.isFinite(eta) ? ` · ETA ${eta.toFixed(0)}s` : ""}` +
          `${r.error && r.status === "failed" ? `\n  ${r.error}` : ""}\n`,
      );
    }
  };
}

/**
 * `--flag -3` → `--flag=-3` for flags taking a value: parseArgs would call a value starting with
 * a dash "ambiguous"; joined, the flag's own check refuses it naming its allowed range.
 */
function joinNegativeValues(argv: readonly string[], valued: ReadonlySet<string>): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === "--") {
      out.push(...argv.slice(i));
      break;
    }
    const next = argv[i + 1];
    if (
      a.startsWith("--") && !a.includes("=") && valued.has(a.slice(2)) && next !== undefined &&
      /^-\.?\d/.test(next)
    ) {
      out.push(`${a}=${next}`);
      i++;
    } else out.push(a);
  }
  return out;
}

/**
 * Creates the results directory and checks that a file can be written in it, before any compute;
 * throws naming `--out` and the operating system's error. Returns whether it created `dir`.
 */
async function prepareOutDir(dir: string): Promise<boolean> {
  const fail = (e: unknown): never => {
    const why = e instanceof Deno.errors.NotCapable
      ? "Deno does not let this command write there (system paths such as /proc, /sys and /dev)"
      : e instanceof Error
      ? e.message
      : String(e);
    throw new Error(`--out ${dir}: cannot write the results directory: ${why}`);
  };
  let created = false;
  try {
    created = !(await Deno.stat(dir).then((s) => s.isDirectory, () => false));
    await Deno.mkdir(dir, { recursive: true });
  } catch (e) {
    fail(e);
  }
  const probe = `${dir}/.write-test-${Deno.pid}`;
  try {
    await (await Deno.open(probe, { write: true, createNew: true })).close();
    await Deno.remove(probe);
  } catch (e) {
    await Deno.remove(probe).catch(() => {});
    if (created) await Deno.remove(dir).catch(() => {});
    fail(e);
  }
  return created;
}

const OPTIONS = {
  matrix: { type: "string", default: "w2-w8" },
  model: { type: "string" },
  tokenizer: { type: "string" },
  methods: { type: "string" },
  bits: { type: "string" },
  abits: { type: "string" },
  configs: { type: "string" },
  act: { type: "string" },
  router: { type: "string" },
  alpha: { type: "string" },
  group: { type: "string" },
  symmetric: { type: "boolean" },
  tasks: { type: "string" },
  limit: { type: "string" },
  context: { type: "string" },
  "skip-malformed": { type: "boolean", default: false },
  calib: { type: "string" },
  "calib-samples": { type: "string" },
  "calib-seqlen": { type: "string" },
  "calib-recipe": { type: "string" },
  "calib-tokens": { type: "string" },
  seed: { type: "string" },
  data: { type: "string" },
  out: { type: "string" },
  shard: { type: "string" },
  threads: { type: "string" },
  backend: { type: "string", default: "auto" },
  "kernel-threads": { type: "string" },
  packed: { type: "boolean", default: false },
  force: { type: "boolean", default: false },
  "dry-run": { type: "boolean", default: false },
  quiet: { type: "boolean", default: false },
  wait: { type: "boolean", default: false },
  help: { type: "boolean", short: "h", default: false },
} as const;

/** Parses the command line strictly (a value starting with a dash joined to its flag). */
function parseFlags(argv: string[]) {
  const valued = new Set(
    Object.entries(OPTIONS).filter(([, o]) => o.type === "string").map(([k]) => k),
  );
  const { values } = parseArgs({
    args: joinNegativeValues(argv, valued),
    strict: true,
    allowPositionals: false,
    options: OPTIONS,
  });
  return values;
}

/** The parsed flags. */
type Flags = ReturnType<typeof parseFlags>;

/** `--NAME N`: an integer ≥ `min`, or undefined when the flag is absent. */
function intFlag(name: string, v: string | undefined, min: number): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) {
    throw new RangeError(`--${name} must be an integer ≥ ${min}, got "${v}"`);
  }
  return n;
}

/** `--limit N` (a positive integer) over the preset's limit. */
function limitFlag(text: string | undefined, preset: number | undefined): number | undefined {
  if (text === undefined) return preset;
  const limit = Number(text);
  if (!Number.isInteger(limit) || limit < 1) {
    throw new RangeError(`--limit must be a positive integer, got "${text}"`);
  }
  return limit;
}

/** The preset's calibration settings overridden by the `--calib*` and `--seed` flags. */
function calibrationFlags(values: Flags, preset: MatrixSpec): Partial<CalibrationSpec> {
  const samples = intFlag("calib-samples", values["calib-samples"], 1);
  const seqLen = intFlag("calib-seqlen", values["calib-seqlen"], 2);
  const seed = intFlag("seed", values.seed, 0);
  return {
    ...preset.calibration,
    ...(values.calib !== undefined ? { source: values.calib } : {}),
    ...(samples !== undefined ? { samples } : {}),
    ...(seqLen !== undefined ? { seqLen } : {}),
    ...(seed !== undefined ? { seed } : {}),
    ...(values["calib-recipe"] !== undefined
      ? { recipe: calibrationRecipe(values["calib-recipe"]) }
      : {}),
  };
}

/**
 * The method entries: `--methods`, or the preset's with their own lists dropped where a flag
 * (--bits / --abits / --group / --configs / --act / --router) overrides them for every method.
 */
function methodFlags(values: Flags, preset: MatrixSpec): (string | MethodEntry)[] {
  const bitFlags = values.bits || values.abits || values.configs;
  return list(values.methods) ??
    preset.methods.map((e) =>
      typeof e === "string" ? e : {
        method: e.method,
        ...(e.bits && !bitFlags ? { bits: e.bits } : {}),
        ...(e.abits && !bitFlags ? { abits: e.abits } : {}),
        ...(e.configs && !bitFlags ? { configs: e.configs } : {}),
        ...(e.groups && !values.group ? { groups: e.groups } : {}),
        ...(e.act && !values.act ? { act: e.act } : {}),
        ...(e.router && !values.router ? { router: e.router } : {}),
        ...(e.level && !values.act && !values.group ? { level: e.level } : {}),
      }
    );
}

/** `--alpha 0.1,0.5`: one spec per value for each method with an α parameter. */
function sweepAlpha(methods: (string | MethodEntry)[], text: string): (string | MethodEntry)[] {
  const alphas = text.split(",").map((x) => x.trim()).filter(Boolean).map((x) => {
    const a = Number(x);
    if (!(a >= 0 && a <= 1)) throw new RangeError(`--alpha values must be in [0, 1], got "${x}"`);
    return a;
  });
  return methods.flatMap((e) => {
    const entry = typeof e === "string" ? { method: e } : e;
    return sweepParam(entry.method, "alpha", alphas, (id) => "alpha" in getMethod(id).params)
      .map((method) => typeof e === "string" ? method : { ...entry, method });
  });
}

/** The matrix to run: the preset with the command line's flags applied. */
function buildSpec(values: Flags, preset: MatrixSpec): MatrixSpec {
  const limit = limitFlag(values.limit, preset.limit);
  const groups: GroupSetting[] = values.group ? groupFlag(values.group) : [...preset.groups];
  const context = intFlag("context", values.context, 2) ?? preset.context;
  const calibration = calibrationFlags(values, preset);
  let methods = methodFlags(values, preset);
  if (values.alpha !== undefined) methods = sweepAlpha(methods, values.alpha);
  const configs = values.configs !== undefined
    ? list(values.configs)!
    : values.bits || values.abits
    ? undefined
    : preset.configs;
  return {
    id: preset.id,
    ...(preset.description ? { description: preset.description } : {}),
    models: list(values.model) ?? preset.models,
    methods,
    bits: values.bits ? bitsFlag(values.bits, "bits", 2, 8) : preset.bits,
    ...(values.abits
      ? { abits: bitsFlag(values.abits, "abits", 2, 16) }
      : preset.abits
      ? { abits: preset.abits }
      : {}),
    ...(configs ? { configs } : {}),
    ...(values.act !== undefined
      ? { act: parseActFlag(values.act) }
      : preset.act
      ? { act: preset.act }
      : {}),
    ...(values.router !== undefined
      ? { router: values.router }
      : preset.router
      ? { router: preset.router }
      : {}),
    groups,
    tasks: list(values.tasks) ?? preset.tasks,
    symmetric: values.symmetric ?? preset.symmetric,
    ...(limit !== undefined ? { limit } : {}),
    ...(context !== undefined ? { context } : {}),
    calibration,
  };
}

/** `--shard I/N` with 0 ≤ I < N. */
function shardFlag(text: string | undefined): { index: number; count: number } | undefined {
  if (!text) return undefined;
  const m = /^(\d+)\/(\d+)$/.exec(text);
  if (!m || Number(m[1]) >= Number(m[2])) {
    throw new SyntaxError(`--shard must be I/N with 0 ≤ I < N (e.g. 0/4), got "${text}"`);
  }
  return { index: Number(m[1]), count: Number(m[2]) };
}

/** `--calib-tokens FILE`, refused together with the flags that draw a calibration set. */
async function calibrationTokensFlag(values: Flags): Promise<CalibrationTokens | undefined> {
  if (values["calib-tokens"] === undefined) return undefined;
  const clash = ["calib", "calib-samples", "calib-seqlen", "calib-recipe", "seed"]
    .filter((f) => values[f as keyof typeof values] !== undefined);
  if (clash.length) {
    throw new SyntaxError(
      `--calib-tokens gives the calibration windows; it cannot be combined with ${
        clash.map((f) => `--${f}`).join(", ")
      }`,
    );
  }
  return await readCalibrationTokens(values["calib-tokens"]);
}

/** `--NAME N` thread count: a positive integer, by default the number of cores. */
function threadsFlag(name: string, text: string | undefined): number {
  const n = text === undefined ? navigator.hardwareConcurrency : Number(text);
  if (!Number.isInteger(n) || n < 1) {
    throw new RangeError(`--${name} must be a positive integer, got "${text}"`);
  }
  return n;
}

/** Warns on stderr when the kernels or the WebGPU adapter are a fallback. */
function warnFallbacks(
  fallback: string | undefined,
  windowScorer: SelectedKernels["windowScorer"],
): void {
  if (fallback) console.error(`warning: ${fallback}`);
  if (windowScorer?.adapter?.fallback) {
    console.error(
      `warning: WebGPU runs on a software adapter (${windowScorer.adapter.description}); its speed is not GPU speed`,
    );
  }
}

/** `--dry-run`: lists the matrix's cells on stdout. */
async function printPlan(
  spec: MatrixSpec,
  options: Parameters<typeof planMatrix>[1],
): Promise<void> {
  const { cells } = await planMatrix(spec, options);
  for (const c of cells) {
    console.log(
      `${c.cellId}  ${c.spec.model}  ${c.spec.method}  ${quantLabel(c.spec.quant)}  ${c.task.id}`,
    );
  }
  console.log(`${cells.length} cells`);
}

/** Runs the command; returns the exit code. */
async function main(argv: string[]): Promise<number> {
  const values = parseFlags(argv);
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  const spec = buildSpec(values, await loadPreset(values.matrix));
  const shard = shardFlag(values.shard);
  const calibrationTokens = await calibrationTokensFlag(values);
  const threads = threadsFlag("threads", values.threads);
  const dataDir = values.data || Deno.env.get("LOWBIT_DATA") || bundledDataDir();
  const outDir = values.out ?? `results/runs/${spec.id}`;
  const onEvent = progressRenderer(values.quiet);
  const kernelThreads = threadsFlag("kernel-threads", values["kernel-threads"]);
  const { kernels, fallback, windowScorer } = await selectKernels(values.backend, {
    kernelThreads,
    packed: values.packed,
  });
  const common = {
    dataDir,
    skipMalformed: values["skip-malformed"],
    onEvent,
    kernels,
    ...(shard ? { shard } : {}),
    ...(values.tokenizer ? { tokenizer: values.tokenizer } : {}),
    ...(calibrationTokens ? { calibrationTokens } : {}),
  };
  // Unwritable --out fails here, before any download or compute; a directory made here is
  // removed again when the run leaves nothing in it (it failed before its first row).
  let createdOut = false;
  try {
    if (!values["dry-run"]) createdOut = await prepareOutDir(outDir);
    warnFallbacks(fallback, windowScorer);
    if (values["dry-run"]) {
      await printPlan(spec, common);
      return 0;
    }
    const rows = await runMatrix(spec, {
      ...common,
      outDir,
      force: values.force,
      threads,
      ...(windowScorer ? { windowScorer } : {}),
      lock: { wait: values.wait },
    });
    console.log(formatSummary(rows));
    console.log(`\nrows: ${outDir}/results.jsonl  csv: ${outDir}/results.csv`);
    return rows.some((r) => r.status === "failed") ? 1 : 0;
  } finally {
    if (createdOut) await Deno.remove(outDir).catch(() => {}); // only while empty
    // A GPU device or kernel threads still running at exit can take the process down with
    // them (a software adapter's driver tears down under its threads): release both first.
    windowScorer?.close?.();
    kernels.close?.();
  }
}

if (import.meta.main) {
  try {
    Deno.exit(await main(Deno.args));
  } catch (e) {
    const err = e as Error & { code?: string };
    console.error(`error: ${err.message}`);
    if (err.code?.startsWith("ERR_PARSE_ARGS")) console.error("Run with --help for the flags.");
    if (e instanceof ResultsLockedError) {
      console.error("Pass --wait to wait until that run has finished, then resume from its cells.");
    }
    Deno.exit(2);
  }
}

/** Bit-widths from a flag, each within what any quantizer supports (exit 2 otherwise). */
function bitsFlag(text: string, flag: string, min: number, max: number): number[] {
  let bits: number[];
  try {
    bits = parseIntList(text, flag);
  } catch (e) {
    throw new SyntaxError(`--${flag}: ${(e as Error).message}, each in ${min}–${max}`);
  }
  const bad = bits.find((b) => b < min || b > max);
  if (bad !== undefined) {
    throw new RangeError(`--${flag} ${bad} is outside ${min}–${max}`);
  }
  return bits;
}

/** `--group channel,32`: each part `channel`, `tensor` or a positive column count. */
function groupFlag(text: string): GroupSetting[] {
  try {
    return parseGroups(text);
  } catch (e) {
    throw new SyntaxError(`--group: ${(e as Error).message}`);
  }
}
