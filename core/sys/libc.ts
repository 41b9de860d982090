/**
 * The real `Sys`: libc through `Deno.dlopen`. The only file that opens a library.
 * Symbols are bound once per process; binding costs ~0.3 ms each, so only what micro uses.
 */
import type { Arch, Sys } from "./mod.ts";

/** Raw syscall numbers that differ between the two architectures. */
const NR = {
  x86_64: {
    clone: 56,
    pivot_root: 155,
    openat2: 437,
    close_range: 436,
    setresuid: 117,
    setresgid: 119,
    setgroups: 116,
    prlimit64: 302,
    exit_group: 231,
    rt_sigaction: 13,
    rt_sigprocmask: 14,
    sethostname: 170,
  },
  aarch64: {
    clone: 220,
    pivot_root: 41,
    openat2: 437,
    close_range: 436,
    setresuid: 147,
    setresgid: 149,
    setgroups: 159,
    prlimit64: 261,
    exit_group: 94,
    rt_sigaction: 134,
    rt_sigprocmask: 135,
    sethostname: 161,
  },
} as const;

const I = "i64" as const;
const B = "buffer" as const;

const SYMBOLS = {
  __errno_location: { parameters: [], result: "pointer" },
  mount: { parameters: [B, B, B, "u64", B], result: "i32" },
  umount2: { parameters: [B, "i32"], result: "i32" },
  mkdirat: { parameters: ["i32", B, "u32"], result: "i32" },
  symlinkat: { parameters: [B, "i32", B], result: "i32" },
  fstatfs: { parameters: ["i32", B], result: "i32" },
  chdir: { parameters: [B], result: "i32" },
  fchdir: { parameters: ["i32"], result: "i32" },
  open: { parameters: [B, "i32", "u32"], result: "i32" },
  close: { parameters: ["i32"], result: "i32" },
  dup3: { parameters: ["i32", "i32", "i32"], result: "i32" },
  read: { parameters: ["i32", B, "usize"], result: "isize" },
  read_async: { name: "read", parameters: ["i32", B, "usize"], result: "isize", nonblocking: true },
  write: { parameters: ["i32", B, "usize"], result: "isize" },
  pipe2: { parameters: [B, "i32"], result: "i32" },
  ioctl: { parameters: ["i32", "u64", "u64"], result: "i32" },
  ioctl_buf: { name: "ioctl", parameters: ["i32", "u64", B], result: "i32" },
  socket: { parameters: ["i32", "i32", "i32"], result: "i32" },
  prctl: { parameters: ["i32", "u64", "u64", "u64", "u64"], result: "i32" },
  setsid: { parameters: [], result: "i32" },
  execve: { parameters: [B, B, B], result: "i32" },
  madvise: { parameters: ["usize", "usize", "i32"], result: "i32" },
  kill: { parameters: ["i32", "i32"], result: "i32" },
  getpid: { parameters: [], result: "i32" },
  waitpid: { parameters: ["i32", B, "i32"], result: "i32", nonblocking: true },
  flock: { parameters: ["i32", "i32"], result: "i32" },
  socketpair: { parameters: ["i32", "i32", "i32", B], result: "i32" },
  sendmsg: { parameters: ["i32", B, "i32"], result: "isize" },
  recvmsg: { parameters: ["i32", B, "i32"], result: "isize", nonblocking: true },
  // syscall(2) under several signatures; every argument is passed as 64 bits.
  sc_i: { name: "syscall", parameters: [I, I, I, I, I, I], result: "i32" },
  sc_bb: { name: "syscall", parameters: [I, B, B], result: "i32" },
  sc_ib: { name: "syscall", parameters: [I, I, B], result: "i32" },
  sc_bi: { name: "syscall", parameters: [I, B, I], result: "i32" },
  sc_ibbi: { name: "syscall", parameters: [I, I, B, B, I], result: "i32" },
  sc_iibbi: { name: "syscall", parameters: [I, I, I, B, B, I], result: "i32" },
} as const;

/**
 * Deno's types want bigint for 64-bit parameters; the runtime takes numbers too, and
 * numbers keep the child and the pre-clone sweep free of BigInt allocations.
 */
type Arg = number | bigint | Uint8Array | null;
// deno-lint-ignore no-explicit-any
type Lib = { [K in keyof typeof SYMBOLS]: (...args: Arg[]) => any };

