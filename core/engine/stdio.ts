/**
 * The container's stdio, as Docker and podman's conmon give it: without a terminal its
 * stdout and stderr (and stdin, with -i) are pipes micro made, relayed byte for byte to
 * micro's own; with a terminal, a pty whose slave is the container's and whose master micro
 * relays. No host fd reaches the container.
 *
 * Every read and write of a relay runs off the main thread (a blocking call in Deno's
 * blocking pool), so a container that never reads its stdin, or a consumer that never reads
 * micro's stdout, cannot block signal handling or micro's exit. Such calls cannot be
 * cancelled: a relay that is stopped abandons its pending call, and the fd it was on is
 * closed only once that call returns (its number is never reused under it).
 */
import { C, type Sys } from "../sys/mod.ts";

/** micro's ends of the container's stdio; -1 where there is none. */
export interface StdioEnds {
  /** The write end of the container's stdin pipe (with -i, without a terminal). */
  stdin: number;
  /** The read ends of the container's stdout and stderr pipes (without a terminal). */
  stdout: number;
  stderr: number;
  /** The pty master (with a terminal). */
  master: number;
}

/** After init was reaped, a read that waits this long with nothing left to drain ends it. */
export const IDLE_MS = 100;
/** After init was reaped, reading beyond what was buffered then stops after this long. */
export const DRAIN_MS = 2000;
/** At most this long, stdin's EOF waits for the container to read what came before it. */
const EOF_WAIT_MS = 2000;
/** ... and for its terminal output to pause this long (a prompt: the reader waits). */
const QUIET_MS = 100;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Calls of relays still pending on micro's own fds 0 to 2 (see `stdioCallsPending`). */
let ownPending = 0;

/**
 * Whether a relay left a call pending on micro's stdin, stdout or stderr (a read of stdin
 * the user never ended, a write the consumer never took): it holds the file it began on.
 * A process that ends does not care; a serve worker that goes on must (core/serve/worker.ts).
 */
export function stdioCallsPending(): boolean {
  return ownPending > 0;
}

/** Closes each fd once, and only when no call of ours is pending on it. */
class Fds {
  private readonly pending = new Map<number, number>();
  private readonly closing = new Set<number>();
  private readonly closed = new Set<number>();
  constructor(private readonly sys: Sys) {}

  async use<T>(fd: number, call: Promise<T>): Promise<T> {
    this.pending.set(fd, (this.pending.get(fd) ?? 0) + 1);
    if (fd <= 2) ownPending++;
    try {
      return await call;
    } finally {
      if (fd <= 2) ownPending--;
      const left = this.pending.get(fd)! - 1;
      this.pending.set(fd, left);
      if (left === 0 && this.closing.delete(fd)) this.sys.close(fd);
    }
  }

  close(fd: number): void {
    if (fd < 0 || this.closed.has(fd)) return;
    this.closed.add(fd);
    if (this.pending.get(fd)) this.closing.add(fd);
    else this.sys.close(fd);
  }
}

type End = "eof" | "read-error" | "write-error" | "stopped";

/**
 * A pump's read buffer: 16 KiB, and 64 KiB (a pipe's whole capacity) once a read filled it.
 * A container that writes little (most, on a long attached run) does not hold 64 KiB a
 * stream in micro for its whole life.
 */
const FIRST_READ = 16 * 1024;
const BUSY_READ = 64 * 1024;

/** Copies `from` to `to` until EOF, an error, or `stop()`; `drain()` bounds what is left. */
class Pump {
  readonly done: Promise<End>;
  /** The last byte copied (for a terminal's EOF at line start), and when. */
  last = -1;
  lastAt = 0;
  private stopping = false;
  private ended = false;
  private reapAt = 0;
  /** At the reap, no writer was left: the read ends by itself, no timer is needed. */
  private hungUp = false;
  private left = 0;
  private got = 0;
  private wake: () => void = () => {};

