/**
 * A streaming tar reader: ustar, GNU (long names and link names, `L`/`K`, base-256 numbers)
 * and PAX (per-entry `x` and global `g` headers: path, linkpath, size, uid, gid, mtime, atime,
 * uname, gname, SCHILY.xattr.*). Sparse files and multi-volume archives are refused, since a
 * layer never needs them and half-supporting them would write wrong files.
 *
 * Names are byte strings (one char per byte, 0 to 255): Linux names are bytes, not always
 * UTF-8, and must reach the file system exactly as the archive has them. `bytesOf` turns one
 * back into bytes, `displayName` into text for messages.
 *
 * Bodies are streamed: `body` hands out slices of the input chunks without copying, so a
 * large file never sits in memory.
 */
import { MicroError } from "../errors.ts";

export type TarType = "file" | "link" | "symlink" | "char" | "block" | "dir" | "fifo";

export interface TarEntry {
  /** The path, a byte string, as written in the archive (normalised by the unpacker). */
  name: string;
  /** Hard link target or symlink target, a byte string; "" for other types. */
  linkname: string;
  type: TarType;
  /** Permission bits with setuid, setgid and sticky (07777). */
  mode: number;
  uid: number;
  gid: number;
  uname: string;
  gname: string;
  /** Body size in bytes; 0 for every type but "file". */
  size: number;
  mtimeSec: number;
  mtimeNsec: number;
  /** From PAX `atime`; the unpacker uses mtime when absent. */
  atimeSec?: number;
  atimeNsec?: number;
  devmajor: number;
  devminor: number;
  /** Extended attributes from PAX `SCHILY.xattr.NAME`, values as raw bytes. */
  xattrs: Map<string, Uint8Array>;
}

const BLOCK = 512;
/** Caps on metadata bodies read into memory: a name is at most PATH_MAX on Linux. */
const MAX_LONG_NAME = 64 * 1024;
const MAX_PAX = 1024 * 1024;

const HINT = "the layer is corrupt or not a tar archive; fetch or export it again";

export function tarError(message: string, offset: number): MicroError {
  return new MicroError(`${message} (at byte ${offset} of the tar stream)`, {
    phase: "unpack",
    hint: HINT,
  });
}

/** A byte string from bytes up to the first NUL (or the end). */
export function byteString(b: Uint8Array): string {
  let end = b.indexOf(0);
  if (end < 0) end = b.length;
  let s = "";
  for (let i = 0; i < end; i += 8192) {
    s += String.fromCharCode.apply(null, Array.from(b.subarray(i, Math.min(end, i + 8192))));
  }
  return s;
}

/** The bytes of a byte string, NUL-terminated (a `CStr`). */
export function bytesOf(s: string): Uint8Array {
  const out = new Uint8Array(s.length + 1);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}

const utf8 = new TextDecoder();
/** A byte string as text for a message (UTF-8, invalid bytes replaced). */
export function displayName(s: string): string {
  return utf8.decode(bytesOf(s).subarray(0, s.length));
}

/** Reads exact byte counts off an async chunk source, copying only across chunk edges. */
class ByteReader {
  private chunk: Uint8Array = new Uint8Array(0);
  private pos = 0;
  /** Bytes consumed so far. */
  offset = 0;

  constructor(private readonly src: AsyncIterator<Uint8Array>) {}

  /** False at the end of the input. */
  private async fill(): Promise<boolean> {
    while (this.pos >= this.chunk.length) {
      const r = await this.src.next();
      if (r.done) return false;
      this.chunk = r.value;
      this.pos = 0;
    }
    return true;
  }

  /** `n` bytes, or null at a clean end of input; a partial read is a truncated archive. */
  async exact(n: number): Promise<Uint8Array | null> {
    if (!(await this.fill())) return null;
    if (this.chunk.length - this.pos >= n) {
      const out = this.chunk.subarray(this.pos, this.pos + n);
      this.pos += n;
      this.offset += n;
      return out;
    }
    const out = new Uint8Array(n);
    let got = 0;
    while (got < n) {
      if (!(await this.fill())) throw tarError("truncated archive", this.offset);
      const take = Math.min(n - got, this.chunk.length - this.pos);
      out.set(this.chunk.subarray(this.pos, this.pos + take), got);
      this.pos += take;
      got += take;
      this.offset += take;
    }
    return out;
  }

