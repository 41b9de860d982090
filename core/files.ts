/**
 * Reading a file someone else may control (an image's /etc/passwd, a profile, an env file,
 * a seccomp JSON file): a regular file only, read through one fd, at most `cap` bytes.
 *
 * The file is opened O_PATH first, so opening it has no side effect whatever it is (a FIFO
 * does not block; a watchdog or tape device is not armed or rewound), then fstat'ed, and
 * only a regular file within the cap is reopened for reading through /proc/self/fd: the
 * same inode, so nothing can be swapped in between. The read stops at the cap even when
 * the file grows meanwhile. No heavy imports: this module is on the start-up path.
 */
import { C, cstr, decodeText, type Stat, type Sys } from "./sys/mod.ts";
import { errnoName, MicroError } from "./errors.ts";

export const KiB = 1024;
export const MiB = 1024 * KiB;

/** Profiles and env files are a few KiB; 1 MiB is generous and bounded. */
export const TEXT_CAP = MiB;
/** The image's /etc/passwd and /etc/group. */
export const ACCOUNTS_CAP = MiB;
/** Docker's default seccomp profile is about 20 KiB. */
export const SECCOMP_CAP = 4 * MiB;

/**
 * Why a file was not read, as a short phrase: "is a FIFO, not a regular file", "is 4 GiB,
 * over the 1 MiB limit", or with `errno` for a failed call ("no such file").
 */
export class FileRefused extends Error {
  constructor(readonly reason: string, readonly errno?: number) {
    super(reason);
    this.name = "FileRefused";
  }
}

/**
 * What a file of this mode (its `st_mode`) is, in words. A switch: an object literal
 * keyed by these numbers cost 0.5 to 0.9 ms at load (V8 sizes its elements by the keys).
 */
export function fileKind(mode: number): string {
  switch (mode & C.S_IFMT) {
    case C.S_IFIFO:
      return "a FIFO";
    case C.S_IFCHR:
      return "a character device";
    case C.S_IFBLK:
      return "a block device";
    case C.S_IFDIR:
      return "a directory";
    case C.S_IFSOCK:
      return "a socket";
    case C.S_IFLNK:
      return "a symlink";
    default:
      return "not a regular file";
  }
}

const REASONS: Record<number, string> = {
  2: "no such file",
  13: "permission denied",
  20: "a path component is not a directory",
  40: "too many levels of symbolic links",
};

function failed(errno: number): FileRefused {
  return new FileRefused(REASONS[errno] ?? `cannot open: ${errnoName(errno)}`, errno);
}

/** 1 MiB, 4 GiB, 1.5 KiB, 12 bytes. */
export function formatSize(n: number): string {
  for (const [unit, size] of [["GiB", MiB * KiB], ["MiB", MiB], ["KiB", KiB]] as const) {
    if (n >= size) return `${Number((n / size).toFixed(1))} ${unit}`;
  }
  return `${n} bytes`;
}

/**
 * A regular file at `path` (relative to the working directory; links followed: the caller
 * named it), as text. Throws FileRefused.
 */
export function readRegularFile(
  sys: Sys,
  path: string,
  cap: number,
  /** Why the file (its fstat, after the open) is refused, if it is. */
  check?: (st: Stat) => string | undefined,
): string {
  const fd = sys.open(cstr(path), C.O_PATH | C.O_CLOEXEC, 0);
  if (fd < 0) throw failed(-fd);
  return readThrough(sys, fd, cap, check);
}

/**
 * readRegularFile, but null when nothing is at `path` (ENOENT):
 * for files that many hosts lack, as an exception costs a process's first one about 1 ms
 * (measured). A file that is there and refused still throws FileRefused.
 */
export function readRegularFileIfThere(
  sys: Sys,
  path: string,
  cap: number,
): string | null {
  const fd = sys.open(cstr(path), C.O_PATH | C.O_CLOEXEC, 0);
  if (fd === -2) return null; // ENOENT
  if (fd < 0) throw failed(-fd);
  return readThrough(sys, fd, cap);
}

/**
 * A regular file at `path` inside the tree of the directory fd `root`, resolved as if `root`
 * were `/` (RESOLVE_IN_ROOT: a link, absolute or `..`, never leaves it; no magic links), as
 * text; null when it does not exist. Throws FileRefused.
 */
