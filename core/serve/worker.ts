/**
 * A worker of `micro serve`: a micro process that takes commands from the server's socket,
 * one at a time, and runs each as the client's micro would have: with the client's limits,
 * CPUs, OOM score, umask, working directory, environment and stdio.
 *
 * It finds the client through the socket itself (SO_PEERPIDFD: the kernel's pidfd of the
 * process that connected, which no client can forge nor a reused pid fool), opens its /proc
 * directory, and checks it against itself: the same user, namespaces, root, scheduling and
 * security context, and no more privilege than the client has. What a client gets through a
 * worker it could have done by running micro itself; a client that may not be served (or
 * an older kernel, without SO_PEERPIDFD) runs its command in its own process instead.
 *
 * A worker serves many commands: that is the point (a run in a warm process takes 18 to 25
 * ms, in a new one 57 above Deno's floor: bench/README.md). After each it puts back its
 * own stdio (/dev/null, before the exit code is sent: a pipe's reader sees its end when the
 * client exits), then, while the client exits, its directory, umask, environment, limits,
 * OOM score and CPUs. It leaves (and
 * the server starts another) after MAX_COMMANDS; when it cannot put one of those back; when
 * a command left an fd open, a relay call pending on the client's stdio, or changed its
 * namespaces, credentials or signal mask; or when its memory grew past MAX_RSS.
 */
import { warmDone, warmedElsewhere, warmUp } from "../cgroups/warm.ts";
import { readLinkAt, readTextAt } from "../files.ts";
import { stdioCallsPending } from "../engine/stdio.ts";
import { runSignalsMade } from "../signals.ts";
import { statFields } from "../stateroot.ts";
import { openLibc } from "../sys/libc.ts";
import { C, cstr, RLIMITS, type Sys } from "../sys/mod.ts";
import { mark, printTrace, resetTrace, TRACING } from "../trace.ts";
import { decodeRequest, encodeReply, GO, type Reply, type Request, REQUEST_CAP } from "./wire.ts";

/** The fds a worker is started with (core/serve/server.ts). */
export const WORKER_LISTEN_FD = 3;
export const WORKER_NOTIFY_FD = 4;
/** What a worker tells the server on its notify pipe. */
export const NOTE_IDLE = 0x69; // "i"
export const NOTE_TAKEN = 0x74; // "t"
/** A client has this long, in all, to send its request once connected. */
const REQUEST_TIMEOUT_MS = 5000;
/** How long a worker waits for its warm-up's write to return after a command (ms). */
const WARM_WAIT_MS = 1000;
/** Commands a worker serves before it leaves for a new one. */
const MAX_COMMANDS = 200;
/** Resident memory after which a worker leaves (a run's heap is a few MB). */
const MAX_RSS = 160 * 1024 * 1024;
/** The namespaces a client must share with the worker. */
const NAMESPACES = ["mnt", "net", "pid", "ipc", "uts", "user", "cgroup", "time"];
/** The limits by number (core/sys/mod.ts RLIMITS, 0 to 15), named as the kernel does. */
const RLIMIT_NAMES = Object.keys(RLIMITS).map((k) => k.toUpperCase());
const RLIMIT_CPU = RLIMITS.cpu;
/** The environment's proxy settings: a client with others is not served (see `check`). */
const PROXY_VARS = [
  "HTTP_PROXY",
  "HTTPS_PROXY",
  "NO_PROXY",
  "ALL_PROXY",
  "http_proxy",
  "https_proxy",
  "no_proxy",
  "all_proxy",
];
const ENOPROTOOPT = 92;

/** What main.ts gives a worker: its dispatch (errors printed as micro prints them). */
export type Dispatch = (argv: string[]) => Promise<number>;

/** The worker's own settings, put back after each command. */
interface Own {
  env: Record<string, string>;
  umask: number;
  limits: Float64Array[];
  oom: string;
  cpus: Uint8Array;
  state: string;
}

/**
 * The worker's life: warm, then take clients one after another until it should leave.
 * A command's own Deno.exit ends the worker too: its code still reaches the client (Deno's
 * unload event).
 */
