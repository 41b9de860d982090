/**
 * `micro network create|ls|rm|inspect`: bridge networks micro owns, kept as CNI
 * configuration lists under STORE/networks (core/cni/networks.ts). micro's default network
 * `micro` (bridge micro0) is listed too, and cannot be created or removed. Root only: the
 * bridge, NAT and firewall rules live in the host's network namespace.
 */
import { MicroError } from "../core/errors.ts";
import type { Network } from "../core/cni/networks.ts";

const USAGE = "usage: micro network create [--subnet CIDR] [--gateway IP] [--internal] NAME | " +
  "micro network ls [-q] | micro network rm NAME... | micro network inspect NAME... | " +
  "micro network check CONTAINER...";

interface Args {
  verb: string;
  names: string[];
  quiet: boolean;
  subnet?: string;
  gateway?: string;
  internal: boolean;
}

function parse(argv: string[]): Args {
  const a: Args = { verb: argv[1] ?? "", names: [], quiet: false, internal: false };
  const value = (i: number, opt: string): string => {
    const v = argv[i];
    if (v === undefined || v === "") {
      throw new MicroError(`option "${opt}" needs a value`, { hint: USAGE });
    }
    return v;
  };
  for (let i = 2; i < argv.length; i++) {
    const arg = argv[i];
    const eq = arg.startsWith("--") ? arg.indexOf("=") : -1;
    const opt = eq > 0 ? arg.slice(0, eq) : arg;
    const inline = eq > 0 ? arg.slice(eq + 1) : undefined;
    const take = () => inline ?? value(++i, opt);
    if (a.verb === "create" && opt === "--subnet") a.subnet = take();
    else if (a.verb === "create" && opt === "--gateway") a.gateway = take();
    else if (a.verb === "create" && (opt === "--driver" || opt === "-d")) {
      const d = take();
      if (d !== "bridge") {
        throw new MicroError(`network create: driver "${d}" is not supported`, {
          hint: "micro's networks are bridges: drop --driver or give bridge",
        });
      }
    } else if (a.verb === "create" && opt === "--internal") a.internal = true;
    else if ((a.verb === "ls" || a.verb === "list") && (opt === "-q" || opt === "--quiet")) {
      a.quiet = true;
    } else if (arg.startsWith("-")) {
      throw new MicroError(`unknown option "${arg}" for micro network ${a.verb}`, { hint: USAGE });
    } else a.names.push(arg);
  }
  return a;
}

export async function network(argv: string[]): Promise<number> {
  const a = parse(argv);
  if (a.verb === "" || a.verb === "--help" || a.verb === "-h" || a.verb === "help") {
    console.log(USAGE);
    return a.verb === "" ? 125 : 0;
  }
  if (!["create", "ls", "list", "rm", "remove", "inspect", "check"].includes(a.verb)) {
    throw new MicroError(`unknown network command "${a.verb}"`, { hint: USAGE });
  }
  if ((Deno.uid() ?? 0) !== 0) {
    throw new MicroError(`micro network ${a.verb} needs root`, {
      hint: "bridge networks live in the host's network namespace: run it as root",
    });
  }
  if (a.verb === "check") return await check(a);
  const { storeRoot } = await import("../core/store/paths.ts");
  const { networksDir } = await import("../core/cni/networks.ts");
  const dir = networksDir(storeRoot(0));
  switch (a.verb) {
    case "create":
      return await create(dir, a);
    case "ls":
    case "list":
      return await list(dir, a);
    case "rm":
    case "remove":
      return await remove(dir, a);
    default:
      return await inspect(dir, a);
  }
}

async function create(dir: string, a: Args): Promise<number> {
  const n = await import("../core/cni/networks.ts");
  const { IPAM_DIR } = await import("../core/cni/probe.ts");
  if (a.names.length !== 1) {
    throw new MicroError("micro network create needs one network name", { hint: USAGE });
  }
  const name = a.names[0];
  if (!n.NETWORK_NAME.test(name)) {
    throw new MicroError(
      `network create: "${name}" is not a network name (letters, digits, _ . -; up to 64)`,
    );
  }
  if (n.RESERVED.includes(name)) {
    throw new MicroError(`network create: "${name}" is a name --network already has`, {
      hint: "choose another name",
    });
  }
  if (n.loadNetwork(dir, name)) {
    throw new MicroError(`network create: a network named "${name}" already exists`, {
      hint: "choose another name, or micro network rm it first",
    });
  }
  const others = n.listNetworks(dir, warn);
  const { subnet, gateway } = n.planSubnet(
    { name, subnet: a.subnet, gateway: a.gateway, internal: a.internal },
    n.hostRoutes(),
    others,
  );
  const id = n.newNetworkId();
  const list = n.createdConfList(
    { name, id, created: new Date().toISOString(), subnet, gateway },
    a.internal,
    IPAM_DIR,
  );
  n.saveNetwork(dir, list);
  console.log(id);
  return 0;
}

function warn(m: string): void {
  console.error(`micro: warning: ${m}`);
}

async function list(dir: string, a: Args): Promise<number> {
  if (a.names.length) throw new MicroError("micro network ls takes no names", { hint: USAGE });
  const n = await import("../core/cni/networks.ts");
  const { MICRO_NETWORK } = await import("../core/cni/facts.ts");
  const rows = [
    { id: await n.defaultNetworkId(), name: MICRO_NETWORK },
    ...n.listNetworks(dir, warn),
  ];
  if (a.quiet) {
    for (const r of rows) console.log(r.id.slice(0, 12));
    return 0;
  }
  const width = Math.max(4, ...rows.map((r) => r.name.length)) + 3;
  console.log(`NETWORK ID     ${"NAME".padEnd(width)}DRIVER    SCOPE`);
  for (const r of rows) {
    console.log(`${r.id.slice(0, 12)}   ${r.name.padEnd(width)}bridge    local`);
  }
  return 0;
}

