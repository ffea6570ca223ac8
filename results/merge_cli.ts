/**
 * `deno task results:merge --out DIR IN_DIR...`: joins the results directories of sharded bench
 * runs (`deno task bench --shard I/N --out IN_DIR`) into one results directory by cell id.
 *
 * Exit codes: 0 merged, 2 bad input (no inputs, a missing or empty input, a row from a newer
 * schema version, conflicting duplicate cells, bad arguments). Nothing is written on exit 2.
 *
 * @module
 */

import { ResultsInputError } from "./load.ts";
import { mergeResultDirs } from "./merge.ts";

const USAGE = "usage: deno task results:merge --out DIR IN_DIR [IN_DIR...]";

/** Output sinks, replaceable in tests. */
export interface Io {
  /** Normal output. */
  out(text: string): void;
  /** Errors. */
  err(text: string): void;
}

const CONSOLE: Io = { out: (t) => console.log(t), err: (t) => console.error(t) };

/** Runs the command with `args`; returns the exit code. */
export async function mergeMain(args: readonly string[], io: Io = CONSOLE): Promise<number> {
  let out: string | undefined;
  const inputs: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === "--out" || a === "-o") {
      out = args[++i];
      if (!out) {
        io.err(`results:merge: --out needs a directory\n${USAGE}`);
        return 2;
      }
    } else if (a.startsWith("--out=")) out = a.slice("--out=".length);
    else if (a === "--help" || a === "-h") {
      io.out(USAGE);
      return 0;
    } else if (a.startsWith("-")) {
      io.err(`results:merge: unknown argument ${a}\n${USAGE}`);
      return 2;
    } else inputs.push(a);
  }
  if (!out) {
    io.err(`results:merge: --out is required\n${USAGE}`);
    return 2;
  }
  if (!inputs.length) {
    io.err(`results:merge: no input directories given\n${USAGE}`);
    return 2;
  }
  try {
    const s = await mergeResultDirs(inputs, out);
    const parts = s.perInput.map((p) => `${p.dir}: ${p.cells}`).join(", ");
    io.out(
      `results:merge: ${s.cells} cells into ${s.outDir} (${s.rowsRead} rows read, ` +
        `${s.duplicates} identical duplicates merged; ${parts})`,
    );
    return 0;
  } catch (e) {
    if (!(e instanceof ResultsInputError)) throw e;
    io.err(`results:merge: ${e.message}`);
    return 2;
  }
}

if (import.meta.main) Deno.exit(await mergeMain(Deno.args));
