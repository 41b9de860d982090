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
import type { Sys } from "./sys/mod.ts";
import { now, span } from "./trace.ts";

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
  /** The container's id (64 hex digits): commands find a container by it or a prefix. */
  containerId?: string;
  /** What `micro exec` repeats of the command's process (core/exec/record.ts). */
  exec?: ExecRecord;
}

export function stateRoot(uid: number): string {
  if (uid === 0) return "/run/micro";
  const xdg = Deno.env.get("XDG_RUNTIME_DIR");
  // Not /tmp/micro-<uid>: the launcher may keep its cache there.
  return xdg ? `${xdg}/micro` : `/tmp/micro-state-${uid}`;
}

/**
 * Why the state root cannot be trusted, if it cannot: state.json names paths micro
 * removes and processes it kills, so only a directory of the caller's that nobody else
 * may write (and not a symlink, in a shared /tmp) is used.
 */
export function untrustedRoot(root: string, uid: number): string | undefined {
  let st: Deno.FileInfo;
  try {
    st = Deno.lstatSync(root);
  } catch {
    return undefined; // not there yet: created below, ours
  }
  if (st.isSymlink || !st.isDirectory) return `${root} is not a directory`;
  if (st.uid !== uid) return `${root} belongs to uid ${st.uid}, not to you (${uid})`;
  if ((st.mode ?? 0) & 0o022) return `${root} may be written by others`;
  return undefined;
}

/**
 * The error for a state root micro will not use: what is wrong, that the refusal is on
 * purpose (whoever controls the directory could make micro kill processes and remove
 * files), and the way out. Rootless, another user can squat `/tmp/micro-state-UID`.
 */
export function untrustedRootError(root: string, uid: number, why: string): MicroError {
  const yours = why.endsWith("written by others");
  const fix = yours
    ? `chmod go-w ${root}`
    : uid === 0
    ? `remove ${root}; micro makes it again`
    : `set XDG_RUNTIME_DIR to a private directory of yours, or have root remove ${root}`;
  return new MicroError(
    `state root: ${why}: refused on purpose, since whoever controls it could make micro ` +
      `kill processes and remove files`,
    { hint: fix },
  );
}

/** Field 22 of /proc/PID/stat, or -1 when the process is gone. */
export function processStartTime(pid: number): number {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return Number(rest[19]);
  } catch {
    return -1;
  }
}

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

export function readState(dir: string): RunState | null {
  try {
    return JSON.parse(Deno.readTextFileSync(`${dir}/state.json`)) as RunState;
  } catch {
    return null;
  }
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

export function isAlive(pid: number | undefined, start: number | undefined): boolean {
  if (!pid) return false;
  const now = processStartTime(pid);
  return now >= 0 && now === start;
}

/**
 * Removes what a run created, in reverse: its cgroups, its use of the image (the last
 * user removes the mount points runs made there, each resolved inside the image;
 * directories only when empty), then its state dir. `sys` is opened only when there is an
 * image to leave. Safe to call twice.
 */
export function removeRun(dir: string, state: RunState | null, sys: () => Sys): void {
  if (state?.cgroups?.length) removeRecorded(state.cgroups);
  if (state?.imageId) releaseImage(dir.slice(0, dir.lastIndexOf("/")), state.imageId, sys());
  if (state?.containerDir) removeContainerDir(state.containerDir);
  try {
    Deno.removeSync(dir, { recursive: true });
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
}

/**
 * Cleans the state of runs whose micro process is gone (killed with SIGKILL, say). A live
 * container of a dead micro is killed first; its mounts lived only in its namespace.
 */
export function gc(
  root: string,
  uid: number,
  kill: (pid: number) => void,
  sys: () => Sys,
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
    const state = readState(dir);
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
    if (state && isAlive(state.containerPid, state.containerStartTime)) {
      kill(state.containerPid!);
    }
    removeRun(dir, state, sys);
    cleaned.push(e.name);
  }
  return cleaned;
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
 * it runs the CNI plugins) before gc; with the container's init when it still runs.
 */
export function deadNetworkRuns(
  root: string,
  uid: number,
): { dir: string; containerPid?: number }[] {
  if (untrustedRoot(root, uid)) return [];
  let entries: Deno.DirEntry[];
  try {
    entries = [...Deno.readDirSync(root)];
  } catch {
    return [];
  }
  const out: { dir: string; containerPid?: number }[] = [];
  for (const e of entries) {
    if (!e.isDirectory || e.name.startsWith(".")) continue;
    const dir = `${root}/${e.name}`;
    if (!hasNetworkRecord(dir)) continue;
    const state = readState(dir);
    if (state && isAlive(state.pid, state.startTime)) continue;
    const live = state && isAlive(state.containerPid, state.containerStartTime);
    out.push(live ? { dir, containerPid: state!.containerPid } : { dir });
  }
  return out;
}
