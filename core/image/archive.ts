/**
 * `readImageSource`: the images in an OCI image layout directory, an OCI archive (a tar of a
 * layout, as `skopeo copy ... oci-archive:` and `podman save --format oci-archive` write it)
 * or a `docker save` tarball, each blob verified against its digest into the BlobStore.
 *
 * Hostile input is expected. A layout directory is read through an fd: every file beneath
 * it with openat2 (no symlink followed, nothing outside), checked to be a regular file, the
 * JSON ones read with a size cap. An archive is read once, as a stream: its names are only
 * names, never host paths. Blobs under `blobs/<alg>/<hex>` go straight into the store,
 * checked against the digest their name claims; the other files of a `docker save` tarball
 * are hashed into a private directory this run makes in ROOT/tmp (under names of its own),
 * and enter the store through it once `manifest.json` says what they are.
 */
import { createHash } from "./_crypto.ts";
import { MicroError } from "../errors.ts";
import { C, cstr, type Sys } from "../sys/mod.ts";
import { type BlobStore, DigestMismatch } from "./blobs.ts";
import { decompress } from "./decompress.ts";
import { hostPlatform, parsePlatform, type Platform } from "./platform.ts";
import { parseDigest } from "./reference.ts";
import type { Descriptor } from "./registry.ts";
import { displayName, type TarEntry, TarReader } from "./tar.ts";
import {
  chunksOf,
  importError,
  type OpenFile,
  openRegularBeneath,
  readCapped,
  reopenRegular,
} from "./_fd.ts";
import { type BlobSource, type ImportedImage, INDEX_MAX, resolveIndex } from "./_resolve.ts";
import { type ArchiveFile, convertDockerArchive, DOCKER_MANIFEST_MAX } from "./_docker.ts";

export type { ImportedImage } from "./_resolve.ts";

export interface ImportOptions {
  sys: Sys;
  /** `linux/arm64`: the manifest to take from an index; default the host's. */
  platform?: string;
  /** One line each: names not used, media types that disagree with the bytes. */
  warn?: (m: string) => void;
}

const OCI_LAYOUT_MAX = 64 << 10;
const REPOSITORIES_MAX = 1 << 20;
/** Entries of an archive: far more than an image archive has, few enough to track. */
const MAX_ENTRIES = 1 << 16;
const ENOENT = 2;

/**
 * Reads the images in `path` (a layout directory, an OCI archive or a `docker save`
 * tarball, plain, gzip or zstd) into `blobs`. Resolves with one entry per image (the names
 * the source gives it, if any) once every blob it names is in the store, verified.
 */
export async function readImageSource(
  path: string,
  blobs: BlobStore,
  opts: ImportOptions,
): Promise<ImportedImage[]> {
  const { sys } = opts;
  const platform = opts.platform ? parsePlatform(opts.platform) : hostPlatform();
  const warn = opts.warn ?? (() => {});
  const p = sys.open(cstr(path), C.O_PATH | C.O_CLOEXEC, 0);
  if (p === -ENOENT) {
    throw importError(
      `${path}: no such file or directory`,
      "name an OCI layout directory, " +
        "an OCI archive or a docker save tarball",
    );
  }
  if (p < 0) throw importError("", undefined, { op: "open", paths: { source: path }, errno: -p });
  try {
    const st = { mode: 0, size: 0, uid: 0, gid: 0 };
    const rc = sys.fstat(p, st);
    if (rc < 0) {
      throw importError("", undefined, { op: "fstat", paths: { source: path }, errno: -rc });
    }
    if ((st.mode & C.S_IFMT) === C.S_IFDIR) {
      return await readLayout(sys, p, path, blobs, platform, warn);
    }
    const f = reopenRegular(sys, p, path);
    try {
      return await readArchive(sys, f, path, blobs, platform, warn);
    } finally {
      sys.close(f.fd);
    }
  } finally {
    sys.close(p);
  }
}

// ---- Layout directory ---------------------------------------------------------------------

function blobName(digest: string): string {
  const { algorithm, hex } = parseDigest(digest, "blob digest");
  return `blobs/${algorithm}/${hex}`;
}

function missingBlob(where: string, what: string, digest: string): MicroError {
  return importError(
    `${what}: missing blob: ${where} has no ${blobName(digest)}`,
    "the layout or archive is incomplete; save or export it again",
  );
}

function mismatch(what: string, e: DigestMismatch): MicroError {
  return importError(
    `${what}: digest mismatch: its ${e.size} bytes hash to ${e.actual}`,
    "the layout or archive is corrupt; nothing of it was stored",
  );
}

