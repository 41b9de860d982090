/**
 * A program run in a user namespace of its own with a rootless caller's subordinate-id maps,
 * as root there: podman's way to unpack layers whose owners are other users (it re-execs
 * itself in such a namespace). Deno cannot enter a user namespace itself (it has threads),
 * so the fork engine clones a child with CLONE_NEWUSER only; the parent has newuidmap and
 * newgidmap write its maps while it waits; it then becomes root of the namespace (which
 * may chown to every mapped id) and execs the program, stdout into a pipe for the caller.
 */
import { MicroError } from "../errors.ts";
import { op } from "../ops.ts";
import type { IdMapping } from "../spec.ts";
import { C, cstr, cstrArray, type Sys } from "../sys/mod.ts";
import { decodeStatus } from "./mod.ts";
import { runIdmapHelper } from "./idmap_helper.ts";
import { mapText } from "../idmap.ts";

export interface UsernsMaps {
  uid: IdMapping[];
  gid: IdMapping[];
  helpers: { newuidmap: string; newgidmap: string };
}

export interface UsernsResult {
  exitCode: number;
  signal?: number;
  stdout: Uint8Array;
}

const EMPTY_GROUPS = new Uint32Array(0);

/**
 * Runs `argv` (argv[0] an absolute path) with `env` in a new user namespace under `maps`,
 * as uid and gid 0 there, stdin from /dev/null, stderr shared; returns its exit status and
 * what it wrote to stdout.
 */
export async function runInUserns(
  sys: Sys,
  maps: UsernsMaps,
  argv: string[],
  env: string[],
): Promise<UsernsResult> {
  const sync = new Int32Array(2);
  const out = new Int32Array(2);
  const fds: number[] = [];
  const closeAll = () => {
    for (const fd of fds.splice(0)) sys.close(fd);
  };
  const fail = (what: string, rc: number): never => {
    closeAll();
    throw new MicroError("", { phase: "unpack", plugin: "userns", op: what, errno: -rc });
  };
  let rc = sys.pipe2(sync, C.O_CLOEXEC);
  if (rc < 0) fail("pipe2", rc);
  fds.push(sync[0], sync[1]);
  rc = sys.pipe2(out, C.O_CLOEXEC);
  if (rc < 0) fail("pipe2", rc);
  fds.push(out[0], out[1]);
  const devNull = sys.open(cstr("/dev/null"), C.O_RDONLY | C.O_CLOEXEC, 0);
  if (devNull < 0) fail("open", devNull);
  fds.push(devNull);
  // Everything the child uses is made now: nothing allocates from the sweep to the clone.
  const path = cstr(argv[0]);
  const args = cstrArray(argv);
  const envp = cstrArray(env);
  const one = new Uint8Array(1);

  sys.prepareFork();
  const pid = sys.clone(C.CLONE_NEWUSER | C.SIGCHLD);
  if (pid === 0) {
    sys.prctl(C.PR_SET_PDEATHSIG, C.SIGKILL, 0, 0, 0);
    sys.close(sync[1]);
    if (sys.read(sync[0], one, 1) !== 1) sys.exit(125); // the parent gave up
    let r = sys.setresgid(0, 0, 0);
    if (r >= 0) r = sys.setgroups(EMPTY_GROUPS);
    if (r >= 0) r = sys.setresuid(0, 0, 0);
    if (r >= 0) r = sys.dup3(devNull, 0, 0);
    if (r >= 0) r = sys.dup3(out[1], 1, 0);
    if (r >= 0) r = sys.resetSignals(); // cloned with all blocked: the helper gets none
    if (r >= 0) sys.execveat(C.AT_FDCWD, path, args, envp, 0);
    sys.exit(125);
  }
  if (pid < 0) fail("clone", pid);
  // The parent keeps the sync pipe's write end and the output's read end.
  for (const fd of [sync[0], out[1], devNull]) {
    sys.close(fd);
    fds.splice(fds.indexOf(fd), 1);
  }
  try {
    for (
      const [map, helper, ids] of [
        ["uid_map", maps.helpers.newuidmap, maps.uid],
        ["gid_map", maps.helpers.newgidmap, maps.gid],
      ] as const
    ) {
      const o = op("attach", "userns", "idmap-helper", { helper, map, args: mapText(ids) });
      await runIdmapHelper(o as typeof o & { kind: "idmap-helper" }, pid, sys);
    }
  } catch (e) {
    sys.kill(pid, C.SIGKILL);
    closeAll();
    await sys.waitpid(pid);
    throw e;
  }
  sys.write(sync[1], one, 1);
  sys.close(sync[1]);
  fds.splice(fds.indexOf(sync[1]), 1);
  const chunks: Uint8Array[] = [];
  const buf = new Uint8Array(65536);
  let size = 0;
  for (;;) {
    const n = await sys.readAsync(out[0], buf, buf.length);
    if (n <= 0) break;
    chunks.push(buf.slice(0, n));
    size += n;
  }
  closeAll();
  const { status } = await sys.waitpid(pid);
  const stdout = new Uint8Array(size);
  let off = 0;
  for (const c of chunks) {
    stdout.set(c, off);
    off += c.length;
  }
  return { ...decodeStatus(status), stdout };
}
