/**
 * Long-running containers, as Docker's commands: `run -d`, `logs`, `stop`, `kill`, `wait`,
 * `start`, `restart`, `inspect`, `boot`, and the internal `_supervise`, `_run-detached`
 * and `_start-detached`. Detached containers are supervised by one process per state root
 * (core/supervisor/server.ts); these commands ask it over its socket, and read logs and
 * records from the store themselves.
 */
import { MicroError } from "../core/errors.ts";
import { gcState } from "./_gc.ts";
import type { ContainerRecord } from "../core/store/containers.ts";

async function where(root?: string) {
  const { storeRoot } = await import("../core/store/paths.ts");
  const { stateRoot } = await import("../core/stateroot.ts");
  const uid = Deno.uid() ?? 0;
  return { root: root ?? storeRoot(uid), state: stateRoot(uid), uid };
}

/** Options of these commands: `known` maps a flag to [key, takes a value]. */
function parse(
  argv: string[],
  known: Record<string, [string, boolean]>,
  usage: string,
): { opts: Map<string, string[]>; rest: string[]; root?: string } {
  const opts = new Map<string, string[]>();
  const rest: string[] = [];
  let root: string | undefined;
  let i = 1;
  for (; i < argv.length; i++) {
    let a = argv[i];
    if (a === "--") {
      i++;
      break;
    }
    if (!a.startsWith("-") || a === "-") {
      rest.push(a);
      continue;
    }
    let value: string | undefined;
    const eq = a.indexOf("=");
    if (a.startsWith("--") && eq > 0) {
      value = a.slice(eq + 1);
      a = a.slice(0, eq);
    }
    if (a === "--help" || a === "-h") throw new Help(usage);
    if (a === "--root") {
      root = value ?? argv[++i];
      if (!root) throw new MicroError(`option "--root" needs a directory`, { hint: usage });
      if (!root.startsWith("/")) root = `${Deno.cwd()}/${root}`;
      continue;
    }
    // -ft: several short flags at once.
    const forms = !a.startsWith("--") && a.length > 2 && known[a] === undefined
      ? [...a.slice(1)].map((c) => `-${c}`)
      : [a];
    for (const f of forms) {
      const k = known[f];
      if (!k) throw new MicroError(`unknown option "${f}"`, { hint: usage });
      const [key, takes] = k;
      let v = "true";
      if (takes) {
        v = value ?? argv[++i];
        if (v === undefined) throw new MicroError(`option "${f}" needs a value`, { hint: usage });
      }
      opts.set(key, [...(opts.get(key) ?? []), v]);
    }
  }
  rest.push(...argv.slice(i));
  return { opts, rest, root };
}

class Help extends Error {}

async function withHelp(fn: () => Promise<number>): Promise<number> {
  try {
    return await fn();
  } catch (e) {
    if (!(e instanceof Help)) throw e;
    console.log(e.message);
    return 0;
  }
}

const enc = new TextEncoder();

/** The reader of micro's output went away (`micro logs | head`): nothing more to print. */
class ReaderGone extends Error {}

async function writeAll(to: typeof Deno.stdout, text: string | Uint8Array): Promise<void> {
  const bytes = typeof text === "string" ? enc.encode(text) : text;
  try {
    for (let off = 0; off < bytes.length;) off += await to.write(bytes.subarray(off));
  } catch (e) {
    if (e instanceof Deno.errors.BrokenPipe) throw new ReaderGone();
    throw e;
  }
}

/**
 * `fn`, ended quietly when its reader leaves, with the status of a process killed by SIGPIPE
 * (as cat's): not an internal error, and never a follow that goes on printing to nobody.
 */
function untilReaderGone(fn: () => Promise<number>): () => Promise<number> {
  return () =>
    fn().catch((e) => {
      if (e instanceof ReaderGone) return 128 + 13;
      throw e;
    });
}

// ---------------------------------------------------------------------------------------
// run -d, and the supervisor's side of it

