/**
 * The fork engine: the only place that executes ops (DESIGN.md §1, §4). Parent ops run
 * here; child ops are compiled by `child.ts` before one raw clone with every namespace
 * flag; the parent then attaches (id maps), releases the child, reads its error pipe,
 * supervises and reports the exit status.
 */
import { errnoName, EXIT_CANNOT_INVOKE, EXIT_NOT_FOUND, hintFor, MicroError } from "../errors.ts";
import { CHILD_PHASES, type Op } from "../ops.ts";
import { C, cstr, type Sys } from "../sys/mod.ts";
import { compileChild, CONSOLE_RECORD, runChild } from "./child.ts";

export interface EngineOptions {
  /** Host directory the new root is staged on. */
  rootPath: string;
  terminal: boolean;
  stdin: boolean;
  /** Called once the child exists, before it is released (to record it in the state). */
  onChild?: (pid: number) => void;
}

export interface RunResult {
  exitCode: number;
  /** Set when the command died of a signal. */
  signal?: number;
}

const CLONE_FLAGS: Record<string, number> = {
  CLONE_NEWNS: C.CLONE_NEWNS,
  CLONE_NEWCGROUP: C.CLONE_NEWCGROUP,
  CLONE_NEWUTS: C.CLONE_NEWUTS,
  CLONE_NEWIPC: C.CLONE_NEWIPC,
  CLONE_NEWUSER: C.CLONE_NEWUSER,
  CLONE_NEWPID: C.CLONE_NEWPID,
  CLONE_NEWNET: C.CLONE_NEWNET,
};

export const FORWARDED_SIGNALS: Deno.Signal[] = [
  "SIGINT",
  "SIGTERM",
  "SIGHUP",
  "SIGQUIT",
  "SIGUSR1",
  "SIGUSR2",
  "SIGWINCH",
];
const SIGNUM: Record<string, number> = {
  SIGHUP: 1,
  SIGINT: 2,
  SIGQUIT: 3,
  SIGUSR1: 10,
  SIGUSR2: 12,
  SIGTERM: 15,
  SIGWINCH: 28,
};

export function cloneFlags(plan: Op[]): number {
  let flags = 0;
  for (const o of plan) {
    if (o.kind === "namespace") {
      const f = CLONE_FLAGS[o.args.flag];
      if (f === undefined) throw new Error(`unknown namespace flag ${o.args.flag}`);
      flags |= f;
    }
  }
  return flags;
}

function check(rc: number, what: string, fields: Record<string, string> = {}): number {
  if (rc < 0) {
    throw new MicroError("", {
      phase: "prepare",
      plugin: "engine",
      op: what,
      paths: fields,
      errno: -rc,
      hint: hintFor(what, -rc),
    });
  }
  return rc;
}

export function decodeStatus(status: number): RunResult {
  const sig = status & 0x7f;
  if (sig === 0) return { exitCode: (status >> 8) & 0xff };
  return { exitCode: 128 + sig, signal: sig };
}

/** Writes the attach-phase files of the child (uid_map, gid_map, setgroups). */
function attach(plan: Op[], pid: number): void {
  for (const o of plan) {
    if (o.phase !== "attach" || o.kind !== "proc-write") continue;
    const path = `/proc/${pid}/${o.args.file}`;
    try {
      Deno.writeTextFileSync(path, o.args.content);
    } catch (e) {
      const errno = e instanceof Deno.errors.PermissionDenied ? 1 : 22;
      throw new MicroError("", {
        phase: "attach",
        plugin: o.plugin,
        op: "write",
        paths: { path, content: JSON.stringify(o.args.content.trim()) },
        errno,
        hint: hintFor("proc-write", errno) ?? (e as Error).message,
      });
    }
  }
}

/**
 * Runs the plan and returns when the container has exited. Throws MicroError when it
 * could not start; the caller owns state and cleanup.
 */