function checkOciLayout(bytes: Uint8Array, where: string): void {
  let j: { imageLayoutVersion?: unknown } | null = null;
  try {
    j = JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    // reported below
  }
  if (typeof j?.imageLayoutVersion !== "string") {
    throw importError(`${where}: oci-layout: not an OCI layout file (no imageLayoutVersion)`);
  }
  if (!j.imageLayoutVersion.startsWith("1.")) {
    throw importError(
      `${where}: oci-layout: unsupported layout version ${
        JSON.stringify(j.imageLayoutVersion)
      } (micro reads 1.x)`,
    );
  }
}

/** A small file of the layout, whole, through `dirfd`; null when it is not there. */
function layoutFile(sys: Sys, dirfd: number, where: string, name: string, max: number) {
  const f = openRegularBeneath(sys, dirfd, name, where);
  if (!f) return null;
  try {
    return readCapped(sys, f, max, `${where}/${name}`);
  } finally {
    sys.close(f.fd);
  }
}

async function readLayout(
  sys: Sys,
  dirfd: number,
  where: string,
  blobs: BlobStore,
  platform: Platform,
  warn: (m: string) => void,
): Promise<ImportedImage[]> {
  const layout = layoutFile(sys, dirfd, where, "oci-layout", OCI_LAYOUT_MAX);
  if (!layout) {
    throw importError(
      `${where}: not an OCI image layout: no oci-layout file`,
      "name an OCI layout directory, an OCI archive or a docker save tarball",
    );
  }
  checkOciLayout(layout, where);
  const index = layoutFile(sys, dirfd, where, "index.json", INDEX_MAX);
  if (!index) throw importError(`${where}: not an OCI image layout: no index.json`);

  const open = (d: Descriptor, what: string): OpenFile => {
    const name = blobName(d.digest);
    const f = openRegularBeneath(sys, dirfd, name, where);
    if (!f) throw missingBlob(where, what, d.digest);
    if (f.size !== d.size) {
      sys.close(f.fd);
      throw importError(`${what}: ${where}/${name} has ${f.size} bytes, its descriptor ${d.size}`);
    }
    return f;
  };
  const src: BlobSource = {
    async small(d, what, max) {
      if (d.size > max) throw importError(`${what}: ${d.size} bytes, more than the ${max} allowed`);
      const f = open(d, what);
      let bytes: Uint8Array;
      try {
        bytes = readCapped(sys, f, max, `${where}/${blobName(d.digest)}`);
      } finally {
        sys.close(f.fd);
      }
      try {
        await blobs.put(d.digest, bytes);
      } catch (e) {
        if (e instanceof DigestMismatch) throw mismatch(what, e);
        throw e;
      }
      return bytes;
    },
    async layer(d, what) {
      if (await blobs.has(d.digest)) return;
      const f = open(d, what);
      try {
        await blobs.ingest(d.digest, async (w) => {
          if (w.offset > 0) await w.reset();
          for await (const c of chunksOf(sys, f.fd, `${where}/${blobName(d.digest)}`)) {
            await w.write(c);
          }
        }, { size: d.size });
      } catch (e) {
        if (e instanceof DigestMismatch) throw mismatch(what, e);
        throw e;
      } finally {
        sys.close(f.fd);
      }
    },
  };
  return await resolveIndex(index, src, { platform, source: where, warn });
}

// ---- Archive ------------------------------------------------------------------------------

/**
 * An archive name as a clean relative name: "./" and empty components dropped; an absolute
 * name, a ".." component or a NUL byte refused with a line naming the entry.
 */
export function cleanName(raw: string, where: string): string {
  const bad = (why: string) =>
    importError(
      `${where}: archive entry ${JSON.stringify(displayName(raw))}: ${why}`,
      "refused: an image archive names its files inside itself",
    );
  if (raw.includes("\0")) throw bad("a name holds a NUL byte");
  if (raw.startsWith("/")) throw bad("an absolute name");
  const parts = raw.split("/").filter((p) => p !== "" && p !== ".");
  if (parts.includes("..")) throw bad("a name with a '..' component");
  return parts.join("/");
}

const SMALL_FILES: Record<string, number> = {
  "index.json": INDEX_MAX,
  "oci-layout": OCI_LAYOUT_MAX,
  "manifest.json": DOCKER_MANIFEST_MAX,
  "repositories": REPOSITORIES_MAX,
};

const BLOB_NAME = /^blobs\/([^/]+)\/([^/]+)$/;

/** What one pass over an archive found. */
interface ArchiveContents {
  small: Map<string, Uint8Array>;
  /** Blobs under blobs/ (in the store now): name → digest. */
  blobNames: Map<string, string>;
  /** Other files, hashed into the staging directory: name → where and what. */
  staged: Map<string, { path: string; digest: string; size: number }>;
  /** Symlinks and hard links: name → the name they lead to. */
  links: Map<string, string>;
}

