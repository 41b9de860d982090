/**
 * The vfork path of the engine (core/engine/vfork.ts): which runs take it, and what the parent
 * and the child do on it, through the recording Sys (its vforkExec runs the child's steps in
 * place, as the real child runs them while micro sleeps). The real stub runs in every root
 * integration test of a default profile (test/integration/).
 */
import assert from "node:assert/strict";
import { compileChild, READY_RECORD } from "../../core/engine/child.ts";
import { execute } from "../../core/engine/mod.ts";
import { canVfork, type VforkQuestion } from "../../core/engine/vfork.ts";
import { idmapTree, mappedUserns } from "../../core/engine/idmapped.ts";
import { MicroError } from "../../core/errors.ts";
import { type Op, op } from "../../core/ops.ts";
import { RecordingSys } from "../../core/sys/fake.ts";
import { C, cstr, cstrArray, fromBase64 } from "../../core/sys/mod.ts";
import { openLibc } from "../../core/sys/libc.ts";
import { VFORK_X86_64 } from "../../core/engine/trampoline.ts";

const ROOT = "/run/micro/c1/root";
const OPTS = { rootPath: ROOT, terminal: false, stdin: false };

const PLAN: Op[] = [
  op("clone", "mount", "namespace", { flag: "CLONE_NEWNS" }),
  op("clone", "pid", "namespace", { flag: "CLONE_NEWPID" }),
  op("clone", "uts", "namespace", { flag: "CLONE_NEWUTS" }),
  op("rootfs", "mount", "make-private", {}),
  op("rootfs", "mount", "bind-root", { source: "/img", readonly: false }),
  op("rootfs", "mount", "pivot-root", {}),
  op("identity", "uts", "sethostname", { name: "box" }),
  op("exec", "process", "chdir", { path: "/" }),
  op("exec", "process", "execve", { args: ["nope"], env: [], path: ["/usr/bin/nope"] }),
];
const CHILD_OPS = PLAN.filter((o) => o.phase !== "clone");
/** The child's context on the vfork path (fds as the fake hands them out). */
const VFORK_CTX = {
  rootPath: ROOT,
  syncRead: 3,
  syncWrite: 4,
  report: 6,
  stdio: [7, 9, 11] as const,
  exe: 12,
  sync: "none" as const,
};
const FLAGS = C.CLONE_NEWNS | C.CLONE_NEWPID | C.CLONE_NEWUTS | C.SIGCHLD;
const READY = { record: [READY_RECORD, 0] as [number, number] };

const question = (q: Partial<VforkQuestion> = {}): VforkQuestion => ({
  plan: PLAN,
  childOps: CHILD_OPS,
  flags: FLAGS,
  mode: "root",
  into: -1,
  options: { join: false, enter: false, execFifo: false, detached: false, seccompListener: false },
  forkedWatchdog: false,
  ...q,
});

Deno.test("canVfork: a root run that needs nothing of micro between the clone and the exec", () => {
  assert.equal(canVfork(question(), new RecordingSys({ vfork: true })), true);
  // No stub for this machine (aarch64, or a Sys without one).
  assert.equal(canVfork(question(), new RecordingSys()), false);
});

