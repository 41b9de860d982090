/**
 * cgroupns: the container sees its own cgroup as the root of /proc/self/cgroup. The child
 * unshares it after the parent has put it in its cgroup (not at clone time, when it is
 * still in micro's), so that cgroup becomes the namespace's root.
 */
import type { Plugin } from "../core/plugin.ts";
import { op } from "../core/ops.ts";
import { addNamespace } from "./_ns.ts";

export const cgroupns: Plugin = {
  name: "cgroupns",
  description: "own cgroup namespace: the container's cgroup looks like the root",
  schema: { type: "object", fields: {} },
  configure: (_o, spec) => addNamespace(spec, "cgroup"),
  plan: () => [op("rootfs", "cgroupns", "unshare", { flag: "CLONE_NEWCGROUP" })],
};
