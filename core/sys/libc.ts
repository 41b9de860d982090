/**
 * The real `Sys`: libc through `Deno.dlopen`. The only file that opens a library.
 * Symbols are bound once per process, each on first use (binding costs 0.2 to 0.5 ms each).
 */
import type { Arch, CStr, CStrArray, Sys } from "./mod.ts";
import { now, span } from "../trace.ts";
import { cloneArgs } from "./clone.ts";

/**
 * Syscall numbers. Every call goes through libc's `syscall(2)` under a handful of
 * signatures: one binding per signature instead of one per function keeps start-up short,
 * and raw credential calls avoid glibc's setxid broadcast, which would hang the child.
 */
const NR = {
  x86_64: {
    bpf: 321,
    mount_setattr: 442,
    unlinkat: 263,
    unshare: 272,
    capget: 125,
    capset: 126,
    seccomp: 317,
    landlock_create_ruleset: 444,
    landlock_add_rule: 445,
    landlock_restrict_self: 446,
    read: 0,
    getrandom: 318,
    write: 1,
    close: 3,
    ioctl: 16,
    madvise: 28,
    mmap: 9,
    mprotect: 10,
    munmap: 11,
    getpid: 39,
    socket: 41,
    bind: 49,
    listen: 50,
    accept4: 288,
    getsockopt: 55,
    sendmsg: 46,
    recvmsg: 47,
    socketpair: 53,
    clone: 56,
    execveat: 322,
    wait4: 61,
    waitid: 247,
    kill: 62,
    flock: 73,
    chdir: 80,
    fchdir: 81,
    setsid: 112,
    setgroups: 116,
    setresuid: 117,
    setresgid: 119,
    fstatfs: 138,
    pivot_root: 155,
    prctl: 157,
    mount: 165,
    umount2: 166,
    sethostname: 170,
    exit_group: 231,
    openat: 257,
    mkdirat: 258,
    symlinkat: 266,
    dup3: 292,
    pipe2: 293,
    prlimit64: 302,
    rt_sigaction: 13,
    rt_sigprocmask: 14,
    close_range: 436,
    openat2: 437,
    open_tree: 428,
    move_mount: 429,
    fsopen: 430,
    fsconfig: 431,
    fsmount: 432,
    getcwd: 79,
    fstat: 5,
    nanosleep: 35,
    timerfd_create: 283,
    timerfd_settime: 286,
    memfd_create: 319,
    fcntl: 72,
    fchown: 93,
    fchownat: 260,
    fchmod: 91,
    fchmodat: 268,
    utimensat: 280,
    mknodat: 259,
    linkat: 265,
    fsetxattr: 190,
    lsetxattr: 189,
    renameat2: 316,
    ppoll: 271,
    lgetxattr: 192,
    setns: 308,
    pidfd_open: 434,
    pidfd_getfd: 438,
    connect: 42,
    umask: 95,
    personality: 135,
    keyctl: 250,
    pidfd_send_signal: 424,
    clone3: 435,
    ioprio_set: 251,
    sched_setattr: 314,
    chroot: 161,
    sched_setaffinity: 203,
    sched_getaffinity: 204,
    getcpu: 309,
    set_mempolicy: 238,
    newfstatat: 262,
    getdents64: 217,
    readlinkat: 267,
    sendfile: 40,
  },
  aarch64: {
    bpf: 280,
    mount_setattr: 442,
    unlinkat: 35,
    unshare: 97,
    capget: 90,
    capset: 91,
    seccomp: 277,
    landlock_create_ruleset: 444,
    landlock_add_rule: 445,
    landlock_restrict_self: 446,
    read: 63,
    getrandom: 278,
    write: 64,
    close: 57,
    ioctl: 29,
    madvise: 233,
    mmap: 222,
    mprotect: 226,
    munmap: 215,
    getpid: 172,
    socket: 198,
    bind: 200,
    listen: 201,
    accept4: 242,
    getsockopt: 209,
    sendmsg: 211,
    recvmsg: 212,
    socketpair: 199,
    clone: 220,
    execveat: 281,
    wait4: 260,
    waitid: 95,
    kill: 129,
    flock: 32,
    chdir: 49,
    fchdir: 50,
    setsid: 157,
    setgroups: 159,
    setresuid: 147,
    setresgid: 149,
    fstatfs: 44,
    pivot_root: 41,
    prctl: 167,
    mount: 40,
    umount2: 39,
    sethostname: 161,
    exit_group: 94,
    openat: 56,
    mkdirat: 34,
    symlinkat: 36,
    dup3: 24,
    pipe2: 59,
    prlimit64: 261,
    rt_sigaction: 134,
    rt_sigprocmask: 135,
    close_range: 436,
    openat2: 437,
    open_tree: 428,
    move_mount: 429,
    fsopen: 430,
    fsconfig: 431,
    fsmount: 432,
    getcwd: 17,
    fstat: 80,
    nanosleep: 101,
    timerfd_create: 85,
    timerfd_settime: 86,
    memfd_create: 279,
    fcntl: 25,
    fchown: 55,
    fchownat: 54,
    fchmod: 52,
    fchmodat: 53,
    utimensat: 88,
    mknodat: 33,
    linkat: 37,
    fsetxattr: 7,
    lsetxattr: 6,
    renameat2: 276,
    ppoll: 73,
    lgetxattr: 9,
    setns: 268,
    pidfd_open: 434,
    pidfd_getfd: 438,
    connect: 203,
    umask: 166,
    personality: 92,
    keyctl: 219,
    pidfd_send_signal: 424,
    clone3: 435,
    ioprio_set: 30,
    sched_setattr: 274,
    chroot: 51,
    sched_setaffinity: 122,
    sched_getaffinity: 123,
    getcpu: 168,
    set_mempolicy: 237,
    newfstatat: 79,
    getdents64: 61,
    readlinkat: 78,
    sendfile: 71,
  },
} as const;

const I = "i64" as const;
const B = "buffer" as const;
/**
 * A last parameter that changes nothing but the binding's cost: a struct passed by value,
 * which Deno's fast-call compiler (turbocall) does not take, so binding a symbol skips the
 * compilation of its fast path (0.25 to 0.6 ms a symbol; 0.03 without). micro never uses
 * that path: V8 takes it only from optimized code, and micro runs interpreted (core/v8.ts).
 * Every call passes ZERO, an 8-byte zero, as it: one more integer argument, in a register
 * or on the stack, after the real ones. The fixed-argument functions ignore it; syscall(2)
 * passes it on as the next syscall argument, one the call does not use (every signature
 * here supplies the arguments its calls need), where there was an undefined value before.
 */
const Z = { struct: ["u64"] } as const;
const ZERO = new Uint8Array(8);
const sc = (...parameters: ("i64" | "buffer")[]) => ({
  name: "syscall",
  parameters: [I, ...parameters, Z],
  result: "i64",
} as const);

/**
 * syscall(2) by signature: i = a number, b = a buffer (or null); every argument 64-bit.
 * There are few: a call whose signature is the start of a longer one uses the longer one,
 * with zeros and nulls after its own arguments (the kernel ignores a syscall's unused
 * registers). Each is bound the first time it is called (about 0.03 ms with `Z`);
 * `prepareFork` binds the rest, as the cloned child must not bind anything (dlopen
 * allocates through malloc).
 */
const SYMBOLS = {
  __errno_location: { parameters: [Z], result: "pointer" },
  fork: { parameters: [Z], result: "i32" },
  i: sc(I, I, I, I, I),
  bii: sc(B, I, I),
  bib: sc(B, I, B),
  ibibi: sc(I, B, I, B, I),
  ibiii: sc(I, B, I, I, I),
  ibbii: sc(I, B, B, I, I),
  ibbbi: sc(I, B, B, B, I),
  iibi: sc(I, I, B, I),
  iiib: sc(I, I, I, B),
  iibbi: sc(I, I, B, B, I),
  bbbib: sc(B, B, B, I, B),
  bbbii: sc(B, B, B, I, I),
  ibi_async: { ...sc(I, B, I), nonblocking: true },
  ibib_async: { ...sc(I, B, I, B), nonblocking: true },
} as const;

/**
 * Deno's types want bigint for 64-bit parameters; the runtime takes numbers too, and
 * numbers keep the child and the pre-clone sweep free of BigInt allocations.
 */
type Arg = number | bigint | Uint8Array | null;
type Name = keyof typeof SYMBOLS;
// deno-lint-ignore no-explicit-any
type Raw = { [K in Name]: (...args: Arg[]) => any };