/** `micro run -d`: checked here, run by the supervisor; prints the id once the command runs. */
export async function runDetached(argv: string[]): Promise<number> {
  const { parseRun } = await import("../core/cli.ts");
  const req = parseRun(argv);
  // Docker's refusal: a detached container's output goes to its log; -t and -i are kept
  // open by the supervisor for `micro attach`.
  if (req.attach) {
    throw new MicroError(`conflicting options: -a and -d`, {
      hint: "drop -a: read the output with micro logs, or attach with micro attach",
    });
  }
  const { parseLogOpts } = await import("../core/supervisor/logs.ts");
  const { parseRestart } = await import("../core/supervisor/policy.ts");
  parseLogOpts(req.logOpts ?? []);
  const policy = parseRestart(req.restart ?? "no");
  if (policy.name !== "no" && req.rm) {
    throw new MicroError(`options "--restart ${req.restart}" and "--rm" conflict`, {
      hint: "a container removed at its end cannot be restarted: drop one",
    });
  }
  const s = await where(req.root);
  const { ask } = await import("../core/supervisor/client.ts");
  const reply = await ask(s.state, s.uid, {
    op: "run",
    argv,
    cwd: Deno.cwd(),
    env: Deno.env.toObject(),
  });
  if (reply.stderr) await writeAll(Deno.stderr, reply.stderr);
  if (!reply.ok) {
    console.error(`micro: ${reply.error}`);
    return reply.code ?? 125;
  }
  if (reply.stdout) await writeAll(Deno.stdout, reply.stdout);
  return reply.code ?? 0;
}

/** `micro _supervise`: the supervisor of this user's state root (core/supervisor/server.ts). */
export async function supervise(_argv: string[]): Promise<number> {
  const { stateRoot } = await import("../core/stateroot.ts");
  const { Supervisor } = await import("../core/supervisor/server.ts");
  const uid = Deno.uid() ?? 0;
  return await new Supervisor(stateRoot(uid), uid).serve();
}

/**
 * The runner's side of the handover: the container's pid and pipes as one JSON line on
 * stdout, then "ok" from the supervisor on stdin (anything else: it did not take it).
 */
async function handover(
  run: import("../core/run.ts").DetachedRun,
  req: import("../core/cli.ts").Request,
): Promise<void> {
  const { parseLogOpts } = await import("../core/supervisor/logs.ts");
  const { parseRestart } = await import("../core/supervisor/policy.ts");
  const line = {
    ...run,
    openStdin: req.stdin,
    log: parseLogOpts(req.logOpts ?? []),
    restart: parseRestart(req.restart ?? "no"),
  };
  const buf = new Uint8Array(16);
  let got = "";
  try {
    await writeAll(Deno.stdout, JSON.stringify(line) + "\n");
    for (;;) {
      const n = await Deno.stdin.read(buf);
      if (n === null) break;
      got += new TextDecoder().decode(buf.subarray(0, n));
      if (got.includes("\n")) break;
    }
  } catch (e) {
    // Its pipes broke: the supervisor was killed meanwhile.
    throw new MicroError(`run -d: the supervisor went away before it took the container`, {
      hint: `${(e as Error).message}; the container was stopped`,
    });
  }
  if (got.trim() !== "ok") {
    throw new MicroError(`run -d: the supervisor did not take the container`, {
      hint: "see the error above; the container was stopped",
    });
  }
}

/** `micro _run-detached ARGV...`: `micro run ARGV` as the supervisor's child. */
export async function runDetachedWorker(argv: string[]): Promise<number> {
  const { RunSignals } = await import("../core/signals.ts");
  const signals = new RunSignals();
  await gcState();
  const { runCommand } = await import("../core/run.ts");
  try {
    return await runCommand(["run", ...argv.slice(1)], signals, { handover });
  } finally {
    signals.remove();
  }
}

/**
 * `micro _start-detached RECORD_DIR [--restarting]`: a kept container run again from its
 * record, on its own layer (`micro start`, restart policies).
 */
export async function startDetachedWorker(argv: string[]): Promise<number> {
  const { readRecord, writeRecord } = await import("../core/store/containers.ts");
  const dir = argv[1];
  const rec = dir?.includes("/containers/") ? readRecord(dir) : null;
  if (!rec) throw new MicroError(`start: no container record in ${dir}`);
  const r = rec as ContainerRecord & { restartCount?: number; stoppedByUser?: boolean };
  if (argv.includes("--restarting")) r.restartCount = (r.restartCount ?? 0) + 1;
  else delete r.stoppedByUser;
  writeRecord(dir, rec);
  const { RunSignals } = await import("../core/signals.ts");
  const signals = new RunSignals();
  await gcState();
  const { runCommand } = await import("../core/run.ts");
  try {
    const root = dir.slice(0, dir.lastIndexOf("/containers/"));
    return await runCommand(startArgv(rec, root), signals, { handover, restart: rec });
  } finally {
    signals.remove();
  }
}

