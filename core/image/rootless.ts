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

export interface UsernsUnpackOptions {
  /** The layer's media type (see unpackLayer). */
  mediaType?: string;
  /** The command that runs micro (argv prefix); by default this Deno on its main module. */
  exe?: string[];
}

/** Environment the program keeps: what the launcher and Deno need to find their files. */
const KEEP_ENV = ["HOME", "PATH", "TMPDIR", "XDG_CACHE_HOME", "MICRO_CACHE_DIR", "DENO_DIR"];

/**
 * This very Deno on this very main module (the launcher's extracted runtime and bundle, or
 * main.ts in a checkout). Not the launcher itself: inside the namespace the host's root
 * is unmapped (nobody), so its checks of who owns the cache directory's parents fail.
 */
function defaultExe(): string[] {
  const main = new URL(Deno.mainModule);
  return [
    Deno.execPath(),
    "run",
    "-A",
    "--v8-flags=--single-threaded",
    "--no-prompt",
    "--quiet",
    main.protocol === "file:" ? decodeURIComponent(main.pathname) : main.href,
  ];
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
  const exe = opts.exe ?? defaultExe();
  const request = JSON.stringify({ blob, dest, mediaType: opts.mediaType });
  const env = KEEP_ENV.flatMap((k) => {
    const v = Deno.env.get(k);
    return v === undefined ? [] : [`${k}=${v}`];
  });
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