export async function work(dispatch: Dispatch, server: number): Promise<number> {
  const sys = openLibc();
  // Nothing a run spawns (watchdog, plugins, a supervisor) may hold the socket or the pipe.
  sys.fcntl(WORKER_LISTEN_FD, 2, 1); // F_SETFD, FD_CLOEXEC
  sys.fcntl(WORKER_NOTIFY_FD, 2, 1);
  // A session of its own: the server's terminal (its ^C, its job control) is not a client's.
  sys.setsid();
  // Idle, it goes with the server; while it serves a client, it stays for it.
  sys.prctl(C.PR_SET_PDEATHSIG, C.SIGKILL, 0, 0, 0);
  if (Deno.ppid !== server) return 0;
  await warm();
  const devNull = sys.open(cstr("/dev/null"), C.O_RDWR | C.O_CLOEXEC, 0);
  const nullId = fileId(sys, devNull);
  const serverErr = sys.fcntl(2, 1030, 10); // F_DUPFD_CLOEXEC: the server's stderr, kept
  const own = ownSettings(sys);
  /** What clients are compared with (`check`): read once, kept true by `processState`. */
  const me = selfFacts(sys);
  let current: { conn: number; done: boolean; signalsBefore: number } | null = null;
  globalThis.addEventListener("unload", () => {
    if (current && !current.done) {
      current.done = true;
      reply(sys, current.conn, { exit: Deno.exitCode & 255 });
    }
  });
  /**
   * The fds open after the first command: what a run's process keeps (Deno's signal pipe,
   * made at its first listener, and the like). A later command that leaves more ends the
   * worker; any command that leaves one on a client's stdio file, too (`keepsClientFiles`).
   */
  let fdsKept = -1;
  /** The refusals said so far. */
  const said = new Set<string>();
  for (let served = 0; served < MAX_COMMANDS; served++) {
    note(sys, NOTE_IDLE);
    mark("serve: idle");
    const conn = await sys.acceptAsync(WORKER_LISTEN_FD);
    note(sys, NOTE_TAKEN);
    mark("serve: a client");
    if (conn < 0) {
      console.error(`micro: serve: worker ${Deno.pid}: accept: errno ${-conn}`);
      return 125;
    }
    // The v1 join's grace period, started as a client's request comes (core/cgroups/warm.ts)
    // unless its launcher started it: before the command is known, as most are runs (one a
    // `plan` did not need costs the host one grace period's hold of cgroup_mutex, as any
    // container start does).
    void warmDone(); // a refused client's, if any
    const taken = receive(sys, conn);
    if (typeof taken !== "string") {
      if (taken.req.warmed) warmedElsewhere();
      else if (taken.req.argv[0] !== "plan") await warmUp();
    }
    const client = typeof taken === "string" ? taken : identify(sys, conn);
    if (typeof taken === "string" || typeof client === "string") {
      if (typeof taken !== "string") { for (const fd of taken.fds) sys.close(fd); }
      reply(sys, conn, { refused: typeof taken === "string" ? taken : client as string });
      sys.close(conn);
      continue;
    }
    const { req, fds } = taken;
    // The client's stdio files but /dev/null, and the fds open before its command: one the
    // command leaves on those files ends the worker.
    const clientFiles = new Set(fds.map((fd) => fileId(sys, fd)));
    clientFiles.delete(nullId);
    // A client that gave up waiting (3 s) while this connection sat in the backlog.
    const hup = sys.pollNow(conn, 0x2000, 0);
    if (hup > 0 && (hup & 0x2011)) { // POLLRDHUP, POLLHUP, POLLERR
      for (const fd of fds) sys.close(fd);
      sys.close(conn);
      continue;
    }
    const refused = check(sys, conn, client.proc, req, me);
    const unadopted = refused ? undefined : adopt(sys, client, fds, req);
    for (const fd of [...fds, client.proc, client.pidfd]) sys.close(fd);
    if (refused || unadopted) {
      // Said on the server's stderr too (once a reason per worker): the client says nothing.
      const why = (refused ?? unadopted)!;
      if (!said.has(why)) {
        said.add(why);
        console.error(`micro: serve: not serving pid ${client.pid}: ${why}`);
      }
      reply(sys, conn, refused ? { refused } : { retry: unadopted! });
      sys.close(conn);
      // Half adopted: back to its own, or gone.
      if (unadopted && restore(sys, own, devNull, serverErr)) return leave(served, "settings");
      continue;
    }
    sys.prctl(C.PR_SET_PDEATHSIG, 0, 0, 0, 0);
    // The command starts only on the client's GO: a client that gave up waiting (and runs
    // it itself) never sends it.
    if (!reply(sys, conn, { pid: Deno.pid }) || !heardGo(sys, conn)) {
      sys.close(conn);
      const unrestored = restore(sys, own, devNull, serverErr);
      if (unrestored) return leave(served, unrestored);
      sys.prctl(C.PR_SET_PDEATHSIG, C.SIGKILL, 0, 0, 0);
      if (Deno.ppid !== server) return 0;
      continue;
    }
    // What each fd is before the command: one it opens may reuse a number closed since.
    const fdsBefore = new Map(fdList().map((fd) => [fd, fileId(sys, fd)]));
    const run = { conn, done: false, signalsBefore: runSignalsMade() };
    current = run;
    watch(sys, run);
    mark("serve: check and adopt the client");
    const code = await dispatch(req.argv);
    if (TRACING) {
      printTrace();
      resetTrace();
    }
    // The client's stdio let go before it hears the code (see the module's comment); the rest
    // of the worker's settings put back after, while the client exits.
    letGoStdio(sys, devNull, serverErr);
    run.done = true;
    current = null;
    reply(sys, conn, { exit: code & 255 });
    const unrestored = restore(sys, own, devNull, serverErr);
    // A relay call left on the client's stdio holds it (a read of its terminal would take
    // the user's next line) until this process ends: it ends now, its caches not folded.
    if (stdioCallsPending()) {
      leave(served, "a call left on the client's stdio");
      Deno.exit(0);
    }
    if (unrestored) return leave(served, unrestored);
    // Its file closed, its zombie reaped: a write the kernel holds longer (cgroup_mutex taken
    // elsewhere) would hang this worker, which leaves instead.
    if (!await settled(warmDone(), WARM_WAIT_MS)) {
      return leave(served, "a cgroup.procs write pending");
    }
    // This command's connection is open until its client has gone (`watch`): not counted.
    const fdsNow = openFds(sys) - 1;
    if (fdsKept < 0) fdsKept = fdsNow;
    if (fdsNow > fdsKept) return leave(served, `${fdsNow - fdsKept} more fds open`);
    if (keepsClientFiles(sys, clientFiles, fdsBefore, conn)) {
      return leave(served, "an fd left on the client's stdio");
    }
    const rss = Deno.memoryUsage().rss;
    if (rss > MAX_RSS) return leave(served, `${rss >> 20} MiB resident`);
    if (processState(sys) !== own.state) {
      return leave(
        served,
        "its namespaces, root, credentials, signal mask, label, scheduling, personality or cgroups changed",
      );
    }
    sys.prctl(C.PR_SET_PDEATHSIG, C.SIGKILL, 0, 0, 0);
    if (Deno.ppid !== server) return 0;
  }
  return 0;
}

