/**
 * The watchdog (core/engine/watchdog.ts) through the recording Sys: what it keeps, how it
 * leaves when micro ends normally, how it kills a run's cgroups through their fds when micro
 * died (v2 cgroup.kill, v1 freezer, signals), and how the engine forks it once per run, in
 * the same sweep as the container's child, and dismisses it after cleanup.
 */
import assert from "node:assert/strict";
import { READY_RECORD } from "../../core/engine/child.ts";
import { execute } from "../../core/engine/mod.ts";
import { Watchdog } from "../../core/engine/watchdog.ts";
import { MicroError } from "../../core/errors.ts";
import { type Op, op } from "../../core/ops.ts";
import { FakeExit, RecordingSys } from "../../core/sys/fake.ts";
import { C } from "../../core/sys/mod.ts";

const enc = new TextEncoder();
const EOF = new Uint8Array(0);
const BENEATH = C.RESOLVE_BENEATH | C.RESOLVE_NO_SYMLINKS;
const WRONLY = C.O_WRONLY | C.O_CLOEXEC;
const RDONLY = C.O_RDONLY | C.O_CLOEXEC;
const open = (fd: number, name: string, flags: number) =>
  `openat2(${fd}, "${name}", 0x${flags.toString(16)}, 0, 0x${BENEATH.toString(16)})`;

/** Runs the watchdog's program on the fake until it exits; returns the exit code. */
function runIt(w: Watchdog, sys: RecordingSys): number {
  try {
    w.run(sys);
  } catch (e) {
    if (e instanceof FakeExit) return e.code;
    throw e;
  }
  assert.fail("the watchdog returned");
}

/** Its prologue, with the pipe's read end 3 and one directory fd 5 kept. */
const PROLOGUE = [
  "ignoreSignals()",
  "setsid()",
  "prctl(4, 0, 0, 0, 0)",
  'chdir("/")',
  "closeRange(0, 0x2, 0x0)",
  "closeRange(4, 0x4, 0x0)",
  "closeRange(6, 0x7fffffff, 0x0)",
  "read(3, 1)",
];

Deno.test("watchdog: prepare opens a pipe and each cgroup dir; the fork keeps only those", () => {
  const sys = new RecordingSys();
  const w = Watchdog.prepare([{ path: "/cg/micro/r1", how: "cgroup.kill" }], sys);
  assert.deepEqual(sys.format({ results: true }), [
    "pipe2([3,4], 0x80000) = 0",
    `open("/cg/micro/r1", 0x${(C.O_DIRECTORY | C.O_CLOEXEC).toString(16)}, 0) = 5`,
  ]);
  sys.clear();
  // micro ends normally: one byte, and the watchdog leaves without touching anything.
  sys.scriptRead(3, new Uint8Array([0]));
  assert.equal(runIt(w, sys), 0);
  assert.deepEqual(sys.format(), [...PROLOGUE, "exit(0)"]);
});

Deno.test("watchdog: a throw in the forked watchdog ends it (exit 1); it never unwinds into micro's code", () => {
  const sys = new RecordingSys();
  const w = Watchdog.prepare([{ path: "/cg/micro/r1", how: "cgroup.kill" }], sys);
  sys.clear();
  sys.returns("chdir", () => true, () => {
    throw new TypeError("a bug");
  });
  assert.equal(runIt(w, sys), 1);
  assert.deepEqual(sys.format().slice(-2), ['chdir("/")', "exit(1)"]);
});

Deno.test("watchdog: a throw while killing one cgroup does not spare the next", () => {
  const sys = new RecordingSys();
  const w = Watchdog.prepare([
    { path: "/cg/micro/r1", how: "cgroup.kill" },
    { path: "/cg/micro/r2", how: "cgroup.kill" },
  ], sys);
  sys.clear();
  sys.scriptRead(3, EOF);
  sys.returns("openat2", (a) => a[0] === 5, () => {
    throw new TypeError("a bug");
  });
  assert.equal(runIt(w, sys), 0);
  const calls = sys.format();
  assert.ok(calls.includes(open(6, "cgroup.kill", WRONLY)), calls.join("\n"));
  assert.deepEqual(sys.written(7), enc.encode("1"));
  assert.equal(calls.at(-1), "exit(0)");
});

