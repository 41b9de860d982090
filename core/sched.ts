/**
 * The OCI process fields micro hands to the kernel as they are: the scheduler (sched_setattr's
 * `struct sched_attr`) and the I/O priority. Names and numbers from <linux/sched.h> and
 * <linux/ioprio.h>.
 */
import type { SchedAttr } from "./spec.ts";

export const SCHED_POLICIES: Record<string, number> = {
  SCHED_OTHER: 0,
  SCHED_FIFO: 1,
  SCHED_RR: 2,
  SCHED_BATCH: 3,
  SCHED_ISO: 4,
  SCHED_IDLE: 5,
  SCHED_DEADLINE: 6,
};

export const SCHED_FLAGS: Record<string, number> = {
  SCHED_FLAG_RESET_ON_FORK: 0x01,
  SCHED_FLAG_RECLAIM: 0x02,
  SCHED_FLAG_DL_OVERRUN: 0x04,
  SCHED_FLAG_KEEP_POLICY: 0x08,
  SCHED_FLAG_KEEP_PARAMS: 0x10,
  SCHED_FLAG_UTIL_CLAMP_MIN: 0x20,
  SCHED_FLAG_UTIL_CLAMP_MAX: 0x40,
};

export const IOPRIO_CLASSES: Record<string, number> = {
  IOPRIO_CLASS_RT: 1,
  IOPRIO_CLASS_BE: 2,
  IOPRIO_CLASS_IDLE: 3,
};

/** SCHED_ATTR_SIZE_VER0: size, policy, flags, nice, priority, runtime, deadline, period. */
const SIZE = 48;

/** `struct sched_attr`, encoded in the parent (the child allocates nothing). */
export function schedAttr(a: SchedAttr): Uint8Array {
  const b = new Uint8Array(SIZE);
  const v = new DataView(b.buffer);
  v.setUint32(0, SIZE, true);
  v.setUint32(4, a.policy, true);
  v.setBigUint64(8, BigInt(a.flags), true);
  v.setInt32(16, a.nice, true);
  v.setUint32(20, a.priority, true);
  v.setBigUint64(24, BigInt(a.runtime), true);
  v.setBigUint64(32, BigInt(a.deadline), true);
  v.setBigUint64(40, BigInt(a.period), true);
  return b;
}

/** runc's largest CPU (and node) number in a list (ToCPUSet's limit). */
export const CPU_LIST_MAX = 65536;

/**
 * A CPU or NUMA node list as runc's ToCPUSet reads it: "0-3,7", commas and spaces around
 * items allowed, empty items skipped, no spaces inside a range, start ≤ end. The numbers,
 * sorted, without repeats; a string saying what is wrong instead when it is not a list.
 */
export function parseCpuList(text: string, max = CPU_LIST_MAX): number[] | string {
  const out = new Set<number>();
  let items = 0;
  for (const raw of text.split(",")) {
    const item = raw.trim();
    if (!item) continue;
    items++;
    const m = /^([0-9]+)(?:-([0-9]+))?$/.exec(item);
    if (!m) return `"${item}" is not a number or a range N-M`;
    const from = Number(m[1]);
    const to = m[2] === undefined ? from : Number(m[2]);
    if (to > max) return `${to} is above ${max}`;
    if (from > to) return `"${item}": the range ends before it starts`;
    for (let k = from; k <= to; k++) out.add(k);
  }
  if (!items) return "no number in the list";
  return [...out].sort((a, b) => a - b);
}

/**
 * A bitmap of `bits` (CPUs for sched_setaffinity, nodes for set_mempolicy): whole 64-bit
 * words, little-endian as the kernel reads unsigned longs on x86_64 and aarch64, in a
 * backing store of at least a page so V8 never moves it (the child passes it to the kernel).
 */
export function bitmask(bits: readonly number[]): Uint8Array {
  const top = bits.length ? bits[bits.length - 1] : 0;
  const len = (Math.floor(top / 64) + 1) * 8;
  const out = new Uint8Array(Math.max(len, 4096)).subarray(0, len);
  for (const b of bits) out[b >> 3] |= 1 << (b & 7);
  return out;
}

/** set_mempolicy(2)'s modes (<linux/mempolicy.h>). */
export const MPOL_MODES: Record<string, number> = {
  MPOL_DEFAULT: 0,
  MPOL_PREFERRED: 1,
  MPOL_BIND: 2,
  MPOL_INTERLEAVE: 3,
  MPOL_LOCAL: 4,
  MPOL_PREFERRED_MANY: 5,
  MPOL_WEIGHTED_INTERLEAVE: 6,
};

/** set_mempolicy(2)'s mode flags, or'ed into the mode. */
export const MPOL_FLAGS: Record<string, number> = {
  MPOL_F_STATIC_NODES: 1 << 15,
  MPOL_F_RELATIVE_NODES: 1 << 14,
  MPOL_F_NUMA_BALANCING: 1 << 13,
};

/** Linux's largest NUMA node count (CONFIG_NODES_SHIFT at most 10). */
export const NUMA_NODES_MAX = 1024;
