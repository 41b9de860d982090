/**
 * The engine's network ops: `cni-add` while the child waits after clone (its network
 * namespace exists, its command has not started), `cni-del` at cleanup. The namespace is
 * held open by an fd of micro's until DEL, so DEL finds the container's interface even
 * though its processes are gone; the CNI record is written before ADD, so a later micro
 * can DEL what a killed one added (core/cni/gc.ts).
 */
import { errnoOf, MicroError } from "../errors.ts";
import type { Op } from "../ops.ts";
import { C, cstr, type Sys } from "../sys/mod.ts";
import type { ConfList } from "./config.ts";
import { hostsFile, writeDnsFiles } from "./dns.ts";
import {
  addNetwork,
  type Attachment,
  CACHE_FILE,
  cachedAttachment,
  checkNetwork,
  type CniCache,
  delNetwork,
  readCache,
  resultAddress,
  writeCache,
} from "./exec.ts";
import { isAlive, readState } from "../stateroot.ts";
import type { RunState } from "../state.ts";
import { findRunning } from "../exec/find.ts";
import { formatMapping, type PortMapping } from "./ports.ts";
import {
  afterAdd,
  chainsBefore,
  holdNetwork,
  removeBridgeIfUnused,
  withCniLock,
} from "./bridge.ts";
import type { HeldLock } from "../store/lock.ts";

type AddOp = Op & { kind: "cni-add" };

/** This process's network namespace, as `net:[INODE]`. */
export function currentNetns(): string {
  try {
    return Deno.readLinkSync("/proc/self/ns/net");
  } catch {
    return "";
  }
}

/**
 * Each published port, bound and let go at once: a port something already holds is a
 * one-line error before ADD (portmap's DNAT would otherwise hide that service silently).
 */
export function checkPorts(ports: PortMapping[]): void {
  for (const m of ports) {
    const hostname = m.hostIP === "" ? "0.0.0.0" : m.hostIP;
    try {
      if (m.protocol === "tcp") Deno.listen({ hostname, port: m.hostPort }).close();
      else Deno.listenDatagram({ transport: "udp", hostname, port: m.hostPort }).close();
    } catch (e) {
      const inUse = e instanceof Deno.errors.AddrInUse;
      throw new MicroError(inUse ? "the port is already in use" : (e as Error).message, {
        phase: "attach",
        plugin: "net",
        op: "publish",
        paths: { port: formatMapping(m) },
        hint: inUse
          ? "stop what listens there, or publish another host port"
          : e instanceof Deno.errors.AddrNotAvailable
          ? "the host address is not one of this host's"
          : undefined,
      });
    }
  }
}

/**
 * The published ports of other live runs in this network namespace that `ports` would
 * take over: portmap's DNAT does not listen, so a bind test cannot see them; their CNI
 * records (next to this run's, under the state root) can.
 */
export function portsInUse(ports: PortMapping[], cache: string): string | undefined {
  if (!ports.length) return undefined;
  const runDir = cache.slice(0, cache.lastIndexOf("/"));
  const root = runDir.slice(0, runDir.lastIndexOf("/"));
  for (const { dir, cache: other, state } of liveRecords(root)) {
    if (dir === runDir) continue;
    const theirs = (other.runtimeConfig?.portMappings ?? []) as PortMapping[];
    for (const m of ports) {
      const clash = theirs.find((t) =>
        t.hostPort === m.hostPort && t.protocol === m.protocol &&
        (t.hostIP === "" || m.hostIP === "" || t.hostIP === m.hostIP)
      );
      if (clash) return `${formatMapping(m)} is published by container "${state.id}"`;
    }
  }
  return undefined;
}

/**
 * The CNI records of the live runs under the state root `root` attached from this network
 * namespace (a record another namespace's micro wrote names other rules), with their state.
 */
export function* liveRecords(
  root: string,
): Generator<{ dir: string; name: string; cache: CniCache; state: RunState }> {
  const here = currentNetns();
  let entries: Deno.DirEntry[];
  try {
    entries = [...Deno.readDirSync(root)];
  } catch {
    return;
  }
  for (const e of entries) {
    const dir = `${root}/${e.name}`;
    if (!e.isDirectory || e.name.startsWith(".")) continue;
    let cache: CniCache | null;
    try {
      cache = readCache(`${dir}/${CACHE_FILE}`);
    } catch {
      continue;
    }
    if (!cache || cache.hostNetns !== here) continue;
    const state = readState(dir);
    if (!state || !isAlive(state.pid, state.startTime)) continue;
    yield { dir, name: e.name, cache, state };
  }
}

/**
 * -P: a free host port for each exposed container port (the kernel's choice for port 0,
 * let go at once, as Docker takes one from the ephemeral range).
 */
