import type { DeviceRule } from "./cgroups/devfilter.ts";
import type { PortMapping } from "./cni/ports.ts";
import type { SchedAttr } from "./spec.ts";

/**
 * Ops are plain data: plugins return them from `plan`, `micro plan` prints them and the
 * engine is the only code that executes them. Each kind names where it runs by its phase.
 */

/** The fixed phase order (DESIGN.md §3). A plugin never decides the order. */
export const PHASES = [
  "prepare",
  "clone",
  "attach",
  "rootfs",
  "identity",
  "credentials",
  "restrict",
  "exec",
  "supervise",
  "cleanup",
] as const;
export type Phase = typeof PHASES[number];

/** Phases whose ops run in the child, after the clone and before execve. */
export const CHILD_PHASES: readonly Phase[] = [
  "rootfs",
  "identity",
  "credentials",
  "restrict",
  "exec",
];

export type MountFlag =
  | "MS_RDONLY"
  | "MS_NOSUID"
  | "MS_NODEV"
  | "MS_NOEXEC"
  | "MS_REMOUNT"
  | "MS_BIND"
  | "MS_REC"
  | "MS_PRIVATE"
  | "MS_SLAVE"
  | "MS_STRICTATIME"
  | "MS_RELATIME"
  | "MS_NOATIME"
  | "MS_NODIRATIME"
  | "MS_NOSYMFOLLOW"
  | "MS_SYNCHRONOUS"
  | "MS_DIRSYNC"
  | "MS_MANDLOCK"
  | "MS_LAZYTIME"
  | "MS_I_VERSION"
  | "MS_SILENT"
  | "MS_SHARED"
  | "MS_UNBINDABLE";

