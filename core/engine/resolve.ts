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
import { hintFor, MicroError } from "../errors.ts";
import { C, type CStr, cstr, type Sys } from "../sys/mod.ts";
import type { Op } from "../ops.ts";
import { cleanPath } from "../paths.ts";

function under(path: string, dir: string): boolean {
  return dir === "/" || path === dir || path.startsWith(dir + "/");
}

/** The container path `path` names inside `image`, with every symlink followed. */
export function realPath(image: string, path: string): string {
  return cleanPath(resolveInRoot(image, path).slice(image.length));
}

/**
 * Rewrites the destinations of mount, mkdir and symlink ops that lie in the image itself
 * (not under a file system an earlier op mounted, like /dev or a tmpfs) to their real
 * paths, and returns the paths in the image (container paths) that do not exist yet,
 * parent first; `files` are those to create as empty files.
 */
export function resolveTargets(
  ops: Op[],
): { ops: Op[]; created: string[]; files: string[] } {
  const root = ops.find((o) => o.kind === "bind-root");
  const image = root?.kind === "bind-root" ? root.args.source : null;
  if (image === null) return { ops, created: [], files: [] };
  const mounted: string[] = [];
  const created: string[] = [];
  const files: string[] = [];
  const out = ops.map((o): Op => {
    // The working directory too: like Docker, micro creates it when the image lacks it.
    if (o.kind !== "mount" && o.kind !== "mkdir" && o.kind !== "symlink" && o.kind !== "chdir") {
      return o;
    }
    const target = cleanPath(o.kind === "mount" ? o.args.target : o.args.path);
    if (mounted.some((m) => under(target, m))) {
      if (o.kind === "mount") mounted.push(target);
      return o;
    }
    // A symlink op creates its last component itself; only its parent is resolved.
    const last = target.lastIndexOf("/");
    let real: string;
    try {
      real = o.kind === "symlink"
        ? cleanPath(realPath(image, target.slice(0, last) || "/") + target.slice(last))
        : realPath(image, target);
    } catch (e) {
      throw new MicroError(`cannot resolve ${target} inside the image: ${(e as Error).message}`, {
        phase: "rootfs",
        plugin: o.plugin,
        hint: "a symlink loop in the image",
      });
    }
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
      try {
        Deno.lstatSync(`${image}${path}`);
      } catch {
        if (!created.includes(path)) created.push(path);
        if (i === parts.length && o.kind === "mount" && o.args.create === "file") files.push(path);
      }
    }
    if (o.kind === "mount") {
      mounted.push(real);
      return { ...o, args: { ...o.args, target: real } };
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
