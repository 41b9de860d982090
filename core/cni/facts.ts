/**
 * The network facts every probe starts from (core/cni/probe.ts), apart from the CNI modules:
 * `auto` that MICRO_DEFAULT_NETWORK makes none needs only these, and a run that needs no
 * more does not load the rest (loading costs in proportion to size: core/v8.ts).
 */
import { FileRefused, KiB, readRegularFileIfThere } from "../files.ts";
import type { NetFacts } from "../plugin.ts";
import type { Sys } from "../sys/mod.ts";

export const DEFAULT_CNI_PATH = ["/usr/lib/cni", "/opt/cni/bin"];

/** The default config directory, as every CNI runtime's. */
export const DEFAULT_CONFIG_DIR = "/etc/cni/net.d";

/** micro's own network's name (its bridge: MICRO_BRIDGE, core/cni/config.ts). */
export const MICRO_NETWORK = "micro";

/** systemd-resolved's list of the upstream servers behind its 127.0.0.53 stub. */
export const RESOLVED_UPSTREAM = "/run/systemd/resolve/resolv.conf";

/** MICRO_DEFAULT_NETWORK: what `auto` becomes when set (none or bridge). */
export function defaultNetwork(): string | undefined {
  return Deno.env.get("MICRO_DEFAULT_NETWORK") || undefined;
}

/** A small host file's text; "" when it is missing or refused. */
export function readSmall(sys: Sys, path: string): string {
  try {
    return readRegularFileIfThere(sys, path, 64 * KiB) ?? "";
  } catch (e) {
    if (e instanceof FileRefused) return "";
    throw e;
  }
}

/** CNI_PATH, the host's resolv.conf files and MICRO_DEFAULT_NETWORK. */
export function baseFacts(sys: Sys): NetFacts {
  const env = Deno.env.get("CNI_PATH");
  const facts: NetFacts = {
    cniPath: env ? env.split(":").filter((d) => d.startsWith("/")) : DEFAULT_CNI_PATH,
    missing: [],
    resolv: readSmall(sys, "/etc/resolv.conf"),
    resolvUpstream: readSmall(sys, RESOLVED_UPSTREAM),
  };
  const chosen = defaultNetwork();
  if (chosen) facts.defaultNetwork = chosen;
  return facts;
}