/** The next worker starts clean; the server's stderr says why this one left. */
function leave(served: number, why: string): number {
  console.error(`micro: serve: worker ${Deno.pid} leaves after ${served + 1} commands: ${why}`);
  return 0;
}

/** The run's modules loaded before a client waits on them. */
async function warm(): Promise<void> {
  await import("../../commands/run.ts");
  await import("../run.ts");
  await import("../prepare.ts");
}

function ownSettings(sys: Sys): Own {
  const umask = sys.umask(0o022);
  sys.umask(umask);
  const limits = RLIMIT_NAMES.map((_, r) => {
    const lim = new Float64Array(2);
    sys.getrlimitOf(0, r, lim);
    return lim;
  });
  const cpus = new Uint8Array(128);
  const n = sys.schedGetaffinity(0, cpus);
  return {
    env: Deno.env.toObject(),
    umask,
    limits,
    oom: String(readTextAt(sys, "/proc/self/oom_score_adj", 64)),
    cpus: cpus.subarray(0, Math.max(n, 0)),
    state: processState(sys),
  };
}

/**
 * The worker's own settings back after a client's: what could not be, or undefined. A hard
 * limit the client's lowered cannot be raised again without CAP_SYS_RESOURCE.
 */
function restore(sys: Sys, own: Own, devNull: number, serverErr: number): string | undefined {
  letGoStdio(sys, devNull, serverErr);
  sys.umask(own.umask);
  setEnv(own.env);
  for (let r = 0; r < own.limits.length; r++) {
    if (sys.setrlimit(r, own.limits[r][0], own.limits[r][1]) < 0) {
      return `its RLIMIT_${RLIMIT_NAMES[r]} cannot be raised back`;
    }
  }
  if (own.cpus.length && sys.schedSetaffinity(0, own.cpus) < 0) return "its CPUs";
  if (readTextAt(sys, "/proc/self/oom_score_adj", 64) !== own.oom) {
    try {
      Deno.writeTextFileSync("/proc/self/oom_score_adj", own.oom);
    } catch {
      return "its oom_score_adj cannot be lowered back";
    }
  }
  return undefined;
}

