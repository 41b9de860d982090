/**
 * runc's flags that change the plan (exec --cgroup's sub-cgroups, --no-pivot), and the lock
 * between the verbs on one container.
 */
import assert from "node:assert/strict";
import { op } from "../../core/ops.ts";
import { subCgroups } from "../../core/oci/exec.ts";
import { configToSpec, parseConfig } from "../../core/oci/config.ts";
import { defaultConfig } from "../../core/oci/default.ts";
import { mount as mountPlugin } from "../../plugins/mount.ts";
import type { HostInfo } from "../../core/plugin.ts";
import { lockContainer, makeLockedDir, removeStaleNew } from "../../core/oci/state.ts";
import { openLibc } from "../../core/sys/libc.ts";
import { C, cstr } from "../../core/sys/mod.ts";

const V1 = [
  op("attach", "cgroups", "cgroup-join", { path: "/sys/fs/cgroup/cpu,cpuacct/micro-oci/c1" }),
  op("attach", "cgroups", "cgroup-join", { path: "/sys/fs/cgroup/memory/micro-oci/c1" }),
  op("restrict", "caps", "no-new-privs", {}),
];
const paths = (ops: ReturnType<typeof subCgroups>) =>
  ops.map((o) => o.kind === "cgroup-join" ? o.args.path : o.kind);
const all = { isDir: () => true, v1: true };

Deno.test("exec --cgroup PATH joins PATH below the container's cgroup in every hierarchy", () => {
  assert.deepEqual(paths(subCgroups(V1, ["a/b"], all)), [
    "/sys/fs/cgroup/cpu,cpuacct/micro-oci/c1/a/b",
    "/sys/fs/cgroup/memory/micro-oci/c1/a/b",
    "no-new-privs",
  ]);
  assert.equal(subCgroups(V1, [], all), V1, "no flag: the plan as it was");
});

Deno.test("exec --cgroup CONTROLLER:PATH (v1) moves that hierarchy's join only", () => {
  assert.deepEqual(paths(subCgroups(V1, ["cpuacct:x"], all)), [
    "/sys/fs/cgroup/cpu,cpuacct/micro-oci/c1/x",
    "/sys/fs/cgroup/memory/micro-oci/c1",
    "no-new-privs",
  ]);
  assert.throws(() => subCgroups(V1, ["pids:x"], all), /the container has no "pids" cgroup/);
});

Deno.test("exec --cgroup refuses a path leaving the cgroup, a missing one, a v2 controller", () => {
  for (const bad of ["..", "a/../..", "", "a b"]) {
    assert.throws(() => subCgroups(V1, [bad], all), /expected \[CONTROLLER:\]PATH/, bad);
  }
  const none = { isDir: (p: string) => !p.includes("/memory/"), v1: true };
  assert.throws(
    () => subCgroups(V1, ["x"], none),
    /\/sys\/fs\/cgroup\/memory\/micro-oci\/c1\/x does not exist/,
  );
  assert.throws(() => subCgroups(V1, ["memory:x"], { ...all, v1: false }), /cgroup v2 has no/);
});

Deno.test("--no-pivot: refused while the container keeps CAP_SYS_CHROOT or CAP_SYS_ADMIN", () => {
  const spec = (caps?: string[]) => {
    // deno-lint-ignore no-explicit-any
    const c = defaultConfig(false) as Record<string, any>;
    c.process.terminal = false;
    if (caps) c.process.capabilities.bounding = caps;
    else delete c.process.capabilities;
    const t = configToSpec(parseConfig(JSON.stringify(c)), "/b", "id1");
    t.spec.micro.noPivot = true;
    return t.spec;
  };
  const check = (s: ReturnType<typeof spec>) =>
    (mountPlugin.check!(s, {} as HostInfo) ?? []).map((e) => e.line());
  assert.deepEqual(check(spec()).length, 1, "no capabilities section: all are kept");
  assert.deepEqual(check(spec(["CAP_KILL"])), []);
  const [line] = check(spec(["CAP_KILL", "CAP_SYS_CHROOT"]));
  assert.match(line, /--no-pivot: the container keeps CAP_SYS_CHROOT, which escape a chroot/);
  const s = spec(["CAP_SYS_ADMIN"]);
  s.micro.noPivot = false;
  assert.deepEqual(check(s), [], "only with --no-pivot");
});

