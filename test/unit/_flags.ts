/**
 * Open flags as the fake Sys prints them, for this machine: arm64's O_DIRECTORY and
 * O_NOFOLLOW are not x86_64's (core/sys/mod.ts), so tests name the flags, not their numbers.
 */
import { C } from "../../core/sys/mod.ts";

const hex = (n: number) => `0x${n.toString(16)}`;

export const F = {
  /** O_PATH | O_DIRECTORY | O_CLOEXEC (x86_64: 0x290000). */
  PATH_DIR: hex(C.O_PATH | C.O_DIRECTORY | C.O_CLOEXEC),
  /** O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC (x86_64: 0x2b0000). */
  PATH_DIR_NOFOLLOW: hex(C.O_PATH | C.O_DIRECTORY | C.O_NOFOLLOW | C.O_CLOEXEC),
  /** O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC (x86_64: 0xa00c1). */
  CREATE_NEW: hex(C.O_WRONLY | C.O_CREAT | C.O_EXCL | C.O_NOFOLLOW | C.O_CLOEXEC),
  /** O_RDONLY | O_NOFOLLOW | O_CLOEXEC (x86_64: 0xa0000). */
  NOFOLLOW: hex(C.O_NOFOLLOW | C.O_CLOEXEC),
  /** O_WRONLY | O_NOFOLLOW | O_CLOEXEC (x86_64: 0xa0001). */
  WRONLY_NOFOLLOW: hex(C.O_WRONLY | C.O_NOFOLLOW | C.O_CLOEXEC),
};
