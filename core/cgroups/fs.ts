/**
 * The cgroup file system work shared by the engine's cleanup and by `gc` after a killed
 * run: kill everything in a cgroup, wait until it is empty, remove it.
 */
import { errnoName, errnoOf } from "../errors.ts";
import { readQuiet, writeTextAt } from "../files.ts";
import { openLibc } from "../sys/libc.ts";
import { C, cstr, type Stat, type Sys } from "../sys/mod.ts";

/**
 * The `via` of the functions below: a run's cleanup reads, writes and removes through its
 * Sys (core/files.ts says why); gc, before it knows it needs libc, through Deno's calls.
 */
function read(path: string, via?: Sys): string | undefined {
  if (via) return readQuiet(via, path) ?? undefined;
  try {
    return Deno.readTextFileSync(path);
  } catch {
    return undefined;
  }
}

function write(path: string, value: string, via?: Sys): boolean {
  if (via) return writeTextAt(via, path, value) === 0;
  try {
    Deno.writeTextFileSync(path, value);
    return true;
  } catch {
    return false;
  }
}

/** rmdir(2): 0 or -errno. */
function rmdir(path: string, via?: Sys): number {
  if (via) return via.unlinkat(C.AT_FDCWD, cstr(path), C.AT_REMOVEDIR);
  try {
    Deno.removeSync(path);
    return 0;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return -2;
    if (e instanceof Deno.errors.Busy) return -16;
    return -errnoOf(e, 5);
  }
}

function pids(dir: string, via?: Sys): number[] {
  return (read(`${dir}/cgroup.procs`, via) ?? "").split("\n").filter((l) => l).map(Number);
}

/** `sys`: opened only when there is a pid to kill. */
function killAll(dir: string, sys: () => Sys, via?: Sys): void {
  const listed = pids(dir, via);
  if (listed.length) {
    killMembers(sys(), () => listed.length ? listed.splice(0) : pids(dir, via));
  }
}

/**
 * SIGKILL to every pid `listed()` gives (a cgroup's members), each through a pidfd opened
 * first and signalled only when a second `listed()` still has its pid: a member that ended
 * after the first read and whose pid the kernel gave to a host process is never signalled
 * (its pidfd names the host process, which the second read does not list). Without pidfds
 * (Linux < 5.3, or refused by a seccomp filter around micro: any error but ESRCH) a pid still
 * listed is killed by number. How many the first read had.
 */
export function killMembers(sys: Sys, listed: () => number[]): number {
  const first = listed();
  if (!first.length) return 0;
  const fds = first.map((pid) => sys.pidfdOpen(pid, 0));
  try {
    const now = new Set(listed());
    first.forEach((pid, i) => {
      if (!now.has(pid)) return;
      const rc = fds[i] >= 0 ? sys.pidfdSendSignal(fds[i], C.SIGKILL) : fds[i];
      if (rc < 0 && rc !== -3) sys.kill(pid, C.SIGKILL); // no pidfds here; ESRCH: gone
    });
  } finally {
    for (const fd of fds) if (fd >= 0) sys.close(fd);
  }
  return first.length;
}

