/**
 * net: `none` is an own network namespace holding only `lo`, up; `host` shares the host's;
 * `bridge` is micro's own CNI network `micro` (bridge micro0, NAT, published ports); a
 * name is a CNI configuration list in the config directory; `auto` (the default profile)
 * is bridge as root where the host has what it needs, else none with one warning;
 * rootless, it is pasta where installed. `pasta` and `slirp4netns` are the rootless
 * networks (core/usernet): a helper process of the caller's gives the namespace a tap.
 */
import { DEFAULT_CONFIG_DIR, MICRO_NETWORK } from "../core/cni/facts.ts";
import { checkAddHost, isIPv4, parsePublish, type PortMapping } from "../core/cni/ports.ts";
import { MicroError } from "../core/errors.ts";
import { type Op, op } from "../core/ops.ts";
import type { Tool } from "../core/usernet/args.ts";
import type { HostInfo, Plugin } from "../core/plugin.ts";
import type { Spec } from "../core/spec.ts";
import { addNamespace, cloneOp, joinOp, joinProblems } from "./_ns.ts";

const NAME = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;

/** The networks whose check and plan need core/cni/netplan.ts. */
const NEEDS_HELPERS = ["bridge", "cni", "pasta", "slirp4netns"];

let helpers: typeof import("../core/cni/netplan.ts") | undefined;

/** Loads what check() and plan() need for a bridge, CNI or rootless network. */
export async function loadNetHelpers(): Promise<void> {
  helpers ??= await import("../core/cni/netplan.ts");
}

function need(): typeof import("../core/cni/netplan.ts") {
  if (!helpers) throw new Error("internal: the network plugin's helpers were not loaded");
  return helpers;
}

/** `container:NAME`: a running micro container whose network namespace is joined. */
const JOIN = /^container:([a-zA-Z0-9][a-zA-Z0-9_.-]{0,127})$/;

interface NetOptions {
  mode?: string;
  publish?: string[];
  dns?: string[];
  dnsSearch?: string[];
  addHosts?: string[];
  configDir?: string;
  ip?: string;
  publishAll?: boolean;
}

/** The files micro makes per container and binds over /etc (never written into the image). */
export const RUN_FILES = ["hosts", "hostname", "resolv.conf"];

/** The rootless helper's start (attach) and stop (cleanup), with the DNS files. */
/** A unix socket path's longest length in bytes (sun_path is 108 with its NUL). */
const SUN_PATH_MAX = 107;

function usernetOps(spec: Spec, host: HostInfo, tool: Tool, path: string): Op[] {
  const n = spec.micro.net!;
  const { resolvConf, SLIRP_ADDRESS, SLIRP_DNS } = need();
  const resolv = resolvConf(host.net!.resolv, host.net!.resolvUpstream, {
    servers: n.dns.length ? n.dns : tool === "slirp4netns" ? [SLIRP_DNS] : [],
    search: n.dnsSearch,
  });
  return [
    op("attach", "net", "usernet-start", {
      tool,
      path,
      publish: n.publish,
      dir: host.stateDir,
      files: {
        hostname: spec.hostname || host.hostname || host.id,
        ...(tool === "slirp4netns" ? { address: SLIRP_ADDRESS } : {}),
        resolv,
        addHosts: n.addHosts,
      },
    }),
    op("cleanup", "net", "usernet-stop", { tool, dir: host.stateDir }),
  ];
}

/** Whether the bandwidth plugin asked for a limit (through the spec). */
function limits(spec: Spec): boolean {
  const bw = spec.micro.bandwidth;
  return !!bw && (bw.ingressRate > 0 || bw.egressRate > 0);
}

/** The CNI record's name in the run's state dir (core/cni/exec.ts CACHE_FILE). */
const CACHE = "cni.json";

/** The network of a mode other than `container:NAME`: its namespace, kind and DNS files. */
function setMode(spec: Spec, mode: string): void {
  if (mode !== "host") addNamespace(spec, "network");
  if (mode === "none" || mode === "host") {
    spec.micro.network = mode;
  } else if (mode === "pasta" || mode === "slirp4netns") {
    spec.micro.network = mode;
    spec.micro.runFiles = [...RUN_FILES];
  } else {
    spec.micro.network = mode === "auto"
      ? "auto"
      : mode === "bridge" || mode === MICRO_NETWORK
      ? "bridge"
      : "cni";
    // auto gets them once it is resolved to bridge (resolveAuto).
    if (mode !== "auto") spec.micro.runFiles = [...RUN_FILES];
  }
}

