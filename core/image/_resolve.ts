/**
 * From an OCI `index.json` to the images it names, for a layout directory and an archive
 * alike: entries are grouped by their name annotation (one image per name), a group's
 * manifest is chosen for the platform (an image index is looked into, as `pull` does), and
 * the manifest, config and layers come from a `BlobSource` that verifies each blob against
 * its descriptor and stores it.
 */
import { MicroError } from "../errors.ts";
import { type Descriptor, type ImageConfig, MEDIA, type PulledImage } from "./registry.ts";
import { checkImageManifest } from "./registry.ts";
import {
  choosePlatform,
  formatPlatform,
  type Platform,
  type PlatformEntry,
  platformMatches,
} from "./platform.ts";
import { formatReference, parseDigest, parseReference } from "./reference.ts";
import { importError } from "./_fd.ts";

/** An imported image: what a pull gives, and the names the archive (or the user) gave it. */
export interface ImportedImage extends PulledImage {
  /** Normalised references (`docker.io/library/busybox:latest`); empty when unnamed. */
  names: string[];
}

/** Where an index's blobs come from; each call verifies the bytes against `desc`. */
export interface BlobSource {
  /** A manifest, an index or a config: its verified bytes (also put in the store). */
  small(desc: Descriptor, what: string, max: number): Promise<Uint8Array>;
  /** A layer: into the store, verified (nothing to do when the store has it). */
  layer(desc: Descriptor, what: string): Promise<void>;
}

export const MANIFEST_MAX = 4 << 20;
export const CONFIG_MAX = 8 << 20;
export const INDEX_MAX = 4 << 20;
/** More entries than any real index has; bounds the work a hostile index can ask for. */
const MAX_ENTRIES = 4096;
const MAX_DEPTH = 3;

export const REF_NAME = "org.opencontainers.image.ref.name";
export const CONTAINERD_NAME = "io.containerd.image.name";

const MANIFEST_TYPES = new Set<string>([MEDIA.ociManifest, MEDIA.dockerManifest]);
const INDEX_TYPES = new Set<string>([MEDIA.ociIndex, MEDIA.dockerList]);

export interface ResolveOptions {
  platform: Platform;
  /** The file or directory imported, for messages. */
  source: string;
  warn: (m: string) => void;
}

/** Errors of the registry module's checks say "pull" (or nothing); here they are an import's. */
export async function asImport<T>(fn: () => T | Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    if (e instanceof MicroError && (e.fields.phase === "pull" || !e.fields.phase)) {
      throw new MicroError(e.message, { ...e.fields, phase: "import" });
    }
    throw e;
  }
}

export function parseJsonObject(bytes: Uint8Array, what: string): Record<string, unknown> {
  let j: unknown;
  try {
    j = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
  } catch (e) {
    throw importError(`${what}: not valid JSON: ${(e as Error).message}`);
  }
  if (typeof j !== "object" || j === null || Array.isArray(j)) {
    throw importError(`${what}: not a JSON object`);
  }
  return j as Record<string, unknown>;
}

/** Checks a descriptor's shape and digest; throws a line naming `what`. */
export function checkDescriptor(d: unknown, what: string): Descriptor {
  const x = d as Descriptor;
  if (
    typeof x !== "object" || x === null || typeof x.mediaType !== "string" ||
    typeof x.digest !== "string" || typeof x.size !== "number" || !Number.isSafeInteger(x.size) ||
    x.size < 0
  ) {
    throw importError(`${what}: not a valid descriptor (mediaType, digest, size)`);
  }
  parseDigest(x.digest, `${what} digest`);
  if (x.annotations !== undefined && (typeof x.annotations !== "object" || !x.annotations)) {
    throw importError(`${what}: annotations are not an object`);
  }
  return x;
}

/**
 * The name an index entry gives its image: containerd's full name when there, else the OCI
 * ref name when it is a reference. A bare tag (`latest`, as umoci and Docker write it) names
 * no repository, so it names nothing.
 */
