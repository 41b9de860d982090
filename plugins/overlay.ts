/**
 * overlay: a copy-on-write root. The image (a directory, or later an image's layers) is the
 * read-only lower layer; the container's writes, and the mount points micro makes, go to an
 * upper directory of its own in the store, so the image is never written and any number of
 * containers share it. `hardened` keeps its read-only root on top (the readonly plugin).
 * The directory holds the container's record too (core/store/containers.ts); with `--rm`
 * it is removed at the end, else it stays until `micro rm`.
 */
import { op } from "../core/ops.ts";
import type { Plugin } from "../core/plugin.ts";

export const overlay: Plugin<Record<never, never>> = {
  name: "overlay",
  description: "copy-on-write root: the image read-only below, the container's writes above",
  schema: { type: "object", fields: {} },
  configure(_o, spec) {
    if (spec.root.path !== null) spec.root.overlay = true;
  },
  plan(spec, host) {
    if (!spec.root.overlay || spec.root.path === null) return [];
    const dir = host.containerDir;
    // Without --rm the container's layer stays, as Docker keeps a container (micro rm).
    return [
      op("prepare", "overlay", "overlay-dirs", { dir }),
      ...(spec.micro.remove ? [op("cleanup", "overlay", "overlay-remove", { dir })] : []),
    ];
  },
};
