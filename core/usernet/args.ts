/**
 * The command lines of the two user-mode network helpers of rootless runs, from the
 * published ports (plain data, so `micro plan` shows them and unit tests pin them).
 *
 * pasta (Debian's passt): a tap device named eth0 in the container's namespace with the
 * host's address and routes (--config-net); `-t`/`-u` forward host ports into it; nothing
 * is forwarded the other way (-T/-U none), and --no-map-gw keeps the gateway address from
 * leading to the host's own loopback services.
 *
 * slirp4netns: a tap eth0 with 10.0.2.100/24, gateway 10.0.2.2, DNS 10.0.2.3;
 * --disable-host-loopback for the same reason; ports through its API socket (add_hostfwd);
 * it exits when its stdin (--exit-fd=0, a pipe from micro) closes, so a killed micro takes
 * it along.
 */
import type { PortMapping } from "../cni/ports.ts";

export type Tool = "pasta" | "slirp4netns";

/** The Debian package of each tool, for messages. */
export const PACKAGE: Record<Tool, string> = { pasta: "passt", slirp4netns: "slirp4netns" };

/** Files of the run's state dir the helpers use. */
export const PASTA_PIDFILE = "pasta.pid";
export const SLIRP_SOCKET = "slirp4netns.sock";
export const SLIRP_RECORD = "slirp4netns.pid";

/** slirp4netns's fixed addresses (--configure). */
export const SLIRP_ADDRESS = "10.0.2.100";
export const SLIRP_DNS = "10.0.2.3";

/** One pasta port spec: `[ADDR/]HOST:CTR`. */
function pastaSpec(m: PortMapping): string {
  return `${m.hostIP ? `${m.hostIP}/` : ""}${m.hostPort}:${m.containerPort}`;
}

/** pasta's arguments for the container whose init is `pid`. */
export function pastaArgs(publish: PortMapping[], pidfile: string, pid: number): string[] {
  const tcp = publish.filter((m) => m.protocol === "tcp").map(pastaSpec);
  const udp = publish.filter((m) => m.protocol === "udp").map(pastaSpec);
  return [
    "--config-net",
    "--quiet",
    "--ns-ifname",
    "eth0",
    ...(tcp.length ? tcp.flatMap((s) => ["-t", s]) : ["-t", "none"]),
    ...(udp.length ? udp.flatMap((s) => ["-u", s]) : ["-u", "none"]),
    "-T",
    "none",
    "-U",
    "none",
    "--no-map-gw",
    "--pid",
    pidfile,
    String(pid),
  ];
}

/** slirp4netns's arguments for the container whose init is `pid`. */
export function slirpArgs(socket: string, pid: number): string[] {
  return [
    "--configure",
    "--mtu=65520",
    "--disable-host-loopback",
    "--enable-sandbox",
    "--enable-seccomp",
    "--exit-fd=0",
    "--ready-fd=1",
    `--api-socket=${socket}`,
    String(pid),
    "eth0",
  ];
}

/** The API request that publishes one port through slirp4netns. */
export function hostfwdRequest(m: PortMapping): Record<string, unknown> {
  return {
    execute: "add_hostfwd",
    arguments: {
      proto: m.protocol,
      host_addr: m.hostIP || "0.0.0.0",
      host_port: m.hostPort,
      guest_addr: SLIRP_ADDRESS,
      guest_port: m.containerPort,
    },
  };
}
