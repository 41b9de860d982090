/** The cgroups section also takes the OCI runtime spec's `linux.resources` form. */
import assert from "node:assert/strict";
import { buildSpec, planRun } from "../../core/plan.ts";
import type { HostInfo } from "../../core/plugin.ts";
import { resolveProfile } from "../../core/profile.ts";
import { PLUGINS } from "../../plugins/mod.ts";
import { CGROUP_FACTS } from "./_host.ts";

const HOST: HostInfo = {
  arch: "x86_64",
  uid: 0,
  gid: 0,
  id: "0123456789ab",
  stateDir: "/run/micro/0123456789ab",
  containerDir: "/var/lib/micro/containers/0123456789ab",
  hostView: [],
  devices: ["null"],
  passwd: "root:x:0:0:root:/root:/bin/sh\n",
  group: "root:x:0:\n",
  sourceKinds: {},
  image: "dir",
  files: {},
  capLastCap: 40,
  lsm: { apparmor: false, selinux: false, landlock: 0 },
  ...CGROUP_FACTS,
};

function writes(layer: Record<string, unknown>): string[] {
  const { profile } = resolveProfile([], layer, PLUGINS);
  const input = { image: "/img", args: ["true"], terminal: false, stdin: false };
  const spec = buildSpec(input, profile, PLUGINS);
  return planRun(spec, HOST, PLUGINS).flatMap((o) =>
    o.kind === "cgroup-write"
      ? [`${o.args.path.replace(/.*\/micro\/[0-9a-f]+\//, "")}=${o.args.value}`]
      : []
  );
}

Deno.test("cgroups resources in the OCI form become the same files as the flags", () => {
  const w = writes({
    cgroups: {
      resources: {
        cpu: { quota: 50000, period: 100000, shares: 512 },
        memory: { limit: 67108864 },
        pids: { limit: 42 },
        blockIO: { throttleWriteBpsDevice: [{ major: 7, minor: 3, rate: 1048576 }] },
        devices: [{ allow: true, type: "b", major: 7, minor: 3, access: "rw" }],
      },
    },
  });
  for (
    const want of [
      "cpu.cfs_period_us=100000",
      "cpu.cfs_quota_us=50000",
      "cpu.shares=512",
      "memory.limit_in_bytes=67108864",
      "pids.max=42",
      "blkio.throttle.write_bps_device=7:3 1048576",
      "devices.allow=b 7:3 rwm", // m comes from the default "b *:* m"
    ]
  ) assert.ok(w.includes(want), `${want} in ${w.join(" ")}`);
});

Deno.test("the OCI form wins over the Docker-style option for the same limit", () => {
  const w = writes({ cgroups: { memory: "32m", resources: { memory: { limit: 67108864 } } } });
  assert.ok(w.includes("memory.limit_in_bytes=67108864"), w.join(" "));
  assert.ok(!w.includes("memory.limit_in_bytes=33554432"), w.join(" "));
});

Deno.test("an OCI resources key micro does not know is a profile error with its path", () => {
  assert.throws(
    () => resolveProfile([], { cgroups: { resources: { memory: { kernel: 1 } } } }, PLUGINS),
    (e: Error) => /cgroups\.resources\.memory\.kernel.*unknown key/.test(e.message),
  );
});

Deno.test("cgroups: micro's own parents (micro; micro-oci where the OCI runtime chose it) go once empty; a user's stays", () => {
  const owned = (cgroups: Record<string, unknown>, own = false) => {
    const { profile } = resolveProfile([], { cgroups }, PLUGINS);
    const input = { image: "/img", args: ["true"], terminal: false, stdin: false };
    const spec = buildSpec(input, profile, PLUGINS);
    if (own) spec.micro.cgroup!.ownParent = true;
    const levels = planRun(spec, HOST, PLUGINS).flatMap((o) =>
      o.kind === "cgroup-create" && o.args.shared ? [o.args.owned] : []
    );
    assert.ok(levels.length > 0);
    return [...new Set(levels)];
  };
  assert.deepEqual(owned({}), [true]);
  assert.deepEqual(owned({ parent: "micro-oci" }, true), [true]);
  // Named by the user (--cgroup-parent, a config's cgroupsPath): left, even as micro-oci.
  assert.deepEqual(owned({ parent: "micro-oci" }), [false]);
  assert.deepEqual(owned({ parent: "system.slice" }), [false]);
});
