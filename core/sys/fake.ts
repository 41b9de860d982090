/**
 * A recording `Sys` for tests (DESIGN.md §5): every call is logged as a readable entry
 * (CStr arguments decoded, buffers summarized) and answered from a script, so tests can
 * assert the exact call sequence of the engine without root and without a single syscall.
 *
 * Nothing here forks, execs, kills or exits: `clone` returns a pid, `exit` throws
 * `FakeExit`, a scripted successful `execveat` throws `FakeExec`.
 */
import {
  type Arch,
  C,
  type CStr,
  type CStrArray,
  decodeCStr,
  type Stat,
  type Sys,
  SysUnwind,
  type VforkExec,
} from "./mod.ts";

/** The name of a `Sys` method. */
export type SysCall = Exclude<keyof Sys, "arch">;

/** Decoded arguments: strings (or null) for CStr, numbers, string/number arrays. */
export type Arg = string | number | null | readonly string[] | readonly number[];

export interface Call {
  call: SysCall;
  args: Arg[];
}

/** Thrown by `exit`, carrying the code: the child's program ends here. */
export class FakeExit extends SysUnwind {
  constructor(readonly code: number) {
    super(`exit(${code})`);
    this.name = "FakeExit";
  }
}

/** Thrown by an `execveat` scripted to succeed (a real exec never returns). */
export class FakeExec extends SysUnwind {
  constructor(
    readonly path: string,
    readonly argv: string[],
    readonly envp: string[],
    readonly dirfd: number,
  ) {
    super(`execveat(${dirfd}, ${JSON.stringify(path)}, ${JSON.stringify(argv)})`);
    this.name = "FakeExec";
  }
}

/** A record the child sent on the report socket: `[step, errno]` and the fd it passed. */
export interface SentRecord {
  record: number[];
  fd: number;
}

type Predicate = (args: Arg[]) => boolean;
type Result = number | ((args: Arg[]) => number);

interface Rule {
  call: SysCall;
  when: Predicate;
  result: Result;
  /** How many more calls the rule answers; Infinity by default. */
  left: number;
}

/** How `format` prints each argument: d decimal, x hex, o octal, s string, j JSON. */
const FORMATS: Partial<Record<SysCall, string>> = {
  mount: "ssxxs",
  mountSetattr: "dsxdd",
  unlinkat: "dsx",
  umount2: "sx",
  mkdirat: "dso",
  symlinkat: "sds",
  open: "sxo",
  dup3: "ddx",
  openat2: "dsxox",
  clone: "x",
  vforkExec: "x",
  ioctl: "dxx",
  ioctlBuf: "dx",
  pipe2: "jx",
  socketpair: "dxj",
  sendRecord: "djd",
  closeRange: "dxx",
  socket: "dxd",
  fsconfig: "ddssd",
  fsmount: "dxx",
  moveMount: "dsdsx",
  openTree: "dsx",
  fstatfsType: "d",
  execveat: "dsjjx",
  spawn: "sjjj",
  memfdCreate: "sx",
  fcntl: "dxx",
  openat: "dsxo",
  fchmod: "do",
  fchmodat: "dso",
  fchownat: "dsddx",
  mknodat: "dsodd",
  linkat: "dsdsx",
  renameat2: "dsdsx",
  utimensat: "dsddddx",
  umask: "o",
  personality: "x",
};

function formatArg(a: Arg, kind: string): string {
  if (typeof a === "number") {
    if (kind === "x") return (a < 0 ? "-0x" : "0x") + Math.abs(a).toString(16);
    if (kind === "o") return a === 0 ? "0" : "0o" + a.toString(8);
    return String(a);
  }
  return JSON.stringify(a);
}

/** One line per call: `mount("tmpfs", "/proc/self/fd/1000", "tmpfs", 0x6, "mode=0755")`. */
export function formatCall(c: Call): string {
  const kinds = FORMATS[c.call] ?? "";
  return `${c.call}(${c.args.map((a, i) => formatArg(a, kinds[i] ?? "d")).join(", ")})`;
}

export interface RecordingSysOptions {
  arch?: Arch;
  /** What `clone` returns (the child's pid as the parent sees it). */
  clonePid?: number;
  /** What `getpid` returns. */
  pid?: number;
  /** The raw status `waitpid` resolves with (once `scriptWait`'s statuses are used up). */
  waitStatus?: number;
  /** What `canVfork` says (the engine's vfork path, core/engine/vfork.ts); no by default. */
  vfork?: boolean;
}

