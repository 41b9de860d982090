/**
 * The parent side of the fork engine (`execute`) driven through the recording Sys: pipes
 * and the report socket, one clone with the plan's namespace flags, the release byte, the
 * child's report turned into an error, and the exit status decoded.
 */
import assert from "node:assert/strict";
import { compileChild } from "../../core/engine/child.ts";
import { cloneFlags, decodeStatus, execute } from "../../core/engine/mod.ts";
import { MicroError } from "../../core/errors.ts";
import { CHILD_PHASES, type Op, op } from "../../core/ops.ts";
import { buildSpec, planRun, type Sections } from "../../core/plan.ts";
import type { HostInfo } from "../../core/plugin.ts";
import { RecordingSys } from "../../core/sys/fake.ts";
import { C } from "../../core/sys/mod.ts";
import { PLUGINS } from "../../plugins/mod.ts";

const ROOT = "/run/micro/c1/root";
const OPTS = { rootPath: ROOT, terminal: false, stdin: false };
/** Larger than PID_MAX_LIMIT (2^22): no process can have it, so /proc/PID never exists. */
const NO_SUCH_PID = 4_194_305;

const PLAN: Op[] = [
  op("clone", "mount", "namespace", { flag: "CLONE_NEWNS" }),
  op("clone", "pid", "namespace", { flag: "CLONE_NEWPID" }),
  op("clone", "uts", "namespace", { flag: "CLONE_NEWUTS" }),
  op("rootfs", "mount", "make-private", {}),
  op("rootfs", "mount", "bind-root", { source: "/img", readonly: false }),
  op("rootfs", "mount", "mount", {
    source: "proc",
    target: "/proc",
    fstype: "proc",
    flags: ["MS_NOSUID", "MS_NOEXEC", "MS_NODEV"],
  }),
  op("rootfs", "mount", "pivot-root", {}),
  op("identity", "uts", "sethostname", { name: "box" }),
  op("exec", "process", "chdir", { path: "/" }),
  op("exec", "process", "execve", { args: ["nope"], env: [], path: ["/usr/bin/nope"] }),
];

/**
 * The index of the child step of `kind` as the parent compiles it: with a /dev/null stdin
 * unless `stdinStep` is false (stdin passed, or a terminal).
 */
function stepOf(plan: Op[], kind: string, stdinStep = true): number {
  const ops = plan.filter((o) => CHILD_PHASES.includes(o.phase));
  const ctx = { rootPath: ROOT, syncRead: 3, syncWrite: 4, report: 6, devNull: stdinStep ? 7 : -1 };
  const i = compileChild(ops, ctx, new RecordingSys()).info.findIndex((s) => s.kind === kind);
  assert.ok(i >= 0, `no ${kind} step`);
  return i;
}

/** The fds the fake hands out in order: sync pipe 3,4; report socket 5,6; /dev/null 7. */
const SETUP = [
  "pipe2([3,4], 0x80000)",
  "socketpair(1, 0x80005, [5,6])",
  'open("/dev/null", 0x80000, 0)',
  "prepareFork()",
  "clone(0x24020011)",
  "close(3)",
  "close(6)",
  "close(7)",
];
const RELEASE = ["write(4, 1)", "close(4)", "recvRecord(5)", "close(5)"];

async function failure(p: Promise<unknown>): Promise<MicroError> {
  try {
    await p;
  } catch (e) {
    if (e instanceof MicroError) return e;
    throw e;
  }
  assert.fail("expected a MicroError");
}

Deno.test("cloneFlags is the OR of the plan's namespace ops", () => {
  assert.equal(cloneFlags(PLAN), C.CLONE_NEWNS | C.CLONE_NEWPID | C.CLONE_NEWUTS);
  assert.equal(cloneFlags([]), 0);
  const all = [
    "CLONE_NEWNS",
    "CLONE_NEWCGROUP",
    "CLONE_NEWUTS",
    "CLONE_NEWIPC",
    "CLONE_NEWUSER",
    "CLONE_NEWPID",
    "CLONE_NEWNET",
  ].map((flag) => op("clone", "x", "namespace", { flag }));
  assert.equal(cloneFlags(all), 0x7e020000);
  // The same flag twice is still one bit.
  assert.equal(cloneFlags([...all, ...all]), 0x7e020000);
});

Deno.test("cloneFlags refuses a namespace flag it does not know", () => {
  assert.throws(
    () => cloneFlags([op("clone", "time", "namespace", { flag: "CLONE_NEWTIME" })]),
    /unknown namespace flag CLONE_NEWTIME/,
  );
});

Deno.test("decodeStatus: exit codes as they are, signals as 128+N", () => {
  assert.deepEqual(decodeStatus(0), { exitCode: 0 });
  assert.deepEqual(decodeStatus(1 << 8), { exitCode: 1 });
  assert.deepEqual(decodeStatus(127 << 8), { exitCode: 127 });
  assert.deepEqual(decodeStatus(255 << 8), { exitCode: 255 });
  assert.deepEqual(decodeStatus(9), { exitCode: 137, signal: 9 });
  assert.deepEqual(decodeStatus(15), { exitCode: 143, signal: 15 });
  // SIGSEGV with the core-dump bit (0x80) set
  assert.deepEqual(decodeStatus(0x80 | 11), { exitCode: 139, signal: 11 });
});

