/**
 * sysctl: kernel parameters of the container's own namespaces (OCI `linux.sysctl`,
 * `--sysctl`). Only namespaced ones are accepted, by runc's rule (its validator's
 * `sysctl`): IPC ones with an ipc namespace, `net.*` with a network namespace,
 * `kernel.domainname` with a uts namespace; anything else would change the host. The mount
 * plugin writes them beneath the container's /proc mount before its read-only paths.
 */
import { MicroError } from "../core/errors.ts";
import type { Plugin } from "../core/plugin.ts";
import { hasNamespace, type NamespaceType, type Spec } from "../core/spec.ts";

/** runc's list of IPC sysctls (plus `fs.mqueue.*`). */
const IPC_SYSCTLS = new Set([
  "kernel.msgmax",
  "kernel.msgmnb",
  "kernel.msgmni",
  "kernel.sem",
  "kernel.shmall",
  "kernel.shmmax",
  "kernel.shmmni",
  "kernel.shm_rmid_forced",
]);

const KEY = /^[a-z0-9_]+(\.[a-z0-9_-]+)+$/i;

/** The namespace a sysctl belongs to, or why it is refused. */
export function sysctlNamespace(key: string): NamespaceType | { refused: string } {
  if (IPC_SYSCTLS.has(key) || key.startsWith("fs.mqueue.")) return "ipc";
  if (key.startsWith("net.")) return "network";
  if (key === "kernel.domainname") return "uts";
  if (key === "kernel.hostname") return { refused: "use --hostname instead" };
  return { refused: "it is not in a namespace of the container's: it would change the host" };
}

const NS_FLAG: Partial<Record<NamespaceType, string>> = {
  ipc: "an ipc namespace of its own (not --ipc host)",
  network: "a network namespace of its own (not --network host)",
  uts: "a uts namespace of its own (not --uts host)",
};

/** Every sysctl the container's namespaces cannot take: one error each. */
export function sysctlProblems(spec: Spec): MicroError[] {
  const errors: MicroError[] = [];
  for (const key of Object.keys(spec.linux.sysctl ?? {})) {
    const ns = sysctlNamespace(key);
    const why = typeof ns === "object"
      ? ns.refused
      : hasNamespace(spec, ns)
      ? undefined
      : `it needs ${NS_FLAG[ns]}`;
    if (why) {
      errors.push(
        new MicroError(`--sysctl ${key}: not allowed: ${why}`, {
          phase: "check",
          plugin: "sysctl",
          hint: "only namespaced sysctls: kernel.shm*, kernel.msg*, kernel.sem, fs.mqueue.*, " +
            "net.*, kernel.domainname",
        }),
      );
    }
  }
  if (Object.keys(spec.linux.sysctl ?? {}).length && !spec.micro.plugins.includes("mount")) {
    errors.push(
      new MicroError("--sysctl needs the mount plugin: sysctls are written beneath its /proc", {
        phase: "check",
        plugin: "sysctl",
      }),
    );
  }
  return errors;
}

export const sysctl: Plugin<{ values?: Record<string, string | number> }> = {
  name: "sysctl",
  description: "namespaced kernel parameters (kernel.shm*, net.*, ...), set before the command",
  schema: {
    type: "object",
    fields: {
      values: {
        type: "map",
        doc: "KEY: VALUE, e.g. net.ipv4.ip_forward: 1",
        keyCheck: (k) =>
          KEY.test(k) ? undefined : "expected a sysctl name like net.ipv4.ip_forward",
        values: { type: "oneOf", options: [{ type: "string" }, { type: "integer" }] },
      },
    },
  },
  configure(o, spec) {
    const v = Object.entries(o.values ?? {});
    if (v.length) spec.linux.sysctl = Object.fromEntries(v.map(([k, x]) => [k, String(x)]));
  },
  check: sysctlProblems,
  // Planned by the mount plugin, right after /proc is mounted (see there).
  plan: () => [],
};
