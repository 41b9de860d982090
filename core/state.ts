/**
 * Run state (DESIGN.md §7). Each run owns `<root>/<id>/` with `state.json`, written
 * atomically and before anything it lists is created, so a later micro command can clean
 * up after a run that was killed halfway (`gc`).
 */
import { type RecordedCgroup, removeRecorded } from "./cgroups/fs.ts";
import { type ImageId, releaseImage } from "./engine/image.ts";
import type { ExecRecord } from "./exec/record.ts";
import { MicroError } from "./errors.ts";
import { removeContainerDir } from "./store/containers.ts";
import { removeTreeAt } from "./store/tmp.ts";
import { FileError, mkdirAt, replaceTextAt } from "./files.ts";
import { C, cstr, randomHex, type Sys } from "./sys/mod.ts";
import { openLibc } from "./sys/libc.ts";
import { now, span } from "./trace.ts";
import { processStartTime, untrustedRoot, untrustedRootError } from "./stateroot.ts";

export {
  isAlive,
  processStartTime,
  readState,
  stateRoot,
  untrustedRoot,
  untrustedRootError,
} from "./stateroot.ts";

export interface RunState {
  id: string;
  /** micro's own pid and its start time (clock ticks since boot), so pid reuse is noticed. */
  pid: number;
  startTime: number;
  /** The container's init, once cloned. */
  containerPid?: number;
  containerStartTime?: number;
  image: string | null;
  /**
   * The image directory the run uses (its identity, checked again before gc touches it):
   * gc leaves it, and the last run to leave it removes the mount points runs made there.
   */
  imageId?: ImageId;
  /** The container's own directory (the overlay's upper and work), recorded before it exists. */
  containerDir?: string;
  /** Cgroup directories, recorded before each is created, in creation order. */
  cgroups?: RecordedCgroup[];
  created: string;
  /**
   * `run -d`: `pid` is the supervisor's once it took the container over; the container
   * outlives it, and gc leaves the run while the container lives (core/supervisor/).
   */
  detached?: boolean;
  /** The container's record directory in its store (`ROOT/containers/<id>`). */
  record?: string;
  /**
   * The process holding the supervisor's ends of the container's stdio: the read ends of its
   * output pipes, the write end of its stdin pipe (-i), its terminal's master (-t). Its fd
   * numbers; -1 (stdout, stderr) or absent where there is none.
   */
  keeper?: {
    pid: number;
    startTime: number;
    stdout: number;
    stderr: number;
    stdin?: number;
    master?: number;
  };
  /** A detached container's stdin is open to `micro attach` (-i). */
  openStdin?: boolean;
  /** The container's id (64 hex digits): commands find a container by it or a prefix. */
  containerId?: string;
  /** What `micro exec` repeats of the command's process (core/exec/record.ts). */
  exec?: ExecRecord;
  /**
   * This run creates READY_MARKER in its directory once the container's init has made its
   * root (pivot_root done, about to exec): before that, the init is cloned and recorded
   * but its mount namespace still shows the host's tree, and `micro exec` waits.
   */
  readyMarker?: boolean;
}

/** The file a run creates in its state directory when its container's root is made. */
export const READY_MARKER = "ready";

export function newId(): string {
  return randomHex(openLibc(), 6);
}

export function writeState(dir: string, state: RunState): void {
  const t = now();
  // Owner only: it holds the command's environment (for micro exec), which may hold secrets.
  replaceTextAt(openLibc(), `${dir}/state.json`, JSON.stringify(state, null, 2) + "\n", 0o600);
  span("state write", t);
}

/**
 * Creates the state root (0711: the container's root must traverse it) and a run dir.
 * The root is checked before (so nothing is made through a link) and again after it
 * exists: another user may create it between the first look and the mkdir.
 */
export function createRunDir(root: string, id: string, uid: number, sys = openLibc()): string {
  let bad = untrustedRoot(root, uid, sys);
  if (bad) throw untrustedRootError(root, uid, bad);
  // root: 0711 so the container's root user can reach its staging dir; rootless: 0700.
  const made = mkdirAt(sys, root, uid === 0 ? 0o711 : 0o700, true);
  if (made < 0 && made !== -17) throw new FileError("create", root, -made);
  bad = untrustedRoot(root, uid, sys);
  if (bad) throw untrustedRootError(root, uid, bad);
  const dir = `${root}/${id}`;
  const rc = mkdirAt(sys, dir, 0o711);
  if (rc < 0) throw new FileError("create", dir, -rc); // EEXIST: a run of this id
  return dir;
}

/**
 * Sends `signal` to `pid` only while it is the process that started at `start`: the pid is
 * opened as a pidfd first and its start time checked after, so a pid the kernel gave to
 * another process since (an unrelated host process) is never signalled. 0, -3 (ESRCH) when
 * that process is gone, or -errno.
 */
export function signalProcess(sys: Sys, pid: number, start: number, signal: number): number {
  if (!pid || pid < 0) return -3;
  const fd = sys.pidfdOpen(pid, 0);
  if (fd < 0) return fd;
  try {
    if (processStartTime(pid) !== start || start < 0) return -3;
    return sys.pidfdSendSignal(fd, signal);
  } finally {
    sys.close(fd);
  }
}

/**
 * SIGKILL for gc and `rm -f`: through a checked pidfd when the start time was recorded, else
 * (a helper found by its command line) by pid.
 */
export function killRecorded(pid: number, start?: number): void {
  if (start !== undefined) {
    signalProcess(openLibc(), pid, start, 9);
    return;
  }
  try {
    Deno.kill(pid, "SIGKILL");
  } catch { /* already gone */ }
}

