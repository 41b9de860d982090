/**
 * Mount points inside an image, made concrete before the clone. A destination may pass
 * through symlinks of the image (`/escape -> /srv/x`); the child could not create a
 * dangling link's target, so the parent rewrites each destination into its symlink-free
 * form inside the root, as the container will see it, and lists the directories the run
 * is about to create there so cleanup can remove them. Creating and removing them goes
 * through directory fds resolved by the kernel inside the image (RESOLVE_IN_ROOT), as
 * the child does, so an image's owner swapping in a symlink cannot make micro (root)
 * write or unlink outside it; this only decides what to create, never where.
 */
import { resolveInRoot } from "../host.ts";
import { typeAt } from "../files.ts";
import { openLibc } from "../sys/libc.ts";
import { hintFor, MicroError } from "../errors.ts";
import { C, type CStr, cstr, type Sys } from "../sys/mod.ts";
import type { Op } from "../ops.ts";
import { cleanPath } from "../paths.ts";
import { PROC_FILE_BINDS } from "./procbinds.ts";

function under(path: string, dir: string): boolean {
  return dir === "/" || path === dir || path.startsWith(dir + "/");
}

/** The container path `path` names inside `image`, with every symlink followed. */
export function realPath(image: string, path: string): string {
  return cleanPath(resolveInRoot(image, path).slice(image.length));
}

/**
 * A root that is not one directory (a store image's layers, merged as the overlay will
 * show them): how to follow links in it and whether a path exists there.
 */
export interface RootView {
  /** The symlink-free container path `path` names. */
  resolve(path: string): string;
  exists(path: string): boolean;
}

function dirView(image: string): RootView {
  return {
    resolve: (path) => realPath(image, path),
    exists: (path) => typeAt(openLibc(), `${image}${path}`, false) !== 0,
  };
}

/**
 * Rewrites the destinations of mount, mkdir and symlink ops that lie in the image itself
 * (not under a file system an earlier op mounted, like /dev or a tmpfs) to their real
 * paths, and returns the paths in the image (container paths) that do not exist yet,
 * parent first; `files` are those to create as empty files.
 */
export function resolveTargets(
  ops: Op[],
  imageDir?: string | RootView,
): { ops: Op[]; created: string[]; files: string[] } {
  const root = ops.find((o) => o.kind === "bind-root");
  const named = root?.kind === "bind-root" ? root.args.source : null;
  if (named === null) return { ops, created: [], files: [] };
  // Looked up through the caller's fd of the image (/proc/self/fd/N) when there is one.
  const view = typeof imageDir === "object" ? imageDir : dirView(imageDir ?? named);
  const mounted: string[] = [];
  /** The container's /proc and /sys: nothing but their own file systems goes there. */
  const kernelFs: string[] = [];
  const refuse = (o: Op, target: string, real: string): never => {
    throw new MicroError(
      `the destination ${target}${real === target ? "" : ` (${real} in the image)`} is ` +
        `inside the container's ${kernelFs.find((k) => under(real, k))}`,
      {
        phase: "rootfs",
        plugin: o.plugin,
        hint: "only proc and sysfs are mounted there (and, as runc allows, a file over " +
          "/proc/cpuinfo, meminfo, stat and the like); choose another destination",
      },
    );
  };
  /** A mount whose destination lies in /proc or /sys: refused, or marked allowed. */
  const overKernelFs = (o: Op, target: string, real: string): Op | null => {
    if (o.kind !== "mount" || !kernelFs.some((k) => under(real, k))) return null;
    if (o.args.create === "file" && PROC_FILE_BINDS.includes(real) && real === target) {
      return { ...o, args: { ...o.args, overProc: true } };
    }
    return refuse(o, target, real);
  };
  const created: string[] = [];
  const files: string[] = [];
  const out = ops.map((o): Op => {
    // The working directory too: like Docker, micro creates it when the image lacks it.
    if (o.kind !== "mount" && o.kind !== "mkdir" && o.kind !== "symlink" && o.kind !== "chdir") {
      return o;
    }
    const target = cleanPath(o.kind === "mount" ? o.args.target : o.args.path);
    if (mounted.some((m) => under(target, m))) {
      const over = overKernelFs(o, target, target);
      if (o.kind === "mount") mounted.push(target);
      return over ?? o;
    }
    // A symlink op creates its last component itself; only its parent is resolved.
    const last = target.lastIndexOf("/");
    let real: string;
    try {
      real = o.kind === "symlink"
        ? cleanPath(view.resolve(target.slice(0, last) || "/") + target.slice(last))
        : cleanPath(view.resolve(target));
    } catch (e) {
      throw new MicroError(`cannot resolve ${target} inside the image: ${(e as Error).message}`, {
        phase: "rootfs",
        plugin: o.plugin,
        hint: "a symlink loop in the image",
      });
    }
    if (o.kind === "mount" && o.args.kernelFs && real !== target) {
      throw new MicroError(
        `${o.args.target} in the image is a symlink (to ${real}): ${
          o.args.fstype || o.args.source
        } must be mounted on an ordinary directory`,
        {
          phase: "rootfs",
          plugin: o.plugin,
          hint: "as runc, micro refuses to mount it through a link; fix the image",
        },
      );
    }
    const over = overKernelFs(o, target, real);
    if (real === "/" && o.kind !== "symlink" && o.kind !== "chdir") {
      throw new MicroError(`the destination ${target} is the image's root (through a symlink)`, {
        phase: "rootfs",
        plugin: o.plugin,
        hint: "a mount there would replace the container's root",
      });
    }
    const parts = real.split("/").filter((p) => p);
    // Created on a file system mounted earlier (a link into /dev, say): not the image's.
    const upto = mounted.some((m) => under(real, m))
      ? 0
      : o.kind === "symlink"
      ? parts.length - 1
      : parts.length;
    for (let i = 1; i <= upto; i++) {
      const path = "/" + parts.slice(0, i).join("/");
      if (!view.exists(path)) {
        if (!created.includes(path)) created.push(path);
        if (i === parts.length && o.kind === "mount" && o.args.create === "file") files.push(path);
      }
    }
    if (o.kind === "mount") {
      mounted.push(real);
      if (o.args.kernelFs) kernelFs.push(real);
      const m = over ?? o;
      return { ...m, args: { ...m.args, target: real } } as Op;
    }
    return { ...o, args: { ...o.args, path: real } } as Op;
  });
  return { ops: out, created, files };
}