export function readInRoot(sys: Sys, root: number, path: string, cap: number): string | null {
  const resolve = C.RESOLVE_IN_ROOT | C.RESOLVE_NO_MAGICLINKS;
  const fd = sys.openat2(root, cstr(path), C.O_PATH | C.O_CLOEXEC, 0, resolve);
  if (fd === -2) return null;
  if (fd < 0) throw failed(-fd);
  return readThrough(sys, fd, cap);
}

/** Checks the O_PATH fd `pathFd` (and closes it), then reads at most `cap` bytes. */
function readThrough(
  sys: Sys,
  pathFd: number,
  cap: number,
  check?: (st: Stat) => string | undefined,
): string {
  let fd = -1;
  try {
    const st: Stat = { mode: 0, size: 0, uid: 0, gid: 0 };
    const rc = sys.fstat(pathFd, st);
    if (rc < 0) throw failed(-rc);
    const type = st.mode & C.S_IFMT;
    if (type !== C.S_IFREG) {
      throw new FileRefused(`is ${fileKind(type)}, not a regular file`);
    }
    if (st.size > cap) throw tooBig(cap, st.size);
    const refused = check?.(st);
    if (refused) throw new FileRefused(refused);
    fd = sys.open(
      cstr(`/proc/self/fd/${pathFd}`),
      C.O_RDONLY | C.O_NONBLOCK | C.O_NOCTTY | C.O_CLOEXEC,
      0,
    );
    if (fd < 0) throw failed(-fd);
    return decodeText(readCapped(sys, fd, st.size, cap));
  } finally {
    if (fd >= 0) sys.close(fd);
    sys.close(pathFd);
  }
}

function tooBig(cap: number, size?: number): FileRefused {
  const is = size === undefined ? "is larger than" : `is ${formatSize(size)}, over`;
  return new FileRefused(`${is} the ${formatSize(cap)} limit`);
}

/** readCapped's read buffer: one a process (a new one a call cost the host probe 0.75 ms). */
let readChunk: Uint8Array | undefined;

/**
 * Lets go of the read and directory buffers kept for the start's many reads (96 KiB), for
 * a process that goes on long after (an attached run, at its heap compaction: core/v8.ts).
 * A later read makes them anew.
 */
export function releaseScratch(): void {
  readChunk = undefined;
  direntBuf = undefined;
}

/** Reads to EOF, refusing past `cap` bytes; `expected` sizes the first buffer. */
function readCapped(sys: Sys, fd: number, expected: number, cap: number): Uint8Array {
  let out = new Uint8Array(Math.min(expected, cap) + 1);
  let len = 0;
  const chunk = readChunk ??= new Uint8Array(64 * KiB);
  for (;;) {
    const n = sys.read(fd, chunk, chunk.length);
    if (n === -4) continue; // EINTR
    if (n < 0) throw new FileRefused(`cannot read: ${errnoName(-n)}`, -n);
    if (n === 0) return out.subarray(0, len);
    if (len + n > cap) throw tooBig(cap);
    if (len + n > out.length) {
      const grown = new Uint8Array(Math.min(Math.max(out.length * 2, len + n), cap));
      grown.set(out.subarray(0, len));
      out = grown;
    }
    out.set(chunk.subarray(0, n), len);
    len += n;
  }
}

/**
 * A kernel file (/proc, /sys) or a small host file as text, or null when it cannot be
 * opened or read or is over `cap`: through `sys`, so a missing file costs no Deno error
 * (a process's first one costs about 1 ms, measured; the host probe asks for several files
 * that most hosts lack).
 */
export function readQuiet(sys: Sys, path: string, cap = TEXT_CAP): string | null {
  const text = readTextAt(sys, path, cap);
  return typeof text === "string" ? text : null;
}

// --- micro's own files through Sys ---------------------------------------------------------
// A run's bookkeeping (its state, its container's record, cgroup and /proc files, its
// directories) goes through `Sys`, not Deno's file system functions: each of those costs
// 0.1 to 0.8 ms the first time a process calls it (measured: statSync 0.8, readTextFileSync
// 0.7, lstatSync 0.7, writeTextFileSync 0.4, openSync 0.3), and a run would call a dozen.

/** A file's text, or -errno (EFBIG over `cap`); as readQuiet. */
export function readTextAt(sys: Sys, path: string, cap = TEXT_CAP): string | number {
  const fd = sys.open(cstr(path), C.O_RDONLY | C.O_NONBLOCK | C.O_NOCTTY | C.O_CLOEXEC, 0);
  if (fd < 0) return fd;
  try {
    return decodeText(readCapped(sys, fd, 0, cap));
  } catch (e) {
    if (e instanceof FileRefused) return -(e.errno ?? 27); // a failed read, or over `cap`
    throw e;
  } finally {
    sys.close(fd);
  }
}

