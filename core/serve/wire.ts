/**
 * What `micro serve`'s client and its workers say to each other over the server's unix
 * socket (see core/serve/server.ts for why there is a server at all). Shared by both, so
 * small: the client loads it on every served command.
 *
 * The client sends one message: a 4-byte little-endian length, then that much JSON (the
 * request), with its stdin, stdout and stderr attached (SCM_RIGHTS). The worker finds the
 * client itself (SO_PEERPIDFD) and answers with JSON lines (Reply); the client sends the
 * signals it gets as one byte each (the signal's number) while the command runs.
 */
import { MicroError } from "../errors.ts";
import { stateRoot } from "../stateroot.ts";

/** The variable that sends commands to a server: "1" (the state root's socket) or a path. */
export const SERVE_ENV = "MICRO_SERVE";
/** The socket's name in the state root. */
export const SOCKET_NAME = "serve.sock";
/** A request is refused above this (argv and environment: Linux takes 2 MiB at most). */
export const REQUEST_CAP = 4 * 1024 * 1024;
/** The commands a worker takes; every other runs in the caller's own process. */
export const SERVED: ReadonlySet<string> = new Set(["run", "plan", "exec"]);

export interface Request {
  argv: string[];
  env: Record<string, string>;
  umask: number;
  /** The client's program (Deno.mainModule: its path names the build): a worker of another refuses. */
  build: string;
  /**
   * The client's launcher started the v1 join's grace period (core/cgroups/warm.ts): the
   * worker does not start one of its own.
   */
  warmed?: boolean;
}

/** What the client sends once it has the worker's pid: the worker may start the command. */
export const GO = 0xff;

/** The socket a command is sent to: MICRO_SERVE's path, or the state root's for "1". */
export function servePath(value: string, uid: number): string {
  if (value === "1") return `${stateRoot(uid)}/${SOCKET_NAME}`;
  if (!value.startsWith("/")) {
    throw new MicroError(`${SERVE_ENV}=${value}: not "1" or an absolute path`, {
      phase: "serve",
      hint: `set ${SERVE_ENV}=1 for the server on ${stateRoot(uid)}/${SOCKET_NAME}`,
    });
  }
  return value;
}

/** `struct sockaddr_un` for `path` (AF_UNIX and the NUL-terminated path), or null if too long. */
export function sockaddrUn(path: string): Uint8Array | null {
  const bytes = new TextEncoder().encode(path);
  if (bytes.length > 107 || bytes.includes(0)) return null;
  const addr = new Uint8Array(2 + bytes.length + 1);
  addr[0] = 1; // AF_UNIX, little-endian sa_family_t
  addr.set(bytes, 2);
  return addr;
}

export function encodeRequest(req: Request): Uint8Array {
  const json = new TextEncoder().encode(JSON.stringify(req));
  const out = new Uint8Array(4 + json.length);
  new DataView(out.buffer).setUint32(0, json.length, true);
  out.set(json, 4);
  return out;
}

/**
 * A request's JSON checked field by field (the client is the same user, but a buggy or
 * hostile one gets a refusal, not an exception deep in a run): a string, or the request.
 */
export function decodeRequest(json: Uint8Array): Request | string {
  let v: unknown;
  try {
    v = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(json));
  } catch (e) {
    return `the request is not JSON: ${(e as Error).message}`;
  }
  const o = v as Partial<Request>;
  if (typeof o !== "object" || o === null || Array.isArray(o)) {
    return "the request is not an object";
  }
  if (!Array.isArray(o.argv) || !o.argv.length || !o.argv.every((a) => typeof a === "string")) {
    return "argv is not a list of strings";
  }
  if (!SERVED.has(o.argv[0])) return `"${o.argv[0]}" is not a command the server takes`;
  if (typeof o.env !== "object" || o.env === null || Array.isArray(o.env)) {
    return "env is not an object";
  }
  for (const [k, val] of Object.entries(o.env)) {
    if (
      typeof val !== "string" || !k || k.includes("=") || k.includes("\0") || val.includes("\0")
    ) {
      return `env ${JSON.stringify(k).slice(0, 80)} is not NAME=VALUE`;
    }
  }
  if (!Number.isInteger(o.umask) || o.umask! < 0 || o.umask! > 0o777) {
    return "umask is not 0 to 0777";
  }
  if (typeof o.build !== "string") return "build is not a string";
  return { argv: o.argv, env: o.env, umask: o.umask!, build: o.build, warmed: o.warmed === true };
}

/**
 * Replies, one JSON object a line: the worker's pid (it took the command), a refusal, a
 * "retry" (that worker cannot serve this client; another can), and the exit code.
 */
export type Reply = { pid: number } | { refused: string } | { retry: string } | { exit: number };

export function encodeReply(r: Reply): Uint8Array {
  return new TextEncoder().encode(`${JSON.stringify(r)}\n`);
}

/** A reply line checked (the server is root or the caller, but checked all the same). */
export function decodeReply(line: string): Reply | null {
  try {
    const o = JSON.parse(line);
    if (typeof o !== "object" || o === null) return null;
    if (Number.isInteger(o.pid) && o.pid > 0) return { pid: o.pid };
    if (typeof o.refused === "string") return { refused: o.refused.slice(0, 2000) };
    if (typeof o.retry === "string") return { retry: o.retry.slice(0, 2000) };
    if (Number.isInteger(o.exit) && o.exit >= 0 && o.exit <= 255) return { exit: o.exit };
  } catch { /* not a reply */ }
  return null;
}