/**
 * The symbols, each bound on its first call (one `Deno.dlopen` of libc per symbol: libc is
 * loaded once, and dlopen only counts a reference). `bindAll` binds the ones not yet used.
 */
function lazySymbols(): { raw: Raw; bindAll: (childOnly?: boolean) => void } {
  const raw = {} as Raw;
  const bind = (name: Name) => {
    const t = now();
    const f = Deno.dlopen("libc.so.6", { [name]: SYMBOLS[name] } as Pick<typeof SYMBOLS, Name>)
      .symbols[name] as unknown as Raw[Name];
    Object.defineProperty(raw, name, { value: f });
    span("libc bind", t);
    return f;
  };
  for (const name of Object.keys(SYMBOLS) as Name[]) {
    Object.defineProperty(raw, name, { get: () => bind(name), configurable: true });
  }
  /**
   * `childOnly`: what a vfork child may call, not the nonblocking calls (a child awaits
   * nothing) nor fork (micro's, never its child's): each binding costs 0.1 to 0.25 ms.
   */
  const bindAll = (childOnly = false) => {
    for (const name of Object.keys(SYMBOLS) as Name[]) {
      if (childOnly && (name === "fork" || name.endsWith("_async"))) continue;
      raw[name];
    }
  };
  return { raw, bindAll };
}

/**
 * The signatures the calls below are written with, each on the base symbol it starts.
 * Fixed arity and no rest parameters: a call allocates nothing (the child calls these).
 */
function signatures(raw: Raw) {
  return {
    i: (n: Arg, a: Arg, b: Arg, c: Arg, d: Arg, e: Arg) => raw.i(n, a, b, c, d, e, ZERO),
    b: (n: Arg, a: Arg) => raw.bii(n, a, 0, 0, ZERO),
    bi: (n: Arg, a: Arg, b: Arg) => raw.bii(n, a, b, 0, ZERO),
    bii: (n: Arg, a: Arg, b: Arg, c: Arg) => raw.bii(n, a, b, c, ZERO),
    bib: (n: Arg, a: Arg, b: Arg, c: Arg) => raw.bib(n, a, b, c, ZERO),
    bb: (n: Arg, a: Arg, b: Arg) => raw.bbbib(n, a, b, null, 0, null, ZERO),
    bbbi: (n: Arg, a: Arg, b: Arg, c: Arg, d: Arg) => raw.bbbib(n, a, b, c, d, null, ZERO),
    bbbib: (n: Arg, a: Arg, b: Arg, c: Arg, d: Arg, e: Arg) => raw.bbbib(n, a, b, c, d, e, ZERO),
    bbbii: (n: Arg, a: Arg, b: Arg, c: Arg, d: Arg, e: Arg) => raw.bbbii(n, a, b, c, d, e, ZERO),
    ib: (n: Arg, a: Arg, b: Arg) => raw.ibibi(n, a, b, 0, null, 0, ZERO),
    ibi: (n: Arg, a: Arg, b: Arg, c: Arg) => raw.ibibi(n, a, b, c, null, 0, ZERO),
    ibibi: (n: Arg, a: Arg, b: Arg, c: Arg, d: Arg, e: Arg) => raw.ibibi(n, a, b, c, d, e, ZERO),
    ibii: (n: Arg, a: Arg, b: Arg, c: Arg, d: Arg) => raw.ibiii(n, a, b, c, d, 0, ZERO),
    ibiii: (n: Arg, a: Arg, b: Arg, c: Arg, d: Arg, e: Arg) => raw.ibiii(n, a, b, c, d, e, ZERO),
    ibbi: (n: Arg, a: Arg, b: Arg, c: Arg, d: Arg) => raw.ibbii(n, a, b, c, d, 0, ZERO),
    ibbii: (n: Arg, a: Arg, b: Arg, c: Arg, d: Arg, e: Arg) => raw.ibbii(n, a, b, c, d, e, ZERO),
    ibbbi: (n: Arg, a: Arg, b: Arg, c: Arg, d: Arg, e: Arg) => raw.ibbbi(n, a, b, c, d, e, ZERO),
    iib: (n: Arg, a: Arg, b: Arg, c: Arg) => raw.iibbi(n, a, b, c, null, 0, ZERO),
    iibb: (n: Arg, a: Arg, b: Arg, c: Arg, d: Arg) => raw.iibbi(n, a, b, c, d, 0, ZERO),
    iibbi: (n: Arg, a: Arg, b: Arg, c: Arg, d: Arg, e: Arg) => raw.iibbi(n, a, b, c, d, e, ZERO),
    iibi: (n: Arg, a: Arg, b: Arg, c: Arg, d: Arg) => raw.iibi(n, a, b, c, d, ZERO),
    iiib: (n: Arg, a: Arg, b: Arg, c: Arg, d: Arg) => raw.iiib(n, a, b, c, d, ZERO),
    ibi_async: (n: Arg, a: Arg, b: Arg, c: Arg) => raw.ibi_async(n, a, b, c, ZERO),
    ibib_async: (n: Arg, a: Arg, b: Arg, c: Arg, d: Arg) => raw.ibib_async(n, a, b, c, d, ZERO),
  };
}

function detectArch(): Arch {
  return Deno.build.arch === "aarch64" ? "aarch64" : "x86_64";
}

/**
 * posix_spawn and its file actions, bound together (bindSpawn) by `prepareFork` or the first
 * spawn, whichever comes first: not in SYMBOLS, as the cloned child never spawns. A command
 * that neither forks nor spawns binds none of them.
 */
const SPAWN_SYMBOLS = {
  posix_spawn_file_actions_init: { parameters: ["buffer", Z], result: "i32" },
  posix_spawn_file_actions_adddup2: { parameters: ["buffer", "i32", "i32", Z], result: "i32" },
  posix_spawn_file_actions_destroy: { parameters: ["buffer", Z], result: "i32" },
  posix_spawn: {
    parameters: ["buffer", "buffer", "buffer", "buffer", "buffer", "buffer", Z],
    result: "i32",
  },
} as const;

/**
 * glibc's posix_spawnattr_t (336 bytes, its layout part of the ABI): short flags at 0, the
 * signals to default at 8, the mask at 136 (sigset_t: 128 bytes). Filled here rather than
 * through posix_spawnattr_init and its setters: fewer symbols to bind.
 */
const ATTR_SIGDEFAULT = 8;
const ATTR_SIGMASK = 136;
/** Its flags. */
const POSIX_SPAWN_SETSIGDEF = 0x04;
const POSIX_SPAWN_SETSIGMASK = 0x08;
const POSIX_SPAWN_SETSID = 0x80;

let spawnSymbols: Deno.DynamicLibrary<typeof SPAWN_SYMBOLS>["symbols"] | undefined;
/** posix_spawn's file actions, attributes and pid out, reused: a spawn allocates no buffer. */
let spawnBuffers: { actions: Uint8Array; attr: Uint8Array; pid: Int32Array } | undefined;

/**
 * Binds posix_spawn and makes its buffers. `prepareFork` calls it before the sweep, as the
 * watchdog is spawned after the clone, when every page micro writes is a copy-on-write fault
 * while the child lives (binding then cost 1.8 ms, 0.09 before).
 */
function bindSpawn(): void {
  if (spawnSymbols) return;
  const t = now();
  spawnSymbols = Deno.dlopen("libc.so.6", SPAWN_SYMBOLS).symbols;
  // posix_spawn_file_actions_t is 80 bytes in glibc: a page each keeps it and the attributes
  // off V8's moving heap, with room to spare.
  spawnBuffers = {
    actions: new Uint8Array(4096),
    attr: new Uint8Array(4096),
    pid: new Int32Array(1024),
  };
  span("libc bind", t);
}

/**
 * posix_spawn(3) with `fds[i]` as fd i: the pid, or -errno (posix_spawn returns it).
 *
 * The new process starts with every signal at its default action and none blocked (micro
 * ignores SIGPIPE, and an ignored signal stays ignored across execve; Deno.Command resets
 * SIGPIPE and the mask, glibc's own signals 32 and 33 stay as they are there). With
 * `session`, it leaves micro's session and starts with every signal blocked, so that no
 * group signal (a terminal's ^C) reaches it before it has ignored them itself.
 *
 * The dup2 actions run in order, so a source fd that is also a target (below fds.length) is
 * first copied above them all by `dupAbove`, and the copy closed after the spawn.
 */
