/** pid: the command is PID 1 of its own pid namespace; /proc shows only the container. */
import type { Plugin } from "../core/plugin.ts";
import { addNamespace, cloneOp } from "./_ns.ts";

export const pid: Plugin = {
  name: "pid",
  description: "own pid namespace: the command is PID 1 and sees only its own processes",
  schema: { type: "object", fields: {} },
  configure: (_o, spec) => addNamespace(spec, "pid"),
  plan: () => [cloneOp("pid", "pid")],
};
