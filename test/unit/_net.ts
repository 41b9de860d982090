/**
 * The network unit tests' one fixture (cni_test, bandwidth_test, network_create_test): a
 * root host with micro's own CNI list, and a spec built from a CLI-like layer.
 */
import { microConfList } from "../../core/cni/config.ts";
import { buildSpec } from "../../core/plan.ts";
import type { HostInfo, NetFacts } from "../../core/plugin.ts";
import { resolveProfile } from "../../core/profile.ts";
import type { Spec } from "../../core/spec.ts";
import { PLUGINS } from "../../plugins/mod.ts";
import { CGROUP_FACTS } from "./_host.ts";

/** micro's default list, as the probe makes it for 10.88.0.0/16. */
export function microList(): ReturnType<typeof microConfList> {
  return microConfList("10.88.0.0/16", "10.88.0.1", "/run/micro/.networks");
}

/** A root host whose network facts are micro's own network's, with `net` over them. */
export function netHost(over: Partial<HostInfo> = {}, net: Partial<NetFacts> = {}): HostInfo {
  return {
    arch: "x86_64",
    uid: 0,
    gid: 0,
    id: "web",
    stateDir: "/run/micro/web",
    containerDir: "/var/lib/micro/containers/web",
    hostView: [],
    devices: [],
    passwd: "root:x:0:0::/root:/bin/sh\n",
    group: "root:x:0:\n",
    sourceKinds: {},
    image: "dir",
    files: {},
    capLastCap: 40,
    lsm: { apparmor: false, selinux: false, landlock: 0 },
    ...CGROUP_FACTS,
    net: {
      cniPath: ["/usr/lib/cni"],
      missing: [],
      config: JSON.stringify(microList()),
      resolv: "nameserver 192.0.2.53\n",
      resolvUpstream: "",
      ...net,
    },
    ...over,
  };
}

/** The spec of `micro run` with these plugin options (a profile layer) and profiles. */
export function netSpec(layer: Record<string, unknown> = {}, profiles: string[] = []): Spec {
  const { profile } = resolveProfile(profiles, layer, PLUGINS);
  return buildSpec(
    { image: "/images/busybox", args: ["true"], terminal: false, stdin: false },
    profile,
    PLUGINS,
  );
}
