/**
 * The life of a micro network's bridge. Each run holds a shared flock on its network's use
 * file (`/run/micro/.networks/NAME.use`) from before ADD until after DEL; the kernel drops
 * it when micro dies. Whoever gets the lock exclusive without waiting knows no run uses the
 * network: the default network's bridge then goes with its last container, and `micro
 * network rm` may remove a created one. A run starting meanwhile waits for the shared lock,
 * so it never ADDs to a bridge that is being deleted (its ADD makes the bridge again).
 */
import { readRegularFile } from "../files.ts";
import { type HeldLock, lockFile } from "../store/lock.ts";
import { openLibc } from "../sys/libc.ts";
import { parseJsonLimited } from "./json.ts";
import { IPAM_DIR } from "./probe.ts";
import type { ConfList } from "./config.ts";

/** The firewall plugin's isolation chains (ingressPolicy same-bridge, as Docker's). */
const ISOLATION_CHAINS = ["CNI-ISOLATION-STAGE-1", "CNI-ISOLATION-STAGE-2"];
/** The comment the firewall plugin puts on those rules: micro makes the very same ones. */
export const ISOLATION_COMMENT = "CNI firewall plugin rules (ingressPolicy: same-bridge)";
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

/**
 * Deletes the bridge device and, meanwhile, under the CNI lock, in one iptables-save and one
 * iptables-restore: its isolation, masquerade and internal rules, micro's internal chain once
 * empty, and the shared chains micro made once they hold nothing of a container. Returns
 * problems.
 */
export async function removeBridge(bridge: string, dir = IPAM_DIR): Promise<string[]> {
  const problems: string[] = [];
  // At once: the device's removal waits on the kernel (RCU grace periods, tens of ms), and
  // the rules name the bridge only by its name, so neither needs the other done first.
  const [r, dropped] = await Promise.all([
    tool("ip", ["link", "del", "dev", bridge]),
    withCniLock(() => dropBridgeRules(bridge, dir), dir),
  ]);
  if (!r.ok && !/Cannot find device|does not exist/.test(r.out)) {
    problems.push(`ip link del ${bridge}: ${r.out.trim().split("\n")[0]}`);
  }
  problems.push(...dropped);
  return problems;
}

/**
 * micro's own chain for `--internal` networks, first in FORWARD: whatever crosses the
 * bridge's edge is dropped (the firewall plugin's CNI-FORWARD accepts the container's
 * address in both directions, so the missing default route alone would not stop a
 * container that sets one). The bridge itself (the gateway) and traffic inside the bridge stay.
 */
export const INTERNAL_CHAIN = "MICRO-INTERNAL";

