/**
 * CNI network configuration lists (the CNI spec 1.0, section 1; 0.3 and 0.4 lists are
 * accepted): parsed from files in the config directory, or micro's own `micro` network made
 * in memory. Every file is read as a regular file with a size cap and parsed with a nesting
 * limit; a plugin `type` is a bare name, so it can only name a binary in CNI_PATH.
 */
import { MicroError } from "../errors.ts";
import { FileRefused, MiB, readRegularFile } from "../files.ts";
import { openLibc } from "../sys/libc.ts";
import { parseJsonLimited } from "./json.ts";
import { MICRO_NETWORK } from "./facts.ts";

/** What a configuration file may weigh; real ones are a few hundred bytes. */
export const CONFIG_CAP = MiB;

/** The versions whose configurations micro runs (results pass through unchanged). */
export const VERSIONS = ["0.3.0", "0.3.1", "0.4.0", "1.0.0"];

export interface PluginConf {
  type: string;
  capabilities?: Record<string, boolean>;
  [key: string]: unknown;
}

export interface ConfList {
  cniVersion: string;
  name: string;
  disableCheck?: boolean;
  plugins: PluginConf[];
}

/** Network and plugin names: what libcni accepts, and never a path. */
const NAME = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/**
 * A configuration list (`.conflist`) or a single plugin's configuration (`.conf`,
 * `.json`: a list of one), validated. Throws an Error with a short reason.
 */
export function parseConfList(text: string, single = false): ConfList {
  const raw = parseJsonLimited(text);
  if (!isObject(raw)) throw new Error("not a JSON object");
  let list: Record<string, unknown> = raw;
  if (single || (!("plugins" in raw) && "type" in raw)) {
    const { name, cniVersion, ...plugin } = raw;
    list = { name, cniVersion, plugins: [plugin] };
  }
  const { name, cniVersion, plugins, disableCheck } = list;
  if (typeof name !== "string" || !NAME.test(name)) {
    throw new Error(`"name" must be letters, digits, _ . and -, got ${JSON.stringify(name)}`);
  }
  if (typeof cniVersion !== "string" || !VERSIONS.includes(cniVersion)) {
    throw new Error(
      `"cniVersion" ${JSON.stringify(cniVersion)} is not supported (${VERSIONS.join(", ")})`,
    );
  }
  if (disableCheck !== undefined && typeof disableCheck !== "boolean") {
    throw new Error(`"disableCheck" must be true or false`);
  }
  if (!Array.isArray(plugins) || plugins.length === 0) {
    throw new Error(`"plugins" must be a non-empty list`);
  }
  plugins.forEach((p, i) => {
    if (!isObject(p)) throw new Error(`plugins[${i}] is not an object`);
    if (typeof p.type !== "string" || !NAME.test(p.type)) {
      throw new Error(
        `plugins[${i}].type must be a plugin's file name, got ${JSON.stringify(p.type)}`,
      );
    }
    if (p.capabilities !== undefined && !isObject(p.capabilities)) {
      throw new Error(`plugins[${i}].capabilities must be an object`);
    }
  });
  return {
    cniVersion,
    name,
    ...(disableCheck ? { disableCheck } : {}),
    plugins: plugins as PluginConf[],
  };
}

/**
 * Why a file or directory that decides what micro runs as root (a CNI configuration, a
 * plugin binary, the directories they are in) cannot be trusted: another owner than root
 * or the caller, or writable by group or others. Whoever may write it chooses the program
 * root runs, or its configuration (host-local's `dataDir`: files made as root anywhere).
 */
export function untrusted(st: { uid: number; mode: number }, me: number): string | undefined {
  if (st.uid !== 0 && st.uid !== me) return `belongs to uid ${st.uid}`;
  if (st.mode & 0o022) return "may be written by others";
  return undefined;
}

/** `untrusted` for a directory by name (links followed: the user named it). */
export function untrustedDir(dir: string, me: number): string | undefined {
  try {
    const st = Deno.statSync(dir);
    return untrusted({ uid: st.uid ?? -1, mode: st.mode ?? 0o777 }, me);
  } catch {
    return undefined; // not there: listing or running from it fails on its own
  }
}

