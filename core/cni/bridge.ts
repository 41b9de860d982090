/**
 * The life of a micro network's bridge. Each run holds a shared flock on its network's use
 * file (`/run/micro/.networks/NAME.use`) from before ADD until after DEL; the kernel drops
 * it when micro dies. Whoever gets the lock exclusive without waiting knows no run uses the
 * network: the default network's bridge then goes with its last container, and `micro
 * network rm` may remove a created one. A run starting meanwhile waits for the shared lock,
 * so it never ADDs to a bridge that is being deleted (its ADD makes the bridge again).
 */
import { type HeldLock, lockFile } from "../store/lock.ts";
import { IPAM_DIR } from "./probe.ts";

/** The firewall plugin's isolation chains (ingressPolicy same-bridge, as Docker's). */
const ISOLATION_CHAINS = ["CNI-ISOLATION-STAGE-1", "CNI-ISOLATION-STAGE-2"];
const TOOL_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

export function useLockPath(network: string): string {
  return `${IPAM_DIR}/${network}.use`;
}

/** The shared hold a run keeps on its network while it is attached. */
export async function holdNetwork(network: string): Promise<HeldLock> {
  Deno.mkdirSync(IPAM_DIR, { recursive: true, mode: 0o700 });
  return (await lockFile(useLockPath(network), false, true))!;
}

/** The exclusive hold: null when a run uses the network. */
export async function ownNetwork(network: string): Promise<HeldLock | null> {
  Deno.mkdirSync(IPAM_DIR, { recursive: true, mode: 0o700 });
  return await lockFile(useLockPath(network), true, false);
}

async function tool(cmd: string, args: string[]): Promise<{ ok: boolean; out: string }> {
  try {
    const o = await new Deno.Command(cmd, {
      args,
      clearEnv: true,
      env: { PATH: TOOL_PATH },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
    const d = new TextDecoder();
    return { ok: o.success, out: d.decode(o.stdout) + d.decode(o.stderr) };
  } catch (e) {
    return { ok: false, out: (e as Error).message };
  }
}

/** `-A CHAIN -i br ! -o br -m comment --comment "a b" -j X` to its words, quotes honoured. */
export function ruleWords(line: string): string[] {
  const out: string[] = [];
  const re = /"((?:[^"\\]|\\.)*)"|(\S+)/g;
  for (let m; (m = re.exec(line));) {
    out.push(m[1] !== undefined ? m[1].replace(/\\(.)/g, "$1") : m[2]);
  }
  return out;
}

/** The rules of `iptables -S` output that name `bridge` as in- or out-interface. */
export function bridgeRules(saved: string, bridge: string): string[][] {
  const out: string[][] = [];
  for (const line of saved.split("\n")) {
    const w = ruleWords(line.trim());
    if (w[0] !== "-A") continue;
    const names = w.some((x, i) => (x === "-i" || x === "-o") && w[i + 1] === bridge);
    if (names) out.push(w.slice(1));
  }
  return out;
}

/** Removes the isolation rules the firewall plugin added for `bridge`; returns problems. */
export async function removeIsolationRules(bridge: string): Promise<string[]> {
  const problems: string[] = [];
  for (const chain of ISOLATION_CHAINS) {
    const saved = await tool("iptables", ["-w", "-S", chain]);
    if (!saved.ok) continue; // no such chain: nothing was added
    for (const rule of bridgeRules(saved.out, bridge)) {
      const r = await tool("iptables", ["-w", "-D", ...rule]);
      if (!r.ok) problems.push(`iptables -D ${rule.join(" ")}: ${r.out.trim().split("\n")[0]}`);
    }
  }
  return problems;
}

/** Deletes the bridge device, its isolation and internal rules; returns problems. */
export async function removeBridge(bridge: string): Promise<string[]> {
  const problems: string[] = [];
  const r = await tool("ip", ["link", "del", "dev", bridge]);
  if (!r.ok && !/Cannot find device|does not exist/.test(r.out)) {
    problems.push(`ip link del ${bridge}: ${r.out.trim().split("\n")[0]}`);
  }
  problems.push(...await removeIsolationRules(bridge));
  problems.push(...await removeInternalRules(bridge));
  return problems;
}

/**
 * micro's own chain for `--internal` networks, first in FORWARD: whatever crosses the
 * bridge's edge is dropped (the firewall plugin's CNI-FORWARD accepts the container's
 * address in both directions, so the missing default route alone would not stop a
 * container that sets one). The bridge itself (the gateway) and traffic inside the bridge stay.
 */