function spawnProcess(
  path: CStr,
  argv: CStrArray,
  envp: CStrArray,
  fds: number[],
  session: boolean,
  dupAbove: (fd: number, min: number) => number,
  close: (fd: number) => void,
): number {
  bindSpawn();
  const s = spawnSymbols!;
  const { actions, attr, pid } = spawnBuffers!;
  const copies: number[] = [];
  const sources = fds.slice();
  for (let i = 0; i < sources.length; i++) {
    const fd = sources[i];
    if (fd === i || fd >= sources.length) continue;
    const copy = dupAbove(fd, sources.length);
    if (copy < 0) {
      for (const c of copies) close(c);
      return copy;
    }
    copies.push(copy);
    for (let k = i; k < sources.length; k++) if (sources[k] === fd) sources[k] = copy;
  }
  attr.fill(0, 0, 336);
  // The flags, a short at 0 (little-endian on both architectures); all fit in its low byte.
  attr[0] = POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK | (session ? POSIX_SPAWN_SETSID : 0);
  attr.fill(0xff, ATTR_SIGDEFAULT, ATTR_SIGDEFAULT + 128);
  if (session) attr.fill(0xff, ATTR_SIGMASK, ATTR_SIGMASK + 128);
  let rc = s.posix_spawn_file_actions_init(actions, ZERO);
  if (rc !== 0) {
    for (const c of copies) close(c);
    return -rc;
  }
  try {
    for (let i = 0; i < sources.length && rc === 0; i++) {
      rc = s.posix_spawn_file_actions_adddup2(actions, sources[i], i, ZERO);
    }
    if (rc !== 0) return -rc;
    rc = s.posix_spawn(
      new Uint8Array(pid.buffer),
      path,
      actions,
      attr,
      new Uint8Array(argv.pointers.buffer),
      new Uint8Array(envp.pointers.buffer),
      ZERO,
    );
    return rc === 0 ? pid[0] : -rc;
  } finally {
    s.posix_spawn_file_actions_destroy(actions, ZERO);
    for (const c of copies) close(c);
  }
}

const CLONE_VM = 0x100;
const CLONE_VFORK = 0x4000;
const CLONE_PARENT_SETTID = 0x100000;
/** The callback's "every step ran": the stub execs only on this (a throw returns 0). */
const VFORK_GO = 0x676f;
const allSignals = new Uint8Array(8).fill(0xff);
/** micro's mask while `signalsBlocked` runs its function. */
const oldMask = new Uint8Array(8);
/** micro's mask across a raw clone: its own, so a clone inside `signalsBlocked` keeps both. */
const cloneMask = new Uint8Array(8);
/** What the vfork child runs (Sys.vforkExec); the callback below calls it. */
let vforkRun: (() => number) | null = null;
/**
 * The clone_args of a vfork clone3, held here for the call: the stub's block points to it by
 * address alone, and nothing else would keep it from the collector.
 */
const vforkHeld = new Set<Uint8Array>();

interface VforkStub {
  call: (
    flags: number,
    run: Deno.PointerValue,
    arg: null,
    block: BigUint64Array,
  ) => number | bigint;
  /** The stub's proc_writes, on a thread of Deno's blocking pool. */
  procWrites: (block: BigUint64Array) => Promise<number | bigint>;
  /** The stub's userns_hold. */
  hold: (flags: bigint, stackTop: bigint, rfd: bigint, wfd: bigint) => number | bigint;
  callback: Deno.UnsafeCallback<
    { readonly parameters: readonly ["pointer"]; readonly result: "i32" }
  >;
}
let vforkStubMapped: VforkStub | undefined;

/** A buffer's address, for the stub's blocks. */
const at = (b: Uint8Array | BigUint64Array | Int32Array) =>
  BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(b)));

/**
 * The vfork stub mapped once (read and write to fill, then read and execute) and bound with
 * `callback: true`: a call that runs JavaScript before it returns cannot be a V8 fast call.
 * The callback returns 1 (the child exits) if `run` throws all the same (runSteps reports a
 * step's throw itself: THREW_RECORD, core/engine/child.ts). Any
 * failure to map it is -ENOSYS: the engine then forks (core/engine/vfork.ts).
 */
function vforkStub(
  code: Uint8Array,
  sc: (n: number, a: number, b: number, c: number, d: number, e: number) => number,
  nr: { mmap: number; mprotect: number; munmap: number },
): VforkStub | number {
  if (vforkStubMapped) return vforkStubMapped;
  const size = 4096;
  if (code.length > size) return -38;
  const addr = sc(nr.mmap, 0, size, 3, 0x22, -1); // PROT_READ|WRITE, MAP_PRIVATE|ANONYMOUS
  if (addr < 0) return -38;
  const ptr = Deno.UnsafePointer.create(BigInt(addr))!;
  new Uint8Array(Deno.UnsafePointerView.getArrayBuffer(ptr, size)).set(code);
  // A policy that refuses executable memory (SELinux execmem, say): no stub, the fork path.
  if (sc(nr.mprotect, addr, size, 5, 0, 0) < 0) { // PROT_READ|EXEC
    sc(nr.munmap, addr, size, 0, 0, 0);
    return -38;
  }
  const def = {
    parameters: ["i64", "pointer", "pointer", "buffer"],
    result: "i64",
    callback: true,
  } as const;
  const fn = new Deno.UnsafeFnPointer(ptr as Deno.PointerObject<typeof def>, def);
  // The second function, 8 bytes in (a jump at each of the three offsets), and the third,
  // 16 bytes in: bound on first use (each binding costs about 0.1 ms; a default run needs
  // neither).
  const writesDef = { parameters: ["buffer"], result: "i64", nonblocking: true } as const;
  let writes: Deno.UnsafeFnPointer<typeof writesDef> | undefined;
  const holdDef = { parameters: ["i64", "i64", "i64", "i64"], result: "i64" } as const;
  let hold: Deno.UnsafeFnPointer<typeof holdDef> | undefined;
  const callback = new Deno.UnsafeCallback(
    { parameters: ["pointer"], result: "i32" } as const,
    () => {
      try {
        const rc = vforkRun ? vforkRun() : 1;
        return rc === 0 ? VFORK_GO : rc;
      } catch {
        return 1;
      }
    },
  );
  return vforkStubMapped = {
    call: (flags, run, arg, block) => fn.call(BigInt(flags), run, arg, block),
    procWrites: (block) =>
      (writes ??= new Deno.UnsafeFnPointer(
        Deno.UnsafePointer.create(BigInt(addr) + 8n) as Deno.PointerObject<typeof writesDef>,
        writesDef,
      )).call(block),
    hold: (flags, stackTop, rfd, wfd) =>
      (hold ??= new Deno.UnsafeFnPointer(
        Deno.UnsafePointer.create(BigInt(addr) + 16n) as Deno.PointerObject<typeof holdDef>,
        holdDef,
      )).call(flags, stackTop, rfd, wfd),
    callback,
  };
}

let opened: Sys | undefined;

/** The process's one `Sys` (binding the symbols costs milliseconds, so it is done once). */
export function openLibc(): Sys {
  return opened ??= bindLibc();
}

