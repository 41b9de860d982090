/**
 * Unpacked layers: ROOT/layers/sha256/<diff id hex>/, each an overlay lower directory made
 * once and shared by every image and container that uses it.
 *
 * A layer is unpacked into ROOT/tmp/layer-<hex>-<random> while `layer-<hex>.lock` is held
 * exclusively, checked against its diff id, and only then renamed into place, so a layer
 * directory that exists is whole and verified, whatever was killed when. A second command
 * wanting the same layer waits on the lock and then finds it done; the lock file goes with
 * the work (see lock.ts for the unlink race).
 */
import { MicroError } from "../errors.ts";
import type { BlobStore } from "../image/blobs.ts";
import type { ProgressEvent } from "../image/registry.ts";
import { parseDigest } from "../image/reference.ts";
import { unpackLayer } from "../image/unpack.ts";
import type { Sys } from "../sys/mod.ts";
import type { UsernsMaps } from "../engine/userns.ts";
import { lockFile } from "./lock.ts";
import { privateDirSync } from "./paths.ts";
import { layerLockPath, randomName, removeTree, tmpDir } from "./tmp.ts";

export function layersDir(root: string): string {
  return `${root}/layers/sha256`;
}

/** Where the layer with this diff id lives (whether or not it is there). */
export function layerPath(root: string, diffId: string): string {
  const { algorithm, hex } = parseDigest(diffId, "diff id");
  if (algorithm !== "sha256") {
    throw new MicroError(`diff id ${diffId}: only sha256 diff ids are supported`, {
      phase: "image store",
    });
  }
  return `${layersDir(root)}/${hex}`;
}

export async function hasLayer(root: string, diffId: string): Promise<boolean> {
  try {
    return (await Deno.lstat(layerPath(root, diffId))).isDirectory;
  } catch {
    return false;
  }
}

/** How layers are written in this store (root: real owners; rootless: see the caller). */
export interface LayerFlavor {
  /** Overlay markers in user.overlay.* (a rootless store: overlay mounted with userxattr). */
  userxattr: boolean;
  /** A root store marks opaque directories for both kinds of mount (see UnpackOptions). */
  bothOpaqueMarkers?: boolean;
  squashTo?: { uid: number; gid: number };
  idMap?: { uid: number; gid: number; size: number };
  /** Rootless with a range: unpacked as root of a user namespace with these maps. */
  userns?: UsernsMaps;
  canMknod: boolean;
}

export interface EnsureLayer {
  /** The compressed layer's blob (in `blobs`, verified). */
  blob: { digest: string; mediaType: string; size: number };
  /** The diff id the image config names for it. */
  diffId: string;
}

export interface EnsureOptions {
  sys: Sys;
  blobs: BlobStore;
  flavor: LayerFlavor;
  onProgress?: (e: ProgressEvent) => void;
  warn?: (m: string) => void;
}

/** "exists": the layer was there (or another command made it meanwhile); else its size. */
export type EnsureResult = { state: "exists" } | { state: "unpacked"; size: number };

/** Layers being made by this process, so one process never waits on its own lock. */
const inFlight = new Map<string, Promise<EnsureResult>>();
/** Uncompressed sizes of the layers this process unpacked (for the image record). */
const sizes = new Map<string, number>();

/** The uncompressed size of a layer this process unpacked, if it did. */
export function unpackedSize(root: string, diffId: string): number | undefined {
  return sizes.get(`${root}\0${diffId}`);
}

/** Makes the layer unless it is there; concurrent callers (any process) do the work once. */
export function ensureLayer(root: string, l: EnsureLayer, o: EnsureOptions): Promise<EnsureResult> {
  const key = `${root}\0${l.diffId}`;
  const running = inFlight.get(key);
  if (running) return running.then(() => ({ state: "exists" }));
  const p = makeLayer(root, l, o).finally(() => inFlight.delete(key));
  inFlight.set(key, p);
  return p;
}

async function mkdirs(path: string, mode: number): Promise<void> {
  try {
    await Deno.mkdir(path, { recursive: true, mode });
  } catch (e) {
    throw new MicroError(`mkdir ${path}: ${(e as { code?: string }).code ?? e}`, {
      phase: "image store",
    });
  }
}

