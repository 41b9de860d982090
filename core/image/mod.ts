/**
 * Images: what this folder offers.
 *
 * - `unpack.ts`: `unpackLayer` applies one layer (tar, gzip or zstd) to a new empty
 *   directory as an overlay lower layer, resolving every entry through fds.
 * - `tar.ts`: `TarReader`, a streaming tar reader (ustar, GNU, PAX).
 * - `decompress.ts`: the compression of a layer from its bytes and its media type.
 * - `reference.ts`: `parseReference` reads `alpine`, `host:5000/team/app@sha256:...` with
 *   Docker's normalisation; `formatReference`, `familiarReference`, `parseDigest`.
 * - `blobs.ts`: `BlobStore`, the content-addressed blobs under ROOT/blobs/<alg>/<hex>, each
 *   checked against its digest before a rename makes it visible, one writer per digest.
 * - `registry.ts`: `pullImage` over the OCI distribution API v2 (auth, TLS, platform choice,
 *   parallel resumable layer downloads), `login`, `logout`, `RegistryClient`.
 * - `auth.ts`: credentials from micro's auth file and ~/.docker/config.json; challenges.
 * - `platform.ts`: `parsePlatform`, `hostPlatform`, `choosePlatform` for indexes.
 * - `transport.ts`: CA directories (certs.d) and the HTTP transport for one registry.
 * - `progress.ts`: `progressRenderer`, a bar per layer on a terminal, plain lines otherwise.
 * - `rootless.ts`: `unpackLayerInUserns`, a layer unpacked as root of a user namespace with
 *   the caller's subordinate-id maps (owners kept, shifted as the container sees them);
 *   the maps come from `rootlessIdMap` (core/idmap.ts).
 * - `archive.ts`: `readImageSource` reads an OCI layout directory, an OCI archive or a
 *   `docker save` tarball into the blob store, every blob verified (helpers: `_fd.ts`,
 *   `_resolve.ts` for index.json and platforms, `_docker.ts` for Docker's format).
 * - `export.ts`: `exportImage` writes an image as an OCI archive, atomically.
 */
export { unpackLayer, type UnpackOptions, type UnpackResult } from "./unpack.ts";
export { displayName, type TarEntry, TarReader, type TarType } from "./tar.ts";
export { type Compression, compressionOfBytes, compressionOfMediaType } from "./decompress.ts";
export {
  apiHost,
  DOCKER_HUB,
  familiarReference,
  formatReference,
  isLoopback,
  parseDigest,
  parseReference,
  type Reference,
} from "./reference.ts";
export {
  BlobStore,
  BlobTooLarge,
  type BlobWriter,
  DigestMismatch,
  digestOf,
  type IngestOptions,
  type IngestResult,
} from "./blobs.ts";
export {
  type Descriptor,
  type ImageConfig,
  type ImageManifest,
  LAYER_TYPES,
  login,
  type LoginOptions,
  logout,
  MEDIA,
  type ProgressEvent,
  type PulledImage,
  pullImage,
  type PullOptions,
  RegistryClient,
  type RegistryOptions,
} from "./registry.ts";
export {
  type Credentials,
  defaultAuthFile,
  defaultDockerConfig,
  lookupCredentials,
} from "./auth.ts";
export { formatPlatform, hostPlatform, parsePlatform, type Platform } from "./platform.ts";
export { defaultCertDirs } from "./transport.ts";
export { type ProgressRenderer, progressRenderer, type RendererOptions } from "./progress.ts";
export { unpackLayerInUserns, type UsernsUnpackOptions } from "./rootless.ts";
export { type RootlessIdMap, rootlessIdMap, singleIdWarning } from "../idmap.ts";
export { type ImportedImage, type ImportOptions, readImageSource } from "./archive.ts";
export { type ExportableImage, exportImage, type ExportOptions } from "./export.ts";