export class RecordingSys implements Sys {
  readonly arch: Arch;
  clonePid: number;
  /** What `spawn` returns (a pid), unless a rule says otherwise. */
  spawnPid = 4343;
  pid: number;
  waitStatus: number;
  vfork: boolean;
  private readonly log: Call[] = [];
  private readonly resultLog: number[] = [];
  private readonly rules: Rule[] = [];
  private readonly execOk: Predicate[] = [];
  private readonly reads = new Map<number, Uint8Array[]>();
  private readonly writes = new Map<number, number[]>();
  private readonly sends = new Map<number, SentRecord[]>();
  private readonly recvs = new Map<number, { record: [number, number]; fd?: number }[]>();
  private readonly waits: number[] = [];
  /** The pending `sleepAsync` calls' resolvers, oldest first: call one to end its sleep. */
  readonly timers: ((rc?: number) => void)[] = [];
  private readonly stats = new Map<number, Stat>();
  private nextFd = 3;
  /** What capget reports: [effective, permitted, inheritable] as lo,hi pairs. */
  caps = new Uint32Array([0xffffffff, 0x1ff, 0xffffffff, 0x1ff, 0, 0]);

  constructor(opts: RecordingSysOptions = {}) {
    this.arch = opts.arch ?? "x86_64";
    this.clonePid = opts.clonePid ?? 4242;
    this.pid = opts.pid ?? 4241;
    this.waitStatus = opts.waitStatus ?? 0;
    this.vfork = opts.vfork ?? false;
  }

  // ---- Scripting --------------------------------------------------------------------

  /** Makes matching calls return `-errno`. `predicate` sees the decoded arguments. */
  failOn(call: SysCall, errno: number): this;
  failOn(call: SysCall, predicate: Predicate, errno: number, times?: number): this;
  failOn(call: SysCall, a: Predicate | number, b?: number, times = Infinity): this {
    return typeof a === "number"
      ? this.returns(call, () => true, -a)
      : this.returns(call, a, -(b ?? 0), times);
  }

  /**
   * Makes matching calls return `result` (a number, or a function of the arguments).
   * Rules are tried in the order they were added; the first that matches answers.
   */
  returns(call: SysCall, when: Predicate, result: Result, times = Infinity): this {
    this.rules.push({ call, when, result, left: times });
    return this;
  }

  /**
   * Makes a matching `execveat` (every one by default; a string matches the path) "succeed":
   * it throws FakeExec.
   */
  execSucceeds(when: Predicate | string = () => true): this {
    this.execOk.push(typeof when === "string" ? (a) => a[1] === when : when);
    return this;
  }

  /** Bytes the next `read`/`readAsync` calls on `fd` return, one chunk per call. */
  scriptRead(fd: number, ...chunks: Uint8Array[]): this {
    const q = this.reads.get(fd) ?? [];
    q.push(...chunks);
    this.reads.set(fd, q);
    return this;
  }

  /**
   * Records the next `recvRecord` calls on `sock` receive, one per call (8 bytes, with `fd`
   * attached when given). Unscripted, `recvRecord` sees EOF.
   */
  scriptRecv(sock: number, ...records: { record: [number, number]; fd?: number }[]): this {
    const q = this.recvs.get(sock) ?? [];
    q.push(...records);
    this.recvs.set(sock, q);
    return this;
  }

  /**
   * Raw statuses the next successful `waitpid` calls resolve with, one per call; after them,
   * `waitStatus`.
   */
  scriptWait(...statuses: number[]): this {
    this.waits.push(...statuses);
    return this;
  }

  // ---- Inspection -------------------------------------------------------------------

  /** Every call so far, in order. */
  calls(): Call[] {
    return this.log.map((c) => ({ call: c.call, args: [...c.args] }));
  }

  /** What each call returned (parallel to `calls()`; NaN for calls that did not return). */
  results(): number[] {
    return [...this.resultLog];
  }

  /** The call names, in order. */
  names(): SysCall[] {
    return this.log.map((c) => c.call);
  }

  /** One line per call; with `results`, each line ends with ` = N`. */
  format(opts: { results?: boolean } = {}): string[] {
    return this.log.map((c, i) => {
      const line = formatCall(c);
      const r = this.resultLog[i];
      return opts.results && !Number.isNaN(r) ? `${line} = ${r}` : line;
    });
  }

