/**
 * The state root and the liveness of the runs in it: what every command's sweep reads first
 * (commands/_gc.ts). Small and with no heavy imports, so a command finds out that nothing
 * needs cleaning without loading core/state.ts and the cleanup code behind it.
 */
import { MicroError } from "./errors.ts";
import type { RunState } from "./state.ts";
import { hasPendingRestarts } from "./supervisor/pending.ts";
import { DT_DIR, listDirAt, MiB, readQuiet, statAt, typeAt } from "./files.ts";
import { openLibc } from "./sys/libc.ts";
import { C, type Sys } from "./sys/mod.ts";

export function stateRoot(uid: number): string {
  // Another state root (tests, a second instance): checked like any other (untrustedRoot).
  const own = Deno.env.get("MICRO_STATE_ROOT");
  if (own && own.startsWith("/")) return own;
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
export function untrustedRoot(root: string, uid: number, sys = openLibc()): string | undefined {
  const st = statAt(sys, root, false);
  if (typeof st === "number") return undefined; // not there yet: created below, ours
  if ((st.mode & C.S_IFMT) !== C.S_IFDIR) return `${root} is not a directory`;
  if (st.uid !== uid) return `${root} belongs to uid ${st.uid}, not to you (${uid})`;
  if (st.mode & 0o022) return `${root} may be written by others`;
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

/**
 * /proc/PID/stat's fields after the command name (which may hold spaces and parentheses):
 * index k is field k + 3 (the state first).
 */
export function statFields(stat: string): string[] {
  return stat.slice(stat.lastIndexOf(")") + 2).split(" ");
}

/**
 * Field 22 of /proc/PID/stat, or -1 when the process is gone: a zombie is gone too (its
 * parent may be slow to reap it: a killed supervisor's parent is init).
 */
export function processStartTime(pid: number): number {
  const stat = readQuiet(openLibc(), `/proc/${pid}/stat`);
  if (stat === null) return -1;
  const rest = statFields(stat);
  if (rest[0] === "Z" || rest[0] === "X") return -1;
  return Number(rest[19]);
}

export function isAlive(pid: number | undefined, start: number | undefined): boolean {
  if (!pid) return false;
  const now = processStartTime(pid);
  return now >= 0 && now === start;
}

export function readState(dir: string): RunState | null {
  // It holds the command's environment, which may be large: 64 MiB is generous, and bounded.
  const text = readQuiet(openLibc(), `${dir}/state.json`, 64 * MiB);
  try {
    return text === null ? null : JSON.parse(text) as RunState;
  } catch {
    return null;
  }
}

/**
 * Whether the sweep (core/state.ts gc, deadNetworkRuns, unsupervised) has nothing to do:
 * every run dir has a state whose micro (or supervisor) is alive, and no restart is noted.
 * Each of those skips exactly such runs (and a root micro will not use); anything else (a
 * dead pid, a dir without a state yet) is left to the full sweep to decide.
 */
export function nothingToSweep(root: string, uid: number): boolean {
  if (untrustedRoot(root, uid)) return true; // the sweep leaves it; the run refuses it
  const dirs = dirsIn(openLibc(), root);
  if (dirs === null) return true; // no state root: no runs
  for (const name of dirs) {
    if (name.startsWith(".")) continue;
    const state = readState(`${root}/${name}`);
    if (!state || !isAlive(state.pid, state.startTime)) return false;
  }
  const supervised = dirs.includes(".supervisor");
  // Restarts are noted under .supervisor only (core/supervisor/pending.ts): where none was
  // ever noted, not looked for (a Deno call that fails costs the process's first error,
  // about 1 ms, measured).
  return !supervised || !hasPendingRestarts(root);
}

/**
 * The state root's run directories (run ids never start with a dot; `.images` holds the
 * images' shared records), or null when the root is not micro's to trust (the run itself
 * refuses it, loudly) or cannot be listed.
 */
export function runDirs(root: string, uid: number): string[] | null {
  if (untrustedRoot(root, uid)) return null;
  return dirsIn(openLibc(), root)?.filter((name) => !name.startsWith(".")) ?? null;
}

/** The names of the directories in `dir` (links are not), or null when it cannot be listed. */
function dirsIn(sys: Sys, dir: string): string[] | null {
  const entries = listDirAt(sys, dir);
  if (typeof entries === "number") return null;
  return entries.filter((e) => (e.type || typeAt(sys, `${dir}/${e.name}`, false) >> 12) === DT_DIR // DT_UNKNOWN: a stat
  ).map((e) => e.name);
}
