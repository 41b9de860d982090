/**
 * cgroups: how much the container may use. Docker's limits (cpu, memory, pids, block I/O)
 * and a device allow-list, written to a cgroup per run under a shared parent (`micro`),
 * on whichever layout the host has: cgroup v2, v1, or hybrid (v1 controllers beside an
 * empty v2 mount). The parent creates the cgroup and joins the child to it while the child
 * waits, so nothing of the container runs outside its limits; cleanup kills what is left
 * (cgroup.kill on v2, freeze then kill on v1) and removes it.
 */
import { DEFAULT_DEVICES, type DeviceRule, v1Rules } from "../core/cgroups/devfilter.ts";
import {
  PAGE_SIZE,
  type Resources,
  unifiedControllers,
  unifiedKeyProblem,
  v1Controllers,
  v1Writes,
  v2Controllers,
  v2Ignored,
  v2Writes,
  type Write,
} from "../core/cgroups/resources.ts";
import {
  formatBytes,
  memorySizeCheck,
  MIN_MEMORY,
  parseCpuList,
  parseDevice,
  parseDeviceRate,
  parseSize,
  sizeCheck,
} from "../core/cgroups/units.ts";
import { MicroError } from "../core/errors.ts";
import { type Op, op } from "../core/ops.ts";
import type { HostInfo, Plugin } from "../core/plugin.ts";
import { clonePlain, hasNamespace, type Spec } from "../core/spec.ts";
import type { Schema } from "../core/schema_types.ts";

export interface CgroupsOptions {
  cpus?: number | string;
  cpuShares?: number;
  cpuWeight?: number;
  cpusetCpus?: string;
  cpusetMems?: string;
  memory?: string | number;
  memorySwap?: string | number;
  memoryReservation?: string | number;
  pidsLimit?: number;
  blkioWeight?: number;
  deviceReadBps?: string[];
  deviceWriteBps?: string[];
  deviceReadIops?: string[];
  deviceWriteIops?: string[];
  devices?: string[];
  parent?: string;
  /** Fail instead of running without limits when this host cannot apply them. */
  required?: boolean;
  /** No OOM killer in the container's memory cgroup (v1 only; v2 has no such switch). */
  oomKillDisable?: boolean;
  /** The same limits in the OCI runtime spec's `linux.resources` form. */
  resources?: OciResources;
  /** The container's cgroup at /sys/fs/cgroup: ro (default), rw, or none. */
  mount?: "ro" | "rw" | "none";
}

/** OCI `linux.resources`, as far as micro applies it. */
export interface OciResources {
  cpu?: {
    shares?: number;
    quota?: number;
    period?: number;
    cpus?: string;
    mems?: string;
    realtimeRuntime?: number;
    realtimePeriod?: number;
    idle?: number;
    burst?: number;
  };
  memory?: { limit?: number; reservation?: number; swap?: number; swappiness?: number };
  pids?: { limit: number };
  hugepageLimits?: { pageSize: string; limit: number }[];
  network?: { classID?: number; priorities?: { name: string; priority: number }[] };
  rdma?: Record<string, { hcaHandles?: number; hcaObjects?: number }>;
  unified?: Record<string, string>;
  blockIO?: {
    weight?: number;
    leafWeight?: number;
    weightDevice?: { major: number; minor: number; weight?: number; leafWeight?: number }[];
    throttleReadBpsDevice?: { major: number; minor: number; rate: number }[];
    throttleWriteBpsDevice?: { major: number; minor: number; rate: number }[];
    throttleReadIOPSDevice?: { major: number; minor: number; rate: number }[];
    throttleWriteIOPSDevice?: { major: number; minor: number; rate: number }[];
  };
  devices?: {
    allow: boolean;
    type?: "a" | "b" | "c";
    major?: number;
    minor?: number;
    access?: string;
  }[];
}

