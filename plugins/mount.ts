/**
 * mount: a private mount namespace whose root is the image (or, with no image, a tmpfs
 * holding the host's system directories read-only), with /proc, a minimal /dev, /sys, the
 * user's binds and tmpfs mounts, runc's masked and read-only paths, then pivot_root.
 * Every destination is resolved inside the new root by the engine, never on the host.
 */
import { mapsOnlyCaller } from "../core/idmap.ts";
import { type MountFlag, type Op, op } from "../core/ops.ts";
import type { HostInfo, Plugin } from "../core/plugin.ts";
import { hasNamespace, type Mount, type Spec } from "../core/spec.ts";
import { addNamespace } from "./_ns.ts";
import { cleanPath } from "../core/paths.ts";
import { MicroError } from "../core/errors.ts";
import { parseMountFlag, parseTmpfs, parseVolumeFlag, splitMountOptions } from "../core/mounts.ts";
import { parseSize } from "../core/cgroups/units.ts";

const shmCheck = (v: string) =>
  parseSize(v) === undefined || parseSize(v) === 0 || /\./.test(v)
    ? "expected a size like 64m, 1g or 67108864"
    : undefined;

export interface MountOptions {
  masked?: string[];
  readonly?: string[];
  binds?: string[];
  tmpfs?: string[];
  mounts?: string[];
  shmSize?: string | number;
  devices?: string[];
  hostView?: string[];
  /** Every device node of the host's /dev (`--privileged`). */
  hostDevices?: boolean;
}

export const DEFAULT_DEVICES = ["null", "zero", "full", "random", "urandom", "tty"];
export const DEFAULT_HOST_VIEW = [
  "/usr",
  "/bin",
  "/sbin",
  "/lib",
  "/lib64",
  "/lib32",
  "/libx32",
  "/etc",
];

const absPath = (v: string) =>
  v.startsWith("/") && !v.split("/").includes("..")
    ? undefined
    : "must be an absolute path without '..'";

/** A check from one of core/mounts.ts's parsers: its reason, or nothing. */
const reasonOf = (parse: (v: string) => Mount | string) => (v: string) => {
  const m = parse(v);
  return typeof m === "string" ? m : undefined;
};
/** Docker's /dev/shm size. */
export const DEFAULT_SHM_SIZE = 64 * 1024 * 1024;
const pathList = { type: "list", items: { type: "string", check: absPath } } as const;

