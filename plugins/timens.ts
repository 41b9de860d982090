/**
 * timens: a time namespace whose CLOCK_MONOTONIC and CLOCK_BOOTTIME start at an offset (a
 * restored or migrated service sees its clocks go on; /proc/uptime shows the boot offset).
 * The child unshares it and writes the offsets before anything is in it; the command
 * enters it at execve (Linux 5.6+; entering at exec, 6.0+). CLOCK_REALTIME is never offset.
 */
import type { Plugin } from "../core/plugin.ts";
import { type Op, op } from "../core/ops.ts";
import type { Spec } from "../core/spec.ts";
import { addNamespace } from "./_ns.ts";

interface TimensOptions {
  /** Seconds added to CLOCK_MONOTONIC. */
  monotonic?: number;
  /** Seconds added to CLOCK_BOOTTIME (and /proc/uptime). */
  boottime?: number;
}

/** /proc/PID/timens_offsets' text: one "clock secs nanosecs" line per offset clock. */
export function offsetsText(offsets: Spec["linux"]["timeOffsets"]): string {
  return Object.entries(offsets ?? {})
    .map(([clock, o]) => `${clock} ${o!.secs} ${o!.nanosecs}\n`).join("");
}

export const timens: Plugin<TimensOptions> = {
  name: "timens",
  description: "own time namespace: monotonic and boot-time clocks offset",
  schema: {
    type: "object",
    fields: {
      monotonic: { type: "integer", doc: "seconds added to CLOCK_MONOTONIC" },
      boottime: { type: "integer", doc: "seconds added to CLOCK_BOOTTIME (/proc/uptime)" },
    },
  },
  configure(o, spec) {
    addNamespace(spec, "time");
    for (const clock of ["monotonic", "boottime"] as const) {
      if (o[clock] === undefined) continue;
      const offset = { secs: o[clock]!, nanosecs: 0 };
      spec.linux.timeOffsets = { ...spec.linux.timeOffsets, [clock]: offset };
    }
  },
  plan(spec) {
    const ops: Op[] = [op("rootfs", "timens", "unshare", { flag: "CLONE_NEWTIME" })];
    const text = offsetsText(spec.linux.timeOffsets);
    if (text) ops.push(op("rootfs", "timens", "time-offsets", { text }));
    return ops;
  },
};
