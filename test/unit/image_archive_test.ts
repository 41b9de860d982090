/**
 * readImageSource and exportImage on layouts and archives the tests write byte by byte, with
 * the real libc (no root needed) and a store in a temp dir.
 */
import assert from "node:assert/strict";
import { MicroError } from "../../core/errors.ts";
import { cleanStaging, readImageSource } from "../../core/image/archive.ts";
import { BlobStore } from "../../core/image/blobs.ts";
import { exportImage } from "../../core/image/export.ts";
import { checkImageManifest } from "../../core/image/registry.ts";
import { openLibc } from "../../core/sys/libc.ts";
import {
  archiveOf,
  blob,
  compress,
  desc,
  dockerSave,
  enc,
  entry,
  foreignArch,
  hostArch,
  indexJson,
  layerTar,
  layoutFiles,
  makeImage,
  makeIndex,
  OCI_LAYOUT,
  sha256,
  type TestImage,
  writeFiles,
} from "./_images.ts";
import { symlink } from "./_tar.ts";

const sys = openLibc();

async function withStore(
  fn: (dir: string, blobs: BlobStore, warnings: string[]) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "micro-import-" });
  try {
    await fn(dir, new BlobStore(`${dir}/store`), []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

function imp(path: string, blobs: BlobStore, warnings: string[] = [], platform?: string) {
  return readImageSource(path, blobs, { sys, platform, warn: (m) => warnings.push(m) });
}

async function refusal(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof MicroError, String(e instanceof Error ? e.stack : e));
    return e.line();
  }
  throw new Error("the import succeeded");
}

/** No partial, no staging dir left in the store's tmp. */
async function tmpIsClean(blobs: BlobStore) {
  const left = await Array.fromAsync(Deno.readDir(blobs.tmpDir)).catch(() => []);
  assert.deepEqual(left.map((e) => e.name), []);
}

async function assertStored(blobs: BlobStore, image: TestImage) {
  for (const b of image.blobs) {
    assert.ok(await blobs.has(b.digest), `blob ${b.digest} stored`);
    assert.deepEqual(await Deno.readFile(blobs.path(b.digest)), b.data);
  }
}

const L1 = layerTar({ "bin/sh": "shell", "etc/hostname": "box\n" });
const L2 = layerTar({ "etc/motd": "hello\n" });

Deno.test("import: an OCI layout directory, named by its ref name, every blob stored", async () => {
  await withStore(async (dir, blobs) => {
    const img = makeImage([L1, L2]);
    await writeFiles(
      `${dir}/layout`,
      layoutFiles(img.blobs, [{ blob: img.manifest, name: "app:1" }]),
    );
    const [got, ...more] = await imp(`${dir}/layout`, blobs);
    assert.equal(more.length, 0);
    assert.deepEqual(got.names, ["docker.io/library/app:1"]);
    assert.equal(got.ref, "docker.io/library/app:1");
    assert.equal(got.manifestDigest, img.manifest.digest);
    assert.equal(got.configDigest, img.config.digest);
    assert.deepEqual(got.layers, img.layers.map((l) => desc(l)));
    assert.equal(got.platform, `linux/${hostArch()}`);
    await assertStored(blobs, img);
    await tmpIsClean(blobs);
  });
});

for (const compression of ["none", "gzip", "zstd"] as const) {
  Deno.test(`import: an OCI archive with ${compression} layers`, async () => {
    await withStore(async (dir, blobs) => {
      const img = makeImage([L1, L2], { compression });
      const files = layoutFiles(img.blobs, [{ blob: img.manifest, name: "example.org/x/y:2" }]);
      await Deno.writeFile(`${dir}/a.tar`, archiveOf(files));
      const [got] = await imp(`${dir}/a.tar`, blobs);
      assert.deepEqual(got.names, ["example.org/x/y:2"]);
      assert.equal(got.manifestDigest, img.manifest.digest);
      await assertStored(blobs, img);
      await tmpIsClean(blobs);
    });
  });

  Deno.test(`import: a docker save tarball with ${compression} layers becomes an OCI image`, async () => {
    await withStore(async (dir, blobs) => {
      const img = makeImage([L1, L2], { compression: "none" });
      await Deno.writeFile(
        `${dir}/d.tar`,
        archiveOf(dockerSave([{ image: img, tags: ["busybox:latest", "busybox:1"], compression }])),
      );
      const [got, ...more] = await imp(`${dir}/d.tar`, blobs);
      assert.equal(more.length, 0);
      assert.deepEqual(got.names, [
        "docker.io/library/busybox:latest",
        "docker.io/library/busybox:1",
      ]);
      // The config is kept byte for byte: the image id is Docker's.
      assert.equal(got.configDigest, img.config.digest);
      const manifest = await blobs.readJson(got.manifestDigest);
      checkImageManifest(manifest, got.manifestDigest);
      const want = img.tars.map((t) => compress(t, compression));
      assert.deepEqual(got.layers.map((l) => l.digest), want.map(sha256));
      const suffix = compression === "none" ? "" : `+${compression}`;
      assert.deepEqual(
        got.layers.map((l) => l.mediaType),
        want.map(() => `application/vnd.oci.image.layer.v1.tar${suffix}`),
      );
      for (const l of got.layers) assert.ok(await blobs.has(l.digest));
      await tmpIsClean(blobs);
    });
  });
}