  /** Everything written to `fd`, concatenated. */
  written(fd: number): Uint8Array {
    return new Uint8Array(this.writes.get(fd) ?? []);
  }

  /** Every record sent on `sock` with `sendRecord`, with the fd attached (or -1). */
  sent(sock: number): SentRecord[] {
    return [...(this.sends.get(sock) ?? [])];
  }

  /** Forgets the calls recorded so far (the script stays). */
  clear(): void {
    this.log.length = 0;
    this.resultLog.length = 0;
    this.writes.clear();
    this.sends.clear();
  }

  // ---- Machinery --------------------------------------------------------------------

  private record(call: SysCall, args: Arg[], fallback: () => number): number {
    const entry: Call = { call, args };
    this.log.push(entry);
    const i = this.resultLog.push(NaN) - 1;
    let rc: number | undefined;
    for (const rule of this.rules) {
      if (rule.call !== call || rule.left <= 0 || !rule.when(args)) continue;
      rule.left--;
      rc = typeof rule.result === "number" ? rule.result : rule.result(args);
      break;
    }
    if (rc === undefined) rc = fallback();
    this.resultLog[i] = rc;
    return rc;
  }

  private fd(): number {
    return this.nextFd++;
  }

  private s(b: CStr | null): string | null {
    return decodeCStr(b);
  }

  // ---- Sys --------------------------------------------------------------------------

