/**
 * The watchdog: the container dies with micro even when its processes clear
 * PR_SET_PDEATHSIG (`setpriv --pdeathsig clear`), which is only a request.
 *
 * A small process, forked from micro right after the container's child (glibc's fork, so
 * that malloc works in it whatever micro's other threads held; synchronous FFI only,
 * DESIGN.md §4), blocks in read() on a pipe whose
 * write end only micro holds (O_CLOEXEC: the container's child drops it at execve). When
 * the run ends normally micro writes one byte and the watchdog leaves without touching
 * anything. EOF without that byte means micro died (SIGKILL, a crash): the watchdog kills
 * every process in the cgroups this run created and exits; the next micro command's gc
 * removes the directories and the state.
 *
 * It kills through fds of the cgroup directories opened before the fork, never by name: a
 * later run that reuses the name has new directories these fds cannot reach. It leaves
 * micro's session and process group (a group kill of micro spares it), ignores every signal
 * but SIGKILL and SIGSTOP, is not dumpable (its /proc files and ptrace are closed to the
 * container's root), holds no fd but the pipe and those directories (so micro's stdout and
 * stderr reach EOF with micro), and has `/` as its cwd. A container with its own pid
 * namespace cannot see it.
 *
 * A container with a pid namespace of its own gets the same, where pidfd_open works (Linux
 * 5.3+, not refused by a seccomp filter around micro), from a small static program
 * instead (tools/trampoline/watchdog-*.S, spawned from a sealed memfd after the child's
 * clone): killing its init through a pidfd ends every process of that namespace, cgroup v2's
 * cgroup.kill ends the cgroup's, and a v1 freezer is thawed so that a frozen container's
 * kill lands. No second copy of micro: its clone cost about 5 ms, and while it lived every
 * page micro wrote was copied (copy-on-write, with a TLB shootdown).
 */
import { errnoName, MicroError } from "../errors.ts";
import { C, cstr, type Sys, SysUnwind } from "../sys/mod.ts";
import { sealedProgram, sealedSpawner } from "./memfd.ts";
import { WATCHDOG } from "./trampoline.ts";

export type KillHow = "cgroup.kill" | "freezer" | "signal";

/** A cgroup directory this run created, and how to kill what is in it. */
export interface KillTarget {
  path: string;
  how: KillHow;
}

const HOW: Record<KillHow, number> = { "cgroup.kill": 0, freezer: 1, signal: 2 };

const ROOT = cstr("/");
const CGROUP_KILL = cstr("cgroup.kill");
const CGROUP_PROCS = cstr("cgroup.procs");
const FREEZER_STATE = cstr("freezer.state");
const ONE = new TextEncoder().encode("1");
const FROZEN = new TextEncoder().encode("FROZEN");
const THAWED = new TextEncoder().encode("THAWED");
/** Pids killed per pass (more: the next pass, while any is left). */
const MAX_PIDS = 1024;
/** Room for 1,024 CPUs' bits: a host with more is not pinned (sched_getaffinity's EINVAL). */
const AFFINITY_BYTES = 128;
/** Only the named file right in the directory: no links, nothing above. */
const BENEATH = C.RESOLVE_BENEATH | C.RESOLVE_NO_SYMLINKS;

/**
 * Dismissed watchdogs not reaped yet. One leaves a moment after its byte; a micro that
 * exits leaves it to init, but a long-lived one (a serve worker) reaps it at its next
 * dismissal: without a wait, and never more than the few of the last runs as zombies.
 */
const dismissed: number[] = [];

/** Reaps the dismissed watchdogs that have exited (WNOHANG). */
export function reapDismissed(sys: Sys): void {
  for (let i = dismissed.length - 1; i >= 0; i--) {
    if (sys.reap(dismissed[i]).pid !== 0) dismissed.splice(i, 1); // reaped, or not a child
  }
}

/** Everything the watchdog needs, made before the fork so that it only walks it. */
export class Watchdog {
  /** The watchdog's pid once forked; 0 before. */
  pid = 0;
  /**
   * Scratch for cgroup.procs and freezer.state, and the one byte read off the pipe. The
   * forked watchdog's are made before the fork (nothing may allocate in the copy); the static
   * program needs none, and a long attached run does not keep 16 KiB for it.
   */
  private buf = new Uint8Array(0);
  private readonly byte = new Uint8Array(1);
  /** The pids of one read of cgroup.procs, their pidfds, and the pids of the second read. */
  private pids = new Int32Array(0);
  private pidfds = new Int32Array(0);
  private again = new Int32Array(0);
  /**
   * micro's CPUs (read before the clone; empty: not pinned) and a mask of the one it is on
   * at the spawn, and getcpu's word: see pin().
   */
  private affinity = new Uint8Array(0);
  private single = new Uint8Array(0);
  private readonly cpu = new Uint8Array(4);
  private readonly cpuWord = new Uint32Array(this.cpu.buffer);

