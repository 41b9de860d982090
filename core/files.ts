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
import { C, cstr, type Stat, type Sys } from "./sys/mod.ts";
import { errnoName } from "./errors.ts";

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
 * What a file of this type (`st_mode & S_IFMT`) is, in words. A switch: an object literal
 * keyed by these numbers cost 0.5 to 0.9 ms at load (V8 sizes its elements by the keys).
 */
function kind(type: number): string {
  switch (type) {
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
      return "a symbolic link";
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
      throw new FileRefused(`is ${kind(type)}, not a regular file`);
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
    return new TextDecoder().decode(readCapped(sys, fd, st.size, cap));
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
  const fd = sys.open(cstr(path), C.O_RDONLY | C.O_NONBLOCK | C.O_NOCTTY | C.O_CLOEXEC, 0);
  if (fd < 0) return null;
  try {
    return new TextDecoder().decode(readCapped(sys, fd, 0, cap));
  } catch (e) {
    if (e instanceof FileRefused) return null; // a failed read, or over `cap`
    throw e;
  } finally {
    sys.close(fd);
  }
}

/**
 * The type bits (`st_mode & S_IFMT`) of what is at `path`, or 0 when nothing is (or it
 * cannot be looked at): `follow` follows a final symlink, as stat(2). Through `sys`, for
 * the reason readQuiet gives.
 */
export function typeAt(sys: Sys, path: string, follow = true): number {
  const st: Stat = { mode: 0, size: 0, uid: 0, gid: 0 };
  const rc = sys.fstatat(C.AT_FDCWD, cstr(path), follow ? 0 : C.AT_SYMLINK_NOFOLLOW, st);
  return rc < 0 ? 0 : st.mode & C.S_IFMT;
}
