/**
 * Removing a tree of the caller's store that the caller may not remove by itself: a layer
 * or a container's layer holding files of its subordinate ids (rootless with a range). Kept
 * apart from core/image/rootless.ts so the run's cleanup does not load the user-namespace
 * code unless it needs it.
 */
import { BUNDLE_FLAGS, V8_FLAGS } from "../v8.ts";

/**
 * This very Deno on this very main module (the launcher's extracted runtime and bundle, or
 * main.ts in a checkout). Not the launcher itself: inside the namespace the host's root
 * is unmapped (nobody), so its checks of who owns the cache directory's parents fail.
 * `v8Flags`: core/v8.ts's, which a process that forks the engine needs.
 */
export function microExe(v8Flags = V8_FLAGS): string[] {
  return denoRunArgs(Deno.execPath(), Deno.mainModule, v8Flags, (p) => {
    try {
      return Deno.lstatSync(p).isFile;
    } catch {
      return false;
    }
  });
}

/**
 * `deno run` of `mainModule` with micro's flags: the bundle the launcher runs gets the
 * launcher's own (BUNDLE_FLAGS, core/v8.ts); a checkout's main.ts its own deno.json, named.
 */
export function denoRunArgs(
  deno: string,
  mainModule: string,
  v8Flags: string,
  isFile: (path: string) => boolean,
): string[] {
  const main = new URL(mainModule);
  const path = main.protocol === "file:" ? decodeURIComponent(main.pathname) : main.href;
  const config = path.endsWith("/main.ts") ? `${path.slice(0, -"main.ts".length)}deno.json` : "";
  const flags = config && isFile(config)
    ? ["--no-prompt", "--quiet", "--config", config]
    : BUNDLE_FLAGS.split(/ +/);
  return [deno, "run", "-A", `--v8-flags=${v8Flags}`, ...flags, path];
}

/** What the supervisor's Deno cache adds to the name of the launcher's (supervisorEnv). */
export const SUPERVISOR_CACHE_SUFFIX = "_supervisor";

/**
 * The environment of a micro process started by another (`microExe`): the starter's, but
 * under micro's own V8 flags (the supervisor's `DENO_V8_FLAGS` dropped) and with the
 * launcher's Deno cache, which those flags fill, not the supervisor's (see supervisorEnv:
 * V8 refuses a code cache made under other flags). Pure.
 */
export function runnerEnv(starter: Record<string, string>): Record<string, string> {
  const env = { ...starter };
  delete env.DENO_V8_FLAGS;
  const dir = env.DENO_DIR;
  if (dir?.endsWith(SUPERVISOR_CACHE_SUFFIX)) {
    env.DENO_DIR = dir.slice(0, -SUPERVISOR_CACHE_SUFFIX.length);
  }
  return env;
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
      clearEnv: true,
      env: runnerEnv(Deno.env.toObject()),
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