  private constructor(
    private readonly readFd: number,
    private writeFd: number,
    private readonly dirs: Int32Array,
    private readonly how: Uint8Array,
    /** [first, last] pairs that close every fd but the pipe's read end and the dirs. */
    private readonly closeRanges: Int32Array,
    /** The static program's memfd and a /dev/null fd: the native watchdog; -1 otherwise. */
    private readonly program = -1,
    private readonly devNull = -1,
    /** The native watchdog's spawn, made with its fds (but the pidfd, fd 3) before the clone. */
    private readonly spawner?: ReturnType<typeof sealedSpawner>,
    private readonly spawnFds: number[] = [],
  ) {}

  /** The static program (a container with a pid namespace of its own), not a fork. */
  get native(): boolean {
    return this.program >= 0;
  }

  /**
   * The pipe and an fd for each target directory; throws (closing them) on failure. With
   * `native` (the container has a pid namespace of its own) and pidfd_open working here, the
   * static program's memfd too, and only the directories it writes to: v2's (cgroup.kill) and
   * v1's freezer.
   */
  static prepare(targets: KillTarget[], sys: Sys, native = false): Watchdog {
    native &&= pidfdsWork(sys);
    if (native) targets = targets.filter((t) => t.how !== "signal");
    const pipe = new Int32Array(2);
    const rc = sys.pipe2(pipe, C.O_CLOEXEC);
    if (rc < 0) throw setupError("pipe2", {}, -rc);
    const dirs = new Int32Array(targets.length);
    for (let i = 0; i < targets.length; i++) {
      const fd = sys.open(cstr(targets[i].path), C.O_RDONLY | C.O_DIRECTORY | C.O_CLOEXEC, 0);
      if (fd < 0) {
        for (const f of [pipe[0], pipe[1], ...dirs.subarray(0, i)]) sys.close(f);
        throw setupError("open", { path: targets[i].path }, -fd);
      }
      dirs[i] = fd;
    }
    const keep = [pipe[0], ...dirs].sort((a, b) => a - b);
    const ranges: number[] = [];
    let from = 0;
    for (const k of keep) {
      if (k > from) ranges.push(from, k - 1);
      from = k + 1;
    }
    ranges.push(from, 0x7fffffff);
    let program = -1;
    let devNull = -1;
    const how = Uint8Array.from(targets, (t) => HOW[t.how]);
    let spawner: ReturnType<typeof sealedSpawner> | undefined;
    let spawnFds: number[] = [];
    if (native) {
      try {
        program = sealedProgram(sys, "micro-watchdog", WATCHDOG[sys.arch]);
        devNull = sys.open(cstr("/dev/null"), C.O_RDWR | C.O_CLOEXEC, 0);
        if (devNull < 0) throw setupError("open", { path: "/dev/null" }, -devNull);
      } catch (e) {
        for (const f of [pipe[0], pipe[1], ...dirs, program]) if (f >= 0) sys.close(f);
        throw e;
      }
      const dir = (h: number) => {
        const i = how.indexOf(h);
        return i < 0 ? devNull : dirs[i];
      };
      // fd 3, the init's pidfd, is set after the clone.
      spawnFds = [pipe[0], devNull, devNull, -1, dir(HOW["cgroup.kill"]), dir(HOW.freezer)];
      spawner = sealedSpawner(sys, program, "micro-watchdog", spawnFds.length);
    }
    const w = new Watchdog(
      pipe[0],
      pipe[1],
      dirs,
      how,
      Int32Array.from(ranges),
      program,
      devNull,
      spawner,
      spawnFds,
    );
    if (!w.native) {
      w.buf = new Uint8Array(4096);
      w.pids = new Int32Array(MAX_PIDS);
      w.pidfds = new Int32Array(MAX_PIDS);
      w.again = new Int32Array(MAX_PIDS);
    }
    if (native) {
      const mask = new Uint8Array(AFFINITY_BYTES);
      const n = sys.schedGetaffinity(0, mask);
      if (n > 0) {
        w.affinity = mask.subarray(0, n);
        w.single = new Uint8Array(n);
      }
    }
    return w;
  }