function bindLibc(): Sys {
  const { raw, bindAll } = lazySymbols();
  const lib = signatures(raw);
  const arch = detectArch();
  const nr = NR[arch];
  // errno's address in this thread (the same in the cloned child), found on the first failure.
  let errnoView: Deno.UnsafePointerView | null = null;
  const errno = () =>
    (errnoView ??= new Deno.UnsafePointerView(raw.__errno_location(ZERO)!)).getInt32(0);
  /**
   * libc's convention (-1 and errno) to ours (-errno); results fit in a number. A failure
   * whose errno reads 0 (clobbered) is EIO, never -0: a clone's caller takes 0 as the child.
   */
  const r = (v: number | bigint) => {
    const n = Number(v);
    return n < 0 ? -(errno() || 5) : n;
  };
  /** The vfork stub (x86_64), mapped once a process; -ENOSYS where there is none. */
  const stubFor = (code: Uint8Array) =>
    arch !== "x86_64" ? -38 : vforkStub(code, (n, a, b, c, d, e) => r(lib.i(n, a, b, c, d, e)), nr);
  /**
   * `fn` with every signal blocked, micro's own mask back after: a child cloned meanwhile
   * starts with them all blocked (no handler of micro's runs in it).
   */
  const signalsBlocked = <T>(fn: () => T): T => {
    lib.ibbi(nr.rt_sigprocmask, 0, allSignals, oldMask, 8); // SIG_BLOCK
    try {
      return fn();
    } finally {
      lib.ibbi(nr.rt_sigprocmask, 2, oldMask, null, 8); // SIG_SETMASK
    }
  };
  /**
   * A clone made with every signal blocked (Sys.clone says why): the mask comes back in the
   * parent only. Nothing here allocates in the child.
   */
  const cloneBlocked = (clone: () => number): number => {
    lib.ibbi(nr.rt_sigprocmask, 0, allSignals, cloneMask, 8); // SIG_BLOCK
    const pid = clone();
    if (pid !== 0) lib.ibbi(nr.rt_sigprocmask, 2, cloneMask, null, 8); // SIG_SETMASK
    return pid;
  };
  /**
   * Calls made off the main thread set errno in another thread, so it cannot be read:
   * a failure is retried a few times (EINTR) and then reported as `fallback`.
   */
  const retryAsync = async (call: () => Promise<number | bigint>, fallback: number) => {
    for (let i = 0; i < 16; i++) {
      const n = Number(await call());
      if (n >= 0) return n;
    }
    return -fallback;
  };
  const AT_FDCWD = -100;
  // Pre-allocated scratch buffers so child-side calls allocate nothing of note.
  const how = new Uint32Array(6);
  const howBytes = new Uint8Array(how.buffer);
  const rlim = new Uint32Array(4);
  const rlimBytes = new Uint8Array(rlim.buffer);
  const sigact = new Uint8Array(32); // sa_handler=SIG_DFL, flags 0, restorer 0, mask 0
  const sigset = new Uint8Array(8);
  /** "/proc/self/status" as a C string (ignoredSignals), made at its first call. */
  let statusPath: Uint8Array | undefined;
  /** ignoredSignals' answer, once read. */
  let ignoredOnce: number[] | undefined;
  const sigIgnore = new Uint8Array(32);
  sigIgnore[0] = 1; // sa_handler = SIG_IGN
  const timespec = new Uint32Array(4); // {i64 tv_sec, i64 tv_nsec}
  const timespecBytes = new Uint8Array(timespec.buffer);
  const mountAttr = new Uint32Array(8); // struct mount_attr, 32 bytes
  const mountAttrBytes = new Uint8Array(mountAttr.buffer);
  const statWords = new Uint32Array(64); // struct stat: 144 bytes on x86_64, 128 on aarch64
  const statBuf = new Uint8Array(statWords.buffer);
  const statfsWords = new Uint32Array(32);
  const statfsBuf = new Uint8Array(statfsWords.buffer);
  const setU64 = (arr: Uint32Array, i: number, v: number) => {
    if (v < 0 || v === Infinity) {
      arr[i * 2] = 0xffffffff;
      arr[i * 2 + 1] = 0xffffffff;
    } else {
      arr[i * 2] = v >>> 0;
      arr[i * 2 + 1] = Math.floor(v / 0x100000000);
    }
  };
  let sweep: Float64Array | null = null;
  const send = messageBuffer();
  // struct __user_cap_header_struct {version 3, pid 0} and two data structs.
  const capHeader = new Uint32Array([0x20080522, 0]);
  const capHeaderBytes = new Uint8Array(capHeader.buffer);
  const capData = new Uint32Array(6);
  const capDataBytes = new Uint8Array(capData.buffer);
  const fprog = new Uint32Array(4); // {u16 len, pad, filter pointer}
  const fprogBytes = new Uint8Array(fprog.buffer);
  const ruleset = new Uint32Array(2); // {u64 handled_access_fs}
  const rulesetBytes = new Uint8Array(ruleset.buffer);
  const beneath = new Uint8Array(16); // packed {u64 allowed_access; s32 parent_fd}
  const beneathView = new DataView(beneath.buffer);
  const statView = new DataView(statBuf.buffer);
  const timespecs = new Float64Array(4); // struct timespec[2], filled as 64-bit integers
  const timesBytes = new Uint8Array(timespecs.buffer);
  const timesView = new DataView(timespecs.buffer);
  // Larger than V8's on-heap limit for typed arrays, so their addresses do not move.
  const pollBuf = new Uint8Array(128);
  const pollView = new DataView(pollBuf.buffer);
  const zeroTime = new Uint8Array(128);
  const waitTime = new Uint8Array(16);

  const sys: Sys = {
    arch,
    mount: (s, t, f, flags, d) => r(lib.bbbib(nr.mount, s, t, f, flags, d)),
    umount2: (t, flags) => r(lib.bi(nr.umount2, t, flags)),
    mountSetattr(fd, path, flags, set, clr, userns = 0, propagation = 0) {
      mountAttr[0] = set;
      mountAttr[2] = clr;
      mountAttr[4] = propagation;
      mountAttr[6] = userns;
      return r(lib.ibibi(nr.mount_setattr, fd, path, flags, mountAttrBytes, 32));
    },
    mkdirat: (fd, p, mode) => r(lib.ibi(nr.mkdirat, fd, p, mode)),
    unlinkat: (fd, p, flags) => r(lib.ibi(nr.unlinkat, fd, p, flags)),
    symlinkat: (t, fd, p) => r(lib.bib(nr.symlinkat, t, fd, p)),
    fstatfsFlags(fd) {
      const rc = r(lib.ib(nr.fstatfs, fd, statfsBuf));
      // struct statfs on 64-bit Linux: f_flags is the 11th 8-byte field.
      return rc < 0 ? rc : statfsWords[20];
    },
    chdir: (p) => r(lib.b(nr.chdir, p)),
    fchdir: (fd) => r(lib.i(nr.fchdir, fd, 0, 0, 0, 0)),
    open: (p, flags, mode) => r(lib.ibii(nr.openat, AT_FDCWD, p, flags, mode)),
    openat2(dirfd, path, flags, mode, resolve) {
      setU64(how, 0, flags);
      setU64(how, 1, mode);
      setU64(how, 2, resolve);
      return r(lib.ibbi(nr.openat2, dirfd, path, howBytes, 24));
    },
    close: (fd) => r(lib.i(nr.close, fd, 0, 0, 0, 0)),
    dup3: (a, b, flags) => r(lib.i(nr.dup3, a, b, flags, 0, 0)),
    pivotRoot: (n, o) => r(lib.bb(nr.pivot_root, n, o)),
    sethostname: (name) => r(lib.bi(nr.sethostname, name, name.indexOf(0))),
    setresuid: (a, b, c) => r(lib.i(nr.setresuid, a, b, c, 0, 0)),
    setresgid: (a, b, c) => r(lib.i(nr.setresgid, a, b, c, 0, 0)),
    setgroups: (gids) =>
      r(lib.ib(nr.setgroups, gids.length, new Uint8Array(gids.buffer, gids.byteOffset))),
    setrlimit(resource, soft, hard) {
      setU64(rlim, 0, soft);
      setU64(rlim, 1, hard);
      return r(lib.iibb(nr.prlimit64, 0, resource, rlimBytes, null));
    },
    prctl: (o, a, b, c, d) => r(lib.i(nr.prctl, o, a, b, c, d)),
    setsid: () => r(lib.i(nr.setsid, 0, 0, 0, 0, 0)),
    unshare: (flags) => r(lib.i(nr.unshare, flags, 0, 0, 0, 0)),
    capget(sets) {
      const rc = r(lib.bb(nr.capget, capHeaderBytes, capDataBytes));
      // The kernel's layout is per 32-bit half: {eff, perm, inh}[2]; ours is per set.
      for (let i = 0; i < 3; i++) {
        sets[i * 2] = capData[i];
        sets[i * 2 + 1] = capData[3 + i];
      }
      return rc;
    },
    capset(sets) {
      capHeader[0] = 0x20080522;
      for (let i = 0; i < 3; i++) {
        capData[i] = sets[i * 2];
        capData[3 + i] = sets[i * 2 + 1];
      }
      return r(lib.bb(nr.capset, capHeaderBytes, capDataBytes));
    },
    seccompFilter(filter, flags) {
      const ptr = Number(Deno.UnsafePointer.value(Deno.UnsafePointer.of(filter)));
      fprog[0] = filter.length / 8;
      fprog[1] = 0;
      fprog[2] = ptr >>> 0;
      fprog[3] = Math.floor(ptr / 0x100000000);
      return r(lib.iib(nr.seccomp, 1, flags, fprogBytes)); // SECCOMP_SET_MODE_FILTER
    },
    landlockCreateRuleset(handledFs, flags) {
      setU64(ruleset, 0, handledFs);
      return flags & 1
        ? r(lib.bii(nr.landlock_create_ruleset, null, 0, flags))
        : r(lib.bii(nr.landlock_create_ruleset, rulesetBytes, 8, flags));
    },
    landlockAddPathRule(fd, allowed, parentFd) {
      beneathView.setUint32(0, allowed >>> 0, true);
      beneathView.setUint32(4, Math.floor(allowed / 0x100000000), true);
      beneathView.setInt32(8, parentFd, true);
      return r(lib.iibi(nr.landlock_add_rule, fd, 1, beneath, 0)); // LANDLOCK_RULE_PATH_BENEATH
    },
    bpfProgLoad(progType, insns, license, log) {
      // union bpf_attr for BPF_PROG_LOAD: prog_type, insn_cnt, insns, license, log_level,
      // log_size, log_buf (the rest zero).
      const attr = new Uint32Array(32);
      const ptr = (b: Uint8Array) => Number(Deno.UnsafePointer.value(Deno.UnsafePointer.of(b)));
      const put = (i: number, v: number) => {
        attr[i] = v >>> 0;
        attr[i + 1] = Math.floor(v / 0x100000000);
      };
      attr[0] = progType;
      attr[1] = insns.length / 8;
      put(2, ptr(insns));
      put(4, ptr(license));
      if (log.length) {
        attr[6] = 1; // log_level
        attr[7] = log.length;
        put(8, ptr(log));
      }
      return r(lib.ibi(nr.bpf, 5, new Uint8Array(attr.buffer), 128)); // BPF_PROG_LOAD
    },
    bpfProgAttach(targetFd, progFd, attachType, flags) {
      const attr = new Uint32Array([targetFd, progFd, attachType, flags, 0, 0, 0, 0]);
      return r(lib.ibi(nr.bpf, 8, new Uint8Array(attr.buffer), 32)); // BPF_PROG_ATTACH
    },
    landlockRestrictSelf: (fd) => r(lib.i(nr.landlock_restrict_self, fd, 0, 0, 0, 0)),
    read: (fd, buf, len) => r(lib.ibi(nr.read, fd, buf, len)),
    getrandom: (buf) => r(lib.bii(nr.getrandom, buf, buf.length, 0)),
    write: (fd, buf, len) => r(lib.ibi(nr.write, fd, buf, len)),
    pipe2: (fds, flags) =>
      r(lib.bi(nr.pipe2, new Uint8Array(fds.buffer, fds.byteOffset, 8), flags)),
    ioctl: (fd, req, arg) => r(lib.i(nr.ioctl, fd, req, arg, 0, 0)),
    ioctlBuf: (fd, req, buf) => r(lib.iib(nr.ioctl, fd, req, buf)),
    socket: (d, t, p) => r(lib.i(nr.socket, d, t, p, 0, 0)),
    closeRange: (a, b, flags) => r(lib.i(nr.close_range, a, b, flags, 0, 0)),
    ignoredSignals() {
      // Read once a process: what a process ignores it ignored from its start (Deno's SIGPIPE,
      // the caller's), as micro ignores none itself but in a forked watchdog. /proc/self/
      // status's SigIgn line, found in its bytes: no TextDecoder, few steps.
      if (ignoredOnce) return [...ignoredOnce];
      statusPath ??= Uint8Array.from("/proc/self/status\0", (c) => c.charCodeAt(0));
      const fd = sys.open(statusPath, 0o2000000, 0); // O_RDONLY | O_CLOEXEC
      if (fd < 0) return null;
      const buf = new Uint8Array(4096);
      let n = 0;
      for (;;) {
        const got = sys.read(fd, buf.subarray(n), buf.length - n);
        if (got <= 0 || (n += got) === buf.length) break;
      }
      sys.close(fd);
      // "SigIgn:" at a line's start, then tabs and 16 hex digits.
      let i = 0;
      while (
        i >= 0 && i + 24 < n &&
        !(buf[i] === 83 && buf[i + 3] === 73 && buf[i + 5] === 110 && buf[i + 6] === 58)
      ) i = buf.indexOf(10, i) + 1 || -1;
      if (i < 0 || i + 24 >= n) return null;
      i += 7;
      while (buf[i] === 9 || buf[i] === 32) i++;
      // Two 32-bit halves (no BigInt): the first 8 digits are signals 33 to 64.
      const half = [0, 0];
      for (let k = 0; k < 16; k++) {
        const c = buf[i + k];
        const d = c >= 48 && c <= 57 ? c - 48 : c >= 97 && c <= 102 ? c - 87 : -1;
        if (d < 0) return null;
        half[k >> 3] = (half[k >> 3] * 16 + d) >>> 0;
      }
      const signals: number[] = [];
      for (let sig = 1; sig < 65; sig++) {
        const bit = (sig <= 32 ? half[1] >>> (sig - 1) : half[0] >>> (sig - 33)) & 1;
        if (bit && sig !== 9 && sig !== 19) signals.push(sig);
      }
      ignoredOnce = signals;
      return [...signals];
    },
    resetSignals(unblock = true, only) {
      // 32 and 33 too (glibc's internal signals, which its sigaction refuses but the kernel
      // does not): a glibc parent's posix_spawn leaves them ignored, and an ignored signal
      // stays ignored across execve, into the container's command. (Index loops: a cloned
      // child allocates nothing.)
      if (only) {
        for (let i = 0; i < only.length; i++) lib.ibbi(nr.rt_sigaction, only[i], sigact, null, 8);
      } else {
        for (let sig = 1; sig < 65; sig++) {
          if (sig === 9 || sig === 19) continue;
          lib.ibbi(nr.rt_sigaction, sig, sigact, null, 8);
        }
      }
      if (!unblock) return 0;
      return r(lib.ibbi(nr.rt_sigprocmask, 2, sigset, null, 8)); // SIG_SETMASK, empty
    },
    spawn: (path, argv, envp, fds, session = false) =>
      spawnProcess(
        path,
        argv,
        envp,
        fds,
        session,
        (fd, min) => r(lib.i(nr.fcntl, fd, 1030, min, 0, 0)), // F_DUPFD_CLOEXEC
        (fd) => lib.i(nr.close, fd, 0, 0, 0, 0),
      ),
    execveat: (dirfd, path, argv, envp, flags) =>
      r(lib.ibbbi(
        nr.execveat,
        dirfd,
        path,
        new Uint8Array(argv.pointers.buffer),
        new Uint8Array(envp.pointers.buffer),
        flags,
      )),
    exit(code: number): never {
      lib.i(nr.exit_group, code, 0, 0, 0, 0);
      throw new Error("unreachable");
    },
    clone: (flags) => cloneBlocked(() => r(lib.i(nr.clone, flags, 0, 0, 0, 0))),
    canVfork: () => arch === "x86_64",
    vforkExec(flags, run, exec) {
      if (arch !== "x86_64") return -38; // ENOSYS
      // Everything the child may call bound now: it must not dlopen libc after its Landlock
      // rules or seccomp filter are on (nor take the loader's lock another thread holds).
      bindAll(true);
      errno();
      const stub = stubFor(exec.code);
      if (typeof stub === "number") return stub;
      // The child's pid stored by the kernel before the child runs (for proc_writes).
      const tid = exec.parentTid ? at(exec.parentTid) : 0n;
      const all = flags | CLONE_VM | CLONE_VFORK | (tid ? CLONE_PARENT_SETTID : 0);
      // clone3 into a cgroup v2 directory (CLONE_INTO_CGROUP), with the stub's own flags.
      const into = exec.into ?? -1;
      const args = into >= 0 ? cloneArgs(all, into, tid) : null;
      const block = new BigUint64Array([
        BigInt.asUintN(64, BigInt(exec.dirfd)),
        at(exec.path),
        at(exec.argv.pointers),
        at(exec.envp.pointers),
        BigInt(exec.flags),
        BigInt(exec.reportFd),
        at(exec.record),
        0n, // the empty signal mask the stub sets before the exec
        args === null ? 0n : at(args),
        tid,
      ]);
      // Every signal blocked across the clone: the child starts with none delivered (micro's
      // handlers are Deno's, in memory it shares), and the stub unblocks them at its exec.
      return signalsBlocked(() => {
        vforkRun = run;
        if (args) vforkHeld.add(args);
        try {
          return Number(stub.call(all, stub.callback.pointer, null, block));
        } finally {
          vforkRun = null;
          if (args) vforkHeld.delete(args);
        }
      });
    },
    usernsHold(code, flags, stack, rfd, wfd) {
      const stub = stubFor(code);
      if (typeof stub === "number") return stub;
      // The child keeps every signal blocked (no handler of micro's may run on its stack).
      const top = at(stack) + BigInt(stack.length & ~15);
      return signalsBlocked(() =>
        Number(stub.hold(BigInt(flags | CLONE_VM), top, BigInt(rfd), BigInt(wfd)))
      );
    },
    procWrites(code, sock, writes, pid) {
      const stub = stubFor(code);
      if (typeof stub === "number") return Promise.resolve(stub);
      const block = new BigUint64Array(3 + 3 * writes.length);
      block[0] = BigInt(sock);
      block[1] = at(pid);
      block[2] = BigInt(writes.length);
      writes.forEach((w, k) => {
        block[3 + 3 * k] = at(w.file);
        block[4 + 3 * k] = at(w.content);
        block[5 + 3 * k] = BigInt(w.content.length);
      });
      // What the thread reads by address alone stays referenced until it is done.
      const held = [block, writes, pid];
      return stub.procWrites(block).then((rc) => (held.length, Number(rc)));
    },
    clone3: (args) => cloneBlocked(() => r(lib.bi(nr.clone3, args, args.length))),
    fork: () => r(raw.fork(ZERO)),
    prepareFork() {
      // The whole user address space, holes included (madvise skips them with ENOMEM but
      // still marks every mapping), so pages V8 maps after reading /proc/self/maps are
      // covered too. Only the VM_IO mappings, which never move, are stepped around.
      // Everything the child may call is bound now: it cannot bind (DESIGN.md §4).
      bindAll();
      bindSpawn();
      errno();
      if (sweep === null) sweep = sweepRanges(arch);
      const m = sweep;
      for (let i = 0; i < m.length; i += 2) lib.i(nr.madvise, m[i], m[i + 1] - m[i], 11, 0, 0);
    },
    kill: (pid, sig) => r(lib.i(nr.kill, pid, sig, 0, 0, 0)),
    getpid: () => r(lib.i(nr.getpid, 0, 0, 0, 0, 0)),
    async waitpid(pid) {
      const st = new Int32Array(1);
      const bytes = new Uint8Array(st.buffer);
      // __WALL; a failure is EINTR unless the pid is no child of this process's (any more:
      // reaped elsewhere), then ECHILD (a live process that is not one is not waited for).
      for (;;) {
        const got = Number(await lib.ibib_async(nr.wait4, pid, bytes, 0x40000000, null));
        if (got >= 0) return { pid: got, status: st[0] };
        if (!sys.isChild(pid)) return { pid: -10, status: 0 };
      }
    },
    reap(pid) {
      const st = new Int32Array(1);
      // WNOHANG | __WALL
      const got = r(lib.ibibi(nr.wait4, pid, new Uint8Array(st.buffer), 0x40000001, null, 0));
      return { pid: got, status: got > 0 ? st[0] : 0 };
    },
    isChild(pid) {
      // waitid(P_PID, pid, info, WEXITED | WNOHANG | WNOWAIT | __WALL, NULL): 0 for a
      // child (exited or not: WNOWAIT leaves it to its waitpid), ECHILD for anyone else.
      const info = new Uint8Array(128);
      return r(lib.iibi(nr.waitid, 1, pid, info, 0x41000005)) === 0;
    },
    waitExited(pid) {
      // waitid(P_PID, pid, info, WEXITED | WNOWAIT | __WALL, NULL), blocking; EINTR retried.
      const info = new Int32Array(32);
      const bytes = new Uint8Array(info.buffer);
      let rc: number;
      do rc = r(lib.iibi(nr.waitid, 1, pid, bytes, 0x41000004)); while (rc === -4);
      return rc === 0 && info[0] === 17; // si_signo: SIGCHLD
    },
    wait4: (pid, status, options) =>
      r(lib.ibibi(nr.wait4, pid, status, options | 0x40000000, null, 0)),
    readAsync: (fd, buf, len) => retryAsync(() => lib.ibi_async(nr.read, fd, buf, len), 5),
    flock: (fd, op) => r(lib.i(nr.flock, fd, op, 0, 0, 0)),
    socketpair: (d, t, fds) =>
      r(lib.iiib(nr.socketpair, d, t, 0, new Uint8Array(fds.buffer, fds.byteOffset, 8))),
    sendRecord(sock, record, fd) {
      send.words.set(record, MSG_DATA / 4);
      send.words[MSG_CMSG / 4 + 4] = fd;
      send.set(MSG_CONTROLLEN, fd >= 0 ? CMSG_SPACE_INT : 0);
      return r(lib.ibi(nr.sendmsg, sock, send.bytes, 0x4000)); // MSG_NOSIGNAL
    },
    async recvRecord(sock, record) {
      const m = messageBuffer();
      const n = await retryAsync(() => {
        m.set(MSG_CONTROLLEN, CMSG_SPACE_INT);
        return lib.ibi_async(nr.recvmsg, sock, m.bytes, 0x40000000); // MSG_CMSG_CLOEXEC
      }, 5);
      if (n > 0) record.set(m.words.subarray(MSG_DATA / 4, MSG_DATA / 4 + 2));
      const withFd = n > 0 && m.words[MSG_CONTROLLEN / 4] >= 20 && m.words[MSG_CMSG / 4 + 3] === 1;
      return { n, fd: withFd ? m.words[MSG_CMSG / 4 + 4] : -1 };
    },
    fsopen: (t, flags) => r(lib.bi(nr.fsopen, t, flags)),
    fsconfig: (fd, cmd, k, v, aux) => r(lib.iibbi(nr.fsconfig, fd, cmd, k, v, aux)),
    fsmount: (fd, flags, attrs) => r(lib.i(nr.fsmount, fd, flags, attrs, 0, 0)),
    moveMount: (f, fp, t, tp, flags) => r(lib.ibibi(nr.move_mount, f, fp, t, tp, flags)),
    openTree: (fd, p, flags) => r(lib.ibi(nr.open_tree, fd, p, flags)),
    fstatfsType(fd) {
      const rc = r(lib.ib(nr.fstatfs, fd, statfsBuf));
      // f_type is the first 8-byte field; every magic fits in 32 bits.
      return rc < 0 ? rc : statfsWords[0];
    },
    getcwd: (buf) => r(lib.bi(nr.getcwd, buf, buf.length)),
    fstatId(fd, out) {
      const rc = r(lib.ib(nr.fstat, fd, statBuf));
      // st_dev and st_ino are the first two 8-byte fields on x86_64 and aarch64 alike.
      if (rc >= 0) {
        out[0] = statWords[0] + statWords[1] * 0x100000000;
        out[1] = statWords[2] + statWords[3] * 0x100000000;
      }
      return rc;
    },
    fstat(fd, st) {
      const rc = r(lib.ib(nr.fstat, fd, statBuf));
      if (rc < 0) return rc;
      // struct stat: x86_64 has st_nlink (8 bytes) before st_mode; the generic layout
      // (aarch64) has st_mode, then a 4-byte st_nlink. st_size is at 48 on both.
      const x86 = arch === "x86_64";
      st.mode = statView.getUint32(x86 ? 24 : 16, true);
      st.uid = statView.getUint32(x86 ? 28 : 24, true);
      st.gid = statView.getUint32(x86 ? 32 : 28, true);
      st.size = Number(statView.getBigInt64(48, true));
      return rc;
    },
    fstatat(fd, p, flags, st) {
      const rc = r(lib.ibbi(nr.newfstatat, fd, p, statBuf, flags));
      if (rc < 0) return rc;
      // No BigInt (st_size is left alone), as the child calls this (copy-up).
      const x86 = arch === "x86_64";
      st.mode = statView.getUint32(x86 ? 24 : 16, true);
      st.uid = statView.getUint32(x86 ? 28 : 24, true);
      st.gid = statView.getUint32(x86 ? 32 : 28, true);
      st.rdev = statView.getUint32(x86 ? 40 : 32, true);
      return rc;
    },
    getdents64: (fd, buf) => r(lib.ibi(nr.getdents64, fd, buf, buf.length)),
    readlinkat: (fd, p, buf) => r(lib.ibbi(nr.readlinkat, fd, p, buf, buf.length)),
    sendfile: (out, from, count) => r(lib.i(nr.sendfile, out, from, 0, count, 0)),
    ignoreSignals() {
      let rc = 0;
      for (let sig = 1; sig < 65; sig++) {
        if (sig === 9 || sig === 19 || sig === 32 || sig === 33) continue;
        rc = r(lib.ibbi(nr.rt_sigaction, sig, sigIgnore, null, 8));
        if (rc < 0) return rc;
      }
      return rc;
    },
    sleep(ms) {
      timespec[0] = Math.floor(ms / 1000);
      timespec[2] = (ms % 1000) * 1_000_000;
      return r(lib.bb(nr.nanosleep, timespecBytes, null));
    },
    trimMalloc() {
      // Not in SYMBOLS: a libc function, not a syscall, that only this calls, once a run.
      const t = now();
      const lib = Deno.dlopen("libc.so.6", {
        malloc_trim: { parameters: ["usize", Z], result: "i32" },
      });
      span("libc bind", t);
      lib.symbols.malloc_trim(0n, ZERO);
      lib.close();
    },
    async sleepAsync(ms) {
      // CLOCK_MONOTONIC, TFD_CLOEXEC; struct itimerspec {interval, value}, one shot.
      const fd = r(lib.i(nr.timerfd_create, 1, 0o2000000, 0, 0, 0));
      if (fd < 0) return fd;
      const spec = new Uint32Array(8);
      spec[4] = Math.floor(ms / 1000);
      // An all-zero value disarms the timer (the read would never return): 1 ns at least.
      spec[6] = Math.max(1, Math.floor(ms % 1000) * 1_000_000);
      let rc = r(lib.iibb(nr.timerfd_settime, fd, 0, new Uint8Array(spec.buffer), null));
      const expirations = new Uint8Array(8);
      if (rc >= 0) rc = await retryAsync(() => lib.ibi_async(nr.read, fd, expirations, 8), 5);
      // The kernel wrote into it from another thread: kept alive until the read is done.
      expirations[0] |= 0;
      sys.close(fd);
      return rc < 0 ? rc : 0;
    },
    memfdCreate: (name, flags) => r(lib.bi(nr.memfd_create, name, flags)),
    fcntl: (fd, cmd, arg) => r(lib.i(nr.fcntl, fd, cmd, arg, 0, 0)),
    openat: (fd, p, flags, mode) => r(lib.ibii(nr.openat, fd, p, flags, mode)),
    fchown: (fd, uid, gid) => r(lib.i(nr.fchown, fd, uid, gid, 0, 0)),
    fchownat: (fd, p, uid, gid, flags) => r(lib.ibiii(nr.fchownat, fd, p, uid, gid, flags)),
    fchmod: (fd, mode) => r(lib.i(nr.fchmod, fd, mode, 0, 0, 0)),
    fchmodat: (fd, p, mode) => r(lib.ibi(nr.fchmodat, fd, p, mode)),
    utimensat(fd, p, aSec, aNsec, mSec, mNsec, flags) {
      timesView.setBigInt64(0, BigInt(aSec), true);
      timesView.setBigInt64(8, BigInt(aNsec), true);
      timesView.setBigInt64(16, BigInt(mSec), true);
      timesView.setBigInt64(24, BigInt(mNsec), true);
      return r(lib.ibbi(nr.utimensat, fd, p, timesBytes, flags));
    },
    mknodat(fd, p, mode, major, minor) {
      // makedev: the low 8 bits of the minor, 12 of the major, then the rest of the minor.
      const dev = (minor & 0xff) + (major & 0xfff) * 0x100 + (minor >>> 8) * 0x100000 +
        (major >>> 12) * 0x100000000;
      return r(lib.ibii(nr.mknodat, fd, p, mode, dev));
    },
    linkat: (ofd, op, nfd, np, flags) => r(lib.ibibi(nr.linkat, ofd, op, nfd, np, flags)),
    fsetxattr: (fd, name, value, flags) =>
      r(lib.ibbii(nr.fsetxattr, fd, name, value, value.length, flags)),
    lsetxattr: (p, name, value, flags) =>
      r(lib.bbbii(nr.lsetxattr, p, name, value, value.length, flags)),
    renameat2: (ofd, op, nfd, np, flags) => r(lib.ibibi(nr.renameat2, ofd, op, nfd, np, flags)),
    writeAsync: (fd, buf, len) => retryAsync(() => lib.ibi_async(nr.write, fd, buf, len), 32),
    pollNow(fd, events, ms = 0) {
      // struct pollfd {int fd; short events, revents} and a timespec, passed as addresses
      // through the all-numbers signature (no extra binding at start-up).
      pollView.setInt32(0, fd, true);
      pollView.setInt16(4, events, true);
      pollView.setInt16(6, 0, true);
      const at = (b: Uint8Array) => Number(Deno.UnsafePointer.value(Deno.UnsafePointer.of(b)));
      let time = zeroTime;
      if (ms > 0) {
        const t = new DataView(waitTime.buffer);
        t.setBigInt64(0, BigInt(Math.floor(ms / 1000)), true);
        t.setBigInt64(8, BigInt((ms % 1000) * 1_000_000), true);
        time = waitTime;
      }
      const rc = r(lib.i(nr.ppoll, at(pollBuf), 1, at(time), 0, 0));
      return rc < 0 ? rc : pollView.getUint16(6, true);
    },
    // mount's signature (bound at start-up): a run reads image layers' markers with it.
    lgetxattr: (p, name, value) => r(lib.bbbib(nr.lgetxattr, p, name, value, value.length, null)),
    setns: (fd, nstype) => r(lib.i(nr.setns, fd, nstype, 0, 0, 0)),
    pidfdOpen: (pid, flags) => r(lib.i(nr.pidfd_open, pid, flags, 0, 0, 0)),
    pidfdGetfd: (pidfd, fd) => r(lib.i(nr.pidfd_getfd, pidfd, fd, 0, 0, 0)),
    connect: (fd, addr) => r(lib.ibi(nr.connect, fd, addr, addr.length)),
    umask: (mask) => r(lib.i(nr.umask, mask, 0, 0, 0, 0)),
    personality: (persona) => r(lib.i(nr.personality, persona, 0, 0, 0, 0)),
    // KEYCTL_JOIN_SESSION_KEYRING (1) with a NULL name: never an existing keyring by name.
    joinSessionKeyring: () => r(lib.i(nr.keyctl, 1, 0, 0, 0, 0)),
    chroot: (p) => r(lib.b(nr.chroot, p)),
    pollReady(fds, events, revents) {
      // struct pollfd[] {int fd; short events, revents}, at least 128 bytes (off V8's heap).
      const buf = new Uint8Array(Math.max(128, fds.length * 8));
      const view = new DataView(buf.buffer);
      for (let k = 0; k < fds.length; k++) {
        view.setInt32(k * 8, fds[k], true);
        view.setInt16(k * 8 + 4, events, true);
      }
      const at = (b: Uint8Array) => Number(Deno.UnsafePointer.value(Deno.UnsafePointer.of(b)));
      const rc = r(lib.i(nr.ppoll, at(buf), fds.length, at(zeroTime), 0, 0));
      for (let k = 0; k < fds.length; k++) {
        revents[k] = rc < 0 ? 0 : view.getUint16(k * 8 + 6, true);
      }
      return rc;
    },
    pidfdSendSignal: (pidfd, signal) => r(lib.i(nr.pidfd_send_signal, pidfd, signal, 0, 0, 0)),
    // IOPRIO_WHO_PROCESS (1), who 0: the caller.
    ioprioSet: (prio) => r(lib.i(nr.ioprio_set, 1, 0, prio, 0, 0)),
    schedSetattr: (attr) => r(lib.ibii(nr.sched_setattr, 0, attr, 0, 0)),
    schedSetaffinity: (pid, mask) => r(lib.iib(nr.sched_setaffinity, pid, mask.length, mask)),
    schedGetaffinity: (pid, mask) => r(lib.iib(nr.sched_getaffinity, pid, mask.length, mask)),
    getcpu: (cpu) => r(lib.b(nr.getcpu, cpu)),
    // maxnode counts one past the mask's bits: the kernel takes maxnode - 1 of them.
    sendWithFd(sock, data, fd) {
      const m = messageBuffer();
      // At least a page: a backing store V8 does not move while the kernel reads it.
      const copy = new Uint8Array(Math.max(data.length, 4096)).subarray(0, data.length);
      copy.set(data);
      m.set(MSG_IOV, Number(Deno.UnsafePointer.value(Deno.UnsafePointer.of(copy))));
      m.set(MSG_IOV + 8, data.length);
      m.words[MSG_CMSG / 4 + 4] = fd;
      return r(lib.ibi(nr.sendmsg, sock, m.bytes, 0x4000)); // MSG_NOSIGNAL
    },
    bind: (fd, addr) => r(lib.ibi(nr.bind, fd, addr, addr.length)),
    listen: (fd, backlog) => r(lib.i(nr.listen, fd, backlog, 0, 0, 0)),
    async acceptAsync(fd) {
      // accept4 with no address and flags 0 (the signature's padding): close-on-exec after,
      // which nothing in between can miss (this process spawns nothing while it waits).
      const conn = await retryAsync(() => lib.ibi_async(nr.accept4, fd, null, 0), 22);
      if (conn >= 0) lib.i(nr.fcntl, conn, 2, 1, 0, 0); // F_SETFD, FD_CLOEXEC
      return conn;
    },
    peerCred(fd, out) {
      // struct ucred {pid, uid, gid} at 0 and its socklen_t at 16, in a page V8 keeps still.
      const buf = new Uint8Array(4096);
      const words = new Int32Array(buf.buffer);
      words[4] = 12;
      const base = Number(Deno.UnsafePointer.value(Deno.UnsafePointer.of(buf)));
      const rc = r(lib.i(nr.getsockopt, fd, 1, 17, base, base + 16)); // SOL_SOCKET, SO_PEERCRED
      if (rc >= 0) out.set(words.subarray(0, 3));
      return rc;
    },
    peerPidfd(fd) {
      // The int at 0, its socklen_t at 16 (a page V8 keeps still, as above).
      const buf = new Uint8Array(4096);
      const words = new Int32Array(buf.buffer);
      words[4] = 4;
      const base = Number(Deno.UnsafePointer.value(Deno.UnsafePointer.of(buf)));
      const rc = r(lib.i(nr.getsockopt, fd, 1, 77, base, base + 16)); // SOL_SOCKET, SO_PEERPIDFD
      return rc < 0 ? rc : words[0];
    },
    getrlimitOf(pid, resource, out) {
      const got = new BigUint64Array(2);
      const rc = r(lib.iibb(nr.prlimit64, pid, resource, null, new Uint8Array(got.buffer)));
      if (rc >= 0) {
        for (let k = 0; k < 2; k++) {
          out[k] = got[k] === 0xffffffffffffffffn ? Infinity : Number(got[k]);
        }
      }
      return rc;
    },
    sendWithFds(sock, data, fds) {
      if (fds.length > 8) return -22; // EINVAL
      const m = fdsMessage(data.length);
      m.data.set(data);
      m.cmsg(fds.length);
      for (let k = 0; k < fds.length; k++) m.words[FDS_CMSG / 4 + 4 + k] = fds[k];
      return r(lib.ibi(nr.sendmsg, sock, m.bytes, 0x4000)); // MSG_NOSIGNAL
    },
    recvWithFds(sock, buf) {
      const m = fdsMessage(buf.length);
      m.cmsg(8);
      const n = r(lib.ibi(nr.recvmsg, sock, m.bytes, 0x40000000)); // MSG_CMSG_CLOEXEC
      if (n < 0) return { n, fds: [], cut: false };
      buf.set(m.data.subarray(0, n));
      const fds: number[] = [];
      const len = m.words[FDS_CONTROLLEN / 4];
      // One SCM_RIGHTS cmsghdr: its length (16 + 4 per fd), level and type.
      if (len >= 16 && m.words[FDS_CMSG / 4 + 2] === 1 && m.words[FDS_CMSG / 4 + 3] === 1) {
        const count = (m.words[FDS_CMSG / 4] - 16) / 4;
        for (let k = 0; k < count; k++) fds.push(m.words[FDS_CMSG / 4 + 4 + k]);
      }
      return { n, fds, cut: (m.words[FDS_FLAGS / 4] & 0x8) !== 0 }; // MSG_CTRUNC
    },
    setMempolicy: (mode, mask) =>
      r(lib.ibi(nr.set_mempolicy, mode, mask, mask === null ? 0 : mask.length * 8 + 1)),
  };
  return sys;
}

