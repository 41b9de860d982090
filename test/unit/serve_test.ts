/** `micro serve`'s wire format (core/serve/wire.ts) and a worker's checks of its client. */
import assert from "node:assert/strict";
import {
  decodeReply,
  decodeRequest,
  encodeReply,
  encodeRequest,
  servePath,
  sockaddrUn,
} from "../../core/serve/wire.ts";
import { check, identify, selfFacts } from "../../core/serve/worker.ts";
import { openLibc } from "../../core/sys/libc.ts";
import { C } from "../../core/sys/mod.ts";

const json = (v: unknown) => new TextEncoder().encode(JSON.stringify(v));

Deno.test("serve wire: a request goes as its length and JSON, and comes back the same", () => {
  const req = {
    argv: ["run", "--rm", "img", "true"],
    env: { A: "1", PATH: "/bin" },
    umask: 0o22,
    build: "file:///x/main.ts",
    warmed: true,
  };
  const bytes = encodeRequest(req);
  assert.equal(new DataView(bytes.buffer).getUint32(0, true), bytes.length - 4);
  assert.deepEqual(decodeRequest(bytes.subarray(4)), req);
  // Its launcher's warm-up (core/cgroups/warm.ts): only a true is one.
  for (const warmed of [undefined, false, "yes", 1]) {
    assert.equal((decodeRequest(json({ ...req, warmed })) as { warmed: boolean }).warmed, false);
  }
});

Deno.test("serve wire: a malformed request is refused with the reason, never thrown", () => {
  const ok = { argv: ["run", "img"], env: {}, umask: 18, build: "b" };
  const refused: [unknown, RegExp][] = [
    [[1], /not an object/],
    [{ ...ok, argv: [] }, /argv is not a list of strings/],
    [{ ...ok, argv: ["run", 3] }, /argv is not a list of strings/],
    [{ ...ok, argv: ["serve"] }, /"serve" is not a command the server takes/],
    [{ ...ok, argv: ["oci", "create"] }, /"oci" is not a command the server takes/],
    [{ ...ok, env: { "A=B": "x" } }, /is not NAME=VALUE/],
    [{ ...ok, env: { A: 1 } }, /is not NAME=VALUE/],
    [{ ...ok, env: { A: "x\0y" } }, /is not NAME=VALUE/],
    [{ ...ok, env: [] }, /env is not an object/],
    [{ ...ok, umask: 0o1000 }, /umask/],
    [{ ...ok, umask: 1.5 }, /umask/],
    [{ ...ok, build: 1 }, /build/],
  ];
  for (const [v, why] of refused) assert.match(String(decodeRequest(json(v))), why);
  assert.match(String(decodeRequest(new TextEncoder().encode("{"))), /not JSON/);
  assert.match(String(decodeRequest(new Uint8Array([0xff, 0xfe]))), /not JSON/);
});

Deno.test("serve wire: replies are checked lines", () => {
  for (
    const r of [{ pid: 7 }, { refused: "no" }, { retry: "limits" }, { exit: 0 }, { exit: 255 }]
  ) {
    const line = new TextDecoder().decode(encodeReply(r));
    assert.ok(line.endsWith("\n"));
    assert.deepEqual(decodeReply(line.trimEnd()), r);
  }
  for (const bad of ["", "{", "null", '{"pid":0}', '{"exit":256}', '{"exit":-1}', '{"x":1}']) {
    assert.equal(decodeReply(bad), null, bad);
  }
});

Deno.test("serve wire: the socket's address and path", () => {
  const a = sockaddrUn("/run/x.sock")!;
  assert.equal(a[0], 1);
  assert.equal(new TextDecoder().decode(a.subarray(2, a.length - 1)), "/run/x.sock");
  assert.equal(a[a.length - 1], 0);
  assert.equal(sockaddrUn(`/${"x".repeat(107)}`), null);
  assert.equal(servePath("/a/b.sock", 0), "/a/b.sock");
  assert.match(servePath("1", 0), /\/serve\.sock$/);
  assert.throws(() => servePath("rel.sock", 0), /not "1" or an absolute path/);
});

Deno.test("serve identify and check: the client is the socket's peer, by the kernel's pidfd", () => {
  const sys = openLibc();
  const s = new Int32Array(2);
  assert.equal(sys.socketpair(C.AF_UNIX, C.SOCK_STREAM | C.SOCK_CLOEXEC, s), 0);
  try {
    const client = identify(sys, s[1]);
    if (client === "this kernel cannot name a socket's peer (SO_PEERPIDFD, Linux 6.5+)") return;
    assert.ok(typeof client !== "string", String(client));
    try {
      // The peer of s[1] is this very process: the same in every respect.
      assert.equal(client.pid, Deno.pid);
      assert.equal(check(sys, s[1], client.proc), undefined);
      // A worker compares with its own facts, read once (processState keeps them true): each
      // one that differs refuses the client. (Its scheduling and cgroups, which another
      // process may change, are read again each time.)
      const me = selfFacts(sys);
      assert.equal(check(sys, s[1], client.proc, undefined, me), undefined);
      const differs: [(f: ReturnType<typeof selfFacts>) => void, RegExp][] = [
        [(f) => f.status.set("Uid", "1\t1\t1\t1"), /Uid/],
        [(f) => f.status.set("CapBnd", "ffffffffffffffff"), /fewer capabilities/],
        [(f) => f.ns[2] = "pid:[1]", /another pid namespace/],
        [(f) => f.root = "x", /another root/],
        [(f) => f.label = "unconfined", /security label/],
        [(f) => f.personality = "00400000", /personality/],
      ];
      for (const [change, why] of differs) {
        const other = { ...selfFacts(sys) };
        other.status = new Map(other.status);
        other.ns = [...other.ns];
        change(other);
        assert.match(String(check(sys, s[1], client.proc, undefined, other)), why);
      }
    } finally {
      sys.close(client.proc);
      sys.close(client.pidfd);
    }
  } finally {
    for (const fd of s) sys.close(fd);
  }
});
