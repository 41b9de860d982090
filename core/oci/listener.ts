/**
 * OCI `linux.seccomp.listenerPath`: the listener fd of a filter with SCMP_ACT_NOTIFY rules
 * goes to the caller's seccomp agent at that unix socket, in one message with the container
 * process state (the runtime spec's "Container Process State": ociVersion, fds, pid,
 * metadata, state), as runc sends it.
 */
import { MicroError } from "../errors.ts";
import type { Op } from "../ops.ts";
import { C, type Sys } from "../sys/mod.ts";
import { OCI_VERSION } from "./state.ts";

const SOCK_STREAM = 1;

/** The seccomp op's listener (path, metadata), when its policy has SCMP_ACT_NOTIFY rules. */
export function listenerOf(ops: Op[]): { path: string; metadata: string } | undefined {
  for (const o of ops) if (o.kind === "seccomp" && o.args.listener) return o.args.listener;
  return undefined;
}

/**
 * The engine's `onSeccompListener` for these ops: `state(pid)` is the container's state
 * (status, its first process's pid) for the process `pid` whose filter it is.
 */
export function seccompAgent(
  ops: Op[],
  state: (pid: number) => Record<string, unknown>,
  sys: Sys,
): ((fd: number, pid: number) => void) | undefined {
  const l = listenerOf(ops);
  if (!l) return undefined;
  return (fd, pid) => sendListener(l.path, l.metadata, fd, pid, state(pid), sys);
}

function fail(op: string, path: string, errno: number, hint?: string): MicroError {
  return new MicroError("", {
    phase: "restrict",
    plugin: "seccomp",
    op,
    paths: { listenerPath: path },
    errno,
    hint: hint ?? "the seccomp agent listens on listenerPath (a unix stream socket) before create",
  });
}

/** Connects to `path` and sends the process state with `fd`; the connection is closed after. */
export function sendListener(
  path: string,
  metadata: string,
  fd: number,
  pid: number,
  state: Record<string, unknown>,
  sys: Sys,
): void {
  const name = new TextEncoder().encode(path);
  if (name.length >= 108) {
    throw fail("connect", path, 36, "a unix socket path has at most 107 bytes: use a shorter one");
  }
  const body = new TextEncoder().encode(JSON.stringify({
    ociVersion: OCI_VERSION,
    fds: ["seccompFd"],
    pid,
    metadata,
    state,
  }));
  const sock = sys.socket(C.AF_UNIX, SOCK_STREAM | C.SOCK_CLOEXEC, 0);
  if (sock < 0) throw fail("socket", path, -sock);
  try {
    const addr = new Uint8Array(2 + name.length + 1);
    addr[0] = C.AF_UNIX; // sa_family, little-endian u16
    addr.set(name, 2);
    const rc = sys.connect(sock, addr);
    if (rc < 0) throw fail("connect", path, -rc);
    let sent = sys.sendWithFd(sock, body, fd);
    if (sent < 0) throw fail("sendmsg", path, -sent);
    // A stream may take the state in parts: the rest follows the fd.
    while (sent < body.length) {
      const rest = body.subarray(sent);
      const n = sys.write(sock, rest, rest.length);
      if (n <= 0) throw fail("write", path, n < 0 ? -n : 32);
      sent += n;
    }
  } finally {
    sys.close(sock);
  }
}
