/**
 * The setuid id-map helpers (newuidmap, newgidmap) run on a waiting child: a rootless run's
 * maps, loaded only by one (a module a run loads costs it in proportion to its size: core/v8.ts).
 */
import { MicroError } from "../errors.ts";
import type { Op } from "../ops.ts";
import { signalName } from "../signals.ts";
import { C, cstr, cstrArray, type Sys } from "../sys/mod.ts";

const DEV_NULL = cstr("/dev/null");

/**
 * Runs a setuid id-map helper (newuidmap, newgidmap) on the waiting child, with an empty
 * environment but for the C locale; a failure is one line naming the helper, its exit status
 * and what it printed. Spawned through `sys.spawn` (posix_spawn): the child waits meanwhile,
 * and Deno.Command's first use in a process costs about 10 ms.
 */
export async function runIdmapHelper(
  o: Op & { kind: "idmap-helper" },
  pid: number,
  sys: Sys,
): Promise<void> {
  const { helper, map, args } = o.args;
  const argv = [helper, String(pid), ...args.split(" ")];
  const name = helper.slice(helper.lastIndexOf("/") + 1);
  const fail = (message: string, errno?: number) =>
    new MicroError(message, {
      phase: "attach",
      plugin: o.plugin,
      op: name,
      paths: { pid: String(pid), [map]: JSON.stringify(args) },
      errno,
      hint: errno === undefined
        ? `check your ranges in /etc/sub${map === "uid_map" ? "uid" : "gid"} and that ${helper} ` +
          "is setuid root (or has file capabilities)"
        : `install newuidmap and newgidmap (Debian: uidmap)`,
    });
  const err = new Int32Array(2);
  let rc = sys.pipe2(err, C.O_CLOEXEC);
  if (rc < 0) throw fail(`cannot run ${helper}: pipe2`, -rc);
  const devNull = sys.open(DEV_NULL, C.O_RDWR | C.O_CLOEXEC, 0);
  const child = devNull < 0
    ? devNull
    : sys.spawn(cstr(helper), cstrArray(argv), cstrArray(["LC_ALL=C"]), [devNull, devNull, err[1]]);
  if (devNull >= 0) sys.close(devNull);
  sys.close(err[1]);
  if (child < 0) {
    sys.close(err[0]);
    throw fail(`cannot run ${helper}`, -child);
  }
  // What it says on stderr (the first 4 KiB), until it ends.
  const said = new Uint8Array(4096);
  const chunk = new Uint8Array(4096);
  let size = 0;
  try {
    for (;;) {
      const n = await sys.readAsync(err[0], chunk, chunk.length);
      if (n <= 0) break;
      const keep = Math.min(n, said.length - size);
      said.set(chunk.subarray(0, keep), size);
      size += keep;
    }
  } finally {
    sys.close(err[0]);
  }
  const { pid: got, status } = await sys.waitpid(child);
  rc = got < 0 ? 1 << 8 : status;
  if (rc === 0) return;
  const text = new TextDecoder().decode(said.subarray(0, size)).trim()
    .split("\n").map((l) => l.trim()).filter((l) => l).join("; ");
  const sig = rc & 0x7f;
  const how = sig ? `killed by ${signalName(sig)}` : `exit status ${(rc >> 8) & 0xff}`;
  throw fail(text ? `${how}: ${text}` : how);
}