const int = (min?: number, max?: number): Schema => ({ type: "integer", min, max });
const throttle: Schema = {
  type: "list",
  items: {
    type: "object",
    fields: { major: int(0), minor: int(0), rate: int(1) },
  },
};
export const OCI_RESOURCES: Schema = {
  type: "object",
  doc: "the OCI runtime spec's linux.resources (cpu, memory, pids, blockIO, devices, " +
    "hugepageLimits, network, rdma, unified)",
  fields: {
    cpu: {
      type: "object",
      fields: {
        shares: int(2, 262144),
        quota: int(-1),
        period: int(1000, 1000000),
        cpus: { type: "string", check: (v) => parseCpuList(v) ? undefined : "expected 0-3,5" },
        mems: { type: "string", check: (v) => parseCpuList(v) ? undefined : "expected 0-3,5" },
        realtimeRuntime: int(-1),
        realtimePeriod: int(0),
        // cpu.idle takes 0 or 1; the kernel's limit on a burst is the quota.
        idle: int(0, 1),
        burst: int(0),
      },
    },
    memory: {
      type: "object",
      // swappiness: runc's range; -1 leaves the kernel's value.
      fields: { limit: int(-1), reservation: int(-1), swap: int(-1), swappiness: int(-1, 100) },
    },
    pids: { type: "object", fields: { limit: int(-1) } },
    hugepageLimits: {
      type: "list",
      items: {
        type: "object",
        fields: {
          pageSize: {
            type: "string",
            check: (v) => PAGE_SIZE.test(v) ? undefined : "expected a size like 2MB or 1GB",
          },
          limit: int(0),
        },
      },
    },
    network: {
      type: "object",
      fields: {
        classID: int(0, 0xffffffff),
        priorities: {
          type: "list",
          items: {
            type: "object",
            fields: {
              name: {
                type: "string",
                check: (v) => /^[^\s/]{1,15}$/.test(v) ? undefined : "expected an interface name",
              },
              priority: int(0, 0xffffffff),
            },
          },
        },
      },
    },
    rdma: {
      type: "map",
      keyCheck: (k) => /^[^\s/]+$/.test(k) ? undefined : "expected an RDMA device name",
      values: {
        type: "object",
        fields: { hcaHandles: int(0, 0xffffffff), hcaObjects: int(0, 0xffffffff) },
      },
    },
    unified: {
      type: "map",
      keyCheck: unifiedKeyProblem,
      values: {
        type: "string",
        check: (v) => v.includes("\0") ? "a NUL byte in the value" : undefined,
      },
    },
    blockIO: {
      type: "object",
      fields: {
        weight: int(10, 1000),
        leafWeight: int(10, 1000),
        weightDevice: {
          type: "list",
          items: {
            type: "object",
            fields: {
              major: int(0),
              minor: int(0),
              weight: int(10, 1000),
              leafWeight: int(10, 1000),
            },
          },
        },
        throttleReadBpsDevice: throttle,
        throttleWriteBpsDevice: throttle,
        throttleReadIOPSDevice: throttle,
        throttleWriteIOPSDevice: throttle,
      },
    },
    devices: {
      type: "list",
      items: {
        type: "object",
        fields: {
          allow: { type: "boolean" },
          type: { type: "string", enum: ["a", "b", "c"] },
          major: int(0),
          minor: int(0),
          access: {
            type: "string",
            check: (v) => /^[rwm]{1,3}$/.test(v) ? undefined : "a mix of r, w and m",
          },
        },
      },
    },
  },
};

/** A memory limit or reservation: 0 (no limit) or at least 6m (MIN_MEMORY). */
const memorySize: Schema = {
  type: "oneOf",
  options: [
    { type: "string", check: memorySizeCheck },
    { type: "integer", min: 0, check: memorySizeCheck },
  ],
};
const rateList = (iops: boolean) => ({
  type: "list",
  items: {
    type: "string",
    check: (v: string) => {
      const r = parseDeviceRate(v, iops);
      return typeof r === "string" ? r : undefined;
    },
  },
} as const);
const cpuList = {
  type: "string",
  check: (v: string) => parseCpuList(v) ? undefined : "expected a list like 0-3,5",
} as const;

const DEFAULT_PARENT = "micro";

/** The OCI runtime's parent for a container whose config names no cgroupsPath. */
export const OCI_PARENT = "micro-oci";

const V1_ALWAYS = ["cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids"];