/** The arguments of each op kind. */
export interface OpArgs {
  /** clone: one namespace flag for the single clone call. */
  namespace: { flag: string };
  /**
   * clone: instead of a new namespace, the one of the running micro container `container`
   * (its init, found through micro's state and opened once as a pidfd): micro enters it
   * with setns right before the clone, and its own again right after.
   */
  join: { flag: string; container: string };
  /**
   * rootfs (`micro exec`): every namespace of the running container `container` that is not
   * micro's own, entered by the child in one setns through the pidfd of the container's
   * init (the kernel enters the user namespace first, as runc does). With the pid namespace
   * the child forks once more (CLONE_PARENT: micro's child), so the process itself is in it.
   */
  enter: { container: string; flags: string[] };
  /**
   * rootfs: a namespace entered by the child itself, after the parent placed it: the
   * cgroup namespace, so its root is the container's own cgroup (runc does the same).
   */
  unshare: { flag: string };
  /**
   * OCI exec: the child enters the container's namespaces that only a single-threaded
   * process may (mount, user) through the container's pidfd (ChildContext.nsFd).
   * Not `enter`: OCI exec joins the other namespaces (pid included) in the parent before the
   * clone (`join`, so the child is born in the pid namespace and needs no second fork), and
   * the OCI container is no micro run (no state to find by name, no death signal or detach
   * handling); `enter` enters all at once in the child and forks for the pid namespace.
   */
  setns: { flags: string[] };
  /** attach: write a file of the child's under /proc/PID (uid_map, gid_map, setgroups). */
  "proc-write": {
    file: "uid_map" | "gid_map" | "setgroups" | "oom_score_adj";
    content: string;
  };
  /**
   * attach: a setuid helper (newuidmap, newgidmap) writes the child's `map` from `args`
   * ("container host count ..."): only it may map the caller's subordinate ids.
   */
  "idmap-helper": { helper: string; map: "uid_map" | "gid_map"; args: string };
  /**
   * rootfs: mount. `target` is a container path; before pivot_root it is resolved inside the
   * new root by the kernel (openat2 RESOLVE_IN_ROOT), so no symlink can move it outside.
   * `source` is a host path, or a container path when `sourceInRoot`.
   */
  mount: {
    source: string;
    target: string;
    fstype: string;
    flags: MountFlag[];
    data?: string;
    /**
     * The mount's propagation once attached (OCI's shared, rslave, unbindable...): one of
     * MS_SHARED, MS_SLAVE, MS_PRIVATE, MS_UNBINDABLE, with MS_REC for the r- forms.
     */
    propagation?: MountFlag[];
    /** A tmpfs that starts with a copy of the image's directory it covers (`tmpcopyup`). */
    copyUp?: boolean;
    sourceInRoot?: boolean;
    /**
     * The source is made while micro attaches the child (the network's hosts, hostname and
     * resolv.conf): the child mounts it only after it waited for the attach (child.ts
     * EARLY_KINDS).
     */
    attached?: boolean;
    /** Create the target (a directory, or an empty file for `file`) if it is missing. */
    create?: "dir" | "file";
    /**
     * The container's /proc or /sys: mounted detached (fsopen/open_tree) onto a real
     * directory (no symlink on the way), and the mount's root fd kept, so the masks and
     * read-only paths under it are found in this very file system, never by name again.
     */
    kernelFs?: "proc" | "sys";
    /** A file bound over one of the /proc files runc allows (lxcfs); others are refused. */
    overProc?: boolean;
    /** An idmapped bind: the maps of the user namespace the source's tree is idmapped with. */
    idmap?: { uid: string; gid: string };
    /**
     * Set by the runtime once it made the idmapped tree (core/engine/idmapped.ts): the
     * index of the detached tree the child attaches at the target instead of binding.
     */
    tree?: number;
  };
  /**
   * rootfs: a device node made in the root (OCI linux.devices; `u` is a character device), its
   * owner and mode set; one already there is kept, as runc does.
   */
  mknod: {
    path: string;
    type: "c" | "b" | "u" | "p";
    major: number;
    minor: number;
    mode: number;
    uid: number;
    gid: number;
  };
  /**
   * rootfs: make the whole tree private so nothing propagates back to the host; with
   * `slave` (OCI rootfsPropagation rslave), a slave: the host's mount events still come in.
   */
  "make-private": { slave?: boolean };
  /**
   * rootfs: the new root: the image (a copy of the mount of the directory the parent
   * opened), or a tmpfs with no image; with `overlay`, an overlay on top whose lower layer is
   * that image copy and whose upper and work directories are the container's own, so
   * nothing is ever written into the image.
   */
  "bind-root": {
    source: string | null;
    readonly: boolean;
    /**
     * `lowers`: a store image's layer directories, top first: the overlay's lower layers
     * instead of the image copy (which is then not attached at all).
     */
    overlay?: { upper: string; work: string; userxattr: boolean; lowers?: string[] };
  };
  /**
   * prepare: `upper` and `work` for the overlay in the container's own directory (which
   * the run made with its record), owned by the container's root (its host id from the
   * run's uid_map and gid_map).
   */
  "overlay-dirs": { dir: string };
  /**
   * prepare: a volume's directory, made when missing (a named volume's on first use),
   * owned by the container's root; one that exists is used as it is. `dir` is the volume's
   * own directory (`volumes/NAME` or the container's `volumes/N`), `path` its `_data`.
   */
  "volume-dir": { dir: string; path: string };
  /** cleanup, with `--rm` only: remove the container's directory (its writes go with it). */
  "overlay-remove": { dir: string };
  /**
   * rootfs: hide a path: /dev/null over a file, an empty read-only tmpfs over a directory.
   * Under /proc or /sys it is looked up in the file system micro just mounted there; a path
   * that file system lacks (this kernel has no such file) has nothing to hide.
   */
  mask: { path: string };
  /** rootfs: bind a path onto itself read-only, found as a mask is; a missing one is skipped. */
  "readonly-path": { path: string };
  mkdir: { path: string; mode: number };
  symlink: { target: string; path: string };
  /**
   * rootfs: pivot_root into the new root and detach the old one; with `move` (OCI
   * `--no-pivot`, for a root pivot_root refuses, such as a ramfs), runc's MS_MOVE of the new
   * root onto / and chroot instead: the old root stays beneath it in the namespace.
   */
  "pivot-root": { move?: boolean };
  /** rootfs: remount / read-only (after pivot_root). */
  "remount-root-ro": Record<never, never>;
  /** rootfs: become root of the new user namespace so created files get mapped owners. */
  "userns-root": Record<never, never>;
  /**
   * rootfs (after pivot_root): a terminal from the container's own devpts; the slave becomes
   * stdio and the controlling terminal, the master goes to the parent over the report socket.
   */
  console: Record<never, never>;
  /** identity */
  sethostname: { name: string };
  /** identity: bring the loopback interface up in a new network namespace. */
  "loopback-up": Record<never, never>;
  /** credentials */
  setgroups: { gids: number[] };
  setresgid: { gid: number };
  setresuid: { uid: number };
  setrlimit: { resource: string; soft: number; hard: number };
  /** credentials: the command's umask (it keeps it across execve). */
  umask: { mask: number };
  /** credentials: the command's execution domain (kept across execve; PER_LINUX32: 0x8). */
  personality: { persona: number };
  /**
   * rootfs: the time namespace's clock offsets, written by the child to its own
   * /proc/self/timens_offsets right after unshare(CLONE_NEWTIME), before any process is in
   * the namespace (the command enters it at execve).
   */
  "time-offsets": { text: string };
  /** credentials: the command's I/O priority (ioprio_set; kept across execve and fork). */
  ioprio: { class: number; level: number };
  /** credentials: the command's scheduling policy (sched_setattr), before caps are dropped. */
  "sched-setattr": SchedAttr;
  /**
   * The CPUs a process may run on (sched_setaffinity). attach: the parent sets the waiting
   * child's before it joins the container's cgroup (OCI execCPUAffinity.initial); exec: the
   * child sets its own right before its execve (execCPUAffinity.final).
   */
  "cpu-affinity": { cpus: number[] };
  /** credentials: the command's NUMA memory policy (set_mempolicy; kept across execve). */
  mempolicy: { mode: number; flags: number; nodes: number[] };
  /**
   * credentials: the container's stdio that micro made (its pipes, the terminal's slave) is
   * given to a process user that is not root, before it becomes that user, as runc's
   * fixStdioPermissions does: reopening /dev/stdout (/proc/self/fd/1) checks the pipe's or
   * the terminal's own permissions, 0600 or 0620 for their owner. (In a user namespace the
   * engine gives its pipes to the container's root first, see core/engine/mod.ts.)
   */
  "stdio-owner": { uid: number };
  /**
   * restrict: the five capability sets. Every capability up to `lastCap` that is not in
   * `bounding` is dropped from the bounding set; then capset and the ambient set.
   */
  capabilities: {
    bounding: string[];
    effective: string[];
    permitted: string[];
    inheritable: string[];
    ambient: string[];
    lastCap: number;
  };
  /**
   * prepare: a cgroup directory. `shared`: a parent other runs may use too, removed at the
   * end once empty only if this run made it, or if it is micro's own (`owned`).
   */
  "cgroup-create": { path: string; shared: boolean; owned?: boolean };
  /** prepare: a cgroup file; `ifEmpty`: only when it holds nothing yet (v1 cpuset). */
  "cgroup-write": {
    path: string;
    value: string;
    option: string;
    ifEmpty?: boolean;
    /** Written instead when `path` does not exist on this kernel. */
    fallback?: string;
    /** The value for `fallback`, when it differs (v2 io.weight's scale). */
    fallbackValue?: string;
    /** Skipped when `path` does not exist on this kernel (hugetlb's rsvd files). */
    optional?: boolean;
  };
  /** prepare (v2): the device allow-list as a BPF_PROG_TYPE_CGROUP_DEVICE program. */
  "cgroup-devices": { path: string; rules: DeviceRule[] };
  /** attach: the child joins the cgroup before it may run anything. */
  "cgroup-join": { path: string };
  /**
   * rootfs (after the cgroup namespace is entered): the container's own cgroup at
   * /sys/fs/cgroup, found beneath the sysfs micro mounted, as Docker shows it: on v2 a
   * cgroup2 mount; on v1 a tmpfs with one cgroup mount per hierarchy the container has a
   * cgroup in (`name`: its directory, `controllers`: its mount options, `links`: names of
   * co-mounted controllers made symlinks to it). In the namespace, each shows the
   * container's cgroup as its root, so nothing of the host's other cgroups is seen.
   */
  "cgroup-mount": {
    version: 1 | 2;
    hierarchies: { name: string; controllers: string[]; links: string[] }[];
    readonly: boolean;
  };
  /** supervise: after the exit, whether the OOM killer struck (a counter in `path`). */
  "cgroup-oom": { path: string; key: string; limit: number };
  /** cleanup: kill every process left in the cgroup (v2 cgroup.kill, v1 freezer). */
  "cgroup-kill": { path: string; how: "cgroup.kill" | "freezer" | "signal" };
  /** cleanup: remove a cgroup directory (a shared parent only once it is empty). */
  "cgroup-remove": { path: string; shared: boolean };
  /** Any phase: something the profile asked for that this host lacks and marked optional. */
  skipped: { what: string; reason: string };
  /** restrict: the LSM label the command gets at exec (/proc/thread-self/attr/...). */
  "lsm-label": { file: string; value: string };
  /** restrict */
  "no-new-privs": Record<never, never>;
  /**
   * restrict: confine the container's own file system access (Landlock). Paths that are
   * missing are skipped; `abi` decides which access rights the kernel can handle.
   */
  landlock: { abi: number; rules: { path: string; access: ("read" | "write" | "execute")[] }[] };
  /**
   * A compiled classic-BPF program (base64 of its sock_filters) loaded with seccomp(2):
   * last in restrict under no_new_privs; without it, first in credentials, while the
   * process still has CAP_SYS_ADMIN (as runc does).
   */
  seccomp: {
    arch: string;
    instructions: number;
    policy: string;
    flags: number;
    program: string;
    /**
     * SCMP_ACT_NOTIFY rules: the child sends the filter's listener fd to micro, which sends
     * it to `path` (a unix socket) with the container process state, then lets it go on.
     */
    listener?: { path: string; metadata: string };
  };
  /**
   * identity: a new anonymous session keyring, as runc's (unless OCI `--no-new-keyring`):
   * the container does not share the keys of micro's caller's session.
   */
  "session-keyring": Record<string, never>;
  /**
   * attach: ADD the waiting child to a CNI network (core/cni): `config` is the list as JSON,
   * recorded with the result in `cache` (the run's state dir) before ADD runs; `files`: the
   * container's hosts, hostname and resolv.conf, written in `files.dir` once the address is
   * known (the mount plugin binds them).
   */
  "cni-add": {
    network: string;
    config: string;
    containerId: string;
    ifName: string;
    cniPath: string[];
    portMappings: PortMapping[];
    /** The `bandwidth` capability's limits (plugins/bandwidth.ts), in bit/s and bits. */
    bandwidth?: {
      ingressRate: number;
      ingressBurst: number;
      egressRate: number;
      egressBurst: number;
    };
    cache: string;
    /** --ip: the `ips` capability argument. */
    ip?: string;
    /** -P: container ports published on free host ports, chosen right before ADD. */
    publishAll?: { containerPort: number; protocol: "tcp" | "udp" }[];
    /** The bridge to delete after DEL when no other run holds the network. */
    transientBridge?: string;
    /** A created `--internal` network's bridge (core/cni/bridge.ts networkRulesScript). */
    internalBridge?: string;
    /** What micro makes itself after ADD for its own networks (bridge.ts takeOwnRules). */
    ownRules?: { isolate?: string; masquerade?: { bridge: string; subnet: string } };
    files?: { dir: string; hostname: string; resolv: string; addHosts: string[] };
  };
  /** cleanup: DEL the container from the networks recorded in `cache`. */
  "cni-del": { cache: string };
  /**
   * `--network container:NAME`: the joined container's /etc/hosts, /etc/hostname and
   * /etc/resolv.conf, shared as Docker shares them (hard links in this run's state dir).
   */
  "net-join-files": { container: string; dir: string; hostname: string; names: string[] };
  /**
   * attach: start a rootless network's helper (core/usernet: pasta or slirp4netns at
   * `path`) for the waiting child, its records in `dir` (the run's state dir); `files` as
   * cni-add's, `address` the container's when it is known before the helper runs.
   */
  "usernet-start": {
    tool: "pasta" | "slirp4netns";
    path: string;
    publish: PortMapping[];
    dir: string;
    files?: {
      hostname: string;
      address?: string;
      resolv: string;
      addHosts: string[];
    };
  };
  /** cleanup: stop the helper recorded in `dir`. */
  "usernet-stop": { tool: "pasta" | "slirp4netns"; dir: string };
  /**
   * supervise: what SIGTERM to micro does while the command runs: `signal` (its `number`) to
   * the container's init, then SIGKILL after `timeout` seconds (-1: never).
   */
  stop: { signal: string; number: number; timeout: number };
  /**
   * rootfs, right after the container's /proc is mounted (before its read-only paths): a
   * namespaced sysctl, written to /proc/sys/KEY beneath that very mount.
   */
  sysctl: { key: string; value: string };
  /**
   * exec: an OCI hook run inside the container by the child (core/engine/hook.ts):
   * createContainer right before pivot_root, startContainer after `start`, right before
   * the command's exec; the state is the container's at that point, its pid the child's.
   */
  "oci-hook": {
    hook: "createContainer" | "startContainer";
    index: number;
    path: string;
    args: string[];
    env: string[];
    timeout?: number;
    state: {
      ociVersion: string;
      id: string;
      status: string;
      bundle: string;
      annotations?: Record<string, string>;
    };
  };
  /** exec */
  chdir: { path: string };
  /** `init`: the trampoline stays as the container's init and runs the command in a child. */
  execve: { args: string[]; env: string[]; path: string[]; init?: boolean };
}

export type OpKind = keyof OpArgs;

export type Op = {
  [K in OpKind]: { phase: Phase; plugin: string; kind: K; args: OpArgs[K] };
}[OpKind];

export function op<K extends OpKind>(
  phase: Phase,
  plugin: string,
  kind: K,
  args: OpArgs[K],
): Op {
  return { phase, plugin, kind, args } as Op;
}
