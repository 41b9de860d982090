/**
 * `micro exec`: a process started in a running container, through the fork engine with
 * the plan of core/exec/plan.ts. It enters every namespace of the container, joins its
 * cgroups, and gets the container command's credentials and restrictions, so it can never
 * hold more than the container.
 */
import { execute, type RunResult } from "../engine/mod.ts";
import { MicroError } from "../errors.ts";
import { readInRoot, readRegularFile } from "../files.ts";
import { resolveUser } from "../process.ts";
import type { RunSignals } from "../signals.ts";
import { openLibc } from "../sys/libc.ts";
import { C, cstr, type Sys } from "../sys/mod.ts";
import { mark } from "../trace.ts";
import { findRunning, type Found, openInit, waitReady, withRunning } from "./find.ts";
import { execPlan, type ExecRequest, type ExecUser } from "./plan.ts";

export const EXEC_HELP = `usage: micro exec [OPTIONS] NAME|ID COMMAND [ARG...]

Runs COMMAND in a running container: in all of its namespaces and cgroups, as its
command's user, with its capabilities, no_new_privs, seccomp filter, LSM label, Landlock
rules and rlimits. Exits with COMMAND's exit code.

options:
  -i, --interactive        relay stdin to the command
  -t, --tty                a terminal (from the container's own devpts)
  -u, --user USER[:GROUP]  another user of the container's /etc/passwd (name or id)
  -w, --workdir DIR        the working directory (absolute, in the container)
  -e, --env K=V            set a variable (K alone: micro's own value of K)
      --env-file FILE      variables from FILE, one K=V a line (# comments)
  -d, --detach             start the command and return at once`;

const SHORT: Record<string, string> = { i: "stdin", t: "terminal", d: "detach" };
const LONG: Record<string, string> = {
  "--interactive": "stdin",
  "--tty": "terminal",
  "--detach": "detach",
};
const VALUED: Record<string, string> = {
  "-u": "user",
  "--user": "user",
  "-w": "workdir",
  "--workdir": "workdir",
  "-e": "env",
  "--env": "env",
  "--env-file": "env-file",
};

/** The lines of an env file as K=V (K alone takes micro's own value, as Docker). */
export function parseEnvFile(text: string, getEnv: (k: string) => string | undefined): string[] {
  const out: string[] = [];
  for (const raw of text.split("\n")) {
    const line = raw.replace(/\r$/, "");
    if (!line.trim() || line.trimStart().startsWith("#")) continue;
    out.push(...envArg(line, getEnv));
  }
  return out;
}

function envArg(kv: string, getEnv: (k: string) => string | undefined): string[] {
  const eq = kv.indexOf("=");
  const key = eq < 0 ? kv : kv.slice(0, eq);
  if (!/^[^=\0\s]+$/.test(key) || kv.includes("\0")) {
    throw new MicroError(`invalid environment variable "${kv}"`, { hint: "use -e KEY=VALUE" });
  }
  if (eq >= 0) return [kv];
  const v = getEnv(key);
  return v === undefined ? [] : [`${key}=${v}`];
}