  /**
   * In micro, right after the container's clone: the static program, with the pipe's read
   * end as its fd 0, /dev/null as 1 and 2, a pidfd of the container's init as 3, the v2
   * cgroup's directory as 4 and the v1 freezer's as 5 (/dev/null where there is none). Its
   * pid, or -errno; only the pipe's write end stays open here.
   */
  spawn(child: number, sys: Sys): number {
    const pidfd = sys.pidfdOpen(child, 0);
    this.spawnFds[3] = pidfd;
    const pinned = pidfd >= 0 && this.pin(sys);
    const pid = pidfd < 0 ? pidfd : this.spawner!.spawn(this.spawnFds, true);
    if (pinned) {
      // micro's own mask back cannot fail (the CPU it keeps is in it): if it ever did, its
      // later helpers (CNI plugins, pasta) would inherit one CPU; said, not fatal.
      const rc = sys.schedSetaffinity(0, this.affinity);
      if (rc < 0) {
        console.error(
          `micro: warning: sched_setaffinity: micro's CPUs not set back after the watchdog's ` +
            `spawn: ${errnoName(-rc)}`,
        );
      }
      if (pid > 0) sys.schedSetaffinity(pid, this.affinity);
    }
    if (pidfd >= 0) sys.close(pidfd);
    this.forked(pid, sys);
    return pid;
  }

  /**
   * Pins micro's thread to the CPU it is on, for the spawn: the new task then runs there as
   * soon as micro blocks in the spawn's vfork. Unpinned, the kernel may queue it on the other
   * CPU, busy with the container's child, where it waited a scheduler tick (3.5 ms here, with
   * micro's own CPU idle: `perf sched timehist`). Both are given micro's mask back after.
   * False (nothing changed) where the mask or the CPU cannot be read or set.
   */
  private pin(sys: Sys): boolean {
    if (this.affinity.length === 0 || sys.getcpu(this.cpu) < 0) return false;
    const cpu = this.cpuWord[0];
    const at = cpu >> 3;
    const bit = 1 << (cpu & 7);
    if (at >= this.single.length || (this.affinity[at] & bit) === 0) return false;
    this.single.fill(0);
    this.single[at] = bit;
    return sys.schedSetaffinity(0, this.single) >= 0;
  }

  /** In micro, right after the fork (or a failed one, pid < 0): only the write end stays. */
  forked(pid: number, sys: Sys): void {
    this.pid = pid;
    sys.close(this.readFd);
    for (const fd of this.dirs) sys.close(fd);
    this.spawner?.close();
    for (const fd of [this.program, this.devNull]) if (fd >= 0) sys.close(fd);
  }

  /**
   * The run is over and cleaned up, or never started: the watchdog, if there is one,
   * leaves without touching anything. Safe to call twice.
   */
  dismiss(sys: Sys): void {
    if (this.writeFd < 0) return;
    if (this.pid === 0) this.forked(-1, sys);
    if (this.pid > 0) sys.write(this.writeFd, this.byte, 1);
    sys.close(this.writeFd);
    this.writeFd = -1;
    if (this.pid > 0) dismissed.push(this.pid);
    reapDismissed(sys);
  }

  /**
   * The watchdog itself, in the forked process: it never returns, nor throws (a throw would
   * unwind into micro's own code, its cleanup, in this copy of micro).
   */
  run(sys: Sys): never {
    try {
      this.watch(sys);
    } catch (e) {
      if (e instanceof SysUnwind) throw e;
    }
    sys.exit(1);
  }

  private watch(sys: Sys): void {
    sys.ignoreSignals();
    sys.setsid();
    sys.prctl(C.PR_SET_DUMPABLE, 0, 0, 0, 0);
    sys.chdir(ROOT);
    const r = this.closeRanges;
    for (let i = 0; i < r.length; i += 2) sys.closeRange(r[i], r[i + 1], 0);
    let n = sys.read(this.readFd, this.byte, 1);
    while (n === -4) n = sys.read(this.readFd, this.byte, 1); // EINTR
    if (n !== 0) sys.exit(0); // micro ended normally (or an error no EOF can explain)
    for (let i = 0; i < this.dirs.length; i++) {
      // One cgroup's failure (a throw is micro's bug) does not spare the others.
      try {
        this.kill(this.dirs[i], this.how[i], sys);
      } catch (e) {
        if (e instanceof SysUnwind) throw e;
      }
    }
    sys.exit(0);
  }

