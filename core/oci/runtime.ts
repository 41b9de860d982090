/**
 * The OCI verbs that touch containers: create (the bundle through checks, plan and the
 * engine, the process left waiting on the exec fifo), start, kill, delete, and run (all
 * three). The command line is commands/oci.ts.
 */
import { isoTime } from "../clock.ts";
import { errnoName, MicroError, MicroErrors, warnCleanup } from "../errors.ts";
import { runChecks } from "../checks.ts";
import { probeHost } from "../host.ts";
import { planRun } from "../plan.ts";
import type { Op } from "../ops.ts";
import { openLibc } from "../sys/libc.ts";
import { C, cstr, type Sys } from "../sys/mod.ts";
import { decodeStatus } from "../engine/mod.ts";
import { createDetached } from "../engine/detached.ts";
import { openImage } from "../engine/image.ts";
import { resolveTargets } from "../engine/resolve.ts";
import { plannedCgroups } from "../engine/parent.ts";
import { CLONE_FLAGS } from "../engine/child.ts";
import { CLONE_FLAG } from "../../plugins/_ns.ts";
import { removeRecorded } from "../cgroups/fs.ts";
import { idmapBinds } from "../engine/idmapped.ts";
import { newId, processStartTime, ptracersInNs, signalProcess } from "../state.ts";
import { parseSignal } from "../signals.ts";
import { PLUGINS } from "../../plugins/mod.ts";
import { configToSpec, readConfig, type Translated } from "./config.ts";
import { containerHookOps, runHooks } from "./hooks.ts";
import { seccompAgent } from "./listener.ts";
import {
  alive,
  checkId,
  loadOciState,
  lockContainer,
  makeLockedDir,
  OCI_VERSION,
  ociRoot,
  type OciState,
  removeStaleNew,
  statusOf,
  writeOciState,
} from "./state.ts";

const EMPTY = cstr("");
const SOCK_STREAM = 1;
const TREE_FLAGS = C.OPEN_TREE_CLONE | C.AT_RECURSIVE | C.AT_EMPTY_PATH | C.O_CLOEXEC;

export interface Prepared {
  t: Translated;
  ops: Op[];
  image: { fd: number; dir: string; path: string; dev: number; ino: number };
}

/** Bundle → spec → checks → plan: what `create` runs and `micro plan --bundle` prints. */
export async function prepareBundle(
  bundle: string,
  id: string,
  stateDir: string,
  sys: Sys,
  noNewKeyring = false,
  noPivot = false,
): Promise<Prepared> {
  const abs = bundle.startsWith("/") ? bundle : `${Deno.cwd()}/${bundle}`;
  const config = readConfig(sys, abs);
  const t = configToSpec(config, abs, id);
  if (noNewKeyring) t.spec.micro.noNewKeyring = true;
  if (noPivot) t.spec.micro.noPivot = true;
  for (const w of t.warnings) console.error(`micro: warning: ${w}`);
  const p = await planTranslated(t, id, stateDir, sys);
  // What the host's cgroup version leaves unapplied (runc's fs2 ignores v1-only fields).
  for (const o of p.ops) {
    if (o.kind === "skipped" && o.plugin === "cgroups") {
      console.error(`micro: warning: ${o.args.reason}`);
    }
  }
  // The hooks the container's process runs (not an exec's: oci exec plans on its own).
  // Where the child runs them is the engine's (before pivot_root, after `start`); listed
  // before the command's exec, with the exec phase's ops.
  try {
    const hooks = containerHookOps(
      t.hooks,
      id,
      t.spec.micro.oci?.bundle ?? abs,
      readAnnotations(t),
    );
    const at = p.ops.findIndex((o) => o.kind === "execve");
    p.ops.splice(at < 0 ? p.ops.length : at, 0, ...hooks);
  } catch (e) {
    sys.close(p.image.fd);
    throw e;
  }
  return p;
}

/**
 * A translated config through the host probe, the plugins' load hooks (as core/prepare.ts:
 * the seccomp compiler only for a linux.seccomp no precompiled program answers), the checks
 * and the plan.
 */
