/**
 * The parent side of the fork engine (`execute`) driven through the recording Sys: pipes
 * and the report socket, one clone with the plan's namespace flags, the release byte, the
 * child's report turned into an error, and the exit status decoded.
 */
import { spawnSealed } from "../../core/engine/memfd.ts";
import { CGROUP_FACTS } from "./_host.ts";
import assert from "node:assert/strict";
import {
  compileChild,
  CONSOLE_RECORD,
  EXEC_FAILED_RECORD,
  INIT_FAILED_RECORD,
  LABEL_FAILED_RECORD,
  landlockExecHint,
  PID_RECORD,
  READY_RECORD,
  SECCOMP_RECORD,
  THREW_RECORD,
} from "../../core/engine/child.ts";
import { TRAMPOLINE } from "../../core/engine/trampoline.ts";
import {
  cloneFlags,
  decodeStatus,
  type EngineOptions,
  execute,
  FailedStart,
  networks,
  startRetrying,
  syncMode,
  undoStart,
  VforkRefused,
} from "../../core/engine/mod.ts";
import { createDetached } from "../../core/engine/detached.ts";
import { MicroError } from "../../core/errors.ts";
import { COMPACT_AFTER_MS } from "../../core/v8.ts";
import { RunSignals } from "../../core/signals.ts";
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

/** The child's context as the first start hands it out (fds from the fake). */
const CHILD_CTX = {
  rootPath: ROOT,
  syncRead: 3,
  syncWrite: 4,
  report: 6,
  stdio: [7, 9, 11] as const,
  exe: 12,
};

/** The index of the child step of `kind` as the parent compiles it. */
function stepOf(plan: Op[], kind: string, opts: Partial<EngineOptions> = {}): number {
  const ops = plan.filter((o) => CHILD_PHASES.includes(o.phase));
  const sync = syncMode(plan, cloneFlags(plan), { ...OPTS, ...opts });
  const prog = compileChild(ops, { ...CHILD_CTX, sync }, new RecordingSys());
  const i = prog.info.findIndex((s) => s.kind === kind);
  assert.ok(i >= 0, `no ${kind} step`);
  return i;
}

/**
 * The exec trampoline's memfd at `fd`: MFD_CLOEXEC|MFD_ALLOW_SEALING|MFD_EXEC, the program
 * written, made execute-only (0111), then sealed (F_ADD_SEALS: SEAL|SHRINK|GROW|WRITE).
 */
const memfd = (fd: number) => [
  'memfdCreate("micro-exec", 0x13)',
  `write(${fd}, ${TRAMPOLINE.x86_64.length})`,
  `fchmod(${fd}, 0o111)`,
  `fcntl(${fd}, 0x409, 0xf)`,
];

/**
 * One start's set-up with the fds the fake hands out from `fd` on: sync pipe fd,fd+1; report
 * socket fd+2,fd+3; /dev/null fd+4; the stdout pipe fd+5,fd+6 and the stderr pipe fd+7,fd+8
 * (the container writes to fd+6 and fd+8); the trampoline's memfd fd+9. The parent keeps the
 * sync pipe's write end, its socket end and the pipes' read ends.
 */
const setup = (fd: number) => [
  `pipe2([${fd},${fd + 1}], 0x80000)`,
  `socketpair(1, 0x80005, [${fd + 2},${fd + 3}])`,
  'open("/dev/null", 0x80000, 0)',
  `pipe2([${fd + 5},${fd + 6}], 0x80000)`,
  `pipe2([${fd + 7},${fd + 8}], 0x80000)`,
  ...memfd(fd + 9),
  "prepareFork()",
  "clone(0x24020011)",
  `close(${fd})`,
  `close(${fd + 3})`,
  `close(${fd + 4})`,
  `close(${fd + 6})`,
  `close(${fd + 8})`,
  `close(${fd + 9})`,
];
/** The fds one start opens. */
const PER_START = 10;
/** The first start: sync pipe 3,4; report socket 5,6; /dev/null 7; pipes 8,9 and 10,11. */
const SETUP = setup(3);
/** A failed start closes the parent's report socket end and its pipe ends. */
const rest = (fd: number) => [`close(${fd + 2})`, `close(${fd + 5})`, `close(${fd + 7})`];
/**
 * The relays read stdout and stderr (EOF at once here), init is reaped, what is left in each
 * pipe and whether a writer remains is looked at (the drain), the pipes are closed.
 */
const SUPERVISE = [
  "readAsync(8, 16384)",
  "readAsync(10, 16384)",
  `sleepAsync(${COMPACT_AFTER_MS})`, // the heap compaction's timer (core/v8.ts)
  "waitpid(4242)",
  "ioctlBuf(8, 0x541b)",
  "pollNow(8, 1)",
  "ioctlBuf(10, 0x541b)",
  "pollNow(10, 1)",
  "close(8)",
  "close(10)",
];
/** The release byte on the sync pipe, whose write end is then closed. */
const release = (fd: number) => [`write(${fd + 1}, 1)`, `close(${fd + 1})`];
const RELEASE = release(3);
/** READY, then EOF (execve closed the child's end): the report socket is closed. */
const EXECED = ["recvRecord(5)", "recvRecord(5)", "close(5)"];
/** EOF without READY: the child died before execve. */
const DIED = (fd: number, pid: number) => [
  `recvRecord(${fd + 2})`,
  ...rest(fd),
  `waitpid(${pid})`,
];

/** The record the child sends right before execve. */
const READY = { record: [READY_RECORD, 0] as [number, number] };

/**
 * The fds the fake handed out (pipe2, socketpair, open) and the fds closed, each sorted:
 * equal when every fd was closed exactly once.
 */
function openedAndClosed(sys: RecordingSys): { opened: number[]; closed: number[] } {
  const calls = sys.calls();
  const results = sys.results();
  const opened: number[] = [];
  const closed: number[] = [];
  calls.forEach((c, i) => {
    if (c.call === "pipe2") opened.push(...(c.args[0] as number[]));
    if (c.call === "socketpair") opened.push(...(c.args[2] as number[]));
    if ((c.call === "open" || c.call === "memfdCreate") && results[i] >= 0) {
      opened.push(results[i]);
    }
    if (c.call === "close") closed.push(c.args[0] as number);
  });
  const byValue = (a: number, b: number) => a - b;
  return { opened: opened.sort(byValue), closed: closed.sort(byValue) };
}

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

Deno.test("execute: one clone with the flags and SIGCHLD, release, READY then EOF, wait", async () => {
  const sys = new RecordingSys({ waitStatus: 3 << 8 }).scriptRecv(5, READY);
  const seen: { pid: number; callsBefore: number }[] = [];
  const result = await execute(PLAN, {
    ...OPTS,
    onChild: (pid) => seen.push({ pid, callsBefore: sys.calls().length }),
  }, sys);
  assert.deepEqual(result, { exitCode: 3 });
  assert.deepEqual(sys.format(), [...SETUP, ...RELEASE, ...EXECED, ...SUPERVISE]);
  assert.equal(
    sys.calls()[10].args[0],
    C.CLONE_NEWNS | C.CLONE_NEWPID | C.CLONE_NEWUTS | C.SIGCHLD,
  );
  // The sync byte is written once, then the write end is closed.
  assert.deepEqual(sys.written(4), new Uint8Array([1]));
  // onChild sees the pid after the clone and before the child is released.
  assert.deepEqual(seen, [{ pid: 4242, callsBefore: SETUP.length }]);
  assert.deepEqual(openedAndClosed(sys), { opened: fdRange(3, 13), closed: fdRange(3, 13) });
});

/** Lets the engine's pending promise callbacks run (the fake's calls resolve at once). */
const settle = () => new Promise((r) => setTimeout(r, 0));

Deno.test("execute: a container still running after COMPACT_AFTER_MS: micro's heap is compacted once, then the wait goes on", async () => {
  const sys = new RecordingSys({ waitStatus: 0 }).scriptRecv(5, READY);
  const release = sys.holdWaits();
  const run = execute(PLAN, OPTS, sys);
  for (let i = 0; i < 50 && sys.timers.length === 0; i++) await settle();
  assert.deepEqual(sys.format().filter((c) => c.startsWith("sleepAsync")), [
    `sleepAsync(${COMPACT_AFTER_MS})`,
  ]);
  assert.ok(!sys.format().includes("trimMalloc()"));
  sys.timers[0]();
  await settle();
  assert.ok(sys.format().includes("trimMalloc()"), "not compacted while the container runs");
  release();
  assert.deepEqual(await run, { exitCode: 0 });
  assert.equal(sys.format().filter((c) => c === "trimMalloc()").length, 1);
});

Deno.test("execute: a compaction timer that could not be made (EMFILE) compacts nothing", async () => {
  const sys = new RecordingSys({ waitStatus: 0 }).scriptRecv(5, READY);
  const release = sys.holdWaits();
  const run = execute(PLAN, OPTS, sys);
  for (let i = 0; i < 50 && sys.timers.length === 0; i++) await settle();
  sys.timers[0](-24);
  await settle();
  release();
  assert.deepEqual(await run, { exitCode: 0 });
  assert.ok(!sys.format().includes("trimMalloc()"));
});

