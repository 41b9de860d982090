/**
 * A `docker save` tarball as OCI images. Docker's format is a `manifest.json` listing, per
 * image, the archive paths of its config and of its layer tars (plain, or gzip or zstd), and
 * its names (`RepoTags`). Each image becomes an OCI manifest written into the BlobStore: the
 * config blob kept byte for byte (so the image id is Docker's), each layer stored as it is
 * with the media type its bytes show, and checked against the config's `rootfs.diff_ids`
 * (the digest of its uncompressed tar), as `docker load` does.
 */
import { createHash } from "./_crypto.ts";
import { MicroError } from "../errors.ts";
import { type BlobStore, DigestMismatch, digestOf } from "./blobs.ts";
import { type Compression, compressionOfBytes, decompress } from "./decompress.ts";
import { formatPlatform, type Platform, platformMatches } from "./platform.ts";
import { formatReference, parseReference } from "./reference.ts";
import { type ImageConfig, type ImageManifest, MEDIA } from "./registry.ts";
import { importError } from "./_fd.ts";
import { CONFIG_MAX, type ImportedImage, parseJsonObject } from "./_resolve.ts";

export const DOCKER_MANIFEST_MAX = 4 << 20;
const MAX_IMAGES = 1024;
const MAX_LAYERS = 1024;

/** A file of the archive: in the store already (under blobs/) or hashed into the staging dir. */
export interface ArchiveFile {
  name: string;
  digest: string;
  inStore: boolean;
  size?: number;
  stagedPath?: string;
}

export interface DockerOptions {
  blobs: BlobStore;
  platform: Platform;
  source: string;
  warn: (m: string) => void;
  /** The file an archive path names (links inside the archive followed), or undefined. */
  lookup: (name: string) => ArchiveFile | undefined;
}

const LAYER_MEDIA: Record<Compression, string> = {
  none: "application/vnd.oci.image.layer.v1.tar",
  gzip: "application/vnd.oci.image.layer.v1.tar+gzip",
  zstd: "application/vnd.oci.image.layer.v1.tar+zstd",
};

interface DockerEntry {
  Config: string;
  RepoTags?: string[] | null;
  Layers: string[];
}

function checkEntries(j: unknown, where: string): DockerEntry[] {
  if (!Array.isArray(j)) throw importError(`${where}: manifest.json: not a JSON array`);
  if (j.length === 0) throw importError(`${where}: manifest.json lists no image`);
  if (j.length > MAX_IMAGES) throw importError(`${where}: manifest.json: more than ${MAX_IMAGES}`);
  return j.map((x, i) => {
    const e = x as DockerEntry;
    const bad = (why: string) => importError(`${where}: manifest.json entry ${i}: ${why}`);
    if (typeof e !== "object" || e === null) throw bad("not an object");
    if (typeof e.Config !== "string" || !e.Config) throw bad("no Config path");
    if (!Array.isArray(e.Layers) || e.Layers.some((l) => typeof l !== "string" || !l)) {
      throw bad("Layers is not a list of paths");
    }
    if (e.Layers.length > MAX_LAYERS) throw bad(`more than ${MAX_LAYERS} layers`);
    if (
      e.RepoTags != null &&
      (!Array.isArray(e.RepoTags) || e.RepoTags.some((t) => typeof t !== "string"))
    ) {
      throw bad("RepoTags is not a list of names");
    }
    return e;
  });
}

