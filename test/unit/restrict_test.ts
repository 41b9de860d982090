/**
 * The restrict phase's child steps, driven through the recording Sys: capabilities (the
 * bounding drops, capset masks and the ambient set), keepcaps around setresuid, Landlock
 * (handled rights by ABI, rights per rule, files get only file rights), the seccomp program
 * as the plugin encoded it, the LSM exec label, and the order planRun gives these ops.
 */
import { CGROUP_FACTS } from "./_host.ts";
import assert from "node:assert/strict";
import {
  type ChildContext,
  compileChild,
  landlockHandled,
  landlockRights,
  runChild,
} from "../../core/engine/child.ts";
import { CAPS } from "../../core/caps.ts";
import { type Op, op, type OpArgs } from "../../core/ops.ts";
import { buildSpec, planRun } from "../../core/plan.ts";
import type { HostInfo } from "../../core/plugin.ts";
import { resolveProfile } from "../../core/profile.ts";
import { compileProgram, defaultPolicy } from "../../core/seccomp/mod.ts";
import { FakeExec, FakeExit, RecordingSys } from "../../core/sys/fake.ts";
import { C } from "../../core/sys/mod.ts";
import { PLUGINS } from "../../plugins/mod.ts";
import { loadSeccompCompiler, seccomp } from "../../plugins/seccomp.ts";

// Programs that are not precompiled are compiled here, as a run compiles them once loaded.
await loadSeccompCompiler();

const REPORT_FD = 1010;

/**
 * The prologue is prctl, sync (close, read, close), not dumpable, setsid, stdio (three dup3)
 * and the fds kept (the trampoline's memfd to its fixed fd, everything else closed).
 */
const CTX: ChildContext = {
  rootPath: "/run/micro/c1/root",
  syncRead: 50,
  syncWrite: 51,
  report: REPORT_FD,
  stdio: [54, 55, 56],
  exe: 57,
};
const PROLOGUE = [
  "prctl(1, 9, 0, 0, 0)",
  "close(51)",
  "read(50, 1)",
  "close(50)",
  "prctl(4, 0, 0, 0, 0)",
  "setsid()",
  "dup3(54, 0, 0x0)",
  "dup3(55, 1, 0x0)",
  "dup3(56, 2, 0x0)",
  // The trampoline's memfd to its fixed fd, no image fd, everything else closed.
  "close(1011)",
  "dup3(57, 1012, 0x80000)",
  "closeRange(3, 0x3f1, 0x0)",
  "closeRange(1013, 0x7fffffff, 0x0)",
];
const DONE = [`sendRecord(${REPORT_FD}, [-1,0], -1)`, "exit(1)"];
const failed = (step: number, errno: number) => [
  `sendRecord(${REPORT_FD}, [${step},${errno}], -1)`,
  "exit(1)",
];

/** Compiles `ops` and runs them as the child would, to the exit after the last step. */
function runOps(ops: Op[], sys: RecordingSys) {
  const prog = compileChild(ops, CTX, sys);
  assert.deepEqual(sys.calls(), [], "compiling must not touch the kernel");
  try {
    runChild(prog, sys);
  } catch (e) {
    if (e instanceof FakeExit || e instanceof FakeExec) return prog;
    throw e;
  }
  assert.fail("runChild returned");
}

/** The calls after the prologue, formatted, with the prologue checked. */
function afterPrologue(sys: RecordingSys): string[] {
  const all = sys.format();
  assert.deepEqual(all.slice(0, PROLOGUE.length), PROLOGUE);
  return all.slice(PROLOGUE.length);
}

const hex = (n: number) => "0x" + (n >>> 0).toString(16);

// --- capabilities ---------------------------------------------------------------------

function capsOp(over: Partial<OpArgs["capabilities"]> = {}): Op {
  return op("restrict", "caps", "capabilities", {
    bounding: [],
    effective: [],
    permitted: [],
    inheritable: [],
    ambient: [],
    lastCap: 40,
    ...over,
  });
}

/** The PR_CAPBSET_DROP calls for every capability 0..last except `keep`. */
function drops(last: number, keep: number[]): string[] {
  const out: string[] = [];
  for (let c = 0; c <= last; c++) if (!keep.includes(c)) out.push(`prctl(24, ${c}, 0, 0, 0)`);
  return out;
}

