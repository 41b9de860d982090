/**
 * Writes a root filesystem directory as an OCI layout of one gzip layer (GNU tar, owners
 * as numbers), tagged `start`, for the start-time benchmark.
 *
 *   deno run -A bench/image/mkimage.ts DIR LAYOUT
 */
import { gzipSync } from "node:zlib";
import { type Blob, enc, sha256, writeLayout } from "../../test/integration/_registry.ts";

const [dir, layout] = Deno.args;
const out = new Deno.Command("tar", {
  args: ["--numeric-owner", "--format=gnu", "-C", dir, "-cf", "-", "."],
  stdout: "piped",
}).outputSync();
if (!out.success) throw new Error(`tar ${dir} failed`);
const gz = gzipSync(out.stdout, { level: 6 });
const blob = (data: Uint8Array, mediaType: string): Blob => ({
  digest: sha256(data),
  data,
  mediaType,
});
const layer = blob(gz, "application/vnd.oci.image.layer.v1.tar+gzip");
const config = blob(
  enc.encode(JSON.stringify({
    architecture: Deno.build.arch === "aarch64" ? "arm64" : "amd64",
    os: "linux",
    config: { Cmd: ["/bin/sh"] },
    rootfs: { type: "layers", diff_ids: [sha256(out.stdout)] },
  })),
  "application/vnd.oci.image.config.v1+json",
);
const manifest = blob(
  enc.encode(JSON.stringify({
    schemaVersion: 2,
    mediaType: "application/vnd.oci.image.manifest.v1+json",
    config: { mediaType: config.mediaType, digest: config.digest, size: config.data.length },
    layers: [{ mediaType: layer.mediaType, digest: layer.digest, size: layer.data.length }],
  })),
  "application/vnd.oci.image.manifest.v1+json",
);
await writeLayout(layout, [manifest, config, layer], { start: manifest });
