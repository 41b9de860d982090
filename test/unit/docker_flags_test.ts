/**
 * Docker's flags of issue 9: how each becomes a profile key (or a request field), the
 * one-line errors, and what they plan.
 */
import assert from "node:assert/strict";
import { CGROUP_FACTS, CGROUP_V1 } from "./_host.ts";
import { type CliIO, parseRun, type Request } from "../../core/cli.ts";
import { MicroError } from "../../core/errors.ts";
import { execute } from "../../core/engine/mod.ts";
import { READY_RECORD } from "../../core/engine/child.ts";
import { RecordingSys } from "../../core/sys/fake.ts";
import { C } from "../../core/sys/mod.ts";
import { buildSpec, planRun } from "../../core/plan.ts";
import type { HostInfo } from "../../core/plugin.ts";
import { resolveProfile } from "../../core/profile.ts";
import { parseSignal, RunSignals } from "../../core/signals.ts";
import { writeCidfile } from "../../core/run.ts";
import { labelFilter } from "../../core/store/ps.ts";
import type { ContainerRecord } from "../../core/store/containers.ts";
import { type Op, op } from "../../core/ops.ts";
import { PLUGINS } from "../../plugins/mod.ts";

function io(files: Record<string, string> = {}): CliIO {
  return {
    getEnv: () => undefined,
    cwd: () => "/work",
    readFile: (path) => {
      if (!Object.hasOwn(files, path)) throw new Deno.errors.NotFound(path);
      return files[path];
    },
  };
}

const parse = (...argv: string[]): Request => parseRun(["run", ...argv], io());

function errorLine(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    if (e instanceof MicroError) {
      assert.equal(e.exitCode, 125);
      const line = e.line();
      assert.ok(!line.includes("\n"), `one line: ${line}`);
      return line;
    }
    throw e;
  }
  throw new Error("expected an error");
}

function host(over: Partial<HostInfo> = {}): HostInfo {
  return {
    arch: "x86_64",
    uid: 0,
    gid: 0,
    id: "0123456789ab",
    stateDir: "/run/micro/0123456789ab",
    containerDir: "/var/lib/micro/containers/0123456789ab",
    hostView: [],
    devices: ["null", "zero", "full", "random", "urandom", "tty"],
    passwd: "root:x:0:0:root:/root:/bin/sh\n",
    group: "root:x:0:\n",
    sourceKinds: {},
    image: "dir",
    files: {},
    capLastCap: 40,
    lsm: { apparmor: false, selinux: false, landlock: 7 },
    ...CGROUP_FACTS,
    ...over,
  };
}

/** The flags through profile, spec, the plugins' checks and the plan. */
function planFor(argv: string[], profiles: string[] = [], h = host()) {
  const req = parse(...argv, "/img", "sh");
  const { profile } = resolveProfile(profiles.length ? profiles : req.profiles, req.layer, PLUGINS);
  const spec = buildSpec(
    { image: "/img", args: ["sh"], terminal: false, stdin: false },
    profile,
    PLUGINS,
  );
  // As core/run.ts: the flags win over the image's StopSignal.
  if (req.stopSignal !== undefined) spec.micro.stopSignal = req.stopSignal;
  if (req.stopTimeout !== undefined) spec.micro.stopTimeout = req.stopTimeout;
  const errors = PLUGINS.filter((p) => spec.micro.plugins.includes(p.name))
    .flatMap((p) => p.check?.(spec, h) ?? []);
  return { req, spec, errors, ops: errors.length ? [] : planRun(spec, h, PLUGINS) };
}

const kinds = (ops: Op[], kind: string) => ops.filter((o) => o.kind === kind);
const flags = (ops: Op[]) => ops.flatMap((o) => o.kind === "namespace" ? [o.args.flag] : []).sort();

// --- namespaces -------------------------------------------------------------------------

