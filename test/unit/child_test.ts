/**
 * The child side of the fork engine, driven through the recording Sys: `compileChild` turns
 * ops into steps in the parent, `runChild` walks them as the cloned child would. Every test
 * asserts the exact calls, so a change to the order of kernel calls shows up here.
 */
import { CGROUP_FACTS } from "./_host.ts";
import assert from "node:assert/strict";
import {
  bindRemountFlags,
  type ChildContext,
  compileChild,
  CONSOLE_RECORD,
  FD_EXE,
  FD_TRAMPOLINE_REPORT,
  loadChildSteps,
  readonlyRemountFlags,
  READY_RECORD,
  runChild,
  SECCOMP_RECORD,
  THREW_RECORD,
} from "../../core/engine/child.ts";
import { type Op, op } from "../../core/ops.ts";
import { buildSpec, planRun, type Sections } from "../../core/plan.ts";
import type { HostInfo } from "../../core/plugin.ts";
import { FakeExec, FakeExit, RecordingSys } from "../../core/sys/fake.ts";
import { C, fromBase64 } from "../../core/sys/mod.ts";
import { PLUGINS } from "../../plugins/mod.ts";
import { F } from "./_flags.ts";

const ROOT = "/run/micro/c1/root";
/** Already at the child's fixed report fd, so the prologue only closes the rest. */
const REPORT_FD = 1010;

function context(over: Partial<ChildContext> = {}): ChildContext {
  return {
    rootPath: ROOT,
    syncRead: 50,
    syncWrite: 51,
    report: REPORT_FD,
    stdio: [54, 55, 56],
    exe: 57,
    ...over,
  };
}

/** Runs a compiled program to its end: a FakeExit (failure report) or a FakeExec. */
function runToEnd(ops: Op[], sys: RecordingSys, ctx = context()) {
  const prog = compileChild(ops, ctx, sys);
  try {
    runChild(prog, sys);
  } catch (e) {
    if (e instanceof FakeExit || e instanceof FakeExec) return { prog, end: e };
    throw e;
  }
  assert.fail("runChild returned");
}

/** The one `[step, errno]` record the child sent on the report socket (with no fd). */
function reportOf(sys: RecordingSys): number[] {
  const sent = sys.sent(REPORT_FD);
  assert.equal(sent.length, 1);
  assert.equal(sent[0].fd, -1);
  return sent[0].record;
}

/** The READY record the child sends right before execve (no fd). */
const READY = { record: [READY_RECORD, 0], fd: -1 };

/** The `[step, errno]` of a failed exec: the child sent exactly READY, then that record. */
function execReportOf(sys: RecordingSys): number[] {
  const sent = sys.sent(REPORT_FD);
  assert.equal(sent.length, 2);
  assert.deepEqual(sent[0], READY);
  assert.equal(sent[1].fd, -1);
  return sent[1].record;
}

const PROLOGUE = [
  "prctl(1, 9, 0, 0, 0)",
  "close(51)",
  "read(50, 1)",
  "close(50)",
  // Not dumpable: /proc/PID/exe (the host's Deno runtime) is closed to other containers.
  "prctl(4, 0, 0, 0, 0)",
  "setsid()",
  "dup3(54, 0, 0x0)",
  "dup3(55, 1, 0x0)",
  "dup3(56, 2, 0x0)",
  // The report socket is at 1010 already, no image fd, the trampoline's memfd to 1012;
  // every other fd above 2 closed.
  "close(1011)",
  "dup3(57, 1012, 0x80000)",
  "closeRange(3, 0x3f1, 0x0)",
  "closeRange(1013, 0x7fffffff, 0x0)",
];
/** The step index of the first op after the prologue (with a /dev/null stdin). */
const FIRST = 6;

/** The exec of the trampoline: its layout is "" LABEL CANDIDATES "" ARGV (no label here). */
const trampoline = (cands: string[], args = SH_ARGS, env = SH_ENV) =>
  `execveat(1012, "", ${JSON.stringify(["", "", ...cands, "", ...args])}, ${
    JSON.stringify(env)
  }, 0x1000)`;
const exitWithReport = (step: number, errno: number) => [
  `sendRecord(${REPORT_FD}, [${step},${errno}], -1)`,
  "exit(1)",
];

const SH_ARGS = ["sh", "-c", "id"];
const SH_ENV = ["PATH=/usr/bin:/bin"];
const SH = { args: SH_ARGS, env: SH_ENV };
const execve = (path: string[]) => op("exec", "process", "execve", { ...SH, path });

Deno.test("runChild: a step that throws is reported ([THREW_RECORD, step]) and the child exits; nothing of micro's own code runs after it", () => {
  const ops: Op[] = [
    op("identity", "uts", "sethostname", { name: "box" }),
    op("exec", "process", "chdir", { path: "/home" }),
    execve(["/bin/sh"]),
  ];
  const sys = new RecordingSys()
    .returns("sethostname", () => true, () => {
      throw new TypeError("a bug in a step");
    })
    .execSucceeds();
  const { prog, end } = runToEnd(ops, sys);
  // runToEnd saw the child's exit: the TypeError did not leave runChild.
  assert.ok(end instanceof FakeExit);
  assert.equal(end.code, 1);
  const step = prog.info.findIndex((i) => i.kind === "sethostname");
  assert.ok(step >= 0);
  assert.deepEqual(reportOf(sys), [THREW_RECORD, step]);
  const calls = sys.format();
  assert.deepEqual(calls.slice(-2), [
    `sendRecord(${REPORT_FD}, [${THREW_RECORD},${step}], -1)`,
    "exit(1)",
  ]);
  assert.ok(
    !calls.some((c) => c.startsWith("chdir") || c.startsWith("execveat")),
    calls.join("\n"),
  );
});

Deno.test("compileChild makes no calls; runChild runs every phase's steps in order", () => {
  const ops: Op[] = [
    op("rootfs", "user", "userns-root", {}),
    op("rootfs", "mount", "make-private", {}),
    op("rootfs", "mount", "bind-root", { source: "/img", readonly: false }),
    op("rootfs", "mount", "mount", {
      source: "proc",
      target: "/proc",
      fstype: "proc",
      flags: ["MS_NOSUID", "MS_NOEXEC", "MS_NODEV"],
      create: "dir",
      kernelFs: "proc",
    }),
    op("rootfs", "mount", "mount", {
      source: "/data",
      target: "/srv",
      fstype: "",
      flags: ["MS_BIND", "MS_REC", "MS_RDONLY"],
    }),
    op("rootfs", "mount", "mask", { path: "/proc/kcore" }),
    op("rootfs", "mount", "mask", { path: "/proc/acpi" }),
    op("rootfs", "mount", "mask", { path: "/proc/nothere" }),
    op("rootfs", "mount", "pivot-root", {}),
    op("identity", "uts", "sethostname", { name: "box" }),
    op("identity", "net", "loopback-up", {}),
    op("credentials", "process", "setgroups", { gids: [10, 20] }),
    op("credentials", "process", "setresgid", { gid: 1000 }),
    op("credentials", "process", "setresuid", { uid: 1000 }),
    op("restrict", "process", "no-new-privs", {}),
    op("exec", "process", "chdir", { path: "/home" }),
    execve(["/usr/local/bin/sh", "/bin/sh", "/sbin/sh"]),
  ];
  const sys = new RecordingSys()
    // The read-only bind's mount: nosuid, nodev, relatime (locked in a user namespace).
    .returns("fstatfsFlags", () => true, C.MS_NOSUID | C.MS_NODEV | 4096)
    // /proc/kcore is a file: opening it as a directory fails.
    .failOn(
      "openat2",
      (a) => a[1] === "kcore" && ((a[2] as number) & C.O_DIRECTORY) !== 0,
      20,
    )
    .failOn("openat2", (a) => a[1] === "nothere", 2)
    .execSucceeds();

  const prog = compileChild(ops, context(), sys);
  assert.deepEqual(sys.calls(), [], "compiling must not touch the kernel");
  assert.throws(() => runChild(prog, sys), FakeExec);

  assert.deepEqual(sys.format({ results: true }), [
    // Prologue: die with the parent, wait for the attach phase, not dumpable, own session,
    // stdio; the report socket (at 1010 already) and the trampoline's memfd (to 1012) kept at
    // fixed numbers, every other fd above 2 closed, the unused image slot included.
    "prctl(1, 9, 0, 0, 0) = 0",
    "close(51) = 0",
    "read(50, 1) = 1",
    "close(50) = 0",
    "prctl(4, 0, 0, 0, 0) = 0",
    "setsid() = 4241",
    "dup3(54, 0, 0x0) = 0",
    "dup3(55, 1, 0x0) = 1",
    "dup3(56, 2, 0x0) = 2",
    "close(1011) = 0",
    "dup3(57, 1012, 0x80000) = 1012",
    "closeRange(3, 0x3f1, 0x0) = 0",
    "closeRange(1013, 0x7fffffff, 0x0) = 0",
    // userns-root
    "setresgid(0, 0, 0) = 0",
    "setresuid(0, 0, 0) = 0",
    // Its credentials changed: the parent-death signal again.
    "prctl(1, 9, 0, 0, 0) = 0",
    // make-private
    'mount(null, "/", null, 0x44000, null) = 0',
    // bind-root: bind the image and keep an O_PATH fd on it at 1002
    `mount("/img", "${ROOT}", null, 0x5000, null) = 0`,
    `open("${ROOT}", ${F.PATH_DIR}, 0) = 3`,
    "dup3(3, 1002, 0x80000) = 1002",
    "close(3) = 0",
    // /proc: create the mount point, find it in the root through no symlink (O_NOFOLLOW,
    // RESOLVE_NO_SYMLINKS), make a detached procfs, attach it there and keep its root at 1003
    `openat2(1002, "/", ${F.PATH_DIR}, 0, 0x12) = 4`,
    'mkdirat(4, "proc", 0o755) = 0',
    "close(4) = 0",
    `openat2(1002, "/proc", ${F.PATH_DIR_NOFOLLOW}, 0, 0x16) = 5`,
    'fsopen("proc", 1) = 6',
    'fsconfig(6, 1, "source", "proc", 0) = 0',
    "fsconfig(6, 6, null, null, 0) = 0",
    "fsmount(6, 0x1, 0xe) = 7",
    "close(6) = 0",
    'moveMount(7, "", 5, "", 0x44) = 0',
    "dup3(7, 1003, 0x80000) = 1003",
    "close(7) = 0",
    "close(5) = 0",
    // read-only bind: the target checked not to be procfs or sysfs, then a detached copy of
    // the source made read-only with what is below it (AT_EMPTY_PATH|AT_RECURSIVE,
    // MOUNT_ATTR_RDONLY) and attached on the fd: the target is not looked up twice
    'openat2(1002, "/srv", 0x280000, 0, 0x12) = 8',
    "dup3(8, 1000, 0x80000) = 1000",
    "close(8) = 0",
    "fstatfsType(1000) = 61267",
    'openTree(-100, "/data", 0x88001) = 9',
    'mountSetattr(9, "", 0x9000, 1, 0) = 0',
    'moveMount(9, "", 1000, "", 0x44) = 0',
    "close(9) = 0",
    "close(1000) = 0",
    // mask of a file, found beneath the procfs just mounted (RESOLVE_BENEATH, no symlinks):
    // /dev/null bound over it
    'openat2(1003, "kcore", 0x280000, 0, 0xe) = 10',
    "dup3(10, 1000, 0x80000) = 1000",
    "close(10) = 0",
    `openat2(1003, "kcore", ${F.PATH_DIR}, 0, 0xe) = -20`,
    'mount("/dev/null", "/proc/self/fd/1000", null, 0x1000, null) = 0',
    "close(1000) = 0",
    // mask of a directory: an empty read-only tmpfs
    'openat2(1003, "acpi", 0x280000, 0, 0xe) = 11',
    "dup3(11, 1000, 0x80000) = 1000",
    "close(11) = 0",
    `openat2(1003, "acpi", ${F.PATH_DIR}, 0, 0xe) = 12`,
    "close(12) = 0",
    'mount("tmpfs", "/proc/self/fd/1000", "tmpfs", 0xf, "size=0") = 0',
    "close(1000) = 0",
    // a path this procfs lacks: this kernel has nothing to hide there
    'openat2(1003, "nothere", 0x280000, 0, 0xe) = -2',
    // pivot-root
    "fchdir(1002) = 0",
    'pivotRoot(".", ".") = 0',
    'umount2(".", 0x2) = 0',
    'chdir("/") = 0',
    "close(1002) = 0",
    // identity
    'sethostname("box") = 0',
    "socket(2, 0x80002, 0) = 13",
    "ioctlBuf(13, 0x8914) = 0",
    "close(13) = 0",
    // credentials, then the parent-death signal again (a credential change clears it)
    "setgroups([10,20]) = 0",
    "setresgid(1000, 1000, 1000) = 0",
    "setresuid(1000, 1000, 1000) = 0",
    "prctl(1, 9, 0, 0, 0) = 0",
    // restrict
    "prctl(38, 1, 0, 0, 0) = 0",
    // exec: the working directory, checked to be inside the root
    'chdir("/home") = 0',
    "getcwd(4096) = 2",
    "closeRange(3, 0x7fffffff, 0x4) = 0",
    "resetSignals() = 0",
    // READY: from here on, the child's death is the command's
    `sendRecord(${REPORT_FD}, [-3,0], -1) = 8`,
    // The report socket where the trampoline finds it (not close-on-exec), then the
    // trampoline itself: the candidates are tried there.
    `dup3(${REPORT_FD}, 3, 0x0) = 3`,
    trampoline(["/usr/local/bin/sh", "/bin/sh", "/sbin/sh"]),
  ]);
  assert.deepEqual(sys.sent(REPORT_FD), [READY]);
  assert.deepEqual(prog.info.slice(24, 29), [
    { phase: "rootfs", plugin: "engine", kind: "close_range", paths: {} },
    { phase: "rootfs", plugin: "engine", kind: "reset signals", paths: {} },
    { phase: "rootfs", plugin: "engine", kind: "ready", paths: {} },
    { phase: "rootfs", plugin: "engine", kind: "trampoline fds", paths: { report: "3" } },
    // The trampoline's exec fails as the command's would (seccomp, LSM, E2BIG).
    { phase: "exec", plugin: "process", kind: "execve", paths: { path: "sh" } },
  ]);
  assert.equal(prog.info.length, 29);
  // What the parent names when the trampoline reports EXEC_FAILED.
  assert.deepEqual(prog.exec, {
    phase: "exec",
    plugin: "process",
    kind: "execve",
    paths: { path: "sh" },
  });
});

