/**
 * What `micro exec` needs of a running container that its state alone does not show: the
 * ops that made its command's process (cgroups joined, user, groups, rlimits, capabilities,
 * no_new_privs, LSM label, Landlock, the compiled seccomp program, cwd and environment).
 * The run writes them into its state once (core/run.ts); exec repeats them, so an exec'd
 * process never holds more than the container's command.
 */
import type { Op } from "../ops.ts";

export interface ExecRecord {
  /** In plan order: attach's cgroup-join, credentials, restrict, and exec's chdir/execve. */
  ops: Op[];
}

/** The kinds exec repeats, by phase; everything else made the container, not its process. */
const KEPT: Record<string, readonly string[]> = {
  attach: ["cgroup-join"],
  identity: ["session-keyring"],
  credentials: [
    "setgroups",
    "setresgid",
    "setresuid",
    "setrlimit",
    "umask",
    "personality",
    "ioprio",
    "sched-setattr",
    "mempolicy",
    "stdio-owner",
    "seccomp",
  ],
  restrict: ["capabilities", "no-new-privs", "lsm-label", "landlock", "seccomp"],
  exec: ["chdir", "execve"],
};

/** The run's plan → what its state keeps for `micro exec`. */
export function execRecord(plan: Op[]): ExecRecord {
  return { ops: plan.filter((o) => KEPT[o.phase]?.includes(o.kind)) };
}