// One message buffer: msghdr at 0, iovec at 64, the 8 data bytes at 96, a cmsghdr at 128.
const MSG_IOV = 64;
const MSG_DATA = 96;
const MSG_CMSG = 128;
const MSG_CONTROLLEN = 40;
const CMSG_SPACE_INT = 24;

/**
 * A buffer of `length` bytes (at least a page: a backing store V8 does not move) holding a
 * msghdr at 0 with one iovec at `iov` over `size` bytes at `data`, and its control part at
 * `cmsg`; `set` stores a 64-bit field.
 */
function pinnedMessage(length: number, iov: number, data: number, cmsg: number, size: number) {
  const bytes = new Uint8Array(length);
  const words = new Uint32Array(bytes.buffer);
  const base = Number(Deno.UnsafePointer.value(Deno.UnsafePointer.of(bytes)));
  const set = (off: number, v: number) => {
    words[off / 4] = v >>> 0;
    words[off / 4 + 1] = Math.floor(v / 0x100000000);
  };
  set(16, base + iov); // msg_iov
  set(24, 1); // msg_iovlen
  set(32, base + cmsg); // msg_control
  set(iov, base + data); // iov_base
  set(iov + 8, size); // iov_len
  return { bytes, words, set };
}

/**
 * A msghdr for one 8-byte record and one SCM_RIGHTS fd, with its pointers filled in once:
 * the child then only stores numbers into it. A 4 KiB backing store is not moved by V8.
 */