Deno.test("watchdog: EOF (micro died) kills the v2 cgroup through its fd with cgroup.kill", () => {
  const sys = new RecordingSys();
  const w = Watchdog.prepare([{ path: "/cg/micro/r1", how: "cgroup.kill" }], sys);
  sys.clear();
  sys.scriptRead(3, EOF);
  assert.equal(runIt(w, sys), 0);
  assert.deepEqual(sys.format(), [
    ...PROLOGUE,
    open(5, "cgroup.kill", WRONLY),
    "write(6, 1)",
    "close(6)",
    "exit(0)",
  ]);
  assert.deepEqual(sys.written(6), enc.encode("1"));
});

Deno.test("watchdog: without cgroup.kill, the listed pids are killed until none is left", () => {
  const sys = new RecordingSys().failOn("openat2", (a) => a[1] === "cgroup.kill", 2);
  const w = Watchdog.prepare([{ path: "/cg/micro/r1", how: "cgroup.kill" }], sys);
  sys.clear();
  // cgroup.procs is read in chunks: a pid may be split across two reads. Between the
  // first read and the pidfds, 345 ended and its pid went to a host process: the second
  // read does not list it, so it is not signalled.
  sys.scriptRead(3, EOF).scriptRead(6, enc.encode("12\n3"), enc.encode("45\n"), EOF)
    .scriptRead(9, enc.encode("12\n"), EOF)
    .scriptRead(10, EOF);
  assert.equal(runIt(w, sys), 0);
  assert.deepEqual(sys.format(), [
    ...PROLOGUE,
    open(5, "cgroup.kill", WRONLY),
    open(5, "cgroup.procs", RDONLY),
    "read(6, 4096)",
    "read(6, 4096)",
    "read(6, 4096)",
    "close(6)",
    "pidfdOpen(12, 0)",
    "pidfdOpen(345, 0)",
    open(5, "cgroup.procs", RDONLY),
    "read(9, 4096)",
    "read(9, 4096)",
    "close(9)",
    "pidfdSendSignal(7, 9)",
    "close(7)",
    "close(8)",
    "sleep(10)",
    open(5, "cgroup.procs", RDONLY),
    "read(10, 4096)",
    "close(10)",
    "exit(0)",
  ]);
});

for (const [errno, why] of [[38, "Linux < 5.3"], [1, "a seccomp filter's EPERM"]] as const) {
  Deno.test(`watchdog: without pidfds (${why}) a listed pid is killed by number`, () => {
    const sys = new RecordingSys().failOn("openat2", (a) => a[1] === "cgroup.kill", 2)
      .failOn("pidfdOpen", () => true, errno);
    const w = Watchdog.prepare([{ path: "/cg/micro/r1", how: "signal" }], sys);
    sys.clear();
    sys.scriptRead(3, EOF).scriptRead(6, enc.encode("12\n13\n"), EOF)
      .scriptRead(7, enc.encode("13\n"), EOF)
      .scriptRead(8, EOF);
    assert.equal(runIt(w, sys), 0);
    assert.deepEqual(sys.format().filter((l) => /kill|pidfd/.test(l)), [
      "pidfdOpen(12, 0)",
      "pidfdOpen(13, 0)",
      "kill(13, 9)",
    ]);
  });
}

