/** The supervisor's log pumps (one poll over every pipe, bounded reads) and the container lock. */
import assert from "node:assert/strict";
import { LogPumps } from "../../core/supervisor/pumps.ts";
import { RecordingSys } from "../../core/sys/fake.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

Deno.test("pumps: one ppoll for every pipe; only ready pipes read; EOF ends a pipe", async () => {
  const sys = new RecordingSys().scriptRead(10, enc.encode("a\n"), enc.encode("b\n"));
  const got: string[] = [];
  const pumps = new LogPumps(sys);
  const sink = (stream: string, chunk: Uint8Array) => got.push(`${stream}:${dec.decode(chunk)}`);
  const a = pumps.add(10, "stdout", sink);
  const b = pumps.add(11, "stderr", sink);
  sys.clear();
  pumps.pass();
  // one poll of both pipes, then reads of the ready one only: a short read ends its turn
  assert.deepEqual(sys.calls().map((c) => c.call), ["pollReady", "read"]);
  assert.deepEqual(sys.calls()[0].args[0], [10, 11]);
  pumps.pass();
  assert.deepEqual(got, ["stdout:a\n", "stdout:b\n"]);
  // EOF (a read of 0): the pipe is off the loop, its add() resolves
  sys.scriptRead(10, new Uint8Array(0));
  pumps.pass();
  await a;
  assert.equal(pumps.size, 1);
  pumps.remove(11);
  await b;
  assert.equal(pumps.size, 0);
});

Deno.test("pumps: a pipe that never stops is read at most 4 chunks a pass (back-pressure)", () => {
  const big = new Uint8Array(16 * 1024).fill(120);
  const sys = new RecordingSys().scriptRead(10, ...Array(10).fill(big));
  let bytes = 0;
  const pumps = new LogPumps(sys);
  void pumps.add(10, "stdout", (_s, chunk) => bytes += chunk.length);
  const r = pumps.pass();
  assert.equal(bytes, 4 * big.length);
  assert.deepEqual(r, { bytes: 4 * big.length, more: true });
  pumps.remove(10);
});

Deno.test("pumps: EAGAIN ends a pipe's turn, not the pipe; a failing sink keeps it", () => {
  const sys = new RecordingSys().scriptRead(10, enc.encode("x\n")).failOn(
    "read",
    () => true,
    11,
    1,
  );
  const pumps = new LogPumps(sys);
  void pumps.add(10, "stdout", () => {
    throw new Error("disk full");
  });
  pumps.pass(); // EAGAIN
  assert.equal(pumps.size, 1);
  pumps.pass(); // read, the sink throws
  assert.equal(pumps.size, 1);
  pumps.remove(10);
});

Deno.test("container lock: held by another command past the wait, one line saying busy", async () => {
  const { withContainerLock } = await import("../../core/state.ts");
  const dir = Deno.makeTempDirSync();
  try {
    Deno.writeTextFileSync(`${dir}/config.json`, "{}");
    const sys = new RecordingSys().failOn("flock", () => true, 11);
    let ran = false;
    await assert.rejects(
      withContainerLock(dir, "web", sys, () => Promise.resolve(ran = true), 120),
      (e: Error) =>
        /^container web is busy \(another micro command holds its lock\): retry/.test(e.message),
    );
    assert.equal(ran, false);
    // the fd is closed either way
    assert.ok(sys.calls().some((c) => c.call === "close"));
    // free: fn runs; a directory removed meanwhile is reported as gone
    const free = new RecordingSys();
    assert.equal(await withContainerLock(dir, "web", free, (gone) => Promise.resolve(gone)), false);
    Deno.removeSync(`${dir}/config.json`);
    assert.equal(await withContainerLock(dir, "web", free, (gone) => Promise.resolve(gone)), true);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});
