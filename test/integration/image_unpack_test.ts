/**
 * unpackLayer on the real kernel, as root, in temp dirs: layers applied and mounted as an
 * overlay (in a mount namespace of their own), links, owners, setuid and capabilities kept,
 * every hostile archive refused with its entry named, gzip/zstd/plain, and GNU tar's own
 * archives of a real directory compared with the directory.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import * as zlib from "node:zlib";
import { MicroError } from "../../core/errors.ts";
import { unpackLayer, type UnpackOptions, type UnpackResult } from "../../core/image/unpack.ts";
import { openLibc } from "../../core/sys/libc.ts";
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
} from "../unit/_tar.ts";
import { IS_ROOT, REPO } from "./_helpers.ts";

const sys = openLibc();
const ROOTFUL: UnpackOptions = { userxattr: false, canMknod: true };
const dec = new TextDecoder();
const ignore = !IS_ROOT;
if (ignore) console.log("ignoring image unpack tests: they need root");

async function withTemp(fn: (tmp: string) => Promise<void>): Promise<void> {
  const tmp = await Deno.makeTempDir({ prefix: "micro-unpack-" });
  try {
    await fn(tmp);
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
}

let counter = 0;
/** Unpacks into a new directory under `tmp`. */
async function unpackNew(
  tmp: string,
  data: Uint8Array,
  opts: Partial<UnpackOptions> = {},
): Promise<{ dest: string; r: UnpackResult }> {
  const dest = `${tmp}/layer${counter++}`;
  await Deno.mkdir(dest);
  const r = await unpackLayer(sys, streamOf(data, 65536), dest, { ...ROOTFUL, ...opts });
  return { dest, r };
}

async function refused(tmp: string, data: Uint8Array): Promise<string> {
  try {
    await unpackNew(tmp, data);
  } catch (e) {
    assert.ok(e instanceof MicroError, String(e));
    return e.line();
  }
  throw new Error("the hostile layer was unpacked without an error");
}

async function cmd(program: string, ...args: string[]): Promise<string> {
  const out = await new Deno.Command(program, { args, stdout: "piped", stderr: "piped" })
    .output();
  if (!out.success) {
    throw new Error(
      `${program} ${args.join(" ")}: ${dec.decode(out.stdout)}${dec.decode(out.stderr)}`,
    );
  }
  return dec.decode(out.stdout);
}

/** path type mode uid gid size(files) target mtime, one line per entry, sorted. */
async function listing(root: string, mtimes = true): Promise<string[]> {
  const fmt = `%P|%y|%m|%U|%G|%l${mtimes ? "|%TY%Tm%Td%TH%TM%TS" : ""}\n`;
  const lines = (await cmd("find", root, "-printf", fmt)).split("\n").filter((l) => l);
  const sizes = (await cmd("find", root, "-type", "f", "-printf", "%P|%s\n")).split("\n");
  const size = new Map(sizes.map((l) => l.split("|") as [string, string]));
  // Fractions of a second past what GNU tar's own format keeps are left out. The root is
  // the test's own directory: its time is when the entries landed, which two unpacks may
  // see on either side of a second.
  return lines.map((l) => {
    const p = l.split("|");
    if (mtimes) p[6] = p[0] === "" ? "-" : p[6].slice(0, 14);
    return [...p, size.get(p[0]) ?? "-"].join("|");
  }).sort();
}

async function xattr(path: string, name: string): Promise<string> {
  return (await cmd("getfattr", "-h", "--only-values", "-n", name, path)).trim();
}

Deno.test({
  name: "unpack: three layers mounted as an overlay show a deletion, a replacement, an opaque dir",
  ignore,
  fn: () =>
    withTemp(async (tmp) => {
      const l1 = await unpackNew(
        tmp,
        tar(
          dir("a/"),
          file("a/keep", "k"),
          file("a/del", "d"),
          file("a/rep", "old"),
          dir("o/"),
          file("o/x", "x"),
          dir("o/sub/"),
          file("o/sub/y", "y"),
        ),
      );
      const l2 = await unpackNew(
        tmp,
        tar(dir("a/"), file("a/.wh.del"), file("a/rep", "new"), dir("o/"), file("o/.wh..wh..opq")),
      );
      const l3 = await unpackNew(tmp, tar(dir("o/"), file("o/z", "z")));
      // The markers themselves: a char device 0/0 and the opaque xattr.
      const wh = await Deno.lstat(`${l2.dest}/a/del`);
      assert.ok(wh.isCharDevice);
      assert.equal(wh.rdev, 0);
      assert.equal(await xattr(`${l2.dest}/o`, "trusted.overlay.opaque"), "y");
      const mnt = `${tmp}/merged`;
      await Deno.mkdir(mnt);
      // A mount namespace of its own: nothing is mounted on the host.
      const seen = await cmd(
        "unshare",
        "-m",
        "--propagation",
        "private",
        "sh",
        "-c",
        `mount -t overlay overlay -o lowerdir=${l3.dest}:${l2.dest}:${l1.dest} ${mnt} && ` +
          `cd ${mnt} && ls -A a && echo -- && ls -A o && echo -- && cat a/rep`,
      );
      assert.equal(seen, "keep\nrep\n--\nz\n--\nnew");
    }),
});