function entryKind(e: TarEntry): string {
  switch (e.type) {
    case "symlink":
      return "a symlink";
    case "link":
      return "a hard link";
    case "char":
      return "a character device";
    case "block":
      return "a block device";
    case "fifo":
      return "a FIFO";
    case "dir":
      return "a directory";
    default:
      return "a file";
  }
}

/** Where a link entry leads, as an archive name (a symlink is relative to its directory). */
function linkTarget(name: string, e: TarEntry, where: string): string {
  if (e.type === "link") return cleanName(e.linkname, where);
  if (e.linkname.startsWith("/")) {
    throw importError(
      `${where}: archive entry ${JSON.stringify(displayName(e.name))}: a symlink to an ` +
        `absolute path ${JSON.stringify(displayName(e.linkname))}`,
      "refused: an image archive names its files inside itself",
    );
  }
  const dir = name.includes("/") ? name.slice(0, name.lastIndexOf("/")) : "";
  const parts = dir ? dir.split("/") : [];
  for (const p of e.linkname.split("/")) {
    if (p === "" || p === ".") continue;
    if (p === "..") {
      if (parts.length === 0) {
        throw importError(
          `${where}: archive entry ${JSON.stringify(displayName(e.name))}: a symlink out of ` +
            `the archive (${JSON.stringify(displayName(e.linkname))})`,
          "refused: an image archive names its files inside itself",
        );
      }
      parts.pop();
    } else parts.push(p);
  }
  return parts.join("/");
}

async function readArchive(
  sys: Sys,
  f: OpenFile,
  where: string,
  blobs: BlobStore,
  platform: Platform,
  warn: (m: string) => void,
): Promise<ImportedImage[]> {
  const contents: ArchiveContents = {
    small: new Map(),
    blobNames: new Map(),
    staged: new Map(),
    links: new Map(),
  };
  let staging: string | undefined;
  let lock: Deno.FsFile | undefined;
  try {
    await scanArchive(sys, f, where, blobs, contents, async () => {
      if (!staging) {
        await Deno.mkdir(blobs.tmpDir, { recursive: true, mode: 0o700 });
        await cleanStaging(blobs.tmpDir);
        staging = await Deno.makeTempDir({ dir: blobs.tmpDir, prefix: STAGING });
        lock = await Deno.open(`${staging}/${STAGING_LOCK}`, { write: true, createNew: true });
        await lock.lock(true);
      }
      return staging;
    });
    const index = contents.small.get("index.json");
    const layout = contents.small.get("oci-layout");
    if (layout) checkOciLayout(layout, where);
    if (index) {
      const seen = new Set(contents.blobNames.values());
      return await resolveIndex(index, archiveSource(blobs, seen, where), {
        platform,
        source: where,
        warn,
      });
    }
    const manifest = contents.small.get("manifest.json");
    if (manifest) {
      return await convertDockerArchive(manifest, {
        blobs,
        platform,
        source: where,
        warn,
        lookup: (name) => lookup(contents, name),
      });
    }
    throw importError(
      `${where}: not an image archive: no index.json (OCI) or manifest.json (docker save)`,
      "name an OCI layout directory, an OCI archive or a docker save tarball",
    );
  } finally {
    if (staging) await Deno.remove(staging, { recursive: true }).catch(() => {});
    lock?.close();
  }
}

const STAGING = "import-";
const STAGING_LOCK = "lock";
/** A staging directory without its lock file this old was left between mkdir and lock. */
const STAGING_GRACE_MS = 3600_000;

/**
 * Removes staging directories their import left behind (killed): each importer holds an
 * exclusive flock on its directory's lock file while it runs, so one whose lock can be taken
 * has no owner any more.
 */
export async function cleanStaging(tmpDir: string): Promise<void> {
  let entries: Deno.DirEntry[];
  try {
    entries = await Array.fromAsync(Deno.readDir(tmpDir));
  } catch {
    return;
  }
  for (const e of entries) {
    if (!e.isDirectory || !e.name.startsWith(STAGING)) continue;
    const dir = `${tmpDir}/${e.name}`;
    let f: Deno.FsFile;
    try {
      f = await Deno.open(`${dir}/${STAGING_LOCK}`, { read: true });
    } catch {
      const st = await Deno.lstat(dir).catch(() => undefined);
      const age = Date.now() - (st?.mtime?.getTime() ?? Date.now());
      if (st && age > STAGING_GRACE_MS) await Deno.remove(dir, { recursive: true }).catch(() => {});
      continue;
    }
    try {
      if (await f.tryLock(true)) await Deno.remove(dir, { recursive: true }).catch(() => {});
    } finally {
      f.close();
    }
  }
}