export function entryName(
  annotations: Record<string, string> | undefined,
  warn: (m: string) => void,
  where: string,
): { key: string; name?: string } {
  const full = annotations?.[CONTAINERD_NAME];
  const ref = annotations?.[REF_NAME];
  const raw = typeof full === "string" && full ? full : typeof ref === "string" ? ref : "";
  if (!raw) return { key: "" };
  if (!/[:/@]/.test(raw)) {
    warn(
      `${where}: the image named only by the tag ${JSON.stringify(raw)} gets no name: ` +
        `give one with micro image import FILE NAME`,
    );
    return { key: raw };
  }
  try {
    return { key: raw, name: formatReference(parseReference(raw)) };
  } catch (e) {
    const why = e instanceof MicroError ? e.message : String(e);
    warn(`${where}: the image name is not used: ${why}`);
    return { key: raw };
  }
}

interface Candidate extends PlatformEntry {
  desc: Descriptor;
  /** The index the manifest was found in, below index.json. */
  indexDigest?: string;
}

/** The images `index.json` names, each fetched and verified through `src`. */
export async function resolveIndex(
  indexBytes: Uint8Array,
  src: BlobSource,
  opts: ResolveOptions,
): Promise<ImportedImage[]> {
  const where = opts.source;
  const index = parseJsonObject(indexBytes, `${where}: index.json`);
  if (index.schemaVersion !== 2) throw importError(`${where}: index.json: schemaVersion is not 2`);
  if (!Array.isArray(index.manifests)) {
    throw importError(`${where}: index.json: no manifests list`);
  }
  if (index.manifests.length === 0) throw importError(`${where}: index.json lists no image`);
  if (index.manifests.length > MAX_ENTRIES) {
    throw importError(`${where}: index.json: more than ${MAX_ENTRIES} entries`);
  }
  const groups = new Map<string, { name?: string; entries: Descriptor[] }>();
  index.manifests.forEach((m: unknown, i: number) => {
    const d = checkDescriptor(m, `${where}: index.json entry ${i}`);
    if (!MANIFEST_TYPES.has(d.mediaType) && !INDEX_TYPES.has(d.mediaType)) {
      throw importError(
        `${where}: index.json entry ${i} (${d.digest}): unknown media type ${
          JSON.stringify(d.mediaType)
        }`,
        "micro imports OCI and Docker v2 image manifests and indexes",
      );
    }
    const { key, name } = entryName(d.annotations, opts.warn, where);
    const g = groups.get(key) ?? { name, entries: [] };
    g.entries.push(d);
    groups.set(key, g);
  });

  const byManifest = new Map<string, ImportedImage>();
  for (const [key, g] of groups) {
    const label = key ? `${where}: image ${JSON.stringify(key)}` : where;
    const candidates: Candidate[] = [];
    for (const d of g.entries) await expand(d, src, label, candidates, 0);
    const chosen = await choose(candidates, src, opts.platform, label);
    const image = await fetchImage(chosen, src, opts.platform, label);
    const seen = byManifest.get(image.manifestDigest);
    if (seen) {
      if (g.name && !seen.names.includes(g.name)) seen.names.push(g.name);
      continue;
    }
    if (g.name) {
      image.names.push(g.name);
      image.ref = g.name;
    }
    byManifest.set(image.manifestDigest, image);
  }
  return [...byManifest.values()];
}

/** A manifest entry as a candidate; an index entry as the manifests it lists. */
async function expand(
  d: Descriptor,
  src: BlobSource,
  label: string,
  out: Candidate[],
  depth: number,
  indexDigest?: string,
): Promise<void> {
  if (MANIFEST_TYPES.has(d.mediaType)) {
    out.push({
      digest: d.digest,
      mediaType: d.mediaType,
      platform: d.platform,
      desc: d,
      indexDigest,
    });
    return;
  }
  if (!INDEX_TYPES.has(d.mediaType)) return; // an artifact in a nested index: not an image
  if (depth >= MAX_DEPTH) throw importError(`${label}: image indexes nested too deep`);
  const bytes = await src.small(d, `${label}: image index ${d.digest}`, INDEX_MAX);
  const j = parseJsonObject(bytes, `${label}: image index ${d.digest}`);
  if (!Array.isArray(j.manifests)) {
    throw importError(`${label}: image index ${d.digest}: no manifests list`);
  }
  if (j.manifests.length > MAX_ENTRIES) {
    throw importError(`${label}: image index ${d.digest}: more than ${MAX_ENTRIES} entries`);
  }
  for (const [i, m] of j.manifests.entries()) {
    const c = checkDescriptor(m, `${label}: image index ${d.digest} entry ${i}`);
    await expand(c, src, label, out, depth + 1, d.digest);
  }
}