Deno.test("execute: one clone with the namespace flags and SIGCHLD, release, wait", async () => {
  const sys = new RecordingSys({ waitStatus: 3 << 8 });
  const seen: { pid: number; callsBefore: number }[] = [];
  const result = await execute(PLAN, {
    ...OPTS,
    onChild: (pid) => seen.push({ pid, callsBefore: sys.calls().length }),
  }, sys);
  assert.deepEqual(result, { exitCode: 3 });
  assert.deepEqual(sys.format(), [...SETUP, ...RELEASE, "waitpid(4242)"]);
  assert.equal(
    sys.calls()[4].args[0],
    C.CLONE_NEWNS | C.CLONE_NEWPID | C.CLONE_NEWUTS | C.SIGCHLD,
  );
  // The sync byte is written once, then the write end is closed.
  assert.deepEqual(sys.written(4), new Uint8Array([1]));
  // onChild sees the pid after the clone and before the child is released.
  assert.deepEqual(seen, [{ pid: 4242, callsBefore: SETUP.length }]);
});

Deno.test("execute: a command killed by a signal exits 128+N", async () => {
  const sys = new RecordingSys({ waitStatus: 9 });
  assert.deepEqual(await execute(PLAN, OPTS, sys), { exitCode: 137, signal: 9 });
});

Deno.test("execute: with stdin passed or a terminal, no /dev/null is opened", async () => {
  for (const o of [{ stdin: true }, { terminal: true }]) {
    const sys = new RecordingSys();
    await execute(PLAN, { ...OPTS, ...o }, sys);
    assert.deepEqual(sys.format().slice(0, 7), [
      "pipe2([3,4], 0x80000)",
      "socketpair(1, 0x80005, [5,6])",
      "prepareFork()",
      "clone(0x24020011)",
      "close(3)",
      "close(6)",
      "write(4, 1)",
    ]);
  }
});

Deno.test("execute: an execve ENOENT report is a MicroError with exit code 127", async () => {
  const step = stepOf(PLAN, "execve");
  const sys = new RecordingSys().scriptRecv(5, { record: [step, 2] });
  const e = await failure(execute(PLAN, OPTS, sys));
  assert.equal(e.exitCode, 127);
  assert.equal(
    e.line(),
    "exec: process: execve path=nope: ENOENT (command not found in the container; check the path and PATH)",
  );
  // The child is reaped; it is not killed (it has exited already).
  assert.deepEqual(sys.format(), [...SETUP, ...RELEASE, "waitpid(4242)"]);
});

Deno.test("execute: an execve ENOTDIR report is 'not found' too (127)", async () => {
  const sys = new RecordingSys().scriptRecv(5, { record: [stepOf(PLAN, "execve"), 20] });
  assert.equal((await failure(execute(PLAN, OPTS, sys))).exitCode, 127);
});

Deno.test("execute: an execve EACCES report is a MicroError with exit code 126", async () => {
  const sys = new RecordingSys().scriptRecv(5, { record: [stepOf(PLAN, "execve"), 13] });
  const e = await failure(execute(PLAN, OPTS, sys));
  assert.equal(e.exitCode, 126);
  assert.equal(
    e.line(),
    "exec: process: execve path=nope: EACCES (the command is not executable, or its file system is mounted noexec)",
  );
});

Deno.test("execute: a mount EACCES report names the phase, plugin, op and paths", async () => {
  const sys = new RecordingSys().scriptRecv(5, { record: [stepOf(PLAN, "mount"), 13] });
  const e = await failure(execute(PLAN, OPTS, sys));
  assert.equal(e.exitCode, 125);
  assert.equal(
    e.line(),
    "rootfs: mount: mount src=proc dst=/proc flags=MS_NOSUID|MS_NOEXEC|MS_NODEV: EACCES " +
      "(the source is not reachable from the user namespace; check its permissions)",
  );
  assert.deepEqual(e.fields, {
    phase: "rootfs",
    plugin: "mount",
    op: "mount",
    paths: { src: "proc", dst: "/proc", flags: "MS_NOSUID|MS_NOEXEC|MS_NODEV" },
    errno: 13,
    hint: "the source is not reachable from the user namespace; check its permissions",
  });
});

Deno.test("execute: a report from an engine step names the engine", async () => {
  const sys = new RecordingSys().scriptRecv(5, { record: [stepOf(PLAN, "setsid"), 1] });
  assert.equal((await failure(execute(PLAN, OPTS, sys))).line(), "rootfs: engine: setsid: EPERM");
});

