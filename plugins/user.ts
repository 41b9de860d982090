/**
 * user: root in the container is an unprivileged uid on the host. As root, the range comes
 * from /etc/subuid and /etc/subgid (account `micro`) or the default below. A non-root
 * caller with ranges of its own there and newuidmap/newgidmap installed gets podman's map
 * (root is the caller, 1..size its subordinate ids, written by the helpers); otherwise it
 * maps only its own uid and gid, with one warning.
 */
import { mapText, runRootlessMaps, singleIdWarning } from "../core/idmap.ts";
import { type Op, op } from "../core/ops.ts";
import type { HostInfo, Plugin } from "../core/plugin.ts";
import type { IdMapping, Spec } from "../core/spec.ts";
import { addNamespace, cloneOp } from "./_ns.ts";

/** Host ids 1000000000..1000065535: far above what account tools hand out. */
export const DEFAULT_RANGE = { start: 1_000_000_000, count: 65536 };

export interface UserOptions {
  size?: number;
}

export function idMaps(
  spec: Spec,
  host: HostInfo,
  size: number,
): {
  uid: IdMapping[];
  gid: IdMapping[];
  rootless: boolean;
  helpers?: { newuidmap: string; newgidmap: string };
  warning?: string;
} {
  if (spec.linux.uidMappings.length) {
    return { uid: spec.linux.uidMappings, gid: spec.linux.gidMappings, rootless: host.uid !== 0 };
  }
  if (host.uid !== 0) {
    const maps = runRootlessMaps({ ...spec, micro: { ...spec.micro, userSize: size } }, host);
    if (maps && !("reason" in maps)) return { ...maps, rootless: true };
    return {
      uid: [{ containerID: 0, hostID: host.uid, size: 1 }],
      gid: [{ containerID: 0, hostID: host.gid, size: 1 }],
      rootless: true,
      warning: maps && "reason" in maps ? singleIdWarning(maps.reason) : undefined,
    };
  }
  const u = host.subuid ?? DEFAULT_RANGE;
  const g = host.subgid ?? DEFAULT_RANGE;
  return {
    uid: [{ containerID: 0, hostID: u.start, size: Math.min(size, u.count) }],
    gid: [{ containerID: 0, hostID: g.start, size: Math.min(size, g.count) }],
    rootless: false,
  };
}

const text = (m: IdMapping[]) => m.map((x) => `${x.containerID} ${x.hostID} ${x.size}\n`).join("");

export const user: Plugin<UserOptions> = {
  name: "user",
  description: "own user namespace: container root is an unprivileged host uid",
  schema: {
    type: "object",
    fields: {
      size: {
        type: "integer",
        min: 1,
        max: 4294967295,
        doc: "ids to map (as root; rootless: above root, from your subordinate ids)",
      },
    },
  },
  configure(o, spec) {
    addNamespace(spec, "user");
    spec.micro.userSize = o.size ?? DEFAULT_RANGE.count;
  },
  plan(spec, host): Op[] {
    const maps = idMaps(spec, host, spec.micro.userSize ?? DEFAULT_RANGE.count);
    const ops: Op[] = [cloneOp("user", "user")];
    if (maps.warning) {
      ops.push(op("prepare", "user", "skipped", { what: "subordinate ids", reason: maps.warning }));
    }
    if (maps.helpers) {
      // newgidmap leaves setgroups allowed for a range of the caller's own: --group-add works.
      ops.push(
        op("attach", "user", "idmap-helper", {
          helper: maps.helpers.newuidmap,
          map: "uid_map",
          args: mapText(maps.uid),
        }),
        op("attach", "user", "idmap-helper", {
          helper: maps.helpers.newgidmap,
          map: "gid_map",
          args: mapText(maps.gid),
        }),
        op("rootfs", "user", "userns-root", {}),
      );
      return ops;
    }
    // An unprivileged writer of gid_map must deny setgroups first (user_namespaces(7)).
    if (maps.rootless) {
      ops.push(op("attach", "user", "proc-write", { file: "setgroups", content: "deny" }));
    }
    ops.push(
      op("attach", "user", "proc-write", { file: "uid_map", content: text(maps.uid) }),
      op("attach", "user", "proc-write", { file: "gid_map", content: text(maps.gid) }),
      op("rootfs", "user", "userns-root", {}),
    );
    return ops;
  },
};
