/**
 * The host facts a CNI network needs, read once before planning (core/host.ts): where the
 * plugins are and which are missing, iptables (bridge's masquerade, portmap and firewall
 * run it), the configuration list (micro's own made with a subnet free on this host), and
 * the host's resolv.conf.
 */
import { MicroError } from "../errors.ts";
import type { NetFacts } from "../plugin.ts";
import type { Spec } from "../spec.ts";
import type { Sys } from "../sys/mod.ts";
import {
  BANDWIDTH_PLUGIN,
  type ConfList,
  loadConfList,
  MICRO_BRIDGE,
  MICRO_PLUGINS,
  microConfList,
} from "./config.ts";
import { baseFacts } from "./facts.ts";
import { findPlugin, untrustedPlugin } from "./exec.ts";
import { chooseSubnet, parseCidr } from "./subnet.ts";
import { hostRoutes, listNetworks, loadNetwork, networksDir } from "./networks.ts";
import { takeOwnRules } from "./bridge.ts";
import { storeRoot } from "../store/paths.ts";

/** Where the micro network's host-local leases live: with the run state, gone at reboot. */
export const IPAM_DIR = "/run/micro/.networks";

const PLUGINS_HINT = "Debian: apt install containernetworking-plugins, or set CNI_PATH";
const BIN_PATH = ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"];

function onPath(name: string): boolean {
  return findOnPath(name) !== undefined;
}

/** Whether this user may open /dev/net/tun (opened and closed: nothing is created). */
function tunUsable(): boolean {
  try {
    Deno.openSync("/dev/net/tun", { read: true, write: true }).close();
    return true;
  } catch {
    return false;
  }
}

/** The first executable regular file of that name in the fixed PATH. */
function findOnPath(name: string): string | undefined {
  return BIN_PATH.map((d) => `${d}/${name}`).find((p) => {
    try {
      const st = Deno.statSync(p);
      return st.isFile && ((st.mode ?? 0) & 0o111) !== 0;
    } catch {
      return false;
    }
  });
}

/** The plugin types a list runs, with its IPAM plugins. */
function pluginTypes(list: ConfList): string[] {
  const out: string[] = [];
  for (const p of list.plugins) {
    out.push(p.type);
    const ipam = (p as { ipam?: { type?: unknown } }).ipam;
    if (typeof ipam?.type === "string" && /^[a-zA-Z0-9_.-]+$/.test(ipam.type)) out.push(ipam.type);
  }
  return [...new Set(out)];
}

/** Whether the run asks for a rate limit (the bandwidth plugin). */
function limited(spec: Spec): boolean {
  const bw = spec.micro.bandwidth;
  return !!bw && (bw.ingressRate > 0 || bw.egressRate > 0);
}

export function probeNetwork(spec: Spec, sys: Sys, uid: number): NetFacts {
  const facts = baseFacts(sys);
  const { cniPath, defaultNetwork: chosen } = facts;
  const mode = spec.micro.network;
  // `auto` that MICRO_DEFAULT_NETWORK makes none (plugins/net.ts resolveAuto): nothing else of
  // the host's networking is used (no routes, subnets or plugins to look at).
  if (mode === "auto" && chosen === "none") return facts;
  if (mode === "pasta" || mode === "slirp4netns" || (mode === "auto" && uid !== 0)) {
    // Rootless networks (core/usernet): only the helper's binary matters.
    const helpers: NonNullable<NetFacts["helpers"]> = {};
    for (const tool of mode === "auto" ? ["pasta" as const] : [mode]) {
      const path = findOnPath(tool);
      // `auto` takes pasta only where it can work: /dev/net/tun open to this user (a
      // host whose node is 0600 keeps none); asked for, pasta's own error says it.
      if (path && (mode !== "auto" || tunUsable())) helpers[tool] = path;
    }
    facts.helpers = helpers;
    if (mode !== "auto") return facts;
  }
  if (uid !== 0) {
    facts.missing.push("root (rootless: use --network pasta or slirp4netns)");
    return facts;
  }
  let list: ConfList | undefined;
  if (spec.micro.network === "cni") {
    // A network micro created wins over a conf-dir list of the same name.
    try {
      const name = spec.micro.net!.name;
      const created = loadNetwork(networksDir(storeRoot(uid)), name);
      if (created) {
        list = created.list;
        facts.subnet = created.subnet;
        if (created.internal) facts.internalBridge = created.bridge;
        const taken = takeOwnRules(list, created.bridge, created.subnet);
        list = taken.list;
        facts.ownRules = taken.own;
        // micro's own lists, as its default network: the limiter is chained when asked.
        if (limited(spec)) list.plugins.push(BANDWIDTH_PLUGIN);
      } else list = loadConfList(spec.micro.net!.configDir, name);
    } catch (e) {
      facts.configError = e instanceof MicroError ? e.line() : String(e);
      return facts;
    }
  } else {
    const routes = hostRoutes();
    // Created networks' subnets are avoided even while their bridges do not exist.
    const mine = routes.some((r) => r.iface === MICRO_BRIDGE && r.prefix > 0);
    const taken = mine ? [] : listNetworks(networksDir(storeRoot(uid))).flatMap((n) => {
      const c = parseCidr(n.subnet);
      return typeof c === "string" ? [] : [c];
    });
    const free = chooseSubnet(routes, MICRO_BRIDGE, taken);
    if (!free) {
      facts.configError = "no private /16 is free of this host's routes for micro's network";
      return facts;
    }
    const own = takeOwnRules(
      microConfList(free.subnet, free.gateway, IPAM_DIR),
      MICRO_BRIDGE,
      free.subnet,
    );
    list = own.list;
    facts.ownRules = own.own;
    facts.subnet = free.subnet;
    facts.transientBridge = MICRO_BRIDGE;
    if (limited(spec)) list.plugins.push(BANDWIDTH_PLUGIN);
  }
  facts.ips = list.plugins.some((p) => p.capabilities?.ips === true);
  facts.config = JSON.stringify(list);
  const types = spec.micro.network === "cni"
    ? pluginTypes(list)
    : [...MICRO_PLUGINS, ...(limited(spec) ? [BANDWIDTH_PLUGIN.type] : [])];
  const absent = types.filter((t) => !findPlugin(t, cniPath));
  for (const t of types) {
    const path = findPlugin(t, cniPath);
    const why = path && untrustedPlugin(path);
    if (why) facts.missing.push(`a CNI plugin ${t} only root may write: ${why}`);
  }
  if (absent.length) {
    facts.missing.push(
      `the CNI plugin${absent.length > 1 ? "s" : ""} ${absent.join(", ")} in ${
        cniPath.join(":")
      } (${PLUGINS_HINT})`,
    );
  }
  if (!onPath("iptables")) facts.missing.push("iptables (Debian: apt install iptables)");
  return facts;
}
