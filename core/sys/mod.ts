/**
 * The kernel seam (DESIGN.md §5). Everything above `core/sys/` receives a `Sys` and never
 * calls `Deno.dlopen` itself, so tests can pass the recording fake from `fake.ts`.
 *
 * Calls are synchronous and return the result, or `-errno` on failure, like raw syscalls:
 * the child runs them in a loop with no exceptions and no allocation worth the name.
 * Paths are NUL-terminated byte strings (`CStr`), encoded in the parent before the clone.
 */

export type CStr = Uint8Array;

const encoder = new TextEncoder();
export function cstr(s: string): CStr {
  const bytes = encoder.encode(s);
  const out = new Uint8Array(bytes.length + 1);
  out.set(bytes);
  return out;
}

export function decodeCStr(b: CStr | null): string | null {
  if (b === null) return null;
  const end = b.indexOf(0);
  return decodeText(end < 0 ? b : b.subarray(0, end));
}

const nativeFromBase64 = (Uint8Array as unknown as { fromBase64(s: string): Uint8Array })
  .fromBase64;

/**
 * Standard base64 to bytes, in a buffer of at least `min` bytes (a subarray of the decoded
 * length): V8's own `Uint8Array.fromBase64` (core/engine/trampoline.ts's programs pay its
 * first call), not atob (its first use loads a module of Deno's: milliseconds), nor a loop
 * here (0.25 ms for a seccomp program, interpreted).
 */
export function fromBase64(text: string, min = 0): Uint8Array {
  let bytes: Uint8Array;
  try {
    bytes = nativeFromBase64(text);
  } catch (e) {
    throw new Error(`invalid base64: ${(e as Error).message}`);
  }
  if (bytes.buffer.byteLength >= min) return bytes;
  const out = new Uint8Array(min);
  out.set(bytes);
  return out.subarray(0, bytes.length);
}

let utf8: TextDecoder | undefined;
/** Up to this many bytes of ASCII are decoded without a TextDecoder. */
const ASCII_DIRECT = 4096;

/**
 * UTF-8 bytes as TextDecoder's `decode` gives them. A process's first TextDecoder costs
 * about 0.5 ms, and what a run reads (names, links, its state, /proc files) is short ASCII:
 * that is made into a string directly until something else needed the decoder.
 */
export function decodeText(b: Uint8Array): string {
  if (!utf8 && b.length <= ASCII_DIRECT) {
    let i = 0;
    while (i < b.length && b[i] < 0x80) i++;
    if (i === b.length) return String.fromCharCode.apply(null, b as unknown as number[]);
  }
  return (utf8 ??= new TextDecoder()).decode(b);
}

/** argv or envp: strings in one stable buffer and a NULL-terminated pointer array. */
/** What a vfork child execs once its `run` returned 0 (Sys.vforkExec). */
export interface VforkExec {
  /** The stub's machine code (core/engine/trampoline.ts VFORK_X86_64). */
  code: Uint8Array;
  dirfd: number;
  path: CStr;
  argv: CStrArray;
  envp: CStrArray;
  flags: number;
  /** Where a failed exec is reported: `record` with the errno in its second word. */
  reportFd: number;
  record: Int32Array;
  /**
   * A cgroup v2 directory's fd the child is born in (clone3's CLONE_INTO_CGROUP), or -1 (or
   * absent): a plain clone.
   */
  into?: number;
  /** Where the clone stores the child's pid before it runs (CLONE_PARENT_SETTID): procWrites. */
  parentTid?: Int32Array;
}

export interface CStrArray {
  strings: string[];
  /** Backing data kept alive for as long as the pointers are used. */
  data: Uint8Array;
  pointers: BigUint64Array;
}

export type Arch = "x86_64" | "aarch64";

/**
 * Thrown by a `Sys` that cannot end a process (the test fake: its `exit` and a successful
 * exec return into the caller this way). Code that runs in a cloned child catches every
 * other throw and lets this one pass.
 */
export class SysUnwind extends Error {}

