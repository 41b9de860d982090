/**
 * STUB on branch img/imgfmt, to be replaced at merge by the store helper's
 * core/store/images.ts (same signatures). It exists only so commands/image_io.ts type-checks
 * and its tests run on this branch: it writes a bare record per image and unpacks nothing.
 */
import type { ProgressEvent, PulledImage } from "../image/registry.ts";
import { formatReference, parseReference } from "../image/reference.ts";
import type { Sys } from "../sys/mod.ts";

export interface StoredImage {
  id: string;
  name: string | null;
  manifestDigest: string;
  configDigest: string;
  layers: { digest: string; mediaType: string; size: number; diffId: string }[];
}

/** STUB: records `image` under ROOT/images/<id>.json (one file per image, names in it). */
export async function addImage(
  root: string,
  name: string | null,
  image: PulledImage,
  _opts: { sys: Sys; onProgress?: (e: ProgressEvent) => void; warn?: (m: string) => void },
): Promise<StoredImage> {
  const id = image.configDigest.slice(image.configDigest.indexOf(":") + 1);
  const diffIds = image.config.rootfs?.diff_ids ?? [];
  const rec: StoredImage = {
    id,
    name: name === null ? null : formatReference(parseReference(name)),
    manifestDigest: image.manifestDigest,
    configDigest: image.configDigest,
    layers: image.layers.map((l, i) => ({ ...l, diffId: diffIds[i] ?? "" })),
  };
  await Deno.mkdir(`${root}/images`, { recursive: true, mode: 0o700 });
  const file = rec.name === null ? `${id}.json` : `${encodeURIComponent(rec.name)}.json`;
  await Deno.writeTextFile(`${root}/images/${file}`, JSON.stringify(rec));
  return rec;
}

/** STUB: the record named `refOrId` (a reference, or an id or its prefix), or null. */
export async function findImage(root: string, refOrId: string): Promise<StoredImage | null> {
  let all: StoredImage[] = [];
  try {
    for await (const e of Deno.readDir(`${root}/images`)) {
      if (e.isFile && e.name.endsWith(".json")) {
        all.push(JSON.parse(await Deno.readTextFile(`${root}/images/${e.name}`)));
      }
    }
  } catch {
    all = [];
  }
  const id = refOrId.replace(/^sha256:/, "");
  const byId = /^[a-f0-9]{6,64}$/.test(id) ? all.find((r) => r.id.startsWith(id)) : undefined;
  if (byId) return byId;
  let name: string;
  try {
    name = formatReference(parseReference(refOrId));
  } catch {
    return null;
  }
  return all.find((r) => r.name === name) ?? null;
}