Deno.test("watchdog: a pidfd whose signal is refused (EPERM) is killed by number; one gone (ESRCH) is not", () => {
  const sys = new RecordingSys().failOn("openat2", (a) => a[1] === "cgroup.kill", 2)
    .failOn("pidfdSendSignal", (a) => a[0] === 7, 1)
    .failOn("pidfdSendSignal", (a) => a[0] === 8, 3);
  const w = Watchdog.prepare([{ path: "/cg/micro/r1", how: "signal" }], sys);
  sys.clear();
  // cgroup.procs on fd 6, the pidfds 7 and 8, cgroup.procs again on 9; the next pass's on 10.
  sys.scriptRead(3, EOF).scriptRead(6, enc.encode("12\n13\n"), EOF)
    .scriptRead(9, enc.encode("12\n13\n"), EOF)
    .scriptRead(10, EOF);
  assert.equal(runIt(w, sys), 0);
  assert.deepEqual(sys.format().filter((l) => /kill|pidfd/.test(l)), [
    "pidfdOpen(12, 0)",
    "pidfdOpen(13, 0)",
    "pidfdSendSignal(7, 9)",
    "kill(12, 9)",
    "pidfdSendSignal(8, 9)",
  ]);
});

Deno.test("watchdog: v1 freezes the cgroup, kills every pid in it, thaws", () => {
  const sys = new RecordingSys();
  const w = Watchdog.prepare([{ path: "/cg/freezer/micro/r1", how: "freezer" }], sys);
  sys.clear();
  sys.scriptRead(3, EOF)
    .scriptRead(7, enc.encode("FREEZING\n"))
    .scriptRead(8, enc.encode("FROZEN\n"))
    .scriptRead(9, enc.encode("100\n101"), EOF)
    .scriptRead(12, enc.encode("101\n100\n"), EOF)
    .scriptRead(14, EOF);
  assert.equal(runIt(w, sys), 0);
  assert.deepEqual(sys.format(), [
    ...PROLOGUE,
    open(5, "freezer.state", WRONLY),
    "write(6, 6)",
    "close(6)",
    open(5, "freezer.state", RDONLY),
    "read(7, 16)",
    "close(7)",
    "sleep(5)",
    open(5, "freezer.state", RDONLY),
    "read(8, 16)",
    "close(8)",
    open(5, "cgroup.procs", RDONLY),
    "read(9, 4096)",
    "read(9, 4096)",
    "close(9)",
    "pidfdOpen(100, 0)",
    "pidfdOpen(101, 0)",
    open(5, "cgroup.procs", RDONLY),
    "read(12, 4096)",
    "read(12, 4096)",
    "close(12)",
    "pidfdSendSignal(10, 9)",
    "close(10)",
    "pidfdSendSignal(11, 9)",
    "close(11)",
    open(5, "freezer.state", WRONLY),
    "write(13, 6)",
    "close(13)",
    open(5, "cgroup.procs", RDONLY),
    "read(14, 4096)",
    "close(14)",
    "exit(0)",
  ]);
  assert.deepEqual(sys.written(6), enc.encode("FROZEN"));
  assert.deepEqual(sys.written(13), enc.encode("THAWED"));
});

Deno.test("watchdog: a directory that is gone (removed, maybe made again by name) is not touched", () => {
  // The fd is of the run's own directory: once removed, nothing beneath it opens.
  const sys = new RecordingSys().failOn("openat2", 2);
  const w = Watchdog.prepare([{ path: "/cg/micro/r1", how: "cgroup.kill" }], sys);
  sys.clear();
  sys.scriptRead(3, EOF);
  assert.equal(runIt(w, sys), 0);
  assert.deepEqual(sys.names().filter((n) => n === "kill" || n === "write"), []);
});

Deno.test("watchdog: in micro, the fork keeps the write end only; dismiss writes one byte, once", () => {
  const sys = new RecordingSys();
  const w = Watchdog.prepare(
    [{ path: "/cg/a", how: "signal" }, { path: "/cg/b", how: "signal" }],
    sys,
  );
  sys.clear();
  w.forked(777, sys);
  w.dismiss(sys);
  w.dismiss(sys);
  // and reaps it once it has left (WNOHANG: here at once)
  assert.deepEqual(sys.format(), [
    "close(3)",
    "close(5)",
    "close(6)",
    "write(4, 1)",
    "close(4)",
    "reap(777)",
  ]);
  // Never forked: everything is closed, nothing written.
  const sys2 = new RecordingSys();
  Watchdog.prepare([{ path: "/cg/a", how: "signal" }], sys2).dismiss(sys2);
  assert.deepEqual(sys2.format().slice(2), ["close(3)", "close(5)", "close(4)"]);
});

