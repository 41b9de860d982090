/**
 * Image records and the name index (DESIGN.md §10).
 *
 *   ROOT/images/<id>.json   one record per image: its digests, parsed config, layers
 *   ROOT/images/names.json  the name index: normalised reference → image id
 *   ROOT/images/.lock       held exclusively while records or the index change
 *   ROOT/images/.gc.lock    shared by every command adding to the store (pull, import) and
 *                           by a run while it takes hold of its image; exclusive for the
 *                           sweep that deletes unreferenced layers and blobs
 *   ROOT/images/<id>.users  shared by every run of the image for its whole life
 *
 * The id is the hex of the config's digest, as Docker's and podman's. Records and the index
 * are written to a temporary name and renamed into place. What an image needs is counted
 * from the records (layers, blobs) and from the kept containers' records
 * (ROOT/containers/<id>/config.json, field `image.id`): `removeImage` and `pruneImages`
 * never take away what another image, a kept container or a running one uses.
 */
import { MicroError } from "../errors.ts";
import { BlobStore } from "../image/blobs.ts";
import type { ImageConfig, ProgressEvent, PulledImage } from "../image/registry.ts";
import { formatReference, parseDigest, parseReference } from "../image/reference.ts";
import type { Sys } from "../sys/mod.ts";
import { openLibc } from "../sys/libc.ts";
import { rootlessIdMap, singleIdWarning } from "../idmap.ts";
import { type HeldLock, lockFile, lockFileSync } from "./lock.ts";
import {
  detachLayer,
  ensureLayer,
  hasLayer,
  type LayerFlavor,
  layerPath,
  storedLayers,
  unpackedSize,
} from "./layers.ts";
import { cleanTmp, randomName, removeTree } from "./tmp.ts";
import { privateDirSync } from "./paths.ts";

export interface StoredLayer {
  /** The compressed blob's digest, media type and size (as the manifest lists it). */
  digest: string;
  mediaType: string;
  size: number;
  /** The uncompressed tar's digest: the layer's directory ROOT/layers/sha256/<hex>. */
  diffId: string;
  /** Bytes of the uncompressed tar, when known. */
  unpacked?: number;
}

export interface StoredImage {
  /** The config digest's hex (Docker's image id). */
  id: string;
  configDigest: string;
  /** The image manifest this image was last stored from. */
  manifestDigest: string;
  /** The index (manifest list) it was chosen from, if any. */
  indexDigest?: string;
  /** Every manifest and index digest it was stored under (their blobs are kept). */
  digests: string[];
  /** `domain/path@digest` for each repository it came from (digest references find it). */
  repoDigests: string[];
  /** `linux/amd64`. */
  platform: string;
  config: ImageConfig;
  /** Bottom first, as in the manifest. */
  layers: StoredLayer[];
  /** The image's creation time (its config's `created`), else when it was stored. */
  created: string;
  /** When micro stored it. */
  stored: string;
  /** Unpacked bytes (the sum of the layers' uncompressed sizes where known). */
  size: number;
  /** Its names in the index (normalised references); not kept in the record itself. */
  names: string[];
}

export interface AddOptions {
  sys: Sys;
  onProgress?: (e: ProgressEvent) => void;
  warn?: (m: string) => void;
  /** How layers are unpacked; default `storeFlavor()` for this process. */
  flavor?: LayerFlavor;
}

const RECORD_CAP = 16 << 20;
const CONTAINER_RECORD_CAP = 1 << 20;
const HEX64 = /^[0-9a-f]{64}$/;

function storeError(message: string, hint?: string): MicroError {
  return new MicroError(message, { phase: "image store", hint });
}

function codeOf(e: unknown): string {
  return (e as { code?: string }).code ?? String(e).split("\n")[0];
}

export function imagesDir(root: string): string {
  return `${root}/images`;
}

function recordPath(root: string, id: string): string {
  return `${imagesDir(root)}/${id}.json`;
}

function usersPath(root: string, id: string): string {
  return `${imagesDir(root)}/${id}.users`;
}

/**
 * Makes ROOT and ROOT/images (micro's alone), and ROOT/layers and ROOT/containers private
 * (see privateDirSync: a user namespace's root reaches layers through fds, not this path).
 * Usually four lstats.
 */
