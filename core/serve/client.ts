/**
 * A served command's client (MICRO_SERVE): it hands the command, with its stdio and its
 * environment, to a warm worker of `micro serve` (which finds this process through the
 * socket itself: SO_PEERPIDFD), forwards the signals it gets, and exits with the command's
 * code. A command no worker may serve runs in this process, as without a server. It loads
 * none of the run's modules: what it saves is their loading, which is most of a run's own
 * time (bench/README.md).
 */
import { errnoName, MicroError } from "../errors.ts";
import { mark } from "../trace.ts";
import { openLibc } from "../sys/libc.ts";
import { C, type Sys } from "../sys/mod.ts";
import { FORWARDED_SIGNALS, SIGNUM } from "../signals.ts";
import { decodeReply, encodeRequest, GO, type Reply, sockaddrUn } from "./wire.ts";

/** A worker that cannot serve this client (its limits, say) sends it to another: tries. */
const TRIES = 3;
/** How long a client waits for a worker to take its command before it runs it itself. */
const ANSWER_MS = 3000;

/**
 * Runs `argv` in a worker of the server on `path`: the command's exit code; null when it
 * is to run in this process instead (no server answers, or none may serve this process:
 * the reason is a line of MICRO_TRACE=1's trace). An error once a worker took it.
 */
export async function viaServer(
  path: string,
  argv: string[],
  sys: Sys = openLibc(),
  warmed = false,
): Promise<number | null> {
  for (let k = 0; k < TRIES; k++) {
    const got = await once(path, argv, sys, warmed);
    if (typeof got === "number") return got;
    mark(`serve: not served: ${got.why}`);
    if (!got.retry) break;
  }
  return null;
}

/** One try: the code, or why not (and whether another worker may take it). */
async function once(
  path: string,
  argv: string[],
  sys: Sys,
  warmed: boolean,
): Promise<number | { why: string; retry?: boolean }> {
  const addr = sockaddrUn(path);
  if (!addr) return { why: `${path}: longer than a unix socket's 107 bytes` };
  // Non-blocking for the connect: a server whose backlog is full is not waited for.
  const sock = sys.socket(C.AF_UNIX, C.SOCK_STREAM | C.SOCK_CLOEXEC | C.O_NONBLOCK, 0);
  if (sock < 0) return { why: `socket: ${errnoName(-sock)}` };
  const listeners: [Deno.Signal, () => void][] = [];
  try {
    const rc = sys.connect(sock, addr);
    if (rc < 0) return { why: `connect ${path}: ${errnoName(-rc)}` };
    sys.fcntl(sock, 4, 0); // F_SETFL: blocking again
    // The terminal goes only to root's server or the caller's own.
    const cred = new Int32Array(3);
    const got = sys.peerCred(sock, cred);
    if (got < 0) return { why: `SO_PEERCRED: ${errnoName(-got)}` };
    const uid = Deno.uid() ?? 0;
    if (cred[1] !== 0 && cred[1] !== uid) return { why: `${path} is served by uid ${cred[1]}` };
    const umask = sys.umask(0o022);
    sys.umask(umask);
    const env = Deno.env.toObject();
    const req = encodeRequest({ argv, env, umask, build: Deno.mainModule, warmed });
    const sent = sys.sendWithFds(sock, req, [0, 1, 2]);
    if (sent !== req.length) return { why: `sent ${Math.max(sent, 0)} of ${req.length} bytes` };
    const replies = lines(sys, sock);
    // No idle worker (all busy, or one that hangs) in ANSWER_MS: this process runs it. The
    // worker starts the command only on GO, which is never sent then: it never runs twice.
    const first = replies.first(ANSWER_MS);
    if (first === "late") return { why: `no worker answered in ${ANSWER_MS} ms` };
    if (!first) return { why: "the server closed the connection without an answer", retry: true };
    if ("retry" in first) return { why: first.retry, retry: true };
    if ("refused" in first) return { why: first.refused };
    if (!("pid" in first)) return { why: "the server's first answer is not a worker's" };
    if (sys.write(sock, new Uint8Array([GO]), 1) !== 1) return { why: "the worker went away" };
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
      op: "wait",
      paths: { socket: path },
      hint: "the server's stderr, or the kernel log (dmesg), says why",
    });
  } finally {
    for (const [name, fn] of listeners) Deno.removeSignalListener(name, fn);
    sys.close(sock);
  }
}

/**
 * The worker's reply lines; null at EOF or on a malformed one. The first is waited for on
 * this thread, `ms` at most ("late"); the next off it (signals are heard meanwhile).
 */
function lines(sys: Sys, sock: number) {
  const buf = new Uint8Array(4096);
  let pending = "";
  const dec = new TextDecoder();
  const take = (): Reply | null | undefined => {
    const nl = pending.indexOf("\n");
    if (nl < 0) return pending.length > 8192 ? null : undefined;
    const line = pending.slice(0, nl);
    pending = pending.slice(nl + 1);
    return decodeReply(line);
  };
  return {
    first(ms: number): Reply | null | "late" {
      const end = Date.now() + ms;
      for (;;) {
        const line = take();
        if (line !== undefined) return line;
        const left = end - Date.now();
        if (left <= 0 || sys.pollNow(sock, 1, left) <= 0) return "late"; // POLLIN
        const n = sys.read(sock, buf, buf.length);
        if (n <= 0) return null;
        pending += dec.decode(buf.subarray(0, n), { stream: true });
      }
    },
    async next(): Promise<Reply | null> {
      for (;;) {
        const line = take();
        if (line !== undefined) return line;
        const n = await sys.readAsync(sock, buf, buf.length);
        if (n <= 0) return null;
        pending += dec.decode(buf.subarray(0, n), { stream: true });
      }
    },
  };
}
