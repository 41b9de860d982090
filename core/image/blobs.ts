/**
 * The content-addressed blob store: ROOT/blobs/<alg>/<hex> holds manifests, configs and
 * compressed layers, each under the digest of its bytes.
 *
 * A blob is written to ROOT/tmp/<alg>-<hex>.partial, checked against its digest (and size
 * when known) and only then renamed into blobs/, so a blob that is visible is whole and
 * verified, whatever was killed when. The partial file is also the lock: a writer holds an
 * exclusive flock on it for the whole write, so two processes (or two pulls in one process)
 * fetching one blob do the work once and both succeed. A partial left by a killed writer is
 * unlocked, so the next writer takes it over and resumes after its bytes (which it hashes
 * first), or starts over when they turn out wrong.
 */
import type { Hash } from "node:crypto";
import { createHash } from "./_crypto.ts";
import { MicroError } from "../errors.ts";
import { parseDigest } from "./reference.ts";

/** What a writer sees while it fills a blob. */
export interface BlobWriter {
  /** Bytes already in the partial file: resume the download from here. */
  readonly offset: number;
  /** Appends bytes (they are hashed as they go). */
  write(chunk: Uint8Array): Promise<void>;
  /** Drops everything written so far (the server ignored a Range request). */
  reset(): Promise<void>;
}

/** How `ingest` ended: the blob was there already (or written by another), or written now. */
export type IngestResult = "exists" | "written";

export interface IngestOptions {
  /** The size the blob must have (from a descriptor); more bytes are refused as they come. */
  size?: number;
  /** Called once the partial's lock is held: the pull shows "waiting" until then. */
  onLocked?: (offset: number) => void;
}

/** A blob longer than its descriptor says: refused as the bytes arrive. */
export class BlobTooLarge extends MicroError {
  constructor(readonly digest: string, readonly size: number) {
    super(`blob ${digest}: more than the ${size} bytes its descriptor announces`, {
      hint: "the registry sent a different blob; nothing was stored",
    });
  }
}

/** The bytes hash to another digest; `resumed` when part of them came from an old partial. */
export class DigestMismatch extends MicroError {
  resumed = false;
  constructor(readonly digest: string, readonly actual: string, readonly size: number) {
    super(`blob ${digest}: digest mismatch: the ${size} bytes received hash to ${actual}`, {
      hint: "the registry or something between sent corrupt data; try again",
    });
  }
}

const PARTIAL = ".partial";

function fsError(op: string, path: string, e: unknown): MicroError {
  const code = (e as { code?: string }).code ?? String(e).split("\n")[0];
  return new MicroError(`${op} ${path}: ${code}`, { phase: "image store" });
}

async function mkdirs(path: string): Promise<void> {
  try {
    await Deno.mkdir(path, { recursive: true, mode: 0o700 });
  } catch (e) {
    throw fsError("mkdir", path, e);
  }
}

/** fsync a directory so a rename in it survives a crash (best effort where unsupported). */
async function syncDir(path: string): Promise<void> {
  try {
    using d = await Deno.open(path, { read: true });
    await d.syncData();
  } catch {
    // some file systems refuse fsync on a directory: the rename is still atomic
  }
}

export class BlobStore {
  readonly blobsDir: string;
  readonly tmpDir: string;

  /** `root` is the store's ROOT (/var/lib/micro, or the rootless one). */
  constructor(readonly root: string) {
    this.blobsDir = `${root}/blobs`;
    this.tmpDir = `${root}/tmp`;
  }

  /** Where a blob lives (whether or not it is there). Checks the digest's form. */
  path(digest: string): string {
    const { algorithm, hex } = parseDigest(digest, "blob digest");
    return `${this.blobsDir}/${algorithm}/${hex}`;
  }

  private partialPath(digest: string): string {
    const { algorithm, hex } = parseDigest(digest, "blob digest");
    return `${this.tmpDir}/${algorithm}-${hex}${PARTIAL}`;
  }