export function ensureRootSync(root: string): void {
  try {
    if (
      Deno.lstatSync(root).isDirectory && Deno.lstatSync(imagesDir(root)).isDirectory &&
      !((Deno.lstatSync(`${root}/layers`).mode ?? 0) & 0o077) &&
      !((Deno.lstatSync(`${root}/containers`).mode ?? 0) & 0o077)
    ) return;
  } catch { /* made below */ }
  try {
    const st = (() => {
      try {
        return Deno.lstatSync(root);
      } catch {
        return null;
      }
    })();
    if (st === null) {
      const parent = root.slice(0, root.lastIndexOf("/"));
      if (parent) Deno.mkdirSync(parent, { recursive: true, mode: 0o755 });
      try {
        Deno.mkdirSync(root, { mode: 0o700 });
      } catch (e) {
        if (!(e instanceof Deno.errors.AlreadyExists)) throw e;
      }
    } else if (!st.isDirectory) {
      throw storeError(`the store ${root} is not a directory`, "give --root a directory");
    }
    Deno.mkdirSync(imagesDir(root), { recursive: true, mode: 0o700 });
    privateDirSync(`${root}/layers`);
    privateDirSync(`${root}/containers`);
  } catch (e) {
    if (e instanceof MicroError) throw e;
    throw storeError(`mkdir ${root}: ${codeOf(e)}`, "check --root (or MICRO_ROOT)");
  }
}

/** `ensureRootSync` for async callers. */
// deno-lint-ignore require-await
export async function ensureRoot(root: string): Promise<void> {
  ensureRootSync(root);
}

/**
 * How this process unpacks layers. Root keeps every owner and marks opaque directories for
 * overlays with and without a user namespace. Rootless with a range in /etc/subuid and
 * /etc/subgid, layers are unpacked as root of a user namespace with the maps a rootless run
 * uses, so owners land where the container sees them (podman's way); without one, every
 * owner becomes the caller (root in the container), with one warning.
 */
export function storeFlavor(warn?: (m: string) => void, sys?: Sys): LayerFlavor {
  const uid = Deno.uid() ?? 0;
  if (uid === 0) return { userxattr: false, bothOpaqueMarkers: true, canMknod: true };
  const maps = rootlessIdMap(sys ?? openLibc(), uid, Deno.gid() ?? uid);
  if (!("reason" in maps)) return { userxattr: true, userns: maps, canMknod: false };
  warn?.(
    `rootless: every file of the image belongs to you (root in the container): ${
      singleIdWarning(maps.reason)
    }`,
  );
  return { userxattr: true, squashTo: { uid, gid: Deno.gid() ?? uid }, canMknod: false };
}

// ---- locks --------------------------------------------------------------------------------

async function indexLock(root: string): Promise<HeldLock> {
  return (await lockFile(`${imagesDir(root)}/.lock`, true))!;
}

function gcLock(root: string, exclusive: boolean, wait = true): Promise<HeldLock | null> {
  return lockFile(`${imagesDir(root)}/.gc.lock`, exclusive, wait);
}

/**
 * Held (shared) while a command adds to the store, so no sweep deletes a layer or blob it
 * has made but not yet recorded.
 */
export async function holdStore(root: string): Promise<HeldLock> {
  await ensureRoot(root);
  return (await gcLock(root, false))!;
}

// ---- reading ------------------------------------------------------------------------------

/**
 * A small file of the store, whole: null when missing. Synchronous: these are a few KiB, and
 * a run reads them on its way to the clone, where every thread hop counts.
 */
function readCapped(path: string, cap: number): string | null {
  let f: Deno.FsFile;
  try {
    // Never opened unless a regular file (a FIFO would block the open); only micro writes
    // these directories, so the name does not change between the two.
    if (!Deno.lstatSync(path).isFile) throw new Error(`${path} is not a regular file`);
    f = Deno.openSync(path, { read: true });
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    throw e;
  }
  try {
    const st = f.statSync();
    if (!st.isFile) throw new Error(`${path} is not a regular file`);
    if (st.size > cap) throw new Error(`${path} is larger than ${cap} bytes`);
    const buf = new Uint8Array(st.size + 1);
    let n = 0;
    while (n < buf.length) {
      const r = f.readSync(buf.subarray(n));
      if (r === null) break;
      n += r;
    }
    if (n > st.size) throw new Error(`${path} grew while read`);
    return new TextDecoder().decode(buf.subarray(0, n));
  } finally {
    f.close();
  }
}

