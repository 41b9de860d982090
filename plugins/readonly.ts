/**
 * readonly: the root is remounted read-only after pivot_root (with no CAP_SYS_ADMIN and
 * mount refused by seccomp, it cannot be made writable again from inside), with empty
 * tmpfs mounts where programs expect to write. /dev stays as the mount plugin made it.
 */
import type { Plugin } from "../core/plugin.ts";
import { cleanPath } from "../core/paths.ts";

export interface ReadonlyOptions {
  tmpfs?: string[];
}

export const DEFAULT_WRITABLE = ["/tmp", "/run"];

export const readonly: Plugin<ReadonlyOptions> = {
  name: "readonly",
  description: "read-only root, with tmpfs on /tmp and /run (configurable)",
  schema: {
    type: "object",
    fields: {
      tmpfs: {
        type: "list",
        items: {
          type: "string",
          check: (v) =>
            v.startsWith("/") && !v.split("/").includes("..") && cleanPath(v) !== "/"
              ? undefined
              : "must be an absolute path below / without '..'",
        },
        doc: "writable tmpfs mounts on the read-only root",
      },
    },
  },
  configure(o, spec) {
    spec.root.readonly = true;
    for (const t of (o.tmpfs ?? DEFAULT_WRITABLE).map(cleanPath)) {
      if (spec.mounts.some((m) => m.destination === t)) continue;
      spec.mounts.push({
        destination: t,
        type: "tmpfs",
        source: "tmpfs",
        options: ["nosuid", "nodev", t === "/tmp" ? "mode=1777" : "mode=755"],
      });
    }
  },
  // The mount plugin remounts the root and mounts the tmpfs listed in the spec.
  plan: () => [],
};
