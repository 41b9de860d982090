/**
 * The network part of a detached run's cleanup, done by the supervisor when the container
 * ends: the engine leaves it undone once the container is handed over (it must outlive the
 * runner; a hand-over that fails is undone by the engine's own cleanup).
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