/** The blob source of an archive: every blob must have come from the archive itself. */
function archiveSource(blobs: BlobStore, seen: Set<string>, where: string): BlobSource {
  const check = async (d: Descriptor, what: string) => {
    if (!seen.has(d.digest)) throw missingBlob(where, what, d.digest);
    const size = await blobs.size(d.digest);
    if (size !== d.size) {
      throw importError(
        `${what}: ${blobName(d.digest)} has ${size} bytes, its descriptor ${d.size}`,
      );
    }
  };
  return {
    async small(d, what, max) {
      if (d.size > max) throw importError(`${what}: ${d.size} bytes, more than the ${max} allowed`);
      await check(d, what);
      return await blobs.read(d.digest, max);
    },
    async layer(d, what) {
      await check(d, what);
    },
  };
}

/** A name of the archive, links followed (inside the archive only), as a file. */
function lookup(c: ArchiveContents, raw: string): ArchiveFile | undefined {
  let name = raw;
  for (let hops = 0; hops < 16; hops++) {
    const digest = c.blobNames.get(name);
    if (digest) return { name, digest, inStore: true };
    const s = c.staged.get(name);
    if (s) return { name, digest: s.digest, size: s.size, stagedPath: s.path, inStore: false };
    const next = c.links.get(name);
    if (next === undefined) return undefined;
    name = next;
  }
  return undefined;
}

/** One pass over the archive's entries; the tar reader's errors become the import's. */
async function scanArchive(
  sys: Sys,
  f: OpenFile,
  where: string,
  blobs: BlobStore,
  c: ArchiveContents,
  stagingDir: () => Promise<string>,
): Promise<void> {
  const warnings: string[] = [];
  // A compressed archive (docker save | gzip) is read through its decompressor.
  const input = ReadableStream.from(chunksOf(sys, f.fd, where));
  const tar = new TarReader(decompress(input, undefined, warnings));
  let count = 0;
  let staged = 0;
  try {
    for (;;) {
      const e = await tar.next();
      if (e === null) break;
      if (++count > MAX_ENTRIES) throw importError(`${where}: more than ${MAX_ENTRIES} entries`);
      const name = cleanName(e.name, where);
      const label = `${where}: ${JSON.stringify(displayName(name))}`;
      if (e.type === "dir") continue;
      const blob = BLOB_NAME.exec(name);
      const small = Object.hasOwn(SMALL_FILES, name) ? SMALL_FILES[name] : undefined;
      if ((blob || small !== undefined) && e.type !== "file") {
        throw importError(
          `${label}: ${entryKind(e)} where a file must be`,
          "refused: the " +
            "archive's blobs and index files must be regular files",
        );
      }
      if (blob) {
        const digest = `${blob[1]}:${blob[2]}`;
        try {
          parseDigest(digest, `${label}: blob name`);
        } catch (err) {
          throw importError((err as MicroError).message, "a blob's name is its digest");
        }
        try {
          await blobs.ingest(digest, async (w) => {
            if (w.offset > 0) await w.reset();
            await tar.bodyAsync((chunk) => w.write(chunk));
          }, { size: e.size });
        } catch (err) {
          if (err instanceof DigestMismatch) throw mismatch(label, err);
          throw err;
        }
        c.blobNames.set(name, digest);
        continue;
      }
      if (small !== undefined) {
        if (c.small.has(name)) throw importError(`${label}: appears twice in the archive`);
        if (e.size > small) throw importError(`${label}: ${e.size} bytes, more than ${small}`);
        const buf = new Uint8Array(e.size);
        let n = 0;
        await tar.body((chunk) => {
          buf.set(chunk, n);
          n += chunk.length;
        });
        c.small.set(name, buf);
        continue;
      }
      if (e.type === "symlink" || e.type === "link") {
        c.links.set(name, linkTarget(name, e, where));
        continue;
      }
      if (e.type !== "file") {
        throw importError(
          `${label}: ${entryKind(e)}`,
          "refused: an image archive holds only files, directories and links",
        );
      }
      // Any other file may be a docker save layer or config: hashed into the staging dir.
      const path = `${await stagingDir()}/f${staged++}`;
      const hash = createHash("sha256");
      const out = await Deno.open(path, { write: true, createNew: true, mode: 0o600 });
      try {
        await tar.bodyAsync(async (chunk) => {
          hash.update(chunk);
          let done = 0;
          while (done < chunk.length) done += await out.write(chunk.subarray(done));
        });
      } finally {
        out.close();
      }
      c.staged.set(name, { path, digest: `sha256:${hash.digest("hex")}`, size: e.size });
    }
  } catch (e) {
    await tar.cancel().catch(() => {});
    if (e instanceof MicroError && e.fields.phase === "unpack") {
      throw importError(
        `${where}: ${e.message}`,
        "the archive is truncated or corrupt; save or export it again",
      );
    }
    throw e;
  }
}