const IN_ROOT = C.RESOLVE_IN_ROOT | C.RESOLVE_NO_MAGICLINKS;
const AT_REMOVEDIR = 0x200;

/** Opens the parent of `path` inside the image; returns [dirfd, name] or -errno. */
function openParent(sys: Sys, rootFd: number, path: string): [number, CStr] | number {
  const cut = path.lastIndexOf("/");
  const fd = sys.openat2(
    rootFd,
    cstr(path.slice(0, cut) || "/"),
    C.O_PATH | C.O_DIRECTORY | C.O_CLOEXEC,
    0,
    IN_ROOT,
  );
  return fd < 0 ? fd : [fd, cstr(path.slice(cut + 1))];
}

/**
 * Creates the missing mount points in the image from the parent, which may write there:
 * inside a user namespace the container's root often may not (an image owned by host
 * root). The child then finds them in place and still resolves each one in the root.
 */
export function createMountPoints(
  image: string,
  created: string[],
  files: string[],
  sys: Sys,
): void {
  if (!created.length) return;
  const root = sys.open(cstr(image), C.O_PATH | C.O_DIRECTORY | C.O_CLOEXEC, 0);
  const fail = (path: string, errno: number): never => {
    throw new MicroError("", {
      phase: "rootfs",
      plugin: "mount",
      op: "mkdir",
      paths: { image, path },
      errno,
      hint: hintFor("mkdir", errno),
    });
  };
  if (root < 0) fail("/", -root);
  try {
    for (const path of created) {
      const p = openParent(sys, root, path);
      if (typeof p === "number") fail(path, -p);
      const [dir, name] = p as [number, CStr];
      let rc: number;
      if (files.includes(path)) {
        rc = sys.openat2(
          dir,
          name,
          C.O_CREAT | C.O_EXCL | C.O_WRONLY | C.O_NOFOLLOW | C.O_CLOEXEC,
          0o644,
          C.RESOLVE_BENEATH | C.RESOLVE_NO_SYMLINKS,
        );
        if (rc >= 0) sys.close(rc);
      } else rc = sys.mkdirat(dir, name, 0o755);
      sys.close(dir);
      if (rc < 0 && rc !== -17) fail(path, -rc); // EEXIST: there already
    }
  } finally {
    sys.close(root);
  }
}

/**
 * Removes what createMountPoints made, children first, each through its parent resolved
 * inside the image: directories only when empty. What cannot be removed is left.
 */
export function removeMountPoints(
  image: string,
  created: string[],
  files: string[],
  sys: Sys,
): void {
  if (!created.length) return;
  const root = sys.open(cstr(image), C.O_PATH | C.O_DIRECTORY | C.O_CLOEXEC, 0);
  if (root < 0) return;
  for (const path of [...created].reverse()) {
    const p = openParent(sys, root, path);
    if (typeof p === "number") continue;
    const [dir, name] = p;
    sys.unlinkat(dir, name, files.includes(path) ? 0 : AT_REMOVEDIR);
    sys.close(dir);
  }
  sys.close(root);
}
