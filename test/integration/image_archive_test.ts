/**
 * Import and export against the real tools: a busybox-static OCI layout written here, copied
 * by skopeo to an OCI archive and to a docker save tarball (docker-archive:), and by podman
 * (in its own temp storage) to both, each imported; an export read back by `skopeo inspect`
 * and `skopeo copy`, and imported again with the same digests. Stores and podman's storage
 * live in temp dirs removed at the end.
 */
import assert from "node:assert/strict";
import { MicroError } from "../../core/errors.ts";
import { readImageSource } from "../../core/image/archive.ts";
import { BlobStore } from "../../core/image/blobs.ts";
import { exportImage } from "../../core/image/export.ts";
import { hostPlatform } from "../../core/image/platform.ts";
import { openLibc } from "../../core/sys/libc.ts";
import { imageExport, imageImport } from "../../commands/image_io.ts";
import { enc, makeImage, run, type TarFile, which, writeLayout } from "./_registry.ts";
import { microTest, ok, run as microRun, show, withTempDir } from "./_helpers.ts";

const MISSING = which("skopeo")
  ? undefined
  : "skopeo is not installed (tools/install-test-deps.sh)";
if (MISSING) console.log(`image_archive_test: skipped: ${MISSING}`);
const sys = openLibc();

function test(name: string, fn: (dir: string) => Promise<void>, ignore = false) {
  Deno.test({
    name,
    ignore: MISSING !== undefined || ignore,
    sanitizeResources: false,
    async fn() {
      const dir = await Deno.makeTempDir({ prefix: "micro-archive-test-" });
      try {
        await fn(dir);
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    },
  });
}

function busyboxFiles(): TarFile[] {
  return [{ path: "bin", dir: true }, {
    path: "bin/busybox",
    data: Deno.readFileSync("/bin/busybox"),
    mode: 0o755,
  }];
}

/** A two-layer busybox-static image in an OCI layout under `dir`/layout, tag "busybox". */
async function busyboxLayout(dir: string) {
  const image = makeImage([
    busyboxFiles(),
    [{ path: "etc", dir: true }, { path: "etc/motd", data: enc.encode("hello\n") }],
  ], hostPlatform().architecture);
  await writeLayout(`${dir}/layout`, image.blobs, { busybox: image.manifest });
  return image;
}

const skopeo = (...args: string[]) => run("skopeo", ["--insecure-policy", ...args]);

async function importAll(path: string, root: string) {
  const warnings: string[] = [];
  const got = await readImageSource(path, new BlobStore(root), {
    sys,
    warn: (m) => warnings.push(m),
  });
  return { got, warnings };
}

async function tmpEntries(root: string): Promise<string[]> {
  return (await Array.fromAsync(Deno.readDir(`${root}/tmp`)).catch(() => [])).map((e) => e.name);
}

test("skopeo's oci-archive and docker-archive of busybox import to the same image", async (dir) => {
  const image = await busyboxLayout(dir);
  await skopeo(
    "copy",
    "--quiet",
    `oci:${dir}/layout:busybox`,
    `oci-archive:${dir}/oci.tar:busybox:1`,
  );
  await skopeo(
    "copy",
    "--quiet",
    `oci:${dir}/layout:busybox`,
    `docker-archive:${dir}/docker.tar:busybox:1`,
  );
  const root = `${dir}/store`;
  const oci = await importAll(`${dir}/oci.tar`, root);
  const docker = await importAll(`${dir}/docker.tar`, root);
  assert.equal(oci.got.length, 1);
  assert.equal(docker.got.length, 1);
  assert.deepEqual(oci.got[0].names, ["docker.io/library/busybox:1"]);
  assert.deepEqual(docker.got[0].names, ["docker.io/library/busybox:1"]);
  // The OCI archive keeps the manifest; docker's format has none, so the config (the image
  // id) and the uncompressed layers are what must agree.
  assert.equal(oci.got[0].manifestDigest, image.manifest.digest);
  assert.equal(oci.got[0].configDigest, image.config.digest);
  assert.equal(docker.got[0].configDigest, image.config.digest);
  assert.deepEqual(docker.got[0].config.rootfs, oci.got[0].config.rootfs);
  assert.deepEqual(
    docker.got[0].layers.map((l) => l.mediaType),
    ["application/vnd.oci.image.layer.v1.tar", "application/vnd.oci.image.layer.v1.tar"],
  );
  const blobs = new BlobStore(root);
  for (const l of [...oci.got[0].layers, ...docker.got[0].layers]) {
    assert.ok(await blobs.has(l.digest));
  }
  assert.deepEqual(await tmpEntries(root), []);
  // The layout directory itself, named on the command line's behalf by the caller.
  const layout = await importAll(`${dir}/layout`, root);
  assert.equal(layout.got[0].manifestDigest, image.manifest.digest);
  assert.match(layout.warnings[0], /named only by the tag "busybox"/);
});

test("an export is read by skopeo, and imports again to the same digests", async (dir) => {
  await busyboxLayout(dir);
  await skopeo(
    "copy",
    "--quiet",
    `oci:${dir}/layout:busybox`,
    `docker-archive:${dir}/docker.tar:busybox:1`,
  );
  const root = `${dir}/store`;
  const [img] = (await importAll(`${dir}/docker.tar`, root)).got;
  await exportImage(
    { manifestDigest: img.manifestDigest, name: img.names[0] },
    new BlobStore(root),
    `${dir}/out.tar`,
  );
  const inspect = JSON.parse(await skopeo("inspect", `oci-archive:${dir}/out.tar`));
  assert.equal(inspect.Digest, img.manifestDigest);
  assert.equal(inspect.Architecture, hostPlatform().architecture);
  assert.deepEqual(inspect.Layers, img.layers.map((l) => l.digest));
  // skopeo finds the image by the name written in index.json
  await skopeo(
    "copy",
    "--quiet",
    `oci-archive:${dir}/out.tar:docker.io/library/busybox:1`,
    `oci:${dir}/back:x`,
  );
  const again = (await importAll(`${dir}/out.tar`, `${dir}/store2`)).got;
  assert.deepEqual(again.map((i) => [i.names, i.manifestDigest, i.configDigest]), [
    [img.names, img.manifestDigest, img.configDigest],
  ]);
  const back = (await importAll(`${dir}/back`, `${dir}/store3`)).got;
  assert.equal(back[0].configDigest, img.configDigest);
});

const PODMAN = which("podman");
test("podman save (docker-archive and oci-archive) imports", async (dir) => {
  await busyboxLayout(dir);
  // podman wants a short runroot: a temp dir of its own, removed below
  const run_ = await Deno.makeTempDir({ prefix: "mp" });
  const podman = (...args: string[]) =>
    run("podman", [
      "--root",
      `${dir}/podman-root`,
      "--runroot",
      run_,
      "--storage-driver",
      "vfs",
      "--cgroup-manager",
      "cgroupfs",
      "--events-backend",
      "none",
      ...args,
    ]);
  try {
    const id = (await podman("pull", "-q", `oci:${dir}/layout:busybox`)).trim().split("\n").pop()!;
    await podman("tag", id, "localhost/pbusy:1");
    await podman(
      "save",
      "-q",
      "--format",
      "docker-archive",
      "-o",
      `${dir}/pd.tar`,
      "localhost/pbusy:1",
    );
    await podman(
      "save",
      "-q",
      "--format",
      "oci-archive",
      "-o",
      `${dir}/po.tar`,
      "localhost/pbusy:1",
    );
    const root = `${dir}/store`;
    const pd = (await importAll(`${dir}/pd.tar`, root)).got;
    const po = (await importAll(`${dir}/po.tar`, root)).got;
    assert.deepEqual(pd[0].names, ["localhost/pbusy:1"]);
    assert.deepEqual(po[0].names, ["localhost/pbusy:1"]);
    assert.equal(pd[0].configDigest, `sha256:${id}`);
    assert.equal(po[0].configDigest, `sha256:${id}`);
  } finally {
    await Deno.remove(run_, { recursive: true });
  }
}, !PODMAN);

test("micro image import and export through the command module, with --root", async (dir) => {
  await busyboxLayout(dir);
  const root = `${dir}/store`;
  assert.equal(await imageImport(["image", "import", "--root", root, `${dir}/layout`, "bb:2"]), 0);
  assert.equal(
    await imageExport(["image", "export", `--root=${root}`, "bb:2", `${dir}/bb.tar`]),
    0,
  );
  const inspect = JSON.parse(await skopeo("inspect", `oci-archive:${dir}/bb.tar`));
  const [again] = (await importAll(`${dir}/bb.tar`, `${dir}/store2`)).got;
  assert.equal(inspect.Digest, again.manifestDigest);
  assert.deepEqual(again.names, ["docker.io/library/bb:2"]);
  // Bad input: one line, exit 125 (a MicroError).
  await Deno.writeFile(`${dir}/junk.tar`, new Uint8Array(4096).fill(7));
  try {
    await imageImport(["image", "import", "--root", root, `${dir}/junk.tar`]);
    assert.fail("junk was imported");
  } catch (e) {
    assert.ok(e instanceof MicroError);
    assert.equal(e.exitCode, 125);
    assert.match(e.line(), /^import: .*junk\.tar: not a tar archive/);
  }
  try {
    await imageExport(["image", "export", "--root", root, "nothere:1", `${dir}/x.tar`]);
    assert.fail("exported an image that is not there");
  } catch (e) {
    assert.ok(e instanceof MicroError);
    assert.match(e.line(), /^export: no image "nothere:1" in the store/);
  }
});

microTest(
  "the binary: image import, run from it, images, export, rmi, import the export",
  async () => {
    await withTempDir(async (dir) => {
      Deno.chmodSync(dir, 0o711);
      await busyboxLayout(dir);
      await skopeo("copy", `oci:${dir}/layout:busybox`, `docker-archive:${dir}/bb.tar:bb:1`);
      const root = `${dir}/store`;
      const m = (...args: string[]) => microRun([args[0], "--root", root, ...args.slice(1)]);
      const loaded = ok(await m("image", "import", `${dir}/bb.tar`));
      assert.match(loaded, /^Loaded image: bb:1$/m);
      const runArgs = ["run", "--rm", "--root", root];
      assert.equal(
        ok(await microRun([...runArgs, "bb:1", "/bin/busybox", "cat", "/etc/motd"])),
        "hello\n",
      );
      assert.match(ok(await m("images")), /^bb\s+1\s+[0-9a-f]{12}\s/m);
      ok(await m("image", "export", "bb:1", `${dir}/out.tar`));
      ok(await m("rmi", "bb:1"));
      assert.equal(
        (await microRun([...runArgs, "--pull=never", "bb:1", "/bin/busybox", "true"])).code,
        125,
      );
      ok(await m("image", "import", `${dir}/out.tar`));
      assert.equal(
        ok(await microRun([...runArgs, "bb:1", "/bin/busybox", "cat", "/etc/motd"])),
        "hello\n",
      );
      // A corrupt archive: one line, exit 125, nothing left in the store's tmp.
      Deno.writeFileSync(`${dir}/bad.tar`, Deno.readFileSync(`${dir}/out.tar`).slice(0, 3000));
      const bad = await m("image", "import", `${dir}/bad.tar`);
      assert.equal(bad.code, 125, show(bad));
      assert.equal(bad.stderr.trim().split("\n").length, 1, show(bad));
      assert.deepEqual([...Deno.readDirSync(`${root}/tmp`)].map((e) => e.name), []);
    });
  },
  { ignore: MISSING },
);
