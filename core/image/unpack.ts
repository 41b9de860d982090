/**
 * Applies one layer (a tar stream, compressed or not) to a new empty directory, the way
 * overlayfs wants a lower layer: whiteouts as char 0/0 devices, opaque directories by xattr.
 *
 * Archives attack here, so every entry is reached through file descriptors: the layer
 * directory is opened once, each entry's parent with openat2 under RESOLVE_BENEATH and
 * RESOLVE_NO_SYMLINKS (no symlink is ever followed, so an entry cannot write through a link
 * an earlier entry made), and each name is one component created with O_EXCL|O_NOFOLLOW.
 * No path from the archive is ever joined onto the directory's path and used by name.
 */
import { createHash } from "./_crypto.ts";
import { MicroError } from "../errors.ts";
import { hostIdOf } from "../idmap.ts";
import type { IdMapping } from "../spec.ts";
import { C, cstr, type Sys } from "../sys/mod.ts";
import { decompress } from "./decompress.ts";
import { bytesOf, displayName, type TarEntry, TarReader } from "./tar.ts";

export interface UnpackOptions {
  /** The layer's media type: decides nothing the first bytes contradict (see decompress.ts). */
  mediaType?: string;
  /** Overlay markers in user.overlay.* (overlay's userxattr, rootless) not trusted.overlay.*. */
  userxattr: boolean;
  /**
   * Marks opaque directories with both trusted.overlay.opaque and user.overlay.opaque, so
   * one stored layer serves overlays mounted with and without userxattr (root's containers
   * with and without a user namespace).
   */
  bothOpaqueMarkers?: boolean;
  /**
   * Shifts every owner by +uid/+gid (a rootless range from /etc/subuid); an owner at or above
   * `size` is an error naming the entry. Wins over `squashTo`.
   */
  idMap?: { uid: number; gid: number; size: number };
  /**
   * Owners through id maps, as the kernel maps them (container id → host id): podman's
   * rootless layout (0 → the caller, 1.. → the subordinate range) is not one uniform shift.
   * An owner no line maps is an error naming the entry. Wins over `idMap` and `squashTo`.
   */
  mapping?: { uid: IdMapping[]; gid: IdMapping[] };
  /** Every owner becomes this (rootless without a range). */
  squashTo?: { uid: number; gid: number };
  /** May make device nodes (CAP_MKNOD); else they are skipped with one warning. */
  canMknod: boolean;
}

export interface UnpackResult {
  /** "sha256:<hex>" of the uncompressed tar stream (every byte, the end blocks included). */
  diffId: string;
  /** Bytes of the uncompressed tar stream. */
  size: number;
  /** One line each, for the user: devices skipped, xattrs not kept, media type mismatches. */
  warnings: string[];
}

const RESOLVE = C.RESOLVE_BENEATH | C.RESOLVE_NO_SYMLINKS | C.RESOLVE_NO_MAGICLINKS;
/**
 * Parents are opened without O_NOFOLLOW: RESOLVE_NO_SYMLINKS refuses a symlink as the last
 * component too, and says so with ELOOP (O_NOFOLLOW would give ENOTDIR, as for a file).
 */
const O_PATH_DIR = C.O_PATH | C.O_DIRECTORY | C.O_CLOEXEC;
const O_READ_DIR = C.O_RDONLY | C.O_DIRECTORY | C.O_NOFOLLOW | C.O_CLOEXEC;
const O_NEW_FILE = C.O_WRONLY | C.O_CREAT | C.O_EXCL | C.O_NOFOLLOW | C.O_CLOEXEC;
const EPERM = 1;
const ENOENT = 2;
const EEXIST = 17;
const ENOTDIR = 20;
const EISDIR = 21;
const ENOTEMPTY = 39;
const ELOOP = 40;
const EOPNOTSUPP = 95;
/** Parent directory fds kept open at once; entries of one directory tend to come together. */
const PARENT_CACHE = 64;

/**
 * Unpacks the layer read from `input` into `dest`, an empty directory the caller made (in
 * ROOT/tmp, renamed into place by the caller once this resolves). On an error the directory
 * holds a partial layer: the caller removes it.
 */