/** argv (`exec ...`) → the request. `readFile` reads an --env-file. */
export function parseExec(
  argv: string[],
  readFile: (path: string) => string,
  getEnv: (k: string) => string | undefined = (k) => Deno.env.get(k),
): ExecRequest | "help" {
  const req: ExecRequest = {
    container: "",
    args: [],
    env: [],
    terminal: false,
    stdin: false,
    detach: false,
  };
  const bad = (m: string) => new MicroError(m, { hint: 'see "micro exec --help"' });
  let i = 1;
  for (; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--") {
      i++;
      break;
    }
    if (!a.startsWith("-") || a === "-") break;
    if (a === "--help" || a === "-h") return "help";
    if (a === "--privileged" || a.startsWith("--privileged=")) {
      throw new MicroError(`option "--privileged" is not offered by micro exec`, {
        hint: "an exec never holds more than its container: run the container with what it needs",
      });
    }
    const eq = a.startsWith("--") ? a.indexOf("=") : -1;
    const name = eq > 0 ? a.slice(0, eq) : a;
    let key = VALUED[name];
    // -uUSER, -wDIR, -eK=V: the value attached.
    let value: string | undefined = eq > 0 ? a.slice(eq + 1) : undefined;
    if (!key && !a.startsWith("--") && VALUED[a.slice(0, 2)] && a.length > 2) {
      key = VALUED[a.slice(0, 2)];
      value = a.slice(2);
      if (SHORT[a[2]] && [...a.slice(1)].every((c) => SHORT[c])) key = "";
    }
    if (key) {
      if (value === undefined) {
        if (i + 1 >= argv.length) throw bad(`option "${name}" needs a value`);
        value = argv[++i];
      }
      if (key === "user") req.user = value;
      if (key === "workdir") {
        if (!value.startsWith("/")) throw bad(`option "-w" needs an absolute path, not "${value}"`);
        req.cwd = value;
      }
      if (key === "env") req.env.push(...envArg(value, getEnv));
      if (key === "env-file") req.env.push(...parseEnvFile(readFile(value), getEnv));
      continue;
    }
    const flags = a.startsWith("--") ? [LONG[a]] : [...a.slice(1)].map((c) => SHORT[c]);
    if (flags.some((f) => !f)) throw bad(`unknown option "${a}"`);
    for (const f of flags) (req as unknown as Record<string, boolean>)[f] = true;
  }
  req.container = argv[i] ?? "";
  req.args = argv.slice(i + 1);
  if (!req.container || req.args.length === 0) {
    throw bad(req.container ? "exec: no command given" : "exec: no container given");
  }
  if (req.detach && (req.terminal || req.stdin)) {
    throw bad(`option "-d" leaves nothing attached: drop -i and -t`);
  }
  return req;
}

/** The CLONE_NEW* names of `pid`'s namespaces that are not this process's own. */
export function foreignNamespaces(pid: number): string[] {
  const out: string[] = [];
  const names: [string, string][] = [
    ["CLONE_NEWUSER", "user"],
    ["CLONE_NEWNS", "mnt"],
    ["CLONE_NEWPID", "pid"],
    ["CLONE_NEWNET", "net"],
    ["CLONE_NEWIPC", "ipc"],
    ["CLONE_NEWUTS", "uts"],
    ["CLONE_NEWCGROUP", "cgroup"],
    ["CLONE_NEWTIME", "time"],
  ];
  for (const [flag, ns] of names) {
    let theirs: Deno.FileInfo;
    try {
      theirs = Deno.statSync(`/proc/${pid}/ns/${ns}`);
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) continue; // this kernel has no such namespace
      throw new MicroError(`cannot read /proc/${pid}/ns/${ns}: ${(e as Error).message}`, {
        hint: "is the container another user's?",
      });
    }
    const mine = Deno.statSync(`/proc/self/ns/${ns}`);
    if (theirs.ino !== mine.ino || theirs.dev !== mine.dev) out.push(flag);
  }
  return out;
}

const ACCOUNTS_CAP = 4 << 20;

/** The host id the container's 0 maps to (uid_map or gid_map text), if it maps 0. */
export function rootOf(map: string): number | undefined {
  for (const line of map.split("\n")) {
    const [inside, outside, count] = line.trim().split(/\s+/).map(Number);
    if (inside === 0 && count > 0 && Number.isInteger(outside)) return outside;
  }
  return undefined;
}

/** The container's root on the host, from its init's maps: undefined without a user namespace. */
function rootIds(pid: number, namespaces: string[]): { uid: number; gid: number } | undefined {
  if (!namespaces.includes("CLONE_NEWUSER")) return undefined;
  const uid = rootOf(Deno.readTextFileSync(`/proc/${pid}/uid_map`));
  const gid = rootOf(Deno.readTextFileSync(`/proc/${pid}/gid_map`));
  return uid === undefined || gid === undefined ? undefined : { uid, gid };
}

