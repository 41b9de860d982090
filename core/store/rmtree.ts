/**
 * Removing a tree of the caller's store that the caller may not remove by itself: a layer
 * or a container's layer holding files of its subordinate ids (rootless with a range). Kept
 * apart from core/image/rootless.ts so the run's cleanup does not load the user-namespace
 * code unless it needs it.
 */
import { V8_FLAGS } from "../v8.ts";

/**
 * This very Deno on this very main module (the launcher's extracted runtime and bundle, or
 * main.ts in a checkout). Not the launcher itself: inside the namespace the host's root
 * is unmapped (nobody), so its checks of who owns the cache directory's parents fail.
 * `v8Flags`: core/v8.ts's, which a process that forks the engine needs.
 */
export function microExe(v8Flags = V8_FLAGS): string[] {
  const main = new URL(Deno.mainModule);
  return [
    Deno.execPath(),
    "run",
    "-A",
    `--v8-flags=${v8Flags}`,
    "--no-prompt",
    "--quiet",
    main.protocol === "file:" ? decodeURIComponent(main.pathname) : main.href,
  ];
}

/**
 * Removes `path` (in the caller's store) as the owner of every file in it: through
 * `micro _remove-tree` when the caller is not root (see removeTreeWorker). Synchronous:
 * a rare fallback, taken when a plain removal was refused. Returns why it failed, if it did.
 */
export function removeTreeAsOwner(path: string): string | undefined {
  const exe = microExe();
  try {
    const r = new Deno.Command(exe[0], {
      args: [...exe.slice(1), "_remove-tree", path],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).outputSync();
    if (r.success) return undefined;
    const out = new TextDecoder().decode(r.stdout).trim() ||
      new TextDecoder().decode(r.stderr).trim();
    return out.replace(/^micro: /, "") || `micro _remove-tree exited ${r.code}`;
  } catch (e) {
    return `run ${exe[0]} _remove-tree: ${(e as Error).message}`;
  }
}
