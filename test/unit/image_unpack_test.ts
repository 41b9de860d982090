/** unpackLayer against the recording fake Sys: the calls it makes, in order, and its refusals. */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { MicroError } from "../../core/errors.ts";
import { unpackLayer, type UnpackOptions } from "../../core/image/unpack.ts";
import { RecordingSys } from "../../core/sys/fake.ts";
import {
  CAP_NET_BIND_SERVICE_EP,
  dir,
  entry,
  file,
  hardlink,
  pax,
  streamOf,
  symlink,
  tar,
} from "./_tar.ts";
import { F } from "./_flags.ts";

const ROOTFUL: UnpackOptions = { userxattr: false, canMknod: true };

async function unpack(data: Uint8Array, opts: Partial<UnpackOptions> = {}) {
  const sys = new RecordingSys();
  const r = await unpackLayer(sys, streamOf(data, 700), "/layer", { ...ROOTFUL, ...opts });
  return { sys, r };
}

async function refusal(data: Uint8Array, opts: Partial<UnpackOptions> = {}): Promise<string> {
  try {
    await unpack(data, opts);
  } catch (e) {
    assert.ok(e instanceof MicroError, String(e));
    return e.line();
  }
  throw new Error("the layer was unpacked without an error");
}

Deno.test("unpack: a setuid file with capabilities is chowned, then chmodded, then given xattrs", async () => {
  const data = tar(
    pax([["SCHILY.xattr.security.capability", CAP_NET_BIND_SERVICE_EP]]),
    file("ping", "ELF", { mode: 0o4755, uid: 0, gid: 0 }),
  );
  const { sys, r } = await unpack(data);
  assert.deepEqual(sys.format(), [
    `open("/layer", ${F.PATH_DIR_NOFOLLOW}, 0)`,
    `openat(3, "ping", ${F.CREATE_NEW}, 0o600)`,
    "write(4, 3)",
    "fchown(4, 0, 0)",
    "fchmod(4, 0o4755)",
    'fsetxattr(4, "security.capability", "20 bytes", 0)',
    "utimensat(4, null, 1700000000, 0, 1700000000, 0, 0x0)",
    "close(4)",
    "close(3)",
  ]);
  assert.equal(r.diffId, "sha256:" + createHash("sha256").update(data).digest("hex"));
  assert.equal(r.size, data.length);
  assert.deepEqual(r.warnings, []);
});

Deno.test("unpack: each parent is reached by openat2 beneath the layer, following no symlink", async () => {
  const { sys } = await unpack(tar(dir("a/", { mode: 0o555 }), file("a/f", "x")));
  const opens = sys.format().filter((l) => l.startsWith("openat2"));
  // RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS; O_PATH | O_DIRECTORY.
  assert.equal(opens[0], `openat2(3, "a", ${F.PATH_DIR}, 0, 0xe)`);
  // The directory is made 0700 and gets its mode (and times) only at the end.
  assert.ok(sys.format().includes('mkdirat(3, "a", 0o700)'));
  assert.equal(sys.format().filter((l) => l.startsWith("fchmod(")).pop(), "fchmod(7, 0o555)");
});

Deno.test("unpack: ids are shifted into the range, or squashed, or refused by entry", async () => {
  const data = tar(file("f", "", { uid: 1000, gid: 100 }));
  let { sys } = await unpack(data, { idMap: { uid: 100000, gid: 200000, size: 65536 } });
  assert.ok(sys.format().includes("fchown(4, 101000, 200100)"));
  ({ sys } = await unpack(data, { squashTo: { uid: 1000, gid: 1000 } }));
  assert.ok(sys.format().includes("fchown(4, 1000, 1000)"));
  assert.equal(
    await refusal(tar(file("big", "", { uid: 70000 })), {
      idMap: { uid: 100000, gid: 100000, size: 65536 },
    }),
    "unpack: chown entry=big: owner 70000:0 is outside the 65536 ids mapped for this user " +
      "(add a larger range to /etc/subuid and /etc/subgid)",
  );
});

Deno.test("unpack: owners through id maps (podman's rootless layout), refused when unmapped", async () => {
  // 0 → the caller (1000), 1.. → the subordinate range; symlinks too.
  const caller = (id: number) => ({ containerID: 0, hostID: id, size: 1 });
  const range = (start: number) => ({ containerID: 1, hostID: start, size: 65536 });
  const mapping = { uid: [caller(1000), range(100000)], gid: [caller(1001), range(200000)] };
  const data = tar(
    file("root-owned", "", { uid: 0, gid: 0 }),
    file("app", "", { uid: 1000, gid: 100 }),
    symlink("link", "app", { uid: 33, gid: 33 }),
  );
  // The table wins over the uniform shift.
  const { sys } = await unpack(data, { mapping, idMap: { uid: 5, gid: 5, size: 65536 } });
  assert.deepEqual(sys.format().filter((l) => l.startsWith("fchown")), [
    "fchown(4, 1000, 1001)",
    "fchown(5, 100999, 200099)",
    'fchownat(3, "link", 100032, 200032, 0x100)',
  ]);
  assert.equal(
    await refusal(tar(file("big", "", { uid: 65537 })), { mapping }),
    "unpack: chown entry=big: owner 65537:0 is not in the ids mapped for this user " +
      "(add a larger range to /etc/subuid and /etc/subgid)",
  );
});

