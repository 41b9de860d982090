/**
 * `micro run`: the prepared run (core/prepare.ts, shared with `micro plan`, so a plan shows
 * exactly what a run does) → state → engine.
 */
import type { Request } from "./cli.ts";
import { execute, stoppedError } from "./engine/mod.ts";
import type { StdioEnds } from "./engine/stdio.ts";
import type { RunSignals } from "./signals.ts";
import { isoTime } from "./clock.ts";
import { errnoName, errnoOf, firstLine, MicroError, warnCleanup } from "./errors.ts";
import { resolveTargets } from "./engine/resolve.ts";
import { ImageUse } from "./engine/image.ts";
import { formatBytes } from "./cgroups/units.ts";
import { prepare, type Prepared } from "./prepare.ts";
import {
  createRunDir,
  isAlive,
  killRecorded,
  lockRun,
  processStartTime,
  ptracersInNs,
  readState,
  READY_MARKER,
  removeRun,
  type RunState,
  stateRoot,
  untrustedRoot,
  untrustedRootError,
  writeState,
} from "./state.ts";
import { openLibc } from "./sys/libc.ts";
import { FileError } from "./files.ts";
import { C, cstr, type Sys } from "./sys/mod.ts";
import { CLONE_FLAGS } from "./engine/child.ts";
import { execRecord } from "./exec/record.ts";
import type { Found } from "./exec/find.ts";
import { plannedCgroups } from "./engine/parent.ts";
import { mark } from "./trace.ts";
import { idmapImage, type IdmappedImage, shiftedMaps } from "./engine/idmapped.ts";
import { type ContainerRecord, ContainerRun, hiddenMountPoints } from "./store/containers.ts";
import { storeRoot } from "./store/paths.ts";

export { isDirectoryImage, prepare, type Prepared, type StoreImageUse } from "./prepare.ts";

const EMPTY = cstr("");
const TREE_FLAGS = C.OPEN_TREE_CLONE | C.AT_RECURSIVE | C.AT_EMPTY_PATH | C.O_CLOEXEC;

/** What a detached run hands to the supervisor (core/supervisor/server.ts Handover). */
export interface DetachedRun {
  runId: string;
  stateDir: string;
  recordDir: string;
  pid: number;
  startTime: number;
  /** micro's ends of its stdio (core/engine/stdio.ts StdioEnds); -1 where there is none. */
  stdout: number;
  stderr: number;
  stdin: number;
  master: number;
}

/**
 * `run -d`'s runner (commands/lifecycle.ts): once the command runs, `handover` gives the
 * container to the supervisor; it throws when the supervisor did not take it.
 */
export interface Detach {
  handover(run: DetachedRun, req: Request): Promise<void>;
  /** `micro start`: this container again (its id, name and layer), not a new one. */
  restart?: ContainerRecord;
}

export async function runCommand(
  argv: string[],
  signals: RunSignals,
  detach?: Detach,
): Promise<number> {
  const p = await prepare(argv, detach?.restart);
  try {
    return await runPrepared(p, argv, signals, detach);
  } finally {
    // The image's fd goes with the run, not with the process: a serve worker runs on.
    if (p.image) openLibc().close(p.image.fd);
  }
}

