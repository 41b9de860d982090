/**
 * `exportImage`: an image of the store as an OCI archive (a tar of an OCI image layout:
 * `oci-layout`, `index.json` naming the image, `blobs/<alg>/<hex>`), the format
 * `skopeo copy oci-archive:FILE` and `podman load` read, and `readImageSource` too.
 *
 * The archive is written to a temporary file beside FILE and renamed over it only when whole,
 * so FILE is never half written. The entries are written in an order a streaming reader
 * likes (the layout and the index first, then manifest, config, layers), owned by root with
 * a fixed time: exporting one image twice gives the same bytes. Every blob is hashed again as
 * it is copied, and a mismatch stops the export.
 */
import { createHash } from "./_crypto.ts";
import { MicroError } from "../errors.ts";
import type { BlobStore } from "./blobs.ts";
import { parseDigest } from "./reference.ts";
import { checkImageManifest, type Descriptor, type ImageConfig, MEDIA } from "./registry.ts";
import { CONFIG_MAX, CONTAINERD_NAME, MANIFEST_MAX, REF_NAME } from "./_resolve.ts";

/** What an export needs of an image record (the store's `StoredImage` has it). */
export interface ExportableImage {
  manifestDigest: string;
  /** The full reference written as the archive's image name; null or absent: none. */
  name?: string | null;
}

export interface ExportOptions {
  /** Mode of the new file (before the umask); default 0o644. */
  mode?: number;
}

function exportError(message: string, hint?: string): MicroError {
  return new MicroError(message, { phase: "export", hint });
}

/**
 * Writes `image` from `blobs` to `file` as an OCI archive. Resolves with the bytes written.
 * On an error nothing is left at `file` (an existing file stays as it was).
 */
export async function exportImage(
  image: ExportableImage,
  blobs: BlobStore,
  file: string,
  opts: ExportOptions = {},
): Promise<number> {
  const manifestBytes = await blobs.read(image.manifestDigest, MANIFEST_MAX);
  let manifestJson: unknown;
  try {
    manifestJson = JSON.parse(new TextDecoder().decode(manifestBytes));
  } catch {
    throw exportError(`manifest ${image.manifestDigest}: not valid JSON`);
  }
  let manifest;
  try {
    manifest = checkImageManifest(manifestJson, image.manifestDigest);
  } catch (e) {
    if (e instanceof MicroError) throw exportError(e.message, e.fields.hint);
    throw e;
  }
  const mediaType = manifest.mediaType ?? MEDIA.ociManifest;
  const config = await blobs.readJson<ImageConfig>(manifest.config.digest, CONFIG_MAX);
  const blobsInOrder: Descriptor[] = [manifest.config, ...manifest.layers];
  for (const d of blobsInOrder) {
    const size = await blobs.size(d.digest);
    if (size === undefined) {
      throw exportError(`blob ${d.digest} is not in the store`, "pull or import the image again");
    }
    if (size !== d.size) {
      throw exportError(
        `blob ${d.digest}: ${size} bytes in the store, the manifest says ${d.size}`,
      );
    }
  }

  const annotations: Record<string, string> = {};
  if (image.name) {
    annotations[REF_NAME] = image.name;
    annotations[CONTAINERD_NAME] = image.name;
  }
  const entry: Record<string, unknown> = {
    mediaType,
    digest: image.manifestDigest,
    size: manifestBytes.length,
  };
  if (Object.keys(annotations).length) entry.annotations = annotations;
  if (typeof config?.os === "string" && typeof config.architecture === "string") {
    entry.platform = {
      os: config.os,
      architecture: config.architecture,
      ...(typeof config.variant === "string" && config.variant ? { variant: config.variant } : {}),
    };
  }
  const enc = new TextEncoder();
  const index = enc.encode(JSON.stringify({
    schemaVersion: 2,
    mediaType: MEDIA.ociIndex,
    manifests: [entry],
  }));
  const layout = enc.encode(JSON.stringify({ imageLayoutVersion: "1.0.0" }));

  const slash = file.lastIndexOf("/");
  const dir = slash < 0 ? "." : file.slice(0, slash) || "/";
  const base = file.slice(slash + 1);
  if (!base) throw exportError(`${file}: names a directory, not a file`);
  const tmp = `${dir}/.${base}.${crypto.randomUUID().slice(0, 8)}.tmp`;
  let out: Deno.FsFile;
  try {
    out = await Deno.open(tmp, { write: true, createNew: true, mode: opts.mode ?? 0o644 });
  } catch (e) {
    throw exportError(
      `create ${tmp}: ${errCode(e)}`,
      "check that the directory exists and is writable",
    );
  }
  let written = 0;
  const write = async (b: Uint8Array) => {
    let done = 0;
    while (done < b.length) done += await out.write(b.subarray(done));
    written += b.length;
  };
  try {
    await write(tarHeader("oci-layout", layout.length, "0"));
    await write(padded(layout));
    await write(tarHeader("index.json", index.length, "0"));
    await write(padded(index));
    const algorithms = new Set<string>();
    await write(tarHeader("blobs/", 0, "5"));
    const seen = new Set<string>();
    const all = [
      { digest: image.manifestDigest, size: manifestBytes.length },
      ...blobsInOrder,
    ];
    for (const d of all) {
      if (seen.has(d.digest)) continue;
      seen.add(d.digest);
      const { algorithm, hex } = parseDigest(d.digest, "blob digest");
      if (!algorithms.has(algorithm)) {
        algorithms.add(algorithm);
        await write(tarHeader(`blobs/${algorithm}/`, 0, "5"));
      }
      const name = `blobs/${algorithm}/${hex}`;
      if (d.size >= 0o77777777777) await write(paxSize(name, d.size));
      await write(tarHeader(name, d.size, "0"));
      await copyBlob(blobs, d, algorithm, write);
      const rest = (512 - (d.size % 512)) % 512;
      if (rest) await write(new Uint8Array(rest));
    }
    await write(new Uint8Array(1024)); // the end-of-archive marker
    await out.syncData();
    out.close();
    await Deno.rename(tmp, file).catch((e) => {
      throw exportError(`rename ${tmp} to ${file}: ${errCode(e)}`);
    });
  } catch (e) {
    try {
      out.close();
    } catch {
      // closed already
    }
    await Deno.remove(tmp).catch(() => {});
    throw e;
  }
  return written;
}