export async function unpackLayer(
  sys: Sys,
  input: ReadableStream<Uint8Array>,
  dest: string,
  opts: UnpackOptions,
): Promise<UnpackResult> {
  const warnings: string[] = [];
  const hash = createHash("sha256");
  let size = 0;
  const source = decompress(input, opts.mediaType, warnings);
  async function* hashed(): AsyncGenerator<Uint8Array> {
    for await (const chunk of source) {
      hash.update(chunk);
      size += chunk.length;
      yield chunk;
    }
  }
  const root = sys.open(cstr(dest), O_PATH_DIR | C.O_NOFOLLOW, 0);
  if (root < 0) {
    throw new MicroError("", { phase: "unpack", op: "open", paths: { dest }, errno: -root });
  }
  const tar = new TarReader(hashed());
  const u = new Unpacker(sys, root, opts);
  try {
    for (;;) {
      const e = await tar.next();
      if (e === null) break;
      await u.apply(e, tar);
    }
    u.finish();
  } catch (e) {
    await tar.cancel().catch(() => {});
    throw e;
  } finally {
    u.close();
    sys.close(root);
  }
  warnings.push(...u.warnings());
  return { diffId: `sha256:${hash.digest("hex")}`, size, warnings };
}

interface DirMeta {
  mode: number;
  times: [number, number, number, number];
}

/** The state of one unpack: the layer's fd, open parents, directories to finish. */
class Unpacker {
  private readonly parents = new Map<string, number>();
  /** Directories by path, their mode and times applied last (deepest first). */
  private readonly dirs = new Map<string, DirMeta>();
  private devicesSkipped = 0;
  private firstDevice = "";
  private readonly xattrDropped = new Map<string, { count: number; first: string; why: string }>();
  private readonly opaqueName: Uint8Array;
  private readonly otherOpaqueName: Uint8Array | null;

  constructor(
    private readonly sys: Sys,
    private readonly root: number,
    private readonly opts: UnpackOptions,
  ) {
    this.opaqueName = cstr(`${opts.userxattr ? "user" : "trusted"}.overlay.opaque`);
    this.otherOpaqueName = opts.bothOpaqueMarkers
      ? cstr(`${opts.userxattr ? "trusted" : "user"}.overlay.opaque`)
      : null;
  }

  async apply(e: TarEntry, tar: TarReader): Promise<void> {
    if (e.name.includes("\0") || e.linkname.includes("\0")) {
      throw entryError("check", e, "a name holds a NUL byte");
    }
    const parts = clean(e.name, e, "entry");
    if (parts.length === 0) {
      // "./" itself: the layer root's own metadata.
      if (e.type !== "dir") throw entryError("check", e, "a non-directory entry for the root");
      this.dirMeta(this.openDir([], e), "", e);
      return;
    }
    const base = parts[parts.length - 1];
    const parentParts = parts.slice(0, -1);
    if (base.startsWith(".wh.")) return this.whiteout(parentParts, base, e);
    const dir = this.parent(parentParts, e);
    const name = bytesOf(base);
    const path = parts.join("/");
    switch (e.type) {
      case "file":
        return await this.file(dir, name, path, e, tar);
      case "dir":
        return this.dir(dir, name, path, e);
      case "symlink":
        return this.symlink(dir, name, path, e);
      case "link":
        return this.hardlink(dir, name, path, e);
      case "char":
      case "block":
      case "fifo":
        return this.node(dir, name, path, e);
    }
  }

  /** Applies the directories' modes and times, deepest first (their content is complete). */
  finish(): void {
    const paths = [...this.dirs.keys()].sort((a, b) => depth(b) - depth(a));
    for (const path of paths) {
      const m = this.dirs.get(path)!;
      const fd = this.sys.openat2(this.root, bytesOf(path || "."), O_READ_DIR, 0, RESOLVE);
      if (fd === -ENOENT || fd === -ENOTDIR || fd === -ELOOP) continue; // replaced later on
      const where = displayName(path || ".");
      if (fd < 0) throw dirError("open", where, -fd);
      try {
        let rc = this.sys.fchmod(fd, m.mode);
        if (rc < 0) throw dirError("chmod", where, -rc);
        const [aS, aN, mS, mN] = m.times;
        rc = this.sys.utimensat(fd, null, aS, aN, mS, mN, 0);
        if (rc < 0) throw dirError("utimensat", where, -rc);
      } finally {
        this.sys.close(fd);
      }
    }
  }