export const cgroups: Plugin<CgroupsOptions> = {
  name: "cgroups",
  description: "resource limits: cpu, memory, pids, block I/O and a device allow-list",
  schema: {
    type: "object",
    fields: {
      cpus: {
        type: "oneOf",
        doc: "CPUs the container may use, e.g. 1.5 (quota over period)",
        options: [
          { type: "number", min: 0.001 },
          {
            type: "string",
            check: (v) =>
              /^\d+(\.\d+)?$/.test(v) && Number(v) > 0 ? undefined : "expected a number of CPUs",
          },
        ],
      },
      cpuShares: { type: "integer", min: 2, max: 262144, doc: "relative CPU weight (v1 shares)" },
      cpuWeight: { type: "integer", min: 1, max: 10000, doc: "relative CPU weight (v2)" },
      cpusetCpus: { ...cpuList, doc: "CPUs to run on" },
      cpusetMems: { ...cpuList, doc: "memory nodes to use" },
      memory: { ...memorySize, doc: "memory limit (0: none; at least 6m)" },
      memorySwap: {
        type: "oneOf",
        doc: "memory plus swap limit (-1: unlimited swap)",
        options: [{ type: "string", check: sizeCheck }, { type: "integer", min: -1 }],
      },
      memoryReservation: { ...memorySize, doc: "soft memory limit (0: none; at least 6m)" },
      pidsLimit: { type: "integer", min: -1, doc: "most processes at once (-1: unlimited)" },
      blkioWeight: { type: "integer", min: 10, max: 1000, doc: "relative block I/O weight" },
      deviceReadBps: { ...rateList(false), doc: "DEVICE:RATE read bytes per second" },
      deviceWriteBps: { ...rateList(false), doc: "DEVICE:RATE write bytes per second" },
      deviceReadIops: { ...rateList(true), doc: "DEVICE:RATE read operations per second" },
      deviceWriteIops: { ...rateList(true), doc: "DEVICE:RATE write operations per second" },
      devices: {
        type: "list",
        doc: "HOST[:CONTAINER][:rwm] devices added to the default ones",
        items: {
          type: "string",
          check: (v) => {
            const d = parseDevice(v);
            return typeof d === "string" ? d : undefined;
          },
        },
      },
      parent: {
        type: "string",
        doc: "the cgroup the container's goes under (default micro)",
        check: (v) =>
          /^[A-Za-z0-9_.@-]+(\/[A-Za-z0-9_.@-]+)*$/.test(v) && !v.split("/").includes("..")
            ? undefined
            : "expected a relative cgroup path like micro or web/api",
      },
      required: { type: "boolean", doc: "fail when the host cannot apply the limits" },
      oomKillDisable: {
        type: "boolean",
        doc: "no OOM killer for the container (cgroup v1; v2 has none: a warning)",
      },
      resources: OCI_RESOURCES,
      mount: {
        type: "string",
        enum: ["ro", "rw", "none"],
        doc: "the container's cgroup at /sys/fs/cgroup (with a cgroup namespace): ro, rw, none",
      },
    },
  },
  configure(o, spec) {
    const r: Resources = {};
    if (o.cpus !== undefined) {
      const period = 100000;
      r.cpu = { period, quota: Math.round(Number(o.cpus) * period) };
    }
    if (o.cpuShares) r.cpu = { ...r.cpu, shares: o.cpuShares };
    if (o.cpuWeight) r.cpu = { ...r.cpu, weight: o.cpuWeight };
    if (o.cpusetCpus) r.cpu = { ...r.cpu, cpus: o.cpusetCpus };
    if (o.cpusetMems) r.cpu = { ...r.cpu, mems: o.cpusetMems };
    const mem: NonNullable<Resources["memory"]> = {};
    // 0 is no limit, as Docker's --memory 0.
    if (o.memory !== undefined && parseSize(o.memory) !== 0) mem.limit = parseSize(o.memory);
    if (o.memorySwap !== undefined) {
      mem.swap = o.memorySwap === -1 || o.memorySwap === "-1" ? -1 : parseSize(o.memorySwap);
    }
    if (o.memoryReservation !== undefined && parseSize(o.memoryReservation) !== 0) {
      mem.reservation = parseSize(o.memoryReservation);
    }
    if (Object.keys(mem).length) r.memory = mem;
    if (o.pidsLimit !== undefined) r.pids = { limit: o.pidsLimit };
    if (o.blkioWeight) r.blockIO = { weight: o.blkioWeight };
    // The OCI form, for those who have a config.json's `linux.resources`: it wins.
    const oci = o.resources ?? {};
    if (oci.cpu) r.cpu = { ...r.cpu, ...oci.cpu };
    if (oci.memory) r.memory = { ...r.memory, ...oci.memory };
    if (oci.pids) r.pids = { ...oci.pids };
    if (oci.blockIO) r.blockIO = { ...r.blockIO, ...oci.blockIO };
    if (oci.hugepageLimits?.length) r.hugepageLimits = [...oci.hugepageLimits];
    if (oci.network) r.network = { ...oci.network };
    if (oci.rdma && Object.keys(oci.rdma).length) r.rdma = { ...oci.rdma };
    if (oci.unified && Object.keys(oci.unified).length) r.unified = { ...oci.unified };
    if (oci.devices) spec.micro.ociDevices = [...oci.devices];
    spec.linux.resources = r;
    if (o.oomKillDisable) spec.micro.oomKillDisable = true;
    spec.micro.cgroupLimits = !!o.oomKillDisable || Object.keys(r).length > 0 ||
      !!oci.devices?.length ||
      [o.deviceReadBps, o.deviceWriteBps, o.deviceReadIops, o.deviceWriteIops].some((l) =>
        l?.length
      );
    spec.micro.cgroup = {
      parent: o.parent ?? DEFAULT_PARENT,
      required: o.required ?? false,
      mount: o.mount ?? "ro",
      rates: {
        readBps: (o.deviceReadBps ?? []).map((v) => parseDeviceRate(v, false) as DevRate),
        writeBps: (o.deviceWriteBps ?? []).map((v) => parseDeviceRate(v, false) as DevRate),
        readIops: (o.deviceReadIops ?? []).map((v) => parseDeviceRate(v, true) as DevRate),
        writeIops: (o.deviceWriteIops ?? []).map((v) => parseDeviceRate(v, true) as DevRate),
      },
    };
    for (const d of o.devices ?? []) {
      const dev = parseDevice(d);
      if (typeof dev !== "string") {
        spec.linux.devices.push({ path: dev.container, hostPath: dev.host, access: dev.access });
      }
    }
  },
  check: (spec, host) => problems(spec, host).errors,
  plan(spec: Spec, host: HostInfo): Op[] {
    const { resources, warning } = problems(spec, host);
    if (warning) return [op("prepare", "cgroups", "skipped", { what: "cgroups", reason: warning })];
    const ops = host.cgroup.mode === "v2"
      ? planV2(spec, host, resources!)
      : planV1(spec, host, resources!);
    return [...ops, ...sysfsMount(spec, host)];
  },
};