/**
 * The `micro run` arguments that make `rec` again: its options as typed (with -d), its
 * image and its command (the image's Entrypoint is replaced by the command as it ran).
 */
export function startArgv(rec: ContainerRecord, root?: string): string[] {
  const opts = rec.options.filter((o) => o !== "--rm");
  if (!opts.some((o) => o === "-d" || o === "--detach")) opts.push("-d");
  // Its own store, whatever MICRO_ROOT the supervisor (or the caller) has: the last wins.
  if (root) opts.push("--root", root);
  const image = rec.image?.name ?? rec.image?.path;
  if (!image) {
    return ["run", ...opts, "--", ...rec.command];
  }
  if (rec.image?.name) {
    return ["run", ...opts, "--entrypoint", rec.command[0] ?? "", image, ...rec.command.slice(1)];
  }
  return ["run", ...opts, image, ...rec.command];
}

// ---------------------------------------------------------------------------------------
// The commands on a container

/** The container `ref` names (name, full id or unique prefix), or a one-line error. */
async function resolve(root: string, ref: string): Promise<ContainerRecord> {
  const { resolveContainer } = await import("../core/store/containers.ts");
  return resolveContainer(root, ref);
}

/**
 * `fn` on container `ref` holding its lock (core/state.ts withContainerLock): two commands
 * on one container run one after the other; the record is read again once the lock is held
 * (an rm or a start may have come first).
 */
export async function locked(
  root: string,
  ref: string,
  fn: (rec: ContainerRecord) => Promise<void>,
): Promise<void> {
  const rec = await resolve(root, ref);
  const { containerDir } = await import("../core/store/paths.ts");
  const { withContainerLock } = await import("../core/state.ts");
  const { openLibc } = await import("../core/sys/libc.ts");
  await withContainerLock(containerDir(root, rec.id), ref, openLibc(), async (gone) => {
    if (gone) throw (await import("../core/store/resolve.ts")).noSuchContainer(ref);
    await fn(await resolve(root, rec.id));
  });
}

/** Its run in the state root while it runs detached; null when it does not run. */
async function running(rec: ContainerRecord, state: string) {
  const { liveRun } = await import("../core/store/live.ts");
  return liveRun(rec, state);
}

/** Each ref in turn; a failure is one line, and the exit code 125. */
async function each(
  refs: string[],
  fn: (ref: string) => Promise<void>,
): Promise<number> {
  let failed = false;
  for (const ref of refs) {
    try {
      await fn(ref);
    } catch (e) {
      if (!(e instanceof MicroError)) throw e;
      console.error(`micro: ${e.line()}`);
      failed = true;
    }
  }
  return failed ? 125 : 0;
}

/**
 * `stop` of a foreground run: its first process gets the signal, SIGKILL after the timeout,
 * and the run's micro records the end (as when it gets SIGTERM, core/signals.ts).
 */