export async function planTranslated(
  t: Translated,
  id: string,
  stateDir: string,
  sys: Sys,
): Promise<Prepared> {
  const image = openImage(t.spec.root.path!, sys);
  try {
    const host = probeHost(t.spec, t.cgroup.name, stateDir, {
      sys,
      imageFd: image.fd,
      hostname: id,
    });
    // The seccomp plugin reads linux.seccomp from the text parsed here (not the file again).
    if (t.spec.micro.seccompFile) host.files[t.spec.micro.seccompFile] = t.raw;
    const enabled = PLUGINS.filter((p) => t.spec.micro.plugins.includes(p.name));
    for (const p of enabled) await p.load?.(t.spec, host);
    const problems = [
      ...runChecks(t.spec, host),
      ...enabled.flatMap((p) => p.check?.(t.spec, host) ?? []),
    ];
    if (problems.length === 1) throw problems[0];
    if (problems.length > 1) throw new MicroErrors(problems);
    return { t, ops: planRun(t.spec, host, PLUGINS), image };
  } catch (e) {
    sys.close(image.fd);
    throw e;
  }
}

export interface CreateOptions {
  root: string;
  id: string;
  bundle: string;
  pidFile?: string;
  consoleSocket?: string;
  /** `--no-new-keyring`: keep the caller's session keyring (runc's flag). */
  noNewKeyring?: boolean;
  /** `--preserve-fds N`: micro's fds 3 to 2+N go on to the container's process. */
  preserveFds?: number;
  /** `--no-pivot`: MS_MOVE and chroot instead of pivot_root (runc's, for ramfs roots). */
  noPivot?: boolean;
}

const F_GETFD = 1;
const FD_CLOEXEC = 1;

/**
 * `--preserve-fds N`: each of fds 3 to 2+N must be the caller's, checked before anything
 * is made. An fd micro's runtime opened itself is close-on-exec (Rust opens every fd so)
 * and one inherited across the exec of micro cannot be: that tells them apart, so the
 * container is never handed micro's own (its event loop's epoll, a file it read).
 */
export function checkPreserved(n: number, sys: Sys): void {
  for (let fd = 3; fd < 3 + n; fd++) {
    const rc = sys.fcntl(fd, F_GETFD, 0);
    const why = rc < 0 ? errnoName(-rc) : rc & FD_CLOEXEC ? "it is micro's own" : "";
    if (why) {
      throw new MicroError(`--preserve-fds ${n}: fd ${fd} was not passed to micro: ${why}`, {
        hint: `pass fds 3 to ${2 + n} to micro (open, without close-on-exec), or fewer`,
      });
    }
  }
}

/** Opens `linux.namespaces[].path` for the clone (setns around it, see engine/mod.ts). */
function openJoins(t: Translated, sys: Sys): { pidfd: number; flags: number }[] {
  const out: { pidfd: number; flags: number }[] = [];
  for (const j of t.joins) {
    const fd = sys.open(cstr(j.path), C.O_RDONLY | C.O_CLOEXEC, 0);
    if (fd < 0) {
      for (const o of out) sys.close(o.pidfd);
      throw new MicroError("", {
        phase: "prepare",
        plugin: "oci",
        op: "open",
        paths: { namespace: j.type, path: j.path },
        errno: -fd,
        hint: "linux.namespaces[].path must name an existing namespace (/proc/PID/ns/...)",
      });
    }
    out.push({ pidfd: fd, flags: CLONE_FLAGS[CLONE_FLAG[j.type]] });
    // As run's --pid container:NAME: micro's child is in that namespace from its clone to
    // its exec, root with every capability in the host's mount namespace, holding the
    // image's and the store's fds; a process there with CAP_SYS_PTRACE could attach to it.
    let found: number[] = [];
    if (j.type === "pid") {
      try {
        found = ptracersInNs(Deno.readLinkSync(`/proc/self/fd/${fd}`));
      } catch { /* not a namespace: the clone's setns says so */ }
    }
    if (found.length) {
      for (const o of out) sys.close(o.pidfd);
      throw new MicroError(
        `linux.namespaces: the pid namespace ${j.path}: refused: process` +
          `${found.length > 1 ? "es" : ""} ${found.slice(0, 5).join(", ")} there may hold ` +
          "CAP_SYS_PTRACE, and could take over micro's process while it sets this container up",
        {
          phase: "check",
          plugin: "oci",
          hint: "run those without CAP_SYS_PTRACE in their bounding set, or do not share " +
            "their pid namespace",
        },
      );
    }
  }
  return out;
}

