/**
 * flock(2) files for the store. A lock file may be unlinked by the holder that finished
 * the work it guards (a layer unpacked), so a waiter that wakes up holding a lock on an
 * unlinked file drops it and opens the name again: only the file the name still holds
 * counts.
 */
import { MicroError } from "../errors.ts";

export interface HeldLock {
  readonly path: string;
  /** Releases the lock (closing the file). Idempotent. */
  release(): void;
  /** Unlinks the lock file while still holding it, then releases it. */
  removeAndRelease(): void;
}

function storeError(op: string, path: string, e: unknown): MicroError {
  const code = (e as { code?: string }).code ?? String(e).split("\n")[0];
  return new MicroError(`${op} ${path}: ${code}`, { phase: "image store" });
}

async function sameFile(f: Deno.FsFile, path: string): Promise<boolean> {
  try {
    const a = await f.stat();
    const b = await Deno.lstat(path);
    return a.ino === b.ino && a.dev === b.dev;
  } catch {
    return false;
  }
}

function held(f: Deno.FsFile, path: string): HeldLock {
  let open = true;
  const release = () => {
    if (!open) return;
    open = false;
    try {
      f.close();
    } catch { /* closed */ }
  };
  return {
    path,
    release,
    removeAndRelease() {
      if (!open) return;
      try {
        Deno.removeSync(path);
      } catch { /* gone */ }
      release();
    },
  };
}

/**
 * Takes `path` (created 0600 when missing) shared or exclusive; `wait: false` returns null
 * instead of waiting for another holder.
 */
export async function lockFile(
  path: string,
  exclusive: boolean,
  wait = true,
): Promise<HeldLock | null> {
  for (let i = 0; i < 1000; i++) {
    let f: Deno.FsFile;
    try {
      f = await Deno.open(path, { read: true, write: true, create: true, mode: 0o600 });
    } catch (e) {
      throw storeError("open", path, e);
    }
    let got: boolean;
    try {
      if (wait) {
        await f.lock(exclusive);
        got = true;
      } else {
        got = await f.tryLock(exclusive);
      }
    } catch (e) {
      f.close();
      throw storeError("flock", path, e);
    }
    if (!got) {
      f.close();
      return null;
    }
    if (await sameFile(f, path)) return held(f, path);
    f.close(); // unlinked (or replaced) while we waited: take the name again
  }
  throw new MicroError(`flock ${path}: kept being replaced`, { phase: "image store" });
}

/**
 * `lockFile` without leaving the thread: for a run on its way to the clone, where it only
 * ever waits for a removal's short critical section.
 */
export function lockFileSync(path: string, exclusive: boolean): HeldLock {
  for (let i = 0; i < 1000; i++) {
    let f: Deno.FsFile;
    try {
      f = Deno.openSync(path, { read: true, write: true, create: true, mode: 0o600 });
    } catch (e) {
      throw storeError("open", path, e);
    }
    try {
      f.lockSync(exclusive);
    } catch (e) {
      f.close();
      throw storeError("flock", path, e);
    }
    let same = false;
    try {
      const a = f.statSync();
      const b = Deno.lstatSync(path);
      same = a.ino === b.ino && a.dev === b.dev;
    } catch { /* unlinked */ }
    if (same) return held(f, path);
    f.close();
  }
  throw new MicroError(`flock ${path}: kept being replaced`, { phase: "image store" });
}