async function writeAtomic(path: string, text: string): Promise<void> {
  const tmp = `${path}.${randomName()}.tmp`;
  try {
    await Deno.writeTextFile(tmp, text, { mode: 0o600 });
    await Deno.rename(tmp, path);
  } catch (e) {
    await Deno.remove(tmp).catch(() => {});
    throw storeError(`write ${path}: ${codeOf(e)}`);
  }
}

type Names = Record<string, string>;

function readNames(root: string): Names {
  const path = `${imagesDir(root)}/names.json`;
  let text: string | null;
  try {
    text = readCapped(path, RECORD_CAP);
  } catch (e) {
    throw storeError(`read ${path}: ${(e as Error).message}`);
  }
  if (text === null) return {};
  try {
    const j = JSON.parse(text);
    const names: Names = {};
    for (const [k, v] of Object.entries(j?.names ?? {})) {
      if (typeof v === "string" && HEX64.test(v)) names[k] = v;
    }
    return names;
  } catch (e) {
    throw storeError(`read ${path}: ${(e as Error).message}`, "the name index is damaged");
  }
}

async function writeNames(root: string, names: Names): Promise<void> {
  const sorted = Object.fromEntries(Object.entries(names).sort(([a], [b]) => a.localeCompare(b)));
  await writeAtomic(`${imagesDir(root)}/names.json`, JSON.stringify({ names: sorted }) + "\n");
}

function checkRecord(j: unknown, id: string): Omit<StoredImage, "names"> {
  const r = j as Omit<StoredImage, "names">;
  if (typeof r !== "object" || r === null || r.id !== id || !Array.isArray(r.layers)) {
    throw new Error("not an image record");
  }
  parseDigest(r.configDigest, "config digest");
  parseDigest(r.manifestDigest, "manifest digest");
  for (const l of r.layers) {
    parseDigest(l.digest, "layer digest");
    parseDigest(l.diffId, "diff id");
  }
  if (!Array.isArray(r.digests)) r.digests = [r.manifestDigest];
  if (!Array.isArray(r.repoDigests)) r.repoDigests = [];
  for (const d of r.digests) parseDigest(d, "digest");
  return r;
}

function readRecord(root: string, id: string): Omit<StoredImage, "names"> | null {
  const path = recordPath(root, id);
  try {
    const text = readCapped(path, RECORD_CAP);
    return text === null ? null : checkRecord(JSON.parse(text), id);
  } catch (e) {
    throw storeError(`image record ${path}: ${(e as Error).message}`, "remove it with -f");
  }
}

/** readRecord, null for a damaged one too. */
function tryRecord(root: string, id: string): Omit<StoredImage, "names"> | null {
  try {
    return readRecord(root, id);
  } catch {
    return null;
  }
}

function recordIds(root: string): string[] {
  try {
    return [...Deno.readDirSync(imagesDir(root))]
      .filter((e) => e.isFile && e.name.endsWith(".json") && HEX64.test(e.name.slice(0, -5)))
      .map((e) => e.name.slice(0, -5));
  } catch {
    return [];
  }
}

function namesOf(names: Names, id: string): string[] {
  return Object.entries(names).filter(([, v]) => v === id).map(([k]) => k).sort();
}

/** Every image in the store with its names, most recently stored first. */
export async function listImages(root: string): Promise<StoredImage[]> {
  const names = await readNames(root);
  const out: StoredImage[] = [];
  for (const id of await recordIds(root)) {
    const r = tryRecord(root, id);
    if (r) out.push({ ...r, names: namesOf(names, id) });
  }
  return out.sort((a, b) => b.stored.localeCompare(a.stored));
}

/** How `findImage` matched: by one of its names, or by its id (or a prefix of it). */
export interface Found {
  image: StoredImage;
  /** The name it was found by; undefined when found by id. */
  name?: string;
}

