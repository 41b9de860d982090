/**
 * The network part of a detached run's cleanup. The engine leaves it undone once the
 * container is handed over (it must outlive the runner), so whoever ends the container
 * does it: the supervisor when the container ends, the runner when the hand-over failed.
 */
import type { Sys } from "../sys/mod.ts";
import { stopLeftHelper } from "../usernet/record.ts";

/** DEL of the run's CNI networks (its record in `dir`) and its rootless helper; warnings. */
export async function detachedNetworksDown(dir: string, sys: () => Sys): Promise<string[]> {
  const warnings: string[] = [];
  try {
    Deno.lstatSync(`${dir}/cni.json`);
    const { gcNetworks } = await import("../cni/gc.ts");
    warnings.push(...await gcNetworks([{ dir }]));
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) warnings.push(`${dir}: ${(e as Error).message}`);
  }
  stopLeftHelper(dir, sys);
  return warnings;
}
