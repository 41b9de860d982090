/**
 * The stdio relays (`core/engine/stdio.ts`) and the run's signals (`core/signals.ts`) through
 * the recording Sys: what is copied where, what is closed when, and that nothing waits on a
 * call that may never return.
 */
import assert from "node:assert/strict";
import { IDLE_MS, Relays } from "../../core/engine/stdio.ts";
import { RunSignals } from "../../core/signals.ts";
import { RecordingSys } from "../../core/sys/fake.ts";
import { C } from "../../core/sys/mod.ts";

const enc = new TextEncoder();
const NONE = { stdin: -1, stdout: -1, stderr: -1, master: -1 };

/** A Sys whose reads on `stuck` never complete (a pipe nobody writes to and nobody closes). */
class StuckSys extends RecordingSys {
  constructor(private readonly stuck: number[]) {
    super();
  }
  override readAsync(fd: number, buf: Uint8Array, len: number): Promise<number> {
    if (this.stuck.includes(fd)) {
      super.readAsync(-1, buf, 0); // recorded as readAsync(-1, 0)
      return new Promise(() => {});
    }
    return super.readAsync(fd, buf, len);
  }
}

const settle = () => new Promise((r) => setTimeout(r, 10));
const never = new Promise<void>(() => {});

Deno.test("relays copy stdout and stderr byte for byte, apart, and close the pipes at EOF", async () => {
  const sys = new RecordingSys()
    .scriptRead(8, enc.encode("out1 "), enc.encode("out2"))
    .scriptRead(10, enc.encode("err"));
  const relays = new Relays(sys, { ...NONE, stdout: 8, stderr: 10 }, { stdin: false });
  await settle();
  await relays.finish(never);
  relays.close();
  assert.equal(new TextDecoder().decode(sys.written(1)), "out1 out2");
  assert.equal(new TextDecoder().decode(sys.written(2)), "err");
  const closes = sys.format().filter((l) => l.startsWith("close"));
  assert.deepEqual(closes.sort(), ["close(10)", "close(8)"]);
  assert.ok(!sys.names().includes("write"), "no write on the main thread");
});

Deno.test("a relay reads 16 KiB at a time, and 64 KiB once a read filled its buffer (a busy stream)", async () => {
  const full = new Uint8Array(16384).fill(120);
  const big = new Uint8Array(65536).fill(121);
  const sys = new RecordingSys().scriptRead(8, enc.encode("small"), full, big, enc.encode("end"));
  const relays = new Relays(sys, { ...NONE, stdout: 8 }, { stdin: false });
  await settle();
  await relays.finish(never);
  relays.close();
  assert.deepEqual(sys.format().filter((l) => l.startsWith("readAsync")), [
    "readAsync(8, 16384)",
    "readAsync(8, 16384)", // filled: larger from here on
    "readAsync(8, 65536)",
    "readAsync(8, 65536)",
    "readAsync(8, 65536)", // EOF
  ]);
  assert.equal(sys.written(1).length, 5 + 16384 + 65536 + 3);
});

Deno.test("a consumer gone (EPIPE on micro's stdout) closes the pipe and reads no more", async () => {
  const sys = new RecordingSys()
    .scriptRead(8, enc.encode("a"), enc.encode("b"))
    .failOn("writeAsync", (a) => a[0] === 1, 32);
  const relays = new Relays(sys, { ...NONE, stdout: 8 }, { stdin: false });
  await settle();
  assert.deepEqual(sys.format(), ["readAsync(8, 16384)", "writeAsync(1, 1)", "close(8)"]);
  await relays.finish(never);
  relays.close();
  assert.equal(sys.format().filter((l) => l === "close(8)").length, 1, "closed once");
});

Deno.test("-i without -t: stdin is copied to the pipe, which is closed at stdin's EOF", async () => {
  const sys = new RecordingSys().scriptRead(0, enc.encode("hello\n"));
  const relays = new Relays(sys, { ...NONE, stdin: 9, stdout: 8 }, { stdin: true });
  await settle();
  assert.equal(new TextDecoder().decode(sys.written(9)), "hello\n");
  assert.ok(sys.format().includes("close(9)"), sys.format().join("\n"));
  await relays.finish(never);
  relays.close();
});

Deno.test("-i -t: stdin's EOF is the terminal's VEOF, twice after a line not ended", async () => {
  for (const [input, expected] of [["ls\n", [1]], ["abc", [1, 1]]] as const) {
    const sys = new RecordingSys()
      .scriptRead(0, enc.encode(input))
      // The slave's termios: VEOF (c_cc[4], byte 21) is ^A here. TIOCGPTPEER gives fd 20.
      .returns("ioctlBuf", (a) => a[1] === C.TCGETS, 0)
      .returns("ioctl", (a) => a[1] === C.TIOCGPTPEER, 20);
    const realIoctlBuf = sys.ioctlBuf.bind(sys);
    sys.ioctlBuf = (fd, req, buf) => {
      const rc = realIoctlBuf(fd, req, buf);
      if (req === C.TCGETS) buf[21] = 1;
      return rc;
    };
    const relays = new Relays(sys, { ...NONE, master: 7 }, { stdin: true });
    const deadline = Date.now() + 3000;
    while (sys.written(7).length < input.length + expected.length && Date.now() < deadline) {
      await settle();
    }
    const written = Array.from(sys.written(7));
    assert.deepEqual(written.slice(input.length), expected, `${JSON.stringify(input)}`);
    // The slave opened to see that the container has read what came before is closed.
    assert.ok(sys.format().includes("close(20)"));
    await relays.finish(never);
    relays.close();
  }
});

