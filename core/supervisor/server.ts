/**
 * The supervisor: one process per state root that supervises every detached container
 * (`micro run -d`). Why one process and not one per container: a Deno process costs about
 * 10.7 MB of private memory idle; here a container costs its state, two log pipes read in
 * turn, and a `sleep` (about 0.1 MB) holding their read ends (below).
 *
 * - A run: the supervisor starts `micro _run-detached ARGV` (the caller's cwd and
 *   environment) as its child; it runs the whole run pipeline, and once the command runs it
 *   hands the container over (its pid and the fd numbers of its output pipes, which the
 *   supervisor opens through /proc/RUNNER/fd/N) and exits. The supervisor is a child
 *   subreaper, so the container becomes its child: it waits for it (wait4: the exit code),
 *   writes its logs, cleans up (server-side what `micro run` does at the end) and records
 *   the end in the container's record.
 * - No watchdog, no PDEATHSIG: a container outlives a killed supervisor. Its output pipes
 *   would lose their last reader with the supervisor (the container's next write: SIGPIPE),
 *   so a keeper (`sleep`, spawned with the pipes' read ends) holds them as well; a new
 *   supervisor reopens them through /proc/KEEPER/fd/3 and 4 and goes on reading. While no
 *   supervisor runs, a container that fills its pipe (64 KiB) waits.
 * - The next micro command starts a supervisor when none runs; it takes over every detached
 *   container whose init still runs (pid plus start time in state.json), but cannot learn
 *   their exit codes (they are no longer its children): those end as "exited, code unknown".
 * - It leaves when it supervises nothing and no request is pending.
 */
import { MicroError } from "../errors.ts";
import {
  isAlive,
  processStartTime,
  readState,
  removeRun,
  type RunState,
  signalProcess,
  untrustedRoot,
  untrustedRootError,
  writeState,
} from "../state.ts";
import { readRecord, writeRecord } from "../store/containers.ts";
import { openLibc } from "../sys/libc.ts";
import { C, cstr, type Sys } from "../sys/mod.ts";
import { microExe, runnerEnv } from "../store/rmtree.ts";
import type { Reply, Request } from "./client.ts";
import { socketPath, supervisorDir } from "./client.ts";
import { JsonLog, type LogOptions, logPath } from "./logs.ts";
import { LogPumps } from "./pumps.ts";
import { decodeStatus } from "../engine/mod.ts";
import { nextDelay, type RestartPolicy, shouldRestart } from "./policy.ts";
import { clearRestart, markRestart, pendingRestarts } from "./pending.ts";
import { thawKilled } from "../stats/mod.ts";
import { detachedNetworksDown } from "./teardown.ts";
import { Session } from "./sessions.ts";
import { OUT_STDERR, OUT_STDOUT } from "./attach.ts";

/** What a run hands over (one JSON line on the runner's stdout). */
export interface Handover {
  runId: string;
  stateDir: string;
  recordDir: string;
  pid: number;
  startTime: number;
  /** The runner's fd numbers of the read ends of the container's stdout and stderr (-1: -t). */
  stdout: number;
  stderr: number;
  /** ... of the write end of its stdin pipe (-i without -t), and of its terminal (-t); or -1. */
  stdin: number;
  master: number;
  /** -i: its stdin is open to `micro attach`. */
  openStdin: boolean;
  log: LogOptions;
  restart: RestartPolicy;
}

interface Ended {
  exitCode: number | null;
  /** The code recorded (137 for an OOM kill): what `micro attach` ends with. */
  recorded: number | null;
}

/** One supervised container. */
class Supervised {
  /** Resolves when the container ended and its end was recorded. */
  readonly done: Promise<Ended>;
  private resolve: (e: Ended) => void = () => {};
  /** A command works on it (stop, restart): another is refused. */
  busy = "";
  /** Stopped by a user (stop, kill -9 by rm): no restart. */
  stopped = false;
  /** Resolves when both pipes reached EOF (or were taken off the pumps). */
  drained: Promise<unknown> = Promise.resolve();
  log: JsonLog | null = null;
  /** The output read: its stdout and stderr pipes, or its terminal's master. */
  fds: number[] = [];
  /** The write end of its stdin pipe (-i without -t), or -1. */
  stdin = -1;
  /** Its terminal's master (-t), or -1; also in `fds`. */
  master = -1;
  /** -i: input from `micro attach` goes to it. */
  openStdin = false;
  /** The clients attached (`micro attach`): each gets its output. */
  readonly sessions = new Set<Session>();

  constructor(
    readonly runId: string,
    readonly stateDir: string,
    public state: RunState,
  ) {
    this.done = new Promise((r) => this.resolve = r);
  }

  end(e: Ended) {
    this.resolve(e);
  }

  get pid(): number {
    return this.state.containerPid ?? 0;
  }

