/**
 * The supervisor's side of `micro attach` (protocol: attach.ts): one Session per attached
 * client. Output is the pumps' (pumps.ts), copied to every session of the container, so
 * several clients share it; a client that reads slower than the container writes is cut
 * off once MAX_QUEUE bytes wait for it (the log and the other clients never wait for it,
 * and the supervisor's memory stays bounded). Input is written to the container's stdin
 * pipe or terminal without blocking: while the container does not read, the session reads
 * nothing more from its client (back-pressure to the client, none to the supervisor).
 */
import { exitFrame, frame, Frames, IN_DATA, IN_EOF, IN_RESIZE, MAX_FRAME } from "./attach.ts";
import { C, type Sys } from "../sys/mod.ts";

/** Bytes waiting for one client at most. */
const MAX_QUEUE = 1 << 20;
/** At the container's end, how long its last output and exit code may take to a client. */
const FLUSH_MS = 2000;
const EAGAIN = 11;
const EINTR = 4;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export class Session {
  private queue: Uint8Array[] = [];
  private queued = 0;
  private writing: Promise<void> | null = null;
  closed = false;
  private closedHook: () => void = () => {};

  constructor(private readonly conn: Deno.UnixConn) {}

  onClose(fn: () => void): void {
    this.closedHook = fn;
  }

  /** Output of the container (the chunk is copied: the pumps reuse their buffer). */
  output(type: number, chunk: Uint8Array): void {
    if (this.closed) return;
    const f = frame(type, chunk);
    if (this.queued + f.length > MAX_QUEUE) return this.close();
    this.queue.push(f);
    this.queued += f.length;
    this.writing ??= this.flush().finally(() => this.writing = null);
  }

  private async flush(): Promise<void> {
    try {
      while (this.queue.length && !this.closed) {
        const f = this.queue.shift()!;
        this.queued -= f.length;
        for (let off = 0; off < f.length;) off += await this.conn.write(f.subarray(off));
      }
    } catch {
      this.close(); // the client left
    }
  }

  /** The container ended: what is queued, its exit code, then the connection closes. */
  async finish(code: number | null): Promise<void> {
    if (this.closed) return;
    const f = exitFrame(code);
    this.queue.push(f);
    this.queued += f.length;
    this.writing ??= this.flush().finally(() => this.writing = null);
    await Promise.race([this.writing, sleep(FLUSH_MS)]);
    this.close();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.queue = [];
    this.queued = 0;
    try {
      this.conn.close();
    } catch { /* closed */ }
    this.closedHook();
  }

  /**
   * The client's frames until it leaves: input to the fd `input()` gives (-1: the container's
   * stdin is not open, the client gave none, or the container ended), window sizes to the
   * terminal `master()` gives. Asked at each use: the supervisor closes them at the end.
   */
  async serveInput(sys: Sys, input: () => number, master: () => number): Promise<void> {
    const frames = new Frames();
    const buf = new Uint8Array(MAX_FRAME + 5);
    let open = true;
    try {
      for (;;) {
        const n = await this.conn.read(buf);
        if (n === null) break;
        for (const f of frames.push(buf.subarray(0, n))) {
          if (f.type === IN_DATA && open) open = await writeAll(sys, input, f.payload);
          else if (f.type === IN_EOF) open = false;
          else if (f.type === IN_RESIZE && master() >= 0 && f.payload.length === 4) {
            const v = new DataView(f.payload.buffer, f.payload.byteOffset, 4);
            const ws = new Uint8Array(8);
            const w = new DataView(ws.buffer);
            w.setUint16(0, v.getUint16(0), true);
            w.setUint16(2, v.getUint16(2), true);
            sys.ioctlBuf(master(), C.TIOCSWINSZ, ws);
          }
        }
        if (this.closed) break;
      }
    } catch { /* a broken frame or a closed connection: the client is gone */ }
    this.close();
  }
}

/**
 * Writes `data` to the O_NONBLOCK `fd`, waiting while it is full; false when the container's
 * side is gone (EPIPE, EIO): no more input is written.
 */
async function writeAll(sys: Sys, fd: () => number, data: Uint8Array): Promise<boolean> {
  for (let off = 0; off < data.length;) {
    if (fd() < 0) return false;
    const rc = sys.write(fd(), data.subarray(off), data.length - off);
    if (rc === -EAGAIN) {
      await sleep(10);
      continue;
    }
    if (rc === -EINTR) continue;
    if (rc <= 0) return false;
    off += rc;
  }
  return true;
}
