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
 * (EINVAL) and need none. `execOnly` (the exec trampoline, which the container's processes
 * exec): mode 0111, as a process that execs a file it may not read stays undumpable through
 * the exec (the kernel's would_dump), so nothing in the container can ptrace it from its
 * exec on, not even by attaching while the exec runs, before the trampoline's own prctl (a
 * container root with CAP_DAC_OVERRIDE over the memfd, without a user namespace of its own,
 * may still read it: then only that prctl is left, and micro's checks of the records). The
 * watchdog and the user namespace holder run as micro's user on the host: one call less.
 */
export function sealedProgram(
  sys: Sys,
  name: string,
  bytes: Uint8Array,
  execOnly = false,
): number {
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
  const mode = n < 0 || !execOnly ? n : sys.fchmod(fd, 0o111);
  const rc = mode < 0 ? mode : sys.fcntl(fd, C.F_ADD_SEALS, SEALS);
  if (n >= 0 && n !== bytes.length) {
    sys.close(fd);
    throw new MicroError(`wrote ${n} of ${bytes.length} bytes to the memfd ${name}`, {
      phase: "prepare",
      plugin: "engine",
    });
  }
  if (rc < 0) {
    sys.close(fd);
    throw fail(n < 0 ? "write" : mode < 0 ? "fchmod" : "fcntl(F_ADD_SEALS)", rc);
  }
  return fd;
}

/**
 * Spawns the program in `memfd` (from sealedProgram) as `name`, with `fds[i]` as its fd i and
 * an empty environment (`session`: see Sys.spawn): its pid, or -errno. Its path is
 * /proc/self/fd/N, resolved in the spawned process, whose fd table is still a copy of
 * micro's when it execs.
 */
export function spawnSealed(
  sys: Sys,
  memfd: number,
  name: string,
  fds: number[],
  session = false,
): number {
  const spawner = sealedSpawner(sys, memfd, name, fds.length);
  try {
    return spawner.spawn(fds, session);
  } finally {
    spawner.close();
  }
}

/**
 * spawnSealed in two steps: what a spawn of `memfd` with `nfds` fds needs (its path and
 * arguments, and a copy of a memfd numbered below them, which the dup2 actions would replace
 * before the path is resolved), made now; the spawn later. The watchdog makes it before the
 * clone, because after it, while the child lives, every page micro writes is a copy.
 */
export function sealedSpawner(sys: Sys, memfd: number, name: string, nfds: number) {
  const fd = memfd < nfds ? sys.fcntl(memfd, C.F_DUPFD_CLOEXEC, nfds) : memfd;
  const path = cstr(`/proc/self/fd/${fd}`);
  const argv = cstrArray([name]);
  const envp = cstrArray([]);
  return {
    /** The pid, or -errno. */
    spawn: (fds: number[], session = false) =>
      fd < 0 ? fd : sys.spawn(path, argv, envp, fds, session),
    close: () => {
      if (fd >= 0 && fd !== memfd) sys.close(fd);
    },
  };
}
