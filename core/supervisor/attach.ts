/**
 * The attach protocol between `micro attach` and the supervisor (server.ts), on the
 * supervisor's socket: the client sends one JSON request line (`op: "attach"`), the
 * supervisor answers one JSON line (`ok`, and whether the container has a terminal), and
 * from then on both sides send frames: a type byte, a 32-bit big-endian length, the payload.
 * A payload is at most MAX_FRAME bytes; a larger length ends the connection (a peer that
 * sends one is not micro). Pure, and light: `micro attach` loads it at start-up.
 */

/** Client to supervisor. */
export const IN_DATA = 0; // bytes for the container's stdin (or its terminal)
export const IN_EOF = 1; // the client's stdin ended: no more input from it
export const IN_RESIZE = 2; // rows and columns (two u16, big-endian) of the client's terminal

/** Supervisor to client. */
export const OUT_STDOUT = 1;
export const OUT_STDERR = 2;
/** The container ended: its exit code (i32, big-endian; -1 when unknown). */
export const OUT_EXIT = 3;

export const MAX_FRAME = 64 * 1024;
const HEADER = 5;

export function frame(type: number, payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(HEADER + payload.length);
  out[0] = type;
  new DataView(out.buffer).setUint32(1, payload.length);
  out.set(payload, HEADER);
  return out;
}

export function exitFrame(code: number | null): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setInt32(0, code ?? -1);
  return frame(OUT_EXIT, b);
}

export function resizeFrame(rows: number, cols: number): Uint8Array {
  const b = new Uint8Array(4);
  const v = new DataView(b.buffer);
  v.setUint16(0, rows);
  v.setUint16(2, cols);
  return frame(IN_RESIZE, b);
}

/**
 * Splits a byte stream into frames. `push` returns the complete frames so far; a frame
 * larger than MAX_FRAME throws (the connection is then dropped).
 */
export class Frames {
  private buf = new Uint8Array(0);

  push(chunk: Uint8Array): { type: number; payload: Uint8Array }[] {
    const all = new Uint8Array(this.buf.length + chunk.length);
    all.set(this.buf);
    all.set(chunk, this.buf.length);
    const out: { type: number; payload: Uint8Array }[] = [];
    let off = 0;
    while (all.length - off >= HEADER) {
      const len = new DataView(all.buffer, off + 1, 4).getUint32(0);
      if (len > MAX_FRAME) throw new Error(`a frame of ${len} bytes (at most ${MAX_FRAME})`);
      if (all.length - off < HEADER + len) break;
      out.push({ type: all[off], payload: all.slice(off + HEADER, off + HEADER + len) });
      off += HEADER + len;
    }
    this.buf = all.slice(off);
    return out;
  }
}

/** Docker's default detach keys: ctrl-p, ctrl-q. */
export const DEFAULT_DETACH_KEYS = "ctrl-p,ctrl-q";

/**
 * Docker's `--detach-keys` (moby/term ToBytes): comma-separated keys, each one character,
 * `ctrl-@`, `ctrl-a`..`ctrl-z`, `ctrl-[`, `ctrl-\`, `ctrl-]`, `ctrl-^`, `ctrl-_`, or `DEL`.
 * Null when `text` is not such a list.
 */
export function parseDetachKeys(text: string): Uint8Array | null {
  const codes: number[] = [];
  for (const key of text.split(",")) {
    if (key.length === 1) {
      const c = key.charCodeAt(0);
      if (c > 127) return null;
      codes.push(c);
      continue;
    }
    const m = /^ctrl-([a-z@\[\\\]^_])$/.exec(key);
    if (m) codes.push(m[1].toUpperCase().charCodeAt(0) & 0x1f);
    else if (key === "DEL") codes.push(127);
    else return null;
  }
  return codes.length ? Uint8Array.from(codes) : null;
}

/**
 * Watches the client's input for the detach keys, as Docker: bytes that may begin the
 * sequence are held back until it is complete (detach: they are never sent) or broken
 * (they are sent with what follows).
 */
export class DetachKeys {
  private held = 0;
  constructor(private readonly keys: Uint8Array) {}

  /** What of `chunk` goes to the container, and whether the sequence completed in it. */
  feed(chunk: Uint8Array): { send: Uint8Array; detach: boolean } {
    const out: number[] = [];
    for (const b of chunk) {
      if (b === this.keys[this.held]) {
        this.held++;
        if (this.held === this.keys.length) return { send: Uint8Array.from(out), detach: true };
        continue;
      }
      // Broken: what was held goes first; this byte may begin the sequence again.
      for (let k = 0; k < this.held; k++) out.push(this.keys[k]);
      this.held = 0;
      if (b === this.keys[0]) {
        this.held = 1;
        if (this.keys.length === 1) return { send: Uint8Array.from(out), detach: true };
      } else out.push(b);
    }
    return { send: Uint8Array.from(out), detach: false };
  }
}