Deno.test("calls() records decoded arguments and summarized buffers", () => {
  const sys = new RecordingSys();
  const { end } = runToEnd([
    op("rootfs", "mount", "bind-root", { source: null, readonly: false }),
    op("credentials", "process", "setgroups", { gids: [5, 7] }),
    execve(["/bin/sh"]),
  ], sys);
  assert.ok(end instanceof FakeExit);
  const calls = sys.calls();
  assert.deepEqual(calls.find((c) => c.call === "mount"), {
    call: "mount",
    args: ["tmpfs", ROOT, "tmpfs", C.MS_NOSUID | C.MS_NODEV, "mode=0755"],
  });
  assert.deepEqual(calls.find((c) => c.call === "setgroups"), {
    call: "setgroups",
    args: [[5, 7]],
  });
  assert.deepEqual(calls.find((c) => c.call === "execveat"), {
    call: "execveat",
    args: [FD_EXE, "", ["", "", "/bin/sh", "", "sh", "-c", "id"], ["PATH=/usr/bin:/bin"], 0x1000],
  });
});

Deno.test("console opens the container's ptmx, makes the peer stdio and sends the master", () => {
  const sys = new RecordingSys()
    .returns("ioctl", (a) => a[1] === C.TIOCGPTPEER, 9)
    .execSucceeds();
  runToEnd(
    [
      op("rootfs", "mount", "pivot-root", {}),
      op("rootfs", "process", "console", {}),
      execve(["/bin/sh"]),
    ],
    sys,
    context({ stdio: [54, 54, 54] }),
  );
  assert.deepEqual(sys.format({ results: true }).slice(18, 28), [
    'open("/dev/ptmx", 0x80102, 0) = 3',
    "ioctlBuf(3, 0x40045431) = 0",
    "ioctl(3, 0x5441, 0x102) = 9",
    "ioctl(9, 0x540e, 0x0) = 0",
    "dup3(9, 0, 0x0) = 0",
    "dup3(9, 1, 0x0) = 1",
    "dup3(9, 2, 0x0) = 2",
    "close(9) = 0",
    `sendRecord(${REPORT_FD}, [-2,0], 3) = 8`,
    "close(3) = 0",
  ]);
  // The master first, then READY right before the exec.
  assert.deepEqual(sys.sent(REPORT_FD), [{ record: [CONSOLE_RECORD, 0], fd: 3 }, READY]);
  assert.deepEqual(sys.format().slice(-4), [
    "resetSignals()",
    `sendRecord(${REPORT_FD}, [-3,0], -1)`,
    `dup3(${REPORT_FD}, 3, 0x0)`,
    trampoline(["/bin/sh"]),
  ]);
});

Deno.test('--init: the trampoline\'s argv[0] is "init" (it stays as PID 1), and only then', () => {
  const sys = new RecordingSys().execSucceeds();
  const init = op("exec", "process", "execve", { ...SH, path: ["/bin/sh"], init: true });
  const { prog } = runToEnd([init], sys);
  assert.equal(prog.init, true);
  assert.equal(
    sys.format().at(-1),
    `execveat(1012, "", ${JSON.stringify(["init", "", "/bin/sh", "", ...SH_ARGS])}, ${
      JSON.stringify(SH_ENV)
    }, 0x1000)`,
  );
  const plain = new RecordingSys().execSucceeds();
  assert.equal(runToEnd([execve(["/bin/sh"])], plain).prog.init, false);
  assert.equal(plain.format().at(-1), trampoline(["/bin/sh"]));
});

Deno.test("pivot-root with move (OCI --no-pivot): MS_MOVE onto /, then chroot, no pivot_root", () => {
  const sys = new RecordingSys().execSucceeds();
  const { end, prog } = runToEnd(
    [op("rootfs", "mount", "pivot-root", { move: true }), execve(["/bin/sh"])],
    sys,
  );
  assert.ok(end instanceof FakeExec);
  const calls = sys.format();
  const at = calls.indexOf("fchdir(1002)");
  assert.deepEqual(calls.slice(at, at + 5), [
    "fchdir(1002)",
    `mount(".", "/", null, 0x${C.MS_MOVE.toString(16)}, null)`,
    'chroot(".")',
    'chdir("/")',
    "close(1002)",
  ]);
  assert.ok(!sys.names().includes("pivotRoot"));
  assert.ok(prog.info.some((i) => i.kind === "pivot-root" && i.paths.how === "MS_MOVE+chroot"));
});

Deno.test("console planned before pivot-root throws at compile time", () => {
  assert.throws(
    () => compileChild([op("rootfs", "process", "console", {})], context(), new RecordingSys()),
    /console planned before pivot-root/,
  );
});

Deno.test("stdio-owner gives micro's pipes, never /dev/null, to the user before setresuid", () => {
  const sys = new RecordingSys().execSucceeds();
  const ops = [
    op("credentials", "process", "stdio-owner", { uid: 1000 }),
    op("credentials", "process", "setresgid", { gid: 1000 }),
    op("credentials", "process", "setresuid", { uid: 1000 }),
    execve(["/bin/sh"]),
  ];
  const { prog } = runToEnd(ops, sys, context({ pipes: [false, true, true] }));
  const calls = sys.format();
  // The uid only (a terminal keeps its tty group), while the child is still root.
  const at = calls.indexOf("fchown(1, 1000, -1)");
  assert.deepEqual(calls.slice(at, at + 3), [
    "fchown(1, 1000, -1)",
    "fchown(2, 1000, -1)",
    "setresgid(1000, 1000, 1000)",
  ]);
  assert.equal(calls.some((c) => c.startsWith("fchown(0,")), false);
  assert.deepEqual(prog.info[FIRST], {
    phase: "credentials",
    plugin: "process",
    kind: "stdio-owner",
    paths: { uid: "1000", fds: "1,2" },
    hints: prog.info[FIRST].hints,
  });

  // With -i, the stdin pipe too; a refusal is reported as the step's failure.
  const refused = new RecordingSys().returns("fchown", (a) => a[0] === 0, -1);
  runToEnd(ops, refused, context({ pipes: [true, true, true] }));
  assert.deepEqual(reportOf(refused), [FIRST, 1]);
});