Deno.test("--pid/--ipc/--uts/--userns host turn that namespace's plugin off", () => {
  const r = parse("--pid", "host", "--ipc", "host", "--uts", "host", "--userns", "host", "i", "sh");
  assert.deepEqual(r.layer, {
    pid: { enabled: false },
    ipc: { enabled: false },
    uts: { enabled: false },
    user: { enabled: false },
  });
  const { ops } = planFor(["--pid", "host", "--ipc=host", "--uts", "host"]);
  assert.deepEqual(flags(ops), ["CLONE_NEWNET", "CLONE_NEWNS"]);
  assert.equal(kinds(ops, "sethostname").length, 0);
  // Without a pid namespace the container's /proc is the host's, bound.
  const proc = ops.find((o) => o.kind === "mount" && o.args.target === "/proc");
  assert.equal(proc?.kind === "mount" && proc.args.fstype, "");
});

Deno.test("--ipc shareable and private are an own ipc namespace", () => {
  assert.deepEqual(parse("--ipc", "shareable", "i", "sh").layer, { ipc: { enabled: true } });
  assert.deepEqual(parse("--ipc", "private", "i", "sh").layer, { ipc: { enabled: true } });
});

Deno.test("namespace modes: bad values are one line naming what is accepted", () => {
  assert.equal(
    errorLine(() => parse("--pid", "shareable", "i", "sh")),
    'option "--pid": invalid value "shareable": expected "host", "container:NAME" ' +
      '(see "micro run --help")',
  );
  assert.equal(
    errorLine(() => parse("--uts", "container:web", "i", "sh")),
    'option "--uts": invalid value "container:web": expected "host" (see "micro run --help")',
  );
  assert.match(errorLine(() => parse("--ipc", "container:../x", "i", "sh")), /invalid container/);
  assert.match(
    errorLine(() => parse("--uts", "host", "--hostname", "box", "i", "sh")),
    /"--uts host" and "--hostname" conflict/,
  );
});

Deno.test("--pid/--ipc container:NAME plan a join instead of a new namespace", () => {
  const { req, ops } = planFor(["--pid", "container:web", "--ipc", "container:db"]);
  assert.deepEqual(req.layer, {
    pid: { enabled: true, join: "web" },
    ipc: { enabled: true, join: "db" },
  });
  assert.ok(!flags(ops).includes("CLONE_NEWPID"));
  assert.ok(!flags(ops).includes("CLONE_NEWIPC"));
  assert.deepEqual(kinds(ops, "join").map((o) => o.args), [
    { flag: "CLONE_NEWPID", container: "web" },
    { flag: "CLONE_NEWIPC", container: "db" },
  ]);
  // The joined pid namespace gets a /proc of its own (not the host's).
  const proc = ops.find((o) => o.kind === "mount" && o.args.target === "/proc");
  assert.equal(proc?.kind === "mount" && proc.args.fstype, "proc");
});

Deno.test("a join with a user namespace of the container's own is refused in one line", () => {
  const { errors } = planFor(["--pid", "container:web"], ["hardened"]);
  assert.equal(errors.length, 1);
  assert.match(errors[0].line(), /--pid container:web cannot be used with a user namespace/);
});

// --- privileged -------------------------------------------------------------------------

Deno.test("--privileged: all caps micro holds, no seccomp, no LSM, no masks, host devices", () => {
  const bounding = ["CAP_CHOWN", "CAP_NET_ADMIN", "CAP_SYS_ADMIN"];
  const devices = ["null", "kmsg", "vda"];
  const { spec, ops } = planFor(
    ["--privileged", "--cap-drop", "ALL", "--security-opt", "seccomp=unconfined"],
    ["hardened"],
    host({ capBounding: bounding, devices }),
  );
  assert.equal(spec.micro.capsAll, true);
  const caps = kinds(ops, "capabilities")[0];
  assert.deepEqual(caps.kind === "capabilities" && caps.args.effective, bounding);
  assert.equal(kinds(ops, "seccomp").length, 0);
  assert.equal(kinds(ops, "landlock").length + kinds(ops, "lsm-label").length, 0);
  assert.equal(kinds(ops, "mask").length + kinds(ops, "readonly-path").length, 0);
  const bound = ops.flatMap((o) =>
    o.kind === "mount" && o.args.source.startsWith("/dev/") ? [o.args.source] : []
  );
  assert.deepEqual(bound, ["/dev/null", "/dev/kmsg", "/dev/vda"]);
  // Every device allowed by the cgroup (v1: every char and block device).
  const allow = ops.flatMap((o) =>
    o.kind === "cgroup-write" && o.args.path.endsWith("devices.allow") ? [o.args.value] : []
  );
  assert.deepEqual(allow, ["c *:* rwm", "b *:* rwm"]);
});

