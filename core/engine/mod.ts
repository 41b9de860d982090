/**
 * The fork engine: the only place that executes ops (DESIGN.md §1, §4). Parent ops run
 * here; child ops are compiled by `child.ts` before one raw clone with every namespace
 * flag; the parent then attaches (id maps), releases the child, reads its error pipe,
 * supervises and reports the exit status.
 */
import {
  errnoName,
  EXIT_CANNOT_INVOKE,
  EXIT_NOT_FOUND,
  firstLine,
  hintFor,
  MicroError,
  oneLine,
  warnCleanup,
} from "../errors.ts";
import { CHILD_PHASES, type Op } from "../ops.ts";
import { RunSignals, signalName } from "../signals.ts";
import { C, type CStr, cstr, type Sys } from "../sys/mod.ts";
import type { RecordedCgroup } from "../cgroups/fs.ts";
import { joining } from "../cgroups/warm.ts";
import { ParentOps, rootHostId } from "./parent.ts";
import { Watchdog } from "./watchdog.ts";
import {
  type ChildContext,
  type ChildProgram,
  CLONE_FLAGS,
  compileChild,
  CONSOLE_RECORD,
  EXEC_FAILED_RECORD,
  hookFailure,
  INIT_FAILED_RECORD,
  loadChildSteps,
  PID_RECORD,
  READY_RECORD,
  runChild,
  runSteps,
  SECCOMP_RECORD,
  type StepInfo,
  THREW_RECORD,
} from "./child.ts";
import { TRAMPOLINE } from "./trampoline.ts";
import { canVfork, VFORK_CODE, vforkRefused, WRITER_START_MS } from "./vfork.ts";
import { sealedProgram } from "./memfd.ts";
import { FileError, releaseScratch, writeTextAt } from "../files.ts";
import { copyWindowSize, Relays, type StdioEnds } from "./stdio.ts";
import { mark, now, span } from "../trace.ts";
import { COMPACT_AFTER_MS, compactHeap } from "../v8.ts";
import { cloneArgs } from "../sys/clone.ts";
import { bitmask } from "../sched.ts";

export interface EngineOptions {
  /** Host directory the new root is staged on. */
  rootPath: string;
  /** A detached copy of the image's mount (open_tree), or -1; see ChildContext. */
  imageFd?: number;
  imageId?: { dev: number; ino: number };
  /** Idmapped layer trees the child keeps at FD_IDMAPPED + k (see idmapped.ts). */
  layerFds?: readonly number[];
  /** Where the child attaches them: the overlay's lower directories. */
  layerMounts?: readonly string[];
  /** Idmapped bind trees (idmapBinds), kept after the layers; mount ops name them (`tree`). */
  mountTrees?: readonly number[];
  terminal: boolean;
  /** Relay micro's stdin to the command (-i); otherwise its stdin is /dev/null. */
  stdin: boolean;
  /**
   * `--pid`/`--ipc container:NAME`: a pidfd of that container's init and the CLONE_NEW*
   * flags of its namespaces to join (entered right before the clone, left right after).
   */
  join?: { pidfd: number; flags: number }[];
  /**
   * `micro exec`: a pidfd of the running container's init, which the plan's `enter` op
   * joins from the child (the caller opened it and checked its start time; it closes it).
   */
  enter?: number;
  /**
   * `micro exec`: the host ids of the container's root, read from its init's maps (the plan
   * has no id map op of its own): the owner of the pipes micro gives the command.
   */
  rootIds?: { uid: number; gid: number };
  /** `-a`: the output streams relayed (without a terminal); one not named is /dev/null. */
  attach?: { stdout: boolean; stderr: boolean };
  /** Signals, listened to since the run began; made here when not given. */
  signals?: RunSignals;
  /** Called once the child exists, before it is released (to record it in the state). */
  onChild?: (pid: number) => void;
  /** Called when the child has made its root and is about to exec (READY). */
  onReady?: (pid: number) => void;
  /** Called with every cgroup directory before the first is created (for the state). */
  onCgroups?: (all: RecordedCgroup[]) => void;
  /** Told what cleanup could not undo (a warning for the user). */
  onCleanupProblem?: (message: string) => void;
  /**
   * `run -d`: return as soon as the command runs, with its pid and micro's ends of its
   * stdio, leaving everything in place (no watchdog: the container outlives micro; the
   * supervisor waits for it and cleans up through the state, core/supervisor/). `micro exec
   * -d` too: the caller closes the ends; the command outlives micro.
   */
  detach?: boolean;
  /**
   * With `detach`: gives the running container away (to the supervisor). When it throws,
   * the container is killed and the whole run undone here, networks and cgroups too.
   */
  handover?: (pid: number, ends: StdioEnds) => Promise<void>;
  /** `micro start`: the container's layer (upper, work) is its last run's, kept. */
  reuseContainerDir?: boolean;
  /**
   * OCI `create`: the child gets micro's own stdin, stdout and stderr (the caller's), no
   * PDEATHSIG, and waits on this exec fifo (an O_PATH fd) before the exec; the engine
   * returns once it is there (see `createDetached`).
   */
  execFifo?: number;
  /**
   * OCI exec: the caller's stdio and no PDEATHSIG (as `execFifo`), but the engine returns
   * once the command has exec'd.
   */
  detached?: boolean;
  /** OCI exec: a pidfd of the container's first process, for the child's `setns` op. */
  nsFd?: number;
  /** OCI `--preserve-fds N`: micro's fds 3 to 2+N go on to the command (child.ts). */
  preserveFds?: number;
  /**
   * Called with the child's pid once it is attached (namespaces made, id maps written, in its
   * cgroups) and before it is released: the OCI prestart and createRuntime hooks.
   */
  beforeRelease?: (pid: number) => Promise<void>;
  /**
   * The listener fd of the child's seccomp filter (SCMP_ACT_NOTIFY), with the child's pid:
   * the OCI runtime sends it to listenerPath. The child waits until this returns; a throw
   * kills it and fails the start. The fd is closed by the engine after.
   */
  onSeccompListener?: (fd: number, pid: number) => Promise<void> | void;
  /** Called once the command has exec'd (`micro exec` lets go of the container's lock). */
  onStarted?: (pid: number) => void;
}

export interface RunResult {
  exitCode: number;
  /** Set when the command died of a signal. */
  signal?: number;
  /** The memory limit, when the OOM killer killed in the container's cgroup. */
  oomKilled?: number;
  /** With `detach`: the running command, and micro's ends of its stdio (the caller's now). */
  detached?: { pid: number; ends: StdioEnds };
}