Deno.test("import: a gzip-compressed docker save tarball (docker save | gzip)", async () => {
  await withStore(async (dir, blobs) => {
    const img = makeImage([L1], { compression: "none" });
    const data = compress(archiveOf(dockerSave([{ image: img, tags: null }])), "gzip");
    await Deno.writeFile(`${dir}/d.tar.gz`, data);
    const [got] = await imp(`${dir}/d.tar.gz`, blobs);
    assert.deepEqual(got.names, []);
    assert.equal(got.ref, got.manifestDigest);
    assert.deepEqual(got.layers.map((l) => l.digest), [sha256(L1)]);
  });
});

Deno.test("import: docker save's duplicate layers as symlinks inside the archive", async () => {
  await withStore(async (dir, blobs) => {
    const a = makeImage([L1], { compression: "none" });
    const b = makeImage([L1, L2], { compression: "none", os: "linux" });
    const files = dockerSave([{ image: a, tags: ["a:1"] }, { image: b, tags: ["b:1"] }])
      .filter(([n]) => n !== "layer1-0/layer.tar");
    const data = archiveOf(files, symlink("layer1-0/layer.tar", "../layer0-0/layer.tar"));
    await Deno.writeFile(`${dir}/d.tar`, data);
    const got = await imp(`${dir}/d.tar`, blobs);
    assert.deepEqual(got.map((i) => i.names[0]), [
      "docker.io/library/a:1",
      "docker.io/library/b:1",
    ]);
    assert.deepEqual(got[1].layers.map((l) => l.digest), [sha256(L1), sha256(L2)]);
  });
});

Deno.test("import: a docker save layer that is not what the config's diff_ids say", async () => {
  await withStore(async (dir, blobs) => {
    const img = makeImage([L1], { compression: "none" });
    const files = dockerSave([{ image: img, tags: ["a:1"] }]).map((
      [n, d],
    ): [string, Uint8Array] => [n, n.endsWith("layer.tar") ? L2 : d]);
    await Deno.writeFile(`${dir}/d.tar`, archiveOf(files));
    const line = await refusal(imp(`${dir}/d.tar`, blobs));
    assert.match(line, /^import: .*layer 0 \(layer0-0\/layer\.tar\): its tar hashes to sha256:/);
    assert.match(line, /diff_ids\[0\]/);
    await tmpIsClean(blobs);
  });
});

Deno.test("import: a docker save tarball whose manifest.json names a missing layer", async () => {
  await withStore(async (dir, blobs) => {
    const img = makeImage([L1], { compression: "none" });
    const files = dockerSave([{ image: img, tags: ["a:1"] }]).filter(([n]) =>
      !n.endsWith("layer.tar")
    );
    await Deno.writeFile(`${dir}/d.tar`, archiveOf(files));
    assert.match(
      await refusal(imp(`${dir}/d.tar`, blobs)),
      /missing file: manifest.json names "layer0-0\/layer.tar", which the archive lacks/,
    );
    await tmpIsClean(blobs);
  });
});

Deno.test("import: several named images in one index, and one manifest under two names", async () => {
  await withStore(async (dir, blobs) => {
    const a = makeImage([L1]);
    const b = makeImage([L2]);
    const files = layoutFiles([...a.blobs, ...b.blobs], [
      { blob: a.manifest, name: "a:1" },
      { blob: b.manifest, name: "b:1" },
      { blob: a.manifest, name: "localhost:5000/a:latest" },
    ]);
    await Deno.writeFile(`${dir}/a.tar`, archiveOf(files));
    const got = await imp(`${dir}/a.tar`, blobs);
    assert.deepEqual(got.map((i) => [i.manifestDigest, i.names]), [
      [a.manifest.digest, ["docker.io/library/a:1", "localhost:5000/a:latest"]],
      [b.manifest.digest, ["docker.io/library/b:1"]],
    ]);
  });
});

