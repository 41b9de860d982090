/**
 * The first cgroup v1 attach in a while waits for an RCU grace period: moving a process
 * takes the kernel's global cgroup_threadgroup_rwsem for writing, whose rcu_sync must first
 * leave its fast mode (6 to 16 ms on this project's hosts: bench/README.md). Any attach
 * starts that grace period, and one that comes while it runs, or up to a grace period after
 * the last ended, waits only for what is left of it. crun and runc pay it in full.
 *
 * So a run starts it as early as it can (before its modules load; a serve worker as a
 * client connects) on a thread of its own, and the child's join finds the lock ready. What
 * it attaches must move nothing: a zombie child of its own (a CLONE_VM | CLONE_VFORK child
 * of the vfork stub that exits at once), written into a cgroup.procs file. The kernel takes
 * the lock before it looks at the task, and skips an exiting one (cgroup_migrate_add_task);
 * a zombie's pid is not reused until it is reaped, and it is checked to be this process's
 * exited child right before the write. micro's own pid ("0") would take the lock too, but
 * would put micro back where it was had it been moved in between; a pid that does not exist,
 * or a kernel thread's, fails before the lock (Linux 6.18).
 *
 * Where micro is started by its launcher (tools/trampoline/launcher-x86_64.S) for `run` or
 * `exec` as root, the launcher has done this already, ~10 ms earlier, before Deno started:
 * its child that did is this process's (MICRO_WARM), and is waited for instead.
 *
 * The write holds the kernel's cgroup_mutex for the grace period (as every first attach
 * does), so the run's cgroup mkdirs wait for what is left of it there instead. Not needed on
 * cgroup v2, where a child is born in its cgroup (clone3 CLONE_INTO_CGROUP); nothing where
 * the file cannot be opened (not root), or without the vfork stub (not x86_64).
 */
import { C, cstr, type Sys } from "../sys/mod.ts";

/** cgroup v1's statfs type. */
const CGROUP_SUPER_MAGIC = 0x27e0eb;
/** A v1 hierarchy's root at its usual place (any one: the lock is global). */
const PROCS_FILES = [
  "/sys/fs/cgroup/pids/cgroup.procs",
  "/sys/fs/cgroup/memory/cgroup.procs",
  "/sys/fs/cgroup/cpu/cgroup.procs",
  "/sys/fs/cgroup/devices/cgroup.procs",
  "/sys/fs/cgroup/freezer/cgroup.procs",
  "/sys/fs/cgroup/unified/cgroup.procs",
];

/** The command has had its warm-up (none other until warmDone). */
let started = false;
/** Warm-ups whose write has not returned: each ends with its zombie reaped, its file closed. */
const pending = new Set<Promise<void>>();

/**
 * Starts the grace period unless one of this process is under way (a serve worker started
 * it as the client connected). `code` is the vfork stub's (core/engine/vfork.ts VFORK_CODE,
 * where vforkUsable): passed in, as `sys` is, for tests; commands call `warmUp`.
 */
export function warmAttach(sys: Sys, code: Uint8Array, uid = Deno.uid()): void {
  // One whose write has not returned is in its grace period: this command's join gains too.
  // (A serve worker asks for its own process, before a client's settings are taken:
  // MICRO_VFORK and the uid are the worker's, which are the server's.)
  if (started || pending.size > 0 || uid !== 0) return;
  // cgroup v1 (a tmpfs of hierarchies) only.
  const top = sys.open(cstr("/sys/fs/cgroup"), C.O_RDONLY | C.O_DIRECTORY | C.O_CLOEXEC, 0);
  if (top < 0) return;
  const type = sys.fstatfsType(top);
  sys.close(top);
  if (type === C.CGROUP2_SUPER_MAGIC || type < 0) return;
  let procs = -1;
  for (const path of PROCS_FILES) {
    procs = sys.open(cstr(path), C.O_WRONLY | C.O_CLOEXEC | C.O_NOFOLLOW, 0);
    if (procs < 0) continue;
    const fs = sys.fstatfsType(procs);
    if (fs === CGROUP_SUPER_MAGIC || fs === C.CGROUP2_SUPER_MAGIC) break;
    sys.close(procs);
    procs = -1;
  }
  if (procs < 0) return;
  const pipe = new Int32Array(2);
  if (sys.pipe2(pipe, C.O_CLOEXEC) < 0) {
    sys.close(procs);
    return;
  }
  // The stub's holder, without a namespace and with CLONE_VFORK: it closes its fds, reads
  // the pipe, whose write end is closed already, and exits 0; the clone returns as it exits
  // (its memory let go), and a wait without reaping sees it a zombie microseconds later.
  sys.close(pipe[1]);
  const stack = new Uint8Array(16 * 1024);
  const pid = sys.usernsHold(code, C.CLONE_VFORK | C.SIGCHLD, stack, pipe[0], -1);
  sys.close(pipe[0]);
  if (pid < 0) {
    sys.close(procs);
    return;
  }
  started = true;
  if (!sys.waitExited(pid)) {
    // Not a zombie of micro's (the wait failed): never written; reaped once it has exited.
    sys.close(procs);
    if (sys.isChild(pid)) void sys.waitpid(pid).catch(() => {});
    return;
  }
  const text = new TextEncoder().encode(String(pid));
  // Over as soon as the write returns: an attached run keeps no zombie while it runs.
  const end = () => {
    sys.close(procs);
    sys.reap(pid); // exited before the wait above returned
    pending.delete(over);
  };
  const over: Promise<void> = sys.writeAsync(procs, text, text.length).then(end, end);
  pending.add(over);
}