Deno.test("stdio-owner with a terminal gives its slave (all three fds) to the user", () => {
  const sys = new RecordingSys()
    .returns("ioctl", (a) => a[1] === C.TIOCGPTPEER, 9)
    .execSucceeds();
  runToEnd(
    [
      op("rootfs", "mount", "pivot-root", {}),
      op("rootfs", "process", "console", {}),
      op("credentials", "process", "stdio-owner", { uid: 33 }),
      execve(["/bin/sh"]),
    ],
    sys,
    context({ stdio: [54, 54, 54], pipes: [false, false, false] }),
  );
  const chowns = sys.format().filter((c) => c.startsWith("fchown"));
  assert.deepEqual(chowns, ["fchown(0, 33, -1)"]);
});

Deno.test("stdio-owner for root, or with no pipe of micro's, is no step at all", () => {
  for (
    const [uid, pipes] of [[0, [true, true, true]], [1000, [false, false, false]]] as const
  ) {
    const sys = new RecordingSys().execSucceeds();
    runToEnd(
      [op("credentials", "process", "stdio-owner", { uid }), execve(["/bin/sh"])],
      sys,
      context({ pipes }),
    );
    assert.equal(sys.calls().some((c) => c.call === "fchown"), false);
  }
});

Deno.test("stdio: the given fds become 0, 1 and 2, so no host fd reaches the command", () => {
  const sys = new RecordingSys().execSucceeds();
  runToEnd([execve(["/bin/sh"])], sys, context({ stdio: [60, 61, 62] }));
  assert.deepEqual(sys.format().slice(5, 14), [
    "setsid()",
    "dup3(60, 0, 0x0)",
    "dup3(61, 1, 0x0)",
    "dup3(62, 2, 0x0)",
    "close(1011)",
    "dup3(57, 1012, 0x80000)",
    "closeRange(3, 0x3f1, 0x0)",
    "closeRange(1013, 0x7fffffff, 0x0)",
    "closeRange(3, 0x7fffffff, 0x4)",
  ]);
});

Deno.test("stdio: a failing dup3 is reported as the engine's stdio step", () => {
  const sys = new RecordingSys().failOn("dup3", (a) => a[1] === 1, 9);
  const { prog, end } = runToEnd([execve(["/bin/sh"])], sys);
  assert.ok(end instanceof FakeExit);
  const [step, errno] = sys.sent(REPORT_FD)[0].record;
  assert.equal(prog.info[step].kind, "stdio");
  assert.equal(errno, 9);
  assert.ok(!sys.names().includes("execveat"));
});

Deno.test("EOF on the sync pipe (the parent died) exits without a report", () => {
  const sys = new RecordingSys().scriptRead(50, new Uint8Array(0));
  const { end } = runToEnd([execve(["/bin/sh"])], sys);
  assert.ok(end instanceof FakeExit);
  assert.equal(end.code, 1);
  assert.deepEqual(sys.format(), [...PROLOGUE.slice(0, 3), "exit(1)"]);
  assert.deepEqual(sys.sent(REPORT_FD), []);
});

Deno.test("sync root: the child makes its root before it waits for the parent, then the rest", () => {
  const ops: Op[] = [
    op("rootfs", "mount", "make-private", {}),
    op("rootfs", "mount", "mkdir", { path: "/srv", mode: 0o755 }),
    op("rootfs", "mount", "pivot-root", {}),
    op("identity", "uts", "sethostname", { name: "box" }),
    execve(["/bin/sh"]),
  ];
  const sys = new RecordingSys().execSucceeds();
  const { end, prog } = runToEnd(ops, sys, context({ sync: "root" }));
  assert.ok(end instanceof FakeExec);
  assert.deepEqual(prog.info.map((i) => i.kind).slice(0, 11), [
    "prctl(PR_SET_PDEATHSIG)",
    "close",
    // No id maps to wait for: undumpable at once.
    "prctl(PR_SET_DUMPABLE)",
    "setsid",
    "stdio",
    "close_range",
    "make-private",
    "mkdir",
    "pivot-root",
    "sync",
    "sethostname",
  ]);
  assert.equal(prog.info.filter((i) => i.kind === "sync").length, 1);
  const calls = sys.format();
  // Its copy of the write end first; the read end kept at 1017 across the close_range, the
  // numbers between the last fd kept (1012) and it closed.
  assert.deepEqual(calls.slice(0, 4), [
    "prctl(1, 9, 0, 0, 0)",
    "close(51)",
    "prctl(4, 0, 0, 0, 0)",
    "setsid()",
  ]);
  const at = calls.indexOf("dup3(50, 1017, 0x80000)");
  assert.ok(at > 0, calls.join("\n"));
  assert.deepEqual(calls.slice(at - 5, at + 3), [
    "dup3(57, 1012, 0x80000)",
    "close(1013)",
    "close(1014)",
    "close(1015)",
    "close(1016)",
    "dup3(50, 1017, 0x80000)",
    "closeRange(3, 0x3f1, 0x0)",
    "closeRange(1018, 0x7fffffff, 0x0)",
  ]);
  // The wait after the root is made and before anything else.
  const wait = calls.indexOf("read(1017, 1)");
  assert.ok(wait > calls.findIndex((c) => c.startsWith("pivotRoot(")), calls.join("\n"));
  assert.deepEqual(calls.slice(wait, wait + 2), ["read(1017, 1)", "close(1017)"]);
  assert.ok(calls.findIndex((c) => c.startsWith("sethostname(")) > wait);
});

Deno.test("sync root: a mount of what the attach makes, a cgroup file system, any op but the root's: after the wait", () => {
  const cgroupFs = op("rootfs", "mount", "mount", {
    source: "cgroup",
    target: "/sys/fs/cgroup",
    fstype: "cgroup2",
    flags: [],
  });
  const runFile = op("rootfs", "mount", "mount", {
    source: "/run/micro/c1/hosts",
    target: "/etc/hosts",
    fstype: "",
    flags: ["MS_BIND"],
    attached: true,
  });
  const others = [op("identity", "uts", "sethostname", { name: "box" }), runFile];
  for (const first of [cgroupFs, ...others]) {
    const ops: Op[] = [op("rootfs", "mount", "make-private", {}), first, execve(["/bin/sh"])];
    const prog = compileChild(ops, context({ sync: "root" }), new RecordingSys());
    const kinds = prog.info.map((i) => i.kind);
    assert.deepEqual(kinds.slice(6, 8), ["make-private", "sync"]);
  }
});

Deno.test("sync root: EOF at the late wait (the parent died) exits without a report", () => {
  const sys = new RecordingSys().scriptRead(1017, new Uint8Array(0));
  const { end } = runToEnd([execve(["/bin/sh"])], sys, context({ sync: "root" }));
  assert.ok(end instanceof FakeExit);
  assert.equal(end.code, 1);
  assert.deepEqual(sys.format().slice(-2), ["read(1017, 1)", "exit(1)"]);
  assert.deepEqual(sys.sent(REPORT_FD), []);
});

Deno.test("sync maps: the child waits for its id maps first, then again after its root", () => {
  const ops: Op[] = [
    op("rootfs", "user", "userns-root", {}),
    op("rootfs", "mount", "make-private", {}),
    op("identity", "uts", "sethostname", { name: "box" }),
    execve(["/bin/sh"]),
  ];
  const sys = new RecordingSys().execSucceeds();
  const { end, prog } = runToEnd(ops, sys, context({ sync: "maps" }));
  assert.ok(end instanceof FakeExec);
  assert.deepEqual(prog.info.map((i) => i.kind).slice(0, 12), [
    "prctl(PR_SET_PDEATHSIG)",
    "close",
    "sync",
    "prctl(PR_SET_DUMPABLE)",
    "setsid",
    "stdio",
    "close_range",
    "userns-root",
    // Its credentials changed: the parent-death signal again.
    "prctl(PR_SET_PDEATHSIG)",
    "make-private",
    "sync",
    "sethostname",
  ]);
  const calls = sys.format();
  // The first wait keeps the read end, which the close_range moves to 1017 for the second.
  assert.deepEqual(calls.slice(0, 5), [
    "prctl(1, 9, 0, 0, 0)",
    "close(51)",
    "read(50, 1)",
    "prctl(4, 0, 0, 0, 0)",
    "setsid()",
  ]);
  assert.ok(calls.includes("dup3(50, 1017, 0x80000)"), calls.join("\n"));
  const second = calls.indexOf("read(1017, 1)");
  assert.ok(second > calls.findIndex((c) => c.startsWith("setresuid(")), calls.join("\n"));
  assert.deepEqual(calls.slice(second + 1, second + 2), ["close(1017)"]);
  assert.equal(calls.filter((c) => c === "prctl(4, 0, 0, 0, 0)").length, 1);
  // A rootless network helper opens its /proc/PID/ns files during the attach: undumpable
  // only after the last wait.
  const helper = new RecordingSys().execSucceeds();
  runToEnd(ops, helper, context({ sync: "maps", dumpableForAttach: true }));
  const h = helper.format();
  const last = h.indexOf("read(1017, 1)");
  assert.deepEqual(h.slice(2, 4), ["read(50, 1)", "setsid()"]);
  assert.deepEqual(h.slice(last + 1, last + 3), ["close(1017)", "prctl(4, 0, 0, 0, 0)"]);
  assert.equal(h.filter((c) => c === "prctl(4, 0, 0, 0, 0)").length, 1);
});

/** A tmpfs on /usr filled from the image (a copy-up mount op). */
function copyUpUsr(): Op {
  return op("rootfs", "mount", "mount", {
    source: "tmpfs",
    target: "/usr",
    fstype: "tmpfs",
    flags: [],
    copyUp: true,
  });
}

Deno.test("compileChild: copy-up or hook ops before loadChildSteps are an internal error, not a child that compiles", async () => {
  // A module instance of its own: another test may have loaded the steps in this one.
  const fresh = await import(
    "../../core/engine/child.ts?fresh"
  ) as typeof import("../../core/engine/child.ts");
  const copyUp = copyUpUsr();
  const ops: Op[] = [copyUp, execve(["/bin/sh"])];
  assert.throws(
    () => fresh.compileChild(ops, context({ sync: "root" }), new RecordingSys()),
    /internal: copy-up ops compiled before loadChildSteps/,
  );
  await fresh.loadChildSteps(ops);
  assert.ok(fresh.compileChild(ops, context({ sync: "root" }), new RecordingSys()).run.length);
});