const DEV_NULL = cstr("/dev/null");
const ONE = new Uint8Array([1]);
/** The id map writer's "running" byte lands here (core/engine/mod.ts start). */
const ONE_IN = new Uint8Array(1);
/** micro's word to a child waiting after it sent its seccomp listener (SECCOMP_RECORD). */
const ACK = new Uint8Array(8);

/** This thread's own namespaces, by the flag that names them, to come back to after a join. */
const OWN_NS: { flag: number; name: string; path: CStr }[] = [
  [C.CLONE_NEWPID, "/proc/thread-self/ns/pid_for_children"] as const,
  [C.CLONE_NEWIPC, "/proc/thread-self/ns/ipc"] as const,
  // OCI `linux.namespaces[].path`: namespaces one thread may enter and leave.
  [C.CLONE_NEWNET, "/proc/thread-self/ns/net"] as const,
  [C.CLONE_NEWUTS, "/proc/thread-self/ns/uts"] as const,
  [C.CLONE_NEWCGROUP, "/proc/thread-self/ns/cgroup"] as const,
].map(([flag, name]) => ({ flag, name, path: cstr(name) }));

/**
 * Enters the namespaces of `join` for the clone: setns with the pidfd (one call for all of
 * them, Linux 5.8+). A pid namespace entered so only decides where children go; the
 * returned fds take this thread back to its own (`leaveJoined`).
 */
function enterJoined(joins: { pidfd: number; flags: number }[], sys: Sys): [number, number][] {
  const back: [number, number][] = [];
  const all = joins.reduce((f, j) => f | j.flags, 0);
  for (const { flag, name, path } of OWN_NS) {
    if (!(all & flag)) continue;
    const fd = sys.open(path, C.O_RDONLY | C.O_CLOEXEC, 0);
    if (fd < 0) {
      for (const [f] of back) sys.close(f);
      check(fd, "open", { path: name });
    }
    back.push([fd, flag]);
  }
  for (const join of joins) {
    const rc = sys.setns(join.pidfd, join.flags);
    if (rc >= 0) continue;
    leaveJoined(back, sys);
    throw new MicroError("", {
      phase: "clone",
      plugin: "engine",
      op: "setns",
      paths: { flags: "0x" + join.flags.toString(16), into: "the joined container's init" },
      errno: -rc,
      hint: rc === -22
        ? "this kernel cannot setns with a pidfd (Linux 5.8+)"
        : "micro needs CAP_SYS_ADMIN over the joined container's namespaces",
    });
  }
  return back;
}

/** Back to this thread's own namespaces; the first error (as -errno), or 0. */
function leaveJoined(back: [number, number][], sys: Sys): number {
  let err = 0;
  for (const [fd, flag] of back) {
    const rc = sys.setns(fd, flag);
    if (rc < 0 && err === 0) err = rc;
    sys.close(fd);
  }
  return err;
}

export function cloneFlags(plan: Op[]): number {
  let flags = 0;
  for (const o of plan) {
    if (o.kind === "namespace") {
      const f = CLONE_FLAGS[o.args.flag];
      // CLONE_NEWTIME's bit is clone's exit signal: a time namespace is unshared (timens).
      if (f === undefined || f === C.CLONE_NEWTIME) {
        throw new Error(`unknown namespace flag ${o.args.flag}`);
      }
      flags |= f;
    }
  }
  return flags;
}

function check(rc: number, what: string, fields: Record<string, string> = {}): number {
  if (rc < 0) {
    throw new MicroError("", {
      phase: "prepare",
      plugin: "engine",
      op: what,
      paths: fields,
      errno: -rc,
      hint: hintFor(what, -rc),
    });
  }
  return rc;
}

export function decodeStatus(status: number): RunResult {
  const sig = status & 0x7f;
  if (sig === 0) return { exitCode: (status >> 8) & 0xff };
  return { exitCode: 128 + sig, signal: sig };
}

/** The setuid id-map helpers' runner: loaded by `start`, before the clone, for a plan with them. */
let idmapHelper: typeof import("./idmap_helper.ts") | undefined;

/**
 * The attach phase's id maps: the child's uid_map, gid_map and setgroups written directly,
 * or by the setuid helpers for a rootless range, in plan order.
 */
async function attach(plan: Op[], pid: number, sys: Sys): Promise<void> {
  for (const o of plan) {
    if (o.phase === "attach" && o.kind === "idmap-helper") {
      if (!idmapHelper) throw new Error("internal: the id-map helpers' runner was not loaded");
      await idmapHelper.runIdmapHelper(o, pid, sys);
    }
    if (o.phase === "attach" && o.kind === "cpu-affinity") {
      // Before the child joins its cgroup (ParentOps.attach, after this): the CPUs it runs
      // on as it moves there (OCI execCPUAffinity.initial, as runc).
      const rc = sys.schedSetaffinity(pid, bitmask(o.args.cpus));
      if (rc < 0) {
        throw new MicroError("", {
          phase: "attach",
          plugin: o.plugin,
          op: "sched_setaffinity",
          paths: { pid: String(pid), cpus: o.args.cpus.join(",") },
          errno: -rc,
          hint: hintFor("cpu-affinity", -rc),
        });
      }
    }
    if (o.phase !== "attach" || o.kind !== "proc-write") continue;
    const rc = writeTextAt(sys, `/proc/${pid}/${o.args.file}`, o.args.content);
    if (rc < 0) throw procWriteError(o, pid, -rc);
  }
}

type ProcWrite = Extract<Op, { kind: "proc-write" }>;

/** The attach's /proc/PID writes, in plan order (written by micro, or by its writer thread). */
function procWriteOps(plan: readonly Op[]): ProcWrite[] {
  return plan.filter((o): o is ProcWrite => o.phase === "attach" && o.kind === "proc-write");
}

