/**
 * Restarts waiting for their back-off, written down in the state root
 * (`.supervisor/restarts/<run id>`, the supervisor's private directory), so no single failure
 * loses one: a supervisor killed during a back-off, or a detached container that ended while
 * no supervisor ran (gc records its end), leaves a note the next supervisor starts it from.
 * Kept in memory only, a crashed `always` container stayed down until `micro boot`.
 */
import { readRegularFile } from "../files.ts";
import type { Sys } from "../sys/mod.ts";

/** One restart to do: the container (its record, checked by id) and when. */
export interface PendingRestart {
  recordDir: string;
  id: string;
  /** Epoch ms: the end of its back-off. */
  due: number;
}

/** A note is micro's own, a few hundred bytes: anything larger is not one. */
const MAX_NOTE = 64 * 1024;

function dirOf(stateRoot: string): string {
  return `${stateRoot}/.supervisor/restarts`;
}

/** Notes the restart of run `runId` (atomically: written aside, then renamed). */
export function markRestart(stateRoot: string, runId: string, p: PendingRestart): void {
  const dir = dirOf(stateRoot);
  Deno.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const tmp = `${dir}/.${runId}.tmp`;
  Deno.writeTextFileSync(tmp, JSON.stringify(p), { mode: 0o600 });
  Deno.renameSync(tmp, `${dir}/${runId}`);
}

/** The restart of `runId` is done or cancelled. */
export function clearRestart(stateRoot: string, runId: string): void {
  try {
    Deno.removeSync(`${dirOf(stateRoot)}/${runId}`);
  } catch { /* none */ }
}

/** Whether any restart is noted (cheap: for every command's gc, which then asks for it). */
export function hasPendingRestarts(stateRoot: string): boolean {
  try {
    for (const e of Deno.readDirSync(dirOf(stateRoot))) if (!e.name.startsWith(".")) return true;
  } catch { /* none */ }
  return false;
}

/**
 * Every noted restart, by run id; a note that is not one (not a regular file, too large, not
 * this JSON) is removed.
 */
export function pendingRestarts(sys: Sys, stateRoot: string): [string, PendingRestart][] {
  const dir = dirOf(stateRoot);
  let names: string[];
  try {
    names = [...Deno.readDirSync(dir)].map((e) => e.name).filter((n) => !n.startsWith("."));
  } catch {
    return [];
  }
  const out: [string, PendingRestart][] = [];
  for (const runId of names) {
    try {
      const p = JSON.parse(readRegularFile(sys, `${dir}/${runId}`, MAX_NOTE));
      if (
        typeof p?.recordDir !== "string" || typeof p?.id !== "string" ||
        typeof p?.due !== "number"
      ) throw new Error("not a note");
      out.push([runId, { recordDir: p.recordDir, id: p.id, due: p.due }]);
    } catch {
      clearRestart(stateRoot, runId);
    }
  }
  return out;
}
