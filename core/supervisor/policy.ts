/**
 * Docker's restart policies (`--restart no|on-failure[:N]|always|unless-stopped`) and its
 * back-off: the delay before a restart starts at 100 ms and doubles with each restart, and
 * is back to 100 ms once a container ran 10 seconds.
 */
import { MicroError } from "../errors.ts";
import type { ContainerRecord } from "../store/containers.ts";

export interface RestartPolicy {
  name: "no" | "on-failure" | "always" | "unless-stopped";
  /** on-failure:N: at most N restarts (0: no limit). */
  max: number;
}

export const BACKOFF_START_MS = 100;
export const BACKOFF_MAX_MS = 60_000;
/** A container that ran this long resets the back-off. */
export const RESET_AFTER_MS = 10_000;

export function parseRestart(text: string): RestartPolicy {
  const m = /^(no|always|unless-stopped|on-failure)(?::(\d+))?$/.exec(text);
  if (!m || (m[2] !== undefined && m[1] !== "on-failure")) {
    throw new MicroError(`option "--restart ${text}": not a restart policy`, {
      hint: "give no, on-failure[:N], always or unless-stopped",
    });
  }
  return { name: m[1] as RestartPolicy["name"], max: m[2] === undefined ? 0 : Number(m[2]) };
}

/** Restart state kept in the container's record. */
export interface RestartRecord {
  /** Restarts so far (Docker's RestartCount). */
  restartCount?: number;
  /** Restarts since the back-off was last reset. */
  backoff?: number;
}

/** Whether a container that ended with `exitCode` (null: unknown) is started again. */
export function shouldRestart(
  policy: RestartPolicy,
  exitCode: number | null,
  rec: ContainerRecord & RestartRecord,
): boolean {
  switch (policy.name) {
    case "no":
      return false;
    case "always":
    case "unless-stopped":
      return true;
    case "on-failure":
      if (exitCode === 0) return false;
      return policy.max === 0 || (rec.restartCount ?? 0) < policy.max;
  }
}

/**
 * The delay before the next restart, and the record's back-off moved on (the caller writes
 * it): 100 ms doubling, reset after a run of 10 s or more.
 */
export function nextDelay(rec: ContainerRecord & RestartRecord): number {
  const ran = rec.startedAt && rec.finishedAt
    ? Date.parse(rec.finishedAt) - Date.parse(rec.startedAt)
    : 0;
  if (ran >= RESET_AFTER_MS) rec.backoff = 0;
  const n = rec.backoff ?? 0;
  rec.backoff = n + 1;
  return Math.min(BACKOFF_START_MS * 2 ** n, BACKOFF_MAX_MS);
}