/** A /proc/PID write that failed (`o` undefined: /proc/PID itself could not be opened). */
function procWriteError(
  o: ProcWrite | undefined,
  pid: number,
  errno: number,
  message = "",
): MicroError {
  const path = `/proc/${pid}${o ? `/${o.args.file}` : ""}`;
  const lowering = o?.args.file === "oom_score_adj" && (errno === 13 || errno === 1);
  return new MicroError("", {
    phase: "attach",
    plugin: o?.plugin ?? "user",
    op: o ? "write" : "open",
    paths: o ? { path, content: JSON.stringify(o.args.content.trim()) } : { path },
    errno,
    hint: lowering
      ? "lowering oom_score_adj needs CAP_SYS_RESOURCE, which micro does not have here: " +
        "give a value at or above micro's own (/proc/self/oom_score_adj)"
      : hintFor("proc-write", errno) ?? (message || undefined),
  });
}

/**
 * A memfd holding the exec trampoline, sealed: the container's first process execs this
 * instead of its command, so its /proc/self/exe is never the host's Deno runtime
 * (CVE-2019-5736). Under 1 KiB, made per start.
 */
export function sealedTrampoline(sys: Sys): number {
  return sealedProgram(sys, "micro-exec", TRAMPOLINE[sys.arch], true);
}

/** The child died of a signal before it reached execve: nothing outside it exists yet. */
export class FailedStart extends Error {}
/** The kernel refused the vfork clone: the fork path from the start, not counted as a try. */
export class VforkRefused extends FailedStart {}

/**
 * A first process that died before its exec: started again once on the fork path; a vfork
 * child's death is the run's error (it died inside a call in micro's own memory: nothing is
 * tried again on a runtime it may have left mid-call).
 */
function diedBeforeExec(message: string, vfork: boolean): Error {
  if (!vfork) return new FailedStart(message);
  return new MicroError(`${message} (a vfork child: not started again)`, {
    phase: "clone",
    plugin: "engine",
  });
}

/** A stopping signal arrived before the command ran: exit 128+N once cleaned up. */
export function stoppedError(n: number): MicroError {
  return new MicroError(`stopped by ${signalName(n)} before the command started`, {
    exitCode: 128 + n,
  });
}

/**
 * Runs the plan and returns when the container has exited. Throws MicroError when it
 * could not start; the caller owns state and cleanup. A child that dies of a signal before
 * its ready report is a failed start (DESIGN.md §4) and is retried once.
 */
export async function execute(plan: Op[], opts: EngineOptions, sys: Sys): Promise<RunResult> {
  const flags = cloneFlags(plan) | C.SIGCHLD;
  const childOps = plan.filter((o) => CHILD_PHASES.includes(o.phase));
  await loadChildSteps(childOps);
  const parent = new ParentOps(plan, sys, {
    onCreate: opts.onCgroups,
    reuseContainerDir: opts.reuseContainerDir,
  });
  const network = await networksOf(plan, sys, true);
  const signals = opts.signals ?? new RunSignals();
  const stopIfSignalled = () => {
    if (signals.stopSignal) throw stoppedError(signals.stopSignal);
  };
  let watchdog: Watchdog | null = null;
  /** Detached and running: nothing is undone here (the supervisor owns it now). */
  let handed = false;
  try {
    stopIfSignalled();
    // The container joins its cgroups within a few milliseconds, inside the grace period
    // the lock stays ready for after the launcher's last write: its warm-up stops now, so
    // that its writes (each holds the lock for writing, which forks wait on) and its exit
    // meet neither the clone nor the child's set-up.
    joining();
    parent.prepare();
    // PDEATHSIG is only a request the container can clear: with a cgroup of its own, a
    // watchdog kills it when micro dies. A detached container must outlive micro.
    const targets = opts.detach ? [] : parent.killTargets();
    if (targets.length) {
      watchdog = Watchdog.prepare(targets, sys, (flags & C.CLONE_NEWPID) !== 0);
    }
    mark("cgroups, watchdog prepare");
    const { pid, ends } = await startRetrying(
      network,
      signals,
      opts,
      () => start(plan, childOps, flags, opts, sys, parent, network, signals, watchdog),
      () => {
        // The static watchdog holds the failed child's pidfd: a new one for the next child.
        if (watchdog?.native && watchdog.pid !== 0) {
          watchdog.dismiss(sys);
          watchdog = Watchdog.prepare(targets, sys, true);
        }
      },
    );
    try {
      if (signals.stopSignal) {
        // Killed as it started: reap it, and nothing of the run is left.
        for (const fd of Object.values(ends)) if (fd >= 0) sys.close(fd);
        await sys.waitpid(pid);
        stopIfSignalled();
      }
      opts.onStarted?.(pid);
      if (opts.detach) {
        if (opts.handover) {
          try {
            await opts.handover(pid, ends);
          } catch (e) {
            // Nobody took it: it ends here, and the run is undone as any other.
            sys.kill(pid, 9);
            await sys.waitpid(pid);
            for (const fd of Object.values(ends)) if (fd >= 0) sys.close(fd);
            throw e;
          }
        }
        handed = true;
        return { exitCode: 0, detached: { pid, ends } };
      }
      // A forked watchdog shares micro's pages: compacting would copy them all.
      const compact = !watchdog || watchdog.native;
      const result = await supervise(pid, ends, opts, signals, sys, compact);
      mark("wait (command runs)");
      const oom = parent.oomKilled();
      return oom === undefined ? result : { ...result, oomKilled: oom };
    } catch (e) {
      // A stop signal that came meanwhile is the run's end, whatever else failed.
      stopIfSignalled();
      throw e;
    }
  } finally {
    if (!opts.signals) signals.remove();
    if (!handed) {
      await undoStart(network, parent, opts.onCleanupProblem);
      watchdog?.dismiss(sys);
      mark("engine cleanup");
    }
  }
}

/**
 * The engine's cleanup of a start (a run's end, a failed OCI create): the networks, then the
 * cgroups. Each part runs whatever the one before threw, and a throw is a problem said like
 * the others (a run then keeps its cgroups in its state for its own removal); without a
 * caller to hear them, problems go to stderr.
 */
export async function undoStart(
  network: Networks,
  parent: ParentOps,
  problem: ((message: string) => void) | undefined,
): Promise<void> {
  const say = problem ?? warnCleanup;
  const said = (e: unknown) => say(firstLine(e));
  try {
    for (const p of await network.cleanup()) say(p);
  } catch (e) {
    said(e);
  }
  try {
    for (const p of parent.cleanup()) say(p);
  } catch (e) {
    said(e);
  }
}

/**
 * `begin` (a start) under the engine's retry rule, for a run and for OCI create: a vfork the
 * kernel refused goes the fork path at once, not counted as a try; a first failed start is
 * tried once more, and a second is the run's error. Before each try, what a failed one
 * attached to a network is detached (DEL); a stop signal ends it, before a try, after the
 * detach or after a failed try. A detach that throws between tries ends it with the failed try's error (the detach's
 * is a cleanup problem).
 */