async function stopForeground(
  ref: string,
  st: import("../core/state.ts").RunState,
  signal: number,
  timeout: number,
): Promise<void> {
  const { isAlive, signalProcess } = await import("../core/state.ts");
  const { openLibc } = await import("../core/sys/libc.ts");
  const sys = openLibc();
  const gone = () => !isAlive(st.containerPid, st.containerStartTime);
  // Through a pidfd checked against the start time: never a pid given out again since.
  const { thawKilled } = await import("../core/stats/mod.ts");
  const send = (n: number) => {
    signalProcess(sys, st.containerPid!, st.containerStartTime!, n);
    if (n === 9) thawKilled(st);
  };
  send(signal);
  const end = timeout < 0 ? Infinity : Date.now() + timeout * 1000;
  while (!gone() && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
  send(9);
  // Its micro records the end and cleans up; a few seconds for it.
  const until = Date.now() + 5000;
  while (isAlive(st.pid, st.startTime) && Date.now() < until) {
    await new Promise((r) => setTimeout(r, 50));
  }
  console.log(ref);
}

function notDetached(ref: string): MicroError {
  return new MicroError(`container ${ref} runs in the foreground of its micro run`, {
    hint: "stop it there (Ctrl-C or SIGTERM to its micro), or remove it with micro rm -f",
  });
}

/** `-t` of stop and restart: seconds from the stop signal to SIGKILL (Docker's spellings). */
const TIME_OPTIONS: Record<string, [string, boolean]> = {
  "-t": ["time", true],
  "--time": ["time", true],
  "--timeout": ["time", true],
};

/** `-s` of stop and kill. */
const SIGNAL_OPTIONS: Record<string, [string, boolean]> = {
  "-s": ["signal", true],
  "--signal": ["signal", true],
};

/** The `-t` given (seconds; -1: never SIGKILL), or undefined: one parser for every verb. */
export async function timeOption(
  opts: Map<string, string[]>,
  usage: string,
): Promise<number | undefined> {
  const text = opts.get("time")?.at(-1);
  if (text === undefined) return undefined;
  const { parseStopTimeout } = await import("../core/signals.ts");
  const n = parseStopTimeout(text);
  if (n === undefined) {
    throw new MicroError(`option "-t": not a number of seconds (-1: never kill): "${text}"`, {
      hint: usage,
    });
  }
  return n;
}

/** The `-s` given as a number, or undefined. */
async function signalOption(
  opts: Map<string, string[]>,
  usage: string,
): Promise<number | undefined> {
  const text = opts.get("signal")?.at(-1);
  if (text === undefined) return undefined;
  const { parseSignal } = await import("../core/signals.ts");
  const n = parseSignal(text);
  if (n === undefined) {
    throw new MicroError(`option "-s": not a signal: "${text}"`, { hint: usage });
  }
  return n;
}

/**
 * How `rec` is stopped: the signal given, else its own stop signal (`--stop-signal`, the
 * image's StopSignal), else SIGTERM; then SIGKILL after the timeout given, else its own,
 * else Docker's 10 s.
 */
async function stopHow(
  rec: ContainerRecord,
  signal?: number,
  time?: number,
): Promise<{ signal: number; timeout: number }> {
  const { DEFAULT_STOP_TIMEOUT, parseSignal } = await import("../core/signals.ts");
  return {
    signal: signal ?? (rec.stopSignal ? parseSignal(rec.stopSignal) : undefined) ?? 15,
    timeout: time ?? rec.stopTimeout ?? DEFAULT_STOP_TIMEOUT,
  };
}

/** A detached container stopped by its supervisor; throws its error. */
async function stopDetached(
  s: { state: string; uid: number },
  rec: ContainerRecord,
  how: { signal: number; timeout: number },
): Promise<void> {
  const { ask } = await import("../core/supervisor/client.ts");
  const reply = await ask(s.state, s.uid, { op: "stop", runId: rec.runId, ...how });
  if (!reply.ok) throw new MicroError(reply.error ?? "stop failed");
}

const STOP_USAGE = "usage: micro stop [-t|--time SECONDS] [-s|--signal SIGNAL] NAME|ID...";

/** `micro stop`: the stop signal, then SIGKILL after the timeout (default 10 s). */
export function stop(argv: string[]): Promise<number> {
  return withHelp(async () => {
    const { opts, rest, root } = parse(argv, { ...TIME_OPTIONS, ...SIGNAL_OPTIONS }, STOP_USAGE);
    needContainers(rest, "stop", STOP_USAGE);
    const time = await timeOption(opts, STOP_USAGE);
    const sig = await signalOption(opts, STOP_USAGE);
    await gcState();
    const s = await where(root);
    return await each(rest, (ref) =>
      locked(s.root, ref, async (rec) => {
        const st = await running(rec, s.state);
        if (!st) {
          // Stopped already, but perhaps waiting for a restart (its policy's back-off): no more.
          const { askRunning } = await import("../core/supervisor/client.ts");
          await askRunning(s.state, { op: "stop", runId: rec.runId, signal: 9, timeout: 0 });
          return void console.log(ref);
        }
        const how = await stopHow(rec, sig, time);
        if (!st.detached) return await stopForeground(ref, st, how.signal, how.timeout);
        await stopDetached(s, rec, how);
        console.log(ref);
      }));
  });
}

const KILL_USAGE = "usage: micro kill [-s|--signal SIGNAL] NAME|ID...";

/** `micro kill`: a signal (default SIGKILL) to the container's init. */
export function kill(argv: string[]): Promise<number> {
  return withHelp(async () => {
    const { opts, rest, root } = parse(argv, SIGNAL_OPTIONS, KILL_USAGE);
    needContainers(rest, "kill", KILL_USAGE);
    const signal = await signalOption(opts, KILL_USAGE) ?? 9;
    await gcState();
    const s = await where(root);
    const { ask } = await import("../core/supervisor/client.ts");
    return await each(rest, (ref) =>
      locked(s.root, ref, async (rec) => {
        const st = await running(rec, s.state);
        if (!st) {
          throw new MicroError(`container ${ref} is not running`, { hint: "start it first" });
        }
        if (!st.detached) {
          // A foreground run: straight to its first process (its micro records the end).
          const { signalProcess } = await import("../core/state.ts");
          const { openLibc } = await import("../core/sys/libc.ts");
          const pid = st.containerPid ?? 0;
          signalProcess(openLibc(), pid, st.containerStartTime ?? -1, signal);
          if (signal === 9) (await import("../core/stats/mod.ts")).thawKilled(st);
          return void console.log(ref);
        }
        const reply = await ask(s.state, s.uid, { op: "kill", runId: rec.runId, signal });
        if (!reply.ok) throw new MicroError(reply.error ?? "kill failed");
        console.log(ref);
      }));
  });
}

const WAIT_USAGE = "usage: micro wait NAME|ID...";

/** Every verb here takes one container or more. */
function needContainers(rest: string[], verb: string, usage: string): void {
  if (!rest.length) throw new MicroError(`${verb} needs at least one container`, { hint: usage });
}

/** `micro wait`: blocks until each container ends; prints its exit code. */
export function wait(argv: string[]): Promise<number> {
  return withHelp(async () => {
    const { rest, root } = parse(argv, {}, WAIT_USAGE);
    needContainers(rest, "wait", WAIT_USAGE);
    await gcState();
    const s = await where(root);
    const { ask } = await import("../core/supervisor/client.ts");
    const { readRecord } = await import("../core/store/containers.ts");
    const { containerDir } = await import("../core/store/paths.ts");
    return await each(rest, async (ref) => {
      const rec = await resolve(s.root, ref);
      const st = await running(rec, s.state);
      if (st && !st.detached) {
        // A foreground run: its micro records the end.
        const { isAlive } = await import("../core/state.ts");
        while (isAlive(st.pid, st.startTime)) await new Promise((r) => setTimeout(r, 100));
      } else if (st) {
        const reply = await ask(s.state, s.uid, { op: "wait", runId: rec.runId });
        if (!reply.ok) throw new MicroError(reply.error ?? "wait failed");
      }
      const now = readRecord(containerDir(s.root, rec.id));
      if (!now) {
        // --rm: removed at its end; Docker still prints the code it knew.
        console.log("0");
        return;
      }
      console.log(now.exitCode === undefined ? "-1" : String(now.exitCode));
    });
  });
}

const LOGS_USAGE =
  "usage: micro logs [-f|--follow] [-n|--tail N|all] [--since TIME] [--until TIME] [-t|--timestamps] NAME|ID";

/** Docker's --since: RFC 3339, a Unix time (seconds), or a duration before now (10m, 1h30m). */
export function parseSince(text: string, now: number): number {
  if (/^\d+(\.\d+)?$/.test(text)) return Number(text) * 1000;
  const d = /^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+(?:\.\d+)?)s)?$/.exec(text);
  if (d && text) {
    return now - ((Number(d[1] ?? 0) * 60 + Number(d[2] ?? 0)) * 60 + Number(d[3] ?? 0)) * 1000;
  }
  const t = Date.parse(text);
  if (Number.isNaN(t)) {
    throw new MicroError(`not a time: "${text}"`, {
      hint: "give RFC 3339 (2026-01-02T15:04:05Z), Unix seconds, or a duration (10m)",
    });
  }
  return t;
}