async function runPrepared(
  p: Prepared,
  argv: string[],
  signals: RunSignals,
  detach?: Detach,
): Promise<number> {
  if (p.req.detach && !detach) throw new MicroError("internal: run -d without a supervisor");
  // A signal that came during the checks stops the run before anything exists.
  if (signals.stopSignal) throw stoppedError(signals.stopSignal);
  const uid = Deno.uid() ?? 0;
  const sys = openLibc();
  let dir: string;
  try {
    dir = createRunDir(stateRoot(uid), p.id, uid);
  } catch (e) {
    if (e instanceof FileError && e.errno === 17 && e.path.endsWith(`/${p.id}`)) {
      throw new MicroError(`a container named "${p.id}" is already running`, {
        hint: "choose another --name",
      });
    }
    const hint = "micro keeps a run's state there: set MICRO_STATE_ROOT (or, rootless, " +
      "XDG_RUNTIME_DIR) to a directory micro may write";
    if (e instanceof FileError) throw new MicroError(`the state directory: ${e.message}`, { hint });
    if (e instanceof MicroError) throw e;
    throw new MicroError(`the state directory: ${(e as Error).message}`, { hint });
  }
  // Held to the end of the cleanup: gc leaves a run whose lock is held (state.ts lockRun).
  let runLock = -1;
  try {
    runLock = lockRun(dir, sys);
    // Docker's --cidfile: made exclusively once the run can go ahead; left behind at the end.
    if (p.req.cidfile) writeCidfile(p.req.cidfile, p.containerId);
  } catch (e) {
    removeRun(dir, null, () => sys);
    if (runLock >= 0) sys.close(runLock);
    p.stored?.hold.release();
    throw e;
  }
  // What SIGTERM to micro does while the command runs (docker stop).
  const stop = p.ops.find((o) => o.kind === "stop");
  if (stop?.kind === "stop") signals.stopWith(stop.args.number, stop.args.timeout);
  mark("state dir");
  // Warnings once the run can go ahead (not before an error that stops it).
  for (const o of p.ops) {
    const asked = o.plugin === "cgroups"
      ? p.spec.micro.cgroupLimits
      : o.plugin === "user" || o.plugin === "net";
    if (o.kind === "skipped" && asked) {
      console.error(`micro: warning: ${o.args.reason}`);
    }
  }
  const state: RunState = {
    id: p.id,
    pid: Deno.pid,
    startTime: processStartTime(Deno.pid),
    image: p.stored ? p.stored.ref : p.spec.root.path,
    created: isoTime(),
    containerId: p.containerId,
    exec: execRecord(p.ops),
  };
  const image = p.image;
  if (image) state.imageId = { path: image.path, dev: image.dev, ino: image.ino };
  const container = new ContainerRun(p.req.root ?? storeRoot(uid), containerRecord(p, argv, state));
  if (detach?.restart) container.again(detach.restart);
  if (detach) {
    state.detached = true;
    state.record = container.dir;
  }
  /** The supervisor took the container: nothing of the run is undone here. */
  let handed = false;
  let use: ImageUse | null = null;
  let tree = -1;
  let mapped: IdmappedImage | null = null;
  /** The containers joined (--pid/--ipc container:NAME), by name. */
  const joins = new Map<string, { pidfd: number; flags: number }>();
  /** The engine ran and its cleanup removed every cgroup: removeRun need not try again. */
  let engineCleaned = false;
  const removeOnExit = () => {
    if (tree >= 0) sys.close(tree);
    mapped?.close();
    for (const j of joins.values()) sys.close(j.pidfd);
    if (engineCleaned) delete state.cgroups;
    if (!container.made) delete state.containerDir; // not this run's
    if (use) {
      use.release();
      delete state.imageId;
    }
    // A supervisor that failed or died while taking the container may have recorded its
    // stdio keeper in the state already: that process goes with the run.
    if (detach) {
      const k = readState(dir)?.keeper;
      if (k && isAlive(k.pid, k.startTime)) killRecorded(k.pid, k.startTime);
    }
    try {
      removeRun(dir, state, () => sys, true);
    } catch (e) {
      // A state dir that cannot go (a mount left in it: EBUSY) does not turn the command's
      // own exit code into micro's failure; the next micro's gc tries again.
      warnCleanup(`${dir}: ${firstLine(e)}; left for the next micro's gc`);
    } finally {
      if (runLock >= 0) sys.close(runLock);
      runLock = -1;
    }
    p.stored?.hold.release();
  };
  try {
    const overlay = p.ops.find((o) => o.kind === "overlay-dirs");
    // The container's directory (its record, the overlay's layers) is recorded before it is
    // made when it is to go at the end (--rm); else it is kept, and gc leaves it.
    if (p.req.rm) state.containerDir = container.dir;
    // The cgroups the engine will create, recorded in this same write (before any exists).
    const { records } = plannedCgroups(p.ops);
    if (records.length) state.cgroups = records;
    writeState(dir, state);
    if (detach?.restart) container.reuse();
    else container.create();
    mark("container record");
    let resolved = { ops: p.ops, created: [] as string[], files: [] as string[] };
    if (p.stored) {
      // Resolved in the layers merged as the overlay will show them; made in its upper.
      resolved = resolveTargets(p.ops, p.stored.view);
      container.record.mountPoints = hiddenMountPoints(
        resolved.ops,
        resolved.created,
        resolved.files,
      );
    } else if (image && overlay) {
      // The image is never written: mount points are made in the container's upper layer.
      resolved = resolveTargets(p.ops, image.dir);
      container.record.mountPoints = hiddenMountPoints(
        resolved.ops,
        resolved.created,
        resolved.files,
      );
    } else if (image) {
      use = ImageUse.start(stateRoot(uid), image, sys, () => {
        resolved = resolveTargets(p.ops, image.dir);
        return resolved;
      });
    }
    // --pid/--ipc container:NAME: each container's init opened once, as a pidfd.
    for (const o of p.ops) {
      if (o.kind !== "join") continue;
      const name = o.args.container;
      if (!joins.has(name)) {
        // Its set-up done first: before its root is made, its network files and its
        // bounding set are not yet its own (core/exec/find.ts waitReady).
        // Loaded only by a run that joins (as the rest of core/exec: not on a plain run's path).
        const { findContainer, waitReady } = await import("./exec/find.ts");
        const found = findContainer(name, uid);
        await waitReady(found, sys, undefined, () => signals.stopSignal !== 0);
        joins.set(name, { pidfd: openJoinTarget(name, uid, sys, found), flags: 0 });
      }
      joins.get(name)!.flags |= CLONE_FLAGS[o.args.flag];
    }
    for (const [name, j] of joins) {
      if (j.flags & CLONE_FLAGS.CLONE_NEWPID) refusePtracers(name, pidOfPidfd(j.pidfd));
    }
    const madeRoot = sys.mkdirat(C.AT_FDCWD, cstr(`${dir}/root`), 0o755);
    if (madeRoot < 0) throw new FileError("create", `${dir}/root`, -madeRoot);
    // The child's root is a copy of the mount of the very directory opened above; a
    // rootless parent may not copy mounts, and its child checks what it binds by name.
    tree = image ? sys.openTree(image.fd, EMPTY, TREE_FLAGS) : -1;
    mark("mount targets, root tree");
    // Root running a user namespace that shifts ids (hardened): the image idmapped to it.
    mapped = await idmapImage(
      sys,
      resolved.ops,
      uid,
      tree,
      p.stored?.hold.layers,
      `${dir}/idmapped`,
      // A file system without idmapped mounts (tmpfs before Linux 6.3, 9p): the run goes on
      // as before them, quietly (a warning on every hardened run there helps nobody).
      () => {},
    );
    if (shiftedMaps(resolved.ops, uid)) mark("idmapped image");
    // execute() always ends with its cleanup, which removes the cgroups it created.
    engineCleaned = true;
    const result = await execute(mapped.ops, {
      rootPath: `${dir}/root`,
      imageFd: tree,
      layerFds: mapped.layerFds,
      layerMounts: mapped.layerMounts,
      imageId: image ? { dev: image.dev, ino: image.ino } : undefined,
      terminal: p.req.terminal,
      stdin: p.req.stdin,
      ...(p.req.attach ? { attach: p.req.attach } : {}),
      ...(joins.size ? { join: [...joins.values()] } : {}),
      signals,
      onChild(pid) {
        // This write also makes durable which cgroups the run created (marked in
        // state.cgroups by the engine): a later gc kills only those. A forked child joins
        // them after it; a vfork child (v1) or a clone3 one (v2) is in them already, and a
        // gc after a crash before it waits for them to empty (removeRecorded).
        state.containerPid = pid;
        state.containerStartTime = processStartTime(pid);
        state.readyMarker = true;
        writeState(dir, state);
        container.started();
      },
      onReady() {
        const fd = sys.open(
          cstr(`${dir}/${READY_MARKER}`),
          C.O_WRONLY | C.O_CREAT | C.O_NOFOLLOW | C.O_CLOEXEC,
          0o600,
        );
        if (fd >= 0) return void sys.close(fd);
        // Without the marker every exec would wait for it in vain: the promise is taken back.
        try {
          delete state.readyMarker;
          writeState(dir, state);
        } catch (e) {
          console.error(
            `micro: warning: ${dir}/${READY_MARKER}: ${errnoName(-fd)}, and the state not ` +
              `written again (${
                (e as Error).message
              }): micro exec will wait for the marker in vain`,
          );
        }
      },
      onCgroups(all) {
        // The engine's own records (it marks them created); written again only when they
        // are not the ones the first write made durable.
        const same = JSON.stringify(all) === JSON.stringify(state.cgroups ?? []);
        state.cgroups = all;
        if (!same) writeState(dir, state);
      },
      onCleanupProblem: (m) => {
        engineCleaned = false;
        warnCleanup(m);
      },
      detach: !!detach,
      ...(detach
        ? {
          handover: (pid: number, ends: StdioEnds) =>
            detach.handover({
              runId: p.id,
              stateDir: dir,
              recordDir: container.dir,
              pid,
              startTime: state.containerStartTime ?? processStartTime(pid),
              stdout: ends.stdout,
              stderr: ends.stderr,
              stdin: ends.stdin,
              master: ends.master,
            }, p.req),
        }
        : {}),
      reuseContainerDir: !!detach?.restart,
    }, sys);
    if (detach && result.detached) {
      handed = true;
      return 0;
    }
    const limit = result.oomKilled === undefined ? "" : formatBytes(result.oomKilled);
    // The container was killed when its init died of SIGKILL (or a shell init reports 137
    // for a command the killer took); a process the killer took while init went on is
    // reported, and the command's own exit code stands.
    const killed = result.oomKilled !== undefined &&
      (result.signal === 9 || result.exitCode === 137);
    const exitCode = killed ? 137 : result.exitCode;
    if (killed) console.error(`micro: container killed by the OOM killer (memory limit ${limit})`);
    else if (result.oomKilled !== undefined) {
      console.error(
        `micro: warning: the OOM killer killed a process in the container (memory limit ${limit})`,
      );
    }
    if (p.req.json) {
      console.error(JSON.stringify({
        id: p.id,
        exitCode,
        signal: result.signal ?? null,
        oomKilled: result.oomKilled !== undefined,
      }));
    }
    container.exited(exitCode);
    return exitCode;
  } catch (e) {
    container.failed(e);
    throw e;
  } finally {
    if (handed) {
      if (tree >= 0) sys.close(tree);
      mapped?.close();
      for (const j of joins.values()) sys.close(j.pidfd);
    } else removeOnExit();
    mark("run cleanup (state, record)");
  }
}