/** The two DROP rules of an internal network's bridge, as `iptables -A` words. */
export function internalRules(bridge: string): string[][] {
  return [
    [INTERNAL_CHAIN, "-i", bridge, "!", "-o", bridge, "-j", "DROP"],
    [INTERNAL_CHAIN, "-o", bridge, "!", "-i", bridge, "-j", "DROP"],
  ];
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
    // A detached container's runner has left (the supervisor holds no lock for it): its
    // veth, still a port of the bridge, says the network is in use.
    const ports = await tool("ip", ["-o", "link", "show", "master", bridge]);
    if (ports.ok && ports.out.trim()) return [];
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

/**
 * The chains the CNI plugins share between containers and never remove (firewall's and
 * portmap's), by table. micro removes those it made, recorded in CHAINS_FILE, once all of
 * them hold nothing of any container (all or none: portmap's MASQ serves every network).
 */
export const SHARED_CHAINS: Record<"filter" | "nat", string[]> = {
  filter: ["CNI-FORWARD", "CNI-ADMIN", "CNI-ISOLATION-STAGE-1", "CNI-ISOLATION-STAGE-2"],
  nat: ["CNI-HOSTPORT-DNAT", "CNI-HOSTPORT-SETMARK", "CNI-HOSTPORT-MASQ"],
};
/** The record of the shared chains micro's ADDs made, in the CNI lock's directory. */
export const CHAINS_FILE = "chains.json";
type Tables = Record<"filter" | "nat", string[]>;

/** `iptables-save` of filter and nat in one call: each table's chains and `-A` lines. */
async function saveTables(): Promise<Saved> {
  const saved = await tool("iptables-save", []);
  if (!saved.ok) throw new Error(`iptables-save: ${saved.out.trim().split("\n")[0]}`);
  return parseSave(saved.out);
}

/**
 * `iptables-save` text → filter's and nat's chains and `-A` rules. iptables-save prints a
 * comment's newline as it is, inside the quotes, so a rule someone else made with
 * `--comment "x<newline>-A CHAIN ..."` spans lines: its lines are joined back into one rule
 * (holding a newline, which bridgeRulesScript never feeds to iptables-restore), and are
 * never taken for rules, chains or tables of their own. Pure.
 */
export function parseSave(text: string): Saved {
  const out: Saved = {
    filter: { chains: [], rules: [] },
    nat: { chains: [], rules: [] },
  };
  let table: "filter" | "nat" | null = null;
  let pending: string | null = null;
  for (const raw of text.split("\n")) {
    const line: string = pending === null ? raw : `${pending}\n${raw}`;
    if (openQuote(line)) {
      pending = line;
      continue;
    }
    pending = null;
    const l = line.trim();
    if (l.startsWith("*")) table = l === "*filter" ? "filter" : l === "*nat" ? "nat" : null;
    else if (!table) continue;
    else if (l.startsWith(":")) out[table].chains.push(l.slice(1).split(" ")[0]);
    else if (l.startsWith("-A ")) out[table].rules.push(l);
  }
  return out;
}

/** Whether `line` ends inside a double-quoted string (iptables-save escapes `"` and `\`). */
function openQuote(line: string): boolean {
  let open = false;
  for (let i = 0; i < line.length; i++) {
    if (line[i] === "\\") i++;
    else if (line[i] === '"') open = !open;
  }
  return open;
}

/** A saved rule iptables-restore reads back as the same rule: one line, no control bytes. */
function restorable(rule: string): boolean {
  // deno-lint-ignore no-control-regex
  return !/[\x00-\x1f\x7f]/.test(rule);
}

async function sharedPresent(): Promise<Tables> {
  const t = await saveTables();
  return {
    filter: SHARED_CHAINS.filter.filter((c) => t.filter.chains.includes(c)),
    nat: SHARED_CHAINS.nat.filter((c) => t.nat.chains.includes(c)),
  };
}

function readChains(dir: string): Tables | null {
  try {
    const text = readRegularFile(openLibc(), `${dir}/${CHAINS_FILE}`, 64 * 1024);
    const t = parseJsonLimited(text) as Partial<Tables>;
    const pick = (table: "filter" | "nat") =>
      Array.isArray(t?.[table])
        ? SHARED_CHAINS[table].filter((c) => (t[table] as unknown[]).includes(c))
        : [];
    return { filter: pick("filter"), nat: pick("nat") };
  } catch {
    return null; // none yet (or unreadable: then nothing is removed by micro)
  }
}

/**
 * Around an ADD (under the CNI lock): with no record yet, the shared chains there before it,
 * so `afterAdd` can note which ADD made. null: the record exists, nothing to do.
 */
export async function chainsBefore(dir = IPAM_DIR): Promise<Tables | null> {
  if (readChains(dir) !== null) return null;
  return await sharedPresent();
}

/** Words of a rule without its comment match. */
function uncommented(words: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < words.length; i++) {
    if (words[i] === "-m" && words[i + 1] === "comment" && words[i + 2] === "--comment") i += 3;
    else out.push(words[i]);
  }
  return out;
}

/**
 * Whether `rules` (a recorded chain's `-A` lines, as words after the chain) hold nothing of
 * any container: the plugins' fixed rules, and jumps to other recorded chains.
 */
export function holdsNothing(rules: string[][], recorded: string[]): boolean {
  const fixed = [
    "-j RETURN",
    "-m mark --mark 0x2000/0x2000 -j MASQUERADE",
    "-j MARK --set-xmark 0x2000/0x2000",
  ];
  return rules.every((r) => {
    const w = uncommented(r).join(" ");
    return fixed.includes(w) || (/^-j \S+$/.test(w) && recorded.includes(w.slice(3)));
  });
}

type Saved = Record<"filter" | "nat", { chains: string[]; rules: string[] }>;

/** The jump target of a rule's words (comments left out): `-j X` or `-g X`. */
function jumpTarget(w: string[]): string | undefined {
  const k = w.findIndex((x) => x === "-j" || x === "-g");
  return k < 0 ? undefined : w[k + 1];
}