/** The normalised name a reference is stored under: `domain/path:tag`, or `@digest`. */
export function storeName(refText: string): string {
  const ref = parseReference(refText);
  return ref.tag !== undefined
    ? formatReference({ domain: ref.domain, path: ref.path, tag: ref.tag })
    : formatReference(ref);
}

function find(root: string, refOrId: string, names: Names): Found | null {
  let ref: ReturnType<typeof parseReference> | undefined;
  try {
    ref = parseReference(refOrId);
  } catch {
    ref = undefined;
  }
  if (ref) {
    const candidates = [formatReference(ref)];
    if (ref.tag !== undefined && ref.digest === undefined) candidates.push(storeName(refOrId));
    for (const n of candidates) {
      const id = names[n];
      if (id) {
        const r = readRecord(root, id);
        if (r) return { image: { ...r, names: namesOf(names, id) }, name: n };
      }
    }
    if (ref.digest !== undefined) {
      const want = `${ref.domain}/${ref.path}@${ref.digest}`;
      for (const id of recordIds(root)) {
        const r = tryRecord(root, id);
        if (r?.repoDigests.includes(want)) return { image: { ...r, names: namesOf(names, id) } };
      }
    }
  }
  const m = /^(?:sha256:)?([0-9a-f]{1,64})$/.exec(refOrId);
  if (!m) return null;
  const ids = recordIds(root).filter((id) => id.startsWith(m[1]));
  if (ids.length > 1) {
    throw storeError(
      `image id prefix "${refOrId}" is ambiguous: ${ids.length} images match`,
      [
        "give more digits",
      ].join(""),
    );
  }
  if (ids.length === 0) return null;
  const r = readRecord(root, ids[0]);
  return r ? { image: { ...r, names: namesOf(names, ids[0]) } } : null;
}

/** The image a reference (`alpine`, `host:5000/app@sha256:...`) or an id (prefix) names. */
export async function findImage(root: string, refOrId: string): Promise<StoredImage | null> {
  return (await findWithName(root, refOrId))?.image ?? null;
}

/** `findImage`, and which name matched. */
export function findWithName(root: string, refOrId: string): Promise<Found | null> {
  return Promise.resolve(find(root, refOrId, readNames(root)));
}

// ---- adding -------------------------------------------------------------------------------

/** The config's diff ids, checked against the image's layers. */
function diffIds(image: PulledImage): string[] {
  const ids = image.config.rootfs?.diff_ids;
  if (!Array.isArray(ids) || image.config.rootfs?.type !== "layers") {
    throw storeError(`config ${image.configDigest}: no rootfs.diff_ids list of type "layers"`);
  }
  if (ids.length !== image.layers.length) {
    throw storeError(
      `config ${image.configDigest}: ${ids.length} diff ids for ${image.layers.length} layers`,
      "the image is corrupt",
    );
  }
  for (const d of ids) {
    if (typeof d !== "string") throw storeError(`config ${image.configDigest}: bad diff id`);
    parseDigest(d, `config ${image.configDigest}: diff id`);
  }
  return ids;
}

/**
 * Adds an image whose manifest, config and layer blobs are in ROOT/blobs (a pull or an
 * import put them there): unpacks the layers that are missing, each checked against the
 * config's rootfs.diff_ids, writes the record and, with a `name`, points that name at it
 * (a name that pointed at another image moves, as `docker pull` does). Safe to run
 * concurrently with other adds, runs and removals.
 */