Deno.test("watchdog: one not gone yet when dismissed is reaped at the next dismissal (a serve worker keeps no zombies)", () => {
  const sys = new RecordingSys().returns("reap", (a) => a[0] === 801, 0, 1);
  const first = Watchdog.prepare([{ path: "/cg/a", how: "signal" }], sys);
  first.forked(801, sys);
  first.dismiss(sys); // still exiting: not reaped
  const second = Watchdog.prepare([{ path: "/cg/a", how: "signal" }], sys);
  second.forked(802, sys);
  sys.clear();
  second.dismiss(sys);
  assert.deepEqual(sys.format().filter((c) => c.startsWith("reap")), ["reap(802)", "reap(801)"]);
  sys.clear();
  Watchdog.prepare([{ path: "/cg/a", how: "signal" }], sys).dismiss(sys);
  assert.deepEqual(sys.format().filter((c) => c.startsWith("reap")), [], "reaped twice");
});

Deno.test("watchdog: a cgroup dir that cannot be opened fails the run, closing what was open", () => {
  const sys = new RecordingSys().failOn("open", (a) => a[0] === "/cg/b", 24);
  let line = "";
  try {
    Watchdog.prepare([{ path: "/cg/a", how: "signal" }, { path: "/cg/b", how: "signal" }], sys);
  } catch (e) {
    assert.ok(e instanceof MicroError);
    line = e.line();
  }
  assert.equal(line, "prepare: engine: open path=/cg/b: for the watchdog: EMFILE");
  assert.deepEqual(sys.format().slice(3), ["close(3)", "close(4)", "close(5)"]);
});

// ---- In the engine -------------------------------------------------------------------------

const READY = { record: [READY_RECORD, 0] as [number, number] };

/**
 * A plan with one cgroup of the run's own (a temp dir stands in for it), without a pid
 * namespace of its own (`--pid host`): the watchdog is a fork of micro.
 */
function cgroupPlan(dir: string): Op[] {
  return [
    op("prepare", "cgroups", "cgroup-create", { path: dir, shared: false }),
    op("clone", "uts", "namespace", { flag: "CLONE_NEWUTS" }),
    op("exec", "process", "execve", { args: ["true"], env: [], path: ["/bin/true"] }),
    op("cleanup", "cgroups", "cgroup-kill", { path: dir, how: "cgroup.kill" }),
  ];
}

/** The same with a pid namespace of its own: the watchdog is the static program. */
function pidnsPlan(dir: string): Op[] {
  const plan = cgroupPlan(dir);
  plan.splice(1, 0, op("clone", "pid", "namespace", { flag: "CLONE_NEWPID" }));
  return plan;
}

async function withCgroupDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const tmp = Deno.makeTempDirSync({ prefix: "micro-watchdog-" });
  try {
    await fn(`${tmp}/r1`);
  } finally {
    Deno.removeSync(tmp, { recursive: true });
  }
}

const OPTS = { rootPath: "/run/micro/r1/root", terminal: false, stdin: false };

/** The one line of the MicroError a run of `plan` fails with. */
async function failedLine(plan: Op[], sys: RecordingSys): Promise<string> {
  try {
    await execute(plan, OPTS, sys);
  } catch (e) {
    assert.ok(e instanceof MicroError, String(e));
    return e.line();
  }
  assert.fail("the run did not fail");
}

