/**
 * `micro exec`: its plan (pure, from the ops the run recorded), its argument parsing, and
 * the child's `enter` step through the recording Sys.
 */
import assert from "node:assert/strict";
import { compileChild, PID_RECORD, runChild } from "../../core/engine/child.ts";
import { parseEnvFile, parseExec, rootOf } from "../../core/exec/mod.ts";
import { execPlan, type ExecRequest } from "../../core/exec/plan.ts";
import { execRecord } from "../../core/exec/record.ts";
import { type Op, op } from "../../core/ops.ts";
import { FakeExec, FakeExit, RecordingSys } from "../../core/sys/fake.ts";
import { C } from "../../core/sys/mod.ts";

const CAPS = {
  bounding: ["CAP_CHOWN"],
  effective: ["CAP_CHOWN"],
  permitted: ["CAP_CHOWN"],
  inheritable: [],
  ambient: [],
  lastCap: 40,
};
const SECCOMP = { arch: "x86_64", instructions: 2, policy: "default", flags: 0, program: "AAAA" };

/** A run's plan, as planRun orders it (only what matters here). */
const RUN_PLAN: Op[] = [
  op("prepare", "cgroups", "cgroup-create", { path: "/sys/fs/cgroup/micro/c1", shared: false }),
  op("clone", "pid", "namespace", { flag: "CLONE_NEWPID" }),
  op("attach", "user", "proc-write", { file: "uid_map", content: "0 100000 65536" }),
  op("attach", "cgroups", "cgroup-join", { path: "/sys/fs/cgroup/micro/c1" }),
  op("rootfs", "mount", "pivot-root", {}),
  op("identity", "uts", "sethostname", { name: "c1" }),
  op("credentials", "process", "setrlimit", { resource: "nofile", soft: 100, hard: 100 }),
  op("credentials", "process", "stdio-owner", { uid: 65534 }),
  op("credentials", "process", "setgroups", { gids: [] }),
  op("credentials", "process", "setresgid", { gid: 65534 }),
  op("credentials", "process", "setresuid", { uid: 65534 }),
  op("restrict", "caps", "capabilities", CAPS),
  op("restrict", "process", "no-new-privs", {}),
  op("restrict", "lsm", "landlock", { abi: 3, rules: [{ path: "/", access: ["read"] }] }),
  op("restrict", "seccomp", "seccomp", SECCOMP),
  op("exec", "process", "chdir", { path: "/srv" }),
  op("exec", "process", "execve", {
    args: ["sleep", "100"],
    env: ["PATH=/bin:/usr/bin", "HOME=/", "A=1"],
    path: ["/bin/sleep", "/usr/bin/sleep"],
  }),
  op("cleanup", "cgroups", "cgroup-remove", { path: "/sys/fs/cgroup/micro/c1", shared: false }),
];

const REQ: ExecRequest = {
  container: "c1",
  args: ["sh", "-c", "id"],
  env: [],
  terminal: false,
  stdin: false,
  detach: false,
};
const ALL_NS = ["CLONE_NEWUSER", "CLONE_NEWNS", "CLONE_NEWPID", "CLONE_NEWNET"];
const kinds = (ops: Op[]) => ops.map((o) => `${o.phase}:${o.kind}`);

Deno.test("execRecord keeps the process's ops: cgroups joined, credentials, restrict, exec", () => {
  assert.deepEqual(kinds(execRecord(RUN_PLAN).ops), [
    "attach:cgroup-join",
    "credentials:setrlimit",
    "credentials:stdio-owner",
    "credentials:setgroups",
    "credentials:setresgid",
    "credentials:setresuid",
    "restrict:capabilities",
    "restrict:no-new-privs",
    "restrict:landlock",
    "restrict:seccomp",
    "exec:chdir",
    "exec:execve",
  ]);
});

Deno.test("execPlan enters the namespaces, then repeats the container's ops unchanged", () => {
  const ops = execPlan(execRecord(RUN_PLAN), REQ, ALL_NS);
  assert.deepEqual(ops[0], op("rootfs", "exec", "enter", { container: "c1", flags: ALL_NS }));
  assert.deepEqual(ops[1], op("rootfs", "exec", "userns-root", {}));
  // The same objects as the run's: the same user, capabilities and compiled filter.
  for (const k of ["capabilities", "seccomp", "landlock", "no-new-privs", "setresuid"]) {
    assert.deepEqual(ops.find((o) => o.kind === k), RUN_PLAN.find((o) => o.kind === k), k);
  }
  assert.deepEqual(ops.find((o) => o.kind === "chdir")?.args, { path: "/srv" });
  assert.deepEqual(
    ops.at(-1),
    op("exec", "process", "execve", {
      args: ["sh", "-c", "id"],
      env: ["PATH=/bin:/usr/bin", "HOME=/", "A=1"],
      path: ["/bin/sh", "/usr/bin/sh"],
    }),
  );
  // Nothing that made the container is repeated.
  assert.ok(!ops.some((o) => ["namespace", "proc-write", "pivot-root"].includes(o.kind)));
});

