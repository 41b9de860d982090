/**
 * The child side of the fork engine. `compileChild` runs in the parent and turns the child's
 * ops into steps whose every string and buffer is already encoded; `runChild` runs in the
 * cloned child, where only synchronous FFI calls are safe (DESIGN.md §4): no await, no
 * timers, no console, no Deno.* ops. A failing step sends `{step, errno}` on the report
 * socket and exits; EOF there (the socket is O_CLOEXEC) tells the parent execve succeeded.
 *
 * The child never execs the command itself: at that moment its /proc/self/exe is the host's
 * Deno runtime, and a command that is `/proc/self/exe` (or a `#!/proc/self/exe` script) would
 * run it, and could write it, as the container's root (CVE-2019-5736). It execs the exec
 * trampoline instead, a tiny static program in a sealed memfd (tools/trampoline/), which
 * looks the command up and execs it, or reports EXEC_FAILED_RECORD.
 */
import {
  C,
  type CStr,
  cstr,
  cstrArray,
  fromBase64,
  RLIMITS,
  type Sys,
  SysUnwind,
  type VforkExec,
} from "../sys/mod.ts";
import { capMask, capNumber, CAPS } from "../caps.ts";
import type { MountFlag, Op, OpArgs } from "../ops.ts";
import type { CopyUp } from "./copyup.ts";
import { bitmask, MPOL_MODES, schedAttr } from "../sched.ts";
import { now, span } from "../trace.ts";

/**
 * The steps of OCI hooks and of copy-up (core/engine/hook.ts, copyup.ts: about 9 kB that a
 * plan without them never calls), loaded by `loadChildSteps` for a plan that has them, in
 * the parent before anything is cloned (nothing may compile in the child).
 */
let hookSteps: typeof import("./hook.ts") | undefined;
let copyUpSteps: typeof import("./copyup.ts") | undefined;

/** Loads what compileChild needs for `ops` beyond this module; awaited before it. */
export async function loadChildSteps(ops: readonly Op[]): Promise<void> {
  if (!hookSteps && ops.some((o) => o.kind === "oci-hook")) hookSteps = await import("./hook.ts");
  if (!copyUpSteps && ops.some((o) => o.kind === "mount" && o.args.copyUp)) {
    copyUpSteps = await import("./copyup.ts");
  }
}

/** A loaded step module (loadChildSteps), or the internal error of a caller that did not. */
function loadedSteps<T>(mod: T | undefined, what: string): T {
  if (!mod) throw new Error(`internal: ${what} ops compiled before loadChildSteps`);
  return mod;
}

/** Why an OCI hook failed, from its step's errno (for the run's error; core/engine/hook.ts). */
export function hookFailure(code: number, timeout?: string): string | undefined {
  return hookSteps?.hookFailure(code, timeout);
}

/** What a step is, for the error the parent builds from a child's report. */
export interface StepInfo {
  phase: string;
  plugin: string;
  kind: string;
  paths: Record<string, string>;
  /** What an errno means for this step when the generic hint would mislead. */
  hints?: Record<number, string>;
}

export interface ChildProgram {
  info: StepInfo[];
  run: (() => number)[];
  /** The report socket's fd in the child now: it moves to a fixed number early on. */
  reportFd: () => number;
  /** The command's exec, for the trampoline's EXEC_FAILED_RECORD (absent: no execve op). */
  exec?: StepInfo;
  /** The trampoline runs as the container's init (`--init`): it may send INIT_FAILED_RECORD. */
  init?: boolean;
  /**
   * sync "none" (a vfork child, core/engine/vfork.ts): the exec the stub makes once every
   * step ran; its record names the last step, a no-op that stands for it.
   */
  vfork?: Omit<VforkExec, "code">;
}

/** Namespace flags by name, for ops that name them. */
export const CLONE_FLAGS: Record<string, number> = {
  CLONE_NEWNS: C.CLONE_NEWNS,
  CLONE_NEWCGROUP: C.CLONE_NEWCGROUP,
  CLONE_NEWUTS: C.CLONE_NEWUTS,
  CLONE_NEWIPC: C.CLONE_NEWIPC,
  CLONE_NEWUSER: C.CLONE_NEWUSER,
  CLONE_NEWPID: C.CLONE_NEWPID,
  CLONE_NEWNET: C.CLONE_NEWNET,
  CLONE_NEWTIME: C.CLONE_NEWTIME,
};

/** Landlock access rights (linux/landlock.h) and what each ABI version handles. */
const LL = {
  EXECUTE: 1,
  WRITE_FILE: 2,
  READ_FILE: 4,
  READ_DIR: 8,
  REMOVE_DIR: 16,
  REMOVE_FILE: 32,
  MAKE_CHAR: 64,
  MAKE_DIR: 128,
  MAKE_REG: 256,
  MAKE_SOCK: 512,
  MAKE_FIFO: 1024,
  MAKE_BLOCK: 2048,
  MAKE_SYM: 4096,
  REFER: 8192,
  TRUNCATE: 16384,
  IOCTL_DEV: 32768,
};
const LANDLOCK_FILE_RIGHTS = LL.EXECUTE | LL.WRITE_FILE | LL.READ_FILE | LL.TRUNCATE |
  LL.IOCTL_DEV;

export function landlockHandled(abi: number): number {
  let h = 0x1fff; // ABI 1: EXECUTE .. MAKE_SYM
  if (abi >= 2) h |= LL.REFER;
  if (abi >= 3) h |= LL.TRUNCATE;
  if (abi >= 5) h |= LL.IOCTL_DEV;
  return h;
}

export function landlockRights(access: readonly string[]): number {
  let r = 0;
  if (access.includes("read")) r |= LL.READ_FILE | LL.READ_DIR;
  if (access.includes("execute")) r |= LL.EXECUTE;
  if (access.includes("write")) {
    r |= LL.WRITE_FILE | LL.REMOVE_DIR | LL.REMOVE_FILE | LL.MAKE_CHAR | LL.MAKE_DIR |
      LL.MAKE_REG | LL.MAKE_SOCK | LL.MAKE_FIFO | LL.MAKE_BLOCK | LL.MAKE_SYM | LL.REFER |
      LL.TRUNCATE | LL.IOCTL_DEV;
  }
  return r;
}

/** A container path made absolute against `cwd` and folded lexically (`.`, `..`). */
function absolutePath(path: string, cwd: string): string {
  const out: string[] = [];
  for (const seg of (path.startsWith("/") ? path : `${cwd}/${path}`).split("/")) {
    if (seg === "..") out.pop();
    else if (seg && seg !== ".") out.push(seg);
  }
  return `/${out.join("/")}`;
}

/**
 * The hint for an exec that failed with EACCES while Landlock is on: the first candidate
 * that is beneath no path the rules give execute access, named with the profile key that
 * adds it; undefined when every candidate is beneath one (then the cause is elsewhere).
 * Lexical, as Landlock's rules are paths: a symlink that leads into an allowed directory
 * is not followed here, and would not be refused by Landlock either.
 */
export function landlockExecHint(
  candidates: readonly string[],
  rules: readonly { path: string; access: readonly string[] }[],
  cwd = "/",
): string | undefined {
  const exec = rules.filter((r) => r.access.includes("execute")).map((r) => r.path);
  const beneath = (p: string, dir: string) =>
    dir === "/" || p === dir || p.startsWith(dir.endsWith("/") ? dir : `${dir}/`);
  const denied = candidates.map((c) => absolutePath(c, cwd)).find((c) =>
    !exec.some((d) => beneath(c, d))
  );
  if (denied === undefined) return undefined;
  // Its directory; a file right under / is named itself (allowing / would allow everything).
  const dir = denied.slice(0, denied.lastIndexOf("/")) || denied;
  return `Landlock's rule set does not allow executing ${denied}: add ` +
    `{path: ${dir}, access: [read, execute]} to lsm.landlock.paths+ in a profile that ` +
    `extends this one`;
}

/** The record a child sends with the terminal's master fd attached. */
export const CONSOLE_RECORD = -2;
/** The record a child sends right before execve: from here on, death is the command's. */
export const READY_RECORD = -3;
/** `[EXEC_FAILED_RECORD, errno]`: the trampoline found no candidate it could exec. */
export const EXEC_FAILED_RECORD = -4;
/** `[LABEL_FAILED_RECORD, errno]`: the trampoline could not write the LSM exec label. */
export const LABEL_FAILED_RECORD = -5;
/** `[INIT_FAILED_RECORD, errno]`: the trampoline in init mode could not set itself up. */
export const INIT_FAILED_RECORD = -6;
/**
 * `[PID_RECORD, pid]`: the child of an `enter` op forked into the container's pid namespace;
 * this pid (micro's child too, by CLONE_PARENT) goes on, the first child leaves.
 */
export const PID_RECORD = -7;
/**
 * `[SECCOMP_RECORD, 0]` with the listener fd of a filter with SCMP_ACT_NOTIFY rules: micro
 * sends it on to the OCI listenerPath, then writes 8 bytes back for the child to go on.
 */
export const SECCOMP_RECORD = -8;
/**
 * `[THREW_RECORD, step]`: a step threw (micro's own bug, not the kernel's refusal). The child
 * reports it and exits rather than unwind: in a forked copy of micro, an exception that left
 * the child's code would run micro's own error path and cleanup in the container's
 * namespaces.
 */
export const THREW_RECORD = -9;
/** The trampoline's argv[0] that makes it the container's init (`--init`). */
export const INIT_MODE = "init";

/**
 * Fixed fd numbers in the child. O_PATH descriptors go to known numbers so their /proc paths
 * are known; what the child keeps from the parent moves to FD_KEEP.. and every other fd above
 * 2 is closed before anything is resolved (an inherited directory fd must never be reachable
 * through /proc/self/fd: the CVE-2024-21626 class).
 */
const FD_TARGET = 1000;
const FD_SOURCE = 1001;
const FD_ROOT = 1002;
/** The root of the container's procfs and sysfs mounts: masks are looked up beneath them. */
const FD_PROC = 1003;
const FD_SYS = 1004;
/** What the child keeps from the parent, at fixed numbers; every other fd is closed. */
const FD_KEEP = 1010;
const FD_REPORT = FD_KEEP;
const FD_IMAGE = FD_KEEP + 1;
/** The sealed memfd holding the exec trampoline (close-on-exec). */
export const FD_EXE = FD_KEEP + 2;
/**
 * Detached copies (open_tree) of the directory holding a store image's layers and of the
 * container's own directory, from a root parent: attached in the child's mount namespace
 * on empty directories of the run's state, the overlay names its layers through them, so
 * its mounter (the root of a user namespace: another host user) never walks the store above
 * them, which nobody else may search (set-user-ID files and device nodes of images live
 * below). Gone with the old root at the pivot.
 */
const FD_LAYERS = FD_KEEP + 3;
const FD_CONTAINER = FD_KEEP + 4;
/** The pidfd of a running container's init, for an `enter` op (`micro exec`). */
const FD_ENTER = FD_KEEP + 5;
/**
 * The OCI runtime's exec fifo (an O_PATH fd of `exec.fifo` in the container's state dir):
 * right before the exec the child opens it for writing, which blocks until `start` opens
 * it for reading (runc's design: `create` returns with the process waiting there).
 */
const FD_FIFO = FD_KEEP + 5;
/** OCI exec: a pidfd of the container's first process, for the `setns` op. */
const FD_NS = FD_KEEP + 6;
/** The sync pipe's read end, when the child waits for the parent after its first steps. */
const FD_SYNC = FD_KEEP + 7;
/** The exec fifo reopened through procfs's fd directory (checked), by its number there. */
const FIFO_DIR = cstr("/proc/self/fd");
const FIFO_NAME = cstr(String(FD_FIFO));
/**
 * Idmapped copies of a store image's layers (see idmapped.ts), kept from here up and
 * attached on the directories `layerMounts` names (the overlay's lower directories).
 */