export function freePorts(
  exposed: { containerPort: number; protocol: "tcp" | "udp" }[],
  taken: PortMapping[],
): PortMapping[] {
  const out: PortMapping[] = [];
  for (const e of exposed) {
    if (taken.some((t) => t.containerPort === e.containerPort && t.protocol === e.protocol)) {
      continue; // -p for that port wins, as Docker
    }
    let port: number;
    if (e.protocol === "tcp") {
      const l = Deno.listen({ hostname: "0.0.0.0", port: 0 });
      port = (l.addr as Deno.NetAddr).port;
      l.close();
    } else {
      const l = Deno.listenDatagram({ transport: "udp", hostname: "0.0.0.0", port: 0 });
      port = (l.addr as Deno.NetAddr).port;
      l.close();
    }
    out.push({ hostPort: port, containerPort: e.containerPort, protocol: e.protocol, hostIP: "" });
  }
  return out;
}

export class NetworkOps {
  private added: {
    list: ConfList;
    a: Attachment;
    result: unknown;
    cache: string;
    hold: HeldLock;
    transientBridge?: string;
  } | null = null;

  constructor(private readonly plan: Op[], private readonly sys: Sys) {}

  /** Whether the plan attaches the container to a network at all. */
  get wanted(): boolean {
    return this.plan.some((o) => o.kind === "cni-add");
  }

  /** attach: ADD the waiting child (pid) to each network, then write its DNS files. */
  async attach(pid: number): Promise<void> {
    for (const o of this.plan) {
      if (o.phase !== "attach") continue;
      if (o.kind === "cni-add") await this.add(o as AddOp, pid);
      else if (o.kind === "net-join-files") shareFiles(o.args);
    }
  }

  private async add(o: AddOp, pid: number): Promise<void> {
    const args = o.args;
    const ports = [
      ...args.portMappings,
      ...freePorts(args.publishAll ?? [], args.portMappings),
    ];
    checkPorts(ports);
    const taken = portsInUse(ports, args.cache);
    if (taken) {
      throw new MicroError(`the port is already in use: ${taken}`, {
        phase: "attach",
        plugin: "net",
        op: "publish",
        hint: "publish another host port, or stop that container",
      });
    }
    const netns = `${args.cache.slice(0, args.cache.lastIndexOf("/"))}/${NETNS_FILE}`;
    const list = JSON.parse(args.config) as ConfList;
    const runtimeConfig: Record<string, unknown> = {};
    if (ports.length) runtimeConfig.portMappings = ports;
    if (args.ip !== undefined) runtimeConfig.ips = [args.ip];
    if (args.bandwidth) runtimeConfig.bandwidth = args.bandwidth;
    const a: Attachment = {
      containerId: args.containerId,
      netns,
      ifName: args.ifName,
      cniPath: args.cniPath,
      ...(Object.keys(runtimeConfig).length ? { runtimeConfig } : {}),
    };
    const cache: CniCache = {
      kind: "cniCacheV1",
      containerId: a.containerId,
      ifName: a.ifName,
      cniPath: a.cniPath,
      ...(a.runtimeConfig ? { runtimeConfig: a.runtimeConfig } : {}),
      config: list,
      hostNetns: currentNetns(),
      netnsPath: netns,
      result: null,
    };
    // Held until after DEL: no bridge removal (core/cni/bridge.ts) while this run is attached.
    const hold = await holdNetwork(list.name);
    // Recorded before anything exists, so a micro killed during ADD is cleaned up too.
    try {
      writeCache(args.cache, cache);
    } catch (e) {
      hold.release();
      throw e;
    }
    this.added = {
      list,
      a,
      result: null,
      cache: args.cache,
      hold,
      ...(args.transientBridge ? { transientBridge: args.transientBridge } : {}),
    };
    pinNetns(this.sys, `/proc/${pid}/ns/net`, netns);
    const result = await withCniLock(async () => {
      // Which shared chains this ADD makes, recorded once, for their removal (bridge.ts).
      const before = await chainsBefore();
      const r = await addNetwork(list, a);
      try {
        // micro's networks' isolation, masquerade and internal rules: one restore (bridge.ts).
        await afterAdd(before, {
          ...args.ownRules,
          ...(args.internalBridge ? { internal: args.internalBridge } : {}),
        });
      } catch (e) {
        // Its rules could not be made: the container does not run on a leaky network.
        this.added!.result = r;
        throw new MicroError((e as Error).message, {
          phase: "attach",
          plugin: "net",
          op: "network rules",
          paths: { network: list.name },
          hint: "check the host's iptables (micro doctor)",
        });
      }
      return r;
    });
    this.added.result = result;
    writeCache(args.cache, { ...cache, result });
    if (args.files) this.writeFiles(o, resultAddress(result));
  }

  private writeFiles(o: AddOp, address: string | undefined): void {
    const f = o.args.files!;
    writeDnsFiles(f.dir, { ...f, address });
  }