Deno.test("execPlan without a user namespace does not become its root; -t adds a terminal", () => {
  const ops = execPlan(execRecord(RUN_PLAN), { ...REQ, terminal: true }, ["CLONE_NEWNS"]);
  assert.deepEqual(kinds(ops).slice(0, 3), [
    "rootfs:enter",
    "rootfs:console",
    "attach:cgroup-join",
  ]);
  const last = ops.at(-1)!;
  assert.ok(last.kind === "execve" && last.args.env.includes("TERM=xterm"));
});

Deno.test("execPlan -u replaces the user ops where they were; -w and -e apply", () => {
  const ops = execPlan(
    execRecord(RUN_PLAN),
    { ...REQ, cwd: "/tmp", env: ["A=2", "B=3"] },
    ALL_NS,
    { uid: 1000, gid: 100, additionalGids: [27], home: "/home/u" },
  );
  assert.deepEqual(
    ops.filter((o) => o.phase === "credentials").map((o) => [o.kind, o.args]),
    [
      ["setrlimit", { resource: "nofile", soft: 100, hard: 100 }],
      ["stdio-owner", { uid: 1000 }],
      ["setgroups", { gids: [27] }],
      ["setresgid", { gid: 100 }],
      ["setresuid", { uid: 1000 }],
    ],
  );
  assert.deepEqual(ops.find((o) => o.kind === "chdir")?.args, { path: "/tmp" });
  const last = ops.at(-1)!;
  assert.ok(last.kind === "execve");
  assert.deepEqual(last.args.env, ["PATH=/bin:/usr/bin", "HOME=/home/u", "A=2", "B=3"]);
});

Deno.test("execPlan -u root in a run without setgroups (a rootless map) adds none", () => {
  const record = execRecord(RUN_PLAN.filter((o) => o.kind !== "setgroups"));
  const ops = execPlan(record, REQ, ALL_NS, { uid: 0, gid: 0, additionalGids: [], home: "/root" });
  assert.deepEqual(
    ops.filter((o) => o.phase === "credentials").map((o) => o.kind),
    ["setrlimit", "setresgid", "setresuid"],
  );
});

Deno.test("parseExec takes Docker's flags, grouped and attached", () => {
  const env = (k: string) => ({ HOSTVAR: "h" } as Record<string, string>)[k];
  const files: Record<string, string> = { "/f": "# c\nX=1\n\nHOSTVAR\nNOPE\n" };
  const r = parseExec(
    ["exec", "-it", "-uapp:grp", "-w", "/srv", "-e", "K=V", "--env-file", "/f", "box", "ls", "-l"],
    (p) => files[p],
    env,
  );
  assert.deepEqual(r, {
    container: "box",
    args: ["ls", "-l"],
    user: "app:grp",
    cwd: "/srv",
    env: ["K=V", "X=1", "HOSTVAR=h"],
    terminal: true,
    stdin: true,
    detach: false,
  });
  assert.equal(parseExec(["exec", "--help"], () => ""), "help");
  const fails = (argv: string[], re: RegExp) =>
    assert.throws(() => parseExec(["exec", ...argv], () => ""), re);
  fails(["box"], /no command given/);
  fails([], /no container given/);
  fails(["-w", "rel", "box", "ls"], /absolute path/);
  fails(["--privileged", "box", "ls"], /not offered/);
  fails(["-d", "-t", "box", "ls"], /leaves nothing attached/);
  fails(["-x", "box", "ls"], /unknown option/);
  assert.deepEqual(parseEnvFile("A=1\r\n#x\n", () => undefined), ["A=1"]);
});

Deno.test("rootOf finds the host id of the container's root in a map", () => {
  assert.equal(rootOf("         0    1000000000      65536\n"), 1000000000);
  assert.equal(rootOf("      1000       1000          1\n"), undefined);
});

const CTX = {
  rootPath: "/run/micro/c1",
  syncRead: 50,
  syncWrite: 51,
  report: 1010,
  stdio: [54, 55, 56] as [number, number, number],
  exe: 57,
  enterFd: 60,
};

function run(ops: Op[], sys: RecordingSys, ctx = CTX) {
  const prog = compileChild(ops, ctx, sys);
  try {
    runChild(prog, sys);
  } catch (e) {
    if (e instanceof FakeExit || e instanceof FakeExec) return e;
    throw e;
  }
  assert.fail("runChild returned");
}