Deno.test("canVfork: every run that needs micro (or its own memory) before its exec forks", () => {
  const sys = new RecordingSys({ vfork: true });
  const no = (q: Partial<VforkQuestion>, why: string) =>
    assert.equal(canVfork(question(q), sys), false, why);
  // A user namespace: its maps are written by micro's thread, with root's rights.
  const root = (Deno.uid() ?? 0) === 0;
  assert.equal(canVfork(question({ mode: "maps", flags: FLAGS | C.CLONE_NEWUSER }), sys), root);
  no({ mode: "first" }, "OCI hooks or a beforeRelease");
  // cgroup v2: born in its cgroup by the stub's clone3.
  assert.equal(canVfork(question({ into: 7 }), sys), true);
  no({ forkedWatchdog: true }, "a forked watchdog");
  for (const k of ["join", "enter", "execFifo", "detached", "seccompListener"] as const) {
    no({ options: { ...question().options, [k]: true } }, k);
  }
  const withOp = (o: Op) => ({ plan: [...PLAN, o], childOps: [...PLAN, o] });
  no(withOp(op("attach", "net", "cni-add", {} as never)), "a CNI network");
  no(withOp(op("attach", "net", "usernet-start", {} as never)), "pasta or slirp4netns");
  no(withOp(op("attach", "user", "idmap-helper", {} as never)), "newuidmap (rootless)");
  no(withOp(op("attach", "x", "cpu-affinity", {} as never)), "an initial CPU affinity");
  no(withOp(op("rootfs", "x", "enter", {} as never)), "an enter fork");
  no(withOp(op("rootfs", "x", "setns", {} as never)), "a setns");
  no(withOp(op("rootfs", "user", "unshare", { flag: "CLONE_NEWUSER" })), "unshare(NEWUSER)");
  no(
    withOp(op("rootfs", "mount", "mount", { copyUp: true } as never)),
    "a tmpfs copy-up is charged to the container's cgroup",
  );
  no(withOp(op("restrict", "seccomp", "seccomp", { listener: true } as never)), "a listener");
  no(withOp(op("identity", "rlimits", "setrlimit", { resource: "as" } as never)), "RLIMIT_AS");
  no(withOp(op("identity", "x", "personality", {} as never)), "a personality");
  no(
    withOp(op("attach", "cgroups", "cgroup-join", { path: "/sys/fs/cgroup/net_cls,net_prio/m/c" })),
    "net_cls re-tags micro's sockets",
  );
  const mems = (run: string) => [
    op("prepare", "cgroups", "cgroup-write", {
      path: "/sys/fs/cgroup/cpuset/micro/cpuset.mems",
      value: "0-1",
      ifEmpty: true,
    } as never),
    op("prepare", "cgroups", "cgroup-write", {
      path: "/sys/fs/cgroup/cpuset/micro/c/cpuset.mems",
      value: run,
    } as never),
  ];
  no({ plan: [...PLAN, ...mems("1")] }, "--cpuset-mems: other nodes than the host's");
  const v2mems = op("prepare", "cgroups", "cgroup-write", {
    path: "/sys/fs/cgroup/micro/c/cpuset.mems",
    value: "0",
  } as never);
  no({ into: 7, plan: [...PLAN, v2mems] }, "cgroup v2 --cpuset-mems");
  assert.equal(canVfork(question({ plan: [...PLAN, ...mems("0-1")] }), sys), true);
  assert.equal(
    canVfork(
      question(withOp(op("identity", "rlimits", "setrlimit", { resource: "nofile" } as never))),
      sys,
    ),
    true,
  );
  // A cgroup namespace of its own is fine.
  assert.equal(
    canVfork(
      question(withOp(op("rootfs", "cgroupns", "unshare", { flag: "CLONE_NEWCGROUP" }))),
      sys,
    ),
    true,
  );
  const before = Deno.env.get("MICRO_VFORK");
  Deno.env.set("MICRO_VFORK", "0");
  try {
    no({}, "MICRO_VFORK=0");
  } finally {
    if (before === undefined) Deno.env.delete("MICRO_VFORK");
    else Deno.env.set("MICRO_VFORK", before);
  }
});

Deno.test('compileChild, sync none: cgroup.procs gets "0" right after PDEATHSIG, no wait, and the exec is the stub\'s', () => {
  const sys = new RecordingSys();
  const prog = compileChild(CHILD_OPS, {
    ...VFORK_CTX,
    cgroupProcs: [{ fd: 20, path: "/sys/fs/cgroup/pids/micro/c1/cgroup.procs" }],
  }, sys);
  // The death signal, then whether micro is still there (it may have died before it was
  // set: the sync pipe's write end closed), then the cgroups.
  assert.deepEqual(prog.info.slice(0, 3).map((s) => s.kind), [
    "prctl(PR_SET_PDEATHSIG)",
    "sync",
    "cgroup-join",
  ]);
  assert.equal(prog.info.filter((s) => s.kind === "sync").length, 1, "it never waits");
  // The last step stands for the exec: the stub's failure record names it.
  assert.equal(prog.vfork?.record[0], prog.run.length - 1);
  assert.equal(prog.info[prog.run.length - 1].kind, "execve");
  assert.deepEqual(prog.vfork?.argv.strings, ["", "", "/usr/bin/nope", "", "nope"]);
  assert.equal(prog.run[1](), 0);
  assert.deepEqual(sys.format().slice(-2), ["close(4)", "pollNow(3, 1)"]);
  prog.run[2]();
  assert.deepEqual(sys.written(20), new TextEncoder().encode("0"));
  // micro gone: the pipe's write end closed everywhere (POLLHUP): ESRCH, nothing else runs.
  const gone = new RecordingSys().returns("pollNow", () => true, C.POLLHUP);
  const orphan = compileChild(CHILD_OPS, VFORK_CTX, gone);
  assert.equal(orphan.run[1](), -3);
});

