/**
 * The resolved container spec. Shaped like the OCI runtime spec so that an OCI bundle can
 * enter here later and share everything below; fields micro adds live under `micro`.
 */
import type { Resources } from "./cgroups/resources.ts";
import type { PortMapping } from "./cni/ports.ts";

export type NamespaceType =
  | "mount"
  | "pid"
  | "uts"
  | "ipc"
  | "network"
  | "user"
  | "cgroup"
  | "time";

/** The clocks a time namespace offsets. */
export type TimeClock = "monotonic" | "boottime";

export interface IdMapping {
  containerID: number;
  hostID: number;
  size: number;
}

export interface Rlimit {
  type: string; // RLIMIT_NOFILE, ...
  soft: number;
  hard: number;
}

export interface Mount {
  destination: string;
  /**
   * `volume`: a directory micro manages, bound like a `bind`: `source` is its name in the
   * store's `volumes/NAME/_data`, or "" for an anonymous one in the container's directory.
   */
  type: "bind" | "tmpfs" | "proc" | "sysfs" | "devpts" | "mqueue" | "volume";
  source: string;
  options: string[];
  /**
   * An idmapped bind (OCI mounts[].uidMappings/gidMappings): a user namespace with these
   * maps ("containerID hostID size" lines, as runc writes them) idmaps the source's tree.
   */
  idmap?: { uid: string; gid: string };
}

export interface ProcessSpec {
  args: string[];
  env: string[];
  cwd: string;
  /** Set by the user plugin / core; numeric after resolution. */
  user: { uid: number; gid: number; additionalGids: number[] };
  /** `--user` and `--group-add` as given; resolved against the image's files at plan time. */
  userSpec?: string;
  /** The profile's fallback user, taken only when the image names it. */
  defaultUser?: string;
  groupSpecs?: string[];
  /** The environment before the defaults that depend on the user and hostname. */
  envMap?: Record<string, string>;
  terminal: boolean;
  stdin: boolean;
  rlimits: Rlimit[];
  noNewPrivileges: boolean;
  /**
   * `--init`: PID 1 is micro's init (the exec trampoline in init mode), which forks the
   * command, forwards signals to it and reaps zombies until it exits.
   */
  init?: boolean;
  /** Written to /proc/PID/oom_score_adj before the command starts. */
  oomScoreAdj?: number;
  /** The file mode creation mask the command starts with (OCI process.user.umask). */
  umask?: number;
  /** personality(2) persona the command starts with (OCI linux.personality). */
  personality?: number;
  /** OCI process.ioPriority: the I/O class (1 RT, 2 BE, 3 IDLE) and level (0-7). */
  ioPriority?: { class: number; level: number };
  /** OCI process.scheduler: sched_setattr(2)'s fields, the policy and flags as numbers. */
  scheduler?: SchedAttr;
  /**
   * OCI process.execCPUAffinity, for `oci exec` only (the spec: not the container's first
   * process): CPUs the process runs on as it joins the container's cgroup, and from its exec.
   */
  execCPUAffinity?: { initial?: number[]; final?: number[] };
  /** OCI linux.memoryPolicy: set_mempolicy(2)'s mode, flags and nodes (kept across execve). */
  memoryPolicy?: { mode: number; flags: number; nodes: number[] };
  /** Set by the caps plugin; without it the process keeps what its uid gives it. */
  capabilities?: {
    bounding: string[];
    effective: string[];
    permitted: string[];
    inheritable: string[];
    ambient: string[];
  };
  /** Set by the lsm plugin (OCI names). */
  apparmorProfile?: string;
  selinuxLabel?: string;
}

/** `struct sched_attr`'s fields (times in nanoseconds, for SCHED_DEADLINE). */
export interface SchedAttr {
  policy: number;
  flags: number;
  nice: number;
  priority: number;
  runtime: number;
  deadline: number;
  period: number;
}

