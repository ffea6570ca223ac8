/**
 * One writer per results directory: `DIR/.lock`.
 *
 * The lock file is created with `createNew` (so two runs cannot both create it) and holds JSON
 * `{pid, host, startedAt}` naming its holder. The holder also keeps an exclusive advisory lock
 * (`flock`) on the open file for as long as it runs; the kernel drops that lock when the process
 * ends in any way, SIGKILL included. A lock file nobody holds the `flock` of is therefore stale:
 * its holder is gone, and the next run takes it over (with a note) instead of refusing. This is
 * also why no pid probe is needed: Deno allows reading `/proc/<pid>` only with `--allow-all` and
 * `Deno.kill(pid, 0)` only with an unrestricted `--allow-run`, and a pid can be reused.
 *
 * A lock file written on another host (the `host` field differs from this host's name) is never
 * taken over: on a network file system the `flock` may not reach across machines, so whether
 * its holder is alive cannot be told from here; the message says to remove the file by hand.
 *
 * The holder releases the lock (removes the file, then closes it) on {@linkcode DirLock.release}
 * and, unless `signals: false`, on SIGINT or SIGTERM: a worker thread (`lock_worker.ts`) removes
 * the file at once, even while the main thread computes, and the signal then ends the process as
 * it would have without the lock (exit 130 / 143).
 *
 * @module
 */

import { WebWorker } from "../core/web_worker.ts";

/** Name of the lock file inside a results directory. */
export const LOCK_FILE = ".lock";

/** Who holds a results directory. */
export interface LockHolder {
  readonly pid: number;
  readonly host: string;
  /** ISO time the holder took the lock. */
  readonly startedAt: string;
}

/** A results directory another live run is writing. */
export class ResultsLockedError extends Error {
  /** The results directory. */
  readonly dir: string;
  /** The holder named in the lock file (undefined when the file could not be read). */
  readonly holder: LockHolder | undefined;

  /** Creates the error, naming the directory and the holder. */
  constructor(dir: string, holder: LockHolder | undefined, why = "") {
    super(
      `results directory ${dir} is in use by another run (${describeHolder(holder)}; ` +
        `lock file ${dir}/${LOCK_FILE})${why}`,
    );
    this.name = "ResultsLockedError";
    this.dir = dir;
    this.holder = holder;
  }
}

/** A held lock. */
export interface DirLock extends Disposable {
  /** The lock file. */
  readonly path: string;
  /** This process, as written in the lock file. */
  readonly holder: LockHolder;
  /** Removes the lock file and drops the lock; later calls do nothing. */
  release(): void;
}

/** Options of {@linkcode lockResultsDir}. */
export interface LockOptions {
  /** Poll until the lock is free instead of throwing {@linkcode ResultsLockedError}. */
  readonly wait?: boolean;
  /** Poll interval of `wait`, in ms (default 1000). */
  readonly pollMs?: number;
  /**
   * Remove the lock file on SIGINT / SIGTERM, which then end the process as usual (130 / 143)
   * (default true). With other listeners of those signals in the process, they decide.
   */
  readonly signals?: boolean;
  /** Messages for the user: a stale lock taken over, waiting for another run. */
  readonly onNote?: (message: string) => void;
}

/** How long an empty lock file nobody holds counts as being created (its creator is writing). */
const CREATING_MS = 5_000;

function describeHolder(h: LockHolder | undefined): string {
  return h ? `pid ${h.pid} on host ${h.host || "?"}, started ${h.startedAt}` : "holder unknown";
}

/** This host's name, or "" when the permission to read it (`--allow-sys=hostname`) is missing. */
function hostName(): string {
  try {
    return Deno.hostname();
  } catch {
    return "";
  }
}

/** The holder in a lock file's text, or undefined when it is empty or not a holder. */
export function parseHolder(text: string): LockHolder | undefined {
  try {
    const o = JSON.parse(text) as Partial<LockHolder>;
    if (
      o && typeof o.pid === "number" && typeof o.host === "string" &&
      typeof o.startedAt === "string"
    ) {
      return { pid: o.pid, host: o.host, startedAt: o.startedAt };
    }
  } catch {
    // empty or partly written
  }
  return undefined;
}

function readAll(file: Deno.FsFile): string {
  file.seekSync(0, Deno.SeekMode.Start);
  const chunks: Uint8Array[] = [];
  const buf = new Uint8Array(4096);
  for (;;) {
    const n = file.readSync(buf);
    if (n === null || n === 0) break;
    chunks.push(buf.slice(0, n));
  }
  const all = new Uint8Array(chunks.reduce((s, c) => s + c.length, 0));
  let o = 0;
  for (const c of chunks) {
    all.set(c, o);
    o += c.length;
  }
  return new TextDecoder().decode(all);
}