Deno.test({
  name: "unpack: hard links, symlinks, owners, setuid, sticky, capabilities and times are kept",
  ignore,
  fn: () =>
    withTemp(async (tmp) => {
      const { dest, r } = await unpackNew(
        tmp,
        tar(
          dir("bin/", { mtime: 1000000000 }),
          pax([["SCHILY.xattr.security.capability", CAP_NET_BIND_SERVICE_EP]]),
          file("bin/ping", "ELF...", { mode: 0o4755, uid: 1234, gid: 5678 }),
          hardlink("bin/ping6", "bin/ping"),
          symlink("bin/p", "ping", { uid: 42, gid: 43, mtime: 1100000000 }),
          dir("tmp/", { mode: 0o1777 }),
          file("sgid", "", { mode: 0o2711, gid: 50 }),
          entry({ name: "dev/null", type: "3", mode: 0o666, devmajor: 1, devminor: 3 }),
          entry({ name: "fifo", type: "6", mode: 0o640, uid: 7 }),
        ),
      );
      assert.deepEqual(r.warnings, []);
      const ping = await Deno.lstat(`${dest}/bin/ping`);
      assert.equal(ping.mode! & 0o7777, 0o4755);
      assert.deepEqual([ping.uid, ping.gid, ping.nlink], [1234, 5678, 2]);
      assert.equal((await Deno.lstat(`${dest}/bin/ping6`)).ino, ping.ino);
      assert.match(await cmd("getcap", `${dest}/bin/ping`), /cap_net_bind_service=ep/);
      const p = await Deno.lstat(`${dest}/bin/p`);
      assert.ok(p.isSymlink);
      assert.equal(await Deno.readLink(`${dest}/bin/p`), "ping");
      assert.deepEqual([p.uid, p.gid, p.mtime!.getTime()], [42, 43, 1100000000000]);
      // The directory's time is set after its content was made.
      assert.equal((await Deno.lstat(`${dest}/bin`)).mtime!.getTime(), 1000000000000);
      assert.equal((await Deno.lstat(`${dest}/tmp`)).mode! & 0o7777, 0o1777);
      assert.equal((await Deno.lstat(`${dest}/sgid`)).mode! & 0o7777, 0o2711);
      const dev = await Deno.lstat(`${dest}/dev/null`);
      assert.ok(dev.isCharDevice);
      assert.equal(dev.rdev, 0x103);
      const fifo = await Deno.lstat(`${dest}/fifo`);
      assert.ok(fifo.isFifo);
      assert.deepEqual([fifo.mode! & 0o7777, fifo.uid], [0o640, 7]);
    }),
});

Deno.test({
  name: "unpack: hostile archives are refused with the entry named, nothing lands outside",
  ignore,
  fn: () =>
    withTemp(async (tmp) => {
      const outside = `${tmp}/outside`;
      await Deno.mkdir(outside);
      const cases: [string, Uint8Array, RegExp][] = [
        ["absolute path", tar(file("/etc/micro-evil", "x")), /entry=\/etc\/micro-evil .*absolute/],
        ["../ escape", tar(file("../escape", "x")), /entry=\.\.\/escape .*climbs out/],
        [
          "write through an earlier symlink",
          tar(symlink("a", outside), file("a/evil", "x")),
          /entry=a\/evil: a parent is a symlink: .*: ELOOP/,
        ],
        [
          "write through a nested symlink",
          tar(dir("d/"), symlink("d/l", outside), dir("d/l/sub/"), file("d/l/sub/evil")),
          /entry=d\/l\/sub\/: a parent is a symlink: .*: ELOOP/,
        ],
        ["hard link to /etc/shadow", tar(hardlink("h", "/etc/shadow")), /entry=h .*absolute/],
        [
          "hard link through a symlink",
          tar(symlink("etc", "/etc"), hardlink("h", "etc/shadow")),
          /entry=h: a parent is a symlink: .*: ELOOP/,
        ],
        [
          "hard link to a name not in the layer",
          tar(hardlink("h", "nothere")),
          /link entry=h target=nothere: the hard link target is not \(yet\) in the layer: ENOENT/,
        ],
        [
          "directory swapped for a symlink, then written into",
          tar(dir("d/"), symlink("d", outside), file("d/evil", "x")),
          /entry=d\/evil: a parent is a symlink: .*: ELOOP/,
        ],
        [
          "directory with content swapped for a symlink",
          tar(dir("d/"), file("d/f", "x"), symlink("d", outside)),
          /replace entry=d: a directory with content would be replaced .*: ENOTEMPTY/,
        ],
      ];
      for (const [what, data, want] of cases) {
        const line = await refused(tmp, data);
        assert.match(line, want, `${what}: ${line}`);
        assert.ok(!line.includes("\n"), what);
      }
      assert.deepEqual([...Deno.readDirSync(outside)], []);
      assert.throws(() => Deno.lstatSync("/etc/micro-evil"));
      assert.throws(() => Deno.lstatSync(`${tmp}/escape`));
      // A later file over a symlink replaces the link; it never writes through it.
      const { dest } = await unpackNew(
        tmp,
        tar(symlink("x", `${outside}/file`), file("x", "inside")),
      );
      assert.equal(await Deno.readTextFile(`${dest}/x`), "inside");
      assert.ok((await Deno.lstat(`${dest}/x`)).isFile);
      assert.deepEqual([...Deno.readDirSync(outside)], []);
    }),
});