Deno.test("compileChild, sync none: the signal reset touches only micro's ignored signals (every one stays blocked until the exec, which resets the handled ones); the fork path's all", () => {
  const step = (ctx: Parameters<typeof compileChild>[1]) => {
    const sys = new RecordingSys();
    const prog = compileChild(CHILD_OPS, ctx, sys);
    const at = prog.info.findIndex((s) => s.kind === "reset signals");
    assert.ok(at > 0, "a reset step");
    sys.clear();
    prog.run[at]();
    return sys.format();
  };
  assert.deepEqual(step({ ...VFORK_CTX, ignoredSignals: [13] }), [
    'resetSignals("mask kept", "only 13")',
  ]);
  // /proc could not say: all of them.
  assert.deepEqual(step(VFORK_CTX), ['resetSignals("mask kept")']);
  assert.deepEqual(step({ ...VFORK_CTX, sync: "first", ignoredSignals: [13] }), ["resetSignals()"]);
});

Deno.test("Sys.ignoredSignals: this process's SigIgn (Deno ignores SIGPIPE), never KILL or STOP", () => {
  const got = openLibc().ignoredSignals() ?? [];
  assert.ok(got.includes(13), String(got));
  assert.ok(!got.includes(9) && !got.includes(19));
  const text = Deno.readTextFileSync("/proc/self/status");
  const mask = BigInt(`0x${/^SigIgn:\s*([0-9a-f]+)/m.exec(text)![1]}`);
  for (const sig of got) assert.ok((mask >> BigInt(sig - 1)) & 1n, String(sig));
  assert.equal(got.length, mask.toString(2).split("").filter((b) => b === "1").length);
});

Deno.test("execute on the vfork path: the child is told micro's ignored signals; none (all reset) when /proc cannot say", async () => {
  for (
    const [sys, want] of [
      [new RecordingSys({ vfork: true }).scriptRecv(5, READY), "only 13"],
      [new RecordingSys({ vfork: true }).scriptRecv(5, READY).failOn("ignoredSignals", 2), null],
    ] as const
  ) {
    await execute(PLAN, OPTS, sys);
    const reset = sys.format().find((c) => c.startsWith("resetSignals("));
    assert.ok(reset, sys.format().join("\n"));
    assert.equal(reset.includes("only"), want !== null, reset);
    if (want) assert.ok(reset.includes(want), reset);
  }
});

Deno.test("execute on the vfork path: no sweep, no release byte; the steps run inside vforkExec, the stub's exec last", async () => {
  const sys = new RecordingSys({ vfork: true, waitStatus: 3 << 8 }).scriptRecv(5, READY);
  const seen: number[] = [];
  const result = await execute(PLAN, { ...OPTS, onChild: (pid) => seen.push(pid) }, sys);
  assert.deepEqual(result, { exitCode: 3 });
  const calls = sys.format();
  assert.ok(!calls.includes("prepareFork()"));
  assert.ok(!calls.some((c) => c.startsWith("clone")));
  const v = calls.indexOf(`vforkExec(0x${FLAGS.toString(16)})`);
  assert.ok(v > 0, "one vforkExec with the plan's flags and SIGCHLD");
  const exec = calls.findIndex((c) => c.startsWith("execveat("));
  assert.ok(exec > v && calls.slice(v + 1, exec).some((c) => c.startsWith("sethostname")));
  assert.deepEqual(sys.written(4), new Uint8Array(0), "nothing on the sync pipe");
  assert.deepEqual(seen, [4242]);
});

Deno.test("execute on the vfork path: a step that failed in the child is the run's error", async () => {
  const sys = new RecordingSys({ vfork: true }).failOn("sethostname", 1);
  const prog = compileChild(CHILD_OPS, VFORK_CTX, new RecordingSys());
  const at = prog.info.findIndex((s) => s.kind === "sethostname");
  sys.scriptRecv(5, { record: [at, 1] });
  let error: unknown;
  try {
    await execute(PLAN, OPTS, sys);
  } catch (e) {
    error = e;
  }
  assert.ok(error instanceof MicroError, String(error));
  assert.match(error.line(), /sethostname.*EPERM/);
  // The child stopped at the failure: no exec.
  assert.ok(!sys.format().some((c) => c.startsWith("execveat(")));
});

