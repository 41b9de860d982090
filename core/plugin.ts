/** The plugin contract (DESIGN.md §2). */
import type { CgroupLayout } from "./cgroups/layout.ts";
import type { MicroError } from "./errors.ts";
import type { RootlessIds } from "./idmap.ts";
import type { Op } from "./ops.ts";
import type { ObjectSchema } from "./schema_types.ts";
import type { Spec } from "./spec.ts";
import type { OwnRules } from "./cni/bridge.ts";

/** What the host probe found, gathered once before planning so plan() needs no I/O. */
export interface HostInfo {
  arch: "x86_64" | "aarch64";
  /** The caller's real ids; a non-root caller runs rootless. */
  uid: number;
  gid: number;
  /** From /etc/subuid and /etc/subgid for the `micro` account, when they name one. */
  subuid?: { start: number; count: number };
  subgid?: { start: number; count: number };
  /**
   * A non-root caller with a user namespace: its ranges in /etc/subuid and /etc/subgid and
   * the newuidmap/newgidmap helpers, for podman's rootless maps (core/idmap.ts).
   */
  rootlessIds?: RootlessIds;
  /** The run's id (the container's name) and its directory under the state root. */
  id: string;
  /**
   * The default hostname: the container's short id (12 hex digits), whatever its name, as
   * Docker's (a name may be longer than the kernel's 64); absent, the run id.
   */
  hostname?: string;
  stateDir: string;
  /** Where containers keep their file system changes (the store's `containers/<id>`). */
  containerDir: string;
  /** Where named volumes live (the store's `volumes`): `NAME/_data` each, as Docker's. */
  volumesDir?: string;
  /** For the no-image root: the host paths to bind, as found (merged /usr makes symlinks). */
  hostView: { path: string; kind: "dir" | "symlink"; target?: string }[];
  /** Device nodes that exist on the host, by name under /dev. */
  devices: string[];
  /** The image's /etc/passwd and /etc/group (the host's with no image), for `--user`. */
  passwd: string;
  group: string;
  /** The cgroup layout and what the cgroups plugin checks limits against. */
  cgroup: CgroupLayout;
  /** Online CPUs and memory nodes, as lists (`0-1`). */
  cpus: string;
  mems: string;
  /** Whether v1 accounts swap (memory.memsw.* exists). */
  swapAccounting: boolean;
  /** Device nodes the spec names (by host path): block or char, and their numbers. */
  deviceNodes: Record<string, { type: "b" | "c"; major: number; minor: number }>;
  /** Files the spec names that plan() reads (a seccomp profile), by path. */
  files: Record<string, string>;
  /** Why a file the spec names was not read ("is a FIFO, not a regular file"), by path. */
  fileErrors?: Record<string, string>;
  /** The highest capability number the kernel knows (/proc/sys/kernel/cap_last_cap). */
  capLastCap: number;
  /**
   * micro's own bounding set (CapBnd of /proc/self/status), by name, when `ALL` was added:
   * a capability outside it cannot be given to anyone.
   */
  capBounding?: string[];
  /** Security modules this kernel has enabled; `landlock` is its ABI version, 0 if none. */
  lsm: {
    apparmor: boolean;
    selinux: boolean;
    landlock: number;
    /** The AppArmor exec attribute under /proc/thread-self/attr (kernels < 5.8: `exec`). */
    apparmorAttr?: string;
  };
  /** What the image path is on the host; null when there is no image. */
  image: "dir" | "other" | "missing" | null;
  /** What each bind source in the spec is on the host (absent: it does not exist). */
  sourceKinds: Record<string, "file" | "dir">;
  /** For a CNI network (bridge, cni, auto): what the CNI runtime needs, probed then only. */
  net?: NetFacts;
}

export interface NetFacts {
  /** Where plugin binaries are looked for (CNI_PATH, else /usr/lib/cni and /opt/cni/bin). */
  cniPath: string[];
  /** What this host lacks for the network, each a phrase with how to get it. */
  missing: string[];
  /** The configuration list as JSON (micro's own, made with the subnet chosen here). */
  config?: string;
  /** Why there is no list: an unknown network, no free subnet. */
  configError?: string;
  /** The host's /etc/resolv.conf and systemd-resolved's upstream list ("" if absent). */
  resolv: string;
  resolvUpstream: string;
  /** The rootless networks' helpers found on this host (core/usernet), by path. */
  helpers?: Partial<Record<"pasta" | "slirp4netns", string>>;
  /** MICRO_DEFAULT_NETWORK: what `auto` becomes when set (none or bridge). */
  defaultNetwork?: string;
  /** The network's IPv4 subnet when micro knows it (its own and created networks). */
  subnet?: string;
  /** Whether a plugin of the list takes the `ips` capability (--ip). */
  ips?: boolean;
  /** The bridge that goes with the network's last container (micro's default network). */
  transientBridge?: string;
  /** A created `--internal` network's bridge: its drop rules are made after ADD. */
  internalBridge?: string;
  /**
   * micro's networks (its own and created ones): the isolation and masquerade micro makes
   * after ADD, once per bridge, in one iptables-restore (core/cni/bridge.ts takeOwnRules).
   */
  ownRules?: OwnRules;
}

export interface Plugin<O = Record<string, unknown>> {
  name: string;
  /** One line for `micro profile show` and the README. */
  description: string;
  /** Options accepted in the plugin's profile section (besides `enabled`). */
  schema: ObjectSchema;
  /** Profile options to its part of the spec. No I/O. */
  configure(options: O, spec: Spec): void;
  /** Its part of the spec to ops in phases. No I/O, no syscalls. */
  plan(spec: Spec, host: HostInfo): Op[];
  /** Problems the host cannot honour, found before anything runs. Pure. */
  check?(spec: Spec, host: HostInfo): MicroError[];
  /**
   * Loads the modules check() and plan() need for this spec that a run without it does not
   * load (every module loaded costs a run in proportion to its size: core/v8.ts). Awaited
   * before check() and plan() by core/prepare.ts and by the OCI runtime's planTranslated.
   */
  load?(spec: Spec, host: HostInfo): Promise<void>;
}