Deno.test("import: the host's platform is chosen from a multi-platform index", async () => {
  await withStore(async (dir, blobs) => {
    const mine = makeImage([L1]);
    const other = makeImage([L2], { architecture: foreignArch() });
    const index = makeIndex([
      { image: other, architecture: foreignArch() },
      { image: mine, architecture: hostArch() },
    ]);
    await writeFiles(
      `${dir}/layout`,
      layoutFiles([index, ...mine.blobs, ...other.blobs], [{ blob: index, name: "multi:1" }]),
    );
    const [got] = await imp(`${dir}/layout`, blobs);
    assert.equal(got.manifestDigest, mine.manifest.digest);
    assert.equal(got.indexDigest, index.digest);
    // only what the chosen image needs is read from a layout
    assert.equal(await blobs.has(other.layers[0].digest), false);
    // --platform takes the other one
    const [theirs] = await imp(`${dir}/layout`, blobs, [], `linux/${foreignArch()}`);
    assert.equal(theirs.manifestDigest, other.manifest.digest);
  });
});

Deno.test("import: an index with only another platform's image is refused", async () => {
  await withStore(async (dir, blobs) => {
    const other = makeImage([L2], { architecture: foreignArch() });
    const index = makeIndex([{ image: other, architecture: foreignArch() }]);
    await writeFiles(
      `${dir}/layout`,
      layoutFiles([index, ...other.blobs], [{ blob: index, name: "multi:1" }]),
    );
    assert.equal(
      await refusal(imp(`${dir}/layout`, blobs)),
      `import: no manifest for linux/${hostArch()} in the index of ${dir}/layout: image ` +
        `"multi:1"; it has: linux/${foreignArch()} (choose one of those with --platform)`,
    );
    // a bare manifest whose config is for another platform
    await writeFiles(`${dir}/l2`, layoutFiles(other.blobs, [{ blob: other.manifest }]));
    assert.equal(
      await refusal(imp(`${dir}/l2`, blobs)),
      `import: ${dir}/l2 is an image for linux/${foreignArch()}, not linux/${hostArch()} ` +
        `(import it with --platform linux/${foreignArch()} to take it anyway)`,
    );
  });
});

Deno.test("import: a bare tag as ref name names nothing, with a warning", async () => {
  await withStore(async (dir, blobs) => {
    const img = makeImage([L1]);
    await writeFiles(
      `${dir}/layout`,
      layoutFiles(img.blobs, [{ blob: img.manifest, name: "latest" }]),
    );
    const warnings: string[] = [];
    const [got] = await imp(`${dir}/layout`, blobs, warnings);
    assert.deepEqual(got.names, []);
    assert.match(warnings[0], /named only by the tag "latest" gets no name/);
  });
});

// ---- Hostile input ------------------------------------------------------------------------

for (const name of ["../evil", "blobs/../../evil", "/etc/evil"]) {
  Deno.test(`import: an archive entry named ${JSON.stringify(name)} is refused`, async () => {
    await withStore(async (dir, blobs) => {
      const img = makeImage([L1]);
      const data = archiveOf([
        [name, enc.encode("x")],
        ...layoutFiles(img.blobs, [{ blob: img.manifest }]),
      ]);
      await Deno.writeFile(`${dir}/a.tar`, data);
      const line = await refusal(imp(`${dir}/a.tar`, blobs));
      assert.match(
        line,
        /^import: .*: archive entry ".*evil": an? (absolute name|name with a '\.\.' component)/,
      );
      await tmpIsClean(blobs);
    });
  });
}

