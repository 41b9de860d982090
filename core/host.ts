/**
 * The host probe: every fact plan() needs from the host, read once before planning, so
 * that plugins stay pure and `micro plan` shows what a run would do.
 */
import { baseFacts, defaultNetwork } from "./cni/facts.ts";
import { CAPS } from "./caps.ts";
import { readLayout } from "./cgroups/layout.ts";
import { MicroError } from "./errors.ts";
import {
  ACCOUNTS_CAP,
  FileRefused,
  formatSize,
  MiB,
  readInRoot,
  readLinkAt,
  readQuiet,
  readRegularFile,
  readRegularFileIfThere,
  SECCOMP_CAP,
  typeAt,
} from "./files.ts";
import { probeRootlessIds } from "./idmap.ts";
import type { HostInfo } from "./plugin.ts";
import { hasNamespace, type Spec } from "./spec.ts";
import { resolveLinks } from "./paths.ts";
import { C, cstr, type Sys } from "./sys/mod.ts";
import { openLibc } from "./sys/libc.ts";
import type { probeNetwork } from "./cni/probe.ts";

/**
 * A container path to the host path it names inside `root`, following symlinks as the
 * container would see them: an absolute link or `..` never leaves the root.
 */
export function resolveInRoot(root: string, path: string, sys = openLibc()): string {
  return root + resolveLinks(path, (p) => {
    const type = typeAt(sys, root + p, false);
    if (type === 0) return null;
    return type === C.S_IFLNK ? readLinkAt(sys, root + p) : undefined;
  });
}

/** A kernel or small host file's text, or `fallback` when it cannot be read (no Deno error). */
function readOr(path: string, fallback: string, sys: Sys = openLibc()): string {
  return readQuiet(sys, path) ?? fallback;
}

/** Device numbers from st_rdev (glibc's major()/minor()). */
function deviceNode(path: string): HostInfo["deviceNodes"][string] | undefined {
  try {
    const st = Deno.statSync(path);
    if (!st.isBlockDevice && !st.isCharDevice) return undefined;
    const rdev = st.rdev ?? 0;
    const major = ((rdev >>> 8) & 0xfff) | (Math.floor(rdev / 2 ** 32) & ~0xfff);
    const minor = (rdev & 0xff) | ((rdev >>> 12) & ~0xff);
    return { type: st.isBlockDevice ? "b" : "c", major, minor };
  } catch {
    return undefined;
  }
}

/** What the cgroups plugin needs; nothing is read unless the plugin is on. */
function cgroupFacts(spec: Spec, uid: number) {
  const none = { mode: "none", v1: {}, base: "", writable: false } as const;
  if (!spec.micro.cgroup) {
    return { cgroup: none, cpus: "", mems: "", swapAccounting: false, deviceNodes: {} };
  }
  const cgroup = readLayout(uid);
  const paths = [
    ...spec.linux.devices.filter((d) => !d.node).map((d) => d.hostPath),
    ...Object.values(spec.micro.cgroup.rates).flat().map((r) => r.path),
  ];
  const deviceNodes: HostInfo["deviceNodes"] = {};
  for (const p of paths) {
    const n = deviceNode(p);
    if (n) deviceNodes[p] = n;
  }
  return {
    cgroup,
    cpus: readOr("/sys/devices/system/cpu/online", "0").trim(),
    mems: readOr("/sys/devices/system/node/online", "0").trim(),
    swapAccounting: cgroup.v1.memory !== undefined &&
      exists(`${cgroup.v1.memory}/memory.memsw.limit_in_bytes`),
    deviceNodes,
  };
}

/** Whether anything is at `path` (following links); a missing one costs no Deno error. */
export function exists(path: string, sys: Sys = openLibc()): boolean {
  return typeAt(sys, path) !== 0;
}

function subRange(file: string): { start: number; count: number } | undefined {
  // A host with many users has a long file: a generous cap, still a cap.
  for (const line of (readQuiet(openLibc(), file, 64 * MiB) ?? "").split("\n")) {
    const [name, start, count] = line.trim().split(":");
    if (name === "micro" && /^[0-9]+$/.test(start) && /^[0-9]+$/.test(count)) {
      return { start: Number(start), count: Number(count) };
    }
  }
  return undefined;
}

/**
 * The image's /etc/passwd and /etc/group, read as the container would see them (through an
 * fd of the image, links resolved inside it) and only when they are regular files of at
 * most ACCOUNTS_CAP: the image may be shared with a running container that swaps them for
 * a FIFO, a device or a link out. Missing files are empty (no users). With no image, the
 * host's own.
 */