Deno.test("sync root: a tmpfs filled from the image, a device node, and with a network the masks wait for the attach", async () => {
  const copyUp = copyUpUsr();
  const mknod = op("rootfs", "mount", "mknod", {
    path: "/dev/fuse",
    type: "c",
    major: 10,
    minor: 229,
    mode: 0o666,
    uid: 0,
    gid: 0,
  });
  const mask = op("rootfs", "mount", "mask", { path: "/proc/sys/net" });
  const cases: [Op, Partial<ChildContext>][] = [[copyUp, {}], [mknod, {}], [mask, {
    networked: true,
  }]];
  await loadChildSteps([copyUp]);
  for (const [first, ctx] of cases) {
    const ops: Op[] = [op("rootfs", "mount", "make-private", {}), first, execve(["/bin/sh"])];
    const prog = compileChild(ops, context({ sync: "root", ...ctx }), new RecordingSys());
    assert.deepEqual(prog.info.map((i) => i.kind).slice(5, 8), [
      "close_range",
      "make-private",
      "sync",
    ], first.kind);
  }
  // Without a network a mask is early.
  const ops: Op[] = [op("rootfs", "mount", "make-private", {}), mask, execve(["/bin/sh"])];
  const prog = compileChild(ops, context({ sync: "root" }), new RecordingSys());
  assert.deepEqual(prog.info.map((i) => i.kind).slice(6, 9), ["make-private", "mask", "sync"]);
});

Deno.test("the child execs the trampoline from its memfd: candidates, argv, envp", () => {
  const sys = new RecordingSys().execSucceeds();
  const { end, prog } = runToEnd([execve(["/usr/local/bin/sh", "/usr/bin/sh", "/bin/sh"])], sys);
  assert.ok(end instanceof FakeExec);
  assert.equal(end.dirfd, FD_EXE);
  assert.equal(end.path, "");
  assert.deepEqual(end.argv, [
    "",
    "",
    "/usr/local/bin/sh",
    "/usr/bin/sh",
    "/bin/sh",
    "",
    ...SH_ARGS,
  ]);
  assert.deepEqual(end.envp, SH_ENV);
  assert.deepEqual(sys.sent(REPORT_FD), [READY], "only READY is reported when exec succeeds");
  assert.deepEqual(sys.format().slice(-5), [
    "closeRange(3, 0x7fffffff, 0x4)",
    "resetSignals()",
    `sendRecord(${REPORT_FD}, [-3,0], -1)`,
    // After close_range: this one copy of the report socket survives into the trampoline.
    `dup3(${REPORT_FD}, ${FD_TRAMPOLINE_REPORT}, 0x0)`,
    trampoline(["/usr/local/bin/sh", "/usr/bin/sh", "/bin/sh"]),
  ]);
  assert.equal(sys.names().filter((n) => n === "execveat").length, 1);
  assert.equal(prog.exec?.kind, "execve");
});

Deno.test("--preserve-fds 2: fds 3 and 4 stay open across both execs, the report goes to 5", () => {
  const sys = new RecordingSys().execSucceeds();
  const { end } = runToEnd([execve(["/bin/sh"])], sys, context({ preserveFds: 2 }));
  assert.ok(end instanceof FakeExec);
  // One "+" per preserved fd tells the trampoline where its report fd is.
  assert.equal(end.argv[0], "++");
  const calls = sys.format();
  // Neither close_range touches 3 and 4; their close-on-exec flags are cleared.
  assert.ok(calls.includes("closeRange(5, 0x3f1, 0x0)"), calls.join("\n"));
  assert.ok(!calls.some((c) => c.startsWith("closeRange(3,")), calls.join("\n"));
  assert.deepEqual(calls.slice(-7), [
    "fcntl(3, 0x2, 0x0)",
    "fcntl(4, 0x2, 0x0)",
    "closeRange(5, 0x7fffffff, 0x4)",
    "resetSignals()",
    `sendRecord(${REPORT_FD}, [-3,0], -1)`,
    `dup3(${REPORT_FD}, 5, 0x0)`,
    trampoline(["/bin/sh"]).replace('[""', '["++"'),
  ]);
});

Deno.test("an empty command still has an unambiguous trampoline layout", () => {
  const sys = new RecordingSys().execSucceeds();
  const ops = [op("exec", "process", "execve", { args: [], env: [], path: ["/bin/"] })];
  const { end } = runToEnd(ops, sys);
  assert.ok(end instanceof FakeExec);
  assert.deepEqual(end.argv, ["", "", "/bin/", ""]);
});

Deno.test("a candidate without a slash is refused at compile time (the layout needs one)", () => {
  assert.throws(
    () => compileChild([execve(["sh"])], context(), new RecordingSys()),
    /exec candidate without \//,
  );
});

Deno.test("a failing exec of the trampoline is reported as the command's exec, after READY", () => {
  const sys = new RecordingSys().failOn("execveat", 1);
  const { prog } = runToEnd([execve(["/bin/sh"])], sys);
  const [step, errno] = execReportOf(sys);
  assert.equal(errno, 1);
  assert.deepEqual(prog.info[step], {
    phase: "exec",
    plugin: "process",
    kind: "execve",
    paths: { path: "sh" },
  });
  assert.equal(prog.info[step], prog.exec);
});

Deno.test("an LSM label is written by the child at its step; the exec that follows applies it", () => {
  const sys = new RecordingSys().execSucceeds()
    .returns("fstatfsType", () => true, C.PROC_SUPER_MAGIC);
  const file = "/proc/thread-self/attr/apparmor/exec";
  const { end } = runToEnd([
    op("restrict", "lsm", "lsm-label", { file, value: "exec micro-test" }),
    execve(["/bin/sh"]),
  ], sys);
  assert.ok(end instanceof FakeExec);
  // The trampoline gets no label to write: /proc/PID/attr takes writes only from the
  // credentials that opened it, and its exec makes new ones.
  assert.deepEqual(end.argv, ["", "", "/bin/sh", "", ...SH_ARGS]);
  assert.deepEqual(sys.format({ results: true }).slice(PROLOGUE.length), [
    // O_WRONLY|O_CLOEXEC
    `open("${file}", 0x80001, 0) = 3`,
    `fstatfsType(3) = ${C.PROC_SUPER_MAGIC}`,
    "write(3, 15) = 15",
    "close(3) = 0",
    "closeRange(3, 0x7fffffff, 0x4) = 0",
    "resetSignals() = 0",
    `sendRecord(${REPORT_FD}, [-3,0], -1) = 8`,
    `dup3(${REPORT_FD}, 3, 0x0) = 3`,
    `execveat(1012, "", ${JSON.stringify(["", "", "/bin/sh", "", ...SH_ARGS])}, ${
      JSON.stringify(SH_ENV)
    }, 0x1000)`,
  ]);
});

Deno.test("an LSM label goes only into procfs's attr file: an image's own (no proc mount) is refused", () => {
  // The fake's fstatfs says ext4: the image's /proc/thread-self/attr/... file or a link in
  // it. Written there, the label would be lost and the command would run unconfined.
  const label = op("restrict", "lsm", "lsm-label", {
    file: "/proc/thread-self/attr/apparmor/exec",
    value: "exec micro-test",
  });
  const sys = new RecordingSys().execSucceeds();
  const { prog } = runToEnd([label, execve(["/bin/sh"])], sys);
  const [step, errno] = reportOf(sys);
  assert.equal(errno, 18);
  assert.equal(prog.info[step].kind, "lsm-label");
  assert.equal(sys.names().includes("write"), false);
  assert.match(prog.info[step].hints?.[18] ?? "", /proc/);
});

Deno.test("an empty LSM label is refused at compile time", () => {
  const label = (value: string) =>
    op("restrict", "lsm", "lsm-label", { file: "/proc/thread-self/attr/exec", value });
  assert.throws(
    () => compileChild([label(""), execve(["/bin/sh"])], context(), new RecordingSys()),
    /bad LSM exec label/,
  );
});

Deno.test("a failing dup3 of the memfd to its fixed fd is reported by the close_range step", () => {
  const sys = new RecordingSys().failOn("dup3", (a) => a[1] === FD_EXE, 9);
  const { prog } = runToEnd([execve(["/bin/sh"])], sys);
  const [step, errno] = reportOf(sys);
  assert.equal(errno, 9);
  assert.equal(prog.info[step].kind, "close_range");
  assert.deepEqual(prog.info[step].paths, { keep: "1010>1010,57>1012" });
  assert.deepEqual(sys.format().slice(-4), [
    "close(1011)",
    "dup3(57, 1012, 0x80000)",
    ...exitWithReport(step, 9),
  ]);
});

Deno.test("a failing mount sends [step, errno] on the report socket and exits 1", () => {
  const ops: Op[] = [
    op("rootfs", "mount", "make-private", {}),
    op("rootfs", "mount", "bind-root", { source: "/img", readonly: false }),
    op("rootfs", "mount", "mount", {
      source: "proc",
      target: "/proc",
      fstype: "proc",
      flags: ["MS_NOSUID", "MS_NOEXEC", "MS_NODEV"],
    }),
    op("rootfs", "mount", "pivot-root", {}),
    execve(["/bin/sh"]),
  ];
  const sys = new RecordingSys().failOn("mount", (a) => a[0] === "proc", 13);
  const { prog, end } = runToEnd(ops, sys);
  assert.ok(end instanceof FakeExit);
  assert.equal(end.code, 1);
  const [step, errno] = reportOf(sys);
  assert.deepEqual([step, errno], [8, 13]);
  assert.deepEqual(prog.info[step], {
    phase: "rootfs",
    plugin: "mount",
    kind: "mount",
    paths: { src: "proc", dst: "/proc", flags: "MS_NOSUID|MS_NOEXEC|MS_NODEV" },
    hints: {
      18: "the destination is inside /proc or /sys (through a symlink in the image?); micro " +
        "mounts nothing there but their own file systems",
    },
  });
  // Nothing runs after the failing call but the report.
  assert.deepEqual(sys.format().slice(-4), [
    'mount("proc", "/proc/self/fd/1000", "proc", 0xe, null)',
    "close(1000)",
    ...exitWithReport(8, 13),
  ]);
  assert.equal(sys.names().includes("pivotRoot"), false);
});