// --- sysctl -----------------------------------------------------------------------------

Deno.test("--sysctl: written right after /proc is mounted, before /proc/sys is read-only", () => {
  const { req, ops } = planFor([
    "--sysctl",
    "net.ipv4.ip_forward=1",
    "--sysctl",
    "kernel/shmmax=4",
  ]);
  assert.deepEqual(req.layer.sysctl, {
    values: { "net.ipv4.ip_forward": "1", "kernel.shmmax": "4" },
  });
  const at = (pred: (o: Op) => boolean) => ops.findIndex(pred);
  const proc = at((o) => o.kind === "mount" && o.args.kernelFs === "proc");
  const first = at((o) => o.kind === "sysctl");
  const ro = at((o) => o.kind === "readonly-path" && o.args.path === "/proc/sys");
  assert.ok(proc >= 0 && proc < first && first < ro, `${proc} < ${first} < ${ro}`);
  assert.deepEqual(kinds(ops, "sysctl").map((o) => o.args), [
    { key: "net.ipv4.ip_forward", value: "1" },
    { key: "kernel.shmmax", value: "4" },
  ]);
});

Deno.test("--sysctl: only namespaced ones, as runc; each refusal is one line", () => {
  const refused = (argv: string[]) => planFor(argv).errors.map((e) => e.line());
  assert.match(refused(["--sysctl", "kernel.core_pattern=x"])[0], /core_pattern: not allowed/);
  assert.match(
    refused(["--network", "host", "--sysctl", "net.ipv4.ip_forward=1"])[0],
    /network namespace of its own/,
  );
  assert.match(refused(["--ipc", "host", "--sysctl", "kernel.sem=1"])[0], /ipc namespace/);
  assert.match(refused(["--sysctl", "kernel.hostname=x"])[0], /use --hostname/);
  assert.deepEqual(refused(["--sysctl", "kernel.domainname=x", "--sysctl", "fs.mqueue.a=1"]), []);
  assert.match(errorLine(() => parse("--sysctl", "novalue", "i", "sh")), /expected KEY=VALUE/);
});

// --- oom --------------------------------------------------------------------------------

Deno.test("--oom-score-adj: -1000..1000, written into the waiting child's /proc", () => {
  const { ops } = planFor(["--oom-score-adj", "500"]);
  const w = kinds(ops, "proc-write");
  assert.deepEqual(w.map((o) => [o.phase, o.args]), [
    ["attach", { file: "oom_score_adj", content: "500" }],
  ]);
  assert.match(errorLine(() => parse("--oom-score-adj", "1001", "i", "sh")), /-1000 to 1000/);
  assert.match(errorLine(() => parse("--oom-score-adj", "x", "i", "sh")), /-1000 to 1000/);
});

Deno.test("--oom-kill-disable: memory.oom_control on v1, a warning on v2", () => {
  const v1 = planFor(["--oom-kill-disable"]).ops;
  assert.ok(
    v1.some((o) =>
      o.kind === "cgroup-write" && o.args.path.endsWith("/memory.oom_control") &&
      o.args.value === "1"
    ),
  );
  const v2 = planFor(
    ["--oom-kill-disable"],
    [],
    host({
      cgroup: {
        mode: "v2",
        v1: {},
        v2: { mount: "/sys/fs/cgroup", controllers: ["memory", "pids"] },
        base: "",
        writable: true,
      },
    }),
  ).ops;
  assert.ok(!v2.some((o) => o.kind === "cgroup-write" && o.args.path.includes("oom_control")));
  assert.ok(v2.some((o) => o.kind === "skipped" && o.args.what === "oom-kill-disable"));
  assert.ok(CGROUP_V1.v1.memory);
});

// --- stop signal and timeout ------------------------------------------------------------

