/** Every command that touches containers first cleans what killed runs left (DESIGN.md §7). */
export async function gcState(): Promise<void> {
  const { deadNetworkRuns, gc, killRecorded, stateRoot, unsupervised } = await import(
    "../core/state.ts"
  );
  const { openLibc } = await import("../core/sys/libc.ts");
  const uid = Deno.uid() ?? 0;
  const networks = deadNetworkRuns(stateRoot(uid), uid, openLibc);
  if (networks.length) {
    const { gcNetworks } = await import("../core/cni/gc.ts");
    for (const w of await gcNetworks(networks)) console.error(`micro: warning: cleanup: ${w}`);
  }
  gc(stateRoot(uid), uid, (pid, start) => killRecorded(pid, start), openLibc);
  // Detached containers whose supervisor was killed: a new one takes them over.
  if (unsupervised(stateRoot(uid), uid)) {
    const { ask } = await import("../core/supervisor/client.ts");
    await ask(stateRoot(uid), uid, { op: "ping" });
  }
}