/**
 * What the client must find let go once it hears its code: its stdio (/dev/null in, the
 * server's stderr) and its working directory (an unmount right after would fail, busy).
 */
function letGoStdio(sys: Sys, devNull: number, serverErr: number): void {
  sys.dup3(devNull, 0, 0);
  sys.dup3(devNull, 1, 0);
  sys.dup3(serverErr, 2, 0);
  sys.chdir(cstr("/"));
}

/** The environment made `env`: only what differs changes (an op each, 1.3 ms for a shell's). */
function setEnv(env: Record<string, string>): void {
  const had = Deno.env.toObject();
  for (const k in had) if (!Object.hasOwn(env, k)) Deno.env.delete(k);
  for (const [k, v] of Object.entries(env)) if (had[k] !== v) Deno.env.set(k, v);
}

/**
 * What a command must leave as it found it for the next client's to run in this process:
 * the namespaces and root (a join enters others for its clone and comes back), the
 * credentials, capabilities, seccomp and no_new_privs, the main thread's signal mask and
 * ignored signals (the fork engine blocks them all around a clone), and the rest of what
 * `check` compares a client with (`selfFacts`, read once): security label, scheduling,
 * personality and cgroups.
 */
function processState(sys: Sys): string {
  const me = selfFacts(sys);
  const parts = [...me.ns.map(String), me.root, me.label, me.nice, me.policy, me.personality];
  parts.push(me.cgroup);
  const fields = ["Uid", "Gid", "Groups", "CapEff", "CapPrm", "CapBnd", "CapInh", "CapAmb"];
  for (const f of [...fields, "NoNewPrivs", "Seccomp", "Seccomp_filters", "SigBlk", "SigIgn"]) {
    parts.push(me.status.get(f) ?? "");
  }
  return parts.join("\n");
}

/** This process's side of `check`. */
export interface SelfFacts {
  status: Map<string, string>;
  ns: (string | null)[];
  root: string;
  label: string;
  nice: string;
  policy: string;
  personality: string;
  cgroup: string;
}

/** This process's facts that `check` compares a client's with. */
export function selfFacts(sys: Sys): SelfFacts {
  const stat = statOf(readTextAt(sys, "/proc/self/stat"));
  return {
    status: statusOf(textAt(sys, "/proc/self/status", 64 * 1024)),
    ns: NAMESPACES.map((ns) => readLinkAt(sys, `/proc/self/ns/${ns}`)),
    root: rootId(sys, "/proc/self/root"),
    label: labelAt(sys, "/proc/self/attr/current"),
    nice: stat[16] ?? "",
    policy: stat[38] ?? "",
    personality: textAt(sys, "/proc/self/personality"),
    cgroup: textAt(sys, "/proc/self/cgroup"),
  };
}