  constructor(
    private readonly sys: Sys,
    private readonly fds: Fds,
    readonly from: number,
    readonly to: number,
  ) {
    this.done = this.run().finally(() => this.ended = true);
  }

  /** Init was reaped: copy what it left buffered, then stop when reading goes idle. */
  drain(): void {
    if (this.ended) return;
    const n = new Uint8Array(4);
    this.left = this.sys.ioctlBuf(this.from, C.FIONREAD, n) === 0
      ? new DataView(n.buffer).getInt32(0, true)
      : 0;
    const ev = this.sys.pollNow(this.from, C.POLLIN);
    this.hungUp = ev > 0 && (ev & C.POLLHUP) !== 0;
    this.reapAt = Date.now();
    this.wake();
  }

  stop(): void {
    this.stopping = true;
    this.wake();
  }

  private async run(): Promise<End> {
    let buf = new Uint8Array(FIRST_READ);
    for (;;) {
      if (this.stopping) return "stopped";
      if (this.reapAt && this.got >= this.left && Date.now() - this.reapAt > DRAIN_MS) {
        return "stopped";
      }
      const n = await this.read(buf);
      if (n === null) return "stopped";
      if (n <= 0) return n === 0 ? "eof" : "read-error";
      if (this.reapAt) this.got += n;
      this.last = buf[n - 1];
      this.lastAt = Date.now();
      for (let off = 0; off < n;) {
        const w = await this.until(this.sys.writeAsync(this.to, buf.subarray(off, n), n - off));
        if (w === null) return "stopped";
        if (w <= 0) return "write-error";
        off += w;
      }
      // A read that filled the buffer: a busy stream, read in larger pieces from here on.
      if (n === buf.length && buf.length < BUSY_READ) buf = new Uint8Array(BUSY_READ);
    }
  }

  /** A read, given up (null) on stop, or when idle after the drain began. */
  private async read(buf: Uint8Array): Promise<number | null> {
    const call = this.fds.use(this.from, this.sys.readAsync(this.from, buf, buf.length));
    for (;;) {
      // A first timer costs Deno 10 to 14 ms (the globals setTimeout and clearTimeout are
      // getters that load Node's timers module): none, nor a touch of either, on the common
      // path.
      const idle = this.reapAt > 0 && this.got >= this.left && !this.hungUp;
      let timer: ReturnType<typeof setTimeout> | undefined;
      const tick = new Promise<"wake" | "idle">((r) => {
        this.wake = () => r("wake");
        if (idle) timer = setTimeout(() => r("idle"), IDLE_MS);
      });
      const r = await Promise.race([call, tick]);
      if (timer !== undefined) clearTimeout(timer);
      if (typeof r === "number") return r;
      if (this.stopping || r === "idle") return null;
    }
  }

  /** A write, given up (null) on stop. */
  private async until(write: Promise<number>): Promise<number | null> {
    const call = this.fds.use(this.to, write);
    const stopped = new Promise<null>((r) => this.wake = () => this.stopping && r(null));
    if (this.stopping) return null;
    return await Promise.race([call, stopped]);
  }
}

export interface RelayOptions {
  /** Relay micro's stdin (-i). */
  stdin: boolean;
}

/**
 * The relays of one run. `finish()` is called once init was reaped: stdin stops, output
 * still buffered is copied (bounded: see IDLE_MS and DRAIN_MS), and `stopped` (a signal)
 * ends even that.
 */
export class Relays {
  private readonly fds: Fds;
  private readonly outputs: Pump[] = [];
  private input: Pump | null = null;
  private inputDone: Promise<void> = Promise.resolve();
  private finished = false;