  warnings(): string[] {
    const out: string[] = [];
    if (this.devicesSkipped) {
      out.push(
        `${this.devicesSkipped} device node(s) skipped (first ${
          displayName(this.firstDevice)
        }): making them needs CAP_MKNOD`,
      );
    }
    for (const [name, d] of this.xattrDropped) {
      out.push(
        `xattr ${name} not kept on ${d.count} entr${d.count === 1 ? "y" : "ies"} (first ${
          displayName(d.first)
        }): ${d.why}`,
      );
    }
    return out;
  }

  close(): void {
    for (const fd of this.parents.values()) this.sys.close(fd);
    this.parents.clear();
  }

  // ---- Entries ----------------------------------------------------------------------

  private async file(dir: number, name: Uint8Array, path: string, e: TarEntry, tar: TarReader) {
    let fd = this.sys.openat(dir, name, O_NEW_FILE, 0o600);
    if (fd === -EEXIST) {
      this.clear(dir, name, path, e);
      fd = this.sys.openat(dir, name, O_NEW_FILE, 0o600);
    }
    if (fd < 0) throw entryError("open", e, undefined, -fd);
    try {
      await tar.body((chunk) => {
        let off = 0;
        while (off < chunk.length) {
          const part = off === 0 ? chunk : chunk.subarray(off);
          const n = this.sys.write(fd, part, part.length);
          if (n <= 0) throw entryError("write", e, undefined, n < 0 ? -n : 28);
          off += n;
        }
      });
      // chown clears setuid and capabilities, so the mode and the xattrs come after it.
      this.chownFd(fd, e);
      const rc = this.sys.fchmod(fd, e.mode);
      if (rc < 0) throw entryError("chmod", e, undefined, -rc);
      this.xattrsFd(fd, e);
      const [aS, aN, mS, mN] = timesOf(e);
      const t = this.sys.utimensat(fd, null, aS, aN, mS, mN, 0);
      if (t < 0) throw entryError("utimensat", e, undefined, -t);
    } finally {
      this.sys.close(fd);
    }
  }

  private dir(dir: number, name: Uint8Array, path: string, e: TarEntry) {
    // Made private (0700) until the end, so a read-only directory can still be filled.
    let rc = this.sys.mkdirat(dir, name, 0o700);
    if (rc === -EEXIST) {
      const fd = this.sys.openat(dir, name, O_READ_DIR, 0);
      if (fd >= 0) {
        // An existing directory stays (tar's rule): only its metadata changes.
        this.dirMeta(fd, path, e);
        return;
      }
      this.clear(dir, name, path, e);
      rc = this.sys.mkdirat(dir, name, 0o700);
    }
    if (rc < 0) throw entryError("mkdir", e, undefined, -rc);
    const fd = this.sys.openat(dir, name, O_READ_DIR, 0);
    if (fd < 0) throw entryError("open", e, undefined, -fd);
    this.dirMeta(fd, path, e);
  }

  private dirMeta(fd: number, path: string, e: TarEntry) {
    try {
      this.chownFd(fd, e);
      this.xattrsFd(fd, e);
    } finally {
      this.sys.close(fd);
    }
    this.dirs.set(path, { mode: e.mode, times: timesOf(e) });
  }

  private symlink(dir: number, name: Uint8Array, path: string, e: TarEntry) {
    const target = bytesOf(e.linkname);
    let rc = this.sys.symlinkat(target, dir, name);
    if (rc === -EEXIST) {
      this.clear(dir, name, path, e);
      rc = this.sys.symlinkat(target, dir, name);
    }
    if (rc < 0) throw entryError("symlink", e, undefined, -rc);
    this.metaByName(dir, name, e, false);
  }

  private hardlink(dir: number, name: Uint8Array, path: string, e: TarEntry) {
    const target = clean(e.linkname, e, "hard link target");
    if (target.length === 0) throw entryError("link", e, "the hard link target is the root");
    if (target.join("/") === path) return; // a link to itself: nothing to do
    const notInLayer = () =>
      entryError("link", e, "the hard link target is not (yet) in the layer", ENOENT, {
        target: displayName(e.linkname),
      });
    let tdir: number;
    try {
      tdir = this.parent(target.slice(0, -1), e, false);
    } catch (err) {
      if (err instanceof MicroError && err.fields.errno === ENOENT) throw notInLayer();
      throw err;
    }
    const tname = bytesOf(target[target.length - 1]);
    // flags 0: a symlink target is linked itself, never followed.
    let rc = this.sys.linkat(tdir, tname, dir, name, 0);
    if (rc === -EEXIST) {
      this.clear(dir, name, path, e);
      rc = this.sys.linkat(tdir, tname, dir, name, 0);
    }
    if (rc === -ENOENT) throw notInLayer();
    if (rc < 0) throw entryError("link", e, undefined, -rc, { target: displayName(e.linkname) });
  }

