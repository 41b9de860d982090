/**
 * The image directory, opened once, and the mount points runs share inside it.
 *
 * The image is opened by name exactly once (an O_PATH fd); everything after that, in the
 * parent and in the child, goes through `/proc/self/fd/N`, so renaming the image or
 * swapping a symlink in for it later changes nothing.
 *
 * Mount points micro has to make in an image (a `/proc` the image lacks, a `-w` directory)
 * are shared by every run on that image: one run's cleanup must not remove a directory
 * another run is using. A registry per image in the state root lists what runs created
 * there, guarded by two flock(2) files: `lock` (held exclusively while a run creates or
 * removes mount points) and `users` (held shared by every run from before it resolves its
 * mount points until its cleanup). Cleanup removes the registered mount points only when it
 * can take `users` exclusively, that is when no other run is between start and cleanup; a
 * starting run waits for `lock` first, so it never sees a half-removed set.
 */
import { MicroError } from "../errors.ts";
import { C, cstr, decodeText, type Sys } from "../sys/mod.ts";
import { createMountPoints, removeMountPoints } from "./resolve.ts";

export interface OpenedImage {
  fd: number;
  /** `/proc/self/fd/N`: the image as this process opened it. */
  dir: string;
  /** The real path it had when opened (for display, the state and gc). */
  path: string;
  dev: number;
  ino: number;
}

/** What the state records of the image, so a later gc finds the same directory. */
export interface ImageId {
  path: string;
  dev: number;
  ino: number;
}

/** Opens the image directory once; its fd is closed at exec (O_CLOEXEC) and by `closeImage`. */
export function openImage(path: string, sys: Sys): OpenedImage {
  const fd = sys.open(cstr(path), C.O_PATH | C.O_DIRECTORY | C.O_CLOEXEC, 0);
  if (fd < 0) {
    throw new MicroError("", {
      phase: "prepare",
      plugin: "mount",
      op: "open image",
      paths: { path },
      errno: -fd,
      hint: -fd === 20
        ? "the image must be a directory holding a root filesystem"
        : -fd === 2
        ? "the image directory does not exist"
        : undefined,
    });
  }
  const dir = `/proc/self/fd/${fd}`;
  // Through sys, not Deno's stat and readlink: their first use costs a process about 1 ms.
  const id = new Float64Array(2);
  const link = new Uint8Array(4097);
  let rc = sys.fstatId(fd, id);
  const n = rc < 0 ? rc : sys.readlinkat(C.AT_FDCWD, cstr(dir), link);
  if (rc >= 0) rc = n < 0 ? n : n >= link.length ? -36 : 0; // ENAMETOOLONG
  if (rc < 0) {
    sys.close(fd);
    throw new MicroError("", {
      phase: "prepare",
      plugin: "mount",
      op: "open image",
      paths: { path, fd: dir },
      errno: -rc,
    });
  }
  const real = decodeText(link.subarray(0, n));
  return { fd, dir, path: real, dev: id[0], ino: id[1] };
}

function registryBase(root: string, id: ImageId): string {
  return `${root}/.images/${id.dev}-${id.ino}`;
}

interface Registry {
  path: string;
  created: string[];
  files: string[];
}

function readRegistry(base: string): Registry | null {
  try {
    return JSON.parse(Deno.readTextFileSync(`${base}.json`)) as Registry;
  } catch {
    return null;
  }
}

function writeRegistry(base: string, r: Registry): void {
  const tmp = `${base}.json.tmp`;
  Deno.writeTextFileSync(tmp, JSON.stringify(r) + "\n", { mode: 0o600 });
  Deno.renameSync(tmp, `${base}.json`);
}

/** Opens (creating) a lock file of the state root; -errno on failure. */
function openLock(path: string, sys: Sys): number {
  return sys.open(
    cstr(path),
    C.O_RDWR | C.O_CREAT | C.O_NOFOLLOW | C.O_CLOEXEC,
    0o600,
  );
}

function sameFile(fd: number, path: string): boolean {
  try {
    const a = Deno.statSync(`/proc/self/fd/${fd}`);
    const b = Deno.lstatSync(path);
    return a.ino === b.ino && a.dev === b.dev;
  } catch {
    return false;
  }
}

/**
 * Takes the image's `lock` exclusively: waits for a run creating or removing mount points.
 * The last cleanup unlinks the file, so one taken on an unlinked file is dropped and taken
 * again.
 */
