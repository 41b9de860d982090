/**
 * uts: own hostname: `--hostname`, else the container's short id as Docker gives it (not its
 * name, which may be longer than a hostname can be).
 */
import { op } from "../core/ops.ts";
import type { Plugin } from "../core/plugin.ts";
import { addNamespace, cloneOp } from "./_ns.ts";

/** At most HOST_NAME_MAX (64) bytes: sethostname(2) refuses more with EINVAL. */
const HOSTNAME = /^[A-Za-z0-9]([A-Za-z0-9.-]{0,63})$/;

export const uts: Plugin<{ hostname?: string }> = {
  name: "uts",
  description: "own hostname and domain name (--hostname, else the short container id)",
  schema: {
    type: "object",
    fields: {
      hostname: {
        type: "string",
        doc: "the container's hostname",
        check: (v) =>
          v === "" || HOSTNAME.test(v)
            ? undefined
            : "a hostname is 1 to 64 letters, digits, dots and dashes",
      },
    },
  },
  configure(o, spec) {
    addNamespace(spec, "uts");
    if (o.hostname) spec.hostname = o.hostname;
  },
  plan: (spec, host) => [
    cloneOp("uts", "uts"),
    op("identity", "uts", "sethostname", { name: spec.hostname || host.hostname || host.id }),
  ],
};