  /** Hands `n` bytes to `sink` in slices of the input chunks. */
  async stream(n: number, sink: ((b: Uint8Array) => void) | null): Promise<void> {
    while (n > 0) {
      if (!(await this.fill())) throw tarError("truncated archive", this.offset);
      const take = Math.min(n, this.chunk.length - this.pos);
      if (sink) sink(this.chunk.subarray(this.pos, this.pos + take));
      this.pos += take;
      this.offset += take;
      n -= take;
    }
  }

  /** As `stream`, awaiting `sink` per slice (a sink that writes to a file asynchronously). */
  async streamAsync(n: number, sink: (b: Uint8Array) => Promise<void>): Promise<void> {
    while (n > 0) {
      if (!(await this.fill())) throw tarError("truncated archive", this.offset);
      const take = Math.min(n, this.chunk.length - this.pos);
      const slice = this.chunk.subarray(this.pos, this.pos + take);
      this.pos += take;
      this.offset += take;
      n -= take;
      await sink(slice);
    }
  }

  /** Reads to the end of the input (so a hash over it covers every byte). */
  async drain(): Promise<void> {
    this.offset += this.chunk.length - this.pos;
    this.pos = this.chunk.length;
    for (;;) {
      const r = await this.src.next();
      if (r.done) return;
      this.offset += r.value.length;
    }
  }

  async cancel(): Promise<void> {
    await this.src.return?.();
  }
}

/** A numeric header field: octal text, or GNU base-256 when the high bit is set. */
function parseNumber(b: Uint8Array, field: string, offset: number): number {
  if (b[0] & 0x80) {
    if (b[0] === 0xff) throw tarError(`negative ${field} in header`, offset);
    let v = b[0] & 0x7f;
    for (let i = 1; i < b.length; i++) v = v * 256 + b[i];
    if (!Number.isSafeInteger(v)) throw tarError(`${field} out of range`, offset);
    return v;
  }
  let i = 0;
  while (i < b.length && (b[i] === 0x20 || b[i] === 0)) i++;
  let v = 0;
  let digits = 0;
  for (; i < b.length; i++) {
    const c = b[i];
    if (c === 0x20 || c === 0) break;
    if (c < 0x30 || c > 0x37) throw tarError(`bad ${field} field in header`, offset);
    v = v * 8 + (c - 0x30);
    digits++;
  }
  for (; i < b.length; i++) {
    if (b[i] !== 0x20 && b[i] !== 0) throw tarError(`bad ${field} field in header`, offset);
  }
  return digits ? v : 0;
}

function isZero(b: Uint8Array): boolean {
  for (let i = 0; i < b.length; i++) if (b[i] !== 0) return false;
  return true;
}

/** The stored checksum matches the header summed with the checksum field as spaces. */
function checksumOk(h: Uint8Array, offset: number): boolean {
  const stored = parseNumber(h.subarray(148, 156), "checksum", offset);
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < BLOCK; i++) {
    const c = i >= 148 && i < 156 ? 0x20 : h[i];
    unsigned += c;
    signed += c > 127 ? c - 256 : c;
  }
  return stored === unsigned || stored === signed;
}

const MAGIC_USTAR = [0x75, 0x73, 0x74, 0x61, 0x72]; // "ustar"

type Format = "ustar" | "gnu" | "v7";

function formatOf(h: Uint8Array): Format | null {
  for (let i = 0; i < 5; i++) {
    if (h[257 + i] !== MAGIC_USTAR[i]) return isZero(h.subarray(257, 265)) ? "v7" : null;
  }
  if (h[262] === 0 && h[263] === 0x30 && h[264] === 0x30) return "ustar";
  if (h[262] === 0x20 && h[263] === 0x20 && h[264] === 0) return "gnu";
  return null;
}

interface Pax {
  path?: string;
  linkpath?: string;
  size?: number;
  uid?: number;
  gid?: number;
  uname?: string;
  gname?: string;
  mtime?: [number, number];
  atime?: [number, number];
  xattrs: Map<string, Uint8Array>;
}

function parseDecimal(v: string, key: string, offset: number): number {
  if (!/^[0-9]{1,16}$/.test(v)) throw tarError(`bad PAX ${key} ${JSON.stringify(v)}`, offset);
  return Number(v);
}

/** PAX time "SECONDS[.FRACTION]" (may be negative) as [sec, nsec]. */
function parsePaxTime(v: string, key: string, offset: number): [number, number] {
  const m = /^(-?)([0-9]{1,16})(?:\.([0-9]*))?$/.exec(v);
  if (!m) throw tarError(`bad PAX ${key} ${JSON.stringify(v)}`, offset);
  let sec = Number(m[2]);
  let nsec = Number(((m[3] ?? "") + "000000000").slice(0, 9));
  if (m[1]) {
    sec = -sec;
    if (nsec) {
      sec -= 1;
      nsec = 1e9 - nsec;
    }
  }
  return [sec, nsec];
}

