/**
 * Which cgroup layout this host has, read from /proc/self/mountinfo and /proc/self/cgroup:
 * pure v2 (unified, controllers available), pure v1, or hybrid (v1 controllers plus an
 * empty v2 mount, like this project's build hosts). Also where a non-root caller may create
 * cgroups: a subtree systemd delegated to it, when there is one.
 */
import { MiB, readQuiet } from "../files.ts";
import { openLibc } from "../sys/libc.ts";
import { C, cstr, type Sys } from "../sys/mod.ts";

export interface CgroupLayout {
  mode: "v2" | "v1" | "hybrid" | "none";
  /** v1: controller → the directory its hierarchy is mounted on. */
  v1: Record<string, string>;
  /** v2: where cgroup2 is mounted and the controllers available under `base`. */
  v2?: { mount: string; controllers: string[] };
  /**
   * Where micro's cgroups go, relative to each hierarchy's root: "" for root; for a
   * rootless caller on v2, the delegated subtree it owns (systemd user slice).
   */
  base: string;
  /** Whether this caller may create cgroups at `base` (root, or a delegated subtree). */
  writable: boolean;
}

const V1_CONTROLLERS = [
  "cpu",
  "cpuacct",
  "cpuset",
  "memory",
  "devices",
  "freezer",
  "blkio",
  "pids",
  "net_cls",
  "net_prio",
  "hugetlb",
  "perf_event",
  "rdma",
  "misc",
];

/** Parses mountinfo lines into cgroup and cgroup2 mounts (pure, for tests). */
export function parseMounts(mountinfo: string): { v1: Record<string, string>; v2?: string } {
  const v1: Record<string, string> = {};
  let v2: string | undefined;
  for (const line of mountinfo.split("\n")) {
    const sep = line.indexOf(" - ");
    if (sep < 0) continue;
    const fields = line.slice(0, sep).split(" ");
    const [fstype, , options = ""] = line.slice(sep + 3).split(" ");
    const mountPoint = fields[4];
    if (fstype === "cgroup2") v2 ??= mountPoint;
    if (fstype !== "cgroup") continue;
    for (const opt of options.split(",")) {
      if (V1_CONTROLLERS.includes(opt)) v1[opt] ??= mountPoint;
    }
  }
  return { v1, v2 };
}

export interface LayoutInput {
  mountinfo: string;
  /** /proc/self/cgroup */
  selfCgroup: string;
  uid: number;
  read: (path: string) => string | undefined;
  /** Whether the caller may write this file (access(2) W_OK). */
  canWrite: (path: string) => boolean;
}

/** Decides the layout from what the host shows. Pure given its reads. */
export function detectLayout(input: LayoutInput): CgroupLayout {
  const { v1, v2 } = parseMounts(input.mountinfo);
  const hasV1 = Object.keys(v1).length > 0;
  const rootControllers = v2 ? (input.read(`${v2}/cgroup.controllers`) ?? "").trim() : "";
  const mode = hasV1 ? (v2 ? "hybrid" : "v1") : v2 ? "v2" : "none";
  let base = "";
  let writable = input.uid === 0;
  let controllers = rootControllers.split(/\s+/).filter((c) => c);
  if (mode === "v2" && input.uid !== 0) {
    // A rootless caller may use the subtree it is in if it owns it (systemd delegation).
    const own = /^0::(.*)$/m.exec(input.selfCgroup)?.[1]?.trim() ?? "/";
    // micro itself sits in a leaf .scope; its parent is the subtree that may be delegated
    // (v2 forbids enabling controllers in a cgroup that has processes, like our own).
    const inScope = /\/[^/]+\.scope$/.test(own);
    const dir = own.replace(/\/[^/]+\.scope$/, "");
    const path = `${v2}${dir === "/" ? "" : dir}`;
    writable = inScope && dir.includes("user@") &&
      input.canWrite(`${path}/cgroup.subtree_control`);
    base = writable ? dir : "";
    controllers = (input.read(`${path}/cgroup.controllers`) ?? "").trim().split(/\s+/)
      .filter((c) => c);
  }
  if ((mode === "v1" || mode === "hybrid") && input.uid !== 0) writable = false;
  return {
    mode,
    v1,
    ...(v2 ? { v2: { mount: v2, controllers } } : {}),
    base,
    writable,
  };
}

/** This host's layout, read through `sys` (core/files.ts says why). */
export function readLayout(uid: number, sys: Sys = openLibc()): CgroupLayout {
  const read = (p: string) => readQuiet(sys, p, MOUNTINFO_CAP) ?? undefined;
  return detectLayout({
    mountinfo: read("/proc/self/mountinfo") ?? "",
    selfCgroup: read("/proc/self/cgroup") ?? "",
    uid,
    read,
    canWrite: (p) => {
      const fd = sys.open(cstr(p), C.O_WRONLY | C.O_NONBLOCK | C.O_NOCTTY | C.O_CLOEXEC, 0);
      if (fd >= 0) sys.close(fd);
      return fd >= 0;
    },
  });
}

/** /proc/self/mountinfo of a host with thousands of mounts is still far below this. */
const MOUNTINFO_CAP = 64 * MiB;
