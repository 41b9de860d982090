/**
 * ROOT/tmp: work in progress. Layers are unpacked in `layer-<hex>-<random>` while their
 * lock `layer-<hex>.lock` is held, and layers being deleted are first renamed to
 * `rm-<random>`, so a half layer is never under ROOT/layers. Whatever a killed command
 * left here is removed by the next one that finds it unlocked. Blob partials (`*.partial`)
 * belong to the blob store: a later pull resumes them; `image prune` removes them.
 */
import { lockFile } from "./lock.ts";
import { removeTreeAsOwner } from "./rmtree.ts";

export function tmpDir(root: string): string {
  return `${root}/tmp`;
}

/** 16 random hex digits, for names in ROOT/tmp. */
export function randomName(): string {
  const b = crypto.getRandomValues(new Uint8Array(8));
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

/** The lock file that guards the unpacking of one layer. */
export function layerLockPath(root: string, hex: string): string {
  return `${tmpDir(root)}/layer-${hex}.lock`;
}

/**
 * Removes a directory tree, also one whose directories lost their write or search bits (a
 * partial layer; rootless, the owner must give them back first). Missing is fine; returns
 * the error message when something stays. `asOwner`: a rootless caller refused at the end
 * asks `micro _remove-tree` (which itself calls this without it).
 */
export async function removeTree(path: string, asOwner = true): Promise<string | undefined> {
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      await Deno.remove(path, { recursive: true });
      return undefined;
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) return undefined;
      if (attempt === 2) {
        // Rootless with a range: a layer holding files of the caller's subordinate ids.
        const denied = asOwner && e instanceof Deno.errors.PermissionDenied &&
          (Deno.uid() ?? 0) !== 0;
        return denied ? removeTreeAsOwner(path) : (e as Error).message;
      }
      if (e instanceof Deno.errors.PermissionDenied) await openUp(path);
    }
  }
  return undefined;
}

/** chmod u+rwx on every directory below `path` (never following a link). */
async function openUp(path: string): Promise<void> {
  let st: Deno.FileInfo;
  try {
    st = await Deno.lstat(path);
  } catch {
    return;
  }
  if (!st.isDirectory) return;
  try {
    await Deno.chmod(path, ((st.mode ?? 0) & 0o7777) | 0o700);
  } catch { /* not ours */ }
  try {
    for await (const e of Deno.readDir(path)) {
      if (e.isDirectory) await openUp(`${path}/${e.name}`);
    }
  } catch { /* unreadable */ }
}

const LAYER_DIR = /^layer-([0-9a-f]{64})-[0-9a-f]{16}$/;
const LAYER_LOCK = /^layer-([0-9a-f]{64})\.lock$/;
const DOOMED = /^rm-[0-9a-f]{16}$/;

/**
 * Removes what killed commands left in ROOT/tmp: partial layers whose lock nobody holds,
 * their lock files, and layers that were being deleted. Safe while other commands run.
 * Returns how many entries went.
 */
export async function cleanTmp(root: string): Promise<number> {
  const dir = tmpDir(root);
  let names: string[];
  try {
    names = (await Array.fromAsync(Deno.readDir(dir))).map((e) => e.name);
  } catch {
    return 0;
  }
  let removed = 0;
  for (const name of names) {
    const path = `${dir}/${name}`;
    if (DOOMED.test(name)) {
      if ((await removeTree(path)) === undefined) removed++;
      continue;
    }
    const m = LAYER_DIR.exec(name) ?? LAYER_LOCK.exec(name);
    if (!m) continue;
    const lock = await lockFile(layerLockPath(root, m[1]), true, false);
    if (!lock) continue; // a command is unpacking that layer now
    try {
      if (LAYER_DIR.test(name) && (await removeTree(path)) === undefined) removed++;
    } finally {
      lock.removeAndRelease();
    }
  }
  return removed;
}
