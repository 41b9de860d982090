/** Every command that touches containers first cleans what killed runs left (DESIGN.md §7). */
import { nothingToSweep, stateRoot } from "../core/stateroot.ts";
import { warnCleanup } from "../core/errors.ts";

/**
 * The common case (every run alive, or none) loads none of the cleanup code. stateroot.ts is
 * small and loaded with this module: a dynamic import of its own cost a run a load of its own.
 */
export async function gcState(): Promise<void> {
  const uid = Deno.uid() ?? 0;
  const root = stateRoot(uid);
  if (nothingToSweep(root, uid)) return;
  const { deadNetworkRuns, gc, unsupervised } = await import("../core/gc.ts");
  const { killRecorded } = await import("../core/state.ts");
  const { openLibc } = await import("../core/sys/libc.ts");
  const networks = deadNetworkRuns(root, uid, openLibc);
  if (networks.length) {
    const { gcNetworks } = await import("../core/cni/gc.ts");
    for (const w of await gcNetworks(networks)) warnCleanup(w);
  }
  gc(root, uid, (pid, start) => killRecorded(pid, start), openLibc);
  // Detached containers whose supervisor was killed: a new one takes them over.
  if (unsupervised(root, uid)) {
    const { ask } = await import("../core/supervisor/client.ts");
    await ask(root, uid, { op: "ping" });
  }
}
