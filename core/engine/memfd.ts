/**
 * micro's own small static programs (core/engine/trampoline.ts) are run from sealed memfds:
 * nothing on disk to replace, nothing anyone can write, and nothing of the host's Deno
 * runtime in the process (CVE-2019-5736).
 */
import { hintFor, MicroError } from "../errors.ts";
import { C, cstr, cstrArray, type Sys } from "../sys/mod.ts";

const SEALS = C.F_SEAL_SEAL | C.F_SEAL_SHRINK | C.F_SEAL_GROW | C.F_SEAL_WRITE;

/**
 * A memfd named `name` holding `bytes`, sealed so nobody can change it (O_CLOEXEC). MFD_EXEC
 * keeps it executable under vm.memfd_noexec=1; kernels before 6.3 do not know the flag
 * (EINVAL) and need none.
 */
export function sealedProgram(sys: Sys, name: string, bytes: Uint8Array): number {
  const fail = (op: string, rc: number) =>
    new MicroError("", {
      phase: "prepare",
      plugin: "engine",
      op,
      paths: op === "memfd_create" ? { name } : { memfd: name },
      errno: -rc,
      hint: hintFor(op, -rc),
    });
  const flags = C.MFD_CLOEXEC | C.MFD_ALLOW_SEALING;
  const cname = cstr(name);
  let fd = sys.memfdCreate(cname, flags | C.MFD_EXEC);
  if (fd === -22) fd = sys.memfdCreate(cname, flags);
  if (fd < 0) throw fail("memfd_create", fd);
  const n = sys.write(fd, bytes, bytes.length);
  const rc = n < 0 ? n : sys.fcntl(fd, C.F_ADD_SEALS, SEALS);
  if (n >= 0 && n !== bytes.length) {
    sys.close(fd);
    throw new MicroError(`wrote ${n} of ${bytes.length} bytes to the memfd ${name}`, {
      phase: "prepare",
      plugin: "engine",
    });
  }
  if (rc < 0) {
    sys.close(fd);
    throw fail(n < 0 ? "write" : "fcntl(F_ADD_SEALS)", rc);
  }
  return fd;
}

/**
 * Spawns the program in `memfd` (from sealedProgram) as `name`, with `fds[i]` as its fd i and
 * an empty environment (`session`: see Sys.spawn): its pid, or -errno. Its path is /proc/self/fd/N, resolved in the
 * spawned process, whose fd table is still a copy of micro's when it execs.
 */
export function spawnSealed(
  sys: Sys,
  memfd: number,
  name: string,
  fds: number[],
  session = false,
): number {
  // The path is resolved after the dup2 actions: a memfd numbered below fds.length would be
  // replaced by then, so a copy above them is exec'd.
  const fd = memfd < fds.length ? sys.fcntl(memfd, C.F_DUPFD_CLOEXEC, fds.length) : memfd;
  if (fd < 0) return fd;
  try {
    const path = cstr(`/proc/self/fd/${fd}`);
    return sys.spawn(path, cstrArray([name]), cstrArray([]), fds, session);
  } finally {
    if (fd !== memfd) sys.close(fd);
  }
}