Deno.test("a failing prologue step is reported against the engine", () => {
  const sys = new RecordingSys().failOn("setsid", 1);
  const { prog } = runToEnd([execve(["/bin/sh"])], sys);
  const [step, errno] = reportOf(sys);
  assert.deepEqual([step, errno], [3, 1]);
  assert.deepEqual(prog.info[step], {
    phase: "rootfs",
    plugin: "engine",
    kind: "setsid",
    paths: {},
  });
  assert.deepEqual(sys.format(), [...PROLOGUE.slice(0, 6), ...exitWithReport(3, 1)]);
});

Deno.test("a mount target that resolves outside the root fails with openat2's errno", () => {
  const sys = new RecordingSys().failOn("openat2", (a) => a[1] === "/etc/evil", 18);
  const { prog } = runToEnd([
    op("rootfs", "mount", "mount", {
      source: "/data",
      target: "/etc/evil",
      fstype: "",
      flags: ["MS_BIND"],
    }),
  ], sys);
  const [step, errno] = reportOf(sys);
  assert.equal(errno, 18);
  assert.deepEqual(prog.info[step].paths, { src: "/data", dst: "/etc/evil", flags: "MS_BIND" });
  assert.equal(sys.names().includes("mount"), false);
});

Deno.test("a file bind creates its parents and an empty file inside the root", () => {
  const sys = new RecordingSys().failOn("mkdirat", (a) => a[1] === "dev", 17);
  runToEnd([
    op("rootfs", "mount", "mount", {
      source: "/dev/null",
      target: "/dev/null",
      fstype: "",
      flags: ["MS_BIND"],
      create: "file",
    }),
  ], sys);
  assert.deepEqual(sys.format().slice(PROLOGUE.length, -2), [
    `openat2(1002, "/", ${F.PATH_DIR}, 0, 0x12)`,
    'mkdirat(3, "dev", 0o755)',
    "close(3)",
    `openat2(1002, "/dev", ${F.PATH_DIR}, 0, 0x12)`,
    "close(4)",
    // O_CREAT|O_EXCL|O_WRONLY|O_CLOEXEC|O_NOFOLLOW
    `openat2(1002, "/dev/null", ${F.CREATE_NEW}, 0o644, 0x12)`,
    "close(5)",
    'openat2(1002, "/dev/null", 0x280000, 0, 0x12)',
    "dup3(6, 1000, 0x80000)",
    "close(6)",
    "fstatfsType(1000)",
    'mount("/dev/null", "/proc/self/fd/1000", null, 0x1000, null)',
    "close(1000)",
  ]);
  assert.deepEqual(reportOf(sys), [-1, 0], "a plan without execve reports step -1");
});

const DEV_NULL_BIND = op("rootfs", "mount", "mount", {
  source: "/dev/null",
  target: "/dev/null",
  fstype: "",
  flags: ["MS_BIND"],
  create: "file",
});
const isCreate = (a: unknown[]) => ((a[2] as number) & C.O_CREAT) !== 0;

Deno.test("a file bind target that exists already (EEXIST under O_EXCL) is bound over", () => {
  const sys = new RecordingSys()
    .failOn("mkdirat", (a) => a[1] === "dev", 17)
    .failOn("openat2", (a) => a[1] === "/dev/null" && isCreate(a), 17);
  runToEnd([DEV_NULL_BIND], sys);
  assert.deepEqual(sys.format({ results: true }).slice(PROLOGUE.length, -2), [
    `openat2(1002, "/", ${F.PATH_DIR}, 0, 0x12) = 3`,
    'mkdirat(3, "dev", 0o755) = -17',
    "close(3) = 0",
    `openat2(1002, "/dev", ${F.PATH_DIR}, 0, 0x12) = 4`,
    "close(4) = 0",
    // Nothing was created, so nothing is closed: the existing target is used as it is.
    `openat2(1002, "/dev/null", ${F.CREATE_NEW}, 0o644, 0x12) = -17`,
    'openat2(1002, "/dev/null", 0x280000, 0, 0x12) = 5',
    "dup3(5, 1000, 0x80000) = 1000",
    "close(5) = 0",
    "fstatfsType(1000) = 61267",
    'mount("/dev/null", "/proc/self/fd/1000", null, 0x1000, null) = 0',
    "close(1000) = 0",
  ]);
  assert.deepEqual(reportOf(sys), [-1, 0]);
});

Deno.test("creating a file bind target stops at any errno but EEXIST (EISDIR, ELOOP too)", () => {
  for (const errno of [30, 21, 40]) {
    const sys = new RecordingSys()
      .failOn("openat2", (a) => a[1] === "/dev/null" && isCreate(a), errno);
    const { prog } = runToEnd([DEV_NULL_BIND], sys);
    assert.deepEqual(sys.format().slice(PROLOGUE.length), [
      `openat2(1002, "/", ${F.PATH_DIR}, 0, 0x12)`,
      'mkdirat(3, "dev", 0o755)',
      "close(3)",
      `openat2(1002, "/dev", ${F.PATH_DIR}, 0, 0x12)`,
      "close(4)",
      `openat2(1002, "/dev/null", ${F.CREATE_NEW}, 0o644, 0x12)`,
      ...exitWithReport(FIRST, errno),
    ]);
    assert.deepEqual(prog.info[FIRST].paths, {
      src: "/dev/null",
      dst: "/dev/null",
      flags: "MS_BIND",
    });
  }
});

Deno.test("creating a mount point stops at an errno other than EEXIST", () => {
  const sys = new RecordingSys().failOn("mkdirat", (a) => a[1] === "mnt", 30);
  const { prog } = runToEnd([
    op("rootfs", "mount", "mount", {
      source: "tmpfs",
      target: "/mnt/x",
      fstype: "tmpfs",
      flags: [],
      create: "dir",
    }),
  ], sys);
  const [step, errno] = reportOf(sys);
  assert.equal(errno, 30);
  assert.deepEqual(prog.info[step].paths, { src: "tmpfs", dst: "/mnt/x", flags: "0" });
});

Deno.test("a source inside the root is resolved there too and passed as /proc/self/fd/1001", () => {
  const sys = new RecordingSys();
  runToEnd([
    op("rootfs", "mount", "mount", {
      source: "/data",
      target: "/srv",
      fstype: "",
      flags: ["MS_BIND", "MS_REC"],
      sourceInRoot: true,
    }),
  ], sys);
  assert.deepEqual(sys.format().slice(PROLOGUE.length, -2), [
    'openat2(1002, "/srv", 0x280000, 0, 0x12)',
    "dup3(3, 1000, 0x80000)",
    "close(3)",
    "fstatfsType(1000)",
    'openat2(1002, "/data", 0x280000, 0, 0x12)',
    "dup3(4, 1001, 0x80000)",
    "close(4)",
    'mount("/proc/self/fd/1001", "/proc/self/fd/1000", null, 0x5000, null)',
    "close(1000)",
    "close(1001)",
  ]);
});

Deno.test("a read-only path is bound onto itself, then made read-only recursively", () => {
  const sys = new RecordingSys().failOn("openat2", (a) => a[1] === "/proc/absent", 2);
  runToEnd([
    op("rootfs", "mount", "readonly-path", { path: "/proc/sys" }),
    op("rootfs", "mount", "readonly-path", { path: "/proc/absent" }),
  ], sys);
  assert.deepEqual(sys.format().slice(PROLOGUE.length, -2), [
    'openat2(1002, "/proc/sys", 0x280000, 0, 0x12)',
    "dup3(3, 1000, 0x80000)",
    "close(3)",
    'mount("/proc/self/fd/1000", "/proc/self/fd/1000", null, 0x5000, null)',
    "close(1000)",
    'openat2(1002, "/proc/sys", 0x280000, 0, 0x12)',
    "dup3(4, 1000, 0x80000)",
    "close(4)",
    'mountSetattr(1000, "", 0x9000, 1, 0)',
    "close(1000)",
    // a missing read-only path is skipped
    'openat2(1002, "/proc/absent", 0x280000, 0, 0x12)',
  ]);
});

Deno.test("without mount_setattr (ENOSYS), a read-only path is remounted with the locked flags", () => {
  const sys = new RecordingSys()
    .failOn("mountSetattr", 38)
    .returns("fstatfsFlags", () => true, 1024); // noatime, locked
  runToEnd([op("rootfs", "mount", "readonly-path", { path: "/proc/sys" })], sys);
  assert.deepEqual(sys.format().slice(PROLOGUE.length + 8, -2), [
    'mountSetattr(1000, "", 0x9000, 1, 0)',
    "fstatfsFlags(1000)",
    // MS_REMOUNT|MS_BIND|MS_RDONLY|MS_NOSUID|MS_NODEV|MS_NOEXEC|MS_NOATIME
    'mount(null, "/proc/self/fd/1000", null, 0x142f, null)',
    "close(1000)",
  ]);
});

Deno.test("remount-root-ro remounts / read-only keeping relatime and the locked flags", () => {
  const sys = new RecordingSys().returns("fstatfsFlags", () => true, C.MS_NOSUID | 4096);
  runToEnd([op("rootfs", "mount", "remount-root-ro", {})], sys);
  assert.deepEqual(sys.format().slice(PROLOGUE.length), [
    `open("/", ${F.PATH_DIR}, 0)`,
    "fstatfsFlags(3)",
    // MS_REMOUNT|MS_BIND|MS_RDONLY|MS_NOSUID|MS_RELATIME
    'mount(null, "/", null, 0x201023, null)',
    "close(3)",
    ...exitWithReport(-1, 0),
  ]);
});

Deno.test("remount-root-ro over a strictatime root says MS_STRICTATIME (else: relatime, EPERM)", () => {
  const sys = new RecordingSys().returns("fstatfsFlags", () => true, C.MS_NODEV);
  runToEnd([op("rootfs", "mount", "remount-root-ro", {})], sys);
  assert.deepEqual(sys.format().slice(PROLOGUE.length), [
    `open("/", ${F.PATH_DIR}, 0)`,
    "fstatfsFlags(3)",
    // MS_REMOUNT|MS_BIND|MS_RDONLY|MS_NODEV|MS_STRICTATIME
    'mount(null, "/", null, 0x1001025, null)',
    "close(3)",
    ...exitWithReport(-1, 0),
  ]);
});