/** How the loader reads a file (a seam for tests): trusted, regular, capped. */
export type ReadFile = (path: string, cap: number) => string;

const readFile: ReadFile = (path, cap) => {
  const me = Deno.uid() ?? 0;
  return readRegularFile(openLibc(), path, cap, (st) => {
    const why = untrusted(st, me);
    return why && `${why}: refused, whoever writes it chooses what micro runs as root`;
  });
};

/**
 * The configuration list named `name` in `dir`: files ending in .conflist, .conf or .json,
 * in name order, the first whose network name matches (as libcni). Files that cannot be read
 * or parsed are skipped, and named in the error when nothing matches.
 */
export function loadConfList(
  dir: string,
  name: string,
  read: ReadFile = readFile,
  me = Deno.uid() ?? 0,
): ConfList {
  const bad = untrustedDir(dir, me);
  if (bad) {
    throw new MicroError(
      `network "${name}": the CNI config directory ${dir} ${bad}: refused on purpose, ` +
        `since whoever writes there chooses the plugins micro runs as root and their configuration`,
      { hint: `chmod go-w ${dir} (owned by root), or give another with --cni-config-dir` },
    );
  }
  let names: string[];
  try {
    names = [...Deno.readDirSync(dir)].map((e) => e.name).filter((n) =>
      /\.(conflist|conf|json)$/.test(n)
    ).sort();
  } catch (e) {
    throw new MicroError(`network "${name}": cannot list the CNI config directory ${dir}`, {
      hint: e instanceof Deno.errors.NotFound
        ? "create it, or give another with --cni-config-dir"
        : (e as Error).message.split("\n")[0],
    });
  }
  const skipped: string[] = [];
  for (const file of names) {
    const path = `${dir}/${file}`;
    try {
      const list = parseConfList(read(path, CONFIG_CAP), !file.endsWith(".conflist"));
      if (list.name === name) return list;
    } catch (e) {
      const why = e instanceof FileRefused ? e.reason : (e as Error).message;
      skipped.push(`${file}: ${why}`);
    }
  }
  throw new MicroError(`unknown network "${name}": no CNI configuration of that name in ${dir}`, {
    hint: skipped.length
      ? `skipped ${skipped.join("; ")}`
      : "use --network bridge (micro's own network), none or host, or add a .conflist there",
  });
}

/** The bridge of micro's own network (its name: MICRO_NETWORK). */
export const MICRO_BRIDGE = "micro0";

/**
 * The rate limiter chained after micro's own network's plugins when a run asks for a limit
 * (plugins/bandwidth.ts): only then, so a run without one does not exec one more plugin.
 */
export const BANDWIDTH_PLUGIN: PluginConf = {
  type: "bandwidth",
  capabilities: { bandwidth: true },
};

/** The plugins micro's own network runs, in order (what a host needs for it). */
export const MICRO_PLUGINS = ["bridge", "host-local", "portmap", "firewall"];

/**
 * micro's own network, as podman's default one: a bridge acting as the gateway, addresses
 * from host-local (leases under `dataDir`; `ips` for --ip), outgoing traffic masqueraded,
 * published ports through portmap, and the firewall plugin's forward and isolation rules
 * (the masquerade and isolation made by micro itself: core/cni/bridge.ts takeOwnRules).
 */
export function microConfList(subnet: string, gateway: string, dataDir: string): ConfList {
  return {
    cniVersion: "1.0.0",
    name: MICRO_NETWORK,
    plugins: [
      {
        type: "bridge",
        bridge: MICRO_BRIDGE,
        isGateway: true,
        ipMasq: true,
        hairpinMode: true,
        capabilities: { ips: true },
        ipam: {
          type: "host-local",
          dataDir,
          routes: [{ dst: "0.0.0.0/0" }],
          ranges: [[{ subnet, gateway }]],
        },
      },
      { type: "portmap", capabilities: { portMappings: true } },
      // same-bridge: isolated from micro's created networks, as Docker's DOCKER-ISOLATION.
      // micro makes these rules and the masquerade itself (core/cni/bridge.ts takeOwnRules).
      { type: "firewall", backend: "iptables", ingressPolicy: "same-bridge" },
    ],
  };
}
