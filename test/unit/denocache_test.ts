/**
 * Deno's cache databases: a write-ahead log that holds pages is folded into its database
 * (core/denocache.ts), without waiting for another process that uses it.
 */
import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { CACHE_DBS, cachesToFold, foldCaches } from "../../core/denocache.ts";

/**
 * A DENO_DIR with the code cache database in WAL mode and rows in its log, as a Deno
 * process leaves it: `writer` stays open (its close would fold the log itself).
 */
function withCacheDir(fn: (dir: string, writer: DatabaseSync) => Promise<void>) {
  return async () => {
    const dir = Deno.makeTempDirSync({ prefix: "micro-denocache-" });
    const before = Deno.env.get("DENO_DIR");
    const writer = new DatabaseSync(`${dir}/${CACHE_DBS[0]}`);
    try {
      writer.exec("PRAGMA journal_mode=WAL");
      writer.exec("PRAGMA wal_autocheckpoint=0");
      writer.exec("CREATE TABLE codecache (k TEXT PRIMARY KEY, v BLOB)");
      const put = writer.prepare("INSERT INTO codecache VALUES (?, ?)");
      for (let i = 0; i < 50; i++) put.run(`m${i}`, new Uint8Array(8192).fill(i));
      Deno.env.set("DENO_DIR", dir);
      await fn(dir, writer);
    } finally {
      writer.close();
      if (before === undefined) Deno.env.delete("DENO_DIR");
      else Deno.env.set("DENO_DIR", before);
      Deno.removeSync(dir, { recursive: true });
    }
  };
}

const walSize = (dir: string) => Deno.statSync(`${dir}/${CACHE_DBS[0]}-wal`).size;

Deno.test(
  "denocache: a log holding pages is folded into its database and emptied; then none is left",
  withCacheDir(async (dir, writer) => {
    assert.ok(walSize(dir) > 400_000, "the rows are in the log");
    assert.deepEqual(cachesToFold(), [`${dir}/${CACHE_DBS[0]}`]);
    await foldCaches(cachesToFold());
    assert.equal(walSize(dir), 0);
    assert.deepEqual(cachesToFold(), []);
    // The rows are in the database itself, for the writer and for a new reader alike.
    const count = "SELECT count(*) AS n FROM codecache";
    assert.equal(writer.prepare(count).get()?.n, 50);
    const reader = new DatabaseSync(`${dir}/${CACHE_DBS[0]}`, { readOnly: true });
    try {
      assert.equal(reader.prepare(count).get()?.n, 50);
    } finally {
      reader.close();
    }
    // The databases that were never made are not made.
    for (const db of CACHE_DBS.slice(1)) assert.throws(() => Deno.statSync(`${dir}/${db}`));
  }),
);

Deno.test(
  "denocache: a database another process is reading is not waited for; its log stays for later",
  withCacheDir(async (dir) => {
    // A reader in a read transaction of its own, in another process, until its stdin ends.
    const script = `${dir}/reader.ts`;
    Deno.writeTextFileSync(
      script,
      `import { DatabaseSync } from "node:sqlite";
       const db = new DatabaseSync(Deno.args[0]);
       db.exec("BEGIN");
       db.prepare("SELECT count(*) FROM codecache").get();
       console.log("reading");
       await Deno.stdin.readable.pipeTo(new WritableStream());
       db.exec("COMMIT");`,
    );
    const reader = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "--no-config", script, `${dir}/${CACHE_DBS[0]}`],
      stdin: "piped",
      stdout: "piped",
    }).spawn();
    const out = reader.stdout.getReader();
    try {
      const { value } = await out.read();
      assert.match(new TextDecoder().decode(value), /reading/);
      const t = performance.now();
      await foldCaches(cachesToFold());
      // SQLite's busy handler sleeps and retries for as long as a timeout allows.
      assert.ok(performance.now() - t < 500, "waited for the reader");
      assert.ok(walSize(dir) > 0, "the log was emptied under a reader");
      assert.equal(cachesToFold().length, 1, "not left for a later command");
    } finally {
      await reader.stdin.close();
      out.releaseLock();
      await reader.stdout.cancel();
      await reader.status;
    }
    // The reader gone, the next fold empties it.
    await foldCaches(cachesToFold());
    assert.equal(walSize(dir), 0);
  }),
);

Deno.test(
  "denocache: a log whose database is gone does not make a database",
  withCacheDir(async (dir) => {
    const lonely = `${dir}/${CACHE_DBS[1]}`;
    Deno.writeFileSync(`${lonely}-wal`, new Uint8Array(4096).fill(1));
    assert.ok(cachesToFold().includes(lonely));
    await foldCaches([lonely]);
    assert.throws(() => Deno.statSync(lonely), Deno.errors.NotFound);
  }),
);

Deno.test("denocache: without DENO_DIR (deno run main.ts) there is nothing to fold", () => {
  const before = Deno.env.get("DENO_DIR");
  Deno.env.delete("DENO_DIR");
  try {
    assert.deepEqual(cachesToFold(), []);
  } finally {
    if (before !== undefined) Deno.env.set("DENO_DIR", before);
  }
});