Deno.test("import: a symlink where a blob must be, in a layout and in an archive", async () => {
  await withStore(async (dir, blobs) => {
    const img = makeImage([L1]);
    await writeFiles(`${dir}/layout`, layoutFiles(img.blobs, [{ blob: img.manifest }]));
    const layer = `${dir}/layout/blobs/sha256/${img.layers[0].digest.slice(7)}`;
    await Deno.remove(layer);
    await Deno.writeFile(`${dir}/outside`, img.layers[0].data);
    await Deno.symlink(`${dir}/outside`, layer);
    assert.match(
      await refusal(imp(`${dir}/layout`, blobs)),
      /^import: .*blobs\/sha256\/[0-9a-f]{64}: a symlink where a (regular )?file must be/,
    );
    // blobs/ itself a symlink to a directory holding the right files
    await Deno.rename(`${dir}/layout/blobs`, `${dir}/real-blobs`);
    await Deno.remove(`${dir}/real-blobs/sha256/${img.layers[0].digest.slice(7)}`);
    await Deno.writeFile(
      `${dir}/real-blobs/sha256/${img.layers[0].digest.slice(7)}`,
      img.layers[0].data,
    );
    await Deno.symlink(`${dir}/real-blobs`, `${dir}/layout/blobs`);
    assert.match(
      await refusal(imp(`${dir}/layout`, blobs)),
      /a symlink where a (regular )?file must be/,
    );

    const files = layoutFiles(img.blobs, [{ blob: img.manifest }]).filter(([n]) =>
      n !== `blobs/sha256/${img.layers[0].digest.slice(7)}`
    );
    await Deno.writeFile(
      `${dir}/a.tar`,
      archiveOf(files, symlink(`blobs/sha256/${img.layers[0].digest.slice(7)}`, "/etc/passwd")),
    );
    assert.match(
      await refusal(imp(`${dir}/a.tar`, blobs)),
      /^import: .*: a symlink where a file must be/,
    );
    assert.equal(await blobs.has(img.layers[0].digest), false);
  });
});

Deno.test("import: a FIFO or a directory where a layout file must be", async () => {
  await withStore(async (dir, blobs) => {
    const img = makeImage([L1]);
    await writeFiles(`${dir}/layout`, layoutFiles(img.blobs, [{ blob: img.manifest }]));
    await Deno.remove(`${dir}/layout/index.json`);
    const mk = await new Deno.Command("mkfifo", { args: [`${dir}/layout/index.json`] }).output();
    assert.ok(mk.success);
    assert.match(
      await refusal(imp(`${dir}/layout`, blobs)),
      /index\.json: a FIFO where a regular file must be/,
    );
    await Deno.remove(`${dir}/layout/index.json`);
    await Deno.mkdir(`${dir}/layout/index.json`);
    assert.match(await refusal(imp(`${dir}/layout`, blobs)), /index\.json: a directory where/);
  });
});

Deno.test("import: a digest mismatch stores nothing, in a layout and in an archive", async () => {
  await withStore(async (dir, blobs) => {
    const img = makeImage([L1]);
    const hex = img.layers[0].digest.slice(7);
    const bad = img.layers[0].data.slice();
    bad[bad.length - 1] ^= 1;
    const files = layoutFiles(img.blobs, [{ blob: img.manifest }]).map((
      [n, d],
    ): [string, Uint8Array] => [n, n.endsWith(hex) ? bad : d]);
    await writeFiles(`${dir}/layout`, files);
    assert.match(
      await refusal(imp(`${dir}/layout`, blobs)),
      new RegExp(
        `layer 0 \\(sha256:${hex}\\): digest mismatch: its ${bad.length} bytes hash to sha256:`,
      ),
    );
    assert.equal(await blobs.has(img.layers[0].digest), false);
    await Deno.writeFile(`${dir}/a.tar`, archiveOf(files));
    assert.match(
      await refusal(imp(`${dir}/a.tar`, blobs)),
      new RegExp(`"blobs/sha256/${hex}": digest mismatch`),
    );
    assert.equal(await blobs.has(img.layers[0].digest), false);
    await tmpIsClean(blobs);
  });
});

Deno.test("import: a truncated or corrupt archive", async () => {
  await withStore(async (dir, blobs) => {
    const img = makeImage([L1]);
    const data = archiveOf(layoutFiles(img.blobs, [{ blob: img.manifest }]));
    await Deno.writeFile(`${dir}/a.tar`, data.subarray(0, 2000));
    assert.match(
      await refusal(imp(`${dir}/a.tar`, blobs)),
      /^import: .*a\.tar: truncated archive.*\(the archive is truncated or corrupt; save or export it again\)$/,
    );
    await Deno.writeFile(`${dir}/b.tar`, enc.encode("not a tar archive at all ".repeat(40)));
    assert.match(await refusal(imp(`${dir}/b.tar`, blobs)), /b\.tar: not a tar archive/);
    const gz = compress(data, "gzip");
    await Deno.writeFile(`${dir}/c.tar.gz`, gz.subarray(0, gz.length - 30));
    assert.match(await refusal(imp(`${dir}/c.tar.gz`, blobs)), /c\.tar\.gz: .*(gzip|truncated)/);
    await tmpIsClean(blobs);
  });
});