  mount(source: CStr | null, target: CStr, fstype: CStr | null, flags: number, data: CStr | null) {
    return this.record(
      "mount",
      [this.s(source), this.s(target), this.s(fstype), flags, this.s(data)],
      () => 0,
    );
  }
  umount2(target: CStr, flags: number) {
    return this.record("umount2", [this.s(target), flags], () => 0);
  }
  mountSetattr(
    dirfd: number,
    path: Uint8Array,
    flags: number,
    attrSet: number,
    attrClr: number,
    usernsFd = 0,
    propagation = 0,
  ) {
    return this.record(
      "mountSetattr",
      propagation
        ? [dirfd, decodeCStr(path), flags, attrSet, attrClr, usernsFd, propagation]
        : usernsFd
        ? [dirfd, decodeCStr(path), flags, attrSet, attrClr, usernsFd]
        : [dirfd, decodeCStr(path), flags, attrSet, attrClr],
      () => 0,
    );
  }
  unlinkat(dirfd: number, path: Uint8Array, flags: number) {
    return this.record("unlinkat", [dirfd, decodeCStr(path), flags], () => 0);
  }
  mkdirat(dirfd: number, path: CStr, mode: number) {
    return this.record("mkdirat", [dirfd, this.s(path), mode], () => 0);
  }
  symlinkat(target: CStr, dirfd: number, name: CStr) {
    return this.record("symlinkat", [this.s(target), dirfd, this.s(name)], () => 0);
  }
  fstatfsFlags(fd: number) {
    return this.record("fstatfsFlags", [fd], () => 0);
  }
  chdir(path: CStr) {
    return this.record("chdir", [this.s(path)], () => 0);
  }
  fchdir(fd: number) {
    return this.record("fchdir", [fd], () => 0);
  }
  open(path: CStr, flags: number, mode: number) {
    return this.record("open", [this.s(path), flags, mode], () => this.fd());
  }
  openat2(dirfd: number, path: CStr, flags: number, mode: number, resolve: number) {
    return this.record(
      "openat2",
      [dirfd, this.s(path), flags, mode, resolve],
      () => this.fd(),
    );
  }
  close(fd: number) {
    return this.record("close", [fd], () => 0);
  }
  dup3(oldfd: number, newfd: number, flags: number) {
    return this.record("dup3", [oldfd, newfd, flags], () => newfd);
  }
  pivotRoot(newRoot: CStr, putOld: CStr) {
    return this.record("pivotRoot", [this.s(newRoot), this.s(putOld)], () => 0);
  }
  sethostname(name: CStr) {
    return this.record("sethostname", [this.s(name)], () => 0);
  }
  setresuid(r: number, e: number, s: number) {
    return this.record("setresuid", [r, e, s], () => 0);
  }
  setresgid(r: number, e: number, s: number) {
    return this.record("setresgid", [r, e, s], () => 0);
  }
  setgroups(gids: Uint32Array) {
    return this.record("setgroups", [Array.from(gids)], () => 0);
  }
  setrlimit(resource: number, soft: number, hard: number) {
    return this.record("setrlimit", [resource, soft, hard], () => 0);
  }
  prctl(option: number, arg2: number, arg3: number, arg4: number, arg5: number) {
    return this.record("prctl", [option, arg2, arg3, arg4, arg5], () => 0);
  }
  /** Reports every capability held unless scripted otherwise. */
  capget(sets: Uint32Array) {
    return this.record("capget", [], () => {
      sets.set(this.caps);
      return 0;
    });
  }
  capset(sets: Uint32Array) {
    return this.record("capset", [Array.from(sets, (v) => "0x" + v.toString(16))], () => 0);
  }
  seccompFilter(filter: Uint8Array, flags: number) {
    return this.record("seccompFilter", [`${filter.length / 8} instructions`, flags], () => 0);
  }
  landlockCreateRuleset(handledFs: number, flags: number) {
    return this.record(
      "landlockCreateRuleset",
      ["0x" + handledFs.toString(16), flags],
      () => (flags & 1 ? 7 : this.nextFd++),
    );
  }
  landlockAddPathRule(ruleset: number, allowed: number, parentFd: number) {
    return this.record(
      "landlockAddPathRule",
      [ruleset, "0x" + allowed.toString(16), parentFd],
      () => 0,
    );
  }
  bpfProgLoad(progType: number, insns: Uint8Array, _license: Uint8Array, _log: Uint8Array) {
    return this.record(
      "bpfProgLoad",
      [progType, `${insns.length / 8} instructions`],
      () => this.nextFd++,
    );
  }
  bpfProgAttach(targetFd: number, progFd: number, attachType: number, flags: number) {
    return this.record("bpfProgAttach", [targetFd, progFd, attachType, flags], () => 0);
  }
  landlockRestrictSelf(ruleset: number) {
    return this.record("landlockRestrictSelf", [ruleset], () => 0);
  }
  unshare(flags: number) {
    return this.record("unshare", ["0x" + flags.toString(16)], () => 0);
  }
  setsid() {
    return this.record("setsid", [], () => this.pid);
  }
  getrandom(buf: Uint8Array) {
    return this.record("getrandom", [buf.length], () => {
      crypto.getRandomValues(buf);
      return buf.length;
    });
  }
  read(fd: number, buf: Uint8Array, len: number) {
    // Unscripted, the bytes "arrive" (the sync pipe's release byte): len is returned.
    return this.record("read", [fd, len], () => this.take(fd, buf, len) ?? len);
  }
  write(fd: number, buf: Uint8Array, len: number) {
    const bytes = Array.from(buf.subarray(0, len));
    return this.record("write", [fd, len], () => {
      const all = this.writes.get(fd) ?? [];
      all.push(...bytes);
      this.writes.set(fd, all);
      return len;
    });
  }
  pipe2(fds: Int32Array, flags: number) {
    const args: Arg[] = [[], flags];
    const rc = this.record("pipe2", args, () => {
      fds[0] = this.fd();
      fds[1] = this.fd();
      return 0;
    });
    if (rc >= 0) args[0] = [fds[0], fds[1]];
    return rc;
  }
  ioctl(fd: number, request: number, arg: number) {
    return this.record("ioctl", [fd, request, arg], () => 0);
  }
  ioctlBuf(fd: number, request: number, _buf: Uint8Array) {
    return this.record("ioctlBuf", [fd, request], () => 0);
  }
  socket(domain: number, type: number, protocol: number) {
    return this.record("socket", [domain, type, protocol], () => this.fd());
  }
  closeRange(first: number, last: number, flags: number) {
    return this.record("closeRange", [first, last, flags], () => 0);
  }
  /** Deno's: SIGPIPE. */
  ignoredSignals(): number[] | null {
    return this.record("ignoredSignals", [], () => 0) < 0 ? null : [13];
  }
  resetSignals(unblock = true, only?: readonly number[]) {
    const args = [...(unblock ? [] : ["mask kept"]), ...(only ? [`only ${only.join(",")}`] : [])];
    return this.record("resetSignals", args, () => 0);
  }
  execveat(dirfd: number, path: CStr, argv: CStrArray, envp: CStrArray, flags: number) {
    const p = this.s(path) ?? "";
    const args: Arg[] = [dirfd, p, [...argv.strings], [...envp.strings], flags];
    return this.record("execveat", args, () => {
      if (this.execOk.some((ok) => ok(args))) {
        throw new FakeExec(p, [...argv.strings], [...envp.strings], dirfd);
      }
      return -2;
    });
  }
  spawn(path: CStr, argv: CStrArray, envp: CStrArray, fds: number[], session = false) {
    const args: Arg[] = [this.s(path) ?? "", [...argv.strings], [...envp.strings], [...fds]];
    if (session) args.push("session");
    return this.record("spawn", args, () => this.spawnPid);
  }
  exit(code: number): never {
    this.record("exit", [code], () => NaN);
    throw new FakeExit(code);
  }
  clone(flags: number) {
    return this.record("clone", [flags], () => this.clonePid);
  }
  fork() {
    return this.record("fork", [], () => this.clonePid);
  }
  clone3(args: Uint8Array) {
    return this.record("clone3", [[...args]], () => this.clonePid);
  }
  prepareFork() {
    this.record("prepareFork", [], () => NaN);
  }
  canVfork() {
    return this.vfork;
  }
  /**
   * The child's steps run here, recorded in order (micro sleeps in the real one meanwhile),
   * then the stub's exec, recorded as an `execveat` that returns 0 (the stub's own call).
   */
  vforkExec(flags: number, run: () => number, exec: VforkExec) {
    const into = exec.into ?? -1;
    const pid = this.record("vforkExec", into >= 0 ? [flags, into] : [flags], () => this.clonePid);
    if (pid < 0) return pid;
    if (exec.parentTid) exec.parentTid[0] = pid;
    if (run() === 0) {
      const args: Arg[] = [
        exec.dirfd,
        this.s(exec.path) ?? "",
        [...exec.argv.strings],
        [...exec.envp.strings],
        exec.flags,
      ];
      this.record("execveat", args, () => 0);
    }
    return pid;
  }
  usernsHold(_code: Uint8Array, flags: number, _stack: Uint8Array, rfd: number, wfd: number) {
    return this.record("usernsHold", [flags, rfd, wfd], () => this.clonePid);
  }
  /** Recorded as `procWrites(sock, ["file=content", …])`; resolves to what a rule says (0). */
  procWrites(
    _code: Uint8Array,
    sock: number,
    writes: readonly { file: CStr; content: Uint8Array }[],
    _pid: Int32Array,
  ) {
    const files = writes.map((w) => `${this.s(w.file)}=${new TextDecoder().decode(w.content)}`);
    return Promise.resolve(this.record("procWrites", [sock, files], () => 0));
  }
  kill(pid: number, sig: number) {
    return this.record("kill", [pid, sig], () => 0);
  }
  getpid() {
    return this.record("getpid", [], () => this.pid);
  }
  waitpid(pid: number) {
    const got = this.record("waitpid", [pid], () => pid);
    const status = got < 0 ? 0 : this.waits.shift() ?? this.waitStatus;
    const result = { pid: got, status };
    return this.waitGate ? this.waitGate.then(() => result) : Promise.resolve(result);
  }
  private waitGate: Promise<void> | null = null;
  /**
   * Holds every `waitpid` until the returned function is called (a container that runs on
   * while a test acts).
   */
  holdWaits(): () => void {
    let release = () => {};
    this.waitGate = new Promise<void>((r) => release = r);
    return release;
  }
  reap(pid: number) {
    const got = this.record("reap", [pid], () => pid);
    return { pid: got, status: got > 0 ? this.waits.shift() ?? this.waitStatus : 0 };
  }
  /** A child unless failOn("isChild", …) says otherwise. */
  isChild(pid: number) {
    return this.record("isChild", [pid], () => 0) === 0;
  }
  /** An exited child unless failOn("waitExited", …) says otherwise. */
  waitExited(pid: number) {
    return this.record("waitExited", [pid], () => 0) === 0;
  }
  wait4(pid: number, status: Uint8Array, options: number) {
    const got = this.record("wait4", [pid, options], () => pid);
    if (got > 0) {
      new DataView(status.buffer).setInt32(0, this.waits.shift() ?? this.waitStatus, true);
    }
    return got;
  }
  readAsync(fd: number, buf: Uint8Array, len: number) {
    // Unscripted: EOF (a pty master whose slave side is gone).
    return Promise.resolve(
      this.record("readAsync", [fd, len], () => this.take(fd, buf, len) ?? 0),
    );
  }
  flock(fd: number, op: number) {
    return this.record("flock", [fd, op], () => 0);
  }
  socketpair(domain: number, type: number, fds: Int32Array) {
    const args: Arg[] = [domain, type, []];
    const rc = this.record("socketpair", args, () => {
      fds[0] = this.fd();
      fds[1] = this.fd();
      return 0;
    });
    if (rc >= 0) args[2] = [fds[0], fds[1]];
    return rc;
  }
  sendRecord(sock: number, record: Int32Array, fd: number) {
    const rec = [record[0], record[1]];
    return this.record("sendRecord", [sock, rec, fd], () => {
      const all = this.sends.get(sock) ?? [];
      all.push({ record: rec, fd });
      this.sends.set(sock, all);
      return 8;
    });
  }
  recvRecord(sock: number, record: Int32Array) {
    let fd = -1;
    const n = this.record("recvRecord", [sock], () => {
      const next = this.recvs.get(sock)?.shift();
      if (next === undefined) return 0; // EOF: the child exec'd (or died) without a word
      record.set(next.record);
      fd = next.fd ?? -1;
      return 8;
    });
    return Promise.resolve({ n, fd });
  }