/**
 * Writes `pid` to `path` atomically (a temp file renamed), as runc does. The temp file is
 * made new (O_EXCL, so never through a link someone planted in a shared directory such as
 * /tmp) under a name nobody can guess.
 */
export function writePidFile(path: string, pid: number): void {
  const abs = path.startsWith("/") ? path : `${Deno.cwd()}/${path}`;
  const dir = abs.slice(0, abs.lastIndexOf("/")) || "/";
  const tmp = `${dir}/.${abs.slice(abs.lastIndexOf("/") + 1)}.${newId()}.micro-tmp`;
  Deno.writeTextFileSync(tmp, String(pid), { mode: 0o644, createNew: true });
  try {
    Deno.renameSync(tmp, abs);
  } catch (e) {
    Deno.removeSync(tmp);
    throw e;
  }
}

/**
 * `create`: every namespace, mount, cgroup and restriction in place, the process waiting on
 * the exec fifo; returns its pid. On failure, nothing stays.
 */
export async function create(o: CreateOptions, sys = openLibc()): Promise<number> {
  const uid = Deno.uid() ?? 0;
  checkId(o.id);
  if (o.preserveFds) checkPreserved(o.preserveFds, sys);
  const root = ociRoot(o.root, uid, true);
  const dir = `${root}/${o.id}`;
  const p = await prepareBundle(o.bundle, o.id, dir, sys, o.noNewKeyring, o.noPivot);
  if (p.t.spec.process.terminal !== (o.consoleSocket !== undefined)) {
    sys.close(p.image.fd);
    throw new MicroError(
      p.t.spec.process.terminal
        ? "config.json: process.terminal: a terminal needs --console-socket"
        : "--console-socket given, but config.json's process.terminal is false",
      { hint: "give both (the terminal's master is sent to the socket) or neither" },
    );
  }
  // Connected before anything is made: a wrong path fails early.
  const consoleFd = o.consoleSocket === undefined ? -1 : connectConsole(o.consoleSocket, sys);
  let lock: number;
  try {
    // Locked from the moment it has its name: no verb on this id runs until create is done.
    lock = makeLockedDir(root, o.id, sys);
  } catch (e) {
    sys.close(p.image.fd);
    if (consoleFd >= 0) sys.close(consoleFd);
    throw e;
  }
  if (lock < 0) {
    sys.close(p.image.fd);
    if (consoleFd >= 0) sys.close(consoleFd);
    throw new MicroError(`container "${o.id}" already exists`, {
      hint: `delete it first: micro oci delete ${o.id}`,
    });
  }
  const annotations = (p.t.spec.micro.oci && readAnnotations(p.t)) || {};
  const state: OciState = {
    id: o.id,
    pid: 0,
    startTime: 0,
    bundle: p.t.spec.micro.oci!.bundle,
    rootfs: p.t.spec.root.path!,
    created: isoTime(),
    owner: uid === 0 ? "root" : String(uid),
    annotations,
    // The cgroups the engine will create, recorded before any exists.
    cgroups: plannedCgroups(p.ops).records,
  };
  if (o.noNewKeyring) state.noNewKeyring = true;
  const { poststart, poststop } = p.t.hooks;
  if (poststart || poststop) {
    state.hooks = { ...(poststart ? { poststart } : {}), ...(poststop ? { poststop } : {}) };
  }
  const fds: number[] = [p.image.fd, ...(consoleFd >= 0 ? [consoleFd] : [])];
  let done = false;
  let handed = 0;
  try {
    writeOciState(dir, state);
    // The config as create read it: exec takes the container's restrictions from it.
    Deno.writeTextFileSync(`${dir}/config.json`, p.t.raw, { mode: 0o600 });
    const fifo = `${dir}/exec.fifo`;
    const rc = sys.mknodat(C.AT_FDCWD, cstr(fifo), C.S_IFIFO | 0o622, 0, 0);
    if (rc < 0) {
      throw new MicroError("", {
        phase: "prepare",
        plugin: "oci",
        op: "mknod",
        paths: { fifo },
        errno: -rc,
      });
    }
    // mknod applies the umask: the container's user (any uid) must be able to write it.
    Deno.chmodSync(fifo, 0o622);
    const fifoFd = sys.open(cstr(fifo), C.O_PATH | C.O_CLOEXEC, 0);
    if (fifoFd < 0) {
      throw new MicroError("", { phase: "prepare", plugin: "oci", op: "open", paths: { fifo } });
    }
    fds.push(fifoFd);
    const binds = await idmapBinds(sys, resolveTargets(p.ops, p.image.dir).ops);
    fds.push(...binds.fds);
    const ops = binds.ops;
    Deno.mkdirSync(`${dir}/root`, { mode: 0o755 });
    const tree = sys.openTree(p.image.fd, EMPTY, TREE_FLAGS);
    if (tree < 0) {
      throw new MicroError("", {
        phase: "prepare",
        plugin: "oci",
        op: "open_tree",
        paths: { rootfs: p.image.path },
        errno: -tree,
      });
    }
    fds.push(tree);
    const join = openJoins(p.t, sys);
    fds.push(...join.map((j) => j.pidfd));
    const { pid, master } = await createDetached(ops, {
      rootPath: `${dir}/root`,
      imageFd: tree,
      imageId: { dev: p.image.dev, ino: p.image.ino },
      ...(binds.fds.length ? { mountTrees: binds.fds } : {}),
      terminal: p.t.spec.process.terminal,
      stdin: true,
      execFifo: fifoFd,
      ...(join.length ? { join } : {}),
      ...(o.preserveFds ? { preserveFds: o.preserveFds } : {}),
      onCgroups(all) {
        state.cgroups = all;
        writeOciState(dir, state);
      },
      // Before the child joins its cgroups: the engine has marked the ones it made, and a
      // delete after micro is killed from here on kills the child and removes them.
      onChild(pid) {
        state.pid = pid;
        state.startTime = processStartTime(pid);
        state.creating = true;
        writeOciState(dir, state);
      },
      onCleanupProblem: warnCleanup,
      onSeccompListener: seccompAgent(ops, (pid) => hookState(state, "creating", pid), sys),
      // In the runtime's namespaces, the container's made and waiting (a failure fails create).
      beforeRelease: async (pid) => {
        const st = hookState(state, "creating", pid);
        await runHooks("prestart", p.t.hooks.prestart ?? [], st);
        await runHooks("createRuntime", p.t.hooks.createRuntime ?? [], st);
      },
    }, sys);
    handed = pid;
    state.pid = pid;
    if (master >= 0) {
      fds.push(master);
      const size = p.t.consoleSize;
      if (size) {
        const ws = new Uint16Array([size.height, size.width, 0, 0]);
        sys.ioctlBuf(master, C.TIOCSWINSZ, new Uint8Array(ws.buffer));
      }
      sendMaster(consoleFd, master, o.consoleSocket!, sys);
    }
    state.startTime = processStartTime(pid);
    delete state.creating;
    writeOciState(dir, state);
    if (o.pidFile) writePidFile(o.pidFile, pid);
    done = true;
    return pid;
  } finally {
    for (const fd of fds) sys.close(fd);
    if (!done) {
      // Only a child the engine handed over: on the engine's own failure it reaped it.
      if (handed) sys.kill(handed, C.SIGKILL);
      removeRecorded(state.cgroups.filter((c) => c.created), () => sys);
      Deno.removeSync(dir, { recursive: true });
    }
    sys.close(lock);
  }
}

