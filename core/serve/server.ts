/**
 * `micro serve`: an opt-in server that keeps micro processes warm for `run`, `plan` and
 * `exec` (clients: MICRO_SERVE). micro stays daemonless by default; this exists because
 * most of a run's own time is its process's start, not its work (bench/README.md: a run in
 * a warm process takes 18 to 25 ms, the same run in a process of its own 57 ms above Deno's
 * floor), and no amount of trimming the cold path closes that gap.
 *
 * The server itself does little: it listens on a unix socket only its own user may open
 * (0600, in the state root, which micro checks like every state root), and keeps at least
 * one worker process idle, blocked in accept(2) on that socket with its run modules loaded.
 * A worker takes one client at a time and runs its command as that client's micro would
 * (core/serve/worker.ts); when none is idle the server starts another. A worker serving a
 * command no longer depends on the server: stopping the server lets it finish.
 */
import { errnoName, MicroError } from "../errors.ts";
import { microExe, runnerEnv } from "../store/rmtree.ts";
import { listDirAt } from "../files.ts";
import { openLibc } from "../sys/libc.ts";
import { C, cstr, cstrArray, type Stat, type Sys } from "../sys/mod.ts";
import { sockaddrUn } from "./wire.ts";
import { fileId, NOTE_IDLE, NOTE_TAKEN } from "./worker.ts";

/** How long a start waits for a busy worker to be idle again (see `refill`). */
const REFILL_DELAY_MS = 250;
/** A worker not ready (warm, blocked in accept) after this is killed and started again. */
const READY_TIMEOUT_MS = 30_000;
/** Workers at most: a client beyond waits in the socket's backlog for one to be idle. */
const MAX_WORKERS = 64;
/** A worker that dies before it takes a client is started again after this (a crash loop's pace). */
const RESTART_DELAY_MS = 1000;