Deno.test("remount-root-ro: a failing fstatfs or mount is reported after / is closed", () => {
  const statFails = new RecordingSys().failOn("fstatfsFlags", 38);
  runToEnd([op("rootfs", "mount", "remount-root-ro", {})], statFails);
  assert.deepEqual(statFails.format().slice(PROLOGUE.length), [
    `open("/", ${F.PATH_DIR}, 0)`,
    "fstatfsFlags(3)",
    "close(3)",
    ...exitWithReport(FIRST, 38),
  ]);

  const mountFails = new RecordingSys()
    .returns("fstatfsFlags", () => true, 4096)
    .failOn("mount", 1);
  const { prog } = runToEnd([op("rootfs", "mount", "remount-root-ro", {})], mountFails);
  assert.deepEqual(mountFails.format().slice(PROLOGUE.length), [
    `open("/", ${F.PATH_DIR}, 0)`,
    "fstatfsFlags(3)",
    'mount(null, "/", null, 0x201021, null)',
    "close(3)",
    ...exitWithReport(FIRST, 1),
  ]);
  assert.deepEqual(prog.info[FIRST], {
    phase: "rootfs",
    plugin: "mount",
    kind: "remount-root-ro",
    paths: {},
  });
});

Deno.test("readonlyRemountFlags keeps the locked flags and says the atime mode explicitly", () => {
  const RO = C.MS_REMOUNT | C.MS_BIND | C.MS_RDONLY;
  const ST_NOATIME = 1024, ST_NODIRATIME = 2048, ST_RELATIME = 4096;
  // strictatime (no atime flag in statfs): a remount without one would mean relatime
  assert.equal(readonlyRemountFlags(0), RO | C.MS_STRICTATIME);
  assert.equal(readonlyRemountFlags(0), 0x1001021);
  // relatime
  assert.equal(readonlyRemountFlags(ST_RELATIME), RO | C.MS_RELATIME);
  assert.equal(readonlyRemountFlags(ST_RELATIME), 0x201021);
  // noatime: MS_NOATIME is kept and is the atime mode itself
  assert.equal(readonlyRemountFlags(ST_NOATIME), RO | ST_NOATIME);
  assert.equal(readonlyRemountFlags(ST_NOATIME), 0x1421);
  // nodiratime is locked too, and goes with either atime mode
  assert.equal(readonlyRemountFlags(ST_NODIRATIME), RO | ST_NODIRATIME | C.MS_STRICTATIME);
  assert.equal(
    readonlyRemountFlags(ST_NODIRATIME | ST_RELATIME),
    RO | ST_NODIRATIME | C.MS_RELATIME,
  );
  // nosuid, nodev, noexec are kept
  assert.equal(
    readonlyRemountFlags(C.MS_NOSUID | C.MS_NODEV | C.MS_NOEXEC | ST_RELATIME),
    0x20102f,
  );
  // what the kernel does not lock is dropped: ST_RDONLY (already there), ST_SYNCHRONOUS,
  // ST_MANDLOCK, ST_NOSYMFOLLOW
  assert.equal(readonlyRemountFlags(1 | 16 | 64 | 8192 | ST_RELATIME), RO | C.MS_RELATIME);
  assert.equal(readonlyRemountFlags(1 | 16 | 64 | 8192), RO | C.MS_STRICTATIME);
});

Deno.test("a read-only bind over a strictatime mount is remounted with MS_STRICTATIME", () => {
  // The remount fallback, on a kernel without mount_setattr.
  const sys = new RecordingSys()
    .failOn("mountSetattr", 38)
    .returns("fstatfsFlags", () => true, C.MS_NOSUID);
  runToEnd([
    op("rootfs", "mount", "mount", {
      source: "/data",
      target: "/srv",
      fstype: "",
      flags: ["MS_BIND", "MS_RDONLY"],
    }),
  ], sys);
  assert.deepEqual(sys.format({ results: true }).slice(PROLOGUE.length, -2), [
    'openat2(1002, "/srv", 0x280000, 0, 0x12) = 3',
    "dup3(3, 1000, 0x80000) = 1000",
    "close(3) = 0",
    "fstatfsType(1000) = 61267",
    'openTree(-100, "/data", 0x80001) = 4',
    'mountSetattr(4, "", 0x9000, 1, 0) = -38',
    "close(4) = 0",
    'mount("/data", "/proc/self/fd/1000", null, 0x1000, null) = 0',
    "close(1000) = 0",
    'openat2(1002, "/srv", 0x280000, 0, 0x12) = 5',
    "dup3(5, 1000, 0x80000) = 1000",
    "close(5) = 0",
    "fstatfsFlags(1000) = 2",
    // MS_REMOUNT|MS_BIND|MS_RDONLY|MS_NOSUID|MS_STRICTATIME
    'mount(null, "/proc/self/fd/1000", null, 0x1001023, null) = 0',
    "close(1000) = 0",
  ]);
});

Deno.test("mkdir, symlink and setrlimit run inside the root; EEXIST is fine", () => {
  const sys = new RecordingSys().failOn("symlinkat", 17);
  runToEnd([
    op("rootfs", "mount", "mkdir", { path: "/run/lock", mode: 0o755 }),
    op("rootfs", "mount", "symlink", { target: "pts/ptmx", path: "/dev/ptmx" }),
    op("credentials", "process", "setrlimit", { resource: "nofile", soft: 1024, hard: 4096 }),
  ], sys);
  assert.deepEqual(sys.format().slice(PROLOGUE.length), [
    `openat2(1002, "/", ${F.PATH_DIR}, 0, 0x12)`,
    'mkdirat(3, "run", 0o755)',
    "close(3)",
    `openat2(1002, "/run", ${F.PATH_DIR}, 0, 0x12)`,
    'mkdirat(4, "lock", 0o755)',
    "close(4)",
    `openat2(1002, "/dev", ${F.PATH_DIR}, 0, 0x12)`,
    'symlinkat("pts/ptmx", 5, "ptmx")',
    "close(5)",
    "setrlimit(7, 1024, 4096)",
    ...exitWithReport(-1, 0),
  ]);
});

Deno.test("umask and personality (OCI process.user.umask, linux.personality) are set", () => {
  const sys = new RecordingSys();
  runToEnd([
    op("credentials", "process", "umask", { mask: 0o027 }),
    op("credentials", "process", "personality", { persona: 8 }),
  ], sys);
  assert.deepEqual(sys.format().slice(PROLOGUE.length), [
    "umask(0o27)",
    "personality(0x8)",
    ...exitWithReport(-1, 0),
  ]);
});

Deno.test("a mount op planned after pivot-root throws at compile time", () => {
  const ops: Op[] = [
    op("rootfs", "mount", "pivot-root", {}),
    op("rootfs", "mount", "mount", { source: "tmpfs", target: "/srv", fstype: "tmpfs", flags: [] }),
  ];
  assert.throws(
    () => compileChild(ops, context(), new RecordingSys()),
    /mount of \/srv planned after pivot-root/,
  );
});

Deno.test("parent-side ops (namespace, proc-write) are refused by compileChild", () => {
  const sys = new RecordingSys();
  assert.throws(
    () => compileChild([op("clone", "pid", "namespace", { flag: "CLONE_NEWPID" })], context(), sys),
    /op namespace does not run in the child/,
  );
  assert.throws(
    () =>
      compileChild(
        [op("attach", "user", "proc-write", { file: "uid_map", content: "0 0 1\n" })],
        context(),
        sys,
      ),
    /op proc-write does not run in the child/,
  );
});

// ---- A real plan: profile sections -> spec -> plan -> child program ----------------------

const HOST: HostInfo = {
  arch: "x86_64",
  uid: 0,
  gid: 0,
  id: "c0ffee",
  stateDir: "/run/micro/c0ffee",
  containerDir: "/var/lib/micro/containers/0123456789ab",
  hostView: [],
  devices: ["null", "zero"],
  image: "dir",
  passwd: "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n",
  group: "root:x:0:\nstaff:x:50:app\napp:x:1000:\n",
  sourceKinds: {},
  files: {},
  capLastCap: 40,
  lsm: { apparmor: false, selinux: false, landlock: 0 },
  ...CGROUP_FACTS,
};

const PROFILE: Sections = {
  process: { user: "app", cwd: "/home/app", noNewPrivileges: true },
  sections: {
    user: { enabled: true, options: {} },
    mount: {
      enabled: true,
      options: { devices: ["null", "zero"], masked: ["/proc/kcore"], readonly: ["/proc/sys"] },
    },
    pid: { enabled: true, options: {} },
    uts: { enabled: true, options: { hostname: "box" } },
    net: { enabled: true, options: { mode: "none" } },
  },
};

function realPlan(): Op[] {
  const input = { image: "/img", args: ["sh", "-c", "id"], terminal: false, stdin: false };
  return planRun(buildSpec(input, PROFILE, PLUGINS), HOST, PLUGINS);
}

Deno.test("a real plan compiles into the expected child steps, phase by phase", () => {
  const plan = realPlan();
  const childOps = plan.filter((o) => !["clone", "attach"].includes(o.phase));
  const prog = compileChild(childOps, context(), new RecordingSys());
  assert.deepEqual(prog.info.map((i) => `${i.phase} ${i.plugin} ${i.kind} ${i.paths.dst ?? ""}`), [
    "rootfs engine prctl(PR_SET_PDEATHSIG) ",
    "rootfs engine sync ",
    "rootfs engine prctl(PR_SET_DUMPABLE) ",
    "rootfs engine setsid ",
    "rootfs engine stdio ",
    "rootfs engine close_range ",
    "rootfs user userns-root ",
    "rootfs engine prctl(PR_SET_PDEATHSIG) ",
    "rootfs mount make-private ",
    "rootfs mount bind-root /run/micro/c1/root",
    "rootfs mount mount /proc",
    "rootfs mount mount /dev",
    "rootfs mount mount /dev/null",
    "rootfs mount mount /dev/zero",
    "rootfs mount mount /dev/pts",
    "rootfs mount symlink ",
    "rootfs mount mount /dev/shm",
    "rootfs mount symlink ",
    "rootfs mount symlink ",
    "rootfs mount symlink ",
    "rootfs mount symlink ",
    "rootfs mount mount /sys",
    "rootfs mount mkdir ",
    "rootfs mount mask ",
    "rootfs mount readonly-path ",
    "rootfs mount pivot-root ",
    "identity uts sethostname ",
    "identity net loopback-up ",
    "identity process session-keyring ",
    "credentials process setgroups ",
    "credentials process setresgid ",
    "credentials process setresuid ",
    "rootfs engine prctl(PR_SET_PDEATHSIG) ",
    "restrict process no-new-privs ",
    "exec process chdir ",
    "rootfs engine close_range ",
    "rootfs engine reset signals ",
    "rootfs engine ready ",
    "rootfs engine trampoline fds ",
    "exec process execve ",
  ]);
});