function takeMutex(base: string, sys: Sys): number {
  const dir = base.slice(0, base.lastIndexOf("/"));
  for (let i = 0; i < 100; i++) {
    const fd = openLock(`${base}.lock`, sys);
    // The directory goes with the last image's record: made again when missing.
    if (fd === -2) {
      Deno.mkdirSync(dir, { recursive: true, mode: 0o700 });
      continue;
    }
    if (fd < 0) throw new Error(`open ${base}.lock: errno ${-fd}`);
    const rc = sys.flock(fd, C.LOCK_EX);
    if (rc >= 0 && sameFile(fd, `${base}.lock`)) return fd;
    sys.close(fd);
    if (rc < 0 && rc !== -4) throw new Error(`flock ${base}.lock: errno ${-rc}`);
  }
  throw new Error(`flock ${base}.lock: kept being replaced`);
}

/** A run's hold on its image: the `users` lock, shared, until `release`. */
export class ImageUse {
  private constructor(
    private readonly base: string,
    private readonly id: ImageId,
    private users: number,
    private readonly sys: Sys,
  ) {}

  /**
   * Joins the image's users and creates the mount points `resolve` says are missing,
   * registering them first; `resolve` runs under the lock, so what it finds stays until
   * this run's cleanup.
   */
  static start(
    root: string,
    image: OpenedImage,
    sys: Sys,
    resolve: () => { created: string[]; files: string[] },
  ): ImageUse {
    const base = registryBase(root, image);
    let mutex = takeMutex(base, sys);
    let users = -1;
    try {
      users = openLock(`${base}.users`, sys);
      if (users < 0) throw new Error(`open ${base}.users: errno ${-users}`);
      // Never blocks long: `users` is held exclusively only by a cleanup holding `lock`.
      const rc = sys.flock(users, C.LOCK_SH);
      if (rc < 0) throw new Error(`flock ${base}.users: errno ${-rc}`);
      const { created, files } = resolve();
      if (created.length) {
        const reg = readRegistry(base) ?? { path: image.path, created: [], files: [] };
        for (const c of created) if (!reg.created.includes(c)) reg.created.push(c);
        for (const f of files) if (!reg.files.includes(f)) reg.files.push(f);
        writeRegistry(base, reg);
        createMountPoints(image.dir, created, files, sys);
      }
      return new ImageUse(base, image, users, sys);
    } catch (e) {
      // Nothing of this run's stays: leave as a cleanup would (after the lock is let go).
      sys.close(mutex);
      mutex = -1;
      if (users >= 0) releaseImage(root, image, sys, users);
      throw e;
    } finally {
      if (mutex >= 0) sys.close(mutex);
    }
  }

  /** Leaves the image: the last user removes the shared mount points. */
  release(): void {
    if (this.users < 0) return;
    releaseImage(
      this.base.slice(0, this.base.lastIndexOf("/.images/")),
      this.id,
      this.sys,
      this.users,
    );
    this.users = -1;
  }
}

/**
 * Removes an image's shared mount points when no run uses it any more (also called by gc
 * for a run that was killed). `users` is the caller's own hold, if it has one. The image
 * is opened by its recorded path and used only if it is still the same directory.
 */
export function releaseImage(root: string, id: ImageId, sys: Sys, users = -1): void {
  const base = registryBase(root, id);
  if (users < 0) {
    // No `lock`: no run ever registered mount points in this image (an overlay run never
    // does), or the last user removed them; nothing to make only to remove again.
    const fd = sys.open(cstr(`${base}.lock`), C.O_PATH | C.O_NOFOLLOW | C.O_CLOEXEC, 0);
    if (fd === -2) return;
    if (fd >= 0) sys.close(fd);
  }
  let mutex: number;
  try {
    mutex = takeMutex(base, sys);
  } catch {
    if (users >= 0) sys.close(users);
    return;
  }
  try {
    if (users < 0) {
      users = openLock(`${base}.users`, sys);
      if (users < 0) return;
    }
    if (sys.flock(users, C.LOCK_EX | C.LOCK_NB) < 0) return; // another run uses it
    const reg = readRegistry(base);
    if (reg?.created.length) {
      const fd = sys.open(cstr(reg.path), C.O_PATH | C.O_DIRECTORY | C.O_CLOEXEC, 0);
      if (fd >= 0) {
        try {
          const st = Deno.statSync(`/proc/self/fd/${fd}`);
          if (st.dev === id.dev && st.ino === id.ino) {
            removeMountPoints(`/proc/self/fd/${fd}`, reg.created, reg.files, sys);
          }
        } finally {
          sys.close(fd);
        }
      }
    }
    for (const f of [".json", ".users", ".lock"]) {
      try {
        Deno.removeSync(base + f);
      } catch { /* already gone */ }
    }
    try {
      Deno.removeSync(base.slice(0, base.lastIndexOf("/"))); // only when empty
    } catch { /* other images' records */ }
  } finally {
    if (users >= 0) sys.close(users);
    sys.close(mutex);
  }
}