export interface Sys {
  readonly arch: Arch;
  // File system
  mount(
    source: CStr | null,
    target: CStr,
    fstype: CStr | null,
    flags: number,
    data: CStr | null,
  ): number;
  umount2(target: CStr, flags: number): number;
  /**
   * mount_setattr(2) with `struct mount_attr {attr_set, attr_clr, propagation 0, userns_fd}`
   * (`usernsFd` only with MOUNT_ATTR_IDMAP; 0 otherwise).
   */
  mountSetattr(
    dirfd: number,
    path: CStr,
    flags: number,
    attrSet: number,
    attrClr: number,
    usernsFd?: number,
    /** MS_SHARED, MS_SLAVE, MS_PRIVATE or MS_UNBINDABLE; 0 leaves propagation alone. */
    propagation?: number,
  ): number;
  mkdirat(dirfd: number, path: CStr, mode: number): number;
  unlinkat(dirfd: number, path: CStr, flags: number): number;
  symlinkat(target: CStr, dirfd: number, name: CStr): number;
  /** The mount flags (ST_*) of the file system holding `fd`, or -errno. */
  fstatfsFlags(fd: number): number;
  chdir(path: CStr): number;
  fchdir(fd: number): number;
  open(path: CStr, flags: number, mode: number): number;
  /** openat2(2) with `struct open_how {flags, mode, resolve}`. */
  openat2(dirfd: number, path: CStr, flags: number, mode: number, resolve: number): number;
  close(fd: number): number;
  dup3(oldfd: number, newfd: number, flags: number): number;
  pivotRoot(newRoot: CStr, putOld: CStr): number;
  // Identity and credentials (raw syscalls: glibc's setxid broadcast would hang the child)
  sethostname(name: CStr): number;
  setresuid(r: number, e: number, s: number): number;
  setresgid(r: number, e: number, s: number): number;
  setgroups(gids: Uint32Array): number;
  setrlimit(resource: number, soft: number, hard: number): number;
  prctl(option: number, arg2: number, arg3: number, arg4: number, arg5: number): number;
  /** capget/capset (v3): `sets` is [effective, permitted, inheritable] as lo,hi pairs. */
  capget(sets: Uint32Array): number;
  capset(sets: Uint32Array): number;
  /** seccomp(SECCOMP_SET_MODE_FILTER, flags, {len, filter}); `filter` holds sock_filters. */
  seccompFilter(filter: Uint8Array, flags: number): number;
  /** landlock_create_ruleset with only handled_access_fs; flags 1 asks for the ABI version. */
  landlockCreateRuleset(handledFs: number, flags: number): number;
  /** landlock_add_rule(LANDLOCK_RULE_PATH_BENEATH, {allowed_access, parent_fd}). */
  landlockAddPathRule(ruleset: number, allowed: number, parentFd: number): number;
  landlockRestrictSelf(ruleset: number): number;
  /** bpf(BPF_PROG_LOAD): eBPF instructions of `progType`; the verifier's log goes to `log`. */
  bpfProgLoad(progType: number, insns: Uint8Array, license: CStr, log: Uint8Array): number;
  /** bpf(BPF_PROG_ATTACH) of `progFd` to `targetFd` (a cgroup directory). */
  bpfProgAttach(targetFd: number, progFd: number, attachType: number, flags: number): number;
  setsid(): number;
  unshare(flags: number): number;
  // I/O
  read(fd: number, buf: Uint8Array, len: number): number;
  /** getrandom(2) into `buf` (flags 0: the kernel's pool): the bytes written, or -errno. */
  getrandom(buf: Uint8Array): number;
  write(fd: number, buf: Uint8Array, len: number): number;
  pipe2(fds: Int32Array, flags: number): number;
  ioctl(fd: number, request: number, arg: number): number;
  ioctlBuf(fd: number, request: number, buf: Uint8Array): number;
  socket(domain: number, type: number, protocol: number): number;
  closeRange(first: number, last: number, flags: number): number;
  // Signals and processes
  /**
   * Resets every signal to its default action and unblocks all of them; with `unblock` false
   * the mask stays (a vfork child: its stub unblocks them right before the exec). With
   * `only`, just those signals: a vfork child's, whose handlers no signal reaches before the
   * exec resets them, need only micro's ignored ones reset (an ignored signal stays ignored
   * across an exec).
   */
  resetSignals(unblock?: boolean, only?: readonly number[]): number;
  /**
   * The signals this process ignores (SigIgn), never KILL or STOP; null when /proc cannot
   * say. Read once a process: micro ignores no signal itself (but in a forked watchdog), so
   * the set is Deno's and the caller's, fixed from the start.
   */
  ignoredSignals(): number[] | null;
  /** execveat(2): with AT_EMPTY_PATH and path "", runs the file open at `dirfd`. */
  execveat(dirfd: number, path: CStr, argv: CStrArray, envp: CStrArray, flags: number): number;
  /**
   * posix_spawn(3) of `path` with `fds[i]` as its fd i (the rest of fds 0 to 2, and every fd
   * without close-on-exec, inherited): its pid, or -errno. glibc's vfork-like spawn copies
   * none of micro's memory, where Deno.Command's first use costs about 10 ms. Parent only:
   * the cloned child never spawns. It starts with every signal at its default action and
   * none blocked; with `session`, in a session of its own with every signal blocked.
   */
  spawn(path: CStr, argv: CStrArray, envp: CStrArray, fds: number[], session?: boolean): number;
  /** Leaves the process at once (exit_group), with no atexit handlers. */
  exit(code: number): never;
  /**
   * Raw clone with fork semantics; 0 in the child. Made with every signal blocked: the
   * parent gets its mask back, the child keeps them all blocked until it resets its
   * handlers (`resetSignals`), so no handler of micro's runtime runs in the copy (SIGKILL,
   * the parent-death signal, still ends it).
   */
  clone(flags: number): number;
  /**
   * clone3(2) with fork semantics (no stack): `args` is a struct clone_args encoded
   * before the fork sweep (core/engine/clone.ts); 0 in the child. Signals as `clone`.
   */
  clone3(args: Uint8Array): number;
  /**
   * glibc's fork(3), not the raw syscall: its atfork handlers take malloc's and stdio's
   * locks around the copy, so the single-threaded child can allocate (and so run
   * JavaScript that V8 compiles or tiers up) even when another thread of micro held one
   * of them at that instant. No namespace flags: for the watchdog. 0 in the child.
   */
  fork(): number;
  /** Marks the whole address space MADV_DOFORK (see DESIGN.md §4). */
  prepareFork(): void;
  /**
   * A child that shares micro's memory (CLONE_VM | CLONE_VFORK with `flags`): it runs `run`
   * while micro's thread sleeps, then execs `exec` (core/engine/vfork.ts says when and why).
   * The child's pid, or -errno; -ENOSYS where there is no stub for the architecture. With
   * `exec.into`, a kernel or filter without clone3 or CLONE_INTO_CGROUP fails it (ENOSYS,
   * EPERM, E2BIG, EINVAL): nothing falls back to a plain clone here.
   */
  vforkExec(flags: number, run: () => number, exec: VforkExec): number;
  /** Whether `vforkExec` has a stub here (x86_64). */
  canVfork(): boolean;
  /**
   * Writes the vfork child's /proc/PID files that only micro may write (its id maps), from a
   * thread of its own while micro's sleeps in `vforkExec`: once the child sends one byte on
   * `sock`, with the pid `vforkExec` stored in `pid` (VforkExec.parentTid); the child gets 8
   * bytes back, [errno, index]. Resolves to 0, ((index + 1) << 16) | errno for the file that
   * failed (index = writes.length: /proc/PID itself), or -errno when no request came (-EPIPE:
   * the child is gone). The stub is `code`'s (VforkExec.code).
   */
  procWrites(
    code: Uint8Array,
    sock: number,
    writes: readonly { file: CStr; content: Uint8Array }[],
    pid: Int32Array,
  ): Promise<number>;
  /**
   * A child that holds a new user namespace for micro (CLONE_VM | CLONE_NEWUSER with `flags`,
   * no CLONE_VFORK: micro goes on at once) on `stack` (kept alive until it is reaped): it
   * closes every fd but `rfd` (its copy of the pipe's write end `wfd` above all) and waits in
   * a read of `rfd`, which micro's close of `wfd` (or its death) ends; then it exits 0. The child's pid, or
   * -errno; -ENOSYS where there is no stub (the stub's third function: `code`). With
   * CLONE_VFORK in `flags` and the pipe's write end closed before, the call returns once the
   * child has exited (a zombie: core/cgroups/warm.ts).
   */
  usernsHold(code: Uint8Array, flags: number, stack: Uint8Array, rfd: number, wfd: number): number;
  kill(pid: number, sig: number): number;
  getpid(): number;
  /** waitpid(pid, 0) off the main thread; resolves with the raw status. */
  waitpid(pid: number): Promise<{ pid: number; status: number }>;
  /**
   * wait4(pid, WNOHANG) on the calling thread: pid 0 while it runs, -errno on failure. For
   * a process that waits for many children: an async waitpid holds a thread of Deno's
   * blocking pool per child, and the pool is small (the supervisor starved on it).
   */
  reap(pid: number): { pid: number; status: number };
  /**
   * Whether `pid` is a child of this process, running or not yet reaped (waitid with
   * WNOWAIT: nothing is reaped, no status taken). A pid a child only reported is checked so.
   */
  isChild(pid: number): boolean;
  /**
   * Waits on this thread until `pid`, a child of this process, has exited, and leaves it
   * unreaped (waitid WNOWAIT: a zombie, whose pid cannot be reused until this process waits
   * for it). Whether it did; false for a pid that is not a child. For a child known to be
   * exiting: nothing bounds the wait.
   */
  waitExited(pid: number): boolean;
  /**
   * wait4(pid, status, options | __WALL) on the calling thread into the 4 bytes of `status`
   * the caller made: allocates nothing (the child waits for an OCI hook with it). The pid,
   * 0 (WNOHANG, still running), or -errno.
   */
  wait4(pid: number, status: Uint8Array, options: number): number;
  /** A blocking read off the main thread (for pipes and pty masters). */
  readAsync(fd: number, buf: Uint8Array, len: number): Promise<number>;
  flock(fd: number, op: number): number;
  socketpair(domain: number, type: number, fds: Int32Array): number;
  /** Sends 8 bytes on a socket, with `fd` attached (SCM_RIGHTS) unless it is -1. */
  sendRecord(sock: number, record: Int32Array, fd: number): number;
  /** Receives one record off the main thread: its length (0 at EOF) and any fd passed. */
  recvRecord(sock: number, record: Int32Array): Promise<{ n: number; fd: number }>;
  // The mount API (Linux 5.2+): a mount made detached, so the caller holds an fd of its
  // root before and after attaching it, and nothing is resolved by name twice.
  /** fsopen(2): a file system context; `flags` FSOPEN_CLOEXEC. */
  fsopen(fstype: CStr, flags: number): number;
  /** fsconfig(2): `key`/`value` per `cmd` (FSCONFIG_SET_FLAG, _SET_STRING, _CMD_CREATE). */
  fsconfig(fd: number, cmd: number, key: CStr | null, value: CStr | null, aux: number): number;
  /** fsmount(2): the context's root as a detached mount with MOUNT_ATTR_* `attrs`. */
  fsmount(fd: number, flags: number, attrs: number): number;
  /** move_mount(2). */
  moveMount(fromFd: number, fromPath: CStr, toFd: number, toPath: CStr, flags: number): number;
  /** open_tree(2); with OPEN_TREE_CLONE a detached copy of the mount (tree). */
  openTree(dirfd: number, path: CStr, flags: number): number;
  /** The f_type magic of the file system holding `fd` (PROC_SUPER_MAGIC, ...), or -errno. */
  fstatfsType(fd: number): number;
  /** getcwd(2), raw: the path written to `buf`; "(unreachable)..." outside the root. */
  getcwd(buf: Uint8Array): number;
  /** fstat(2)'s st_dev and st_ino into `out[0]`, `out[1]`: which file an fd is. */
  fstatId(fd: number, out: Float64Array): number;
  /** fstat(2): fills `st` with the fields micro looks at (an O_PATH fd works too). */
  fstat(fd: number, st: Stat): number;
  /**
   * fstatat(2) (AT_SYMLINK_NOFOLLOW, AT_EMPTY_PATH): `st`'s mode, uid, gid and rdev (not its
   * size: no BigInt, as the child calls this).
   */
  fstatat(dirfd: number, path: CStr, flags: number, st: Stat): number;
  /** getdents64(2) into `buf`: the bytes of dirent64 records read, 0 at the end. */
  getdents64(fd: number, buf: Uint8Array): number;
  /** readlinkat(2) into `buf` (not NUL-terminated): the target's length. */
  readlinkat(dirfd: number, path: CStr, buf: Uint8Array): number;
  /** sendfile(2) from the current offset of `from`: the bytes copied, 0 at its end. */
  sendfile(out: number, from: number, count: number): number;
  /** Sets every signal that can be ignored to SIG_IGN (the watchdog). */
  ignoreSignals(): number;
  /** nanosleep(2) for `ms` milliseconds, on this thread. */
  sleep(ms: number): number;
  /**
   * Resolves after `ms` milliseconds (a timerfd read off the main thread: setTimeout would
   * load Node's timers layer, bench/README.md ninth session), with 0 or -errno. The read
   * holds one of Deno's blocking threads until then, even when the caller has moved on.
   */
  sleepAsync(ms: number): Promise<number>;
  /** malloc_trim(3): gives the free memory of malloc's arenas back to the kernel. */
  trimMalloc(): void;
  /** memfd_create(2). */
  memfdCreate(name: CStr, flags: number): number;
  /** fcntl(2) with an integer argument (F_SETFD, F_ADD_SEALS, ...). */
  fcntl(fd: number, cmd: number, arg: number): number;
  // Layer unpacking (core/image/unpack.ts): every name is one component under a dirfd
  // reached by openat2, so nothing the archive made is ever followed.
  /** openat(2). */
  openat(dirfd: number, path: CStr, flags: number, mode: number): number;
  /** fchown(2) on an fd opened for reading or writing (not O_PATH). */
  fchown(fd: number, uid: number, gid: number): number;
  /** fchownat(2); AT_SYMLINK_NOFOLLOW changes a symlink itself. */
  fchownat(dirfd: number, path: CStr, uid: number, gid: number, flags: number): number;
  /** fchmod(2) on an fd opened for reading or writing (not O_PATH). */
  fchmod(fd: number, mode: number): number;
  /** fchmodat(2) (follows a final symlink: use only on names just made as non-links). */
  fchmodat(dirfd: number, path: CStr, mode: number): number;
  /** utimensat(2) with {atime, mtime} as seconds and nanoseconds; a null path is `dirfd`. */
  utimensat(
    dirfd: number,
    path: CStr | null,
    atimeSec: number,
    atimeNsec: number,
    mtimeSec: number,
    mtimeNsec: number,
    flags: number,
  ): number;
  /** mknodat(2); the device number is made from `major` and `minor` (makedev). */
  mknodat(dirfd: number, path: CStr, mode: number, major: number, minor: number): number;
  /** linkat(2); flags 0 links a symlink itself, never what it points to. */
  linkat(olddirfd: number, oldpath: CStr, newdirfd: number, newpath: CStr, flags: number): number;
  /** fsetxattr(2) on an fd opened for reading or writing. */
  fsetxattr(fd: number, name: CStr, value: Uint8Array, flags: number): number;
  /** lsetxattr(2): a final symlink is changed itself, not followed. */
  lsetxattr(path: CStr, name: CStr, value: Uint8Array, flags: number): number;
  /** renameat2(2); RENAME_NOREPLACE (1) fails with EEXIST instead of replacing. */
  renameat2(
    olddirfd: number,
    oldpath: CStr,
    newdirfd: number,
    newpath: CStr,
    flags: number,
  ): number;
  /**
   * A blocking write off the main thread (to a pipe or terminal the container or the user
   * may never drain): its length, or -errno (EPIPE for any failure: errno is not readable).
   */
  writeAsync(fd: number, buf: Uint8Array, len: number): Promise<number>;
  /**
   * ppoll(2) of one fd, waiting up to `ms` milliseconds (0, the default: not at all): the
   * revents (0 when none came in time), or -errno.
   */
  pollNow(fd: number, events: number, ms?: number): number;
  /** lgetxattr(2) into `value`: the value's length, or -errno (ENODATA 61: no such xattr). */
  lgetxattr(path: CStr, name: CStr, value: Uint8Array): number;
  /** setns(2): `fd` a namespace file or a pidfd (Linux 5.8+: several CLONE_NEW* at once). */
  setns(fd: number, nstype: number): number;
  /** pidfd_open(2): an fd that stays bound to this very process (Linux 5.3+). */
  pidfdOpen(pid: number, flags: number): number;
  /**
   * pidfd_getfd(2): a copy of another process's fd (Linux 5.6+; ptrace access to it), close-
   * on-exec: the one way to take over a pty master, which reopening through /proc cannot.
   */
  pidfdGetfd(pidfd: number, fd: number): number;
  /** connect(2) with a raw sockaddr (`struct sockaddr_un` for a unix socket path). */
  connect(fd: number, addr: Uint8Array): number;
  /** umask(2): the previous mask (never fails). */
  umask(mask: number): number;
  /** personality(2): the previous persona, or -errno. */
  personality(persona: number): number;
  /**
   * keyctl(KEYCTL_JOIN_SESSION_KEYRING, NULL): a new anonymous session keyring for this
   * process and its children (not the caller's); its serial, or -errno.
   */
  joinSessionKeyring(): number;
  /**
   * ppoll(2) of many fds with a zero timeout, on the calling thread: each fd's revents in
   * `revents` (0 when none), the number ready, or -errno. The supervisor's log pumps: one
   * call for every pipe, no thread per pipe.
   */
  pollReady(fds: Int32Array, events: number, revents: Uint16Array): number;
  /**
   * pidfd_send_signal(2): signals the very process a pidfd names (Linux 5.1+), never one that
   * got its pid later; 0, or -errno (ESRCH 3: it has ended).
   */
  pidfdSendSignal(pidfd: number, signal: number): number;
  /** ioprio_set(2) of the calling process (IOPRIO_WHO_PROCESS, 0): 0, or -errno. */
  ioprioSet(prio: number): number;
  /**
   * sched_setattr(2) of the calling thread with a `struct sched_attr` encoded before the
   * fork (core/process.ts schedAttr): 0, or -errno.
   */
  schedSetattr(attr: Uint8Array): number;
  /** chroot(2): OCI `--no-pivot` jails the container this way after an MS_MOVE of its root. */
  chroot(path: CStr): number;
  /**
   * sched_setaffinity(2) of `pid` (0: the calling thread) with a CPU bitmap encoded before
   * the fork (core/sched.ts bitmask): 0, or -errno.
   */
  schedSetaffinity(pid: number, mask: Uint8Array): number;
  /** sched_getaffinity(2) of `pid` into `mask`: the bytes the kernel wrote, or -errno. */
  schedGetaffinity(pid: number, mask: Uint8Array): number;
  /**
   * getcpu(2): the calling thread's CPU, a native-endian u32 in the first 4 bytes of `cpu`
   * (its node not asked): 0, or -errno.
   */
  getcpu(cpu: Uint8Array): number;
  /**
   * set_mempolicy(2) of the calling thread: the mode or'ed with its flags, and a node bitmap
   * (null: none), every bit of it read: 0, or -errno.
   */
  setMempolicy(mode: number, mask: Uint8Array | null): number;
  /**
   * sendmsg(2) of `data` with one fd (SCM_RIGHTS) on a connected socket, as the OCI seccomp
   * agent protocol wants it (the state JSON and the listener together): bytes sent, or -errno.
   */
  sendWithFd(sock: number, data: Uint8Array, fd: number): number;
  /** bind(2) with a raw sockaddr (`struct sockaddr_un` for a unix socket path). */
  bind(fd: number, addr: Uint8Array): number;
  /** listen(2). */
  listen(fd: number, backlog: number): number;
  /**
   * accept4(2) off the main thread (the event loop runs meanwhile), the peer's address not
   * asked: the connection, close-on-exec, or -errno (EINVAL for any failure: errno is not
   * readable off the main thread).
   */
  acceptAsync(fd: number): Promise<number>;
  /** SO_PEERCRED of a connected unix socket into `out`: [pid, uid, gid]; 0 or -errno. */
  peerCred(fd: number, out: Int32Array): number;
  /**
   * SO_PEERPIDFD (Linux 6.5+): a pidfd of the process that connected a unix socket, taken by
   * the kernel at connect (no pid a process passes, nor one reused since); or -errno.
   */
  peerPidfd(fd: number): number;
  /**
   * prlimit64(2) read of `pid`'s limit: `out` [soft, hard], RLIM_INFINITY as Infinity;
   * 0 or -errno.
   */
  getrlimitOf(pid: number, resource: number, out: Float64Array): number;
  /** sendmsg(2) of `data` with `fds` (SCM_RIGHTS, up to 8), MSG_NOSIGNAL: bytes sent or -errno. */
  sendWithFds(sock: number, data: Uint8Array, fds: number[]): number;
  /**
   * recvmsg(2) on the calling thread into `buf`, with up to 8 fds taken close-on-exec: the
   * bytes read (or -errno), the fds, and `cut` when the kernel dropped some (MSG_CTRUNC).
   */
  recvWithFds(sock: number, buf: Uint8Array): { n: number; fds: number[]; cut: boolean };
}