Deno.test("after init is reaped, a read that never returns ends the drain; its fd stays open", async () => {
  const sys = new StuckSys([8]).scriptRead(10, enc.encode("x"));
  const relays = new Relays(sys, { ...NONE, stdout: 8, stderr: 10 }, { stdin: false });
  await settle();
  const t0 = Date.now();
  await relays.finish(never);
  const took = Date.now() - t0;
  assert.ok(took >= IDLE_MS - 5 && took < IDLE_MS + 500, `drain took ${took} ms`);
  relays.close();
  // fd 8 has a read pending: closing it could let its number be reused under that read.
  assert.ok(!sys.format().includes("close(8)"), sys.format().join("\n"));
  assert.ok(sys.format().includes("close(10)"));
});

Deno.test("a run's relays that end at EOF (writers gone at the reap) touch no timer", async () => {
  // The common end of a run: init exited, its pipes hung up. A first setTimeout costs Deno
  // milliseconds (its timers layer loads): none on this path, the EOF ends the read.
  let eof = (_n: number) => {};
  class PendingSys extends RecordingSys {
    override readAsync(fd: number, buf: Uint8Array, _len: number): Promise<number> {
      super.readAsync(-1, buf, 0);
      return fd === 8 ? new Promise((r) => eof = r) : Promise.resolve(0);
    }
  }
  const sys = new PendingSys().returns("pollNow", () => true, C.POLLIN | C.POLLHUP);
  // Not even clearTimeout(undefined): touching either global loads Deno's timers layer.
  const [realSet, realClear] = [globalThis.setTimeout, globalThis.clearTimeout];
  const calls: string[] = [];
  globalThis.setTimeout = ((...a: Parameters<typeof setTimeout>) => {
    calls.push("setTimeout");
    return realSet(...a);
  }) as typeof setTimeout;
  globalThis.clearTimeout = ((id?: number) => {
    calls.push("clearTimeout");
    realClear(id);
  }) as typeof clearTimeout;
  let relays: Relays;
  try {
    relays = new Relays(sys, { ...NONE, stdout: 8, stderr: 10 }, { stdin: false });
    await Promise.resolve();
    const done = relays.finish(never);
    eof(0);
    await done;
  } finally {
    globalThis.setTimeout = realSet;
    globalThis.clearTimeout = realClear;
  }
  relays.close();
  assert.deepEqual(calls, [], "a timer was touched");
  assert.ok(sys.format().includes("close(8)"), sys.format().join("\n"));
});

Deno.test("a signal during the drain ends it at once", async () => {
  const sys = new StuckSys([8]);
  const relays = new Relays(sys, { ...NONE, stdout: 8 }, { stdin: false });
  // What the container left buffered (FIONREAD) is read before idling counts: here 1 MB
  // that never comes, so only the signal can end the drain.
  sys.returns("ioctlBuf", (a) => a[1] === C.FIONREAD, 0);
  const realIoctlBuf = sys.ioctlBuf.bind(sys);
  sys.ioctlBuf = (fd, req, buf) => {
    const rc = realIoctlBuf(fd, req, buf);
    if (req === C.FIONREAD) new DataView(buf.buffer).setInt32(0, 1 << 20, true);
    return rc;
  };
  let signal = () => {};
  const stopped = new Promise<void>((r) => signal = r);
  setTimeout(signal, 30);
  const t0 = Date.now();
  await relays.finish(stopped);
  assert.ok(Date.now() - t0 < IDLE_MS, `took ${Date.now() - t0} ms`);
  relays.close();
});

Deno.test("signals: before the command a stop is recorded, USR1 held; then forwarded", () => {
  const s = new RunSignals();
  try {
    const kills: [number, number][] = [];
    const kill = (p: number, n: number) => void kills.push([p, n]);
    s.deliver(10); // USR1: held
    s.deliver(28); // WINCH: dropped
    assert.equal(s.stopSignal, 0);
    s.child(42, kill);
    assert.deepEqual(kills, []);
    s.settled();
    s.running(null);
    assert.deepEqual(kills, [[42, 10]], "the held USR1 goes to the command");
    s.deliver(15);
    s.deliver(28);
    assert.deepEqual(kills, [[42, 10], [42, 15], [42, 28]]);
    assert.equal(s.stopSignal, 0, "while it runs, TERM is the command's");
  } finally {
    s.remove();
  }
});

Deno.test("signals: TERM while the child starts kills it; during the drain it ends the drain", async () => {
  const s = new RunSignals();
  try {
    const kills: [number, number][] = [];
    s.child(42, (p, n) => void kills.push([p, n]));
    s.deliver(15);
    assert.equal(s.stopSignal, 15);
    assert.deepEqual(kills, [[42, 9]]);
    await s.stopped;

    const t = new RunSignals();
    let resized = 0;
    t.child(43, (p, n) => void kills.push([p, n]));
    t.settled();
    t.running(() => resized++);
    t.deliver(28);
    assert.equal(resized, 1, "WINCH resizes the terminal");
    t.draining();
    t.deliver(2);
    await t.stopped;
    assert.deepEqual(kills, [[42, 9]], "nothing is sent to a reaped init");
    t.remove();
  } finally {
    s.remove();
  }
});