export async function addImage(
  root: string,
  name: string | null,
  image: PulledImage,
  opts: AddOptions,
): Promise<StoredImage> {
  const id = parseDigest(image.configDigest, "config digest").hex;
  const ids = diffIds(image);
  const normalName = name === null ? null : storeName(name);
  const hold = await holdStore(root);
  try {
    await cleanTmp(root);
    const blobs = new BlobStore(root);
    const flavor = opts.flavor ?? storeFlavor(opts.warn, opts.sys);
    const sizes = new Map<string, number>();
    // Two at a time: decompressing is CPU work and other layers still download meanwhile.
    let next = 0;
    const worker = async () => {
      while (next < image.layers.length) {
        const i = next++;
        const r = await ensureLayer(root, { blob: image.layers[i], diffId: ids[i] }, {
          sys: opts.sys,
          blobs,
          flavor,
          onProgress: opts.onProgress,
          warn: opts.warn,
        });
        if (r.state === "unpacked") sizes.set(ids[i], r.size);
      }
    };
    await Promise.all([worker(), worker()]);
    for (const d of ids) {
      if (!(await hasLayer(root, d))) throw storeError(`layer ${d} vanished while stored`);
    }

    const lock = await indexLock(root);
    try {
      const old = tryRecord(root, id);
      const known = new Map<string, number>();
      for (const l of old?.layers ?? []) {
        if (l.unpacked !== undefined) known.set(l.diffId, l.unpacked);
      }
      const layers: StoredLayer[] = image.layers.map((l, i) => {
        const unpacked = sizes.get(ids[i]) ?? unpackedSize(root, ids[i]) ?? known.get(ids[i]);
        return {
          digest: l.digest,
          mediaType: l.mediaType,
          size: l.size,
          diffId: ids[i],
          ...(unpacked !== undefined ? { unpacked } : {}),
        };
      });
      const digests = new Set([...(old?.digests ?? []), image.manifestDigest]);
      if (image.indexDigest) digests.add(image.indexDigest);
      const repoDigests = new Set(old?.repoDigests ?? []);
      if (normalName !== null) {
        const ref = parseReference(normalName);
        repoDigests.add(`${ref.domain}/${ref.path}@${image.manifestDigest}`);
        if (image.indexDigest) repoDigests.add(`${ref.domain}/${ref.path}@${image.indexDigest}`);
      }
      const now = new Date().toISOString();
      const record: Omit<StoredImage, "names"> = {
        id,
        configDigest: image.configDigest,
        manifestDigest: image.manifestDigest,
        ...(image.indexDigest ? { indexDigest: image.indexDigest } : {}),
        digests: [...digests],
        repoDigests: [...repoDigests].sort(),
        platform: image.platform,
        config: image.config,
        layers,
        created: typeof image.config.created === "string" ? image.config.created : now,
        stored: now,
        size: layers.reduce((n, l) => n + (l.unpacked ?? l.size), 0),
      };
      await writeAtomic(recordPath(root, id), JSON.stringify(record) + "\n");
      const names = await readNames(root);
      if (normalName !== null && names[normalName] !== id) {
        names[normalName] = id;
        await writeNames(root, names);
      }
      return { ...record, names: namesOf(names, id) };
    } finally {
      lock.release();
    }
  } finally {
    hold.release();
  }
}

// ---- use by runs --------------------------------------------------------------------------

/** A run's hold on its image: its layers stay until `release` (or the process ends). */
export interface ImageHold {
  image: StoredImage;
  /** The layer directories, top first (the overlay's lowerdir order). */
  layers: string[];
  release(): void;
}

/**
 * Finds the image and holds it for a run: "missing" when it is not in the store, or when a
 * layer directory is gone (a pull mends it).
 */
export async function holdImage(root: string, refOrId: string): Promise<ImageHold | "missing"> {
  ensureRootSync(root);
  // What killed commands left: nothing, almost always (one readdir).
  try {
    if ([...Deno.readDirSync(`${root}/tmp`)].some((e) => !e.name.endsWith(".partial"))) {
      await cleanTmp(root);
    }
  } catch { /* no tmp yet */ }
  const gc = lockFileSync(`${imagesDir(root)}/.gc.lock`, false);
  try {
    const found = find(root, refOrId, readNames(root));
    if (!found) return "missing";
    const { image } = found;
    const users = lockFileSync(usersPath(root, image.id), false);
    // Removed between the lookup and the lock (a removal takes `users` exclusively).
    if (!tryRecord(root, image.id)) {
      users.release();
      return "missing";
    }
    const layers = image.layers.map((l) => layerPath(root, l.diffId)).reverse();
    for (const l of layers) {
      let ok = false;
      try {
        ok = Deno.lstatSync(l).isDirectory;
      } catch { /* missing */ }
      if (!ok) {
        users.release();
        return "missing";
      }
    }
    return { image, layers, release: () => users.release() };
  } finally {
    gc.release();
  }
}