/** Runs `fn` holding the container's lock (state.ts); a missing container is fn's to find. */
export async function locked<T>(
  root: string,
  id: string,
  sys: Sys,
  fn: () => T | Promise<T>,
): Promise<T> {
  const lock = lockContainer(root, id, sys);
  try {
    return await fn();
  } finally {
    if (lock >= 0) sys.close(lock);
  }
}

/** A stream socket connected to the caller's console socket (`struct sockaddr_un`). */
export function connectConsole(path: string, sys: Sys): number {
  const bytes = new TextEncoder().encode(path);
  if (bytes.length >= 108) {
    throw new MicroError(`--console-socket ${path}: longer than a socket path may be (107 bytes)`);
  }
  const fd = sys.socket(C.AF_UNIX, SOCK_STREAM | C.SOCK_CLOEXEC, 0);
  if (fd < 0) {
    throw new MicroError("", { phase: "prepare", plugin: "oci", op: "socket", errno: -fd });
  }
  const addr = new Uint8Array(2 + bytes.length + 1);
  addr[0] = C.AF_UNIX; // sa_family, little-endian u16
  addr.set(bytes, 2);
  const rc = sys.connect(fd, addr);
  if (rc < 0) {
    sys.close(fd);
    throw new MicroError("", {
      phase: "prepare",
      plugin: "oci",
      op: "connect",
      paths: { "console-socket": path },
      errno: -rc,
      hint: "the caller listens on the console socket before create",
    });
  }
  return fd;
}

