/** runc's flags that change the plan: exec --cgroup (the sub-cgroup form), --no-pivot. */
import assert from "node:assert/strict";
import { op } from "../../core/ops.ts";
import { subCgroups } from "../../core/oci/exec.ts";
import { configToSpec, parseConfig } from "../../core/oci/config.ts";
import { defaultConfig } from "../../core/oci/default.ts";
import { mount as mountPlugin } from "../../plugins/mount.ts";
import type { HostInfo } from "../../core/plugin.ts";

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
