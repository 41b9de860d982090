/**
 * `micro attach`: this terminal (or these pipes) connected to a detached container's stdio
 * through its supervisor (core/supervisor/sessions.ts; protocol: core/supervisor/attach.ts),
 * as `docker attach`: its output from now on, input when its stdin is open (-i), raw mode
 * and the window size when it has a terminal (-t), the detach keys (ctrl-p ctrl-q) leave it
 * running, and its end ends the attach with its exit code.
 */
import { MicroError } from "../core/errors.ts";
import type { ContainerRecord } from "../core/store/containers.ts";

const USAGE =
  "usage: micro attach [--detach-keys KEYS] [--no-stdin] [--sig-proxy=true|false] NAME|ID";

export interface AttachOptions {
  /** Send this client's stdin (unless --no-stdin). */
  stdin: boolean;
  /** The detach keys (Docker's format). */
  detachKeys: string;
  /** Forward the signals micro gets to the container (without a terminal only). */
  sigProxy: boolean;
}

/** Docker's boolean spellings (Go's strconv.ParseBool). */
function parseBool(text: string): boolean | undefined {
  if (["1", "t", "T", "true", "TRUE", "True"].includes(text)) return true;
  if (["0", "f", "F", "false", "FALSE", "False"].includes(text)) return false;
  return undefined;
}

/** `micro attach`. */
export async function attach(argv: string[]): Promise<number> {
  const { DEFAULT_DETACH_KEYS } = await import("../core/supervisor/attach.ts");
  const opts: AttachOptions = { stdin: true, detachKeys: DEFAULT_DETACH_KEYS, sigProxy: true };
  let root: string | undefined;
  const refs: string[] = [];
  for (let i = 1; i < argv.length; i++) {
    const a = argv[i];
    const eq = a.indexOf("=");
    const [flag, inline] = a.startsWith("--") && eq > 0 ? [a.slice(0, eq), a.slice(eq + 1)] : [
      a,
      undefined,
    ];
    const value = () => {
      const v = inline ?? argv[++i];
      if (v === undefined) throw new MicroError(`option "${flag}" needs a value`, { hint: USAGE });
      return v;
    };
    if (flag === "--help" || flag === "-h") {
      console.log(USAGE);
      return 0;
    } else if (flag === "--detach-keys") opts.detachKeys = value();
    else if (flag === "--no-stdin") opts.stdin = false;
    else if (flag === "--sig-proxy") {
      // A Go boolean flag: a value only with "=".
      const b = inline === undefined ? true : parseBool(inline);
      if (b === undefined) {
        throw new MicroError(`option "--sig-proxy": not a boolean: "${inline}"`, { hint: USAGE });
      }
      opts.sigProxy = b;
    } else if (flag === "--root") {
      root = value();
      if (!root.startsWith("/")) root = `${Deno.cwd()}/${root}`;
    } else if (flag === "--") refs.push(...argv.slice(i + 1)), i = argv.length;
    else if (flag.startsWith("-") && flag !== "-") {
      throw new MicroError(`unknown option "${flag}"`, { hint: USAGE });
    } else refs.push(a);
  }
  if (refs.length !== 1) throw new MicroError("attach needs one container", { hint: USAGE });
  checkDetachKeys(opts.detachKeys, await import("../core/supervisor/attach.ts"));
  const { gcState } = await import("./_gc.ts");
  await gcState();
  const { storeRoot } = await import("../core/store/paths.ts");
  const { stateRoot } = await import("../core/stateroot.ts");
  const uid = Deno.uid() ?? 0;
  const s = { root: root ?? storeRoot(uid), state: stateRoot(uid), uid };
  const { resolveContainer } = await import("../core/store/containers.ts");
  const rec = resolveContainer(s.root, refs[0]);
  return await attachTo(s, rec, refs[0], opts);
}

function checkDetachKeys(
  text: string,
  m: typeof import("../core/supervisor/attach.ts"),
): Uint8Array {
  const keys = m.parseDetachKeys(text);
  if (!keys) {
    throw new MicroError(`invalid detach keys (${text}) provided`, {
      hint: 'give keys as "ctrl-p,ctrl-q": one character, ctrl-a to ctrl-z, ctrl-@, ctrl-[, ' +
        "ctrl-\\, ctrl-], ctrl-^, ctrl-_ or DEL, separated by commas",
    });
  }
  return keys;
}

/** The signals forwarded to a container without a terminal (Docker's --sig-proxy). */
const PROXIED: Deno.Signal[] = ["SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2"];
const SIGNUM: Record<string, number> = {
  SIGHUP: 1,
  SIGINT: 2,
  SIGQUIT: 3,
  SIGUSR1: 10,
  SIGUSR2: 12,
  SIGTERM: 15,
};

/**
 * Attaches to `rec` (which runs detached) until the container ends (its exit code), the
 * detach keys (0), or the supervisor goes away (125). Also `micro start -a`.
 */
