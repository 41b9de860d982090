/**
 * Run state (DESIGN.md §7). Each run owns `<root>/<id>/` with `state.json`, written
 * atomically and before anything it lists is created, so a later micro command can clean
 * up after a run that was killed halfway (`gc`).
 */
import { stopLeftHelper } from "./usernet/record.ts";
import { type RecordedCgroup, removeRecorded } from "./cgroups/fs.ts";
import { type ImageId, releaseImage } from "./engine/image.ts";
import type { ExecRecord } from "./exec/record.ts";
import { MicroError } from "./errors.ts";
import { readRecord, removeContainerDir, writeRecord } from "./store/containers.ts";
import { C, cstr, type Sys } from "./sys/mod.ts";
import { openLibc } from "./sys/libc.ts";
import { now, span } from "./trace.ts";
import { hasPendingRestarts, markRestart } from "./supervisor/pending.ts";
import { nextDelay, type RestartPolicy, shouldRestart } from "./supervisor/policy.ts";
import {
  isAlive,
  processStartTime,
  readState,
  untrustedRoot,
  untrustedRootError,
} from "./stateroot.ts";

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
  const b = crypto.getRandomValues(new Uint8Array(6));
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

export function writeState(dir: string, state: RunState): void {
  const t = now();
  const tmp = `${dir}/.state.json.tmp`;
  // Owner only: it holds the command's environment (for micro exec), which may hold secrets.
  Deno.writeTextFileSync(tmp, JSON.stringify(state, null, 2) + "\n", { mode: 0o600 });
  Deno.renameSync(tmp, `${dir}/state.json`);
  span("state write", t);
}

/**
 * Creates the state root (0711: the container's root must traverse it) and a run dir.
 * The root is checked before (so nothing is made through a link) and again after it
 * exists: another user may create it between the first look and the mkdir.
 */
