/**
 * The runtime side of the CNI spec (1.0): each plugin of a configuration list run from
 * CNI_PATH with the `CNI_*` environment and its configuration on stdin; ADD in list order,
 * each result the next plugin's `prevResult`; DEL in reverse with the cached result; CHECK
 * with it too. The result is cached in the run's state directory (with the very list and
 * runtime config ADD used), so DEL works after micro itself was killed.
 */
import { MicroError, oneLine } from "../errors.ts";
import { FileRefused, MiB, readRegularFile } from "../files.ts";
import { openLibc } from "../sys/libc.ts";
import {
  type ConfList,
  parseConfList,
  type PluginConf,
  untrusted,
  untrustedDir,
} from "./config.ts";
import { parseJsonLimited } from "./json.ts";

/** A plugin's stdout or stderr beyond this is cut (results are a few KiB). */
const OUTPUT_CAP = MiB;
/** A plugin that hangs (an iptables lock, say) is killed after this long. */
const PLUGIN_TIMEOUT_MS = 60_000;
/** The plugins exec iptables, ip and friends: a fixed PATH, not micro's caller's. */
const PLUGIN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

export type Command = "ADD" | "DEL" | "CHECK";

/** What one attachment of a container to a network is (CNI spec section 2). */
export interface Attachment {
  containerId: string;
  /** A path to the container's network namespace; "" when it is gone (DEL only). */
  netns: string;
  ifName: string;
  /** Directories searched for plugin binaries, in order. */
  cniPath: string[];
  /** `CNI_ARGS` pairs. */
  args?: [string, string][];
  /** Capability arguments (`portMappings`, ...), given to plugins that declare them. */
  runtimeConfig?: Record<string, unknown>;
}

/** The plugin binary for `type`: the first executable regular file of that name. */
export function findPlugin(type: string, cniPath: string[]): string | undefined {
  for (const dir of cniPath) {
    try {
      const st = Deno.statSync(`${dir}/${type}`);
      if (st.isFile && ((st.mode ?? 0) & 0o111)) return `${dir}/${type}`;
    } catch { /* next directory */ }
  }
  return undefined;
}

/**
 * Why the plugin binary at `path` may not be run as root: it, or its directory, can be
 * written by another user than root or the caller (whoever can replace it runs as root).
 */
export function untrustedPlugin(path: string, me = Deno.uid() ?? 0): string | undefined {
  let real: string;
  try {
    const st = Deno.statSync(path);
    const why = untrusted({ uid: st.uid ?? -1, mode: st.mode ?? 0o777 }, me);
    if (why) return `${path} ${why}`;
    real = Deno.realPathSync(path);
  } catch (e) {
    return `${path}: ${(e as Error).message.split("\n")[0]}`;
  }
  // Where the binary really is (a link in CNI_PATH may point elsewhere), and the
  // directory of the name micro runs: whoever may write either can swap the file.
  for (const file of new Set([path, real])) {
    const dir = file.slice(0, file.lastIndexOf("/")) || "/";
    const why = untrustedDir(dir, me);
    if (why) return `its directory ${dir} ${why}`;
  }
  return undefined;
}

/** The environment a plugin runs with (CNI spec section 3), and nothing of micro's. */
export function pluginEnv(cmd: Command, a: Attachment): Record<string, string> {
  const env: Record<string, string> = {
    CNI_COMMAND: cmd,
    CNI_CONTAINERID: a.containerId,
    CNI_NETNS: a.netns,
    CNI_IFNAME: a.ifName,
    CNI_PATH: a.cniPath.join(":"),
    PATH: PLUGIN_PATH,
  };
  if (a.args?.length) env.CNI_ARGS = a.args.map(([k, v]) => `${k}=${v}`).join(";");
  if (cmd === "DEL" && a.netns === "") delete env.CNI_NETNS;
  return env;
}

/**
 * A plugin's stdin: its own configuration with the list's name and version, the runtime
 * config for the capabilities it declares (libcni's rule), and `prevResult` when given.
 */
export function pluginConfig(
  list: ConfList,
  plugin: PluginConf,
  runtimeConfig: Record<string, unknown> | undefined,
  prevResult: unknown,
): Record<string, unknown> {
  const conf: Record<string, unknown> = {
    ...plugin,
    name: list.name,
    cniVersion: list.cniVersion,
  };
  const rc: Record<string, unknown> = {};
  for (const [cap, on] of Object.entries(plugin.capabilities ?? {})) {
    if (on && runtimeConfig?.[cap] !== undefined) rc[cap] = runtimeConfig[cap];
  }
  if (Object.keys(rc).length) conf.runtimeConfig = rc;
  if (prevResult !== undefined && prevResult !== null) conf.prevResult = prevResult;
  return conf;
}

