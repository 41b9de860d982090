/**
 * Mount points inside an image, made concrete before the clone. A destination may pass
 * through symlinks of the image (`/escape -> /srv/x`); the child could not create a
 * dangling link's target, so the parent rewrites each destination into its symlink-free
 * form inside the root, as the container will see it, and lists the directories the run
 * is about to create there so cleanup can remove them. The kernel still resolves every
 * path with RESOLVE_IN_ROOT in the child: this only decides what to create, never where
 * a mount may land.
 */
import { resolveInRoot } from "../host.ts";
import { MicroError } from "../errors.ts";
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
 * paths, and returns the host directories that do not exist yet, parent first.
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
    if (o.kind !== "mount" && o.kind !== "mkdir" && o.kind !== "symlink") return o;
    const target = cleanPath(o.kind === "mount" ? o.args.target : o.args.path);
    if (mounted.some((m) => under(target, m))) {
      if (o.kind === "mount") mounted.push(target);
      return o;
    }
    // A symlink op creates its last component itself; only its parent is resolved.
    const last = target.lastIndexOf("/");
    const real = o.kind === "symlink"
      ? cleanPath(realPath(image, target.slice(0, last) || "/") + target.slice(last))
      : realPath(image, target);
    const parts = real.split("/").filter((p) => p);
    // Created on a file system mounted earlier (a link into /dev, say): not the image's.
    const upto = mounted.some((m) => under(real, m))
      ? 0
      : o.kind === "symlink"
      ? parts.length - 1
      : parts.length;
    for (let i = 1; i <= upto; i++) {
      const host = `${image}/${parts.slice(0, i).join("/")}`;
      try {
        Deno.lstatSync(host);
      } catch {
        if (!created.includes(host)) created.push(host);
        if (i === parts.length && o.kind === "mount" && o.args.create === "file") files.push(host);
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

/**
 * Creates the missing mount points in the image from the parent, which may write there:
 * inside a user namespace the container's root often may not (an image owned by host
 * root). The child then finds them in place and still resolves each one in the root.
 */
export function createMountPoints(created: string[], files: string[]): void {
  for (const path of created) {
    try {
      if (files.includes(path)) Deno.writeFileSync(path, new Uint8Array(0), { createNew: true });
      else Deno.mkdirSync(path, { mode: 0o755 });
    } catch (e) {
      if (e instanceof Deno.errors.AlreadyExists) continue;
      const code = (e as { code?: string }).code;
      throw new MicroError(code === "EROFS" ? "" : (e as Error).message, {
        phase: "rootfs",
        plugin: "mount",
        op: "mkdir",
        paths: { path },
        errno: code === "EROFS" ? 30 : code === "EACCES" ? 13 : undefined,
        hint: code === "EROFS"
          ? "the image is read-only, so a missing mount point cannot be created there"
          : undefined,
      });
    }
  }
}
