/** net: `none` is an own network namespace holding only `lo`, up; `host` shares the host's. */
import { type Op, op } from "../core/ops.ts";
import type { Plugin } from "../core/plugin.ts";
import { addNamespace, cloneOp } from "./_ns.ts";

export const net: Plugin<{ mode?: "none" | "host" }> = {
  name: "net",
  description: "network: none (own namespace, only lo, up) or host",
  schema: {
    type: "object",
    fields: { mode: { type: "string", enum: ["none", "host"], doc: "none or host" } },
  },
  configure(o, spec) {
    const mode = o.mode ?? "none";
    spec.micro.network = mode;
    if (mode === "none") addNamespace(spec, "network");
  },
  plan(spec): Op[] {
    if (spec.micro.network !== "none") return [];
    return [cloneOp("net", "network"), op("identity", "net", "loopback-up", {})];
  },
};