type DevRate = { path: string; rate: number };

/** Everything the host cannot honour, or the resources with device numbers filled in. */
function problems(
  spec: Spec,
  host: HostInfo,
): { errors: MicroError[]; warning?: string; resources?: Resources } {
  const c = spec.micro.cgroup!;
  const errors: MicroError[] = [];
  const err = (option: string, why: string, hint?: string) =>
    errors.push(new MicroError(`--${option}: ${why}`, { phase: "check", plugin: "cgroups", hint }));
  limitValues(spec.linux.resources ?? {}, host, err);
  const layout = host.cgroup;
  if (layout.mode === "none" || !layout.writable) {
    const why = layout.mode === "none"
      ? "this host has no cgroup file system"
      : host.uid !== 0
      ? "a rootless caller needs a cgroup v2 subtree delegated to it (systemd user slice)"
      : "the cgroup hierarchy is not writable";
    if (c.required) {
      errors.push(
        new MicroError(`resource limits cannot be applied: ${why}`, {
          phase: "check",
          plugin: "cgroups",
          hint: "run as root, or drop `required`",
        }),
      );
      return { errors };
    }
    return { errors, warning: `running without resource limits: ${why}` };
  }
  const r: Resources = clonePlain(spec.linux.resources ?? {});
  // Devices: the default allow-list, then each added device, by its numbers on the host.
  const devices: DeviceRule[] = [...DEFAULT_DEVICES];
  for (const d of spec.linux.devices) {
    if (d.node) continue; // OCI's: allowed by its linux.resources.devices, if at all
    const info = host.deviceNodes[d.hostPath];
    if (!info) {
      err("device", `"${d.hostPath}" is not a device on this host`);
      continue;
    }
    devices.push({
      allow: true,
      type: info.type,
      major: info.major,
      minor: info.minor,
      access: d.access,
    });
  }
  // OCI device rules after the defaults and --device: later rules win.
  for (const d of spec.micro.ociDevices ?? []) {
    devices.push({
      allow: d.allow,
      type: d.type ?? "a",
      major: d.major ?? null,
      minor: d.minor ?? null,
      access: d.access ?? "rwm",
    });
  }
  // An OCI config.json's rules come first (runc's order): the defaults and its own devices
  // stay usable after its usual "deny all".
  if (spec.micro.oci) {
    const own = devices.length - (spec.micro.ociDevices?.length ?? 0);
    devices.unshift(...devices.splice(own));
  }
  r.devices = devices;
  const rate = (list: DevRate[], option: string) =>
    list.flatMap((d) => {
      const info = host.deviceNodes[d.path];
      if (!info || info.type !== "b") {
        err(option, `"${d.path}" is not a block device on this host`);
        return [];
      }
      return [{ major: info.major, minor: info.minor, rate: d.rate }];
    });
  const io = { ...(r.blockIO ?? {}) };
  const rates = c.rates;
  if (rates.readBps.length) io.throttleReadBpsDevice = rate(rates.readBps, "device-read-bps");
  if (rates.writeBps.length) io.throttleWriteBpsDevice = rate(rates.writeBps, "device-write-bps");
  if (rates.readIops.length) io.throttleReadIOPSDevice = rate(rates.readIops, "device-read-iops");
  if (rates.writeIops.length) {
    io.throttleWriteIOPSDevice = rate(rates.writeIops, "device-write-iops");
  }
  if (Object.keys(io).length) r.blockIO = io;
  // cpuset within what the host has.
  for (
    const [option, list, have] of [
      ["cpuset-cpus", r.cpu?.cpus, host.cpus],
      ["cpuset-mems", r.cpu?.mems, host.mems],
    ] as const
  ) {
    if (!list) continue;
    const want = parseCpuList(list) ?? [];
    const avail = parseCpuList(have) ?? [];
    const missing = want.filter((n) => !avail.includes(n));
    if (missing.length) err(option, `${missing.join(",")} not on this host (it has ${have})`);
  }
  // Every limit needs its controller.
  const names: Record<string, string> = {
    cpu: "cpus/cpu-shares",
    cpuset: "cpuset-cpus/cpuset-mems",
    memory: "memory",
    pids: "pids-limit",
    blkio: "blkio-weight/device-*",
    io: "blkio-weight/device-*",
    devices: "device",
    hugetlb: "resources.hugepageLimits",
    net_cls: "resources.network.classID",
    net_prio: "resources.network.priorities",
    rdma: "resources.rdma",
  };
  if (layout.mode === "v2") {
    const fromUnified = new Set(unifiedControllers(r));
    for (const ctl of v2Controllers(r)) {
      if (!layout.v2!.controllers.includes(ctl)) {
        // A unified key's own controller: named by the key, as runc names it.
        const key = fromUnified.has(ctl)
          ? Object.keys(r.unified!).find((k) => k.startsWith(`${ctl}.`))
          : undefined;
        err(
          key ? `resources.unified.${key}` : names[ctl] ?? ctl,
          `the ${ctl} controller is not available in this cgroup v2 tree`,
          key ? `${layout.v2!.mount}/cgroup.controllers lists the host's controllers` : undefined,
        );
      }
    }
  } else {
    // runc: "cannot use unified on cgroup v1" (a hybrid host's v2 tree has no controllers).
    if (r.unified && Object.keys(r.unified).length) {
      err(
        "resources.unified",
        `this host is cgroup ${layout.mode}: unified keys need cgroup v2`,
        "use the v1 fields (memory, cpu, ...) or a cgroup v2 host",
      );
    }
    for (const ctl of v1Controllers(r)) {
      if (!layout.v1[ctl]) {
        err(names[ctl] ?? ctl, `the ${ctl} controller is not mounted (cgroup v1)`);
      }
    }
  }
  if (r.memory?.swap === -1 && layout.mode !== "v2" && !host.swapAccounting) {
    delete r.memory.swap; // unlimited swap is what such a kernel gives anyway (as Docker)
  }
  if (r.memory?.swap !== undefined && layout.mode !== "v2" && r.memory.swap > 0) {
    if (!host.swapAccounting) {
      err(
        "memory-swap",
        "this kernel does not account swap (memory.memsw.*)",
        "boot with swapaccount=1",
      );
    }
  }
  return { errors, resources: r };
}

