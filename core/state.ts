/**
 * Run state (DESIGN.md §7). Each run owns `<root>/<id>/` with `state.json`, written
 * atomically and before anything it lists is created, so a later micro command can clean
 * up after a run that was killed halfway (`gc`).
 */
import { type RecordedCgroup, removeRecorded } from "./cgroups/fs.ts";

export interface RunState {
  id: string;
  /** micro's own pid and its start time (clock ticks since boot), so pid reuse is noticed. */
  pid: number;
  startTime: number;
  /** The container's init, once cloned. */
  containerPid?: number;
  containerStartTime?: number;
  image: string | null;
  /** Host directories the run created inside the image as mount points, parent first. */
  createdDirs: string[];
  /** Cgroup directories, recorded before each is created, in creation order. */
  cgroups?: RecordedCgroup[];
  created: string;
}

export function stateRoot(uid: number): string {
  if (uid === 0) return "/run/micro";
  const xdg = Deno.env.get("XDG_RUNTIME_DIR");
  return xdg ? `${xdg}/micro` : `/tmp/micro-${uid}`;
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
  const tmp = `${dir}/.state.json.tmp`;
  Deno.writeTextFileSync(tmp, JSON.stringify(state, null, 2) + "\n");
  Deno.renameSync(tmp, `${dir}/state.json`);
}

export function readState(dir: string): RunState | null {
  try {
    return JSON.parse(Deno.readTextFileSync(`${dir}/state.json`)) as RunState;
  } catch {
    return null;
  }
}

/** Creates the state root (0711: the container's root must traverse it) and a run dir. */
export function createRunDir(root: string, id: string): string {
  Deno.mkdirSync(root, { recursive: true, mode: 0o711 });
  const dir = `${root}/${id}`;
  Deno.mkdirSync(dir, { mode: 0o711 });
  Deno.chmodSync(dir, 0o711);
  return dir;
}

function isAlive(pid: number | undefined, start: number | undefined): boolean {
  if (!pid) return false;
  const now = processStartTime(pid);
  return now >= 0 && now === start;
}

/**
 * Removes what a run created, in reverse: mount-point dirs it made in the image (only when
 * still empty), its staging root, then its state dir. Safe to call twice.
 */
export function removeRun(dir: string, state: RunState | null): void {
  if (state?.cgroups?.length) removeRecorded(state.cgroups);
  for (const d of [...(state?.createdDirs ?? [])].reverse()) {
    try {
      Deno.removeSync(d);
    } catch { /* not empty or already gone: leave it */ }
  }
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
export function gc(root: string, kill: (pid: number) => void): string[] {
  const cleaned: string[] = [];
  let entries: Deno.DirEntry[];
  try {
    entries = [...Deno.readDirSync(root)];
  } catch {
    return cleaned;
  }
  for (const e of entries) {
    if (!e.isDirectory) continue;
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
    if (state && isAlive(state.containerPid, state.containerStartTime)) {
      kill(state.containerPid!);
    }
    removeRun(dir, state);
    cleaned.push(e.name);
  }
  return cleaned;
}