  private node(dir: number, name: Uint8Array, path: string, e: TarEntry) {
    if (e.type !== "fifo" && !this.opts.canMknod) {
      if (this.devicesSkipped++ === 0) this.firstDevice = e.name;
      return;
    }
    const kind = e.type === "fifo" ? C.S_IFIFO : e.type === "char" ? C.S_IFCHR : C.S_IFBLK;
    let rc = this.sys.mknodat(dir, name, kind | 0o600, e.devmajor, e.devminor);
    if (rc === -EEXIST) {
      this.clear(dir, name, path, e);
      rc = this.sys.mknodat(dir, name, kind | 0o600, e.devmajor, e.devminor);
    }
    if (rc < 0) throw entryError("mknod", e, undefined, -rc);
    this.metaByName(dir, name, e, true);
  }

  /** `.wh.NAME` hides NAME of the lower layers; `.wh..wh..opq` hides their whole directory. */
  private whiteout(parentParts: string[], base: string, e: TarEntry) {
    if (base === ".wh..wh..opq") {
      const fd = this.openDir(parentParts, e);
      try {
        for (const name of [this.opaqueName, this.otherOpaqueName]) {
          if (name === null) continue;
          const rc = this.sys.fsetxattr(fd, name, Y, 0);
          if (rc < 0) {
            throw entryError("setxattr", e, "cannot mark the directory opaque", -rc, {
              xattr: decodeBytes(name),
            });
          }
        }
      } finally {
        this.sys.close(fd);
      }
      return;
    }
    // Other .wh..wh.* names are AUFS bookkeeping (hard link dirs): nothing for overlay.
    if (base.startsWith(".wh..wh.")) return;
    const hidden = base.slice(4);
    if (hidden === "" || hidden === "." || hidden === "..") {
      throw entryError("whiteout", e, "a whiteout must name a file");
    }
    const dir = this.parent(parentParts, e);
    const name = bytesOf(hidden);
    // A char device 0/0 is overlay's whiteout; Linux 5.8+ lets anyone make one.
    let rc = this.sys.mknodat(dir, name, C.S_IFCHR, 0, 0);
    if (rc === -EEXIST) {
      this.clear(dir, name, [...parentParts, hidden].join("/"), e);
      rc = this.sys.mknodat(dir, name, C.S_IFCHR, 0, 0);
    }
    if (rc < 0) {
      throw entryError(
        "mknod",
        e,
        rc === -EPERM ? "making an overlay whiteout needs Linux 5.8 or CAP_MKNOD" : undefined,
        -rc,
      );
    }
  }

  // ---- Metadata ---------------------------------------------------------------------

  private owner(e: TarEntry): [number, number] {
    const t = this.opts.mapping;
    if (t) {
      const uid = hostIdOf(t.uid, e.uid);
      const gid = hostIdOf(t.gid, e.gid);
      if (uid === undefined || gid === undefined) {
        throw entryError(
          "chown",
          e,
          `owner ${e.uid}:${e.gid} is not in the ids mapped for this user`,
          undefined,
          undefined,
          "add a larger range to /etc/subuid and /etc/subgid",
        );
      }
      return [uid, gid];
    }
    const m = this.opts.idMap;
    if (m) {
      if (e.uid >= m.size || e.gid >= m.size) {
        throw entryError(
          "chown",
          e,
          `owner ${e.uid}:${e.gid} is outside the ${m.size} ids mapped for this user`,
          undefined,
          undefined,
          "add a larger range to /etc/subuid and /etc/subgid",
        );
      }
      return [e.uid + m.uid, e.gid + m.gid];
    }
    const s = this.opts.squashTo;
    return s ? [s.uid, s.gid] : [e.uid, e.gid];
  }

  private chownFd(fd: number, e: TarEntry) {
    const [uid, gid] = this.owner(e);
    const rc = this.sys.fchown(fd, uid, gid);
    if (rc < 0) throw entryError("chown", e, `to ${uid}:${gid}`, -rc);
  }

