/**
 * DEL for runs whose micro died (kill -9): their CNI record (written before ADD) names the
 * very list, runtime config and result ADD used. It runs only in the network namespace the
 * run was in: elsewhere DEL would touch another host's rules, so such a run is left for a
 * micro in its own namespace (state.ts gc keeps a run dir while its record is there).
 */
import { CACHE_FILE, cachedAttachment, delNetwork, readCache } from "./exec.ts";
import { currentNetns, isPinned, NETNS_FILE, unpinNetns } from "./attach.ts";
import { openLibc } from "../sys/libc.ts";
import { MicroError } from "../errors.ts";
import { MICRO_BRIDGE } from "./config.ts";
import { MICRO_NETWORK } from "./facts.ts";
import { removeBridgeIfUnused, withCniLock } from "./bridge.ts";
import { IPAM_DIR } from "./probe.ts";

export interface DeadRun {
  dir: string;
  /** The container's init when it still runs (its namespace is then still there). */
  containerPid?: number;
  /** The run's lock (core/state.ts lockRun), held through DEL and closed here. */
  lock?: number;
}

/** DELs each dead run's networks; returns warnings. A failed DEL still drops the record. */
export async function gcNetworks(runs: DeadRun[], lockDir = IPAM_DIR): Promise<string[]> {
  const warnings: string[] = [];
  const here = currentNetns();
  for (const run of runs) {
    try {
      await gcRun(run, here, warnings, lockDir);
    } finally {
      if (run.lock !== undefined) openLibc().close(run.lock);
    }
  }
  return warnings;
}

async function gcRun(
  run: DeadRun,
  here: string,
  warnings: string[],
  lockDir: string,
): Promise<void> {
  const path = `${run.dir}/${CACHE_FILE}`;
  let cache;
  try {
    cache = readCache(path);
  } catch (e) {
    warnings.push(`${path}: ${(e as Error).message}; removed`);
    removeRecord(path);
    return;
  }
  if (!cache || cache.hostNetns !== here) return;
  // The pinned namespace outlives the container: DEL finds its interface there.
  // Only ever the run's own file: the record names no other path micro would unmount.
  const pin = `${run.dir}/${NETNS_FILE}`;
  const pinned = isPinned(pin) ? pin : "";
  const netns = pinned || (run.containerPid ? `/proc/${run.containerPid}/ns/net` : "");
  try {
    await withCniLock(
      () => delNetwork(cache.config, cachedAttachment(cache, netns), cache.result),
      lockDir,
    );
  } catch (e) {
    const why = e instanceof MicroError ? e.line() : (e as Error).message;
    warnings.push(`network ${cache.config.name} of ${run.dir}: ${why}`);
  }
  const why = unpinNetns(openLibc(), pin);
  if (why) warnings.push(why);
  removeRecord(path);
  // micro's default network: its bridge goes with the last container, a killed run's too.
  const bridge = (cache.config.plugins[0] as { bridge?: unknown })?.bridge;
  if (cache.config.name === MICRO_NETWORK && bridge === MICRO_BRIDGE) {
    warnings.push(...await removeBridgeIfUnused(MICRO_NETWORK, MICRO_BRIDGE));
  }
}

/** Another micro's gc may have taken it meanwhile: that is fine. */
function removeRecord(path: string): void {
  try {
    Deno.removeSync(path);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
}
