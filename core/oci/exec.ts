/**
 * `exec`: a new process in a created or running container (DESIGN.md §12). micro enters
 * the container's pid, ipc, uts, network and cgroup namespaces around the clone (through a
 * pidfd of the container's first process); the child, single-threaded, enters its user and
 * mount namespaces, joins nothing else, and applies the container's own credentials and
 * restrictions (capabilities, seccomp, LSM label, no_new_privs) from the config create read,
 * with the process of `--process` or the flags instead of the container's.
 */
import { MicroError } from "../errors.ts";
import { openLibc } from "../sys/libc.ts";
import { C, type Sys } from "../sys/mod.ts";
import { decodeStatus } from "../engine/mod.ts";
import { createDetached } from "../engine/detached.ts";
import { type Op, op } from "../ops.ts";
import { capName } from "../caps.ts";
import { configToSpec, parseConfig, readConfig } from "./config.ts";
import { alive, loadOciState, lockContainer, OCI_VERSION, statusOf } from "./state.ts";
import { seccompAgent } from "./listener.ts";
import {
  checkPreserved,
  connectConsole,
  planTranslated,
  sendMaster,
  writePidFile,
} from "./runtime.ts";
import { readRegularFile } from "../files.ts";

export interface ExecOptions {
  root: string;
  id: string;
  /** `--process FILE`: the process JSON (the config's `process` shape). */
  process?: string;
  args: string[];
  tty: boolean;
  cwd?: string;
  env: string[];
  user?: string;
  caps: string[];
  noNewPrivs: boolean;
  detach: boolean;
  pidFile?: string;
  consoleSocket?: string;
  /** `--apparmor`, `--process-label`: the process's LSM labels, as the config's fields. */
  apparmor?: string;
  processLabel?: string;
  /** `--additional-gids`: added to the process's user.additionalGids (runc appends). */
  gids?: string[];
  /** `--cgroup [CONTROLLER:]PATH`: an existing sub-cgroup of the container's to join. */
  cgroups?: string[];
  /** `--preserve-fds N`: micro's fds 3 to 2+N go on to the process. */
  preserveFds?: number;
  /** `--ignore-paused`: runc execs into a paused container; micro refuses, saying why. */
  ignorePaused?: boolean;
}

/** The namespaces entered from micro's thread, around the clone. */
const AROUND_CLONE = C.CLONE_NEWPID | C.CLONE_NEWIPC | C.CLONE_NEWUTS | C.CLONE_NEWNET |
  C.CLONE_NEWCGROUP;

/** Runs the exec; its exit code (0 at once with `detach`). */
export async function exec(o: ExecOptions, sys: Sys = openLibc()): Promise<number> {
  // Held through the set-up (a delete waits until the process is in the container's cgroup,
  // so it kills it too), not while the process runs.
  const lock = lockContainer(o.root, o.id, sys);
  let held = lock >= 0;
  const release = () => {
    if (held) sys.close(lock);
    held = false;
  };
  try {
    return await execLocked(o, sys, release);
  } finally {
    release();
  }
}