const ENTER = op("rootfs", "exec", "enter", {
  container: "c1",
  flags: ["CLONE_NEWUSER", "CLONE_NEWNS", "CLONE_NEWPID"],
});
const FLAGS = "0x" + (C.CLONE_NEWUSER | C.CLONE_NEWNS | C.CLONE_NEWPID).toString(16);

Deno.test("enter: one setns through the kept pidfd, then a fork whose parent leaves", () => {
  const sys = new RecordingSys({ clonePid: 777 });
  const end = run([ENTER], sys);
  assert.ok(end instanceof FakeExit);
  const calls = sys.format();
  // The pidfd is kept at its fixed number (1015) with every other fd above 2 closed.
  assert.ok(calls.includes("dup3(60, 1015, 0x80000)"), calls.join("\n"));
  assert.ok(calls.includes("closeRange(1016, 0x7fffffff, 0x0)"), calls.join("\n"));
  const at = calls.indexOf(`setns(1015, "${FLAGS}")`);
  assert.ok(at > 0, calls.join("\n"));
  assert.deepEqual(
    calls.slice(at),
    [
      `setns(1015, "${FLAGS}")`,
      "close(1015)",
      "prepareFork()",
      `clone(0x${C.CLONE_PARENT.toString(16)})`,
      "sendRecord(1010, [-7,777], -1)",
      "exit(0)",
    ],
  );
  assert.deepEqual(sys.sent(1010), [{ record: [PID_RECORD, 777], fd: -1 }]);
});

Deno.test("enter: the fork's child takes a session and the parent-death signal", () => {
  const sys = new RecordingSys({ clonePid: 0 });
  run([ENTER], sys);
  const calls = sys.format();
  const at = calls.indexOf("prepareFork()");
  assert.deepEqual(calls.slice(at + 2, at + 4), ["setsid()", "prctl(1, 9, 0, 0, 0)"]);
  assert.ok(calls[at + 1].startsWith("clone("));
});

Deno.test("enter -d: no parent-death signal, not even after the user switch", () => {
  const sys = new RecordingSys({ clonePid: 0 });
  run(
    [
      ENTER,
      op("credentials", "process", "setresuid", { uid: 1000 }),
    ],
    sys,
    { ...CTX, detached: true } as typeof CTX,
  );
  const calls = sys.format();
  const at = calls.indexOf("prepareFork()");
  assert.ok(!calls.slice(at).includes("prctl(1, 9, 0, 0, 0)"), calls.join("\n"));
  assert.ok(calls.slice(at).includes("prctl(1, 0, 0, 0, 0)"), calls.join("\n"));
});

Deno.test("enter: a refused setns is reported as the enter step, with nothing forked", () => {
  const sys = new RecordingSys().failOn("setns", 1);
  run([ENTER], sys);
  assert.ok(!sys.names().includes("clone"));
  const prog = compileChild([ENTER], CTX, new RecordingSys());
  const [step, errno] = sys.sent(1010)[0].record;
  assert.equal(errno, 1);
  assert.equal(prog.info[step].kind, "enter");
  assert.match(prog.info[step].hints![1], /may not enter/);
});

// The first child sends its pid record after its fork returned: on a loaded host the fork may
// reach READY first (a CI run saw "malformed report (8 bytes, step -7)"). Either order works.
for (const readyFirst of [false, true]) {
  Deno.test(
    `execute with an enter op: the forked child's pid is waited for, the first reaped${
      readyFirst ? " (READY before the pid record)" : ""
    }`,
    async () => {
      const { execute } = await import("../../core/engine/mod.ts");
      const pidRecord = { record: [PID_RECORD, 5151] as [number, number] };
      const ready = { record: [-3, 0] as [number, number] }; // READY
      const sys = new RecordingSys({ waitStatus: 5 << 8 }).scriptRecv(
        5,
        ...(readyFirst ? [ready, pidRecord] : [pidRecord, ready]),
      );
      const ops = execPlan(execRecord(RUN_PLAN.filter((o) => o.phase !== "attach")), REQ, ALL_NS);
      const result = await execute(ops, {
        rootPath: "/run/micro/c1",
        terminal: false,
        stdin: false,
        enter: 60,
      }, sys);
      assert.deepEqual(result, { exitCode: 5 });
      const waits = sys.format().filter((l) => l.startsWith("waitpid"));
      assert.deepEqual(waits, ["waitpid(4242)", "waitpid(5151)"]);
      // The caller's pidfd is the caller's to close.
      assert.ok(!sys.format().includes("close(60)"));
    },
  );
}