Deno.test("execute: a container that ended before COMPACT_AFTER_MS leaves the heap alone", async () => {
  const sys = new RecordingSys({ waitStatus: 0 }).scriptRecv(5, READY);
  assert.deepEqual(await execute(PLAN, OPTS, sys), { exitCode: 0 });
  assert.equal(sys.timers.length, 1);
  sys.timers[0](); // the timer's read returns after micro moved on
  await settle();
  assert.ok(!sys.format().includes("trimMalloc()"));
});

Deno.test("execute: a command killed by a signal exits 128+N", async () => {
  const sys = new RecordingSys({ waitStatus: 9 }).scriptRecv(5, READY);
  assert.deepEqual(await execute(PLAN, OPTS, sys), { exitCode: 137, signal: 9 });
  // After READY the death is the command's: no second start.
  assert.deepEqual(sys.format(), [...SETUP, ...RELEASE, ...EXECED, ...SUPERVISE]);
});

Deno.test("execute: with -i stdin is a third pipe; with -t the terminal replaces all three", async () => {
  const sys = new RecordingSys().scriptRecv(5, READY);
  await execute(PLAN, { ...OPTS, stdin: true }, sys);
  assert.deepEqual(sys.format().slice(0, 21), [
    "pipe2([3,4], 0x80000)",
    "socketpair(1, 0x80005, [5,6])",
    'open("/dev/null", 0x80000, 0)',
    "pipe2([8,9], 0x80000)", // stdin: the container reads 8, micro writes 9
    "pipe2([10,11], 0x80000)",
    "pipe2([12,13], 0x80000)",
    ...memfd(14),
    "prepareFork()",
    "clone(0x24020011)",
    "close(3)",
    "close(6)",
    "close(7)",
    "close(8)",
    "close(11)",
    "close(13)",
    "close(14)",
    "write(4, 1)",
    "close(4)",
  ]);
  // micro's stdin is read and copied to the pipe; at its EOF the pipe is closed.
  assert.ok(sys.format().includes("readAsync(0, 16384)"));
  assert.deepEqual(openedAndClosed(sys), { opened: fdRange(3, 15), closed: fdRange(3, 15) });

  const tty = new RecordingSys().scriptRecv(5, READY);
  await execute(PLAN, { ...OPTS, terminal: true, stdin: true }, tty);
  assert.deepEqual(tty.format().slice(0, 15), [
    "pipe2([3,4], 0x80000)",
    "socketpair(1, 0x80005, [5,6])",
    'open("/dev/null", 0x80000, 0)',
    ...memfd(8),
    "prepareFork()",
    "clone(0x24020011)",
    "close(3)",
    "close(6)",
    "close(7)",
    "close(8)",
    "write(4, 1)",
    "close(4)",
  ]);
});

/** The trampoline's report that no candidate could be run. */
const execFailed = (errno: number) => ({ record: [EXEC_FAILED_RECORD, errno] as [number, number] });

Deno.test("execute: the trampoline's ENOENT is a MicroError with exit code 127", async () => {
  const sys = new RecordingSys().scriptRecv(5, READY, execFailed(2));
  const e = await failure(execute(PLAN, OPTS, sys));
  assert.equal(e.exitCode, 127);
  assert.equal(
    e.line(),
    "exec: process: execve path=nope: ENOENT (command not found in the container; check the path and PATH)",
  );
  // Killed, then reaped: the trampoline exits by itself after its record, and a record forged
  // by whatever reached it must not leave micro waiting on a running command.
  assert.deepEqual(sys.format(), [
    ...SETUP,
    ...RELEASE,
    "recvRecord(5)", // READY
    "recvRecord(5)", // [execve, ENOENT]
    ...rest(3),
    "kill(4242, 9)",
    "waitpid(4242)",
  ]);
});

Deno.test("execute: a step's [step, errno] after READY kills the child before reaping it", async () => {
  const sys = new RecordingSys().scriptRecv(5, READY, { record: [stepOf(PLAN, "sethostname"), 1] });
  const e = await failure(execute(PLAN, OPTS, sys));
  assert.equal(e.line(), "identity: uts: sethostname name=box: EPERM");
  assert.deepEqual(sys.format().slice(-2), ["kill(4242, 9)", "waitpid(4242)"]);
});

