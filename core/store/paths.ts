import { chmodFd, FileError } from "../files.ts";
import { C, cstr, type Stat, type Sys } from "../sys/mod.ts";

/**
 * Where micro keeps what outlives a run: images, layers and containers (DESIGN.md §10).
 * As root `/var/lib/micro`; rootless `$XDG_DATA_HOME/micro`, else `~/.local/share/micro`;
 * `MICRO_ROOT` overrides both.
 */
export function storeRoot(uid: number): string {
  const env = Deno.env.get("MICRO_ROOT");
  if (env) return env.replace(/\/+$/, "") || "/";
  if (uid === 0) return "/var/lib/micro";
  const xdg = Deno.env.get("XDG_DATA_HOME");
  if (xdg) return `${xdg}/micro`;
  const home = Deno.env.get("HOME");
  return home ? `${home}/.local/share/micro` : `/tmp/micro-data-${uid}`;
}

/** A container's own directory: its overlay's upper and work directories. */
export function containerDir(root: string, id: string): string {
  return `${root}/containers/${id}`;
}

/**
 * Makes `path` (ROOT/layers, ROOT/containers) the owner's alone, 0700, an existing one
 * included (older stores made them searchable): images' set-user-ID programs and device
 * nodes, and what containers write in their layers, live below, and another host user who
 * could reach them would run them as their owner (the CVE-2021-41091 class). Overlays reach
 * them through directory fds (core/engine/child.ts), never by walking this path.
 */
export function privateDirSync(path: string): void {
  try {
    if ((Deno.lstatSync(path).mode ?? 0) & 0o077) Deno.chmodSync(path, 0o700);
    return;
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  try {
    Deno.mkdirSync(path, { mode: 0o700 });
  } catch (e) {
    if (!(e instanceof Deno.errors.AlreadyExists)) throw e;
  }
}

/**
 * privateDirSync through `sys`, for a run's path (core/files.ts says why); throws FileError.
 * A link to a directory is followed, as privateDirSync's chmod does, and the directory is
 * looked at and changed through one O_PATH fd (no read permission needed); anything else
 * there, a dangling link included, is refused.
 */
export function privateDirAt(sys: Sys, path: string): void {
  const name = cstr(path);
  let fd = sys.open(name, DIR_PATH, 0);
  if (fd === -2) {
    const rc = sys.mkdirat(C.AT_FDCWD, name, 0o700);
    if (rc === 0) return; // made: 0700 at most, whatever the umask
    if (rc !== -17) throw new FileError("create", path, -rc);
    fd = sys.open(name, DIR_PATH, 0); // another's, made meanwhile; or a dangling link: ENOENT
  }
  if (fd < 0) throw new FileError("open", path, -fd); // ENOTDIR: not a directory
  try {
    const st: Stat = { mode: 0, size: 0, uid: 0, gid: 0 };
    let rc = sys.fstat(fd, st);
    if (rc === 0 && st.mode & 0o077) {
      rc = chmodFd(sys, fd, 0o700);
    }
    if (rc < 0) throw new FileError("chmod", path, -rc);
  } finally {
    sys.close(fd);
  }
}

const DIR_PATH = C.O_PATH | C.O_DIRECTORY | C.O_CLOEXEC;
