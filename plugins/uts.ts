/** uts: own hostname; a short random one (the run id) unless `--hostname` names one. */
import { op } from "../core/ops.ts";
import type { Plugin } from "../core/plugin.ts";
import { addNamespace, cloneOp } from "./_ns.ts";

const HOSTNAME = /^[A-Za-z0-9]([A-Za-z0-9.-]{0,62})$/;

export const uts: Plugin<{ hostname?: string }> = {
  name: "uts",
  description: "own hostname and domain name (--hostname, else the run id)",
  schema: {
    type: "object",
    fields: {
      hostname: {
        type: "string",
        doc: "the container's hostname",
        check: (v) =>
          v === "" || HOSTNAME.test(v)
            ? undefined
            : "a hostname is 1 to 63 letters, digits, dots and dashes",
      },
    },
  },
  configure(o, spec) {
    addNamespace(spec, "uts");
    if (o.hostname) spec.hostname = o.hostname;
  },
  plan: (spec, host) => [
    cloneOp("uts", "uts"),
    op("identity", "uts", "sethostname", { name: spec.hostname || host.id }),
  ],
};