function versionAtLeast(v: string, min: string): boolean {
  const a = v.split(".").map(Number);
  const b = min.split(".").map(Number);
  for (let i = 0; i < 3; i++) if ((a[i] ?? 0) !== (b[i] ?? 0)) return (a[i] ?? 0) > (b[i] ?? 0);
  return true;
}

/** What a plugin's failure says (its error JSON, else its stderr), on one line. */
function pluginFailure(stdout: string, stderr: string, status: string): string {
  try {
    const e = parseJsonLimited(stdout) as { code?: number; msg?: string; details?: string };
    if (e && typeof e.msg === "string") {
      const said = [e.msg, typeof e.details === "string" ? e.details : ""].filter((s) => s);
      return (oneLine(said.join(": ")) || status) +
        (typeof e.code === "number" ? ` (CNI error ${e.code})` : "");
    }
  } catch { /* not the error format */ }
  const said = stderr.trim().split("\n").map((l) => l.trim()).filter((l) => l).join("; ");
  return oneLine(said) || status;
}

/**
 * A stream read to its end (or until cancelled), decoded, the bytes beyond `cap` read and
 * dropped: a plugin that writes more must not block on a full pipe.
 */
async function readCapped(r: ReadableStreamDefaultReader<Uint8Array>, cap: number) {
  const kept: Uint8Array[] = [];
  let n = 0;
  try {
    for (;;) {
      const { done, value } = await r.read();
      if (done) break;
      if (n < cap) kept.push(value.subarray(0, cap - n));
      n += value.length;
    }
  } catch { /* cancelled at the timeout */ }
  const all = new Uint8Array(Math.min(n, cap));
  let at = 0;
  for (const k of kept) all.set(k, at), at += k.length;
  return new TextDecoder().decode(all);
}

/** Runs one plugin; returns its parsed stdout (the result) or throws a one-line error. */
export async function execPlugin(
  cmd: Command,
  list: ConfList,
  plugin: PluginConf,
  a: Attachment,
  prevResult?: unknown,
  timeoutMs = PLUGIN_TIMEOUT_MS,
): Promise<unknown> {
  const where = { network: list.name, plugin: plugin.type };
  const fail = (message: string, hint?: string) =>
    new MicroError(message, {
      phase: cmd === "DEL" ? "cleanup" : "attach",
      plugin: "net",
      op: `CNI ${cmd}`,
      paths: where,
      hint,
    });
  const path = findPlugin(plugin.type, a.cniPath);
  if (!path) {
    throw fail(
      `no plugin binary "${plugin.type}" in ${a.cniPath.join(":")}`,
      "install the CNI plugins (Debian: apt install containernetworking-plugins) or set CNI_PATH",
    );
  }
  const refused = untrustedPlugin(path);
  if (refused) {
    throw fail(
      `refused to run the plugin: ${refused}`,
      "plugins run as root: keep them, and CNI_PATH's directories, writable by root only",
    );
  }
  const stdin = new TextEncoder().encode(
    JSON.stringify(pluginConfig(list, plugin, a.runtimeConfig, prevResult)),
  );
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(path, {
      clearEnv: true,
      env: pluginEnv(cmd, a),
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
      // A session (and process group) of its own: a timeout kills what it started too.
      detached: true,
    }).spawn();
  } catch (e) {
    throw fail(`cannot run ${path}: ${(e as Error).message.split("\n")[0]}`);
  }
  const readers = [child.stdout.getReader(), child.stderr.getReader()];
  let timedOut = false;
  // A child the plugin left behind holding its stdout would keep the reads open for good:
  // at the timeout the whole group is killed and the reads end.
  const timer = setTimeout(() => {
    timedOut = true;
    try {
      Deno.kill(-child.pid, "SIGKILL");
    } catch { /* gone */ }
    for (const r of readers) r.cancel().catch(() => {});
  }, timeoutMs);
  let out: { stdout: string; stderr: string; status: Deno.CommandStatus };
  try {
    const w = child.stdin.getWriter();
    try {
      await w.write(stdin);
      await w.close();
    } catch { /* it may exit without reading */ }
    const [stdout, stderr] = await Promise.all([
      readCapped(readers[0], OUTPUT_CAP),
      readCapped(readers[1], 4096),
    ]);
    out = { stdout, stderr, status: await child.status };
  } finally {
    clearTimeout(timer);
  }
  const { stdout, stderr } = out;
  if (timedOut) {
    throw fail(
      `it did not finish in ${timeoutMs / 1000} s; killed with what it started`,
      "a plugin usually waits on a lock (iptables' xtables.lock, say): find who holds it",
    );
  }
  if (!out.status.success) {
    const st = out.status;
    const status = st.signal ? `killed by ${st.signal}` : `exit status ${st.code}`;
    throw fail(pluginFailure(stdout, stderr, status));
  }
  if (cmd !== "ADD") return undefined;
  try {
    return parseJsonLimited(stdout);
  } catch (e) {
    throw fail(`its result is ${(e as Error).message}`);
  }
}