/** -u against the container's own /etc/passwd and /etc/group, resolved inside its root. */
function containerUser(pid: number, spec: string, sys: Sys): ExecUser {
  const root = sys.open(cstr(`/proc/${pid}/root`), C.O_PATH | C.O_DIRECTORY | C.O_CLOEXEC, 0);
  if (root < 0) {
    throw new MicroError("", {
      phase: "prepare",
      plugin: "exec",
      op: "open",
      paths: { path: `/proc/${pid}/root` },
      errno: -root,
    });
  }
  try {
    const read = (p: string) => {
      try {
        return readInRoot(sys, root, p, ACCOUNTS_CAP) ?? "";
      } catch (e) {
        throw new MicroError(`the container's ${p}: ${(e as Error).message}`);
      }
    };
    return resolveUser(spec, [], read("/etc/passwd"), read("/etc/group"));
  } finally {
    sys.close(root);
  }
}

export async function execCommand(argv: string[], signals: RunSignals): Promise<number> {
  const sys = openLibc();
  const req = parseExec(argv, (p) => {
    try {
      return readRegularFile(sys, p, 1 << 20);
    } catch (e) {
      throw new MicroError(`--env-file ${p}: ${(e as Error).message}`);
    }
  });
  if (req === "help") {
    console.log(EXEC_HELP);
    return 0;
  }
  const uid = Deno.uid() ?? 0;
  // The container's lock is held from finding it until the command runs (not while it
  // runs): an rm or stop of it comes wholly before that or after.
  let started = () => {};
  const running = new Promise<void>((r) => started = r);
  let result: Promise<RunResult> | undefined;
  // A container still being set up is waited for before its lock is taken (a stop or rm
  // of it is not held up); startExec checks again under the lock (a restart meanwhile).
  await waitReady(findRunning(req.container, uid), sys, undefined, () => signals.stopSignal !== 0);
  await withRunning(req.container, uid, sys, async (found) => {
    result = startExec(req, found, sys, signals, started);
    await Promise.race([running, result.then(() => {}, () => {})]);
  });
  const r = await result!;
  // -d: the command runs on; micro's ends of its stdio are not micro's to keep.
  for (const fd of Object.values(r.detached?.ends ?? {})) if (fd >= 0) sys.close(fd);
  return r.exitCode;
}

/** Starts the exec'd command in the container `found`; resolves when it ended (or with -d, runs). */
async function startExec(
  req: ExecRequest,
  found: Found,
  sys: Sys,
  signals: RunSignals,
  onStarted: () => void,
): Promise<RunResult> {
  const record = found.state.exec;
  if (!record) {
    throw new MicroError(`container "${req.container}" was started by a micro without exec`, {
      hint: "restart it with this micro",
    });
  }
  await waitReady(found, sys, undefined, () => signals.stopSignal !== 0);
  // A frozen cgroup would freeze the exec'd child before it could run (Docker refuses too).
  const { isPaused } = await import("../stats/mod.ts");
  if (isPaused(found)) {
    throw new MicroError(`container "${req.container}" is paused`, {
      hint: `unpause it first: micro unpause ${req.container}`,
    });
  }
  const pidfd = openInit(found, sys);
  try {
    const pid = found.state.containerPid!;
    const namespaces = foreignNamespaces(pid);
    const user = req.user === undefined ? undefined : containerUser(pid, req.user, sys);
    const ops = execPlan(record, { ...req, container: found.name }, namespaces, user);
    mark("exec plan");
    return await execute(ops, {
      rootPath: found.dir,
      terminal: req.terminal,
      stdin: req.stdin,
      enter: pidfd,
      rootIds: rootIds(pid, namespaces),
      detach: req.detach,
      ...(req.detach ? { attach: { stdout: false, stderr: false } } : {}),
      signals,
      onStarted,
    }, sys);
  } finally {
    sys.close(pidfd);
  }
}
