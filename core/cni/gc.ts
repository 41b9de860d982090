/**
 * DEL for runs whose micro died (kill -9): their CNI record (written before ADD) names the
 * very list, runtime config and result ADD used. It runs only in the network namespace the
 * run was in: elsewhere DEL would touch another host's rules, so such a run is left for a
 * micro in its own namespace (state.ts gc keeps a run dir while its record is there).
 */
import { CACHE_FILE, cachedAttachment, delNetwork, readCache } from "./exec.ts";
import { currentNetns } from "./attach.ts";
import { MicroError } from "../errors.ts";

export interface DeadRun {
  dir: string;
  /** The container's init when it still runs (its namespace is then still there). */
  containerPid?: number;
}

/** DELs each dead run's networks; returns warnings. A failed DEL still drops the record. */
export async function gcNetworks(runs: DeadRun[]): Promise<string[]> {
  const warnings: string[] = [];
  const here = currentNetns();
  for (const run of runs) {
    const path = `${run.dir}/${CACHE_FILE}`;
    let cache;
    try {
      cache = readCache(path);
    } catch (e) {
      warnings.push(`${path}: ${(e as Error).message}; removed`);
      Deno.removeSync(path);
      continue;
    }
    if (!cache || cache.hostNetns !== here) continue;
    const netns = run.containerPid ? `/proc/${run.containerPid}/ns/net` : "";
    try {
      await delNetwork(cache.config, cachedAttachment(cache, netns), cache.result);
    } catch (e) {
      const why = e instanceof MicroError ? e.line() : (e as Error).message;
      warnings.push(`network ${cache.config.name} of ${run.dir}: ${why}`);
    }
    Deno.removeSync(path);
  }
  return warnings;
}