export interface Spec {
  process: ProcessSpec;
  /** `null` path: the embedded host view (tmpfs root with host dirs bound read-only). */
  root: {
    path: string | null;
    readonly: boolean;
    /** The overlay plugin: the image is the lower layer of a copy-on-write root. */
    overlay?: boolean;
    /**
     * A store image: its layer directories, top first, the overlay's lower layers (`path`
     * is then the top one, for display and checks). Needs the overlay plugin.
     */
    layers?: string[];
  };
  hostname?: string;
  mounts: Mount[];
  linux: {
    namespaces: { type: NamespaceType }[];
    uidMappings: IdMapping[];
    gidMappings: IdMapping[];
    maskedPaths: string[];
    readonlyPaths: string[];
    /** Resource limits (cgroups plugin), OCI `linux.resources`. */
    resources?: Resources;
    /** Devices added to the defaults: bound from the host and allowed by the cgroup. */
    /**
     * Device nodes in the container: the host's node at `hostPath` bound there (`--device`),
     * or, with `node` (OCI linux.devices), a node made with those numbers (bound from the
     * same path on the host in a user namespace, where mknod is not allowed, as runc does).
     */
    devices: { path: string; hostPath: string; access: string; node?: DeviceNode }[];
    /** SELinux context for the container's own mounts (tmpfs, devpts, mqueue). */
    mountLabel?: string;
    /** Namespaced sysctls (sysctl plugin), written under the container's /proc/sys. */
    sysctl?: Record<string, string>;
    /**
     * OCI linux.rootfsPropagation `slave`/`rslave`: the container's mount tree receives the
     * host's mount events (runc's default); absent, it is private (micro's default).
     */
    rootfsSlave?: boolean;
    /** The time namespace's clock offsets (timens plugin; OCI linux.timeOffsets). */
    timeOffsets?: Partial<Record<TimeClock, { secs: number; nanosecs: number }>>;
  };
  micro: {
    /** Host directories bound read-only into a tmpfs root when there is no image. */
    hostView: string[];
    /** Devices bound from the host into the container's /dev. */
    devices: string[];
    /**
     * none, host, bridge (micro's own network), cni (a list in the config dir, `net.name`),
     * or auto (the default profile's: bridge where the host can, else none), resolved
     * against the host probe before the checks (core/cni/resolve.ts).
     */
    network: "none" | "host" | "bridge" | "cni" | "auto" | "pasta" | "slirp4netns" | "container";
    /** The net plugin's options for a CNI network. */
    net?: {
      /** The list's name (`micro` for bridge). */
      name: string;
      publish: PortMapping[];
      dns: string[];
      dnsSearch: string[];
      addHosts: string[];
      configDir: string;
      /** --ip: the address asked of host-local (the `ips` capability). */
      ip?: string;
      /** -P: publish the image's exposed ports (`exposed`, from its config) on free ports. */
      publishAll?: boolean;
      exposed?: { containerPort: number; protocol: "tcp" | "udp" }[];
    };
    /**
     * The bandwidth plugin's limits, as the CNI `bandwidth` capability takes them (bit/s and
     * bits; 0: no limit that way). Ingress is traffic into the container, egress out of it.
     */
    bandwidth?: {
      ingressRate: number;
      ingressBurst: number;
      egressRate: number;
      egressBurst: number;
    };
    /** Why `auto` became none on this host (one warning); unset when it did not. */
    networkFallback?: string;
    /** Files the run writes in its state dir and the mount plugin binds over /etc/NAME. */
    runFiles?: string[];
    /** The enabled plugins, in plugin order. */
    plugins: string[];
    /** The cgroups plugin's placement and the device rates still named by path. */
    cgroup?: {
      parent: string;
      /** The parent is micro's choice (the OCI runtime's default): removed once empty. */
      ownParent?: boolean;
      required: boolean;
      /** The container's cgroup at /sys/fs/cgroup: read-only, writable, or not mounted. */
      mount?: "ro" | "rw" | "none";
      rates: Record<
        "readBps" | "writeBps" | "readIops" | "writeIops",
        { path: string; rate: number }[]
      >;
    };
    /** OCI `linux.resources.devices` rules from a profile, after the defaults. */
    ociDevices?: {
      allow: boolean;
      type?: "a" | "b" | "c";
      major?: number;
      minor?: number;
      access?: string;
    }[];
    /** Whether any limit was asked for (not only the default device list). */
    cgroupLimits?: boolean;
    /** The seccomp plugin is on; with `seccompFile`, its policy comes from that file. */
    seccomp?: boolean;
    seccompFile?: string;
    /** System calls refused on top of the policy. */
    seccompDeny?: string[];
    /** Landlock rules (lsm plugin). */
    landlock?: { path: string; access: ("read" | "write" | "execute")[] }[];
    /** Whether the container's volumes and tmpfs mounts join the Landlock rules. */
    landlockMounts?: boolean;
    /** LSMs the profile marks optional: skipped on a host without them. */
    lsmOptional?: { apparmor: boolean; selinux: boolean; landlock: boolean };
    /** Added capabilities a non-root user gets as ambient ones (caps plugin). */
    ambientCaps?: string[];
    /** Capabilities added by name (not ALL), checked against the namespaces (caps plugin). */
    addedCaps?: string[];
    /** How many ids the user plugin maps (as root). */
    userSize?: number;
    /** `--rm`: the container's layer and record are removed when it exits. */
    remove?: boolean;
    /** The size of /dev/shm in bytes (mount plugin; Docker's 64m when absent). */
    shmSize?: number;
    /** `--stop-signal`, else the image's StopSignal: what SIGTERM to micro sends init. */
    stopSignal?: string;
    /** `--stop-timeout`: seconds from the stop signal to SIGKILL (-1: never; default 10). */
    stopTimeout?: number;
    /** The mount plugin's `hostDevices` (--privileged): every host device in /dev. */
    hostDevices?: boolean;
    /** `ALL` was added (caps plugin): the set is cut to what micro's bounding set holds. */
    capsAll?: boolean;
    /** The cgroups plugin's `oomKillDisable`. */
    oomKillDisable?: boolean;
    /**
     * An OCI bundle's config.json is the spec (core/oci/): its mounts are taken as given, in
     * order (the mount plugin adds none of its own), and its environment as given.
     */
    oci?: { bundle: string };
    /** OCI `--no-new-keyring`: the container keeps the caller's session keyring. */
    noNewKeyring?: boolean;
    /** OCI `--no-pivot`: MS_MOVE and chroot instead of pivot_root (the mount plugin). */
    noPivot?: boolean;
    /** Namespaces joined from running containers (`--ipc container:NAME`), by type. */
    join?: Partial<Record<NamespaceType, string>>;
  };
}