Deno.test("execute: a child's step that threw (THREW_RECORD) is an error naming micro as at fault, and the child is killed and reaped", async () => {
  const sys = new RecordingSys().scriptRecv(5, { record: [THREW_RECORD, 1] });
  const e = await failure(execute(PLAN, OPTS, sys));
  assert.match(e.line(), /set-up failed inside micro itself \(an exception in step 1, /);
  assert.match(e.line(), /a bug in micro: report it/);
  assert.deepEqual(sys.format().slice(-2), ["kill(4242, 9)", "waitpid(4242)"]);
  // After READY too (steps run after it: hooks, the exec fifo's, the trampoline's fds).
  const late = new RecordingSys().scriptRecv(5, READY, { record: [THREW_RECORD, 2] });
  const l = await failure(execute(PLAN, OPTS, late));
  assert.match(l.line(), /set-up failed inside micro itself \(an exception in step 2/);
  assert.deepEqual(late.format().slice(-2), ["kill(4242, 9)", "waitpid(4242)"]);
});

Deno.test("execute: the trampoline's ENOTDIR is 'not found' too (127)", async () => {
  const sys = new RecordingSys().scriptRecv(5, READY, execFailed(20));
  assert.equal((await failure(execute(PLAN, OPTS, sys))).exitCode, 127);
});

Deno.test("execute: the trampoline's EACCES or ENOEXEC is a MicroError with exit code 126", async () => {
  const sys = new RecordingSys().scriptRecv(5, READY, execFailed(13));
  const e = await failure(execute(PLAN, OPTS, sys));
  assert.equal(e.exitCode, 126);
  assert.equal(
    e.line(),
    "exec: process: execve path=nope: EACCES (the command is not executable, or its file system is mounted noexec)",
  );
  const noexec = new RecordingSys().scriptRecv(5, READY, execFailed(8));
  const n = await failure(execute(PLAN, OPTS, noexec));
  assert.equal(n.exitCode, 126);
  assert.match(n.line(), /^exec: process: execve path=nope: ENOEXEC/);
});

/** PLAN under Landlock rules that let the container execute only beneath /bin. */
function landlockPlan(candidates: string[], cwd = "/"): Op[] {
  return [
    ...PLAN.slice(0, -2),
    op("restrict", "lsm", "landlock", {
      abi: 3,
      rules: [
        { path: "/bin", access: ["read", "execute"] },
        { path: "/app", access: ["read"] },
        { path: "/tmp", access: ["read", "write"] },
      ],
    }),
    op("exec", "process", "chdir", { path: cwd }),
    op("exec", "process", "execve", { args: ["hello.sh"], env: [], path: candidates }),
  ];
}

Deno.test("execute: EACCES under Landlock names its rule set and the key that adds the path", async () => {
  const sys = new RecordingSys().scriptRecv(5, READY, execFailed(13));
  const e = await failure(execute(landlockPlan(["/app/hello.sh"]), OPTS, sys));
  assert.equal(e.exitCode, 126);
  assert.equal(
    e.line(),
    "exec: process: execve path=hello.sh: EACCES (Landlock's rule set does not allow " +
      "executing /app/hello.sh: add {path: /app, access: [read, execute]} to " +
      "lsm.landlock.paths+ in a profile that extends this one)",
  );
  // The trampoline's own exec failing the same way gets the same hint.
  const plan = landlockPlan(["/app/hello.sh"]);
  const direct = new RecordingSys().scriptRecv(5, READY, {
    record: [stepOf(plan, "execve"), 13],
  });
  assert.match((await failure(execute(plan, OPTS, direct))).line(), /Landlock's rule set/);
});

Deno.test("execute: EACCES under Landlock for a path it allows keeps the noexec hint", async () => {
  const sys = new RecordingSys().scriptRecv(5, READY, execFailed(13));
  const e = await failure(execute(landlockPlan(["/bin/hello.sh"]), OPTS, sys));
  assert.match(
    e.line(),
    /\(the command is not executable, or its file system is mounted noexec\)$/,
  );
  // Another errno under Landlock keeps its own hint.
  const enoent = new RecordingSys().scriptRecv(5, READY, execFailed(2));
  const n = await failure(execute(landlockPlan(["/app/hello.sh"]), OPTS, enoent));
  assert.match(n.line(), /: ENOENT \(command not found/);
});

Deno.test("landlockExecHint: the first candidate beneath no execute rule, made absolute", () => {
  const rules = [
    { path: "/bin", access: ["read", "execute"] },
    { path: "/usr/", access: ["execute"] },
    { path: "/etc", access: ["read"] },
  ];
  assert.equal(landlockExecHint(["/bin/sh", "/usr/bin/env", "/bin"], rules), undefined);
  // A PATH search: the first refused candidate is named.
  const hint = landlockExecHint(["/bin/x", "/etc/x", "/opt/x"], rules);
  assert.match(hint!, /executing \/etc\/x: add \{path: \/etc, access/);
  // Lexical: /binary is not beneath /bin; a relative path starts at the working directory.
  assert.match(landlockExecHint(["/binary"], rules)!, /executing \/binary: add \{path: \/binary,/);
  assert.match(landlockExecHint(["./run.sh"], rules, "/srv/app")!, /\/srv\/app\/run\.sh/);
  assert.equal(landlockExecHint(["../bin/sh"], rules, "/etc"), undefined);
  assert.equal(landlockExecHint(["/anything"], [{ path: "/", access: ["execute"] }]), undefined);
});

Deno.test("execute: EXEC_FAILED before READY is a malformed report (kills the child)", async () => {
  const sys = new RecordingSys().scriptRecv(5, execFailed(2));
  const e = await failure(execute(PLAN, OPTS, sys));
  assert.equal(e.line(), "clone: engine: the child sent a malformed report (8 bytes, step -4)");
  assert.deepEqual(sys.format(), [...SETUP, ...RELEASE, ...KILLED]);
});

Deno.test("execute: a failed exec of the trampoline is the command's exec failing", async () => {
  const sys = new RecordingSys().scriptRecv(5, READY, { record: [stepOf(PLAN, "execve"), 1] });
  const e = await failure(execute(PLAN, OPTS, sys));
  assert.equal(e.exitCode, 126);
  assert.match(e.line(), /^exec: process: execve path=nope: EPERM/);
});

/** PLAN with `--init`: the trampoline stays as the container's init. */
const INIT_PLAN: Op[] = PLAN.map((o) =>
  o.kind === "execve" ? { ...o, args: { ...o.args, init: true } } : o
);

Deno.test("execute: --init's INIT_FAILED is one line naming the init and the errno (125)", async () => {
  const sys = new RecordingSys().scriptRecv(5, READY, { record: [INIT_FAILED_RECORD, 11] });
  const e = await failure(execute(INIT_PLAN, OPTS, sys));
  assert.equal(e.exitCode, 125);
  assert.equal(
    e.line(),
    "exec: process: init: EAGAIN (the init could not fork the command: the pids limit or " +
      "RLIMIT_NPROC is reached)",
  );
  // Killed and reaped, as every record that ends the start.
  assert.deepEqual(sys.format().slice(-2), ["kill(4242, 9)", "waitpid(4242)"]);
  // With --init the command's own exec failure is still the one-line 127.
  const gone = new RecordingSys().scriptRecv(5, READY, execFailed(2));
  const g = await failure(execute(INIT_PLAN, OPTS, gone));
  assert.equal(g.exitCode, 127);
  assert.match(g.line(), /^exec: process: execve path=nope: ENOENT \(command not found/);
});

Deno.test("execute: INIT_FAILED without --init is a malformed report", async () => {
  const sys = new RecordingSys().scriptRecv(5, READY, { record: [INIT_FAILED_RECORD, 11] });
  assert.match((await failure(execute(PLAN, OPTS, sys))).line(), /malformed report/);
});

Deno.test("execute: a LABEL_FAILED record is malformed: the child writes the label itself", async () => {
  const sys = new RecordingSys().scriptRecv(5, READY, { record: [LABEL_FAILED_RECORD, 2] });
  assert.match((await failure(execute(PLAN, OPTS, sys))).line(), /malformed report/);
});

// ---- The trampoline's memfd ---------------------------------------------------------------

Deno.test("execute: a kernel before 6.3 (MFD_EXEC: EINVAL) gets the memfd without the flag", async () => {
  const sys = new RecordingSys()
    .failOn("memfdCreate", (a) => ((a[1] as number) & C.MFD_EXEC) !== 0, 22)
    .scriptRecv(5, READY);
  assert.deepEqual(await execute(PLAN, OPTS, sys), { exitCode: 0 });
  assert.deepEqual(sys.format({ results: true }).slice(5, 10), [
    'memfdCreate("micro-exec", 0x13) = -22',
    'memfdCreate("micro-exec", 0x3) = 12',
    `write(12, ${TRAMPOLINE.x86_64.length}) = ${TRAMPOLINE.x86_64.length}`,
    "fchmod(12, 0o111) = 0",
    "fcntl(12, 0x409, 0xf) = 0",
  ]);
  assert.deepEqual(openedAndClosed(sys), { opened: fdRange(3, 13), closed: fdRange(3, 13) });
});

Deno.test("execute: vm.memfd_noexec=2 (EACCES) is named in the error", async () => {
  const sys = new RecordingSys().failOn("memfdCreate", 13);
  const e = await failure(execute(PLAN, OPTS, sys));
  assert.equal(
    e.line(),
    "prepare: engine: memfd_create name=micro-exec: EACCES (vm.memfd_noexec=2 forbids the " +
      "executable memfd micro starts commands from; set it to 1 or 0)",
  );
  // MFD_EXEC is refused with EACCES, not EINVAL: no retry without it.
  assert.equal(sys.names().filter((n) => n === "memfdCreate").length, 1);
});

Deno.test("execute: the trampoline is the one for the machine's architecture", async () => {
  const sys = new RecordingSys({ arch: "aarch64" }).scriptRecv(5, READY);
  await execute(PLAN, OPTS, sys);
  assert.ok(sys.format().includes(`write(12, ${TRAMPOLINE.aarch64.length})`));
  assert.notEqual(TRAMPOLINE.aarch64.length, TRAMPOLINE.x86_64.length);
});

Deno.test("execute: a failing memfd_create, write or seal closes every fd; nothing is cloned", async () => {
  const cases: [string, RecordingSys, string][] = [
    [
      "prepare: engine: memfd_create name=micro-exec: EMFILE",
      new RecordingSys().failOn("memfdCreate", 24),
      "close(7)",
    ],
    [
      "prepare: engine: write memfd=micro-exec: ENOSPC",
      new RecordingSys().failOn("write", 28),
      "close(8)",
    ],
    [
      "prepare: engine: fcntl(F_ADD_SEALS) memfd=micro-exec: EPERM",
      new RecordingSys().failOn("fcntl", 1),
      "close(8)",
    ],
    [
      "prepare: engine: wrote 100 of 483 bytes to the memfd micro-exec",
      new RecordingSys().returns("write", () => true, 100),
      "close(8)",
    ],
  ];
  for (const [line, sys, last] of cases) {
    const e = await failure(execute(PLAN, OPTS, sys));
    assert.equal(
      e.line().replace(/ \(.*\)$/, ""),
      line.replace("483", String(TRAMPOLINE.x86_64.length)),
    );
    assert.equal(e.exitCode, 125);
    assert.equal(sys.names().includes("clone"), false);
    const f = sys.format();
    assert.ok(f.includes(last), `${line}: ${f.join(" ")}`);
    assert.deepEqual(openedAndClosed(sys).opened, openedAndClosed(sys).closed);
  }
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

Deno.test("syncMode: the child makes its root while it is attached, unless OCI hooks come first", () => {
  const mode = (plan: Op[], opts: Partial<EngineOptions> = {}) =>
    syncMode(plan, cloneFlags(plan), { ...OPTS, ...opts });
  assert.equal(mode(PLAN), "root");
  // Its id maps, /proc files or CPUs first, then its root.
  assert.equal(mode(realPlan({ user: ON, mount: ON })), "maps");
  assert.equal(mode([...PLAN, op("attach", "process", "cpu-affinity", { cpus: [1] })]), "maps");
  // The network's attach writes only files the child mounts after its last wait.
  assert.equal(mode([...PLAN, op("attach", "net", "cni-add", {} as never)]), "root");
  // An OCI runtime's hooks run before its pivot_root.
  assert.equal(mode(PLAN, { beforeRelease: () => Promise.resolve() }), "first");
  const state = { ociVersion: "1.2.0", id: "c", status: "creating", pid: 0, bundle: "/b" };
  const hook = op("rootfs", "oci", "oci-hook", {
    hook: "createContainer",
    index: 0,
    path: "/bin/true",
    args: [],
    env: [],
    state,
  } as never);
  assert.equal(mode([...PLAN, hook]), "first");
});

Deno.test("execute: with attach work on /proc or CPUs the child hears micro after it, then at the release; else once", async () => {
  const plan = [...PLAN, op("attach", "process", "cpu-affinity", { cpus: [1] })];
  const sys = new RecordingSys().scriptRecv(5, READY);
  assert.deepEqual(await execute(plan, OPTS, sys), { exitCode: 0 });
  assert.deepEqual(sys.written(4), new Uint8Array([1, 1]));
  const calls = sys.format();
  const first = calls.indexOf("write(4, 1)");
  assert.ok(
    first > calls.findIndex((c) => c.startsWith("schedSetaffinity(4242")),
    calls.join("\n"),
  );
  assert.ok(calls.indexOf("write(4, 1)", first + 1) > first);
  const once = new RecordingSys().scriptRecv(5, READY);
  assert.deepEqual(await execute(PLAN, OPTS, once), { exitCode: 0 });
  assert.deepEqual(once.written(4), new Uint8Array([1]));
});

Deno.test("execute: an attach that fails after the id maps' byte: one byte only, the child killed", async () => {
  await withJoin(async (plan, dir) => {
    // cgroup.procs a directory: the cgroup join (after the first byte) fails.
    const maps = [...plan, op("attach", "process", "cpu-affinity", { cpus: [1] })];
    const sys = new RecordingSys().returns("reap", () => true, 0, 1).scriptWait(9)
      .failOn("open", (a) => a[0] === `${dir}/cgroup.procs`, 21);
    await failure(execute(maps, OPTS, sys));
    assert.deepEqual(sys.written(4), new Uint8Array([1]));
    const calls = sys.format();
    assert.ok(calls.indexOf("kill(4242, 9)") > calls.indexOf("write(4, 1)"), calls.join("\n"));
  });
});

/** An attach that fails as it does when the child is gone: its network namespace with it. */
const NETNS_GONE = {
  ...OPTS,
  onChild: () => {
    throw new Error("/proc/4242/ns/net: ENOENT");
  },
};

Deno.test("execute: a child that failed a step and exited while it was attached: its step's error, not the attach's", async () => {
  const sys = new RecordingSys({ waitStatus: 256 }) // exit(1)
    .scriptRecv(5, { record: [stepOf(PLAN, "mount"), 13] });
  const e = await failure(execute(PLAN, NETNS_GONE, sys));
  assert.match(e.line(), /^rootfs: mount: mount src=proc dst=\/proc .*: EACCES/);
  const calls = sys.format().slice(SETUP.length);
  assert.deepEqual(calls.slice(0, 2), ["reap(4242)", "recvRecord(5)"]);
  assert.ok(!calls.some((c) => c.startsWith("kill(")), "a reaped child is not killed");
  assert.deepEqual(sys.written(4), new Uint8Array(0), "never released");
  assert.deepEqual(openedAndClosed(sys), { opened: fdRange(3, 13), closed: fdRange(3, 13) });
});

Deno.test("execute: a child that exited by itself with no word while it was attached: the attach's error", async () => {
  const sys = new RecordingSys({ waitStatus: 256 });
  await assert.rejects(execute(PLAN, NETNS_GONE, sys), /ns\/net: ENOENT/);
  const calls = sys.format().slice(SETUP.length);
  assert.deepEqual(calls.slice(0, 2), ["reap(4242)", "recvRecord(5)"]);
  assert.ok(!calls.some((c) => c.startsWith("kill(")), "a reaped child is not killed");
});

Deno.test("execute: a child exiting by itself as micro kills it (not yet a zombie): its step's error", async () => {
  const sys = new RecordingSys({ waitStatus: 256 }) // its own exit(1), not our SIGKILL
    .returns("reap", () => true, 0, 1)
    .scriptRecv(5, { record: [stepOf(PLAN, "mount"), 13] });
  const e = await failure(execute(PLAN, NETNS_GONE, sys));
  assert.match(e.line(), /^rootfs: mount: mount src=proc dst=\/proc .*: EACCES/);
  assert.deepEqual(sys.format().slice(SETUP.length, SETUP.length + 4), [
    "reap(4242)",
    "kill(4242, 9)",
    "waitpid(4242)",
    "recvRecord(5)",
  ]);
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
    { record: [stepOf(plan, "sethostname"), 1] },
  );
  const e = await failure(execute(plan, { ...OPTS, terminal: true }, sys));
  assert.equal(e.line(), "identity: uts: sethostname name=box: EPERM");
  assert.deepEqual(sys.format().slice(13), [
    "write(4, 1)",
    "close(4)",
    "recvRecord(5)",
    // The window size is copied from the first stdio fd that is a terminal.
    "ioctlBuf(0, 0x5413)",
    "ioctlBuf(9, 0x5414)",
    "recvRecord(5)",
    "close(5)",
    "close(9)",
    "kill(4242, 9)",
    "waitpid(4242)",
  ]);
});

Deno.test("execute: a console record after READY, or without a console op, is malformed and its fd closed", async () => {
  const plan = [...PLAN.slice(0, 7), op("rootfs", "process", "console", {}), ...PLAN.slice(7)];
  const late = new RecordingSys().scriptRecv(5, READY, { record: [-2, 0], fd: 9 });
  const e = await failure(execute(plan, { ...OPTS, terminal: true }, late));
  assert.match(e.line(), /malformed report \(8 bytes, step -2\)/);
  assert.deepEqual(late.format().slice(-4), [
    "close(9)",
    "close(5)",
    "kill(4242, 9)",
    "waitpid(4242)",
  ]);
  const none = new RecordingSys().scriptRecv(5, { record: [-2, 0], fd: 9 });
  const n = await failure(execute(PLAN, OPTS, none));
  assert.match(n.line(), /malformed report \(8 bytes, step -2\)/);
  assert.ok(none.format().includes("close(9)"));
  assert.ok(!none.format().some((c) => c.startsWith("ioctlBuf(9")), "never used as a terminal");
});

Deno.test("execute: a pid record without an enter op is malformed: nothing of that pid is touched", async () => {
  const sys = new RecordingSys().scriptRecv(5, READY, { record: [PID_RECORD, 1] });
  const e = await failure(execute(PLAN, OPTS, sys));
  assert.match(e.line(), /malformed report \(8 bytes, step -7\)/);
  assert.deepEqual(sys.format().filter((c) => /^(kill|waitpid|isChild)\(/.test(c)), [
    "kill(4242, 9)",
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
  assert.deepEqual(sys.format(), [...SETUP, "close(4)", ...rest(3)]);
  assert.deepEqual(openedAndClosed(sys), { opened: fdRange(3, 13), closed: fdRange(3, 13) });
});

Deno.test("execute: a failed pipe2 is a prepare-phase engine error", async () => {
  const sys = new RecordingSys().failOn("pipe2", 24);
  const e = await failure(execute(PLAN, OPTS, sys));
  assert.equal(e.line(), "prepare: engine: pipe2: EMFILE");
  assert.deepEqual(sys.format(), ["pipe2([], 0x80000)"]);
});

Deno.test("execute: an onChild that throws kills and reaps the child before release", async () => {
  // Still running: killed here (its status our SIGKILL).
  const sys = new RecordingSys().returns("reap", () => true, 0, 1).scriptWait(9);
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
    "reap(4242)",
    "kill(4242, 9)",
    "waitpid(4242)",
    "close(4)",
    ...rest(3),
  ]);
  assert.deepEqual(sys.written(4), new Uint8Array(0), "the child is never released");
  assert.deepEqual(openedAndClosed(sys), { opened: fdRange(3, 13), closed: fdRange(3, 13) });
});

// ---- READY and failed starts -------------------------------------------------------------

/** fds from..to-1 */
const fdRange = (from: number, to: number) => Array.from({ length: to - from }, (_, i) => from + i);

Deno.test("execute: a child that dies of a signal before READY is started again, once", async () => {
  const sys = new RecordingSys({ clonePid: 4243, waitStatus: 9 })
    .returns("clone", () => true, 4242, 1);
  const pids: number[] = [];
  const e = await failure(execute(PLAN, { ...OPTS, onChild: (pid) => pids.push(pid) }, sys));
  assert.equal(e.message, "the container's first process died of signal 9 before exec");
  assert.deepEqual(e.fields, { phase: "clone", plugin: "engine" });
  assert.equal(e.exitCode, 125);
  assert.equal(
    e.line(),
    "clone: engine: the container's first process died of signal 9 before exec",
  );
  // Two whole starts: new pipes, a new socket, a new clone; each child is reaped, not killed.
  assert.deepEqual(sys.format(), [
    ...setup(3),
    ...release(3),
    ...DIED(3, 4242),
    ...setup(3 + PER_START),
    ...release(3 + PER_START),
    ...DIED(3 + PER_START, 4243),
  ]);
  assert.equal(sys.names().filter((n) => n === "clone").length, 2);
  assert.deepEqual(pids, [4242, 4243]);
  const all = fdRange(3, 3 + 2 * PER_START);
  assert.deepEqual(openedAndClosed(sys), { opened: all, closed: all });
});

Deno.test("execute: a start retried after a signal death runs normally the second time", async () => {
  const sys = new RecordingSys({ clonePid: 4243 })
    .returns("clone", () => true, 4242, 1)
    .scriptWait(0x80 | 11) // the first child: SIGSEGV, core dumped
    .scriptRecv(15, READY);
  assert.deepEqual(await execute(PLAN, OPTS, sys), { exitCode: 0 });
  assert.deepEqual(sys.format(), [
    ...setup(3),
    ...release(3),
    ...DIED(3, 4242),
    ...setup(13),
    ...release(13),
    "recvRecord(15)",
    "recvRecord(15)",
    "close(15)",
    ...SUPERVISE.map((l) => l.replace("(8", "(18").replace("(10", "(20").replace("4242", "4243")),
  ]);
  const all = fdRange(3, 3 + 2 * PER_START);
  assert.deepEqual(openedAndClosed(sys), { opened: all, closed: all });
});

Deno.test("execute: a failed start closes the console master before the retry", async () => {
  const plan = [...PLAN.slice(0, 7), op("rootfs", "process", "console", {}), ...PLAN.slice(7)];
  const sys = new RecordingSys({ clonePid: 4243, waitStatus: 15 })
    .returns("clone", () => true, 4242, 1)
    .scriptRecv(5, { record: [CONSOLE_RECORD, 0], fd: 99 })
    .scriptRecv(11, { record: [CONSOLE_RECORD, 0], fd: 98 });
  const e = await failure(execute(plan, { ...OPTS, terminal: true }, sys));
  assert.equal(
    e.line(),
    "clone: engine: the container's first process died of signal 15 before exec",
  );
  // With a terminal there are no pipes: 3..8 (the memfd last), then 9..14.
  const attempt = (fd: number, pid: number, master: number) => [
    `pipe2([${fd},${fd + 1}], 0x80000)`,
    `socketpair(1, 0x80005, [${fd + 2},${fd + 3}])`,
    'open("/dev/null", 0x80000, 0)',
    ...memfd(fd + 5),
    "prepareFork()",
    "clone(0x24020011)",
    `close(${fd})`,
    `close(${fd + 3})`,
    `close(${fd + 4})`,
    `close(${fd + 5})`,
    ...release(fd),
    `recvRecord(${fd + 2})`,
    "ioctlBuf(0, 0x5413)",
    `ioctlBuf(${master}, 0x5414)`,
    `recvRecord(${fd + 2})`,
    `close(${fd + 2})`,
    `close(${master})`,
    `waitpid(${pid})`,
  ];
  assert.deepEqual(sys.format(), [...attempt(3, 4242, 99), ...attempt(9, 4243, 98)]);
});

Deno.test("execute: a child that exits before READY is a clone error, not retried", async () => {
  const sys = new RecordingSys({ waitStatus: 1 << 8 });
  const e = await failure(execute(PLAN, OPTS, sys));
  assert.equal(e.message, "the container's first process exited with 1 before exec");
  assert.deepEqual(e.fields, { phase: "clone", plugin: "engine" });
  assert.equal(e.exitCode, 125);
  assert.equal(e.line(), "clone: engine: the container's first process exited with 1 before exec");
  assert.deepEqual(sys.format(), [...SETUP, ...RELEASE, ...DIED(3, 4242)]);
  assert.deepEqual(openedAndClosed(sys), { opened: fdRange(3, 13), closed: fdRange(3, 13) });
});

/** After a bad report the child is killed, the socket closed and the child reaped. */
const KILLED = ["recvRecord(5)", ...rest(3), "kill(4242, 9)", "waitpid(4242)"];

Deno.test("execute: a report of the wrong length kills the child", async () => {
  const sys = new RecordingSys().returns("recvRecord", () => true, 4, 1);
  const e = await failure(execute(PLAN, OPTS, sys));
  assert.equal(e.line(), "clone: engine: the child sent a malformed report (4 bytes, step 0)");
  assert.deepEqual(e.fields, { phase: "clone", plugin: "engine" });
  assert.equal(e.exitCode, 125);
  assert.deepEqual(sys.format(), [...SETUP, ...RELEASE, ...KILLED]);
  assert.deepEqual(openedAndClosed(sys), { opened: fdRange(3, 13), closed: fdRange(3, 13) });
});

Deno.test("execute: a report naming a step out of range kills the child", async () => {
  const ops = PLAN.filter((o) => CHILD_PHASES.includes(o.phase));
  const sync = syncMode(PLAN, cloneFlags(PLAN), OPTS);
  const steps = compileChild(ops, { ...CHILD_CTX, sync }, new RecordingSys()).info.length;
  for (const [step, errno] of [[steps, 1], [999, 13], [-1, 0], [CONSOLE_RECORD, 0]]) {
    const sys = new RecordingSys().scriptRecv(5, { record: [step, errno] });
    const e = await failure(execute(PLAN, OPTS, sys));
    assert.equal(
      e.line(),
      `clone: engine: the child sent a malformed report (8 bytes, step ${step})`,
    );
    assert.deepEqual(sys.format(), [...SETUP, ...RELEASE, ...KILLED]);
  }
});

Deno.test("execute: a failing recv on the report socket kills the child", async () => {
  const sys = new RecordingSys().failOn("recvRecord", 9);
  const e = await failure(execute(PLAN, OPTS, sys));
  assert.equal(e.line(), "clone: engine: reading the child's report: EBADF");
  assert.equal(e.exitCode, 125);
  assert.deepEqual(sys.format({ results: true }).slice(SETUP.length), [
    "write(4, 1) = 1",
    "close(4) = 0",
    "recvRecord(5) = -9",
    "close(5) = 0",
    "close(8) = 0",
    "close(10) = 0",
    "kill(4242, 9) = 0",
    "waitpid(4242) = 4242",
  ]);
  assert.deepEqual(openedAndClosed(sys), { opened: fdRange(3, 13), closed: fdRange(3, 13) });
});

// ---- Early failures close what was opened ------------------------------------------------

Deno.test("execute: a failed socketpair closes both ends of the sync pipe", async () => {
  const sys = new RecordingSys().failOn("socketpair", 24);
  const e = await failure(execute(PLAN, OPTS, sys));
  assert.equal(e.line(), "prepare: engine: socketpair: EMFILE");
  assert.deepEqual(sys.format(), [
    "pipe2([3,4], 0x80000)",
    "socketpair(1, 0x80005, [])",
    "close(3)",
    "close(4)",
  ]);
});

Deno.test("execute: a failed open of /dev/null closes the pipe and the socket", async () => {
  const sys = new RecordingSys().failOn("open", 24);
  const e = await failure(execute(PLAN, OPTS, sys));
  assert.equal(e.line(), "prepare: engine: open path=/dev/null: EMFILE");
  assert.deepEqual(sys.format(), [
    "pipe2([3,4], 0x80000)",
    "socketpair(1, 0x80005, [5,6])",
    'open("/dev/null", 0x80000, 0)',
    "close(3)",
    "close(4)",
    "close(5)",
    "close(6)",
  ]);
});

Deno.test("execute: a plan compileChild refuses closes every fd, and nothing is cloned", async () => {
  // A console before pivot-root is a planning bug compileChild throws on.
  const plan = [...PLAN.slice(0, 6), op("rootfs", "process", "console", {}), ...PLAN.slice(6)];
  const sys = new RecordingSys();
  await assert.rejects(execute(plan, OPTS, sys), /console planned before pivot-root/);
  assert.deepEqual(sys.format(), [
    "pipe2([3,4], 0x80000)",
    "socketpair(1, 0x80005, [5,6])",
    'open("/dev/null", 0x80000, 0)',
    "pipe2([8,9], 0x80000)",
    "pipe2([10,11], 0x80000)",
    ...memfd(12),
    ...fdRange(3, 13).map((fd) => `close(${fd})`),
  ]);
});

// ---- A real plan from the plugins ------------------------------------------------------

const HOST: HostInfo = {
  arch: "x86_64",
  uid: 0,
  gid: 0,
  id: "c0ffee",
  stateDir: "/run/micro/c0ffee",
  containerDir: "/var/lib/micro/containers/0123456789ab",
  hostView: [],
  devices: ["null"],
  image: "dir",
  passwd: "root:x:0:0:root:/root:/bin/sh\n",
  group: "root:x:0:\n",
  sourceKinds: {},
  files: {},
  capLastCap: 40,
  lsm: { apparmor: false, selinux: false, landlock: 0 },
  ...CGROUP_FACTS,
};

function realPlan(sections: Sections["sections"]): Op[] {
  const input = { image: "/img", args: ["sh"], terminal: false, stdin: false };
  return planRun(buildSpec(input, { process: {}, sections }, PLUGINS), HOST, PLUGINS);
}

const ON = { enabled: true, options: {} };

Deno.test("execute: a real plan clones with its flags; the cgroup namespace comes later", async () => {
  const plan = realPlan({ mount: ON, pid: ON, uts: ON, ipc: ON, net: ON, cgroupns: ON });
  const sys = new RecordingSys().scriptRecv(5, READY);
  assert.deepEqual(await execute(plan, OPTS, sys), { exitCode: 0 });
  assert.equal(
    sys.calls().find((c) => c.call === "clone")?.args[0],
    // CLONE_NEWCGROUP is not here: the child unshares it once it is in its cgroup.
    C.CLONE_NEWNS | C.CLONE_NEWPID | C.CLONE_NEWUTS | C.CLONE_NEWIPC | C.CLONE_NEWNET | C.SIGCHLD,
  );
  assert.deepEqual(sys.format().slice(SETUP.length), [...RELEASE, ...EXECED, ...SUPERVISE]);
});

Deno.test("execute: a failed id-map write is an attach error naming the plugin and path", async () => {
  const plan = realPlan({ user: ON, mount: ON });
  const path = `/proc/${NO_SUCH_PID}/uid_map`;
  // The kernel's answer for a process that is gone (the write goes through sys).
  const sys = new RecordingSys({ clonePid: NO_SUCH_PID }).returns("reap", () => true, 0, 1)
    .scriptWait(9).failOn("open", (a) => a[0] === path, 2);
  const e = await failure(execute(plan, OPTS, sys));
  assert.equal(e.fields.phase, "attach");
  assert.equal(e.fields.plugin, "user");
  assert.equal(e.fields.op, "write");
  assert.deepEqual(e.fields.paths, { path, content: '"0 1000000000 65536"' });
  assert.equal(e.fields.errno, 2);
  assert.equal(e.exitCode, 125);
  assert.match(
    e.line(),
    new RegExp(`^attach: user: write path=${path} content="0 1000000000 65536": ENOENT \\(.+\\)$`),
  );
  // The child is killed and reaped, never released.
  assert.deepEqual(sys.format().slice(-6), [
    `kill(${NO_SUCH_PID}, 9)`,
    `waitpid(${NO_SUCH_PID})`,
    "close(4)",
    ...rest(3),
  ]);
  assert.equal(sys.calls().some((c) => c.call === "write" && c.args[0] === 4), false);
});

Deno.test("execute: in a user namespace the container's root owns micro's pipes, not /dev/null", async () => {
  const plan = realPlan({ user: ON, mount: ON });
  const sys = new RecordingSys({ clonePid: NO_SUCH_PID });
  await failure(execute(plan, { ...OPTS, stdin: true }, sys));
  const calls = sys.format();
  // Its host id from the uid_map and gid_map: 1000000000. The container's ends: 8, 11, 13.
  assert.deepEqual(calls.slice(3, 10), [
    "pipe2([8,9], 0x80000)",
    "pipe2([10,11], 0x80000)",
    "pipe2([12,13], 0x80000)",
    "fchown(8, 1000000000, 1000000000)",
    "fchown(11, 1000000000, 1000000000)",
    "fchown(13, 1000000000, 1000000000)",
    'memfdCreate("micro-exec", 0x13)',
  ]);
  // Without a user namespace, and with a terminal (the child makes it), nothing is chowned.
  for (const [p, o] of [[PLAN, OPTS], [plan, { ...OPTS, terminal: true }]] as const) {
    const none = new RecordingSys({ clonePid: NO_SUCH_PID }).scriptRecv(5, READY);
    await execute(p, o, none).catch(() => {});
    assert.equal(none.calls().some((c) => c.call === "fchown"), false);
  }
});

Deno.test("execute: a pipe the container's root cannot get is a prepare error; nothing is cloned", async () => {
  const plan = realPlan({ user: ON, mount: ON });
  const sys = new RecordingSys().returns("fchown", () => true, -1);
  const e = await failure(execute(plan, OPTS, sys));
  assert.equal(
    e.line().split(" (")[0],
    'prepare: engine: fchown pipe="the container\'s stdout" owner=1000000000:1000000000: EPERM',
  );
  assert.equal(sys.calls().some((c) => c.call === "clone"), false);
  const { opened, closed } = openedAndClosed(sys);
  assert.deepEqual(closed, opened);
});

Deno.test("execute: an id-map write the kernel refuses is EPERM, with the rootless hint", async () => {
  // A uid_map written already: writing it again is EPERM (the kernel's answer to the write,
  // scripted on the fd the fake opens it as).
  const plan = realPlan({ user: ON, mount: ON });
  const sys = new RecordingSys({ clonePid: Deno.pid }).returns("reap", () => true, 0, 1)
    .scriptWait(9).returns("open", (a) => a[0] === `/proc/${Deno.pid}/uid_map`, 97)
    .failOn("write", (a) => a[0] === 97, 1);
  const e = await failure(execute(plan, OPTS, sys));
  assert.equal(e.fields.errno, 1);
  assert.equal(
    e.line(),
    `attach: user: write path=/proc/${Deno.pid}/uid_map content="0 1000000000 65536": EPERM ` +
      "(the id map is not allowed: a rootless caller may map only its own uid and gid)",
  );
  assert.deepEqual(sys.format().slice(-6), [
    `kill(${Deno.pid}, 9)`,
    `waitpid(${Deno.pid})`,
    "close(4)",
    ...rest(3),
  ]);
});

// ---- Signals before the command runs -----------------------------------------------------

Deno.test("execute: TERM before the start stops the run: nothing is cloned, exit 143", async () => {
  const signals = new RunSignals();
  try {
    signals.deliver(15);
    const sys = new RecordingSys();
    const e = await failure(execute(PLAN, { ...OPTS, signals }, sys));
    assert.equal(e.exitCode, 143);
    assert.equal(e.line(), "stopped by SIGTERM before the command started");
    assert.deepEqual(sys.calls(), []);
  } finally {
    signals.remove();
  }
});

/**
 * A Sys on which TERM arrives while micro waits for the child's first report; the child
 * then dies (SIGKILL's status).
 */
function termWhileStarting(signals: RunSignals): RecordingSys {
  return new RecordingSys({ waitStatus: 9 }).returns(
    "recvRecord",
    () => {
      signals.deliver(15);
      return true;
    },
    0,
    1,
  );
}

Deno.test("execute: TERM while the child starts kills it; no retry; every fd closed", async () => {
  const signals = new RunSignals();
  try {
    const sys = termWhileStarting(signals);
    const e = await failure(execute(PLAN, { ...OPTS, signals }, sys));
    assert.equal(e.exitCode, 143);
    assert.deepEqual(sys.format().slice(SETUP.length + RELEASE.length), [
      "recvRecord(5)",
      "kill(4242, 9)",
      ...rest(3),
      "waitpid(4242)",
    ]);
    assert.equal(sys.names().filter((n) => n === "clone").length, 1);
    assert.deepEqual(openedAndClosed(sys), { opened: fdRange(3, 13), closed: fdRange(3, 13) });
  } finally {
    signals.remove();
  }
});

Deno.test("execute: TERM as the command execs: it is killed and reaped, exit 143", async () => {
  const signals = new RunSignals();
  try {
    const sys = new RecordingSys({ waitStatus: 9 }).scriptRecv(5, READY);
    sys.returns("recvRecord", () => {
      if (sys.names().filter((n) => n === "recvRecord").length === 2) signals.deliver(15);
      return false;
    }, 0);
    const e = await failure(execute(PLAN, { ...OPTS, signals }, sys));
    assert.equal(e.exitCode, 143);
    assert.deepEqual(sys.format().slice(SETUP.length + RELEASE.length), [
      "recvRecord(5)",
      "recvRecord(5)",
      "kill(4242, 9)",
      "close(5)",
      "close(8)",
      "close(10)",
      "waitpid(4242)",
    ]);
  } finally {
    signals.remove();
  }
});

Deno.test({
  name: "execute: a retried start with an overlay root copies the container's directory again",
  // The detached copies of the store are root's (storeFds): as another user there are none.
  ignore: Deno.uid() !== 0,
  fn: async () => {
    const state = Deno.makeTempDirSync({ prefix: "micro-engine-" });
    try {
      const overlay = { upper: "/s/containers/c1/upper", work: "/s/containers/c1/work" };
      const plan = PLAN.map((o) =>
        o.kind === "bind-root"
          ? op("rootfs", "mount", "bind-root", {
            source: "/img",
            readonly: false,
            overlay: { ...overlay, userxattr: false },
          })
          : o
      );
      const sys = new RecordingSys({ clonePid: 4243 })
        .returns("clone", () => true, 4242, 1)
        .scriptWait(0x80 | 11) // the first child: SIGSEGV
        .scriptRecv(16, READY); // the second start's report socket (one more fd per start)
      const r = await execute(plan, { ...OPTS, rootPath: `${state}/root` }, sys);
      assert.deepEqual(r, { exitCode: 0 });
      const copies = sys.format().filter((l) => l.startsWith("openTree"));
      assert.equal(copies.length, 2, copies.join("\n"));
      assert.ok(copies.every((l) => l.includes('"/s/containers/c1"')), copies.join("\n"));
    } finally {
      Deno.removeSync(state, { recursive: true });
    }
  },
});

Deno.test("execute: a child that died of a signal before an attach step is a failed start, retried", async () => {
  let calls = 0;
  const sys = new RecordingSys({ clonePid: 4243 })
    .returns("clone", () => true, 4242, 1)
    .scriptWait(11) // the first child: SIGSEGV, seen when the attach step fails
    .scriptRecv(15, READY);
  const r = await execute(PLAN, {
    ...OPTS,
    onChild: () => {
      if (calls++ === 0) throw new Error("/proc/4242/ns/net: ENOENT");
    },
  }, sys);
  assert.deepEqual(r, { exitCode: 0 });
  assert.equal(sys.names().filter((n) => n === "clone").length, 2);
  assert.ok(!sys.format().includes("kill(4242, 9)"), "a dead child is not killed");
});

Deno.test("execute: a child dying of a signal, not yet a zombie, when an attach step fails is a failed start, retried", async () => {
  // Its memory released, its /proc files root's: the id map write fails (EACCES) before it
  // can be reaped. Killed and reaped, its status is its own SIGSEGV's.
  let calls = 0;
  const sys = new RecordingSys({ clonePid: 4243 })
    .returns("clone", () => true, 4242, 1)
    .returns("reap", () => true, 0, 1)
    .scriptWait(11)
    .scriptRecv(15, READY);
  const r = await execute(PLAN, {
    ...OPTS,
    onChild: () => {
      if (calls++ === 0) throw new Error("/proc/4242/setgroups: EACCES");
    },
  }, sys);
  assert.deepEqual(r, { exitCode: 0 });
  assert.equal(sys.names().filter((n) => n === "clone").length, 2);
});

Deno.test("execute: a live child when an attach step fails: killed, reaped, the step's error", async () => {
  const sys = new RecordingSys({ clonePid: 4243 })
    .returns("clone", () => true, 4242, 1)
    .returns("reap", () => true, 0, 1)
    .scriptWait(9); // our SIGKILL
  await assert.rejects(
    () =>
      execute(PLAN, {
        ...OPTS,
        onChild: () => {
          throw new Error("/proc/4242/uid_map: EPERM");
        },
      }, sys),
    /uid_map: EPERM/,
  );
  assert.equal(sys.names().filter((n) => n === "clone").length, 1);
  const log = sys.format();
  assert.ok(log.includes("kill(4242, 9)"), log.join("\n"));
  assert.ok(log.some((l) => l.startsWith("waitpid(4242)")), log.join("\n"));
});

/** The plan joining one cgroup dir (a temp dir standing for it) whose cgroup.procs is a file. */
function withJoin(fn: (plan: Op[], dir: string) => Promise<void>): Promise<void> {
  const dir = Deno.makeTempDirSync({ prefix: "micro-clone3-" });
  Deno.writeTextFileSync(`${dir}/cgroup.procs`, "");
  const plan = [...PLAN, op("attach", "cgroups", "cgroup-join", { path: dir })];
  return fn(plan, dir).finally(() => Deno.removeSync(dir, { recursive: true }));
}

/**
 * The fake opens the cgroup dir as `fd` and says it is on `magic`'s file system; its
 * cgroup.procs opens as PROCS_FD (what the parent writes there: `sys.written(PROCS_FD)`).
 */
function cgroupFs(sys: RecordingSys, dir: string, magic: number): { fd: number } {
  const at = { fd: -1 };
  sys.returns("open", (a) => a[0] === dir, () => (at.fd = 99));
  sys.returns("open", (a) => a[0] === `${dir}/cgroup.procs`, PROCS_FD);
  sys.returns("fstatfsType", (a) => a[0] === 99, magic);
  return at;
}

const PROCS_FD = 98;
const procsWritten = (sys: RecordingSys) => new TextDecoder().decode(sys.written(PROCS_FD));

Deno.test("execute: on cgroup v2 the child is born in its cgroup (clone3, CLONE_INTO_CGROUP), no cgroup.procs write", async () => {
  await withJoin(async (plan, dir) => {
    const sys = new RecordingSys().scriptRecv(5, READY);
    const at = cgroupFs(sys, dir, C.CGROUP2_SUPER_MAGIC);
    assert.deepEqual(await execute(plan, OPTS, sys), { exitCode: 0 });
    const calls = sys.calls().map((c) => c.call);
    assert.ok(!calls.includes("clone"), calls.join(" "));
    const clone3 = sys.calls().find((c) => c.call === "clone3")!;
    const v = new DataView(new Uint8Array(clone3.args[0] as number[]).buffer);
    assert.equal(v.byteLength, 88);
    assert.equal(
      v.getBigUint64(0, true),
      BigInt(C.CLONE_NEWNS | C.CLONE_NEWPID | C.CLONE_NEWUTS) | BigInt(C.CLONE_INTO_CGROUP),
    );
    assert.equal(v.getBigUint64(32, true), BigInt(C.SIGCHLD)); // exit_signal
    assert.equal(v.getBigUint64(80, true), BigInt(at.fd)); // cgroup
    // The fd is open from before the sweep until after the clone, then closed.
    assert.ok(calls.indexOf("open") < calls.indexOf("prepareFork"));
    assert.ok(sys.calls().some((c) => c.call === "close" && c.args[0] === at.fd));
    assert.equal(procsWritten(sys), "");
    assert.ok(!sys.format().some((c) => c.includes("cgroup.procs")), "never opened");
  });
});

Deno.test("execute: without clone3 (ENOSYS) or off cgroup v2, a plain clone and a cgroup.procs write", async () => {
  await withJoin(async (plan, dir) => {
    const sys = new RecordingSys().scriptRecv(5, READY).failOn("clone3", 38);
    cgroupFs(sys, dir, C.CGROUP2_SUPER_MAGIC);
    assert.deepEqual(await execute(plan, OPTS, sys), { exitCode: 0 });
    const calls = sys.calls().map((c) => c.call);
    assert.ok(calls.indexOf("clone3") < calls.indexOf("clone"), calls.join(" "));
    assert.equal(procsWritten(sys), "4242");
  });
  await withJoin(async (plan, dir) => {
    const sys = new RecordingSys().scriptRecv(5, READY);
    cgroupFs(sys, dir, 0x27e0eb); // cgroup v1
    assert.deepEqual(await execute(plan, OPTS, sys), { exitCode: 0 });
    assert.ok(!sys.calls().some((c) => c.call === "clone3"));
    assert.equal(procsWritten(sys), "4242");
  });
});

Deno.test("execute: an initial CPU affinity (OCI exec) is set on the waiting child before its cgroup.procs write, never clone3", async () => {
  await withJoin(async (plan, dir) => {
    const sys = new RecordingSys().scriptRecv(5, READY);
    cgroupFs(sys, dir, C.CGROUP2_SUPER_MAGIC);
    let procs = "unread";
    sys.returns("schedSetaffinity", () => {
      procs = procsWritten(sys);
      return true;
    }, 0);
    const affinity = op("attach", "process", "cpu-affinity", { cpus: [1] });
    assert.deepEqual(await execute([...plan, affinity], OPTS, sys), { exitCode: 0 });
    const calls = sys.calls();
    assert.ok(!calls.some((c) => c.call === "clone3"), "born in the cgroup: no moment before");
    const set = calls.find((c) => c.call === "schedSetaffinity")!;
    assert.deepEqual(set.args, [4242, [2, 0, 0, 0, 0, 0, 0, 0]]);
    assert.equal(procs, "", "set before the child joined");
    assert.equal(procsWritten(sys), "4242");
  });
});

Deno.test("execute: a refused initial CPU affinity is an attach error naming the CPUs", async () => {
  const sys = new RecordingSys().scriptRecv(5, READY).failOn("schedSetaffinity", 22)
    .returns("reap", () => true, 0, 1);
  const e = await failure(
    execute([...PLAN, op("attach", "process", "cpu-affinity", { cpus: [7] })], OPTS, sys),
  );
  assert.match(e.line(), /attach: .*sched_setaffinity .*cpus=7: EINVAL/);
  assert.match(e.line(), /none of the CPUs is online/);
  assert.ok(sys.format().includes("kill(4242, 9)"), "the child is killed");
});

Deno.test("execute: a seccomp listener record goes to onSeccompListener with the pid, then the child hears 8 bytes", async () => {
  const sys = new RecordingSys().scriptRecv(5, { record: [SECCOMP_RECORD, 0], fd: 77 }, READY);
  const seen: number[][] = [];
  const r = await execute(PLAN, {
    ...OPTS,
    onSeccompListener: (fd, pid) => {
      seen.push([
        fd,
        pid,
        sys.calls().filter((c) => c.call === "close" && c.args[0] === 77).length,
      ]);
    },
  }, sys);
  assert.deepEqual(r, { exitCode: 0 });
  // Called while the fd is still open; closed after, then the child is let go.
  assert.deepEqual(seen, [[77, 4242, 0]]);
  const calls = sys.format();
  const at = calls.indexOf("close(77)");
  assert.ok(at > 0, calls.join(" "));
  assert.equal(calls[at + 1], "write(5, 8)");
  assert.deepEqual(sys.written(5), new Uint8Array(8));
});

Deno.test("execute: a seccomp listener nobody takes, or an agent that fails, kills the child", async () => {
  const none = new RecordingSys().scriptRecv(5, { record: [SECCOMP_RECORD, 0], fd: 77 }, READY);
  const e = await failure(execute(PLAN, OPTS, none));
  assert.match(e.line(), /seccomp: the seccomp filter has a listener and nothing to send it to/);
  assert.ok(none.format().includes("close(77)"));
  assert.ok(none.format().includes("kill(4242, 9)"));
  assert.ok(!none.format().includes("write(5, 8)"), "never let go");
  const failing = new RecordingSys().scriptRecv(5, { record: [SECCOMP_RECORD, 0], fd: 77 }, READY);
  const f = await failure(execute(PLAN, {
    ...OPTS,
    onSeccompListener: () => {
      throw new MicroError("connect listenerPath: ECONNREFUSED");
    },
  }, failing));
  assert.match(f.line(), /ECONNREFUSED/);
  assert.ok(failing.format().includes("close(77)"));
  assert.ok(failing.format().includes("kill(4242, 9)"));
});

Deno.test("execute: a cgroup refusing clone3's child (EAGAIN at pids.max) fails the run, no plain clone moved in past it", async () => {
  await withJoin(async (plan, dir) => {
    const sys = new RecordingSys().scriptRecv(5, READY).failOn("clone3", 11);
    cgroupFs(sys, dir, C.CGROUP2_SUPER_MAGIC);
    await assert.rejects(
      () => execute(plan, OPTS, sys),
      (e) => e instanceof MicroError && e.fields.op === "clone" && e.fields.errno === 11,
    );
    assert.ok(!sys.calls().some((c) => c.call === "clone"), sys.names().join(" "));
    assert.ok(!sys.format().some((c) => c.includes("cgroup.procs")), "never opened");
  });
});

Deno.test("spawnSealed: a memfd numbered below the fds it hands out is exec'd from a copy above them", () => {
  const sys = new RecordingSys().returns("fcntl", () => true, 9);
  assert.equal(spawnSealed(sys, 1, "micro-x", [5, 6, 7]), 4343);
  assert.deepEqual(sys.format(), [
    `fcntl(1, 0x${C.F_DUPFD_CLOEXEC.toString(16)}, 0x3)`,
    'spawn("/proc/self/fd/9", ["micro-x"], [], [5,6,7])',
    "close(9)",
  ]);
  // Numbered above them: used as it is.
  const high = new RecordingSys();
  assert.equal(spawnSealed(high, 8, "micro-x", [5, 6, 7], true), 4343);
  assert.deepEqual(high.format(), [
    'spawn("/proc/self/fd/8", ["micro-x"], [], [5,6,7], "session")',
  ]);
});

// ---- OCI create (createDetached): the same retry rule ------------------------------------

Deno.test("createDetached: a child that dies of a signal before READY is started again, once", async () => {
  const sys = new RecordingSys({ clonePid: 4243, waitStatus: 9 })
    .returns("clone", () => true, 4242, 1);
  const e = await failure(createDetached(PLAN, { ...OPTS, detached: true }, sys));
  assert.equal(
    e.line(),
    "clone: engine: the container's first process died of signal 9 before exec",
  );
  assert.equal(sys.names().filter((n) => n === "clone").length, 2);
});

Deno.test("createDetached: a stop signal while the child starts ends it: no retry, exit 143", async () => {
  const signals = new RunSignals();
  try {
    const sys = termWhileStarting(signals);
    const e = await failure(createDetached(PLAN, { ...OPTS, detached: true, signals }, sys));
    assert.equal(e.exitCode, 143);
    assert.equal(e.line(), "stopped by SIGTERM before the command started");
    assert.equal(sys.names().filter((n) => n === "clone").length, 1);
  } finally {
    signals.remove();
  }
});

Deno.test("undoStart: the cgroups' cleanup runs when the networks' throws, and each throw is a problem", async () => {
  const problems: string[] = [];
  let cgroups = 0;
  const network = {
    cleanup: () => Promise.reject(new Error("CNI DEL: boom\nstack")),
  } as unknown as Parameters<typeof undoStart>[0];
  const parent = {
    cleanup: () => {
      cgroups++;
      return ["cgroup /x not removed: EBUSY"];
    },
  } as unknown as Parameters<typeof undoStart>[1];
  await undoStart(network, parent, (m) => problems.push(m));
  assert.equal(cgroups, 1);
  assert.deepEqual(problems, ["CNI DEL: boom", "cgroup /x not removed: EBUSY"]);
  const throwing = {
    cleanup: () => {
      throw new Error("rmdir threw");
    },
  } as unknown as Parameters<typeof undoStart>[1];
  const more: string[] = [];
  const quiet = { cleanup: () => Promise.resolve([]) } as unknown as Parameters<
    typeof undoStart
  >[0];
  await undoStart(quiet, throwing, (m) => more.push(m));
  assert.deepEqual(more, ["rmdir threw"]);
});

Deno.test("startRetrying: a failed first try is tried again after the networks' detach; a detach that throws between tries ends the start with the try's error", async () => {
  const signals = { stopSignal: 0 } as RunSignals;
  const opts = (problems: string[]) =>
    ({ onCleanupProblem: (m: string) => void problems.push(m) }) as unknown as EngineOptions;
  const tries = (fails: number) => {
    let n = 0;
    return () => {
      n++;
      return n <= fails
        ? Promise.reject(new FailedStart(`the child died (try ${n})`))
        : Promise.resolve({ pid: 42, ends: {} as never });
    };
  };
  // Detaches fine: the second try's start is the result, the detach ran before each try.
  let detaches = 0;
  const fine = {
    attach: () => Promise.resolve(),
    cleanup: () => (detaches++, Promise.resolve([])),
  };
  const problems: string[] = [];
  const ok = await startRetrying(fine, signals, opts(problems), tries(1));
  assert.equal(ok.pid, 42);
  assert.equal(detaches, 2);
  assert.deepEqual(problems, []);
  // The detach throws before the first try: that is the error (nothing failed before it).
  const throwing = {
    attach: () => Promise.resolve(),
    cleanup: () => Promise.reject(new Error("cni DEL: EBUSY\nmore")),
  };
  await assert.rejects(
    startRetrying(throwing, signals, opts([]), tries(0)),
    /cni DEL: EBUSY/,
  );
  // The detach throws between tries: the failed try's error, the detach's a cleanup problem.
  let calls = 0;
  const second = {
    attach: () => Promise.resolve(),
    cleanup: () =>
      calls++ === 0 ? Promise.resolve([]) : Promise.reject(new Error("cni DEL: EBUSY\nmore")),
  };
  const heard: string[] = [];
  await assert.rejects(
    startRetrying(second, signals, opts(heard), tries(5)),
    (e: MicroError) => e.message.includes("the child died (try 1)") && e.fields.phase === "clone",
  );
  assert.deepEqual(heard, ["cni DEL: EBUSY"]);
  // A stop signal that came during that detach is the run's end, not the try's error.
  calls = 0;
  const stopping = { stopSignal: 0 } as RunSignals;
  const stopped = {
    attach: () => Promise.resolve(),
    cleanup: () => {
      if (calls++ === 0) return Promise.resolve([]);
      stopping.stopSignal = 15;
      return Promise.reject(new Error("cni DEL: EBUSY"));
    },
  };
  await assert.rejects(
    startRetrying(stopped, stopping, opts([]), tries(5)),
    /stopped by SIGTERM before the command started/,
  );
  // A stop during a detach that succeeds: no further try.
  let started = 0;
  const quietStop = { stopSignal: 0 } as RunSignals;
  const slow = {
    attach: () => Promise.resolve(),
    cleanup: () => {
      quietStop.stopSignal = 2;
      return Promise.resolve([]);
    },
  };
  await assert.rejects(
    startRetrying(slow, quietStop, opts([]), () => (started++, tries(0)())),
    /stopped by SIGINT before the command started/,
  );
  assert.equal(started, 0);
  // A refused vfork is no failed try: a detach that throws after it is the detach's error.
  calls = 0;
  let n = 0;
  const refusedThenOk = () =>
    n++ === 0
      ? Promise.reject(new VforkRefused("the vfork clone was refused (EINVAL)"))
      : Promise.resolve({ pid: 7, ends: {} as never });
  assert.equal((await startRetrying(fine, signals, opts([]), refusedThenOk)).pid, 7);
  n = 0;
  await assert.rejects(
    startRetrying(second, signals, opts([]), refusedThenOk),
    /cni DEL: EBUSY/,
  );
});

Deno.test("networks: each is detached whatever another threw, and no problem is lost", async () => {
  const order: string[] = [];
  const net = (name: string, result: () => Promise<string[]>) => ({
    attach: () => Promise.resolve(),
    cleanup: () => (order.push(name), result()),
  });
  const all = networks(
    net("cni", () => Promise.resolve(["cni: veth left"])),
    net("usernet", () => Promise.reject(new Error("usernet: kill: EPERM\nmore"))),
  );
  await assert.rejects(all.cleanup(), (e: Error) => {
    assert.equal(e.message, "usernet: kill: EPERM; cni: veth left");
    return true;
  });
  assert.deepEqual(order, ["usernet", "cni"]); // reverse order, the second one still ran
  const fine = networks(
    net("a", () => Promise.resolve(["a: x"])),
    net("b", () => Promise.resolve([])),
  );
  assert.deepEqual(await fine.cleanup(), ["a: x"]);
});
