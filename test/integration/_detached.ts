/**
 * Detached containers' test helpers (lifecycle_test.ts, attach_test.ts): a state root of
 * the test's own with everything in it killed at the end, and the two modes (root and
 * rootless) the detached tests run in.
 */
import assert from "node:assert/strict";
import {
  IMAGE,
  lacking,
  MICRO,
  NEEDS,
  pidAlive,
  run,
  type RunOptions,
  waitFor,
  withTempDir,
} from "./_helpers.ts";

export const NOBODY = 65534;

/** Why uid 65534 cannot run the binary and image in place, or undefined. */
export function rootlessReason(): string | undefined {
  const base = lacking(NEEDS.setpriv);
  if (base) return base;
  const out = new Deno.Command("setpriv", {
    args: [
      `--reuid=${NOBODY}`,
      `--regid=${NOBODY}`,
      "--clear-groups",
      "sh",
      "-c",
      `test -r "$0" && test -x "$0" && test -x "$1/bin/sh" && test -r "$1/etc/passwd"`,
      MICRO,
      IMAGE,
    ],
  }).outputSync();
  return out.success
    ? undefined
    : `uid ${NOBODY} cannot read/traverse ${MICRO} or ${IMAGE} (e.g. /work not traversable)`;
}

/** Names unique to this test process: cgroups are named after containers, host-wide. */
export const U = crypto.randomUUID().slice(0, 6);

/**
 * A state root of the test's own (MICRO_STATE_ROOT), so the supervisor and its runs never
 * touch /run/micro. `o` runs micro as the test's user: root, or `user` rootless with a
 * store of its own. At the end, whatever the test did: every container in it is killed
 * (init and keeper, by pid and start time), the supervisor is killed, and the root removed.
 */
export async function withDetached(
  fn: (env: Record<string, string>, root: string, o: RunOptions) => Promise<void>,
  user?: { uid: number; gid: number },
): Promise<void> {
  await withTempDir(async (dir) => {
    Deno.chmodSync(dir, 0o711);
    const root = `${dir}/state`;
    Deno.mkdirSync(root, { mode: 0o711 });
    // A store of its own too: a container the test left behind (it failed halfway) is not
    // the next test's (`micro boot` starts every kept `always` container of the store).
    const env: Record<string, string> = { MICRO_STATE_ROOT: root, MICRO_ROOT: `${dir}/store` };
    if (user) {
      const home = `${dir}/home`;
      Deno.mkdirSync(home, { mode: 0o755 });
      Deno.chownSync(dir, user.uid, user.gid);
      Deno.chownSync(root, user.uid, user.gid);
      Deno.chownSync(home, user.uid, user.gid);
      Object.assign(env, { HOME: home, PATH: "/usr/bin:/bin", MICRO_ROOT: `${home}/store` });
    }
    const o: RunOptions = user ? { env, clearEnv: true, user, timeoutMs: 60_000 } : { env };
    let failure: unknown;
    try {
      await fn(env, root, o);
    } catch (e) {
      failure = e;
    }
    try {
      await endDetached(root, o);
    } catch (e) {
      if (failure === undefined) throw e;
      // Both: the test's own failure first, it usually explains the other.
      throw new Error(`${String(failure)}\n\nand then: ${String(e)}`, { cause: failure });
    }
    if (failure !== undefined) throw failure;
  }, "micro-detached-");
}

/**
 * Ends everything a test's own state root holds, before the test removes it: its containers
 * through micro (a stop cancels a restart waiting for its back-off), then whatever is left
 * killed (the supervisor, inits, keepers) and, once those are gone, cleaned by the next
 * command's gc. A run dir still there after that fails the test: removed with the root, its
 * cgroups would stay on the host with nothing left that records them.
 */
export async function endDetached(root: string, o: RunOptions): Promise<void> {
  const ids = (await run(["ps", "-aq"], o)).stdout.split("\n").filter((l) => l.trim());
  if (ids.length) await run(["rm", "-f", ...ids], o);
  for (let round = 0; round < 3; round++) {
    const killed = killAllDetached(root);
    // gc leaves a run whose supervisor or container is still exiting: wait for them first.
    await waitFor(() => !killed.some(pidAlive), 10_000);
    await run(["ps", "-a"], o);
    if (runDirsIn(root).length === 0) return;
  }
  assert.deepEqual(runDirsIn(root), [], `runs left in ${root} after their gc`);
}

/** The run dirs in a state root (dot entries are micro's own records). */
function runDirsIn(root: string): string[] {
  try {
    return [...Deno.readDirSync(root)].filter((e) => e.isDirectory && !e.name.startsWith("."))
      .map((e) => e.name);
  } catch {
    return [];
  }
}

/**
 * The detached containers' tests run in both modes: as root, and rootless as uid 65534 (only
 * its own id mapped: no subordinate ids on this host) with a store and state root of its own.
 */
export const MODES = [
  { title: "", user: undefined, ignore: undefined },
  { title: "rootless: ", user: { uid: NOBODY, gid: NOBODY }, ignore: rootlessReason() },
];

/** Whether the container's log has `text`, polled through `micro logs` (up to `ms`). */
export async function logHas(name: string, text: string, o: RunOptions, ms = 20_000) {
  return await waitFor(async () => (await run(["logs", name], o)).stdout.includes(text), ms);
}

export function startTime(pid: number): number {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19]);
  } catch {
    return -1;
  }
}

/** SIGKILL to `pid` while it still has start time `start`: whether it was sent. */
export function killPid(pid: number | undefined, start?: number): boolean {
  if (!pid || (start !== undefined && startTime(pid) !== start)) return false;
  try {
    Deno.kill(pid, "SIGKILL");
    return true;
  } catch {
    return false; // gone
  }
}

export function supervisorPid(root: string): number | undefined {
  try {
    const pid = Number(Deno.readTextFileSync(`${root}/.supervisor/pid`).trim());
    const cmd = Deno.readTextFileSync(`/proc/${pid}/cmdline`);
    return cmd.includes("_supervise") ? pid : undefined;
  } catch {
    return undefined;
  }
}

/** Kills the supervisor and every recorded init and keeper of `root`: the pids signalled. */
export function killAllDetached(root: string): number[] {
  const killed: number[] = [];
  const kill = (pid: number | undefined, start?: number) => {
    if (killPid(pid, start)) killed.push(pid!);
  };
  kill(supervisorPid(root));
  try {
    for (const e of Deno.readDirSync(root)) {
      if (!e.isDirectory || e.name.startsWith(".")) continue;
      try {
        const st = JSON.parse(Deno.readTextFileSync(`${root}/${e.name}/state.json`));
        kill(st.containerPid, st.containerStartTime);
        kill(st.keeper?.pid, st.keeper?.startTime);
      } catch { /* no state */ }
    }
  } catch { /* no root */ }
  // A micro command that ran later may have started a new one meanwhile: once more.
  kill(supervisorPid(root));
  return killed;
}

/** SIGKILLs the supervisor of `root` (one must run), waits until it is gone; its pid. */
export async function killSupervisor(root: string): Promise<number> {
  const pid = supervisorPid(root);
  assert.ok(pid, "no supervisor runs");
  Deno.kill(pid, "SIGKILL");
  assert.ok(await waitFor(() => !pidAlive(pid), 5000), "the supervisor outlived SIGKILL");
  return pid;
}

/** Waits until the supervisor of `root` has left (it leaves when it supervises nothing). */
export async function supervisorGone(root: string): Promise<boolean> {
  return await waitFor(() => supervisorPid(root) === undefined, 5000);
}