Deno.test("unpack: escapes are refused before any call touches the entry", async () => {
  assert.equal(
    await refusal(tar(file("/etc/passwd", "x"))),
    "unpack: check entry=/etc/passwd path=/etc/passwd: entry is an absolute path",
  );
  assert.equal(
    await refusal(tar(file("a/../../x", "x"))),
    'unpack: check entry=a/../../x path=a/../../x: entry climbs out of the layer with ".."',
  );
  assert.match(await refusal(tar(hardlink("h", "/etc/shadow"))), /entry=h .*absolute path/);
  assert.match(await refusal(tar(hardlink("h", "../shadow"))), /entry=h .*climbs out/);
  assert.match(await refusal(tar(pax([["path", "a\0b"]]), file("x"))), /NUL byte/);
});

Deno.test("unpack: a parent that is a symlink is an error naming the entry (ELOOP)", async () => {
  const sys = new RecordingSys().failOn("openat2", (a) => a[1] === "a", 40);
  await assert.rejects(
    unpackLayer(sys, streamOf(tar(symlink("a", "/tmp/x"), file("a/evil", "x"))), "/l", ROOTFUL),
    (e: MicroError) => {
      assert.equal(
        e.line(),
        "unpack: resolve entry=a/evil: a parent is a symlink: writes through links are refused: ELOOP",
      );
      return true;
    },
  );
  assert.ok(!sys.format().some((l) => l.includes('"evil"')));
});

Deno.test("unpack: devices are skipped with one warning without CAP_MKNOD; fifos are made", async () => {
  const { sys, r } = await unpack(
    tar(
      entry({ name: "null", type: "3", devmajor: 1, devminor: 3 }),
      entry({ name: "zero", type: "3", devmajor: 1, devminor: 5 }),
      entry({ name: "fifo", type: "6" }),
    ),
    { canMknod: false },
  );
  assert.deepEqual(r.warnings, [
    "2 device node(s) skipped (first null): making them needs CAP_MKNOD",
  ]);
  assert.deepEqual(sys.format().filter((l) => l.startsWith("mknodat")), [
    'mknodat(3, "fifo", 0o10600, 0, 0)',
  ]);
});

Deno.test("unpack: whiteouts and opaque markers, with userxattr in user.overlay", async () => {
  const data = tar(dir("d/"), file("d/.wh.gone"), file("d/.wh..wh..opq"));
  let { sys } = await unpack(data);
  assert.ok(sys.format().includes('mknodat(5, "gone", 0o20000, 0, 0)'));
  assert.ok(sys.format().some((l) => /fsetxattr\(\d+, "trusted.overlay.opaque", "y", 0\)/.test(l)));
  ({ sys } = await unpack(data, { userxattr: true }));
  assert.ok(sys.format().some((l) => l.includes('"user.overlay.opaque", "y"')));
});

Deno.test("unpack: overlay xattrs from the archive are dropped with a warning", async () => {
  const { sys, r } = await unpack(
    tar(pax([["SCHILY.xattr.trusted.overlay.redirect", "/etc"]]), dir("d/")),
  );
  assert.ok(!sys.format().some((l) => l.includes("redirect")));
  assert.deepEqual(r.warnings, [
    "xattr trusted.overlay.redirect not kept on 1 entry (first d/): " +
    "overlay's own xattrs are not taken from archives",
  ]);
});

Deno.test("unpack: a directory with content is not replaced by a later entry", async () => {
  const sys = new RecordingSys()
    .failOn("mkdirat", (a) => a[1] === "d", 17) // it exists
    .failOn("symlinkat", (a) => a[2] === "d", 17, 1)
    .failOn("unlinkat", (a) => a[2] === 0, 21) // unlink of a directory: EISDIR
    .failOn("unlinkat", (a) => a[2] === 0x200, 39); // rmdir: ENOTEMPTY
  await assert.rejects(
    unpackLayer(sys, streamOf(tar(dir("d/"), symlink("d", "/tmp"))), "/l", ROOTFUL),
    (e: MicroError) => {
      assert.equal(
        e.line(),
        "unpack: replace entry=d: a directory with content would be replaced by another entry: " +
          "ENOTEMPTY",
      );
      return true;
    },
  );
});

Deno.test("unpack: an unknown media type and a corrupt gzip stream are one-line errors", async () => {
  assert.equal(
    await refusal(tar(file("a")), { mediaType: "application/x-rar" }),
    'unpack: unknown layer media type "application/x-rar" (micro unpacks tar layers, plain, gzip or zstd)',
  );
  const bad = new Uint8Array([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 0xff, 0xff, 0xff, 0xff]);
  assert.match(await refusal(bad), /^unpack: corrupt gzip stream: [^\n]+$/);
});
