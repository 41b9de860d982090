/**
 * `micro diff`: a container's changes to its image, as `docker diff` lists them (moby's
 * overlay changes walker). The upper directory is walked in name order, a directory before
 * what it holds; for each entry:
 *
 * - an overlay whiteout (a character device 0/0) is `D`;
 * - a directory marked opaque (`trusted.overlay.opaque`, or `user.overlay.opaque` with
 *   userxattr) that the image has is `D` (deleted and made again: what it holds is new);
 * - else `A`, unless the image has the path: then `C`, but a directory whose size, mode
 *   and mtime equal the image's is not listed (it was only copied up);
 * - the directory holding an `A` or `D` entry is listed as `C` (once, before the entry)
 *   when it was not listed itself.
 *
 * "The image has the path" is overlay's merged view of the lower directories (top first):
 * a whiteout or a non-directory in a layer hides the layers below, and so does an opaque
 * directory. Mount points micro made in the upper layer count as the image's (Docker keeps
 * them in a layer of its own). Nothing is followed: the real tree is read through fds.
 */
import { MicroError } from "../errors.ts";
import { C, cstr, type Sys } from "../sys/mod.ts";

export type ChangeKind = "A" | "C" | "D";

export interface Change {
  kind: ChangeKind;
  path: string;
}

/** One directory entry, not followed. */
export interface Entry {
  type: "dir" | "whiteout" | "other";
  /** st_mode, type bits included. */
  mode: number;
  size: number;
  /** Milliseconds; null when unknown. */
  mtime: number | null;
}

/** A directory tree as the walker reads it; `D` is a handle to an open directory. */
export interface Tree<D> {
  /** The names in a directory. */
  list(dir: D): string[];
  /** An entry of a directory, or null when there is none. */
  entry(dir: D, name: string): Entry | null;
  /** Whether the directory entry `name` is marked opaque. */
  opaque(dir: D, name: string): boolean;
  /** Opens a child directory (never through a symlink); null when it is not one. */
  open(dir: D, name: string): D | null;
  close(dir: D): void;
}

/** Go's sameFsTime: equal, or the same second where one side has no fraction (tar). */
function sameTime(a: number | null, b: number | null): boolean {
  if (a === b) return true;
  if (a === null || b === null) return false;
  return Math.floor(a / 1000) === Math.floor(b / 1000) && (a % 1000 === 0 || b % 1000 === 0);
}

const byName = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

/** The lower layers' view of `name` in a directory: its entry, and its directories below. */
function lowerLookup<D>(
  fs: Tree<D>,
  lower: D[],
  name: string,
  wantDirs: boolean,
): { entry: Entry | null; dirs: D[] } {
  let entry: Entry | null = null;
  const dirs: D[] = [];
  for (const d of lower) {
    const e = fs.entry(d, name);
    if (e === null) continue;
    if (e.type === "whiteout") break; // deleted in this layer: nothing below counts
    entry ??= e;
    if (e.type !== "dir") break; // a file hides what is below it
    if (!wantDirs) {
      if (fs.opaque(d, name)) break;
      continue;
    }
    const sub = fs.open(d, name);
    if (sub !== null) dirs.push(sub);
    if (fs.opaque(d, name)) break;
  }
  return { entry, dirs };
}

/**
 * The changes in `upper` over the merged `lower` directories (top first), in docker diff's
 * order. `hidden`: container paths that count as the image's (micro's mount points).
 */
export function changes<D>(fs: Tree<D>, upper: D, lower: D[], hidden: Set<string>): Change[] {
  const out: Change[] = [];
  const changedDirs = new Set<string>();
  const walk = (dir: D, path: string, below: D[]) => {
    for (const name of fs.list(dir).sort(byName)) {
      const p = `${path === "/" ? "" : path}/${name}`;
      const e = fs.entry(dir, name);
      if (e === null) continue; // gone meanwhile (a running container)
      const isDir = e.type === "dir";
      const opaque = isDir && fs.opaque(dir, name);
      const low = lowerLookup(fs, below, name, isDir && !opaque);
      let kind: ChangeKind | null;
      if (e.type === "whiteout") kind = "D";
      else if (opaque && low.entry !== null) kind = "D";
      else if (low.entry === null) kind = hidden.has(p) ? null : "A";
      else if (
        isDir && low.entry.type === "dir" && e.size === low.entry.size &&
        e.mode === low.entry.mode && sameTime(e.mtime, low.entry.mtime)
      ) kind = null;
      else kind = "C";
      if (kind !== null) {
        if (isDir) changedDirs.add(p);
        if (kind !== "C" && path !== "/" && !changedDirs.has(path)) {
          out.push({ kind: "C", path });
          changedDirs.add(path);
        }
        out.push({ kind, path: p });
      }
      if (isDir) {
        const sub = fs.open(dir, name);
        try {
          if (sub !== null) walk(sub, p, low.dirs);
        } finally {
          if (sub !== null) fs.close(sub);
          for (const d of low.dirs) fs.close(d);
        }
      } else {
        for (const d of low.dirs) fs.close(d);
      }
    }
  };
  walk(upper, "/", lower);
  return out;
}