/**
 * warmAttach for this process, where the vfork stub may be used: what commands call. Its
 * modules are loaded here, so that this one stays small enough to load before a run's.
 */
export async function warmUp(): Promise<void> {
  if (launched) {
    takeLaunched();
    return;
  }
  const [{ openLibc }, { VFORK_CODE, vforkUsable }] = await Promise.all([
    import("../sys/libc.ts"),
    import("../engine/vfork.ts"),
  ]);
  const sys = openLibc();
  if (vforkUsable(sys)) warmAttach(sys, VFORK_CODE());
}

/** The kernel's highest pid (PID_MAX_LIMIT on 64-bit). */
const PID_MAX_LIMIT = 4194304;

/** The launcher's child: its pid, and the pipe's write end whose closing stops it. */
interface Launched {
  pid: number;
  fd: number;
  sys: Sys;
}
/** MICRO_WARM's, until a warm-up takes it or the command ends. */
let launched: Launched | null = null;
/** The one taken as this command's warm-up, until joining or warmDone stop it. */
let running: Launched | null = null;

/**
 * MICRO_WARM ("PID,FD"), which main.ts takes out of the environment at start: the
 * launcher's child that started the grace period and keeps it, and the write end of the pipe
 * that stops it (tools/trampoline/launcher-x86_64.S). Its fd made close-on-exec at once:
 * nothing micro starts holds it. Only a child of this process's counts (the launcher's, not
 * reaped already because the caller ignores SIGCHLD): another pid is not waited for.
 */
export async function fromLauncher(value: string, sys?: Sys): Promise<void> {
  launched = null;
  const m = /^([1-9][0-9]{0,6}),([0-9]{1,9})$/.exec(value);
  if (!m) return;
  const [pid, fd] = [Number(m[1]), Number(m[2])];
  if (fd < 3 || pid > PID_MAX_LIMIT) return;
  sys ??= (await import("../sys/libc.ts")).openLibc();
  // Close-on-exec whatever the pid is: the launcher's pipe reaches no process micro starts
  // (its child reaped already, where the caller ignores SIGCHLD, is not waited for).
  if (sys.fcntl(fd, 2, 1) < 0 || !sys.isChild(pid)) return; // F_SETFD, FD_CLOEXEC
  launched = { pid, fd, sys };
}

/** Whether the launcher started one (a served client says so: its worker starts none). */
export function launcherWarming(): boolean {
  return launched !== null;
}

/**
 * A served client's launcher started it: this command (a serve worker's) starts none of its
 * own, until warmDone.
 */
export function warmedElsewhere(): void {
  started = true;
}

/**
 * The launcher's child as this command's warm-up: pending until it has exited, then reaped.
 * It writes on until the container is about to join its cgroups (`joining`) or the command ends (a
 * served client's, which never joins: until its 100 writes are done).
 */
export function takeLaunched(): void {
  const l = launched;
  launched = null;
  if (!l) return;
  if (started) {
    stop(l);
    return;
  }
  started = true;
  running = l;
  const end = () => {
    pending.delete(over);
  };
  const over: Promise<void> = l.sys.waitpid(l.pid).then(end, end);
  pending.add(over);
}

/**
 * The container is about to join its cgroups (core/engine/mod.ts, right before the clone):
 * the launcher's child stops writing. The lock stays ready for a grace period after its
 * last write, and the join comes within a millisecond or two; its writes would meet the
 * clone and the child's set-up (each holds the lock for writing, which forks wait on).
 */
export function joining(): void {
  if (running) stop(running);
  running = null;
}

/** Its pipe closed: it writes no more, reaps its zombie and exits. */
function stop(l: Launched): void {
  if (l.fd >= 0) l.sys.close(l.fd);
  l.fd = -1;
}

/**
 * At the end of a command that did not take the launcher's child (a served client, `run
 * --help`): stopped, and reaped if it has exited already; one still writing is left, and
 * this process's exit hands it to init.
 */
export function dropLaunched(): void {
  const l = launched;
  launched = null;
  if (!l) return;
  stop(l);
  l.sys.reap(l.pid);
}

/**
 * After the command: the next may have one. What it returns settles once every warm-up's
 * write has returned (a grace period at most): a caller that counts its fds (a serve
 * worker) waits for it.
 */
export function warmDone(): Promise<void> {
  joining();
  started = false;
  return Promise.all(pending).then(() => {});
}