  /** Whether the blob is in the store (only verified blobs ever are). */
  async has(digest: string): Promise<boolean> {
    try {
      return (await Deno.lstat(this.path(digest))).isFile;
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) return false;
      throw fsError("stat", this.path(digest), e);
    }
  }

  /** The blob's size in bytes, or undefined when it is not in the store. */
  async size(digest: string): Promise<number | undefined> {
    try {
      const st = await Deno.lstat(this.path(digest));
      return st.isFile ? st.size : undefined;
    } catch {
      return undefined;
    }
  }

  /** Opens a blob for reading (a layer to unpack). Not found is a one-line error. */
  async open(digest: string): Promise<Deno.FsFile> {
    const path = this.path(digest);
    try {
      const f = await Deno.open(path, { read: true });
      const st = await f.stat();
      if (!st.isFile) {
        f.close();
        throw new MicroError(`blob ${digest}: not a regular file: ${path}`);
      }
      return f;
    } catch (e) {
      if (e instanceof MicroError) throw e;
      if (e instanceof Deno.errors.NotFound) {
        throw new MicroError(`blob ${digest} is not in the store`, {
          phase: "image store",
          hint: "pull or import the image again",
        });
      }
      throw fsError("open", path, e);
    }
  }

  /**
   * Reads a small blob (manifest, config) whole, refusing one larger than `maxBytes`, and
   * checks it against its digest again (cheap at these sizes).
   */
  async read(digest: string, maxBytes = 8 << 20): Promise<Uint8Array> {
    using f = await this.open(digest);
    const st = await f.stat();
    if (st.size > maxBytes) {
      throw new MicroError(`blob ${digest}: ${st.size} bytes, more than the ${maxBytes} allowed`);
    }
    const buf = new Uint8Array(st.size);
    let n = 0;
    while (n < buf.length) {
      const r = await f.read(buf.subarray(n));
      if (r === null) break;
      n += r;
    }
    const data = buf.subarray(0, n);
    const actual = digestOf(data, parseDigest(digest).algorithm);
    if (actual !== digest) throw new DigestMismatch(digest, actual, n);
    return data;
  }

  /** Reads a JSON blob (see `read`) and parses it. */
  async readJson<T = unknown>(digest: string, maxBytes = 8 << 20): Promise<T> {
    const data = await this.read(digest, maxBytes);
    try {
      return JSON.parse(new TextDecoder().decode(data)) as T;
    } catch (e) {
      throw new MicroError(`blob ${digest}: not valid JSON: ${(e as Error).message}`);
    }
  }

  /** Stores bytes held in memory (a manifest) under their digest, after checking them. */
  async put(digest: string, data: Uint8Array): Promise<IngestResult> {
    const actual = digestOf(data, parseDigest(digest).algorithm);
    if (actual !== digest) throw new DigestMismatch(digest, actual, data.length);
    return await this.ingest(digest, async (w) => {
      await w.reset();
      await w.write(data);
    }, { size: data.length });
  }

  /**
   * Writes a blob through `fill` unless it is in the store already. `fill` appends bytes from
   * `w.offset` on (a partial from a killed writer may be there); it may call `w.reset()` to
   * start over. The result is checked against `digest` and `opts.size` before the rename
   * that makes it visible; on a mismatch nothing stays behind. Concurrent callers for one
   * digest wait for each other and only the first one calls `fill`.
   */
  async ingest(
    digest: string,
    fill: (w: BlobWriter) => Promise<void>,
    opts: IngestOptions = {},
  ): Promise<IngestResult> {
    const { algorithm } = parseDigest(digest, "blob digest");
    const final = this.path(digest);
    const partial = this.partialPath(digest);
    if (await this.has(digest)) return "exists";
    await mkdirs(`${this.blobsDir}/${algorithm}`);
    await mkdirs(this.tmpDir);

    for (;;) {
      let file: Deno.FsFile;
      try {
        file = await Deno.open(partial, { read: true, write: true, create: true, mode: 0o600 });
      } catch (e) {
        throw fsError("open", partial, e);
      }
      try {
        await file.lock(true);
        // The name may have moved on while we waited: renamed into blobs/ by the writer we
        // waited for, or removed after a mismatch. Only the file the name still holds is ours.
        const st = await file.stat();
        let current: Deno.FileInfo | undefined;
        try {
          current = await Deno.lstat(partial);
        } catch {
          current = undefined;
        }
        if (!current || current.ino !== st.ino || current.dev !== st.dev) {
          if (await this.has(digest)) return "exists";
          continue;
        }
        if (await this.has(digest)) {
          await Deno.remove(partial).catch(() => {});
          return "exists";
        }
        return await this.fillLocked(digest, algorithm, file, partial, final, fill, opts);
      } finally {
        file.close(); // releases the lock
      }
    }
  }

  private async fillLocked(
    digest: string,
    algorithm: string,
    file: Deno.FsFile,
    partial: string,
    final: string,
    fill: (w: BlobWriter) => Promise<void>,
    opts: IngestOptions,
  ): Promise<IngestResult> {
    // Resume after what a killed writer left, hashing those bytes first.
    let hash: Hash = createHash(algorithm);
    let offset = 0;
    const buf = new Uint8Array(1 << 20);
    await file.seek(0, Deno.SeekMode.Start);
    for (;;) {
      const n = await file.read(buf);
      if (n === null) break;
      hash.update(buf.subarray(0, n));
      offset += n;
    }
    if (opts.size !== undefined && offset > opts.size) {
      await file.truncate(0);
      hash = createHash(algorithm);
      offset = 0;
    }
    const resumed = offset > 0;
    opts.onLocked?.(offset);

    const writer: BlobWriter = {
      get offset() {
        return offset;
      },
      async write(chunk: Uint8Array) {
        if (opts.size !== undefined && offset + chunk.length > opts.size) {
          throw new BlobTooLarge(digest, opts.size);
        }
        let done = 0;
        while (done < chunk.length) done += await file.write(chunk.subarray(done));
        hash.update(chunk);
        offset += chunk.length;
      },
      async reset() {
        await file.truncate(0);
        await file.seek(0, Deno.SeekMode.Start);
        hash = createHash(algorithm);
        offset = 0;
      },
    };

    try {
      await fill(writer);
    } catch (e) {
      // The bytes so far stay in the partial for the next try; a refused blob does not.
      if (e instanceof BlobTooLarge) {
        await Deno.remove(partial).catch(() => {});
      }
      throw e;
    }
    const actual = `${algorithm}:${hash.digest("hex")}`;
    if (actual !== digest || (opts.size !== undefined && offset !== opts.size)) {
      await Deno.remove(partial).catch(() => {});
      if (actual !== digest) {
        const err = new DigestMismatch(digest, actual, offset);
        err.resumed = resumed;
        throw err;
      }
      throw new MicroError(
        `blob ${digest}: ${offset} bytes received, its descriptor announces ${opts.size}`,
      );
    }
    try {
      await file.syncData();
      await Deno.rename(partial, final);
    } catch (e) {
      throw fsError("rename", `${partial} to ${final}`, e);
    }
    await syncDir(`${this.blobsDir}/${algorithm}`);
    return "written";
  }

  /**
   * Removes partial files no writer holds (left by killed writers). Safe while other pulls
   * run: a partial that is locked is in use and stays.
   */
  async cleanPartials(): Promise<number> {
    let removed = 0;
    let entries: Deno.DirEntry[];
    try {
      entries = await Array.fromAsync(Deno.readDir(this.tmpDir));
    } catch {
      return 0;
    }
    for (const e of entries) {
      if (!e.isFile || !e.name.endsWith(PARTIAL)) continue;
      const p = `${this.tmpDir}/${e.name}`;
      let f: Deno.FsFile;
      try {
        f = await Deno.open(p, { read: true });
      } catch {
        continue;
      }
      try {
        if (await f.tryLock(true)) {
          const st = await f.stat();
          const cur = await Deno.lstat(p).catch(() => undefined);
          if (cur && cur.ino === st.ino) {
            await Deno.remove(p).catch(() => {});
            removed++;
          }
        }
      } finally {
        f.close();
      }
    }
    return removed;
  }
}

/** `<alg>:<hex>` of bytes in memory. */
export function digestOf(data: Uint8Array, algorithm = "sha256"): string {
  return `${algorithm}:${createHash(algorithm).update(data).digest("hex")}`;
}