function writeHolder(file: Deno.FsFile, holder: LockHolder): void {
  file.truncateSync(0);
  file.seekSync(0, Deno.SeekMode.Start);
  const bytes = new TextEncoder().encode(JSON.stringify(holder) + "\n");
  for (let o = 0; o < bytes.length;) o += file.writeSync(bytes.subarray(o));
  file.syncSync();
}

/** Whether `file` is still the file at `path` (the holder removes it on release). */
function isFileAt(file: Deno.FsFile, path: string): boolean {
  try {
    const a = file.statSync();
    const b = Deno.statSync(path);
    return a.dev === b.dev && a.ino === b.ino;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Takes the lock of results directory `dir` (created if needed). Throws
 * {@linkcode ResultsLockedError} when another live run holds it (or waits, with `wait`); takes a
 * stale lock over, reporting it through `onNote`.
 */
export async function lockResultsDir(dir: string, options: LockOptions = {}): Promise<DirLock> {
  const root = dir.replace(/\/+$/, "") || "/";
  await Deno.mkdir(root, { recursive: true });
  const path = `${root}/${LOCK_FILE}`;
  const host = hostName();
  const pollMs = options.pollMs ?? 1000;
  let announced = false;
  for (;;) {
    const me: LockHolder = { pid: Deno.pid, host, startedAt: new Date().toISOString() };
    let file: Deno.FsFile | undefined;
    try {
      file = await Deno.open(path, { read: true, write: true, createNew: true });
    } catch (e) {
      if (!(e instanceof Deno.errors.AlreadyExists)) throw e;
    }
    if (file) {
      // Another run may hold the flock for a moment (it found the empty file and backs off).
      await file.lock(true);
      writeHolder(file, me);
      return await held(file, path, me, options.signals ?? true);
    }
    try {
      file = await Deno.open(path, { read: true, write: true });
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) continue; // released meanwhile
      throw e;
    }
    let holder: LockHolder | undefined;
    let why = "";
    if (file.tryLockSync(true)) {
      if (!isFileAt(file, path)) {
        file.close(); // its holder released it between our open and our lock
        continue;
      }
      holder = parseHolder(readAll(file));
      if (!holder && Date.now() - (file.statSync().mtime?.getTime() ?? 0) < CREATING_MS) {
        file.close(); // being created: its creator waits for our flock to go
        await sleep(20);
        continue;
      }
      if (!holder || holder.host === host) {
        writeHolder(file, me);
        options.onNote?.(
          `took over the stale lock ${path} (${describeHolder(holder)}): that run is gone`,
        );
        return await held(file, path, me, options.signals ?? true);
      }
      why = `: it was taken on another host, so whether that run is alive cannot be told ` +
        `from here; remove ${path} if it is gone`;
    } else {
      holder = parseHolder(await Deno.readTextFile(path).catch(() => ""));
    }
    file.close();
    if (!options.wait) throw new ResultsLockedError(root, holder, why);
    if (!announced) {
      options.onNote?.(`waiting for ${root}: in use by ${describeHolder(holder)}${why}`);
      announced = true;
    }
    await sleep(pollMs);
  }
}

async function held(
  file: Deno.FsFile,
  path: string,
  holder: LockHolder,
  signals: boolean,
): Promise<DirLock> {
  const { dev, ino } = file.statSync();
  const worker = signals ? await signalWorker(path, dev, ino) : undefined;
  let released = false;
  const release = () => {
    if (released) return;
    released = true;
    worker?.terminate();
    // Remove first, while still holding the flock: a run that opened the file meanwhile gets
    // the flock only after the close, sees the path gone, and starts over. A file that is not
    // ours any more (removed by hand, then taken by another run) is left alone.
    try {
      if (isFileAt(file, path)) Deno.removeSync(path);
    } catch {
      // removed meanwhile
    }
    try {
      file.close();
    } catch {
      // closed
    }
  };
  return { path, holder, release, [Symbol.dispose]: release };
}

/**
 * Starts the worker that removes the lock file on SIGINT/SIGTERM (`lock_worker.ts`); undefined
 * when it cannot start (the lock file left behind is then stale, and taken over by the next run).
 */
async function signalWorker(path: string, dev: number, ino: number | null) {
  let worker: Worker | undefined;
  try {
    worker = new WebWorker(new URL("./lock_worker.ts", import.meta.url), { type: "module" });
    const w = worker;
    await new Promise<void>((resolve, reject) => {
      w.onmessage = (e: MessageEvent) => e.data === "ready" ? resolve() : reject(e.data);
      w.onerror = (e: ErrorEvent) => {
        e.preventDefault();
        reject(e.error ?? e.message);
      };
      w.postMessage({ path, dev, ino });
    });
    return worker;
  } catch {
    worker?.terminate();
    return undefined;
  }
}