Deno.test("execute: a kernel that refuses the vfork clone (EINVAL) starts again on the fork path, and stays there", async () => {
  const sys = new RecordingSys({ vfork: true }).failOn("vforkExec", 22).scriptRecv(5, READY)
    .scriptRecv(15, READY);
  await execute(PLAN, OPTS, sys);
  const calls = sys.format();
  assert.equal(calls.filter((c) => c.startsWith("vforkExec")).length, 1);
  assert.ok(calls.includes("prepareFork()") && calls.some((c) => c.startsWith("clone(")));
  const again = new RecordingSys({ vfork: true }).scriptRecv(5, READY);
  await execute(PLAN, OPTS, again);
  assert.ok(again.format().some((c) => c.startsWith("vforkExec")), "another Sys is asked anew");
});

const USERNS_PLAN: Op[] = [
  op("clone", "user", "namespace", { flag: "CLONE_NEWUSER" }),
  ...PLAN,
  op("attach", "user", "proc-write", { file: "uid_map", content: "0 100000 65536\n" }),
  op("attach", "user", "proc-write", { file: "gid_map", content: "0 100000 65536\n" }),
];

Deno.test({
  name:
    "execute on the vfork path, user namespace: micro's thread writes the maps the child asks for; micro's own writes nothing",
  ignore: (Deno.uid() ?? 0) !== 0,
  async fn() {
    const sys = new RecordingSys({ vfork: true }).scriptRecv(5, READY);
    assert.deepEqual(await execute(USERNS_PLAN, OPTS, sys), { exitCode: 0 });
    const calls = sys.format();
    const writer = calls.findIndex((c) => c.startsWith("procWrites("));
    const vfork = calls.findIndex((c) => c.startsWith("vforkExec("));
    assert.ok(writer >= 0 && writer < vfork, calls.join("\n"));
    assert.match(calls[writer], /uid_map=0 100000 65536.*gid_map=0 100000 65536/);
    const sock = sys.calls()[writer].args[0] as number;
    // The child's first step after the death signal and the liveness check: it asks on the
    // other end of the writer's socket and reads the 8-byte answer, before its hostname.
    const pair = sys.calls().find((c) =>
      c.call === "socketpair" && (c.args[2] as number[])[0] === sock
    )!;
    const child = (pair.args[2] as number[])[1];
    const ask = calls.indexOf(`write(${child}, 1)`);
    assert.ok(ask > vfork && calls[ask + 1] === `read(${child}, 8)`, calls.join("\n"));
    assert.ok(ask < calls.findIndex((c) => c.startsWith("sethostname")));
    assert.ok(!calls.some((c) => c.startsWith("write(4, 1)")), "no release byte");
  },
});

Deno.test({
  name:
    "execute on the vfork path, user namespace: a map the writer could not write is the run's error, naming the file",
  ignore: (Deno.uid() ?? 0) !== 0,
  async fn() {
    // gid_map (index 1) refused with EPERM.
    const sys = new RecordingSys({ vfork: true }).returns("procWrites", () => true, (2 << 16) | 1);
    await assert.rejects(
      () => execute(USERNS_PLAN, OPTS, sys),
      (e) => e instanceof MicroError && /\/proc\/4242\/gid_map.*EPERM/.test(e.line()),
    );
    assert.ok(sys.format().some((c) => c.startsWith("kill(4242, 9)")), "the child abandoned");
  },
});

Deno.test({
  name:
    "execute on the vfork path, user namespace: a writer thread that does not run in time sends the run down the fork path",
  ignore: (Deno.uid() ?? 0) !== 0,
  async fn() {
    // The fork path writes the maps itself, into /proc/4242 (no such process: ENOENT).
    const sys = new RecordingSys({ vfork: true }).returns("pollNow", (a) => a.length === 3, 0)
      .scriptRecv(5, READY).scriptRecv(17, READY)
      .failOn("open", (a) => a[0] === "/proc/4242/uid_map", 2);
    await assert.rejects(
      () => execute(USERNS_PLAN, OPTS, sys),
      (e) => e instanceof MicroError && /\/proc\/4242\/uid_map/.test(e.line()),
    );
    const calls = sys.format();
    assert.ok(!calls.some((c) => c.startsWith("vforkExec")), "no vfork without the writer");
    assert.ok(calls.some((c) => c.startsWith("clone(")), calls.join("\n"));
  },
});