export async function startRetrying(
  network: Networks,
  signals: RunSignals,
  opts: EngineOptions,
  begin: () => Promise<{ pid: number; ends: StdioEnds }>,
  again?: () => void,
): Promise<{ pid: number; ends: StdioEnds }> {
  let failed: FailedStart | undefined;
  for (let attempt = 0;; attempt++) {
    if (signals.stopSignal) throw stoppedError(signals.stopSignal);
    try {
      for (const p of await network.cleanup()) opts.onCleanupProblem?.(p);
    } catch (e) {
      // No try on a network half detached: the failed try's error is the run's (a stop
      // signal's first), and the caller's undoStart detaches what it still can.
      if (signals.stopSignal) throw stoppedError(signals.stopSignal);
      if (!failed) throw e;
      (opts.onCleanupProblem ?? warnCleanup)(firstLine(e));
      throw new MicroError(failed.message, { phase: "clone", plugin: "engine" });
    }
    // A stop that came during a slow detach: no clone, no attach after it.
    if (signals.stopSignal) throw stoppedError(signals.stopSignal);
    try {
      return await begin();
    } catch (e) {
      if (signals.stopSignal) throw stoppedError(signals.stopSignal);
      if (!(e instanceof FailedStart)) throw e;
      mark(`failed start: ${e.message}`);
      if (e instanceof VforkRefused) {
        attempt--; // the fork path's own try, as if the vfork had not been tried
        continue;
      }
      if (attempt > 0) throw new MicroError(e.message, { phase: "clone", plugin: "engine" });
      failed = e;
      again?.();
    }
  }
}

/**
 * Detached copies of the directories holding the overlay's lower layers (a store image's,
 * when they share one) and its upper and work directories, with the empty directories of
 * the run's state the child attaches them on (see FD_LAYERS in child.ts): the store above
 * them stays closed to other users. Root only: a rootless caller owns its store, and may
 * not copy mounts.
 */
function storeFds(ops: Op[], rootPath: string, sys: Sys, idmappedLayers: boolean) {
  const out = { layersFd: -1, containerFd: -1, layersAt: "", containerAt: "" };
  const root = ops.find((o) => o.kind === "bind-root");
  const ov = root?.kind === "bind-root" ? root.args.overlay : undefined;
  if (!ov || (Deno.uid() ?? 0) !== 0) return out;
  const dirOf = (p: string) => p.slice(0, p.lastIndexOf("/")) || "/";
  const state = dirOf(rootPath);
  const copy = (dir: string, at: string) => {
    // EEXIST: a retried start (a failed first child) made it: the state dir is this run's.
    const made = sys.mkdirat(C.AT_FDCWD, cstr(at), 0o755);
    if (made < 0 && made !== -17) throw new FileError("create", at, -made);
    const fd = sys.openTree(C.AT_FDCWD, cstr(dir), C.OPEN_TREE_CLONE | C.O_CLOEXEC);
    if (fd < 0) {
      throw new MicroError("", { phase: "rootfs", op: "open_tree", paths: { dir }, errno: -fd });
    }
    return fd;
  };
  try {
    if (dirOf(ov.upper) === dirOf(ov.work)) {
      out.containerAt = `${state}/container`;
      out.containerFd = copy(dirOf(ov.upper), out.containerAt);
    }
    // Idmapped layers are copies already, attached by the child (see idmapped.ts).
    const lowers = idmappedLayers ? [] : ov.lowers ?? [];
    if (lowers.length && lowers.every((l) => dirOf(l) === dirOf(lowers[0]))) {
      out.layersAt = `${state}/layers`;
      out.layersFd = copy(dirOf(lowers[0]), out.layersAt);
    }
  } catch (e) {
    if (out.containerFd >= 0) sys.close(out.containerFd);
    throw e;
  }
  return out;
}

/** The run's network set-up: CNI (core/cni) and the rootless helpers (core/usernet). */
interface Networks {
  attach(pid: number): Promise<void>;
  cleanup(): Promise<string[]>;
}

/**
 * The plan's networks: CNI and, with `usernet` (not for OCI `create`, whose caller owns the
 * network), the rootless helpers. Each module is loaded only when the plan has its ops, and
 * before the clone (nothing may be compiled after it: core/v8.ts).
 */
export async function networksOf(plan: Op[], sys: Sys, usernet: boolean): Promise<Networks> {
  const all: Networks[] = [];
  if (plan.some((o) => o.kind === "cni-add" || o.kind === "net-join-files")) {
    const { NetworkOps } = await import("../cni/attach.ts");
    all.push(new NetworkOps(plan, sys));
  }
  if (usernet && plan.some((o) => o.kind === "usernet-start")) {
    const { UsernetOps } = await import("../usernet/mod.ts");
    all.push(new UsernetOps(plan));
  }
  return networks(...all);
}

/**
 * The plan's networks as one: attached in order, detached in reverse. Each is detached
 * whatever the one before threw; a throw is thrown again once all have had their turn, with
 * every problem on its one line, so that none is lost (each network forgets what it
 * detached as it starts: its cleanup runs once).
 */
export function networks(...all: Networks[]): Networks {
  return {
    async attach(pid) {
      for (const n of all) await n.attach(pid);
    },
    async cleanup() {
      const problems: string[] = [];
      const threw: string[] = [];
      for (const n of [...all].reverse()) {
        try {
          problems.push(...await n.cleanup());
        } catch (e) {
          threw.push(firstLine(e));
        }
      }
      if (threw.length) throw new Error([...threw, ...problems].map((p) => oneLine(p)).join("; "));
      return problems;
    },
  };
}

/**
 * When the child waits for micro (ChildContext.sync): after its root, which it makes while
 * micro attaches it, unless an OCI runtime's hooks are to run before its pivot_root
 * (createRuntime, runtime-spec); and first too where the attach writes its id maps or other
 * /proc files, or sets its CPUs (`attach` below). What the network's attach writes for its
 * root (the DNS files) the child mounts after its last wait (the mount op's `attached`).
 */