function errCode(e: unknown): string {
  return (e as { code?: string }).code ?? String(e).split("\n")[0];
}

/** Copies a blob into the archive, hashing it again: a blob changed on disk stops the export. */
async function copyBlob(
  blobs: BlobStore,
  d: { digest: string; size: number },
  algorithm: string,
  write: (b: Uint8Array) => Promise<void>,
): Promise<void> {
  using f = await blobs.open(d.digest);
  const hash = createHash(algorithm);
  const buf = new Uint8Array(1 << 20);
  let n = 0;
  for (;;) {
    const r = await f.read(buf);
    if (r === null) break;
    n += r;
    if (n > d.size) break;
    hash.update(buf.subarray(0, r));
    await write(buf.subarray(0, r));
  }
  const actual = `${algorithm}:${hash.digest("hex")}`;
  if (n !== d.size || actual !== d.digest) {
    throw exportError(
      `blob ${d.digest}: the store's copy changed (${n} bytes hashing to ${actual})`,
      "the store is damaged: remove the image and pull or import it again",
    );
  }
}

const enc = new TextEncoder();

function padded(b: Uint8Array): Uint8Array {
  const out = new Uint8Array(Math.ceil(b.length / 512) * 512);
  out.set(b);
  return out;
}

function octal(h: Uint8Array, off: number, len: number, v: number) {
  h.set(enc.encode(v.toString(8).padStart(len - 1, "0") + "\0"), off);
}

/** A ustar header: root-owned, mtime 0, mode 0644 (files) or 0755 (directories). */
function tarHeader(name: string, size: number, type: "0" | "5" | "x"): Uint8Array {
  const h = new Uint8Array(512);
  h.set(enc.encode(name), 0);
  octal(h, 100, 8, type === "5" ? 0o755 : 0o644);
  octal(h, 108, 8, 0);
  octal(h, 116, 8, 0);
  // Sizes too large for 11 octal digits go in a PAX record before this header.
  octal(h, 124, 12, size >= 0o77777777777 ? 0 : size);
  octal(h, 136, 12, 0);
  h[156] = type.charCodeAt(0);
  h.set(enc.encode("ustar\x0000"), 257);
  h.set(enc.encode("root"), 265);
  h.set(enc.encode("root"), 297);
  octal(h, 329, 8, 0);
  octal(h, 337, 8, 0);
  h.fill(0x20, 148, 156);
  let sum = 0;
  for (const c of h) sum += c;
  h.set(enc.encode(sum.toString(8).padStart(6, "0") + "\0 "), 148);
  return h;
}

/** A PAX extended header carrying `size` for the next entry (a blob of 8 GiB or more). */
function paxSize(name: string, size: number): Uint8Array {
  const body = ` size=${size}\n`;
  let len = body.length + 1;
  while (String(len).length + body.length !== len) len = String(len).length + body.length;
  const rec = enc.encode(`${len}${body}`);
  const out = new Uint8Array(512 + Math.ceil(rec.length / 512) * 512);
  out.set(tarHeader(`PaxHeaders/${name.slice(-80)}`, rec.length, "x"), 0);
  out.set(rec, 512);
  return out;
}
