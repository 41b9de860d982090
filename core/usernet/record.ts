/**
 * The helper process a run started (pasta daemonizes; slirp4netns is micro's child), found
 * again through the pid file in the run's state dir. A pid is trusted only while the
 * process's command line still names that state dir's file (so a recycled pid is never
 * signalled), which is also what lets gc stop the helper of a killed micro.
 */
import { PASTA_PIDFILE, SLIRP_RECORD, SLIRP_SOCKET } from "./args.ts";
import type { Sys } from "../sys/mod.ts";

function readSmall(path: string): string {
  try {
    const f = Deno.openSync(path, { read: true });
    try {
      if (!f.statSync().isFile) return "";
      const buf = new Uint8Array(4096);
      const n = f.readSync(buf) ?? 0;
      return new TextDecoder().decode(buf.subarray(0, n));
    } finally {
      f.close();
    }
  } catch {
    return "";
  }
}

/** The helper's pid when it still runs with the command line micro gave it. */
export function helperPid(dir: string): number | undefined {
  for (const [record, mark] of [[PASTA_PIDFILE, PASTA_PIDFILE], [SLIRP_RECORD, SLIRP_SOCKET]]) {
    const pid = Number(readSmall(`${dir}/${record}`).trim());
    if (!Number.isSafeInteger(pid) || pid <= 1) continue;
    const argv = readSmall(`/proc/${pid}/cmdline`).split("\0");
    if (argv.some((a) => a.endsWith(`${dir}/${mark}`))) return pid;
  }
  return undefined;
}

/**
 * Signals the helper through a pidfd opened before its command line is checked again, so a
 * pid the kernel gave to another process since is never signalled. The pidfd, or -1 when
 * there is no helper; the caller closes it (to signal that very process again).
 */
export function openHelper(dir: string, sys: Sys): number {
  const pid = helperPid(dir);
  if (pid === undefined) return -1;
  const fd = sys.pidfdOpen(pid, 0);
  if (fd < 0) return -1;
  if (helperPid(dir) !== pid) {
    sys.close(fd);
    return -1;
  }
  return fd;
}

/** Stops the helper a run left (SIGKILL: it keeps no state); whether there was one. */
export function stopLeftHelper(dir: string, sys: () => Sys): boolean {
  if (helperPid(dir) === undefined) return false;
  const s = sys();
  const fd = openHelper(dir, s);
  if (fd < 0) return false;
  s.pidfdSendSignal(fd, 9);
  s.close(fd);
  return true;
}