Deno.test("import: an oversized index.json is refused before it is read", async () => {
  await withStore(async (dir, blobs) => {
    const img = makeImage([L1]);
    const huge = enc.encode(
      JSON.stringify({ schemaVersion: 2, manifests: [], pad: "x".repeat(5 << 20) }),
    );
    const files = layoutFiles(img.blobs, [{ blob: img.manifest }]).map((
      [n, d],
    ): [string, Uint8Array] => [n, n === "index.json" ? huge : d]);
    await writeFiles(`${dir}/layout`, files);
    assert.match(
      await refusal(imp(`${dir}/layout`, blobs)),
      /index\.json: \d+ bytes, more than the 4194304 allowed/,
    );
    await Deno.writeFile(`${dir}/a.tar`, archiveOf(files));
    assert.match(await refusal(imp(`${dir}/a.tar`, blobs)), /"index\.json": \d+ bytes, more than/);
  });
});

Deno.test("import: a missing blob and an unknown media type", async () => {
  await withStore(async (dir, blobs) => {
    const img = makeImage([L1]);
    const files = layoutFiles(img.blobs, [{ blob: img.manifest }]).filter(([n]) =>
      !n.endsWith(img.layers[0].digest.slice(7))
    );
    await writeFiles(`${dir}/layout`, files);
    assert.match(
      await refusal(imp(`${dir}/layout`, blobs)),
      /layer 0 \(sha256:[0-9a-f]+\): missing blob: .* has no blobs\/sha256\//,
    );
    await Deno.writeFile(`${dir}/a.tar`, archiveOf(files));
    assert.match(await refusal(imp(`${dir}/a.tar`, blobs)), /missing blob/);

    const art = blob("{}", "application/vnd.example.artifact+json");
    await writeFiles(`${dir}/l2`, [
      ["oci-layout", OCI_LAYOUT],
      ["index.json", indexJson([{ blob: art }])],
    ]);
    assert.match(
      await refusal(imp(`${dir}/l2`, blobs)),
      /index\.json entry 0 \(sha256:[0-9a-f]+\): unknown media type "application\/vnd\.example\.artifact\+json"/,
    );
  });
});

Deno.test("import: a directory that is not a layout, a file that is not an archive", async () => {
  await withStore(async (dir, blobs) => {
    await Deno.mkdir(`${dir}/empty`);
    assert.match(
      await refusal(imp(`${dir}/empty`, blobs)),
      /not an OCI image layout: no oci-layout/,
    );
    await Deno.writeFile(`${dir}/e.tar`, archiveOf([["hello", enc.encode("x")]]));
    assert.match(
      await refusal(imp(`${dir}/e.tar`, blobs)),
      /not an image archive: no index\.json \(OCI\) or manifest\.json \(docker save\)/,
    );
    assert.match(await refusal(imp(`${dir}/none`, blobs)), /none: no such file or directory/);
    await tmpIsClean(blobs);
  });
});

Deno.test("import: a device entry in an archive is refused", async () => {
  await withStore(async (dir, blobs) => {
    const data = archiveOf([], entry({ name: "dev/sda", type: "4", devmajor: 8 }));
    await Deno.writeFile(`${dir}/a.tar`, data);
    assert.match(await refusal(imp(`${dir}/a.tar`, blobs)), /"dev\/sda": a block device/);
  });
});

// ---- Export -------------------------------------------------------------------------------

