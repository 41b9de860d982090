/**
 * The supervisor's log pumps: every detached container's stdout and stderr pipe, drained
 * by one loop on the main thread. Each pass is one zero-timeout ppoll over every pipe
 * (O_NONBLOCK read ends), then non-blocking reads of the ready ones into their json-file
 * logs. No thread per pipe: a blocking read each held a thread of Deno's blocking pool
 * (about 32), and beyond about 15 containers output was read late and writers blocked.
 *
 * Memory is bounded: one 16 KiB buffer for all pipes, at most PER_PASS reads of a pipe per
 * pass, and a chunk is written before the next is read, so a container that writes faster
 * than the disk fills its pipe and blocks (back-pressure by not reading).
 */
import { C, type Sys } from "../sys/mod.ts";

/** Where a pipe's bytes go (JsonLog.write). */
export type Sink = (stream: string, chunk: Uint8Array) => void;

interface Pipe {
  fd: number;
  stream: string;
  sink: Sink;
  ended: () => void;
}

/** Reads of one pipe per pass: the others get their turn (and memory stays one buffer). */
const PER_PASS = 4;
/** Milliseconds between passes while output flows, and at most when all is quiet. */
const BUSY_MS = 10;
const IDLE_MS = 100;
const EAGAIN = 11;
const EINTR = 4;

export class LogPumps {
  private pipes: Pipe[] = [];
  private timer: ReturnType<typeof setTimeout> | undefined;
  private readonly buf = new Uint8Array(16 * 1024);

  constructor(private readonly sys: Sys) {}

  /** Drains `fd` (O_NONBLOCK) into `sink`; resolves at EOF (every writer gone) or remove. */
  add(fd: number, stream: string, sink: Sink): Promise<void> {
    return new Promise((ended) => {
      this.pipes.push({ fd, stream, sink, ended });
      this.schedule(0);
    });
  }

  /** Stops reading `fd` (the caller closes it); its add() resolves. */
  remove(fd: number): void {
    const p = this.pipes.find((p) => p.fd === fd);
    if (!p) return;
    this.pipes = this.pipes.filter((q) => q !== p);
    if (!this.pipes.length && this.timer !== undefined) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    p.ended();
  }

  /** How many pipes are read. */
  get size(): number {
    return this.pipes.length;
  }

  /**
   * One pass over every pipe: the bytes read, and whether a pipe had more than PER_PASS
   * reads could take (the next pass comes at once).
   */
  pass(): { bytes: number; more: boolean } {
    let bytes = 0;
    let more = false;
    if (!this.pipes.length) return { bytes, more };
    const pipes = this.pipes.slice();
    const fds = Int32Array.from(pipes, (p) => p.fd);
    const revents = new Uint16Array(fds.length);
    const rc = this.sys.pollReady(fds, C.POLLIN, revents);
    if (rc <= 0) return { bytes, more };
    pipes.forEach((p, k) => {
      if (!revents[k]) return;
      for (let n = 0;; n++) {
        if (n === PER_PASS) {
          more = true;
          return;
        }
        const got = this.sys.read(p.fd, this.buf, this.buf.length);
        if (got === -EAGAIN) return;
        if (got === -EINTR) continue;
        if (got <= 0) {
          // EOF (every writer gone) or an error a retry cannot fix.
          this.remove(p.fd);
          return;
        }
        bytes += got;
        try {
          p.sink(p.stream, this.buf.subarray(0, got));
        } catch { /* the disk is full or gone: the bytes are dropped, the pipe kept */ }
        if (got < this.buf.length) return;
      }
    });
    return { bytes, more };
  }

  private schedule(ms: number): void {
    if (this.timer !== undefined) {
      if (ms > 0) return;
      clearTimeout(this.timer);
    }
    this.timer = setTimeout(() => {
      this.timer = undefined;
      const { bytes, more } = this.pass();
      if (this.pipes.length) this.schedule(more ? 0 : bytes ? BUSY_MS : IDLE_MS);
    }, ms);
  }
}
