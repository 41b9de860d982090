/** Container paths: absolute, `.` and empty segments dropped, `..` refused by callers. */
export function cleanPath(path: string): string {
  return "/" + path.split("/").filter((s) => s && s !== ".").join("/");
}

/** How many symlinks one resolution follows, as the kernel's limit (ELOOP past it). */
const MAX_LINKS = 40;

/**
 * The symlink-free container path `path` names, links followed as the container would
 * see them: an absolute link or `..` never leaves the root; a missing part and the rest
 * are taken as written. `readLink(p)` looks up the symlink-free container path `p`: the
 * link's target when it is a symlink, undefined when it is something else, null when
 * nothing is there. One loop for a directory root (core/host.ts) and the merged view of
 * a store image's layers (core/store/merged.ts).
 */
export function resolveLinks(
  path: string,
  readLink: (p: string) => string | undefined | null,
): string {
  const parts = path.split("/").filter((p) => p && p !== ".");
  const done: string[] = [];
  let links = 0;
  while (parts.length) {
    const name = parts.shift()!;
    if (name === "..") {
      done.pop();
      continue;
    }
    const target = readLink("/" + [...done, name].join("/"));
    if (target === null) {
      // Missing from here on: the rest is taken as written, `..` included.
      done.push(name);
      for (const rest of parts.splice(0)) {
        if (rest === "..") done.pop();
        else done.push(rest);
      }
      break;
    }
    if (target !== undefined) {
      if (++links > MAX_LINKS) throw new Error(`too many symlinks resolving ${path}`);
      if (target.startsWith("/")) done.length = 0;
      parts.unshift(...target.split("/").filter((p) => p && p !== "."));
      continue;
    }
    done.push(name);
  }
  return "/" + done.join("/");
}
