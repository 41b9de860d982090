/**
 * Tar archives written byte by byte for the tests: every header field is placed by hand, so
 * a test can make what no honest tar writer makes (bad checksums, escapes, duplicates).
 */

export interface HeaderFields {
  name: string;
  /** Type flag: "0" file, "1" link, "2" symlink, "3" char, "4" block, "5" dir, "6" fifo... */
  type?: string;
  mode?: number;
  uid?: number;
  gid?: number;
  size?: number;
  mtime?: number;
  linkname?: string;
  uname?: string;
  gname?: string;
  devmajor?: number;
  devminor?: number;
  /** ustar (POSIX, default) or gnu ("ustar  \0") magic, or v7 (none). */
  format?: "ustar" | "gnu" | "v7";
  /** The ustar prefix field (joined to the name with "/"). */
  prefix?: string;
  /** Added to the correct checksum (a non-zero value makes a corrupt header). */
  checksumDelta?: number;
  /** Numbers in GNU base-256 instead of octal. */
  base256?: boolean;
}

const enc = new TextEncoder();

function bytes(s: string | Uint8Array): Uint8Array {
  return typeof s === "string" ? enc.encode(s) : s;
}

function put(h: Uint8Array, off: number, len: number, s: string) {
  const b = enc.encode(s);
  if (b.length > len) throw new Error(`field too long: ${s}`);
  h.set(b, off);
}

function octal(h: Uint8Array, off: number, len: number, v: number, base256 = false) {
  if (base256) {
    let x = v;
    for (let i = len - 1; i > 0; i--) {
      h[off + i] = x % 256;
      x = Math.floor(x / 256);
    }
    h[off] = 0x80;
    return;
  }
  put(h, off, len, v.toString(8).padStart(len - 1, "0") + "\0");
}

/** One 512-byte header. */
export function header(f: HeaderFields): Uint8Array {
  const h = new Uint8Array(512);
  put(h, 0, 100, f.name);
  octal(h, 100, 8, f.mode ?? 0o644);
  octal(h, 108, 8, f.uid ?? 0, f.base256);
  octal(h, 116, 8, f.gid ?? 0, f.base256);
  octal(h, 124, 12, f.size ?? 0, f.base256);
  octal(h, 136, 12, f.mtime ?? 1700000000);
  h[156] = (f.type ?? "0").charCodeAt(0);
  put(h, 157, 100, f.linkname ?? "");
  const format = f.format ?? "ustar";
  if (format === "ustar") put(h, 257, 8, "ustar\x0000");
  if (format === "gnu") put(h, 257, 8, "ustar  \0");
  if (format !== "v7") {
    put(h, 265, 32, f.uname ?? "root");
    put(h, 297, 32, f.gname ?? "root");
    octal(h, 329, 8, f.devmajor ?? 0);
    octal(h, 337, 8, f.devminor ?? 0);
  }
  if (f.prefix) put(h, 345, 155, f.prefix);
  h.fill(0x20, 148, 156);
  let sum = 0;
  for (const c of h) sum += c;
  put(h, 148, 8, (sum + (f.checksumDelta ?? 0)).toString(8).padStart(6, "0") + "\0 ");
  return h;
}

function pad(b: Uint8Array): Uint8Array {
  const out = new Uint8Array(Math.ceil(b.length / 512) * 512);
  out.set(b);
  return out;
}

/** A header and its body, padded to whole blocks; `size` comes from the body. */
export function entry(f: HeaderFields, body: string | Uint8Array = ""): Uint8Array {
  const b = bytes(body);
  return concat(header({ size: b.length, ...f }), pad(b));
}

export const file = (name: string, body = "", f: Partial<HeaderFields> = {}) =>
  entry({ name, type: "0", ...f }, body);
export const dir = (name: string, f: Partial<HeaderFields> = {}) =>
  entry({ name, type: "5", mode: 0o755, ...f });
export const symlink = (name: string, target: string, f: Partial<HeaderFields> = {}) =>
  entry({ name, type: "2", linkname: target, mode: 0o777, ...f });
export const hardlink = (name: string, target: string, f: Partial<HeaderFields> = {}) =>
  entry({ name, type: "1", linkname: target, ...f });

/** A PAX extended header ("x", or "g" for global) with the given records. */
export function pax(records: [string, string | Uint8Array][], type = "x"): Uint8Array {
  const parts: Uint8Array[] = [];
  for (const [k, v] of records) {
    const body = concat(enc.encode(` ${k}=`), bytes(v), enc.encode("\n"));
    // The length counts its own digits.
    let len = body.length + 1;
    while (String(len).length + body.length !== len) len = String(len).length + body.length;
    parts.push(concat(enc.encode(String(len)), body));
  }
  return entry({ name: "PaxHeaders/x", type }, concat(...parts));
}

/** A GNU long name ("L") or long link name ("K") header for the next entry. */
export function gnuLong(type: "L" | "K", name: string): Uint8Array {
  return entry({ name: "././@LongLink", type, format: "gnu" }, name + "\0");
}

/** The parts, then the two zero blocks that end an archive. */
export function tar(...parts: Uint8Array[]): Uint8Array {
  return concat(...parts, new Uint8Array(1024));
}

export function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

/** `data` in chunks of `size` bytes, as a stream (to cross every boundary). */
export function streamOf(data: Uint8Array, size = 1 << 16): ReadableStream<Uint8Array> {
  const chunks: Uint8Array[] = [];
  for (let i = 0; i < data.length; i += size) chunks.push(data.slice(i, i + size));
  return ReadableStream.from(chunks);
}

/** setcap-style security.capability bytes (VFS_CAP_REVISION_2) for cap_net_bind_service=ep. */
export const CAP_NET_BIND_SERVICE_EP = new Uint8Array([
  0x01,
  0x00,
  0x00,
  0x02, // magic_etc: revision 2 | VFS_CAP_FLAGS_EFFECTIVE
  0x00,
  0x04,
  0x00,
  0x00, // permitted[0]: bit 10
  0x00,
  0x00,
  0x00,
  0x00, // inheritable[0]
  0x00,
  0x00,
  0x00,
  0x00, // permitted[1]
  0x00,
  0x00,
  0x00,
  0x00, // inheritable[1]
]);
