/** Every command that touches containers first cleans what killed runs left (DESIGN.md §7). */
export async function gcState(): Promise<void> {
  const { gc, stateRoot } = await import("../core/state.ts");
  const { openLibc } = await import("../core/sys/libc.ts");
  const uid = Deno.uid() ?? 0;
  gc(stateRoot(uid), uid, (pid) => {
    try {
      Deno.kill(pid, "SIGKILL");
    } catch { /* already gone */ }
  }, openLibc);
}
