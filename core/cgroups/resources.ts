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

export interface WeightDevice {
  major: number;
  minor: number;
  weight?: number;
  leafWeight?: number;
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
    realtimeRuntime?: number;
    realtimePeriod?: number;
    idle?: number;
    burst?: number;
  };
  memory?: { limit?: number; swap?: number; reservation?: number; swappiness?: number };
  pids?: { limit?: number };
  blockIO?: {
    weight?: number;
    leafWeight?: number;
    weightDevice?: WeightDevice[];
    throttleReadBpsDevice?: DeviceRate[];
    throttleWriteBpsDevice?: DeviceRate[];
    throttleReadIOPSDevice?: DeviceRate[];
    throttleWriteIOPSDevice?: DeviceRate[];
  };
  devices?: DeviceRule[];
  /** OCI hugepageLimits: pageSize as the kernel names it in its files ("2MB", "1GB"). */
  hugepageLimits?: { pageSize: string; limit: number }[];
  /** OCI network: net_cls and net_prio (cgroup v1 only). */
  network?: { classID?: number; priorities?: { name: string; priority: number }[] };
  /** OCI rdma: device name to its limits. */
  rdma?: Record<string, { hcaHandles?: number; hcaObjects?: number }>;
  /** OCI unified: cgroup v2 file name to the value written (cgroup v2 only). */
  unified?: Record<string, string>;
}

export interface Write {
  /** v1 controller whose hierarchy holds the file; for v2 always "unified". */
  controller: string;
  file: string;
  value: string;
  /** The option the value comes from, for errors. */
  option: string;
  /** Written instead when `file` does not exist on this kernel (BFQ's files). */
  fallback?: { file: string; value: string };
  /** Skipped when the file does not exist on this kernel (hugetlb's rsvd files). */
  optional?: boolean;
}

/**
 * Why a `unified` key is refused, or undefined: it must be one file of the container's own
 * cgroup, CONTROLLER.PARAMETER (runc refuses a '/'; '.' and '..' would name a directory).
 */
export function unifiedKeyProblem(k: string): string | undefined {
  if (k.includes("/") || k.includes("\0") || k === "." || k === "..") {
    return "must be a file name of the container's cgroup (no '/', not '..')";
  }
  if (!/^[a-z_][a-z0-9_]*\.[A-Za-z0-9_.-]+$/.test(k)) {
    return "must be in the form CONTROLLER.PARAMETER, e.g. memory.high";
  }
  return undefined;
}

/** The v2 controllers `unified` keys write to ("cgroup." files belong to no controller). */
export function unifiedControllers(r: Resources): string[] {
  return [
    ...new Set(
      Object.keys(r.unified ?? {}).map((k) => k.split(".")[0]).filter((c) => c !== "cgroup"),
    ),
  ];
}

/** A hugepage size as the OCI spec and the kernel's file names give it: 2MB, 1GB, 64KB. */
export const PAGE_SIZE = /^[1-9][0-9]*[KMG]B$/;

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

const has = (v: unknown) => v !== undefined;

/** The v1 controllers the resources need (devices always: the allow-list is enforced). */
export function v1Controllers(r: Resources): string[] {
  const c = new Set<string>();
  const cpu = r.cpu ?? {};
  if (
    cpu.shares || cpu.weight || cpu.quota || cpu.period || cpu.realtimeRuntime ||
    cpu.realtimePeriod || has(cpu.idle) || has(cpu.burst)
  ) c.add("cpu");
  if (r.cpu?.cpus || r.cpu?.mems) c.add("cpuset");
  if (r.memory && Object.keys(r.memory).length) c.add("memory");
  if (r.pids?.limit !== undefined) c.add("pids");
  if (r.blockIO && Object.values(r.blockIO).some((v) => Array.isArray(v) ? v.length : v)) {
    c.add("blkio");
  }
  if (r.devices) c.add("devices");
  if (r.hugepageLimits?.length) c.add("hugetlb");
  if (has(r.network?.classID)) c.add("net_cls");
  if (r.network?.priorities?.length) c.add("net_prio");
  if (Object.keys(r.rdma ?? {}).length) c.add("rdma");
  return [...c];
}

/**
 * The v2 controllers to enable in the parents' cgroup.subtree_control: those of the
 * limits v2 has (net_cls and net_prio have no v2 form) and of each `unified` key.
 */
