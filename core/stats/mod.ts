/**
 * `micro stats`, `micro top`, `micro pause` and `micro unpause` on running containers,
 * found through the state root (core/exec/find.ts), their cgroups from what the run
 * recorded: every hierarchy's directory it joined (v1), or the one (v2).
 */
import { MicroError } from "../errors.ts";
import { findRunning, type Found, withRunning } from "../exec/find.ts";
import {
  isAlive,
  readState,
  type RunState,
  stateRoot,
  untrustedRoot,
  untrustedRootError,
} from "../state.ts";
import {
  cgroupPids,
  cpuPercent,
  freezerOf,
  hostCpu,
  isFrozen,
  type Reader,
  type Sample,
  sample,
} from "./cgroup.ts";

/** Kernel files, read whole; missing or unreadable is undefined. */
export const readKernelFile: Reader = (path) => {
  try {
    return Deno.readTextFileSync(path);
  } catch {
    return undefined;
  }
};

/** The cgroup directories a container's command joined, as its run recorded them. */
export function containerCgroups(found: Found): string[] {
  const joins = (found.state.exec?.ops ?? []).flatMap((o) =>
    o.kind === "cgroup-join" ? [o.args.path] : []
  );
  if (joins.length) return joins;
  return (found.state.cgroups ?? []).filter((c) => !c.shared).map((c) => c.path);
}

/** Every running container of the state root, by name. */
export function runningContainers(uid: number, root = stateRoot(uid)): Found[] {
  const bad = untrustedRoot(root, uid);
  if (bad) throw untrustedRootError(root, uid, bad);
  let entries: Deno.DirEntry[];
  try {
    entries = [...Deno.readDirSync(root)];
  } catch {
    return [];
  }
  const out: Found[] = [];
  for (const e of entries) {
    if (!e.isDirectory || e.name.startsWith(".")) continue;
    const state = readState(`${root}/${e.name}`);
    if (state && isAlive(state.containerPid, state.containerStartTime)) {
      out.push({ name: e.name, dir: `${root}/${e.name}`, state });
    }
  }
  return out.sort((a, b) => a.name.localeCompare(b.name));
}

/** Docker's binary sizes (MiB, GiB) for memory. */
export function binarySize(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return i === 0 ? `${n}B` : `${n.toFixed(2).replace(/\.?0+$/, "")}${units[i]}`;
}

/** Docker's decimal sizes (kB, MB) for network and block I/O. */
export function decimalSize(n: number): string {
  const units = ["B", "kB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) {
    n /= 1000;
    i++;
  }
  return i === 0 ? `${n}B` : `${n.toFixed(3).replace(/\.?0+$/, "")}${units[i]}`;
}

export interface StatsRow {
  ID: string;
  Name: string;
  CPUPerc: string;
  MemUsage: string;
  MemPerc: string;
  NetIO: string;
  BlockIO: string;
  PIDs: string;
}

export function statsRow(
  found: Found,
  prev: Sample & { hostNs?: number },
  cur: Sample & { hostNs?: number },
  cpus: number,
): StatsRow {
  const pair = (a?: number, b?: number) =>
    a === undefined ? "--" : `${decimalSize(a)} / ${decimalSize(b ?? 0)}`;
  const mem = cur.memUsage;
  const limit = cur.memLimit;
  return {
    ID: (found.state.containerId ?? found.state.id).slice(0, 12),
    Name: found.name,
    CPUPerc: `${cpuPercent(prev, cur, cpus).toFixed(2)}%`,
    MemUsage: mem === undefined ? "--" : `${binarySize(mem)} / ${limit ? binarySize(limit) : "--"}`,
    MemPerc: mem !== undefined && limit ? `${(mem / limit * 100).toFixed(2)}%` : "--",
    NetIO: pair(cur.netRx, cur.netTx),
    BlockIO: pair(cur.blockRead, cur.blockWrite),
    PIDs: cur.pids === undefined ? "--" : String(cur.pids),
  };
}

const HEADERS: [keyof StatsRow, string][] = [
  ["ID", "CONTAINER ID"],
  ["Name", "NAME"],
  ["CPUPerc", "CPU %"],
  ["MemUsage", "MEM USAGE / LIMIT"],
  ["MemPerc", "MEM %"],
  ["NetIO", "NET I/O"],
  ["BlockIO", "BLOCK I/O"],
  ["PIDs", "PIDS"],
];

/** A table as Docker's tabwriter prints it: 3 spaces between columns. */
export function formatStats(rows: StatsRow[]): string {
  const cells = [HEADERS.map(([, h]) => h), ...rows.map((r) => HEADERS.map(([k]) => r[k]))];
  const widths = HEADERS.map((_, c) => Math.max(...cells.map((row) => row[c].length)));
  return cells.map((row) =>
    row.map((v, c) => c === row.length - 1 ? v : v.padEnd(widths[c] + 3)).join("").trimEnd()
  ).join("\n") + "\n";
}