Deno.test({
  name: "unpack: gzip, zstd and plain layers give the same tree and the tar's digest",
  ignore,
  fn: () =>
    withTemp(async (tmp) => {
      const plain = tar(
        dir("d/"),
        file("d/big", "0123456789".repeat(100000)),
        symlink("d/s", "big"),
        file("d/small", "s"),
      );
      const digest = "sha256:" + createHash("sha256").update(plain).digest("hex");
      const forms: [string, Uint8Array, string][] = [
        ["plain", plain, "application/vnd.oci.image.layer.v1.tar"],
        ["gzip", zlib.gzipSync(plain), "application/vnd.oci.image.layer.v1.tar+gzip"],
        ["zstd", zlib.zstdCompressSync(plain), "application/vnd.oci.image.layer.v1.tar+zstd"],
        ["docker gzip", zlib.gzipSync(plain), "application/vnd.docker.image.rootfs.diff.tar.gzip"],
      ];
      let first: string[] | undefined;
      for (const [what, data, mediaType] of forms) {
        const { dest, r } = await unpackNew(tmp, data, { mediaType });
        assert.equal(r.diffId, digest, what);
        assert.equal(r.size, plain.length, what);
        assert.deepEqual(r.warnings, [], what);
        const l = await listing(dest);
        first ??= l;
        assert.deepEqual(l, first, what);
      }
      // Without a media type the bytes decide; a media type the bytes contradict is a warning.
      const { r } = await unpackNew(tmp, zlib.gzipSync(plain), {
        mediaType: "application/vnd.oci.image.layer.v1.tar",
      });
      assert.equal(r.diffId, digest);
      assert.match(r.warnings.join("\n"), /says none but the data is gzip/);
      // Corrupt and truncated streams are one-line errors.
      const gz = zlib.gzipSync(plain);
      const zs = zlib.zstdCompressSync(plain);
      const corrupt = gz.slice();
      corrupt.fill(0x55, 100, 200);
      for (
        const [what, data, want] of [
          ["corrupt gzip", corrupt, /^unpack: corrupt gzip stream: /],
          ["truncated gzip", gz.slice(0, gz.length >> 1), /^unpack: corrupt gzip stream: /],
          // zstd does not notice a missing end: the tar reader does.
          ["truncated zstd", zs.slice(0, zs.length >> 1), /^unpack: truncated archive/],
          ["truncated tar", plain.slice(0, 5000), /^unpack: truncated archive/],
        ] as const
      ) {
        const line = await refused(tmp, data);
        assert.match(line, want, what);
        assert.ok(!line.includes("\n"), what);
      }
    }),
});