/** Serves on `path` until SIGINT or SIGTERM; `ready` is called once it listens. */
export async function serve(
  path: string,
  ready?: () => void,
  sys: Sys = openLibc(),
): Promise<number> {
  const slash = path.lastIndexOf("/");
  const dir = path.slice(0, slash) || "/";
  const name = path.slice(slash + 1);
  const dirFd = openOwnDir(sys, dir);
  let sock = -1;
  let devNull = -1;
  /** Each worker: idle now, and whether it ever was (one that was not has no client). */
  const workers = new Map<number, { idle: boolean; ready: boolean }>();
  let stopping = false;
  /** The socket's name until a worker is ready; then the socket has its own (`named`). */
  let early = "";
  let named = false;
  /** The socket file's identity once named: at stop, the name goes only if it is still it. */
  let mine = "";
  try {
    // Bound through the directory's fd: the path is resolved once, at the open above.
    const via = `/proc/self/fd/${dirFd}/${name}`;
    const addr = sockaddrUn(via);
    if (!addr) throw serveError(path, "bind", undefined, "the name is too long for a unix socket");
    removeStale(sys, dirFd, name, path, addr);
    // Bound under a name of its own, and given the socket's once a worker is ready: a client
    // that finds the socket finds a worker.
    early = `.${name}.${Deno.pid}`;
    const earlyAddr = sockaddrUn(`/proc/self/fd/${dirFd}/${early}`);
    if (!earlyAddr) throw serveError(path, "bind", undefined, "the name is too long for a socket");
    sys.unlinkat(dirFd, cstr(early), 0);
    sock = sys.socket(C.AF_UNIX, C.SOCK_STREAM | C.SOCK_CLOEXEC, 0);
    if (sock < 0) throw serveError(path, "socket", -sock);
    const old = sys.umask(0o177); // the socket is 0600: only the server's user connects
    const bound = sys.bind(sock, earlyAddr);
    sys.umask(old);
    if (bound < 0) throw serveError(path, "bind", -bound);
    const listening = sys.listen(sock, 64);
    if (listening < 0) throw serveError(path, "listen", -listening);
    devNull = sys.open(cstr("/dev/null"), C.O_RDWR | C.O_CLOEXEC, 0);
    const exe = microExe();
    // The server's pid given: a worker that starts after the server ended knows it is orphaned.
    const argv = cstrArray([...exe, "_serve-worker", String(Deno.pid)]);
    const envp = cstrArray(
      Object.entries(runnerEnv(Deno.env.toObject())).map(([k, v]) => `${k}=${v}`),
    );
    /** Idle workers (blocked in accept), and whether a start is on its way. */
    let idleCount = 0;
    let starting = false;
    /**
     * Workers started while none is idle: at once when there are none at all, else after
     * REFILL_DELAY_MS if still none is idle (a start takes a core from the command that
     * took the last idle worker: two cores, measured 10 ms slower; a worker that finished
     * its command meanwhile is idle again). At most MAX_WORKERS; a failure is said and
     * tried again later, never the server's end.
     */
    const refill = async (tries = Infinity): Promise<void> => {
      if (starting) return;
      starting = true;
      try {
        while (!stopping && idleCount === 0 && workers.size < MAX_WORKERS) {
          if (workers.size > 0) await sleep(REFILL_DELAY_MS);
          if (stopping || idleCount > 0) break;
          if (await startWorker()) continue;
          if (--tries <= 0) break;
          await sleep(RESTART_DELAY_MS);
        }
      } catch (e) {
        console.error(`micro: serve: ${(e as Error).message}`);
        setTimeout(() => void refill(), RESTART_DELAY_MS);
      } finally {
        starting = false;
      }
    };
    /** A new worker, waited for until it is ready or gone: whether it became ready. */
    const startWorker = async (): Promise<boolean> => {
      const pipe = new Int32Array(2);
      const rc = sys.pipe2(pipe, C.O_CLOEXEC);
      if (rc < 0) {
        console.error(`micro: serve: cannot start a worker: pipe2: ${errnoName(-rc)}`);
        return false;
      }
      const pid = sys.spawn(cstr(exe[0]), argv, envp, [devNull, devNull, 2, sock, pipe[1]]);
      sys.close(pipe[1]);
      if (pid < 0) {
        sys.close(pipe[0]);
        console.error(`micro: serve: cannot start a worker (${exe[0]}): ${errnoName(-pid)}`);
        return false;
      }
      let ready!: (ok: boolean) => void;
      const first = new Promise<boolean>((r) => ready = r);
      workers.set(pid, { idle: false, ready: false });
      void follow(pid, pipe[0], ready);
      // One that never gets ready (hung loading) is killed: its end is the answer then.
      const timer = setTimeout(() => sys.kill(pid, C.SIGKILL), READY_TIMEOUT_MS);
      try {
        return await first;
      } finally {
        clearTimeout(timer);
      }
    };
    /**
     * A worker's notes until it exits: the idle count, a start when none is idle; `ready`
     * at its first idle note (true) or its end (false).
     */
    const follow = async (pid: number, notes: number, ready: (ok: boolean) => void) => {
      const reaped = sys.waitpid(pid);
      const byte = new Uint8Array(1);
      let everIdle = false;
      for (;;) {
        const n = await sys.readAsync(notes, byte, 1);
        const w = workers.get(pid)!;
        if (n !== 1) break;
        if (byte[0] === NOTE_IDLE && !w.idle) {
          w.idle = true;
          w.ready = true;
          idleCount++;
          if (!everIdle) ready(true);
          everIdle = true;
        } else if (byte[0] === NOTE_TAKEN && w.idle) {
          w.idle = false;
          idleCount--;
          void refill();
        }
      }
      sys.close(notes);
      if (workers.get(pid)!.idle) idleCount--;
      workers.delete(pid);
      const { status } = await reaped;
      if (!everIdle) {
        if (!stopping) {
          console.error(`micro: serve: worker ${pid} ended before it was ready (status ${status})`);
        }
        ready(false);
      }
      void refill();
    };
    const stopped = new Promise<void>((resolve) => {
      const stop = () => {
        stopping = true;
        resolve();
      };
      Deno.addSignalListener("SIGINT", stop);
      Deno.addSignalListener("SIGTERM", stop);
    });
    // The first worker, or none: a server that cannot start one says so and ends.
    await refill(3);
    if (idleCount === 0) {
      throw new MicroError("no worker could start (the lines above say why)", { phase: "serve" });
    }
    if (stopping) return 0;
    // Never over another server's socket (one that started meanwhile): EEXIST is refused.
    const moved = sys.renameat2(dirFd, cstr(early), dirFd, cstr(name), 1); // RENAME_NOREPLACE
    if (moved === -17) {
      throw new MicroError(`another micro serve listens on ${path}`, {
        phase: "serve",
        hint: "stop it first, or serve on another path with --socket",
      });
    }
    if (moved < 0) throw serveError(path, "rename", -moved);
    named = true;
    mine = pathId(sys, dirFd, name);
    console.error(`micro: serving run, plan and exec on ${path} (MICRO_SERVE=${path})`);
    ready?.();
    await stopped;
    return 0;
  } finally {
    stopping = true;
    // Idle workers go with the server (their parent-death signal, which one taking a
    // command clears before it starts it: no kill here could tell the two apart in time).
    // One still starting has no client: it goes now (it may not have set that signal yet).
    for (const [pid, w] of workers) if (!w.ready) sys.kill(pid, C.SIGKILL);
    if (sock >= 0) {
      if (!named) sys.unlinkat(dirFd, cstr(early), 0);
      else if (mine && pathId(sys, dirFd, name) === mine) sys.unlinkat(dirFd, cstr(name), 0);
      sys.close(sock);
    }
    if (devNull >= 0) sys.close(devNull);
    sys.close(dirFd);
  }
}