  fsopen(fstype: CStr, flags: number) {
    return this.record("fsopen", [this.s(fstype), flags], () => this.fd());
  }
  fsconfig(fd: number, cmd: number, key: CStr | null, value: CStr | null, aux: number) {
    return this.record("fsconfig", [fd, cmd, this.s(key), this.s(value), aux], () => 0);
  }
  fsmount(fd: number, flags: number, attrs: number) {
    return this.record("fsmount", [fd, flags, attrs], () => this.fd());
  }
  moveMount(fromFd: number, fromPath: CStr, toFd: number, toPath: CStr, flags: number) {
    return this.record(
      "moveMount",
      [fromFd, this.s(fromPath), toFd, this.s(toPath), flags],
      () => 0,
    );
  }
  openTree(dirfd: number, path: CStr, flags: number) {
    return this.record("openTree", [dirfd, this.s(path), flags], () => this.fd());
  }
  /** Unscripted: an ordinary file system (ext4), neither procfs nor sysfs. */
  fstatfsType(fd: number) {
    return this.record("fstatfsType", [fd], () => 0xef53);
  }
  /** Unscripted: the working directory is "/" (inside the root). */
  getcwd(buf: Uint8Array) {
    return this.record("getcwd", [buf.length], () => {
      buf[0] = 0x2f;
      buf[1] = 0;
      return 2;
    });
  }