/** `micro logs`: the container's json-file log, as `docker logs` prints it. */
export function logs(argv: string[]): Promise<number> {
  return withHelp(untilReaderGone(async () => {
    const { opts, rest, root } = parse(argv, {
      "-f": ["follow", false],
      "--follow": ["follow", false],
      "-n": ["tail", true],
      "--tail": ["tail", true],
      "--since": ["since", true],
      "--until": ["until", true],
      "-t": ["timestamps", false],
      "--timestamps": ["timestamps", false],
    }, LOGS_USAGE);
    if (rest.length !== 1) throw new MicroError("logs needs one container", { hint: LOGS_USAGE });
    const tailText = opts.get("tail")?.at(-1) ?? "all";
    if (tailText !== "all" && !/^\d+$/.test(tailText)) {
      throw new MicroError(`option "--tail": not a number: "${tailText}"`, { hint: LOGS_USAGE });
    }
    const tail = tailText === "all" ? Infinity : Number(tailText);
    const now = Date.now();
    const since = opts.has("since") ? parseSince(opts.get("since")!.at(-1)!, now) : -Infinity;
    const until = opts.has("until") ? parseSince(opts.get("until")!.at(-1)!, now) : Infinity;
    const stamps = opts.has("timestamps");
    const s = await where(root);
    const rec = await resolve(s.root, rest[0]);
    const { containerDir } = await import("../core/store/paths.ts");
    const { followStep, logPath, openLogDir, parseEntry, parseLogOpts, START } = await import(
      "../core/supervisor/logs.ts"
    );
    const { openLibc } = await import("../core/sys/libc.ts");
    const sys = openLibc();
    const path = logPath(containerDir(s.root, rec.id));
    // Every log file is opened by its name in this one directory fd (core/supervisor/logs.ts).
    const dirFd = openLogDir(sys, containerDir(s.root, rec.id));
    const name = (p: string) => p.slice(p.lastIndexOf("/") + 1);
    const show = (e: { log: string; stream: string; time: string }) => {
      const t = Date.parse(e.time);
      if (t < since || t > until) return null;
      const text = stamps ? `${e.time} ${e.log}` : e.log;
      return { err: e.stream === "stderr", text };
    };
    // The last `tail` entries of every file, oldest first (a bounded ring), from one set of
    // files opened together (a rotation between two opens would mix two moments); the
    // newest stays open for -f (core/supervisor/logs.ts followStep).
    const ring: { err: boolean; text: string }[] = [];
    let maxFile = 1;
    try {
      maxFile = parseLogOpts(logOptsOf(rec)).maxFile;
    } catch { /* checked when it was run */ }
    let pos = followStep(sys, dirFd, name(path), maxFile, START, (line) => {
      const e = parseEntry(line);
      const out = e && show(e);
      if (!out || tail === 0) return;
      ring.push(out);
      if (ring.length > tail) ring.shift();
    });
    if (!opts.has("follow")) pos.file?.close();
    const print = async (o: { err: boolean; text: string }) => {
      await writeAll(o.err ? Deno.stderr : Deno.stdout, o.text);
    };
    for (const o of ring) await print(o);
    if (!opts.has("follow")) return 0;
    // -f: new entries as they come, across rotations, until the container ends.
    const { liveRun } = await import("../core/store/live.ts");
    const { readRecord } = await import("../core/store/containers.ts");
    let ended = 0;
    for (;;) {
      const pending: { err: boolean; text: string }[] = [];
      try {
        pos = followStep(sys, dirFd, name(path), maxFile, pos, (line) => {
          const e = parseEntry(line);
          const out = e && show(e);
          if (out) pending.push(out);
        });
      } catch {
        /* not there yet */
      }
      // Outside that catch: a reader gone ends the follow (swallowed, it went on to the end).
      for (const o of pending) await print(o);
      if (ended) {
        if (ended++ > 2) return 0;
      } else {
        const now = readRecord(containerDir(s.root, rec.id));
        if (!now || !liveRun(now, s.state)) ended = 1;
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }));
}

/** The restart policy a container was run with (`--restart` among its options). */
export function policyOf(rec: ContainerRecord): string {
  let policy = "no";
  for (let i = 0; i < rec.options.length; i++) {
    const o = rec.options[i];
    if (o === "--restart" && i + 1 < rec.options.length) policy = rec.options[++i];
    else if (o.startsWith("--restart=")) policy = o.slice(10);
  }
  return policy;
}

/** `--log-opt` values among a container's options. */
function logOptsOf(rec: ContainerRecord): string[] {
  const out: string[] = [];
  for (let i = 0; i < rec.options.length; i++) {
    const o = rec.options[i];
    if (o === "--log-opt" && i + 1 < rec.options.length) out.push(rec.options[++i]);
    else if (o.startsWith("--log-opt=")) out.push(o.slice(10));
  }
  return out;
}

/** Starts the kept container `rec` detached, through the supervisor; throws its error. */
async function startOne(
  s: { root: string; state: string; uid: number },
  rec: ContainerRecord,
): Promise<void> {
  const { containerDir } = await import("../core/store/paths.ts");
  const { ask } = await import("../core/supervisor/client.ts");
  const reply = await ask(s.state, s.uid, {
    op: "start",
    recordDir: containerDir(s.root, rec.id),
    argv: [],
    cwd: "/",
    env: Deno.env.toObject(),
  });
  if (!reply.ok) throw new MicroError(reply.error ?? "start failed");
  if (reply.code !== 0) {
    const said = (reply.stderr ?? "").trim().split("\n").filter((l) => l).at(-1) ?? "";
    throw new MicroError(
      `start ${rec.name}: ${said.replace(/^micro: /, "") || `exit ${reply.code}`}`,
      {
        exitCode: reply.code ?? 125,
      },
    );
  }
}

const START_USAGE =
  "usage: micro start [-a|--attach] [-i|--interactive] [--detach-keys KEYS] NAME|ID...";

/** Whether `rec` was run with a terminal (-t) or an open stdin (-i): `start -a` attaches. */
async function interactiveRun(rec: ContainerRecord): Promise<boolean> {
  try {
    const { parseRun } = await import("../core/cli.ts");
    const req = parseRun(["run", ...rec.options, "--", "true"]);
    return req.terminal || req.stdin;
  } catch {
    return false;
  }
}

/** `micro start`: kept containers run again, on their own layer; detached unless -a. */
export function start(argv: string[]): Promise<number> {
  return withHelp(async () => {
    const { opts, rest, root } = parse(argv, {
      "-a": ["attach", false],
      "--attach": ["attach", false],
      "-i": ["interactive", false],
      "--interactive": ["interactive", false],
      "--detach-keys": ["detachKeys", true],
    }, START_USAGE);
    const { DEFAULT_DETACH_KEYS, parseDetachKeys } = await import(
      "../core/supervisor/attach.ts"
    );
    const detachKeys = opts.get("detachKeys")?.at(-1) ?? DEFAULT_DETACH_KEYS;
    if (!parseDetachKeys(detachKeys)) {
      throw new MicroError(`invalid detach keys (${detachKeys}) provided`, {
        hint: 'give keys as "ctrl-p,ctrl-q" (see micro attach --help)',
      });
    }
    needContainers(rest, "start", START_USAGE);
    if (opts.has("attach") && rest.length > 1) {
      throw new MicroError("start -a takes one container", { hint: START_USAGE });
    }
    await gcState();
    const s = await where(root);
    let last: ContainerRecord | null = null;
    const code = await each(rest, (ref) =>
      locked(s.root, ref, async (rec) => {
        last = rec;
        if (await running(rec, s.state)) return void (!opts.has("attach") && console.log(ref));
        if (rec.rm) throw new MicroError(`container ${ref} is removed at its end (--rm)`);
        await startOne(s, rec);
        if (!opts.has("attach")) console.log(ref);
      }));
    if (code !== 0 || !opts.has("attach") || !last) return code;
    const rec = last as ContainerRecord;
    // -a of a container run with -t or -i, or -a -i: attached (micro attach), as Docker.
    if (opts.has("interactive") || await interactiveRun(rec)) {
      const { attachTo } = await import("./attach.ts");
      const { readRecord } = await import("../core/store/containers.ts");
      const { containerDir } = await import("../core/store/paths.ts");
      const now = readRecord(containerDir(s.root, rec.id)) ?? rec;
      return await attachTo(s, now, rest[0], {
        stdin: opts.has("interactive"),
        detachKeys,
        sigProxy: true,
      });
    }
    // -a: its output from this start on, until it ends; then its exit code.
    const since = String((Date.now() - 1000) / 1000);
    await logs(["logs", "-f", "--since", since, ...(root ? ["--root", root] : []), rec.id]);
    const { readRecord } = await import("../core/store/containers.ts");
    const { containerDir } = await import("../core/store/paths.ts");
    return readRecord(containerDir(s.root, rec.id))?.exitCode ?? 125;
  });
}

const RESTART_USAGE = "usage: micro restart [-t|--time SECONDS] NAME|ID...";

/** `micro restart`: stop (as `micro stop`), then start detached. */
export function restart(argv: string[]): Promise<number> {
  return withHelp(async () => {
    const { opts, rest, root } = parse(argv, TIME_OPTIONS, RESTART_USAGE);
    needContainers(rest, "restart", RESTART_USAGE);
    const time = await timeOption(opts, RESTART_USAGE);
    const s = await where(root);
    return await each(rest, (ref) =>
      locked(s.root, ref, async (rec) => {
        const st = await running(rec, s.state);
        if (st && !st.detached) throw notDetached(ref);
        if (st) await stopDetached(s, rec, await stopHow(rec, undefined, time));
        await gcState();
        const { readRecord } = await import("../core/store/containers.ts");
        const { containerDir } = await import("../core/store/paths.ts");
        await startOne(s, readRecord(containerDir(s.root, rec.id)) ?? rec);
        console.log(ref);
      }));
  });
}

const INSPECT_USAGE = "usage: micro inspect NAME|ID...";

/** `micro inspect`: containers as JSON (Docker's field names where they apply). */
export function inspect(argv: string[]): Promise<number> {
  return withHelp(async () => {
    const { rest, root } = parse(argv, {}, INSPECT_USAGE);
    needContainers(rest, "inspect", INSPECT_USAGE);
    await gcState();
    const s = await where(root);
    const { statusOf } = await import("../core/store/live.ts");
    const { containerDir } = await import("../core/store/paths.ts");
    const { logPath } = await import("../core/supervisor/logs.ts");
    const out: unknown[] = [];
    const code = await each(rest, async (ref) => {
      const rec = await resolve(s.root, ref);
      const live = await running(rec, s.state);
      const status = statusOf(rec, s.state);
      const more = rec as ContainerRecord & {
        restartCount?: number;
        oomKilled?: boolean;
        stoppedByUser?: boolean;
      };
      const mounts: { Type: string; Spec: string }[] = [];
      let network = "default";
      for (let i = 0; i < rec.options.length; i++) {
        const o = rec.options[i];
        const v = rec.options[i + 1];
        if ((o === "-v" || o === "--volume") && v) mounts.push({ Type: "volume", Spec: v });
        else if (o === "--mount" && v) mounts.push({ Type: "mount", Spec: v });
        else if (o === "--tmpfs" && v) mounts.push({ Type: "tmpfs", Spec: v });
        else if (o === "--network" && v) network = v;
        else if (o.startsWith("--network=")) network = o.slice(10);
      }
      const dir = containerDir(s.root, rec.id);
      out.push({
        Id: rec.id,
        Name: rec.name,
        Created: rec.created,
        Path: rec.command[0] ?? "",
        Args: rec.command.slice(1),
        State: {
          Status: status.state,
          Running: status.state === "running",
          Paused: false,
          OOMKilled: more.oomKilled === true,
          Pid: live?.containerPid ?? 0,
          ExitCode: status.exitCode,
          StartedAt: rec.startedAt ?? null,
          FinishedAt: status.state === "running" ? null : rec.finishedAt ?? null,
          Error: rec.error ?? "",
        },
        Image: rec.image?.id ?? rec.image?.path ?? null,
        ImageName: rec.image?.name ?? rec.image?.path ?? null,
        RestartCount: more.restartCount ?? 0,
        Config: {
          Cmd: rec.command,
          Profiles: rec.profiles,
          Options: rec.options,
          Labels: rec.labels ?? {},
          StopSignal: rec.stopSignal ?? null,
          StopTimeout: rec.stopTimeout ?? null,
        },
        HostConfig: {
          RestartPolicy: policyOf(rec),
          LogConfig: { Type: "json-file", Config: logOptsOf(rec) },
          AutoRemove: rec.rm,
          Detached: live?.detached === true || rec.options.includes("-d") ||
            rec.options.includes("--detach"),
        },
        Mounts: mounts,
        NetworkSettings: { Network: network },
        LogPath: logPath(dir),
        StoppedByUser: more.stoppedByUser === true,
      });
    });
    console.log(JSON.stringify(out, null, 2));
    return code;
  });
}

const BOOT_USAGE = "usage: micro boot [--root DIR]";

/**
 * `micro boot`: at boot, starts every kept container whose policy is `always`, or
 * `unless-stopped` unless a user stopped it (a systemd unit or an init script runs this).
 */
export function boot(argv: string[]): Promise<number> {
  return withHelp(async () => {
    const { rest, root } = parse(argv, {}, BOOT_USAGE);
    if (rest.length) {
      throw new MicroError(`boot takes no arguments: "${rest[0]}"`, { hint: BOOT_USAGE });
    }
    await gcState();
    const s = await where(root);
    const { listContainers } = await import("../core/store/containers.ts");
    const wanted = listContainers(s.root).filter((rec) => {
      const p = policyOf(rec);
      const stopped = (rec as ContainerRecord & { stoppedByUser?: boolean }).stoppedByUser;
      return !rec.rm && (p === "always" || (p === "unless-stopped" && !stopped));
    });
    let failed = false;
    for (const rec of wanted) {
      if (await running(rec, s.state)) continue;
      try {
        await startOne(s, rec);
        console.log(rec.name);
      } catch (e) {
        if (!(e instanceof MicroError)) throw e;
        console.error(`micro: ${e.line()}`);
        failed = true;
      }
    }
    return failed ? 125 : 0;
  });
}