/** The container's record as the run makes it (core/store/containers.ts). */
function containerRecord(p: Prepared, argv: string[], state: RunState): ContainerRecord {
  const root = p.ops.find((o) => o.kind === "bind-root");
  const overlay = root?.kind === "bind-root" ? root.args.overlay : undefined;
  const image = p.image;
  // The options as typed: argv after the verb, up to IMAGE (or `--`).
  let end = argv.length - p.req.args.length;
  if (argv[end - 1] === "--") end--;
  if (p.req.image !== null) end--;
  if (argv[end - 1] === "--") end--;
  return {
    id: p.containerId,
    name: p.id,
    runId: p.id,
    image: p.stored
      ? { id: p.stored.hold.image.id, name: p.stored.ref }
      : image
      ? { path: image.path }
      : null,
    // A store layer is immutable and named by its digest: its path is its identity.
    ...(overlay && p.stored
      ? { lower: p.stored.hold.layers, layer: { userxattr: overlay.userxattr } }
      : overlay && image
      ? {
        lower: [image.path],
        lowerIds: [{ dev: image.dev, ino: image.ino }],
        layer: { userxattr: overlay.userxattr },
      }
      : {}),
    command: p.spec.process.args,
    profiles: p.req.profiles.length ? p.req.profiles : ["default"],
    options: argv.slice(1, Math.max(1, end)),
    rm: p.req.rm,
    ...(p.req.labels ? { labels: p.req.labels } : {}),
    ...(p.spec.micro.stopSignal !== undefined ? { stopSignal: p.spec.micro.stopSignal } : {}),
    ...(p.spec.micro.stopTimeout !== undefined ? { stopTimeout: p.spec.micro.stopTimeout } : {}),
    created: state.created,
    state: "created",
    pid: state.pid,
    startTime: state.startTime,
  };
}

