/**
 * clone3's `struct clone_args` (CLONE_ARGS_SIZE_VER2: 88 bytes, up to `cgroup`), encoded
 * before the fork sweep so that the clone allocates nothing (DESIGN.md §4).
 */
import { C } from "./mod.ts";

const SIZE = 88;
const FLAGS = 0;
const PARENT_TID = 24;
const EXIT_SIGNAL = 32;
const CGROUP = 80;

/**
 * clone(2)'s `flags` as clone3 takes them: the low byte (the exit signal) apart, and
 * CLONE_INTO_CGROUP with `cgroupFd`, an fd of the cgroup v2 directory the child is born in;
 * `parentTid`, the address CLONE_PARENT_SETTID stores the child's pid at (0: none).
 */
export function cloneArgs(flags: number, cgroupFd: number, parentTid = 0n): Uint8Array {
  const b = new Uint8Array(SIZE);
  const v = new DataView(b.buffer);
  const signal = flags & 0xff;
  v.setBigUint64(FLAGS, BigInt(flags - signal) | BigInt(C.CLONE_INTO_CGROUP), true);
  v.setBigUint64(EXIT_SIGNAL, BigInt(signal), true);
  v.setBigUint64(CGROUP, BigInt(cgroupFd), true);
  v.setBigUint64(PARENT_TID, parentTid, true);
  return b;
}