/** The terminal's master to the console socket (SCM_RIGHTS), as runc sends it. */
export function sendMaster(sock: number, master: number, path: string, sys: Sys): void {
  const rc = sys.sendRecord(sock, new Int32Array([0, 0]), master);
  if (rc < 0) {
    throw new MicroError("", {
      phase: "start",
      plugin: "oci",
      op: "sendmsg",
      paths: { "console-socket": path },
      errno: -rc,
    });
  }
}

function readAnnotations(t: Translated): Record<string, string> {
  try {
    const a = (JSON.parse(t.raw) as { annotations?: unknown }).annotations;
    if (a && typeof a === "object" && !Array.isArray(a)) {
      return Object.fromEntries(
        Object.entries(a as Record<string, unknown>).filter(([, v]) => typeof v === "string"),
      ) as Record<string, string>;
    }
  } catch {
    // parsed before: cannot fail
  }
  return {};
}

/**
 * `start`: opens the exec fifo for reading, which lets the waiting process go on to its
 * exec, reads its byte and removes the fifo. Fails when the container is not `created`.
 */
export function start(root: string, id: string, sys = openLibc()): Promise<void> {
  return locked(root, id, sys, () => startLocked(root, id, sys));
}

async function startLocked(root: string, id: string, sys: Sys): Promise<void> {
  const { dir, state } = loadOciState(root, id);
  const status = statusOf(dir, state);
  if (status !== "created") {
    throw new MicroError(`container "${id}" is ${status}, not created: it cannot be started`, {
      hint: status === "stopped" ? `delete it: micro oci delete ${id}` : undefined,
    });
  }
  const fifo = `${dir}/exec.fifo`;
  const fd = sys.open(cstr(fifo), C.O_RDONLY | C.O_NONBLOCK | C.O_CLOEXEC, 0);
  if (fd < 0) {
    throw new MicroError("", { phase: "start", plugin: "oci", op: "open", paths: { fifo } });
  }
  const byte = new Uint8Array(1);
  try {
    for (;;) {
      const n = sys.read(fd, byte, 1);
      if (n === 1) break;
      // 0: the writer has not opened it yet; EAGAIN: not written yet.
      if (n < 0 && n !== -11 && n !== -4) {
        throw new MicroError("", {
          phase: "start",
          plugin: "oci",
          op: "read",
          paths: { fifo },
          errno: -n,
        });
      }
      if (!alive(state)) {
        throw new MicroError(`container "${id}": its process exited before it was started`, {
          hint: `delete it: micro oci delete ${id}`,
        });
      }
      await new Promise((r) => setTimeout(r, 2));
    }
  } finally {
    sys.close(fd);
  }
  Deno.removeSync(fifo);
  // A poststart hook's failure is a warning: the container runs (runtime spec).
  try {
    await runHooks("poststart", state.hooks?.poststart ?? [], hookState(state, "running"));
  } catch (e) {
    console.error(`micro: warning: ${(e as Error).message}`);
  }
}

/** The state JSON a hook reads on stdin. */
function hookState(st: OciState, status: string, pid = st.pid): Record<string, unknown> {
  return {
    ociVersion: OCI_VERSION,
    id: st.id,
    status,
    pid,
    bundle: st.bundle,
    ...(Object.keys(st.annotations).length ? { annotations: st.annotations } : {}),
  };
}

