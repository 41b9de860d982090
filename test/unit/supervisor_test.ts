/** The supervisor's pure parts: json-file logs and rotation, restart policies, back-off. */
import assert from "node:assert/strict";
import {
  JsonLog,
  LINE_MAX,
  logFiles,
  parseEntry,
  parseLogOpts,
  readLines,
  ROTATE_WAIT_MS,
} from "../../core/supervisor/logs.ts";
import {
  nextDelay,
  parseRestart,
  type RestartRecord,
  shouldRestart,
} from "../../core/supervisor/policy.ts";
import { supervisorEnv } from "../../core/supervisor/client.ts";
import { denoRunArgs, runnerEnv } from "../../core/store/rmtree.ts";
import { BUNDLE_FLAGS, V8_FLAGS } from "../../core/v8.ts";
import {
  type FollowPos,
  followStep,
  openLog,
  openLogDir,
  openLogSet,
  START,
} from "../../core/supervisor/logs.ts";
import { openLibc } from "../../core/sys/libc.ts";
import { C, type Sys } from "../../core/sys/mod.ts";
import { exists } from "../../core/host.ts";
import type { ContainerRecord } from "../../core/store/containers.ts";
import { parseSince, startArgv } from "../../commands/lifecycle.ts";
import { MicroError } from "../../core/errors.ts";

const enc = new TextEncoder();
const T = new Date("2026-01-02T03:04:05.678Z");

function entries(path: string): { log: string; stream: string; time: string }[] {
  return Deno.readTextFileSync(path).split("\n").filter((l) => l).map((l) => parseEntry(l)!);
}

