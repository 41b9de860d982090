/**
 * OCI hooks that run inside the container (createContainer, startContainer), run by the
 * engine's child as runc's init runs them: createContainer in the container's namespaces
 * right before pivot_root (its path resolved in the runtime's file system, which is still
 * reachable then), startContainer after `start` released the child, right before the
 * command's exec (its path resolved in the container). The child forks, the fork execs
 * the hook with the container's state JSON on stdin and the hook's own args and env, and
 * the child waits for it, within its timeout.
 *
 * The fork execs the exec trampoline (its sealed memfd, as the command's exec does), which
 * execs the hook: at the fork's exec its /proc/self/exe would be the host's Deno runtime,
 * and a hook file of the image's that is a `#!/proc/self/exe` script would run it, as root
 * in the container (CVE-2019-5736). The trampoline's failure record comes back on a pipe.
 *
 * The child is a single-threaded copy of micro, so a fork of it is too (no lock another
 * thread held; core/v8.ts keeps V8 from compiling in either). Everything is encoded here,
 * in the parent; the step allocates nothing.
 */
import { C, cstr, type CStrArray, cstrArray, type Sys } from "../sys/mod.ts";
import type { OpArgs } from "../ops.ts";

/** How a hook failed, as the "errno" of the child's report: these plus its exit code... */
export const HOOK_EXIT = 0x10000;
/** ...or the signal that killed it... */
export const HOOK_SIGNAL = 0x20000;
/** ...or its timeout, after which it was killed. */
export const HOOK_TIMEOUT = 0x30000;
/** Digits of the state's pid, written by the child (JSON allows the spaces left over). */
const PID_WIDTH = 10;
/** The state must fit a pipe's buffer: it is written before the fork, read by the hook. */
export const HOOK_STATE_MAX = 65536;
const AT_EMPTY_PATH = 0x1000;
/** The trampoline's `[EXEC_FAILED, errno]` record (child.ts EXEC_FAILED_RECORD). */
const EXEC_FAILED = -4;
const WNOHANG = 1;
const EIO = 5;
const EMPTY = cstr("");
const EINTR = 4;

/** The state JSON with room for the pid, and where that room starts (in bytes). */
export function stateBytes(s: OpArgs["oci-hook"]["state"]): { bytes: Uint8Array; pidAt: number } {
  const J = JSON.stringify;
  const head = `{"ociVersion":${J(s.ociVersion)},"id":${J(s.id)},"status":${J(s.status)},"pid":`;
  const tail = `,"bundle":${J(s.bundle)}` +
    (s.annotations && Object.keys(s.annotations).length
      ? `,"annotations":${J(s.annotations)}`
      : "") +
    "}";
  const enc = new TextEncoder();
  const pidAt = enc.encode(head).length;
  const bytes = enc.encode(head + "0" + " ".repeat(PID_WIDTH - 1) + tail);
  return { bytes, pidAt };
}

interface Encoded {
  argv: CStrArray;
  envp: CStrArray;
  state: Uint8Array;
  pidAt: number;
  timeoutMs: number;
  /** Written to the child's stderr when the hook fails (startContainer: no micro listens). */
  failLine: Uint8Array | null;
}

function encode(a: OpArgs["oci-hook"], say: boolean): Encoded {
  const { bytes, pidAt } = stateBytes(a.state);
  const name = `hooks.${a.hook}[${a.index}] ${a.path}`;
  return {
    // The trampoline's layout (tools/trampoline): "" (plain mode), "" (no label), the one
    // candidate, "", then the hook's argv: args[0] is its argv[0] (the spec's, as execv);
    // with no args, the path.
    argv: cstrArray(["", "", a.path, "", ...(a.args.length ? a.args : [a.path])]),
    envp: cstrArray(a.env),
    state: bytes,
    pidAt,
    timeoutMs: (a.timeout ?? 0) * 1000,
    failLine: say
      ? new TextEncoder().encode(
        `micro: oci: ${name} failed (exit status, signal or timeout); the container's ` +
          "command was not started\n",
      )
      : null,
  };
}

/**
 * The child's step that runs one hook: 0 when it exited 0; else -errno (pipe, fork), or
 * -(HOOK_EXIT + status), -(HOOK_SIGNAL + signal), -HOOK_TIMEOUT, or the hook's exec's
 * -errno. `exe` is the trampoline's fd in the child.
 */
