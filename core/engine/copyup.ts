/**
 * OCI's `tmpcopyup` (runc's and crun's extension, which podman gives every `--tmpfs`): a
 * tmpfs mounted over a directory of the image starts with a copy of what the image had
 * there, as runc's copy does: directories, regular files, symlinks (as links) and device,
 * fifo and socket nodes, with their owner and mode; hard links become separate files.
 *
 * The container's child runs it (core/engine/child.ts), before pivot_root, between the
 * tmpfs's mount and the next op, so it follows the child's rules (DESIGN.md §4): every
 * buffer is made before the clone and the copy allocates nothing. Every name is opened
 * relative to its directory's fd, beneath it and through no symlink, so a link in the image
 * (or one swapped in meanwhile) is copied as a link and never followed out of the image.
 */
import { C, type Stat, type Sys } from "../sys/mod.ts";

/** Nesting deeper than this is refused (ELOOP) rather than exhausting fds. */
export const COPYUP_MAX_DEPTH = 64;
const DIRENTS = 4096;
const NAME_MAX = 255;
const PATH_MAX = 4096;
const ELOOP = 40;
const ENAMETOOLONG = 36;
const EFTYPE = 5; // EIO: a regular file swapped for something else while being copied
const BENEATH = C.RESOLVE_BENEATH | C.RESOLVE_NO_SYMLINKS | C.RESOLVE_NO_MAGICLINKS;
const EMPTY = new Uint8Array(1);

export class CopyUp {
  private readonly dirents: Uint8Array[] = [];
  private readonly names: Uint8Array[] = [];
  private readonly link = new Uint8Array(PATH_MAX + 1);
  private readonly linkRead = this.link.subarray(0, PATH_MAX);
  private readonly st: Stat = { mode: 0, size: 0, uid: 0, gid: 0, rdev: 0 };

  constructor(private readonly sys: Sys) {
    for (let i = 0; i < COPYUP_MAX_DEPTH; i++) {
      this.dirents.push(new Uint8Array(DIRENTS));
      this.names.push(new Uint8Array(NAME_MAX + 1));
    }
  }

  /** What is in the directory `from` (an fd that can be read), copied into `to`: 0 or -errno. */
  copy(from: number, to: number): number {
    return this.dir(from, to, 0);
  }

  private dir(from: number, to: number, depth: number): number {
    if (depth >= COPYUP_MAX_DEPTH) return -ELOOP;
    const buf = this.dirents[depth];
    const name = this.names[depth];
    for (;;) {
      const n = this.sys.getdents64(from, buf);
      if (n <= 0) return n;
      // struct linux_dirent64: d_ino (8), d_off (8), d_reclen (2), d_type (1), d_name.
      for (let off = 0; off < n; off += buf[off + 16] | (buf[off + 17] << 8)) {
        let len = 0;
        while (len < NAME_MAX && buf[off + 19 + len] !== 0) {
          name[len] = buf[off + 19 + len];
          len++;
        }
        name[len] = 0;
        if (name[0] === 46 && (len === 1 || (len === 2 && name[1] === 46))) continue; // . ..
        const rc = this.entry(from, to, name, depth);
        if (rc < 0) return rc;
      }
    }
  }

  private entry(from: number, to: number, name: Uint8Array, depth: number): number {
    const sys = this.sys;
    const st = this.st;
    let rc = sys.fstatat(from, name, C.AT_SYMLINK_NOFOLLOW, st);
    if (rc < 0) return rc;
    const type = st.mode & C.S_IFMT;
    if (type === C.S_IFREG) return this.file(from, to, name);
    const mode = st.mode & 0o7777;
    const uid = st.uid;
    const gid = st.gid;
    if (type === C.S_IFDIR) {
      rc = sys.mkdirat(to, name, 0o700);
      if (rc < 0) return rc;
      const s = sys.openat2(
        from,
        name,
        C.O_RDONLY | C.O_DIRECTORY | C.O_NOFOLLOW | C.O_CLOEXEC,
        0,
        BENEATH,
      );
      if (s < 0) return s;
      const d = sys.openat2(
        to,
        name,
        C.O_PATH | C.O_DIRECTORY | C.O_NOFOLLOW | C.O_CLOEXEC,
        0,
        BENEATH,
      );
      if (d < 0) {
        sys.close(s);
        return d;
      }
      rc = this.dir(s, d, depth + 1);
      sys.close(s);
      sys.close(d);
    } else if (type === C.S_IFLNK) {
      const n = sys.readlinkat(from, name, this.linkRead);
      if (n < 0) return n;
      if (n >= PATH_MAX) return -ENAMETOOLONG;
      this.link[n] = 0;
      rc = sys.symlinkat(this.link, to, name);
      if (rc >= 0) rc = sys.fchownat(to, name, uid, gid, C.AT_SYMLINK_NOFOLLOW);
      return rc;
    } else {
      // A device, fifo or socket node: dev_t's 32-bit encoding (major 12 bits, minor 20).
      const dev = st.rdev ?? 0;
      const major = (dev >>> 8) & 0xfff;
      const minor = (dev & 0xff) | ((dev >>> 12) & 0xfff00);
      rc = sys.mknodat(to, name, type | 0o600, major, minor);
    }
    if (rc >= 0) rc = sys.fchownat(to, name, uid, gid, C.AT_SYMLINK_NOFOLLOW);
    // After the chown, which clears set-id bits; on a node just made here (no link).
    if (rc >= 0) rc = sys.fchmodat(to, name, mode);
    return rc;
  }

  private file(from: number, to: number, name: Uint8Array): number {
    const sys = this.sys;
    const st = this.st;
    // O_NONBLOCK: a fifo swapped in since the fstatat cannot block the open.
    const s = sys.openat2(
      from,
      name,
      C.O_RDONLY | C.O_NOFOLLOW | C.O_NONBLOCK | C.O_CLOEXEC,
      0,
      BENEATH,
    );
    if (s < 0) return s;
    let rc = sys.fstatat(s, EMPTY, C.AT_EMPTY_PATH, st);
    if (rc >= 0 && (st.mode & C.S_IFMT) !== C.S_IFREG) rc = -EFTYPE;
    const d = rc < 0 ? rc : sys.openat2(
      to,
      name,
      C.O_WRONLY | C.O_CREAT | C.O_EXCL | C.O_NOFOLLOW | C.O_CLOEXEC,
      0o600,
      BENEATH,
    );
    if (d < 0) {
      sys.close(s);
      return d;
    }
    let n = sys.sendfile(d, s, 0x40000000);
    while (n > 0) n = sys.sendfile(d, s, 0x40000000);
    rc = n;
    if (rc >= 0) rc = sys.fchownat(d, EMPTY, st.uid, st.gid, C.AT_EMPTY_PATH);
    if (rc >= 0) rc = sys.fchmod(d, st.mode & 0o7777);
    sys.close(s);
    sys.close(d);
    return rc;
  }
}