export const INTERNAL_CHAIN = "MICRO-INTERNAL";
const JUMP = ["FORWARD", "-j", INTERNAL_CHAIN];

/** The two DROP rules of an internal network's bridge, as `iptables -A` words. */
export function internalRules(bridge: string): string[][] {
  return [
    [INTERNAL_CHAIN, "-i", bridge, "!", "-o", bridge, "-j", "DROP"],
    [INTERNAL_CHAIN, "-o", bridge, "!", "-i", bridge, "-j", "DROP"],
  ];
}

/**
 * Makes the internal network's drop rules (after each ADD, under the CNI lock): the chain,
 * its jump as FORWARD's first rule (the firewall plugin inserts CNI-FORWARD first too), and
 * the rules, each only when missing. Throws a one-line Error.
 */
export async function ensureInternalRules(bridge: string): Promise<void> {
  const must = async (args: string[]) => {
    const r = await tool("iptables", ["-w", ...args]);
    if (!r.ok) throw new Error(`iptables ${args.join(" ")}: ${r.out.trim().split("\n")[0]}`);
  };
  if (!(await tool("iptables", ["-w", "-S", INTERNAL_CHAIN])).ok) {
    await must(["-N", INTERNAL_CHAIN]);
  }
  const forward = await tool("iptables", ["-w", "-S", "FORWARD"]);
  const first = forward.out.split("\n").find((l) => l.startsWith("-A "));
  if (first?.trim() !== `-A ${JUMP.join(" ")}`) {
    while ((await tool("iptables", ["-w", "-D", ...JUMP])).ok) { /* moved to the front */ }
    await must(["-I", "FORWARD", "1", "-j", INTERNAL_CHAIN]);
  }
  for (const rule of internalRules(bridge)) {
    if (!(await tool("iptables", ["-w", "-C", ...rule])).ok) await must(["-A", ...rule]);
  }
}

/** Removes the bridge's internal rules; the chain and its jump go when it is empty. */
export function removeInternalRules(bridge: string, lockDir = IPAM_DIR): Promise<string[]> {
  // Under the CNI lock: an internal network's ADD may be making the chain meanwhile.
  return withCniLock(() => dropInternalRules(bridge), lockDir);
}

async function dropInternalRules(bridge: string): Promise<string[]> {
  const saved = await tool("iptables", ["-w", "-S", INTERNAL_CHAIN]);
  if (!saved.ok) return []; // no such chain: no internal network was ever attached
  const problems: string[] = [];
  for (const rule of bridgeRules(saved.out, bridge)) {
    const r = await tool("iptables", ["-w", "-D", ...rule]);
    if (!r.ok) problems.push(`iptables -D ${rule.join(" ")}: ${r.out.trim().split("\n")[0]}`);
  }
  const left = await tool("iptables", ["-w", "-S", INTERNAL_CHAIN]);
  if (left.ok && !left.out.split("\n").some((l) => l.startsWith("-A "))) {
    while ((await tool("iptables", ["-w", "-D", ...JUMP])).ok) { /* every jump */ }
    const x = await tool("iptables", ["-w", "-X", INTERNAL_CHAIN]);
    if (!x.ok) problems.push(`iptables -X ${INTERNAL_CHAIN}: ${x.out.trim().split("\n")[0]}`);
  }
  return problems;
}

/**
 * After DEL, with the run's own hold released: the default network's bridge goes when no
 * other run holds the network. Returns problems (never throws).
 */
export async function removeBridgeIfUnused(network: string, bridge: string): Promise<string[]> {
  let own: HeldLock | null;
  try {
    own = await ownNetwork(network);
  } catch (e) {
    return [`${useLockPath(network)}: ${(e as Error).message}`];
  }
  if (!own) return [];
  try {
    return await removeBridge(bridge);
  } finally {
    own.release();
  }
}

/**
 * Runs `fn` (a CNI ADD or DEL) holding the host's CNI lock exclusively: the firewall plugin
 * creates its chains by check-then-create, so two ADDs at once fail with "chain exists"
 * (seen with 10 concurrent runs here); one plugin chain at a time, as libcni's users do.
 */
export async function withCniLock<T>(fn: () => Promise<T>, dir = IPAM_DIR): Promise<T> {
  Deno.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const lock = (await lockFile(`${dir}/cni.lock`, true, true))!;
  try {
    return await fn();
  } finally {
    lock.release();
  }
}