Deno.test("capabilities: capget, effective = permitted, bounding drops, capset, ambient", () => {
  const sys = new RecordingSys();
  // Effective empty (after a uid change under keepcaps), permitted full.
  sys.caps = new Uint32Array([0, 0, 0xffffffff, 0x1ff, 0, 0]);
  const prog = runOps([
    capsOp({
      bounding: ["CAP_CHOWN", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_BPF"],
      effective: ["CAP_CHOWN", "CAP_NET_BIND_SERVICE"],
      permitted: ["CAP_CHOWN", "CAP_NET_BIND_SERVICE", "CAP_BPF"],
      inheritable: ["CAP_NET_BIND_SERVICE", "CAP_BPF"],
      ambient: ["CAP_NET_BIND_SERVICE", "CAP_BPF"],
    }),
  ], sys);
  assert.deepEqual(afterPrologue(sys), [
    "capget()",
    // Effective raised to permitted so that PR_CAPBSET_DROP has CAP_SETPCAP.
    'capset(["0xffffffff","0x1ff","0xffffffff","0x1ff","0x0","0x0"])',
    // Every capability but CHOWN (0), SETPCAP (8), NET_BIND_SERVICE (10) and BPF (39).
    ...drops(40, [0, 8, 10, 39]),
    // [effective lo, hi, permitted lo, hi, inheritable lo, hi]; CAP_BPF is bit 7 of hi.
    'capset(["0x401","0x0","0x401","0x80","0x400","0x80"])',
    "prctl(47, 4, 0, 0, 0)",
    "prctl(47, 2, 10, 0, 0)",
    "prctl(47, 2, 39, 0, 0)",
    ...DONE,
  ]);
  const i = prog.info.find((s) => s.kind === "capabilities")!;
  assert.deepEqual(i, {
    phase: "restrict",
    plugin: "caps",
    kind: "capabilities",
    paths: {
      bounding: "CAP_CHOWN,CAP_SETPCAP,CAP_NET_BIND_SERVICE,CAP_BPF",
      effective: "CAP_CHOWN,CAP_NET_BIND_SERVICE",
      ambient: "CAP_NET_BIND_SERVICE,CAP_BPF",
    },
  });
});

Deno.test("capabilities: nothing kept drops 0..lastCap, capset zeros, no ambient raise", () => {
  const sys = new RecordingSys();
  runOps([capsOp()], sys);
  assert.deepEqual(afterPrologue(sys), [
    "capget()",
    'capset(["0xffffffff","0x1ff","0xffffffff","0x1ff","0x0","0x0"])',
    ...drops(40, []),
    'capset(["0x0","0x0","0x0","0x0","0x0","0x0"])',
    "prctl(47, 4, 0, 0, 0)",
    ...DONE,
  ]);
});

Deno.test("capabilities: the drop list follows the kernel's lastCap, not micro's table", () => {
  // An older kernel (cap_last_cap 37): 38..40 are not asked for.
  const old = new RecordingSys();
  runOps([capsOp({ bounding: ["CAP_KILL"], lastCap: 37 })], old);
  assert.deepEqual(
    old.format().filter((l) => l.startsWith("prctl(24,")),
    drops(37, [5]),
  );
  // A newer kernel than micro's table: the unknown ones (41, 42) are dropped too.
  assert.equal(CAPS.length, 41);
  const recent = new RecordingSys();
  runOps([capsOp({ bounding: ["CAP_KILL"], lastCap: 42 })], recent);
  assert.deepEqual(
    recent.format().filter((l) => l.startsWith("prctl(24,")),
    drops(42, [5]),
  );
});

Deno.test("capabilities: EINVAL from a bounding drop is tolerated, other errnos are not", () => {
  const sys = new RecordingSys()
    .failOn("prctl", (a) => a[0] === C.PR_CAPBSET_DROP && a[1] === 40, 22);
  runOps([capsOp()], sys);
  assert.deepEqual(sys.sent(REPORT_FD), [{ record: [-1, 0], fd: -1 }]);
  assert.ok(sys.format().includes('capset(["0x0","0x0","0x0","0x0","0x0","0x0"])'));

  const eperm = new RecordingSys()
    .failOn("prctl", (a) => a[0] === C.PR_CAPBSET_DROP && a[1] === 3, 1);
  const prog = runOps([capsOp()], eperm);
  const step = prog.info.findIndex((s) => s.kind === "capabilities");
  assert.deepEqual(afterPrologue(eperm), [
    "capget()",
    'capset(["0xffffffff","0x1ff","0xffffffff","0x1ff","0x0","0x0"])',
    "prctl(24, 0, 0, 0, 0)",
    "prctl(24, 1, 0, 0, 0)",
    "prctl(24, 2, 0, 0, 0)",
    "prctl(24, 3, 0, 0, 0)",
    ...failed(step, 1),
  ]);
});

Deno.test("capabilities: EPERM from capset is reported as the step's errno", () => {
  // The first capset (effective = permitted) fails: nothing else is tried.
  const first = new RecordingSys().failOn("capset", 1);
  const prog = runOps([capsOp({ bounding: CAPS.slice() })], first);
  const step = prog.info.findIndex((s) => s.kind === "capabilities");
  assert.equal(step, 6, "prctl, sync, not dumpable, setsid, stdio, close_range, then capabilities");
  assert.deepEqual(afterPrologue(first), [
    "capget()",
    'capset(["0xffffffff","0x1ff","0xffffffff","0x1ff","0x0","0x0"])',
    ...failed(step, 1),
  ]);

  // The final capset fails: the drops happened, the ambient set is not touched.
  const last = new RecordingSys().failOn("capset", (a) => (a[0] as string[])[0] === "0x1", 1);
  runOps([capsOp({ bounding: CAPS.slice(), effective: ["CAP_CHOWN"] })], last);
  assert.deepEqual(afterPrologue(last), [
    "capget()",
    'capset(["0xffffffff","0x1ff","0xffffffff","0x1ff","0x0","0x0"])',
    'capset(["0x1","0x0","0x0","0x0","0x0","0x0"])',
    ...failed(step, 1),
  ]);
});

Deno.test("capabilities: a failing capget or ambient raise is reported", () => {
  const get = new RecordingSys().failOn("capget", 1);
  runOps([capsOp()], get);
  assert.deepEqual(afterPrologue(get), ["capget()", ...failed(6, 1)]);

  const raise = new RecordingSys()
    .failOn("prctl", (a) => a[0] === C.PR_CAP_AMBIENT && a[1] === C.PR_CAP_AMBIENT_RAISE, 1);
  runOps([capsOp({ ambient: ["CAP_KILL", "CAP_CHOWN"] })], raise);
  const tail = afterPrologue(raise).slice(-4);
  assert.deepEqual(tail, ["prctl(47, 4, 0, 0, 0)", "prctl(47, 2, 5, 0, 0)", ...failed(6, 1)]);
});

// --- keepcaps around setresuid ----------------------------------------------------------

Deno.test("setresuid is wrapped in PR_SET_KEEPCAPS only when a capabilities op exists", () => {
  const setuid = op("credentials", "process", "setresuid", { uid: 1000 });
  const withCaps = new RecordingSys();
  const prog = runOps([setuid, capsOp()], withCaps);
  assert.deepEqual(afterPrologue(withCaps).slice(0, 5), [
    "prctl(8, 1, 0, 0, 0)",
    "setresuid(1000, 1000, 1000)",
    "prctl(8, 0, 0, 0, 0)",
    "prctl(1, 9, 0, 0, 0)",
    "capget()",
  ]);
  assert.deepEqual(prog.info.slice(6, 11).map((i) => `${i.plugin} ${i.kind}`), [
    "engine prctl(PR_SET_KEEPCAPS)",
    "process setresuid",
    "engine prctl(PR_SET_KEEPCAPS)",
    "engine prctl(PR_SET_PDEATHSIG)",
    "caps capabilities",
  ]);

  const without = new RecordingSys();
  runOps([setuid], without);
  assert.deepEqual(afterPrologue(without), [
    "setresuid(1000, 1000, 1000)",
    "prctl(1, 9, 0, 0, 0)",
    ...DONE,
  ]);
});

// --- Landlock ---------------------------------------------------------------------------

const LL_READ = 4 | 8; // READ_FILE | READ_DIR
const LL_EXECUTE = 1;
const LL_WRITE = 0xfff2; // WRITE_FILE, REMOVE_*, MAKE_*, REFER, TRUNCATE, IOCTL_DEV
const LL_FILE = 1 | 2 | 4 | 16384 | 32768; // what applies to a file

Deno.test("landlock: the rights each ABI version handles", () => {
  assert.equal(landlockHandled(1), 0x1fff, "EXECUTE .. MAKE_SYM");
  assert.equal(landlockHandled(2), 0x3fff, "+ REFER");
  assert.equal(landlockHandled(3), 0x7fff, "+ TRUNCATE");
  assert.equal(landlockHandled(4), 0x7fff, "ABI 4 adds only network rights");
  assert.equal(landlockHandled(5), 0xffff, "+ IOCTL_DEV");
  assert.equal(landlockHandled(6), 0xffff);
  assert.equal(landlockHandled(7), 0xffff);
});

Deno.test("landlock: read, write and execute as access rights", () => {
  assert.equal(landlockRights([]), 0);
  assert.equal(landlockRights(["read"]), LL_READ);
  assert.equal(landlockRights(["execute"]), LL_EXECUTE);
  assert.equal(landlockRights(["write"]), LL_WRITE);
  assert.equal(landlockRights(["read", "execute"]), 0xd);
  assert.equal(landlockRights(["read", "write", "execute"]), 0xffff);
});

const O_PATH = hex(C.O_PATH | C.O_CLOEXEC);
const O_PATH_DIR = hex(C.O_PATH | C.O_DIRECTORY | C.O_CLOEXEC);

function landlockOp(abi: number, rules: OpArgs["landlock"]["rules"]): Op {
  return op("restrict", "lsm", "landlock", { abi, rules });
}

Deno.test("landlock: ruleset for the ABI, one rule per path, restrict_self last, then close", () => {
  for (
    const [abi, handled] of [[1, 0x1fff], [2, 0x3fff], [3, 0x7fff], [5, 0xffff], [7, 0xffff]]
  ) {
    const sys = new RecordingSys();
    runOps([
      landlockOp(abi, [
        { path: "/usr", access: ["read", "execute"] },
        { path: "/tmp", access: ["read", "write"] },
        { path: "/data", access: ["read", "write", "execute"] },
      ]),
    ], sys);
    // The fake hands out fds from 3: the ruleset is 3, then each path and its "." probe.
    assert.deepEqual(afterPrologue(sys), [
      `landlockCreateRuleset("${hex(handled)}", 0)`,
      `open("/usr", ${O_PATH}, 0)`,
      `openat2(4, ".", ${O_PATH_DIR}, 0, 0x0)`,
      "close(5)",
      `landlockAddPathRule(3, "${hex(0xd & handled)}", 4)`,
      "close(4)",
      `open("/tmp", ${O_PATH}, 0)`,
      `openat2(6, ".", ${O_PATH_DIR}, 0, 0x0)`,
      "close(7)",
      `landlockAddPathRule(3, "${hex((LL_READ | LL_WRITE) & handled)}", 6)`,
      "close(6)",
      `open("/data", ${O_PATH}, 0)`,
      `openat2(8, ".", ${O_PATH_DIR}, 0, 0x0)`,
      "close(9)",
      `landlockAddPathRule(3, "${hex(handled)}", 8)`,
      "close(8)",
      "landlockRestrictSelf(3)",
      "close(3)",
      ...DONE,
    ], `abi ${abi}`);
  }
});

Deno.test("landlock: a file gets only file rights; a missing path is skipped", () => {
  const sys = new RecordingSys()
    .returns("open", (a) => a[0] === "/etc/app.conf", 70)
    .returns("open", (a) => a[0] === "/lib32", -2)
    .failOn("openat2", (a) => a[0] === 70, 20); // "." under a file: ENOTDIR
  const prog = runOps([
    landlockOp(7, [
      { path: "/lib32", access: ["read", "execute"] },
      { path: "/etc/app.conf", access: ["read", "write", "execute"] },
    ]),
  ], sys);
  assert.deepEqual(afterPrologue(sys), [
    'landlockCreateRuleset("0xffff", 0)',
    `open("/lib32", ${O_PATH}, 0)`,
    `open("/etc/app.conf", ${O_PATH}, 0)`,
    `openat2(70, ".", ${O_PATH_DIR}, 0, 0x0)`,
    `landlockAddPathRule(3, "${hex(LL_FILE)}", 70)`,
    "close(70)",
    "landlockRestrictSelf(3)",
    "close(3)",
    ...DONE,
  ]);
  assert.deepEqual(prog.info.find((i) => i.kind === "landlock")!.paths, { abi: "7", rules: "2" });

  // On ABI 1 a read-only file keeps READ_FILE alone; a rule with no rights adds nothing.
  const abi1 = new RecordingSys()
    .returns("open", (a) => a[0] === "/etc/hosts", 70)
    .failOn("openat2", (a) => a[0] === 70, 20);
  runOps([
    landlockOp(1, [{ path: "/etc/hosts", access: ["read"] }, { path: "/srv", access: [] }]),
  ], abi1);
  assert.deepEqual(afterPrologue(abi1).filter((l) => l.startsWith("landlock")), [
    'landlockCreateRuleset("0x1fff", 0)',
    'landlockAddPathRule(3, "0x4", 70)',
    "landlockRestrictSelf(3)",
  ]);
});

Deno.test("landlock: the ruleset fd is closed when a rule fails, and nothing is enforced", () => {
  // open fails with something other than ENOENT.
  const open = new RecordingSys().returns("open", (a) => a[0] === "/proc", -13);
  const prog = runOps([
    landlockOp(3, [{ path: "/usr", access: ["read"] }, { path: "/proc", access: ["read"] }]),
  ], open);
  const step = prog.info.findIndex((i) => i.kind === "landlock");
  assert.deepEqual(afterPrologue(open).slice(-5), [
    "close(4)",
    `open("/proc", ${O_PATH}, 0)`,
    "close(3)",
    ...failed(step, 13),
  ]);
  assert.ok(!open.names().includes("landlockRestrictSelf"));

  // add_rule fails: the path's fd and the ruleset are closed, restrict_self is not called.
  const add = new RecordingSys().failOn("landlockAddPathRule", 22);
  runOps([landlockOp(3, [{ path: "/usr", access: ["read"] }])], add);
  assert.deepEqual(afterPrologue(add), [
    'landlockCreateRuleset("0x7fff", 0)',
    `open("/usr", ${O_PATH}, 0)`,
    `openat2(4, ".", ${O_PATH_DIR}, 0, 0x0)`,
    "close(5)",
    'landlockAddPathRule(3, "0xc", 4)',
    "close(4)",
    "close(3)",
    ...failed(step, 22),
  ]);

  // restrict_self fails: the ruleset is still closed.
  const self = new RecordingSys().failOn("landlockRestrictSelf", 1);
  runOps([landlockOp(3, [])], self);
  assert.deepEqual(afterPrologue(self), [
    'landlockCreateRuleset("0x7fff", 0)',
    "landlockRestrictSelf(3)",
    "close(3)",
    ...failed(step, 1),
  ]);

  // create_ruleset fails: there is no fd to close.
  const create = new RecordingSys().failOn("landlockCreateRuleset", 95);
  runOps([landlockOp(3, [{ path: "/usr", access: ["read"] }])], create);
  assert.deepEqual(afterPrologue(create), [
    'landlockCreateRuleset("0x7fff", 0)',
    ...failed(step, 95),
  ]);
});

// --- seccomp ----------------------------------------------------------------------------

/** A recording Sys that also keeps a copy of every filter loaded. */
class FilterSys extends RecordingSys {
  readonly filters: { bytes: Uint8Array; backing: number; flags: number }[] = [];
  override seccompFilter(filter: Uint8Array, flags: number) {
    this.filters.push({ bytes: filter.slice(), backing: filter.buffer.byteLength, flags });
    return super.seccompFilter(filter, flags);
  }
}

const HOST: HostInfo = {
  arch: "x86_64",
  uid: 0,
  gid: 0,
  id: "0123456789ab",
  stateDir: "/run/micro/0123456789ab",
  containerDir: "/var/lib/micro/containers/0123456789ab",
  hostView: [],
  devices: ["null"],
  passwd: "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/nonexistent:/bin/false\n",
  group: "root:x:0:\nnogroup:x:65534:\n",
  sourceKinds: {},
  image: "dir",
  files: {},
  capLastCap: 40,
  lsm: { apparmor: true, selinux: false, landlock: 7 },
  ...CGROUP_FACTS,
};

function seccompOp(host: HostInfo, file?: string): Op {
  const spec = buildSpec(
    { image: "/img", args: ["true"], terminal: false, stdin: false },
    {
      process: { noNewPrivileges: true },
      sections: { seccomp: { enabled: true, options: file ? { file } : {} } },
    },
    [seccomp],
  );
  const ops = seccomp.plan(spec, host);
  assert.equal(ops.length, 1);
  return ops[0];
}

Deno.test("seccomp: the filter loaded is the plugin's program byte for byte, flags passed", () => {
  for (const arch of ["x86_64", "aarch64"] as const) {
    const o = seccompOp({ ...HOST, arch });
    assert.equal(o.kind, "seccomp");
    const sys = new FilterSys();
    const prog = runOps([o], sys);
    const want = compileProgram(defaultPolicy(CAPS), arch);
    assert.equal(sys.filters.length, 1);
    assert.deepEqual(sys.filters[0].bytes, want.program);
    assert.ok(sys.filters[0].backing >= 4096, "the filter lives in at least a page");
    assert.deepEqual(afterPrologue(sys), [
      `seccompFilter("${want.length} instructions", 0)`,
      ...DONE,
    ]);
    assert.deepEqual(prog.info.find((i) => i.kind === "seccomp")!.paths, {
      policy: "default",
      arch,
      instructions: String(want.length),
    });
  }

  const file = "/etc/micro/log.json";
  const policy = {
    defaultAction: "SCMP_ACT_ALLOW",
    flags: ["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW"],
    syscalls: [{ names: ["mount"], action: "SCMP_ACT_ERRNO" }],
  };
  const o = seccompOp({ ...HOST, files: { [file]: JSON.stringify(policy) } }, file);
  const sys = new FilterSys();
  runOps([o], sys);
  assert.equal(sys.filters[0].flags, 2 | 4);
  assert.deepEqual(
    sys.filters[0].bytes,
    compileProgram(policy as Parameters<typeof compileProgram>[0], "x86_64").program,
  );
});

Deno.test("seccomp: a failed load is reported with its errno", () => {
  const sys = new FilterSys().failOn("seccompFilter", 22);
  const prog = runOps([seccompOp(HOST)], sys);
  const step = prog.info.findIndex((i) => i.kind === "seccomp");
  assert.deepEqual(afterPrologue(sys).slice(1), failed(step, 22));
});

// --- lsm-label, skipped -------------------------------------------------------------------

Deno.test("lsm-label: the value is written to the given file, which is then closed", () => {
  const value = "exec micro-default";
  const sys = new RecordingSys().returns("fstatfsType", () => true, C.PROC_SUPER_MAGIC);
  runOps([
    op("restrict", "lsm", "lsm-label", { file: "/proc/thread-self/attr/apparmor/exec", value }),
  ], sys);
  assert.deepEqual(afterPrologue(sys), [
    `open("/proc/thread-self/attr/apparmor/exec", ${hex(C.O_WRONLY | C.O_CLOEXEC)}, 0)`,
    "fstatfsType(3)",
    `write(3, ${value.length})`,
    "close(3)",
    ...DONE,
  ]);
});

Deno.test("lsm-label: a failing open is reported at its step", () => {
  const label = op("restrict", "lsm", "lsm-label", {
    file: "/proc/thread-self/attr/exec",
    value: "system_u:system_r:container_t:s0",
  });
  const open = new RecordingSys().failOn("open", 2);
  const prog = runOps([label], open);
  const step = prog.info.findIndex((i) => i.kind === "lsm-label");
  assert.deepEqual(afterPrologue(open), [
    `open("/proc/thread-self/attr/exec", ${hex(C.O_WRONLY | C.O_CLOEXEC)}, 0)`,
    ...failed(step, 2),
  ]);
});

Deno.test("a skipped op compiles to no step", () => {
  const sys = new RecordingSys();
  const prog = runOps([
    op("restrict", "lsm", "skipped", { what: "apparmor", reason: "not enabled (optional)" }),
  ], sys);
  assert.deepEqual(prog.info.map((i) => i.kind), [
    "prctl(PR_SET_PDEATHSIG)",
    "sync",
    "prctl(PR_SET_DUMPABLE)",
    "setsid",
    "stdio",
    "close_range",
  ]);
  assert.deepEqual(afterPrologue(sys), DONE);
});

// --- the order planRun gives the restrict phase -----------------------------------------------

function hardenedPlan(plugins = PLUGINS, host = HOST, layer: Record<string, unknown> = {}) {
  const { profile } = resolveProfile(["hardened"], layer, PLUGINS);
  const spec = buildSpec(
    { image: "/img", args: ["sh"], terminal: false, stdin: false },
    profile,
    PLUGINS,
  );
  return planRun(spec, host, plugins);
}

Deno.test("planRun orders restrict: capabilities, lsm-label, no-new-privs, landlock, seccomp", () => {
  const layer = { lsm: { apparmor: { profile: "micro-default" } } };
  const want = ["capabilities", "lsm-label", "no-new-privs", "landlock", "seccomp"];
  const restrict = (plan: Op[]) =>
    plan.filter((o) => o.phase === "restrict").map((o) => `${o.plugin} ${o.kind}`);
  const forward = restrict(hardenedPlan(PLUGINS, HOST, layer));
  assert.deepEqual(forward, [
    "caps capabilities",
    "lsm lsm-label",
    "process no-new-privs",
    "lsm landlock",
    "seccomp seccomp",
  ]);
  // Whatever order the plugins come in.
  const reversed = restrict(hardenedPlan([...PLUGINS].reverse(), HOST, layer));
  assert.deepEqual(reversed.map((l) => l.split(" ")[1]), want);
  const shuffled = [...PLUGINS].sort((a, b) => a.name.localeCompare(b.name));
  assert.deepEqual(restrict(hardenedPlan(shuffled, HOST, layer)).map((l) => l.split(" ")[1]), want);
});

Deno.test("planRun: without no_new_privs, seccomp is the first credentials op", () => {
  const { profile } = resolveProfile([], { process: { rlimits: { nofile: "64" } } }, PLUGINS);
  const spec = buildSpec(
    { image: "/img", args: ["sh"], terminal: false, stdin: false },
    profile,
    PLUGINS,
  );
  for (const plugins of [PLUGINS, [...PLUGINS].reverse()]) {
    const plan = planRun(spec, HOST, plugins);
    assert.deepEqual(
      plan.filter((o) => o.phase === "credentials" || o.phase === "restrict").map((o) =>
        `${o.phase} ${o.kind}`
      ),
      [
        "credentials seccomp",
        "credentials setrlimit",
        "credentials setgroups",
        "credentials setresgid",
        "credentials setresuid",
        "restrict capabilities",
      ],
    );
  }
});

Deno.test("a hardened plan compiles to the restrict steps in order and loads seccomp last", () => {
  const plan = hardenedPlan(PLUGINS, HOST, { lsm: { apparmor: { profile: "micro-default" } } });
  const sys = labelOnProc(new FilterSys().execSucceeds());
  const childOps = plan.filter((o) => !["clone", "attach"].includes(o.phase));
  const prog = runOps(childOps, sys);
  const from = prog.info.findIndex((i) => i.kind === "setresuid") - 1;
  assert.deepEqual(prog.info.slice(from).map((i) => `${i.plugin} ${i.kind}`), [
    "engine prctl(PR_SET_KEEPCAPS)",
    "process setresuid",
    "engine prctl(PR_SET_KEEPCAPS)",
    "engine prctl(PR_SET_PDEATHSIG)",
    "caps capabilities",
    "lsm lsm-label",
    "process no-new-privs",
    "lsm landlock",
    "seccomp seccomp",
    "process chdir",
    "engine close_range",
    "engine reset signals",
    "engine ready",
    "engine trampoline fds",
    "process execve",
  ]);
  const names = sys.names();
  const seccompAt = names.indexOf("seccompFilter");
  assert.ok(names.indexOf("landlockRestrictSelf") < seccompAt);
  assert.deepEqual(names.slice(seccompAt + 1), [
    "chdir",
    "getcwd",
    "closeRange",
    "resetSignals",
    "sendRecord",
    "dup3", // the report socket to fd 3
    "execveat",
  ]);
  assert.equal(sys.filters.length, 1);
});

/** `sys` with the LSM label's file (the last open before the fstatfs) on procfs. */
function labelOnProc<T extends RecordingSys>(sys: T): T {
  return sys.returns("fstatfsType", () => {
    const before = sys.calls().filter((c) => c.call !== "fstatfsType").at(-1);
    return before?.call === "open" && String(before.args[0]).includes("/attr/");
  }, C.PROC_SUPER_MAGIC);
}