Deno.test("parseSignal takes Docker's spellings", () => {
  assert.equal(parseSignal("SIGTERM"), 15);
  assert.equal(parseSignal("term"), 15);
  assert.equal(parseSignal("9"), 9);
  assert.equal(parseSignal("SIGRTMIN+3"), 37);
  assert.equal(parseSignal("RTMAX"), 64);
  assert.equal(parseSignal("SIGFOO"), undefined);
  assert.equal(parseSignal("0"), undefined);
  assert.equal(parseSignal("65"), undefined);
  assert.match(errorLine(() => parse("--stop-signal", "FOO", "i", "sh")), /unknown signal "FOO"/);
  assert.match(errorLine(() => parse("--stop-timeout", "-2", "i", "sh")), /number of seconds/);
});

Deno.test("--stop-signal/--stop-timeout are planned; the default is not", () => {
  assert.equal(kinds(planFor([]).ops, "stop").length, 0);
  const { ops } = planFor(["--stop-signal", "SIGUSR1", "--stop-timeout", "3"]);
  assert.deepEqual(kinds(ops, "stop").map((o) => [o.phase, o.args]), [
    ["supervise", { signal: "SIGUSR1", number: 10, timeout: 3 }],
  ]);
});

function fakeTimers() {
  const pending = new Map<number, () => void>();
  let next = 1;
  return {
    pending,
    timers: {
      set: (fn: () => void, _ms: number) => {
        pending.set(next, fn);
        return next++;
      },
      clear: (id: number) => void pending.delete(id),
    },
    fire() {
      for (const [id, fn] of [...pending]) {
        pending.delete(id);
        fn();
      }
    },
  };
}

Deno.test("SIGTERM to micro: the stop signal to init, SIGKILL after the timeout", () => {
  const t = fakeTimers();
  const s = new RunSignals(t.timers);
  const sent: [number, number][] = [];
  try {
    s.stopWith(10, 5);
    s.child(42, (pid, n) => sent.push([pid, n]));
    s.running(null);
    s.deliver(2); // INT: forwarded as it is
    s.deliver(15);
    s.deliver(15); // a second TERM: the signal again, one timer
    assert.equal(t.pending.size, 1);
    t.fire();
    assert.deepEqual(sent, [[42, 2], [42, 10], [42, 10], [42, 9]]);
  } finally {
    s.remove();
  }
});

Deno.test("an init that exits before the timeout is not killed; -1 never kills", () => {
  const t = fakeTimers();
  const s = new RunSignals(t.timers);
  const sent: number[] = [];
  try {
    s.child(7, (_p, n) => sent.push(n));
    s.running(null);
    s.deliver(15);
    s.draining(); // init reaped: the timer goes
    assert.equal(t.pending.size, 0);
    s.stopWith(15, -1);
    s.running(null);
    s.deliver(15);
    assert.equal(t.pending.size, 0);
    assert.deepEqual(sent, [15, 15]);
  } finally {
    s.remove();
  }
});

// --- labels, cidfile, attach, version ---------------------------------------------------

Deno.test("--label and --label-file: the file first, then the flags", () => {
  const r = parseRun(
    ["run", "--label", "a=1", "--label-file", "/l", "-l", "flag", "i", "sh"],
    io({ "/l": "# comment\n\na=file\nb=2\n" }),
  );
  assert.deepEqual(r.labels, { a: "1", b: "2", flag: "" });
  assert.match(errorLine(() => parse("--label", "=x", "i", "sh")), /invalid label "=x"/);
  assert.match(
    errorLine(() => parseRun(["run", "--label-file", "/none", "i", "sh"], io())),
    /label file "\/none": cannot read: no such file/,
  );
});

Deno.test("ps --filter label=KEY and label=KEY=VALUE", () => {
  const rec = (labels?: Record<string, string>) => ({ labels }) as ContainerRecord;
  assert.ok(labelFilter("label=app")(rec({ app: "" })));
  assert.ok(labelFilter("label=app=web")(rec({ app: "web" })));
  assert.ok(!labelFilter("label=app=web")(rec({ app: "db" })));
  assert.ok(!labelFilter("label=app")(rec()));
  assert.ok(labelFilter("label=a=b=c")(rec({ a: "b=c" })));
  assert.throws(() => labelFilter("status=running"), /unsupported filter "status=running"/);
});