/** A /proc file's text, "" when it cannot be read. */
function textAt(sys: Sys, path: string, cap?: number): string {
  const t = readTextAt(sys, path, cap);
  return typeof t === "string" ? t : "";
}

/** A process's security label (attr/current), without its NUL and newline. */
function labelAt(sys: Sys, path: string): string {
  return textAt(sys, path, 4096).replace(/\0/g, "").trim();
}

/** A root directory's mount, device and inode: a chroot into a bind mount of / differs. */
function rootId(sys: Sys, path: string): string {
  const fd = sys.open(cstr(path), C.O_PATH | C.O_CLOEXEC, 0);
  if (fd < 0) return "";
  const file = fileId(sys, fd);
  const info = readTextAt(sys, `/proc/self/fdinfo/${fd}`, 4096);
  sys.close(fd);
  const mnt = typeof info === "string" ? /^mnt_id:\s*(\d+)/m.exec(info)?.[1] : undefined;
  return !file || !mnt ? "" : `${mnt}:${file}`;
}

/** Which file an fd is (device and inode), "" when it cannot say. */
export function fileId(sys: Sys, fd: number): string {
  const id = new Float64Array(2);
  return sys.fstatId(fd, id) < 0 ? "" : `${id[0]}:${id[1]}`;
}

/** This process's open fds. */
function fdList(): number[] {
  return [...Deno.readDirSync("/proc/self/fd")].map((e) => Number(e.name));
}

/**
 * Whether an fd above 2 opened during the command is on a client's file: one that was not
 * open before it, or was another file then (`before`: fd to file).
 */
function keepsClientFiles(
  sys: Sys,
  files: Set<string>,
  before: Map<number, string>,
  conn: number,
) {
  files.delete("");
  for (const fd of fdList()) {
    if (fd <= 2 || fd === conn) continue;
    const id = fileId(sys, fd);
    if (files.has(id) && before.get(fd) !== id) return true;
  }
  return false;
}

/**
 * The fds this process has open (a command that leaves one ends the worker after it), but
 * timers: a run's heap compaction timer (core/engine/mod.ts) closes itself within 500 ms.
 */
function openFds(sys: Sys): number {
  let n = 0;
  for (const e of Deno.readDirSync("/proc/self/fd")) {
    if (readLinkAt(sys, `/proc/self/fd/${e.name}`) !== "anon_inode:[timerfd]") n++;
  }
  return n;
}

function note(sys: Sys, what: number): void {
  sys.write(WORKER_NOTIFY_FD, new Uint8Array([what]), 1);
}

/** Whether the reply was sent whole. */
function reply(sys: Sys, conn: number, r: Reply): boolean {
  const b = encodeReply(r);
  return sys.write(conn, b, b.length) === b.length;
}

/** The client's GO, within REQUEST_TIMEOUT_MS. */
function heardGo(sys: Sys, conn: number): boolean {
  const end = Date.now() + REQUEST_TIMEOUT_MS;
  for (;;) {
    const left = end - Date.now();
    if (left <= 0) return false;
    const rc = sys.pollNow(conn, 1, left); // POLLIN
    if (rc === -4) continue; // EINTR
    if (rc <= 0) return false;
    const b = new Uint8Array(1);
    return sys.read(conn, b, 1) === 1 && b[0] === GO;
  }
}

/** INT, TERM, HUP, QUIT: a micro with no listener for them dies of them. */
const STOPPING_BYTES = new Set([1, 2, 3, 15]);

/** The signals a client forwards (core/signals.ts FORWARDED_SIGNALS); others are ignored. */
const SIGNAL_NAMES: Record<number, Deno.Signal> = {
  1: "SIGHUP",
  2: "SIGINT",
  3: "SIGQUIT",
  10: "SIGUSR1",
  12: "SIGUSR2",
  15: "SIGTERM",
  28: "SIGWINCH",
};