  /** Unscripted: dev 2049, ino 2 (any fixed identity). */
  fstatId(fd: number, out: Float64Array) {
    return this.record("fstatId", [fd], () => {
      out[0] = 2049;
      out[1] = 2;
      return 0;
    });
  }

  /** What `fstat` reports for `fd`; unscripted, an empty regular file owned by root. */
  scriptStat(fd: number, st: Partial<Stat>): this {
    this.stats.set(fd, { mode: C.S_IFREG | 0o644, size: 0, uid: 0, gid: 0, ...st });
    return this;
  }

  fstat(fd: number, st: Stat) {
    return this.record("fstat", [fd], () => {
      Object.assign(st, this.stats.get(fd) ?? { mode: C.S_IFREG | 0o644, size: 0, uid: 0, gid: 0 });
      return 0;
    });
  }
  ignoreSignals() {
    return this.record("ignoreSignals", [], () => 0);
  }
  sleep(ms: number) {
    return this.record("sleep", [ms], () => 0);
  }
  trimMalloc() {
    this.record("trimMalloc", [], () => 0);
  }
  /**
   * Recorded; resolves only when a test calls the resolver it leaves in `timers`, with 0 or
   * the -errno given.
   */
  sleepAsync(ms: number) {
    return new Promise<number>((resolve) => {
      this.record("sleepAsync", [ms], () => 0);
      this.timers.push((rc = 0) => resolve(rc));
    });
  }
  fstatat(dirfd: number, path: CStr, flags: number, st: Stat) {
    return this.record("fstatat", [dirfd, this.s(path), flags], () => {
      Object.assign(st, { mode: C.S_IFREG | 0o644, size: 0, uid: 0, gid: 0, rdev: 0 });
      return 0;
    });
  }
  getdents64(fd: number, _buf: Uint8Array) {
    return this.record("getdents64", [fd], () => 0);
  }
  readlinkat(dirfd: number, path: CStr, _buf: Uint8Array) {
    return this.record("readlinkat", [dirfd, this.s(path)], () => 0);
  }
  sendfile(out: number, from: number, count: number) {
    return this.record("sendfile", [out, from, count], () => 0);
  }
  memfdCreate(name: CStr, flags: number) {
    return this.record("memfdCreate", [this.s(name), flags], () => this.fd());
  }
  fcntl(fd: number, cmd: number, arg: number) {
    return this.record("fcntl", [fd, cmd, arg], () => 0);
  }
  openat(dirfd: number, path: CStr, flags: number, mode: number) {
    return this.record("openat", [dirfd, this.s(path), flags, mode], () => this.fd());
  }
  fchown(fd: number, uid: number, gid: number) {
    return this.record("fchown", [fd, uid, gid], () => 0);
  }
  fchownat(dirfd: number, path: CStr, uid: number, gid: number, flags: number) {
    return this.record("fchownat", [dirfd, this.s(path), uid, gid, flags], () => 0);
  }
  fchmod(fd: number, mode: number) {
    return this.record("fchmod", [fd, mode], () => 0);
  }
  fchmodat(dirfd: number, path: CStr, mode: number) {
    return this.record("fchmodat", [dirfd, this.s(path), mode], () => 0);
  }
  utimensat(
    dirfd: number,
    path: CStr | null,
    aSec: number,
    aNsec: number,
    mSec: number,
    mNsec: number,
    flags: number,
  ) {
    return this.record(
      "utimensat",
      [dirfd, this.s(path), aSec, aNsec, mSec, mNsec, flags],
      () => 0,
    );
  }
  mknodat(dirfd: number, path: CStr, mode: number, major: number, minor: number) {
    return this.record("mknodat", [dirfd, this.s(path), mode, major, minor], () => 0);
  }
  linkat(olddirfd: number, oldpath: CStr, newdirfd: number, newpath: CStr, flags: number) {
    return this.record(
      "linkat",
      [olddirfd, this.s(oldpath), newdirfd, this.s(newpath), flags],
      () => 0,
    );
  }
  /** The value is recorded as text when it is printable, else as its length. */
  fsetxattr(fd: number, name: CStr, value: Uint8Array, flags: number) {
    return this.record("fsetxattr", [fd, this.s(name), xattrValue(value), flags], () => 0);
  }
  lsetxattr(path: CStr, name: CStr, value: Uint8Array, flags: number) {
    return this.record(
      "lsetxattr",
      [this.s(path), this.s(name), xattrValue(value), flags],
      () => 0,
    );
  }
  renameat2(olddirfd: number, oldpath: CStr, newdirfd: number, newpath: CStr, flags: number) {
    return this.record(
      "renameat2",
      [olddirfd, this.s(oldpath), newdirfd, this.s(newpath), flags],
      () => 0,
    );
  }
  /** Unscripted: no such attribute (ENODATA). */
  lgetxattr(path: CStr, name: CStr, _buf: Uint8Array) {
    return this.record("lgetxattr", [this.s(path), this.s(name)], () => -61);
  }