Deno.test({
  name: "unpack: GNU tar's archives of a real directory unpack to the same tree",
  ignore,
  fn: () =>
    withTemp(async (tmp) => {
      const src = `${tmp}/src`;
      await cmd(
        "sh",
        "-euc",
        `mkdir -p ${src} && cd ${src}
        mkdir -p usr/bin etc/ssl tmp ro "with space" "ünïcødé" ${"deep/".repeat(40)}end
        echo hello > etc/hostname; chmod 600 etc/hostname; chown 1000:1000 etc/hostname
        head -c 1048576 /dev/urandom > usr/bin/big
        : > empty
        printf '#!/bin/sh\\n' > usr/bin/su; chmod 4755 usr/bin/su
        cp usr/bin/su usr/bin/wall; chmod 2755 usr/bin/wall; chgrp 5 usr/bin/wall
        cp usr/bin/su usr/bin/ping; chmod 755 usr/bin/ping; setcap cap_net_raw+ep usr/bin/ping
        ln usr/bin/big usr/bin/big-link
        ln -s ../etc/hostname usr/hostname; ln -s /nonexistent dangling
        chown -h 1000:1001 dangling
        chmod 1777 tmp; mkfifo usr/fifo; mknod usr/null c 1 3
        echo x > "with space/f i l e"; echo y > "ünïcødé/ƒ"
        echo deep > ${"deep/".repeat(40)}end/${"n".repeat(200)}
        setfattr -n user.note -v hi etc/hostname
        echo r > ro/file; chmod 444 ro/file; chmod 555 ro
        chown 65534:65534 ro
        touch -h -d '2001-02-03 04:05:06' dangling ro ro/file usr`,
      );
      const want = await listing(src);
      for (const format of ["posix", "gnu"]) {
        const archive = `${tmp}/src.${format}.tar`;
        await cmd("tar", `--format=${format}`, "--xattrs", "-cf", archive, "-C", src, ".");
        const { dest, r } = await unpackNew(tmp, await Deno.readFile(archive));
        assert.deepEqual(r.warnings, [], format);
        assert.deepEqual(await listing(dest), want, format);
        // Contents (fifos and devices have none, and diff says so as a difference).
        await cmd("diff", "-r", "--no-dereference", "-x", "fifo", "-x", "null", src, dest);
        assert.equal(
          (await Deno.lstat(`${dest}/usr/bin/big-link`)).ino,
          (await Deno.lstat(`${dest}/usr/bin/big`)).ino,
        );
        if (format === "posix") {
          assert.equal(await xattr(`${dest}/etc/hostname`, "user.note"), "hi");
          assert.match(await cmd("getcap", `${dest}/usr/bin/ping`), /cap_net_raw=ep/);
        }
      }
    }),
});

Deno.test({
  name: "unpack: rootless, squashed to nobody, makes whiteouts (no CAP_MKNOD) and user.overlay",
  ignore,
  fn: () =>
    withTemp(async (tmp) => {
      await Deno.chmod(tmp, 0o755);
      const dest = `${tmp}/layer`;
      await Deno.mkdir(dest);
      await Deno.chown(dest, 65534, 65534);
      await Deno.writeFile(
        `${tmp}/layer.tar`,
        tar(
          dir("d/", { mode: 0o555 }),
          file("d/f", "x", { uid: 1000 }),
          file("d/.wh.gone"),
          file("d/.wh..wh..opq"),
          entry({ name: "null", type: "3", devmajor: 1, devminor: 3 }),
        ),
      );
      const script = `${tmp}/unpack.ts`;
      await Deno.writeTextFile(
        script,
        `import { unpackLayer } from "${REPO}/core/image/unpack.ts";
        import { openLibc } from "${REPO}/core/sys/libc.ts";
        const f = await Deno.open(${JSON.stringify(`${tmp}/layer.tar`)});
        const r = await unpackLayer(openLibc(), f.readable, ${JSON.stringify(dest)}, {
          userxattr: true, canMknod: false, squashTo: { uid: 65534, gid: 65534 } });
        console.log(JSON.stringify(r.warnings));`,
      );
      const denoDir = `${tmp}/deno-dir`;
      await Deno.mkdir(denoDir);
      await Deno.chown(denoDir, 65534, 65534);
      const out = await new Deno.Command("setpriv", {
        args: [
          "--reuid=65534",
          "--regid=65534",
          "--clear-groups",
          "--",
          Deno.execPath(),
          "run",
          "--quiet",
          "--no-lock",
          "--no-config",
          "-A",
          script,
        ],
        env: { DENO_DIR: denoDir, HOME: tmp },
        stdout: "piped",
        stderr: "piped",
      }).output();
      assert.ok(out.success, dec.decode(out.stderr));
      assert.deepEqual(JSON.parse(dec.decode(out.stdout)), [
        "1 device node(s) skipped (first null): making them needs CAP_MKNOD",
      ]);
      const wh = await Deno.lstat(`${dest}/d/gone`);
      assert.ok(wh.isCharDevice);
      assert.equal(wh.rdev, 0);
      assert.equal(await xattr(`${dest}/d`, "user.overlay.opaque"), "y");
      const f = await Deno.lstat(`${dest}/d/f`);
      assert.deepEqual([f.uid, f.gid], [65534, 65534]);
      assert.equal((await Deno.lstat(`${dest}/d`)).mode! & 0o7777, 0o555);
    }),
});
