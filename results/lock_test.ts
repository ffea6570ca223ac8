import assert from "node:assert/strict";
import { LOCK_FILE, lockResultsDir, ResultsLockedError } from "./lock.ts";

const lockModule = new URL("./lock.ts", import.meta.url).href;

/** The pid of a process that has exited (a pid nobody holds a lock with). */
async function deadPid(): Promise<number> {
  const child = new Deno.Command(Deno.execPath(), { args: ["eval", ""], stdout: "null" }).spawn();
  await child.status;
  return child.pid;
}

/**
 * A child process that takes the lock of `dir`, says "locked" on stdout, then sleeps (or, `busy`,
 * spins without ever yielding to its event loop).
 */
async function holder(dir: string, busy = false) {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "eval",
      `import { lockResultsDir } from ${JSON.stringify(lockModule)};
       await lockResultsDir(${JSON.stringify(dir)});
       console.log("locked");
       ${busy ? "for (;;);" : "setInterval(() => {}, 1000);"}`,
    ],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = child.stdout.getReader();
  let text = "";
  while (!text.includes("locked")) {
    const { value, done } = await reader.read();
    if (done) throw new Error("the holder exited before taking the lock");
    text += new TextDecoder().decode(value);
  }
  reader.releaseLock();
  await child.stdout.cancel();
  return child;
}

Deno.test("lock: a second holder is refused naming the first; released, the directory is free again", async () => {
  const dir = await Deno.makeTempDir({ prefix: "lowbit-lock-" });
  try {
    const out = `${dir}/out/`;
    const a = await lockResultsDir(out, { signals: false });
    const file = JSON.parse(await Deno.readTextFile(`${dir}/out/${LOCK_FILE}`));
    assert.equal(file.pid, Deno.pid);
    assert.equal(file.host, Deno.hostname());
    assert.ok(Math.abs(Date.parse(file.startedAt) - Date.now()) < 60_000);
    // Another open file description of the same process is another holder for flock.
    const err = await lockResultsDir(out, { signals: false }).then(
      () => assert.fail("took a held lock"),
      (e) => e,
    );
    assert.ok(err instanceof ResultsLockedError);
    assert.equal(err.holder?.pid, Deno.pid);
    assert.match(
      err.message,
      new RegExp(
        `results directory ${dir}/out is in use by another run \\(pid ${Deno.pid} on ` +
          `host .*, started ${file.startedAt.replace(/[.]/g, "\\.")}`,
      ),
    );
    a.release();
    a.release(); // idempotent
    await assert.rejects(Deno.stat(`${dir}/out/${LOCK_FILE}`), Deno.errors.NotFound);
    const b = await lockResultsDir(out, { signals: false });
    b.release();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("lock: a stale lock (its holder exited or was SIGKILLed) is taken over with a note; another host's is not", async () => {
  const dir = await Deno.makeTempDir({ prefix: "lowbit-lock-" });
  try {
    // A lock file left by a process that is gone.
    const pid = await deadPid();
    const stale = { pid, host: Deno.hostname(), startedAt: "2020-01-01T00:00:00.000Z" };
    await Deno.writeTextFile(`${dir}/${LOCK_FILE}`, JSON.stringify(stale));
    const notes: string[] = [];
    const a = await lockResultsDir(dir, { signals: false, onNote: (m) => notes.push(m) });
    assert.equal(notes.length, 1);
    assert.match(notes[0]!, new RegExp(`took over the stale lock ${dir}/\\.lock \\(pid ${pid} `));
    assert.equal(JSON.parse(await Deno.readTextFile(a.path)).pid, Deno.pid);
    a.release();

    // A live holder killed without warning leaves its file, which is then stale.
    const child = await holder(dir);
    const held = JSON.parse(await Deno.readTextFile(`${dir}/${LOCK_FILE}`));
    assert.equal(held.pid, child.pid);
    await assert.rejects(lockResultsDir(dir, { signals: false }), ResultsLockedError);
    child.kill("SIGKILL");
    await child.status;
    const after: string[] = [];
    const b = await lockResultsDir(dir, { signals: false, onNote: (m) => after.push(m) });
    assert.match(after.join("\n"), new RegExp(`stale lock .*pid ${child.pid} `));
    b.release();

    // Another host: nobody here can tell whether it is alive.
    const foreign = { pid, host: `not-${Deno.hostname()}`, startedAt: stale.startedAt };
    await Deno.writeTextFile(`${dir}/${LOCK_FILE}`, JSON.stringify(foreign));
    await assert.rejects(
      lockResultsDir(dir, { signals: false }),
      (e: Error) =>
        e instanceof ResultsLockedError && e.message.includes(`host not-${Deno.hostname()}`) &&
        e.message.includes(`remove ${dir}/.lock if it is gone`),
    );
    assert.deepEqual(JSON.parse(await Deno.readTextFile(`${dir}/${LOCK_FILE}`)), foreign);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("lock: wait polls until the holder releases, then takes the lock", async () => {
  const dir = await Deno.makeTempDir({ prefix: "lowbit-lock-" });
  try {
    const a = await lockResultsDir(dir, { signals: false });
    const notes: string[] = [];
    let got = false;
    const waiting = lockResultsDir(dir, {
      signals: false,
      wait: true,
      pollMs: 20,
      onNote: (m) => notes.push(m),
    }).then((l) => {
      got = true;
      return l;
    });
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(got, false, "took the lock while it was held");
    assert.equal(notes.length, 1);
    assert.match(notes[0]!, new RegExp(`waiting for ${dir}: in use by pid ${Deno.pid} `));
    a.release();
    const b = await waiting;
    assert.equal(JSON.parse(await Deno.readTextFile(b.path)).pid, Deno.pid);
    b.release();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("lock: SIGTERM and SIGINT release the lock and end the process (143 / 130) at once, even mid-computation", async () => {
  const dir = await Deno.makeTempDir({ prefix: "lowbit-lock-" });
  try {
    for (const [signal, code] of [["SIGTERM", 143], ["SIGINT", 130]] as const) {
      const child = await holder(dir, true);
      assert.ok(await Deno.stat(`${dir}/${LOCK_FILE}`));
      const t0 = performance.now();
      child.kill(signal);
      const status = await child.status;
      assert.deepEqual([status.code, status.signal], [code, signal]);
      assert.ok(performance.now() - t0 < 5_000, "the signal waited for the computation");
      await assert.rejects(Deno.stat(`${dir}/${LOCK_FILE}`), Deno.errors.NotFound, signal);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
