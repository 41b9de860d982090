/**
 * user: root in the container is an unprivileged uid on the host. As root, the range comes
 * from /etc/subuid and /etc/subgid (account `micro`) or the default below; a non-root
 * caller maps only its own uid and gid, so micro runs rootless too.
 */
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
): { uid: IdMapping[]; gid: IdMapping[]; rootless: boolean } {
  if (spec.linux.uidMappings.length) {
    return { uid: spec.linux.uidMappings, gid: spec.linux.gidMappings, rootless: host.uid !== 0 };
  }
  if (host.uid !== 0) {
    return {
      uid: [{ containerID: 0, hostID: host.uid, size: 1 }],
      gid: [{ containerID: 0, hostID: host.gid, size: 1 }],
      rootless: true,
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
      size: { type: "integer", min: 1, max: 4294967295, doc: "ids to map (as root)" },
    },
  },
  configure(o, spec) {
    addNamespace(spec, "user");
    spec.micro.userSize = o.size ?? DEFAULT_RANGE.count;
  },
  plan(spec, host): Op[] {
    const maps = idMaps(spec, host, spec.micro.userSize ?? DEFAULT_RANGE.count);
    const ops: Op[] = [cloneOp("user", "user")];
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