/** The kernel's smallest CFS quota (1 ms): 0.01 CPU over micro's 100 ms period. */
const MIN_QUOTA_US = 1000;

/**
 * The limits Docker refuses before a run, with its reasons: memory below 6 MiB (the kernel
 * would kill the container's first process before it execs), a memory-plus-swap limit
 * without a memory limit or below it, and more CPUs than the host has.
 */
function limitValues(
  r: Resources,
  host: HostInfo,
  err: (option: string, why: string, hint?: string) => void,
): void {
  const mem = r.memory ?? {};
  const floors: [string, number | undefined, string][] = [
    ["memory", mem.limit, ": the container's first process could not start in less"],
    ["memory-reservation", mem.reservation, ""],
  ];
  for (const [option, value, why] of floors) {
    if (value !== undefined && value > 0 && value < MIN_MEMORY) {
      err(
        option,
        `${formatBytes(value)} is below the minimum of 6 MiB${why}`,
        "give at least 6m, Docker's minimum too, or 0 for no limit",
      );
    }
  }
  if (mem.swap !== undefined && mem.swap > 0) {
    if (!mem.limit || mem.limit < 0) {
      err("memory-swap", "needs --memory: it is memory plus swap", "set --memory too");
    } else if (mem.swap < mem.limit) {
      err(
        "memory-swap",
        `${formatBytes(mem.swap)} is below --memory ${formatBytes(mem.limit)}: it is memory ` +
          "plus swap",
        "give at least the memory limit, or -1 for unlimited swap",
      );
    }
  }
  const cpu = r.cpu ?? {};
  const cpus = parseCpuList(host.cpus)?.length ?? 0;
  if (cpu.quota !== undefined && cpu.quota > 0 && cpus > 0) {
    const period = cpu.period && cpu.period > 0 ? cpu.period : 100000;
    const want = cpu.quota / period;
    if (want > cpus || cpu.quota < MIN_QUOTA_US) {
      err(
        "cpus",
        `${Number(want.toFixed(3))} is out of range: the range of CPUs is from 0.01 to ` +
          `${cpus}.00, as there ${cpus === 1 ? "is only 1 CPU" : `are only ${cpus} CPUs`} ` +
          `available (${host.cpus} online)`,
      );
    }
  }
}