  /** cleanup: DEL what ADD made (even a failed ADD), then let the namespace go. */
  async cleanup(): Promise<string[]> {
    const problems: string[] = [];
    const done = this.added;
    this.added = null;
    if (done) {
      // Not pinned: the child was gone before its namespace could be (its set-up failed
      // while micro attached it), so nothing of ADD is in it: DEL without one (CNI_NETNS
      // unset, as the spec allows), not with the empty file the pin would have covered.
      const a = isPinned(done.a.netns) ? done.a : { ...done.a, netns: "" };
      try {
        await withCniLock(() => delNetwork(done.list, a, done.result));
      } catch (e) {
        problems.push(
          `network ${done.list.name}: ${e instanceof MicroError ? e.line() : String(e)}`,
        );
      }
      const why = unpinNetns(this.sys, done.a.netns);
      if (why) problems.push(why);
      else {
        try {
          Deno.removeSync(done.cache);
        } catch { /* the run's dir goes next anyway */ }
      }
      done.hold.release();
      if (done.transientBridge) {
        problems.push(...await removeBridgeIfUnused(done.list.name, done.transientBridge));
      }
    }
    return problems;
  }
}

/**
 * `--network container:NAME`: the joined container's DNS files, hard links to the very
 * files it has bind-mounted (Docker bind-mounts the same ones); a container without them
 * (`none`) gives this one its own: localhost and its hostname, no name servers.
 */
export function shareFiles(
  a: { container: string; dir: string; hostname: string; names: string[] },
  uid = Deno.uid() ?? 0,
  root?: string,
): void {
  const from = findRunning(a.container, uid, root).dir;
  for (const name of a.names) {
    const path = `${a.dir}/${name}`;
    try {
      try {
        Deno.linkSync(`${from}/${name}`, path);
        continue;
      } catch (e) {
        if (!(e instanceof Deno.errors.NotFound)) throw e;
      }
      const own = name === "hosts"
        ? hostsFile(a.hostname, undefined, [])
        : name === "hostname"
        ? a.hostname + "\n"
        : "";
      Deno.writeTextFileSync(path, own, { mode: 0o644 });
    } catch (e) {
      throw new MicroError("", {
        phase: "attach",
        plugin: "net",
        op: "link",
        paths: { container: a.container, path },
        errno: errnoOf(e, 5),
      });
    }
  }
}

/** The pinned namespace's name in the run's state dir. */
export const NETNS_FILE = "netns";

/**
 * Keeps the container's network namespace alive past its processes and past micro itself
 * (a bind mount of /proc/PID/ns/net, as podman's /run/netns): DEL needs the interface to
 * find the addresses whose NAT rules it removes, also when gc runs it after a kill -9.
 */
function pinNetns(sys: Sys, source: string, target: string): void {
  try {
    Deno.writeFileSync(target, new Uint8Array(), { mode: 0o400 });
  } catch (e) {
    throw new MicroError("", {
      phase: "attach",
      plugin: "net",
      op: "create",
      paths: { path: target },
      errno: errnoOf(e, 5),
    });
  }
  const rc = sys.mount(cstr(source), cstr(target), null, C.MS_BIND, null);
  if (rc < 0) {
    throw new MicroError("", {
      phase: "attach",
      plugin: "net",
      op: "mount",
      paths: { src: source, dst: target, flags: "MS_BIND" },
      errno: -rc,
    });
  }
}

/** Whether `path` is a mount of a namespace (its device differs from its directory's). */
export function isPinned(path: string): boolean {
  try {
    return Deno.statSync(path).dev !== Deno.statSync(path.slice(0, path.lastIndexOf("/"))).dev;
  } catch {
    return false;
  }
}

/** Lets the pinned namespace go (lazily: a plugin may still hold it); a problem, or "". */
export function unpinNetns(sys: Sys, path: string): string {
  if (isPinned(path)) {
    const rc = sys.umount2(cstr(path), C.MNT_DETACH);
    if (rc < 0 && -rc !== 22) return `umount ${path}: errno ${-rc}`;
  }
  try {
    Deno.removeSync(path);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) return `remove ${path}: ${(e as Error).message}`;
  }
  return "";
}

/**
 * CHECK the run in `runDir` against its CNI record: what `micro network check` reports.
 * Only from the network namespace ADD ran in (elsewhere the plugins would look at another
 * host's bridge and rules); "ok", "no network" (none, host, pasta), or a one-line error.
 */
export async function checkCached(runDir: string): Promise<string> {
  const path = `${runDir}/${CACHE_FILE}`;
  const fail = (message: string, hint?: string) =>
    new MicroError(message, { plugin: "net", op: "CNI CHECK", paths: { path }, hint });
  let cache: CniCache | null;
  try {
    cache = readCache(path);
  } catch (e) {
    throw fail((e as Error).message);
  }
  if (!cache) return "no CNI network";
  if (cache.result === null) throw fail("its ADD did not finish", "restart the container");
  if (cache.hostNetns !== currentNetns()) {
    throw fail(
      `the container was attached from network namespace ${cache.hostNetns}`,
      "run micro network check in that namespace",
    );
  }
  const pin = `${runDir}/${NETNS_FILE}`;
  if (!isPinned(pin)) throw fail("its network namespace is not pinned", "restart the container");
  await checkNetwork(cache.config, cachedAttachment(cache, pin), cache.result);
  return "ok";
}
