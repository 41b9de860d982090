/**
 * A running container's cgroup files, read live (v1 and v2): resource use for `micro stats`,
 * its processes for `micro top`, the freezer for `micro pause`/`unpause`. Which hierarchy
 * holds what is told by the files a directory has, not by its name (v1 controllers may be
 * co-mounted: cpu,cpuacct). Parsing is pure, over a reader, for tests.
 */

/** Reads a file, or undefined when it is not there. */
export type Reader = (path: string) => string | undefined;

export interface Sample {
  /** CPU time used, in nanoseconds. */
  cpuNs?: number;
  /** Memory used (without the inactive page cache, as Docker counts it) and its limit. */
  memUsage?: number;
  memLimit?: number;
  pids?: number;
  blockRead?: number;
  blockWrite?: number;
  netRx?: number;
  netTx?: number;
}

/** Bytes the kernel shows for "no limit" on v1 (PAGE_COUNTER_MAX pages, rounded). */
const V1_UNLIMITED = 2 ** 62;

function num(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const n = Number(text.trim());
  return Number.isFinite(n) ? n : undefined;
}

/** `key value` lines (memory.stat, cpu.stat) → a map. */
export function keyValues(text: string | undefined): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of (text ?? "").split("\n")) {
    const [k, v] = line.trim().split(/\s+/);
    if (k && v !== undefined && Number.isFinite(Number(v))) out.set(k, Number(v));
  }
  return out;
}

/** v1 blkio.throttle.io_service_bytes ("MAJ:MIN Read N") → read and write bytes. */
export function blkioV1(text: string | undefined): { read: number; write: number } | undefined {
  if (text === undefined) return undefined;
  let read = 0;
  let write = 0;
  for (const line of text.split("\n")) {
    const [dev, op, v] = line.trim().split(/\s+/);
    if (!dev?.includes(":")) continue;
    if (op === "Read") read += Number(v) || 0;
    if (op === "Write") write += Number(v) || 0;
  }
  return { read, write };
}

/** v2 io.stat ("MAJ:MIN rbytes=N wbytes=N ...") → read and write bytes. */
export function ioStatV2(text: string | undefined): { read: number; write: number } | undefined {
  if (text === undefined) return undefined;
  let read = 0;
  let write = 0;
  for (const line of text.split("\n")) {
    for (const kv of line.trim().split(/\s+/).slice(1)) {
      const [k, v] = kv.split("=");
      if (k === "rbytes") read += Number(v) || 0;
      if (k === "wbytes") write += Number(v) || 0;
    }
  }
  return { read, write };
}

/** /proc/PID/net/dev → received and sent bytes over every interface but lo. */
export function netDev(text: string | undefined): { rx: number; tx: number } | undefined {
  if (text === undefined) return undefined;
  let rx = 0;
  let tx = 0;
  for (const line of text.split("\n").slice(2)) {
    const colon = line.indexOf(":");
    if (colon < 0 || line.slice(0, colon).trim() === "lo") continue;
    const f = line.slice(colon + 1).trim().split(/\s+/).map(Number);
    rx += f[0] || 0;
    tx += f[8] || 0;
  }
  return { rx, tx };
}

/** MemTotal of /proc/meminfo in bytes: the limit of a container without one. */
export function memTotal(meminfo: string | undefined): number | undefined {
  const m = /^MemTotal:\s+(\d+) kB/m.exec(meminfo ?? "");
  return m ? Number(m[1]) * 1024 : undefined;
}

/**
 * One sample of the cgroup directories `dirs` (every hierarchy on v1, the one on v2) and
 * the init's network counters.
 */