/** Parses "LEN KEY=VALUE\n" records into `into` (values are byte strings). */
function parsePax(body: Uint8Array, into: Pax, offset: number): void {
  let pos = 0;
  while (pos < body.length) {
    if (body[pos] === 0) break; // padding some writers leave
    let sp = pos;
    while (sp < body.length && body[sp] !== 0x20) sp++;
    const len = Number(byteString(body.subarray(pos, sp)));
    if (!Number.isSafeInteger(len) || len <= sp - pos + 1 || pos + len > body.length) {
      throw tarError("bad PAX record length", offset);
    }
    const rec = body.subarray(sp + 1, pos + len);
    if (rec[rec.length - 1] !== 0x0a) throw tarError("PAX record without newline", offset);
    const eq = rec.indexOf(0x3d);
    if (eq < 0) throw tarError("PAX record without '='", offset);
    const key = byteString(rec.subarray(0, eq));
    const raw = rec.subarray(eq + 1, rec.length - 1);
    // Values may hold NUL (xattrs), so strings are made without stopping at one.
    let value = "";
    for (let i = 0; i < raw.length; i += 8192) {
      value += String.fromCharCode.apply(null, Array.from(raw.subarray(i, i + 8192)));
    }
    pos += len;
    if (key.startsWith("SCHILY.xattr.")) {
      into.xattrs.set(key.slice(13), raw.slice());
      continue;
    }
    if (key.startsWith("GNU.sparse.")) {
      throw tarError("sparse files are not supported in layers", offset);
    }
    // An empty value takes the key back to the header's own field.
    if (value === "") {
      if (key in into) delete (into as unknown as Record<string, unknown>)[key];
      continue;
    }
    switch (key) {
      case "path":
        into.path = value;
        break;
      case "linkpath":
        into.linkpath = value;
        break;
      case "size":
        into.size = parseDecimal(value, key, offset);
        break;
      case "uid":
        into.uid = parseDecimal(value, key, offset);
        break;
      case "gid":
        into.gid = parseDecimal(value, key, offset);
        break;
      case "uname":
        into.uname = value;
        break;
      case "gname":
        into.gname = value;
        break;
      case "mtime":
        into.mtime = parsePaxTime(value, key, offset);
        break;
      case "atime":
        into.atime = parsePaxTime(value, key, offset);
        break;
      default:
        // ctime, comment, charset, other vendors' keys: nothing a layer needs.
        break;
    }
  }
}

const TYPES: Record<string, TarType> = {
  "0": "file",
  "\0": "file",
  "7": "file",
  "1": "link",
  "2": "symlink",
  "3": "char",
  "4": "block",
  "5": "dir",
  "6": "fifo",
  D: "dir", // GNU dumpdir: a directory with a listing as its body, skipped
};

/** Reads entries one at a time; call `body` (or not) before the next `next`. */
export class TarReader {
  private readonly r: ByteReader;
  /** Body bytes of the current entry not yet read, and the padding after them. */
  private left = 0;
  private pad = 0;
  private globals: Pax = { xattrs: new Map() };
  private ended = false;

  constructor(src: AsyncIterable<Uint8Array> | AsyncIterator<Uint8Array>) {
    const it = Symbol.asyncIterator in src
      ? (src as AsyncIterable<Uint8Array>)[Symbol.asyncIterator]()
      : src as AsyncIterator<Uint8Array>;
    this.r = new ByteReader(it);
  }

  /** Bytes of the tar stream read so far. */
  get offset(): number {
    return this.r.offset;
  }

  /** Streams the current entry's body to `sink`, in slices valid only during the call. */
  async body(sink: (chunk: Uint8Array) => void): Promise<void> {
    const n = this.left;
    this.left = 0;
    await this.r.stream(n, sink);
  }

  /**
   * As `body`, for a sink that writes asynchronously (a blob into the store): each slice is
   * awaited before the next is read, so a large body never sits in memory.
   */
  async bodyAsync(sink: (chunk: Uint8Array) => Promise<void>): Promise<void> {
    const n = this.left;
    this.left = 0;
    await this.r.streamAsync(n, sink);
  }