async function execLocked(o: ExecOptions, sys: Sys, release: () => void): Promise<number> {
  const { dir, state } = loadOciState(o.root, o.id);
  const status = statusOf(dir, state);
  // Not into a created container: its first process is still micro's runtime (the host's
  // Deno, not dumpable) until start, and nothing of micro may be reachable from inside.
  if (status === "paused" && o.ignorePaused) {
    // runc lets the process join the frozen cgroup; here it would freeze before its report
    // that it started, and exec would wait for ever.
    throw new MicroError(
      `exec --ignore-paused: container "${o.id}" is paused: its process would freeze in the ` +
        "container's cgroup before it starts",
      { hint: `resume it first: micro oci resume ${o.id}` },
    );
  }
  if (status !== "running") {
    throw new MicroError(`container "${o.id}" is ${status}: exec needs a running container`, {
      hint: status === "created"
        ? `start it first: micro oci start ${o.id}`
        : status === "paused"
        ? `resume it first: micro oci resume ${o.id}`
        : undefined,
    });
  }
  const config = readConfig(sys, dir);
  const json = structuredClone(config.json) as Record<string, unknown>;
  const proc = { ...(json.process as Record<string, unknown>) };
  if (o.process) {
    let text: string;
    try {
      text = readRegularFile(sys, o.process, 1024 * 1024);
    } catch (e) {
      throw new MicroError(`--process ${o.process}: cannot read: ${(e as Error).message}`);
    }
    const p = parseConfig(text).json;
    for (const k of Object.keys(proc)) delete proc[k];
    Object.assign(proc, p);
  } else {
    if (!o.args.length) {
      throw new MicroError("exec: no command given", {
        hint: "micro oci exec ID COMMAND [ARG...]",
      });
    }
    proc.args = o.args;
    proc.terminal = o.tty;
    delete proc.consoleSize;
  }
  if (o.cwd) proc.cwd = o.cwd;
  if (o.env.length) proc.env = [...((proc.env as string[] | undefined) ?? []), ...o.env];
  if (o.user) {
    const [u, g] = o.user.split(":");
    if (!/^[0-9]+$/.test(u) || (g !== undefined && !/^[0-9]+$/.test(g))) {
      throw new MicroError(`--user "${o.user}": expected UID[:GID]`);
    }
    proc.user = { ...(proc.user as object), uid: Number(u), gid: Number(g ?? 0) };
  }
  if (o.gids?.length) {
    const user = { ...(proc.user as Record<string, unknown> | undefined) };
    const had = (user.additionalGids as unknown[] | undefined) ?? [];
    user.additionalGids = [
      ...had,
      ...o.gids.map((g) => {
        if (!/^[0-9]+$/.test(g) || Number(g) > 0xfffffffe) {
          throw new MicroError(`--additional-gids "${g}": expected a group id (a number)`);
        }
        return Number(g);
      }),
    ];
    proc.user = user;
  }
  // Taken as create takes the config's fields: the lsm plugin's checks and ops apply.
  if (o.apparmor) proc.apparmorProfile = o.apparmor;
  if (o.processLabel) proc.selinuxLabel = o.processLabel;
  if (o.noNewPrivs) proc.noNewPrivileges = true;
  if (o.caps.length) {
    const c = { ...(proc.capabilities as Record<string, string[]> | undefined) };
    for (const cap of o.caps) {
      const name = capName(cap);
      if (!name) throw new MicroError(`--cap "${cap}": unknown capability`);
      for (const set of ["bounding", "effective", "permitted", "inheritable", "ambient"]) {
        c[set] = [...new Set([...(c[set] ?? []), name])];
      }
    }
    proc.capabilities = c;
  }
  json.process = proc;
  const t = configToSpec(parseConfig(JSON.stringify(json)), state.bundle, o.id);
  // The config's seccomp is read from the text create saved (exact 64-bit values).
  t.raw = config.raw;
  const terminal = t.spec.process.terminal;
  if (terminal !== (o.consoleSocket !== undefined)) {
    throw new MicroError(
      terminal ? "exec: a terminal needs --console-socket" : "--console-socket without --tty",
    );
  }
  // As create: a new session keyring unless create was told --no-new-keyring.
  if (state.noNewKeyring) t.spec.micro.noNewKeyring = true;
  const p = await planTranslated(t, o.id, dir, sys);
  sys.close(p.image.fd);
  const userns = t.spec.linux.namespaces.some((n) => n.type === "user");
  const ops: Op[] = withAffinity([
    op("rootfs", "oci", "setns", {
      flags: [
        ...(userns ? ["CLONE_NEWUSER"] : []),
        "CLONE_NEWNS",
        // Entered by the single-threaded child (the kernel refuses a multi-threaded caller).
        ...(t.spec.linux.namespaces.some((n) => n.type === "time") ? ["CLONE_NEWTIME"] : []),
      ],
    }),
    ...subCgroups(
      p.ops.filter((x) =>
        (x.phase === "attach" && x.kind === "cgroup-join") ||
        (x.phase === "rootfs" && x.kind === "console") ||
        (x.phase === "identity" && x.kind === "session-keyring") ||
        ["credentials", "restrict", "exec"].includes(x.phase)
      ),
      o.cgroups ?? [],
    ),
  ], t.spec.process.execCPUAffinity);
  if (o.preserveFds) checkPreserved(o.preserveFds, sys);
  const pidfd = sys.pidfdOpen(state.pid, 0);
  if (pidfd < 0 || !alive(state)) {
    if (pidfd >= 0) sys.close(pidfd);
    throw new MicroError(`container "${o.id}": its process is gone`);
  }
  const consoleFd = o.consoleSocket ? connectConsole(o.consoleSocket, sys) : -1;
  let pid: number;
  let master: number;
  try {
    ({ pid, master } = await createDetached(ops, {
      rootPath: `${dir}/root`,
      terminal,
      stdin: true,
      detached: true,
      nsFd: pidfd,
      join: [{ pidfd, flags: AROUND_CLONE }],
      // The container's state, as `state` shows it; `pid` in the message is this process.
      onSeccompListener: seccompAgent(ops, () => ({
        ociVersion: OCI_VERSION,
        id: o.id,
        status: "running",
        pid: state.pid,
        bundle: state.bundle,
        ...(Object.keys(state.annotations).length ? { annotations: state.annotations } : {}),
      }), sys),
      ...(o.preserveFds ? { preserveFds: o.preserveFds } : {}),
    }, sys));
  } finally {
    sys.close(pidfd);
    release();
  }
  try {
    if (master >= 0) sendMaster(consoleFd, master, o.consoleSocket!, sys);
  } finally {
    if (master >= 0) sys.close(master);
    if (consoleFd >= 0) sys.close(consoleFd);
  }
  if (o.pidFile) writePidFile(o.pidFile, pid);
  if (o.detach) return 0;
  const { status: st } = await sys.waitpid(pid);
  return decodeStatus(st).exitCode;
}