Deno.test("execute: the watchdog is forked in the container's sweep, before the release, and dismissed after cleanup", async () => {
  await withCgroupDir(async (dir) => {
    const sys = new RecordingSys().scriptRecv(8, READY);
    assert.deepEqual(await execute(cgroupPlan(dir), OPTS, sys), { exitCode: 0 });
    const calls = sys.format();
    // The run's cgroup made (through sys), the watchdog's pipe 3,4 and the cgroup's fd 5; the
    // container's pipe 6,7, socket 8,9.
    assert.deepEqual(calls.slice(0, 3), [
      `mkdirat(-100, "${dir}", 0o755)`,
      "pipe2([3,4], 0x80000)",
      `open("${dir}", 0x${(C.O_DIRECTORY | C.O_CLOEXEC).toString(16)}, 0)`,
    ]);
    const at = calls.indexOf("prepareFork()");
    assert.deepEqual(calls.slice(at, at + 5), [
      "prepareFork()",
      "clone(0x4000011)", // the container's child
      "fork()", // the watchdog: glibc's fork (its atfork handlers), no namespace
      "close(3)",
      "close(5)",
    ]);
    assert.ok(calls.indexOf("write(7, 1)") > at, "the child is released after the fork");
    assert.deepEqual(calls.slice(-3, -1), ["write(4, 1)", "close(4)"]);
    assert.match(calls.at(-1)!, /^reap\(\d+\)$/); // the dismissed watchdog, once it has left
  });
});

Deno.test("execute: with a forked watchdog (sharing micro's pages) micro's heap is never compacted", async () => {
  await withCgroupDir(async (dir) => {
    const sys = new RecordingSys().scriptRecv(8, READY);
    assert.deepEqual(await execute(cgroupPlan(dir), OPTS, sys), { exitCode: 0 });
    assert.ok(sys.format().includes("fork()"));
    assert.equal(sys.timers.length, 0, "a compaction was timed");
  });
  // The static watchdog shares nothing: the compaction is timed.
  await withCgroupDir(async (dir) => {
    const sys = new RecordingSys().scriptRecv(10, READY);
    assert.deepEqual(await execute(pidnsPlan(dir), OPTS, sys), { exitCode: 0 });
    assert.equal(sys.timers.length, 1);
  });
});