// ---- references and removal ---------------------------------------------------------------

/** Image ids the kept containers use (ROOT/containers/<id>/config.json `image.id`). */
export async function containerImages(root: string): Promise<Map<string, string[]>> {
  const out = new Map<string, string[]>();
  let entries: Deno.DirEntry[];
  try {
    entries = await Array.fromAsync(Deno.readDir(`${root}/containers`));
  } catch {
    return out;
  }
  for (const e of entries) {
    if (!e.isDirectory) continue;
    let text: string | null;
    try {
      text = readCapped(`${root}/containers/${e.name}/config.json`, CONTAINER_RECORD_CAP);
    } catch {
      continue; // not a regular file, too large: not a record of ours
    }
    if (text === null) continue;
    try {
      const j = JSON.parse(text);
      const raw = j?.image?.id;
      if (typeof raw !== "string") continue;
      const id = raw.startsWith("sha256:") ? raw.slice(7) : raw;
      if (!HEX64.test(id)) continue;
      const name = typeof j.name === "string" ? j.name : e.name.slice(0, 12);
      out.set(id, [...(out.get(id) ?? []), name]);
    } catch {
      // a half-written or foreign file: it names no image
    }
  }
  return out;
}

/** Whether a run holds the image now (its `users` lock is taken). */
async function inUseByRun(root: string, id: string): Promise<HeldLock | "busy"> {
  const l = await lockFile(usersPath(root, id), true, false);
  return l ?? "busy";
}

export interface RemoveResult {
  untagged: string[];
  /** Ids deleted. */
  deleted: string[];
}

/**
 * `micro image rm`: by name, untags it, and deletes the image when that was its last
 * name; by id, deletes the image (with `force` also when it has several names). An image
 * that a kept or running container uses is never deleted: without `force` that is an
 * error, with `force` its names go and the image stays until no container uses it.
 * Unreferenced layers and blobs are then swept (unless a pull is running: the next
 * removal or prune sweeps them).
 */
export async function removeImage(
  root: string,
  refOrId: string,
  opts: { force?: boolean } = {},
): Promise<RemoveResult> {
  await ensureRoot(root);
  await cleanTmp(root);
  const force = opts.force ?? false;
  const result: RemoveResult = { untagged: [], deleted: [] };
  const lock = await indexLock(root);
  try {
    const names = await readNames(root);
    const found = await find(root, refOrId, names);
    if (!found) {
      throw new MicroError(`no such image: ${refOrId}`, {
        hint: 'see "micro image ls"',
      });
    }
    const { image } = found;
    const short = image.id.slice(0, 12);
    const all = namesOf(names, image.id);
    const containers = (await containerImages(root)).get(image.id) ?? [];
    const users = await inUseByRun(root, image.id);
    try {
      const used = containers.length > 0 || users === "busy";
      const user = containers.length > 0
        ? `container ${containers[0]}${
          containers.length > 1 ? ` and ${containers.length - 1} more` : ""
        }`
        : "a running container";
      let untag: string[];
      if (found.name !== undefined && all.length > 1) {
        untag = [found.name];
      } else {
        if (found.name === undefined && all.length > 1 && !force) {
          throw new MicroError(
            `image ${short} has ${all.length} names (${all.join(", ")}): remove them by name`,
            { hint: "or use -f to remove the image and all its names" },
          );
        }
        if (used && !force) {
          throw new MicroError(`image ${found.name ? refOrId : short} is used by ${user}`, {
            hint: "remove the container first, or use -f to take the image's names only",
          });
        }
        untag = all;
      }
      for (const n of untag) delete names[n];
      result.untagged = untag;
      if (untag.length) await writeNames(root, names);
      const left = namesOf(names, image.id);
      if (left.length === 0 && !used) {
        await deleteRecord(root, image.id, users as HeldLock);
        result.deleted.push(image.id);
      }
    } finally {
      if (users !== "busy") users.release();
    }
  } finally {
    lock.release();
  }
  if (result.deleted.length) await sweep(root, false);
  return result;
}