export const mount: Plugin<MountOptions> = {
  name: "mount",
  description: "private mount namespace, pivot_root into the image, /proc /dev /sys, binds",
  schema: {
    type: "object",
    fields: {
      masked: { ...pathList, doc: "paths hidden from the container" },
      readonly: { ...pathList, doc: "paths bound read-only" },
      binds: {
        type: "list",
        items: { type: "string", check: reasonOf(parseVolumeFlag) },
        doc: "HOST:CONTAINER[:ro|rw], NAME:CONTAINER[:ro|rw] (a volume) or CONTAINER (-v)",
      },
      tmpfs: {
        type: "list",
        items: { type: "string", check: reasonOf((v) => parseTmpfs(v)) },
        doc: "PATH[:OPTIONS]: empty tmpfs mounts, Docker's options (--tmpfs)",
      },
      mounts: {
        type: "list",
        items: { type: "string", check: reasonOf(parseMountFlag) },
        doc: "type=bind|volume|tmpfs,... as Docker's --mount",
      },
      shmSize: {
        type: "oneOf",
        options: [{ type: "integer", min: 1 }, { type: "string", check: shmCheck }],
        doc: "size of /dev/shm (default 64m, --shm-size)",
      },
      devices: {
        type: "list",
        items: {
          type: "string",
          check: (v) => /^[a-z0-9]+$/.test(v) ? undefined : "a device is a name under /dev",
        },
        doc: "device nodes bound from the host's /dev",
      },
      hostView: { ...pathList, doc: "host dirs bound read-only when there is no image" },
      hostDevices: {
        type: "boolean",
        doc: "bind every device node of the host's /dev (--privileged: unsafe)",
      },
    },
  },
  configure(o, spec) {
    addNamespace(spec, "mount");
    spec.linux.maskedPaths = [...(o.masked ?? [])];
    spec.linux.readonlyPaths = [...(o.readonly ?? [])];
    spec.micro.devices = [...(o.devices ?? DEFAULT_DEVICES)];
    if (o.hostDevices) spec.micro.hostDevices = true;
    if (spec.root.path === null) spec.micro.hostView = [...(o.hostView ?? DEFAULT_HOST_VIEW)];
    if (o.shmSize !== undefined) spec.micro.shmSize = parseSize(o.shmSize);
    for (const b of o.binds ?? []) {
      const m = parseVolumeFlag(b);
      if (typeof m !== "string") spec.mounts.push(m);
    }
    for (const t of o.tmpfs ?? []) {
      const m = parseTmpfs(t);
      if (typeof m !== "string") spec.mounts.push(m);
    }
    for (const t of o.mounts ?? []) {
      const m = parseMountFlag(t);
      if (typeof m !== "string") spec.mounts.push(m);
    }
  },
  plan: planMounts,
  check(spec, host) {
    // Under chroot the old root stays in the namespace: these capabilities reach it
    // (chroot into a subdirectory and walk up; unmount or move the new root).
    // No capabilities section: nothing is dropped, so both are kept.
    const bounding = spec.process.capabilities?.bounding;
    const escapes = ["CAP_SYS_CHROOT", "CAP_SYS_ADMIN"].filter((c) =>
      !bounding || bounding.includes(c)
    );
    if (spec.micro.noPivot && escapes.length) {
      return [
        new MicroError(
          `--no-pivot: the container keeps ${escapes.join(" and ")}, which escape a chroot ` +
            "to the host's root",
          { hint: `drop ${escapes.join(", ")} from process.capabilities, or drop --no-pivot` },
        ),
      ];
    }
    const vols = spec.mounts.filter((m) => m.type === "volume");
    const named = vols.find((m) => m.source !== "");
    if (named && !host.volumesDir) {
      return [
        new MicroError(`volume "${named.source}": there is no image store to keep it in`, {
          hint: "give --root DIR, or bind a host directory instead",
        }),
      ];
    }
    const anon = vols.find((m) => m.source === "");
    if (anon && !host.containerDir) {
      return [
        new MicroError(
          `anonymous volume at ${anon.destination}: the run has no container directory`,
          {
            hint: "name the volume (-v NAME:PATH) or bind a host directory",
          },
        ),
      ];
    }
    return [];
  },
};

/** OCI mount options to flags, the propagation, and the data string the kernel gets. */
export function splitOptions(
  options: string[],
): { flags: MountFlag[]; data?: string; propagation?: MountFlag[]; copyUp?: boolean } {
  const copy = options.filter((o) => o === "tmpcopyup" || o === "notmpcopyup").pop();
  const { flags, propagation, data } = splitMountOptions(
    options.filter((o) => o !== "file" && o !== "tmpcopyup" && o !== "notmpcopyup"),
  );
  return {
    flags,
    ...(data.length ? { data: data.join(",") } : {}),
    ...(propagation.length ? { propagation } : {}),
    ...(copy === "tmpcopyup" ? { copyUp: true } : {}),
  };
}

/** SELinux labels what the container mounts itself; binds keep their own labels. */
const LABELLED = ["tmpfs", "devpts", "mqueue"];

/**
 * A volume's directory: a named one in the store's `volumes/NAME/_data` (as Docker's
 * `/var/lib/docker/volumes`), an anonymous one in the container's own directory, so it goes
 * with the container (`--rm`, `micro rm`).
 */
export function volumePaths(m: Mount, n: number, host: HostInfo): { dir: string; path: string } {
  const dir = m.source !== ""
    ? `${host.volumesDir}/${m.source}`
    : `${host.containerDir}/volumes/${n}`;
  return { dir, path: `${dir}/_data` };
}