export function syncMode(plan: Op[], flags: number, opts: EngineOptions): ChildContext["sync"] {
  if (opts.beforeRelease || plan.some((o) => o.kind === "oci-hook")) return "first";
  const first = (flags & C.CLONE_NEWUSER) !== 0 ||
    plan.some((o) => o.phase === "attach" && FIRST_ATTACH.has(o.kind));
  return first ? "maps" : "root";
}

/** The attach ops `attach` runs, before the child's first wait in the "maps" mode. */
const FIRST_ATTACH: ReadonlySet<string> = new Set(["idmap-helper", "proc-write", "cpu-affinity"]);

/** Clones the child, attaches it and waits until it has exec'd (or failed). */
export async function start(
  plan: Op[],
  childOps: Op[],
  flags: number,
  opts: EngineOptions,
  sys: Sys,
  parent: ParentOps,
  network: Networks,
  signals: RunSignals,
  watchdog: Watchdog | null,
): Promise<{ pid: number; ends: StdioEnds }> {
  // Nothing may be compiled after the clone (core/v8.ts): what attach needs is loaded now.
  if (plan.some((o) => o.phase === "attach" && o.kind === "idmap-helper")) {
    idmapHelper ??= await import("./idmap_helper.ts");
  }
  const fds: number[] = [];
  const closeAll = () => {
    for (const fd of fds.splice(0)) sys.close(fd);
  };
  const sync = new Int32Array(2);
  const report = new Int32Array(2);
  const mode = syncMode(plan, flags, opts);
  const ends: StdioEnds = { stdin: -1, stdout: -1, stderr: -1, master: -1 };
  let prog;
  let into = -1;
  let vfork = false;
  /** A vfork child's id maps: written by micro's thread (Sys.procWrites) while it asks. */
  const writer = { ops: [] as ProcWrite[], ends: new Int32Array([-1, -1]) };
  try {
    check(sys.pipe2(sync, C.O_CLOEXEC), "pipe2");
    fds.push(sync[0], sync[1]);
    check(sys.socketpair(C.AF_UNIX, C.SOCK_SEQPACKET | C.SOCK_CLOEXEC, report), "socketpair");
    fds.push(report[0], report[1]);
    const devNull = check(sys.open(DEV_NULL, C.O_RDONLY | C.O_CLOEXEC, 0), "open", {
      path: "/dev/null",
    });
    fds.push(devNull);
    // Without a terminal: pipes, as Docker (the child's ends first, micro's second).
    const pipe = (childReads: boolean): [number, number] => {
      const p = new Int32Array(2);
      check(sys.pipe2(p, C.O_CLOEXEC), "pipe2");
      fds.push(p[0], p[1]);
      return childReads ? [p[0], p[1]] : [p[1], p[0]];
    };
    const stdio: [number, number, number] = [devNull, devNull, devNull];
    const detached = (opts.execFifo ?? -1) >= 0 || opts.detached === true;
    // OCI: the caller's own stdio (conmon's pipes, the shim's fifos) is the container's.
    if (detached) {
      for (let k = 0; k < 3; k++) {
        stdio[k] = check(sys.fcntl(k, C.F_DUPFD_CLOEXEC, 3), "fcntl(F_DUPFD_CLOEXEC)", {
          fd: String(k),
        });
        fds.push(stdio[k]);
      }
    }
    // -a without stdout or stderr: that stream is /dev/null, open for writing.
    if (!opts.terminal && (opts.attach?.stdout === false || opts.attach?.stderr === false)) {
      const w = check(sys.open(DEV_NULL, C.O_WRONLY | C.O_CLOEXEC, 0), "open", {
        path: "/dev/null",
      });
      fds.push(w);
      stdio[1] = stdio[2] = w;
    }
    if (!opts.terminal && !detached) {
      if (opts.stdin) [stdio[0], ends.stdin] = pipe(true);
      if (opts.attach?.stdout !== false) [stdio[1], ends.stdout] = pipe(false);
      if (opts.attach?.stderr !== false) [stdio[2], ends.stderr] = pipe(false);
    }
    const pipes = stdio.map((fd) => !detached && fd !== devNull) as [boolean, boolean, boolean];
    // In a user namespace the container's root must own the pipes, or it may neither
    // reopen them (/dev/stdout) nor give them to its user (runc's setupProcessPipes).
    const rootUid = rootHostId(plan, "uid_map") ?? opts.rootIds?.uid;
    const rootGid = rootHostId(plan, "gid_map") ?? opts.rootIds?.gid;
    const mine = rootUid === (Deno.uid() ?? 0) && rootGid === (Deno.gid() ?? 0);
    if (rootUid !== undefined && rootGid !== undefined && !mine) {
      for (let k = 0; k < 3; k++) {
        if (!pipes[k]) continue;
        check(sys.fchown(stdio[k], rootUid, rootGid), "fchown", {
          pipe: `the container's ${["stdin", "stdout", "stderr"][k]}`,
          owner: `${rootUid}:${rootGid}`,
        });
      }
    }
    const exe = sealedTrampoline(sys);
    fds.push(exe);
    const store = storeFds(childOps, opts.rootPath, sys, (opts.layerMounts?.length ?? 0) > 0);
    fds.push(...[store.layersFd, store.containerFd].filter((fd) => fd >= 0));
    into = parent.cloneInto();
    if (into >= 0) fds.push(into);
    vfork = canVfork({
      plan,
      childOps,
      flags,
      mode,
      into,
      options: {
        join: (opts.join?.length ?? 0) > 0,
        enter: (opts.enter ?? -1) >= 0,
        execFifo: (opts.execFifo ?? -1) >= 0,
        detached: opts.detach === true || detached,
        seccompListener: opts.onSeccompListener !== undefined,
      },
      forkedWatchdog: watchdog !== null && !watchdog.native,
    }, sys);
    // Born in its cgroup v2 (into), the vfork child joins none; else it joins its own.
    const procs = vfork && into < 0 ? parent.openProcs() : [];
    fds.push(...procs.map((p) => p.fd));
    writer.ops = vfork && mode === "maps" ? procWriteOps(plan) : [];
    if (writer.ops.length) {
      check(
        sys.socketpair(C.AF_UNIX, C.SOCK_SEQPACKET | C.SOCK_CLOEXEC, writer.ends),
        "socketpair",
      );
      fds.push(writer.ends[0], writer.ends[1]);
    }
    prog = compileChild(childOps, {
      ...store,
      rootPath: opts.rootPath,
      syncRead: sync[0],
      syncWrite: sync[1],
      sync: vfork ? "none" : mode,
      ...(vfork ? { cgroupProcs: procs, ...ignored(sys) } : {}),
      ...(writer.ends[1] >= 0 ? { procWrites: writer.ends[1] } : {}),
      dumpableForAttach: plan.some((o) => o.kind === "usernet-start"),
      networked: plan.some((o) => o.kind === "cni-add" || o.kind === "usernet-start"),
      report: report[1],
      stdio,
      pipes,
      imageFd: opts.imageFd ?? -1,
      imageId: opts.imageId,
      exe,
      layerFds: opts.layerFds,
      layerMounts: opts.layerMounts,
      mountTrees: opts.mountTrees,
      enterFd: opts.enter ?? -1,
      detached: opts.detach || detached,
      ...(detached ? { execFifo: opts.execFifo } : {}),
      ...((opts.nsFd ?? -1) >= 0 ? { nsFd: opts.nsFd } : {}),
      ...(opts.preserveFds ? { preserveFds: opts.preserveFds } : {}),
    }, sys);
  } catch (e) {
    closeAll();
    throw e;
  }
  mark("fds, trampoline, child program");

  let joined: [number, number][] = [];
  if (opts.join?.length) {
    try {
      joined = enterJoined(opts.join, sys);
    } catch (e) {
      closeAll();
      throw e;
    }
  }
  // From the sweep to the clones nothing may allocate (DESIGN.md §4). The watchdog is
  // forked once per run, right after the first child and before it is released, and
  // after micro has left any namespace it joined for the child.
  // cgroup v2: the child is born in its cgroup (clone3's CLONE_INTO_CGROUP); a kernel or
  // a seccomp filter without clone3 (ENOSYS, EPERM) or without CLONE_INTO_CGROUP (E2BIG,
  // EINVAL) fails it, and the plain clone below joins it after. The cgroup's own refusal
  // (EAGAIN at pids.max, EBUSY, EOPNOTSUPP) is the run's error: a cgroup.procs write would
  // move the child in past pids.max, which limits forks, not migrations.
  let pid: number;
  let born: boolean;
  /** What the writer thread did: 0, ((index + 1) << 16) | errno, or -errno (not asked). */
  let wrote = 0;
  if (vfork) {
    // The child runs its steps in micro's memory while micro sleeps, and has exec'd (or
    // failed) when this returns (core/engine/vfork.ts); it was born in its cgroup v2 (clone3)
    // or joined its v1 cgroups itself.
    const p = prog;
    const code = VFORK_CODE();
    const parentTid = new Int32Array(1);
    const writes = writer.ops.map((o) => ({
      file: cstr(o.args.file),
      content: new TextEncoder().encode(o.args.content),
    }));
    // The writer waits for the child's request on a thread of its own (micro's sleeps); it
    // says it runs before the clone, or the run forks (the child would wait for it forever).
    let done: Promise<number> | null = null;
    if (writes.length) {
      done = sys.procWrites(code, writer.ends[0], writes, parentTid);
      done.catch(() => {});
      const running = sys.pollNow(writer.ends[1], C.POLLIN, WRITER_START_MS) > 0 &&
        sys.read(writer.ends[1], ONE_IN, 1) === 1;
      if (!running) {
        vforkRefused(sys);
        closeAll();
        throw new VforkRefused("the id map writer thread did not start");
      }
    }
    try {
      pid = sys.vforkExec(flags, () => runSteps(p, sys), { code, into, parentTid, ...p.vfork! });
    } finally {
      // The child has exec'd or is gone: once micro's copy of its end is closed too, the
      // writer sees the end of the file if the child never asked.
      if (done) {
        sys.close(writer.ends[1]);
        fds.splice(fds.indexOf(writer.ends[1]), 1);
      }
    }
    born = true;
    if (done) {
      try {
        wrote = await done;
      } catch (e) {
        // Deno could not run the thread's call (Deno's own failure, not the writes').
        closeAll();
        if (pid > 0) {
          signals.settled();
          sys.kill(pid, C.SIGKILL);
          await sys.waitpid(pid);
        }
        throw new MicroError(`the id map writer thread failed: ${e}`, { phase: "attach" });
      }
    }
    // A kernel that takes no CLONE_VM with these flags, or (into a cgroup) no clone3 or no
    // CLONE_INTO_CGROUP (as above): the fork path, from the start, which has its fallbacks.
    if (pid === -22 || pid === -38 || (into >= 0 && (pid === -1 || pid === -7))) {
      vforkRefused(sys);
      closeAll();
      throw new VforkRefused(`the vfork clone was refused (${errnoName(-pid)})`);
    }
  } else {
    const args = into >= 0 ? cloneArgs(flags, into) : null;
    sys.prepareFork();
    pid = args === null ? -1 : sys.clone3(args);
    if (pid === 0) runChild(prog, sys);
    born = pid > 0;
    if (args === null || pid === -38 || pid === -1 || pid === -7 || pid === -22) {
      pid = sys.clone(flags);
    }
    if (pid === 0) runChild(prog, sys);
  }
  const left = joined.length ? leaveJoined(joined, sys) : 0;
  let guard = 0;
  if (pid > 0 && left === 0 && watchdog !== null && watchdog.pid === 0) {
    if (watchdog.native) {
      // The static program (a pid namespace of the container's own): spawned, once the
      // child exists (its init's pidfd), before the child is released.
      const t = now();
      guard = watchdog.spawn(pid, sys);
      span("watchdog spawn", t);
    } else {
      // glibc's fork, not a raw clone: the watchdog runs JavaScript that V8 may compile, and
      // compiling allocates; a raw clone could copy a malloc lock another thread held.
      guard = sys.fork();
      if (guard === 0) watchdog.run(sys);
      watchdog.forked(guard, sys);
    }
  }

  // The parent keeps only its ends: the sync pipe's write end, the report socket, and its
  // ends of the stdio pipes.
  const mine = [sync[1], report[0], ends.stdin, ends.stdout, ends.stderr];
  for (const fd of fds.splice(0)) {
    if (mine.includes(fd)) fds.push(fd);
    else sys.close(fd);
  }
  if (pid < 0) {
    closeAll();
    throw new MicroError("", {
      phase: "clone",
      plugin: "engine",
      op: "clone",
      paths: { flags: "0x" + flags.toString(16) },
      errno: -pid,
      hint: hintFor("clone", -pid),
    });
  }
  mark(vfork ? "vfork (child set-up until exec), watchdog" : "clone (child, watchdog)");
  signals.child(pid, (p, n) => sys.kill(p, n));
  const abandon = async () => {
    signals.settled();
    sys.kill(pid, C.SIGKILL);
    closeAll();
    await sys.waitpid(pid);
  };
  if (left < 0) {
    await abandon();
    throw new MicroError("", {
      phase: "clone",
      plugin: "engine",
      op: "setns",
      paths: { to: "micro's own namespaces" },
      errno: -left,
    });
  }
  if (guard < 0) {
    await abandon();
    throw new MicroError("", {
      phase: "clone",
      plugin: "engine",
      op: watchdog?.native ? "posix_spawn" : "fork",
      paths: { for: "the watchdog" },
      errno: -guard,
      hint: hintFor("clone", -guard),
    });
  }
  if (wrote > 0) {
    // The writer thread could not write a file; the child, told so, stopped.
    await abandon();
    throw procWriteError(writer.ops[(wrote >> 16) - 1], pid, wrote & 0xffff);
  }

  const record = new Int32Array(2);
  try {
    opts.onChild?.(pid);
    // A vfork child has no attach left to wait for: its id maps are written (`wrote`).
    if (!vfork) await attach(plan, pid, sys);
    // Its id maps written: it becomes root there and makes its root while micro goes on.
    if (mode === "maps" && !vfork) sys.write(sync[1], ONE, 1);
    parent.attach(pid, born);
    // In its cgroup, its namespaces made: the network, while it still waits.
    await network.attach(pid);
    await opts.beforeRelease?.(pid);
  } catch (e) {
    // The child died of a signal while it waited (the fork's failed start, DESIGN.md §4):
    // what failed was only a step that needs it (its namespace is gone): start again.
    // Not a zombie yet, it may be dying all the same: its memory goes before it is one, and
    // its /proc/PID files are root's from then on (a rootless id map write: EACCES, seen
    // after SIGSEGVs under load). It is abandoned either way: killed and reaped here, its
    // status is its own signal's when it was dying already (a fatal signal fixes the exit
    // status; a SIGKILL to an exiting task changes nothing), else ours.
    let gone = sys.reap(pid);
    const killed = gone.pid === 0;
    if (killed) {
      signals.settled();
      sys.kill(pid, C.SIGKILL);
      gone = await sys.waitpid(pid);
    }
    const died = gone.pid === pid ? decodeStatus(gone.status).signal : undefined;
    if (died && !(killed && died === C.SIGKILL)) {
      signals.settled();
      closeAll();
      throw diedBeforeExec(
        `the container's first process died of signal ${died} before exec`,
        vfork,
      );
    }
    if (gone.pid === pid && died === undefined) {
      // It exited by itself while it was attached (reaped here, or exiting as it was killed):
      // a step it runs before its wait failed, and it said which; that is the run's error,
      // not what its exit broke here (its network namespace gone, say).
      signals.settled();
      const got = await sys.recvRecord(report[0], record);
      closeAll();
      if (got.n === 8 && record[0] === THREW_RECORD) throw threwError(prog, record[1]);
      const step = got.n === 8 ? prog.info[record[0]] : undefined;
      if (step) throw childError(step, record[1]);
    } else if (killed) closeAll();
    else await abandon();
    throw e;
  }
  mark("attach (state, id maps, cgroups)");
  // Release the child. It sends the terminal's master (with -t), then READY just before it
  // execs the trampoline, then either a failure or nothing: EOF once the command's execve
  // closed the socket. The trampoline sends EXEC_FAILED when no candidate could be run.
  if (!vfork) sys.write(sync[1], ONE, 1);
  sys.close(sync[1]);
  fds.splice(fds.indexOf(sync[1]), 1);
  let master = -1;
  let ready = false;
  // What the child may send besides its steps' reports, and only as its program says: a
  // terminal's master once before READY (a console op), a forked `enter`'s pid once, and
  // that pid only if it is micro's child (CLONE_PARENT). Anything else is malformed: a
  // record forged by whatever reached the report socket must not hand micro an fd, nor make
  // it wait on, signal or kill a process of the host's.
  const sendsConsole = childOps.some((o) => o.kind === "console");
  let entering = childOps.some((o) =>
    o.kind === "enter" && (o.args.flags as string[]).includes("CLONE_NEWPID")
  );
  for (;;) {
    const got = await sys.recvRecord(report[0], record);
    if (
      got.n === 8 && record[0] === CONSOLE_RECORD && got.fd >= 0 && master < 0 && !ready &&
      sendsConsole
    ) {
      master = got.fd;
      copyWindowSize(sys, master);
      continue;
    }
    if (got.n === 8 && record[0] === SECCOMP_RECORD && got.fd >= 0 && !ready) {
      try {
        if (!opts.onSeccompListener) {
          throw new MicroError("the seccomp filter has a listener and nothing to send it to", {
            phase: "restrict",
            plugin: "seccomp",
            hint: "SCMP_ACT_NOTIFY needs the OCI runtime's listenerPath",
          });
        }
        await opts.onSeccompListener(got.fd, pid);
      } catch (e) {
        sys.close(got.fd);
        if (master >= 0) sys.close(master);
        await abandon();
        throw e;
      }
      sys.close(got.fd);
      // The child waits for these 8 bytes before its next call.
      sys.write(report[0], ACK, 8);
      continue;
    }
    // Only the console record may carry an fd; anything else passed along is closed.
    if (got.fd >= 0) sys.close(got.fd);
    // An `enter` op's fork into the container's pid namespace: that child goes on, micro's
    // too (CLONE_PARENT); the first one has left. The first one sends this after its fork
    // returned, so the fork may have sent READY already (a loaded host: CI saw it); EOF
    // cannot come first (the first one holds the socket until it exits).
    if (
      got.n === 8 && record[0] === PID_RECORD && record[1] > 0 && entering &&
      record[1] !== pid && record[1] !== guard && sys.isChild(record[1])
    ) {
      entering = false;
      await sys.waitpid(pid);
      pid = record[1];
      signals.child(pid, (p, n) => sys.kill(p, n));
      continue;
    }
    if (got.n === 8 && record[0] === READY_RECORD) {
      ready = true;
      opts.onReady?.(pid);
      // OCI create: the child now waits on the exec fifo; what follows is `start`'s.
      if ((opts.execFifo ?? -1) >= 0) {
        signals.settled();
        closeAll();
        return { pid, ends: { ...ends, master } };
      }
      continue;
    }
    signals.settled();
    if (got.n === 0 && ready) {
      mark("child set-up until exec");
      // OCI exec: micro's own ends are the caller's; it keeps none.
      if (opts.detached) {
        closeAll();
        return { pid, ends: { ...ends, master } };
      }
      sys.close(report[0]);
      return { pid, ends: { ...ends, master } };
    }
    closeAll();
    // The trampoline's own records, only after READY and only for what it was given to do.
    const fromTrampoline = ready && got.n === 8 && record[0] === EXEC_FAILED_RECORD
      ? prog.exec
      : undefined;
    // Every record that ends the start kills the child before reaping it: the child (or the
    // trampoline) exits by itself after sending one, and a record forged after READY (by
    // whatever reached the trampoline) must not leave micro waiting on a running command.
    if (master >= 0) sys.close(master);
    if (fromTrampoline) {
      await abandon();
      throw childError(fromTrampoline, record[1]);
    }
    if (ready && got.n === 8 && record[0] === INIT_FAILED_RECORD && prog.init) {
      await abandon();
      throw initError(record[1]);
    }
    if (got.n === 8 && record[0] === THREW_RECORD) {
      await abandon();
      throw threwError(prog, record[1]);
    }
    if (got.n === 0) {
      // EOF without READY: the child died before execve.
      const { pid: reaped, status } = await sys.waitpid(pid);
      if (reaped < 0) {
        throw new MicroError(`the container's first process vanished before exec`, {
          phase: "clone",
          plugin: "engine",
        });
      }
      const r = decodeStatus(status);
      if (r.signal) {
        throw diedBeforeExec(
          `the container's first process died of signal ${r.signal} before exec`,
          vfork,
        );
      }
      throw new MicroError(`the container's first process exited with ${r.exitCode} before exec`, {
        phase: "clone",
        plugin: "engine",
      });
    }
    if (got.n !== 8 || record[0] < 0 || record[0] >= prog.info.length) {
      await abandon();
      throw new MicroError(
        got.n < 0
          ? `reading the child's report: ${errnoName(-got.n)}`
          : `the child sent a malformed report (${got.n} bytes, step ${record[0]})`,
        { phase: "clone", plugin: "engine" },
      );
    }
    await abandon();
    throw childError(prog.info[record[0]], record[1]);
  }
}

