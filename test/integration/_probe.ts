/**
 * What a process in a container holds, printed from inside, to compare an exec'd process with
 * the container's PID 1 (test/integration/exec_test.ts, and detached containers in
 * lifecycle_test.ts).
 */
import assert from "node:assert/strict";
import { ok, type RunResult } from "./_helpers.ts";

/**
 * `probe PID`: its namespaces, capability sets, signal masks, no_new_privs, seccomp mode, ids
 * and cgroups. Blocked and ignored signals survive execve: a mask micro (or whatever ran micro)
 * left would show here.
 */
export const PROBE =
  `probe() { for n in user mnt pid net ipc uts cgroup; do readlink /proc/$1/ns/$n; done; ` +
  `grep -E '^(Cap(Inh|Prm|Eff|Bnd|Amb)|Sig(Blk|Ign)|NoNewPrivs|Seccomp):' /proc/$1/status; id; ` +
  `cat /proc/$1/cgroup; }`;

/** PID 1 records itself in /tmp/pid1, then waits until /tmp/stop exists. */
export const INIT = `${PROBE}; probe 1 > /tmp/pid1; echo ready; ` +
  `while [ ! -e /tmp/stop ]; do sleep 0.1; done`;

/** The exec'd process's view of itself against PID 1's (running INIT); returns it. */
export async function assertSameAsInit(
  name: string,
  exec: (args: string[]) => Promise<RunResult>,
): Promise<string> {
  const mine = ok(await exec([name, "sh", "-c", `${PROBE}; probe $$`]));
  const init = ok(await exec([name, "cat", "/tmp/pid1"]));
  assert.equal(mine, init);
  assert.match(mine, /^Seccomp:\s+2$/m);
  // nothing blocked; nothing ignored but SIGQUIT, which busybox sh ignores itself (a glibc
  // parent's posix_spawn leaves its signals 32 and 33 ignored: they must not come through)
  assert.match(mine, /^SigBlk:\s+0+$/m);
  const ignored = BigInt(`0x${/^SigIgn:\s+([0-9a-f]+)$/m.exec(mine)?.[1]}`);
  assert.equal(ignored & ~(1n << 2n), 0n, `ignored signals: ${ignored.toString(16)}`);
  assert.equal(mine.split("\n").filter((l) => l.includes(":[")).length, 7, mine);
  return mine;
}
