/** ipc: own System V IPC objects and POSIX message queues (with its own /dev/mqueue). */
import type { Plugin } from "../core/plugin.ts";
import { addNamespace, cloneOp } from "./_ns.ts";

export const ipc: Plugin = {
  name: "ipc",
  description: "own System V IPC and POSIX message queues, with /dev/mqueue",
  schema: { type: "object", fields: {} },
  configure(_o, spec) {
    addNamespace(spec, "ipc");
    spec.mounts.push({
      destination: "/dev/mqueue",
      type: "mqueue",
      source: "mqueue",
      options: ["nosuid", "nodev", "noexec"],
    });
  },
  plan: () => [cloneOp("ipc", "ipc")],
};
