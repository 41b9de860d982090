/**
 * `micro pull` and `micro run --pull`: the registry client into the blob store, then the
 * image store. A layer is unpacked as soon as its blob is in (while the others still
 * download), as `docker pull` extracts while it downloads; `addImage` then finds it done.
 */
import type { ImageConfig, ImageManifest, ProgressEvent } from "../image/registry.ts";
import type { Sys } from "../sys/mod.ts";
import { BlobStore } from "../image/blobs.ts";
import { addImage, holdStore, type StoredImage, storeFlavor, storeName } from "./images.ts";
import { ensureLayer } from "./layers.ts";
import { cleanTmp } from "./tmp.ts";

export interface PullToStoreOptions {
  sys: Sys;
  platform?: string;
  tlsVerify?: boolean;
  /** Progress for people (default: a renderer on stderr); false for none. */
  progress?: boolean;
  warn?: (m: string) => void;
}

/** Pulls `refText` into the store at `root` and names it; resolves with its record. */
export async function pullToStore(
  root: string,
  refText: string,
  o: PullToStoreOptions,
): Promise<StoredImage> {
  const { parseReference } = await import("../image/reference.ts");
  const { pullImage } = await import("../image/registry.ts");
  const { progressRenderer } = await import("../image/progress.ts");
  const ref = parseReference(refText);
  const name = storeName(refText);
  const hold = await holdStore(root);
  const renderer = o.progress === false ? null : progressRenderer();
  const show = (e: ProgressEvent) => renderer?.onProgress(e);
  try {
    await cleanTmp(root);
    const blobs = new BlobStore(root);
    const flavor = storeFlavor(o.warn);
    const finished = new Set<string>();

    // Early unpacking: the manifest and config are in the blob store before any layer is.
    let manifestDigest: string | undefined;
    let configDigest: string | undefined;
    let plan: Promise<Map<string, { diffId: string; mediaType: string }>> | undefined;
    const early: Promise<unknown>[] = [];
    const diffIdOf = (): Promise<Map<string, { diffId: string; mediaType: string }>> =>
      plan ??= (async () => {
        const m = await blobs.readJson<ImageManifest>(manifestDigest!, 4 << 20);
        const c = await blobs.readJson<ImageConfig>(configDigest!, 8 << 20);
        const ids = c?.rootfs?.diff_ids ?? [];
        const map = new Map<string, { diffId: string; mediaType: string }>();
        m.layers.forEach((l, i) => {
          if (typeof ids[i] === "string" && !map.has(l.digest)) {
            map.set(l.digest, { diffId: ids[i], mediaType: l.mediaType });
          }
        });
        return map;
      })();
    const onProgress = (e: ProgressEvent) => {
      if (e.kind === "manifest" && e.state === "done") manifestDigest = e.digest;
      if (e.kind === "config" && (e.state === "done" || e.state === "exists")) {
        configDigest = e.digest;
      }
      if (e.kind !== "layer") return show(e);
      // The layer's "done" is when it is unpacked; after that, nothing overrides it.
      if (finished.has(e.digest)) return;
      if (e.state === "done" || e.state === "exists") {
        show({ ...e, state: "downloaded" });
        if (manifestDigest && configDigest) {
          const digest = e.digest;
          early.push(
            diffIdOf().then((ids) => {
              const l = ids.get(digest);
              if (!l) return;
              return ensureLayer(
                root,
                { blob: { digest, mediaType: l.mediaType, size: e.total ?? 0 }, diffId: l.diffId },
                { sys: o.sys, blobs, flavor, onProgress: unpackProgress },
              );
            }).catch(() => {/* addImage does it again and reports */}),
          );
        }
        return;
      }
      show(e);
    };
    const unpackProgress = (e: ProgressEvent) => {
      if (finished.has(e.digest)) return;
      if (e.state === "done" || e.state === "exists") finished.add(e.digest);
      show(e);
    };
    const pulled = await pullImage(ref, {
      platform: o.platform,
      tlsVerify: o.tlsVerify,
      onProgress,
    }, blobs);
    await Promise.all(early);
    return await addImage(root, name, pulled, {
      sys: o.sys,
      flavor,
      warn: o.warn,
      onProgress: unpackProgress,
    });
  } finally {
    renderer?.finish();
    hold.release();
  }
}