export const FD_IDMAPPED = 1100;

/**
 * The ops a child runs before its late wait (ChildContext.sync): becoming root in its user
 * namespace and making its root, in its own mount namespace from fds and paths the parent
 * prepared before the clone. Nothing of the container runs before the wait; a mount of what
 * the attach makes (its `attached` files, a cgroup file system), a tmpfs filled from the
 * image, a device node (the cgroup's device rules), a mask where the network is attached, and
 * everything after the root (identity, credentials, restrictions, exec) come after it.
 */
const EARLY_KINDS: ReadonlySet<string> = new Set([
  "make-private",
  "bind-root",
  "mount",
  "mask",
  "readonly-path",
  "mkdir",
  "symlink",
  "pivot-root",
  "remount-root-ro",
  "userns-root",
  "skipped",
]);
/** EXDEV is what the child reports for a destination refused by its own checks. */
const E_REFUSED = 18;
/**
 * The report socket as the trampoline finds it (inherited; it sets close-on-exec itself).
 * Low numbers, placed right before the exec: after the command's RLIMIT_NOFILE is set, no
 * fd above it can be made.
 */
export const FD_TRAMPOLINE_REPORT = 3;
/**
 * The LSM's exec attribute (/proc/thread-self/attr/...), open for the trampoline: it writes
 * the label, so the label applies at the command's exec, as if the child had exec'd it.
 */
export const FD_LABEL = 4;

export interface ChildContext {
  /** Host path where the new root is staged (a directory the engine made). */
  rootPath: string;
  syncRead: number;
  syncWrite: number;
  /**
   * When the child waits for the parent (one byte from it each time):
   * - "first" (the default): before anything but PR_SET_PDEATHSIG, until micro has attached
   *   it (OCI hooks run before its pivot_root);
   * - "root": after it made its root (EARLY_KINDS), which needs nothing of the attach (no
   *   user namespace), so that the two overlap on two CPUs;
   * - "maps": both, the first until micro wrote its id maps (and did the other /proc and
   *   affinity work of the attach), the second after its root, until the cgroups and the
   *   network are attached.
   * - "none": never; a vfork child (core/engine/vfork.ts), which nothing is attached to but
   *   its cgroups, which it joins itself (`cgroupProcs`).
   */
  sync?: "first" | "root" | "maps" | "none";
  /** sync "none": the run's cgroup.procs files, open for writing; the child writes "0". */
  cgroupProcs?: readonly { fd: number; path: string }[];
  /**
   * sync "none": the signals micro ignores (read as the child was made), the only ones its
   * reset must touch: every signal stays blocked until the exec, which resets the handled
   * ones itself. Absent: all of them.
   */
  ignoredSignals?: readonly number[];
  /**
   * sync "none", in a user namespace: the child's end of the socket micro's writer thread
   * waits on (Sys.procWrites): the child asks for its id maps there, first, and waits for
   * them to be written.
   */
  procWrites?: number;
  /**
   * "maps": a rootless network helper (pasta, slirp4netns) opens the child's /proc/PID/ns
   * files after the first wait: the child stays dumpable until the last.
   */
  dumpableForAttach?: boolean;
  /** The attach adds network devices: masks and read-only paths wait for it (see `early`). */
  networked?: boolean;
  /** The child's end of the report socket (SOCK_SEQPACKET, close-on-exec). */
  report: number;
  /**
   * The fds that become the command's 0, 1 and 2 (pipes micro relays, or /dev/null), so
   * that no fd of the host's reaches it; a terminal replaces all three later.
   */
  stdio: readonly [number, number, number];
  /** Which of `stdio` are micro's pipes (the others are /dev/null, left to root). */
  pipes?: readonly [boolean, boolean, boolean];
  /**
   * A detached copy of the image (open_tree of the fd the parent opened once), or -1: no
   * image, or a rootless parent, which binds the image by name and checks it is `imageId`.
   */
  imageFd?: number;
  /** The image directory the parent opened: st_dev and st_ino. */
  imageId?: { dev: number; ino: number };
  /** The sealed memfd holding the exec trampoline (see `trampoline.ts`). */
  exe: number;
  /**
   * `run -d`: the parent-death signal is cleared right before exec (the runner hands the
   * command to the supervisor and exits); until then it dies with the runner as any child.
   * `micro exec -d` too: the command outlives micro (its second fork has none either).
   */
  detached?: boolean;
  /** Idmapped layer trees, kept at FD_IDMAPPED + k (close-on-exec). */
  layerFds?: readonly number[];
  /**
   * Where each is attached before the overlay is made (overlayfs takes no detached layer):
   * the overlay's lower directories.
   */
  layerMounts?: readonly string[];
  /** Idmapped bind trees, kept at FD_IDMAPPED + (the layers' count) + k (close-on-exec). */
  mountTrees?: readonly number[];
  /** A detached copy of the directory holding every lower layer of a store image, or -1. */
  layersFd?: number;
  /** A detached copy of the directory holding the overlay's upper and work directories. */
  containerFd?: number;
  /** Empty directories the two are attached on (see FD_LAYERS). */
  layersAt?: string;
  containerAt?: string;
  /** A pidfd of the container an `enter` op joins (`micro exec`), or -1. */
  enterFd?: number;
  /** An O_PATH fd of the OCI exec fifo: the child blocks on it before the exec (FD_FIFO). */
  execFifo?: number;
  /** OCI exec: a pidfd of the container's first process, kept at FD_NS for `setns`. */
  nsFd?: number;
  /**
   * OCI `--preserve-fds N`: the parent's fds 3 to 2+N stay where they are and the command
   * inherits them (socket activation's LISTEN_FDS relies on the numbers).
   */
  preserveFds?: number;
}

const MS: Record<MountFlag, number> = {
  MS_RDONLY: C.MS_RDONLY,
  MS_NOSUID: C.MS_NOSUID,
  MS_NODEV: C.MS_NODEV,
  MS_NOEXEC: C.MS_NOEXEC,
  MS_REMOUNT: C.MS_REMOUNT,
  MS_BIND: C.MS_BIND,
  MS_REC: C.MS_REC,
  MS_PRIVATE: C.MS_PRIVATE,
  MS_SLAVE: C.MS_SLAVE,
  MS_STRICTATIME: C.MS_STRICTATIME,
  MS_RELATIME: C.MS_RELATIME,
  MS_NOATIME: C.MS_NOATIME,
  MS_NODIRATIME: C.MS_NODIRATIME,
  MS_NOSYMFOLLOW: C.MS_NOSYMFOLLOW,
  MS_SYNCHRONOUS: C.MS_SYNCHRONOUS,
  MS_DIRSYNC: C.MS_DIRSYNC,
  MS_MANDLOCK: C.MS_MANDLOCK,
  MS_LAZYTIME: C.MS_LAZYTIME,
  MS_I_VERSION: C.MS_I_VERSION,
  MS_SILENT: C.MS_SILENT,
  MS_SHARED: C.MS_SHARED,
  MS_UNBINDABLE: C.MS_UNBINDABLE,
};
/** The atime modes: at most one is given, and giving one replaces the mount's. */
const ATIME_FLAGS = C.MS_NOATIME | C.MS_RELATIME | C.MS_STRICTATIME;
/** Flags of one mount rather than of its file system: what a bind's flags can change. */
const PER_MOUNT = C.MS_RDONLY | C.MS_NOSUID | C.MS_NODEV | C.MS_NOEXEC | C.MS_NODIRATIME |
  C.MS_NOSYMFOLLOW | ATIME_FLAGS;

export function mountFlags(flags: readonly MountFlag[]): number {
  return flags.reduce((acc, f) => acc | MS[f], 0);
}

/** statfs ST_* flags a bind remount inside a user namespace must keep (else EPERM). */
const ST_LOCKED = C.MS_NOSUID | C.MS_NODEV | C.MS_NOEXEC | 1024 | 2048; // + NOATIME, NODIRATIME
const ST_NOATIME = 1024;
const ST_RELATIME = 4096;

/**
 * Flags for a read-only bind remount that keep what the kernel locks, the atime mode
 * included: without an explicit one the remount means relatime, refused over strictatime.
 */
export function readonlyRemountFlags(st: number): number {
  return bindRemountFlags(st, C.MS_RDONLY);
}

/**
 * Flags for the remount that gives a bind its own flags (`flags`' per-mount ones) and keeps
 * what the kernel locks (`st`, from statfs); the atime mode is `flags`' when it names one,
 * else the mount's, said explicitly.
 */
export function bindRemountFlags(st: number, flags: number): number {
  let out = C.MS_REMOUNT | C.MS_BIND | (flags & PER_MOUNT) | (st & ST_LOCKED);
  if (flags & ATIME_FLAGS) return (out & ~ATIME_FLAGS) | (flags & ATIME_FLAGS);
  if (st & ST_RELATIME) out |= C.MS_RELATIME;
  else if (!(st & ST_NOATIME)) out |= C.MS_STRICTATIME;
  return out;
}

const PROC_FD_TARGET = cstr(`/proc/self/fd/${FD_TARGET}`);
const PROC_FD_SOURCE = cstr(`/proc/self/fd/${FD_SOURCE}`);
const MOUNT_ATTRS: [number, number][] = [
  [C.MS_RDONLY, C.MOUNT_ATTR_RDONLY],
  [C.MS_NOSUID, C.MOUNT_ATTR_NOSUID],
  [C.MS_NODEV, C.MOUNT_ATTR_NODEV],
  [C.MS_NOEXEC, C.MOUNT_ATTR_NOEXEC],
  [C.MS_STRICTATIME, C.MOUNT_ATTR_STRICTATIME],
  [C.MS_NOATIME, C.MOUNT_ATTR_NOATIME],
  [C.MS_NODIRATIME, C.MOUNT_ATTR_NODIRATIME],
  [C.MS_NOSYMFOLLOW, C.MOUNT_ATTR_NOSYMFOLLOW],
];
/** MS_* flags to the MOUNT_ATTR_* bits of fsmount and mount_setattr. */
export function mountAttrs(flags: number): number {
  return MOUNT_ATTRS.reduce((acc, [ms, attr]) => flags & ms ? acc | attr : acc, 0);
}
/** The attr_clr mount_setattr needs with `flags`: the atime bits when a mode is set. */
export function mountAttrsClear(flags: number): number {
  return flags & ATIME_FLAGS ? C.MOUNT_ATTR__ATIME : 0;
}
const DEV_NULL = cstr("/dev/null");
const SLASH = cstr("/");
const DOT = cstr(".");
const TMPFS = cstr("tmpfs");
const EMPTY = cstr("");
const POLLERR = 0x8;
/** The vfork child's "micro is gone". */
const ESRCH = 3;
const EPIPE = 32;
/** cgroup.procs: "0" is the writer itself. */
const SELF = cstr("0");
const AT_EMPTY_PATH = 0x1000;
const AT_RECURSIVE = 0x8000;
const MOUNT_ATTR_RDONLY = 1;
const ROOT_TMPFS_DATA = cstr("mode=0755");
const MASK_TMPFS_DATA = cstr("size=0");
const SOURCE = cstr("source");
const OVERLAY = cstr("overlay");
const LOWERDIR = cstr("lowerdir");
const LOWERDIR_PLUS = cstr("lowerdir+");
/** fsconfig(2) copies at most 255 bytes of a string value (strndup_user(value, 256)). */
const FSCONFIG_STRING_MAX = 255;

/**
 * The overlay's lower layers as fsconfig values: the image copy; a store image's layers
 * joined by ':' (`\` and `:` escaped), or, when that is longer than fsconfig takes, one
 * `lowerdir+` each (Linux 6.8+). Encoded here, in the parent.
 */
