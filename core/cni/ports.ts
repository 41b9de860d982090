/**
 * `-p, --publish [HOST_IP:]HOST_PORT:CTR_PORT[/tcp|udp]`, ranges too (`8080-8081:80-81`),
 * as Docker; turned into the portmap plugin's `portMappings` capability argument. With the
 * other syntax checks of the network flags (`--ip`, `--add-host`) that run before a network
 * is chosen: the rest of core/cni loads only for a network (plugins/net.ts `load`).
 */

export interface PortMapping {
  hostPort: number;
  containerPort: number;
  protocol: "tcp" | "udp";
  /** Empty: every address of the host. */
  hostIP: string;
}

function range(text: string): [number, number] | undefined {
  const m = /^(\d{1,5})(?:-(\d{1,5}))?$/.exec(text);
  if (!m) return undefined;
  const a = Number(m[1]);
  const b = m[2] === undefined ? a : Number(m[2]);
  if (a < 1 || b > 65535 || b < a) return undefined;
  return [a, b];
}

/** One `--publish` value to its mappings, or a reason it is not one. */
export function parsePublish(text: string): PortMapping[] | string {
  const usage = "expected [HOST_IP:]HOST_PORT:CTR_PORT[/tcp|udp], e.g. 8080:80";
  let rest = text;
  let protocol: "tcp" | "udp" = "tcp";
  const slash = rest.lastIndexOf("/");
  if (slash >= 0) {
    const p = rest.slice(slash + 1);
    if (p !== "tcp" && p !== "udp") return `protocol "${p}" is not tcp or udp`;
    protocol = p;
    rest = rest.slice(0, slash);
  }
  // The host IP may be [v6]; the ports are the last two colon-separated fields.
  const parts = rest.split(":");
  if (parts.length < 2) return `${usage} (a host port is required)`;
  const ctr = parts.pop()!;
  const host = parts.pop()!;
  let hostIP = parts.join(":");
  if (hostIP.startsWith("[") && hostIP.endsWith("]")) hostIP = hostIP.slice(1, -1);
  if (hostIP !== "" && !isIPv4(hostIP) && !/^[0-9a-fA-F:]+$/.test(hostIP)) {
    return `host address "${hostIP}" is not an IP address`;
  }
  if (hostIP === "0.0.0.0") hostIP = "";
  const h = range(host);
  const c = range(ctr);
  if (!h) return `host port "${host}" is not a port or range (1-65535)`;
  if (!c) return `container port "${ctr}" is not a port or range (1-65535)`;
  if (h[1] - h[0] !== c[1] - c[0]) {
    return `the host range ${host} and the container range ${ctr} differ in length`;
  }
  const out: PortMapping[] = [];
  for (let i = 0; i <= h[1] - h[0]; i++) {
    out.push({ hostPort: h[0] + i, containerPort: c[0] + i, protocol, hostIP });
  }
  return out;
}

export function isIPv4(s: string): boolean {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(s);
  return m !== null && m.slice(1).every((x) => Number(x) <= 255);
}

/** `--add-host NAME:IP` (the IP may be IPv6, so only the first colon splits). */
export function checkAddHost(text: string): string | undefined {
  const i = text.indexOf(":");
  if (i <= 0 || i === text.length - 1) return `expected NAME:IP, got "${text}"`;
  const name = text.slice(0, i);
  const ip = text.slice(i + 1);
  if (!/^[A-Za-z0-9]([A-Za-z0-9.-]*)$/.test(name)) return `"${name}" is not a host name`;
  if (!/^(\d{1,3}\.){3}\d{1,3}$/.test(ip) && !/^[0-9a-fA-F:]+$/.test(ip)) {
    return `"${ip}" is not an IP address`;
  }
  return undefined;
}

/** `0.0.0.0:8080/tcp`: how a mapping is named in messages. */
export function formatMapping(m: PortMapping): string {
  const ip = m.hostIP === "" ? "0.0.0.0" : m.hostIP.includes(":") ? `[${m.hostIP}]` : m.hostIP;
  return `${ip}:${m.hostPort}/${m.protocol}`;
}

/** An image config's ExposedPorts (`"80/tcp": {}`) as container ports; others skipped. */
export function exposedPorts(
  config: Record<string, unknown> | undefined,
): { containerPort: number; protocol: "tcp" | "udp" }[] {
  const e = config?.ExposedPorts;
  if (typeof e !== "object" || e === null || Array.isArray(e)) return [];
  const out: { containerPort: number; protocol: "tcp" | "udp" }[] = [];
  for (const key of Object.keys(e).slice(0, 1024)) {
    const m = /^(\d{1,5})(?:\/(tcp|udp))?$/.exec(key);
    if (!m || Number(m[1]) < 1 || Number(m[1]) > 65535) continue;
    out.push({ containerPort: Number(m[1]), protocol: (m[2] ?? "tcp") as "tcp" | "udp" });
  }
  return out.sort((a, b) =>
    a.containerPort - b.containerPort || a.protocol.localeCompare(b.protocol)
  );
}
