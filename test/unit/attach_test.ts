/** The attach protocol's pure parts: frames, Docker's detach keys and their matching. */
import assert from "node:assert/strict";
import {
  DetachKeys,
  exitFrame,
  frame,
  Frames,
  IN_DATA,
  MAX_FRAME,
  OUT_EXIT,
  parseDetachKeys,
  resizeFrame,
} from "../../core/supervisor/attach.ts";

const bytes = (s: string) => new TextEncoder().encode(s);

Deno.test("detach keys: Docker's format", () => {
  assert.deepEqual([...parseDetachKeys("ctrl-p,ctrl-q")!], [16, 17]);
  assert.deepEqual([...parseDetachKeys("ctrl-a,x")!], [1, 120]);
  assert.deepEqual([...parseDetachKeys("ctrl-@,ctrl-[,ctrl-\\,ctrl-],ctrl-^,ctrl-_,DEL")!], [
    0,
    27,
    28,
    29,
    30,
    31,
    127,
  ]);
  assert.deepEqual([...parseDetachKeys("a")!], [97]);
  for (const bad of ["", "ctrl-", "ctrl-1", "ctrl-A", "foo", ",", "ctrl-p,", "é"]) {
    assert.equal(parseDetachKeys(bad), null, bad);
  }
});

Deno.test("detach keys: held until complete, sent when broken, across chunks", () => {
  const keys = parseDetachKeys("ctrl-p,ctrl-q")!;
  const w = new DetachKeys(keys);
  assert.deepEqual(w.feed(bytes("ab")), { send: bytes("ab"), detach: false });
  // ctrl-p alone is held back...
  assert.deepEqual(w.feed(Uint8Array.of(16)), { send: new Uint8Array(0), detach: false });
  // ...and sent with what follows when the sequence breaks.
  assert.deepEqual(w.feed(bytes("x")), { send: Uint8Array.of(16, 120), detach: false });
  // ctrl-p ctrl-p ctrl-q: the first is sent, the last two detach.
  assert.deepEqual(w.feed(Uint8Array.of(16, 16)), { send: Uint8Array.of(16), detach: false });
  assert.deepEqual(w.feed(Uint8Array.of(17, 99)), { send: new Uint8Array(0), detach: true });
  const one = new DetachKeys(parseDetachKeys("ctrl-a")!);
  assert.deepEqual(one.feed(Uint8Array.of(104, 1, 105)), { send: bytes("h"), detach: true });
});

Deno.test("frames: split and joined across chunks; an oversized one is refused", () => {
  const f = new Frames();
  const all = new Uint8Array([
    ...frame(IN_DATA, bytes("hello")),
    ...exitFrame(3),
    ...resizeFrame(24, 80),
    ...exitFrame(null),
  ]);
  const got = [
    ...f.push(all.subarray(0, 7)),
    ...f.push(all.subarray(7, 13)),
    ...f.push(all.subarray(13)),
  ];
  assert.equal(got.length, 4);
  assert.equal(new TextDecoder().decode(got[0].payload), "hello");
  assert.equal(got[1].type, OUT_EXIT);
  assert.equal(new DataView(got[1].payload.buffer).getInt32(0), 3);
  assert.deepEqual([...got[2].payload], [0, 24, 0, 80]);
  assert.equal(new DataView(got[3].payload.buffer).getInt32(0), -1);
  const big = new Uint8Array(5);
  new DataView(big.buffer).setUint32(1, MAX_FRAME + 1);
  assert.throws(() => new Frames().push(big), /frame of/);
});