/**
 * The manifest for `want`: the first whose descriptor names the platform, else the first
 * without a platform whose config is for it (or says none). Else a line listing what there is.
 */
async function choose(
  candidates: Candidate[],
  src: BlobSource,
  want: Platform,
  label: string,
): Promise<Candidate> {
  const match = candidates.find((c) => platformMatches(c.platform, want));
  if (match) return match;
  for (const c of candidates.filter((c) => !c.platform?.os || !c.platform.architecture)) {
    const { config } = await manifestAndConfig(c.desc, src, label);
    if (!config.os || !config.architecture || platformMatches(config, want)) return c;
  }
  if (candidates.length === 0) throw importError(`${label}: no image manifest in its index`);
  if (candidates.every((c) => !c.platform?.os || !c.platform.architecture)) {
    const { config } = await manifestAndConfig(candidates[0].desc, src, label);
    throw foreign(label, config, want);
  }
  return await asImport(() => choosePlatform(candidates, want, `index of ${label}`) as Candidate);
}

function foreign(label: string, config: ImageConfig, want: Platform): MicroError {
  const have = formatPlatform({
    os: String(config.os),
    architecture: String(config.architecture),
    variant: typeof config.variant === "string" ? config.variant : undefined,
  });
  return importError(
    `${label} is an image for ${have}, not ${formatPlatform(want)}`,
    `import it with --platform ${have} to take it anyway`,
  );
}

async function manifestAndConfig(d: Descriptor, src: BlobSource, label: string) {
  const bytes = await src.small(d, `${label}: manifest ${d.digest}`, MANIFEST_MAX);
  const j = parseJsonObject(bytes, `${label}: manifest ${d.digest}`);
  const manifest = await asImport(() => checkImageManifest(j, d.digest));
  const cfg = manifest.config;
  if (cfg.size > CONFIG_MAX) {
    throw importError(`${label}: config ${cfg.digest}: ${cfg.size} bytes, more than ${CONFIG_MAX}`);
  }
  const config = parseJsonObject(
    await src.small(cfg, `${label}: config ${cfg.digest}`, CONFIG_MAX),
    `${label}: config ${cfg.digest}`,
  ) as ImageConfig;
  return { manifest, config };
}

async function fetchImage(
  c: Candidate,
  src: BlobSource,
  want: Platform,
  label: string,
): Promise<ImportedImage> {
  const { manifest, config } = await manifestAndConfig(c.desc, src, label);
  if (config.os && config.architecture && !platformMatches(config, want)) {
    throw foreign(label, config, want);
  }
  for (const [i, l] of manifest.layers.entries()) {
    await src.layer(l, `${label}: layer ${i} (${l.digest})`);
  }
  const platform = config.os && config.architecture
    ? formatPlatform({
      os: config.os,
      architecture: config.architecture,
      variant: typeof config.variant === "string" ? config.variant : undefined,
    })
    : formatPlatform(want);
  return {
    ref: c.desc.digest,
    manifestDigest: c.desc.digest,
    ...(c.indexDigest ? { indexDigest: c.indexDigest } : {}),
    manifest,
    config,
    configDigest: manifest.config.digest,
    layers: manifest.layers.map((l) => ({
      digest: l.digest,
      mediaType: l.mediaType,
      size: l.size,
    })),
    platform,
    names: [],
  };
}
