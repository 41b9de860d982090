/**
 * A running container, found through the state root (core/state.ts) by its name, its full
 * id or a unique prefix of it, as Docker's commands take it; and its init opened as a
 * pidfd that is checked to be that very process (pid plus start time).
 */
import { MicroError } from "../errors.ts";
import {
  isAlive,
  processStartTime,
  readState,
  READY_MARKER,
  type RunState,
  stateRoot,
  untrustedRoot,
  untrustedRootError,
  withContainerLock,
} from "../state.ts";
import { C, cstr, type Sys } from "../sys/mod.ts";
import { isContainerName, noSuchContainer, resolveRef } from "../store/resolve.ts";

export interface Found {
  /** The name typed, or the name the id led to. */
  name: string;
  dir: string;
  state: RunState;
}

/**
 * A container's run in the state root by NAME, ID or a unique ID prefix, resolved as every
 * command resolves one (core/store/resolve.ts); one-line errors otherwise.
 */
export function findContainer(ref: string, uid: number, root = stateRoot(uid)): Found {
  const bad = untrustedRoot(root, uid);
  if (bad) throw untrustedRootError(root, uid, bad);
  const at = (name: string): Found | null => {
    const state = readState(`${root}/${name}`);
    return state ? { name, dir: `${root}/${name}`, state } : null;
  };
  const all = () => {
    let entries: Deno.DirEntry[];
    try {
      entries = [...Deno.readDirSync(root)];
    } catch {
      return [];
    }
    return entries.flatMap((e) => {
      if (!e.isDirectory || !isContainerName(e.name)) return [];
      const found = at(e.name);
      const id = found?.state.containerId;
      return found && id ? [{ id, name: e.name, value: found }] : [];
    });
  };
  return resolveRef(ref, {
    byId: (id) => all().find((c) => c.id === id)?.value ?? null,
    byName: at,
    all,
  });
}

/** As findContainer, and its init must still run (same pid, same start time). */
export function findRunning(ref: string, uid: number, root = stateRoot(uid)): Found {
  const found = findContainer(ref, uid, root);
  const st = found.state;
  if (!isAlive(st.containerPid, st.containerStartTime)) throw notRunning(ref);
  return found;
}

function notRunning(ref: string): MicroError {
  return new MicroError(`container "${ref}" is not running`, {
    hint: "start it first, or see micro ps -a",
  });
}

/**
 * `fn` on the running container `ref`, holding the container's lock (core/state.ts
 * withContainerLock, the one `rm`, `stop`, `kill`, `start` and `restart` hold): the
 * container is found again once the lock is held, so one that an `rm` removed or a `stop`
 * ended meanwhile is a one-line error, and nothing of theirs interleaves with `fn`.
 */
export async function withRunning<T>(
  ref: string,
  uid: number,
  sys: Sys,
  fn: (found: Found) => Promise<T>,
  root = stateRoot(uid),
  waitMs?: number,
): Promise<T> {
  const first = findRunning(ref, uid, root);
  const record = first.state.record;
  // A run without a record (a micro before records) has no lock to take.
  if (!record) return await fn(first);
  return await withContainerLock(record, ref, sys, async (gone) => {
    if (gone) throw noSuchContainer(ref);
    const now = readState(first.dir);
    if (!now || now.containerId !== first.state.containerId) throw noSuchContainer(ref);
    if (!isAlive(now.containerPid, now.containerStartTime)) throw notRunning(ref);
    return await fn({ ...first, state: now });
  }, waitMs);
}

/**
 * Waits until the run `found` has made its container's root. Its init is recorded (and
 * alive) from its clone on, but until its pivot_root its mount namespace shows the host's
 * tree: an exec joining it then would run a host binary with the host's /etc/passwd. The
 * run creates READY_MARKER in its state directory at that point; a run whose state does
 * not promise the marker (a micro before it) is taken as it is.
 */
export async function waitReady(
  found: Found,
  sys: Sys,
  waitMs = 10_000,
  /** A stop asked for (a signal): the wait ends, and the caller's next check stops it. */
  stopped = () => false,
): Promise<void> {
  if (!found.state.readyMarker) return;
  const path = cstr(`${found.dir}/${READY_MARKER}`);
  const deadline = Date.now() + waitMs;
  for (;;) {
    const fd = sys.open(path, C.O_PATH | C.O_NOFOLLOW | C.O_CLOEXEC, 0);
    if (fd >= 0) {
      sys.close(fd);
      return;
    }
    if (!isAlive(found.state.containerPid, found.state.containerStartTime)) {
      throw notRunning(found.name);
    }
    if (stopped()) return;
    if (Date.now() > deadline) {
      throw new MicroError(`container "${found.name}" is still starting after ${waitMs / 1000} s`, {
        hint: "try again once its command runs (micro ps shows it)",
      });
    }
    await new Promise((r) => setTimeout(r, 5));
  }
}

/**
 * The container's init as a pidfd; its start time is checked once the pidfd exists, so the
 * fd names that very process and not a later one that got its pid.
 */
export function openInit(found: Found, sys: Sys): number {
  const { containerPid: pid, containerStartTime: start } = found.state;
  const gone = () =>
    new MicroError(`container "${found.name}" is not running`, {
      hint: "start it first, or see micro ps -a",
    });
  if (!pid) throw gone();
  const fd = sys.pidfdOpen(pid, 0);
  if (fd === -3) throw gone(); // ESRCH
  if (fd < 0) {
    throw new MicroError("", {
      phase: "prepare",
      plugin: "exec",
      op: "pidfd_open",
      paths: { container: found.name, pid: String(pid) },
      errno: -fd,
      hint: fd === -38 ? "micro exec needs Linux 5.8+ (pidfd_open, setns with a pidfd)" : undefined,
    });
  }
  if (processStartTime(pid) !== start) {
    sys.close(fd);
    throw gone();
  }
  return fd;
}