export const net: Plugin<NetOptions> = {
  name: "net",
  description: "network: none (only lo), host, bridge (micro's own CNI network), a CNI list's name",
  schema: {
    type: "object",
    fields: {
      mode: {
        type: "string",
        doc: "none, host, bridge, auto (bridge as root when the host can, rootless pasta when " +
          "installed), pasta, slirp4netns (rootless), or a CNI network",
        check: (v) =>
          NAME.test(v) || JOIN.test(v)
            ? undefined
            : "a network is none, host, bridge, auto, pasta, slirp4netns or a CNI network name",
      },
      publish: {
        type: "list",
        doc: "published ports: [HOST_IP:]HOST_PORT:CTR_PORT[/tcp|udp]",
        items: {
          type: "string",
          check: (v) => {
            const r = parsePublish(v);
            return typeof r === "string" ? r : undefined;
          },
        },
      },
      dns: {
        type: "list",
        doc: "name servers for /etc/resolv.conf",
        items: {
          type: "string",
          check: (v) =>
            isIPv4(v) || /^[0-9a-fA-F:]+$/.test(v) && v.includes(":")
              ? undefined
              : `"${v}" is not an IP address`,
        },
      },
      dnsSearch: {
        type: "list",
        doc: "search domains for /etc/resolv.conf",
        items: {
          type: "string",
          check: (v) => /^[A-Za-z0-9.-]+$/.test(v) ? undefined : `"${v}" is not a domain`,
        },
      },
      addHosts: {
        type: "list",
        doc: "extra /etc/hosts entries, NAME:IP",
        items: { type: "string", check: checkAddHost },
      },
      configDir: {
        type: "string",
        doc: "the CNI configuration directory (default /etc/cni/net.d)",
        check: (v) => v.startsWith("/") ? undefined : "the directory must be absolute",
      },
      ip: {
        type: "string",
        doc: "the container's IPv4 address on its network (host-local's ips capability)",
        check: (v) => isIPv4(v) ? undefined : `"${v}" is not an IPv4 address`,
      },
      publishAll: {
        type: "boolean",
        doc: "publish the image's exposed ports on free host ports (-P)",
      },
    },
  },
  configure(o, spec) {
    const mode = o.mode ?? "none";
    const join = JOIN.exec(mode)?.[1];
    if (join !== undefined) {
      // Its namespace, and its DNS files, as Docker's --network container: shares them.
      spec.micro.network = "container";
      (spec.micro.join ??= {}).network = join;
      spec.micro.runFiles = [...RUN_FILES];
    } else setMode(spec, mode);
    const publish: PortMapping[] = [];
    for (const p of o.publish ?? []) {
      const r = parsePublish(p);
      if (typeof r !== "string") publish.push(...r);
    }
    spec.micro.net = {
      name: spec.micro.network === "cni" ? mode : MICRO_NETWORK,
      publish,
      dns: [...(o.dns ?? [])],
      dnsSearch: [...(o.dnsSearch ?? [])],
      addHosts: [...(o.addHosts ?? [])],
      configDir: o.configDir ?? DEFAULT_CONFIG_DIR,
      ...(o.ip !== undefined ? { ip: o.ip } : {}),
      ...(o.publishAll ? { publishAll: true } : {}),
    };
  },
  async load(spec) {
    if (NEEDS_HELPERS.includes(spec.micro.network)) await loadNetHelpers();
  },
  plan(spec, host): Op[] {
    const mode = spec.micro.network;
    if (mode === "host") return [];
    if (mode === "container") {
      const container = spec.micro.join!.network!;
      return [
        joinOp("net", "network", spec),
        op("attach", "net", "net-join-files", {
          container,
          dir: host.stateDir,
          hostname: spec.hostname || host.hostname || host.id,
          names: [...RUN_FILES],
        }),
      ];
    }
    const ops = [cloneOp("net", "network"), op("identity", "net", "loopback-up", {})];
    if (spec.micro.networkFallback) {
      ops.push(op("prepare", "net", "skipped", {
        what: "network bridge",
        reason: spec.micro.networkFallback,
      }));
    }
    if ((mode === "pasta" || mode === "slirp4netns") && host.net?.helpers?.[mode]) {
      return [...ops, ...usernetOps(spec, host, mode, host.net.helpers[mode]!)];
    }
    if ((mode !== "bridge" && mode !== "cni") || !host.net?.config) return ops;
    const n = spec.micro.net!;
    const cache = `${host.stateDir}/${CACHE}`;
    ops.push(
      op("attach", "net", "cni-add", {
        network: n.name,
        config: host.net.config,
        containerId: host.id,
        ifName: "eth0",
        cniPath: host.net.cniPath,
        portMappings: n.publish,
        ...(limits(spec) ? { bandwidth: { ...spec.micro.bandwidth! } } : {}),
        cache,
        ...(n.ip !== undefined ? { ip: n.ip } : {}),
        ...(n.publishAll && n.exposed?.length ? { publishAll: n.exposed } : {}),
        ...(host.net.transientBridge ? { transientBridge: host.net.transientBridge } : {}),
        ...(host.net.internalBridge ? { internalBridge: host.net.internalBridge } : {}),
        ...(host.net.ownRules ? { ownRules: host.net.ownRules } : {}),
        ...(spec.micro.runFiles?.length
          ? {
            files: {
              dir: host.stateDir,
              hostname: spec.hostname || host.hostname || host.id,
              resolv: need().resolvConf(host.net.resolv, host.net.resolvUpstream, {
                servers: n.dns,
                search: n.dnsSearch,
              }),
              addHosts: n.addHosts,
            },
          }
          : {}),
      }),
      op("cleanup", "net", "cni-del", { cache }),
    );
    return ops;
  },
  check(spec, host) {
    const mode = spec.micro.network;
    const n = spec.micro.net;
    const errors: MicroError[] = [];
    if (mode === "container") {
      // The joined container's network is its own: nothing of it is chosen here (Docker's
      // "conflicting options" for -p, --ip, --dns, --add-host with container:).
      const asked = [
        n?.publish.length || n?.publishAll ? "--publish" : "",
        n?.ip !== undefined ? "--ip" : "",
        n?.dns.length ? "--dns" : "",
        n?.dnsSearch.length ? "--dns-search" : "",
        n?.addHosts.length ? "--add-host" : "",
      ].filter((x) => x);
      if (asked.length) {
        errors.push(
          new MicroError(
            `${asked.join(", ")} cannot be used with --network container:${
              spec.micro.join!.network
            }: its network is that container's`,
            { phase: "check", plugin: "net", hint: "give them to the container that is joined" },
          ),
        );
      }
      return [...errors, ...joinProblems("net", "network", spec)];
    }
    if ((mode === "none" || mode === "host") && n?.publish.length) {
      errors.push(
        new MicroError(`--publish needs a network with its own address, not "${mode}"`, {
          phase: "check",
          plugin: "net",
          hint: "use --network bridge (or leave --network out), or drop -p",
        }),
      );
    }
    if ((mode === "none" || mode === "host") && n?.ip !== undefined) {
      errors.push(
        new MicroError(`--ip needs a network with its own address, not "${mode}"`, {
          phase: "check",
          plugin: "net",
          hint: "use --network bridge or a network of micro network create, or drop --ip",
        }),
      );
    }
    if (mode === "pasta" || mode === "slirp4netns") {
      if (host.uid === 0) {
        errors.push(
          new MicroError(`--network ${mode} is a rootless network: root runs use bridge`, {
            phase: "check",
            plugin: "net",
            hint: "use --network bridge (or leave --network out), or run micro as your own user",
          }),
        );
      } else if (!host.net?.helpers?.[mode]) {
        errors.push(
          new MicroError(`--network ${mode} needs ${mode}, which is not installed`, {
            phase: "check",
            plugin: "net",
            hint: `Debian: apt install ${need().PACKAGE[mode]}`,
          }),
        );
      }
      const socket = `${host.stateDir}/${need().SLIRP_SOCKET}`;
      const bytes = new TextEncoder().encode(socket).length;
      if (mode === "slirp4netns" && bytes > SUN_PATH_MAX) {
        // sockaddr_un's sun_path holds 108 bytes with the NUL: slirp4netns would fail later.
        errors.push(
          new MicroError(
            `--network slirp4netns: its API socket ${socket} is ${bytes} bytes, over the ` +
              `${SUN_PATH_MAX} a unix socket path can have`,
            {
              phase: "check",
              plugin: "net",
              hint: "give a shorter --name (or a shorter XDG_RUNTIME_DIR), or use pasta",
            },
          ),
        );
      }
      return errors;
    }
    if (mode !== "bridge" && mode !== "cni") return errors;
    const what = mode === "bridge" ? "--network bridge" : `--network ${n!.name}`;
    const net = host.net;
    if (net?.configError) {
      errors.push(new MicroError(net.configError, { phase: "check", plugin: "net" }));
    } else if (net?.missing.length) {
      errors.push(
        new MicroError(`${what} needs ${net.missing.join(", and ")}`, {
          phase: "check",
          plugin: "net",
        }),
      );
    } else if (n?.ip !== undefined && net) {
      const { hostOf, parseCidr } = need();
      const c = net.subnet ? parseCidr(net.subnet) : undefined;
      if (!net.ips) {
        errors.push(
          new MicroError(`--ip ${n.ip}: network "${n.name}" takes no ips capability`, {
            phase: "check",
            plugin: "net",
            hint: 'add "capabilities": {"ips": true} to its IPAM plugin\'s entry, or drop --ip',
          }),
        );
      } else if (c && typeof c !== "string" && !hostOf(c, n.ip)) {
        errors.push(
          new MicroError(
            `--ip ${n.ip} is not a host address of network "${n.name}" (${net.subnet})`,
            {
              phase: "check",
              plugin: "net",
              hint: "choose an address inside the subnet (micro network inspect)",
            },
          ),
        );
      }
    }
    return errors;
  },
};

