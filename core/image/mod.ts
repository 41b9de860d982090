/**
 * Images: what this folder offers.
 *
 * - `unpack.ts`: `unpackLayer` applies one layer (tar, gzip or zstd) to a new empty
 *   directory as an overlay lower layer, resolving every entry through fds.
 * - `tar.ts`: `TarReader`, a streaming tar reader (ustar, GNU, PAX).
 * - `decompress.ts`: the compression of a layer from its bytes and its media type.
 */
export { unpackLayer, type UnpackOptions, type UnpackResult } from "./unpack.ts";
export { displayName, type TarEntry, TarReader, type TarType } from "./tar.ts";
export { type Compression, compressionOfBytes, compressionOfMediaType } from "./decompress.ts";
