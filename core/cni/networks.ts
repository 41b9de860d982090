/**
 * Networks made by `micro network create`: each one a CNI configuration list that micro
 * owns, `STORE/networks/NAME.conflist` (the store root: /var/lib/micro as root, MICRO_ROOT
 * overrides), so it outlives reboots as Docker's do, and any CNI runtime can read it. The
 * list carries micro's own keys beside the CNI ones (`microID`, `microCreated`,
 * `microInternal`), which CNI ignores. Files are read as regular files with a size cap and
 * parsed with a nesting limit, like every configuration micro reads.
 */
import { MicroError } from "../errors.ts";
import { FileRefused, readRegularFile } from "../files.ts";
import { openLibc } from "../sys/libc.ts";
import { parseJsonLimited } from "./json.ts";
import { CONFIG_CAP, type ConfList, MICRO_BRIDGE, parseConfList } from "./config.ts";
import { MICRO_NETWORK } from "./facts.ts";
import {
  chooseSubnet,
  type Cidr,
  formatCidr,
  formatIp,
  hostOf,
  overlaps,
  parseCidr,
  parseRoutes,
  type Route,
} from "./subnet.ts";

/** Names `--network` already means something else for. */
export const RESERVED = ["none", "host", "bridge", "auto", "default", MICRO_NETWORK];

/** Network names: a CNI name, short enough for messages and files. */
export const NETWORK_NAME = /^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,63}$/;

/** What `micro network inspect` and `ls` show of a network. */
export interface Network {
  name: string;
  id: string;
  created: string;
  subnet: string;
  gateway: string;
  internal: boolean;
  bridge: string;
  list: ConfList;
}

export function networksDir(storeRoot: string): string {
  return `${storeRoot}/networks`;
}

/** The bridge device of a network: `mbr-` and 11 hex digits of its id (IFNAMSIZ is 16). */
export function bridgeName(id: string): string {
  return `mbr-${id.slice(0, 11)}`;
}

/**
 * A created network's list: a bridge that is the gateway, host-local addresses (`ips`
 * capability for --ip), masquerade and a default route unless internal, published ports
 * through portmap, and the firewall plugin's same-bridge ingress policy (Docker's
 * DOCKER-ISOLATION: traffic from another isolated bridge is dropped). A CNI runtime can use
 * the list as it is; micro makes the isolation and masquerade itself (bridge.ts takeOwnRules).
 */
export function createdConfList(
  n: { name: string; id: string; created: string; subnet: string; gateway: string },
  internal: boolean,
  dataDir: string,
): ConfList & Record<string, unknown> {
  return {
    cniVersion: "1.0.0",
    name: n.name,
    microID: n.id,
    microCreated: n.created,
    microInternal: internal,
    plugins: [
      {
        type: "bridge",
        bridge: bridgeName(n.id),
        isGateway: true,
        ipMasq: !internal,
        hairpinMode: true,
        capabilities: { ips: true },
        ipam: {
          type: "host-local",
          dataDir,
          routes: internal ? [] : [{ dst: "0.0.0.0/0" }],
          ranges: [[{ subnet: n.subnet, gateway: n.gateway }]],
        },
      },
      { type: "portmap", capabilities: { portMappings: true } },
      { type: "firewall", backend: "iptables", ingressPolicy: "same-bridge" },
    ],
  };
}

/** The facts of a list micro made, or a reason it is not one of micro's. */
export function networkOf(list: ConfList, raw: Record<string, unknown>): Network | string {
  const l = raw;
  const br = list.plugins[0] as Record<string, unknown>;
  const range = (br?.ipam as { ranges?: { subnet?: unknown; gateway?: unknown }[][] })
    ?.ranges?.[0]?.[0];
  if (
    typeof l.microID !== "string" || !/^[0-9a-f]{64}$/.test(l.microID) ||
    br?.type !== "bridge" || br.bridge !== bridgeName(l.microID) ||
    typeof range?.subnet !== "string" || typeof range.gateway !== "string"
  ) {
    return "not a network micro created";
  }
  // Both go into iptables-restore's script (the masquerade rule) and the plugins' config:
  // only a subnet micro would have written, in its own form, and a host address of it.
  const c = parseCidr(range.subnet);
  if (typeof c === "string" || formatCidr(c) !== range.subnet) {
    return `subnet ${JSON.stringify(range.subnet)} is not an IPv4 subnet as micro writes one`;
  }
  if (!hostOf(c, range.gateway)) {
    return `gateway ${JSON.stringify(range.gateway)} is not a host address of ${range.subnet}`;
  }
  return {
    name: list.name,
    id: l.microID,
    created: typeof l.microCreated === "string" ? l.microCreated : "",
    subnet: range.subnet,
    gateway: range.gateway,
    internal: l.microInternal === true,
    bridge: br.bridge as string,
    list,
  };
}

function read(path: string): string {
  return readRegularFile(openLibc(), path, CONFIG_CAP);
}