/** `docker diff` lines. */
export function formatChanges(list: Change[]): string {
  return list.map((c) => `${c.kind} ${c.path}\n`).join("");
}

const S_IFMT = 0o170000;
const S_IFCHR = 0o020000;
const S_IFDIR = 0o040000;

/**
 * The real tree, read through directory fds: `/proc/self/fd/N/NAME` is looked up in the
 * very directory fd N holds, with the last component not followed, so a container that
 * swaps a directory for a symlink while `diff` reads cannot lead it anywhere else.
 */
export class FdTree implements Tree<number> {
  private readonly buf = new Uint8Array(8);
  private readonly xattr: Uint8Array;

  constructor(private readonly sys: Sys, userxattr: boolean, private readonly label: string) {
    this.xattr = cstr(userxattr ? "user.overlay.opaque" : "trusted.overlay.opaque");
  }

  /** Opens a top directory (a layer, or the upper dir) by name. */
  openRoot(path: string): number {
    const fd = this.sys.open(cstr(path), C.O_RDONLY | C.O_DIRECTORY | C.O_CLOEXEC, 0);
    if (fd < 0) {
      throw new MicroError("", {
        op: `${this.label}: open`,
        paths: { path },
        errno: -fd,
        hint: -fd === 2 ? "the directory is gone: the container cannot be compared" : undefined,
      });
    }
    return fd;
  }

  list(dir: number): string[] {
    return [...Deno.readDirSync(`/proc/self/fd/${dir}`)].map((e) => e.name);
  }

  entry(dir: number, name: string): Entry | null {
    let st: Deno.FileInfo;
    try {
      st = Deno.lstatSync(`/proc/self/fd/${dir}/${name}`);
    } catch (e) {
      if (e instanceof Deno.errors.NotFound || e instanceof Deno.errors.NotADirectory) {
        return null;
      }
      throw e;
    }
    const mode = st.mode ?? 0;
    const fmt = mode & S_IFMT;
    const type = fmt === S_IFDIR ? "dir" : fmt === S_IFCHR && st.rdev === 0 ? "whiteout" : "other";
    return { type, mode, size: st.size, mtime: st.mtime?.getTime() ?? null };
  }

  opaque(dir: number, name: string): boolean {
    const n = this.sys.lgetxattr(cstr(`/proc/self/fd/${dir}/${name}`), this.xattr, this.buf);
    return n === 1 && this.buf[0] === 0x79; // "y"
  }

  open(dir: number, name: string): number | null {
    const flags = C.O_RDONLY | C.O_DIRECTORY | C.O_NOFOLLOW | C.O_CLOEXEC;
    const fd = this.sys.openat(dir, cstr(name), flags, 0);
    if (fd >= 0) return fd;
    if (-fd === 2 || -fd === 20 || -fd === 40) return null; // gone, or not a directory now
    throw new MicroError("", {
      op: `${this.label}: open`,
      paths: { dir: Deno.readLinkSync(`/proc/self/fd/${dir}`), name },
      errno: -fd,
    });
  }

  close(dir: number): void {
    this.sys.close(dir);
  }
}

/**
 * `micro diff` of a container: its upper directory against the lower directories its
 * record names, each checked to be the directory the container was made on.
 */
export function containerDiff(
  root: string,
  rec: import("./containers.ts").ContainerRecord,
  sys: Sys,
): string {
  const name = rec.name;
  if (!rec.layer || !rec.lower?.length) {
    throw new MicroError(
      `container ${name} has no layer of its own: it ran ${
        rec.image ? "on its image directory itself (overlay off)" : "on the host view"
      }`,
      { hint: "diff compares a container's overlay layer with its image" },
    );
  }
  const fs = new FdTree(sys, rec.layer.userxattr, `diff ${name}`);
  const opened: number[] = [];
  try {
    const upper = fs.openRoot(`${root}/containers/${rec.id}/upper`);
    opened.push(upper);
    const lower = rec.lower.map((path, i) => {
      const fd = fs.openRoot(path);
      opened.push(fd);
      const want = rec.lowerIds?.[i];
      const st = Deno.statSync(`/proc/self/fd/${fd}`);
      if (want && (st.dev !== want.dev || st.ino !== want.ino)) {
        throw new MicroError(
          `diff ${name}: the image directory ${path} is not the one the container was made on`,
          { hint: "it was replaced since; the container cannot be compared with it" },
        );
      }
      return fd;
    });
    return formatChanges(changes(fs, upper, lower, new Set(rec.mountPoints ?? [])));
  } finally {
    for (const fd of opened) sys.close(fd);
  }
}
