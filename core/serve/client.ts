/**
 * A served command's client (MICRO_SERVE): it hands the command, with its stdio, its
 * environment and its /proc directory, to a warm worker of `micro serve`, forwards the
 * signals it gets, and exits with the command's code. It loads none of the run's modules:
 * what it saves is their loading, which is most of a run's own time (bench/README.md).
 */
import { MicroError } from "../errors.ts";
import { openLibc } from "../sys/libc.ts";
import { C, cstr, type Sys } from "../sys/mod.ts";
import { FORWARDED_SIGNALS, SIGNUM } from "../signals.ts";
import { decodeReply, encodeRequest, type Reply, SERVE_ENV, sockaddrUn } from "./wire.ts";

function serveError(path: string, what: string, errno?: number, hint?: string): MicroError {
  return new MicroError(what, {
    phase: "serve",
    op: "connect",
    paths: { socket: path },
    errno,
    hint: hint ?? `start "micro serve", or unset ${SERVE_ENV} to run the command here`,
  });
}

/** A worker that cannot serve this client (its limits, say) sends it to another: tries. */
const TRIES = 3;

/** Runs `argv` in a worker of the server on `path`: the command's exit code. */
export async function viaServer(
  path: string,
  argv: string[],
  sys: Sys = openLibc(),
): Promise<number> {
  for (let k = 1;; k++) {
    const code = await once(path, argv, sys);
    if (typeof code === "number") return code;
    if (k === TRIES) {
      throw new MicroError(`no worker of the server could take the command: ${code.retry}`, {
        phase: "serve",
        hint: `restart "micro serve", or unset ${SERVE_ENV} to run it in this process`,
      });
    }
  }
}

async function once(path: string, argv: string[], sys: Sys): Promise<number | { retry: string }> {
  const addr = sockaddrUn(path);
  if (!addr) throw serveError(path, "the path is longer than a unix socket's 107 bytes");
  const sock = sys.socket(C.AF_UNIX, C.SOCK_STREAM | C.SOCK_CLOEXEC, 0);
  if (sock < 0) throw serveError(path, "socket", -sock);
  let self = -1;
  const listeners: [Deno.Signal, () => void][] = [];
  try {
    const rc = sys.connect(sock, addr);
    if (rc < 0) throw serveError(path, "", -rc);
    // The terminal goes only to root's server or the caller's own.
    const cred = new Int32Array(3);
    const got = sys.peerCred(sock, cred);
    if (got < 0) throw serveError(path, "SO_PEERCRED", -got);
    const uid = Deno.uid() ?? 0;
    if (cred[1] !== 0 && cred[1] !== uid) {
      throw serveError(
        path,
        `served by uid ${cred[1]}: micro hands its terminal only to root's server or yours`,
        undefined,
        `unset ${SERVE_ENV}, or point it at your own server's socket`,
      );
    }
    self = sys.open(cstr("/proc/self"), C.O_PATH | C.O_DIRECTORY | C.O_CLOEXEC, 0);
    if (self < 0) throw serveError(path, "open /proc/self", -self);
    const umask = sys.umask(0o022);
    sys.umask(umask);
    const req = encodeRequest({ argv, env: Deno.env.toObject(), umask });
    const sent = sys.sendWithFds(sock, req, [0, 1, 2, self]);
    if (sent !== req.length) {
      const errno = sent < 0 ? -sent : undefined;
      throw serveError(path, `sent ${Math.max(sent, 0)} of ${req.length} bytes`, errno);
    }
    sys.close(self);
    self = -1;
    const replies = lines(sys, sock);
    const first = await replies.next();
    if (!first) throw serveError(path, "the server closed the connection without an answer");
    if ("retry" in first) return first;
    if ("refused" in first) {
      throw new MicroError(`the server refused the command: ${first.refused}`, {
        phase: "serve",
        hint: `unset ${SERVE_ENV} to run it in this process`,
      });
    }
    if (!("pid" in first)) throw serveError(path, "the server's first answer is not a worker's");
    // What this process gets, the command's micro gets: the run there decides, as it would
    // here. Over the connection, so a signal late for this command never reaches another.
    let last = 0;
    for (const name of FORWARDED_SIGNALS) {
      const fn = () => {
        last = SIGNUM[name];
        sys.write(sock, new Uint8Array([SIGNUM[name]]), 1);
      };
      Deno.addSignalListener(name, fn);
      listeners.push([name, fn]);
    }
    const end = await replies.next();
    if (end && "exit" in end) return end.exit;
    // The worker died without saying its code: a signal we forwarded had it killed.
    if (last && last !== SIGNUM.SIGWINCH) return 128 + last;
    throw new MicroError(`the server's worker ${first.pid} ended without an exit status`, {
      phase: "serve",
      hint: "the server's stderr, or the kernel log (dmesg), says why",
    });
  } finally {
    for (const [name, fn] of listeners) Deno.removeSignalListener(name, fn);
    if (self >= 0) sys.close(self);
    sys.close(sock);
  }
}

/** The worker's reply lines, read off the main thread; null at EOF or on a malformed one. */
function lines(sys: Sys, sock: number) {
  const buf = new Uint8Array(4096);
  let pending = "";
  const dec = new TextDecoder();
  return {
    async next(): Promise<Reply | null> {
      for (;;) {
        const nl = pending.indexOf("\n");
        if (nl >= 0) {
          const line = pending.slice(0, nl);
          pending = pending.slice(nl + 1);
          return decodeReply(line);
        }
        if (pending.length > 8192) return null;
        const n = await sys.readAsync(sock, buf, buf.length);
        if (n <= 0) return null;
        pending += dec.decode(buf.subarray(0, n), { stream: true });
      }
    },
  };
}
