/**
 * One error type for everything micro reports. It prints one line a person can act on:
 * the phase, the plugin, the operation with its paths, the errno and a hint where users
 * tend to misread the errno. A user mistake never prints a stack trace.
 */

export const ERRNO: Record<number, string> = {
  1: "EPERM",
  2: "ENOENT",
  3: "ESRCH",
  4: "EINTR",
  5: "EIO",
  7: "E2BIG",
  8: "ENOEXEC",
  9: "EBADF",
  10: "ECHILD",
  11: "EAGAIN",
  12: "ENOMEM",
  13: "EACCES",
  14: "EFAULT",
  16: "EBUSY",
  17: "EEXIST",
  18: "EXDEV",
  19: "ENODEV",
  20: "ENOTDIR",
  21: "EISDIR",
  22: "EINVAL",
  24: "EMFILE",
  25: "ENOTTY",
  26: "ETXTBSY",
  28: "ENOSPC",
  30: "EROFS",
  32: "EPIPE",
  36: "ENAMETOOLONG",
  38: "ENOSYS",
  39: "ENOTEMPTY",
  40: "ELOOP",
  75: "EOVERFLOW",
  95: "EOPNOTSUPP",
  111: "ECONNREFUSED",
};

let byName: Map<string, number> | undefined;

/**
 * The errno number of a name (`EPERM` → 1), or undefined. The table is built on first use:
 * made at load, with `Object.entries`, it cost every command 0.3 to 0.6 ms (measured).
 */
export function errnoByName(name: string): number | undefined {
  if (!byName) {
    byName = new Map();
    for (const n in ERRNO) byName.set(ERRNO[n as unknown as number], Number(n));
  }
  return byName.get(name);
}

/** The errno of a Deno error (its `code`, like "ENOENT"), or `fallback`. */
export function errnoOf(e: unknown, fallback: number): number {
  return errnoByName((e as { code?: string }).code ?? "") ?? fallback;
}

export function errnoName(errno: number): string {
  return ERRNO[errno] ?? `errno ${errno}`;
}

/** Exit codes, Docker's convention. */
export const EXIT_MICRO = 125;
export const EXIT_CANNOT_INVOKE = 126;
export const EXIT_NOT_FOUND = 127;

export interface ErrorFields {
  phase?: string;
  plugin?: string;
  op?: string;
  paths?: Record<string, string>;
  errno?: number;
  hint?: string;
  exitCode?: number;
}

export class MicroError extends Error {
  readonly fields: ErrorFields;
  constructor(message: string, fields: ErrorFields = {}) {
    super(message);
    this.name = "MicroError";
    this.fields = fields;
  }
  get exitCode(): number {
    return this.fields.exitCode ?? EXIT_MICRO;
  }
  /** The one line shown to the user (without the `micro: ` prefix). */
  line(): string {
    const f = this.fields;
    const parts: string[] = [];
    if (f.phase) parts.push(f.plugin ? `${f.phase}: ${f.plugin}` : f.phase);
    let body = this.message;
    if (f.op) {
      const paths = Object.entries(f.paths ?? {})
        // Values with spaces are quoted, unless the caller quoted them already.
        .map(([k, v]) => `${k}=${/\s/.test(v) && !/^".*"$/.test(v) ? JSON.stringify(v) : v}`)
        .join(" ");
      body = [f.op, paths].filter((s) => s).join(" ");
      if (this.message) body += `: ${this.message}`;
    }
    if (f.errno !== undefined) body += `: ${errnoName(f.errno)}`;
    if (f.hint) body += ` (${f.hint})`;
    parts.push(body);
    return parts.join(": ");
  }
}

/** Several errors found together (checks, profile validation): shown one per line. */
export class MicroErrors extends Error {
  constructor(readonly errors: MicroError[]) {
    super(errors.map((e) => e.line()).join("\n"));
    this.name = "MicroErrors";
  }
}

