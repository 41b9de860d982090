/**
 * The merged view of an image's layers, as the container's overlay will show it, read in
 * the parent before the overlay exists: a path is looked up in each layer from the top, a
 * whiteout (char 0/0) or a non-directory hides everything below it, and an opaque
 * directory hides the same directory of the lower layers. Symlinks are followed in the
 * merged view, never out of it (an absolute link or `..` stays in the image).
 *
 * Used for what must be known before the clone: the image's /etc/passwd and /etc/group
 * (`--user`), and the real paths of mount destinations. The layers are the store's own
 * directories (written once by micro and never changed), so looking them up by name is
 * safe; files are still opened through the layer's fd and read with a size cap.
 */
import { cleanPath, resolveLinks } from "../paths.ts";
import { FileRefused, readInRoot } from "../files.ts";
import { C, cstr, type Sys } from "../sys/mod.ts";

const OPAQUE = [cstr("trusted.overlay.opaque"), cstr("user.overlay.opaque")];

export interface Found {
  /** Index of the layer that holds the entry (0 is the top). */
  layer: number;
  info: Deno.FileInfo;
}

function lstat(path: string): Deno.FileInfo | null {
  try {
    return Deno.lstatSync(path);
  } catch {
    return null;
  }
}

const isWhiteout = (st: Deno.FileInfo) => st.isCharDevice === true && (st.rdev ?? 0) === 0;

export class MergedRoot {
  private readonly value = new Uint8Array(8);

  /** `layers`: the layer directories, top first. */
  constructor(private readonly sys: Sys, readonly layers: string[]) {}

  private opaque(path: string): boolean {
    const p = cstr(path);
    for (const name of OPAQUE) {
      const n = this.sys.lgetxattr(p, name, this.value);
      if (n === 1 && this.value[0] === 0x79) return true; // "y"
    }
    return false;
  }

  /**
   * The entry at `path` in the merged view, without following a final symlink; every
   * directory on the way must already be a real directory in the view (see `resolve`).
   */
  lookup(path: string): Found | null {
    const parts = cleanPath(path).split("/").filter((p) => p);
    if (parts.length === 0) {
      const info = lstat(this.layers[0]);
      return info ? { layer: 0, info } : null;
    }
    for (let i = 0; i < this.layers.length; i++) {
      const base = this.layers[i];
      let stop = false;
      let complete = true;
      let prefix = base;
      for (let k = 0; k < parts.length - 1; k++) {
        prefix += `/${parts[k]}`;
        const st = lstat(prefix);
        if (st === null) {
          complete = false;
          break;
        }
        // A whiteout or a non-directory here hides the path in this layer and all below.
        if (isWhiteout(st) || !st.isDirectory) return null;
        if (this.opaque(prefix)) stop = true;
      }
      if (complete) {
        const st = lstat(`${prefix}/${parts[parts.length - 1]}`);
        if (st !== null) return isWhiteout(st) ? null : { layer: i, info: st };
      }
      if (stop) return null;
    }
    return null;
  }

  /**
   * The symlink-free container path `path` names, links followed inside the view; a
   * missing part and the rest are taken as written (as `resolveInRoot` does).
   */
  resolve(path: string): string {
    return resolveLinks(path, (p) => {
      const found = this.lookup(p);
      if (found === null) return null;
      return found.info.isSymlink ? Deno.readLinkSync(this.layers[found.layer] + p) : undefined;
    });
  }

  /** Whether anything is at the symlink-free `path`. */
  exists(path: string): boolean {
    return this.lookup(path) !== null;
  }

  /**
   * A regular file of at most `cap` bytes at `path` (links followed in the view), as text;
   * null when it does not exist. Throws FileRefused like `readInRoot`.
   */
  readFile(path: string, cap: number): string | null {
    const real = this.resolve(path);
    const found = this.lookup(real);
    if (found === null) return null;
    const fd = this.sys.open(
      cstr(this.layers[found.layer]),
      C.O_PATH | C.O_DIRECTORY | C.O_CLOEXEC,
      0,
    );
    if (fd < 0) throw new FileRefused(`cannot open the layer`, -fd);
    try {
      // Symlink-free in the view and found whole in this layer: nothing to follow there.
      return readInRoot(this.sys, fd, real, cap);
    } finally {
      this.sys.close(fd);
    }
  }
}
