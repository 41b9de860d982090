/**
 * The private /16 of micro's own network: the one its bridge already has, else the first
 * candidate that overlaps none of the host's IPv4 routes (a default route overlaps all and
 * is ignored), read from /proc/net/route at run time.
 */

export interface Route {
  iface: string;
  /** Network and prefix length. */
  dst: number;
  prefix: number;
}

/** /proc/net/route: hex little-endian destination and mask per line. */
export function parseRoutes(text: string): Route[] {
  const out: Route[] = [];
  for (const line of text.split("\n").slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 8) continue;
    const le = (h: string) => {
      const n = parseInt(h, 16) >>> 0;
      return (((n & 0xff) << 24) | ((n >>> 8 & 0xff) << 16) | ((n >>> 16 & 0xff) << 8) |
        (n >>> 24)) >>> 0;
    };
    const dst = le(f[1]);
    const mask = le(f[7]);
    let prefix = 0;
    while (prefix < 32 && (mask & (0x80000000 >>> prefix))) prefix++;
    out.push({ iface: f[0], dst, prefix });
  }
  return out;
}

export const CANDIDATES = [
  "10.88.0.0/16",
  ...Array.from({ length: 11 }, (_, i) => `10.${89 + i}.0.0/16`),
  ...Array.from({ length: 16 }, (_, i) => `172.${16 + i}.0.0/16`).reverse(),
  "192.168.0.0/16",
];

function ip(text: string): number {
  return text.split(".").reduce((n, x) => ((n << 8) | Number(x)) >>> 0, 0);
}

export function formatIp(n: number): string {
  return [24, 16, 8, 0].map((s) => (n >>> s) & 0xff).join(".");
}

function overlaps(a: number, ap: number, b: number, bp: number): boolean {
  const p = Math.min(ap, bp);
  const mask = p === 0 ? 0 : (0xffffffff << (32 - p)) >>> 0;
  return ((a & mask) >>> 0) === ((b & mask) >>> 0);
}

/**
 * The subnet and gateway (its first address) for the network whose bridge is `bridge`:
 * the bridge's own route if it has one, else the first candidate free on this host.
 */
export function chooseSubnet(
  routes: Route[],
  bridge: string,
): { subnet: string; gateway: string } | undefined {
  const mine = routes.find((r) => r.iface === bridge && r.prefix > 0);
  if (mine) {
    return { subnet: `${formatIp(mine.dst)}/${mine.prefix}`, gateway: formatIp(mine.dst + 1) };
  }
  const others = routes.filter((r) => r.prefix > 0);
  for (const c of CANDIDATES) {
    const [net, p] = c.split("/");
    const n = ip(net);
    if (!others.some((r) => overlaps(n, Number(p), r.dst, r.prefix))) {
      return { subnet: c, gateway: formatIp(n + 1) };
    }
  }
  return undefined;
}
