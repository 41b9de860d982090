/** What a run does without a built-in whose first call costs a process: ids, copies, text. */
import assert from "node:assert/strict";
import { clonePlain } from "../../core/spec.ts";
import { decodeCStr, decodeText, randomHex } from "../../core/sys/mod.ts";
import { openLibc } from "../../core/sys/libc.ts";

Deno.test("clonePlain copies plain data deeply, as structuredClone did, undefined keys included", () => {
  const v = {
    a: 1,
    b: "x",
    c: null,
    d: undefined,
    e: [1, { f: [2, 3] }],
    g: { h: { i: true } },
  };
  const c = clonePlain(v);
  assert.deepStrictEqual(c, structuredClone(v));
  assert.ok("d" in c);
  c.e[0] = 9;
  (c.e[1] as { f: number[] }).f.push(4);
  c.g.h.i = false;
  assert.deepStrictEqual(v.e, [1, { f: [2, 3] }]);
  assert.equal(v.g.h.i, true);
  assert.equal(clonePlain(5), 5);
  // A key "__proto__" (JSON.parse makes one) is copied as a key, not made the prototype.
  const p = clonePlain(JSON.parse('{"__proto__": {"polluted": 1}, "k": 2}'));
  assert.equal(Object.getPrototypeOf(p), Object.prototype);
  assert.equal((p as Record<string, unknown>).polluted, undefined);
  assert.deepStrictEqual(Object.keys(p), ["__proto__", "k"]);
  assert.equal(clonePlain(null), null);
});

Deno.test("randomHex: the kernel's bytes as hex; Web Crypto where getrandom is refused", () => {
  const a = randomHex(openLibc(), 32);
  assert.match(a, /^[0-9a-f]{64}$/);
  assert.notEqual(a, randomHex(openLibc(), 32));
  assert.match(randomHex(openLibc(), 6), /^[0-9a-f]{12}$/);
  // ENOSYS (a kernel before 3.17) or EPERM (a seccomp filter): still 6 random bytes
  const refused = { getrandom: () => -38 };
  const ids = new Set(Array.from({ length: 50 }, () => randomHex(refused, 6)));
  assert.equal(ids.size, 50);
  for (const id of ids) assert.match(id, /^[0-9a-f]{12}$/);
});

Deno.test("decodeText decodes as TextDecoder does: ASCII, UTF-8, invalid bytes, a BOM, long input", () => {
  const enc = new TextEncoder();
  const cases: Uint8Array[] = [
    new Uint8Array(0),
    enc.encode("state.json"),
    enc.encode('{\n  "id": "abc",\n  "pid": 42\n}\n'),
    new Uint8Array(Array.from({ length: 128 }, (_, i) => i)), // every ASCII byte, NUL included
    enc.encode("naïve 日本 🐳"),
    Uint8Array.of(0x66, 0x80, 0xff, 0xc3), // invalid: replacement characters
    Uint8Array.of(0xef, 0xbb, 0xbf, 0x61), // a BOM, which TextDecoder drops
    enc.encode("x".repeat(4096)),
    enc.encode("y".repeat(4097)),
  ];
  for (const c of cases) assert.equal(decodeText(c), new TextDecoder().decode(c));
  assert.equal(decodeCStr(Uint8Array.of(0x61, 0x62, 0, 0x63)), "ab");
});
