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
  type RunState,
  stateRoot,
  untrustedRoot,
  untrustedRootError,
} from "../state.ts";
import type { Sys } from "../sys/mod.ts";

export interface Found {
  /** The name typed, or the name the id led to. */
  name: string;
  dir: string;
  state: RunState;
}

/** A container's state by NAME, ID or a unique ID prefix; one-line errors otherwise. */
export function findContainer(ref: string, uid: number, root = stateRoot(uid)): Found {
  const bad = untrustedRoot(root, uid);
  if (bad) throw untrustedRootError(root, uid, bad);
  const missing = () =>
    new MicroError(`no such container: "${ref}"`, {
      hint: "see the running ones with micro ps",
    });
  if (!ref || ref.includes("/") || ref.startsWith(".")) throw missing();
  const named = readState(`${root}/${ref}`);
  if (named) return { name: ref, dir: `${root}/${ref}`, state: named };
  let entries: Deno.DirEntry[];
  try {
    entries = [...Deno.readDirSync(root)];
  } catch {
    throw missing();
  }
  const hits: Found[] = [];
  // An id is hex; a prefix of one name's id must not pick another's by accident.
  if (/^[0-9a-f]+$/.test(ref)) {
    for (const e of entries) {
      if (!e.isDirectory || e.name.startsWith(".")) continue;
      const st = readState(`${root}/${e.name}`);
      if (st?.containerId?.startsWith(ref)) {
        hits.push({ name: e.name, dir: `${root}/${e.name}`, state: st });
      }
    }
  }
  if (hits.length === 1) return hits[0];
  if (hits.length > 1) {
    throw new MicroError(`"${ref}" is a prefix of ${hits.length} containers' ids`, {
      hint: `give more of the id, or the name (${hits.map((h) => h.name).join(", ")})`,
    });
  }
  throw missing();
}

/** As findContainer, and its init must still run (same pid, same start time). */
export function findRunning(ref: string, uid: number, root = stateRoot(uid)): Found {
  const found = findContainer(ref, uid, root);
  const st = found.state;
  if (!isAlive(st.containerPid, st.containerStartTime)) {
    throw new MicroError(`container "${ref}" is not running`, {
      hint: "start it first, or see micro ps -a",
    });
  }
  return found;
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