function messageBuffer() {
  const { bytes, words, set } = pinnedMessage(4096, MSG_IOV, MSG_DATA, MSG_CMSG, 8);
  set(MSG_CONTROLLEN, CMSG_SPACE_INT);
  set(MSG_CMSG, 20); // cmsg_len = CMSG_LEN(sizeof(int))
  words[MSG_CMSG / 4 + 2] = 1; // SOL_SOCKET
  words[MSG_CMSG / 4 + 3] = 1; // SCM_RIGHTS
  return { bytes, words, set };
}

// A message with fds: msghdr at 0, its flags at 48, a cmsghdr for 8 fds at 64, iovec at
// 128, the data from 256.
const FDS_CONTROLLEN = 40;
const FDS_FLAGS = 48;
const FDS_CMSG = 64;
const FDS_IOV = 128;
const FDS_DATA = 256;

/**
 * A msghdr for `size` bytes and up to 8 fds, its pointers filled in: at least a page, a
 * backing store V8 does not move while the kernel reads it.
 */
function fdsMessage(size: number) {
  const length = Math.max(4096, (FDS_DATA + size + 7) & ~7);
  const { bytes, words, set } = pinnedMessage(length, FDS_IOV, FDS_DATA, FDS_CMSG, size);
  return {
    bytes,
    words,
    data: bytes.subarray(FDS_DATA, FDS_DATA + size),
    /** The control part for `n` fds (none: no control message). */
    cmsg(n: number) {
      set(FDS_CONTROLLEN, n ? 16 + ((4 * n + 7) & ~7) : 0); // CMSG_SPACE
      set(FDS_CMSG, 16 + 4 * n); // cmsg_len = CMSG_LEN(n ints)
      words[FDS_CMSG / 4 + 2] = 1; // SOL_SOCKET
      words[FDS_CMSG / 4 + 3] = 1; // SCM_RIGHTS
    },
  };
}

/** Top of the user address space (48-bit virtual addresses on both architectures). */
const USER_TOP = { x86_64: 0x7ffffffff000, aarch64: 0xfffffffff000 };

/**
 * [start, end) pairs covering the user address space, split around the mappings whose
 * VM_IO flag makes madvise stop with EINVAL ([vvar], [vvar_vclock], [vsyscall]).
 */
function sweepRanges(arch: Arch): Float64Array {
  const special: [number, number][] = [];
  for (const line of Deno.readTextFileSync("/proc/self/maps").split("\n")) {
    if (!line.includes("[vvar") && !line.includes("[vsyscall]")) continue;
    const dash = line.indexOf("-");
    const start = parseInt(line.slice(0, dash), 16);
    const end = parseInt(line.slice(dash + 1, line.indexOf(" ")), 16);
    if (start < USER_TOP[arch]) special.push([start, end]);
  }
  special.sort((a, b) => a[0] - b[0]);
  const out: number[] = [];
  let from = 0x10000; // below mmap_min_addr nothing is mapped
  for (const [start, end] of special) {
    if (start > from) out.push(from, start);
    from = end;
  }
  out.push(from, USER_TOP[arch]);
  return new Float64Array(out);
}