export async function execute(plan: Op[], opts: EngineOptions, sys: Sys): Promise<RunResult> {
  const flags = cloneFlags(plan) | C.SIGCHLD;
  const childOps = plan.filter((o) => CHILD_PHASES.includes(o.phase));

  const sync = new Int32Array(2);
  const report = new Int32Array(2);
  check(sys.pipe2(sync, C.O_CLOEXEC), "pipe2");
  check(sys.socketpair(C.AF_UNIX, C.SOCK_SEQPACKET | C.SOCK_CLOEXEC, report), "socketpair");
  let devNull = -1;
  if (!opts.stdin && !opts.terminal) {
    devNull = check(sys.open(cstr("/dev/null"), C.O_RDONLY | C.O_CLOEXEC, 0), "open", {
      path: "/dev/null",
    });
  }

  const prog = compileChild(childOps, {
    rootPath: opts.rootPath,
    syncRead: sync[0],
    syncWrite: sync[1],
    report: report[1],
    devNull,
  }, sys);

  // From the sweep to the clone nothing may allocate (DESIGN.md §4).
  sys.prepareFork();
  const pid = sys.clone(flags);
  if (pid === 0) runChild(prog, report[1], sys);

  sys.close(sync[0]);
  sys.close(report[1]);
  if (devNull >= 0) sys.close(devNull);
  if (pid < 0) {
    sys.close(sync[1]);
    sys.close(report[0]);
    throw new MicroError("", {
      phase: "clone",
      plugin: "engine",
      op: "clone",
      paths: { flags: "0x" + flags.toString(16) },
      errno: -pid,
      hint: hintFor("clone", -pid),
    });
  }

  try {
    opts.onChild?.(pid);
    attach(plan, pid);
  } catch (e) {
    sys.kill(pid, C.SIGKILL);
    sys.close(sync[1]);
    sys.close(report[0]);
    await sys.waitpid(pid);
    throw e;
  }
  // Release the child. It sends the terminal's master (with -t), then either the first
  // failure or nothing: EOF, once execve has closed its end of the socket.
  sys.write(sync[1], new Uint8Array([1]), 1);
  sys.close(sync[1]);
  let master = -1;
  const record = new Int32Array(2);
  let got = await sys.recvRecord(report[0], record);
  if (got.n === 8 && record[0] === CONSOLE_RECORD && got.fd >= 0) {
    master = got.fd;
    copyWindowSize(sys, master);
    got = await sys.recvRecord(report[0], record);
  }
  sys.close(report[0]);
  if (got.n === 8) {
    if (master >= 0) sys.close(master);
    await sys.waitpid(pid);
    const step = prog.info[record[0]];
    const errno = record[1];
    if (step?.kind === "execve") {
      const notFound = errno === 2 || errno === 20;
      throw new MicroError("", {
        phase: "exec",
        plugin: step.plugin,
        op: "execve",
        paths: step.paths,
        errno,
        hint: hintFor("execve", errno),
        exitCode: notFound ? EXIT_NOT_FOUND : EXIT_CANNOT_INVOKE,
      });
    }
    throw new MicroError("", {
      phase: step?.phase ?? "child",
      plugin: step?.plugin,
      op: step?.kind ?? `step ${record[0]}`,
      paths: step?.paths ?? {},
      errno,
      hint: hintFor(step?.kind ?? "", errno),
    });
  }
  return await supervise(pid, master, sys);
}

function copyWindowSize(sys: Sys, master: number): void {
  const ws = new Uint8Array(8);
  for (const fd of [0, 1, 2]) {
    if (sys.ioctlBuf(fd, C.TIOCGWINSZ, ws) === 0) {
      sys.ioctlBuf(master, C.TIOCSWINSZ, ws);
      return;
    }
  }
}

/** Forwards signals, relays the terminal and waits for the container's init to exit. */
async function supervise(
  pid: number,
  master: number,
  sys: Sys,
): Promise<RunResult> {
  const handlers: [Deno.Signal, () => void][] = [];
  for (const s of FORWARDED_SIGNALS) {
    // With a terminal, the kernel sends SIGWINCH itself when the pty's size changes.
    const h = s === "SIGWINCH" && master >= 0
      ? () => copyWindowSize(sys, master)
      : () => void sys.kill(pid, SIGNUM[s]);
    try {
      Deno.addSignalListener(s, h);
      handlers.push([s, h]);
    } catch { /* a signal Deno will not watch: leave it */ }
  }
  let relay: Promise<void> | null = null;
  let restore = () => {};
  if (master >= 0) {
    if (Deno.stdin.isTerminal()) {
      Deno.stdin.setRaw(true);
      restore = () => Deno.stdin.setRaw(false);
    }
    relay = relayTerminal(master, sys);
  }
  try {
    const { pid: got, status } = await sys.waitpid(pid);
    if (got < 0) throw new MicroError(`waitpid ${pid}: ${errnoName(-got)}`);
    if (relay) {
      // Output still in the pty buffer is drained; the loop ends with EIO.
      await Promise.race([relay, new Promise((r) => setTimeout(r, 500))]);
    }
    return decodeStatus(status);
  } finally {
    for (const [s, h] of handlers) Deno.removeSignalListener(s, h);
    restore();
    if (master >= 0) sys.close(master);
  }
}

/** Copies stdin to the pty master and the master to stdout until the container closes it. */
function relayTerminal(master: number, sys: Sys): Promise<void> {
  const input = (async () => {
    const buf = new Uint8Array(4096);
    for (;;) {
      const n = await Deno.stdin.read(buf).catch(() => null);
      if (n === null) return;
      let off = 0;
      while (off < n) {
        const w = sys.write(master, buf.subarray(off, n), n - off);
        if (w < 0) return;
        off += w;
      }
    }
  })();
  void input;
  return (async () => {
    const buf = new Uint8Array(65536);
    for (;;) {
      const n = await sys.readAsync(master, buf, buf.length);
      if (n <= 0) return;
      let off = 0;
      while (off < n) off += Deno.stdout.writeSync(buf.subarray(off, n));
    }
  })();
}