  private xattrsFd(fd: number, e: TarEntry) {
    for (const [key, value] of e.xattrs) {
      if (this.skipXattr(key, e)) continue;
      const rc = this.sys.fsetxattr(fd, bytesOf(key), value, 0);
      if (rc < 0) this.xattrFailed(key, e, -rc);
    }
  }

  /**
   * Owner, mode, xattrs and times of a symlink, device or fifo, by its one-component name
   * under the parent's fd: nothing is followed (the name was just made as a non-directory).
   */
  private metaByName(dir: number, name: Uint8Array, e: TarEntry, chmod: boolean) {
    const [uid, gid] = this.owner(e);
    let rc = this.sys.fchownat(dir, name, uid, gid, C.AT_SYMLINK_NOFOLLOW);
    if (rc < 0) throw entryError("chown", e, `to ${uid}:${gid}`, -rc);
    if (chmod) {
      rc = this.sys.fchmodat(dir, name, e.mode);
      if (rc < 0) throw entryError("chmod", e, undefined, -rc);
    }
    if (e.xattrs.size) {
      // lsetxattr on /proc/self/fd/DIR/NAME: the magic link is the parent we hold, the
      // last component is not followed.
      const path = bytesOf(`/proc/self/fd/${dir}/${decodeBytes(name)}`);
      for (const [key, value] of e.xattrs) {
        if (this.skipXattr(key, e)) continue;
        const x = this.sys.lsetxattr(path, bytesOf(key), value, 0);
        if (x < 0) this.xattrFailed(key, e, -x);
      }
    }
    const [aS, aN, mS, mN] = timesOf(e);
    rc = this.sys.utimensat(dir, name, aS, aN, mS, mN, C.AT_SYMLINK_NOFOLLOW);
    if (rc < 0) throw entryError("utimensat", e, undefined, -rc);
  }

  /**
   * Overlay's own xattrs never come from an archive: a forged redirect or metacopy would
   * make overlay read files outside the layer.
   */
  private skipXattr(key: string, e: TarEntry): boolean {
    if (!/^(trusted|user)\.overlay\./.test(key)) return false;
    this.xattrFailed(key, e, 0);
    return true;
  }

  private xattrFailed(key: string, e: TarEntry, errno: number) {
    // Privileged namespaces (trusted.*) are out of reach rootless; user.* is refused on
    // symlinks and devices. Neither stops the layer: the warning says what was lost.
    if (errno !== 0 && errno !== EPERM && errno !== EOPNOTSUPP) {
      throw entryError("setxattr", e, undefined, errno, { xattr: key });
    }
    const why = errno === 0 ? "overlay's own xattrs are not taken from archives" : errnoText(errno);
    const d = this.xattrDropped.get(key);
    if (d) d.count++;
    else this.xattrDropped.set(key, { count: 1, first: e.name, why });
  }

  // ---- Resolution -------------------------------------------------------------------

  /**
   * The O_PATH fd of a directory inside the layer (cached; the caller does not close it).
   * Missing directories are made (0755, owned by the layer's root) when `create`.
   */
  private parent(parts: string[], e: TarEntry, create = true): number {
    if (parts.length === 0) return this.root;
    const key = parts.join("/");
    const cached = this.parents.get(key);
    if (cached !== undefined) {
      // Most recently used last, so the eviction below never takes one in use.
      this.parents.delete(key);
      this.parents.set(key, cached);
      return cached;
    }
    let fd = this.sys.openat2(this.root, bytesOf(key), O_PATH_DIR, 0, RESOLVE);
    if (fd === -ENOENT && create) fd = this.makeParents(parts, e);
    if (fd < 0) throw parentError(e, -fd);
    if (this.parents.size >= PARENT_CACHE) {
      const [oldest, old] = this.parents.entries().next().value!;
      this.parents.delete(oldest);
      this.sys.close(old);
    }
    this.parents.set(key, fd);
    return fd;
  }

  /** Walks `parts` one component at a time, making those that are missing. */
  private makeParents(parts: string[], e: TarEntry): number {
    let fd = this.root;
    const [uid, gid] = this.owner({ ...e, uid: 0, gid: 0 });
    for (const part of parts) {
      const name = bytesOf(part);
      let next = this.sys.openat2(fd, name, O_PATH_DIR, 0, RESOLVE);
      if (next === -ENOENT) {
        const rc = this.sys.mkdirat(fd, name, 0o755);
        if (rc < 0 && rc !== -EEXIST) throw parentError(e, -rc);
        const own = this.sys.fchownat(fd, name, uid, gid, C.AT_SYMLINK_NOFOLLOW);
        if (own < 0) throw parentError(e, -own);
        next = this.sys.openat2(fd, name, O_PATH_DIR, 0, RESOLVE);
      }
      if (fd !== this.root) this.sys.close(fd);
      if (next < 0) return next;
      fd = next;
    }
    return fd;
  }