/**
 * The client's signals, one byte each, raised in this process while its command runs (the
 * run decides what each does, as it would in the client's own micro). The connection is
 * closed here once the client has closed it: before, a later fd of the same number would be
 * read by this thread.
 */
function watch(sys: Sys, run: { conn: number; done: boolean; signalsBefore: number }): void {
  const byte = new Uint8Array(1);
  const next = (): Promise<void> =>
    sys.readAsync(run.conn, byte, 1).then((n) => {
      if (n === 1) {
        const name = SIGNAL_NAMES[byte[0]];
        if (!run.done && name) {
          // A run hears it as micro would (and drops it, as micro does, once its listeners
          // are gone). A command that made none (plan) would have died of INT, TERM, HUP or
          // QUIT in a micro of its own, where Deno keeps an earlier command's handler: it
          // ends here too.
          if (runSignalsMade() !== run.signalsBefore || !STOPPING_BYTES.has(byte[0])) {
            Deno.kill(Deno.pid, name);
          } else Deno.exit(128 + byte[0]);
        }
        return next();
      }
      // The client gone without a word (killed): as for a micro killed, this process goes
      // at once, its container with it (its parent-death signal), its state to gc.
      if (!run.done) Deno.kill(Deno.pid, "SIGKILL");
      sys.close(run.conn);
    });
  void next();
}

/** The request and its three fds, or why it was refused; all within REQUEST_TIMEOUT_MS. */
function receive(sys: Sys, conn: number): { req: Request; fds: number[] } | string {
  const end = Date.now() + REQUEST_TIMEOUT_MS;
  const ready = () => sys.pollNow(conn, 1, Math.max(end - Date.now(), 1)) > 0; // POLLIN
  if (!ready()) return "no request came";
  const first = new Uint8Array(64 * 1024);
  const got = sys.recvWithFds(conn, first);
  const fds = got.fds;
  const fail = (why: string) => {
    for (const fd of fds) sys.close(fd);
    return why;
  };
  if (got.n < 4) return fail("the request is cut short");
  if (got.cut || fds.length !== 3) return fail("the request does not carry stdin, stdout, stderr");
  const len = new DataView(first.buffer).getUint32(0, true);
  if (len > REQUEST_CAP) return fail(`the request is over ${REQUEST_CAP} bytes`);
  const json = new Uint8Array(len);
  let have = Math.min(got.n - 4, len);
  json.set(first.subarray(4, 4 + have));
  while (have < len) {
    if (Date.now() >= end || !ready()) return fail("the request is cut short");
    const n = sys.read(conn, json.subarray(have), len - have);
    if (n <= 0) return fail("the request is cut short");
    have += n;
  }
  const req = decodeRequest(json);
  if (typeof req === "string") return fail(req);
  return { req, fds };
}

/** The client as the kernel names it: its pidfd and its /proc directory, opened here. */
interface Client {
  pid: number;
  pidfd: number;
  proc: number;
}

/**
 * The process that connected: SO_PEERPIDFD's pidfd, and its /proc directory opened while it
 * still lived (checked after the open, so the pid was not another's): or why not.
 */
export function identify(sys: Sys, conn: number): Client | string {
  const pidfd = sys.peerPidfd(conn);
  if (pidfd < 0) {
    return pidfd === -ENOPROTOOPT
      ? "this kernel cannot name a socket's peer (SO_PEERPIDFD, Linux 6.5+)"
      : `SO_PEERPIDFD: errno ${-pidfd}`;
  }
  const info = readTextAt(sys, `/proc/self/fdinfo/${pidfd}`, 4096);
  const pid = Number(typeof info === "string" ? /^Pid:\s*(-?\d+)/m.exec(info)?.[1] : 0);
  const proc = pid > 0
    ? sys.open(cstr(`/proc/${pid}`), C.O_PATH | C.O_DIRECTORY | C.O_CLOEXEC, 0)
    : -1;
  const why = pid <= 0
    ? "the client has gone, or is in a pid namespace this one does not see"
    : proc < 0
    ? `cannot open /proc/${pid}: errno ${-proc}`
    : sys.fstatfsType(proc) !== C.PROC_SUPER_MAGIC
    ? "/proc is not procfs"
    : sys.pidfdSendSignal(pidfd, 0) < 0
    ? "the client has gone"
    : undefined;
  if (why) {
    if (proc >= 0) sys.close(proc);
    sys.close(pidfd);
    return why;
  }
  return { pid, pidfd, proc };
}