/**
 * The iptables-restore script that removes `bridge`'s rules from the isolation and internal
 * chains (`saved`: iptables-save of filter and nat), the internal chain and its jumps once
 * nothing else is in it, and the `recorded` shared chains micro made once, without those
 * rules, they hold nothing of a container. `shared`: whether the latter go. Pure.
 *
 * Rules are matched on their words without comments (a comment is free text), and a rule
 * is deleted only by its own saved line: one whose text iptables-restore could not read
 * back as the same rule (a comment with a newline) is never deleted, and a chain it keeps
 * in use is not removed.
 */
export function bridgeRulesScript(
  saved: Saved,
  bridge: string,
  recorded: Tables | null,
): { script: string; shared: boolean } {
  const words = (table: "filter" | "nat") =>
    saved[table].rules.map((l) => uncommented(ruleWords(l)));
  const lines: Record<"filter" | "nat", string[]> = { filter: [], nat: [] };
  const fw = words("filter");
  const gone = new Set<number>();
  const del = (i: number) => {
    if (gone.has(i)) return;
    gone.add(i);
    lines.filter.push(`-D${saved.filter.rules[i].slice(2)}`);
  };
  const ok = (table: "filter" | "nat", i: number) => restorable(saved[table].rules[i]);
  const owned = [...ISOLATION_CHAINS, INTERNAL_CHAIN];
  fw.forEach((w, i) => {
    if (
      ok("filter", i) && owned.includes(w[1]) &&
      w.some((x, k) => (x === "-i" || x === "-o") && w[k + 1] === bridge)
    ) {
      del(i);
    }
  });
  // micro's masquerade rule of the bridge (networkRulesScript): its words and its comment.
  saved.nat.rules.forEach((l, i) => {
    const w = ruleWords(l);
    const c = w.indexOf("--comment");
    const u = uncommented(w);
    if (
      ok("nat", i) && u[1] === "POSTROUTING" && c > 0 && w[c + 1] === MASQUERADE_COMMENT &&
      u[2] === "-s" && u.slice(2).join(" ") === masqueradeSpec(u[3], bridge)
    ) {
      lines.nat.push(`-D${l.slice(2)}`);
    }
  });
  const jumpsIn = (w: string[][], chains: string[]) =>
    w.flatMap((r, i) => !chains.includes(r[1]) && chains.includes(jumpTarget(r) ?? "") ? [i] : []);
  if (
    saved.filter.chains.includes(INTERNAL_CHAIN) &&
    fw.every((w, i) => w[1] !== INTERNAL_CHAIN || gone.has(i))
  ) {
    const jumps = jumpsIn(fw, [INTERNAL_CHAIN]);
    if (jumps.every((i) => ok("filter", i))) {
      jumps.forEach(del);
      lines.filter.push(`-X ${INTERNAL_CHAIN}`);
    }
  }
  let shared = false;
  if (recorded && (recorded.filter.length || recorded.nat.length)) {
    const extra: Record<"filter" | "nat", string[]> = { filter: [], nat: [] };
    shared = true;
    for (const table of ["filter", "nat"] as const) {
      const w = table === "filter" ? fw : words(table);
      const left = (i: number) => table !== "filter" || !gone.has(i);
      const mine = recorded[table].filter((c) => saved[table].chains.includes(c));
      for (const chain of mine) {
        const rules = w.filter((r, i) => left(i) && r[1] === chain).map((r) => r.slice(2));
        if (!holdsNothing(rules, mine)) shared = false; // a container still uses them
      }
      // A rule -F would take that no one can name back (its comment spans lines): kept.
      if (w.some((r, i) => left(i) && mine.includes(r[1]) && !ok(table, i))) shared = false;
      // The jumps into them from other chains (FORWARD, PREROUTING, ...), then the chains.
      for (const i of jumpsIn(w, mine)) {
        if (!left(i)) continue;
        if (!ok(table, i)) shared = false;
        extra[table].push(`-D${saved[table].rules[i].slice(2)}`);
      }
      for (const chain of mine) extra[table].push(`-F ${chain}`);
      for (const chain of mine) extra[table].push(`-X ${chain}`);
    }
    if (shared) {
      lines.filter.push(...extra.filter);
      lines.nat.push(...extra.nat);
    }
  }
  let script = "";
  for (const table of ["filter", "nat"] as const) {
    if (lines[table].length) script += `*${table}\n${lines[table].join("\n")}\nCOMMIT\n`;
  }
  return { script, shared };
}

