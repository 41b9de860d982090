/**
 * Talking to the supervisor of a state root (server.ts): a unix socket in
 * `<state root>/.supervisor/` (a directory of mode 0700: only the owner reaches it), one
 * JSON request per connection, answered by one JSON line. A command that finds no
 * supervisor starts one (`micro _supervise`, in a session of its own) and waits for its
 * socket; two commands starting one at once are fine (the second supervisor finds the
 * first one's lock and leaves).
 */
import { MicroError } from "../errors.ts";
import { microExe, SUPERVISOR_CACHE_SUFFIX } from "../store/rmtree.ts";
import { untrustedRoot, untrustedRootError } from "../stateroot.ts";

export function supervisorDir(stateRoot: string): string {
  return `${stateRoot}/.supervisor`;
}

export function socketPath(stateRoot: string): string {
  return `${supervisorDir(stateRoot)}/sock`;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export type Request =
  | { op: "ping" }
  | { op: "run"; argv: string[]; cwd: string; env: Record<string, string> }
  | { op: "start"; recordDir: string; argv: string[]; cwd: string; env: Record<string, string> }
  | { op: "kill"; runId: string; signal: number }
  | { op: "stop"; runId: string; signal: number; timeout: number }
  | { op: "wait"; runId: string }
  | { op: "attach"; runId: string; stdin: boolean };

export interface Reply {
  ok: boolean;
  /** A one-line error (ok false). */
  error?: string;
  code?: number;
  stdout?: string;
  stderr?: string;
  exitCode?: number | null;
}

async function connect(stateRoot: string): Promise<Deno.UnixConn | null> {
  try {
    return await Deno.connect({ transport: "unix", path: socketPath(stateRoot) });
  } catch {
    return null;
  }
}

/** Sends one request and reads the answer; null when the supervisor went away first. */
async function exchange(conn: Deno.UnixConn, req: Request): Promise<Reply | null> {
  try {
    await conn.write(new TextEncoder().encode(JSON.stringify(req) + "\n"));
    const chunks: Uint8Array[] = [];
    let total = 0;
    const buf = new Uint8Array(65536);
    for (;;) {
      const n = await conn.read(buf);
      if (n === null) break;
      chunks.push(buf.slice(0, n));
      total += n;
      if (buf[n - 1] === 10 || total > 4 << 20) break;
    }
    const all = new Uint8Array(total);
    let off = 0;
    for (const c of chunks) {
      all.set(c, off);
      off += c.length;
    }
    const text = new TextDecoder().decode(all).trim();
    return text ? JSON.parse(text) as Reply : null;
  } catch {
    return null;
  } finally {
    try {
      conn.close();
    } catch { /* closed */ }
  }
}

/** The system's directories only: the supervisor outlives the caller's shell and its PATH. */
const SUPERVISOR_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/** micro's own settings, taken from the first caller: where its stores and networks are. */
const PASSED = [
  "HOME",
  "XDG_RUNTIME_DIR",
  "XDG_DATA_HOME",
  "MICRO_ROOT",
  "MICRO_DEFAULT_NETWORK",
  "CNI_PATH",
];

/**
 * The supervisor's whole environment, built rather than inherited: it outlives the
 * caller's shell, serves every later command of this state root (as root: every root
 * session's), and restarts containers in it. So nothing of the caller that steers Deno, V8,
 * the dynamic loader or micro's own mode gets in (DENO_*, LD_*, NODE_OPTIONS, MICRO_EXE,
 * MICRO_TRACE...): only micro's settings above, the state root it serves, a system PATH,
 * and a Deno cache of its own beside the launcher's (`denoDir`) when there is one. Its own:
 * it runs under other V8 flags than micro's commands, and V8 refuses a code cache made under
 * other flags, so in one cache each would recompile and rewrite what the other cached
 * (measured: the next command after a supervisor's start took 139 ms where 38 was usual).
 * Pure.
 */
export function supervisorEnv(
  caller: Record<string, string>,
  stateRoot: string,
  denoDir?: string,
): Record<string, string> {
  const env: Record<string, string> = {};
  for (const k of PASSED) if (caller[k] !== undefined) env[k] = caller[k];
  env.PATH = SUPERVISOR_PATH;
  env.MICRO_STATE_ROOT = stateRoot;
  env.DENO_NO_UPDATE_CHECK = "1";
  if (denoDir) env.DENO_DIR = `${denoDir}${SUPERVISOR_CACHE_SUFFIX}`;
  // Under a stream of short-lived log strings V8 lets its heap grow to what a 24 GB host
  // allows (measured: 138 MB of Private_Dirty at 10 chatty containers, flat); small
  // semi-spaces and V8's size-over-speed mode keep it near 47 MB, with no heap cap to hit.
  env.DENO_V8_FLAGS = "--max-semi-space-size=1,--optimize-for-size";
  return env;
}

/** The launcher's Deno cache (tools/build.sh: DENO_DIR is `deno_dir` beside its deno). */
function launcherDenoDir(): string | undefined {
  const exe = Deno.execPath();
  const dir = `${exe.slice(0, exe.lastIndexOf("/"))}/deno_dir`;
  try {
    return Deno.lstatSync(dir).isDirectory ? dir : undefined;
  } catch {
    return undefined;
  }
}

/** Starts a supervisor for `stateRoot` in its own session; it outlives this command. */
function spawnSupervisor(stateRoot: string): void {
  // It never forks the engine (it starts micro processes that do), and it lives long: V8's
  // compilers are worth their cost here, so not core/v8.ts's flags.
  const exe = microExe("--single-threaded");
  const child = new Deno.Command(exe[0], {
    args: [...exe.slice(1), "_supervise"],
    stdin: "null",
    stdout: "null",
    stderr: "null",
    detached: true,
    cwd: "/",
    clearEnv: true,
    env: supervisorEnv(Deno.env.toObject(), stateRoot, launcherDenoDir()),
  }).spawn();
  child.unref();
}

/**
 * The supervisor's answer to `req`, starting the supervisor when none runs. A supervisor
 * that leaves as the request arrives (it had nothing left) is started again once.
 */
export async function ask(stateRoot: string, uid: number, req: Request): Promise<Reply> {
  const bad = untrustedRoot(stateRoot, uid);
  if (bad) throw untrustedRootError(stateRoot, uid, bad);
  for (let attempt = 0; attempt < 3; attempt++) {
    const conn = await connectOrStart(stateRoot);
    if (!conn) break;
    const reply = await exchange(conn, req);
    if (reply) return reply;
    if (req.op !== "ping" && req.op !== "wait" && req.op !== "start" && req.op !== "run") break;
    await sleep(50);
  }
  throw new MicroError(`supervisor: no answer on ${socketPath(stateRoot)}`, {
    hint: `see if "micro _supervise" can run here (MICRO_STATE_ROOT=${stateRoot})`,
  });
}

/** A connection to the supervisor, started when none runs; null when none answers. */
async function connectOrStart(stateRoot: string): Promise<Deno.UnixConn | null> {
  let conn = await connect(stateRoot);
  if (!conn) {
    spawnSupervisor(stateRoot);
    const end = Date.now() + 10_000;
    while (!conn && Date.now() < end) {
      await sleep(20);
      conn = await connect(stateRoot);
    }
  }
  return conn;
}

/** The supervisor's answer to an attach request. */
export interface AttachReply extends Reply {
  /** The container has a terminal (-t). */
  tty?: boolean;
  /** Its stdin is open (-i). */
  stdin?: boolean;
}

/**
 * `micro attach`: the attach request sent (with ask()'s checks) and the supervisor's answer
 * line read; the connection then carries frames (attach.ts), the first bytes of which may
 * have come with the answer (`rest`). A supervisor killed meanwhile is started again once
 * (it takes the container back).
 */
export async function openAttach(
  stateRoot: string,
  uid: number,
  runId: string,
  stdin: boolean,
): Promise<{ conn: Deno.UnixConn; reply: AttachReply; rest: Uint8Array }> {
  const bad = untrustedRoot(stateRoot, uid);
  if (bad) throw untrustedRootError(stateRoot, uid, bad);
  for (let attempt = 0; attempt < 2; attempt++) {
    const conn = await connectOrStart(stateRoot);
    if (!conn) break;
    try {
      const req: Request = { op: "attach", runId, stdin };
      await conn.write(new TextEncoder().encode(JSON.stringify(req) + "\n"));
      let got = new Uint8Array(0);
      const buf = new Uint8Array(65536);
      for (;;) {
        const n = await conn.read(buf);
        if (n === null) break;
        const all = new Uint8Array(got.length + n);
        all.set(got);
        all.set(buf.subarray(0, n), got.length);
        got = all;
        const nl = got.indexOf(10);
        if (nl >= 0) {
          const reply = JSON.parse(new TextDecoder().decode(got.subarray(0, nl))) as AttachReply;
          return { conn, reply, rest: got.slice(nl + 1) };
        }
        if (got.length > 64 * 1024) break;
      }
    } catch { /* the supervisor went away */ }
    try {
      conn.close();
    } catch { /* closed */ }
    await sleep(50);
  }
  throw new MicroError(`supervisor: no answer on ${socketPath(stateRoot)}`, {
    hint: `see if "micro _supervise" can run here (MICRO_STATE_ROOT=${stateRoot})`,
  });
}

/** The supervisor's answer when one runs; null when none does (nothing is started). */
export async function askRunning(stateRoot: string, req: Request): Promise<Reply | null> {
  const conn = await connect(stateRoot);
  return conn ? await exchange(conn, req) : null;
}
