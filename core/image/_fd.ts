/**
 * Files read from a place others may write (an image layout directory, an archive): each is
 * opened once, beneath its directory's fd without following any symlink, checked to be a
 * regular file before it is opened for reading (so a FIFO never blocks and a device is never
 * opened), and read through that fd with a size cap where it is read whole.
 */
import { MicroError } from "../errors.ts";
import { fileKind } from "../files.ts";
import { C, cstr, type Stat, type Sys } from "../sys/mod.ts";

const ENOENT = 2;
const ELOOP = 40;
const EXDEV = 18;

/** Beneath the directory, no symlink followed (the last component included), no magic link. */
const RESOLVE = C.RESOLVE_BENEATH | C.RESOLVE_NO_SYMLINKS | C.RESOLVE_NO_MAGICLINKS;
const O_PATH = C.O_PATH | C.O_NOFOLLOW | C.O_CLOEXEC;
const O_READ = C.O_RDONLY | C.O_NOCTTY | C.O_CLOEXEC;

/** Why an import failed on a file: one line with the step, the file and the errno. */
export function importError(
  message: string,
  hint?: string,
  fields: { op?: string; paths?: Record<string, string>; errno?: number } = {},
): MicroError {
  return new MicroError(message, { phase: "import", hint, ...fields });
}

/** An open regular file and its size. */
export interface OpenFile {
  fd: number;
  size: number;
}

/**
 * Opens `dirfd`/`name` (a relative name, resolved beneath `dirfd`) as a regular file; null
 * when it does not exist. A symlink anywhere on the way, a device, a FIFO or a directory is
 * refused with a line naming it.
 */
export function openRegularBeneath(
  sys: Sys,
  dirfd: number,
  name: string,
  where: string,
): OpenFile | null {
  const p = sys.openat2(dirfd, cstr(name), O_PATH, 0, RESOLVE);
  if (p === -ENOENT) return null;
  if (p === -ELOOP) {
    throw importError(
      `${where}/${name}: a symlink where a file must be`,
      "refused: a layout's " +
        "files must be regular files inside it",
    );
  }
  if (p === -EXDEV) {
    throw importError(`${where}/${name}: the name leads outside the directory`);
  }
  if (p < 0) {
    throw importError("", undefined, {
      op: "open",
      paths: { file: `${where}/${name}` },
      errno: -p,
    });
  }
  try {
    return reopenRegular(sys, p, `${where}/${name}`);
  } finally {
    sys.close(p);
  }
}

/**
 * Turns an O_PATH fd into a read fd for the same file, after checking it is a regular file
 * (reopened through /proc/self/fd, so the name is never looked up again).
 */
export function reopenRegular(sys: Sys, pathFd: number, what: string): OpenFile {
  const st: Stat = { mode: 0, size: 0, uid: 0, gid: 0 };
  const rc = sys.fstat(pathFd, st);
  if (rc < 0) throw importError("", undefined, { op: "fstat", paths: { file: what }, errno: -rc });
  if ((st.mode & C.S_IFMT) !== C.S_IFREG) {
    throw importError(
      `${what}: ${fileKind(st.mode)} where a regular file must be`,
      "refused: an image's files must be regular files",
    );
  }
  const fd = sys.open(cstr(`/proc/self/fd/${pathFd}`), O_READ, 0);
  if (fd < 0) throw importError("", undefined, { op: "open", paths: { file: what }, errno: -fd });
  return { fd, size: st.size };
}

/** Reads a whole file of at most `max` bytes (by fstat and by what is read). */
export function readCapped(sys: Sys, f: OpenFile, max: number, what: string): Uint8Array {
  if (f.size > max) {
    throw importError(`${what}: ${f.size} bytes, more than the ${max} allowed`);
  }
  const buf = new Uint8Array(max + 1);
  let n = 0;
  for (;;) {
    const r = sys.read(f.fd, buf.subarray(n), buf.length - n);
    if (r < 0) throw importError("", undefined, { op: "read", paths: { file: what }, errno: -r });
    if (r === 0) break;
    n += r;
    if (n > max) throw importError(`${what}: more than the ${max} bytes allowed`);
  }
  return buf.slice(0, n);
}

/** The file's bytes in chunks of up to 1 MiB, each a new array (safe to keep). */
export async function* chunksOf(sys: Sys, fd: number, what: string): AsyncGenerator<Uint8Array> {
  for (;;) {
    const buf = new Uint8Array(1 << 20);
    const r = sys.read(fd, buf, buf.length);
    if (r < 0) throw importError("", undefined, { op: "read", paths: { file: what }, errno: -r });
    if (r === 0) return;
    yield buf.subarray(0, r);
    // Let other work (a decompressor, a write) run between synchronous reads.
    await Promise.resolve();
  }
}