Deno.test("oci lock: create's directory appears locked; a second create of the id gets -1", () => {
  const sys = openLibc();
  const root = Deno.makeTempDirSync();
  try {
    const fd = makeLockedDir(root, "c1", sys);
    assert.ok(fd >= 0);
    assert.deepEqual([...Deno.readDirSync(root)].map((e) => e.name), ["c1"], "no temp name left");
    // Held: another open file description cannot take it.
    const other = sys.open(cstr(`${root}/c1`), C.O_RDONLY | C.O_DIRECTORY | C.O_CLOEXEC, 0);
    assert.equal(sys.flock(other, C.LOCK_EX | C.LOCK_NB), -11);
    assert.equal(makeLockedDir(root, "c1", sys), -1);
    sys.close(fd);
    assert.equal(sys.flock(other, C.LOCK_EX | C.LOCK_NB), 0, "free once create is done");
    sys.close(other);
    const again = lockContainer(root, "c1", sys);
    assert.ok(again >= 0);
    sys.close(again);
    assert.equal(lockContainer(root, "c2", sys), -1, "no such container: nothing to lock");
  } finally {
    Deno.removeSync(root, { recursive: true });
  }
});

Deno.test("oci lock: a lock taken on a directory since removed is dropped, not returned", () => {
  const sys = openLibc();
  const root = Deno.makeTempDirSync();
  try {
    Deno.mkdirSync(`${root}/c1`);
    const held = lockContainer(root, "c1", sys);
    // What a waiter sees once delete is done: its directory gone, then another made.
    Deno.removeSync(`${root}/c1`);
    assert.equal(lockContainer(root, "c1", sys), -1);
    Deno.mkdirSync(`${root}/c1`);
    const fresh = lockContainer(root, "c1", sys);
    assert.ok(fresh >= 0, "the new directory is a different file: locked afresh");
    sys.close(fresh);
    sys.close(held);
    // A create killed before its rename: an old empty temp dir goes at the next create.
    Deno.mkdirSync(`${root}/.new-x`);
    Deno.utimeSync(`${root}/.new-x`, new Date(0), new Date(0));
    sys.close(makeLockedDir(root, "c2", sys));
    assert.deepEqual([...Deno.readDirSync(root)].map((e) => e.name).sort(), ["c1", "c2"]);
  } finally {
    Deno.removeSync(root, { recursive: true });
  }
});

Deno.test("a create killed before its rename: its .new-PID- dir goes at once once PID is gone", async () => {
  const root = Deno.makeTempDirSync();
  try {
    const dead = new Deno.Command("true").spawn();
    await dead.status; // reaped: that pid is gone (reused meanwhile, the dir would stay a minute)
    const names = [
      `.new-${dead.pid}-aaaa`,
      `.new-${Deno.pid}-bbbb`,
      ".new-cccc",
      `.new-${dead.pid}-dddd`,
    ];
    for (const n of names) Deno.mkdirSync(`${root}/${n}`);
    Deno.writeTextFileSync(`${root}/.new-${dead.pid}-dddd/x`, ""); // not empty: not create's leftover
    removeStaleNew(root);
    assert.deepEqual(
      [...Deno.readDirSync(root)].map((e) => e.name).sort(),
      [`.new-${Deno.pid}-bbbb`, `.new-${dead.pid}-dddd`, ".new-cccc"].sort(),
      "the dead creator's is gone; a live one's, an old-style recent one and a full one stay",
    );
  } finally {
    Deno.removeSync(root, { recursive: true });
  }
});