/**
 * A deep copy of plain data (objects, arrays, scalars: what a profile, a spec's resources or
 * a parsed config holds). Not structuredClone: its first call costs a process about 0.7 ms.
 */
export function clonePlain<T>(v: T): T {
  if (Array.isArray(v)) return v.map(clonePlain) as T;
  if (v === null || typeof v !== "object") return v;
  const out: Record<string, unknown> = {};
  for (const k of Object.keys(v)) setKey(out, k, clonePlain((v as Record<string, unknown>)[k]));
  return out as T;
}

/**
 * `out[k] = v`, except that a key "__proto__" (JSON.parse and YAML make one) stays a key:
 * assigned, it would set `out`'s prototype.
 */
export function setKey(out: Record<string, unknown>, k: string, v: unknown): void {
  if (k === "__proto__") {
    Object.defineProperty(out, k, {
      value: v,
      enumerable: true,
      writable: true,
      configurable: true,
    });
  } else out[k] = v;
}

export function emptySpec(): Spec {
  return {
    process: {
      args: [],
      env: [],
      cwd: "/",
      user: { uid: 0, gid: 0, additionalGids: [] },
      terminal: false,
      stdin: false,
      rlimits: [],
      noNewPrivileges: false,
    },
    root: { path: null, readonly: false },
    mounts: [],
    linux: {
      namespaces: [],
      uidMappings: [],
      gidMappings: [],
      maskedPaths: [],
      readonlyPaths: [],
      devices: [],
    },
    micro: { plugins: [], hostView: [], devices: [], network: "host" },
  };
}

/** An OCI device node: its type, numbers, mode and owner (as seen in the container). */
export interface DeviceNode {
  type: "c" | "b" | "u" | "p";
  major: number;
  minor: number;
  mode: number;
  uid: number;
  gid: number;
}

export function hasNamespace(spec: Spec, type: NamespaceType): boolean {
  return spec.linux.namespaces.some((n) => n.type === type);
}