const encoder = new TextEncoder();

/**
 * Writes `text` to `path` (opened with `flags` added to O_WRONLY: O_CREAT, O_TRUNC, O_EXCL),
 * in as few writes as the kernel takes (a cgroup or /proc file takes each write as one
 * value): 0, or -errno.
 */
export function writeTextAt(
  sys: Sys,
  path: string,
  text: string,
  flags = 0,
  mode = 0o644,
): number {
  const fd = sys.open(cstr(path), C.O_WRONLY | C.O_NOCTTY | C.O_CLOEXEC | flags, mode);
  if (fd < 0) return fd;
  const rc = writeAll(sys, fd, text);
  const closed = sys.close(fd);
  return rc < 0 ? rc : closed < 0 ? closed : 0;
}

/** Writes all of `text` to `fd`: 0, or -errno (EIO for a write that took nothing). */
function writeAll(sys: Sys, fd: number, text: string): number {
  const bytes = encoder.encode(text);
  for (let off = 0; off < bytes.length;) {
    const n = sys.write(fd, off ? bytes.subarray(off) : bytes, bytes.length - off);
    if (n === -4) continue; // EINTR
    if (n <= 0) return n < 0 ? n : -5;
    off += n;
  }
  return 0;
}

/**
 * Replaces `path` with a file holding `text` at once: written as `.NAME.tmp` beside it and
 * renamed over it, so a reader sees the old file or the new one. The tmp file is a new one
 * (a stale one of a crashed write unlinked first, then O_EXCL: never opened through a link,
 * never a FIFO that would block, never a hard link whose other name would be truncated),
 * its mode set to `mode` exactly, whatever the umask. Throws naming the step, the path and
 * the errno.
 */
export function replaceTextAt(sys: Sys, path: string, text: string, mode: number): void {
  const slash = path.lastIndexOf("/");
  const tmp = `${path.slice(0, slash + 1)}.${path.slice(slash + 1)}.tmp`;
  const at = cstr(tmp);
  sys.unlinkat(C.AT_FDCWD, at, 0); // ENOENT: none left
  const flags = C.O_WRONLY | C.O_CREAT | C.O_EXCL | C.O_NOFOLLOW | C.O_NOCTTY | C.O_CLOEXEC;
  const fd = sys.open(at, flags, mode);
  if (fd < 0) throw new FileError("create", tmp, -fd);
  const chmod = sys.fchmod(fd, mode);
  const rc = chmod < 0 ? chmod : writeAll(sys, fd, text);
  const closed = sys.close(fd);
  if (chmod < 0) throw new FileError("chmod", tmp, -chmod);
  if (rc < 0 || closed < 0) throw new FileError("write", tmp, -(rc < 0 ? rc : closed));
  const moved = sys.renameat2(C.AT_FDCWD, at, C.AT_FDCWD, cstr(path), 0);
  if (moved < 0) throw new FileError("rename", `${tmp} to ${path}`, -moved);
}

/** A failed step on one of micro's own files: "cannot write /run/micro/x: EACCES". */
export class FileError extends MicroError {
  constructor(readonly step: string, readonly path: string, readonly errno: number) {
    super(`cannot ${step} ${path}: ${errnoName(errno)}`);
    this.name = "FileError";
  }
}

/**
 * stat(2) (`follow`) or lstat(2) of `path`: its mode, uid and gid (not its size, which the
 * fstatat of core/sys/libc.ts leaves at 0: fstat an fd for that), or -errno.
 */
export function statAt(sys: Sys, path: string, follow = true): Stat | number {
  const st: Stat = { mode: 0, size: 0, uid: 0, gid: 0 };
  const rc = sys.fstatat(C.AT_FDCWD, cstr(path), follow ? 0 : C.AT_SYMLINK_NOFOLLOW, st);
  return rc < 0 ? rc : st;
}

/** The size of the file at `path` (an fstat of an O_PATH fd), 0 when there is none. */
export function sizeAt(sys: Sys, path: string): number {
  const fd = sys.open(cstr(path), C.O_PATH | C.O_CLOEXEC, 0);
  const st: Stat = { mode: 0, size: 0, uid: 0, gid: 0 };
  if (fd >= 0) {
    sys.fstat(fd, st);
    sys.close(fd);
  }
  return st.size;
}