Deno.test("json-file: lines as Docker writes them, partial lines joined, streams apart", () => {
  const dir = Deno.makeTempDirSync();
  try {
    const log = new JsonLog(`${dir}/x-json.log`, { maxSize: 0, maxFile: 1 }, () => T);
    log.write("stdout", enc.encode("one\ntw"));
    log.write("stderr", enc.encode("err\n"));
    log.write("stdout", enc.encode("o\nthree"));
    log.close();
    assert.deepEqual(entries(`${dir}/x-json.log`), [
      { log: "one\n", stream: "stdout", time: T.toISOString() },
      { log: "err\n", stream: "stderr", time: T.toISOString() },
      { log: "two\n", stream: "stdout", time: T.toISOString() },
      // the unfinished last line, written at the end without its newline
      { log: "three", stream: "stdout", time: T.toISOString() },
    ]);
    assert.equal(
      Deno.readTextFileSync(`${dir}/x-json.log`).split("\n")[0],
      '{"log":"one\\n","stream":"stdout","time":"2026-01-02T03:04:05.678Z"}',
    );
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("json-file: a line without end is cut at 16 KiB (memory is bounded)", () => {
  const dir = Deno.makeTempDirSync();
  try {
    const log = new JsonLog(`${dir}/x-json.log`, { maxSize: 0, maxFile: 1 }, () => T);
    const big = new Uint8Array(LINE_MAX * 3 + 5).fill(97);
    for (let k = 0; k < big.length; k += 1000) {
      log.write("stdout", big.subarray(k, k + 1000));
    }
    const got = entries(`${dir}/x-json.log`);
    assert.equal(got.length, 3);
    assert.ok(got.every((e) => e.log.length === LINE_MAX));
    log.close();
    assert.equal(entries(`${dir}/x-json.log`).at(-1)!.log.length, 5);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("json-file: rotation at max-size keeps max-file files, newest in the plain name", () => {
  const dir = Deno.makeTempDirSync();
  try {
    const path = `${dir}/x-json.log`;
    const log = new JsonLog(path, { maxSize: 1000, maxFile: 3 }, () => T);
    for (let i = 0; i < 100; i++) log.write("stdout", enc.encode(`line ${i}\n`));
    log.close();
    const files = [...Deno.readDirSync(dir)].map((e) => e.name).sort();
    assert.deepEqual(files, ["x-json.log", "x-json.log.1", "x-json.log.2"]);
    for (const f of files) assert.ok(Deno.statSync(`${dir}/${f}`).size <= 1000, f);
    const all = logFiles(path).flatMap((f) => entries(f).map((e) => e.log));
    assert.equal(all.at(-1), "line 99\n");
    // in order, without a gap
    const n = all.map((l) => Number(l.split(" ")[1]));
    assert.deepEqual(n, n.map((_, k) => n[0] + k));
    // max-file=1: truncated in place
    const one = new JsonLog(`${dir}/y-json.log`, { maxSize: 500, maxFile: 1 }, () => T);
    for (let i = 0; i < 50; i++) one.write("stdout", enc.encode(`line ${i}\n`));
    one.close();
    assert.ok(Deno.statSync(`${dir}/y-json.log`).size <= 500);
    assert.equal(logFiles(`${dir}/y-json.log`).length, 1);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("readLines: whole lines only; the offset after the last one", () => {
  const dir = Deno.makeTempDirSync();
  try {
    Deno.writeTextFileSync(`${dir}/f`, "a\nb\npart");
    const f = Deno.openSync(`${dir}/f`);
    const got: string[] = [];
    assert.equal(readLines(f, 0, (l) => got.push(l)), 4);
    assert.deepEqual(got, ["a", "b"]);
    f.close();
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("--log-opt: Docker's sizes and counts; errors are one line", () => {
  assert.deepEqual(parseLogOpts(["max-size=10m", "max-file=3"]), {
    maxSize: 10 * 1024 * 1024,
    maxFile: 3,
  });
  assert.deepEqual(parseLogOpts([]), { maxSize: 0, maxFile: 1 });
  assert.deepEqual(parseLogOpts(["max-size=4k"]), { maxSize: 4096, maxFile: 1 });
  for (const bad of [["max-size=lots"], ["max-file=0"], ["mode=non-blocking"], ["max-file=3"]]) {
    assert.throws(() => parseLogOpts(bad), MicroError, bad.join(" "));
  }
});

function rec(
  extra: Partial<ContainerRecord & RestartRecord> = {},
): ContainerRecord & RestartRecord {
  return {
    id: "a".repeat(64),
    name: "x",
    runId: "x",
    image: null,
    command: ["true"],
    profiles: ["default"],
    options: [],
    rm: false,
    created: "2026-01-01T00:00:00Z",
    state: "exited",
    pid: 1,
    startTime: 1,
    ...extra,
  };
}

Deno.test("restart policies: on-failure:N counts, always, unless-stopped, no", () => {
  assert.deepEqual(parseRestart("on-failure:3"), { name: "on-failure", max: 3 });
  assert.deepEqual(parseRestart("always"), { name: "always", max: 0 });
  assert.throws(() => parseRestart("always:3"), MicroError);
  assert.throws(() => parseRestart("sometimes"), MicroError);
  const three = parseRestart("on-failure:3");
  assert.equal(shouldRestart(three, 1, rec({ restartCount: 2 })), true);
  assert.equal(shouldRestart(three, 1, rec({ restartCount: 3 })), false);
  assert.equal(shouldRestart(three, 0, rec()), false);
  assert.equal(shouldRestart(parseRestart("on-failure"), 1, rec({ restartCount: 99 })), true);
  assert.equal(shouldRestart(parseRestart("always"), 0, rec()), true);
  assert.equal(shouldRestart(parseRestart("unless-stopped"), 0, rec()), true);
  assert.equal(shouldRestart(parseRestart("no"), 1, rec()), false);
});

Deno.test("back-off: 100 ms doubling, back to 100 ms after 10 s up", () => {
  const r = rec({ startedAt: "2026-01-01T00:00:00.000Z", finishedAt: "2026-01-01T00:00:01.000Z" });
  assert.deepEqual([nextDelay(r), nextDelay(r), nextDelay(r), nextDelay(r)], [100, 200, 400, 800]);
  r.finishedAt = "2026-01-01T00:00:10.000Z";
  assert.equal(nextDelay(r), 100);
  r.finishedAt = "2026-01-01T00:00:01.000Z";
  assert.equal(nextDelay(r), 200);
  r.backoff = 30;
  assert.equal(nextDelay(r), 60_000);
});

Deno.test("logs --since: RFC 3339, Unix seconds, durations", () => {
  const now = Date.parse("2026-01-02T00:00:00Z");
  assert.equal(parseSince("2026-01-01T23:00:00Z", now), now - 3_600_000);
  assert.equal(parseSince("1767312000", now), 1767312000_000);
  assert.equal(parseSince("10m", now), now - 600_000);
  assert.equal(parseSince("1h30m", now), now - 5_400_000);
  assert.throws(() => parseSince("yesterday", now), MicroError);
});

Deno.test("start: the run that makes a kept container again (detached, its command)", () => {
  assert.deepEqual(
    startArgv(rec({ image: { path: "/img" }, options: ["--rm", "--name", "x"], command: ["sh"] })),
    ["run", "--name", "x", "-d", "/img", "sh"],
  );
  assert.deepEqual(
    startArgv(
      rec({
        image: { id: "sha256:1", name: "alpine" },
        options: ["-d"],
        command: ["/bin/sh", "-c", "x"],
      }),
    ),
    ["run", "-d", "--entrypoint", "/bin/sh", "alpine", "-c", "x"],
  );
  // its own store, after the options as typed (the last --root wins)
  assert.deepEqual(
    startArgv(rec({ image: { path: "/img" }, options: ["--root", "rel"], command: ["sh"] }), "/s"),
    ["run", "--root", "rel", "-d", "--root", "/s", "/img", "sh"],
  );
});

Deno.test("supervisor env: built from micro's settings; the caller's loader, Deno and V8 knobs stay out", () => {
  const env = supervisorEnv(
    {
      HOME: "/root",
      MICRO_ROOT: "/srv/store",
      MICRO_DEFAULT_NETWORK: "none",
      PATH: "/home/u/bin:/usr/bin",
      LD_PRELOAD: "/tmp/evil.so",
      LD_LIBRARY_PATH: "/tmp",
      DENO_V8_FLAGS: "--allow-natives-syntax",
      DENO_DIR: "/tmp/cache",
      DENO_CERT: "/tmp/ca.pem",
      NODE_OPTIONS: "--require /tmp/x.js",
      MICRO_EXE: "/usr/bin/runc",
      MICRO_STATE_ROOT: "/elsewhere",
    },
    "/run/micro",
    "/var/cache/micro/abc/deno_dir",
  );
  assert.deepEqual(env, {
    HOME: "/root",
    MICRO_ROOT: "/srv/store",
    MICRO_DEFAULT_NETWORK: "none",
    PATH: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    MICRO_STATE_ROOT: "/run/micro",
    DENO_NO_UPDATE_CHECK: "1",
    DENO_DIR: "/var/cache/micro/abc/deno_dir_supervisor",
    DENO_V8_FLAGS: "--max-semi-space-size=1,--optimize-for-size",
  });
});

Deno.test("runner env: a restart runs under micro's own V8 flags, with the launcher's Deno cache", () => {
  const sup = supervisorEnv({ HOME: "/root" }, "/run/micro", "/var/cache/micro/abc/deno_dir");
  const env = runnerEnv(sup);
  assert.equal(env.DENO_V8_FLAGS, undefined);
  assert.equal(env.DENO_DIR, "/var/cache/micro/abc/deno_dir");
  assert.deepEqual({ ...env, DENO_DIR: sup.DENO_DIR, DENO_V8_FLAGS: sup.DENO_V8_FLAGS }, sup);
  // Without the launcher (deno run main.ts) there is no cache to name.
  assert.equal(runnerEnv(supervisorEnv({}, "/run/micro")).DENO_DIR, undefined);
  // A process outside a supervisor (a command, `micro _supervise` by hand): its cache kept.
  assert.equal(runnerEnv({ DENO_DIR: "/c/deno_dir" }).DENO_DIR, "/c/deno_dir");
});

Deno.test("tools/build.sh reads core/v8.ts's V8_FLAGS and BUNDLE_FLAGS as they are (its sed lines, run here)", () => {
  const build = Deno.readTextFileSync(new URL("../../tools/build.sh", import.meta.url));
  const root = new URL("../..", import.meta.url).pathname;
  for (const [name, want] of [["V8_FLAGS", V8_FLAGS], ["BUNDLE_FLAGS", BUNDLE_FLAGS]]) {
    const line = build.split("\n").find((l) => l.startsWith(`${name}=$(`));
    assert.ok(line, `no ${name}= line in tools/build.sh`);
    const out = new Deno.Command("sh", {
      args: ["-c", `${line}\nprintf '%s' "$${name}"`, "tools/build.sh"],
      cwd: root,
    }).outputSync();
    assert.equal(new TextDecoder().decode(out.stdout), want, name);
  }
  assert.match(BUNDLE_FLAGS, /(^| )--no-config( |$)/);
});

Deno.test("micro's own processes: the bundle runs without any deno.json (--no-config); a checkout with its own", () => {
  const noConfig = ["--no-config", "--no-lock", "--cached-only", "--no-remote", "--no-npm"];
  // The launcher's bundle in a cache under /tmp: /tmp/deno.json (anyone's) is never read.
  assert.deepEqual(
    denoRunArgs(
      "/tmp/micro-0/h/deno",
      "file:///tmp/micro-0/h/micro.js",
      "--single-threaded",
      () => true,
    ),
    [
      "/tmp/micro-0/h/deno",
      "run",
      "-A",
      "--v8-flags=--single-threaded",
      "--no-prompt",
      "--quiet",
      ...noConfig,
      "/tmp/micro-0/h/micro.js",
    ],
  );
  assert.deepEqual(
    denoRunArgs(
      "/usr/bin/deno",
      "file:///src/micro/main.ts",
      "--x",
      (p) => p === "/src/micro/deno.json",
    ).slice(6),
    ["--config", "/src/micro/deno.json", "/src/micro/main.ts"],
  );
  // main.ts without a deno.json beside it: nothing is looked for either.
  assert.deepEqual(denoRunArgs("d", "file:///a/main.ts", "--x", () => false).slice(6, 7), [
    "--no-config",
  ]);
});

Deno.test("logs: a log file is opened in its directory fd, only a regular file, no link, no FIFO", () => {
  const dir = Deno.makeTempDirSync({ prefix: "micro-logs-" });
  const sys = openLibc();
  const dirFd = openLogDir(sys, dir);
  try {
    Deno.writeTextFileSync(`${dir}/id-json.log`, "line\n");
    Deno.writeTextFileSync(`${dir}/../micro-logs-secret`, "secret\n");
    Deno.symlinkSync(`${dir}/../micro-logs-secret`, `${dir}/id-json.log.1`);
    // A FIFO: opened by name for reading, it would block `micro logs` until a writer came.
    const mk = new Deno.Command("mkfifo", { args: [`${dir}/id-json.log.2`] }).outputSync();
    assert.ok(mk.success);
    Deno.mkdirSync(`${dir}/id-json.log.3`);
    const f = openLog(sys, dirFd, "id-json.log");
    assert.ok(f);
    assert.equal(new TextDecoder().decode(readAll(f)), "line\n");
    f.close();
    for (const name of ["id-json.log.1", "id-json.log.2", "id-json.log.3", "none", "../x"]) {
      assert.equal(openLog(sys, dirFd, name), null, name);
    }
  } finally {
    sys.close(dirFd);
    Deno.removeSync(`${dir}/../micro-logs-secret`);
    Deno.removeSync(dir, { recursive: true });
  }
});

function readAll(f: Deno.FsFile): Uint8Array {
  const buf = new Uint8Array(64);
  const n = f.readSync(buf) ?? 0;
  return buf.subarray(0, n);
}

for (const [maxFile, lock] of [[1, true], [2, true], [3, true], [2, false], [3, false]] as const) {
  const how = lock ? "" : ", the writer not waiting for the lock";
  Deno.test(`logs: the files read while another thread rotates them are one moment's (max-file=${maxFile}${how})`, async () => {
    const dir = Deno.makeTempDirSync({ prefix: "micro-logs-" });
    const sys = openLibc();
    const dirFd = openLogDir(sys, dir);
    const worker = new Worker(new URL("./_log_writer.ts", import.meta.url), { type: "module" });
    try {
      const writing = new Promise((r) => worker.onmessage = r);
      worker.postMessage({ path: `${dir}/id-json.log`, maxFile, lock });
      await writing;
      let last = -1;
      let sets = 0;
      let whole = 0;
      const until = Date.now() + 1500;
      while (Date.now() < until) {
        const files = openLogSet(sys, dirFd, "id-json.log", maxFile);
        const got: number[] = [];
        try {
          for (const f of files) {
            readLines(f, 0, (line) => got.push(Number(JSON.parse(line).log.slice(1))));
          }
          // every file there once the writer has rotated enough (none missing mid-rotation;
          // a writer that skips the lock may be caught halfway: a rename done, the next not
          // yet, all lines there all the same, checked below)
          if (lock && got.at(-1)! > 200) assert.equal(files.length, maxFile, `set ${sets}`);
        } finally {
          for (const f of files) f.close();
        }
        if (!got.length) continue;
        sets++;
        // one moment's files: every line from the oldest kept to the newest, none missing
        got.forEach((n, k) => assert.equal(n, got[0] + k, `set ${sets}: ${got.join(" ")}`));
        // and never older than what an earlier read already saw
        assert.ok(got.at(-1)! >= last, `newest line ${got.at(-1)} after ${last}`);
        last = got.at(-1)!;
        // the rotated files full: at least max-file - 1 of them (600 bytes, 9 lines or more)
        if (got.at(-1)! > 200 && got.length >= (maxFile - 1) * 9) whole++;
      }
      assert.ok(sets > 50, `only ${sets} reads`);
      assert.ok(whole > sets / 2, `${whole} of ${sets} sets had every rotated file full`);
    } finally {
      const done = new Promise((r) => worker.onmessage = r);
      worker.postMessage("stop");
      await done;
      worker.terminate();
      sys.close(dirFd);
      Deno.removeSync(dir, { recursive: true });
    }
  });
}

Deno.test("logs: a log with no file yet, one file, or a gap that stays is read at once, or after a few tries", () => {
  const dir = Deno.makeTempDirSync({ prefix: "micro-logs-" });
  const libc = openLibc();
  let sleeps = 0;
  // libc, but each pause between tries counted, not slept
  const sys: Sys = Object.assign(Object.create(libc), {
    sleep: () => {
      sleeps++;
      return 0;
    },
  });
  const dirFd = openLogDir(sys, dir);
  const set = () => {
    sleeps = 0;
    const files = openLogSet(sys, dirFd, "id-json.log", 3);
    const text = files.map((f) => new TextDecoder().decode(readAll(f)));
    for (const f of files) f.close();
    return { text, sleeps };
  };
  try {
    // nothing written yet: no file, no retry
    assert.deepEqual(set(), { text: [], sleeps: 0 });
    Deno.writeTextFileSync(`${dir}/id-json.log`, "c\n");
    assert.deepEqual(set(), { text: ["c\n"], sleeps: 0 });
    Deno.writeTextFileSync(`${dir}/id-json.log.1`, "b\n");
    Deno.writeTextFileSync(`${dir}/id-json.log.2`, "a\n");
    assert.deepEqual(set(), { text: ["a\n", "b\n", "c\n"], sleeps: 0 });
    // .1 removed by hand: a gap no rotation closes, read as it is after a few tries
    Deno.removeSync(`${dir}/id-json.log.1`);
    const gap = set();
    assert.deepEqual(gap.text, ["a\n", "c\n"]);
    assert.ok(gap.sleeps >= 1 && gap.sleeps <= 3, `${gap.sleeps} tries`);
  } finally {
    sys.close(dirFd);
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("json-file: a rotation that cannot make the new file keeps logging in the full one", () => {
  const dir = Deno.makeTempDirSync({ prefix: "micro-logs-" });
  const sys = openLibc();
  try {
    const path = `${dir}/x-json.log`;
    // max-file=1 makes `.new` and renames it over the log: a directory there fails it
    Deno.mkdirSync(`${path}.new`);
    const log = new JsonLog(path, { maxSize: 300, maxFile: 1 }, () => T, sys);
    for (let i = 0; i < 20; i++) log.write("stdout", enc.encode(`line ${i}\n`));
    let got = entries(path).map((e) => e.log);
    assert.equal(got.length, 20, "every line kept, past max-size");
    Deno.removeSync(`${path}.new`);
    for (let i = 20; i < 25; i++) log.write("stdout", enc.encode(`line ${i}\n`));
    log.close();
    got = entries(path).map((e) => e.log);
    assert.ok(Deno.statSync(path).size <= 300, "rotated once it could be");
    assert.equal(got.at(-1), "line 24\n");
    // the directory's fd closed with the log: nothing of it left open
    const open = [...Deno.readDirSync("/proc/self/fd")].filter((e) => {
      try {
        return Deno.readLinkSync(`/proc/self/fd/${e.name}`) === dir;
      } catch {
        return false;
      }
    });
    assert.equal(open.length, 0);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("json-file: a rotation waits for a reader's lock, a bounded time", () =>
  withLogDir((dir, sys, reader) => {
    const path = `${dir}/x-json.log`;
    const log = new JsonLog(path, { maxSize: 300, maxFile: 2 }, () => T, sys);
    for (let i = 0; i < 4; i++) log.write("stdout", enc.encode(`line ${i}\n`));
    assert.equal(exists(`${path}.1`), false);
    // a reader stopped while it holds the lock: the rotation waits, then goes on without it
    assert.equal(sys.flock(reader, C.LOCK_SH), 0);
    const t0 = performance.now();
    for (let i = 4; i < 8; i++) log.write("stdout", enc.encode(`line ${i}\n`));
    const waited = performance.now() - t0;
    assert.ok(exists(`${path}.1`), "not rotated");
    // it waited (the writer's clock is Date.now's whole milliseconds: not to the tenth)
    assert.ok(waited >= ROTATE_WAIT_MS / 2, `waited ${waited} ms`);
    assert.ok(Deno.statSync(path).size <= 300 && Deno.statSync(`${path}.1`).size <= 300);
    assert.equal(sys.flock(reader, C.LOCK_UN), 0);
    log.close();
    const all = [`${path}.1`, path].flatMap((f) => entries(f).map((e) => e.log));
    assert.deepEqual(all, Array.from({ length: 8 }, (_, i) => `line ${i}\n`));
  }));

Deno.test("logs -f: each look reads what came since the last, across two rotations and more", () =>
  withLogDir((dir, sys, dirFd) => {
    const log = new JsonLog(`${dir}/id-json.log`, { maxSize: 300, maxFile: 3 }, () => T, sys);
    let n = 0;
    const write = (k: number) => {
      for (let i = 0; i < k; i++) log.write("stdout", enc.encode(`line ${n++}\n`));
    };
    const seen: number[] = [];
    const look = (pos: FollowPos) =>
      followStep(sys, dirFd, "id-json.log", 3, pos, (line) => {
        seen.push(Number(JSON.parse(line).log.split(" ")[1]));
      });
    write(3);
    let pos = look(START);
    assert.deepEqual(seen, [0, 1, 2]);
    // about 5 lines a file: two rotations between two looks, nothing lost or repeated
    write(9);
    pos = look(pos);
    assert.deepEqual(seen, Array.from({ length: 12 }, (_, i) => i));
    pos = look(pos);
    assert.equal(seen.length, 12, "read again with nothing new");
    // files rotated out between two looks are gone (as with Docker); the rest comes in
    // order, to the last line, none twice (an inode freed by a removed file and given to a
    // new one read it from the old offset: the file held open keeps its own)
    write(40);
    pos = look(pos);
    seen.forEach((x, k) => k && assert.ok(x > seen[k - 1], `${seen.join(" ")}`));
    const after = seen.slice(12);
    after.forEach((x, k) => assert.equal(x, after[0] + k, `${seen.join(" ")}`));
    assert.equal(seen.at(-1), n - 1);
    pos.file?.close();
    log.close();
  }));

/** A temporary log directory, libc, and the directory's fd (openLogDir); all gone after. */
function withLogDir(fn: (dir: string, sys: Sys, dirFd: number) => void): void {
  const dir = Deno.makeTempDirSync({ prefix: "micro-logs-" });
  const sys = openLibc();
  const dirFd = openLogDir(sys, dir);
  try {
    fn(dir, sys, dirFd);
  } finally {
    sys.close(dirFd);
    Deno.removeSync(dir, { recursive: true });
  }
}
