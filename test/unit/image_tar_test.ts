/** The streaming tar reader on archives written byte by byte (test/unit/_tar.ts). */
import assert from "node:assert/strict";
import { MicroError } from "../../core/errors.ts";
import { byteString, type TarEntry, TarReader } from "../../core/image/tar.ts";
import {
  CAP_NET_BIND_SERVICE_EP,
  concat,
  dir,
  entry,
  file,
  gnuLong,
  hardlink,
  header,
  pax,
  symlink,
  tar,
} from "./_tar.ts";

interface Read extends TarEntry {
  body: string;
}

/** Every entry with its body, the archive fed in chunks of `chunk` bytes. */
async function readAll(data: Uint8Array, chunk = 4096): Promise<Read[]> {
  async function* chunks() {
    for (let i = 0; i < data.length; i += chunk) yield data.slice(i, i + chunk);
  }
  const r = new TarReader(chunks());
  const out: Read[] = [];
  for (;;) {
    const e = await r.next();
    if (e === null) return out;
    const parts: Uint8Array[] = [];
    await r.body((b) => parts.push(b.slice()));
    out.push({ ...e, body: new TextDecoder().decode(concat(...parts)) });
  }
}

async function failure(data: Uint8Array): Promise<string> {
  try {
    await readAll(data);
  } catch (e) {
    assert.ok(e instanceof MicroError, String(e));
    return e.line();
  }
  throw new Error("the archive was read without an error");
}

Deno.test("tar reader: ustar entries of every type, with the prefix field joined", async () => {
  const data = tar(
    dir("d/", { mode: 0o1777, uid: 5, gid: 6, mtime: 1234567 }),
    file("d/f", "hello", { mode: 0o4755, uid: 1000, gid: 100 }),
    symlink("d/s", "../target"),
    hardlink("d/h", "d/f"),
    entry({ name: "dev/null", type: "3", mode: 0o666, devmajor: 1, devminor: 3 }),
    entry({ name: "dev/sda", type: "4", mode: 0o660, devmajor: 8, devminor: 0 }),
    entry({ name: "p", type: "6", mode: 0o644 }),
    file("name", "x", { prefix: "a/very/long/prefix" }),
  );
  for (const chunk of [1, 7, 512, 1 << 20]) {
    const es = await readAll(data, chunk);
    assert.deepEqual(
      es.map((e) => [e.name, e.type, e.mode.toString(8), e.linkname, e.body]),
      [
        ["d/", "dir", "1777", "", ""],
        ["d/f", "file", "4755", "", "hello"],
        ["d/s", "symlink", "777", "../target", ""],
        ["d/h", "link", "644", "d/f", ""],
        ["dev/null", "char", "666", "", ""],
        ["dev/sda", "block", "660", "", ""],
        ["p", "fifo", "644", "", ""],
        ["a/very/long/prefix/name", "file", "644", "", "x"],
      ],
      `chunks of ${chunk}`,
    );
    assert.deepEqual([es[0].uid, es[0].gid, es[0].mtimeSec], [5, 6, 1234567]);
    assert.deepEqual([es[1].uid, es[1].gid, es[1].size], [1000, 100, 5]);
    assert.deepEqual([es[4].devmajor, es[4].devminor, es[5].devmajor], [1, 3, 8]);
  }
});

Deno.test("tar reader: GNU long names and link names, base-256 numbers", async () => {
  const long = "l/" + "n".repeat(150) + "/" + "m".repeat(120);
  const target = "t/" + "k".repeat(200);
  const es = await readAll(tar(
    gnuLong("L", long),
    file("truncated-name", "abc", { format: "gnu", uid: 3000000, gid: 4000000, base256: true }),
    gnuLong("L", long + "2"),
    gnuLong("K", target),
    entry({ name: "x", type: "2", linkname: "short", format: "gnu" }),
    file("after", "z", { format: "gnu" }),
  ));
  assert.deepEqual(es.map((e) => [e.name, e.linkname, e.body]), [
    [long, "", "abc"],
    [long + "2", target, ""],
    ["after", "", "z"],
  ]);
  assert.deepEqual([es[0].uid, es[0].gid], [3000000, 4000000]);
});