Deno.test("a real plan runs to the trampoline with every PATH candidate", () => {
  const plan = realPlan();
  const sys = new RecordingSys().execSucceeds();
  const { end } = runToEnd(plan.filter((o) => !["clone", "attach"].includes(o.phase)), sys);
  assert.ok(end instanceof FakeExec);
  const cands = [
    "/usr/local/sbin/sh",
    "/usr/local/bin/sh",
    "/usr/sbin/sh",
    "/usr/bin/sh",
    "/sbin/sh",
    "/bin/sh",
  ];
  assert.deepEqual(end.argv, ["", "", ...cands, "", "sh", "-c", "id"]);
  assert.deepEqual(end.envp, [
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME=/home/app",
    "HOSTNAME=box",
  ]);
  // Every mount lands on the fd the target was resolved to, never on a host path.
  assert.deepEqual(sys.calls().filter((c) => c.call === "mount").map((c) => c.args[1]), [
    "/",
    ROOT,
    // /dev /dev/null /dev/zero /dev/pts /dev/shm, mask, readonly bind (/proc and /sys are
    // attached with move_mount)
    ...Array(7).fill("/proc/self/fd/1000"),
  ]);
  const tail = sys.format().slice(sys.names().indexOf("pivotRoot") - 1);
  const lo = sys.results()[sys.names().indexOf("socket")];
  assert.deepEqual(tail, [
    "fchdir(1002)",
    'pivotRoot(".", ".")',
    'umount2(".", 0x2)',
    'chdir("/")',
    "close(1002)",
    'sethostname("box")',
    "socket(2, 0x80002, 0)",
    `ioctlBuf(${lo}, 0x8914)`,
    `close(${lo})`,
    "joinSessionKeyring()",
    "setgroups([50])",
    "setresgid(1000, 1000, 1000)",
    "setresuid(1000, 1000, 1000)",
    "prctl(1, 9, 0, 0, 0)",
    "prctl(38, 1, 0, 0, 0)",
    'chdir("/home/app")',
    "getcwd(4096)",
    "closeRange(3, 0x7fffffff, 0x4)",
    "resetSignals()",
    `sendRecord(${REPORT_FD}, [-3,0], -1)`,
    `dup3(${REPORT_FD}, 3, 0x0)`,
    trampoline(cands, ["sh", "-c", "id"], end.envp),
  ]);
  assert.deepEqual(sys.sent(REPORT_FD), [READY]);
});

