/**
 * OCI `linux.resources` to the files each cgroup version wants, with the conversions runc
 * uses between them (shares ↔ weight, blkio weight ↔ io.weight). Pure.
 */
import type { DeviceRule } from "./devfilter.ts";

export interface DeviceRate {
  major: number;
  minor: number;
  rate: number;
}

export interface Resources {
  cpu?: {
    shares?: number;
    /** cgroup v2 cpu.weight (1..10000). */
    weight?: number;
    quota?: number;
    period?: number;
    cpus?: string;
    mems?: string;
  };
  memory?: { limit?: number; swap?: number; reservation?: number };
  pids?: { limit?: number };
  blockIO?: {
    weight?: number;
    throttleReadBpsDevice?: DeviceRate[];
    throttleWriteBpsDevice?: DeviceRate[];
    throttleReadIOPSDevice?: DeviceRate[];
    throttleWriteIOPSDevice?: DeviceRate[];
  };
  devices?: DeviceRule[];
}

export interface Write {
  /** v1 controller whose hierarchy holds the file; for v2 always "unified". */
  controller: string;
  file: string;
  value: string;
  /** The option the value comes from, for errors. */
  option: string;
}

/**
 * cpu.shares (2..262144) to cpu.weight (1..10000) as crun and runc >= 1.3.2 do: a curve
 * that keeps the default (1024 shares) at the default weight (100).
 */
export function sharesToWeight(shares: number): number {
  if (shares === 0) return 0;
  if (shares <= 2) return 1;
  if (shares >= 262144) return 10000;
  const l = Math.log2(shares);
  return Math.ceil(10 ** ((l * l + 125 * l) / 612 - 7 / 34));
}

/** The inverse of sharesToWeight, for --cpu-weight on a v1 host. */
export function weightToShares(weight: number): number {
  if (weight <= 1) return 2;
  if (weight >= 10000) return 262144;
  // Solve (l^2 + 125 l) / 612 - 7/34 = log10(w) for l = log2(shares).
  const c = (Math.log10(weight) + 7 / 34) * 612;
  const l = (-125 + Math.sqrt(125 * 125 + 4 * c)) / 2;
  return Math.round(2 ** l);
}

/** blkio.weight (10..1000) to io.weight (1..10000), as runc. */
export function blkioToIoWeight(w: number): number {
  return Math.floor(1 + ((w - 10) * 9999) / 990);
}

/** The v1 controllers the resources need (devices always: the allow-list is enforced). */
export function v1Controllers(r: Resources): string[] {
  const c = new Set<string>();
  if (r.cpu?.shares || r.cpu?.weight || r.cpu?.quota || r.cpu?.period) c.add("cpu");
  if (r.cpu?.cpus || r.cpu?.mems) c.add("cpuset");
  if (r.memory && Object.keys(r.memory).length) c.add("memory");
  if (r.pids?.limit !== undefined) c.add("pids");
  if (r.blockIO && Object.values(r.blockIO).some((v) => Array.isArray(v) ? v.length : v)) {
    c.add("blkio");
  }
  if (r.devices) c.add("devices");
  return [...c];
}

/** The v2 controllers to enable in the parents' cgroup.subtree_control. */
export function v2Controllers(r: Resources): string[] {
  return v1Controllers(r).filter((c) => c !== "devices").map((c) => c === "blkio" ? "io" : c);
}

const rates = (list: DeviceRate[] | undefined) => list ?? [];