/** A run joining one cgroup (a temp dir standing for it) the fake says is cgroup v2 (fd 99). */
async function onCgroupV2(fn: (plan: Op[], sys: RecordingSys, dir: string) => Promise<void>) {
  const dir = Deno.makeTempDirSync({ prefix: "micro-vfork-v2-" });
  try {
    Deno.writeTextFileSync(`${dir}/cgroup.procs`, "");
    const sys = new RecordingSys({ vfork: true });
    sys.returns("open", (a) => a[0] === dir, () => 99);
    sys.returns("fstatfsType", (a) => a[0] === 99, C.CGROUP2_SUPER_MAGIC);
    await fn([...PLAN, op("attach", "cgroups", "cgroup-join", { path: dir })], sys, dir);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
}

Deno.test("execute on the vfork path, cgroup v2: the stub clones into the cgroup (clone3), nobody writes cgroup.procs", async () => {
  await onCgroupV2(async (plan, sys) => {
    sys.scriptRecv(5, READY);
    assert.deepEqual(await execute(plan, OPTS, sys), { exitCode: 0 });
    const calls = sys.format();
    assert.ok(calls.includes(`vforkExec(0x${FLAGS.toString(16)}, 99)`), calls.join("\n"));
    assert.ok(!calls.some((c) => c.startsWith("clone")), "no fork, no clone3 of the fork path");
    assert.ok(!calls.some((c) => c.includes("cgroup.procs")), "not opened: born in it");
  });
});

Deno.test("execute on the vfork path, cgroup v2: a kernel without clone3 or CLONE_INTO_CGROUP forks instead; the cgroup's own refusal is the run's error", async () => {
  for (const errno of [38, 7, 1, 22]) { // ENOSYS, E2BIG, EPERM (a filter), EINVAL
    await onCgroupV2(async (plan, sys) => {
      sys.failOn("vforkExec", errno).scriptRecv(5, READY).scriptRecv(15, READY);
      assert.deepEqual(await execute(plan, OPTS, sys), { exitCode: 0 });
      const calls = sys.format();
      assert.equal(calls.filter((c) => c.startsWith("vforkExec")).length, 1, `errno ${errno}`);
      assert.ok(calls.some((c) => c.startsWith("clone3(")), `errno ${errno}: the fork path's own`);
    });
  }
  await onCgroupV2(async (plan, sys) => {
    sys.failOn("vforkExec", 11); // EAGAIN: pids.max
    await assert.rejects(
      () => execute(plan, OPTS, sys),
      (e) => e instanceof MicroError && /clone.*EAGAIN/.test(e.line()),
    );
    assert.ok(!sys.format().some((c) => c.startsWith("clone")), "not moved in past pids.max");
  });
});

// ---- The real stub (x86_64), without namespaces: any user can run these ----------------------

const libc = openLibc();
const real = libc.canVfork();
const CODE = fromBase64(VFORK_X86_64);

/**
 * vforkExec of `path` (argv [path]) with `run`, reporting on a socket: pid, status, record.
 * With `into` (a cgroup v2 directory's fd), the child is cloned into that cgroup; `flags` are
 * the clone's; `parentTid` gets the child's pid before it runs.
 */
async function vforkRun(
  run: () => number,
  path: string,
  into = -1,
  flags: number = C.SIGCHLD,
  parentTid?: Int32Array,
) {
  const pair = new Int32Array(2);
  assert.equal(libc.socketpair(C.AF_UNIX, C.SOCK_SEQPACKET | C.SOCK_CLOEXEC, pair), 0);
  const record = new Int32Array([7, 0]);
  const pid = libc.vforkExec(flags, run, {
    code: CODE,
    dirfd: -100, // AT_FDCWD
    path: cstr(path),
    argv: cstrArray([path]),
    envp: cstrArray([]),
    flags: 0,
    reportFd: pair[1],
    record,
    into,
    parentTid,
  });
  libc.close(pair[1]);
  assert.ok(pid > 0, `vforkExec: ${pid}`);
  const got = new Int32Array(2);
  const { n } = await libc.recvRecord(pair[0], got);
  libc.close(pair[0]);
  const { status } = await libc.waitpid(pid);
  return { pid, status, n, got };
}

Deno.test({
  name: "vforkExec: the callback runs in the child, in micro's memory, and the stub execs",
  ignore: !real,
  async fn() {
    let seen = 0;
    const r = await vforkRun(() => {
      seen = libc.getpid();
      return 0;
    }, "/bin/true");
    assert.equal(seen, r.pid, "the child's write is micro's: one memory");
    assert.equal(r.status, 0);
    assert.equal(r.n, 0, "nothing reported: the exec closed nothing but succeeded");
  },
});

Deno.test({
  name: "vforkExec: a failed exec sends the record with its errno and exits 1",
  ignore: !real,
  async fn() {
    const r = await vforkRun(() => 0, "/nonexistent/micro-vfork-test");
    assert.equal(r.n, 8);
    assert.deepEqual([...r.got], [7, 2]); // ENOENT
    assert.equal(r.status, 1 << 8);
  },
});

Deno.test({
  name: "vforkExec: a callback that returns non-zero (or throws) is the child's exit code, no exec",
  ignore: !real,
  async fn() {
    assert.equal((await vforkRun(() => 9, "/bin/true")).status, 9 << 8);
    const thrown = await vforkRun(() => {
      throw new Error("a bug in a step");
    }, "/bin/true");
    assert.equal(thrown.status, 1 << 8);
    // micro goes on: its heap and its next call are fine.
    const again = await vforkRun(() => 0, "/bin/true");
    assert.equal(again.status, 0);
  },
});

/** A cgroup2 mount of this host (the hybrid layout's unified one, or /sys/fs/cgroup), or "". */
function cgroup2Mount(): string {
  try {
    for (const line of Deno.readTextFileSync("/proc/self/mountinfo").split("\n")) {
      const f = line.split(" ");
      const sep = f.indexOf("-");
      if (sep > 0 && f[sep + 1] === "cgroup2") return f[4];
    }
  } catch { /* no /proc: none */ }
  return "";
}
const V2 = cgroup2Mount();

Deno.test({
  name: "vforkExec into a cgroup v2 directory (the stub's clone3): the child is born there",
  ignore: !real || Deno.uid() !== 0 || V2 === "",
  async fn() {
    const name = `micro-vfork-test-${Deno.pid}`;
    const dir = `${V2}/${name}`;
    Deno.mkdirSync(dir);
    const fd = libc.open(cstr(dir), C.O_PATH | C.O_DIRECTORY | C.O_CLOEXEC, 0);
    try {
      assert.ok(fd >= 0, `open ${dir}: ${fd}`);
      const path = cstr("/proc/self/cgroup");
      const buf = new Uint8Array(4096);
      let n = -1;
      const r = await vforkRun(
        () => {
          const f = libc.open(path, C.O_RDONLY | C.O_CLOEXEC, 0);
          n = libc.read(f, buf, buf.length);
          libc.close(f);
          return 0;
        },
        "/bin/true",
        fd,
      );
      assert.equal(r.status, 0);
      const seen = new TextDecoder().decode(buf.subarray(0, Math.max(n, 0)));
      assert.ok(seen.split("\n").some((l) => l.startsWith("0::") && l.endsWith(`/${name}`)), seen);
    } finally {
      if (fd >= 0) libc.close(fd);
      Deno.removeSync(dir);
    }
  },
});

/**
 * A writer of `files` (name, content) on a new socket pair, running: its first byte, read off
 * the child's end as micro does before it clones. The pid slot is the clone's parent_tid.
 */
function writer(files: [string, string][], pid = new Int32Array(1)) {
  const pair = new Int32Array(2);
  assert.equal(libc.socketpair(C.AF_UNIX, C.SOCK_SEQPACKET | C.SOCK_CLOEXEC, pair), 0);
  const writes = files.map(([f, c]) => ({ file: cstr(f), content: new TextEncoder().encode(c) }));
  const done = libc.procWrites(CODE, pair[0], writes, pid);
  assert.ok(libc.pollNow(pair[1], C.POLLIN, 2000) & C.POLLIN, "the writer thread runs");
  assert.equal(libc.read(pair[1], new Uint8Array(1), 1), 1);
  return { mine: pair[0], child: pair[1], pid, done };
}

Deno.test({
  name:
    "procWrites: a thread of micro's writes a vfork child's id maps while micro sleeps in the clone",
  ignore: !real || Deno.uid() !== 0,
  async fn() {
    const { mine, child, pid, done } = writer([
      ["uid_map", "0 1000000000 1\n"],
      ["gid_map", "0 1000000000 1\n"],
    ]);
    const ask = new Uint8Array([1]);
    const ack = new Int32Array([-1, -1]);
    const seen = new Uint8Array(256);
    const path = cstr("/proc/self/uid_map");
    let asked = 0;
    let n = -1;
    const r = await vforkRun(
      () => {
        asked = libc.write(child, ask, 1);
        libc.read(child, new Uint8Array(ack.buffer), 8);
        const f = libc.open(path, C.O_RDONLY | C.O_CLOEXEC, 0);
        n = libc.read(f, seen, seen.length);
        libc.close(f);
        return 0;
      },
      "/bin/true",
      -1,
      C.CLONE_NEWUSER | C.SIGCHLD,
      pid,
    );
    libc.close(child);
    assert.equal(await done, 0);
    libc.close(mine);
    assert.equal(r.status, 0);
    assert.equal(pid[0], r.pid, "the kernel stored the child's pid before it ran");
    assert.equal(asked, 1);
    assert.deepEqual([...ack], [0, 2], "errno 0, both files");
    const text = new TextDecoder().decode(seen.subarray(0, Math.max(n, 0)));
    assert.match(text, /^\s*0\s+1000000000\s+1\s*$/, text);
  },
});

Deno.test({
  name:
    "procWrites: a write the kernel refuses is [errno, index] to the child and the result; no request is -EPIPE",
  ignore: !real || Deno.uid() !== 0,
  async fn() {
    // uid_map twice: a map is written once; the second write is EPERM.
    const { mine, child, pid, done } = writer([
      ["uid_map", "0 1000000000 1\n"],
      ["uid_map", "0 1000000000 1\n"],
    ]);
    const ack = new Int32Array([-1, -1]);
    const r = await vforkRun(
      () => {
        libc.write(child, new Uint8Array([1]), 1);
        libc.read(child, new Uint8Array(ack.buffer), 8);
        return ack[0] === 0 ? 0 : 3;
      },
      "/bin/true",
      -1,
      C.CLONE_NEWUSER | C.SIGCHLD,
      pid,
    );
    libc.close(child);
    const rc = await done;
    libc.close(mine);
    assert.equal(r.status, 3 << 8, "told, it stopped");
    assert.deepEqual([...ack], [1, 1], "EPERM at index 1");
    assert.equal(rc, (2 << 16) | 1);
    // A child that never asks: the writer sees the end of the file.
    const quiet = writer([["uid_map", "0 1000000000 1\n"]]);
    await vforkRun(() => 0, "/bin/true", -1, C.CLONE_NEWUSER | C.SIGCHLD, quiet.pid);
    libc.close(quiet.child);
    assert.equal(await quiet.done, -32);
    libc.close(quiet.mine);
  },
});

/** `SigBlk` of /proc/PID/status (or of this thread), as a bigint. */
function sigBlk(status: string): bigint {
  return BigInt(`0x${/^SigBlk:\s*([0-9a-f]+)$/m.exec(status)![1]}`);
}

/** Waits (up to 2 s) until `ok` holds. */
async function until(ok: () => boolean, what: string): Promise<void> {
  const end = Date.now() + 2000;
  while (!ok()) {
    if (Date.now() > end) assert.fail(`not within 2 s: ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

Deno.test({
  name:
    "usernsHold: a child in a new user namespace, holding it while micro writes its maps, gone once let go",
  ignore: !real || Deno.uid() !== 0,
  async fn() {
    const pipe = new Int32Array(2);
    assert.equal(libc.pipe2(pipe, C.O_CLOEXEC), 0);
    const extra = libc.open(cstr("/dev/null"), C.O_RDONLY | C.O_CLOEXEC, 0);
    const stack = new Uint8Array(16 * 1024);
    const before = sigBlk(Deno.readTextFileSync("/proc/thread-self/status"));
    const pid = libc.usernsHold(CODE, C.CLONE_NEWUSER | C.SIGCHLD, stack, pipe[0], pipe[1]);
    assert.equal(sigBlk(Deno.readTextFileSync("/proc/thread-self/status")), before);
    libc.close(pipe[0]);
    assert.ok(pid > 0, `usernsHold: ${pid}`);
    const has = (fd: number) => {
      try {
        Deno.lstatSync(`/proc/${pid}/fd/${fd}`);
        return true;
      } catch {
        return false;
      }
    };
    try {
      // Micro went on at once; the child waits in its read, holding only its end of the pipe.
      await until(
        () => / S /.test(Deno.readTextFileSync(`/proc/${pid}/stat`)) && !has(pipe[1]),
        "the child asleep, its copy of the write end closed",
      );
      assert.equal(has(pipe[0]), true, "the child's read end");
      assert.equal(has(extra), false, "micro's other fds closed in the child");
      // Every signal blocked but the two that cannot be.
      const blocked = sigBlk(Deno.readTextFileSync(`/proc/${pid}/status`));
      const all = (1n << 64n) - 1n;
      assert.equal(blocked | (1n << 8n) | (1n << 18n), all, blocked.toString(16));
      // In a namespace that is not micro's, whose map micro writes.
      const mine = Deno.readLinkSync("/proc/self/ns/user");
      assert.notEqual(Deno.readLinkSync(`/proc/${pid}/ns/user`), mine);
      Deno.writeTextFileSync(`/proc/${pid}/uid_map`, "0 1000000000 1\n");
      assert.match(Deno.readTextFileSync(`/proc/${pid}/uid_map`), /^\s*0\s+1000000000\s+1\s*$/);
    } finally {
      libc.close(pipe[1]);
      libc.close(extra);
    }
    const { status } = await libc.waitpid(pid);
    assert.equal(status, 0, "it exits 0 at the end of its pipe");
    assert.ok(stack.length > 0);
  },
});

Deno.test({
  name:
    "mappedUserns, held by the stub's child: an idmapped tree shows an on-disk root file as the map's host id",
  ignore: !real || Deno.uid() !== 0,
  async fn() {
    const dir = Deno.makeTempDirSync({ prefix: "micro-userns-" });
    let ns = -1;
    let tree = -1;
    // libc, with the child's pid noted: the stub's child it was, not the holder program.
    const held: number[] = [];
    const sys = Object.create(libc) as typeof libc;
    sys.usernsHold = (...a) => {
      const pid = libc.usernsHold(...a);
      held.push(pid);
      return pid;
    };
    try {
      Deno.writeTextFileSync(`${dir}/f`, "");
      Deno.chownSync(`${dir}/f`, 0, 0);
      ns = await mappedUserns(sys, { uid: "0 1000000000 65536\n", gid: "0 1000000000 65536\n" });
      assert.ok(ns >= 0, `mappedUserns: ${ns}`);
      assert.equal(held.length, 1);
      assert.ok(held[0] > 0, `usernsHold: ${held[0]}`);
      tree = libc.openTree(C.AT_FDCWD, cstr(dir), C.OPEN_TREE_CLONE | C.O_CLOEXEC);
      assert.ok(tree >= 0, `open_tree: ${tree}`);
      const rc = idmapTree(libc, tree, ns);
      if (rc !== -22) { // -22: this file system has no idmapped mounts (tmpfs before 6.3)
        assert.equal(rc, 0);
        const st = { mode: 0, size: 0, uid: -1, gid: -1 };
        assert.equal(libc.fstatat(tree, cstr("f"), 0, st), 0);
        assert.deepEqual([st.uid, st.gid], [1000000000, 1000000000]);
      }
    } finally {
      if (tree >= 0) libc.close(tree);
      if (ns >= 0) libc.close(ns);
      Deno.removeSync(dir, { recursive: true });
      // Reaped by micro meanwhile (not awaited there): its wait ends before the test does.
      if (held[0] > 0) {
        await until(() => {
          try {
            Deno.statSync(`/proc/${held[0]}`);
            return false;
          } catch {
            return true;
          }
        }, "the child reaped");
        await new Promise((r) => setTimeout(r, 20));
      }
    }
  },
});

Deno.test("mappedUserns where the stub's clone is refused: its pipe closed, the holder spawned", async () => {
  const sys = new RecordingSys({ vfork: true }).failOn("usernsHold", 22);
  sys.waitStatus = 22 << 8; // the holder fails in turn: the test needs only its start
  await mappedUserns(sys, { uid: "0 1 1\n", gid: "0 1 1\n" }).catch(() => {});
  const f = sys.format();
  const at = f.findIndex((c) => c.startsWith("usernsHold("));
  assert.ok(at >= 0, f.join("\n"));
  // pipe 3/4: the read end closed at once, the write end after the refusal; then the holder.
  assert.deepEqual(f.slice(at + 1, at + 3), ["close(3)", "close(4)"]);
  assert.ok(f.slice(at).some((c) => c.startsWith('memfdCreate("micro-userns"')), f.join("\n"));
});

Deno.test("mappedUserns, the stub's child: a map micro cannot open is one line naming it; the child let go and reaped", async () => {
  const sys = new RecordingSys({ vfork: true }).failOn(
    "open",
    (a) => String(a[0]).endsWith("/uid_map"),
    1,
  );
  let err: unknown;
  try {
    await mappedUserns(sys, { uid: "0 1 1\n", gid: "0 1 1\n" });
  } catch (e) {
    err = e;
  }
  assert.ok(err instanceof MicroError, String(err));
  assert.equal(err.line(), "prepare: user: open /proc/4242/uid_map: EPERM");
  const f = sys.format();
  assert.ok(f.includes("close(4)"), "the write end: the child let go");
  assert.equal(sys.names().filter((n) => n === "waitpid").length, 1);
  assert.equal(sys.names().includes("memfdCreate"), false, "no holder after a child that ran");
});