/** A step of the child's threw (THREW_RECORD): micro's fault, said as such. */
function threwError(prog: ChildProgram, step: number): MicroError {
  const info = prog.info[step];
  return new MicroError(
    `the container's set-up failed inside micro itself (an exception in step ${step}` +
      `${info ? `, ${info.plugin} ${info.kind}` : ""}); nothing was run`,
    {
      phase: info?.phase ?? "clone",
      plugin: info?.plugin ?? "engine",
      hint: "this is a bug in micro: report it with the command line and MICRO_TRACE=1's output",
    },
  );
}

/** The init (`--init`) could not make itself undumpable, block signals or fork. */
function initError(errno: number): MicroError {
  return new MicroError("", {
    phase: "exec",
    plugin: "process",
    op: "init",
    errno,
    hint: hintFor("init", errno),
  });
}

/** The error for a child's `[step, errno]` report. */
function childError(step: StepInfo, errno: number): MicroError {
  const hook = step.kind === "oci-hook" ? hookFailure(errno, step.paths.timeout) : undefined;
  if (hook !== undefined) {
    return new MicroError(hook, {
      phase: step.phase,
      plugin: step.plugin,
      op: step.kind,
      paths: step.paths,
      hint: "the hook runs in the container's namespaces; its own output went to the " +
        "container's stdout and stderr",
    });
  }
  if (step.kind === "execve") {
    const notFound = errno === 2 || errno === 20;
    return new MicroError("", {
      phase: "exec",
      plugin: step.plugin,
      op: "execve",
      paths: step.paths,
      errno,
      hint: step.hints?.[errno] ?? hintFor("execve", errno),
      exitCode: notFound ? EXIT_NOT_FOUND : EXIT_CANNOT_INVOKE,
    });
  }
  return new MicroError("", {
    phase: step.phase,
    plugin: step.plugin,
    op: step.kind,
    paths: step.paths,
    errno,
    hint: step.hints?.[errno] ?? hintFor(step.kind, errno),
  });
}

