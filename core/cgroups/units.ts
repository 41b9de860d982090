/** Docker's spellings of sizes, rates and devices (`256m`, `/dev/sda:1mb`, `/dev/x:r`). */

const SIZE = /^(\d+(?:\.\d+)?)\s*([kmgtp])?i?b?$/i;
const MULT: Record<string, number> = { k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40, p: 2 ** 50 };

/** `256m`, `1g`, `1024`, `1.5GiB` → bytes (1024-based, as Docker's RAMInBytes). */
export function parseSize(text: string | number): number | undefined {
  if (typeof text === "number") return Number.isInteger(text) && text >= 0 ? text : undefined;
  const m = SIZE.exec(text.trim());
  if (!m) return undefined;
  return Math.floor(Number(m[1]) * (m[2] ? MULT[m[2].toLowerCase()] : 1));
}

export const sizeCheck = (v: string) =>
  parseSize(v) === undefined ? "expected a size like 256m, 1g or 1048576" : undefined;

/**
 * The least memory limit (and reservation) accepted, Docker's linuxMinMemory: below it the
 * container's first process dies before exec (killed by the OOM killer, or a mount fails).
 */
export const MIN_MEMORY = 6 * 2 ** 20;

/** A memory size: 0 means no limit (as Docker's), else at least MIN_MEMORY. */
export const memorySizeCheck = (v: string | number) => {
  const n = parseSize(v);
  if (n === undefined) return "expected a size like 256m, 1g or 1048576";
  return n !== 0 && n < MIN_MEMORY
    ? "below 6m, the least memory a container starts in (0: no limit)"
    : undefined;
};

/** `DEVICE:RATE` (`/dev/sda:1mb`); `iops` rates are plain integers. */
export function parseDeviceRate(
  text: string,
  iops: boolean,
): { path: string; rate: number } | string {
  const i = text.lastIndexOf(":");
  if (i <= 0) return "expected DEVICE:RATE, e.g. /dev/sda:1mb";
  const path = text.slice(0, i);
  const r = text.slice(i + 1);
  if (!path.startsWith("/")) return `the device "${path}" must be an absolute path`;
  const rate = iops ? (/^\d+$/.test(r) ? Number(r) : undefined) : parseSize(r);
  if (rate === undefined || rate <= 0) {
    return iops ? `the rate "${r}" must be a positive integer` : `the rate "${r}" must be a size`;
  }
  return { path, rate };
}

/** `HOST[:CONTAINER][:rwm]`, Docker's --device. */
export function parseDevice(
  text: string,
): { host: string; container: string; access: string } | string {
  const parts = text.split(":");
  if (parts.length > 3 || !parts[0]) return "expected HOST[:CONTAINER][:rwm]";
  const host = parts[0];
  let container = host;
  let access = "rwm";
  if (parts.length === 3) [, container, access] = parts;
  else if (parts.length === 2) {
    if (/^[rwm]+$/.test(parts[1])) access = parts[1];
    else container = parts[1];
  }
  if (!host.startsWith("/")) return `the host device "${host}" must be an absolute path`;
  if (!container.startsWith("/") || container.split("/").includes("..")) {
    return `the container path "${container}" must be absolute, without '..'`;
  }
  if (!/^[rwm]{1,3}$/.test(access)) return `the access "${access}" must be a mix of r, w and m`;
  return { host, container, access };
}

/** A CPU or memory-node list: `0-3,5`. Returns the numbers, or undefined when malformed. */
export function parseCpuList(text: string): number[] | undefined {
  const out: number[] = [];
  for (const part of text.trim().split(",")) {
    const m = /^(\d+)(?:-(\d+))?$/.exec(part);
    if (!m) return undefined;
    const a = Number(m[1]);
    const b = m[2] === undefined ? a : Number(m[2]);
    if (b < a || b > 65535) return undefined; // no host has more; refuse huge ranges
    for (let i = a; i <= b; i++) out.push(i);
  }
  return out;
}

/** A byte count in the largest unit that shows it exactly (`1.5 GiB`, `1025 bytes`). */
export function formatBytes(n: number): string {
  for (const [unit, size] of [["GiB", 2 ** 30], ["MiB", 2 ** 20], ["KiB", 2 ** 10]] as const) {
    if (n >= size && (n * 100) % size === 0) return `${n / size} ${unit}`;
  }
  return `${n} bytes`;
}