/** The fields of `struct stat` that micro reads. */
export interface Stat {
  /** st_mode: the type (S_IFMT bits) and the permission bits. */
  mode: number;
  size: number;
  uid: number;
  gid: number;
  /** st_rdev's low 32 bits (a device node's number), from fstatat only. */
  rdev?: number;
}

/**
 * arm64's own open flags (arch/arm64/include/uapi/asm/fcntl.h, kept for AArch32): its
 * O_DIRECTORY and O_NOFOLLOW are the bits x86_64 uses for O_DIRECT and O_LARGEFILE (with
 * x86_64's values, an arm64 open followed links and asked for direct I/O).
 */
const ARM64_OPEN = Deno.build.arch === "aarch64";

/**
 * Flag values shared by the real and the fake Sys: x86_64 and aarch64 agree on these but
 * O_DIRECTORY and O_NOFOLLOW, which are this machine's.
 */
export const C = {
  CLONE_NEWNS: 0x00020000,
  CLONE_VFORK: 0x00004000,
  CLONE_NEWCGROUP: 0x02000000,
  /** unshare and setns only: in clone's flags this bit is the exit signal's. */
  CLONE_NEWTIME: 0x00000080,
  /** clone3's flag (bit 33, above 32-bit flags): born in the cgroup `clone_args.cgroup` names. */
  CLONE_INTO_CGROUP: 2 ** 33,
  CGROUP2_SUPER_MAGIC: 0x63677270,
  CLONE_NEWUTS: 0x04000000,
  CLONE_NEWIPC: 0x08000000,
  CLONE_NEWUSER: 0x10000000,
  CLONE_NEWPID: 0x20000000,
  CLONE_NEWNET: 0x40000000,
  SIGCHLD: 17,
  MS_RDONLY: 1,
  MS_NOSUID: 2,
  MS_NODEV: 4,
  MS_NOEXEC: 8,
  MS_REMOUNT: 32,
  MS_BIND: 4096,
  MS_REC: 16384,
  MS_PRIVATE: 1 << 18,
  MS_SLAVE: 1 << 19,
  MS_RELATIME: 1 << 21,
  MS_STRICTATIME: 1 << 24,
  MS_SYNCHRONOUS: 16,
  MS_MANDLOCK: 64,
  MS_DIRSYNC: 128,
  MS_NOSYMFOLLOW: 256,
  MS_NOATIME: 1024,
  MS_NODIRATIME: 2048,
  MS_SILENT: 32768,
  MS_UNBINDABLE: 1 << 17,
  MS_SHARED: 1 << 20,
  MS_I_VERSION: 1 << 23,
  MS_LAZYTIME: 1 << 25,
  MNT_DETACH: 2,
  O_RDONLY: 0,
  O_WRONLY: 1,
  O_RDWR: 2,
  O_CREAT: 0o100,
  O_EXCL: 0o200,
  O_TRUNC: 0o1000,
  O_NOCTTY: 0o400,
  O_NONBLOCK: 0o4000,
  O_DIRECTORY: ARM64_OPEN ? 0o40000 : 0o200000,
  O_NOFOLLOW: ARM64_OPEN ? 0o100000 : 0o400000,
  O_CLOEXEC: 0o2000000,
  O_PATH: 0o10000000,
  AT_FDCWD: -100,
  RESOLVE_NO_XDEV: 0x01,
  RESOLVE_NO_MAGICLINKS: 0x02,
  RESOLVE_NO_SYMLINKS: 0x04,
  RESOLVE_BENEATH: 0x08,
  RESOLVE_IN_ROOT: 0x10,
  PR_SET_PDEATHSIG: 1,
  PR_SET_DUMPABLE: 4,
  PR_SET_NO_NEW_PRIVS: 38,
  PR_SET_KEEPCAPS: 8,
  PR_CAPBSET_DROP: 24,
  PR_CAP_AMBIENT: 47,
  PR_CAP_AMBIENT_RAISE: 2,
  PR_CAP_AMBIENT_CLEAR_ALL: 4,
  SIGKILL: 9,
  TIOCSCTTY: 0x540e,
  TIOCGWINSZ: 0x5413,
  TIOCSWINSZ: 0x5414,
  SIOCSIFFLAGS: 0x8914,
  AF_INET: 2,
  SOCK_DGRAM: 2,
  SOCK_STREAM: 1,
  SOCK_SEQPACKET: 5,
  AF_UNIX: 1,
  TIOCSPTLCK: 0x40045431,
  TIOCGPTPEER: 0x5441,
  SOCK_CLOEXEC: 0o2000000,
  IFF_UP: 1,
  IFF_RUNNING: 0x40,
  CLOSE_RANGE_CLOEXEC: 4,
  LOCK_SH: 1,
  LOCK_EX: 2,
  LOCK_NB: 4,
  LOCK_UN: 8,
  FSOPEN_CLOEXEC: 1,
  FSCONFIG_SET_FLAG: 0,
  FSCONFIG_SET_STRING: 1,
  FSCONFIG_CMD_CREATE: 6,
  FSMOUNT_CLOEXEC: 1,
  MOUNT_ATTR_RDONLY: 1,
  MOUNT_ATTR_IDMAP: 0x00100000,
  MOUNT_ATTR_NOSUID: 2,
  MOUNT_ATTR_NODEV: 4,
  MOUNT_ATTR_NOEXEC: 8,
  MOUNT_ATTR_STRICTATIME: 0x20,
  MOUNT_ATTR_NOATIME: 0x10,
  /** The atime mode's bits: cleared whenever a mode is set. */
  MOUNT_ATTR__ATIME: 0x70,
  MOUNT_ATTR_NODIRATIME: 0x80,
  MOUNT_ATTR_NOSYMFOLLOW: 0x200000,
  MOVE_MOUNT_F_EMPTY_PATH: 4,
  MOVE_MOUNT_T_EMPTY_PATH: 0x40,
  OPEN_TREE_CLONE: 1,
  AT_EMPTY_PATH: 0x1000,
  AT_RECURSIVE: 0x8000,
  PROC_SUPER_MAGIC: 0x9fa0,
  AT_SYMLINK_NOFOLLOW: 0x100,
  AT_REMOVEDIR: 0x200,
  S_IFCHR: 0o020000,
  S_IFBLK: 0o060000,
  S_IFIFO: 0o010000,
  RENAME_NOREPLACE: 1,
  SYSFS_MAGIC: 0x62656572,
  S_IFMT: 0o170000,
  S_ISVTX: 0o1000,
  S_IFSOCK: 0o140000,
  S_IFLNK: 0o120000,
  S_IFREG: 0o100000,
  S_IFDIR: 0o40000,
  MFD_CLOEXEC: 1,
  MFD_ALLOW_SEALING: 2,
  /** Linux 6.3+: an executable memfd even under vm.memfd_noexec=1 (older kernels: EINVAL). */
  MFD_EXEC: 0x10,
  F_SETFD: 2,
  F_DUPFD_CLOEXEC: 1030,
  FD_CLOEXEC: 1,
  F_ADD_SEALS: 1033,
  F_GET_SEALS: 1034,
  F_SEAL_SEAL: 1,
  F_SEAL_SHRINK: 2,
  F_SEAL_GROW: 4,
  F_SEAL_WRITE: 8,
  TCGETS: 0x5401,
  FIONREAD: 0x541b,
  POLLIN: 1,
  POLLHUP: 0x10,
  // The supervisor (core/supervisor/): adopts detached containers; reads their pipes.
  PR_SET_CHILD_SUBREAPER: 36,
  F_GETFL: 3,
  F_SETFL: 4,
  /** The new process is the caller's sibling: its parent's child (micro exec's second fork). */
  CLONE_PARENT: 0x00008000,
  /** OCI `--no-pivot`: the new root's mount moved onto / (runc's msMoveRoot). */
  MS_MOVE: 8192,
} as const;