Deno.test("tar reader: PAX records override the header, xattrs are raw bytes", async () => {
  const es = await readAll(tar(
    pax([["comment", "made by hand"], ["mtime", "1700000000"]], "g"),
    pax([
      ["path", "päx/" + "p".repeat(300)],
      ["uid", "2000000"],
      ["gid", "3000000"],
      ["mtime", "1600000000.123456789"],
      ["atime", "1500000000.5"],
      ["SCHILY.xattr.security.capability", CAP_NET_BIND_SERVICE_EP],
      ["SCHILY.xattr.user.note", "a\nb=c"],
    ]),
    file("short", "data"),
    pax([["linkpath", "/abs/" + "t".repeat(200)], ["size", "0"]]),
    symlink("s", "x"),
    file("plain", "p"),
  ));
  const [a, b, c] = es;
  assert.equal(a.name, byteString(new TextEncoder().encode("päx/" + "p".repeat(300))));
  assert.deepEqual([a.uid, a.gid, a.mtimeSec, a.mtimeNsec], [
    2000000,
    3000000,
    1600000000,
    123456789,
  ]);
  assert.deepEqual([a.atimeSec, a.atimeNsec], [1500000000, 500000000]);
  assert.deepEqual(a.xattrs.get("security.capability"), CAP_NET_BIND_SERVICE_EP);
  assert.equal(new TextDecoder().decode(a.xattrs.get("user.note")), "a\nb=c");
  assert.equal(a.body, "data");
  assert.equal(b.linkname, "/abs/" + "t".repeat(200));
  // A per-entry header applies to one entry; the global one to all that follow.
  assert.deepEqual([c.name, c.uid, c.xattrs.size, c.mtimeSec], ["plain", 0, 0, 1700000000]);
});

Deno.test("tar reader: a bad header checksum is a one-line error with the offset", async () => {
  const line = await failure(tar(file("a", "x"), file("b", "y", { checksumDelta: 1 })));
  assert.match(line, /^unpack: header checksum mismatch \(at byte 1024 of the tar stream\) \(/);
  assert.ok(!line.includes("\n"));
});

Deno.test("tar reader: truncated archives are errors, wherever they stop", async () => {
  const whole = tar(file("a", "x".repeat(1000)), file("b", "y"));
  for (const cut of [100, 600, 1536, 2048]) {
    assert.match(await failure(whole.slice(0, cut)), /truncated archive/, `cut at ${cut}`);
  }
  // No end-of-archive marker at all.
  assert.match(await failure(file("a", "x")), /truncated archive: no end-of-archive marker/);
  assert.match(await failure(new Uint8Array(0)), /empty archive/);
  // One zero block before the end of input is accepted (GNU tar does too).
  assert.equal((await readAll(concat(file("a", "x"), new Uint8Array(512)))).length, 1);
});

Deno.test("tar reader: not tar, sparse files and unknown types are refused by name", async () => {
  assert.match(await failure(new TextEncoder().encode("x".repeat(2048))), /not a tar archive/);
  assert.match(
    await failure(tar(entry({ name: "s", type: "S", format: "gnu" }, "x"))),
    /sparse files are not supported/,
  );
  assert.match(
    await failure(tar(pax([["GNU.sparse.map", "0,1"]]), file("s", "x"))),
    /sparse files are not supported/,
  );
  assert.match(await failure(tar(entry({ name: "m", type: "M" }))), /unsupported entry type "M"/);
  assert.match(
    await failure(tar(pax([["size", "12x"]]), file("a"))),
    /bad PAX size "12x"/,
  );
  assert.match(
    await failure(tar(entry({ name: "L", type: "L", format: "gnu" }, "x".repeat(70000)))),
    /too large/,
  );
});

Deno.test("tar reader: bytes after the end marker are read (for the digest) and ignored", async () => {
  const chunks: number[] = [];
  async function* src() {
    const data = concat(tar(file("a", "x")), new Uint8Array(10240));
    for (let i = 0; i < data.length; i += 1000) {
      chunks.push(i);
      yield data.slice(i, i + 1000);
    }
  }
  const r = new TarReader(src());
  assert.equal((await r.next())?.name, "a");
  assert.equal(await r.next(), null);
  assert.equal(r.offset, 512 * 4 + 10240);
  assert.equal(await r.next(), null);
});

Deno.test("tar reader: header() itself writes what GNU tar reads", async () => {
  // A sanity check of the test writer: GNU tar lists the archive it makes.
  const h = header({ name: "a", size: 0 });
  assert.equal(h.length, 512);
  const tmp = await Deno.makeTempFile();
  try {
    await Deno.writeFile(tmp, tar(dir("d/"), file("d/f", "hi", { mode: 0o600 })));
    const out = await new Deno.Command("tar", { args: ["-tvf", tmp] }).output();
    assert.ok(out.success, new TextDecoder().decode(out.stderr));
    assert.match(new TextDecoder().decode(out.stdout), /-rw------- root\/root +2 .* d\/f/);
  } finally {
    await Deno.remove(tmp);
  }
});