/**
 * `auto` against the host probe: bridge as root where nothing is missing; else none, with
 * the reason kept for one warning (as root) or silently (rootless: pasta comes later). A
 * run that publishes ports or limits its rate asked for a network, so it is treated as
 * `bridge` (but under
 * MICRO_DEFAULT_NETWORK=none).
 * MICRO_DEFAULT_NETWORK=none|bridge decides instead (a CI host, the test suite).
 */
export function resolveAuto(
  spec: Spec,
  host: {
    uid: number;
    net?: {
      missing: string[];
      configError?: string;
      defaultNetwork?: string;
      helpers?: Partial<Record<Tool, string>>;
    };
  },
): void {
  if (spec.micro.network !== "auto") return;
  const net = host.net;
  const chosen = net?.defaultNetwork;
  const asked = (spec.micro.net?.publish.length ?? 0) > 0 || spec.micro.net?.ip !== undefined ||
    limits(spec);
  const bridge = () => {
    spec.micro.network = "bridge";
    spec.micro.runFiles = [...RUN_FILES];
  };
  // Rootless: pasta where it is installed (as podman), else none, silently.
  if (host.uid !== 0 && chosen !== "none" && chosen !== "bridge" && net?.helpers?.pasta) {
    spec.micro.network = "pasta";
    spec.micro.runFiles = [...RUN_FILES];
    return;
  }
  // MICRO_DEFAULT_NETWORK=none wins even over -p (which the checks then refuse): the test
  // suite relies on it never to build micro0 in the machine's own namespace.
  if (chosen === "bridge" || (asked && chosen !== "none")) return bridge();
  const why = chosen === "none" || host.uid !== 0
    ? undefined
    : net?.configError ?? (net?.missing.length ? `needs ${net.missing.join(", and ")}` : undefined);
  if (chosen !== "none" && host.uid === 0 && why === undefined) return bridge();
  spec.micro.network = "none";
  delete spec.micro.runFiles;
  if (why) spec.micro.networkFallback = `no bridge network, running with --network none: ${why}`;
}