export function v1Writes(r: Resources): Write[] {
  const w: Write[] = [];
  const add = (controller: string, file: string, value: string | number, option: string) =>
    w.push({ controller, file, value: String(value), option });
  const cpu = r.cpu ?? {};
  // cpuset needs cpus and mems before a process may join; the caller copies the parent's.
  if (cpu.cpus) add("cpuset", "cpuset.cpus", cpu.cpus, "cpuset-cpus");
  if (cpu.mems) add("cpuset", "cpuset.mems", cpu.mems, "cpuset-mems");
  const shares = cpu.shares ?? (cpu.weight ? weightToShares(cpu.weight) : undefined);
  if (shares) add("cpu", "cpu.shares", shares, cpu.shares ? "cpu-shares" : "cpu-weight");
  if (cpu.period) add("cpu", "cpu.cfs_period_us", cpu.period, "cpus");
  if (cpu.quota) add("cpu", "cpu.cfs_quota_us", cpu.quota, "cpus");
  const mem = r.memory ?? {};
  // 0 means no limit, as in Docker (a new cgroup has none); -1 is v1's "unlimited".
  if (mem.limit) add("memory", "memory.limit_in_bytes", mem.limit, "memory");
  if (mem.swap) add("memory", "memory.memsw.limit_in_bytes", mem.swap, "memory-swap");
  if (mem.reservation !== undefined) {
    add("memory", "memory.soft_limit_in_bytes", mem.reservation, "memory-reservation");
  }
  if (r.pids?.limit !== undefined) {
    add("pids", "pids.max", r.pids.limit > 0 ? r.pids.limit : "max", "pids-limit");
  }
  const io = r.blockIO ?? {};
  if (io.weight) add("blkio", "blkio.weight", io.weight, "blkio-weight");
  const dev = (d: DeviceRate) => `${d.major}:${d.minor} ${d.rate}`;
  for (const d of rates(io.throttleReadBpsDevice)) {
    add("blkio", "blkio.throttle.read_bps_device", dev(d), "device-read-bps");
  }
  for (const d of rates(io.throttleWriteBpsDevice)) {
    add("blkio", "blkio.throttle.write_bps_device", dev(d), "device-write-bps");
  }
  for (const d of rates(io.throttleReadIOPSDevice)) {
    add("blkio", "blkio.throttle.read_iops_device", dev(d), "device-read-iops");
  }
  for (const d of rates(io.throttleWriteIOPSDevice)) {
    add("blkio", "blkio.throttle.write_iops_device", dev(d), "device-write-iops");
  }
  return w;
}

export function v2Writes(r: Resources): Write[] {
  const w: Write[] = [];
  const add = (file: string, value: string | number, option: string) =>
    w.push({ controller: "unified", file, value: String(value), option });
  const cpu = r.cpu ?? {};
  if (cpu.cpus) add("cpuset.cpus", cpu.cpus, "cpuset-cpus");
  if (cpu.mems) add("cpuset.mems", cpu.mems, "cpuset-mems");
  const weight = cpu.weight ?? (cpu.shares ? sharesToWeight(cpu.shares) : undefined);
  if (weight) add("cpu.weight", weight, cpu.weight ? "cpu-weight" : "cpu-shares");
  if (cpu.quota || cpu.period) {
    add(
      "cpu.max",
      `${cpu.quota && cpu.quota > 0 ? cpu.quota : "max"} ${cpu.period ?? 100000}`,
      "cpus",
    );
  }
  const mem = r.memory ?? {};
  if (mem.limit !== undefined) add("memory.max", mem.limit > 0 ? mem.limit : "max", "memory");
  if (mem.swap !== undefined) {
    // Docker's --memory-swap is memory plus swap; v2's memory.swap.max is the swap alone.
    const swap = mem.swap < 0 ? "max" : Math.max(0, mem.swap - (mem.limit ?? 0));
    add("memory.swap.max", swap, "memory-swap");
  }
  if (mem.reservation !== undefined) add("memory.low", mem.reservation, "memory-reservation");
  if (r.pids?.limit !== undefined) {
    add("pids.max", r.pids.limit > 0 ? r.pids.limit : "max", "pids-limit");
  }
  const io = r.blockIO ?? {};
  if (io.weight) add("io.weight", `default ${blkioToIoWeight(io.weight)}`, "blkio-weight");
  // One io.max line per device with every limit set for it.
  const max = new Map<string, string[]>();
  const put = (list: DeviceRate[] | undefined, key: string) => {
    for (const d of rates(list)) {
      const k = `${d.major}:${d.minor}`;
      max.set(k, [...(max.get(k) ?? []), `${key}=${d.rate}`]);
    }
  };
  put(io.throttleReadBpsDevice, "rbps");
  put(io.throttleWriteBpsDevice, "wbps");
  put(io.throttleReadIOPSDevice, "riops");
  put(io.throttleWriteIOPSDevice, "wiops");
  for (const [dev, limits] of max) add("io.max", `${dev} ${limits.join(" ")}`, "device-*-bps/iops");
  return w;
}