Deno.test("export: an OCI archive that imports to the same image, same bytes twice", async () => {
  await withStore(async (dir, blobs) => {
    const img = makeImage([L1, L2], { compression: "zstd" });
    await writeFiles(
      `${dir}/layout`,
      layoutFiles(img.blobs, [{ blob: img.manifest, name: "app:1" }]),
    );
    const [got] = await imp(`${dir}/layout`, blobs);
    const n = await exportImage(
      { manifestDigest: got.manifestDigest, name: got.names[0] },
      blobs,
      `${dir}/out.tar`,
    );
    const bytes = await Deno.readFile(`${dir}/out.tar`);
    assert.equal(bytes.length, n);
    await exportImage(
      { manifestDigest: got.manifestDigest, name: got.names[0] },
      blobs,
      `${dir}/out2.tar`,
    );
    assert.deepEqual(await Deno.readFile(`${dir}/out2.tar`), bytes);
    assert.deepEqual((await Array.fromAsync(Deno.readDir(dir))).map((e) => e.name).sort(), [
      "layout",
      "out.tar",
      "out2.tar",
      "store",
    ]);
    await withStore(async (_d, fresh) => {
      const [again] = await imp(`${dir}/out.tar`, fresh);
      assert.equal(again.manifestDigest, img.manifest.digest);
      assert.deepEqual(again.names, ["docker.io/library/app:1"]);
      await assertStored(fresh, img);
    });
  });
});

Deno.test("export: a missing blob or directory leaves nothing behind", async () => {
  await withStore(async (dir, blobs) => {
    const img = makeImage([L1]);
    await writeFiles(`${dir}/layout`, layoutFiles(img.blobs, [{ blob: img.manifest }]));
    const [got] = await imp(`${dir}/layout`, blobs);
    await Deno.writeFile(`${dir}/old.tar`, enc.encode("old"));
    await Deno.remove(blobs.path(img.layers[0].digest));
    const line = await refusal(exportImage(got, blobs, `${dir}/old.tar`));
    assert.match(line, /^export: blob sha256:[0-9a-f]+ is not in the store/);
    assert.deepEqual(await Deno.readFile(`${dir}/old.tar`), enc.encode("old"));
    assert.match(await refusal(exportImage(got, blobs, `${dir}/nodir/x.tar`)), /^export: /);
    // a blob changed on disk behind the store's back stops the export
    await imp(`${dir}/layout`, blobs);
    const p = blobs.path(img.layers[0].digest);
    const changed = await Deno.readFile(p);
    changed[0] ^= 1;
    await Deno.writeFile(p, changed);
    assert.match(
      await refusal(exportImage(got, blobs, `${dir}/old.tar`)),
      /the store's copy changed/,
    );
    assert.deepEqual(await Deno.readFile(`${dir}/old.tar`), enc.encode("old"));
    const names = (await Array.fromAsync(Deno.readDir(dir))).map((e) => e.name).sort();
    assert.deepEqual(names, ["layout", "old.tar", "store"]);
  });
});

// ---- Concurrency and crashes --------------------------------------------------------------

Deno.test("import: two imports of one archive at once both succeed, each blob stored once", async () => {
  await withStore(async (dir, blobs) => {
    const img = makeImage([L1, L2], { compression: "none" });
    await Deno.writeFile(`${dir}/d.tar`, archiveOf(dockerSave([{ image: img, tags: ["a:1"] }])));
    const files = layoutFiles(img.blobs, [{ blob: img.manifest, name: "a:1" }]);
    await Deno.writeFile(`${dir}/o.tar`, archiveOf(files));
    const [a, b, c] = await Promise.all([
      imp(`${dir}/d.tar`, blobs),
      imp(`${dir}/d.tar`, blobs),
      imp(`${dir}/o.tar`, blobs),
    ]);
    assert.equal(a[0].manifestDigest, b[0].manifestDigest);
    // docker's format holds the same tars uncompressed: the same layer blobs as the OCI one
    assert.deepEqual(a[0].layers.map((l) => l.digest), c[0].layers.map((l) => l.digest));
    for (const l of a[0].layers) assert.ok(await blobs.has(l.digest));
    await tmpIsClean(blobs);
  });
});

Deno.test("import: a staging directory a killed import left is removed, a live one kept", async () => {
  await withStore(async (dir) => {
    const tmp = `${dir}/tmp`;
    await Deno.mkdir(`${tmp}/import-dead`, { recursive: true });
    await Deno.writeFile(`${tmp}/import-dead/lock`, new Uint8Array());
    await Deno.writeFile(`${tmp}/import-dead/f0`, enc.encode("half a layer"));
    await Deno.mkdir(`${tmp}/import-live`);
    using live = await Deno.open(`${tmp}/import-live/lock`, { write: true, create: true });
    await live.lock(true);
    await Deno.mkdir(`${tmp}/import-young`); // between mkdir and lock: left alone
    await cleanStaging(tmp);
    const left = (await Array.fromAsync(Deno.readDir(tmp))).map((e) => e.name).sort();
    assert.deepEqual(left, ["import-live", "import-young"]);
  });
});