/**
 * /sys/fs/cgroup for programs that read their own limits (the JVM, Go, .NET), as Docker
 * mounts it: only with a cgroup namespace, whose root is the container's cgroup (else the
 * mount would show micro's own cgroup and the host's above it), and on v1 only the
 * hierarchies the container has a cgroup of its own in.
 */
function sysfsMount(spec: Spec, host: HostInfo): Op[] {
  const mode = spec.micro.cgroup?.mount ?? "ro";
  if (mode === "none" || !hasNamespace(spec, "cgroup") || !hasNamespace(spec, "mount")) return [];
  const readonly = mode === "ro";
  if (host.cgroup.mode === "v2") {
    return [op("rootfs", "cgroups", "cgroup-mount", { version: 2, hierarchies: [], readonly })];
  }
  const byDir = new Map<string, string[]>();
  for (const [ctl, dir] of Object.entries(host.cgroup.v1)) {
    byDir.set(dir, [...(byDir.get(dir) ?? []), ctl]);
  }
  const dirs = [
    ...new Set(V1_ALWAYS.filter((c) => host.cgroup.v1[c]).map((c) => host.cgroup.v1[c])),
  ];
  const hierarchies = dirs.map((dir) => {
    const name = dir.slice(dir.lastIndexOf("/") + 1);
    const controllers = byDir.get(dir)!;
    return { name, controllers, links: controllers.filter((c) => c !== name) };
  });
  return [op("rootfs", "cgroups", "cgroup-mount", { version: 1, hierarchies, readonly })];
}