async function makeLayer(root: string, l: EnsureLayer, o: EnsureOptions): Promise<EnsureResult> {
  const final = layerPath(root, l.diffId);
  const hex = final.slice(final.lastIndexOf("/") + 1);
  const progress = (state: ProgressEvent["state"], done = 0) =>
    o.onProgress?.({ digest: l.blob.digest, kind: "layer", state, done, total: l.blob.size });
  if (await hasLayer(root, l.diffId)) {
    progress("exists");
    return { state: "exists" };
  }
  // ROOT/layers is the owner's alone (privateDirSync); below it, search-only for others: a
  // container's root in a user namespace reaches its layers through an fd of layersDir.
  await mkdirs(root, 0o700);
  privateDirSync(`${root}/layers`);
  await mkdirs(layersDir(root), 0o711);
  await mkdirs(tmpDir(root), 0o700);
  const lock = await lockFile(layerLockPath(root, hex), true);
  if (!lock) throw new Error("unreachable: a waiting lock returned nothing");
  const work = `${tmpDir(root)}/layer-${hex}-${randomName()}`;
  let renamed = false;
  try {
    if (await hasLayer(root, l.diffId)) {
      progress("exists");
      return { state: "exists" };
    }
    await Deno.mkdir(work, { mode: 0o755 });
    await Deno.chmod(work, 0o755);
    const file = await o.blobs.open(l.blob.digest);
    let done = 0;
    let last = 0;
    const counted = file.readable.pipeThrough(
      new TransformStream<Uint8Array, Uint8Array>({
        transform(chunk, c) {
          done += chunk.length;
          if (done - last >= 1 << 20 || done === l.blob.size) {
            last = done;
            progress("extracting", done);
          }
          c.enqueue(chunk);
        },
      }),
    );
    progress("extracting", 0);
    const result = o.flavor.userns
      ? await unpackInUserns(o, l, work, counted)
      : await unpackLayer(o.sys, counted, work, {
        mediaType: l.blob.mediaType,
        userxattr: o.flavor.userxattr,
        bothOpaqueMarkers: o.flavor.bothOpaqueMarkers,
        squashTo: o.flavor.squashTo,
        idMap: o.flavor.idMap,
        canMknod: o.flavor.canMknod,
      });
    if (result.diffId !== l.diffId) {
      throw new MicroError(
        `layer ${l.blob.digest}: its content hashes to ${result.diffId}, the image config ` +
          `says ${l.diffId}`,
        { phase: "image store", hint: "the image is corrupt; nothing was stored" },
      );
    }
    for (const w of result.warnings) o.warn?.(`layer ${l.blob.digest.slice(7, 19)}: ${w}`);
    try {
      await Deno.rename(work, final);
      renamed = true;
    } catch (e) {
      throw new MicroError(`rename ${work} to ${final}: ${(e as { code?: string }).code ?? e}`, {
        phase: "image store",
      });
    }
    progress("done", l.blob.size);
    sizes.set(`${root}\0${l.diffId}`, result.size);
    return { state: "unpacked", size: result.size };
  } finally {
    if (!renamed) await removeTree(work);
    lock.removeAndRelease();
  }
}

/**
 * Takes a layer out of ROOT/layers at once (a rename into ROOT/tmp, under the caller's
 * exclusive gc lock), so no one ever sees half of it; returns where it went, for
 * `removeTree` once the lock is let go (or for the next `cleanTmp` if killed before).
 */
export async function detachLayer(root: string, hex: string): Promise<string | undefined> {
  const doomed = `${tmpDir(root)}/rm-${randomName()}`;
  try {
    await mkdirs(tmpDir(root), 0o700);
    await Deno.rename(`${layersDir(root)}/${hex}`, doomed);
    return doomed;
  } catch {
    return undefined;
  }
}

/** The diff id hexes of every layer in the store. */
export async function storedLayers(root: string): Promise<string[]> {
  try {
    return (await Array.fromAsync(Deno.readDir(layersDir(root))))
      .filter((e) => e.isDirectory && /^[0-9a-f]{64}$/.test(e.name))
      .map((e) => e.name);
  } catch {
    return [];
  }
}

/**
 * The layer unpacked by `micro _unpack-layer` as root of a user namespace with the caller's
 * subordinate-id maps (core/image/rootless.ts): owners land where the container sees them.
 */
async function unpackInUserns(
  o: EnsureOptions,
  l: EnsureLayer,
  work: string,
  stream: ReadableStream<Uint8Array>,
) {
  await stream.cancel(); // the worker reads the blob itself (and this closes our fd)
  const { unpackLayerInUserns } = await import("../image/rootless.ts");
  return await unpackLayerInUserns(o.sys, o.flavor.userns!, o.blobs.path(l.blob.digest), work, {
    mediaType: l.blob.mediaType,
  });
}
