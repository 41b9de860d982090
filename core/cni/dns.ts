/**
 * The container's /etc/resolv.conf, /etc/hosts and /etc/hostname, as Docker makes them:
 * the host's resolv.conf without loopback resolvers (they would answer inside the
 * container's own namespace, where nothing listens), `--dns`, `--dns-search`; hosts with
 * localhost, `--add-host` entries and the container's own name and address.
 */
import { errnoOf, MicroError } from "../errors.ts";

/** Docker's fallback when the host has only loopback resolvers and no upstream list. */
export const FALLBACK_DNS = ["8.8.8.8", "8.8.4.4"];

export { RESOLVED_UPSTREAM } from "./facts.ts";

function isLoopback(addr: string): boolean {
  return /^127\./.test(addr) || addr === "::1" || addr === "0:0:0:0:0:0:0:1";
}

export function nameservers(text: string): string[] {
  return text.split("\n").map((l) => /^\s*nameserver\s+(\S+)/.exec(l)?.[1])
    .filter((s): s is string => !!s);
}

export interface DnsOptions {
  /** `--dns`: replaces the host's servers. */
  servers?: string[];
  /** `--dns-search`: replaces the host's search domains. */
  search?: string[];
}

/**
 * The container's resolv.conf from the host's (`host`) and, for a host whose servers are
 * all loopback, systemd-resolved's upstream list (`upstream`, "" when absent).
 */
export function resolvConf(host: string, upstream: string, o: DnsOptions = {}): string {
  const lines = host.split("\n").filter((l) => !/^\s*$/.test(l));
  let servers = nameservers(host).filter((s) => !isLoopback(s));
  let search: string[] | undefined;
  const kept: string[] = [];
  for (const l of lines) {
    if (/^\s*nameserver\s/.test(l)) continue;
    const s = /^\s*(?:search|domain)\s+(.*)$/.exec(l);
    if (s) {
      search = s[1].trim().split(/\s+/);
      continue;
    }
    if (/^\s*options\s/.test(l)) kept.push(l.trim());
  }
  if (servers.length === 0) {
    const up = nameservers(upstream).filter((s) => !isLoopback(s));
    servers = up.length ? up : FALLBACK_DNS;
  }
  if (o.servers?.length) servers = o.servers;
  if (o.search?.length) search = o.search.filter((s) => s !== ".");
  const out = servers.map((s) => `nameserver ${s}`);
  if (search?.length) out.unshift(`search ${search.join(" ")}`);
  return [...out, ...kept].join("\n") + "\n";
}

/** Docker's /etc/hosts: localhost, the IPv6 names, `extra` (NAME:IP), then the container. */
export function hostsFile(name: string, address: string | undefined, extra: string[]): string {
  const lines = [
    "127.0.0.1\tlocalhost",
    "::1\tlocalhost ip6-localhost ip6-loopback",
    "fe00::0\tip6-localnet",
    "ff00::0\tip6-mcastprefix",
    "ff02::1\tip6-allnodes",
    "ff02::2\tip6-allrouters",
  ];
  for (const e of extra) {
    const i = e.indexOf(":");
    lines.push(`${e.slice(i + 1)}\t${e.slice(0, i)}`);
  }
  if (address) lines.push(`${address}\t${name}`);
  return lines.join("\n") + "\n";
}

/**
 * Writes the run's hosts, hostname and resolv.conf into its state dir (`dir`), 0644: what
 * the mount plugin binds over the image's (CNI networks and the rootless helpers alike).
 */
export function writeDnsFiles(
  dir: string,
  f: { hostname: string; address: string | undefined; addHosts: string[]; resolv: string },
): void {
  const files: [string, string][] = [
    ["hosts", hostsFile(f.hostname, f.address, f.addHosts)],
    ["hostname", f.hostname + "\n"],
    ["resolv.conf", f.resolv],
  ];
  for (const [name, text] of files) {
    const path = `${dir}/${name}`;
    try {
      Deno.writeTextFileSync(path, text, { mode: 0o644 });
      Deno.chmodSync(path, 0o644);
    } catch (e) {
      throw new MicroError("", {
        phase: "attach",
        plugin: "net",
        op: "write",
        paths: { path },
        errno: errnoOf(e, 5),
      });
    }
  }
}