export const RLIMITS: Record<string, number> = {
  cpu: 0,
  fsize: 1,
  data: 2,
  stack: 3,
  core: 4,
  rss: 5,
  nproc: 6,
  nofile: 7,
  memlock: 8,
  as: 9,
  locks: 10,
  sigpending: 11,
  msgqueue: 12,
  nice: 13,
  rtprio: 14,
  rttime: 15,
};

/**
 * `bytes` random bytes from the kernel as hex (ids): getrandom(2) through `sys`, as Web
 * Crypto's first call costs a process about 0.8 ms; Web Crypto where the kernel refuses
 * (before Linux 3.17, or a seccomp filter around micro).
 */
export function randomHex(sys: Pick<Sys, "getrandom">, bytes: number): string {
  const b = new Uint8Array(bytes);
  if (sys.getrandom(b) !== bytes) crypto.getRandomValues(b);
  let out = "";
  for (const x of b) out += (x < 16 ? "0" : "") + x.toString(16);
  return out;
}

const ptrEncoder = new TextEncoder();
/** Packs strings into one buffer with a NULL-terminated pointer array for execveat. */
export function cstrArray(strings: string[]): CStrArray {
  const encoded = strings.map((s) => ptrEncoder.encode(s));
  const total = encoded.reduce((n, b) => n + b.length + 1, 0);
  // One backing store of at least a page keeps V8 from placing it on the moving heap.
  const data = new Uint8Array(Math.max(total, 4096));
  const pointers = new BigUint64Array(strings.length + 1);
  const base = BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(data)));
  let off = 0;
  encoded.forEach((b, i) => {
    data.set(b, off);
    pointers[i] = base + BigInt(off);
    off += b.length + 1;
  });
  return { strings, data, pointers };
}