export function v2Controllers(r: Resources): string[] {
  const v1 = v1Controllers(r).filter((c) => !["devices", "net_cls", "net_prio"].includes(c))
    .map((c) => c === "blkio" ? "io" : c);
  return [...new Set([...v1, ...unifiedControllers(r)])];
}

/**
 * What cgroup v2 has no file for, which runc (fs2) leaves unapplied: said as a warning,
 * each with its reason.
 */
export function v2Ignored(r: Resources): string[] {
  const out: string[] = [];
  if (r.cpu?.realtimeRuntime || r.cpu?.realtimePeriod) {
    out.push("cpu.realtimeRuntime/realtimePeriod: cgroup v2 has no real-time bandwidth files");
  }
  if (has(r.memory?.swappiness) && r.memory!.swappiness !== -1) {
    out.push("memory.swappiness: cgroup v2 has no per-cgroup swappiness");
  }
  if (r.blockIO?.leafWeight || r.blockIO?.weightDevice?.some((d) => d.leafWeight)) {
    out.push("blockIO.leafWeight: cgroup v2 has no leaf weights");
  }
  if (has(r.network?.classID) || r.network?.priorities?.length) {
    out.push("network: net_cls and net_prio are cgroup v1 controllers (v2 has none)");
  }
  return out;
}

/** v1 and v2 write the same rdma.max line per device: the limits given, others unchanged. */
function rdmaLines(r: Resources): string[] {
  return Object.entries(r.rdma ?? {}).map(([dev, l]) =>
    [
      dev,
      ...(has(l.hcaHandles) ? [`hca_handle=${l.hcaHandles}`] : []),
      ...(has(l.hcaObjects) ? [`hca_object=${l.hcaObjects}`] : []),
    ].join(" ")
  );
}

const rates = (list: DeviceRate[] | undefined) => list ?? [];

export function v1Writes(r: Resources): Write[] {
  const w: Write[] = [];
  const add = (
    controller: string,
    file: string,
    value: string | number,
    option: string,
    more: Partial<Write> = {},
  ) => w.push({ controller, file, value: String(value), option, ...more });
  const cpu = r.cpu ?? {};
  // The real-time period before the runtime (runc's order: the runtime must fit the period).
  if (cpu.realtimePeriod) {
    add("cpu", "cpu.rt_period_us", cpu.realtimePeriod, "resources.cpu.realtimePeriod");
  }
  if (cpu.realtimeRuntime) {
    add("cpu", "cpu.rt_runtime_us", cpu.realtimeRuntime, "resources.cpu.realtimeRuntime");
  }
  // cpuset needs cpus and mems before a process may join; the caller copies the parent's.
  if (cpu.cpus) add("cpuset", "cpuset.cpus", cpu.cpus, "cpuset-cpus");
  if (cpu.mems) add("cpuset", "cpuset.mems", cpu.mems, "cpuset-mems");
  const shares = cpu.shares ?? (cpu.weight ? weightToShares(cpu.weight) : undefined);
  if (shares) add("cpu", "cpu.shares", shares, cpu.shares ? "cpu-shares" : "cpu-weight");
  if (cpu.period) add("cpu", "cpu.cfs_period_us", cpu.period, "cpus");
  if (cpu.quota) add("cpu", "cpu.cfs_quota_us", cpu.quota, "cpus");
  if (has(cpu.burst)) add("cpu", "cpu.cfs_burst_us", cpu.burst!, "resources.cpu.burst");
  if (has(cpu.idle)) add("cpu", "cpu.idle", cpu.idle!, "resources.cpu.idle");
  const mem = r.memory ?? {};
  // 0 means no limit, as in Docker (a new cgroup has none); -1 is v1's "unlimited".
  if (mem.limit) add("memory", "memory.limit_in_bytes", mem.limit, "memory");
  if (mem.swap) add("memory", "memory.memsw.limit_in_bytes", mem.swap, "memory-swap");
  if (mem.reservation !== undefined) {
    add("memory", "memory.soft_limit_in_bytes", mem.reservation, "memory-reservation");
  }
  // -1 leaves the kernel's value, as runc.
  if (has(mem.swappiness) && mem.swappiness !== -1) {
    add("memory", "memory.swappiness", mem.swappiness!, "resources.memory.swappiness");
  }
  if (r.pids?.limit !== undefined) {
    add("pids", "pids.max", r.pids.limit > 0 ? r.pids.limit : "max", "pids-limit");
  }
  const io = r.blockIO ?? {};
  if (io.weight) {
    add("blkio", "blkio.weight", io.weight, "blkio-weight", {
      // Kernels without CFQ have only BFQ's weight file, and only below the root.
      fallback: { file: "blkio.bfq.weight", value: String(io.weight) },
    });
  }
  if (io.leafWeight) {
    add("blkio", "blkio.leaf_weight", io.leafWeight, "resources.blockIO.leafWeight");
  }
  for (const d of io.weightDevice ?? []) {
    const dev = `${d.major}:${d.minor}`;
    if (d.weight) {
      const value = `${dev} ${d.weight}`;
      add("blkio", "blkio.weight_device", value, "resources.blockIO.weightDevice", {
        fallback: { file: "blkio.bfq.weight_device", value },
      });
    }
    if (d.leafWeight) {
      add(
        "blkio",
        "blkio.leaf_weight_device",
        `${dev} ${d.leafWeight}`,
        "resources.blockIO.weightDevice",
      );
    }
  }
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
  for (const h of r.hugepageLimits ?? []) {
    const option = "resources.hugepageLimits";
    add("hugetlb", `hugetlb.${h.pageSize}.limit_in_bytes`, h.limit, option);
    // Reservations too where the kernel has them (5.7+), as runc.
    add("hugetlb", `hugetlb.${h.pageSize}.rsvd.limit_in_bytes`, h.limit, option, {
      optional: true,
    });
  }
  const net = r.network ?? {};
  if (has(net.classID)) add("net_cls", "net_cls.classid", net.classID!, "resources.network");
  for (const p of net.priorities ?? []) {
    add("net_prio", "net_prio.ifpriomap", `${p.name} ${p.priority}`, "resources.network");
  }
  for (const line of rdmaLines(r)) add("rdma", "rdma.max", line, "resources.rdma");
  return w;
}

