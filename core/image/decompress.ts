/**
 * The decompression of a layer: gzip, zstd or none, known from the first bytes (as Docker
 * and containers/image do: a registry's media type is a claim, the bytes are the fact) and
 * checked against the media type when one is given. `node:zlib` does both gzip and zstd in
 * native code, and handles concatenated gzip members.
 */
import { MicroError } from "../errors.ts";

export type Compression = "gzip" | "zstd" | "none";

/** The layer media types of the OCI image spec and Docker's image manifest v2.2. */
const MEDIA_TYPES: Record<string, Compression> = {
  "application/vnd.oci.image.layer.v1.tar": "none",
  "application/vnd.oci.image.layer.v1.tar+gzip": "gzip",
  "application/vnd.oci.image.layer.v1.tar+zstd": "zstd",
  "application/vnd.oci.image.layer.nondistributable.v1.tar": "none",
  "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip": "gzip",
  "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd": "zstd",
  "application/vnd.docker.image.rootfs.diff.tar": "none",
  "application/vnd.docker.image.rootfs.diff.tar.gzip": "gzip",
  "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip": "gzip",
  "application/vnd.docker.image.rootfs.diff.tar.zstd": "zstd",
};

/** The compression a layer media type names; an unknown media type is an error. */
export function compressionOfMediaType(mediaType: string): Compression {
  const c = MEDIA_TYPES[mediaType.split(";")[0].trim()];
  if (c === undefined) {
    throw new MicroError(`unknown layer media type ${JSON.stringify(mediaType)}`, {
      phase: "unpack",
      hint: "micro unpacks tar layers, plain, gzip or zstd",
    });
  }
  return c;
}

/** The compression the first bytes show (gzip 1f 8b, zstd frame 28 b5 2f fd), else "none". */
export function compressionOfBytes(head: Uint8Array): Compression {
  if (head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b) return "gzip";
  if (
    head.length >= 4 && head[0] === 0x28 && head[1] === 0xb5 && head[2] === 0x2f &&
    head[3] === 0xfd
  ) return "zstd";
  return "none";
}

/** Output chunks of this size keep the per-chunk costs (hash, tar slicing) small. */
const CHUNK = 256 * 1024;

/**
 * The decompressed bytes of `input`. The compression comes from the first bytes; a media
 * type that says otherwise adds a warning (the bytes win), an unknown one is an error.
 */
export async function* decompress(
  input: ReadableStream<Uint8Array>,
  mediaType: string | undefined,
  warnings: string[],
): AsyncGenerator<Uint8Array> {
  const claimed = mediaType === undefined ? undefined : compressionOfMediaType(mediaType);
  const reader = input.getReader();
  const head: Uint8Array[] = [];
  let headLen = 0;
  let done = false;
  try {
    while (headLen < 4) {
      const r = await reader.read();
      if (r.done) {
        done = true;
        break;
      }
      head.push(r.value);
      headLen += r.value.length;
    }
    const first = head.length === 1 ? head[0] : concat(head, headLen);
    const kind = compressionOfBytes(first);
    if (claimed !== undefined && claimed !== kind) {
      warnings.push(
        `layer media type ${mediaType} says ${claimed} but the data is ${
          kind === "none" ? "not compressed" : kind
        }: unpacked as ${kind}`,
      );
    }
    const raw = rest(reader, first, done);
    if (kind === "none") {
      yield* raw;
      return;
    }
    const zlib = await import("node:zlib");
    const { Readable, pipeline } = await import("node:stream");
    const z = kind === "gzip"
      ? zlib.createGunzip({ chunkSize: CHUNK })
      : zlib.createZstdDecompress({ chunkSize: CHUNK });
    pipeline(Readable.from(raw, { objectMode: false }), z, () => {});
    try {
      for await (const chunk of z) yield chunk as Uint8Array;
    } catch (e) {
      if (e instanceof MicroError) throw e;
      const msg = e instanceof Error ? e.message : String(e);
      throw new MicroError(`corrupt ${kind} stream: ${msg}`, {
        phase: "unpack",
        hint: "the layer is damaged; fetch or export it again",
      });
    } finally {
      z.destroy();
    }
  } finally {
    await reader.cancel().catch(() => {});
  }
}

/** The first bytes read already, then the rest of the stream. */
async function* rest(
  reader: ReadableStreamDefaultReader<Uint8Array>,
  first: Uint8Array,
  done: boolean,
): AsyncGenerator<Uint8Array> {
  if (first.length) yield first;
  while (!done) {
    const r = await reader.read();
    if (r.done) return;
    yield r.value;
  }
}

function concat(parts: Uint8Array[], n: number): Uint8Array {
  const out = new Uint8Array(n);
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}
