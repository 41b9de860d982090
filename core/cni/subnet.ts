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

export function ip(text: string): number {
  return text.split(".").reduce((n, x) => ((n << 8) | Number(x)) >>> 0, 0);
}

export function formatIp(n: number): string {
  return [24, 16, 8, 0].map((s) => (n >>> s) & 0xff).join(".");
}

export function overlaps(a: number, ap: number, b: number, bp: number): boolean {
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
  taken: Cidr[] = [],
): { subnet: string; gateway: string } | undefined {
  const mine = routes.find((r) => r.iface === bridge && r.prefix > 0);
  if (mine) {
    return { subnet: `${formatIp(mine.dst)}/${mine.prefix}`, gateway: formatIp(mine.dst + 1) };
  }
  const others: Cidr[] = [...routes.filter((r) => r.prefix > 0), ...taken];
  for (const c of CANDIDATES) {
    const [net, p] = c.split("/");
    const n = ip(net);
    if (!others.some((r) => overlaps(n, Number(p), r.dst, r.prefix))) {
      return { subnet: c, gateway: formatIp(n + 1) };
    }
  }
  return undefined;
}

/** An IPv4 network: its address and prefix length. */
export interface Cidr {
  dst: number;
  prefix: number;
}

/**
 * `A.B.C.D/P` (P from 8 to 30: room for a gateway and containers) with no host bits set,
 * or a reason it is not one.
 */
export function parseCidr(text: string): Cidr | string {
  const m = /^(\d{1,3}(?:\.\d{1,3}){3})\/(\d{1,2})$/.exec(text);
  if (!m || m[1].split(".").some((x) => Number(x) > 255)) {
    return `"${text}" is not an IPv4 subnet (A.B.C.D/PREFIX, e.g. 10.90.0.0/16)`;
  }
  const prefix = Number(m[2]);
  if (prefix < 8 || prefix > 30) return `subnet "${text}": the prefix must be 8 to 30`;
  const dst = ip(m[1]);
  if ((dst & ~maskOf(prefix)) >>> 0) {
    return `subnet "${text}" has host bits set (the network is ${
      formatIp((dst & maskOf(prefix)) >>> 0)
    }/${prefix})`;
  }
  return { dst, prefix };
}

export function maskOf(prefix: number): number {
  return prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
}

export function formatCidr(c: Cidr): string {
  return `${formatIp(c.dst)}/${c.prefix}`;
}

/** Whether `addr` (dotted) is a usable host address of `c`: not its network or broadcast. */
export function hostOf(c: Cidr, addr: string): boolean {
  if (!/^\d{1,3}(\.\d{1,3}){3}$/.test(addr) || addr.split(".").some((x) => Number(x) > 255)) {
    return false;
  }
  const n = ip(addr);
  const m = maskOf(c.prefix);
  return ((n & m) >>> 0) === c.dst && n !== c.dst && ((n | ~m) >>> 0) !== n;
}