function sleep(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** Waits (up to about 2 s) until no process is left in the cgroup. */
function waitEmpty(dir: string, via?: Sys): boolean {
  for (let i = 0; i < 200; i++) {
    if (pids(dir, via).length === 0) return true;
    sleep(10);
  }
  return false;
}

/**
 * Kills every process in the cgroup: v2's cgroup.kill when the kernel has it, else (v1)
 * freeze the cgroup so nothing can fork while it is being emptied, kill, thaw. Without
 * cgroup.kill, an empty cgroup is left as it is: nothing in it can fork, and only a write to
 * its cgroup.procs by someone else could fill it (the usual end of a run: the pid namespace's
 * init was reaped, and the kernel ended everything else in it; each freezer.state write costs
 * milliseconds). cgroup.kill is always written: one cheap write that also reaches cgroups the
 * container made below its own, which cgroup.procs does not list.
 */
export function killCgroup(
  dir: string,
  how: "cgroup.kill" | "freezer" | "signal",
  sys: () => Sys = openLibc,
  via?: Sys,
): boolean {
  if (how !== "cgroup.kill" && pids(dir, via).length === 0) return true;
  if (how === "cgroup.kill" && write(`${dir}/cgroup.kill`, "1", via)) return waitEmpty(dir, via);
  if (how === "freezer" && write(`${dir}/freezer.state`, "FROZEN", via)) {
    for (let i = 0; i < 100 && read(`${dir}/freezer.state`, via)?.trim() !== "FROZEN"; i++) {
      sleep(5);
    }
    killAll(dir, sys, via);
    write(`${dir}/freezer.state`, "THAWED", via);
    return waitEmpty(dir, via);
  }
  killAll(dir, sys, via);
  return waitEmpty(dir, via);
}

/**
 * Removes a cgroup dir. A shared parent, or one this run did not create, only when empty
 * (one rmdir, never a kill). Returns a reason when a dir of the run's own stays.
 */
export function removeCgroup(
  dir: string,
  onlyIfEmpty: boolean,
  sys: () => Sys = openLibc,
  via?: Sys,
): string | undefined {
  for (let i = 0; i < 50; i++) {
    const rc = rmdir(dir, via);
    if (rc === 0 || rc === -2) return undefined; // removed, or gone
    if (onlyIfEmpty) return undefined; // in use by another run, or not ours: left alone
    if (rc !== -16) return `rmdir: ${errnoName(-rc)}`; // not EBUSY
    killAll(dir, sys, via);
    sleep(20);
  }
  return "still busy after its processes were killed";
}

/**
 * The attribute micro sets on a shared parent it made (`micro`, `micro-oci`): trusted.* on
 * every cgroup hierarchy for root, user.* where trusted.* is refused (a delegated cgroup v2
 * subtree, Linux 5.7 and later). A parent without it was made by someone else (an admin's,
 * with limits of their own) and is never removed, even when empty.
 *
 * The mkdir and the attribute are two calls, and a micro killed between them would leave a
 * parent nobody may remove (every later run finds it there, unmarked). So a shared parent is
 * made with the sticky bit (MAKING_MODE), atomic with the mkdir, and the bit is cleared only
 * once the attribute is set: a sticky parent of micro's own user counts as micro's too. Where
 * no attribute can be set (older kernels' delegated v2), the bit stays as the mark. An admin
 * does not make a cgroup directory sticky; one who did made it micro's to remove once empty.
 */
const TRUSTED = cstr("trusted.micro");
const USER = cstr("user.micro");
const MARK_VALUE = new TextEncoder().encode("made");

/** The mode a shared parent is made with: sticky until marked (see above), 0755 at most. */
export const MAKING_MODE = C.S_ISVTX | 0o755;

/**
 * Marks a shared parent this run's mkdir just made as micro's, then clears its sticky bit,
 * through one fd of it: whether it is still the directory made (sticky and this user's:
 * another run may have removed it and someone made it again since). Where neither
 * attribute can be set, the sticky bit stays as the mark.
 */
export function claimMade(sys: Sys, dir: string): boolean {
  const flags = C.O_RDONLY | C.O_DIRECTORY | C.O_NOFOLLOW | C.O_CLOEXEC;
  const fd = sys.open(cstr(dir), flags, 0);
  if (fd < 0) return false; // gone again
  try {
    const st: Stat = { mode: 0, size: 0, uid: 0, gid: 0 };
    if (sys.fstat(fd, st) < 0 || !stickyOwn(st)) return false;
    if (
      sys.fsetxattr(fd, TRUSTED, MARK_VALUE, 0) !== 0 &&
      sys.fsetxattr(fd, USER, MARK_VALUE, 0) !== 0
    ) return true; // the sticky bit is the mark
    sys.fchmod(fd, st.mode & 0o777); // best effort: left sticky, it is still micro's
    return true;
  } finally {
    sys.close(fd);
  }
}

/** A directory of this user's with the sticky bit: a parent micro made (see above). */
function stickyOwn(st: Stat): boolean {
  return (st.mode & C.S_IFMT) === C.S_IFDIR && (st.mode & C.S_ISVTX) !== 0 &&
    st.uid === (Deno.uid() ?? 0);
}

/**
 * Whether micro made this shared parent (claimMade): only then may a run remove it. user.*
 * and the sticky bit count only on a directory of this user's own: whoever may write the
 * directory may set them (a user an admin delegated `micro` to), and root's micro must not
 * take that for its own mark.
 */
export function madeByMicro(sys: Sys, dir: string): boolean {
  const path = cstr(dir);
  const buf = new Uint8Array(8);
  if (sys.lgetxattr(path, TRUSTED, buf) >= 0) return true;
  const st: Stat = { mode: 0, size: 0, uid: 0, gid: 0 };
  if (
    sys.fstatat(C.AT_FDCWD, path, C.AT_SYMLINK_NOFOLLOW, st) !== 0 ||
    st.uid !== (Deno.uid() ?? 0)
  ) return false;
  return sys.lgetxattr(path, USER, buf) >= 0 || stickyOwn(st);
}

/**
 * A cgroup directory in a run's state. It is recorded before the mkdir (the intent), and
 * `created` is set once this run's mkdir succeeded (the ownership): a directory that was
 * there already (another run's, or not micro's at all) is never killed or emptied.
 */
export interface RecordedCgroup {
  path: string;
  shared: boolean;
  /** How to kill what is in it, for the dirs a run owns. */
  kill?: "cgroup.kill" | "freezer" | "signal";
  /** This run made it. Absent after a crash between the mkdir and the state write. */
  created?: boolean;
}

/**
 * Cleans a killed run's cgroups: kill what is in the ones it created, then remove in
 * reverse order of creation. A dir it only meant to create is never killed, only removed
 * once empty: after a crash between its mkdir and the state write that records the
 * ownership it is the run's own, but not always empty yet (a vfork child joins its v1
 * cgroups, and a clone3 child is born in its v2 one, before that write: killed by its
 * parent-death signal, it may still be exiting), so an rmdir refused as busy is tried again
 * for a moment; if it was someone else's, rmdir keeps failing on its processes or children
 * and it stays. A shared parent it did not make is removed only when micro made it
 * (madeByMicro): never an admin's, empty or not.
 */
export function removeRecorded(list: RecordedCgroup[], sys: () => Sys = openLibc): string[] {
  for (const c of list) if (!c.shared && c.created) killCgroup(c.path, c.kill ?? "signal", sys);
  const left: string[] = [];
  let until = 0; // one wait for all of them (they empty together), from the first
  for (const c of [...list].reverse()) {
    // A shared parent this run did not make: micro's own only when marked so.
    if (c.shared && !c.created && !madeByMicro(sys(), c.path)) continue;
    if (!c.shared && !c.created) {
      until ||= Date.now() + 500;
      if (!removeOnceEmpty(c.path, until)) {
        // Not recorded as the run's, so its state is not kept for it: said, not hidden.
        console.error(
          `micro: warning: cleanup: cgroup ${c.path}: still in use after 500 ms; left ` +
            "(a crashed run's, or not micro's: remove it with rmdir once it is empty)",
        );
      }
      continue;
    }
    const why = removeCgroup(c.path, c.shared, sys);
    if (why) left.push(`${c.path}: ${why}`);
  }
  return left; // the run's own dirs that stay, with why
}

/** rmdir, tried again while busy until `until` (ms); nothing in it is signalled. */
function removeOnceEmpty(dir: string, until: number, via?: Sys): boolean {
  for (;;) {
    const rc = rmdir(dir, via);
    if (rc !== -16) return true; // removed, gone, or not a dir micro could ever remove
    if (Date.now() >= until) return false;
    sleep(20);
  }
}