const STATS_USAGE = "usage: micro stats [--no-stream] [--format json|table] [NAME|ID...]";

function parseStats(argv: string[]) {
  let stream = true;
  let json = false;
  const names: string[] = [];
  for (let i = 1; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--no-stream") stream = false;
    else if (a === "--format" || a.startsWith("--format=")) {
      const v = a === "--format" ? argv[++i] : a.slice(9);
      if (v !== "json" && v !== "table") {
        throw new MicroError(`option "--format" takes json or table, not "${v ?? ""}"`, {
          hint: STATS_USAGE,
        });
      }
      json = v === "json";
    } else if (a === "--help" || a === "-h") return "help" as const;
    else if (a.startsWith("-")) {
      throw new MicroError(`unknown option "${a}"`, { hint: STATS_USAGE });
    } else names.push(a);
  }
  return { stream, json, names };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function statsCommand(argv: string[]): Promise<number> {
  const o = parseStats(argv);
  if (o === "help") {
    console.log(
      `${STATS_USAGE}\n\nCPU %, memory use and limit, network and block I/O and processes of ` +
        `running containers (all of them without NAME), live from their cgroups.`,
    );
    return 0;
  }
  const uid = Deno.uid() ?? 0;
  // The names given must run at the start; one that ends while streaming leaves the table.
  const named = o.names.map((n) => findRunning(n, uid));
  const pick = () =>
    o.names.length
      ? named.filter((f) => isAlive(f.state.containerPid, f.state.containerStartTime))
      : runningContainers(uid);
  let stop = false;
  const onInt = () => stop = true;
  if (o.stream) Deno.addSignalListener("SIGINT", onInt);
  try {
    let prev = new Map<string, Sample & { hostNs?: number }>();
    let first = true;
    while (!stop) {
      const found = pick();
      const host = hostCpu(readKernelFile("/proc/stat"));
      const cur = new Map(found.map((f) => [f.dir, {
        ...sample(containerCgroups(f), f.state.containerPid, readKernelFile),
        hostNs: host?.ns,
      }]));
      if (first) {
        // CPU % needs two samples.
        prev = cur;
        first = false;
        await sleep(o.stream ? 1000 : 500);
        continue;
      }
      const rows = found.filter((f) => isAlive(f.state.containerPid, f.state.containerStartTime))
        .map((f) => statsRow(f, prev.get(f.dir) ?? {}, cur.get(f.dir)!, host?.cpus ?? 1));
      const text = o.json
        ? rows.map((r) => JSON.stringify(r)).join("\n") + (rows.length ? "\n" : "")
        : formatStats(rows);
      const out = (o.stream && !o.json ? "\x1b[2J\x1b[H" : "") + text;
      await Deno.stdout.write(new TextEncoder().encode(out));
      if (!o.stream) return 0;
      prev = cur;
      await sleep(1000);
    }
    return 0;
  } finally {
    if (o.stream) Deno.removeSignalListener("SIGINT", onInt);
  }
}

/** The pids of a container: its cgroup's processes, with the init's pid namespace as a fallback. */
export function containerPids(found: Found): number[] {
  const dirs = containerCgroups(found);
  const list = (d: string) => {
    try {
      return [...Deno.readDirSync(d)].filter((e) => e.isDirectory).map((e) => e.name);
    } catch {
      return [];
    }
  };
  // v2's one directory, or v1's pids (else any) hierarchy.
  const dir = dirs.find((d) => readKernelFile(`${d}/cgroup.controllers`) !== undefined) ??
    dirs.find((d) => /\/pids(,|\/)/.test(d)) ?? dirs[0];
  if (dir !== undefined) return cgroupPids(dir, readKernelFile, list);
  // No cgroup of its own (rootless without delegation): the processes of its pid namespace.
  const init = found.state.containerPid!;
  const ns = (p: number | string) => {
    try {
      return Deno.readLinkSync(`/proc/${p}/ns/pid`);
    } catch {
      return undefined;
    }
  };
  const want = ns(init);
  return [...Deno.readDirSync("/proc")].filter((e) => /^\d+$/.test(e.name) && ns(e.name) === want)
    .map((e) => Number(e.name));
}

/** Filters `ps` output to `pids` (by its PID column), header kept. */
export function filterPs(out: string, pids: number[]): string {
  const lines = out.split("\n").filter((l) => l.trim());
  if (!lines.length) return "";
  const col = lines[0].trim().split(/\s+/).indexOf("PID");
  if (col < 0) {
    throw new MicroError(`ps printed no PID column`, {
      hint: "keep the pid in the ps options (-o pid,...)",
    });
  }
  const set = new Set(pids);
  return [lines[0], ...lines.slice(1).filter((l) => set.has(Number(l.trim().split(/\s+/)[col])))]
    .join("\n") + "\n";
}

export async function topCommand(argv: string[]): Promise<number> {
  const name = argv[1];
  if (!name || name === "--help" || name === "-h") {
    console.log("usage: micro top NAME|ID [ps OPTIONS]   (default: -ef)");
    return name ? 0 : 125;
  }
  const found = findRunning(name, Deno.uid() ?? 0);
  const pids = containerPids(found);
  const args = argv.length > 2 ? argv.slice(2) : ["-ef"];
  let out: Deno.CommandOutput;
  try {
    out = await new Deno.Command("ps", { args, stdout: "piped", stderr: "piped" }).output();
  } catch (e) {
    throw new MicroError(`cannot run ps: ${(e as Error).message}`, { hint: "install procps" });
  }
  if (!out.success) {
    const said = new TextDecoder().decode(out.stderr).trim().split("\n")[0];
    throw new MicroError(`ps ${args.join(" ")} failed: ${said}`);
  }
  await Deno.stdout.write(
    new TextEncoder().encode(filterPs(new TextDecoder().decode(out.stdout), pids)),
  );
  return 0;
}

/** Whether a running container is paused (frozen); false without a freezer. */
export function isPaused(found: Found): boolean {
  const f = freezerOf(containerCgroups(found), readKernelFile);
  return f !== undefined && isFrozen(f, readKernelFile);
}

/** `micro pause` (freeze) and `micro unpause` (thaw), each NAME in turn. */
export async function freezeCommand(argv: string[], freeze: boolean): Promise<number> {
  const verb = freeze ? "pause" : "unpause";
  const names = argv.slice(1);
  if (!names.length || names.includes("--help")) {
    console.log(`usage: micro ${verb} NAME|ID...`);
    return names.length ? 0 : 125;
  }
  const uid = Deno.uid() ?? 0;
  const { openLibc } = await import("../sys/libc.ts");
  const sys = openLibc();
  let failed = false;
  for (const name of names) {
    try {
      // Under the container's lock: an rm or stop of it comes wholly before or after.
      await withRunning(name, uid, sys, async (found) => {
        await setFrozen(containerCgroups(found), `container "${name}"`, freeze);
      });
      console.log(name);
    } catch (e) {
      if (!(e instanceof MicroError) || names.length === 1) throw e;
      console.error(`micro: ${e.line()}`);
      failed = true;
    }
  }
  return failed ? 125 : 0;
}

/**
 * After a SIGKILL to a container's init: a paused container's processes die only once
 * thawed (the v1 freezer holds even SIGKILL), so it is thawed, as runc does after a kill;
 * otherwise `rm -f` or `stop` of a paused container would wait forever on a frozen cgroup.
 */
export function thawKilled(state: RunState): void {
  const f = freezerOf(containerCgroups({ name: "", dir: "", state }), readKernelFile);
  if (!f || !isFrozen(f, readKernelFile)) return;
  const [file, value] = f.version === 2 ? ["cgroup.freeze", "0"] : ["freezer.state", "THAWED"];
  try {
    Deno.writeTextFileSync(`${f.dir}/${file}`, value);
  } catch { /* gone with the container */ }
}

/**
 * Freeze (or thaw) the cgroup among dirs that has a freezer, v1 or v2, and wait until the
 * kernel reports it done; shared by `micro pause` and the OCI `pause`/`resume`.
 */
export async function setFrozen(dirs: string[], what: string, freeze: boolean): Promise<void> {
  const verb = freeze ? "pause" : "unpause";
  const f = freezerOf(dirs, readKernelFile);
  if (!f) {
    const rootless = (Deno.uid() ?? 0) !== 0;
    throw new MicroError(
      `${what} has no freezer cgroup to ${verb} it with: it runs without a cgroup of its own` +
        (rootless ? " (rootless, and no cgroup v2 subtree is delegated to you)" : ""),
      {
        hint: rootless
          ? "run it as root, or where systemd delegates a cgroup v2 subtree to your user: " +
            "micro doctor shows whether it does"
          : "run it with a cgroup of its own",
      },
    );
  }
  const frozen = isFrozen(f, readKernelFile);
  if (frozen === freeze) {
    throw new MicroError(`${what} is ${freeze ? "already paused" : "not paused"}`);
  }
  const [file, value] = f.version === 2
    ? ["cgroup.freeze", freeze ? "1" : "0"]
    : ["freezer.state", freeze ? "FROZEN" : "THAWED"];
  try {
    Deno.writeTextFileSync(`${f.dir}/${file}`, value);
  } catch (e) {
    throw new MicroError(
      `${verb}: write ${f.dir}/${file} ${JSON.stringify(value)}: ${(e as Error).message}`,
      {
        hint: "micro needs write access to the container's cgroup",
      },
    );
  }
  // v1 goes through FREEZING; v2 reports frozen in cgroup.events once every task stopped.
  for (let i = 0; i < 200; i++) {
    const s = f.version === 1 ? readKernelFile(`${f.dir}/freezer.state`)?.trim() : undefined;
    const done = f.version === 1
      ? s === (freeze ? "FROZEN" : "THAWED")
      : isFrozen(f, readKernelFile) === freeze;
    if (done) break;
    await sleep(10);
  }
}