/** `/proc/PID/status`'s fields by name. */
function statusOf(text: string): Map<string, string> {
  const m = new Map<string, string>();
  for (const line of text.split("\n")) {
    const c = line.indexOf(":");
    if (c > 0) m.set(line.slice(0, c), line.slice(c + 1).trim());
  }
  return m;
}

/** /proc/PID/stat's fields after the command name (field 3 first). */
function statOf(text: string | number): string[] {
  return typeof text === "string" ? statFields(text) : [];
}

/**
 * Why the client (its /proc directory open as `procFd`) may not have this worker run its
 * command, or undefined. `me`: this worker's own facts (read once by a worker).
 */
export function check(
  sys: Sys,
  conn: number,
  procFd: number,
  req?: Request,
  me: SelfFacts = selfFacts(sys),
): string | undefined {
  if (req && req.build !== Deno.mainModule) return `another build of micro (${req.build})`;
  // A process's HTTP clients keep the proxy they started with (image pulls).
  if (req) {
    for (const k of PROXY_VARS) {
      if ((req.env[k] ?? "") !== (Deno.env.get(k) ?? "")) return `another ${k}`;
    }
  }
  const cred = new Int32Array(3);
  const rc = sys.peerCred(conn, cred);
  if (rc < 0) return `SO_PEERCRED: errno ${-rc}`;
  const own = Deno.uid() ?? 0;
  if (cred[1] !== own) return `the client is uid ${cred[1]}, the server uid ${own}`;
  const theirs = `/proc/self/fd/${procFd}`;
  const text = readTextAt(sys, `${theirs}/status`, 64 * 1024);
  if (!me.status.size) return "cannot read the worker's own /proc status";
  if (typeof text !== "string") return "cannot read the client's /proc status";
  const them = statusOf(text);
  if (/^[ZX]/.test(them.get("State") ?? "")) return "the client has gone";
  for (const field of ["Uid", "Gid", "Groups"]) {
    if (them.get(field) !== me.status.get(field)) {
      return `the client's ${field} (${them.get(field)}) are not the server's`;
    }
  }
  // No more privilege than the client has: capabilities, no_new_privs, seccomp.
  for (const set of ["CapEff", "CapPrm", "CapBnd", "CapInh", "CapAmb"]) {
    const a = BigInt(`0x${them.get(set) ?? "0"}`);
    const b = BigInt(`0x${me.status.get(set) ?? "0"}`);
    if ((a & b) !== b) return `the client has fewer capabilities (${set} ${them.get(set)})`;
  }
  if (them.get("NoNewPrivs") !== me.status.get("NoNewPrivs")) {
    return "the client runs with no_new_privs";
  }
  // Filters cannot be compared: a client under any is not served.
  if (them.get("Seccomp") !== "0") return "the client runs under a seccomp filter";
  for (const [k, ns] of NAMESPACES.entries()) {
    const a = readLinkAt(sys, `${theirs}/ns/${ns}`);
    if (a !== me.ns[k]) return `the client is in another ${ns} namespace (${a})`;
  }
  if (rootId(sys, `${theirs}/root`) !== me.root) return "the client has another root (chroot)";
  if (labelAt(sys, `${theirs}/attr/current`) !== me.label) {
    return "the client runs under another security label (AppArmor, SELinux)";
  }
  // Its scheduling as micro's would be (nice, policy) and its personality: not taken here.
  // This worker's scheduling and cgroups read again: another process may change them.
  const a = statOf(readTextAt(sys, `${theirs}/stat`));
  const b = statOf(readTextAt(sys, "/proc/self/stat"));
  if ((a[16] ?? "") !== (b[16] ?? me.nice) || (a[38] ?? "") !== (b[38] ?? me.policy)) {
    return "the client's nice value or scheduling policy";
  }
  if (textAt(sys, `${theirs}/personality`) !== me.personality) {
    return "the client's personality";
  }
  // Its cgroups confine what it may do (devices, memory, tasks, a service's network rules):
  // a worker serves only a client in its own.
  const mine = readTextAt(sys, "/proc/self/cgroup");
  if (textAt(sys, `${theirs}/cgroup`) !== (typeof mine === "string" ? mine : me.cgroup)) {
    return "the client is in other cgroups (start micro serve where its clients run)";
  }
  return undefined;
}

