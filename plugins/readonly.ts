/**
 * readonly: the root is remounted read-only after pivot_root (with no CAP_SYS_ADMIN and
 * mount refused by seccomp, it cannot be made writable again from inside), with empty
 * tmpfs mounts where programs expect to write, writable by every user (mode 1777). /dev stays as the mount plugin made it.
 */
import type { Plugin } from "../core/plugin.ts";
import { parseTmpfs } from "../core/mounts.ts";

export interface ReadonlyOptions {
  tmpfs?: string[];
}

export const DEFAULT_WRITABLE = ["/tmp", "/run"];

/**
 * The writable places' options: 1777 (as podman's read-only tmpfs and the kernel's default)
 * so that a container user who is not root may write them (nginx's pid file in /run);
 * programs may run from them, as podman's, unless the entry says noexec.
 */
export const WRITABLE_DEFAULTS = ["nosuid", "nodev"];

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
          check: (v) => {
            const m = parseTmpfs(v, WRITABLE_DEFAULTS);
            return typeof m === "string" ? m : undefined;
          },
        },
        doc: "PATH[:OPTIONS]: writable tmpfs mounts on the read-only root (--tmpfs options)",
      },
    },
  },
  configure(o, spec) {
    spec.root.readonly = true;
    for (const t of o.tmpfs ?? DEFAULT_WRITABLE) {
      const m = parseTmpfs(t, WRITABLE_DEFAULTS);
      if (typeof m === "string") continue;
      if (spec.mounts.some((x) => x.destination === m.destination)) continue;
      spec.mounts.push(m);
    }
  },
  // The mount plugin remounts the root and mounts the tmpfs listed in the spec.
  plan: () => [],
};
