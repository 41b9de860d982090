/**
 * Unpacking a layer rootless with its owners kept: the unpacker runs as root of a user
 * namespace that has the run's own subordinate-id maps (core/engine/userns.ts), so an entry
 * owned by container id N is chowned to N there and lands on the host id the map gives,
 * exactly what a container of that map will see. A non-root process outside the namespace
 * cannot chown to those ids at all. The program run there is micro itself
 * (`micro _unpack-layer`), as podman re-execs itself.
 */
import { MicroError } from "../errors.ts";
import { runInUserns, type UsernsMaps } from "../engine/userns.ts";
import type { Sys } from "../sys/mod.ts";
import type { UnpackResult } from "./unpack.ts";
import { microExe, runnerEnv } from "../store/rmtree.ts";

export interface UsernsUnpackOptions {
  /** The layer's media type (see unpackLayer). */
  mediaType?: string;
  /** The command that runs micro (argv prefix); by default this Deno on its main module. */
  exe?: string[];
}

/** Environment the program keeps: what the launcher and Deno need to find their files. */
const KEEP_ENV = ["HOME", "PATH", "TMPDIR", "XDG_CACHE_HOME", "MICRO_CACHE_DIR", "DENO_DIR"];

/** KEEP_ENV as NAME=value, for the program run in the user namespace. */
function keptEnv(): string[] {
  // DENO_DIR as runnerEnv gives it: the cache of micro's own flags, even from the supervisor.
  const env = runnerEnv(Deno.env.toObject());
  return KEEP_ENV.flatMap((k) => {
    const v = env[k];
    return v === undefined ? [] : [`${k}=${v}`];
  });
}

/**
 * Unpacks the layer blob at `blob` into `dest` (an empty directory of the caller's, in
 * ROOT/tmp) inside a user namespace with `maps`: overlay markers in user.overlay.*, device
 * nodes skipped (no CAP_MKNOD there). On an error `dest` holds a partial layer.
 */
export async function unpackLayerInUserns(
  sys: Sys,
  maps: UsernsMaps,
  blob: string,
  dest: string,
  opts: UsernsUnpackOptions = {},
): Promise<UnpackResult> {
  const exe = opts.exe ?? microExe();
  const request = JSON.stringify({ blob, dest, mediaType: opts.mediaType });
  const env = keptEnv();
  const r = await runInUserns(sys, maps, [...exe, "_unpack-layer", request], env);
  const text = new TextDecoder().decode(r.stdout).trim();
  let reply: { diffId?: string; size?: number; warnings?: string[]; error?: string } = {};
  try {
    reply = JSON.parse(text.split("\n").pop() ?? "");
  } catch { /* no reply: the status says what happened */ }
  if (r.exitCode === 0 && reply.diffId && typeof reply.size === "number") {
    return { diffId: reply.diffId, size: reply.size, warnings: reply.warnings ?? [] };
  }
  if (reply.error) throw new MicroError(reply.error);
  throw new MicroError(
    `${exe[0]} _unpack-layer ${r.signal ? `died of signal ${r.signal}` : `exited ${r.exitCode}`}` +
      " in the user namespace",
    { phase: "unpack", hint: "run it by hand to see why" },
  );
}

/**
 * The other side, `micro _unpack-layer REQUEST`, run as root of the namespace: unpacks and
 * prints one JSON line, the result or `{error}` (stdout goes to the caller, not the user).
 */
export async function unpackLayerWorker(argv: string[]): Promise<number> {
  try {
    const req = JSON.parse(argv[1] ?? "") as { blob: string; dest: string; mediaType?: string };
    if (typeof req.blob !== "string" || typeof req.dest !== "string") {
      throw new MicroError("usage: micro _unpack-layer REQUEST (internal)");
    }
    const { unpackLayer } = await import("./unpack.ts");
    const { openLibc } = await import("../sys/libc.ts");
    // Its readable stream closes the file at the end; on an error the process exits.
    const file = await Deno.open(req.blob, { read: true });
    const r = await unpackLayer(openLibc(), file.readable, req.dest, {
      mediaType: req.mediaType,
      userxattr: true,
      canMknod: false,
    });
    console.log(JSON.stringify(r));
    return 0;
  } catch (e) {
    const line = e instanceof MicroError ? e.line() : `unpack: ${(e as Error).message ?? e}`;
    console.log(JSON.stringify({ error: line }));
    return 125;
  }
}

/**
 * `micro _remove-tree PATH`, internal: removes a tree of the caller's store that holds files
 * of its subordinate ids (a layer or a container's layer unpacked or written with them),
 * which the caller itself may not remove. Run as the caller, it re-runs itself as root of a
 * user namespace with the caller's maps; there (or with nothing to map) it removes the tree,
 * never following a link. Prints one line and exits 125 on a failure.
 */
export async function removeTreeWorker(argv: string[]): Promise<number> {
  const path = argv[1] ?? "";
  try {
    if (!path.startsWith("/") || argv.length !== 2) {
      throw new MicroError("usage: micro _remove-tree ABSOLUTE-PATH (internal)");
    }
    checkStoreTree(path);
    const { openLibc } = await import("../sys/libc.ts");
    const sys = openLibc();
    if ((Deno.uid() ?? 0) !== 0) {
      const { rootlessIdMap } = await import("../idmap.ts");
      const maps = rootlessIdMap(sys);
      if (!("reason" in maps)) {
        const r = await runInUserns(sys, maps, [...microExe(), "_remove-tree", path], keptEnv());
        if (r.exitCode !== 0) Deno.stderr.writeSync(r.stdout);
        return r.exitCode === 0 ? 0 : 125;
      }
    }
    // Here (root of the namespace, or nothing to map) a refusal is final: no asking again.
    const { removeTree } = await import("../store/tmp.ts");
    const why = await removeTree(path, false);
    if (why) throw new MicroError(`_remove-tree ${path}: ${why}`);
    return 0;
  } catch (e) {
    const line = e instanceof MicroError ? e.line() : `remove ${path}: ${(e as Error).message}`;
    console.log(`micro: ${line}`);
    return 125;
  }
}

/**
 * Only what micro removes this way: `ROOT/tmp/NAME` (partial layers, detached layers) and
 * `ROOT/containers/[.rm-]ID`, in a store the caller owns, reached without a symlink.
 */
function checkStoreTree(path: string): void {
  const m = /^(\/.+)\/(?:tmp\/[^/]+|containers\/(?:\.rm-)?[0-9a-f]{64})$/.exec(path);
  const refuse = (why: string) =>
    new MicroError(`_remove-tree ${path}: ${why}`, {
      hint: "an internal command: it removes only micro's own store trees",
    });
  if (!m || path.split("/").some((c) => c === "." || c === "..")) {
    throw refuse("not a container or temporary tree of a store");
  }
  const uid = Deno.uid() ?? 0;
  for (const dir of [m[1], path.slice(0, path.lastIndexOf("/")), path]) {
    let st: Deno.FileInfo;
    try {
      st = Deno.lstatSync(dir);
    } catch (e) {
      if (dir === path && e instanceof Deno.errors.NotFound) return;
      throw refuse(`${dir}: ${(e as Error).message}`);
    }
    if (!st.isDirectory) throw refuse(`${dir} is not a directory (a symlink?)`);
    if (dir !== path && st.uid !== uid) throw refuse(`${dir} is not yours`);
  }
}