/**
 * Writes the container id to `path`, created exclusively (O_CREAT|O_EXCL: never through a
 * symlink, never over a file), as Docker refuses an existing cidfile.
 */
export function writeCidfile(path: string, id: string): void {
  let file: Deno.FsFile;
  try {
    file = Deno.openSync(path, { write: true, createNew: true, mode: 0o644 });
  } catch (e) {
    const errno = errnoOf(e, 5);
    throw new MicroError("", {
      phase: "prepare",
      plugin: "engine",
      op: "open(cidfile)",
      paths: { path },
      errno,
      hint: errno === 17
        ? "the container id file exists: is another container using it? remove it first"
        : undefined,
    });
  }
  try {
    file.writeSync(new TextEncoder().encode(id));
  } finally {
    file.close();
  }
}

/**
 * `--pid`/`--ipc`/`--network container:NAME`: the running container's init, from micro's state root,
 * opened as a pidfd; its start time is checked after the pidfd exists, so the fd is that
 * very process and not a later one that got its pid.
 */
export function openJoinTarget(
  name: string,
  uid: number,
  sys: Sys,
  /** The container as found (and waited for) already. */
  found: Found,
): number {
  const root = stateRoot(uid);
  const bad = untrustedRoot(root, uid);
  if (bad) throw untrustedRootError(root, uid, bad);
  const notRunning = () =>
    new MicroError(`container "${name}" is not running: there is no namespace of it to join`, {
      hint: "start it first (micro run --name NAME ...), then join it",
    });
  // NAME, ID or a unique ID prefix, as the lifecycle commands take it.
  const st = found.state;
  if (!st.containerPid || st.containerStartTime === undefined) throw notRunning();
  if (processStartTime(st.pid) !== st.startTime) throw notRunning();
  const fd = sys.pidfdOpen(st.containerPid, 0);
  if (fd === -3) throw notRunning(); // ESRCH
  if (fd < 0) {
    throw new MicroError("", {
      phase: "prepare",
      plugin: "engine",
      op: "pidfd_open",
      paths: { container: name, pid: String(st.containerPid) },
      errno: -fd,
      hint: fd === -38 ? "joining a container's namespaces needs Linux 5.8+" : undefined,
    });
  }
  if (processStartTime(st.containerPid) !== st.containerStartTime) {
    sys.close(fd);
    throw notRunning();
  }
  return fd;
}