/**
 * process.execCPUAffinity (runc 1.2's): `initial` set by micro on the waiting process before
 * it joins the container's cgroup, `final` by the process itself right before its exec.
 */
export function withAffinity(ops: Op[], a: { initial?: number[]; final?: number[] } = {}): Op[] {
  const out = [...ops];
  if (a.initial) out.unshift(op("attach", "process", "cpu-affinity", { cpus: [...a.initial] }));
  if (a.final) {
    const at = out.findIndex((x) => x.phase === "exec");
    const final = op("exec", "process", "cpu-affinity", { cpus: [...a.final] });
    if (at < 0) out.push(final);
    else out.splice(at, 0, final);
  }
  return out;
}

/** The cgroup mount: a join path below it names its v1 hierarchy ("cpu,cpuacct") first. */
const CGROUP_ROOT = "/sys/fs/cgroup/";

/**
 * `--cgroup [CONTROLLER:]PATH` (runc exec's, repeatable): the process joins PATH below the
 * container's own cgroup instead, in every hierarchy, or in CONTROLLER's only (cgroup v1;
 * v2 has one hierarchy and takes PATH alone). PATH must exist: micro makes no cgroup here.
 */
export function subCgroups(
  ops: Op[],
  given: string[],
  probe?: { isDir(path: string): boolean; v1: boolean },
): Op[] {
  if (!given.length) return ops;
  const host = probe ?? { isDir, v1: isV1() };
  const joins = ops.filter((x) => x.kind === "cgroup-join") as Extract<
    Op,
    { kind: "cgroup-join" }
  >[];
  const v2 = !host.v1;
  const sub = new Map<Op, string>();
  for (const g of given) {
    const colon = g.indexOf(":");
    const controller = colon >= 0 ? g.slice(0, colon) : "";
    const path = (colon >= 0 ? g.slice(colon + 1) : g).replace(/^\/+|\/+$/g, "");
    const parts = path.split("/");
    if (!path || parts.some((x) => !/^[A-Za-z0-9_.@-]+$/.test(x) || x === "." || x === "..")) {
      throw new MicroError(
        `exec --cgroup "${g}": expected [CONTROLLER:]PATH below the container's`,
        {
          hint: "a relative path of plain names, such as --cgroup sub or --cgroup memory:sub",
        },
      );
    }
    if (controller && v2) {
      throw new MicroError(`exec --cgroup "${g}": cgroup v2 has no per-controller paths`, {
        hint: `give the path alone: --cgroup ${path}`,
      });
    }
    const targets = controller
      ? joins.filter((j) => hierarchy(j.args.path).includes(controller))
      : joins;
    if (!targets.length) {
      throw new MicroError(`exec --cgroup "${g}": the container has no "${controller}" cgroup`, {
        hint: "name a controller the container's cgroups have (memory, cpu, pids, ...)",
      });
    }
    for (const j of targets) sub.set(j, path);
  }
  return ops.map((x) => {
    const path = sub.get(x);
    if (path === undefined || x.kind !== "cgroup-join") return x;
    const dir = `${x.args.path}/${path}`;
    if (!host.isDir(dir)) {
      throw new MicroError(`exec --cgroup: ${dir} does not exist`, {
        hint: "create the sub-cgroup first: micro joins an existing one only, as runc does",
      });
    }
    return { ...x, args: { ...x.args, path: dir } };
  });
}

/** A v1 hierarchy's name(s) from a join path: ["cpu", "cpuacct"] for .../cpu,cpuacct/... */
function hierarchy(path: string): string[] {
  if (!path.startsWith(CGROUP_ROOT)) return [];
  return path.slice(CGROUP_ROOT.length).split("/")[0].split(",").map((n) =>
    n.replace(/^name=/, "")
  );
}

/** cgroup v2 mounts one hierarchy at /sys/fs/cgroup, with cgroup.controllers at its root. */
function isV1(): boolean {
  try {
    Deno.statSync(`${CGROUP_ROOT}cgroup.controllers`);
    return false;
  } catch {
    return true;
  }
}

function isDir(path: string): boolean {
  try {
    return Deno.statSync(path).isDirectory;
  } catch {
    return false;
  }
}
