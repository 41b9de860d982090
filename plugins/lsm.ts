/**
 * lsm: Linux security modules. AppArmor and SELinux set the label the command gets at
 * exec (written to /proc/thread-self/attr before execve) and SELinux labels the
 * container's own mounts; Landlock confines the container's file system access to listed
 * paths, with the ABI version negotiated with the kernel. A module the host lacks is an
 * error, unless the profile marks it optional: then the run goes on and `micro plan`
 * shows it as skipped.
 */
import { MicroError } from "../core/errors.ts";
import { type Op, op } from "../core/ops.ts";
import type { HostInfo, Plugin } from "../core/plugin.ts";
import type { Spec } from "../core/spec.ts";

export type Access = "read" | "write" | "execute";

export interface LsmOptions {
  apparmor?: { profile: string; optional?: boolean };
  selinux?: {
    user?: string;
    role?: string;
    type?: string;
    level?: string;
    optional?: boolean;
  };
  landlock?: { paths: { path: string; access: Access[] }[]; mounts?: boolean; optional?: boolean };
}

const LABEL_PART = /^[A-Za-z0-9_.:,-]+$/;
const labelPart = {
  type: "string",
  check: (v: string) => LABEL_PART.test(v) ? undefined : "not a valid SELinux label part",
} as const;

/** Docker's `label=type:T,level:L` parts over the container default. */
export function selinuxLabels(o: NonNullable<LsmOptions["selinux"]>) {
  const user = o.user ?? "system_u";
  const level = o.level ?? "s0";
  return {
    process: `${user}:${o.role ?? "system_r"}:${o.type ?? "container_t"}:${level}`,
    mount: `${user}:object_r:container_file_t:${level}`,
  };
}

/** Volumes as their mode allows (binds keep execute), tmpfs read and write only. */
function mountRules(spec: Spec): { path: string; access: Access[] }[] {
  return spec.mounts.filter((m) => ["bind", "tmpfs", "volume"].includes(m.type)).map((m) => ({
    path: m.destination,
    access: m.type === "tmpfs"
      ? ["read", "write"]
      : m.options.includes("ro")
      ? ["read", "execute"]
      : ["read", "write", "execute"],
  }));
}

/** One rule per path, with the rights of every rule naming it. */
function mergeRules(rules: { path: string; access: Access[] }[]) {
  const by = new Map<string, Set<Access>>();
  for (const r of rules) {
    const set = by.get(r.path) ?? new Set();
    r.access.forEach((a) => set.add(a));
    by.set(r.path, set);
  }
  const order: Access[] = ["read", "write", "execute"];
  return [...by].map(([path, set]) => ({ path, access: order.filter((a) => set.has(a)) }));
}

export const lsm: Plugin<LsmOptions> = {
  name: "lsm",
  description: "AppArmor or SELinux exec label, and Landlock file system confinement",
  schema: {
    type: "object",
    fields: {
      apparmor: {
        type: "object",
        doc: "AppArmor profile for the command",
        fields: {
          profile: {
            type: "string",
            check: (v) => /^[A-Za-z0-9_./-]+$/.test(v) ? undefined : "not a profile name",
          },
          optional: { type: "boolean" },
        },
      },
      selinux: {
        type: "object",
        doc: "SELinux label parts (Docker's label=type:...,level:...)",
        fields: {
          user: labelPart,
          role: labelPart,
          type: labelPart,
          level: labelPart,
          optional: { type: "boolean" },
        },
      },
      landlock: {
        type: "object",
        doc: "paths the container may use, with read, write and execute rights",
        fields: {
          paths: {
            type: "list",
            items: {
              type: "object",
              fields: {
                path: {
                  type: "string",
                  check: (v) => v.startsWith("/") ? undefined : "must be an absolute path",
                },
                access: {
                  type: "list",
                  items: { type: "string", enum: ["read", "write", "execute"] },
                },
              },
            },
          },
          mounts: {
            type: "boolean",
            doc: "also allow the container's volumes and tmpfs mounts (default true)",
          },
          optional: { type: "boolean" },
        },
      },
    },
  },
  configure(o, spec) {
    if (o.apparmor) spec.process.apparmorProfile = o.apparmor.profile;
    if (o.selinux) {
      const l = selinuxLabels(o.selinux);
      spec.process.selinuxLabel = l.process;
      spec.linux.mountLabel = l.mount;
    }
    if (o.landlock) {
      spec.micro.landlock = o.landlock.paths.map((p) => ({ path: p.path, access: p.access ?? [] }));
      spec.micro.landlockMounts = o.landlock.mounts ?? true;
      // An unprivileged process may restrict itself only under no_new_privs.
      spec.process.noNewPrivileges = true;
    }
    spec.micro.lsmOptional = {
      apparmor: o.apparmor?.optional ?? false,
      selinux: o.selinux?.optional ?? false,
      landlock: o.landlock?.optional ?? false,
    };
  },
  check(spec, host) {
    const errors: MicroError[] = [];
    const opt = spec.micro.lsmOptional;
    const need = (what: string, present: boolean, optional: boolean | undefined, hint: string) => {
      if (!present && !optional) {
        errors.push(
          new MicroError(`the profile requires ${what}, which this host does not have`, {
            phase: "check",
            plugin: "lsm",
            hint,
          }),
        );
      }
    };
    if (spec.process.apparmorProfile) {
      need(
        "AppArmor",
        host.lsm.apparmor,
        opt?.apparmor,
        "boot with apparmor=1, or mark it optional",
      );
    }
    if (spec.process.selinuxLabel) {
      need("SELinux", host.lsm.selinux, opt?.selinux, "enable SELinux, or mark it optional");
    }
    if (spec.micro.landlock) {
      need(
        "Landlock",
        host.lsm.landlock > 0,
        opt?.landlock,
        "needs Linux 5.13+ with lsm=landlock, or mark it optional",
      );
    }
    return errors;
  },
  plan(spec: Spec, host: HostInfo): Op[] {
    const ops: Op[] = [];
    const skipped = (what: string, reason: string) =>
      ops.push(op("restrict", "lsm", "skipped", { what, reason }));
    if (spec.process.apparmorProfile) {
      if (host.lsm.apparmor) {
        ops.push(op("restrict", "lsm", "lsm-label", {
          file: `/proc/thread-self/attr/${host.lsm.apparmorAttr ?? "apparmor/exec"}`,
          value: `exec ${spec.process.apparmorProfile}`,
        }));
      } else skipped("apparmor", "AppArmor is not enabled on this host (optional)");
    }
    if (spec.process.selinuxLabel) {
      if (host.lsm.selinux) {
        ops.push(op("restrict", "lsm", "lsm-label", {
          file: "/proc/thread-self/attr/exec",
          value: spec.process.selinuxLabel,
        }));
      } else skipped("selinux", "SELinux is not enabled on this host (optional)");
    }
    if (spec.micro.landlock) {
      if (host.lsm.landlock > 0) {
        ops.push(
          op("restrict", "lsm", "landlock", {
            abi: host.lsm.landlock,
            rules: mergeRules([
              ...spec.micro.landlock,
              ...(spec.micro.landlockMounts ? mountRules(spec) : []),
            ]),
          }),
        );
      } else skipped("landlock", "Landlock is not available on this host (optional)");
    }
    return ops;
  },
};