export function createRunDir(root: string, id: string, uid: number): string {
  let bad = untrustedRoot(root, uid);
  if (bad) throw untrustedRootError(root, uid, bad);
  // root: 0711 so the container's root user can reach its staging dir; rootless: 0700.
  Deno.mkdirSync(root, { recursive: true, mode: uid === 0 ? 0o711 : 0o700 });
  bad = untrustedRoot(root, uid);
  if (bad) throw untrustedRootError(root, uid, bad);
  const dir = `${root}/${id}`;
  Deno.mkdirSync(dir, { mode: 0o711 });
  Deno.chmodSync(dir, 0o711);
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
export function removeRun(dir: string, state: RunState | null, sys: () => Sys): void {
  if (state?.cgroups?.length) {
    // A cgroup of the run's own that stays keeps the state that records it: without the
    // record nothing would ever remove it (the next gc tries again).
    const left = removeRecorded(state.cgroups, sys);
    if (left.length) throw new Error(`cgroup ${left[0]}; the run's state is kept`);
  }
  if (state?.imageId) releaseImage(dir.slice(0, dir.lastIndexOf("/")), state.imageId, sys());
  if (state?.containerDir) removeContainerDir(state.containerDir, sys());
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

/**
 * gc's side of the run's lock: the fd holding it (this process now owns the run's cleanup),
 * "busy" when its micro (or another gc) holds it or it went meanwhile, or "none" when the
 * run has no lock file (a run dir a moment old, or a micro before the lock).
 */
function tryLockRun(dir: string, getSys: () => Sys): number | "busy" | "none" {
  const path = `${dir}/${RUN_LOCK}`;
  try {
    Deno.lstatSync(path); // no libc for runs without one (the open below decides)
  } catch {
    return "none";
  }
  const sys = getSys();
  const name = cstr(path);
  const fd = sys.open(name, C.O_RDONLY | C.O_NOFOLLOW | C.O_CLOEXEC, 0);
  if (fd === -2) return "none"; // ENOENT
  if (fd < 0) return "busy"; // not a file micro made: left alone
  if (sys.flock(fd, C.LOCK_EX | C.LOCK_NB) < 0) {
    sys.close(fd);
    return "busy";
  }
  // Still the file at that name: a holder that finished removes the run dir, lock included.
  const held = new Float64Array(2);
  const now = new Float64Array(2);
  const again = sys.open(name, C.O_PATH | C.O_NOFOLLOW | C.O_CLOEXEC, 0);
  const same = again >= 0 && sys.fstatId(fd, held) >= 0 && sys.fstatId(again, now) >= 0 &&
    held[0] === now[0] && held[1] === now[1];
  if (again >= 0) sys.close(again);
  if (!same) {
    sys.close(fd);
    return "busy";
  }
  return fd;
}

/**
 * Cleans the state of runs whose micro process is gone (killed with SIGKILL, say). A live
 * container of a dead micro is killed first; its mounts lived only in its namespace. A
 * run whose cleanup fails is one `warn` line (it stays for the next gc), never an error of
 * the command that happened to run gc.
 */
export function gc(
  root: string,
  uid: number,
  /** SIGKILL to a pid, with the start time it was recorded with (kill it only if still so). */
  kill: (pid: number, start?: number) => void,
  sys: () => Sys,
  warn: (message: string) => void = (m) => console.error(`micro: warning: cleanup: ${m}`),
  remove: typeof removeRun = removeRun,
): string[] {
  const cleaned: string[] = [];
  if (untrustedRoot(root, uid)) return cleaned; // the run itself will refuse it, loudly
  let entries: Deno.DirEntry[];
  try {
    entries = [...Deno.readDirSync(root)];
  } catch {
    return cleaned;
  }
  for (const e of entries) {
    // Run ids never start with a dot; `.images` holds the images' shared records.
    if (!e.isDirectory || e.name.startsWith(".")) continue;
    const dir = `${root}/${e.name}`;
    let state = readState(dir);
    if (state && isAlive(state.pid, state.startTime)) continue;
    if (!state) {
      // A run dir is created a moment before its state.json; skip very young ones.
      try {
        const age = Date.now() - (Deno.statSync(dir).mtime?.getTime() ?? 0);
        if (age < 10_000) continue;
      } catch {
        continue;
      }
    }
    // A CNI record left means DEL has not run (gcNetworks runs first, in the run's own
    // network namespace only): the run stays until a micro there cleans it.
    if (hasNetworkRecord(dir)) continue;
    const lock = tryLockRun(dir, sys);
    if (lock === "busy") continue; // its micro is starting or cleaning up, or another gc is
    try {
      // Read again under the lock: what the run wrote last before it died.
      if (lock !== "none") state = readState(dir);
      if (state && isAlive(state.containerPid, state.containerStartTime)) {
        // A detached container outlives its supervisor: the next one takes it over.
        if (state.detached) continue;
        kill(state.containerPid!, state.containerStartTime);
      }
      if (state?.detached) {
        // Ended while nothing supervised it: what it leaves is cleaned, its end recorded.
        if (state.keeper && isAlive(state.keeper.pid, state.keeper.startTime)) {
          kill(state.keeper.pid, state.keeper.startTime);
        }
        if (state.record) detachedEnded(root, e.name, state);
      }
      // A rootless network's helper (pasta daemonizes) outlives a killed micro.
      stopLeftHelper(dir, sys);
      remove(dir, state, sys);
      cleaned.push(e.name);
    } catch (err) {
      warn(
        `${dir}: ${String((err as Error)?.message ?? err).split("\n")[0]}; left for the next gc`,
      );
    } finally {
      if (lock !== "none") sys().close(lock);
    }
  }
  return cleaned;
}

/**
 * A detached container's record after it ended unseen: exited, its exit code unknown
 * (null), unless a supervisor recorded the end already. Its restart policy counts that as a
 * failure: a restart is noted for the supervisor the caller then starts (core/supervisor/
 * pending.ts), as one that saw the end would have started it.
 */
function detachedEnded(root: string, runId: string, state: RunState): void {
  const recordDir = state.record!;
  const rec = readRecord(recordDir);
  if (!rec || rec.state === "exited" || rec.pid !== state.pid) return;
  rec.state = "exited";
  delete rec.exitCode;
  rec.finishedAt = new Date().toISOString();
  rec.error = "ended while no supervisor ran: its exit code is unknown";
  const policy = (state as RunState & { restart?: RestartPolicy }).restart;
  const again = !rec.rm && policy !== undefined && shouldRestart(policy, null, rec);
  const delay = again ? nextDelay(rec) : 0;
  try {
    writeRecord(recordDir, rec);
    if (again) markRestart(root, runId, { recordDir, id: rec.id, due: Date.now() + delay });
  } catch { /* the store is gone: nothing to record */ }
}

/** The CNI record of a run (core/cni/exec.ts CACHE_FILE): its networks are not yet DELeted. */
function hasNetworkRecord(dir: string): boolean {
  try {
    Deno.lstatSync(`${dir}/cni.json`);
    return true;
  } catch {
    return false;
  }
}

/**
 * Runs whose micro is gone and whose networks are still attached, for gcNetworks (async:
 * it runs the CNI plugins) before gc; with the container's init when it still runs. Each
 * comes with the run's lock when it has one (see lockRun), which the caller closes once
 * DEL is done: a run whose lock is held is not dead, and two gcs never DEL it together.
 */
export function deadNetworkRuns(
  root: string,
  uid: number,
  sys: () => Sys,
): { dir: string; containerPid?: number; lock?: number }[] {
  if (untrustedRoot(root, uid)) return [];
  let entries: Deno.DirEntry[];
  try {
    entries = [...Deno.readDirSync(root)];
  } catch {
    return [];
  }
  const out: { dir: string; containerPid?: number; lock?: number }[] = [];
  for (const e of entries) {
    if (!e.isDirectory || e.name.startsWith(".")) continue;
    const dir = `${root}/${e.name}`;
    if (!hasNetworkRecord(dir)) continue;
    let state = readState(dir);
    if (state && isAlive(state.pid, state.startTime)) continue;
    const lock = tryLockRun(dir, sys);
    if (lock === "busy") continue;
    if (lock !== "none") state = readState(dir);
    const live = state && isAlive(state.containerPid, state.containerStartTime);
    if (live && state!.detached) {
      // The next supervisor takes it over.
      if (lock !== "none") sys().close(lock);
      continue;
    }
    out.push({
      dir,
      ...(live ? { containerPid: state!.containerPid } : {}),
      ...(lock !== "none" ? { lock } : {}),
    });
  }
  return out;
}

/**
 * Whether a detached container runs with no supervisor (it was killed): the next command
 * starts one, which takes it over (core/supervisor/).
 */
export function unsupervised(root: string, uid: number): boolean {
  if (untrustedRoot(root, uid)) return false;
  let entries: Deno.DirEntry[];
  try {
    entries = [...Deno.readDirSync(root)];
  } catch {
    return false;
  }
  for (const e of entries) {
    if (!e.isDirectory || e.name.startsWith(".")) continue;
    const state = readState(`${root}/${e.name}`);
    if (!state?.detached || isAlive(state.pid, state.startTime)) continue;
    if (isAlive(state.containerPid, state.containerStartTime)) return true;
  }
  // Restarts noted for a supervisor (its own killed during a back-off, or gc's).
  return hasPendingRestarts(root);
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