export function lowerDirs(lowers?: string[]): { key: CStr; values: CStr[] } {
  if (lowers === undefined) return { key: LOWERDIR, values: [PROC_FD_ROOT] };
  const joined = lowers.map((l) => l.replace(/[\\:]/g, (c) => `\\${c}`)).join(":");
  if (new TextEncoder().encode(joined).length <= FSCONFIG_STRING_MAX) {
    return { key: LOWERDIR, values: [cstr(joined)] };
  }
  return { key: LOWERDIR_PLUS, values: lowers.map((l) => cstr(l)) };
}
const UPPERDIR = cstr("upperdir");
const WORKDIR = cstr("workdir");
const USERXATTR = cstr("userxattr");
const PROC_FD_ROOT = cstr(`/proc/self/fd/${FD_ROOT}`);

/** Splits a container path into the prefixes to create, parent first. */
function components(path: string): string[] {
  return path.split("/").filter((c) => c && c !== ".");
}

export function compileChild(ops: Op[], ctx: ChildContext, sys: Sys): ChildProgram {
  const info: StepInfo[] = [];
  const run: (() => number)[] = [];
  const step = (i: StepInfo, fn: () => number) => {
    info.push(i);
    run.push(fn);
  };
  const engine = (kind: string, paths: Record<string, string> = {}) => ({
    phase: "rootfs",
    plugin: "engine",
    kind,
    paths,
  });
  const inRoot = C.RESOLVE_IN_ROOT | C.RESOLVE_NO_MAGICLINKS;
  // Its buffers made here, before the clone: the child's copy allocates nothing.
  const copyUp: CopyUp | null = ops.some((o) => o.kind === "mount" && o.args.copyUp)
    ? new (loadedSteps(copyUpSteps, "copy-up").CopyUp)(sys)
    : null;
  // OCI hooks run in the container: createContainer before pivot_root (or, with none, before
  // the exec's steps), startContainer after the exec fifo (core/engine/hook.ts).
  const ociHooks = (which: OpArgs["oci-hook"]["hook"], say: boolean) => {
    for (const o of ops) {
      if (o.kind !== "oci-hook" || o.args.hook !== which) continue;
      step({
        phase: o.phase,
        plugin: o.plugin,
        kind: o.kind,
        paths: {
          hook: `${which}[${o.args.index}]`,
          path: o.args.path,
          ...(o.args.timeout ? { timeout: String(o.args.timeout) } : {}),
        },
      }, loadedSteps(hookSteps, "oci-hook").hookStep(o.args, FD_EXE, sys, say));
    }
  };
  let createHooksRun = false;
  const createHooks = () => {
    if (!createHooksRun) ociHooks("createContainer", false);
    createHooksRun = true;
  };
  // What the execve step's hint needs from the ops before it (plain data, parent side).
  let landlock: OpArgs["landlock"]["rules"] | undefined;
  let workdir = "/";

  /** Opens a container path (resolved inside the new root) as O_PATH at a fixed fd. */
  const openInRoot = (path: CStr, fixed: number): number => {
    const fd = sys.openat2(FD_ROOT, path, C.O_PATH | C.O_CLOEXEC, 0, inRoot);
    if (fd < 0) return fd;
    const rc = sys.dup3(fd, fixed, C.O_CLOEXEC);
    sys.close(fd);
    return rc < 0 ? rc : 0;
  };

  /** mkdir -p inside the root: each level is created in a directory resolved in the root. */
  const makeParents = (path: string, leaf: "dir" | "file"): () => number => {
    const parts = components(path);
    const levels = parts.map((name, i) => ({
      parent: cstr("/" + parts.slice(0, i).join("/")),
      name: cstr(name),
      isLeaf: i === parts.length - 1,
    }));
    const full = cstr(path);
    return () => {
      for (const lv of levels) {
        const dir = sys.openat2(
          FD_ROOT,
          lv.parent,
          C.O_PATH | C.O_DIRECTORY | C.O_CLOEXEC,
          0,
          inRoot,
        );
        if (dir < 0) return dir;
        let rc = 0;
        if (!lv.isLeaf || leaf === "dir") rc = sys.mkdirat(dir, lv.name, 0o755);
        sys.close(dir);
        if (rc < 0 && rc !== -17) return rc; // EEXIST is fine
      }
      if (leaf === "file") {
        const fd = sys.openat2(
          FD_ROOT,
          full,
          C.O_CREAT | C.O_EXCL | C.O_WRONLY | C.O_CLOEXEC | C.O_NOFOLLOW,
          0o644,
          inRoot,
        );
        if (fd >= 0) sys.close(fd);
        else if (fd !== -17) return fd; // EEXIST: something is there already
      }
      return 0;
    };
  };

  /** Remounts the mount at `fd` read-only, keeping the flags the kernel locks. */
  const remountReadonly = (fdPath: CStr, fd: number, extra: number): number => {
    const st = sys.fstatfsFlags(fd);
    if (st < 0) return st;
    return sys.mount(null, fdPath, null, readonlyRemountFlags(st) | extra, null);
  };

  /**
   * A bind made read-only with everything mounted below it (mount_setattr AT_RECURSIVE,
   * Linux 5.12+, as Docker 25 does for `ro` volumes); a kernel without it gets the top
   * mount remounted read-only.
   */
  const bindReadonly = (fdPath: CStr, fd: number, extra: number): number => {
    const rc = sys.mountSetattr(fd, EMPTY, AT_EMPTY_PATH | AT_RECURSIVE, MOUNT_ATTR_RDONLY, 0);
    return rc === -38 ? remountReadonly(fdPath, fd, extra) : rc; // ENOSYS
  };

  /**
   * Where a mask or read-only path is looked up: under /proc or /sys, beneath the root of
   * the file system micro mounted there, following no symlink (a name there cannot be
   * raced: the container cannot rename inside procfs or sysfs); elsewhere, in the root.
   * `missing` is what a path that is not there means: nothing to hide (0), except under a
   * /proc or /sys that micro did not mount itself, where it cannot be told from a race.
   */
  const lookupBase = (path: string, i: StepInfo) => {
    for (const [fs, fd] of [["proc", FD_PROC], ["sys", FD_SYS]] as const) {
      const top = `/${fs}`;
      if (path !== top && !path.startsWith(top + "/")) continue;
      if (!kernelMounts.has(fs)) {
        i.hints = { 2: `not found, and ${top} is not the file system micro mounted there` };
        return { dir: FD_ROOT, path: cstr(path), resolve: inRoot, missing: -2 };
      }
      i.hints = { 40: `a symlink inside ${top}: masks there follow none` };
      return {
        dir: fd,
        path: cstr(path === top ? "." : path.slice(top.length + 1)),
        resolve: C.RESOLVE_BENEATH | C.RESOLVE_NO_SYMLINKS | C.RESOLVE_NO_MAGICLINKS,
        missing: 0,
      };
    }
    return { dir: FD_ROOT, path: cstr(path), resolve: inRoot, missing: 0 };
  };
  const openAt = (at: ReturnType<typeof lookupBase>, fixed: number): number => {
    const fd = sys.openat2(at.dir, at.path, C.O_PATH | C.O_CLOEXEC, 0, at.resolve);
    if (fd < 0) return fd;
    const rc = sys.dup3(fd, fixed, C.O_CLOEXEC);
    sys.close(fd);
    return rc < 0 ? rc : 0;
  };

  /**
   * The container's /proc or /sys (runc's rule: only on a real directory, reached through
   * no symlink), made as a detached mount whose root fd stays at FD_PROC/FD_SYS: a fresh
   * procfs or sysfs (fsopen, fsconfig, fsmount), or a recursive copy of the host's
   * (open_tree) when there is no pid or network namespace of its own; then attached.
   */
  const kernelFsMount = (
    a: OpArgs["mount"],
    flags: number,
    create: (() => number) | null,
    target: CStr,
    i: StepInfo,
  ): () => number => {
    const keepAt = a.kernelFs === "proc" ? FD_PROC : FD_SYS;
    const attrs = mountAttrs(flags);
    const isBind = (flags & C.MS_BIND) !== 0;
    const fstype = cstr(a.fstype);
    const source = cstr(a.source);
    const options = (a.data ?? "").split(",").filter((x) => x).map((x) => {
      const eq = x.indexOf("=");
      return eq < 0 ? { key: cstr(x), value: null } : {
        key: cstr(x.slice(0, eq)),
        value: cstr(x.slice(eq + 1)),
      };
    });
    const dirOnly = C.RESOLVE_IN_ROOT | C.RESOLVE_NO_SYMLINKS | C.RESOLVE_NO_MAGICLINKS;
    i.hints = {
      40: `${a.fstype || "the host's " + a.source} must be mounted on an ordinary directory, ` +
        `and ${a.target} in the image is a symlink or goes through one`,
      20: `${a.target} in the image is not a directory`,
    };
    return () => {
      if (create) {
        const rc = create();
        if (rc < 0) return rc;
      }
      const dir = sys.openat2(
        FD_ROOT,
        target,
        C.O_PATH | C.O_DIRECTORY | C.O_NOFOLLOW | C.O_CLOEXEC,
        0,
        dirOnly,
      );
      if (dir < 0) return dir;
      let mnt: number;
      let rc = 0;
      if (isBind) {
        mnt = sys.openTree(C.AT_FDCWD, source, C.OPEN_TREE_CLONE | C.AT_RECURSIVE | C.O_CLOEXEC);
        if (mnt >= 0 && attrs) {
          rc = sys.mountSetattr(
            mnt,
            EMPTY,
            AT_EMPTY_PATH | AT_RECURSIVE,
            attrs,
            mountAttrsClear(flags),
          );
        }
      } else {
        const fs = sys.fsopen(fstype, C.FSOPEN_CLOEXEC);
        if (fs < 0) {
          sys.close(dir);
          return fs;
        }
        // The source shown in mountinfo, as mount(2) would record it.
        rc = sys.fsconfig(fs, C.FSCONFIG_SET_STRING, SOURCE, source, 0);
        for (const opt of options) {
          if (rc < 0) break;
          rc = opt.value === null
            ? sys.fsconfig(fs, C.FSCONFIG_SET_FLAG, opt.key, null, 0)
            : sys.fsconfig(fs, C.FSCONFIG_SET_STRING, opt.key, opt.value, 0);
        }
        if (rc >= 0) rc = sys.fsconfig(fs, C.FSCONFIG_CMD_CREATE, null, null, 0);
        mnt = rc < 0 ? rc : sys.fsmount(fs, C.FSMOUNT_CLOEXEC, attrs);
        sys.close(fs);
      }
      if (mnt < 0) rc = mnt;
      if (rc >= 0) {
        rc = sys.moveMount(
          mnt,
          EMPTY,
          dir,
          EMPTY,
          C.MOVE_MOUNT_F_EMPTY_PATH | C.MOVE_MOUNT_T_EMPTY_PATH,
        );
      }
      if (rc >= 0) rc = sys.dup3(mnt, keepAt, C.O_CLOEXEC);
      if (mnt >= 0) sys.close(mnt);
      sys.close(dir);
      return rc < 0 ? rc : 0;
    };
  };

  /**
   * A read-only bind onto FD_TARGET: a detached copy of the source made read-only with
   * everything below it, then attached, so the destination is not looked up again between
   * the bind and the remount (a link swapped in meanwhile would get the remount instead).
   * A kernel without mount_setattr (before 5.12) binds, then remounts the top mount.
   */
  const bindAt = (src: CStr, flags: number, prop: number, target: CStr): number => {
    const tree = sys.openTree(
      C.AT_FDCWD,
      src,
      C.OPEN_TREE_CLONE | C.O_CLOEXEC | (flags & C.MS_REC ? C.AT_RECURSIVE : 0),
    );
    if (tree < 0) return tree;
    let rc = sys.mountSetattr(
      tree,
      EMPTY,
      AT_EMPTY_PATH | AT_RECURSIVE,
      mountAttrs(flags),
      mountAttrsClear(flags),
    );
    if (rc === -38) { // ENOSYS: no mount_setattr
      sys.close(tree);
      return bindRemountAt(src, flags, prop, target);
    }
    if (rc >= 0) {
      rc = sys.moveMount(
        tree,
        EMPTY,
        FD_TARGET,
        EMPTY,
        C.MOVE_MOUNT_F_EMPTY_PATH | C.MOVE_MOUNT_T_EMPTY_PATH,
      );
    }
    // Attached, the tree's fd is the mount itself: its propagation set with no lookup.
    if (rc >= 0 && prop) rc = propagate(tree, prop);
    sys.close(tree);
    return rc;
  };
  /** `prop` (MS_SHARED... with MS_REC for the r- forms) on the mount at `fd`. */
  const propagate = (fd: number, prop: number): number =>
    sys.mountSetattr(
      fd,
      EMPTY,
      AT_EMPTY_PATH | (prop & C.MS_REC ? AT_RECURSIVE : 0),
      0,
      0,
      0,
      prop & ~C.MS_REC,
    );
  /** bindAt on a kernel without mount_setattr (before 5.12): bind, then remount the top. */
  const bindRemountAt = (src: CStr, flags: number, prop: number, target: CStr): number => {
    let rc = sys.mount(src, PROC_FD_TARGET, null, flags & (C.MS_BIND | C.MS_REC), null);
    sys.close(FD_TARGET);
    if (rc >= 0) rc = openInRoot(target, FD_TARGET);
    if (rc < 0) return rc;
    if (flags & PER_MOUNT) {
      const st = sys.fstatfsFlags(FD_TARGET);
      rc = st < 0 ? st : sys.mount(null, PROC_FD_TARGET, null, bindRemountFlags(st, flags), null);
    }
    if (rc >= 0 && prop) rc = sys.mount(null, PROC_FD_TARGET, null, prop, null);
    return rc;
  };

  /**
   * The overlay plugin's root: a detached overlay whose lower layer is the image copy at
   * FD_ROOT and whose upper and work directories are the container's own, attached on top
   * of that copy; its fd becomes the root's, so the image is never written.
   */
  const overlayRoot = (
    ov: { upper: string; work: string; userxattr: boolean; lowers?: string[] },
  ): void => {
    // Through the copies of the store's directories when the parent made them (FD_LAYERS).
    const base = (p: string) => p.slice(p.lastIndexOf("/") + 1);
    const containerAt = (ctx.containerFd ?? -1) >= 0 ? ctx.containerAt : undefined;
    const layersAt = ov.lowers && (ctx.layersFd ?? -1) >= 0 ? ctx.layersAt : undefined;
    const upper = cstr(containerAt ? `${containerAt}/${base(ov.upper)}` : ov.upper);
    const work = cstr(containerAt ? `${containerAt}/${base(ov.work)}` : ov.work);
    const lower = lowerDirs(
      layersAt ? ov.lowers!.map((l) => `${layersAt}/${base(l)}`) : ov.lowers,
    );
    const attach = [
      ...(layersAt ? [[FD_LAYERS, cstr(layersAt)] as const] : []),
      ...(containerAt ? [[FD_CONTAINER, cstr(containerAt)] as const] : []),
    ];
    const staging = ov.lowers ? cstr(ctx.rootPath) : null;
    const oi: StepInfo = {
      phase: "rootfs",
      plugin: "overlay",
      kind: "overlay",
      paths: {
        lower: ov.lowers ? `${ov.lowers.length} layers` : "image",
        upper: ov.upper,
        work: ov.work,
      },
      hints: {
        22: ov.userxattr
          ? "the kernel refused the overlay: in a user namespace it needs Linux 5.11+ " +
            "(userxattr) and a lower layer it may read"
          : lower.key === LOWERDIR_PLUS
          ? "the kernel refused the overlay: this many layers need Linux 6.8+ (lowerdir+)"
          : "the kernel refused the overlay options or the upper directory's file system",
        1: "mounting an overlay in this user namespace is not allowed (Linux 5.11+)",
      },
    };
    const attachAt = (ctx.layerMounts ?? []).map((p) => cstr(p));
    if (attachAt.length) {
      step(engine("move_mount(idmapped layers)", { at: ctx.layerMounts!.join(":") }), () => {
        for (let k = 0; k < attachAt.length; k++) {
          const rc = sys.moveMount(
            FD_IDMAPPED + k,
            EMPTY,
            C.AT_FDCWD,
            attachAt[k],
            C.MOVE_MOUNT_F_EMPTY_PATH,
          );
          if (rc < 0) return rc;
        }
        return 0;
      });
    }
    step(oi, () => {
      for (let k = 0; k < attach.length; k++) {
        const [fd, at] = attach[k];
        const m = sys.moveMount(fd, EMPTY, C.AT_FDCWD, at, C.MOVE_MOUNT_F_EMPTY_PATH);
        sys.close(fd);
        if (m < 0) return m;
      }
      const fs = sys.fsopen(OVERLAY, C.FSOPEN_CLOEXEC);
      if (fs < 0) return fs;
      let rc = sys.fsconfig(fs, C.FSCONFIG_SET_STRING, SOURCE, OVERLAY, 0);
      for (let k = 0; k < lower.values.length && rc >= 0; k++) {
        rc = sys.fsconfig(fs, C.FSCONFIG_SET_STRING, lower.key, lower.values[k], 0);
      }
      if (rc >= 0) rc = sys.fsconfig(fs, C.FSCONFIG_SET_STRING, UPPERDIR, upper, 0);
      if (rc >= 0) rc = sys.fsconfig(fs, C.FSCONFIG_SET_STRING, WORKDIR, work, 0);
      if (rc >= 0 && ov.userxattr) rc = sys.fsconfig(fs, C.FSCONFIG_SET_FLAG, USERXATTR, null, 0);
      if (rc >= 0) rc = sys.fsconfig(fs, C.FSCONFIG_CMD_CREATE, null, null, 0);
      const mnt = rc < 0 ? rc : sys.fsmount(fs, C.FSMOUNT_CLOEXEC, 0);
      sys.close(fs);
      if (mnt < 0) return mnt;
      // A store image's overlay goes straight onto the staging directory; a directory
      // image's on top of the image copy attached there.
      const at = staging === null
        ? FD_ROOT
        : sys.open(staging, C.O_PATH | C.O_DIRECTORY | C.O_CLOEXEC, 0);
      rc = at < 0 ? at : sys.moveMount(
        mnt,
        EMPTY,
        at,
        EMPTY,
        C.MOVE_MOUNT_F_EMPTY_PATH | C.MOVE_MOUNT_T_EMPTY_PATH,
      );
      if (staging !== null && at >= 0) sys.close(at);
      if (rc >= 0) rc = sys.dup3(mnt, FD_ROOT, C.O_CLOEXEC);
      sys.close(mnt);
      return rc < 0 ? rc : 0;
    });
  };

  /**
   * The container's cgroup at /sys/fs/cgroup, found beneath the sysfs micro mounted (no
   * symlink followed), each file system made detached and attached to a directory fd: on
   * v2 a cgroup2 mount; on v1 a tmpfs, one directory per hierarchy with a cgroup mount of
   * it, and symlinks for co-mounted controllers; then the tmpfs is made read-only.
   */
  const cgroupMount = (a: OpArgs["cgroup-mount"], i: StepInfo): void => {
    i.paths = { path: "/sys/fs/cgroup", version: `v${a.version}` };
    const hasSys = kernelMounts.has("sys");
    const beneath = C.RESOLVE_BENEATH | C.RESOLVE_NO_SYMLINKS | C.RESOLVE_NO_MAGICLINKS;
    const fsCgroup = cstr("fs/cgroup");
    const ro = a.readonly ? C.MOUNT_ATTR_RDONLY : 0;
    const attrs = C.MOUNT_ATTR_NOSUID | C.MOUNT_ATTR_NODEV | C.MOUNT_ATTR_NOEXEC | ro;
    const cgroupType = cstr(a.version === 2 ? "cgroup2" : "cgroup");
    const tmpfsMode = [cstr("mode"), cstr("755")] as const;
    const levels = a.hierarchies.map((h) => ({
      name: cstr(h.name),
      controllers: h.controllers.map((c) => cstr(c)),
      links: h.links.map((l) => cstr(l)),
    }));
    i.hints = {
      2: hasSys
        ? "this kernel's sysfs has no fs/cgroup"
        : "/sys is not the file system micro mounted there",
      16: "a cgroup v1 hierarchy of the host co-mounts controllers micro does not know; " +
        "set cgroups.mount: none",
      1: "the kernel refused to mount the container's cgroup (it needs a cgroup namespace)",
    };
    /** A new file system of `type` (with `flags` set) attached onto `at`; its fd or -errno. */
    const attach = (
      type: CStr,
      flags: readonly CStr[],
      data: readonly (readonly [CStr, CStr])[],
      at: number,
      mntAttrs: number,
    ): number => {
      const fs = sys.fsopen(type, C.FSOPEN_CLOEXEC);
      if (fs < 0) return fs;
      let rc = sys.fsconfig(fs, C.FSCONFIG_SET_STRING, SOURCE, type, 0);
      for (let k = 0; k < flags.length && rc >= 0; k++) {
        rc = sys.fsconfig(fs, C.FSCONFIG_SET_FLAG, flags[k], null, 0);
      }
      for (let k = 0; k < data.length && rc >= 0; k++) {
        rc = sys.fsconfig(fs, C.FSCONFIG_SET_STRING, data[k][0], data[k][1], 0);
      }
      if (rc >= 0) rc = sys.fsconfig(fs, C.FSCONFIG_CMD_CREATE, null, null, 0);
      const mnt = rc < 0 ? rc : sys.fsmount(fs, C.FSMOUNT_CLOEXEC, mntAttrs);
      sys.close(fs);
      if (mnt < 0) return mnt;
      rc = sys.moveMount(
        mnt,
        EMPTY,
        at,
        EMPTY,
        C.MOVE_MOUNT_F_EMPTY_PATH | C.MOVE_MOUNT_T_EMPTY_PATH,
      );
      if (rc < 0) {
        sys.close(mnt);
        return rc;
      }
      return mnt;
    };
    step(i, () => {
      if (!hasSys) return -2;
      const dir = sys.openat2(FD_SYS, fsCgroup, C.O_PATH | C.O_DIRECTORY | C.O_CLOEXEC, 0, beneath);
      if (dir < 0) return dir;
      if (a.version === 2) {
        const mnt = attach(cgroupType, [], [], dir, attrs);
        sys.close(dir);
        if (mnt < 0) return mnt;
        sys.close(mnt);
        return 0;
      }
      // The tmpfs stays writable until its directories and links are made.
      const top = attach(TMPFS, [], [tmpfsMode], dir, attrs & ~C.MOUNT_ATTR_RDONLY);
      sys.close(dir);
      if (top < 0) return top;
      let rc = 0;
      for (let k = 0; k < levels.length && rc >= 0; k++) {
        const lv = levels[k];
        rc = sys.mkdirat(top, lv.name, 0o755);
        if (rc < 0) break;
        const sub = sys.openat2(top, lv.name, C.O_PATH | C.O_DIRECTORY | C.O_CLOEXEC, 0, beneath);
        if (sub < 0) {
          rc = sub;
          break;
        }
        const mnt = attach(cgroupType, lv.controllers, [], sub, attrs);
        sys.close(sub);
        if (mnt < 0) {
          rc = mnt;
          break;
        }
        sys.close(mnt);
        for (let l = 0; l < lv.links.length && rc >= 0; l++) {
          rc = sys.symlinkat(lv.name, top, lv.links[l]);
        }
      }
      if (rc >= 0 && ro) rc = sys.mountSetattr(top, EMPTY, AT_EMPTY_PATH, ro, 0);
      sys.close(top);
      return rc < 0 ? rc : 0;
    });
  };

  let pivoted = false;
  let reportFd = ctx.report;
  const imageFd = ctx.imageFd ?? -1;
  /** The container's /proc and /sys mounts compiled so far (their roots at FD_PROC, FD_SYS). */
  const kernelMounts = new Set<string>();
  /** `fd` at `to`, inherited across exec. */
  const place = (fd: number, to: number) =>
    fd === to ? sys.fcntl(to, C.F_SETFD, 0) : sys.dup3(fd, to, 0);
  let exec: StepInfo | undefined;
  let init = false;
  let vfork: ChildProgram["vfork"];
  /** What the process gets when micro dies; none for a detached exec, once it is entered. */
  let deathSignal: number = C.SIGKILL;

  // Prologue: die with the parent, wait for the parent's attach phase, own session, stdio.
  // A detached child (run -d, OCI create and exec) too, until it is set up: the signal is
  // cleared right before its READY (see the execve op). With `sync` "root" the wait comes
  // later, before the first op not in EARLY_KINDS; with "maps" there are both.
  const mode = ctx.sync ?? "first";
  const late = mode === "root" || mode === "maps";
  step(engine("prctl(PR_SET_PDEATHSIG)"), () => sys.prctl(C.PR_SET_PDEATHSIG, C.SIGKILL, 0, 0, 0));
  if (mode === "none") {
    // A vfork child never waits for micro, but micro may have died before the death signal
    // above was set (its thread sleeps in the clone, not its other threads' killers): the
    // sync pipe's write end is then closed everywhere once the child's copy is.
    step(engine("sync", { check: "micro alive" }), () => {
      sys.close(ctx.syncWrite);
      const ev = sys.pollNow(ctx.syncRead, C.POLLIN);
      if (ev < 0) return ev;
      return ev & (C.POLLHUP | POLLERR) ? -ESRCH : 0;
    });
  }
  if (ctx.procWrites !== undefined) {
    // Its id maps (and the other /proc files of the attach), written by micro's thread.
    const fd = ctx.procWrites;
    const ask = new Uint8Array([1]);
    const ack = new Int32Array(2);
    const got = new Uint8Array(ack.buffer);
    step({ phase: "attach", plugin: "user", kind: "proc-write", paths: { by: "micro" } }, () => {
      const n = sys.write(fd, ask, 1);
      if (n < 0) return n;
      const m = sys.read(fd, got, 8);
      if (m !== 8) return m < 0 ? m : -EPIPE;
      sys.close(fd);
      return -ack[0];
    });
  }
  // A vfork child joins its cgroups first, as one born in its cgroup (clone3) would be. Its
  // trace span is micro's own (one memory): the first v1 write's RCU wait, as the parent's.
  (ctx.cgroupProcs ?? []).forEach(({ fd, path }, k) => {
    step({ phase: "attach", plugin: "cgroups", kind: "cgroup-join", paths: { path } }, () => {
      const t = now();
      const n = sys.write(fd, SELF, 1);
      if (k === 0) span("first cgroup.procs write", t);
      return n < 0 ? n : 0;
    });
  });
  const one = new Uint8Array(1);
  /**
   * One byte from the parent at `fd`, closed after unless the late wait reads it again; the
   * write end closed first where no step before did.
   */
  const wait = (fd: number, close: boolean, after?: string) => {
    step(engine("sync", after ? { after } : {}), () => {
      if (!late) sys.close(ctx.syncWrite);
      const n = sys.read(fd, one, 1);
      if (n === 0) sys.exit(1); // the parent is gone
      if (close) sys.close(fd);
      return n < 0 ? n : 0;
    });
  };
  // Until the exec, this process's /proc/PID/exe is the host's Deno runtime and, before its
  // pivot_root, /proc/PID/root the host's root: undumpable, only CAP_SYS_PTRACE opens them.
  const undumpable = () =>
    step(engine("prctl(PR_SET_DUMPABLE)"), () => sys.prctl(C.PR_SET_DUMPABLE, 0, 0, 0, 0));
  // Its copy of the write end goes first: EOF at a wait is then the parent's death.
  if (late) {
    step(engine("close", { fd: "the sync pipe's write end" }), () => {
      sys.close(ctx.syncWrite);
      return 0;
    });
  }
  if (mode !== "root" && mode !== "none") wait(ctx.syncRead, !late);
  // Undumpable from the first wait on ("root": at once, no id maps to write), but where a
  // rootless network helper of the attach (pasta, slirp4netns) opens its /proc/PID/ns files
  // after it: then from the last.
  const dumpableForAttach = mode === "maps" && ctx.dumpableForAttach === true;
  if (!dumpableForAttach) undumpable();
  step(engine("setsid"), () => sys.setsid());
  const [in0, out1, err2] = ctx.stdio;
  step(engine("stdio"), () => {
    let rc = sys.dup3(in0, 0, 0);
    if (rc >= 0) rc = sys.dup3(out1, 1, 0);
    if (rc >= 0) rc = sys.dup3(err2, 2, 0);
    return rc < 0 ? rc : 0;
  });
  // What the child keeps moves to its fixed number; every other inherited fd above 2 is
  // closed, the unused fixed numbers included.
  const keep = [[ctx.report, FD_REPORT], [imageFd, FD_IMAGE], [ctx.exe, FD_EXE]];
  // -1 closes the number: nothing inherited may stay below the last one kept.
  const enterFd = ctx.enterFd ?? -1;
  if ((ctx.containerFd ?? -1) >= 0 || enterFd >= 0) keep.push([ctx.layersFd ?? -1, FD_LAYERS]);
  else if ((ctx.layersFd ?? -1) >= 0) keep.push([ctx.layersFd!, FD_LAYERS]);
  if ((ctx.containerFd ?? -1) >= 0 || enterFd >= 0) {
    keep.push([ctx.containerFd ?? -1, FD_CONTAINER]);
  }
  // FD_ENTER and FD_FIFO share a number: `micro exec` never meets an OCI create.
  if (enterFd >= 0) keep.push([enterFd, FD_ENTER]);
  else if ((ctx.execFifo ?? -1) >= 0 || (ctx.nsFd ?? -1) >= 0) {
    // The numbers below them that hold nothing are closed, as above.
    for (const at of [FD_LAYERS, FD_CONTAINER]) {
      if (!keep.some(([, n]) => n === at)) keep.push([-1, at]);
    }
    keep.push([ctx.execFifo ?? -1, FD_FIFO]);
    if ((ctx.nsFd ?? -1) >= 0) keep.push([ctx.nsFd!, FD_NS]);
  }
  if (late) {
    // The sync pipe's read end, last, past numbers closed: the late wait comes after this.
    for (let at = keep[keep.length - 1][1] + 1; at < FD_SYNC; at++) keep.push([-1, at]);
    keep.push([ctx.syncRead, FD_SYNC]);
  }
  const keepLast = keep[keep.length - 1][1];
  const layers = [...(ctx.layerFds ?? []), ...(ctx.mountTrees ?? [])];
  for (let k = 0; k < layers.length; k++) keep.push([layers[k], FD_IDMAPPED + k]);
  /** Where a mount op's idmapped tree is kept. */
  const treeFd = (k: number) => FD_IDMAPPED + (ctx.layerFds?.length ?? 0) + k;
  const kept = keep.filter(([fd]) => fd >= 0).map(([fd, at]) => `${fd}>${at}`).join(",");
  /** The first fd not preserved for the command (3 unless `--preserve-fds`). */
  const firstFree = 3 + (ctx.preserveFds ?? 0);
  const preserved: Record<string, string> = firstFree > 3
    ? { preserved: `3-${firstFree - 1}` }
    : {};
  step(engine("close_range", { keep: kept, ...preserved }), () => {
    for (let k = 0; k < keep.length; k++) {
      const [fd, at] = keep[k];
      let rc = 0;
      if (fd < 0) sys.close(at);
      else if (fd !== at) rc = sys.dup3(fd, at, C.O_CLOEXEC);
      if (rc < 0) return rc;
    }
    reportFd = FD_REPORT;
    let rc = sys.closeRange(firstFree, FD_KEEP - 1, 0);
    if (rc >= 0 && layers.length === 0) rc = sys.closeRange(keepLast + 1, 0x7fffffff, 0);
    else if (rc >= 0) {
      rc = sys.closeRange(keepLast + 1, FD_IDMAPPED - 1, 0);
      if (rc >= 0) rc = sys.closeRange(FD_IDMAPPED + layers.length, 0x7fffffff, 0);
    }
    return rc;
  });

  let waited = !late;
  // The attach makes the network's devices and files: paths masked under them come after.
  const networked = ctx.networked === true;
  /** Whether `o` runs before the late wait (EARLY_KINDS, and what needs nothing attached). */
  const early = (o: Op) => {
    if (!EARLY_KINDS.has(o.kind)) return false;
    if (o.kind === "mount") {
      // What the attach writes, the cgroup file systems; a tmpfs filled from the image:
      // charged to the cgroup of the task that writes it, the container's only once joined.
      return !o.args.attached && !o.args.copyUp && !/^cgroup2?$/.test(o.args.fstype);
    }
    return !(networked && (o.kind === "mask" || o.kind === "readonly-path"));
  };
  const lateWait = () => {
    wait(FD_SYNC, true, "the root");
    if (dumpableForAttach) undumpable();
    waited = true;
  };
  for (const o of ops) {
    if (!waited && !early(o)) lateWait();
    const i: StepInfo = { phase: o.phase, plugin: o.plugin, kind: o.kind, paths: {} };
    switch (o.kind) {
      case "make-private": {
        const how = C.MS_REC | (o.args.slave ? C.MS_SLAVE : C.MS_PRIVATE);
        step(i, () => sys.mount(null, SLASH, null, how, null));
        break;
      }
      case "bind-root": {
        // A store image: the overlay of its layers is the root; there is no image copy.
        if (o.args.overlay?.lowers) {
          overlayRoot(o.args.overlay);
          break;
        }
        const root = cstr(ctx.rootPath);
        i.paths = { src: o.args.source ?? "tmpfs", dst: ctx.rootPath };
        const src = o.args.source === null ? null : cstr(o.args.source);
        const want = ctx.imageId;
        const id = new Float64Array(2);
        i.hints = {
          [E_REFUSED]: "the image directory was replaced while micro started (a symlink " +
            "swapped in?); nothing was run",
        };
        step(i, () => {
          if (src !== null && imageFd >= 0) {
            // The copy of the image the parent made from the fd it opened (open_tree):
            // attached at the staging point, its fd is then the new root's.
            const at = sys.open(root, C.O_PATH | C.O_DIRECTORY | C.O_CLOEXEC, 0);
            if (at < 0) return at;
            const rc = sys.moveMount(
              FD_IMAGE,
              EMPTY,
              at,
              EMPTY,
              C.MOVE_MOUNT_F_EMPTY_PATH | C.MOVE_MOUNT_T_EMPTY_PATH,
            );
            sys.close(at);
            return rc < 0 ? rc : sys.dup3(FD_IMAGE, FD_ROOT, C.O_CLOEXEC) < 0 ? -9 : 0;
          }
          const rc = src === null
            ? sys.mount(TMPFS, root, TMPFS, C.MS_NOSUID | C.MS_NODEV, ROOT_TMPFS_DATA)
            : sys.mount(src, root, null, C.MS_BIND | C.MS_REC, null);
          if (rc < 0) return rc;
          const fd = sys.open(root, C.O_PATH | C.O_DIRECTORY | C.O_CLOEXEC, 0);
          if (fd < 0) return fd;
          const d = sys.dup3(fd, FD_ROOT, C.O_CLOEXEC);
          sys.close(fd);
          if (d < 0) return d;
          // Bound by name (a rootless parent cannot copy a mount): it must be the very
          // directory the parent opened.
          if (src === null || !want) return 0;
          const st = sys.fstatId(FD_ROOT, id);
          if (st < 0) return st;
          return id[0] === want.dev && id[1] === want.ino ? 0 : -E_REFUSED;
        });
        if (o.args.overlay) overlayRoot(o.args.overlay);
        break;
      }
      case "mount": {
        const a = o.args;
        i.paths = { src: a.source, dst: a.target, flags: a.flags.join("|") || "0" };
        if (a.data) i.paths.data = a.data;
        if (a.copyUp) i.paths.copyUp = "the image's files at the target, copied into the tmpfs";
        if (pivoted) throw new Error(`mount of ${a.target} planned after pivot-root`);
        const create = a.create ? makeParents(a.target, a.create) : null;
        const target = cstr(a.target);
        const source = cstr(a.source);
        const fstype = a.fstype ? cstr(a.fstype) : null;
        const data = a.data ? cstr(a.data) : null;
        const flags = mountFlags(a.flags);
        const prop = a.propagation ? mountFlags(a.propagation) : 0;
        const isBind = (flags & C.MS_BIND) !== 0;
        const ro = C.MS_RDONLY;
        if (a.kernelFs) {
          const attach = kernelFsMount(a, flags, create, target, i);
          kernelMounts.add(a.kernelFs);
          step(i, attach);
          break;
        }
        i.hints = {
          [E_REFUSED]: "the destination is inside /proc or /sys (through a symlink in the " +
            "image?); micro mounts nothing there but their own file systems",
        };
        step(i, () => {
          if (create) {
            const rc = create();
            if (rc < 0) return rc;
          }
          let rc = openInRoot(target, FD_TARGET);
          if (rc < 0) return rc;
          // Checked on the fd the mount will use: a link swapped in since the parent
          // resolved it cannot move a volume over procfs or sysfs.
          if (!a.overProc) {
            const type = sys.fstatfsType(FD_TARGET);
            if (type === C.PROC_SUPER_MAGIC || type === C.SYSFS_MAGIC) rc = -E_REFUSED;
            else if (type < 0) rc = type;
            if (rc < 0) {
              sys.close(FD_TARGET);
              return rc;
            }
          }
          if (a.tree !== undefined) {
            // Idmapped in the parent with the bind's flags: attached where it belongs.
            const t = treeFd(a.tree);
            rc = sys.moveMount(
              t,
              EMPTY,
              FD_TARGET,
              EMPTY,
              C.MOVE_MOUNT_F_EMPTY_PATH | C.MOVE_MOUNT_T_EMPTY_PATH,
            );
            if (rc >= 0 && prop) rc = propagate(t, prop);
            sys.close(t);
            sys.close(FD_TARGET);
            return rc;
          }
          // tmpcopyup: the image's directory, opened before the tmpfs covers it.
          const from = a.copyUp
            ? sys.openat2(FD_ROOT, target, C.O_RDONLY | C.O_DIRECTORY | C.O_CLOEXEC, 0, inRoot)
            : -1;
          if (a.copyUp && from < 0) {
            sys.close(FD_TARGET);
            return from;
          }
          let src: CStr = source;
          if (a.sourceInRoot) {
            rc = openInRoot(source, FD_SOURCE);
            if (rc < 0) return rc;
            src = PROC_FD_SOURCE;
          }
          // A bind's own flags (the kernel ignores all but MS_REC on a bind) and its
          // propagation are set on the detached tree and on the attached mount's fd.
          if (isBind && (flags & PER_MOUNT || prop)) rc = bindAt(src, flags, prop, target);
          // A read-only tmpcopyup tmpfs is made read-only once filled.
          else rc = sys.mount(src, PROC_FD_TARGET, fstype, from >= 0 ? flags & ~ro : flags, data);
          sys.close(FD_TARGET);
          if (a.sourceInRoot) sys.close(FD_SOURCE);
          if (rc >= 0 && !isBind && (prop || from >= 0)) {
            // A new file system: found again in the root (nothing of the container runs
            // yet), filled and its propagation set through that fd.
            rc = openInRoot(target, FD_TARGET);
            if (rc >= 0 && from >= 0) rc = copyUp!.copy(from, FD_TARGET);
            if (rc >= 0 && from >= 0 && flags & ro) {
              rc = sys.mount(null, PROC_FD_TARGET, null, C.MS_REMOUNT | flags, data);
            }
            if (rc >= 0 && prop) rc = sys.mount(null, PROC_FD_TARGET, null, prop, null);
            sys.close(FD_TARGET);
          }
          if (from >= 0) sys.close(from);
          return rc;
        });
        break;
      }
      case "mask": {
        i.paths = { path: o.args.path };
        const at = lookupBase(o.args.path, i);
        step(i, () => {
          let rc = openAt(at, FD_TARGET);
          if (rc === -2) return at.missing; // nothing to hide, or an error where it must be
          if (rc < 0) return rc;
          const dir = sys.openat2(
            at.dir,
            at.path,
            C.O_PATH | C.O_DIRECTORY | C.O_CLOEXEC,
            0,
            at.resolve,
          );
          if (dir >= 0) {
            sys.close(dir);
            rc = sys.mount(
              TMPFS,
              PROC_FD_TARGET,
              TMPFS,
              C.MS_RDONLY | C.MS_NOSUID | C.MS_NODEV | C.MS_NOEXEC,
              MASK_TMPFS_DATA,
            );
          } else {
            rc = sys.mount(DEV_NULL, PROC_FD_TARGET, null, C.MS_BIND, null);
          }
          sys.close(FD_TARGET);
          return rc;
        });
        break;
      }
      case "readonly-path": {
        i.paths = { path: o.args.path };
        const at = lookupBase(o.args.path, i);
        step(i, () => {
          let rc = openAt(at, FD_TARGET);
          if (rc === -2) return at.missing;
          if (rc < 0) return rc;
          rc = sys.mount(PROC_FD_TARGET, PROC_FD_TARGET, null, C.MS_BIND | C.MS_REC, null);
          sys.close(FD_TARGET);
          if (rc < 0) return rc;
          // Found again from the same base: inside procfs or sysfs nothing can be renamed.
          rc = openAt(at, FD_TARGET);
          if (rc >= 0) {
            rc = bindReadonly(PROC_FD_TARGET, FD_TARGET, C.MS_NOSUID | C.MS_NODEV | C.MS_NOEXEC);
          }
          sys.close(FD_TARGET);
          return rc;
        });
        break;
      }
      case "mkdir": {
        i.paths = { path: o.args.path };
        const mk = makeParents(o.args.path, "dir");
        step(i, mk);
        break;
      }
      case "symlink": {
        i.paths = { target: o.args.target, path: o.args.path };
        const parts = components(o.args.path);
        const parent = cstr("/" + parts.slice(0, -1).join("/"));
        const name = cstr(parts[parts.length - 1]);
        const target = cstr(o.args.target);
        step(i, () => {
          const dir = sys.openat2(
            FD_ROOT,
            parent,
            C.O_PATH | C.O_DIRECTORY | C.O_CLOEXEC,
            0,
            inRoot,
          );
          if (dir < 0) return dir;
          const rc = sys.symlinkat(target, dir, name);
          sys.close(dir);
          return rc === -17 ? 0 : rc;
        });
        break;
      }
      case "mknod": {
        const a = o.args;
        i.paths = { path: a.path, node: `${a.type} ${a.major}:${a.minor}` };
        const parts = components(a.path);
        const parentPath = "/" + parts.slice(0, -1).join("/");
        const mkParent = parts.length > 2 ? makeParents(parentPath, "dir") : null;
        const parent = cstr(parentPath);
        const name = cstr(parts[parts.length - 1]);
        const mode = (a.type === "b" ? C.S_IFBLK : a.type === "p" ? C.S_IFIFO : C.S_IFCHR) |
          (a.mode & 0o7777);
        step(i, () => {
          if (mkParent) {
            const rc = mkParent();
            if (rc < 0) return rc;
          }
          const dir = sys.openat2(
            FD_ROOT,
            parent,
            C.O_PATH | C.O_DIRECTORY | C.O_CLOEXEC,
            0,
            inRoot,
          );
          if (dir < 0) return dir;
          let rc = sys.mknodat(dir, name, mode, a.major, a.minor);
          if (rc >= 0) rc = sys.fchownat(dir, name, a.uid, a.gid, C.AT_SYMLINK_NOFOLLOW);
          // The mode again: mknod's was reduced by the umask. On the node just made: no link.
          if (rc >= 0) rc = sys.fchmodat(dir, name, a.mode & 0o7777);
          sys.close(dir);
          return rc === -17 ? 0 : rc; // EEXIST: the node there is kept, as runc does
        });
        break;
      }
      case "pivot-root": {
        createHooks();
        pivoted = true;
        i.paths = { root: ctx.rootPath };
        if (o.args.move) {
          i.paths.how = "MS_MOVE+chroot";
          // runc's msMoveRoot: the new root's mount moved onto /, then chroot into it.
          step(i, () => {
            let rc = sys.fchdir(FD_ROOT);
            if (rc >= 0) rc = sys.mount(DOT, SLASH, null, C.MS_MOVE, null);
            if (rc >= 0) rc = sys.chroot(DOT);
            if (rc >= 0) rc = sys.chdir(SLASH);
            sys.close(FD_ROOT);
            return rc;
          });
          break;
        }
        step(i, () => {
          let rc = sys.fchdir(FD_ROOT);
          if (rc >= 0) rc = sys.pivotRoot(DOT, DOT);
          // The old root is stacked under the new one at "."; detach it so it is gone.
          if (rc >= 0) rc = sys.umount2(DOT, C.MNT_DETACH);
          if (rc >= 0) rc = sys.chdir(SLASH);
          sys.close(FD_ROOT);
          return rc;
        });
        break;
      }
      case "remount-root-ro": {
        step(i, () => {
          const fd = sys.open(SLASH, C.O_PATH | C.O_DIRECTORY | C.O_CLOEXEC, 0);
          if (fd < 0) return fd;
          const rc = remountReadonly(SLASH, fd, 0);
          sys.close(fd);
          return rc;
        });
        break;
      }
      case "userns-root": {
        step(i, () => {
          let rc = sys.setresgid(0, 0, 0);
          if (rc >= 0) rc = sys.setresuid(0, 0, 0);
          return rc;
        });
        // A credential change clears the parent-death signal (a root-run user namespace's
        // root is another host uid): set again at once, as the child may not be in its cgroups
        // (the watchdog's reach) yet.
        step(
          engine("prctl(PR_SET_PDEATHSIG)"),
          () => sys.prctl(C.PR_SET_PDEATHSIG, deathSignal, 0, 0, 0),
        );
        break;
      }
      case "console": {
        if (!pivoted) throw new Error("console planned before pivot-root or enter");
        i.paths = { path: "/dev/ptmx" };
        const ptmx = cstr("/dev/ptmx");
        const unlock = new Uint8Array(4);
        const record = new Int32Array([CONSOLE_RECORD, 0]);
        step(i, () => {
          const master = sys.open(ptmx, C.O_RDWR | C.O_NOCTTY | C.O_CLOEXEC, 0);
          if (master < 0) return master;
          let rc = sys.ioctlBuf(master, C.TIOCSPTLCK, unlock);
          const slave = rc < 0 ? rc : sys.ioctl(master, C.TIOCGPTPEER, C.O_RDWR | C.O_NOCTTY);
          rc = slave;
          if (rc >= 0) rc = sys.ioctl(slave, C.TIOCSCTTY, 0);
          for (let fd = 0; fd < 3 && rc >= 0; fd++) rc = sys.dup3(slave, fd, 0);
          if (slave > 2) sys.close(slave);
          if (rc >= 0) rc = sys.sendRecord(reportFd, record, master);
          sys.close(master);
          return rc < 0 ? rc : 0;
        });
        break;
      }
      case "session-keyring": {
        step(i, () => {
          const rc = sys.joinSessionKeyring();
          // No keyrings in this kernel, or an outer sandbox's seccomp refuses keyctl (its
          // own session then is what the container shares): as runc, the run goes on.
          return rc >= 0 || rc === -38 || rc === -1 ? 0 : rc;
        });
        break;
      }
      case "sethostname": {
        i.paths = { name: o.args.name };
        const name = cstr(o.args.name);
        step(i, () => sys.sethostname(name));
        break;
      }
      case "loopback-up": {
        const ifr = new Uint8Array(40);
        ifr.set([0x6c, 0x6f]); // "lo"
        new DataView(ifr.buffer).setUint16(16, C.IFF_UP | C.IFF_RUNNING, true);
        i.paths = { dev: "lo" };
        step(i, () => {
          const fd = sys.socket(C.AF_INET, C.SOCK_DGRAM | C.SOCK_CLOEXEC, 0);
          if (fd < 0) return fd;
          const rc = sys.ioctlBuf(fd, C.SIOCSIFFLAGS, ifr);
          sys.close(fd);
          return rc;
        });
        break;
      }
      case "setgroups": {
        i.paths = { gids: o.args.gids.join(",") || "none" };
        const gids = new Uint32Array(o.args.gids);
        step(i, () => sys.setgroups(gids));
        break;
      }
      case "setresgid": {
        i.paths = { gid: String(o.args.gid) };
        const g = o.args.gid;
        step(i, () => sys.setresgid(g, g, g));
        // A credential change sets "dumpable" to fs.suid_dumpable, and a vfork child's is
        // micro's (one memory): not dumpable again, whatever the host's setting.
        if (mode === "none") undumpable();
        break;
      }
      case "setresuid": {
        i.paths = { uid: String(o.args.uid) };
        const u = o.args.uid;
        // With a capabilities op to come, keep the permitted set across the switch.
        const keep = ops.some((x) => x.kind === "capabilities");
        if (keep) {
          step(engine("prctl(PR_SET_KEEPCAPS)"), () => sys.prctl(C.PR_SET_KEEPCAPS, 1, 0, 0, 0));
        }
        step(i, () => sys.setresuid(u, u, u));
        if (keep) {
          step(engine("prctl(PR_SET_KEEPCAPS)"), () => sys.prctl(C.PR_SET_KEEPCAPS, 0, 0, 0, 0));
        }
        // A credential change clears the parent-death signal: set it again.
        step(
          engine("prctl(PR_SET_PDEATHSIG)"),
          () => sys.prctl(C.PR_SET_PDEATHSIG, deathSignal, 0, 0, 0),
        );
        if (mode === "none") undumpable();
        break;
      }
      case "stdio-owner": {
        // The terminal's slave is all three; else micro's pipes. The container's root owns
        // them (the parent gave it the pipes; it made the terminal): only another user needs
        // them. The uid only, as runc: the terminal keeps its tty group.
        const uid = o.args.uid;
        const terminal = ops.some((x) => x.kind === "console");
        const fds = terminal ? [0] : [0, 1, 2].filter((k) => ctx.pipes?.[k]);
        if (uid === 0 || fds.length === 0) break;
        i.paths = { uid: String(uid), fds: fds.join(",") };
        i.hints = {
          1: "the container's root may not change the owner of its stdio (an id outside " +
            "its user namespace's map?)",
        };
        step(i, () => {
          let rc = 0;
          for (let k = 0; k < fds.length && rc >= 0; k++) rc = sys.fchown(fds[k], uid, -1);
          return rc;
        });
        break;
      }
      case "setrlimit": {
        const a = o.args;
        i.paths = { resource: a.resource, soft: String(a.soft), hard: String(a.hard) };
        const res = RLIMITS[a.resource];
        step(i, () => sys.setrlimit(res, a.soft, a.hard));
        break;
      }
      case "umask": {
        i.paths = { mask: "0" + o.args.mask.toString(8) };
        step(i, () => {
          sys.umask(o.args.mask);
          return 0;
        });
        break;
      }
      case "personality": {
        i.paths = { persona: "0x" + o.args.persona.toString(16) };
        step(i, () => sys.personality(o.args.persona));
        break;
      }
      case "time-offsets": {
        i.paths = { offsets: o.args.text.trim().replace(/\n/g, ", ") };
        i.hints = {
          2: "the container has no /proc mounted: the offsets are written to /proc/self",
          13: "a process is in the time namespace already (the offsets go in before any is)",
          [E_REFUSED]: "/proc/self/timens_offsets is not procfs's (the image's /proc without " +
            "a proc mount?): mount proc at /proc",
        };
        // Into anything but procfs's file, the clocks would silently stay unshifted.
        const file = cstr("/proc/self/timens_offsets");
        const text = new TextEncoder().encode(o.args.text);
        step(i, () => writeProcFile(sys, file, text));
        break;
      }
      case "ioprio": {
        const { class: cls, level } = o.args;
        i.paths = { class: String(cls), level: String(level) };
        const prio = cls * 8192 + level; // IOPRIO_PRIO_VALUE: class << 13 | level
        step(i, () => sys.ioprioSet(prio));
        break;
      }
      case "sched-setattr": {
        const a = o.args;
        i.paths = { policy: String(a.policy), nice: String(a.nice), priority: String(a.priority) };
        const attr = schedAttr(a);
        step(i, () => sys.schedSetattr(attr));
        break;
      }
      case "mempolicy": {
        const a = o.args;
        const mode = Object.keys(MPOL_MODES).find((k) => MPOL_MODES[k] === a.mode);
        i.paths = { mode: mode ?? String(a.mode), flags: "0x" + a.flags.toString(16) };
        if (a.nodes.length) i.paths.nodes = a.nodes.join(",");
        const mask = a.nodes.length ? bitmask(a.nodes) : null;
        step(i, () => sys.setMempolicy(a.mode | a.flags, mask));
        break;
      }
      case "cpu-affinity": {
        i.paths = { cpus: o.args.cpus.join(",") };
        const mask = bitmask(o.args.cpus);
        step(i, () => sys.schedSetaffinity(0, mask));
        break;
      }
      case "capabilities": {
        const a = o.args;
        i.paths = {
          bounding: a.bounding.join(",") || "none",
          effective: a.effective.join(",") || "none",
          ambient: a.ambient.join(",") || "none",
        };
        const drop: number[] = [];
        for (let c = 0; c <= a.lastCap; c++) {
          if (c >= CAPS.length || !a.bounding.includes(CAPS[c])) drop.push(c);
        }
        const final = new Uint32Array([
          ...capMask(a.effective),
          ...capMask(a.permitted),
          ...capMask(a.inheritable),
        ]);
        const ambient = a.ambient.map(capNumber);
        const cur = new Uint32Array(6);
        step(i, () => {
          // Effective = permitted first: dropping from the bounding set needs CAP_SETPCAP.
          let rc = sys.capget(cur);
          if (rc < 0) return rc;
          cur[0] = cur[2];
          cur[1] = cur[3];
          rc = sys.capset(cur);
          if (rc < 0) return rc;
          for (const c of drop) {
            rc = sys.prctl(C.PR_CAPBSET_DROP, c, 0, 0, 0);
            if (rc < 0 && rc !== -22) return rc; // EINVAL: the kernel does not know it
          }
          rc = sys.capset(final);
          if (rc < 0) return rc;
          rc = sys.prctl(C.PR_CAP_AMBIENT, C.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
          for (const c of ambient) {
            if (rc >= 0) rc = sys.prctl(C.PR_CAP_AMBIENT, C.PR_CAP_AMBIENT_RAISE, c, 0, 0);
          }
          return rc;
        });
        break;
      }
      case "lsm-label": {
        i.paths = { file: o.args.file, label: o.args.value };
        // Written here, by the child: the kernel takes a write to /proc/PID/attr only from
        // the credentials that opened it (proc_pid_attr_write's f_cred check, Linux 5.8+),
        // and an exec makes new ones, so the trampoline could not write it. The label thus
        // applies at the trampoline's exec; the profile governs the command's exec from there.
        if (!o.args.value || o.args.value.includes("\0")) throw new Error("bad LSM exec label");
        i.hints = {
          [E_REFUSED]: `${o.args.file} is not procfs's (the image's /proc without a proc ` +
            "mount?): mount proc at /proc",
        };
        // Into anything but procfs's file, the command would run unconfined (CVE-2019-16884).
        const file = cstr(o.args.file);
        const value = new TextEncoder().encode(o.args.value);
        step(i, () => writeProcFile(sys, file, value));
        break;
      }
      case "landlock": {
        const a = o.args;
        i.paths = { abi: String(a.abi), rules: String(a.rules.length) };
        landlock = a.rules;
        const handled = landlockHandled(a.abi);
        const rules = a.rules.map((r) => ({
          path: cstr(r.path),
          allowed: landlockRights(r.access) & handled,
        }));
        step(i, () => {
          const rs = sys.landlockCreateRuleset(handled, 0);
          if (rs < 0) return rs;
          let rc = 0;
          for (const r of rules) {
            const fd = sys.open(r.path, C.O_PATH | C.O_CLOEXEC, 0);
            if (fd === -2) continue; // not in this container: nothing to allow
            if (fd < 0) {
              rc = fd;
              break;
            }
            const dir = sys.openat2(fd, DOT, C.O_PATH | C.O_DIRECTORY | C.O_CLOEXEC, 0, 0);
            if (dir >= 0) sys.close(dir);
            // A file takes only the rights that apply to files.
            const allowed = dir >= 0 ? r.allowed : r.allowed & LANDLOCK_FILE_RIGHTS;
            rc = allowed ? sys.landlockAddPathRule(rs, allowed, fd) : 0;
            sys.close(fd);
            if (rc < 0) break;
          }
          if (rc >= 0) rc = sys.landlockRestrictSelf(rs);
          sys.close(rs);
          return rc;
        });
        break;
      }
      case "seccomp": {
        const a = o.args;
        i.paths = { policy: a.policy, arch: a.arch, instructions: String(a.instructions) };
        // At least a page, so the backing store V8 gives it never moves.
        const filter = fromBase64(a.program, 4096);
        if (!a.listener) {
          step(i, () => sys.seccompFilter(filter, a.flags));
          break;
        }
        // SCMP_ACT_NOTIFY: the listener goes to micro, which hands it to the caller's agent
        // at listenerPath; the child waits for micro's word that it has, so no notified call
        // is made before anyone can answer it (read and sendmsg may not be notified).
        i.paths.listener = a.listener.path;
        i.hints = { 32: "micro could not hand the listener to listenerPath (see its error)" };
        const record = new Int32Array([SECCOMP_RECORD, 0]);
        const ack = new Uint8Array(8);
        step(i, () => {
          const fd = sys.seccompFilter(filter, a.flags);
          if (fd < 0) return fd;
          let rc = sys.sendRecord(reportFd, record, fd);
          if (rc >= 0) rc = sys.read(reportFd, ack, 8);
          sys.close(fd);
          if (rc < 0) return rc;
          return rc === 8 ? 0 : -32; // EPIPE: micro is gone or refused
        });
        break;
      }
      case "no-new-privs": {
        step(i, () => sys.prctl(C.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0));
        break;
      }
      case "chdir": {
        i.paths = { path: o.args.path };
        i.hints = { [E_REFUSED]: "the working directory is outside the container's root" };
        workdir = o.args.path || "/";
        const p = cstr(o.args.path);
        const cwd = new Uint8Array(4096);
        step(i, () => {
          const rc = sys.chdir(p);
          if (rc < 0) return rc;
          // As runc: the directory reached must be inside the root (the kernel prefixes
          // "(unreachable)" otherwise), whatever links led there.
          const n = sys.getcwd(cwd);
          if (n < 0) return n;
          return cwd[0] === 0x2f ? 0 : -E_REFUSED;
        });
        break;
      }
      case "execve": {
        createHooks();
        const a = o.args;
        i.paths = { path: a.args[0] ?? "" };
        // EACCES under Landlock is most often its rule set, not the file's mode or noexec.
        const refused = landlock && landlockExecHint(a.path, landlock, workdir);
        if (refused) i.hints = { 13: refused };
        // The trampoline's layout: "" LABEL CANDIDATES "" ARGV. A candidate always holds a
        // "/" (core/process.ts), so the empty strings are unambiguous.
        if (a.path.some((c) => !c.includes("/"))) throw new Error("exec candidate without /");
        // The trampoline's layout: "" (or "init": it stays as PID 1 and forks the command),
        // the label it writes (none: the child wrote it), the candidates, "", the argv.
        // One "+" per preserved fd moves the report fd above them (trampoline.ts).
        const mode = (a.init ? INIT_MODE : "") + "+".repeat(firstFree - 3);
        const argv = cstrArray([mode, "", ...a.path, "", ...a.args]);
        const envp = cstrArray(a.env);
        if (ctx.detached) {
          step(
            engine("prctl(PR_SET_PDEATHSIG, 0)"),
            () => sys.prctl(C.PR_SET_PDEATHSIG, 0, 0, 0, 0),
          );
        }
        step(engine("close_range"), () => {
          // The preserved fds are the command's: open across the exec, whatever the caller
          // had set.
          for (let fd = 3; fd < firstFree; fd++) {
            const rc = sys.fcntl(fd, C.F_SETFD, 0);
            if (rc < 0) return rc;
          }
          return sys.closeRange(firstFree, 0x7fffffff, C.CLOSE_RANGE_CLOEXEC);
        });
        // A vfork child keeps every signal blocked: its stub unblocks them at the exec.
        const unblock = ctx.sync !== "none";
        const only = unblock ? undefined : ctx.ignoredSignals;
        step(engine("reset signals"), () => sys.resetSignals(unblock, only));
        const ready = new Int32Array([READY_RECORD, 0]);
        step(engine("ready"), () => sys.sendRecord(reportFd, ready, -1));
        if ((ctx.execFifo ?? -1) >= 0) {
          // Blocks until `start` opens the fifo for reading; through the container's /proc,
          // whose fd directory must be procfs's: an image's own /proc (no proc mount) with a
          // file at self/fd/N would take the byte, and the command would start before `start`.
          const byte = new Uint8Array(1);
          const info = engine("exec fifo", { path: `/proc/self/fd/${FD_FIFO}` });
          step({
            ...info,
            hints: {
              [E_REFUSED]: "/proc/self/fd is not procfs's (the image's /proc without a proc " +
                "mount?): mount proc at /proc",
            },
          }, () => {
            const dir = sys.open(FIFO_DIR, C.O_PATH | C.O_DIRECTORY | C.O_CLOEXEC, 0);
            if (dir < 0) return dir;
            const type = sys.fstatfsType(dir);
            if (type !== C.PROC_SUPER_MAGIC) {
              sys.close(dir);
              return type < 0 ? type : -E_REFUSED;
            }
            const fd = sys.openat(dir, FIFO_NAME, C.O_WRONLY | C.O_CLOEXEC, 0);
            sys.close(dir);
            if (fd < 0) return fd;
            const n = sys.write(fd, byte, 1);
            sys.close(fd);
            sys.close(FD_FIFO);
            return n < 0 ? n : 0;
          });
        }
        // After `start`: a failure is said on the container's stderr (create has returned).
        ociHooks("startContainer", true);
        const reportAt = FD_TRAMPOLINE_REPORT + firstFree - 3;
        const fds: Record<string, string> = { report: String(reportAt) };
        // The report socket where the trampoline finds it, without close-on-exec.
        step(engine("trampoline fds", fds), () => {
          const rc = place(reportFd, reportAt);
          return rc < 0 ? rc : 0;
        });
        // Its failure is the command's exec failing, as far as the user can tell.
        if (ctx.sync === "none") {
          // The stub execs once this callback has returned (core/engine/vfork.ts).
          step(i, () => 0);
          vfork = {
            dirfd: FD_EXE,
            path: EMPTY,
            argv,
            envp,
            flags: AT_EMPTY_PATH,
            reportFd: reportAt,
            record: new Int32Array([run.length - 1, 0]),
          };
        } else step(i, () => sys.execveat(FD_EXE, EMPTY, argv, envp, AT_EMPTY_PATH));
        exec = i;
        init = a.init === true;
        break;
      }
      case "sysctl": {
        // Beneath the container's own /proc (whose root fd micro kept), following no symlink.
        if (!kernelMounts.has("proc")) throw new Error("sysctl planned before the /proc mount");
        const file = `sys/${o.args.key.replaceAll(".", "/")}`;
        i.paths = { path: `/proc/${file}`, value: o.args.value };
        i.hints = {
          2: "this kernel has no such sysctl",
          30: "/proc/sys is read-only there",
        };
        const name = cstr(file);
        const value = new TextEncoder().encode(o.args.value);
        step(i, () => {
          const fd = sys.openat2(
            FD_PROC,
            name,
            C.O_WRONLY | C.O_CLOEXEC | C.O_NOFOLLOW,
            0,
            C.RESOLVE_BENEATH | C.RESOLVE_NO_SYMLINKS | C.RESOLVE_NO_MAGICLINKS,
          );
          if (fd < 0) return fd;
          const n = sys.write(fd, value, value.length);
          sys.close(fd);
          return n < 0 ? n : 0;
        });
        break;
      }
      case "enter": {
        if (enterFd < 0) throw new Error("enter planned without the container's pidfd");
        let flags = 0;
        for (const name of o.args.flags) {
          const f = CLONE_FLAGS[name];
          if (f === undefined) throw new Error(`unknown namespace flag ${name}`);
          flags |= f;
        }
        i.paths = { container: o.args.container, namespaces: o.args.flags.join(",") || "none" };
        i.hints = {
          1: "micro may not enter this container's namespaces (another user's container?)",
          22: "this kernel cannot setns with a pidfd (Linux 5.8+)",
        };
        // Its root and cwd are the container's now: a terminal is made there as after a pivot.
        if (flags & C.CLONE_NEWNS) pivoted = true;
        const forks = (flags & C.CLONE_NEWPID) !== 0;
        const record = new Int32Array([PID_RECORD, 0]);
        if (ctx.detached) deathSignal = 0;
        step(i, () => {
          const rc = flags ? sys.setns(FD_ENTER, flags) : 0;
          sys.close(FD_ENTER);
          if (rc < 0) return rc;
          if (forks) {
            // Only the children of a process that entered a pid namespace are in it.
            sys.prepareFork();
            const pid = sys.clone(C.CLONE_PARENT);
            if (pid < 0) return pid;
            if (pid > 0) {
              record[1] = pid;
              sys.sendRecord(reportFd, record, -1);
              sys.exit(0);
            }
            // The fork's child: its own session (a terminal needs one), not yet dumpable.
            const s = sys.setsid();
            if (s < 0) return s;
          }
          return sys.prctl(C.PR_SET_PDEATHSIG, deathSignal, 0, 0, 0);
        });
        break;
      }
      case "setns": {
        i.paths = { flags: o.args.flags.join("|") };
        let flags = 0;
        for (const f of o.args.flags) {
          if (CLONE_FLAGS[f] === undefined) throw new Error(`unknown namespace flag ${f}`);
          flags |= CLONE_FLAGS[f];
        }
        if ((ctx.nsFd ?? -1) < 0) throw new Error("setns without a pidfd");
        // Entering the container's mount namespace puts the child at its root, as a pivot.
        if (o.args.flags.includes("CLONE_NEWNS")) pivoted = true;
        step(i, () => {
          const rc = sys.setns(FD_NS, flags);
          if (rc < 0) return rc;
          sys.close(FD_NS);
          return 0;
        });
        break;
      }
      case "unshare": {
        i.paths = { flag: o.args.flag };
        const flag = CLONE_FLAGS[o.args.flag];
        if (flag === undefined) throw new Error(`unknown namespace flag ${o.args.flag}`);
        step(i, () => sys.unshare(flag));
        break;
      }
      case "cgroup-mount":
        cgroupMount(o.args, i);
        break;
      case "skipped":
      case "oci-hook": // run where they belong (above)
        break;
      case "namespace":
      case "proc-write":
      case "idmap-helper":
        throw new Error(`op ${o.kind} does not run in the child`);
    }
  }
  if (!waited) lateWait();
  if (mode === "none" && !vfork) throw new Error("a vfork child without an execve op");
  return { info, run, reportFd: () => reportFd, exec, init, ...(vfork ? { vfork } : {}) };
}

/**
 * Writes `bytes` to a procfs file the child names (its own /proc/self/...): 0, or -errno;
 * -E_REFUSED where the file opened is not procfs's. An image's own /proc (no proc mount)
 * may hold a file of that name or a link to one, and the write would go there unnoticed.
 */
function writeProcFile(sys: Sys, file: CStr, bytes: Uint8Array): number {
  const fd = sys.open(file, C.O_WRONLY | C.O_CLOEXEC, 0);
  if (fd < 0) return fd;
  const type = sys.fstatfsType(fd);
  if (type !== C.PROC_SUPER_MAGIC) {
    sys.close(fd);
    return type < 0 ? type : -E_REFUSED;
  }
  const rc = sys.write(fd, bytes, bytes.length);
  sys.close(fd);
  return rc < 0 ? rc : 0;
}

/**
 * The steps in order: 0 once all ran (in a vfork child, core/engine/vfork.ts, every step but
 * the exec, which the stub makes after this returns). On the first failure it sends
 * `[step, errno]` on the report socket (`[THREW_RECORD, step]` for a step that threw) and
 * returns 1, the child's exit code: a vfork child
 * returns rather than exits, so that V8 and Deno leave the callback it runs in as after any
 * other.
 */
export function runSteps(prog: ChildProgram, sys: Sys): number {
  const report = new Int32Array(2);
  const run = prog.run;
  let i = 0;
  try {
    for (; i < run.length; i++) {
      const rc = run[i]();
      if (rc < 0) {
        report[0] = i;
        report[1] = -rc;
        sys.sendRecord(prog.reportFd(), report, -1);
        return 1;
      }
    }
  } catch (e) {
    if (e instanceof SysUnwind) throw e;
    report[0] = THREW_RECORD;
    report[1] = i;
    sys.sendRecord(prog.reportFd(), report, -1);
    return 1;
  }
  return 0;
}

/**
 * Runs in the cloned child. Sends `[step, errno]` on the report socket on the first failure
 * and leaves; on success the last step is execve and never returns.
 */
export function runChild(prog: ChildProgram, sys: Sys): never {
  try {
    // Every step ran and none exec'd: a program without an execve op.
    if (runSteps(prog, sys) === 0) sys.sendRecord(prog.reportFd(), NO_EXEC, -1);
  } catch (e) {
    // Even the report of a throw failed: the child leaves all the same (see THREW_RECORD).
    if (e instanceof SysUnwind) throw e;
  }
  sys.exit(1);
}

const NO_EXEC = new Int32Array([-1, 0]);