export function v2Writes(r: Resources): Write[] {
  const w: Write[] = [];
  const add = (file: string, value: string | number, option: string, more: Partial<Write> = {}) =>
    w.push({ controller: "unified", file, value: String(value), option, ...more });
  const cpu = r.cpu ?? {};
  if (cpu.cpus) add("cpuset.cpus", cpu.cpus, "cpuset-cpus");
  if (cpu.mems) add("cpuset.mems", cpu.mems, "cpuset-mems");
  // runc writes cpu.idle before the weight (an idle cgroup's weight is not its own).
  if (has(cpu.idle)) add("cpu.idle", cpu.idle!, "resources.cpu.idle");
  const weight = cpu.weight ?? (cpu.shares ? sharesToWeight(cpu.shares) : undefined);
  if (weight) add("cpu.weight", weight, cpu.weight ? "cpu-weight" : "cpu-shares");
  if (cpu.quota || cpu.period) {
    add(
      "cpu.max",
      `${cpu.quota && cpu.quota > 0 ? cpu.quota : "max"} ${cpu.period ?? 100000}`,
      "cpus",
    );
  }
  // After cpu.max: a burst above the quota is refused, and a new cgroup's quota is max.
  if (has(cpu.burst)) add("cpu.max.burst", cpu.burst!, "resources.cpu.burst");
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
  // Per-device weights: BFQ's file where the kernel has it (runc), else io.weight's
  // per-device line (iocost), on io.weight's scale.
  for (const d of io.weightDevice ?? []) {
    if (!d.weight) continue;
    const dev = `${d.major}:${d.minor}`;
    add("io.bfq.weight", `${dev} ${d.weight}`, "resources.blockIO.weightDevice", {
      fallback: { file: "io.weight", value: `${dev} ${blkioToIoWeight(d.weight)}` },
    });
  }
  for (const h of r.hugepageLimits ?? []) {
    add(`hugetlb.${h.pageSize}.max`, h.limit, "resources.hugepageLimits");
    add(`hugetlb.${h.pageSize}.rsvd.max`, h.limit, "resources.hugepageLimits", {
      optional: true,
    });
  }
  for (const line of rdmaLines(r)) add("rdma.max", line, "resources.rdma");
  // Last, as runc: a unified key may set what a field above set too, and wins.
  for (const [k, v] of Object.entries(r.unified ?? {})) add(k, v, `resources.unified.${k}`);
  return w;
}
