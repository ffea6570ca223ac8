/**
 * `deno task compare --baseline FILE --current DIR [--ppl-tol 0.01] [--acc-tol 0.01] [--z 2]
 * [--kl-tol 0.01] [--nll-floor 1e-4] [--top1-floor 1e-3] [--fail-on-missing]`: compares a run
 * against a baseline and prints a Markdown report on stdout (append it to `$GITHUB_STEP_SUMMARY`).
 *
 * Exit codes: 0 no regression, 1 regression, no cell compared at all, or (with
 * `--fail-on-missing`) baseline cells absent from the current run, 2 bad input (missing baseline, empty results, newer schema version,
 * conflicting duplicate cells, bad arguments).
 *
 * @module
 */

import { type CompareOptions, compareRuns, formatMarkdown } from "./compare.ts";
import { loadRows, ResultsInputError } from "./load.ts";

const USAGE = "usage: deno task compare --baseline FILE --current DIR " +
  "[--ppl-tol 0.01] [--acc-tol 0.01] [--z 2] [--kl-tol 0.01] [--nll-floor 1e-4] " +
  "[--top1-floor 1e-3] [--fail-on-missing]";

/** Output sinks, replaceable in tests. */
export interface Io {
  out(text: string): void;
  err(text: string): void;
}

const CONSOLE: Io = { out: (t) => console.log(t), err: (t) => console.error(t) };

/** Runs the command with `args`; returns the exit code. */
export async function compareMain(args: readonly string[], io: Io = CONSOLE): Promise<number> {
  let baseline: string | undefined;
  let current: string | undefined;
  let failOnMissing = false;
  const opts: { -readonly [K in keyof CompareOptions]: CompareOptions[K] } = {};
  const FLAGS: Record<string, keyof CompareOptions> = {
    "--ppl-tol": "pplTolerance",
    "--acc-tol": "accTolerance",
    "--z": "z",
    "--kl-tol": "klTolerance",
    "--nll-floor": "nllFloor",
    "--top1-floor": "top1Floor",
  };
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    const [flag, inline] = a.includes("=") ? a.split(/=(.*)/s, 2) : [a, undefined];
    const value = () => inline ?? args[++i];
    const number = (name: string): number | undefined => {
      const v = Number(value());
      if (!Number.isFinite(v) || v < 0) {
        io.err(`compare: ${name} needs a non-negative number\n${USAGE}`);
        return undefined;
      }
      return v;
    };
    if (flag === "--baseline") baseline = value();
    else if (flag === "--current") current = value();
    else if (flag === "--fail-on-missing") failOnMissing = true;
    else if (flag! in FLAGS) {
      const v = number(flag!);
      if (v === undefined) return 2;
      opts[FLAGS[flag!]!] = v;
    } else if (flag === "--help" || flag === "-h") {
      io.out(USAGE);
      return 0;
    } else {
      io.err(`compare: unknown argument ${a}\n${USAGE}`);
      return 2;
    }
  }
  if (!baseline || !current) {
    io.err(`compare: --baseline and --current are required\n${USAGE}`);
    return 2;
  }
  let base, cur;
  try {
    base = await loadRows(baseline);
  } catch (e) {
    if (!(e instanceof ResultsInputError)) throw e;
    io.err(`compare: baseline: ${e.message}`);
    return 2;
  }
  try {
    cur = await loadRows(current);
  } catch (e) {
    if (!(e instanceof ResultsInputError)) throw e;
    io.err(`compare: current: ${e.message}`);
    return 2;
  }
  const c = compareRuns(base, cur, opts);
  io.out(formatMarkdown(c, { baseline, current }));
  if (c.common === 0) {
    io.err("compare: no cell of the baseline is in the current run: nothing was compared");
    return 1;
  }
  return c.regressions > 0 || (failOnMissing && c.missing.length > 0) ? 1 : 0;
}

if (import.meta.main) Deno.exit(await compareMain(Deno.args));