function accounts(
  sys: Sys,
  image: string | null,
  imageFd: number,
): { passwd: string; group: string } {
  const read = (f: string, root?: number) => {
    try {
      if (root !== undefined) return readInRoot(sys, root, f, ACCOUNTS_CAP) ?? "";
      return readRegularFileIfThere(sys, f, ACCOUNTS_CAP) ?? ""; // missing: no users
    } catch (e) {
      if (!(e instanceof FileRefused)) throw e;
      throw new MicroError(
        `${image === null ? "host" : "image"} file ${image ?? ""}${f}: ${e.reason}`,
        {
          hint: `${f} must be a regular file of at most ${formatSize(ACCOUNTS_CAP)}` +
            (image === null ? "" : "; fix the image"),
        },
      );
    }
  };
  if (image === null) return { passwd: read("/etc/passwd"), group: read("/etc/group") };
  // The fd the caller opened the image with; by name only when it has none.
  const root = imageFd >= 0
    ? imageFd
    : sys.open(cstr(image), C.O_PATH | C.O_DIRECTORY | C.O_CLOEXEC, 0);
  if (root < 0) return { passwd: "", group: "" }; // not a directory: the image check reports it
  try {
    return { passwd: read("/etc/passwd", root), group: read("/etc/group", root) };
  } finally {
    if (root !== imageFd) sys.close(root);
  }
}

/** `accounts` for a store image: its /etc/passwd and /etc/group through its merged layers. */
function layeredAccounts(
  read: (path: string, cap: number) => string | null,
  image: string,
): { passwd: string; group: string } {
  const one = (f: string) => {
    try {
      return read(f, ACCOUNTS_CAP) ?? "";
    } catch (e) {
      if (!(e instanceof FileRefused)) throw e;
      throw new MicroError(`image file ${f}: ${e.reason}`, {
        hint: `${f} must be a regular file of at most ${formatSize(ACCOUNTS_CAP)}; fix ${image}`,
      });
    }
  };
  return { passwd: one("/etc/passwd"), group: one("/etc/group") };
}

/** A file the spec names (a seccomp profile): its text, or why it could not be read. */
function specFiles(sys: Sys, paths: string[]) {
  const files: HostInfo["files"] = {};
  const fileErrors: Record<string, string> = {};
  for (const f of paths) {
    try {
      files[f] = readRegularFile(sys, f, SECCOMP_CAP);
    } catch (e) {
      if (!(e instanceof FileRefused)) throw e;
      fileErrors[f] = e.reason;
    }
  }
  return { files, fileErrors };
}

export interface ProbeOptions {
  /** Asks the kernel for the Landlock ABI; called only when the spec uses Landlock. */
  landlockAbi?: () => number;
  /**
   * The libc the probe reads and stats through (what exists, what kind it is): the real
   * one (the default), as a recording fake answers every stat with a regular file.
   */
  sys?: Sys;
  /** The image directory as the caller opened it (O_PATH): its files are read through it. */
  imageFd?: number;
  /** The container's own directory in the store (the overlay's upper and work). */
  containerDir?: string;
  /** The default hostname (the container's short id). */
  hostname?: string;
  volumesDir?: string;
  /**
   * Reads a file of a store image (its layers merged): null when missing; throws
   * FileRefused. Used instead of the image directory for /etc/passwd and /etc/group.
   */
  readImageFile?: (path: string, cap: number) => string | null;
  /** core/cni/probe.ts's probe, from networkProbe: required when the spec's network needs it. */
  probeNetwork?: typeof probeNetwork;
}

/** The networks whose host facts are probed (CNI plugins, a bridge, the rootless helpers). */
const PROBED_NETWORKS = ["bridge", "cni", "auto", "pasta", "slirp4netns"];

/**
 * The network probe for `spec`, loaded only when its network needs one: the CNI modules
 * behind it are about a tenth of a run's code, and every module loaded is compiled in full
 * (core/v8.ts), so a run without a network (hardened, --network none) does not load them.
 */
export async function networkProbe(spec: Spec): Promise<typeof probeNetwork | undefined> {
  if (!PROBED_NETWORKS.includes(spec.micro.network)) return undefined;
  // `auto` made none: nothing of the host's networking but the base facts is looked at.
  if (spec.micro.network === "auto" && defaultNetwork() === "none") {
    return (_spec, sys) => baseFacts(sys);
  }
  return (await import("./cni/probe.ts")).probeNetwork;
}