  /**
   * Signals the container's init through a pidfd checked against its start time: an adopted
   * container is not our child, and ours is reaped before it leaves the map, so its pid may
   * be another process's by now.
   */
  signal(sys: Sys, signal: number): number {
    const rc = signalProcess(sys, this.pid, this.state.containerStartTime ?? -1, signal);
    if (signal === 9) thawKilled(this.state);
    return rc;
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * A restart to come or under way. `done` settles once it is over (its container started and
 * taken, or not): a stop or an rm waits for it, else a runner that already read the record
 * brings the container back after `micro rm -f` said it was gone. `wake` ends the back-off.
 */
interface Restart {
  cancelled: boolean;
  done?: Promise<void>;
  wake?: () => void;
}

/** Runners at once: 50 concurrent `run -d` on 2 cores thrashed with one Deno each. */
const MAX_RUNNERS = 4;

export class Supervisor {
  readonly containers = new Map<string, Supervised>();
  /** Restarts waiting for their back-off (or starting): a stop cancels them. */
  private readonly restarting = new Map<string, Restart>();
  private pending = 0;
  private readonly sys: Sys;
  private readonly startTime: number;
  private listener: Deno.Listener | null = null;
  private idleTimer: ReturnType<typeof setTimeout> | undefined;
  private readonly pumps: LogPumps;

  constructor(readonly root: string, readonly uid: number) {
    this.sys = openLibc();
    this.pumps = new LogPumps(this.sys);
    this.startTime = processStartTime(Deno.pid);
  }

  /** Runs until it has nothing to supervise; returns micro's exit code. */
  async serve(): Promise<number> {
    const bad = untrustedRoot(this.root, this.uid);
    if (bad) throw untrustedRootError(this.root, this.uid, bad);
    Deno.mkdirSync(this.root, { recursive: true, mode: this.uid === 0 ? 0o711 : 0o700 });
    const dir = supervisorDir(this.root);
    Deno.mkdirSync(dir, { recursive: true, mode: 0o700 });
    const st = Deno.lstatSync(dir);
    if (!st.isDirectory || st.uid !== this.uid || (st.mode ?? 0) & 0o077) {
      throw new MicroError(`supervisor: ${dir} is not a private directory of yours`, {
        hint: `remove ${dir}; micro makes it again`,
      });
    }
    // One supervisor per state root: the lock is held for its whole life.
    if (!(await tryLock(`${dir}/lock`, this.sys))) return 0;
    // Who supervises (tests, and a person looking): written under the lock.
    Deno.writeTextFileSync(`${dir}/pid`, `${Deno.pid}\n`, { mode: 0o600 });
    this.sys.prctl(C.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    // Its cwd is not a directory anyone may want to unmount; signals that would end it do not.
    Deno.chdir("/");
    for (const s of ["SIGINT", "SIGHUP", "SIGPIPE"] as const) {
      try {
        Deno.addSignalListener(s, () => {});
      } catch { /* not watchable */ }
    }
    const path = socketPath(this.root);
    try {
      Deno.removeSync(path);
    } catch { /* none */ }
    this.listener = Deno.listen({ transport: "unix", path });
    Deno.chmodSync(path, 0o600);
    this.adoptAll();
    this.checkIdle();
    for await (const conn of this.listener) {
      this.pending++;
      this.checkIdle();
      void this.handle(conn as Deno.UnixConn).finally(() => {
        this.pending--;
        this.checkIdle();
      });
    }
    return 0;
  }

  /** Leaves after a second with nothing supervised and no request. */
  private checkIdle(): void {
    clearTimeout(this.idleTimer);
    if (this.containers.size || this.pending) return;
    this.idleTimer = setTimeout(() => {
      if (this.containers.size || this.pending) return;
      try {
        Deno.removeSync(socketPath(this.root));
      } catch { /* gone */ }
      this.listener?.close();
    }, 1000);
  }

  private async handle(conn: Deno.UnixConn): Promise<void> {
    let reply: Reply;
    try {
      const req = await readRequest(conn);
      if (req.op === "attach") return await this.attach(conn, req.runId, req.stdin);
      reply = await this.dispatch(req);
    } catch (e) {
      reply = {
        ok: false,
        error: e instanceof MicroError ? e.line() : String(e).split("\n")[0],
        code: e instanceof MicroError ? e.exitCode : 125,
      };
    }
    try {
      await conn.write(new TextEncoder().encode(JSON.stringify(reply) + "\n"));
    } catch { /* the caller left */ }
    try {
      conn.close();
    } catch { /* closed */ }
  }

  /**
   * `micro attach`: the client's connection becomes a session (sessions.ts) until it
   * leaves or the container ends (then it gets the exit code).
   */
  private async attach(conn: Deno.UnixConn, runId: string, stdin: boolean): Promise<void> {
    const c = this.containers.get(runId);
    const line = (r: Record<string, unknown>) =>
      conn.write(new TextEncoder().encode(JSON.stringify(r) + "\n"));
    // Taken back without its stdio (a killed supervisor's keeper refused pidfd_getfd).
    const lost = c && !c.fds.length && c.state.keeper?.master !== undefined;
    if (!c || lost) {
      try {
        await line({
          ok: false,
          error: lost
            ? `container ${runId}'s terminal was not taken back from its keeper after a ` +
              `supervisor was killed: it cannot be attached (it runs on; micro stop ends it)`
            : `container ${runId} is not running`,
          code: 125,
        });
      } catch { /* the caller left */ }
      try {
        conn.close();
      } catch { /* closed */ }
      return;
    }
    // Added at once (no await before): a container that ends now still tells it its end.
    const s = new Session(conn);
    c.sessions.add(s);
    s.onClose(() => c.sessions.delete(s));
    try {
      await line({ ok: true, tty: c.master >= 0, stdin: c.openStdin });
    } catch {
      return s.close();
    }
    const input = () => stdin && c.openStdin ? (c.master >= 0 ? c.master : c.stdin) : -1;
    await s.serveInput(this.sys, input, () => c.master);
  }

  private async dispatch(req: Request): Promise<Reply> {
    switch (req.op) {
      case "ping":
        // A command's gc found a container nothing supervises, or noted a restart: it may
        // have done so after this supervisor started (and looked).
        this.adoptAll();
        return { ok: true };
      case "run":
        return await this.run(["run", ...req.argv.slice(1)], req.cwd, req.env);
      case "start": {
        // Its restart policy's restart, waiting or under way: done now, and that is the start
        // (two runners for one container: one failed, "already running").
        const runId = readRecord(req.recordDir)?.runId ?? "";
        const pending = this.restarting.get(runId);
        if (pending && !pending.cancelled) {
          pending.wake?.();
          await pending.done;
          const c = this.containers.get(runId);
          if (c) {
            return { ok: true, code: 0, stdout: (readRecord(req.recordDir)?.id ?? runId) + "\n" };
          }
        }
        return await this.run(["_start", req.recordDir, ...req.argv], req.cwd, req.env);
      }
      case "kill": {
        const c = this.find(req.runId);
        if (req.signal === 9) c.stopped = true;
        const rc = c.signal(this.sys, req.signal);
        if (rc < 0 && rc !== -3) throw new MicroError(`kill ${c.runId}: errno ${-rc}`);
        return { ok: true };
      }
      case "stop": {
        const pending = this.restarting.get(req.runId);
        if (pending) {
          pending.cancelled = true;
          pending.wake?.();
        }
        clearRestart(this.root, req.runId);
        // A restart's runner at work: it ends first (the restart stops what it started).
        await pending?.done;
        // Ended already (and recorded: a container leaves the map last): nothing to stop.
        if (!this.containers.has(req.runId)) return { ok: true };
        return await this.stop(this.find(req.runId), req.signal, req.timeout);
      }
      case "wait": {
        const c = this.containers.get(req.runId);
        if (!c) return { ok: true, exitCode: undefined };
        const e = await c.done;
        return { ok: true, exitCode: e.exitCode };
      }
    }
    throw new MicroError(`supervisor: unknown request`);
  }

  private find(runId: string): Supervised {
    const c = this.containers.get(runId);
    if (!c) {
      throw new MicroError(`container ${runId} is not running`, { hint: 'see "micro ps -a"' });
    }
    return c;
  }

  private async stop(c: Supervised, signal: number, timeout: number): Promise<Reply> {
    if (c.busy) {
      throw new MicroError(`container ${c.runId} is busy: another micro command is ${c.busy} it`, {
        hint: "wait for it, then try again",
      });
    }
    c.busy = "stopping";
    c.stopped = true;
    try {
      c.signal(this.sys, signal);
      const ended = await Promise.race([
        c.done,
        timeout < 0 ? new Promise<never>(() => {}) : sleep(timeout * 1000).then(() => null),
      ]);
      if (ended) return { ok: true, exitCode: ended.exitCode };
      c.signal(this.sys, 9);
      return { ok: true, exitCode: (await c.done).exitCode };
    } finally {
      c.busy = "";
    }
  }

  /** Runners at work, and those waiting for a turn (a few at once: each is a Deno process). */
  private runners = 0;
  private readonly turns: (() => void)[] = [];

  /** Starts a runner (`micro _run-detached`) and takes its container over. */
  private async run(argv: string[], cwd: string, env: Record<string, string>): Promise<Reply> {
    if (this.runners >= MAX_RUNNERS) await new Promise<void>((r) => this.turns.push(r));
    this.runners++;
    try {
      return await this.runOne(argv, cwd, env);
    } finally {
      this.runners--;
      this.turns.shift()?.();
    }
  }

  private async runOne(argv: string[], cwd: string, env: Record<string, string>): Promise<Reply> {
    const exe = microExe();
    // The caller's environment, but the Deno cache of this supervisor's own micro (the caller
    // may be another version, whose cache holds other code under other flags).
    env = { ...env };
    const cache = runnerEnv(Deno.env.toObject()).DENO_DIR;
    if (cache) env.DENO_DIR = cache;
    else delete env.DENO_DIR;
    const verb = argv[0] === "_start" ? "_start-detached" : "_run-detached";
    const child = new Deno.Command(exe[0], {
      args: [...exe.slice(1), verb, ...argv.slice(1)],
      cwd,
      env,
      clearEnv: true,
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const stderr = collect(child.stderr, 64 * 1024);
    const reader = child.stdout.getReader();
    let line = "";
    const dec = new TextDecoder();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      line += dec.decode(value, { stream: true });
      if (line.includes("\n") || line.length > 1 << 20) break;
    }
    let handed: Handover | null = null;
    try {
      handed = line.trim() ? JSON.parse(line.trim()) as Handover : null;
    } catch {
      handed = null;
    }
    const writer = child.stdin.getWriter();
    if (handed) {
      let adopted = false;
      try {
        await this.adopt(handed, child.pid);
        adopted = true;
        await writer.write(new TextEncoder().encode("ok\n"));
      } catch (e) {
        // Adopted, the runner died before reading "ok": the container is this supervisor's
        // all the same, and is watched below. Else the runner kills it and cleans up.
        if (!adopted) {
          await writer.close().catch(() => {});
          await child.status;
          reader.releaseLock();
          throw e;
        }
      }
    }
    await writer.close().catch(() => {});
    const status = await child.status;
    reader.releaseLock();
    await child.stdout.cancel().catch(() => {});
    const err = await stderr;
    if (handed) {
      // Now the container's parent is this process (a subreaper): wait4 gets its status.
      const c = this.containers.get(handed.runId);
      if (c) void this.watch(c, true);
      const id = readRecord(handed.recordDir)?.id ?? handed.runId;
      return { ok: true, code: 0, stdout: id + "\n", stderr: err };
    }
    return { ok: true, code: status.code, stderr: err };
  }

  /** Takes a handed-over container: its pipes, a keeper for them, the state and record. */
  private async adopt(h: Handover, runner: number): Promise<void> {
    const state = readState(h.stateDir);
    if (!state) throw new MicroError(`supervisor: ${h.stateDir}/state.json is gone`);
    const c = new Supervised(h.runId, h.stateDir, state);
    try {
      if (h.master >= 0) {
        c.master = this.takeFd(runner, h.master);
        c.fds = [c.master];
      } else c.fds = [this.openPipe(runner, h.stdout), this.openPipe(runner, h.stderr)];
      if (h.stdin >= 0) c.stdin = this.openPipe(runner, h.stdin, C.O_WRONLY);
      c.openStdin = h.openStdin;
      state.keeper = await this.keeper(c);
    } catch (e) {
      for (const fd of [...c.fds, c.stdin]) if (fd >= 0) this.sys.close(fd);
      throw e;
    }
    state.openStdin = h.openStdin;
    state.record = h.recordDir;
    (state as RunState & { log?: LogOptions }).log = h.log;
    (state as RunState & { restart?: RestartPolicy }).restart = h.restart;
    this.own(c, h.recordDir);
    this.containers.set(h.runId, c);
    this.pump(c, h.recordDir, h.log);
  }

  /** This supervisor as the owner of the run: in its state and its record. */
  private own(c: Supervised, recordDir: string): void {
    c.state.pid = Deno.pid;
    c.state.startTime = this.startTime;
    writeState(c.stateDir, c.state);
    const rec = readRecord(recordDir);
    if (rec) {
      rec.pid = Deno.pid;
      rec.startTime = this.startTime;
      writeRecord(recordDir, rec);
    }
  }

  /** A pipe of another process of ours, opened through /proc (the same pipe, same end). */
  private openPipe(pid: number, fd: number, mode: number = C.O_RDONLY): number {
    const path = `/proc/${pid}/fd/${fd}`;
    const got = this.sys.open(cstr(path), mode | C.O_CLOEXEC | C.O_NONBLOCK, 0);
    if (got < 0) {
      throw new MicroError("", {
        phase: "supervise",
        plugin: "supervisor",
        op: "open",
        paths: { path },
        errno: -got,
      });
    }
    // Kept O_NONBLOCK: the pumps' one loop reads it when ppoll says it is ready.
    return got;
  }

  /**
   * A terminal's master held by another process of ours (the runner, a keeper), copied with
   * pidfd_getfd: reopening /proc/PID/fd/N of a master opens /dev/ptmx, a new terminal.
   * `startTime` checks a keeper is still the process it was (its pid may be reused).
   */
  private takeFd(pid: number, fd: number, startTime?: number): number {
    const fail = (op: string, errno: number) =>
      new MicroError("", {
        phase: "supervise",
        plugin: "supervisor",
        op,
        paths: { path: `/proc/${pid}/fd/${fd}` },
        errno,
        hint: "pidfd_getfd needs Linux 5.6 and ptrace access to that process (same user, " +
          "or CAP_SYS_PTRACE; Yama ptrace_scope 0)",
      });
    const pidfd = this.sys.pidfdOpen(pid, 0);
    if (pidfd < 0) throw fail("pidfd_open", -pidfd);
    try {
      if (startTime !== undefined && processStartTime(pid) !== startTime) {
        throw fail("pidfd_open", 3);
      }
      const got = this.sys.pidfdGetfd(pidfd, fd);
      if (got < 0) throw fail("pidfd_getfd", -got);
      const fl = this.sys.fcntl(got, C.F_GETFL, 0);
      if (fl >= 0) this.sys.fcntl(got, C.F_SETFL, fl | C.O_NONBLOCK);
      return got;
    } finally {
      this.sys.close(pidfd);
    }
  }

  /**
   * `sleep` holding the supervisor's ends of the container's stdio, so that they outlive
   * this process: the output pipes' read ends as its fds 3 and 4, the stdin pipe's write end
   * as 5 (a container's stdin never reaches EOF while it runs detached, as Docker's), the
   * terminal's master at the number it has here (inherited: dash redirects only fds 0-9).
   * A killed supervisor so never hangs up a container's terminal.
   */
  private async keeper(c: Supervised): Promise<RunState["keeper"]> {
    const self = `/proc/${Deno.pid}/fd`;
    const redirs: string[] = [];
    const want: [number, string][] = [];
    if (c.master < 0) {
      redirs.push(`3<${self}/${c.fds[0]}`, `4<${self}/${c.fds[1]}`);
      want.push([3, "pipe:"], [4, "pipe:"]);
    }
    if (c.stdin >= 0) {
      redirs.push(`5>${self}/${c.stdin}`);
      want.push([5, "pipe:"]);
    }
    // A master cannot be reopened by name: the keeper inherits it (close-on-exec cleared
    // for the spawn only; nothing else is spawned meanwhile, JavaScript runs on one thread).
    if (c.master >= 0) {
      want.push([c.master, "/dev/"]);
      this.sys.fcntl(c.master, C.F_SETFD, 0);
    }
    let child: Deno.ChildProcess;
    try {
      child = new Deno.Command("/bin/sh", {
        args: ["-c", `exec sleep 2147483647 ${redirs.join(" ")}`],
        stdin: "null",
        stdout: "null",
        stderr: "null",
        clearEnv: true,
        env: { PATH: "/usr/bin:/bin" },
      }).spawn();
    } finally {
      if (c.master >= 0) this.sys.fcntl(c.master, C.F_SETFD, C.FD_CLOEXEC);
    }
    child.unref();
    void child.status.catch(() => {});
    const kept = {
      pid: child.pid,
      startTime: processStartTime(child.pid),
      stdout: c.master < 0 ? 3 : -1,
      stderr: c.master < 0 ? 4 : -1,
      ...(c.stdin >= 0 ? { stdin: 5 } : {}),
      ...(c.master >= 0 ? { master: c.master } : {}),
    };
    // Recorded at once: if this supervisor dies before the hand-over ends, the runner's
    // cleanup (or gc) finds the keeper there and ends it with the run.
    c.state.keeper = kept;
    writeState(c.stateDir, c.state);
    // Until sh has opened them, its fds are not the pipes (and the terminal) yet.
    for (let k = 0; k < 100; k++) {
      if (want.every(([fd, kind]) => linkOf(child.pid, fd).startsWith(kind))) break;
      await sleep(5);
    }
    return kept;
  }

  /** Copies the container's output to its json-file log, through the one pump loop. */
  private pump(c: Supervised, recordDir: string, opts: LogOptions): void {
    const log = new JsonLog(logPath(recordDir), opts, () => new Date(), this.sys);
    c.log = log;
    // A terminal's output is stdout (Docker's json-file too).
    const sink = (stream: string, chunk: Uint8Array) => {
      log.write(stream, chunk);
      const type = stream === "stderr" ? OUT_STDERR : OUT_STDOUT;
      for (const s of c.sessions) s.output(type, chunk);
    };
    c.drained = Promise.all(
      c.fds.map((fd, k) => this.pumps.add(fd, k === 1 ? "stderr" : "stdout", sink)),
    );
  }

  /** Every detached container of the state root whose init still runs, taken over. */
  private adoptAll(): void {
    let entries: Deno.DirEntry[];
    try {
      entries = [...Deno.readDirSync(this.root)];
    } catch {
      return;
    }
    for (const e of entries) {
      if (e.isDirectory && !e.name.startsWith(".")) this.adoptRun(e.name);
    }
    // Restarts a killed supervisor left waiting, or gc noted for a container that ended
    // while none ran: due now, or when their back-off ends.
    for (const [runId, p] of pendingRestarts(this.sys, this.root)) {
      if (this.restarting.has(runId) || this.containers.has(runId)) continue;
      const rec = readRecord(p.recordDir);
      if (!rec || rec.id !== p.id) {
        clearRestart(this.root, runId);
        continue;
      }
      // The killed supervisor's runner may be starting it now (its record says so, not
      // "exited"): what it ends with decides, once it is gone.
      const runner = startRunner(p.recordDir, this.uid);
      if (runner) this.afterRunner(runId, p.recordDir, p.id, runner);
      else if (rec.state === "exited") {
        this.scheduleRestart(runId, p.recordDir, p.id, Math.max(0, p.due - Date.now()));
      } else clearRestart(this.root, runId);
    }
  }

  /** The detached container of run `runId`, if its init runs and nothing supervises it. */
  private adoptRun(runId: string): void {
    if (this.containers.has(runId)) return;
    const dir = `${this.root}/${runId}`;
    const state = readState(dir);
    if (!state?.detached || !state.record) return;
    if (!isAlive(state.containerPid, state.containerStartTime)) return;
    if (isAlive(state.pid, state.startTime) && state.pid !== Deno.pid) return;
    const c = new Supervised(runId, dir, state);
    const k = state.keeper;
    if (k && isAlive(k.pid, k.startTime)) {
      try {
        if (k.master !== undefined) {
          c.master = this.takeFd(k.pid, k.master, k.startTime);
          c.fds = [c.master];
        } else c.fds = [this.openPipe(k.pid, k.stdout), this.openPipe(k.pid, k.stderr)];
        if (k.stdin !== undefined) c.stdin = this.openPipe(k.pid, k.stdin, C.O_WRONLY);
        c.openStdin = state.openStdin === true;
      } catch {
        // Not taken back (pidfd_getfd refused): it runs on, unread and not attachable.
        for (const fd of [...c.fds, c.stdin]) if (fd >= 0) this.sys.close(fd);
        c.fds = [];
        c.master = c.stdin = -1;
      }
    }
    this.own(c, state.record);
    this.containers.set(runId, c);
    const opts = (state as RunState & { log?: LogOptions }).log ?? { maxSize: 0, maxFile: 1 };
    if (c.fds.length) this.pump(c, state.record, opts);
    void this.watch(c, false);
  }

  /**
   * A restart whose runner outlived the supervisor that started it: that runner cannot hand
   * the container over (nobody took it: it stops it and records the end), so once it is
   * gone the restart is done again, unless the container runs (taken over) or a stop came.
   */
  private afterRunner(
    runId: string,
    recordDir: string,
    id: string,
    runner: { pid: number; start: number },
  ): void {
    const pending: Restart = { cancelled: false };
    this.restarting.set(runId, pending);
    this.pending++;
    pending.done = (async () => {
      try {
        // A stop waits for this: it need not wait for that runner (its hand-over fails, it
        // stops what it started), nor for a process that only looks like one.
        while (!pending.cancelled && isAlive(runner.pid, runner.start)) await sleep(100);
        if (this.restarting.get(runId) !== pending) return;
        this.restarting.delete(runId);
        // Its runner killed as well, the container may run on: taken over.
        this.adoptRun(runId);
        const rec = readRecord(recordDir);
        const now = this.containers.get(runId);
        // Stopped (or removed) meanwhile: what runs on stops now.
        if (pending.cancelled && now) await this.stop(now, 9, 0);
        if (
          pending.cancelled || now || !rec || rec.id !== id ||
          rec.state === "running"
        ) {
          clearRestart(this.root, runId);
          return;
        }
        if (rec.state !== "exited") {
          // Its runner failed before the command ran ("created"): that start failed.
          rec.state = "exited";
          rec.finishedAt = new Date().toISOString();
          writeRecord(recordDir, rec);
        }
        this.scheduleRestart(runId, recordDir, id, 0);
      } catch {
        clearRestart(this.root, runId); // the store is gone
      } finally {
        this.pending--;
        this.checkIdle();
      }
    })();
  }

  /**
   * Waits for the container's end: wait4 when it is our child (the exit code), else by
   * polling its pid and start time (the code is unknown). Then records it and cleans up.
   */
  private async watch(c: Supervised, child: boolean): Promise<void> {
    let exitCode: number | null = null;
    let signal: number | undefined;
    if (child) {
      const { pid, status } = await this.reaped(c.pid);
      if (pid > 0) {
        const r = decodeStatus(status);
        exitCode = r.exitCode;
        signal = r.signal;
      } else {
        while (isAlive(c.state.containerPid, c.state.containerStartTime)) await sleep(500);
      }
    } else {
      while (isAlive(c.state.containerPid, c.state.containerStartTime)) await sleep(500);
    }
    await this.finish(c, exitCode, signal);
  }

  /** Children waited for by the reaper, by pid. */
  private readonly waiting = new Map<number, (r: { pid: number; status: number }) => void>();
  private reaper: ReturnType<typeof setInterval> | undefined;

  /**
   * The end of a child, through wait4(WNOHANG) on SIGCHLD and every second (a signal can
   * be merged with another): no thread per container (an async waitpid each starved Deno's
   * blocking pool with 50 containers and their log pipes, and a stop waited forever).
   */
  private reaped(pid: number): Promise<{ pid: number; status: number }> {
    const p = new Promise<{ pid: number; status: number }>((r) => this.waiting.set(pid, r));
    if (!this.reaper) {
      const sweep = () => {
        for (const [child, resolve] of this.waiting) {
          const got = this.sys.reap(child);
          if (got.pid === 0) continue; // it runs
          this.waiting.delete(child);
          resolve(got.pid > 0 ? got : { pid: -10, status: 0 });
        }
        if (!this.waiting.size) {
          clearInterval(this.reaper);
          Deno.removeSignalListener("SIGCHLD", sweep);
          this.reaper = undefined;
        }
      };
      Deno.addSignalListener("SIGCHLD", sweep);
      this.reaper = setInterval(sweep, 1000);
      queueMicrotask(sweep);
    } else {queueMicrotask(() => {
        const got = this.sys.reap(pid);
        if (got.pid === 0 || !this.waiting.has(pid)) return;
        this.waiting.get(pid)!(got.pid > 0 ? got : { pid: -10, status: 0 });
        this.waiting.delete(pid);
      });}
    return p;
  }

  private async finish(c: Supervised, exitCode: number | null, signal?: number): Promise<void> {
    // What it wrote last: read until EOF, at most two seconds more.
    await Promise.race([c.drained, sleep(2000)]);
    const k = c.state.keeper;
    if (k) signalProcess(this.sys, k.pid, k.startTime, 9);
    for (const fd of c.fds) this.pumps.remove(fd);
    try {
      c.log?.close();
    } catch { /* the disk is full or gone */ }
    for (const fd of c.fds) this.sys.close(fd);
    if (c.stdin >= 0) this.sys.close(c.stdin);
    c.stdin = c.master = -1; // attach sessions write no more (the numbers may be reused)
    const recordDir = c.state.record!;
    const oom = oomKilled(c.state);
    const rec = readRecord(recordDir);
    const policy = (c.state as RunState & { restart?: RestartPolicy }).restart;
    if (rec && !rec.rm) {
      rec.state = "exited";
      if (exitCode === null) {
        delete rec.exitCode;
        rec.error = "ended while no supervisor watched it: its exit code is unknown";
      } else rec.exitCode = oom && signal === 9 ? 137 : exitCode;
      rec.finishedAt = new Date().toISOString();
      const more = rec as typeof rec & { oomKilled?: boolean; stoppedByUser?: boolean };
      if (oom) more.oomKilled = true;
      else delete more.oomKilled;
      // unless-stopped: not brought back at boot after a stop by a user.
      if (c.stopped) more.stoppedByUser = true;
      try {
        writeRecord(recordDir, rec);
      } catch { /* the store is gone */ }
    }
    // The cleanup `micro run` does at its end: networks, cgroups, image use, state dir. After
    // the record: a command that finds the state dir gone reads the end from the record
    // (`micro wait` printed -1 in that gap on CI).
    try {
      await detachedNetworksDown(c.stateDir, () => this.sys);
      removeRun(c.stateDir, c.state, () => this.sys);
    } catch { /* the next command's gc tries again */ }
    this.containers.delete(c.runId);
    const recorded = rec && !rec.rm ? rec.exitCode ?? null : exitCode;
    c.end({ exitCode, recorded });
    for (const s of c.sessions) void s.finish(recorded);
    // Restart policies (Docker's): not after a stop by a user.
    if (rec && !rec.rm && policy && !c.stopped && shouldRestart(policy, exitCode, rec)) {
      const delay = nextDelay(rec);
      try {
        writeRecord(recordDir, rec); // the back-off moved on
      } catch { /* the store is gone: the restart finds no record */ }
      this.scheduleRestart(c.runId, recordDir, rec.id, delay);
    }
    this.checkIdle();
  }

  /**
   * Starts the container of `recordDir` again after `delay` ms, unless a stop cancels it or
   * its record changed meanwhile. Noted in the state root until done (core/supervisor/
   * pending.ts): a supervisor killed during the back-off loses no restart.
   */
  private scheduleRestart(runId: string, recordDir: string, id: string, delay: number): void {
    const pending: Restart = { cancelled: false };
    this.restarting.set(runId, pending);
    try {
      markRestart(this.root, runId, { recordDir, id, due: Date.now() + delay });
    } catch { /* not noted: kept in memory only */ }
    this.pending++;
    pending.done = (async () => {
      try {
        await new Promise<void>((wake) => {
          const t = setTimeout(wake, delay);
          pending.wake = () => {
            clearTimeout(t);
            wake();
          };
        });
        const again = readRecord(recordDir);
        if (pending.cancelled || !again || again.state !== "exited" || again.id !== id) return;
        await this.run(["_start", recordDir, "--restarting"], "/", restartEnv());
        // Stopped while it was being started: it stops now.
        const now = this.containers.get(runId);
        if (pending.cancelled && now) await this.stop(now, 9, 0);
      } catch {
        /* recorded by the runner */
      } finally {
        // Started (a detached container a next supervisor adopts), cancelled or moot.
        if (this.restarting.get(runId) === pending) {
          this.restarting.delete(runId);
          clearRestart(this.root, runId);
        }
        this.pending--;
        this.checkIdle();
      }
    })();
  }
}

/** The environment a restart runs in: the supervisor's own (the first caller's), as a runner's. */
function restartEnv(): Record<string, string> {
  return runnerEnv(Deno.env.toObject());
}

/**
 * A live `micro _start-detached RECORD_DIR` of user `uid` (a restart's or a start's runner),
 * found by its arguments: a supervisor killed while it ran recorded nothing about it.
 */
function startRunner(recordDir: string, uid: number): { pid: number; start: number } | null {
  let entries: Deno.DirEntry[];
  try {
    entries = [...Deno.readDirSync("/proc")];
  } catch {
    return null;
  }
  for (const e of entries) {
    if (!/^\d+$/.test(e.name)) continue;
    const pid = Number(e.name);
    if (pid === Deno.pid) continue;
    try {
      const argv = Deno.readTextFileSync(`/proc/${pid}/cmdline`).split("\0");
      const at = argv.indexOf("_start-detached");
      if (at < 0 || argv[at + 1] !== recordDir) continue;
      // Its real uid: a non-dumpable process's /proc entry is root's whoever runs it.
      const m = /^Uid:\s+(\d+)/m.exec(Deno.readTextFileSync(`/proc/${pid}/status`));
      if (!m || Number(m[1]) !== uid) continue;
      const start = processStartTime(pid);
      if (start >= 0) return { pid, start };
    } catch { /* gone meanwhile */ }
  }
  return null;
}

/** Whether the container's cgroup saw an OOM kill. */
function oomKilled(state: RunState): boolean {
  for (const cg of state.cgroups ?? []) {
    const path = (cg as unknown as { path?: string }).path;
    if (!path) continue;
    // v2: memory.events; v1: memory.oom_control (oom_kill since Linux 4.13).
    for (const file of ["memory.events", "memory.oom_control"]) {
      try {
        const m = /^oom_kill (\d+)$/m.exec(Deno.readTextFileSync(`${path}/${file}`));
        if (m && Number(m[1]) > 0) return true;
      } catch { /* not this version's file, or gone */ }
    }
  }
  return false;
}

/** What /proc/PID/fd/FD links to ("pipe:[N]", "/dev/pts/ptmx"), or "". */
function linkOf(pid: number, fd: number): string {
  try {
    return Deno.readLinkSync(`/proc/${pid}/fd/${fd}`);
  } catch {
    return "";
  }
}

/** The supervisor's lock, taken without waiting long: false when another one holds it. */
async function tryLock(path: string, sys: Sys): Promise<boolean> {
  const fd = sys.open(cstr(path), C.O_RDWR | C.O_CREAT | C.O_CLOEXEC, 0o600);
  if (fd < 0) throw new MicroError(`supervisor: open ${path}: errno ${-fd}`);
  // A supervisor that is leaving still holds it for a moment: wait a little for it.
  const end = Date.now() + 3000;
  for (;;) {
    if (sys.flock(fd, 2 | 4) === 0) return true; // LOCK_EX | LOCK_NB; held until exit
    if (Date.now() > end) {
      sys.close(fd);
      return false;
    }
    await sleep(50);
  }
}

async function readRequest(conn: Deno.UnixConn): Promise<Request> {
  const buf = new Uint8Array(1 << 20);
  let n = 0;
  for (;;) {
    const got = await conn.read(buf.subarray(n));
    if (got === null) break;
    n += got;
    if (buf[n - 1] === 10 || n === buf.length) break;
  }
  return JSON.parse(new TextDecoder().decode(buf.subarray(0, n))) as Request;
}

async function collect(stream: ReadableStream<Uint8Array>, cap: number): Promise<string> {
  const dec = new TextDecoder();
  let out = "";
  for await (const chunk of stream) {
    if (out.length < cap) out += dec.decode(chunk, { stream: true });
  }
  return out.slice(0, cap);
}