/** The pids in cgroup dir `path` (none when it is not there). */
function pidsIn(path: string): string[] {
  try {
    return Deno.readTextFileSync(`${path}/cgroup.procs`).split("\n").filter((x) => x);
  } catch {
    return [];
  }
}

/** Every process in the container's own cgroup (for `kill --all` and `ps`). */
export function cgroupPids(state: OciState): number[] {
  const own = state.cgroups.find((c) => !c.shared && c.created);
  return own ? pidsIn(own.path).map(Number) : [];
}

/**
 * Signals the container's process (`state.pid`, checked by its start time) or a process of its
 * cgroup (checked by being listed in cgroup.procs still), each through a pidfd opened before
 * the check: a pid that ended and was given to a host process is never signalled.
 */
export function signalMember(state: OciState, pid: number, signal: number, sys: Sys): number {
  if (pid === state.pid) return signalProcess(sys, pid, state.startTime, signal);
  const fd = sys.pidfdOpen(pid, 0);
  if (fd < 0) return fd;
  try {
    return cgroupPids(state).includes(pid) ? sys.pidfdSendSignal(fd, signal) : -3;
  } finally {
    sys.close(fd);
  }
}

export function signalNumber(text: string | undefined): number {
  if (text === undefined) return 15;
  if (/^[0-9]+$/.test(text)) {
    const n = Number(text);
    if (n >= 1 && n <= 64) return n;
  }
  const n = parseSignal(text.toUpperCase().startsWith("SIG") ? text : `SIG${text}`) ??
    parseSignal(text);
  if (n === undefined) {
    throw new MicroError(`unknown signal "${text}"`, {
      hint: "give a name (TERM, SIGKILL) or 1-64",
    });
  }
  return n;
}

/** `kill ID [SIGNAL]`: the container's process (or, with all, every one in its cgroup). */
export function kill(root: string, id: string, signal: number, all: boolean, sys = openLibc()) {
  const lock = lockContainer(root, id, sys);
  try {
    killLocked(root, id, signal, all, sys);
  } finally {
    if (lock >= 0) sys.close(lock);
  }
}

function killLocked(root: string, id: string, signal: number, all: boolean, sys: Sys) {
  const { dir, state } = loadOciState(root, id);
  const status = statusOf(dir, state);
  if (status !== "created" && status !== "running") {
    throw new MicroError(`container "${id}" is ${status}: there is nothing to signal`);
  }
  const pids = all ? [...new Set([state.pid, ...cgroupPids(state)])] : [state.pid];
  for (const pid of pids) {
    // Through a pidfd, checked after it is open: never a pid the kernel gave out again.
    const rc = signalMember(state, pid, signal, sys);
    if (rc < 0 && rc !== -3) {
      throw new MicroError("", {
        phase: "kill",
        plugin: "oci",
        op: "kill",
        paths: { pid: String(pid), signal: String(signal) },
        errno: -rc,
      });
    }
  }
}

/**
 * `delete`: the container's cgroups and state. A created container's waiting process is
 * killed first (as runc does); a running one only with `force`.
 */
export function remove(root: string, id: string, force: boolean, sys = openLibc()) {
  return locked(root, id, sys, () => removeLocked(root, id, force, sys));
}

