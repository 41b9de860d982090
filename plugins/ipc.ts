/**
 * ipc: own System V IPC objects and POSIX message queues (with its own /dev/mqueue). With
 * `join` (`--ipc container:NAME`) those of a running micro container instead.
 */
import type { Plugin } from "../core/plugin.ts";
import { addNamespace, cloneOp, JOIN_SCHEMA, joinOp, joinProblems } from "./_ns.ts";

export const ipc: Plugin<{ join?: string }> = {
  name: "ipc",
  description: "own System V IPC and POSIX message queues, with /dev/mqueue",
  schema: { type: "object", fields: { join: JOIN_SCHEMA } },
  configure(o, spec) {
    if (o.join) (spec.micro.join ??= {}).ipc = o.join;
    else addNamespace(spec, "ipc");
    spec.mounts.push({
      destination: "/dev/mqueue",
      type: "mqueue",
      source: "mqueue",
      options: ["nosuid", "nodev", "noexec"],
    });
  },
  check: (spec) => joinProblems("ipc", "ipc", spec),
  plan: (spec) => spec.micro.join?.ipc ? [joinOp("ipc", "ipc", spec)] : [cloneOp("ipc", "ipc")],
};