/** Live runs attached to `network` in this network namespace, from their CNI records. */
async function attached(
  network: string,
): Promise<{ id: string; name: string; address: string; ports: unknown[] }[]> {
  const { stateRoot } = await import("../core/stateroot.ts");
  const { liveRecords } = await import("../core/cni/attach.ts");
  const out: { id: string; name: string; address: string; ports: unknown[] }[] = [];
  for (const { name, cache: c, state } of liveRecords(stateRoot(0))) {
    if (c.config.name !== network) continue;
    const ips = (c.result as { ips?: { address?: string }[] } | null)?.ips;
    const address = Array.isArray(ips) && typeof ips[0]?.address === "string" ? ips[0].address : "";
    const ports = (c.runtimeConfig?.portMappings ?? []) as unknown[];
    out.push({ id: state.id, name, address, ports });
  }
  return out.sort((x, y) => x.name.localeCompare(y.name));
}

async function remove(dir: string, a: Args): Promise<number> {
  if (!a.names.length) {
    throw new MicroError("micro network rm needs a network name", { hint: USAGE });
  }
  const n = await import("../core/cni/networks.ts");
  const { ownNetwork, removeBridge } = await import("../core/cni/bridge.ts");
  const { gcState } = await import("./_gc.ts");
  // Runs whose micro was killed are DELeted first: they no longer hold their network.
  await gcState();
  let failed = 0;
  for (const name of a.names) {
    try {
      if (n.RESERVED.includes(name)) {
        throw new MicroError(`network rm: "${name}" is micro's own and cannot be removed`);
      }
      const net = n.loadNetwork(dir, name);
      if (!net) {
        throw new MicroError(`network rm: no network "${name}"`, { hint: "see micro network ls" });
      }
      const own = await ownNetwork(name);
      if (!own) {
        const users = (await attached(name)).map((c) => c.name);
        throw new MicroError(
          `network rm: network "${name}" is in use by ${
            users.length ? `container ${users.join(", ")}` : "a running container"
          }`,
          { hint: "stop the containers on it first" },
        );
      }
      try {
        for (const p of await removeBridge(net.bridge)) warn(`network rm ${name}: ${p}`);
        Deno.removeSync(`${dir}/${name}.conflist`);
        own.removeAndRelease();
      } finally {
        own.release();
      }
      console.log(name);
    } catch (e) {
      if (!(e instanceof MicroError)) throw e;
      console.error(`micro: ${e.line()}`);
      failed++;
    }
  }
  return failed ? 125 : 0;
}

async function inspect(dir: string, a: Args): Promise<number> {
  if (!a.names.length) {
    throw new MicroError("micro network inspect needs a network name", { hint: USAGE });
  }
  const n = await import("../core/cni/networks.ts");
  const c = await import("../core/cni/config.ts");
  const { MICRO_NETWORK } = await import("../core/cni/facts.ts");
  const out: unknown[] = [];
  let failed = 0;
  for (const name of a.names) {
    let net: Omit<Network, "name" | "list">;
    if (name === MICRO_NETWORK || name === "bridge") {
      const { chooseSubnet } = await import("../core/cni/subnet.ts");
      const free = chooseSubnet(n.hostRoutes(), c.MICRO_BRIDGE);
      net = {
        id: await n.defaultNetworkId(),
        created: "",
        subnet: free?.subnet ?? "",
        gateway: free?.gateway ?? "",
        internal: false,
        bridge: c.MICRO_BRIDGE,
      };
    } else {
      const found = n.loadNetwork(dir, name);
      if (!found) {
        console.error(`micro: network inspect: no network "${name}" (see micro network ls)`);
        failed++;
        continue;
      }
      net = found;
    }
    const listName = name === "bridge" ? MICRO_NETWORK : name;
    const containers: Record<string, unknown> = {};
    for (const x of await attached(listName)) {
      containers[x.id] = { Name: x.name, IPv4Address: x.address, Ports: x.ports };
    }
    out.push({
      Name: listName,
      Id: net.id,
      Created: net.created,
      Driver: "bridge",
      Scope: "local",
      IPAM: { Driver: "host-local", Config: [{ Subnet: net.subnet, Gateway: net.gateway }] },
      Internal: net.internal,
      Options: { "com.docker.network.bridge.name": net.bridge },
      Containers: containers,
    });
  }
  console.log(JSON.stringify(out, null, 4));
  return failed ? 125 : 0;
}

/**
 * CNI CHECK of running containers: each plugin of each container's network, with the
 * cached ADD result as prevResult, in the pinned namespace; "ok" or one line per failure
 * (a veth gone, an address moved, a firewall rule flushed by hand).
 */
async function check(a: Args): Promise<number> {
  if (!a.names.length) {
    throw new MicroError("micro network check needs a container name", { hint: USAGE });
  }
  const { findRunning } = await import("../core/exec/find.ts");
  const { checkCached } = await import("../core/cni/attach.ts");
  let failed = 0;
  for (const ref of a.names) {
    try {
      const found = findRunning(ref, 0);
      console.log(`${found.name}: ${await checkCached(found.dir)}`);
    } catch (e) {
      if (!(e instanceof MicroError)) throw e;
      console.error(`micro: ${e.line()}`);
      failed++;
    }
  }
  return failed ? 125 : 0;
}