export function hookStep(
  a: OpArgs["oci-hook"],
  exe: number,
  sys: Sys,
  sayOnFailure: boolean,
): () => number {
  const h = encode(a, sayOnFailure);
  const fds = new Int32Array(2);
  const errFds = new Int32Array(2);
  const failed = new Int32Array(2);
  const failedBytes = new Uint8Array(failed.buffer);
  const status = new Uint8Array(4);
  const statusView = new DataView(status.buffer);
  const fail = (rc: number) => {
    if (h.failLine) sys.write(2, h.failLine, h.failLine.length);
    return rc;
  };
  const step = () => {
    // The pid as the container's first process sees itself (runc: its init's getpid()).
    const pid = sys.getpid();
    let digits = 1;
    for (let v = pid; v >= 10; v = Math.floor(v / 10)) digits++;
    for (let k = 0; k < PID_WIDTH; k++) h.state[h.pidAt + k] = 0x20;
    for (let k = digits - 1, v = pid; k >= 0; k--, v = Math.floor(v / 10)) {
      h.state[h.pidAt + k] = 0x30 + v % 10;
    }
    let rc = sys.pipe2(fds, C.O_CLOEXEC);
    if (rc < 0) return fail(rc);
    // All of it into the pipe's buffer now: the hook reads it whenever it likes, and one
    // that never reads cannot block the child or hit it with SIGPIPE. Without blocking: a
    // user over fs.pipe-user-pages-soft gets one-page pipes, and a larger state would block
    // the child for ever (the reader is not forked yet); a short write fails the hook.
    rc = sys.fcntl(fds[1], C.F_SETFL, C.O_NONBLOCK);
    if (rc >= 0) rc = sys.write(fds[1], h.state, h.state.length);
    sys.close(fds[1]);
    if (rc !== h.state.length) {
      sys.close(fds[0]);
      return fail(rc < 0 ? rc : -EIO);
    }
    // Where the trampoline says why no exec happened (close-on-exec here; the fork's copy
    // at fd 3 is not, and the trampoline marks it so itself).
    rc = sys.pipe2(errFds, C.O_CLOEXEC);
    if (rc < 0) {
      sys.close(fds[0]);
      return fail(rc);
    }
    sys.prepareFork();
    const child = sys.clone(C.SIGCHLD);
    if (child === 0) {
      let r = sys.prctl(C.PR_SET_PDEATHSIG, C.SIGKILL, 0, 0, 0);
      if (r >= 0) r = sys.dup3(fds[0], 0, 0);
      if (r >= 0) r = sys.dup3(errFds[1], 3, 0);
      // Only stdin, stdout, stderr, the trampoline's fd 3 and the trampoline itself
      // (close-on-exec) reach the hook.
      if (r >= 0 && exe > 4) r = sys.closeRange(4, exe - 1, 0);
      if (r >= 0) r = sys.closeRange(exe + 1, 0x7fffffff, 0);
      if (r >= 0) r = sys.resetSignals();
      if (r >= 0) r = sys.execveat(exe, EMPTY, h.argv, h.envp, AT_EMPTY_PATH);
      failed[0] = EXEC_FAILED;
      failed[1] = -r;
      sys.write(3, failedBytes, 8);
      sys.exit(127);
    }
    sys.close(fds[0]);
    sys.close(errFds[1]);
    if (child < 0) {
      sys.close(errFds[0]);
      return fail(child);
    }
    const out = waitFor(child);
    // Exit 127 with the trampoline's record: the hook could not be run; its errno.
    if (out === -(HOOK_EXIT + 127)) {
      const n = sys.read(errFds[0], failedBytes, 8);
      sys.close(errFds[0]);
      return fail(n === 8 && failed[0] === EXEC_FAILED ? -failed[1] : out);
    }
    sys.close(errFds[0]);
    return out === 0 ? 0 : fail(out);
  };
  /** The hook's end: 0, or its failure code (negative); kills it at its timeout. */
  const waitFor = (child: number): number => {
    let waited = 0;
    for (let polls = 0;; polls++) {
      const got = sys.wait4(child, status, WNOHANG);
      if (got === child) break;
      if (got < 0 && got !== -EINTR) return got;
      if (h.timeoutMs > 0 && waited >= h.timeoutMs) {
        sys.kill(child, C.SIGKILL);
        sys.wait4(child, status, 0);
        return -HOOK_TIMEOUT;
      }
      // Quick hooks answer within a few milliseconds; a slow one is polled ten times a second.
      const ms = polls < 20 ? 1 : 10;
      sys.sleep(ms);
      waited += ms;
    }
    const st = statusView.getInt32(0, true);
    if ((st & 0x7f) === 0) {
      const code = (st >> 8) & 0xff;
      return code === 0 ? 0 : -(HOOK_EXIT + code);
    }
    return -(HOOK_SIGNAL + (st & 0x7f));
  };
  return step;
}

/** The message for a hook's failure code (the report's errno), or undefined for an errno. */
export function hookFailure(code: number, timeout?: string): string | undefined {
  if (code >= HOOK_TIMEOUT) return `timed out${timeout ? ` after ${timeout} s` : ""}`;
  if (code >= HOOK_SIGNAL) return `killed by signal ${code - HOOK_SIGNAL}`;
  if (code >= HOOK_EXIT) return `exit status ${code - HOOK_EXIT}`;
  return undefined;
}