Deno.test("a working directory outside the root (getcwd's '(unreachable)') is refused", () => {
  const sys = new RecordingSys().returns("getcwd", () => true, 20);
  const { prog } = runToEnd([
    op("exec", "process", "chdir", { path: "/app" }),
    execve(["/bin/sh"]),
  ], sys);
  const [step, errno] = reportOf(sys);
  assert.equal(errno, 18);
  assert.equal(prog.info[step].kind, "chdir");
  assert.match(prog.info[step].hints?.[18] ?? "", /outside the container's root/);
});

Deno.test("the image copy the parent made is attached and becomes the root fd", () => {
  const sys = new RecordingSys();
  runToEnd(
    [
      op("rootfs", "mount", "bind-root", { source: "/img", readonly: false }),
    ],
    sys,
    context({ imageFd: 60, imageId: { dev: 2049, ino: 2 } }),
  );
  assert.deepEqual(sys.format().slice(9, 19), [
    // The report socket stays at 1010, the image copy moves to 1011, the memfd to 1012, the
    // rest is closed.
    "dup3(60, 1011, 0x80000)",
    "dup3(57, 1012, 0x80000)",
    "closeRange(3, 0x3f1, 0x0)",
    "closeRange(1013, 0x7fffffff, 0x0)",
    `open("${ROOT}", ${F.PATH_DIR}, 0)`,
    'moveMount(1011, "", 3, "", 0x44)',
    "close(3)",
    "dup3(1011, 1002, 0x80000)",
    `sendRecord(${REPORT_FD}, [-1,0], -1)`,
    "exit(1)",
  ]);
});

Deno.test("bound by name (rootless), the image must be the directory the parent opened", () => {
  const sys = new RecordingSys();
  const { prog } = runToEnd(
    [
      op("rootfs", "mount", "bind-root", { source: "/img", readonly: false }),
    ],
    sys,
    context({ imageFd: -1, imageId: { dev: 2049, ino: 99 } }),
  );
  const [step, errno] = reportOf(sys);
  assert.equal(errno, 18);
  assert.equal(prog.info[step].kind, "bind-root");
  assert.ok(sys.names().includes("fstatId"));
});

Deno.test("a mount target on procfs (a link swapped in after the parent looked) is refused", () => {
  const sys = new RecordingSys().returns("fstatfsType", () => true, C.PROC_SUPER_MAGIC);
  runToEnd([
    op("rootfs", "mount", "mount", {
      source: "/data",
      target: "/srv",
      fstype: "",
      flags: ["MS_BIND"],
    }),
  ], sys);
  const [, errno] = reportOf(sys);
  assert.equal(errno, 18);
  assert.ok(!sys.names().includes("mount"), "nothing was mounted");
});

Deno.test("a mask under a /proc micro did not mount itself: missing is an error", () => {
  const sys = new RecordingSys().failOn("openat2", (a) => a[1] === "/proc/kcore", 2);
  runToEnd([op("rootfs", "mount", "mask", { path: "/proc/kcore" })], sys);
  assert.deepEqual(reportOf(sys).slice(1), [2]);
});

Deno.test("fromBase64: what atob gives, in a buffer of at least the size asked", () => {
  for (
    const bytes of [[], [0], [0, 255], [1, 2, 3], [250, 251, 252, 253], [...Array(300).keys()]]
  ) {
    const b = new Uint8Array(bytes.map((x) => x & 0xff));
    const text = btoa(String.fromCharCode(...b));
    const got = fromBase64(text, 64);
    assert.deepEqual([...got], [...b]);
    assert.ok(got.buffer.byteLength >= 64);
  }
  assert.throws(() => fromBase64("a*b="), /invalid base64/);
});

Deno.test("run -d: the parent-death signal is cleared right before the exec, not before", () => {
  for (const detached of [false, true]) {
    const sys = new RecordingSys();
    runToEnd([execve(["/bin/sh"])], sys, context({ detached }));
    const calls = sys.format();
    const prctls = calls.filter((c) => c.startsWith("prctl(1,"));
    // PR_SET_PDEATHSIG = 1: SIGKILL in the prologue (set-up dies with the runner) ...
    assert.equal(prctls[0], "prctl(1, 9, 0, 0, 0)");
    // ... and, detached, 0 after everything else but the exec (the runner then exits)
    if (!detached) assert.equal(prctls.length, 1);
    else {
      assert.equal(prctls.at(-1), "prctl(1, 0, 0, 0, 0)");
      const at = calls.lastIndexOf("prctl(1, 0, 0, 0, 0)");
      assert.ok(calls.slice(at).some((c) => c.startsWith("execveat(")), calls.join("\n"));
    }
  }
});

Deno.test("OCI create: the parent-death signal cleared before READY; the exec fifo is opened and written after READY", () => {
  const sys = new RecordingSys().scriptRead(50, new Uint8Array([1])).execSucceeds()
    .returns("fstatfsType", () => true, C.PROC_SUPER_MAGIC);
  const ops = [
    op("credentials", "process", "setresuid", { uid: 1000 }),
    execve(["/bin/sh"]),
  ];
  runToEnd(ops, sys, context({ execFifo: 60, detached: true }));
  const calls = sys.format();
  // Set while it is set up (create waits for READY), cleared before READY: create then exits.
  const prctls = calls.filter((c) => c.startsWith("prctl(1,"));
  assert.equal(prctls.at(-1), "prctl(1, 0, 0, 0, 0)", calls.join("\n"));
  const cleared = calls.lastIndexOf("prctl(1, 0, 0, 0, 0)");
  // The fifo kept at 1015, the unused numbers below it closed.
  assert.ok(calls.includes("dup3(60, 1015, 0x80000)"), calls.join("\n"));
  assert.ok(calls.includes("close(1013)") && calls.includes("close(1014)"), calls.join("\n"));
  const ready = calls.indexOf(`sendRecord(${REPORT_FD}, [${READY_RECORD},0], -1)`);
  const open = calls.findIndex((c) => /^openat\(\d+, "1015", 0x80001/.test(c));
  const exec = calls.findIndex((c) => c.startsWith("execveat("));
  assert.ok(ready >= 0 && open > ready && exec > open, calls.join("\n"));
  assert.ok(cleared < ready, calls.join("\n"));
  // Without it (micro run), the child dies with micro and there is no fifo.
  const plain = new RecordingSys().scriptRead(50, new Uint8Array([1])).execSucceeds();
  runToEnd(ops, plain);
  const p = plain.format();
  assert.equal(p.filter((c) => c.startsWith("prctl(1, 9")).length, 2);
  assert.ok(!p.some((c) => c.includes("/proc/self/fd") || c.includes('"1015"')));
});

Deno.test("OCI create: the exec fifo is reopened only through procfs's /proc/self/fd (an image's own file there let the command start before start)", () => {
  const ops = [execve(["/bin/sh"])];
  // The fake's fstatfs says ext4: the image's /proc (no proc mount) with a file at self/fd/1015.
  const sys = new RecordingSys().scriptRead(50, new Uint8Array([1])).execSucceeds();
  const { prog } = runToEnd(ops, sys, context({ execFifo: 60, detached: true }));
  const [step, errno] = execReportOf(sys);
  assert.equal(errno, 18);
  assert.equal(prog.info[step].kind, "exec fifo");
  assert.ok(!sys.format().some((c) => /^open(at)?\(.*0x80001/.test(c)), sys.format().join("\n"));
  assert.equal(sys.names().includes("execveat"), false);
  // procfs's: the fifo is opened in that directory, written, and the command follows.
  const proc = new RecordingSys().scriptRead(50, new Uint8Array([1])).execSucceeds()
    .returns("fstatfsType", () => true, C.PROC_SUPER_MAGIC);
  runToEnd(ops, proc, context({ execFifo: 60, detached: true }));
  const calls = proc.format();
  const dir = calls.findIndex((c) => c.startsWith(`open("/proc/self/fd", ${F.PATH_DIR}`));
  const fifo = calls.findIndex((c) => /^openat\(\d+, "1015", 0x80001/.test(c));
  assert.ok(dir >= 0 && fifo > dir, calls.join("\n"));
  assert.ok(calls.some((c) => c.startsWith("execveat(")), calls.join("\n"));
});

Deno.test("OCI exec: the child keeps the container's pidfd at 1016 and enters user and mount", () => {
  const sys = new RecordingSys().scriptRead(50, new Uint8Array([1])).execSucceeds();
  const ops = [
    op("rootfs", "oci", "setns", { flags: ["CLONE_NEWUSER", "CLONE_NEWNS"] }),
    execve(["/bin/sh"]),
  ];
  runToEnd(ops, sys, context({ nsFd: 61, detached: true }));
  const calls = sys.format();
  assert.ok(calls.includes("dup3(61, 1016, 0x80000)"), calls.join("\n"));
  // No fifo: its number is closed like every unused one below the last kept.
  assert.ok(calls.includes("close(1015)"), calls.join("\n"));
  const setns = calls.indexOf(`setns(1016, "0x${(C.CLONE_NEWUSER | C.CLONE_NEWNS).toString(16)}")`);
  assert.ok(setns > 0 && calls[setns + 1] === "close(1016)", calls.join("\n"));
  assert.ok(!calls.some((c) => c.includes("/proc/self/fd/1015")));
});

Deno.test("session-keyring: a new anonymous one; no keyrings or keyctl refused outside: goes on", () => {
  const ops = [op("identity", "process", "session-keyring", {})];
  const sys = new RecordingSys();
  runToEnd(ops, sys);
  assert.deepEqual(sys.format().slice(PROLOGUE.length), [
    "joinSessionKeyring()",
    ...exitWithReport(-1, 0),
  ]);
  for (const errno of [38, 1]) {
    const s = new RecordingSys().failOn("joinSessionKeyring", errno);
    runToEnd(ops, s);
    assert.deepEqual(s.format().slice(PROLOGUE.length), [
      "joinSessionKeyring()",
      ...exitWithReport(-1, 0),
    ]);
  }
  // Any other failure (EDQUOT: the user's key quota) fails the run at that step.
  const s = new RecordingSys().failOn("joinSessionKeyring", 122);
  runToEnd(ops, s);
  assert.deepEqual(s.format().slice(PROLOGUE.length), [
    "joinSessionKeyring()",
    ...exitWithReport(6, 122), // after the prologue's six steps
  ]);
});

Deno.test("mempolicy: set_mempolicy with the mode or'ed with its flags and the node bitmap", () => {
  const sys = new RecordingSys().execSucceeds();
  runToEnd([
    op("credentials", "process", "mempolicy", { mode: 2, flags: 1 << 15, nodes: [0, 65] }),
    op("credentials", "process", "mempolicy", { mode: 4, flags: 0, nodes: [] }),
    execve(["/bin/sh"]),
  ], sys);
  const set = sys.calls().filter((c) => c.call === "setMempolicy");
  // Two 64-bit words: node 0 in the first, node 65 (bit 1) in the second.
  assert.deepEqual(set[0].args, [2 | 1 << 15, [1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0]]);
  // MPOL_LOCAL takes no nodes: a null mask.
  assert.deepEqual(set[1].args, [4, null]);
});

Deno.test("mempolicy: EINVAL (a node that is not online) is reported as the step with its nodes", () => {
  const sys = new RecordingSys().failOn("setMempolicy", 22);
  const { prog } = runToEnd([
    op("credentials", "process", "mempolicy", { mode: 2, flags: 0, nodes: [1] }),
    execve(["/bin/sh"]),
  ], sys);
  const [step, errno] = reportOf(sys);
  assert.equal(errno, 22);
  assert.equal(prog.info[step].kind, "mempolicy");
  assert.deepEqual(prog.info[step].paths, { mode: "MPOL_BIND", flags: "0x0", nodes: "1" });
});

Deno.test("cpu-affinity in exec: the child sets its own CPUs right before the exec's steps", () => {
  const sys = new RecordingSys().execSucceeds();
  runToEnd([
    op("exec", "process", "cpu-affinity", { cpus: [0, 1, 8] }),
    op("exec", "process", "chdir", { path: "/" }),
    execve(["/bin/sh"]),
  ], sys);
  const calls = sys.format();
  const at = calls.findIndex((c) => c.startsWith("schedSetaffinity"));
  assert.equal(calls[at], "schedSetaffinity(0, [3,1,0,0,0,0,0,0])");
  assert.ok(calls[at + 1].startsWith('chdir("/")'), calls.slice(at).join(" "));
});

Deno.test("seccomp with a listener: the fd goes to micro on the report socket, the child waits for 8 bytes, closes it", () => {
  const sys = new RecordingSys().execSucceeds();
  sys.returns("seccompFilter", () => true, 33);
  const seccomp = op("restrict", "seccomp", "seccomp", {
    arch: "x86_64",
    instructions: 1,
    policy: "/b/config.json",
    flags: 8,
    program: "BgAAAAAA/38=",
    listener: { path: "/run/agent.sock", metadata: "m" },
  });
  runToEnd([seccomp, execve(["/bin/sh"])], sys);
  const calls = sys.format();
  const at = calls.findIndex((c) => c.startsWith("seccompFilter"));
  assert.deepEqual(calls.slice(at, at + 4), [
    'seccompFilter("1 instructions", 8)',
    `sendRecord(${REPORT_FD}, [${SECCOMP_RECORD},0], 33)`,
    `read(${REPORT_FD}, 8)`,
    "close(33)",
  ]);
  // micro never answers (it died, or refused): EPIPE, the step named with its listener.
  const gone = new RecordingSys().scriptRead(REPORT_FD, new Uint8Array(0));
  gone.returns("seccompFilter", () => true, 33);
  const { prog } = runToEnd([seccomp, execve(["/bin/sh"])], gone);
  const sent = gone.sent(REPORT_FD);
  assert.deepEqual(sent[0], { record: [SECCOMP_RECORD, 0], fd: 33 });
  const [step, errno] = sent[1].record;
  assert.equal(errno, 32);
  assert.equal(prog.info[step].paths.listener, "/run/agent.sock");
});

Deno.test("time-offsets: a /proc/self/timens_offsets that is not procfs's (an image's file) is refused", () => {
  const offsets = op("rootfs", "timens", "time-offsets", { text: "boottime 5 0\n" });
  // The fake's fstatfs says ext4: an image's /proc/self link or file, not the kernel's.
  const sys = new RecordingSys();
  const { prog } = runToEnd([offsets], sys);
  const [step, errno] = reportOf(sys);
  assert.equal(errno, 18);
  assert.equal(prog.info[step].kind, "time-offsets");
  assert.equal(sys.names().includes("write"), false);
  const proc = new RecordingSys().returns("fstatfsType", () => true, C.PROC_SUPER_MAGIC);
  runToEnd([offsets], proc);
  assert.equal(proc.names().filter((n) => n === "write").length, 1);
});

Deno.test("a bind's own flags and propagation: set on the detached tree, then on the attached mount", () => {
  const sys = new RecordingSys();
  runToEnd([
    op("rootfs", "mount", "mount", {
      source: "/data",
      target: "/srv",
      fstype: "",
      // The kernel ignores these on a bind: they must not go to mount(2).
      flags: ["MS_BIND", "MS_REC", "MS_NOSUID", "MS_NODEV", "MS_NOEXEC", "MS_NOATIME"],
      propagation: ["MS_SHARED", "MS_REC"],
    }),
    op("rootfs", "mount", "mount", {
      source: "tmpfs",
      target: "/t",
      fstype: "tmpfs",
      flags: ["MS_NOSUID", "MS_NOATIME", "MS_SYNCHRONOUS"],
      propagation: ["MS_UNBINDABLE"],
    }),
  ], sys);
  assert.deepEqual(sys.format().slice(PROLOGUE.length, -2), [
    'openat2(1002, "/srv", 0x280000, 0, 0x12)',
    "dup3(3, 1000, 0x80000)",
    "close(3)",
    "fstatfsType(1000)",
    'openTree(-100, "/data", 0x88001)',
    // AT_EMPTY_PATH|AT_RECURSIVE; NOSUID|NODEV|NOEXEC|NOATIME set, the atime bits cleared
    'mountSetattr(4, "", 0x9000, 30, 112)',
    'moveMount(4, "", 1000, "", 0x44)',
    // rshared: MS_SHARED on the mount the tree's fd now is, recursively
    'mountSetattr(4, "", 0x9000, 0, 0, 0, 1048576)',
    "close(4)",
    "close(1000)",
    'openat2(1002, "/t", 0x280000, 0, 0x12)',
    "dup3(5, 1000, 0x80000)",
    "close(5)",
    "fstatfsType(1000)",
    'mount("tmpfs", "/proc/self/fd/1000", "tmpfs", 0x412, null)',
    "close(1000)",
    // a new file system's propagation: on the mount found again in the root
    'openat2(1002, "/t", 0x280000, 0, 0x12)',
    "dup3(6, 1000, 0x80000)",
    "close(6)",
    'mount(null, "/proc/self/fd/1000", null, 0x20000, null)',
    "close(1000)",
  ]);
});

Deno.test("bindRemountFlags: the bind's own flags, the locked ones kept, one atime mode", () => {
  const ST_NOATIME = 1024;
  const RB = C.MS_REMOUNT | C.MS_BIND;
  assert.equal(bindRemountFlags(0, C.MS_NOSUID), RB | C.MS_NOSUID | C.MS_STRICTATIME);
  assert.equal(bindRemountFlags(ST_NOATIME, C.MS_RELATIME), RB | C.MS_RELATIME);
  assert.equal(
    bindRemountFlags(C.MS_NODEV, C.MS_RDONLY | C.MS_BIND | C.MS_SYNCHRONOUS),
    RB | C.MS_RDONLY | C.MS_NODEV | C.MS_STRICTATIME,
  );
});