// A pid record is taken once, and only for a pid that is micro's own child: a record forged
// by whatever reached the report socket must not make micro wait on, signal or kill another.
for (const forged of ["not micro's child", "a second one", "the watchdog's or the child's own"]) {
  Deno.test(`execute with an enter op: a pid record naming ${forged} is malformed, and only the child is killed`, async () => {
    const { execute } = await import("../../core/engine/mod.ts");
    const ready = { record: [-3, 0] as [number, number] }; // READY
    const records = forged === "a second one"
      ? [{ record: [PID_RECORD, 5151] as [number, number] }, {
        record: [PID_RECORD, 6161] as [number, number],
      }]
      : [{ record: [PID_RECORD, forged.startsWith("not") ? 1 : 4242] as [number, number] }];
    const sys = new RecordingSys({ waitStatus: 5 << 8 }).scriptRecv(5, ready, ...records);
    if (forged.startsWith("not")) sys.failOn("isChild", 10);
    const ops = execPlan(execRecord(RUN_PLAN.filter((o) => o.phase !== "attach")), REQ, ALL_NS);
    await assert.rejects(
      execute(ops, { rootPath: "/run/micro/c1", terminal: false, stdin: false, enter: 60 }, sys),
      /malformed report \(8 bytes, step -7\)/,
    );
    const calls = sys.format();
    const killed = forged === "a second one" ? 5151 : 4242;
    assert.deepEqual(calls.filter((c) => /^(kill|waitpid)\(/.test(c)), [
      ...(forged === "a second one" ? ["waitpid(4242)"] : []),
      `kill(${killed}, 9)`,
      `waitpid(${killed})`,
    ]);
  });
}

Deno.test("foreignNamespaces: none for micro's own process", async () => {
  const { foreignNamespaces } = await import("../../core/exec/mod.ts");
  assert.deepEqual(foreignNamespaces(Deno.pid), []);
});

Deno.test("findContainer: by name, full id or unique prefix; one-line errors otherwise", async () => {
  const { findContainer, findRunning } = await import("../../core/exec/find.ts");
  const root = Deno.makeTempDirSync();
  try {
    const put = (name: string, containerId: string) => {
      Deno.mkdirSync(`${root}/${name}`);
      Deno.writeTextFileSync(
        `${root}/${name}/state.json`,
        JSON.stringify({ id: name, pid: 1, startTime: 1, image: null, created: "", containerId }),
      );
    };
    put("web", "abc123" + "0".repeat(58));
    put("db", "abd999" + "0".repeat(58));
    const uid = Deno.uid()!;
    assert.equal(findContainer("web", uid, root).name, "web");
    assert.equal(findContainer("abc1", uid, root).name, "web");
    assert.equal(findContainer("abd999" + "0".repeat(58), uid, root).name, "db");
    assert.throws(
      () => findContainer("ab", uid, root),
      /id prefix "ab" matches 2 containers: db \(abd999000000\), web \(abc123000000\)/,
    );
    assert.throws(() => findContainer("zzz", uid, root), /no such container: zzz/);
    assert.throws(() => findContainer("../etc", uid, root), /no such container/);
    // Its init is not running (no containerPid): not running, one line.
    assert.throws(() => findRunning("web", uid, root), /container "web" is not running/);
  } finally {
    Deno.removeSync(root, { recursive: true });
  }
});

Deno.test("waitReady: exec waits for a run's ready marker; not for a run without one", async () => {
  const { waitReady } = await import("../../core/exec/find.ts");
  const { openLibc } = await import("../../core/sys/libc.ts");
  const { processStartTime, READY_MARKER } = await import("../../core/state.ts");
  const sys = openLibc();
  const dir = Deno.makeTempDirSync();
  try {
    const state = {
      id: "x",
      pid: Deno.pid,
      startTime: 1,
      image: null,
      created: "",
      containerPid: Deno.pid,
      containerStartTime: processStartTime(Deno.pid),
    };
    // A micro before the marker: taken as it is.
    await waitReady({ name: "c", dir, state }, sys, 0);
    // Promised and not there: waits until it is.
    const found = { name: "c", dir, state: { ...state, readyMarker: true } };
    let done = false;
    const waiting = waitReady(found, sys, 10_000).then(() => done = true);
    await new Promise((r) => setTimeout(r, 60));
    assert.equal(done, false);
    Deno.writeTextFileSync(`${dir}/${READY_MARKER}`, "");
    await waiting;
    assert.equal(done, true);
    Deno.removeSync(`${dir}/${READY_MARKER}`);
    // Not there in time: one line.
    await assert.rejects(waitReady(found, sys, 50), /container "c" is still starting after 0.05 s/);
    // Its init gone meanwhile: not running.
    const gone = { ...found, state: { ...found.state, containerStartTime: 1 } };
    await assert.rejects(waitReady(gone, sys, 10_000), /container "c" is not running/);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});