  /** Kills what is in one cgroup, as core/cgroups/fs.ts killCgroup does, through its fd. */
  private kill(dir: number, how: number, sys: Sys): void {
    if (how === 0 && this.writeFile(dir, CGROUP_KILL, ONE, sys)) return;
    if (how === 1 && this.writeFile(dir, FREEZER_STATE, FROZEN, sys)) {
      // Frozen, nothing can fork while the list is read and killed; the kills land on thaw.
      for (let i = 0; i < 100 && !this.isFrozen(dir, sys); i++) sys.sleep(5);
      this.killListed(dir, sys);
      this.writeFile(dir, FREEZER_STATE, THAWED, sys);
    }
    for (let i = 0; i < 20 && this.killListed(dir, sys) > 0; i++) sys.sleep(10);
  }

  private writeFile(dir: number, name: Uint8Array, value: Uint8Array, sys: Sys): boolean {
    const fd = sys.openat2(dir, name, C.O_WRONLY | C.O_CLOEXEC, 0, BENEATH);
    if (fd < 0) return false;
    const n = sys.write(fd, value, value.length);
    sys.close(fd);
    return n === value.length;
  }

  private isFrozen(dir: number, sys: Sys): boolean {
    const fd = sys.openat2(dir, FREEZER_STATE, C.O_RDONLY | C.O_CLOEXEC, 0, BENEATH);
    if (fd < 0) return true; // gone: nothing to wait for
    const n = sys.read(fd, this.buf, Math.min(16, this.buf.length));
    sys.close(fd);
    if (n < FROZEN.length) return false;
    for (let i = 0; i < FROZEN.length; i++) if (this.buf[i] !== FROZEN[i]) return false;
    return true;
  }

  /**
   * SIGKILL to every pid in the cgroup's cgroup.procs; how many there were. Each through a
   * pidfd opened first and signalled only when a second read still lists its pid: a pid
   * that ended after the first read and was given to a host process is never signalled
   * (the pidfd names the host process, which the second read does not list). Without
   * pidfds (Linux < 5.3, or refused by a seccomp filter around micro: any error but ESRCH)
   * a listed pid is killed by number.
   */
  private killListed(dir: number, sys: Sys): number {
    const n = this.readPids(dir, this.pids, sys);
    if (n === 0) return 0;
    const fds = this.pidfds;
    for (let i = 0; i < n; i++) fds[i] = sys.pidfdOpen(this.pids[i], 0);
    const m = this.readPids(dir, this.again, sys);
    for (let i = 0; i < n; i++) {
      let listed = false;
      for (let k = 0; k < m && !listed; k++) listed = this.again[k] === this.pids[i];
      const rc = !listed ? 0 : fds[i] >= 0 ? sys.pidfdSendSignal(fds[i], C.SIGKILL) : fds[i];
      if (rc < 0 && rc !== -3) sys.kill(this.pids[i], C.SIGKILL); // no pidfds; ESRCH: gone
      if (fds[i] >= 0) sys.close(fds[i]);
    }
    return n;
  }

  /** The pids in the cgroup's cgroup.procs into `out` (at most its length); how many. */
  private readPids(dir: number, out: Int32Array, sys: Sys): number {
    const fd = sys.openat2(dir, CGROUP_PROCS, C.O_RDONLY | C.O_CLOEXEC, 0, BENEATH);
    if (fd < 0) return 0;
    const buf = this.buf;
    let count = 0;
    let pid = 0;
    let n = sys.read(fd, buf, buf.length);
    while (n > 0) {
      for (let i = 0; i < n; i++) {
        const b = buf[i];
        if (b >= 48 && b <= 57) {
          pid = pid * 10 + b - 48;
          continue;
        }
        if (pid > 0 && count < out.length) out[count++] = pid;
        pid = 0;
      }
      n = sys.read(fd, buf, buf.length);
    }
    if (pid > 0 && count < out.length) out[count++] = pid;
    sys.close(fd);
    return count;
  }
}

const probed = new WeakMap<Sys, boolean>();

/**
 * Whether pidfd_open and pidfd_send_signal work here (Linux 5.3+, no seccomp filter around
 * micro refusing them), as the static watchdog kills through a pidfd; where they do not, the
 * forked watchdog serves. Asked with pid 0 and fd -1, which a kernel that has the calls
 * refuses with EINVAL and EBADF: no fd is made, nothing is signalled.
 */
function pidfdsWork(sys: Sys): boolean {
  let works = probed.get(sys);
  if (works === undefined) {
    works = sys.pidfdOpen(0, 0) === -22 && sys.pidfdSendSignal(-1, 0) === -9; // EBADF
    probed.set(sys, works);
  }
  return works;
}

function setupError(op: string, paths: Record<string, string>, errno: number): MicroError {
  return new MicroError("for the watchdog", {
    phase: "prepare",
    plugin: "engine",
    op,
    paths,
    errno,
  });
}
