/** Host facts for plans in unit tests: a cgroup v1 host (like the build hosts) by default. */
import type { HostInfo } from "../../core/plugin.ts";

export const CGROUP_V1: HostInfo["cgroup"] = {
  mode: "hybrid",
  v1: Object.fromEntries(
    ["cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids"].map((c) => [
      c,
      `/sys/fs/cgroup/${c}`,
    ]),
  ),
  v2: { mount: "/sys/fs/cgroup/unified", controllers: [] },
  base: "",
  writable: true,
};

/** The cgroup fields of HostInfo, for fixtures that spell out the rest themselves. */
export const CGROUP_FACTS = {
  cgroup: CGROUP_V1,
  cpus: "0-1",
  mems: "0",
  swapAccounting: true,
  deviceNodes: {},
} satisfies Partial<HostInfo>;