/** Hints for errnos users misread, keyed by the op kind and errno, or by errno alone. */
const HINTS: Record<string, string> = {
  "mount:ENOENT": "source or destination does not exist",
  "mount:EPERM": "not allowed: mounting needs CAP_SYS_ADMIN over the mount namespace",
  "mount:EACCES": "the source is not reachable from the user namespace; check its permissions",
  "mount:EINVAL": "the kernel rejected the mount flags or the target is not a mount point",
  "mount:ELOOP": "a symlink in the path points outside the container root",
  "mount:EROFS": "the image is read-only, so a missing mount point cannot be created there",
  "bind-root:ENOENT": "the image directory does not exist",
  "bind-root:ENOTDIR": "the image must be a directory holding a root filesystem",
  "pivot-root:EINVAL": "the new root must be a mount point and not the current root",
  "execve:ENOENT": "command not found in the container; check the path and PATH",
  "execve:EACCES": "the command is not executable, or its file system is mounted noexec",
  "execve:ENOEXEC": "the file is not a valid executable for this machine",
  "setresuid:EINVAL": "the uid is not mapped into the container's user namespace",
  "setresgid:EINVAL": "the gid is not mapped into the container's user namespace",
  "setgroups:EINVAL": "a supplementary group is not mapped into the user namespace",
  "setgroups:EPERM": "setgroups is denied in this user namespace (rootless): drop extra groups",
  "chdir:ENOENT": "the working directory does not exist in the container",
  "proc-write:EPERM":
    "the id map is not allowed: a rootless caller may map only its own uid and gid",
  "proc-write:ENOENT":
    "the container's first process ended before micro could set it up; run again, and " +
    "look for a kernel message (dmesg) if it keeps happening",
  "clone:EINVAL":
    "the kernel refused a namespace flag; user namespaces may be disabled (user.max_user_namespaces)",
  "clone:ENOSPC": "a namespace limit is reached (/proc/sys/user/max_*_namespaces)",
  "clone:EPERM":
    "creating these namespaces needs root, or a user namespace (unprivileged_userns_clone)",
  "mkdir:EROFS": "the image is read-only, so a missing mount point cannot be created there",
  "setrlimit:EPERM": "raising a hard limit needs CAP_SYS_RESOURCE",
  "unshare:EINVAL": "this kernel lacks that namespace (time namespaces: Linux 5.6+, " +
    "CONFIG_TIME_NS)",
  "sched-setattr:EPERM": "a real-time policy (SCHED_FIFO, SCHED_RR) needs CPU time for " +
    "real-time tasks in the container's cpu cgroup (cgroup v1's cpu.rt_runtime_us, 0 for a " +
    "new cgroup; micro does not set it): use SCHED_OTHER, SCHED_BATCH or SCHED_IDLE",
  "sched-setattr:EINVAL": "the kernel refused the policy or its values (SCHED_ISO does " +
    "not exist in Linux; SCHED_DEADLINE needs runtime <= deadline <= period)",
  "ioprio:EPERM": "the real-time I/O class needs CAP_SYS_ADMIN or CAP_SYS_NICE",
  "mempolicy:EINVAL": "the kernel refused the memory policy: a node is not online " +
    "(/sys/devices/system/node/online) or not in the container's cpuset.mems, or the flags " +
    "do not go with the mode (MPOL_F_NUMA_BALANCING needs MPOL_BIND or MPOL_PREFERRED_MANY)",
  "cpu-affinity:EINVAL": "none of the CPUs is online (/sys/devices/system/cpu/online) or in " +
    "the container's cpuset.cpus: name CPUs the container may run on",
  "memfd_create:EACCES":
    "vm.memfd_noexec=2 forbids the executable memfd micro starts commands from; set it to 1 or 0",
  EOVERFLOW: "an id is not mapped into the container's user namespace",
  "init:EAGAIN": "the init could not fork the command: the pids limit or RLIMIT_NPROC is reached",
  "init:EPERM":
    "the seccomp policy denies a call the init needs: prctl, rt_sigprocmask, fork, clone, " +
    "setpgid, getpid, ioctl, rt_sigtimedwait, wait4, kill",
};

export function hintFor(kind: string, errno: number): string | undefined {
  const name = errnoName(errno);
  return HINTS[`${kind}:${name}`] ?? HINTS[name];
}

export function usageError(message: string, hint?: string): MicroError {
  return new MicroError(message, { hint });
}

/** An error's first line: what a warning shows of it (a MicroError's own line). */
export function firstLine(e: unknown): string {
  const text = e instanceof MicroError ? e.line() : String((e as Error)?.message ?? e);
  return text.split("\n")[0];
}

/** What `oneLine` keeps of a text by default: a warning's line, not a plugin's whole output. */
const ONE_LINE_CAP = 400;

/**
 * Text from elsewhere (a plugin's message, a file's) made one line for a terminal: control
 * characters (escapes, newlines) become spaces, runs of spaces one, and it is cut to `cap`.
 */
export function oneLine(text: string, cap = ONE_LINE_CAP): string {
  // deno-lint-ignore no-control-regex
  const flat = text.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]+/g, " ")
    .replace(/ {2,}/g, " ").trim();
  return flat.length > cap ? `${flat.slice(0, cap - 1)}…` : flat;
}

/** A cleanup problem, said on stderr where no caller takes it (made one line: see oneLine). */
export function warnCleanup(message: string): void {
  console.error(`micro: warning: cleanup: ${oneLine(message, 1000)}`);
}