/** The images of a docker save tarball, every blob in the store and verified. */
export async function convertDockerArchive(
  manifestJson: Uint8Array,
  opts: DockerOptions,
): Promise<ImportedImage[]> {
  const where = opts.source;
  let parsed: unknown;
  try {
    parsed = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(manifestJson));
  } catch (e) {
    throw importError(`${where}: manifest.json: not valid JSON: ${(e as Error).message}`);
  }
  const entries = checkEntries(parsed, where);
  const stored = new Map<string, Promise<void>>();
  const layerInfo = new Map<string, Promise<{ compression: Compression; diffId: string }>>();
  const byManifest = new Map<string, ImportedImage>();

  const find = (path: string, what: string): ArchiveFile => {
    const f = opts.lookup(cleanPath(path));
    if (!f) {
      throw importError(
        `${what}: missing file: manifest.json names ${
          JSON.stringify(path)
        }, which the archive lacks`,
        "the archive is incomplete; save it again",
      );
    }
    return f;
  };
  const toStore = (f: ArchiveFile, what: string): Promise<void> => {
    if (f.inStore) return Promise.resolve();
    let p = stored.get(f.digest);
    if (!p) {
      p = ingestStaged(opts.blobs, f, what);
      stored.set(f.digest, p);
    }
    return p;
  };

  for (const [i, e] of entries.entries()) {
    const label = `${where}: image ${i}${e.RepoTags?.length ? ` (${e.RepoTags[0]})` : ""}`;
    const cf = find(e.Config, `${label}: config`);
    await toStore(cf, `${label}: config`);
    const cfgSize = (await opts.blobs.size(cf.digest)) ?? 0;
    if (cfgSize > CONFIG_MAX) {
      throw importError(`${label}: config ${e.Config}: ${cfgSize} bytes, more than ${CONFIG_MAX}`);
    }
    const cfgBytes = await opts.blobs.read(cf.digest, CONFIG_MAX);
    const config = parseJsonObject(cfgBytes, `${label}: config ${e.Config}`) as ImageConfig;
    const diffIds = config.rootfs?.diff_ids;
    if (!Array.isArray(diffIds) || diffIds.length !== e.Layers.length) {
      throw importError(
        `${label}: config ${e.Config}: rootfs.diff_ids lists ${
          Array.isArray(diffIds) ? diffIds.length : "no"
        } layers, manifest.json ${e.Layers.length}`,
      );
    }
    if (config.os && config.architecture && !platformMatches(config, opts.platform)) {
      const have = formatPlatform({
        os: config.os,
        architecture: config.architecture,
        variant: typeof config.variant === "string" ? config.variant : undefined,
      });
      throw importError(
        `${label} is an image for ${have}, not ${formatPlatform(opts.platform)}`,
        `import it with --platform ${have} to take it anyway`,
      );
    }
    const layers: { mediaType: string; digest: string; size: number }[] = [];
    for (const [j, path] of e.Layers.entries()) {
      const what = `${label}: layer ${j} (${path})`;
      const lf = find(path, what);
      await toStore(lf, what);
      let info = layerInfo.get(lf.digest);
      if (!info) {
        info = inspectLayer(opts.blobs, lf.digest, what);
        layerInfo.set(lf.digest, info);
      }
      const { compression, diffId } = await info;
      if (diffId !== diffIds[j]) {
        throw importError(
          `${what}: its tar hashes to ${diffId}, the config's diff_ids[${j}] is ${
            JSON.stringify(diffIds[j])
          }`,
          "the archive is corrupt; save it again",
        );
      }
      layers.push({
        mediaType: LAYER_MEDIA[compression],
        digest: lf.digest,
        size: (await opts.blobs.size(lf.digest)) ?? 0,
      });
    }
    const manifest: ImageManifest = {
      schemaVersion: 2,
      mediaType: MEDIA.ociManifest,
      config: { mediaType: MEDIA.ociConfig, digest: cf.digest, size: cfgBytes.length },
      layers,
    };
    const bytes = new TextEncoder().encode(JSON.stringify(manifest));
    const manifestDigest = digestOf(bytes);
    await opts.blobs.put(manifestDigest, bytes);

    const names: string[] = [];
    for (const t of e.RepoTags ?? []) {
      try {
        const n = formatReference(parseReference(t));
        if (!names.includes(n)) names.push(n);
      } catch (err) {
        opts.warn(`${label}: the name ${JSON.stringify(t)} is not used: ${(err as Error).message}`);
      }
    }
    const seen = byManifest.get(manifestDigest);
    if (seen) {
      for (const n of names) if (!seen.names.includes(n)) seen.names.push(n);
      continue;
    }
    const platform = config.os && config.architecture
      ? formatPlatform({
        os: config.os,
        architecture: config.architecture,
        variant: typeof config.variant === "string" ? config.variant : undefined,
      })
      : formatPlatform(opts.platform);
    byManifest.set(manifestDigest, {
      ref: names[0] ?? manifestDigest,
      manifestDigest,
      manifest,
      config,
      configDigest: cf.digest,
      layers,
      platform,
      names,
    });
  }
  return [...byManifest.values()];
}

/** manifest.json's paths are archive names too: cleaned the same way ("./" dropped). */
function cleanPath(p: string): string {
  return p.split("/").filter((x) => x !== "" && x !== ".").join("/");
}

/** Copies a staged file into the store under the digest its bytes had when staged. */
async function ingestStaged(blobs: BlobStore, f: ArchiveFile, what: string): Promise<void> {
  try {
    await blobs.ingest(f.digest, async (w) => {
      if (w.offset > 0) await w.reset();
      using file = await Deno.open(f.stagedPath!, { read: true });
      const buf = new Uint8Array(1 << 20);
      for (;;) {
        const n = await file.read(buf);
        if (n === null) break;
        await w.write(buf.subarray(0, n));
      }
    }, { size: f.size });
  } catch (e) {
    if (e instanceof DigestMismatch) {
      throw importError(`${what}: the staged copy changed while importing (${e.message})`);
    }
    throw e;
  }
}

/** A stored layer's compression (from its first bytes) and the digest of its tar. */
async function inspectLayer(
  blobs: BlobStore,
  digest: string,
  what: string,
): Promise<{ compression: Compression; diffId: string }> {
  const head = new Uint8Array(4);
  {
    using f = await blobs.open(digest);
    let n = 0;
    while (n < head.length) {
      const r = await f.read(head.subarray(n));
      if (r === null) break;
      n += r;
    }
    if (compressionOfBytes(head.subarray(0, n)) === "none") {
      return { compression: "none", diffId: digest };
    }
  }
  const compression = compressionOfBytes(head);
  const f = await blobs.open(digest);
  const hash = createHash("sha256");
  try {
    for await (const chunk of decompress(f.readable, undefined, [])) hash.update(chunk);
  } catch (e) {
    if (e instanceof MicroError) {
      throw importError(`${what}: ${e.message}`, "the archive is corrupt; save it again");
    }
    throw e;
  }
  return { compression, diffId: `sha256:${hash.digest("hex")}` };
}