/**
 * micro's own parents (a run's `micro`, and `micro-oci` where the OCI runtime chose it for a
 * config that names none) are removed once empty; one the user named only if micro made it.
 */
const ownedParent = (c: { parent: string; ownParent?: boolean }) =>
  c.parent === DEFAULT_PARENT || c.ownParent === true;

function planV1(spec: Spec, host: HostInfo, r: Resources): Op[] {
  const c = spec.micro.cgroup!;
  const owned = ownedParent(c);
  const ops: Op[] = [];
  const cleanup: Op[] = [];
  // The usual controllers, and those only these limits need (hugetlb, net_cls, ...).
  const mounts = [...new Set([...V1_ALWAYS, ...v1Controllers(r)])].filter((ctl) =>
    host.cgroup.v1[ctl]
  );
  const dirOf = (ctl: string) => `${host.cgroup.v1[ctl]}/${c.parent}/${host.id}`;
  const seen = new Set<string>();
  for (const ctl of mounts) {
    const dir = dirOf(ctl);
    if (seen.has(dir)) continue; // co-mounted controllers (cpu,cpuacct) share a directory
    seen.add(dir);
    // Each level of the parent is shared with other runs: created if missing, removed
    // at the end only once empty.
    let level = host.cgroup.v1[ctl];
    for (const part of c.parent.split("/")) {
      level = `${level}/${part}`;
      ops.push(op("prepare", "cgroups", "cgroup-create", { path: level, shared: true, owned }));
      cleanup.push(op("cleanup", "cgroups", "cgroup-remove", { path: level, shared: true }));
      if (ctl === "cpuset") {
        // A new cpuset cgroup has no CPUs or nodes until given some.
        for (const [file, value] of [["cpuset.cpus", host.cpus], ["cpuset.mems", host.mems]]) {
          ops.push(op("prepare", "cgroups", "cgroup-write", {
            path: `${level}/${file}`,
            value,
            option: file === "cpuset.cpus" ? "cpuset-cpus" : "cpuset-mems",
            ifEmpty: true,
          }));
        }
      }
    }
    ops.push(op("prepare", "cgroups", "cgroup-create", { path: dir, shared: false }));
    if (ctl === "cpuset") {
      for (
        const [file, value] of [["cpuset.cpus", r.cpu?.cpus ?? host.cpus], [
          "cpuset.mems",
          r.cpu?.mems ?? host.mems,
        ]]
      ) {
        ops.push(
          op("prepare", "cgroups", "cgroup-write", {
            path: `${dir}/${file}`,
            value,
            option: file === "cpuset.cpus" ? "cpuset-cpus" : "cpuset-mems",
          }),
        );
      }
    }
    if (ctl === "devices") {
      const { deny, allow } = v1Rules(r.devices ?? []);
      // Deny everything first, then allow each rule (v1's allow-list semantics).
      for (const [file, lines] of [["devices.deny", deny], ["devices.allow", allow]] as const) {
        for (const value of lines) {
          ops.push(op("prepare", "cgroups", "cgroup-write", {
            path: `${dir}/${file}`,
            value,
            option: "device",
          }));
        }
      }
    }
    cleanup.push(op("cleanup", "cgroups", "cgroup-remove", { path: dir, shared: false }));
  }
  for (const w of v1Writes(r)) {
    if (w.controller === "cpuset") continue; // written above, before anyone joins
    ops.push(writeOp(dirOf(w.controller), w));
  }
  // Docker's --oom-kill-disable: tasks wait for memory instead of being killed.
  if (spec.micro.oomKillDisable && host.cgroup.v1.memory) {
    ops.push(op("prepare", "cgroups", "cgroup-write", {
      path: `${dirOf("memory")}/memory.oom_control`,
      value: "1",
      option: "oom-kill-disable",
    }));
  }
  for (const dir of seen) ops.push(op("attach", "cgroups", "cgroup-join", { path: dir }));
  if (r.memory?.limit !== undefined) {
    ops.push(
      op("supervise", "cgroups", "cgroup-oom", {
        path: `${dirOf("memory")}/memory.oom_control`,
        key: "oom_kill",
        limit: r.memory.limit,
      }),
    );
  }
  // Run in reverse: kill what is left (freezer), then remove each dir, then the parents.
  const freezer = host.cgroup.v1.freezer ? dirOf("freezer") : undefined;
  cleanup.push(
    op("cleanup", "cgroups", "cgroup-kill", {
      path: freezer ?? dirOf(mounts[0]),
      how: freezer ? "freezer" : "signal",
    }),
  );
  return [...ops, ...cleanup];
}

