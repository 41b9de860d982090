/**
 * A worker of `micro serve`: a micro process that takes commands from the server's socket,
 * one at a time, and runs each as the client's micro would have: with the client's limits,
 * CPUs, OOM score, umask, working directory, environment and stdio, which it takes from the
 * client's own /proc directory and fds before each command.
 *
 * Before it takes a command it checks the client against itself through that /proc
 * directory (passed as an fd, so no pid can be reused in between): the same user,
 * namespaces, root and security context, and no more privilege than the client has.
 *
 * A worker serves many commands: that is the point (a run in a warm process takes 18 to 25
 * ms, in a new one 57 above Deno's floor: bench/README.md). Between commands it keeps
 * nothing of the last client's: its stdio go back to /dev/null before the exit code is
 * sent (a pipe's reader sees its end when the client exits), its directory to /. It leaves
 * (and the server starts another) after MAX_COMMANDS, when a command left an fd open, when
 * its memory grew past MAX_RSS, or when it cannot take a client's limits (it may not raise
 * a hard limit again once lowered): that client is told to ask again.
 */
import { readLinkAt, readTextAt } from "../files.ts";
import { openLibc } from "../sys/libc.ts";
import { C, cstr, type Sys } from "../sys/mod.ts";
import { mark, printTrace, resetTrace, TRACING } from "../trace.ts";
import { decodeRequest, encodeReply, type Reply, type Request, REQUEST_CAP } from "./wire.ts";

/** The fds a worker is started with (core/serve/server.ts). */
export const WORKER_LISTEN_FD = 3;
export const WORKER_NOTIFY_FD = 4;
/** What a worker tells the server on its notify pipe. */
export const NOTE_IDLE = 0x69; // "i"
export const NOTE_TAKEN = 0x74; // "t"
/** A client that connects and says nothing is dropped after this. */
const REQUEST_TIMEOUT_MS = 5000;
/** Commands a worker serves before it leaves for a new one. */
const MAX_COMMANDS = 200;
/** Resident memory after which a worker leaves (a run's heap is a few MB). */
const MAX_RSS = 160 * 1024 * 1024;
/** The namespaces a client must share with the worker. */
const NAMESPACES = ["mnt", "net", "pid", "ipc", "uts", "user", "cgroup", "time"];
const RLIMIT_NAMES = [
  "CPU",
  "FSIZE",
  "DATA",
  "STACK",
  "CORE",
  "RSS",
  "NPROC",
  "NOFILE",
  "MEMLOCK",
  "AS",
  "LOCKS",
  "SIGPENDING",
  "MSGQUEUE",
  "NICE",
  "RTPRIO",
  "RTTIME",
];

/** What main.ts gives a worker: its dispatch (errors printed as micro prints them). */
export type Dispatch = (argv: string[]) => Promise<number>;

/**
 * The worker's life: warm, then take clients one after another until it should leave.
 * A command's own Deno.exit ends the worker too: its code still reaches the client (Deno's
 * unload event).
 */
export async function work(dispatch: Dispatch): Promise<number> {
  const sys = openLibc();
  // Idle, it goes with the server; while it serves a client, it stays for it.
  sys.prctl(C.PR_SET_PDEATHSIG, C.SIGKILL, 0, 0, 0);
  if (Deno.ppid === 1) return 0;
  await warm();
  const devNull = sys.open(cstr("/dev/null"), C.O_RDWR | C.O_CLOEXEC, 0);
  const serverErr = sys.fcntl(2, 1030, 10); // F_DUPFD_CLOEXEC: the server's stderr, kept
  let current: { conn: number; done: boolean } | null = null;
  globalThis.addEventListener("unload", () => {
    if (current && !current.done) {
      current.done = true;
      reply(sys, current.conn, { exit: Deno.exitCode & 255 });
    }
  });
  const state = processState(sys);
  /** The fds open after the first command: what a run keeps a process (Deno's signal pipe, caches). */
  let fdsKept = -1;
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
    const taken = receive(sys, conn);
    if (typeof taken === "string") {
      reply(sys, conn, { refused: taken });
      sys.close(conn);
      continue;
    }
    const { req, fds } = taken;
    const refused = check(sys, conn, fds[3]);
    const unadopted = refused ? undefined : adopt(sys, fds, req);
    for (const fd of fds) sys.close(fd);
    if (refused || unadopted) {
      reply(sys, conn, refused ? { refused } : { retry: unadopted! });
      sys.close(conn);
      if (unadopted) return 0; // half adopted: not a state to serve the next one in
      continue;
    }
    sys.prctl(C.PR_SET_PDEATHSIG, 0, 0, 0, 0);
    const run = { conn, done: false };
    current = run;
    reply(sys, conn, { pid: Deno.pid });
    watch(sys, run);
    mark("serve: check and adopt the client");
    const code = await dispatch(req.argv);
    if (TRACING) {
      printTrace();
      resetTrace();
    }
    // The client's stdio let go before it hears the code (see the module's comment).
    sys.dup3(devNull, 0, 0);
    sys.dup3(devNull, 1, 0);
    sys.dup3(serverErr, 2, 0);
    sys.chdir(cstr("/"));
    run.done = true;
    current = null;
    reply(sys, conn, { exit: code & 255 });
    // This command's connection is open until its client has gone (`watch`): not counted.
    const fdsNow = openFds(sys) - 1;
    if (fdsKept < 0) fdsKept = fdsNow;
    const rss = Deno.memoryUsage().rss;
    const changed = processState(sys) !== state;
    if (fdsNow > fdsKept || rss > MAX_RSS || changed) {
      // The next worker starts clean; the server's stderr says why this one left.
      const why = changed
        ? "its namespaces, root, credentials or signal mask changed"
        : rss > MAX_RSS
        ? `${rss >> 20} MiB resident`
        : `${fdsNow - fdsKept} more fds open`;
      console.error(`micro: serve: worker ${Deno.pid} leaves after ${served + 1} commands: ${why}`);
      return 0;
    }
    sys.prctl(C.PR_SET_PDEATHSIG, C.SIGKILL, 0, 0, 0);
    if (Deno.ppid === 1) return 0;
  }
  return 0;
}