/** The network `name` of `dir`, null when there is none; throws when the file is bad. */
export function loadNetwork(dir: string, name: string, readFile = read): Network | null {
  if (!NETWORK_NAME.test(name)) return null;
  const path = `${dir}/${name}.conflist`;
  let text: string;
  try {
    text = readFile(path);
  } catch (e) {
    if (e instanceof FileRefused && e.errno === 2) return null;
    throw new MicroError(`network "${name}": ${path}: ${e instanceof FileRefused ? e.reason : e}`, {
      hint: "remove or fix the file",
    });
  }
  let n: Network | string;
  try {
    const list = parseConfList(text);
    const raw = parseJsonLimited(text) as Record<string, unknown>;
    n = list.name === name ? networkOf(list, raw) : `it names network "${list.name}"`;
  } catch (e) {
    n = (e as Error).message;
  }
  if (typeof n === "string") {
    throw new MicroError(`network "${name}": ${path}: ${n}`, { hint: "remove or fix the file" });
  }
  return n;
}

/** Every network in `dir`, by name; files that are not micro's are skipped with a warning. */
export function listNetworks(
  dir: string,
  warn: (m: string) => void = () => {},
  readFile = read,
): Network[] {
  let names: string[];
  try {
    names = [...Deno.readDirSync(dir)].map((e) => e.name).filter((n) => n.endsWith(".conflist"))
      .map((n) => n.slice(0, -".conflist".length)).sort();
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return [];
    throw new MicroError(`cannot list ${dir}: ${(e as Error).message.split("\n")[0]}`);
  }
  const out: Network[] = [];
  for (const name of names) {
    try {
      const n = loadNetwork(dir, name, readFile);
      if (n) out.push(n);
    } catch (e) {
      warn(e instanceof MicroError ? e.line() : String(e));
    }
  }
  return out;
}

export interface CreateRequest {
  name: string;
  subnet?: string;
  gateway?: string;
  internal: boolean;
}

/**
 * The subnet and gateway of a new network, checked: a given subnet must overlap none of the
 * host's routes (the default route aside) nor another micro network; without one, the first
 * free private /16. Throws a one-line MicroError.
 */
export function planSubnet(
  req: CreateRequest,
  routes: Route[],
  others: Network[],
): { subnet: string; gateway: string } {
  const fail = (m: string, hint?: string) => new MicroError(`network create: ${m}`, { hint });
  const taken: { c: Cidr; who: string }[] = [];
  for (const o of others) {
    const c = parseCidr(o.subnet);
    if (typeof c !== "string") taken.push({ c, who: `network "${o.name}"` });
  }
  // micro's own network keeps the subnet its bridge has, or would take the first free one.
  const own = chooseSubnet(routes, MICRO_BRIDGE, taken.map((t) => t.c));
  if (own) {
    const c = parseCidr(own.subnet);
    if (typeof c !== "string") taken.push({ c, who: `micro's default network "${MICRO_NETWORK}"` });
  }
  for (const r of routes) {
    if (r.prefix > 0 && r.iface !== MICRO_BRIDGE) {
      taken.push({ c: r, who: `the host's route ${formatCidr(r)} on ${r.iface}` });
    }
  }
  let subnet: Cidr;
  if (req.subnet !== undefined) {
    const c = parseCidr(req.subnet);
    if (typeof c === "string") throw fail(c);
    const clash = taken.find((t) => overlaps(c.dst, c.prefix, t.c.dst, t.c.prefix));
    if (clash) {
      throw fail(`subnet ${req.subnet} overlaps ${clash.who}`, "choose another --subnet");
    }
    subnet = c;
  } else {
    const free = chooseSubnet([], "", taken.map((t) => t.c));
    if (!free) {
      throw fail(
        "no private /16 is free of this host's routes and micro's networks",
        "give --subnet",
      );
    }
    subnet = parseCidr(free.subnet) as Cidr;
  }
  const gateway = req.gateway ?? formatIp(subnet.dst + 1);
  if (!hostOf(subnet, gateway)) {
    throw fail(`gateway ${gateway} is not a host address of ${formatCidr(subnet)}`);
  }
  return { subnet: formatCidr(subnet), gateway };
}

/** The host's IPv4 routes (none when /proc/net/route cannot be read). */
export function hostRoutes(): Route[] {
  try {
    return parseRoutes(Deno.readTextFileSync("/proc/net/route"));
  } catch {
    return [];
  }
}

/** Writes the list atomically (a temp name, then a rename), 0600, in a 0700 directory. */
export function saveNetwork(dir: string, list: ConfList): void {
  Deno.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const path = `${dir}/${list.name}.conflist`;
  const tmp = `${path}.${crypto.randomUUID().slice(0, 8)}.tmp`;
  Deno.writeTextFileSync(tmp, JSON.stringify(list, null, 2) + "\n", {
    mode: 0o600,
    createNew: true,
  });
  try {
    // link, not rename: a network created meanwhile under this name is never replaced.
    Deno.linkSync(tmp, path);
  } catch (e) {
    if (e instanceof Deno.errors.AlreadyExists) {
      throw new MicroError(`network create: a network named "${list.name}" already exists`, {
        hint: "choose another name, or micro network rm it first",
      });
    }
    throw e;
  } finally {
    Deno.removeSync(tmp);
  }
}

/** A new network id: 64 hex digits, as Docker's. */
export function newNetworkId(): string {
  const b = crypto.getRandomValues(new Uint8Array(32));
  return [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
}

/** The id micro's default network shows in `ls` and `inspect`: fixed, from its name. */
export async function defaultNetworkId(): Promise<string> {
  const d = await crypto.subtle.digest("SHA-256", new TextEncoder().encode("micro network micro"));
  return [...new Uint8Array(d)].map((x) => x.toString(16).padStart(2, "0")).join("");
}