/**
 * The client's process settings made the worker's, as a micro started in the client's
 * shell would have had them: its limits, CPUs, OOM score, umask, working directory,
 * environment and stdio. Why it cannot, or undefined.
 */
export function adopt(sys: Sys, client: Client, fds: number[], req: Request): string | undefined {
  const [stdin, stdout, stderr] = fds;
  const { pid, pidfd } = client;
  const theirs = `/proc/self/fd/${client.proc}`;
  const lim = new Float64Array(2);
  const limits: [number, number][] = [];
  for (let r = 0; r < RLIMIT_NAMES.length; r++) {
    if (sys.getrlimitOf(pid, r, lim) < 0) {
      return `cannot read the client's RLIMIT_${RLIMIT_NAMES[r]}`;
    }
    // CPU time counts this process's whole life, not the command's.
    if (r === RLIMIT_CPU && lim[0] !== Infinity) return "the client has an RLIMIT_CPU";
    limits.push([lim[0], lim[1]]);
  }
  // Read while the client lived (the pidfd says so): the limits were its own.
  if (sys.pidfdSendSignal(pidfd, 0) < 0) return "the client has gone";
  for (let r = 0; r < limits.length; r++) {
    const rc = sys.setrlimit(r, limits[r][0], limits[r][1]);
    if (rc < 0) return `cannot take the client's RLIMIT_${RLIMIT_NAMES[r]}: errno ${-rc}`;
  }
  const mask = new Uint8Array(128);
  const n = sys.schedGetaffinity(pid, mask);
  if (n > 0 && sys.schedSetaffinity(0, mask.subarray(0, n)) < 0) {
    return "cannot take the client's CPUs";
  }
  const score = readTextAt(sys, `${theirs}/oom_score_adj`, 64);
  const mine = readTextAt(sys, "/proc/self/oom_score_adj", 64);
  if (typeof score === "string" && score !== mine) {
    try {
      Deno.writeTextFileSync("/proc/self/oom_score_adj", score);
    } catch (e) {
      return `cannot take the client's oom_score_adj ${score.trim()}: ${(e as Error).message}`;
    }
  }
  const cwd = sys.open(cstr(`${theirs}/cwd`), C.O_PATH | C.O_DIRECTORY | C.O_CLOEXEC, 0);
  if (cwd < 0) return `cannot open the client's working directory: errno ${-cwd}`;
  const moved = sys.fchdir(cwd);
  sys.close(cwd);
  if (moved < 0) return `cannot enter the client's working directory: errno ${-moved}`;
  if (sys.pidfdSendSignal(pidfd, 0) < 0) return "the client has gone";
  sys.umask(req.umask);
  setEnv(req.env);
  for (const [fd, to] of [[stdin, 0], [stdout, 1], [stderr, 2]]) {
    const rc = sys.dup3(fd, to, 0);
    if (rc < 0) return `cannot take the client's fd ${to}: errno ${-rc}`;
  }
  return undefined;
}

/** Whether `p` settled within `ms`. */
async function settled(p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<boolean>((r) => timer = setTimeout(() => r(false), ms));
  try {
    return await Promise.race([p.then(() => true, () => true), late]);
  } finally {
    clearTimeout(timer);
  }
}
