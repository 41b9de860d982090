/**
 * Whether a kept container is still running, and stopping it: a record says "running"
 * until its micro writes the end, so a killed micro leaves it saying so. The truth is in
 * the state root (DESIGN.md §7): the run's state dir, with micro's pid and start time, and
 * those processes alive. Only a state root micro trusts names processes to kill.
 */
import { processStartTime, readState, untrustedRoot, untrustedRootError } from "../stateroot.ts";
import type { RunState } from "../state.ts";
import type { ContainerRecord } from "./containers.ts";
import { isPaused, thawKilled } from "../stats/mod.ts";

export interface Status {
  state: "created" | "running" | "exited";
  /** null: micro was killed before it could record one. */
  exitCode: number | null;
  /** When it exited, if known. */
  finishedAt?: string;
  /** Running, but frozen by `micro pause`. */
  paused?: boolean;
}

function alive(pid: number | undefined, start: number | undefined): boolean {
  return !!pid && start !== undefined && processStartTime(pid) === start;
}

/** The run's state, when its micro is the one the record names and is still alive. */
export function liveRun(rec: ContainerRecord, stateRoot: string): RunState | null {
  if (rec.state === "exited") return null;
  if (!/^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/.test(rec.runId ?? "")) return null;
  const st = readState(`${stateRoot}/${rec.runId}`);
  if (!st || st.pid !== rec.pid || st.startTime !== rec.startTime) return null;
  // A detached container lives on while no supervisor runs (the next one takes it over).
  if (st.detached && alive(st.containerPid, st.containerStartTime)) return st;
  return alive(st.pid, st.startTime) ? st : null;
}

export function statusOf(rec: ContainerRecord, stateRoot: string): Status {
  if (rec.state === "exited") {
    return { state: "exited", exitCode: rec.exitCode ?? null, finishedAt: rec.finishedAt };
  }
  const live = liveRun(rec, stateRoot);
  if (live) {
    const found = { name: rec.runId, dir: `${stateRoot}/${rec.runId}`, state: live };
    return isPaused(found)
      ? { state: rec.state, exitCode: null, paused: true }
      : { state: rec.state, exitCode: null };
  }
  // A start that failed keeps "created" with the code micro returned, as Docker does.
  if (rec.state === "created" && rec.exitCode !== undefined) {
    return { state: "created", exitCode: rec.exitCode, finishedAt: rec.finishedAt };
  }
  return { state: "exited", exitCode: null };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function waitGone(pid: number, start: number, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (!alive(pid, start)) return true;
    await sleep(20);
  }
  return !alive(pid, start);
}

/**
 * Stops a running container for `rm -f`, as Docker does with SIGKILL: its init is killed
 * and its micro cleans up and records the exit. A micro that does not end in time (or a
 * run with no init yet) is killed too; the caller's gc then cleans what it left.
 */
export async function killContainer(
  rec: ContainerRecord,
  stateRoot: string,
  uid: number,
  /** SIGKILL to a pid, with the start time it was recorded with (kill it only if still so). */
  kill: (pid: number, start?: number) => void,
): Promise<void> {
  const st = liveRun(rec, stateRoot);
  if (!st) return;
  const bad = untrustedRoot(stateRoot, uid);
  if (bad) throw untrustedRootError(stateRoot, uid, bad);
  if (alive(st.containerPid, st.containerStartTime)) {
    kill(st.containerPid!, st.containerStartTime);
    thawKilled(st);
    if (await waitGone(st.pid, st.startTime, 10_000)) return;
  }
  if (alive(st.pid, st.startTime)) kill(st.pid, st.startTime);
  await waitGone(st.pid, st.startTime, 5_000);
}