/**
 * Relays stdio and waits for the container's init to exit; then drains its output (bounded)
 * and restores micro's terminal, on every path.
 */
async function supervise(
  pid: number,
  ends: StdioEnds,
  opts: EngineOptions,
  signals: RunSignals,
  sys: Sys,
  compact: boolean,
): Promise<RunResult> {
  let restore = () => {};
  let relays: Relays | null = null;
  try {
    if (ends.master >= 0 && opts.stdin && Deno.stdin.isTerminal()) {
      Deno.stdin.setRaw(true);
      restore = () => Deno.stdin.setRaw(false);
    }
    relays = new Relays(sys, ends, { stdin: opts.stdin });
    const master = ends.master;
    signals.running(master >= 0 ? () => copyWindowSize(sys, master) : null);
    // A container that runs on: its start-up garbage is given back (core/v8.ts).
    let waiting = compact;
    if (compact) {
      // A timer that could not be made (-errno) compacts nothing; nor may a failure here
      // reject unhandled (Deno would end micro before its cleanup).
      sys.sleepAsync(COMPACT_AFTER_MS).then((rc) => {
        if (rc < 0 || !waiting) return;
        const t = now();
        releaseScratch();
        const gc = compactHeap(sys);
        span(gc ? "heap compaction (running)" : "malloc trim (running, no --expose-gc)", t);
      }).catch(() => {});
    }
    const { pid: got, status } = await sys.waitpid(pid).finally(() => waiting = false);
    if (got < 0) throw new MicroError(`waitpid ${pid}: ${errnoName(-got)}`);
    signals.draining();
    await relays.finish(signals.stopped);
    return decodeStatus(status);
  } finally {
    restore();
    if (relays) relays.close();
    else for (const fd of Object.values(ends)) if (fd >= 0) sys.close(fd);
  }
}

/** A vfork child's `ignoredSignals`: absent where this process's cannot be read. */
function ignored(sys: Sys): { ignoredSignals?: number[] } {
  const signals = sys.ignoredSignals();
  return signals ? { ignoredSignals: signals } : {};
}