async function removeLocked(root: string, id: string, force: boolean, sys: Sys) {
  removeStaleNew(root);
  let loaded;
  try {
    loaded = loadOciState(root, id);
  } catch (e) {
    // --force of a container that is not there is not an error (runc, containerd rely on it).
    if (force && e instanceof MicroError && /does not exist/.test(e.message)) {
      removeUnrecorded(`${root}/${id}`);
      return;
    }
    throw e;
  }
  const { dir, state } = loaded;
  const status = statusOf(dir, state);
  if (status === "creating" && !force) {
    // runc's rule: a create may still be at work on it (or was killed half-way: --force).
    throw new MicroError(`container "${id}" is being created: it cannot be deleted`, {
      hint: `wait for create to end, or use --force (a create killed half-way stays so)`,
    });
  }
  if (status === "running" && !force) {
    throw new MicroError(`container "${id}" is running: it cannot be deleted`, {
      hint: `stop it first (micro oci kill ${id} KILL), or use --force`,
    });
  }
  if (status === "created" || status === "running" || status === "creating") {
    for (const pid of [state.pid, ...cgroupPids(state)]) signalMember(state, pid, C.SIGKILL, sys);
    for (let k = 0; k < 500 && (alive(state) || cgroupPids(state).length); k++) {
      await new Promise((r) => setTimeout(r, 10));
    }
  }
  if (!state.pid) {
    // create was killed between the clone and its record of the pid: the child dies with it
    // (PDEATHSIG) but may still be leaving the cgroup it was born in (clone3, cgroup v2),
    // which is not yet marked as create's: wait for it to empty, killing nothing.
    const busy = () => state.cgroups.some((c) => !c.shared && pidsIn(c.path).length);
    for (let k = 0; k < 200 && busy(); k++) await new Promise((r) => setTimeout(r, 10));
  }
  // Every recorded dir, as micro's own gc does: one whose mkdir create did not live to record
  // (killed in between) is removed only if empty (removeRecorded). A dir of its own that
  // stays keeps the state, so that a later delete can still find and remove it.
  const left = removeRecorded(state.cgroups, () => sys);
  if (left.length) {
    throw new MicroError(`delete ${id}: its cgroups stay: ${left.join("; ")}`, {
      hint: `see what is still in them, then run "micro oci delete --force ${id}" again`,
    });
  }
  Deno.removeSync(dir, { recursive: true });
  try {
    await runHooks("poststop", state.hooks?.poststop ?? [], hookState(state, "stopped", 0));
  } catch (e) {
    console.error(`micro: warning: ${(e as Error).message}`);
  }
}

/**
 * A create killed between its mkdir and its first state.json leaves a dir holding nothing
 * or the state's temp file (create writes the state before making anything else): removed
 * by name, and rmdir refuses a dir holding anything more.
 */
function removeUnrecorded(dir: string): void {
  try {
    Deno.removeSync(`${dir}/.state.json.tmp`);
  } catch {
    // not there
  }
  try {
    Deno.removeSync(dir);
  } catch {
    // not there, or not a create's leftover
  }
}

/**
 * `run`: create, start, wait (micro is the container's parent here), delete; with `keep`
 * (runc's `--keep`) the stopped container stays for `state` and `delete`.
 */
export async function run(
  o: CreateOptions,
  detach: boolean,
  sys = openLibc(),
  keep = false,
): Promise<number> {
  const pid = await create(o, sys);
  try {
    await start(o.root, o.id, sys);
  } catch (e) {
    await remove(o.root, o.id, true, sys);
    throw e;
  }
  if (detach) return 0;
  const forward = (n: number) => () => sys.kill(pid, n);
  const handlers: [Deno.Signal, () => void][] = [
    ["SIGTERM", forward(15)],
    ["SIGINT", forward(2)],
    ["SIGHUP", forward(1)],
  ];
  for (const [s, h] of handlers) Deno.addSignalListener(s, h);
  try {
    const { status } = await sys.waitpid(pid);
    return decodeStatus(status).exitCode;
  } finally {
    for (const [s, h] of handlers) Deno.removeSignalListener(s, h);
    if (!keep) await remove(o.root, o.id, true, sys);
  }
}

/** For list: every container under the root. */
export function listAll(root: string): { dir: string; state: OciState }[] {
  const out: { dir: string; state: OciState }[] = [];
  let entries: Deno.DirEntry[];
  try {
    entries = [...Deno.readDirSync(root)];
  } catch {
    return out;
  }
  for (const e of entries.filter((e) => e.isDirectory).sort((a, b) => a.name < b.name ? -1 : 1)) {
    try {
      out.push(loadOciState(root, e.name));
    } catch {
      // not a container's directory
    }
  }
  return out;
}

/** `micro plan --bundle DIR`: the ops create would run. */
export async function planBundle(bundle: string, sys = openLibc()): Promise<Op[]> {
  const p = await prepareBundle(bundle, "plan", "/run/micro-oci/plan", sys);
  sys.close(p.image.fd);
  return p.ops;
}