/** The pid a pidfd refers to (its fdinfo), or -1 when that process is gone. */
export function pidOfPidfd(pidfd: number, proc = "/proc"): number {
  try {
    const m = /^Pid:\s*(-?\d+)$/m.exec(Deno.readTextFileSync(`${proc}/self/fdinfo/${pidfd}`));
    return m ? Number(m[1]) : -1;
  } catch {
    return -1;
  }
}

/**
 * The processes in the pid namespace of `pid` that may hold CAP_SYS_PTRACE (in their
 * bounding set): from the host's user namespace that capability passes every ptrace
 * check, the dumpable flag included. `proc` is a seam for tests.
 */
export function ptracersIn(pid: number, proc = "/proc"): number[] {
  let ns: string;
  try {
    ns = Deno.readLinkSync(`${proc}/${pid}/ns/pid`);
  } catch {
    return [];
  }
  return ptracersInNs(ns, proc);
}

/**
 * `--pid container:NAME`: micro's child is in that pid namespace from its clone to its
 * exec, as root with every capability, holding micro's memory and fds (the image, the
 * store's layers) in the host's mount namespace. A process there that may hold
 * CAP_SYS_PTRACE could attach to it in that window (non-dumpable does not stop it) and
 * act as micro on the host: such a join is refused.
 */
function refusePtracers(name: string, pid: number): void {
  const found = pid > 0 ? ptracersIn(pid) : [];
  if (!found.length) return;
  throw new MicroError(
    `--pid container:${name}: refused: process${found.length > 1 ? "es" : ""} ` +
      `${found.slice(0, 5).join(", ")} in its pid namespace may hold CAP_SYS_PTRACE, and ` +
      `could take over micro's process while it sets this container up`,
    {
      phase: "check",
      plugin: "pid",
      hint: "run those without SYS_PTRACE (no --cap-add SYS_PTRACE, no --privileged), or " +
        "do not share their pid namespace",
    },
  );
}
