/**
 * `micro volume ls|rm`: the named volumes runs made (`-v NAME:PATH`, `--mount
 * type=volume,source=NAME`), each `ROOT/volumes/NAME/_data` as Docker keeps them. A run
 * holds a shared lock on `ROOT/volumes/NAME/lock` while it lives, so `rm` refuses a volume
 * a running container uses. Anonymous volumes live in their container's directory and go
 * with it (`--rm`, `micro rm`).
 */
import { MicroError } from "../core/errors.ts";
import { VOLUME_NAME } from "../core/mounts.ts";
import { removeTreeAsOwner } from "../core/store/rmtree.ts";

const USAGE = "usage: micro volume ls [-q] [--root DIR] | micro volume rm NAME... [--root DIR]";

function parse(argv: string[]): { verb: string; quiet: boolean; names: string[]; root: string } {
  const names: string[] = [];
  let quiet = false;
  let root: string | undefined;
  const verb = argv[1] ?? "";
  for (let i = 2; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--root" || a.startsWith("--root=")) {
      root = a === "--root" ? argv[++i] : a.slice(7);
      if (!root) throw new MicroError(`option "--root" needs a directory`, { hint: USAGE });
      if (!root.startsWith("/")) root = `${Deno.cwd()}/${root}`;
    } else if (a === "-q" || a === "--quiet") quiet = true;
    else if (a.startsWith("-")) throw new MicroError(`unknown option "${a}"`, { hint: USAGE });
    else names.push(a);
  }
  return { verb, quiet, names, root: root ?? "" };
}

/** The names of the volumes in `dir` (those with their `_data`), sorted. */
function volumes(dir: string): string[] {
  const out: string[] = [];
  try {
    for (const e of Deno.readDirSync(dir)) {
      if (!e.isDirectory || !VOLUME_NAME.test(e.name)) continue;
      try {
        if (Deno.lstatSync(`${dir}/${e.name}/_data`).isDirectory) out.push(e.name);
      } catch { /* not a volume */ }
    }
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) {
      throw new MicroError(`read ${dir}: ${(e as Error).message.split("\n")[0]}`);
    }
  }
  return out.sort();
}

export async function volume(argv: string[]): Promise<number> {
  const p = parse(argv);
  if (p.verb === "--help" || p.verb === "-h" || p.verb === "help") {
    console.log(USAGE);
    return 0;
  }
  const { storeRoot } = await import("../core/store/paths.ts");
  const dir = `${p.root || storeRoot(Deno.uid() ?? 0)}/volumes`;
  if (p.verb === "ls" || p.verb === "list") {
    if (p.names.length) throw new MicroError("micro volume ls takes no names", { hint: USAGE });
    const names = volumes(dir);
    if (!p.quiet) console.log("DRIVER    VOLUME NAME");
    for (const n of names) console.log(p.quiet ? n : `local     ${n}`);
    return 0;
  }
  if (p.verb !== "rm" && p.verb !== "remove") {
    throw new MicroError(`unknown volume command "${p.verb}"`, { hint: USAGE });
  }
  if (!p.names.length) throw new MicroError("micro volume rm needs a volume name", { hint: USAGE });
  const { lockFile } = await import("../core/store/lock.ts");
  let failed = 0;
  for (const name of p.names) {
    const vol = `${dir}/${name}`;
    try {
      if (!VOLUME_NAME.test(name) || !volumes(dir).includes(name)) {
        throw new MicroError(`volume "${name}" does not exist in ${dir}`, {
          hint: "see micro volume ls",
        });
      }
      const lock = await lockFile(`${vol}/lock`, true, false);
      if (!lock) {
        throw new MicroError(`volume "${name}" is in use by a running container`, {
          hint: "stop the container that uses it, then remove the volume",
        });
      }
      try {
        removeVolume(vol);
      } finally {
        lock.release();
      }
      console.log(name);
    } catch (e) {
      if (!(e instanceof MicroError)) throw e;
      console.error(`micro: ${e.line()}`);
      failed++;
    }
  }
  return failed ? 125 : 0;
}

/** The volume's directory; a rootless store's may hold subordinate-id files. */
function removeVolume(vol: string): void {
  try {
    Deno.removeSync(vol, { recursive: true });
    return;
  } catch (e) {
    if (!(e instanceof Deno.errors.PermissionDenied) || (Deno.uid() ?? 0) === 0) {
      throw new MicroError(`remove ${vol}: ${(e as Error).message.split("\n")[0]}`);
    }
  }
  const why = removeTreeAsOwner(vol);
  if (why) throw new MicroError(`remove ${vol}: ${why}`);
}
