/**
 * The OCI runtime's `create` (and its `exec`): a first process left waiting on its exec fifo
 * for a caller that reaps it. Only the OCI runtime loads it (a module a run loads costs it in
 * proportion to its size: core/v8.ts).
 */
import { joining } from "../cgroups/warm.ts";
import { CHILD_PHASES, type Op } from "../ops.ts";
import { RunSignals } from "../signals.ts";
import { C, type Sys } from "../sys/mod.ts";
import { loadChildSteps } from "./child.ts";
import {
  cloneFlags,
  type EngineOptions,
  networksOf,
  start,
  startRetrying,
  undoStart,
} from "./mod.ts";
import { ParentOps } from "./parent.ts";

/**
 * OCI `create`: prepares (cgroups), clones and attaches the child, releases it, and returns
 * once it has sent READY and waits on the exec fifo (`opts.execFifo`), with the terminal's
 * master when it made one (the caller's to pass on and close). Nothing of micro
 * stays: no watchdog, no supervision; the caller (conmon, containerd's shim) reaps it. On
 * failure everything made is undone; on success the cgroups stay (`delete` removes them,
 * from the records `onCgroups` gave).
 */
export async function createDetached(
  plan: Op[],
  opts: EngineOptions,
  sys: Sys,
): Promise<{ pid: number; master: number }> {
  if ((opts.execFifo ?? -1) < 0 && !opts.detached) {
    throw new Error("createDetached without an exec fifo or detached");
  }
  const flags = cloneFlags(plan) | C.SIGCHLD;
  const childOps = plan.filter((o) => CHILD_PHASES.includes(o.phase));
  await loadChildSteps(childOps);
  const parent = new ParentOps(plan, sys, { onCreate: opts.onCgroups });
  const network = await networksOf(plan, sys, false);
  const signals = opts.signals ?? new RunSignals();
  let ok = false;
  try {
    joining(); // the launcher's warm-up (core/cgroups/warm.ts), as execute does
    parent.prepare();
    const { pid, ends } = await startRetrying(
      network,
      signals,
      opts,
      () => start(plan, childOps, flags, opts, sys, parent, network, signals, null),
    );
    ok = true;
    return { pid, master: ends.master };
  } finally {
    if (!opts.signals) signals.remove();
    if (!ok) await undoStart(network, parent, opts.onCleanupProblem);
  }
}