function serveError(path: string, op: string, errno?: number, hint?: string): MicroError {
  return new MicroError("", { phase: "serve", op, paths: { socket: path }, errno, hint });
}

/** The socket's directory, opened once: the caller's, and not writable by others. */
function openOwnDir(sys: Sys, dir: string): number {
  const made = sys.mkdirat(C.AT_FDCWD, cstr(dir), 0o700);
  if (made < 0 && made !== -17) throw serveError(dir, "mkdir", -made);
  const fd = sys.open(cstr(dir), C.O_RDONLY | C.O_DIRECTORY | C.O_NOFOLLOW | C.O_CLOEXEC, 0);
  if (fd < 0) {
    throw serveError(dir, "open", -fd, "the socket's directory must be a directory, not a link");
  }
  const st: Stat = { mode: 0, size: 0, uid: 0, gid: 0 };
  const rc = sys.fstat(fd, st);
  const uid = Deno.uid() ?? 0;
  const why = rc < 0
    ? `fstat: errno ${-rc}`
    : st.uid !== uid
    ? `it belongs to uid ${st.uid}, not to you (${uid})`
    : st.mode & 0o022
    ? "others may write it"
    : undefined;
  if (why) {
    sys.close(fd);
    throw new MicroError(`the socket's directory ${dir}: ${why}`, {
      phase: "serve",
      hint: "serve from a directory of yours that only you may write, with --socket",
    });
  }
  return fd;
}

/** Which file a name in `dirFd` is (device and inode), "" when none. */
function pathId(sys: Sys, dirFd: number, name: string): string {
  const fd = sys.openat(dirFd, cstr(name), C.O_PATH | C.O_NOFOLLOW | C.O_CLOEXEC, 0);
  if (fd < 0) return "";
  const id = fileId(sys, fd);
  sys.close(fd);
  return id;
}

/**
 * A socket left by a server that is gone goes, and the temporary names of servers killed
 * before their first worker was ready (`.NAME.PID`, PID gone); a live server's socket, or
 * any other file, stays.
 */
function removeStale(sys: Sys, dirFd: number, name: string, path: string, addr: Uint8Array): void {
  const left = listDirAt(sys, `/proc/self/fd/${dirFd}`);
  if (typeof left !== "number") {
    for (const e of left) {
      const pid = e.name.startsWith(`.${name}.`) ? e.name.slice(name.length + 2) : "";
      if (/^\d+$/.test(pid) && sys.kill(Number(pid), 0) === -3) sys.unlinkat(dirFd, e.raw, 0);
    }
  }
  const st: Stat = { mode: 0, size: 0, uid: 0, gid: 0 };
  if (sys.fstatat(dirFd, cstr(name), C.AT_SYMLINK_NOFOLLOW, st) < 0) return;
  if ((st.mode & C.S_IFMT) !== C.S_IFSOCK) {
    throw new MicroError(`${path} is there and is not a socket`, {
      phase: "serve",
      hint: "remove it, or serve on another path with --socket",
    });
  }
  const probe = sys.socket(C.AF_UNIX, C.SOCK_STREAM | C.SOCK_CLOEXEC, 0);
  const live = probe >= 0 && sys.connect(probe, addr) === 0;
  if (probe >= 0) sys.close(probe);
  if (live) {
    throw new MicroError(`another micro serve listens on ${path}`, {
      phase: "serve",
      hint: "stop it first, or serve on another path with --socket",
    });
  }
  sys.unlinkat(dirFd, cstr(name), 0);
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
