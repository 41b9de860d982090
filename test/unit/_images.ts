/**
 * Images, layouts and archives written byte by byte for the import tests: OCI images with
 * plain, gzip or zstd layers, image indexes, layout directories, OCI archives (a tar of a
 * layout) and docker save tarballs. Every name and byte is the test's, so a test can also
 * make what no honest tool makes.
 */
import { createHash } from "node:crypto";
import { gzipSync, zstdCompressSync } from "node:zlib";
import { concat, entry, file, type HeaderFields, tar } from "./_tar.ts";

export const enc = new TextEncoder();

export function sha256(data: Uint8Array): string {
  return "sha256:" + createHash("sha256").update(data).digest("hex");
}

export interface Blob {
  digest: string;
  data: Uint8Array;
  mediaType: string;
  size: number;
}

export function blob(data: Uint8Array | string, mediaType: string): Blob {
  const d = typeof data === "string" ? enc.encode(data) : data;
  return { digest: sha256(d), data: d, mediaType, size: d.length };
}

export type Compression = "none" | "gzip" | "zstd";

const LAYER_TYPE: Record<Compression, string> = {
  none: "application/vnd.oci.image.layer.v1.tar",
  gzip: "application/vnd.oci.image.layer.v1.tar+gzip",
  zstd: "application/vnd.oci.image.layer.v1.tar+zstd",
};

export function compress(data: Uint8Array, c: Compression): Uint8Array {
  if (c === "gzip") return new Uint8Array(gzipSync(data, { level: 1 }));
  if (c === "zstd") return new Uint8Array(zstdCompressSync(data));
  return data;
}

export interface TestImage {
  manifest: Blob;
  config: Blob;
  layers: Blob[];
  /** The uncompressed tars, in order. */
  tars: Uint8Array[];
  /** Manifest, config, layers. */
  blobs: Blob[];
}

/** A small layer tar with one file per name. */
export function layerTar(files: Record<string, string>): Uint8Array {
  return tar(...Object.entries(files).map(([n, body]) => file(n, body)));
}

/** An OCI image of `tars`, each compressed as asked, for linux/`architecture`. */
export function makeImage(
  tars: Uint8Array[],
  opts: { compression?: Compression; architecture?: string; os?: string } = {},
): TestImage {
  const c = opts.compression ?? "gzip";
  const layers = tars.map((t) => blob(compress(t, c), LAYER_TYPE[c]));
  const config = blob(
    JSON.stringify({
      architecture: opts.architecture ?? hostArch(),
      os: opts.os ?? "linux",
      config: { Env: ["PATH=/bin"], Cmd: ["/bin/sh"] },
      rootfs: { type: "layers", diff_ids: tars.map(sha256) },
    }),
    "application/vnd.oci.image.config.v1+json",
  );
  const manifest = blob(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: "application/vnd.oci.image.manifest.v1+json",
      config: desc(config),
      layers: layers.map((l) => desc(l)),
    }),
    "application/vnd.oci.image.manifest.v1+json",
  );
  return { manifest, config, layers, tars, blobs: [manifest, config, ...layers] };
}

export function hostArch(): string {
  return Deno.build.arch === "aarch64" ? "arm64" : "amd64";
}

export function foreignArch(): string {
  return Deno.build.arch === "aarch64" ? "amd64" : "arm64";
}

export function desc(b: Blob, extra: Record<string, unknown> = {}) {
  return { mediaType: b.mediaType, digest: b.digest, size: b.size, ...extra };
}

/** An image index over manifests, each with its platform. */
export function makeIndex(entries: { image: TestImage; architecture: string }[]): Blob {
  return blob(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: "application/vnd.oci.image.index.v1+json",
      manifests: entries.map(({ image, architecture }) =>
        desc(image.manifest, { platform: { os: "linux", architecture } })
      ),
    }),
    "application/vnd.oci.image.index.v1+json",
  );
}

/** index.json with one entry per (top blob, ref name). */
export function indexJson(tops: { blob: Blob; name?: string }[]): Uint8Array {
  return enc.encode(JSON.stringify({
    schemaVersion: 2,
    manifests: tops.map(({ blob, name }) =>
      desc(blob, name ? { annotations: { "org.opencontainers.image.ref.name": name } } : {})
    ),
  }));
}

export const OCI_LAYOUT = enc.encode('{"imageLayoutVersion":"1.0.0"}');

/** The files of a layout: oci-layout, index.json, blobs/sha256/<hex> for each blob. */
export function layoutFiles(
  blobs: Blob[],
  tops: { blob: Blob; name?: string }[],
): [string, Uint8Array][] {
  const seen = new Set<string>();
  const out: [string, Uint8Array][] = [];
  for (const b of blobs) {
    if (seen.has(b.digest)) continue;
    seen.add(b.digest);
    out.push([`blobs/sha256/${b.digest.slice(7)}`, b.data]);
  }
  out.push(["index.json", indexJson(tops)], ["oci-layout", OCI_LAYOUT]);
  return out;
}

/** Writes files (name → bytes) under `dir`, making their directories. */
export async function writeFiles(dir: string, files: [string, Uint8Array][]): Promise<void> {
  for (const [name, data] of files) {
    const slash = name.lastIndexOf("/");
    await Deno.mkdir(slash > 0 ? `${dir}/${name.slice(0, slash)}` : dir, { recursive: true });
    await Deno.writeFile(`${dir}/${name}`, data);
  }
}

/** A tar of files (name → bytes), plus any raw entries appended. */
export function archiveOf(files: [string, Uint8Array][], ...raw: Uint8Array[]): Uint8Array {
  return tar(...files.map(([n, d]) => entry({ name: n, type: "0" } as HeaderFields, d)), ...raw);
}

/**
 * A docker save tarball of `images` (Docker's classic layout: `<n>/layer.tar`, `<hex>.json`,
 * manifest.json, repositories), the layers stored compressed as asked.
 */
export function dockerSave(
  images: { image: TestImage; tags: string[] | null; compression?: Compression }[],
): [string, Uint8Array][] {
  const files: [string, Uint8Array][] = [];
  const manifest: unknown[] = [];
  images.forEach(({ image, tags, compression }, i) => {
    const layerPaths: string[] = [];
    image.tars.forEach((t, j) => {
      const path = `layer${i}-${j}/layer.tar`;
      files.push([path, compress(t, compression ?? "none")]);
      files.push([`layer${i}-${j}/VERSION`, enc.encode("1.0")]);
      layerPaths.push(path);
    });
    const cfg = `${image.config.digest.slice(7)}.json`;
    files.push([cfg, image.config.data]);
    manifest.push({ Config: cfg, RepoTags: tags, Layers: layerPaths });
  });
  files.push(["manifest.json", enc.encode(JSON.stringify(manifest))]);
  return files;
}

export { concat, entry, file, tar };