export async function attachTo(
  s: { root: string; state: string; uid: number },
  rec: ContainerRecord,
  ref: string,
  opts: AttachOptions,
): Promise<number> {
  const proto = await import("../core/supervisor/attach.ts");
  const keys = checkDetachKeys(opts.detachKeys, proto);
  const { liveRun } = await import("../core/store/live.ts");
  const live = liveRun(rec, s.state);
  if (!live) {
    throw new MicroError(`you cannot attach to a stopped container, start it first`, {
      hint: `micro start -a -i ${ref}`,
    });
  }
  if (!live.detached) {
    throw new MicroError(`container ${ref} runs in the foreground of its micro run`, {
      hint: "its stdio is that micro's: attach there",
    });
  }
  const { openAttach, ask } = await import("../core/supervisor/client.ts");
  const { conn, reply, rest } = await openAttach(s.state, s.uid, rec.runId, opts.stdin);
  if (!reply.ok) {
    conn.close();
    if (/is not running/.test(reply.error ?? "")) {
      throw new MicroError(`you cannot attach to a stopped container, start it first`, {
        hint: `micro start -a -i ${ref}`,
      });
    }
    throw new MicroError(reply.error ?? "attach failed", { exitCode: reply.code ?? 125 });
  }
  const tty = reply.tty === true;
  const sendStdin = opts.stdin && reply.stdin === true;
  const enc = (type: number, b: Uint8Array) => proto.frame(type, b);
  let closed = false;
  const send = async (bytes: Uint8Array) => {
    if (closed) return;
    try {
      for (let off = 0; off < bytes.length;) off += await conn.write(bytes.subarray(off));
    } catch { /* the supervisor closed it: the output side tells why */ }
  };
  const cleanups: (() => void)[] = [];
  let restore = () => {};
  let result: (code: number) => void = () => {};
  const ended = new Promise<number>((r) => result = r);
  try {
    if (tty && sendStdin && Deno.stdin.isTerminal()) {
      Deno.stdin.setRaw(true);
      restore = () => Deno.stdin.setRaw(false);
    }
    if (tty) {
      const resize = () => {
        const size = windowSize();
        if (size) void send(proto.resizeFrame(size.rows, size.columns));
      };
      resize();
      try {
        Deno.addSignalListener("SIGWINCH", resize);
        cleanups.push(() => Deno.removeSignalListener("SIGWINCH", resize));
      } catch { /* not watchable */ }
    } else if (opts.sigProxy) {
      for (const sig of PROXIED) {
        const fwd = () => {
          void ask(s.state, s.uid, { op: "kill", runId: rec.runId, signal: SIGNUM[sig] })
            .catch(() => {});
        };
        try {
          Deno.addSignalListener(sig, fwd);
          cleanups.push(() => Deno.removeSignalListener(sig, fwd));
        } catch { /* not watchable */ }
      }
    }
    // Output, until the exit frame or the connection's end.
    void (async () => {
      const frames = new proto.Frames();
      const buf = new Uint8Array(65536);
      let chunk: Uint8Array | null = rest;
      try {
        for (;;) {
          if (!chunk) {
            const n = await conn.read(buf);
            if (n === null) break;
            chunk = buf.subarray(0, n);
          }
          for (const f of frames.push(chunk)) {
            if (f.type === proto.OUT_STDOUT) await writeAll(Deno.stdout, f.payload);
            else if (f.type === proto.OUT_STDERR) await writeAll(Deno.stderr, f.payload);
            else if (f.type === proto.OUT_EXIT && f.payload.length === 4) {
              const code = new DataView(f.payload.buffer, f.payload.byteOffset, 4).getInt32(0);
              return result(code < 0 ? -2 : code);
            }
          }
          chunk = null;
        }
      } catch { /* closed */ }
      result(-1);
    })();
    // Input: this client's stdin, watched for the detach keys.
    if (sendStdin) {
      void (async () => {
        const watch = new proto.DetachKeys(keys);
        const buf = new Uint8Array(proto.MAX_FRAME);
        for (;;) {
          let n: number | null;
          try {
            n = await Deno.stdin.read(buf);
          } catch {
            n = null;
          }
          if (n === null) {
            await send(enc(proto.IN_EOF, new Uint8Array(0)));
            return;
          }
          const { send: data, detach } = watch.feed(buf.subarray(0, n));
          if (data.length) await send(enc(proto.IN_DATA, data));
          if (detach) return result(0);
        }
      })();
    }
    const code = await ended;
    closed = true;
    if (code === -1) {
      throw new MicroError(`attach ${ref}: the supervisor closed the connection`, {
        hint: "the container may still run: see micro ps; attach again",
      });
    }
    if (code === -2) {
      throw new MicroError(
        `container ${ref} ended while no supervisor watched it: its exit code is unknown`,
        { hint: "micro inspect shows what is known of its end" },
      );
    }
    return code;
  } finally {
    restore();
    for (const c of cleanups) c();
    try {
      conn.close();
    } catch { /* closed */ }
  }
}

/** This client's window size (of the first of stdout, stdin, stderr that is a terminal). */
function windowSize(): { rows: number; columns: number } | null {
  try {
    return Deno.consoleSize();
  } catch {
    return null;
  }
}

async function writeAll(to: typeof Deno.stdout, bytes: Uint8Array): Promise<void> {
  for (let off = 0; off < bytes.length;) off += await to.write(bytes.subarray(off));
}
