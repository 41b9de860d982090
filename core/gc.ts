/**
 * gc (DESIGN.md §7): what runs whose micro was killed left, cleaned by the next command that
 * finds it (commands/_gc.ts, which loads this module only then: a run whose state root
 * holds no dead run loads none of it).
 */
import { isoTime } from "./clock.ts";
import { firstLine, warnCleanup } from "./errors.ts";
import { stopLeftHelper } from "./usernet/record.ts";
import type { Sys } from "./sys/mod.ts";
import { C, cstr } from "./sys/mod.ts";
import { readRecord, writeRecord } from "./store/containers.ts";
import { hasPendingRestarts, markRestart } from "./supervisor/pending.ts";
import { nextDelay, type RestartPolicy, shouldRestart } from "./supervisor/policy.ts";
import { isAlive, readState, runDirs } from "./stateroot.ts";
import { removeRun, RUN_LOCK, type RunState } from "./state.ts";

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
  warn: (message: string) => void = warnCleanup,
  remove: typeof removeRun = removeRun,
): string[] {
  const cleaned: string[] = [];
  for (const name of runDirs(root, uid) ?? []) {
    const dir = `${root}/${name}`;
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
        if (state.record) detachedEnded(root, name, state);
      }
      // A rootless network's helper (pasta daemonizes) outlives a killed micro.
      stopLeftHelper(dir, sys);
      remove(dir, state, sys);
      cleaned.push(name);
    } catch (err) {
      warn(`${dir}: ${firstLine(err)}; left for the next gc`);
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
  rec.finishedAt = isoTime();
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
  const out: { dir: string; containerPid?: number; lock?: number }[] = [];
  for (const name of runDirs(root, uid) ?? []) {
    const dir = `${root}/${name}`;
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
  const names = runDirs(root, uid);
  if (names === null) return false;
  for (const name of names) {
    const state = readState(`${root}/${name}`);
    if (!state?.detached || isAlive(state.pid, state.startTime)) continue;
    if (isAlive(state.containerPid, state.containerStartTime)) return true;
  }
  // Restarts noted for a supervisor (its own killed during a back-off, or gc's).
  return hasPendingRestarts(root);
}