Deno.test("--cidfile: the id written to a new file; an existing one is refused", () => {
  const dir = Deno.makeTempDirSync();
  try {
    const id = "a".repeat(64);
    writeCidfile(`${dir}/cid`, id);
    assert.equal(Deno.readTextFileSync(`${dir}/cid`), id);
    assert.match(
      errorLine(() => writeCidfile(`${dir}/cid`, id)),
      /open\(cidfile\) path=.*\/cid: EEXIST \(the container id file exists/,
    );
    // Never through a symlink, even a dangling one.
    Deno.symlinkSync(`${dir}/target`, `${dir}/link`);
    assert.match(errorLine(() => writeCidfile(`${dir}/link`, id)), /EEXIST/);
    assert.throws(() => Deno.statSync(`${dir}/target`));
    assert.equal(parse("--cidfile", "c", "i", "sh").cidfile, "/work/c");
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("-a: only the named streams; stdin only when named", () => {
  const r = parse("-i", "-a", "stdout", "--attach=STDERR", "i", "sh");
  assert.deepEqual(r.attach, { stdin: false, stdout: true, stderr: true });
  assert.equal(r.stdin, false);
  assert.equal(parse("-i", "-a", "stdin", "i", "sh").stdin, true);
  assert.match(errorLine(() => parse("-a", "stdio", "i", "sh")), /invalid stream "stdio"/);
});

// --- the engine: joining, and -a --------------------------------------------------------

const PLAN: Op[] = [
  op("clone", "mount", "namespace", { flag: "CLONE_NEWNS" }),
  op("clone", "pid", "join", { flag: "CLONE_NEWPID", container: "web" }),
  op("rootfs", "mount", "make-private", {}),
  op("exec", "process", "execve", { args: ["true"], env: [], path: ["/bin/true"] }),
];
const READY = { record: [READY_RECORD, 0] as [number, number] };

Deno.test("a join enters the namespaces right before the clone and leaves right after", async () => {
  const sys = new RecordingSys().scriptRecv(5, READY);
  await execute(PLAN, {
    rootPath: "/r",
    terminal: false,
    stdin: false,
    join: [{ pidfd: 77, flags: C.CLONE_NEWPID | C.CLONE_NEWIPC }],
  }, sys);
  const calls = sys.format().filter((c) =>
    /^(setns|prepareFork|clone)\(|\/ns\//.test(c) || /^close\(1[34]\)/.test(c)
  );
  // fds 13 and 14: micro's own pid_for_children and ipc namespaces, to come back to.
  assert.deepEqual(calls.slice(0, 9), [
    'open("/proc/thread-self/ns/pid_for_children", 0x80000, 0)',
    'open("/proc/thread-self/ns/ipc", 0x80000, 0)',
    'setns(77, "0x28000000")',
    "prepareFork()",
    "clone(0x20011)",
    'setns(13, "0x20000000")',
    "close(13)",
    'setns(14, "0x8000000")',
    "close(14)",
  ]);
});

Deno.test("a failed setns into the joined container is one line, and nothing is cloned", async () => {
  const sys = new RecordingSys();
  sys.failOn("setns", 1);
  await assert.rejects(
    () =>
      execute(PLAN, {
        rootPath: "/r",
        terminal: false,
        stdin: false,
        join: [{ pidfd: 77, flags: C.CLONE_NEWPID }],
      }, sys),
    (e: MicroError) => /clone: engine: setns .*EPERM/.test(e.line()),
  );
  assert.ok(!sys.format().some((c) => c.startsWith("clone(")));
});

Deno.test("-a stdout: stderr is /dev/null, open for writing; stdout a pipe", async () => {
  const sys = new RecordingSys().scriptRecv(5, READY);
  await execute(PLAN.filter((o) => o.kind !== "join"), {
    rootPath: "/r",
    terminal: false,
    stdin: false,
    attach: { stdout: true, stderr: false },
  }, sys);
  const calls = sys.format();
  assert.ok(calls.includes('open("/dev/null", 0x80001, 0)'), calls.join("\n"));
  assert.equal(calls.filter((c) => c.startsWith("pipe2(")).length, 2); // sync, stdout
});

Deno.test("the rootless check of --userns host happens before anything runs", () => {
  // The layer carries it; core/run.ts refuses it for a non-root caller.
  assert.deepEqual(parse("--userns", "host", "i", "sh").layer, { user: { enabled: false } });
});
