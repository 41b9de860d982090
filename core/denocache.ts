/**
 * Deno's own caches (the V8 code cache and the module analysis caches, `$DENO_DIR/*_v2`) are
 * SQLite databases in write-ahead-log mode, and a Deno process never closes them: nothing
 * folds the log back into the database, so every later start reads each cached module page by
 * page out of the log (`pread` into SQLite's page cache: about 1,350 calls a `micro run`, and
 * 1 MB of malloc'd pages that the attached parent keeps while its container runs), where out
 * of the database file SQLite maps it (Deno sets `mmap_size`). micro folds them in at the end
 * of a command that finds a log non-empty: after the first use of each command, once.
 * Measured in bench/README.md (thirteenth session).
 */

/** The databases in `$DENO_DIR` (Deno 2.9's names). */
export const CACHE_DBS = ["v8_code_cache_v2", "dep_analysis_cache_v2", "node_analysis_cache_v2"];

/**
 * The databases in DENO_DIR (as the launcher sets it) whose log holds pages, as paths: none
 * when it is unset (under `deno run main.ts` nothing is micro's to fold). One stat each.
 */
export function cachesToFold(): string[] {
  const dir = Deno.env.get("DENO_DIR");
  if (!dir) return [];
  return CACHE_DBS.map((db) => `${dir}/${db}`).filter((path) => logSize(`${path}-wal`) > 0);
}

/** A log's size, 0 when there is none (no log: nothing to fold). */
let logSize = (path: string): number => {
  try {
    return Deno.statSync(path).size;
  } catch {
    return 0;
  }
};

/**
 * How cachesToFold looks at a log from now on: a command that bound libc (a run) passes a
 * stat through it, so that no Deno stat is the process's first (0.8 ms, core/files.ts).
 */
export function statLogsWith(size: (path: string) => number): void {
  logSize = size;
}

/**
 * Folds each database's log into it and empties the log (`wal_checkpoint(TRUNCATE)`),
 * waiting for no one (busy timeout 0): where another micro reads that cache the log cannot
 * be emptied yet, and a later command does it. Best effort and silent: a cache that cannot
 * be opened (read-only, damaged) costs speed only, and Deno reports its own problems with
 * it. No database is created.
 */
export async function foldCaches(paths: string[]): Promise<void> {
  let sqlite: typeof import("node:sqlite");
  try {
    sqlite = await import("node:sqlite");
  } catch {
    return;
  }
  for (const path of paths) {
    let db: InstanceType<typeof sqlite.DatabaseSync> | null = null;
    try {
      // mode=rw: a database removed since (or a log without one) is not made anew.
      const url = new URL("file:///");
      url.pathname = path.replaceAll("%", "%25"); // SQLite decodes %HH in a file: URI
      url.search = "?mode=rw";
      db = new sqlite.DatabaseSync(url, { timeout: 0 });
      // Busy (another connection reads an older snapshot): what it can is copied, the log
      // stays, and a later command empties it. Nothing else to do here either way.
      db.exec("PRAGMA wal_checkpoint(TRUNCATE)");
    } catch {
      /* unreadable: left as it is */
    } finally {
      try {
        db?.close();
      } catch { /* closed */ }
    }
  }
}