/** Reads every host fact the plan needs. */
export function probeHost(
  spec: Spec,
  id: string,
  stateDir: string,
  opts: ProbeOptions = {},
): HostInfo {
  const sys = opts.sys ?? openLibc();
  const landlockAbi = opts.landlockAbi ?? (() => 0);
  const hostView: HostInfo["hostView"] = [];
  // Looked at through sys: what is missing costs no Deno error (readQuiet says why).
  for (const path of spec.micro.hostView) {
    const type = typeAt(sys, path, false);
    try {
      if (type === C.S_IFLNK) {
        hostView.push({ path, kind: "symlink", target: Deno.readLinkSync(path) });
      } else if (type === C.S_IFDIR) hostView.push({ path, kind: "dir" });
    } catch { /* gone meanwhile: skipped */ }
  }
  const devices = spec.micro.hostDevices
    ? hostDeviceNodes()
    : spec.micro.devices.filter((d) => exists(`/dev/${d}`, sys));
  const sourceKinds: HostInfo["sourceKinds"] = {};
  for (const m of spec.mounts) {
    if (m.type !== "bind") continue;
    const type = typeAt(sys, m.source);
    if (type !== 0) sourceKinds[m.source] = type === C.S_IFDIR ? "dir" : "file";
    // missing: a check reports it
  }
  let image: HostInfo["image"] = null;
  if (spec.root.path !== null) {
    const type = typeAt(sys, spec.root.path);
    image = type === 0 ? "missing" : type === C.S_IFDIR ? "dir" : "other";
  }
  const uid = Deno.uid() ?? 0;
  return {
    arch: Deno.build.arch === "aarch64" ? "aarch64" : "x86_64",
    uid,
    gid: Deno.gid() ?? 0,
    subuid: uid === 0 ? subRange("/etc/subuid") : undefined,
    subgid: uid === 0 ? subRange("/etc/subgid") : undefined,
    rootlessIds: uid !== 0 && hasNamespace(spec, "user") ? probeRootlessIds(sys, uid) : undefined,
    id,
    ...(opts.hostname ? { hostname: opts.hostname } : {}),
    stateDir,
    containerDir: opts.containerDir ?? "",
    ...(opts.volumesDir ? { volumesDir: opts.volumesDir } : {}),
    hostView,
    devices,
    ...(opts.readImageFile
      ? layeredAccounts(opts.readImageFile, spec.root.path ?? "")
      : accounts(sys, spec.root.path, opts.imageFd ?? -1)),
    sourceKinds,
    image,
    ...specFiles(sys, [spec.micro.seccompFile].filter((f): f is string => !!f)),
    ...cgroupFacts(spec, uid),
    capLastCap: Number(readOr("/proc/sys/kernel/cap_last_cap", "40", sys).trim()) || 40,
    ...(spec.micro.capsAll ? { capBounding: ownBoundingSet() } : {}),
    lsm: {
      // As runc: the module enabled and its file system there.
      apparmor: readOr("/sys/module/apparmor/parameters/enabled", "N", sys).trim() === "Y" &&
        exists("/sys/kernel/security/apparmor", sys),
      apparmorAttr: exists("/proc/self/attr/apparmor", sys) ? "apparmor/exec" : "exec",
      selinux: exists("/sys/fs/selinux/enforce", sys),
      landlock: spec.micro.landlock ? Math.max(0, landlockAbi()) : 0,
    },
    ...(PROBED_NETWORKS.includes(spec.micro.network)
      ? { net: needProbe(opts.probeNetwork, spec.micro.network)(spec, sys, uid) }
      : {}),
  };
}

/** The probe the caller loaded (networkProbe); a caller that did not is a bug of micro's. */
function needProbe(
  probe: typeof probeNetwork | undefined,
  network: string,
): typeof probeNetwork {
  if (!probe) throw new Error(`internal: the host probe of network "${network}" was not loaded`);
  return probe;
}

/**
 * `--privileged`: the character and block devices at the top of the host's /dev (not
 * symlinks; not ptmx, which the container's own devpts provides), by name.
 */
function hostDeviceNodes(): string[] {
  const names: string[] = [];
  try {
    for (const e of Deno.readDirSync("/dev")) {
      if (!e.isFile && !e.isDirectory && !e.isSymlink && e.name !== "ptmx") {
        try {
          const st = Deno.lstatSync(`/dev/${e.name}`);
          if (st.isBlockDevice || st.isCharDevice) names.push(e.name);
        } catch { /* gone meanwhile */ }
      }
    }
  } catch { /* no /dev: none */ }
  return names.sort();
}

/** micro's own bounding set, by name (the CapBnd mask of /proc/self/status). */
function ownBoundingSet(): string[] | undefined {
  const m = /^CapBnd:\s*([0-9a-f]+)$/m.exec(readOr("/proc/self/status", ""));
  if (!m) return undefined;
  const mask = BigInt(`0x${m[1]}`);
  return CAPS.filter((_c, i) => (mask >> BigInt(i)) & 1n);
}