Deno.test("execute: a console record passes the master, then a failure closes it", async () => {
  const plan = [...PLAN.slice(0, 7), op("rootfs", "process", "console", {}), ...PLAN.slice(7)];
  const sys = new RecordingSys().scriptRecv(
    5,
    { record: [-2, 0], fd: 9 },
    { record: [stepOf(plan, "sethostname", false), 1] },
  );
  const e = await failure(execute(plan, { ...OPTS, terminal: true }, sys));
  assert.equal(e.line(), "identity: uts: sethostname name=box: EPERM");
  assert.deepEqual(sys.format().slice(6), [
    "write(4, 1)",
    "close(4)",
    "recvRecord(5)",
    // The window size is copied from the first stdio fd that is a terminal.
    "ioctlBuf(0, 0x5413)",
    "ioctlBuf(9, 0x5414)",
    "recvRecord(5)",
    "close(5)",
    "close(9)",
    "waitpid(4242)",
  ]);
});

Deno.test("execute: a failed clone closes every fd and names the flags", async () => {
  const sys = new RecordingSys().failOn("clone", 1);
  const e = await failure(execute(PLAN, OPTS, sys));
  assert.equal(
    e.line(),
    "clone: engine: clone flags=0x24020011: EPERM " +
      "(creating these namespaces needs root, or a user namespace (unprivileged_userns_clone))",
  );
  assert.equal(e.exitCode, 125);
  assert.deepEqual(sys.format(), [...SETUP, "close(4)", "close(5)"]);
});

Deno.test("execute: a failed pipe2 is a prepare-phase engine error", async () => {
  const sys = new RecordingSys().failOn("pipe2", 24);
  const e = await failure(execute(PLAN, OPTS, sys));
  assert.equal(e.line(), "prepare: engine: pipe2: EMFILE");
  assert.deepEqual(sys.format(), ["pipe2([], 0x80000)"]);
});

Deno.test("execute: an onChild that throws kills and reaps the child before release", async () => {
  const sys = new RecordingSys();
  await assert.rejects(
    execute(PLAN, {
      ...OPTS,
      onChild: () => {
        throw new Error("state dir is gone");
      },
    }, sys),
    /state dir is gone/,
  );
  assert.deepEqual(sys.format().slice(SETUP.length), [
    "kill(4242, 9)",
    "close(4)",
    "close(5)",
    "waitpid(4242)",
  ]);
  assert.deepEqual(sys.written(4), new Uint8Array(0), "the child is never released");
});

// ---- A real plan from the plugins ------------------------------------------------------

const HOST: HostInfo = {
  arch: "x86_64",
  uid: 0,
  gid: 0,
  id: "c0ffee",
  stateDir: "/run/micro/c0ffee",
  hostView: [],
  devices: ["null"],
  image: "dir",
  passwd: "root:x:0:0:root:/root:/bin/sh\n",
  group: "root:x:0:\n",
  sourceKinds: {},
};

function realPlan(sections: Sections["sections"]): Op[] {
  const input = { image: "/img", args: ["sh"], terminal: false, stdin: false };
  return planRun(buildSpec(input, { process: {}, sections }, PLUGINS), HOST, PLUGINS);
}

const ON = { enabled: true, options: {} };

Deno.test("execute: a real plan without a user namespace clones with its flags and waits", async () => {
  const plan = realPlan({ mount: ON, pid: ON, uts: ON, ipc: ON, net: ON, cgroupns: ON });
  const sys = new RecordingSys();
  assert.deepEqual(await execute(plan, OPTS, sys), { exitCode: 0 });
  assert.equal(
    sys.calls().find((c) => c.call === "clone")?.args[0],
    C.CLONE_NEWNS | C.CLONE_NEWPID | C.CLONE_NEWUTS | C.CLONE_NEWIPC | C.CLONE_NEWNET |
      C.CLONE_NEWCGROUP | C.SIGCHLD,
  );
  assert.deepEqual(sys.format().slice(SETUP.length), [...RELEASE, "waitpid(4242)"]);
});

Deno.test("execute: a failed id-map write is an attach error naming the plugin and path", async () => {
  const plan = realPlan({ user: ON, mount: ON });
  const sys = new RecordingSys({ clonePid: NO_SUCH_PID });
  const e = await failure(execute(plan, OPTS, sys));
  const path = `/proc/${NO_SUCH_PID}/uid_map`;
  assert.equal(e.fields.phase, "attach");
  assert.equal(e.fields.plugin, "user");
  assert.equal(e.fields.op, "write");
  assert.deepEqual(e.fields.paths, { path, content: '"0 1000000000 65536"' });
  assert.match(
    e.line(),
    new RegExp(`^attach: user: write path=${path} content="0 1000000000 65536": E[A-Z]+ \\(.+\\)$`),
  );
  // The child is killed and reaped, never released.
  assert.deepEqual(sys.format().slice(-4), [
    `kill(${NO_SUCH_PID}, 9)`,
    "close(4)",
    "close(5)",
    `waitpid(${NO_SUCH_PID})`,
  ]);
  assert.equal(sys.names().includes("write"), false);
});