  writeAsync(fd: number, buf: Uint8Array, len: number) {
    const bytes = Array.from(buf.subarray(0, len));
    return Promise.resolve(this.record("writeAsync", [fd, len], () => {
      const all = this.writes.get(fd) ?? [];
      all.push(...bytes);
      this.writes.set(fd, all);
      return len;
    }));
  }

  /** Unscripted: nothing is there now; a wait (`ms`) sees what it waits for. */
  pollNow(fd: number, events: number, ms = 0) {
    return this.record("pollNow", ms ? [fd, events, ms] : [fd, events], () => ms ? events : 0);
  }

  /** Ready (POLLIN) when a scripted read waits for the fd. */
  pollReady(fds: Int32Array, events: number, revents: Uint16Array) {
    return this.record("pollReady", [Array.from(fds), events], () => {
      let n = 0;
      fds.forEach((fd, k) => {
        revents[k] = this.reads.get(fd)?.length ? 1 : 0;
        if (revents[k]) n++;
      });
      return n;
    });
  }

  setns(fd: number, nstype: number) {
    return this.record("setns", [fd, "0x" + nstype.toString(16)], () => 0);
  }

  pidfdOpen(pid: number, flags: number) {
    return this.record("pidfdOpen", [pid, flags], () => pid <= 0 ? -22 : this.fd());
  }