function mountOp(m: Mount, spec: Spec, host: HostInfo): Op {
  const label = spec.linux.mountLabel && host.lsm.selinux && LABELLED.includes(m.type)
    ? [`context="${spec.linux.mountLabel}"`]
    : [];
  const { flags, data, propagation, copyUp } = splitOptions([...m.options, ...label]);
  const fileSource = m.type === "bind" &&
    (m.options.includes("file") || host.sourceKinds[m.source] === "file");
  return op("rootfs", "mount", "mount", {
    source: m.source,
    target: m.destination,
    fstype: m.type === "bind" ? "" : m.type,
    flags,
    ...(data ? { data } : {}),
    ...(propagation ? { propagation } : {}),
    ...(copyUp && m.type === "tmpfs" ? { copyUp } : {}),
    create: fileSource ? "file" : "dir",
    ...(m.idmap ? { idmap: m.idmap } : {}),
  });
}

/** Marks the container's own /proc or /sys mount (see OpArgs.mount.kernelFs). */
function kernelFs(which: "proc" | "sys", o: Op): Op {
  return o.kind === "mount" ? { ...o, args: { ...o.args, kernelFs: which } } : o;
}

/**
 * An OCI config.json's mounts, as given and in order (runc's way): the default devices and
 * /dev's links follow a tmpfs at /dev; sysctls follow the container's /proc.
 */
function planOciMounts(spec: Spec, host: HostInfo): Op[] {
  const rootfs = (kind: Parameters<typeof op>[2], args: unknown) =>
    op("rootfs", "mount", kind, args as never);
  const ops: Op[] = [
    { phase: "clone", plugin: "mount", kind: "namespace", args: { flag: "CLONE_NEWNS" } },
    rootfs("make-private", spec.linux.rootfsSlave ? { slave: true } : {}),
    rootfs("bind-root", { source: spec.root.path, readonly: spec.root.readonly }),
  ];
  let proc = false;
  for (const m of spec.mounts) {
    const o = mountOp(m, spec, host);
    if (m.type === "proc" && !proc) {
      proc = true;
      ops.push(kernelFs("proc", o));
      for (const [key, value] of Object.entries(spec.linux.sysctl ?? {})) {
        ops.push(op("rootfs", "sysctl", "sysctl", { key, value }));
      }
      continue;
    }
    ops.push(m.type === "sysfs" ? kernelFs("sys", o) : o);
    if (m.destination !== "/dev" || m.type !== "tmpfs") continue;
    const devices = spec.micro.devices.filter((d) => host.devices.includes(d));
    const nodes = [
      ...devices.map((d) => ({ path: `/dev/${d}`, hostPath: `/dev/${d}` })),
      ...spec.linux.devices.filter((d) => !devices.includes(d.path.slice(5))),
    ];
    for (const d of nodes) {
      // runc's way: a node of the config's numbers, but bound from the host in a user
      // namespace, where mknod makes nothing usable.
      if ("node" in d && d.node && !hasNamespace(spec, "user")) {
        ops.push(rootfs("mknod", { path: d.path, ...d.node }));
        continue;
      }
      ops.push(mountOp(
        { destination: d.path, type: "bind", source: d.hostPath, options: ["bind", "file"] },
        spec,
        host,
      ));
    }
    ops.push(
      rootfs("symlink", { target: "pts/ptmx", path: "/dev/ptmx" }),
      rootfs("symlink", { target: "/proc/self/fd", path: "/dev/fd" }),
      rootfs("symlink", { target: "/proc/self/fd/0", path: "/dev/stdin" }),
      rootfs("symlink", { target: "/proc/self/fd/1", path: "/dev/stdout" }),
      rootfs("symlink", { target: "/proc/self/fd/2", path: "/dev/stderr" }),
    );
  }
  if (!proc && Object.keys(spec.linux.sysctl ?? {}).length) {
    throw new MicroError("config.json: linux.sysctl needs a proc mount in mounts", {
      phase: "check",
      plugin: "mount",
    });
  }
  for (const p of spec.linux.maskedPaths) ops.push(rootfs("mask", { path: p }));
  for (const p of spec.linux.readonlyPaths) ops.push(rootfs("readonly-path", { path: p }));
  ops.push(rootfs("pivot-root", spec.micro.noPivot ? { move: true } : {}));
  if (spec.root.readonly) ops.push(rootfs("remount-root-ro", {}));
  return ops;
}