/** One of resources.ts's writes as the op that makes it in `dir`. */
function writeOp(dir: string, w: Write): Op {
  return op("prepare", "cgroups", "cgroup-write", {
    path: `${dir}/${w.file}`,
    value: w.value,
    option: w.option,
    ...(w.fallback
      ? { fallback: `${dir}/${w.fallback.file}`, fallbackValue: w.fallback.value }
      : {}),
    ...(w.optional ? { optional: true } : {}),
  });
}

function planV2(spec: Spec, host: HostInfo, r: Resources): Op[] {
  const c = spec.micro.cgroup!;
  const owned = ownedParent(c);
  const root = `${host.cgroup.v2!.mount}${host.cgroup.base}`;
  const parentDir = `${root}/${c.parent}`;
  const dir = `${parentDir}/${host.id}`;
  const enable = v2Controllers(r).filter((x) => host.cgroup.v2!.controllers.includes(x));
  const ops: Op[] = [];
  const cleanup: Op[] = [];
  // Each level from the root down must pass the controllers on to the next.
  const levels = [root];
  for (const part of c.parent.split("/")) levels.push(`${levels[levels.length - 1]}/${part}`);
  levels.forEach((level, i) => {
    if (i > 0) {
      ops.push(op("prepare", "cgroups", "cgroup-create", { path: level, shared: true, owned }));
      cleanup.push(op("cleanup", "cgroups", "cgroup-remove", { path: level, shared: true }));
    }
    if (enable.length) {
      ops.push(op("prepare", "cgroups", "cgroup-write", {
        path: `${level}/cgroup.subtree_control`,
        value: enable.map((x) => `+${x}`).join(" "),
        option: "cgroup-parent",
      }));
    }
  });
  ops.push(op("prepare", "cgroups", "cgroup-create", { path: dir, shared: false }));
  cleanup.push(op("cleanup", "cgroups", "cgroup-remove", { path: dir, shared: false }));
  for (const w of v2Writes(r)) ops.push(writeOp(dir, w));
  // As runc's fs2: what v2 has no file for is left unapplied, said here.
  for (const reason of v2Ignored(r)) {
    ops.push(op("prepare", "cgroups", "skipped", {
      what: reason.slice(0, reason.indexOf(":")),
      reason: `resources.${reason}: ignored (as runc)`,
    }));
  }
  ops.push(op("prepare", "cgroups", "cgroup-devices", { path: dir, rules: r.devices ?? [] }));
  if (spec.micro.oomKillDisable) {
    // As Docker on v2: the option is dropped with a warning.
    ops.push(op("prepare", "cgroups", "skipped", {
      what: "oom-kill-disable",
      reason: "--oom-kill-disable: cgroup v2 has no switch for the OOM killer: ignored",
    }));
  }
  ops.push(op("attach", "cgroups", "cgroup-join", { path: dir }));
  if (r.memory?.limit !== undefined) {
    ops.push(
      op("supervise", "cgroups", "cgroup-oom", {
        path: `${dir}/memory.events`,
        key: "oom_kill",
        limit: r.memory.limit,
      }),
    );
  }
  cleanup.push(op("cleanup", "cgroups", "cgroup-kill", { path: dir, how: "cgroup.kill" }));
  return [...ops, ...cleanup];
}