/** The run's modules loaded before a client waits on them. */
async function warm(): Promise<void> {
  await import("../../commands/run.ts");
  await import("../run.ts");
  await import("../prepare.ts");
}

/**
 * What a command must leave as it found it for the next client's to run in this process:
 * the namespaces and root (a join enters others for its clone and comes back), the
 * credentials, capabilities, seccomp and no_new_privs, and the main thread's signal mask
 * and ignored signals (the fork engine blocks them all around a clone).
 */
function processState(sys: Sys): string {
  const parts = NAMESPACES.map((ns) => readLinkAt(sys, `/proc/self/ns/${ns}`));
  const root = sys.open(cstr("/proc/self/root"), C.O_PATH | C.O_CLOEXEC, 0);
  const id = new Float64Array(2);
  if (root >= 0) {
    sys.fstatId(root, id);
    sys.close(root);
  }
  parts.push(`${id[0]}:${id[1]}`);
  const status = statusOf(String(readTextAt(sys, "/proc/self/status", 64 * 1024)));
  for (const f of ["Uid", "Gid", "Groups", "CapEff", "CapPrm", "CapBnd", "CapAmb", "NoNewPrivs"]) {
    parts.push(status.get(f) ?? "");
  }
  for (const f of ["Seccomp", "Seccomp_filters", "SigBlk", "SigIgn"]) {
    parts.push(status.get(f) ?? "");
  }
  return parts.join("\n");
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

function reply(sys: Sys, conn: number, r: Reply): void {
  const b = encodeReply(r);
  sys.write(conn, b, b.length);
}

/**
 * The client's signals, one byte each, raised in this process while its command runs (the
 * run decides what each does, as it would in the client's own micro). The connection is closed here once the client has closed it:
 * before, a later fd of the same number would be read by this thread.
 */
function watch(sys: Sys, run: { conn: number; done: boolean }): void {
  const byte = new Uint8Array(1);
  const next = (): Promise<void> =>
    sys.readAsync(run.conn, byte, 1).then((n) => {
      if (n === 1) {
        const name = SIGNAL_NAMES[byte[0]];
        if (!run.done && name) Deno.kill(Deno.pid, name);
        return next();
      }
      // The client gone without a word (killed): as for a micro killed, this process goes
      // at once, its container with it (its parent-death signal), its state to gc.
      if (!run.done) Deno.kill(Deno.pid, "SIGKILL");
      sys.close(run.conn);
    });
  void next();
}

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

/** The request and its four fds, or why it was refused. */
function receive(sys: Sys, conn: number): { req: Request; fds: number[] } | string {
  const first = new Uint8Array(64 * 1024);
  if (sys.pollNow(conn, 1, REQUEST_TIMEOUT_MS) <= 0) return "no request came"; // POLLIN
  const got = sys.recvWithFds(conn, first);
  const fds = got.fds;
  const fail = (why: string) => {
    for (const fd of fds) sys.close(fd);
    return why;
  };
  if (got.n < 4) return fail("the request is cut short");
  if (got.cut || fds.length !== 4) {
    return fail("the request does not carry stdin, stdout, stderr and /proc/self");
  }
  const len = new DataView(first.buffer).getUint32(0, true);
  if (len > REQUEST_CAP) return fail(`the request is over ${REQUEST_CAP} bytes`);
  const json = new Uint8Array(len);
  let have = Math.min(got.n - 4, len);
  json.set(first.subarray(4, 4 + have));
  while (have < len) {
    if (sys.pollNow(conn, 1, REQUEST_TIMEOUT_MS) <= 0) return fail("the request is cut short");
    const n = sys.read(conn, json.subarray(have), len - have);
    if (n <= 0) return fail("the request is cut short");
    have += n;
  }
  const req = decodeRequest(json);
  if (typeof req === "string") return fail(req);
  return { req, fds };
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

/**
 * Why the client may not have this worker run its command, or undefined: the client is
 * named by its /proc directory, which must be the very process at the socket's other end.
 */
export function check(sys: Sys, conn: number, procFd: number): string | undefined {
  const cred = new Int32Array(3);
  const rc = sys.peerCred(conn, cred);
  if (rc < 0) return `SO_PEERCRED: errno ${-rc}`;
  const [pid, uid] = cred;
  const own = Deno.uid() ?? 0;
  if (uid !== own) return `the client is uid ${uid}, the server uid ${own}`;
  const theirs = `/proc/self/fd/${procFd}`;
  const text = readTextAt(sys, `${theirs}/status`, 64 * 1024);
  const mine = readTextAt(sys, "/proc/self/status", 64 * 1024);
  if (typeof text !== "string" || typeof mine !== "string") {
    return "cannot read the client's /proc status";
  }
  const them = statusOf(text);
  const me = statusOf(mine);
  if (them.get("Pid") !== String(pid)) return "the /proc directory passed is not the client's";
  for (const field of ["Uid", "Gid", "Groups"]) {
    if (them.get(field) !== me.get(field)) {
      return `the client's ${field} (${them.get(field)}) are not the server's`;
    }
  }
  // No more privilege than the client has: capabilities, no_new_privs, seccomp.
  for (const set of ["CapEff", "CapPrm", "CapBnd", "CapInh", "CapAmb"]) {
    const a = BigInt(`0x${them.get(set) ?? "0"}`);
    const b = BigInt(`0x${me.get(set) ?? "0"}`);
    if ((a & b) !== b) return `the client has fewer capabilities (${set} ${them.get(set)})`;
  }
  if (them.get("NoNewPrivs") !== me.get("NoNewPrivs")) return "the client runs with no_new_privs";
  if (
    them.get("Seccomp") !== me.get("Seccomp") ||
    them.get("Seccomp_filters") !== me.get("Seccomp_filters")
  ) {
    return "the client runs under a seccomp filter";
  }
  for (const ns of NAMESPACES) {
    const a = readLinkAt(sys, `${theirs}/ns/${ns}`);
    const b = readLinkAt(sys, `/proc/self/ns/${ns}`);
    if (a !== b) return `the client is in another ${ns} namespace (${a})`;
  }
  const id = (path: string) => {
    const fd = sys.open(cstr(path), C.O_PATH | C.O_CLOEXEC, 0);
    if (fd < 0) return "";
    const out = new Float64Array(2);
    const r = sys.fstatId(fd, out);
    sys.close(fd);
    return r < 0 ? "" : `${out[0]}:${out[1]}`;
  };
  if (id(`${theirs}/root`) !== id("/proc/self/root")) return "the client has another root (chroot)";
  const label = (path: string) => {
    const t = readTextAt(sys, path, 4096);
    return typeof t === "string" ? t.replace(/\0/g, "").trim() : "";
  };
  if (label(`${theirs}/attr/current`) !== label("/proc/self/attr/current")) {
    return "the client runs under another security label (AppArmor, SELinux)";
  }
  return undefined;
}

/**
 * The client's process settings made the worker's, as a micro started in the client's
 * shell would have had them: its limits, CPUs, OOM score, umask, working directory,
 * environment and stdio. Why it cannot, or undefined.
 */
export function adopt(sys: Sys, fds: number[], req: Request): string | undefined {
  const [stdin, stdout, stderr, procFd] = fds;
  const theirs = `/proc/self/fd/${procFd}`;
  const pid = Number(/^Pid:\s*(\d+)/m.exec(String(readTextAt(sys, `${theirs}/status`)))?.[1]);
  if (!pid) return "the client is gone";
  const lim = new Float64Array(2);
  for (let r = 0; r < RLIMIT_NAMES.length; r++) {
    if (sys.getrlimitOf(pid, r, lim) < 0) {
      return `cannot read the client's RLIMIT_${RLIMIT_NAMES[r]}`;
    }
    const rc = sys.setrlimit(r, lim[0], lim[1]);
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
  // Its /proc directory reads still: the pid was the client's, and so the limits.
  if (typeof readTextAt(sys, `${theirs}/status`) !== "string") return "the client is gone";
  const cwd = sys.open(cstr(`${theirs}/cwd`), C.O_PATH | C.O_DIRECTORY | C.O_CLOEXEC, 0);
  if (cwd < 0) return `cannot open the client's working directory: errno ${-cwd}`;
  const moved = sys.fchdir(cwd);
  sys.close(cwd);
  if (moved < 0) return `cannot enter the client's working directory: errno ${-moved}`;
  sys.umask(req.umask);
  // Only what differs changes (an env op each: 1.3 ms for all of a shell's, measured).
  const had = Deno.env.toObject();
  for (const k in had) if (!Object.hasOwn(req.env, k)) Deno.env.delete(k);
  for (const [k, v] of Object.entries(req.env)) if (had[k] !== v) Deno.env.set(k, v);
  for (const [fd, to] of [[stdin, 0], [stdout, 1], [stderr, 2]]) {
    const rc = sys.dup3(fd, to, 0);
    if (rc < 0) return `cannot take the client's fd ${to}: errno ${-rc}`;
  }
  return undefined;
}