/**
 * mkdir(2), then chmod to `mode` exactly (the umask may have taken bits) when it made one:
 * 0, -EEXIST when something is there, or -errno. `parents`: missing parents are made first
 * with `mode` (mkdir -p; one that exists is left as it is).
 */
export function mkdirAt(sys: Sys, path: string, mode: number, parents = false): number {
  const name = cstr(path);
  let rc = sys.mkdirat(C.AT_FDCWD, name, mode);
  if (rc === -2 && parents) {
    const slash = path.lastIndexOf("/");
    const up = slash > 0 ? mkdirAt(sys, path.slice(0, slash), mode, true) : -2;
    if (up < 0 && up !== -17) return up;
    rc = sys.mkdirat(C.AT_FDCWD, name, mode);
  }
  if (rc < 0) return rc;
  // Through an O_PATH fd of what was made (O_NOFOLLOW: a link swapped in is refused), which
  // needs no read permission (a directory whose umask-cut mode lacks the owner's read bit).
  const fd = sys.open(name, C.O_PATH | C.O_DIRECTORY | C.O_NOFOLLOW | C.O_CLOEXEC, 0);
  if (fd < 0) return fd;
  rc = chmodFd(sys, fd, mode);
  sys.close(fd);
  return rc;
}

/**
 * chmod of what the fd `fd` holds, an O_PATH fd included (fchmod takes none): through its
 * /proc/self/fd link, which names that very inode. 0 or -errno.
 */
export function chmodFd(sys: Sys, fd: number, mode: number): number {
  return sys.fchmodat(C.AT_FDCWD, cstr(`/proc/self/fd/${fd}`), mode);
}

/** The target of the symlink at `path` (not followed), or null when it is none or too long. */
export function readLinkAt(sys: Sys, path: string): string | null {
  const buf = new Uint8Array(4096); // PATH_MAX
  const n = sys.readlinkat(C.AT_FDCWD, cstr(path), buf);
  return n < 0 || n >= buf.length ? null : decodeText(buf.subarray(0, n));
}

/** A directory's entries (without `.` and `..`), or -errno: through an fd of its own. */
export interface DirEntryAt {
  name: string;
  /** d_type: DT_DIR (4), DT_REG (8), DT_LNK (10); DT_UNKNOWN (0) on some file systems. */
  type: number;
  /** The name's bytes, NUL-terminated (a CStr for the *at calls on its directory's fd). */
  raw: Uint8Array;
}

/** getdents64's buffer: one a process. */
let direntBuf: Uint8Array | undefined;

/** Every entry of the directory open as `fd`, or -errno: read in full before any is used. */
export function direntsAt(sys: Sys, fd: number): DirEntryAt[] | number {
  const out: DirEntryAt[] = [];
  const buf = direntBuf ??= new Uint8Array(32 * KiB);
  for (;;) {
    const n = sys.getdents64(fd, buf);
    if (n < 0) return n;
    if (n === 0) return out;
    // struct linux_dirent64: d_ino (8), d_off (8), d_reclen (2), d_type (1), d_name (NUL).
    for (let off = 0; off < n;) {
      const reclen = buf[off + 16] | (buf[off + 17] << 8);
      const end = buf.indexOf(0, off + 19);
      const len = end - off - 19;
      const dot = buf[off + 19] === 46 && (len === 1 || (len === 2 && buf[off + 20] === 46));
      if (!dot) {
        const raw = buf.slice(off + 19, end + 1);
        out.push({ name: decodeText(raw.subarray(0, len)), type: buf[off + 18], raw });
      }
      off += reclen;
    }
  }
}

/** The entries of the directory at `path` (not followed if a link), or -errno. */
export function listDirAt(sys: Sys, path: string): DirEntryAt[] | number {
  const fd = sys.open(cstr(path), C.O_RDONLY | C.O_DIRECTORY | C.O_NOFOLLOW | C.O_CLOEXEC, 0);
  if (fd < 0) return fd;
  try {
    return direntsAt(sys, fd);
  } finally {
    sys.close(fd);
  }
}

/** d_type of a directory. */
export const DT_DIR = 4;

/**
 * The type bits (`st_mode & S_IFMT`) of what is at `path`, or 0 when nothing is (or it
 * cannot be looked at): `follow` follows a final symlink, as stat(2). Through `sys`, for
 * the reason readQuiet gives.
 */
export function typeAt(sys: Sys, path: string, follow = true): number {
  const st = statAt(sys, path, follow);
  return typeof st === "number" ? 0 : st.mode & C.S_IFMT;
}