async function dropBridgeRules(bridge: string, dir: string): Promise<string[]> {
  let saved: Saved;
  try {
    saved = await saveTables();
  } catch (e) {
    return [(e as Error).message];
  }
  const { script, shared } = bridgeRulesScript(saved, bridge, readChains(dir));
  const problems: string[] = [];
  if (script) {
    const r = await restore(script);
    if (r) return [`iptables-restore --noflush: ${r}`];
  }
  if (shared) {
    try {
      Deno.removeSync(`${dir}/${CHAINS_FILE}`);
    } catch { /* gone */ }
  }
  return problems;
}

/** `iptables-restore -w --noflush` of `script`; its one-line error, or "". */
async function restore(script: string): Promise<string> {
  try {
    const child = new Deno.Command("iptables-restore", {
      args: ["-w", "--noflush"],
      clearEnv: true,
      env: { PATH: TOOL_PATH },
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const w = child.stdin.getWriter();
    await w.write(new TextEncoder().encode(script));
    await w.close();
    const o = await child.output();
    return o.success ? "" : new TextDecoder().decode(o.stderr).trim().split("\n")[0] || "failed";
  } catch (e) {
    return (e as Error).message.split("\n")[0];
  }
}

/** The comment on the masquerade rule micro makes for a network (one per bridge). */
export const MASQUERADE_COMMENT = "micro masquerade";

/** What micro's own networks ask of the plugins that micro makes itself, once per bridge. */
export interface OwnRules {
  /** A micro network's bridge: the same-bridge isolation from other networks. */
  isolate?: string;
  /** Outgoing traffic of the bridge's subnet masqueraded, as Docker's per-bridge rule. */
  masquerade?: { bridge: string; subnet: string };
}

/** The bridges whose rules micro makes after an ADD (see `networkRulesScript`). */
export interface WantedRules extends OwnRules {
  /** An `--internal` network's bridge: nothing crosses its edge. */
  internal?: string;
}

/**
 * Takes from micro's own list (a copy: the stored one stays what any CNI runtime can use)
 * what micro makes itself after ADD, once per bridge, in its one iptables-restore: the
 * firewall plugin's same-bridge isolation (13 iptables calls an ADD) and the bridge plugin's
 * masquerade (a chain per container: 8 iptables calls an ADD and 6 a DEL). Pure.
 */
export function takeOwnRules(
  list: ConfList,
  bridge: string,
  subnet: string,
): { list: ConfList; own: OwnRules } {
  const own: OwnRules = {};
  const plugins = list.plugins.map((p) => {
    const q = { ...p };
    if (q.type === "firewall" && q.ingressPolicy === "same-bridge") {
      delete q.ingressPolicy;
      own.isolate = bridge;
    }
    if (q.type === "bridge" && q.bridge === bridge && q.ipMasq === true) {
      q.ipMasq = false;
      own.masquerade = { bridge, subnet };
    }
    return q;
  });
  return { list: { ...list, plugins }, own };
}

/** The masquerade rule's words as iptables-save prints them (its comment left out). */
function masqueradeSpec(subnet: string, bridge: string): string {
  return `-s ${subnet} ! -d 224.0.0.0/4 ! -o ${bridge} -j MASQUERADE`;
}

/**
 * The iptables-restore script that makes what `want` asks for and `saved` (iptables-save
 * after the ADD) lacks, and the chains it creates. Isolation: the firewall plugin's
 * `ingressPolicy: same-bridge` rules, word for word (Docker's DOCKER-ISOLATION): its jump
 * first in FORWARD, ahead of CNI-FORWARD, whose accept of the container's address would
 * otherwise let it out to another bridge. Internal: micro's chain, its jump first of all,
 * and the bridge's two drop rules. Chains are made with `-N`, which fails on one that exists
 * (a `:CHAIN` line would flush it). Pure.
 */
export function networkRulesScript(
  saved: Saved,
  want: WantedRules,
): { script: string; made: string[] } {
  const lines: string[] = [];
  const made: string[] = [];
  const rules = saved.filter.rules.map((l) => uncommented(ruleWords(l)));
  const has = (chain: string, spec: string) =>
    rules.some((w) => w[1] === chain && w.slice(2).join(" ") === spec);
  const chain = (c: string) => {
    if (saved.filter.chains.includes(c) || made.includes(c)) return;
    lines.push(`-N ${c}`);
    made.push(c);
  };
  let newFirst = false;
  if (want.isolate) {
    const [s1, s2] = ISOLATION_CHAINS;
    const b = want.isolate;
    const c = `-m comment --comment "${ISOLATION_COMMENT}"`;
    chain(s1);
    chain(s2);
    if (!rules.some((w) => w[1] === "FORWARD" && jumpTarget(w) === s1)) {
      lines.push(`-I FORWARD 1 ${c} -j ${s1}`);
      newFirst = true;
    }
    if (!has(s1, `-i ${b} ! -o ${b} -j ${s2}`)) {
      lines.push(`-I ${s1} 1 -i ${b} ! -o ${b} ${c} -j ${s2}`);
    }
    if (!has(s1, "-j RETURN")) lines.push(`-A ${s1} ${c} -j RETURN`);
    if (!has(s2, `-o ${b} -j DROP`)) lines.push(`-I ${s2} 1 -o ${b} ${c} -j DROP`);
    if (!has(s2, "-j RETURN")) lines.push(`-A ${s2} ${c} -j RETURN`);
  }
  if (want.internal) {
    chain(INTERNAL_CHAIN);
    const jump = `-j ${INTERNAL_CHAIN}`;
    const first = rules.find((w) => w[1] === "FORWARD");
    if (newFirst || first?.slice(2).join(" ") !== jump) {
      for (const w of rules) {
        if (w[1] === "FORWARD" && w.slice(2).join(" ") === jump) lines.push(`-D FORWARD ${jump}`);
      }
      lines.push(`-I FORWARD 1 ${jump}`);
    }
    for (const [ch, ...spec] of internalRules(want.internal)) {
      if (!has(ch, spec.join(" "))) lines.push(`-A ${ch} ${spec.join(" ")}`);
    }
  }
  const nat: string[] = [];
  if (want.masquerade) {
    // Docker's rule: what leaves the subnet by another interface than the bridge, multicast
    // aside (the bridge plugin's exception), goes out as the host's address.
    const { bridge, subnet } = want.masquerade;
    const spec = masqueradeSpec(subnet, bridge);
    const natRules = saved.nat.rules.map((l) => uncommented(ruleWords(l)));
    if (!natRules.some((w) => w[1] === "POSTROUTING" && w.slice(2).join(" ") === spec)) {
      nat.push(
        `-A POSTROUTING -s ${subnet} ! -d 224.0.0.0/4 ! -o ${bridge} ` +
          `-m comment --comment "${MASQUERADE_COMMENT}" -j MASQUERADE`,
      );
    }
  }
  let script = lines.length ? `*filter\n${lines.join("\n")}\nCOMMIT\n` : "";
  if (nat.length) script += `*nat\n${nat.join("\n")}\nCOMMIT\n`;
  return { script, made };
}

/**
 * After an ADD, under the CNI lock, in one iptables-save and at most one iptables-restore:
 * the rules `want` asks for (networkRulesScript), and, when `before` is given (no record
 * yet), the record of the shared chains made since. Throws a one-line Error when the rules
 * cannot be made; the record is best effort, as before (without it micro removes nothing).
 */
export async function afterAdd(
  before: Tables | null,
  want: WantedRules,
  dir = IPAM_DIR,
): Promise<void> {
  const needed = want.isolate !== undefined || want.internal !== undefined;
  if (!before && !needed) return;
  let saved: Saved;
  try {
    saved = await saveTables();
  } catch (e) {
    if (needed) throw e;
    return;
  }
  const { script, made } = networkRulesScript(saved, want);
  const failed = script ? await restore(script) : "";
  if (before) {
    const now = [...saved.filter.chains, ...(failed ? [] : made)];
    const record: Tables = {
      filter: SHARED_CHAINS.filter.filter((c) => now.includes(c) && !before.filter.includes(c)),
      nat: SHARED_CHAINS.nat.filter((c) => saved.nat.chains.includes(c) && !before.nat.includes(c)),
    };
    const path = `${dir}/${CHAINS_FILE}`;
    try {
      Deno.writeTextFileSync(`${path}.tmp`, JSON.stringify(record) + "\n", { mode: 0o600 });
      Deno.renameSync(`${path}.tmp`, path);
    } catch { /* best effort: without a record, micro removes none of them */ }
  }
  if (failed) throw new Error(`iptables-restore --noflush: ${failed}`);
}