  pidfdGetfd(pidfd: number, fd: number) {
    return this.record("pidfdGetfd", [pidfd, fd], () => this.fd());
  }

  connect(fd: number, addr: Uint8Array) {
    return this.record("connect", [fd, addr.length], () => 0);
  }

  umask(mask: number) {
    return this.record("umask", [mask], () => 0o022);
  }

  joinSessionKeyring() {
    return this.record("joinSessionKeyring", [], () => 7);
  }

  personality(persona: number) {
    return this.record("personality", [persona], () => 0);
  }

  pidfdSendSignal(pidfd: number, signal: number) {
    return this.record("pidfdSendSignal", [pidfd, signal], () => pidfd < 0 ? -9 : 0);
  }

  ioprioSet(prio: number) {
    return this.record("ioprioSet", [prio], () => 0);
  }

  schedSetattr(attr: Uint8Array) {
    return this.record("schedSetattr", [[...attr]], () => 0);
  }

  chroot(path: CStr) {
    return this.record("chroot", [this.s(path)], () => 0);
  }

  schedSetaffinity(pid: number, mask: Uint8Array) {
    return this.record("schedSetaffinity", [pid, [...mask]], () => 0);
  }
  /** Every CPU of the first two allowed, as on a 2-CPU host. */
  schedGetaffinity(pid: number, mask: Uint8Array) {
    return this.record("schedGetaffinity", [pid], () => {
      mask.fill(0);
      mask[0] = 3;
      return 8;
    });
  }
  /** CPU 1. */
  getcpu(cpu: Uint8Array) {
    return this.record("getcpu", [], () => {
      new Uint32Array(cpu.buffer, cpu.byteOffset, 1)[0] = 1;
      return 0;
    });
  }

  sendWithFd(sock: number, data: Uint8Array, fd: number) {
    return this.record(
      "sendWithFd",
      [sock, new TextDecoder().decode(data), fd],
      () => data.length,
    );
  }

  bind(fd: number, addr: Uint8Array) {
    return this.record("bind", [fd, addr.length], () => 0);
  }

  listen(fd: number, backlog: number) {
    return this.record("listen", [fd, backlog], () => 0);
  }

  acceptAsync(fd: number) {
    return Promise.resolve(this.record("acceptAsync", [fd], () => this.nextFd++));
  }

  /** The peer is this process: pid 4242, uid and gid 0. */
  peerCred(fd: number, out: Int32Array) {
    return this.record("peerCred", [fd], () => (out.set([4242, 0, 0]), 0));
  }

  peerPidfd(fd: number) {
    return this.record("peerPidfd", [fd], () => this.nextFd++);
  }

  /** Every limit unlimited. */
  getrlimitOf(pid: number, resource: number, out: Float64Array) {
    return this.record("getrlimitOf", [pid, resource], () => (out.set([Infinity, Infinity]), 0));
  }

  sendWithFds(sock: number, data: Uint8Array, fds: number[]) {
    return this.record("sendWithFds", [sock, data.length, [...fds]], () => data.length);
  }

  /** The next scripted chunk for `sock` (see `reads`), no fds. */
  recvWithFds(sock: number, buf: Uint8Array) {
    const n = this.record("recvWithFds", [sock], () => this.take(sock, buf, buf.length) ?? 0);
    return { n, fds: [] as number[], cut: false };
  }

  setMempolicy(mode: number, mask: Uint8Array | null) {
    return this.record("setMempolicy", [mode, mask && [...mask]], () => 0);
  }

  /** Copies the next scripted chunk for `fd` into `buf`; undefined when none is left. */
  private take(fd: number, buf: Uint8Array, len: number): number | undefined {
    const chunk = this.reads.get(fd)?.shift();
    if (chunk === undefined) return undefined;
    const n = Math.min(len, chunk.length);
    buf.set(chunk.subarray(0, n));
    return n;
  }
}

function xattrValue(v: Uint8Array): string {
  return v.every((b) => b >= 0x20 && b < 0x7f) ? new TextDecoder().decode(v) : `${v.length} bytes`;
}