  constructor(private readonly sys: Sys, private readonly ends: StdioEnds, opts: RelayOptions) {
    this.fds = new Fds(sys);
    const terminal = ends.master >= 0;
    if (terminal) this.output(ends.master, 1);
    else {
      this.output(ends.stdout, 1);
      this.output(ends.stderr, 2);
    }
    const to = terminal ? ends.master : ends.stdin;
    if (opts.stdin && to >= 0) {
      const input = new Pump(sys, this.fds, 0, to);
      this.input = input;
      this.inputDone = input.done.then(async (end) => {
        if (end !== "eof" || this.finished) return;
        if (terminal) await this.endOfFile(input.last);
        else this.fds.close(to); // the container reads EOF
      });
    } else if (!terminal) this.fds.close(ends.stdin);
  }

  private output(from: number, to: number): void {
    if (from < 0) return;
    const pump = new Pump(this.sys, this.fds, from, to);
    this.outputs.push(pump);
    // Whatever ended it, micro reads no more: a pipe's writer then gets EPIPE (and SIGPIPE),
    // a terminal hangs up. Closing waits for a pending read.
    void pump.done.then(() => this.fds.close(from));
  }

  /**
   * stdin ended: the terminal's EOF character, at the start of a line, as a user typing ^D
   * would (script(1) does the same): once the container has read what came before and its
   * output has paused, so that a shell's line editor, which switches the terminal between
   * modes, reads it as EOF in the mode it waits in (bounded by EOF_WAIT_MS).
   */
  private async endOfFile(last: number): Promise<void> {
    const master = this.ends.master;
    const slave = this.sys.ioctl(
      master,
      C.TIOCGPTPEER,
      C.O_RDWR | C.O_NOCTTY | C.O_NONBLOCK | C.O_CLOEXEC,
    );
    const n = new Uint8Array(4);
    const view = new DataView(n.buffer);
    const since = Date.now();
    const output = this.outputs[0];
    while (!this.finished && Date.now() - since < EOF_WAIT_MS) {
      await sleep(20);
      const queued = slave >= 0 && this.sys.ioctlBuf(slave, C.FIONREAD, n) === 0
        ? view.getInt32(0, true)
        : 0;
      const quiet = Date.now() - Math.max(since, output?.lastAt ?? 0) >= QUIET_MS;
      if (queued <= 0 && quiet) break;
    }
    if (slave >= 0) this.sys.close(slave);
    if (this.finished) return;
    // TCGETS on a master reads the slave's termios; c_cc starts at byte 17, VEOF is c_cc[4].
    const termios = new Uint8Array(64);
    const veof = this.sys.ioctlBuf(master, C.TCGETS, termios) === 0 && termios[21]
      ? termios[21]
      : 4;
    const buf = new Uint8Array(4096);
    buf[0] = buf[1] = veof;
    // A line not ended yet: the first EOF only ends the line, as in a terminal.
    const len = last === 10 || last === 13 || last === veof || last < 0 ? 1 : 2;
    await this.fds.use(master, this.sys.writeAsync(master, buf, len));
  }

  /** Init was reaped: stop reading stdin, drain the output (bounded), or stop on `stopped`. */
  async finish(stopped: Promise<void>): Promise<void> {
    this.finished = true;
    this.input?.stop();
    for (const p of this.outputs) p.drain();
    const all = Promise.all(this.outputs.map((p) => p.done));
    await Promise.race([all, stopped]);
    for (const p of this.outputs) p.stop();
  }

  /** Closes micro's ends (each once no call is pending on it). */
  close(): void {
    this.finished = true;
    this.input?.stop();
    for (const p of this.outputs) p.stop();
    for (const fd of [this.ends.stdin, this.ends.stdout, this.ends.stderr, this.ends.master]) {
      this.fds.close(fd);
    }
    void this.inputDone;
  }
}

/** Copies micro's window size (of the first stdio fd that is a terminal) to the pty. */
export function copyWindowSize(sys: Sys, master: number): void {
  const ws = new Uint8Array(8);
  for (const fd of [0, 1, 2]) {
    if (sys.ioctlBuf(fd, C.TIOCGWINSZ, ws) === 0) {
      sys.ioctlBuf(master, C.TIOCSWINSZ, ws);
      return;
    }
  }
}