function detectArch(): Arch {
  return Deno.build.arch === "aarch64" ? "aarch64" : "x86_64";
}

export function openLibc(): Sys {
  const lib = Deno.dlopen("libc.so.6", SYMBOLS).symbols as unknown as Lib;
  const arch = detectArch();
  const nr = NR[arch];
  const errnoView = new Deno.UnsafePointerView(lib.__errno_location()!);
  const errno = () => errnoView.getInt32(0);
  /** libc convention (-1 and errno) to ours (-errno). */
  const r = (v: number) => (v < 0 ? -errno() : v);
  const rn = (v: number | bigint) => {
    const n = Number(v);
    return n < 0 ? -errno() : n;
  };
  // Pre-allocated scratch buffers so child-side calls allocate nothing of note.
  const how = new Uint32Array(6);
  const howBytes = new Uint8Array(how.buffer);
  const rlim = new Uint32Array(4);
  const rlimBytes = new Uint8Array(rlim.buffer);
  const sigact = new Uint8Array(32); // sa_handler=SIG_DFL, flags 0, restorer 0, mask 0
  const sigset = new Uint8Array(8);
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

  const sys: Sys = {
    arch,
    mount: (s, t, f, flags, d) => r(lib.mount(s, t, f, flags, d)),
    umount2: (t, flags) => r(lib.umount2(t, flags)),
    mkdirat: (fd, p, mode) => r(lib.mkdirat(fd, p, mode)),
    symlinkat: (t, fd, p) => r(lib.symlinkat(t, fd, p)),
    fstatfsFlags(fd) {
      const rc = lib.fstatfs(fd, statfsBuf);
      // struct statfs on 64-bit Linux: f_flags is the 11th 8-byte field.
      return rc < 0 ? -errno() : statfsWords[20];
    },
    chdir: (p) => r(lib.chdir(p)),
    fchdir: (fd) => r(lib.fchdir(fd)),
    open: (p, flags, mode) => r(lib.open(p, flags, mode)),
    openat2(dirfd, path, flags, mode, resolve) {
      setU64(how, 0, flags);
      setU64(how, 1, mode);
      setU64(how, 2, resolve);
      return r(lib.sc_ibbi(nr.openat2, dirfd, path, howBytes, 24));
    },
    close: (fd) => r(lib.close(fd)),
    dup3: (a, b, flags) => r(lib.dup3(a, b, flags)),
    pivotRoot: (n, o) => r(lib.sc_bb(nr.pivot_root, n, o)),
    sethostname: (name) => r(lib.sc_bi(nr.sethostname, name, name.indexOf(0))),
    setresuid: (a, b, c) => r(lib.sc_i(nr.setresuid, a, b, c, 0, 0)),
    setresgid: (a, b, c) => r(lib.sc_i(nr.setresgid, a, b, c, 0, 0)),
    setgroups: (gids) =>
      r(lib.sc_ib(nr.setgroups, gids.length, new Uint8Array(gids.buffer, gids.byteOffset))),
    setrlimit(resource, soft, hard) {
      setU64(rlim, 0, soft);
      setU64(rlim, 1, hard);
      return r(lib.sc_iibbi(nr.prlimit64, 0, resource, rlimBytes, null, 0));
    },
    prctl: (o, a, b, c, d) => r(lib.prctl(o, a, b, c, d)),
    setsid: () => r(lib.setsid()),
    read: (fd, buf, len) => rn(lib.read(fd, buf, len)),
    write: (fd, buf, len) => rn(lib.write(fd, buf, len)),
    pipe2: (fds, flags) => r(lib.pipe2(new Uint8Array(fds.buffer, fds.byteOffset, 8), flags)),
    ioctl: (fd, req, arg) => r(lib.ioctl(fd, req, arg)),
    ioctlBuf: (fd, req, buf) => r(lib.ioctl_buf(fd, req, buf)),
    socket: (d, t, p) => r(lib.socket(d, t, p)),
    closeRange: (a, b, flags) => r(lib.sc_i(nr.close_range, a, b, flags, 0, 0)),
    resetSignals() {
      for (let sig = 1; sig < 65; sig++) {
        if (sig === 9 || sig === 19 || sig === 32 || sig === 33) continue;
        lib.sc_ibbi(nr.rt_sigaction, sig, sigact, null, 8);
      }
      return r(lib.sc_ibbi(nr.rt_sigprocmask, 2, sigset, null, 8)); // SIG_SETMASK, empty
    },
    execve: (path, argv, envp) =>
      r(lib.execve(
        path,
        new Uint8Array(argv.pointers.buffer),
        new Uint8Array(envp.pointers.buffer),
      )),
    exit(code: number): never {
      lib.sc_i(nr.exit_group, code, 0, 0, 0, 0);
      throw new Error("unreachable");
    },
    clone: (flags) => r(lib.sc_i(nr.clone, flags, 0, 0, 0, 0)),
    prepareFork() {
      // The whole user address space, holes included (madvise skips them with ENOMEM but
      // still marks every mapping), so pages V8 maps after reading /proc/self/maps are
      // covered too. Only the VM_IO mappings, which never move, are stepped around.
      if (sweep === null) sweep = sweepRanges(arch);
      const m = sweep;
      for (let i = 0; i < m.length; i += 2) lib.madvise(m[i], m[i + 1] - m[i], 11);
    },
    kill: (pid, sig) => r(lib.kill(pid, sig)),
    getpid: () => lib.getpid(),
    async waitpid(pid) {
      const st = new Int32Array(1);
      for (;;) {
        const got = await lib.waitpid(pid, new Uint8Array(st.buffer), 0x40000000);
        if (got >= 0) return { pid: got, status: st[0] };
        const e = errno();
        if (e !== 4) return { pid: -e, status: 0 };
      }
    },
    async readAsync(fd, buf, len) {
      return rn(await lib.read_async(fd, buf, len));
    },
    flock: (fd, op) => r(lib.flock(fd, op)),
    socketpair: (d, t, fds) =>
      r(lib.socketpair(d, t, 0, new Uint8Array(fds.buffer, fds.byteOffset, 8))),
    sendRecord(sock, record, fd) {
      send.words.set(record, MSG_DATA / 4);
      send.words[MSG_CMSG / 4 + 4] = fd;
      send.set(MSG_CONTROLLEN, fd >= 0 ? CMSG_SPACE_INT : 0);
      return rn(lib.sendmsg(sock, send.bytes, 0x4000)); // MSG_NOSIGNAL
    },
    async recvRecord(sock, record) {
      const m = messageBuffer();
      for (;;) {
        m.set(MSG_CONTROLLEN, CMSG_SPACE_INT);
        const n = rn(await lib.recvmsg(sock, m.bytes, 0x40000000)); // MSG_CMSG_CLOEXEC
        if (n === -4) continue;
        if (n > 0) record.set(m.words.subarray(MSG_DATA / 4, MSG_DATA / 4 + 2));
        const withFd = m.words[MSG_CONTROLLEN / 4] >= 20 && m.words[MSG_CMSG / 4 + 3] === 1;
        return { n, fd: withFd ? m.words[MSG_CMSG / 4 + 4] : -1 };
      }
    },
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
 * A msghdr for one 8-byte record and one SCM_RIGHTS fd, with its pointers filled in once:
 * the child then only stores numbers into it. A 4 KiB backing store is not moved by V8.
 */
function messageBuffer() {
  const bytes = new Uint8Array(4096);
  const words = new Uint32Array(bytes.buffer);
  const base = Number(Deno.UnsafePointer.value(Deno.UnsafePointer.of(bytes)));
  const set = (off: number, v: number) => {
    words[off / 4] = v >>> 0;
    words[off / 4 + 1] = Math.floor(v / 0x100000000);
  };
  set(16, base + MSG_IOV); // msg_iov
  set(24, 1); // msg_iovlen
  set(32, base + MSG_CMSG); // msg_control
  set(MSG_CONTROLLEN, CMSG_SPACE_INT);
  set(MSG_IOV, base + MSG_DATA); // iov_base
  set(MSG_IOV + 8, 8); // iov_len
  set(MSG_CMSG, 20); // cmsg_len = CMSG_LEN(sizeof(int))
  words[MSG_CMSG / 4 + 2] = 1; // SOL_SOCKET
  words[MSG_CMSG / 4 + 3] = 1; // SCM_RIGHTS
  return { bytes, words, set };
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