  /** The next entry, or null after the end-of-archive marker (the rest is read and ignored). */
  async next(): Promise<TarEntry | null> {
    if (this.ended) return null;
    await this.r.stream(this.left + this.pad, null);
    this.left = 0;
    this.pad = 0;
    const pax: Pax = { xattrs: new Map(this.globals.xattrs) };
    let longName: string | undefined;
    let longLink: string | undefined;
    let first = true;
    for (;;) {
      const at = this.r.offset;
      const h = await this.r.exact(BLOCK);
      if (h === null) {
        throw tarError(
          first && at === 0 ? "empty archive" : "truncated archive: no end-of-archive marker",
          at,
        );
      }
      if (isZero(h)) {
        if (!first) throw tarError("end-of-archive marker after a PAX or GNU header", at);
        const second = await this.r.exact(BLOCK);
        if (second !== null && !isZero(second)) {
          throw tarError("a zero block inside the archive", at);
        }
        this.ended = true;
        await this.r.drain();
        return null;
      }
      const format = formatOf(h);
      if (format === null) {
        throw tarError(at === 0 ? "not a tar archive" : "bad header magic", at);
      }
      if (!checksumOk(h, at)) throw tarError("header checksum mismatch", at);
      const flag = String.fromCharCode(h[156]);
      const size = parseNumber(h.subarray(124, 136), "size", at);
      if (flag === "x" || flag === "g" || flag === "L" || flag === "K") {
        const cap = flag === "L" || flag === "K" ? MAX_LONG_NAME : MAX_PAX;
        if (size > cap) throw tarError(`${flag} header of ${size} bytes is too large`, at);
        const body = size ? await this.r.exact(size) : new Uint8Array(0);
        if (body === null) throw tarError("truncated archive", this.r.offset);
        await this.r.stream((BLOCK - (size % BLOCK)) % BLOCK, null);
        if (flag === "L") longName = byteString(body);
        else if (flag === "K") longLink = byteString(body);
        else if (flag === "x") parsePax(body, pax, at);
        else {
          parsePax(body, this.globals, at);
          for (const [k, v] of this.globals.xattrs) pax.xattrs.set(k, v);
        }
        first = false;
        continue;
      }
      let type = TYPES[flag];
      if (flag === "S") throw tarError("sparse files are not supported in layers", at);
      if (flag === "V") {
        // A volume label names the archive, not a file.
        await this.r.stream(size + (BLOCK - (size % BLOCK)) % BLOCK, null);
        continue;
      }
      if (type === undefined) {
        throw tarError(`unsupported entry type ${JSON.stringify(flag)}`, at);
      }
      let name = byteString(h.subarray(0, 100));
      if (format === "ustar" && h[345] !== 0) name = byteString(h.subarray(345, 500)) + "/" + name;
      const g = this.globals;
      name = pax.path ?? longName ?? g.path ?? name;
      if (type === "file" && flag !== "7" && format === "v7" && name.endsWith("/")) type = "dir";
      const headerOnly = type !== "file" && flag !== "D";
      const bodySize = pax.size ?? g.size ?? size;
      const mtime = pax.mtime ?? g.mtime;
      const atime = pax.atime ?? g.atime;
      const entry: TarEntry = {
        name,
        linkname: pax.linkpath ?? longLink ?? g.linkpath ?? byteString(h.subarray(157, 257)),
        type,
        mode: parseNumber(h.subarray(100, 108), "mode", at) & 0o7777,
        uid: pax.uid ?? g.uid ?? parseNumber(h.subarray(108, 116), "uid", at),
        gid: pax.gid ?? g.gid ?? parseNumber(h.subarray(116, 124), "gid", at),
        uname: pax.uname ?? g.uname ?? byteString(h.subarray(265, 297)),
        gname: pax.gname ?? g.gname ?? byteString(h.subarray(297, 329)),
        size: type === "file" ? bodySize : 0,
        mtimeSec: mtime ? mtime[0] : parseNumber(h.subarray(136, 148), "mtime", at),
        mtimeNsec: mtime ? mtime[1] : 0,
        devmajor: type === "char" || type === "block"
          ? parseNumber(h.subarray(329, 337), "devmajor", at)
          : 0,
        devminor: type === "char" || type === "block"
          ? parseNumber(h.subarray(337, 345), "devminor", at)
          : 0,
        xattrs: pax.xattrs,
      };
      if (atime) [entry.atimeSec, entry.atimeNsec] = atime;
      // Header-only types carry no body whatever their size field says (as Go's reader).
      const stored = headerOnly ? 0 : bodySize;
      if (type === "file") this.left = stored;
      else this.pad = stored; // a dumpdir listing: skipped
      this.pad += (BLOCK - (stored % BLOCK)) % BLOCK;
      return entry;
    }
  }

  /** Stops reading: the source is told to stop (a decompressor is closed). */
  cancel(): Promise<void> {
    return this.r.cancel();
  }
}