/** Deletes a record while holding its `users` lock (no run can take it meanwhile). */
async function deleteRecord(root: string, id: string, users: HeldLock): Promise<void> {
  try {
    await Deno.remove(recordPath(root, id));
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) {
      throw storeError(`remove ${recordPath(root, id)}: ${codeOf(e)}`);
    }
  }
  users.removeAndRelease();
}

export interface PruneResult {
  deleted: string[];
  untagged: string[];
  layers: number;
  blobs: number;
  /** Bytes of blobs removed (layers are counted, not measured). */
  blobBytes: number;
}

/**
 * `micro image prune`: deletes images without a name (with `all`, every image) that no
 * kept or running container uses, then sweeps unreferenced layers and blobs and what killed
 * commands left in ROOT/tmp (blob partials included). Waits for running pulls.
 */
export async function pruneImages(
  root: string,
  opts: { all?: boolean } = {},
): Promise<PruneResult> {
  await ensureRoot(root);
  await cleanTmp(root);
  const result: PruneResult = { deleted: [], untagged: [], layers: 0, blobs: 0, blobBytes: 0 };
  const lock = await indexLock(root);
  try {
    const names = await readNames(root);
    const containers = await containerImages(root);
    let changed = false;
    for (const id of await recordIds(root)) {
      const own = namesOf(names, id);
      if (own.length > 0 && !opts.all) continue;
      if (containers.has(id)) continue;
      const users = await inUseByRun(root, id);
      if (users === "busy") continue;
      for (const n of own) {
        delete names[n];
        result.untagged.push(n);
        changed = true;
      }
      if (changed) await writeNames(root, names);
      changed = false;
      await deleteRecord(root, id, users);
      result.deleted.push(id);
    }
  } finally {
    lock.release();
  }
  const swept = await sweep(root, true);
  Object.assign(result, { layers: swept.layers, blobs: swept.blobs, blobBytes: swept.blobBytes });
  await new BlobStore(root).cleanPartials();
  return result;
}

/** What the records reference: layer diff id hexes and blob digests. */
export async function references(
  root: string,
): Promise<{ layers: Set<string>; blobs: Set<string> }> {
  const layers = new Set<string>();
  const blobs = new Set<string>();
  for (const id of await recordIds(root)) {
    // An unreadable record might reference anything: keep everything.
    const r = readRecord(root, id);
    if (!r) continue;
    blobs.add(r.configDigest);
    for (const d of r.digests) blobs.add(d);
    for (const l of r.layers) {
      blobs.add(l.digest);
      layers.add(parseDigest(l.diffId).hex);
    }
  }
  return { layers, blobs };
}

/**
 * Deletes layers and blobs no record references, under the exclusive gc lock (no add is
 * between unpacking and recording). `wait: false` gives up when an add is running. Layers
 * are renamed out of ROOT/layers under the lock and deleted after it.
 */
async function sweep(
  root: string,
  wait: boolean,
): Promise<{ layers: number; blobs: number; blobBytes: number }> {
  const out = { layers: 0, blobs: 0, blobBytes: 0 };
  const gc = await gcLock(root, true, wait);
  if (!gc) return out;
  const doomed: string[] = [];
  try {
    let refs: Awaited<ReturnType<typeof references>>;
    try {
      refs = await references(root);
    } catch {
      return out; // a damaged record: sweep nothing rather than something it needs
    }
    for (const hex of await storedLayers(root)) {
      if (refs.layers.has(hex)) continue;
      const d = await detachLayer(root, hex);
      if (d) {
        doomed.push(d);
        out.layers++;
      }
    }
    for (const alg of ["sha256", "sha512"]) {
      const dir = `${root}/blobs/${alg}`;
      let entries: Deno.DirEntry[];
      try {
        entries = await Array.fromAsync(Deno.readDir(dir));
      } catch {
        continue;
      }
      for (const e of entries) {
        if (!e.isFile || refs.blobs.has(`${alg}:${e.name}`)) continue;
        try {
          const st = await Deno.lstat(`${dir}/${e.name}`);
          await Deno.remove(`${dir}/${e.name}`);
          out.blobs++;
          out.blobBytes += st.size;
        } catch { /* gone */ }
      }
    }
  } finally {
    gc.release();
  }
  for (const d of doomed) await removeTree(d);
  return out;
}
