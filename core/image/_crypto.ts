/**
 * node:crypto's createHash, loaded on first use. A static import is hoisted to the top of
 * micro's single-file bundle, so every command (`micro run` of a directory included) would
 * load Deno's Node compatibility layer at start-up: about 40 ms measured here.
 */
import type { Hash } from "node:crypto";

type Crypto = typeof import("node:crypto");
let crypto: Crypto | undefined;

export function createHash(algorithm: string): Hash {
  crypto ??= (globalThis as unknown as {
    process: { getBuiltinModule(id: string): unknown };
  }).process.getBuiltinModule("node:crypto") as Crypto;
  return crypto.createHash(algorithm);
}
