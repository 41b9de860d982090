/** cgroupns: the container sees its own cgroup as the root of /proc/self/cgroup. */
import type { Plugin } from "../core/plugin.ts";
import { addNamespace, cloneOp } from "./_ns.ts";

export const cgroupns: Plugin = {
  name: "cgroupns",
  description: "own cgroup namespace: the container's cgroup looks like the root",
  schema: { type: "object", fields: {} },
  configure: (_o, spec) => addNamespace(spec, "cgroup"),
  plan: () => [cloneOp("cgroupns", "cgroup")],
};