  /** A directory opened for reading (xattrs and fchown need more than O_PATH). */
  private openDir(parts: string[], e: TarEntry): number {
    const dir = this.parent(parts, e);
    const fd = this.sys.openat(dir, DOT, O_READ_DIR, 0);
    if (fd < 0) throw entryError("open", e, undefined, -fd);
    return fd;
  }

  /**
   * Makes room for a later entry of the same name (tar's rule: the later one wins). A
   * directory goes only when empty: one with content is never silently replaced.
   */
  private clear(dir: number, name: Uint8Array, path: string, e: TarEntry) {
    let rc = this.sys.unlinkat(dir, name, 0);
    if (rc === -EISDIR || rc === -EPERM) {
      rc = this.sys.unlinkat(dir, name, C.AT_REMOVEDIR);
      if (rc === -ENOTEMPTY || rc === -EEXIST) {
        throw entryError(
          "replace",
          e,
          "a directory with content would be replaced by another entry",
          -rc,
        );
      }
      // A directory is gone: cached fds of it would point at a removed directory.
      for (const [key, fd] of this.parents) {
        if (key === path || key.startsWith(path + "/")) {
          this.parents.delete(key);
          this.sys.close(fd);
        }
      }
    }
    if (rc < 0 && rc !== -ENOENT) throw entryError("replace", e, undefined, -rc);
  }
}

const Y = new TextEncoder().encode("y");
const DOT = cstr(".");

/**
 * The components of an archive path inside the layer: "./" and empty components dropped,
 * ".." resolved by name. Absolute paths and a ".." above the layer are refused.
 */
function clean(path: string, e: TarEntry, what: string): string[] {
  if (path.startsWith("/")) {
    throw entryError("check", e, `${what} is an absolute path`, undefined, {
      path: displayName(path),
    });
  }
  const out: string[] = [];
  for (const c of path.split("/")) {
    if (c === "" || c === ".") continue;
    if (c === "..") {
      if (out.length === 0) {
        throw entryError("check", e, `${what} climbs out of the layer with ".."`, undefined, {
          path: displayName(path),
        });
      }
      out.pop();
      continue;
    }
    out.push(c);
  }
  return out;
}

function depth(path: string): number {
  if (path === "") return 0;
  let n = 1;
  for (let i = 0; i < path.length; i++) if (path.charCodeAt(i) === 0x2f) n++;
  return n;
}

function timesOf(e: TarEntry): [number, number, number, number] {
  return [
    e.atimeSec ?? e.mtimeSec,
    e.atimeSec === undefined ? e.mtimeNsec : e.atimeNsec ?? 0,
    e.mtimeSec,
    e.mtimeNsec,
  ];
}

function decodeBytes(b: Uint8Array): string {
  let s = "";
  for (let i = 0; i < b.length && b[i] !== 0; i++) s += String.fromCharCode(b[i]);
  return s;
}

function errnoText(errno: number): string {
  return errno === EPERM
    ? "EPERM (not allowed here: trusted.* and security.* need privilege)"
    : "EOPNOTSUPP (the file system does not take it on this kind of file)";
}

function entryError(
  op: string,
  e: TarEntry,
  message?: string,
  errno?: number,
  extra?: Record<string, string>,
  hint?: string,
): MicroError {
  return new MicroError(message ?? "", {
    phase: "unpack",
    op,
    paths: { entry: displayName(e.name), ...extra },
    errno,
    hint,
  });
}

function parentError(e: TarEntry, errno: number): MicroError {
  const why = errno === ELOOP
    ? "a parent is a symlink: writes through links are refused"
    : errno === ENOTDIR
    ? "a parent is not a directory"
    : "cannot reach the parent directory";
  return entryError("resolve", e, why, errno);
}

function dirError(op: string, path: string, errno: number): MicroError {
  return new MicroError("", { phase: "unpack", op, paths: { dir: path }, errno });
}
