/**
 * `deno task leaderboard [--in DIR] [--out DIR]`: builds the HTML leaderboard from every
 * `*.jsonl` file (runs' `results.jsonl`, the baselines) below `--in` (default `results/runs`)
 * into `--out` (default `site/`).
 *
 * Exit codes: 0 success, 2 bad input (no rows, newer schema, conflicting duplicates).
 *
 * @module
 */

import { buildSite } from "./leaderboard.ts";
import { loadRows, ResultsInputError } from "./load.ts";

const USAGE = "usage: deno task leaderboard [--in DIR] [--out DIR]";

/** Runs the command with `args`; returns the exit code. */
export async function leaderboardMain(args: readonly string[]): Promise<number> {
  let inDir = "results/runs";
  let outDir = "site";
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    const [flag, inline] = a.includes("=") ? a.split(/=(.*)/s, 2) : [a, undefined];
    const value = () => inline ?? args[++i];
    if (flag === "--in") inDir = value() ?? "";
    else if (flag === "--out") outDir = value() ?? "";
    else if (flag === "--help" || flag === "-h") {
      console.log(USAGE);
      return 0;
    } else {
      console.error(`unknown argument ${a}\n${USAGE}`);
      return 2;
    }
  }
  if (!inDir || !outDir) {
    console.error(USAGE);
    return 2;
  }
  try {
    const rows = await loadRows(inDir);
    const files = await buildSite(rows);
    await Deno.mkdir(outDir, { recursive: true });
    for (const [name, text] of files) await Deno.writeTextFile(`${outDir}/${name}`, text);
    console.log(`wrote ${files.size} file(s) from ${rows.length} row(s) to ${outDir}/`);
    return 0;
  } catch (e) {
    if (e instanceof ResultsInputError) {
      console.error(`leaderboard: ${e.message}`);
      return 2;
    }
    throw e;
  }
}

if (import.meta.main) Deno.exit(await leaderboardMain(Deno.args));
