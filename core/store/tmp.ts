/**
 * ROOT/tmp: work in progress. Layers are unpacked in `layer-<hex>-<random>` while their
 * lock `layer-<hex>.lock` is held, and layers being deleted are first renamed to
 * `rm-<random>`, so a half layer is never under ROOT/layers. Whatever a killed command
 * left here is removed by the next one that finds it unlocked. Blob partials (`*.partial`)
 * belong to the blob store: a later pull resumes them; `image prune` removes them.
 */
import { lockFile } from "./lock.ts";
import { removeTreeAsOwner } from "./rmtree.ts";
import { C, cstr, type Stat, type Sys } from "../sys/mod.ts";
import { openLibc } from "../sys/libc.ts";
import { chmodFd, direntsAt, DT_DIR } from "../files.ts";

export function tmpDir(root: string): string {
  return `${root}/tmp`;
}

/** 16 random hex digits, for names in ROOT/tmp. */
export function randomName(): string {
  const b = crypto.getRandomValues(new Uint8Array(8));
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

/** The lock file that guards the unpacking of one layer. */
export function layerLockPath(root: string, hex: string): string {
  return `${tmpDir(root)}/layer-${hex}.lock`;
}

/**
 * Removes a directory tree, also one whose directories lost their write or search bits (a
 * partial layer; the overlay's `work/work`, mode 0; rootless, the owner must give them
 * back first). Missing is fine; returns the error message when something stays. `asOwner`:
 * a rootless caller refused at the end asks `micro _remove-tree` (which itself calls this
 * without it).
 */
export async function removeTree(path: string, asOwner = true): Promise<string | undefined> {
  for (let attempt = 0;; attempt++) {
    try {
      await Deno.remove(path, { recursive: true });
      return undefined;
    } catch (e) {
      const next = afterRefusal(path, e, attempt, asOwner);
      if (next !== RETRY) return next;
    }
  }
}

/**
 * `removeTree` for synchronous callers (the container store), with the very same steps.
 * With `sys` (a run's own trees: its state and container directories), `removeTreeAt`
 * goes first, and Deno's remover takes over only where it stopped.
 */
export function removeTreeSync(path: string, asOwner = true, sys?: Sys): string | undefined {
  if (sys && removeTreeAt(sys, path) === 0) return undefined;
  for (let attempt = 0;; attempt++) {
    try {
      Deno.removeSync(path, { recursive: true });
      return undefined;
    } catch (e) {
      const next = afterRefusal(path, e, attempt, asOwner);
      if (next !== RETRY) return next;
    }
  }
}

const RETRY = Symbol("retry");

/** How deep removeTreeAt goes (one fd open per level) before it leaves the rest to Deno. */
const AT_DEPTH = 32;
const DIR_READ = C.O_RDONLY | C.O_DIRECTORY | C.O_NOFOLLOW | C.O_CLOEXEC;

/**
 * Removes `path` and everything in it through `sys`: each directory opened O_NOFOLLOW
 * beneath the one above, its entries read with getdents64 and removed with unlinkat
 * relative to its fd, so nothing is followed and no name is looked up twice. Returns 0 when
 * the tree is gone (or was never there), else the errno where it stopped (a directory it
 * may not read, one too deep): Deno's remover, which opens modes up and reports, does the
 * rest. Measured on a run's two trees: about 1 ms less than Deno's `removeSync` (its
 * per-directory fstat and fcntl calls, and the first use of each of its functions).
 */
export function removeTreeAt(sys: Sys, path: string): number {
  const name = cstr(path);
  const fd = sys.open(name, DIR_READ, 0);
  if (fd === -2) return 0; // ENOENT
  if (fd === -20 || fd === -40) { // ENOTDIR, ELOOP: a file or a symlink
    const rc = sys.unlinkat(C.AT_FDCWD, name, 0);
    return rc === 0 || rc === -2 ? 0 : -rc;
  }
  if (fd < 0) return -fd;
  let rc: number;
  try {
    rc = emptyDirAt(sys, fd, 0);
  } finally {
    sys.close(fd);
  }
  if (rc !== 0) return rc;
  rc = sys.unlinkat(C.AT_FDCWD, name, C.AT_REMOVEDIR);
  return rc === 0 || rc === -2 ? 0 : -rc;
}

/** Empties the directory open as `fd` (removeTreeAt): 0, or the errno where it stopped. */
function emptyDirAt(sys: Sys, fd: number, depth: number): number {
  const entries = direntsAt(sys, fd);
  if (typeof entries === "number") return -entries;
  for (const e of entries) {
    // EISDIR: what an entry of unknown type (DT_UNKNOWN) that is a directory answers.
    let rc = e.type === DT_DIR ? -21 : sys.unlinkat(fd, e.raw, 0);
    if (rc === -21) {
      if (depth + 1 >= AT_DEPTH) return 36; // ENAMETOOLONG, as deep trees fail
      const sub = sys.openat(fd, e.raw, DIR_READ, 0);
      if (sub < 0) return -sub;
      try {
        rc = emptyDirAt(sys, sub, depth + 1);
      } finally {
        sys.close(sub);
      }
      if (rc !== 0) return rc;
      rc = sys.unlinkat(fd, e.raw, C.AT_REMOVEDIR);
    }
    if (rc < 0 && rc !== -2) return -rc;
  }
  return 0;
}

/** What a failed removal does next: done (the outcome), or RETRY after opening up. */
function afterRefusal(
  path: string,
  e: unknown,
  attempt: number,
  asOwner: boolean,
): string | undefined | typeof RETRY {
  if (e instanceof Deno.errors.NotFound) return undefined;
  const denied = e instanceof Deno.errors.PermissionDenied;
  if (attempt === 2) {
    // Rootless with a range: a layer holding files of the caller's subordinate ids.
    return denied && asOwner && (Deno.uid() ?? 0) !== 0
      ? removeTreeAsOwner(path)
      : (e as Error).message;
  }
  if (denied) openUp(openLibc(), path);
  return RETRY;
}

/** Directories deeper than this are left as they are (one fd is open per level). */
const OPEN_UP_DEPTH = 256;

/**
 * chmod u+rwx on `path` and every directory below it, through fds, never by name: each
 * directory is opened O_PATH|O_NOFOLLOW|O_DIRECTORY beneath the fd of the one above (a
 * symlink swapped in is refused, not followed), its mode read with fstat, and changed
 * through `/proc/self/fd/N` (fchmod takes no O_PATH fd, and a directory with mode 0 cannot
 * be opened otherwise by its owner). `list` names a directory's subdirectories (a seam).
 */
export function openUp(sys: Sys, path: string, list = listDirs): void {
  const fd = sys.open(cstr(path), DIR_PATH, 0);
  if (fd < 0) return;
  try {
    openUpAt(sys, fd, list, 0);
  } finally {
    sys.close(fd);
  }
}

const DIR_PATH = C.O_PATH | C.O_DIRECTORY | C.O_NOFOLLOW | C.O_CLOEXEC;

function openUpAt(sys: Sys, fd: number, list: (fd: number) => string[], depth: number): void {
  const st: Stat = { mode: 0, size: 0, uid: 0, gid: 0 };
  if (sys.fstat(fd, st) < 0 || (st.mode & C.S_IFMT) !== C.S_IFDIR) return;
  if ((st.mode & 0o700) !== 0o700) {
    // Not ours (another owner's, under root's store): the removal reports it.
    chmodFd(sys, fd, (st.mode & 0o7777) | 0o700);
  }
  if (depth >= OPEN_UP_DEPTH) return;
  for (const name of list(fd)) {
    const child = sys.openat(fd, cstr(name), DIR_PATH, 0);
    if (child < 0) continue; // gone, or not a directory any more
    try {
      openUpAt(sys, child, list, depth + 1);
    } finally {
      sys.close(child);
    }
  }
}

/** The subdirectories of the directory at `fd` (read through its /proc/self/fd link). */
function listDirs(fd: number): string[] {
  try {
    return [...Deno.readDirSync(`/proc/self/fd/${fd}`)].filter((e) => e.isDirectory)
      .map((e) => e.name);
  } catch {
    return []; // unreadable: nothing below is opened up
  }
}

const LAYER_DIR = /^layer-([0-9a-f]{64})-[0-9a-f]{16}$/;
const LAYER_LOCK = /^layer-([0-9a-f]{64})\.lock$/;
const DOOMED = /^rm-[0-9a-f]{16}$/;

/**
 * Removes what killed commands left in ROOT/tmp: partial layers whose lock nobody holds,
 * their lock files, and layers that were being deleted. Safe while other commands run.
 * Returns how many entries went.
 */
export async function cleanTmp(root: string): Promise<number> {
  const dir = tmpDir(root);
  let names: string[];
  try {
    names = (await Array.fromAsync(Deno.readDir(dir))).map((e) => e.name);
  } catch {
    return 0;
  }
  let removed = 0;
  for (const name of names) {
    const path = `${dir}/${name}`;
    if (DOOMED.test(name)) {
      if ((await removeTree(path)) === undefined) removed++;
      continue;
    }
    const m = LAYER_DIR.exec(name) ?? LAYER_LOCK.exec(name);
    if (!m) continue;
    const lock = await lockFile(layerLockPath(root, m[1]), true, false);
    if (!lock) continue; // a command is unpacking that layer now
    try {
      if (LAYER_DIR.test(name) && (await removeTree(path)) === undefined) removed++;
    } finally {
      lock.removeAndRelease();
    }
  }
  return removed;
}