Deno.test("execute: a start retried after a signal death keeps the one watchdog", async () => {
  await withCgroupDir(async (dir) => {
    const sys = new RecordingSys({ clonePid: 4243 })
      .returns("clone", () => true, 4242, 1)
      .scriptWait(9)
      .scriptRecv(18, READY);
    assert.deepEqual(await execute(cgroupPlan(dir), OPTS, sys), { exitCode: 0 });
    const clones = sys.format().filter((c) => /^(clone|fork)\(/.test(c));
    assert.deepEqual(clones, ["clone(0x4000011)", "fork()", "clone(0x4000011)"]);
    assert.deepEqual(sys.written(4), new Uint8Array([0]), "dismissed once");
  });
});

Deno.test("execute: a failed watchdog fork kills the child and fails the run", async () => {
  await withCgroupDir(async (dir) => {
    const sys = new RecordingSys().failOn("fork", () => true, 11);
    const line = await failedLine(cgroupPlan(dir), sys);
    assert.match(line, /^clone: engine: fork for="the watchdog": EAGAIN/);
    assert.ok(sys.format().includes("kill(4242, 9)"));
    assert.deepEqual(sys.written(4), new Uint8Array(0), "nothing to dismiss");
    assert.ok(sys.format().includes("close(4)"));
  });
});

Deno.test("execute: without a cgroup of the run's own there is no watchdog", async () => {
  const plan: Op[] = [
    op("clone", "pid", "namespace", { flag: "CLONE_NEWPID" }),
    op("exec", "process", "execve", { args: ["true"], env: [], path: ["/bin/true"] }),
  ];
  const sys = new RecordingSys().scriptRecv(5, READY);
  assert.deepEqual(await execute(plan, OPTS, sys), { exitCode: 0 });
  const forks = sys.format().filter((c) => /^(clone|fork|spawn)\(/.test(c));
  assert.deepEqual(forks, ["clone(0x20000011)"]);
});

Deno.test("execute: with a pid namespace of its own, the watchdog is the static program, spawned after the clone with its fds", async () => {
  await withCgroupDir(async (dir) => {
    const sys = new RecordingSys().scriptRecv(10, READY);
    assert.deepEqual(await execute(pidnsPlan(dir), OPTS, sys), { exitCode: 0 });
    const calls = sys.format();
    // The pipe 3,4, the cgroup's fd 5, the program's memfd 6 and /dev/null 7.
    assert.deepEqual(calls.filter((c) => /^(pipe2|open|memfdCreate)\(/.test(c)).slice(0, 4), [
      "pipe2([3,4], 0x80000)",
      `open("${dir}", 0x${(C.O_DIRECTORY | C.O_CLOEXEC).toString(16)}, 0)`,
      'memfdCreate("micro-watchdog", 0x13)',
      'open("/dev/null", 0x80002, 0)',
    ]);
    assert.equal(calls.filter((c) => c.startsWith("fork(")).length, 0, "forked");
    const at = calls.indexOf("clone(0x24000011)");
    assert.ok(at > 0, calls.join("\n"));
    // pidfd of the child, then the program: 0 the pipe, 1-2 /dev/null, 3 the pidfd, 4 the v2
    // cgroup dir, 5 /dev/null (no v1 freezer).
    const spawn = calls.findIndex((c) => c.startsWith("spawn("));
    assert.ok(spawn > at, "not spawned after the clone");
    assert.match(
      calls[spawn],
      /^spawn\("\/proc\/self\/fd\/6", \["micro-watchdog"\], \[\], \[3,7,7,\d+,5,7\], "session"\)$/,
    );
    assert.ok(calls.indexOf("write(9, 1)") > spawn, "the child is released after the spawn");
    // Only the pipe's write end stays: dismissed after cleanup.
    for (const fd of [3, 5, 6, 7]) {
      assert.ok(calls.slice(spawn).includes(`close(${fd})`), `fd ${fd}`);
    }
    assert.deepEqual(calls.slice(-3, -1), ["write(4, 1)", "close(4)"]);
    assert.match(calls.at(-1)!, /^reap\(\d+\)$/); // the dismissed watchdog, once it has left
  });
});

Deno.test("execute: the watchdog program is spawned pinned to micro's CPU, and both get micro's CPUs back after", async () => {
  await withCgroupDir(async (dir) => {
    const sys = new RecordingSys().scriptRecv(10, READY);
    assert.deepEqual(await execute(pidnsPlan(dir), OPTS, sys), { exitCode: 0 });
    const calls = sys.format();
    const spawn = calls.findIndex((c) => c.startsWith("spawn("));
    const get = calls.indexOf("schedGetaffinity(0)");
    assert.ok(get >= 0 && get < calls.indexOf("clone(0x24000011)"), "mask read before the clone");
    // The fake: CPUs 0 and 1 allowed (mask 3), micro on CPU 1 (mask 2).
    const pid = sys.spawnPid;
    assert.deepEqual(calls.slice(spawn - 2, spawn + 3), [
      "getcpu()",
      "schedSetaffinity(0, [2,0,0,0,0,0,0,0])",
      calls[spawn],
      "schedSetaffinity(0, [3,0,0,0,0,0,0,0])",
      `schedSetaffinity(${pid}, [3,0,0,0,0,0,0,0])`,
    ]);
  });
});

Deno.test("execute: a spawn that fails pinned gives micro its CPUs back; a CPU outside its mask is not pinned", async () => {
  await withCgroupDir(async (dir) => {
    const sys = new RecordingSys().failOn("spawn", () => true, 11);
    await failedLine(pidnsPlan(dir), sys);
    const calls = sys.format();
    const spawn = calls.findIndex((c) => c.startsWith("spawn("));
    assert.deepEqual(calls.slice(spawn + 1).filter((c) => c.startsWith("schedSetaffinity(")), [
      "schedSetaffinity(0, [3,0,0,0,0,0,0,0])",
    ]);
  });
  await withCgroupDir(async (dir) => {
    // CPU 9: not among the fake's two.
    const sys = new RecordingSys().scriptRecv(10, READY);
    sys.getcpu = (cpu: Uint8Array) => {
      new Uint32Array(cpu.buffer, cpu.byteOffset, 1)[0] = 9;
      return 0;
    };
    assert.deepEqual(await execute(pidnsPlan(dir), OPTS, sys), { exitCode: 0 });
    assert.equal(sys.format().filter((c) => c.startsWith("schedSetaffinity(")).length, 0);
  });
});

Deno.test("execute: where micro's CPUs cannot be read or pinned, the watchdog program is spawned unpinned", async () => {
  for (const fail of ["schedGetaffinity", "getcpu", "schedSetaffinity"] as const) {
    await withCgroupDir(async (dir) => {
      const sys = new RecordingSys().failOn(fail, () => true, 22).scriptRecv(10, READY);
      assert.deepEqual(await execute(pidnsPlan(dir), OPTS, sys), { exitCode: 0 });
      const calls = sys.format();
      const spawn = calls.findIndex((c) => c.startsWith("spawn("));
      assert.ok(spawn > 0, fail);
      assert.equal(
        calls.slice(spawn).filter((c) => c.startsWith("schedSetaffinity(")).length,
        0,
        `${fail}: a mask set back that was not changed`,
      );
    });
  }
});

Deno.test("execute: a failed spawn of the watchdog program kills the child and fails the run", async () => {
  await withCgroupDir(async (dir) => {
    const sys = new RecordingSys().failOn("spawn", () => true, 11);
    const line = await failedLine(pidnsPlan(dir), sys);
    assert.match(line, /^clone: engine: posix_spawn for="the watchdog": EAGAIN/);
    assert.ok(sys.format().includes("kill(4242, 9)"));
    assert.deepEqual(sys.written(4), new Uint8Array(0), "nothing to dismiss");
  });
});

Deno.test("execute: a start retried after a signal death gets a static watchdog of its own (the pidfd of its new child)", async () => {
  await withCgroupDir(async (dir) => {
    const sys = new RecordingSys({ clonePid: 4243 })
      .returns("clone", () => true, 4242, 1)
      .scriptWait(9)
      .scriptRecv(26, READY);
    assert.deepEqual(await execute(pidnsPlan(dir), OPTS, sys), { exitCode: 0 });
    const calls = sys.format();
    const spawned = calls.filter((c) =>
      (c.startsWith("pidfdOpen(") && c !== "pidfdOpen(0, 0)") || c.startsWith("spawn(")
    );
    assert.equal(spawned.length, 4, calls.join("\n"));
    assert.equal(calls.filter((c) => c === "pidfdOpen(0, 0)").length, 1, "probed once");
    assert.deepEqual([spawned[0], spawned[2]], ["pidfdOpen(4242, 0)", "pidfdOpen(4243, 0)"]);
    // The first one was dismissed before the retry, the second after the run.
    assert.deepEqual(sys.written(4), new Uint8Array([0]), "the first watchdog not dismissed");
    assert.ok(
      calls.indexOf("write(4, 1)") < calls.indexOf("pidfdOpen(4243, 0)"),
      "dismissed after the second spawn",
    );
    assert.deepEqual(sys.written(20), new Uint8Array([0]), "the second watchdog not dismissed");
  });
});

Deno.test("execute: where pidfd_open fails (Linux < 5.3, a seccomp filter), a pid-namespaced container's watchdog is forked", async () => {
  for (const errno of [38, 1]) {
    await withCgroupDir(async (dir) => {
      const sys = new RecordingSys().failOn("pidfdOpen", () => true, errno).scriptRecv(8, READY);
      assert.deepEqual(await execute(pidnsPlan(dir), OPTS, sys), { exitCode: 0 });
      const calls = sys.format().filter((c) => !c.startsWith("mkdirat("));
      assert.equal(calls[0], "pidfdOpen(0, 0)", "probed first");
      assert.equal(calls.filter((c) => /^spawn\(|"micro-watchdog"/.test(c)).length, 0);
      const at = calls.indexOf("prepareFork()");
      assert.deepEqual(calls.slice(at, at + 3), ["prepareFork()", "clone(0x24000011)", "fork()"]);
      assert.deepEqual(calls.slice(-3, -1), ["write(4, 1)", "close(4)"]);
      assert.match(calls.at(-1)!, /^reap\(\d+\)$/); // the dismissed watchdog, once it has left
    });
  }
});