function planMounts(spec: Spec, host: HostInfo): Op[] {
  if (spec.micro.oci) return planOciMounts(spec, host);
  const rootfs = (kind: Parameters<typeof op>[2], args: unknown) =>
    op("rootfs", "mount", kind, args as never);
  const userns = hasNamespace(spec, "user");
  const ops: Op[] = [
    { phase: "clone", plugin: "mount", kind: "namespace", args: { flag: "CLONE_NEWNS" } },
    rootfs("make-private", {}),
    rootfs("bind-root", {
      source: spec.root.path,
      readonly: spec.root.readonly,
      // The overlay plugin's copy-on-write root; in a user namespace its xattrs are user.*.
      ...(spec.root.overlay && spec.root.path !== null
        ? {
          overlay: {
            upper: `${host.containerDir}/upper`,
            work: `${host.containerDir}/work`,
            userxattr: userns,
            ...(spec.root.layers ? { lowers: spec.root.layers } : {}),
          },
        }
        : {}),
    }),
  ];

  // No image: the host's system directories, read-only, and an empty writable /tmp.
  if (spec.root.path === null) {
    for (const h of host.hostView.filter((h) => spec.micro.hostView.includes(h.path))) {
      if (h.kind === "symlink") {
        ops.push(rootfs("symlink", { target: h.target, path: h.path }));
      } else {
        ops.push(mountOp(
          {
            destination: h.path,
            type: "bind",
            source: h.path,
            options: ["rbind", "ro", "nosuid", "nodev"],
          },
          spec,
          host,
        ));
      }
    }
    if (!spec.mounts.some((m) => m.destination === "/tmp")) {
      ops.push(mountOp(
        {
          destination: "/tmp",
          type: "tmpfs",
          source: "tmpfs",
          options: ["nosuid", "nodev", "mode=1777"],
        },
        spec,
        host,
      ));
    }
  }

  // /proc belongs to the pid namespace (an own one, or the one joined); without one, the
  // host's is bound instead.
  ops.push(kernelFs(
    "proc",
    mountOp(
      hasNamespace(spec, "pid") || spec.micro.join?.pid
        ? {
          destination: "/proc",
          type: "proc",
          source: "proc",
          options: ["nosuid", "noexec", "nodev"],
        }
        : {
          destination: "/proc",
          type: "bind",
          source: "/proc",
          options: ["rbind", "nosuid", "noexec", "nodev"],
        },
      spec,
      host,
    ),
  ));
  // Namespaced sysctls, beneath this very /proc, before /proc/sys is made read-only.
  for (const [key, value] of Object.entries(spec.linux.sysctl ?? {})) {
    ops.push(op("rootfs", "sysctl", "sysctl", { key, value }));
  }

  // A minimal /dev: a tmpfs with the host's harmless nodes bound in, and its own devpts.
  ops.push(mountOp(
    {
      destination: "/dev",
      type: "tmpfs",
      source: "tmpfs",
      options: ["nosuid", "strictatime", "mode=755", "size=65536k"],
    },
    spec,
    host,
  ));
  // With hostDevices the probe found every device node in the host's /dev.
  const devices = spec.micro.hostDevices
    ? host.devices
    : spec.micro.devices.filter((d) => host.devices.includes(d));
  for (const d of devices) {
    ops.push(
      mountOp(
        {
          destination: `/dev/${d}`,
          type: "bind",
          source: `/dev/${d}`,
          options: ["bind", "file"],
        },
        spec,
        host,
      ),
    );
  }
  // Devices added with --device: the host's node bound at the container path.
  for (const d of spec.linux.devices) {
    ops.push(
      mountOp(
        { destination: d.path, type: "bind", source: d.hostPath, options: ["bind", "file"] },
        spec,
        host,
      ),
    );
  }
  // gid=5 (tty) only when that gid exists inside; a map of the caller alone has just gid 0.
  const ttyGid = !userns || !spec.linux.gidMappings.length && !mapsOnlyCaller(spec, host)
    ? ",gid=5"
    : "";
  ops.push(
    mountOp(
      {
        destination: "/dev/pts",
        type: "devpts",
        source: "devpts",
        options: ["nosuid", "noexec", `newinstance,ptmxmode=0666,mode=0620${ttyGid}`],
      },
      spec,
      host,
    ),
    rootfs("symlink", { target: "pts/ptmx", path: "/dev/ptmx" }),
    mountOp(
      {
        destination: "/dev/shm",
        type: "tmpfs",
        source: "shm",
        options: [
          "nosuid",
          "noexec",
          "nodev",
          "mode=1777",
          `size=${spec.micro.shmSize ?? DEFAULT_SHM_SIZE}`,
        ],
      },
      spec,
      host,
    ),
    rootfs("symlink", { target: "/proc/self/fd", path: "/dev/fd" }),
    rootfs("symlink", { target: "/proc/self/fd/0", path: "/dev/stdin" }),
    rootfs("symlink", { target: "/proc/self/fd/1", path: "/dev/stdout" }),
    rootfs("symlink", { target: "/proc/self/fd/2", path: "/dev/stderr" }),
  );

  // A fresh sysfs needs a network namespace of our own; otherwise the host's, read-only.
  ops.push(kernelFs(
    "sys",
    mountOp(
      hasNamespace(spec, "network")
        ? {
          destination: "/sys",
          type: "sysfs",
          source: "sysfs",
          options: ["ro", "nosuid", "noexec", "nodev"],
        }
        : {
          destination: "/sys",
          type: "bind",
          source: "/sys",
          options: ["rbind", "ro", "nosuid", "noexec", "nodev"],
        },
      spec,
      host,
    ),
  ));

  // The network's /etc/hosts, /etc/hostname and /etc/resolv.conf, made per container in
  // the run's state dir (never written into the image), writable as Docker's; the user's
  // own mounts below may cover them.
  if (spec.root.path !== null) {
    for (const name of spec.micro.runFiles ?? []) {
      const o = mountOp(
        {
          destination: `/etc/${name}`,
          type: "bind",
          source: `${host.stateDir}/${name}`,
          options: ["bind", "file", "nosuid", "nodev", "noexec"],
        },
        spec,
        host,
      );
      // Written by the network's attach, which the child may not have waited for yet.
      if (o.kind === "mount") o.args.attached = true;
      ops.push(o);
    }
  }

  // What the user and the other plugins asked for: parents before what is mounted inside
  // them (as Docker sorts them), else in the order given.
  const depth = (p: string) => p.split("/").filter((c) => c).length;
  const sorted = spec.mounts.map((m, k) => ({ m, k })).sort((a, b) =>
    depth(a.m.destination) - depth(b.m.destination) || a.k - b.k
  );
  let anonymous = 0;
  for (const { m } of sorted) {
    if (m.type !== "volume") {
      ops.push(mountOp(m, spec, host));
      continue;
    }
    const v = volumePaths(m, m.source === "" ? anonymous++ : 0, host);
    ops.push(op("prepare", "mount", "volume-dir", v));
    ops.push(mountOp({ ...m, type: "bind", source: v.path }, spec, host));
  }

  // The working directory, made when the image lacks it (as Docker), while the root is
  // still writable and micro still root: in the overlay's upper layer, never in the image.
  if (spec.root.path !== null && cleanPath(spec.process.cwd) !== "/") {
    ops.push(rootfs("mkdir", { path: cleanPath(spec.process.cwd), mode: 0o755 }));
  }
  for (const p of spec.linux.maskedPaths) ops.push(rootfs("mask", { path: p }));
  for (const p of spec.linux.readonlyPaths) ops.push(rootfs("readonly-path", { path: p }));
  ops.push(rootfs("pivot-root", {}));
  if (spec.root.readonly) ops.push(rootfs("remount-root-ro", {}));
  return ops;
}
