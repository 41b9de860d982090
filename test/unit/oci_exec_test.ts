/** `micro oci exec`'s flags that change the plan: --cgroup (runc's sub-cgroup form). */
import assert from "node:assert/strict";
import { op } from "../../core/ops.ts";
import { subCgroups } from "../../core/oci/exec.ts";

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