/**
 * ADD: each plugin in order, each result the next one's prevResult; the last result is the
 * network's. On a failure the list is DELeted again (what was added goes), then it throws.
 */
export async function addNetwork(list: ConfList, a: Attachment): Promise<unknown> {
  let result: unknown = undefined;
  try {
    for (const p of list.plugins) result = await execPlugin("ADD", list, p, a, result);
  } catch (e) {
    await delNetwork(list, a, result).catch(() => {});
    throw e;
  }
  return result;
}

/**
 * DEL: each plugin in reverse, with the cached result as prevResult (0.4.0 and later). All
 * plugins run even when one fails; the first failure is thrown at the end.
 */
export async function delNetwork(list: ConfList, a: Attachment, cached: unknown): Promise<void> {
  const prev = versionAtLeast(list.cniVersion, "0.4.0") ? cached : undefined;
  let first: unknown = undefined;
  for (const p of [...list.plugins].reverse()) {
    try {
      await execPlugin("DEL", list, p, a, prev);
    } catch (e) {
      first ??= e;
    }
  }
  if (first !== undefined) throw first;
}

/** CHECK (0.4.0 and later, unless the list disables it): each plugin with the cached result. */
export async function checkNetwork(list: ConfList, a: Attachment, cached: unknown): Promise<void> {
  if (!versionAtLeast(list.cniVersion, "0.4.0") || list.disableCheck) return;
  for (const p of list.plugins) await execPlugin("CHECK", list, p, a, cached);
}

/** The run's CNI record: written before ADD, again with the result after it. */
export interface CniCache {
  kind: "cniCacheV1";
  containerId: string;
  ifName: string;
  cniPath: string[];
  args?: [string, string][];
  runtimeConfig?: Record<string, unknown>;
  config: ConfList;
  /** The network namespace micro ran in (`net:[INODE]`): DEL must run there. */
  hostNetns: string;
  /** The container's namespace, pinned by a bind mount until DEL (core/cni/attach.ts). */
  netnsPath?: string;
  /** The ADD result; null until ADD succeeded. */
  result: unknown;
}

export const CACHE_FILE = "cni.json";

/** Written atomically (a temp name, then rename), as the run's state. */
export function writeCache(path: string, cache: CniCache): void {
  const tmp = `${path}.tmp`;
  Deno.writeTextFileSync(tmp, JSON.stringify(cache) + "\n", { mode: 0o600 });
  Deno.renameSync(tmp, path);
}

/** The cache at `path`, null when there is none; throws an Error when it is not valid. */
export function readCache(path: string): CniCache | null {
  let text: string;
  try {
    text = readRegularFile(openLibc(), path, 4 * MiB);
  } catch (e) {
    if (e instanceof FileRefused && e.errno === 2) return null;
    throw new Error(e instanceof FileRefused ? e.reason : String(e));
  }
  const c = parseJsonLimited(text) as CniCache;
  if (c?.kind !== "cniCacheV1" || typeof c.containerId !== "string" || !c.config) {
    throw new Error("not a CNI cache record");
  }
  // What gc runs as root comes from here: the same rules as a config file's (plugin types
  // are bare names), and plugin directories absolute, as ADD had them.
  c.config = parseConfList(JSON.stringify(c.config));
  const strings = (v: unknown) => Array.isArray(v) && v.every((x) => typeof x === "string");
  if (
    typeof c.ifName !== "string" || !/^[a-zA-Z0-9_.-]{1,15}$/.test(c.ifName) ||
    !strings(c.cniPath) || !c.cniPath.every((d) => d.startsWith("/")) ||
    (c.args !== undefined && !(Array.isArray(c.args) && c.args.every(strings)))
  ) {
    throw new Error("not a CNI cache record (its interface, plugin path or args)");
  }
  return c;
}

/** The attachment a cache record describes, with the namespace path DEL gets now. */
export function cachedAttachment(c: CniCache, netns: string): Attachment {
  return {
    containerId: c.containerId,
    netns,
    ifName: c.ifName,
    cniPath: c.cniPath,
    ...(c.args ? { args: c.args } : {}),
    ...(c.runtimeConfig ? { runtimeConfig: c.runtimeConfig } : {}),
  };
}

/** The container's first IPv4 address in a result (0.3.x to 1.0), without its prefix. */
export function resultAddress(result: unknown): string | undefined {
  const ips = (result as { ips?: { address?: string; version?: string }[] })?.ips;
  if (!Array.isArray(ips)) return undefined;
  for (const ip of ips) {
    const addr = typeof ip?.address === "string" ? ip.address.split("/")[0] : "";
    if (/^\d+\.\d+\.\d+\.\d+$/.test(addr)) return addr;
  }
  return undefined;
}