export function sample(dirs: string[], initPid: number | undefined, read: Reader): Sample {
  const s: Sample = {};
  const host = memTotal(read("/proc/meminfo"));
  for (const d of dirs) {
    // v2 (cgroup.controllers exists only there)
    if (read(`${d}/cgroup.controllers`) !== undefined) {
      const cpu = keyValues(read(`${d}/cpu.stat`)).get("usage_usec");
      if (cpu !== undefined) s.cpuNs = cpu * 1000;
      const current = num(read(`${d}/memory.current`));
      if (current !== undefined) {
        const inactive = keyValues(read(`${d}/memory.stat`)).get("inactive_file") ?? 0;
        s.memUsage = Math.max(0, current - inactive);
        const max = read(`${d}/memory.max`)?.trim();
        s.memLimit = max === undefined || max === "max" ? host : Number(max);
      }
      s.pids = num(read(`${d}/pids.current`)) ?? s.pids;
      const io = ioStatV2(read(`${d}/io.stat`));
      if (io) [s.blockRead, s.blockWrite] = [io.read, io.write];
      continue;
    }
    const cpu = num(read(`${d}/cpuacct.usage`));
    if (cpu !== undefined) s.cpuNs = cpu;
    const usage = num(read(`${d}/memory.usage_in_bytes`));
    if (usage !== undefined) {
      const inactive = keyValues(read(`${d}/memory.stat`)).get("total_inactive_file") ?? 0;
      s.memUsage = Math.max(0, usage - inactive);
      const limit = num(read(`${d}/memory.limit_in_bytes`));
      s.memLimit = limit === undefined || limit >= V1_UNLIMITED
        ? host
        : Math.min(limit, host ?? limit);
    }
    const pids = num(read(`${d}/pids.current`));
    if (pids !== undefined) s.pids = pids;
    const io = blkioV1(read(`${d}/blkio.throttle.io_service_bytes`));
    if (io && (s.blockRead === undefined || io.read + io.write > 0)) {
      [s.blockRead, s.blockWrite] = [io.read, io.write];
    }
  }
  if (initPid) {
    const net = netDev(read(`/proc/${initPid}/net/dev`));
    if (net) [s.netRx, s.netTx] = [net.rx, net.tx];
  }
  return s;
}

/** Total CPU time of the host in nanoseconds (the first line of /proc/stat), and its CPUs. */
export function hostCpu(stat: string | undefined): { ns: number; cpus: number } | undefined {
  if (stat === undefined) return undefined;
  const lines = stat.split("\n");
  const f = lines[0].trim().split(/\s+/);
  if (f[0] !== "cpu") return undefined;
  // USER_HZ is 100 on every Linux architecture micro runs on.
  const ticks = f.slice(1, 8).reduce((a, x) => a + (Number(x) || 0), 0);
  const cpus = lines.filter((l) => /^cpu\d+ /.test(l)).length || 1;
  return { ns: ticks * 1e7, cpus };
}

/** Docker's CPU %: the container's share of the host's CPU time, times the CPUs. */
export function cpuPercent(
  prev: { cpuNs?: number; hostNs?: number },
  cur: { cpuNs?: number; hostNs?: number },
  cpus: number,
): number {
  if (
    prev.cpuNs === undefined || cur.cpuNs === undefined || prev.hostNs === undefined ||
    cur.hostNs === undefined
  ) return 0;
  const dc = cur.cpuNs - prev.cpuNs;
  const dh = cur.hostNs - prev.hostNs;
  return dc > 0 && dh > 0 ? (dc / dh) * cpus * 100 : 0;
}

/** The processes of a cgroup directory and its descendants (cgroup.procs). */
export function cgroupPids(dir: string, read: Reader, list: (dir: string) => string[]): number[] {
  const out: number[] = [];
  const walk = (d: string, depth: number) => {
    for (const l of (read(`${d}/cgroup.procs`) ?? "").split("\n")) {
      if (/^\d+$/.test(l.trim())) out.push(Number(l));
    }
    if (depth < 32) { for (const sub of list(d)) walk(`${d}/${sub}`, depth + 1); }
  };
  walk(dir, 0);
  return [...new Set(out)];
}

/** The freezer of a container's cgroups: v2's cgroup.freeze, else v1's freezer.state. */
export function freezerOf(
  dirs: string[],
  read: Reader,
): { version: 1 | 2; dir: string } | undefined {
  for (const d of dirs) {
    if (read(`${d}/cgroup.freeze`) !== undefined) return { version: 2, dir: d };
    if (read(`${d}/freezer.state`) !== undefined) return { version: 1, dir: d };
  }
  return undefined;
}

/** Whether the freezer says frozen (v2: cgroup.events `frozen 1`; v1: FROZEN or FREEZING). */
export function isFrozen(f: { version: 1 | 2; dir: string }, read: Reader): boolean {
  if (f.version === 2) return keyValues(read(`${f.dir}/cgroup.events`)).get("frozen") === 1;
  const s = read(`${f.dir}/freezer.state`)?.trim();
  return s === "FROZEN" || s === "FREEZING";
}