/**
 * Removes what a run created, in reverse: its cgroups, its use of the image (the last
 * user removes the mount points runs made there, each resolved inside the image;
 * directories only when empty), then its state dir. `sys` is opened only when there is an
 * image to leave. Safe to call twice.
 */
export function removeRun(
  dir: string,
  state: RunState | null,
  sys: () => Sys,
  /** The run's own cleanup, libc bound already: its dir through sys first (gc: Deno's). */
  own = false,
): void {
  if (state?.cgroups?.length) {
    // A cgroup of the run's own that stays keeps the state that records it: without the
    // record nothing would ever remove it (the next gc tries again).
    const left = removeRecorded(state.cgroups, sys);
    if (left.length) throw new Error(`cgroup ${left[0]}; the run's state is kept`);
  }
  if (state?.imageId) releaseImage(dir.slice(0, dir.lastIndexOf("/")), state.imageId, sys());
  if (state?.containerDir) removeContainerDir(state.containerDir, sys());
  // Through sys first (core/files.ts says why); Deno's remover where it stopped.
  if (own && removeTreeAt(sys(), dir) === 0) return;
  try {
    Deno.removeSync(dir, { recursive: true });
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
}

/** The run's lock file in its state dir (see lockRun). */
export const RUN_LOCK = "lock";

/**
 * Takes the run's lock: an flock on `DIR/lock`, held by the run's micro from just after its
 * state dir exists to the end of its cleanup, and let go by the kernel however micro ends.
 * gc cleans only runs whose lock it can take, so a run that is cleaning up is not dead
 * whatever its pid says (a micro in another pid namespace shows another pid), and two gcs
 * never clean one run at once. Returns the fd (O_CLOEXEC: no child inherits it).
 */
export function lockRun(dir: string, sys: Sys): number {
  const path = `${dir}/${RUN_LOCK}`;
  const fd = sys.open(
    cstr(path),
    C.O_RDWR | C.O_CREAT | C.O_EXCL | C.O_NOFOLLOW | C.O_CLOEXEC,
    0o600,
  );
  const rc = fd < 0 ? fd : sys.flock(fd, C.LOCK_EX | C.LOCK_NB);
  if (rc < 0) {
    if (fd >= 0) sys.close(fd);
    throw new MicroError("", {
      phase: "prepare",
      plugin: "engine",
      op: fd < 0 ? "create" : "flock",
      paths: { path },
      errno: -rc,
    });
  }
  return fd;
}

/** How long a command waits for another one working on the same container. */
export const CONTAINER_LOCK_WAIT_MS = 30_000;

/**
 * Holds the exclusive flock of the container's `lock` file (in its directory
 * `ROOT/containers/<id>`, opened once, the fd locked) while `fn` runs: stop, kill, start,
 * restart and rm of one container run one after the other, never interleaved. A command
 * that waited longer than `waitMs` fails with one line saying the container is busy.
 * `fn` gets whether the directory is still there once the lock is held (an rm before it).
 */
export async function withContainerLock<T>(
  dir: string,
  ref: string,
  sys: Sys,
  fn: (gone: boolean) => Promise<T>,
  waitMs = CONTAINER_LOCK_WAIT_MS,
): Promise<T> {
  const path = `${dir}/lock`;
  const fd = sys.open(
    cstr(path),
    C.O_RDWR | C.O_CREAT | C.O_CLOEXEC | C.O_NOFOLLOW,
    0o600,
  );
  if (fd === -2) return await fn(true); // ENOENT: the container's directory is gone
  if (fd < 0) {
    throw new MicroError("", {
      phase: "prepare",
      plugin: "lifecycle",
      op: "open",
      paths: { path },
      errno: -fd,
    });
  }
  try {
    const deadline = Date.now() + waitMs;
    for (;;) {
      const rc = sys.flock(fd, C.LOCK_EX | C.LOCK_NB);
      if (rc === 0) break;
      if (rc !== -11 && rc !== -4) { // EWOULDBLOCK, EINTR
        throw new MicroError("", {
          phase: "prepare",
          plugin: "lifecycle",
          op: "flock",
          paths: { path },
          errno: -rc,
        });
      }
      if (Date.now() >= deadline) {
        throw new MicroError(
          `container ${ref} is busy (another micro command holds its lock): retry`,
        );
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    let gone = false;
    try {
      Deno.lstatSync(`${dir}/config.json`);
    } catch {
      gone = true;
    }
    return await fn(gone);
  } finally {
    sys.close(fd); // releases the lock
  }
}

/** CAP_SYS_PTRACE, bit 19 of a capability set. */
const CAP_SYS_PTRACE = 19n;

/** ptracersIn for the pid namespace `ns` (as its link reads: `pid:[INODE]`). */
export function ptracersInNs(ns: string, proc = "/proc"): number[] {
  const out: number[] = [];
  for (const e of Deno.readDirSync(proc)) {
    if (!/^\d+$/.test(e.name)) continue;
    try {
      if (Deno.readLinkSync(`${proc}/${e.name}/ns/pid`) !== ns) continue;
      const m = /^CapBnd:\s*([0-9a-f]+)$/m.exec(Deno.readTextFileSync(`${proc}/${e.name}/status`));
      if (m && (BigInt(`0x${m[1]}`) >> CAP_SYS_PTRACE) & 1n) out.push(Number(e.name));
    } catch { /* gone meanwhile */ }
  }
  return out.sort((a, b) => a - b);
}
