/**
 * pid: the command is PID 1 of its own pid namespace; /proc shows only the container. With
 * `join` (`--pid container:NAME`) it joins a running micro container's pid namespace
 * instead, and its /proc shows that container's processes.
 */
import type { Plugin } from "../core/plugin.ts";
import { addNamespace, cloneOp, JOIN_SCHEMA, joinOp, joinProblems } from "./_ns.ts";

export const pid: Plugin<{ join?: string }> = {
  name: "pid",
  description: "own pid namespace: the command is PID 1 and sees only its own processes",
  schema: { type: "object", fields: { join: JOIN_SCHEMA } },
  configure(o, spec) {
    if (o.join) (spec.micro.join ??= {}).pid = o.join;
    else addNamespace(spec, "pid");
  },
  check: (spec) => joinProblems("pid", "pid", spec),
  plan: (spec) => spec.micro.join?.pid ? [joinOp("pid", "pid", spec)] : [cloneOp("pid", "pid")],
};
