/**
 * The image store: records and the name index, lookups by name, digest and id, reference
 * counting in `removeImage` and `pruneImages` (other images, kept containers, running
 * ones), layers unpacked once and checked against their diff ids, ROOT/tmp cleaning. Runs
 * without root: layers are unpacked squashed to the caller, as rootless.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { MicroError } from "../../core/errors.ts";
import { BlobStore } from "../../core/image/blobs.ts";
import type { PulledImage } from "../../core/image/registry.ts";
import {
  addImage,
  containerImages,
  findImage,
  holdImage,
  listImages,
  pruneImages,
  references,
  removeImage,
  storeName,
} from "../../core/store/images.ts";
import { cleanTmp, layerLockPath } from "../../core/store/tmp.ts";
import type { LayerFlavor } from "../../core/store/layers.ts";
import { openLibc } from "../../core/sys/libc.ts";
import { dir, file, tar } from "./_tar.ts";

const enc = new TextEncoder();
const sha = (b: Uint8Array) => `sha256:${createHash("sha256").update(b).digest("hex")}`;
const FLAVOR: LayerFlavor = {
  userxattr: true,
  squashTo: { uid: Deno.uid() ?? 0, gid: Deno.gid() ?? 0 },
  canMknod: false,
};

/** An image of plain tar layers put into the blob store at `root`, as a pull leaves it. */
async function stored(
  root: string,
  layers: Uint8Array[],
  config: Record<string, unknown> = {},
  opts: { wrongDiffId?: boolean } = {},
): Promise<PulledImage> {
  const blobs = new BlobStore(root);
  const layerDescs = [];
  for (const l of layers) {
    await blobs.put(sha(l), l);
    layerDescs.push({
      digest: sha(l),
      mediaType: "application/vnd.oci.image.layer.v1.tar",
      size: l.length,
    });
  }
  const diffIds = layers.map((l) => (opts.wrongDiffId ? sha(enc.encode("other")) : sha(l)));
  const cfg = {
    architecture: "amd64",
    os: "linux",
    config,
    rootfs: { type: "layers", diff_ids: diffIds },
  };
  const cfgBytes = enc.encode(JSON.stringify(cfg));
  await blobs.put(sha(cfgBytes), cfgBytes);
  const manifest = {
    schemaVersion: 2,
    config: {
      mediaType: "application/vnd.oci.image.config.v1+json",
      digest: sha(cfgBytes),
      size: cfgBytes.length,
    },
    layers: layerDescs,
  };
  const mBytes = enc.encode(JSON.stringify(manifest));
  await blobs.put(sha(mBytes), mBytes);
  return {
    ref: "",
    manifestDigest: sha(mBytes),
    manifest,
    config: cfg,
    configDigest: sha(cfgBytes),
    layers: layerDescs,
    platform: "linux/amd64",
  };
}

const BASE = tar(
  dir("etc/"),
  file("etc/os", "base\n"),
  file("etc/passwd", "root:x:0:0::/root:/bin/sh\n"),
);
const APP1 = tar(dir("app/"), file("app/one", "1\n"));
const APP2 = tar(dir("app/"), file("app/two", "2\n"));

async function withRoot(fn: (root: string) => Promise<void>) {
  const root = await Deno.makeTempDir({ prefix: "micro-store-unit-" });
  try {
    await fn(`${root}/store`);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
}

const opts = () => ({ sys: openLibc(), flavor: FLAVOR });

function entries(path: string): string[] {
  try {
    return [...Deno.readDirSync(path)].map((e) => e.name).sort();
  } catch {
    return [];
  }
}

async function rejects(p: Promise<unknown>, re: RegExp) {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof MicroError, String(e));
    assert.match(e.line(), re);
    assert.ok(!e.line().includes("\n"));
    return;
  }
  assert.fail("expected an error");
}

Deno.test("store: storeName normalises as Docker does", () => {
  assert.equal(storeName("alpine"), "docker.io/library/alpine:latest");
  assert.equal(storeName("host:5000/a/b:1"), "host:5000/a/b:1");
  const d = `sha256:${"a".repeat(64)}`;
  assert.equal(storeName(`alpine@${d}`), `docker.io/library/alpine@${d}`);
  // A tag and a digest: stored under the tag (the digest was checked by the pull).
  assert.equal(storeName(`alpine:3@${d}`), "docker.io/library/alpine:3");
});

Deno.test("store: addImage unpacks each layer once, writes the record, names it", async () => {
  await withRoot(async (root) => {
    const a = await stored(root, [BASE, APP1], { Cmd: ["/bin/sh"] });
    const b = await stored(root, [BASE, APP2]);
    const img = await addImage(root, "example.com/app:1", a, opts());
    assert.equal(img.id, a.configDigest.slice(7));
    assert.deepEqual(img.names, ["example.com/app:1"]);
    assert.equal(img.layers.length, 2);
    assert.equal(img.layers[0].diffId, sha(BASE));
    assert.equal(img.layers[0].unpacked, BASE.length);
    assert.equal(img.size, BASE.length + APP1.length);
    assert.equal(
      Deno.readTextFileSync(`${root}/layers/sha256/${sha(BASE).slice(7)}/etc/os`),
      "base\n",
    );
    await addImage(root, "example.com/app:2", b, opts());
    // Two images, three layers: the base is stored once.
    assert.equal(entries(`${root}/layers/sha256`).length, 3);
    assert.deepEqual(entries(`${root}/tmp`), []);
    const all = await listImages(root);
    assert.equal(all.length, 2);
    // Found by name (normalised), digest reference, id and id prefix.
    assert.equal((await findImage(root, "example.com/app:1"))?.id, img.id);
    assert.equal((await findImage(root, `example.com/app@${a.manifestDigest}`))?.id, img.id);
    assert.equal((await findImage(root, img.id))?.id, img.id);
    assert.equal((await findImage(root, `sha256:${img.id.slice(0, 10)}`))?.id, img.id);
    assert.equal(await findImage(root, "example.com/app:3"), null);
    assert.equal(await findImage(root, "nothing"), null);
    // The name moves to the image pulled last, as docker pull does.
    await addImage(root, "example.com/app:1", b, opts());
    assert.equal((await findImage(root, "example.com/app:1"))?.id, b.configDigest.slice(7));
    assert.deepEqual((await findImage(root, img.id))?.names, []);
  });
});

Deno.test("store: a layer whose content is not its diff id is refused and not kept", async () => {
  await withRoot(async (root) => {
    const bad = await stored(root, [BASE], {}, { wrongDiffId: true });
    await rejects(
      addImage(root, "x:1", bad, opts()),
      /its content hashes to sha256:[0-9a-f]{64}, the image config says/,
    );
    assert.deepEqual(entries(`${root}/layers/sha256`), []);
    assert.deepEqual(entries(`${root}/tmp`), []);
    assert.deepEqual((await listImages(root)).length, 0);
    // And a config whose diff ids do not match the layers in number.
    const short = await stored(root, [BASE]);
    short.config.rootfs!.diff_ids = [];
    await rejects(addImage(root, "x:1", short, opts()), /0 diff ids for 1 layers/);
  });
});

Deno.test("store: concurrent adds of images sharing a layer unpack it once and both succeed", async () => {
  await withRoot(async (root) => {
    const a = await stored(root, [BASE, APP1]);
    const b = await stored(root, [BASE, APP2]);
    const [x, y] = await Promise.all([
      addImage(root, "a:1", a, opts()),
      addImage(root, "b:1", b, opts()),
    ]);
    assert.equal(x.layers[0].diffId, y.layers[0].diffId);
    assert.equal(entries(`${root}/layers/sha256`).length, 3);
    assert.deepEqual((await listImages(root)).map((i) => i.names[0]).sort(), [
      "docker.io/library/a:1",
      "docker.io/library/b:1",
    ]);
  });
});

Deno.test("store: ROOT/tmp leftovers go unless their layer lock is held", async () => {
  await withRoot(async (root) => {
    await Deno.mkdir(`${root}/tmp`, { recursive: true });
    const hex = "b".repeat(64);
    const held = `${root}/tmp/layer-${"c".repeat(64)}-0123456789abcdef`;
    await Deno.mkdir(`${root}/tmp/layer-${hex}-0123456789abcdef/sub`, { recursive: true });
    await Deno.mkdir(`${root}/tmp/rm-0123456789abcdef/x`, { recursive: true });
    await Deno.mkdir(held);
    await Deno.writeTextFile(`${root}/tmp/sha256-${"d".repeat(64)}.partial`, "resumable");
    const lock = await Deno.open(layerLockPath(root, "c".repeat(64)), {
      create: true,
      write: true,
    });
    await lock.lock(true);
    try {
      // A subprocess holds the lock in real life; another open file description here.
      assert.equal(await cleanTmp(root), 2);
    } finally {
      lock.close();
    }
    assert.deepEqual(entries(`${root}/tmp`), [
      `layer-${"c".repeat(64)}-0123456789abcdef`,
      `layer-${"c".repeat(64)}.lock`,
      `sha256-${"d".repeat(64)}.partial`,
    ]);
    assert.equal(await cleanTmp(root), 1);
    assert.deepEqual(entries(`${root}/tmp`), [`sha256-${"d".repeat(64)}.partial`]);
  });
});

Deno.test("store: rm untags by name, deletes by id, and sweeps only what nothing uses", async () => {
  await withRoot(async (root) => {
    const a = await stored(root, [BASE, APP1]);
    const b = await stored(root, [BASE, APP2]);
    const ia = await addImage(root, "a:1", a, opts());
    await addImage(root, "a:2", a, opts());
    const ib = await addImage(root, "b:1", b, opts());
    // Several names: by name only untags; by id needs force.
    assert.deepEqual(await removeImage(root, "a:2"), {
      untagged: ["docker.io/library/a:2"],
      deleted: [],
    });
    await addImage(root, "a:2", a, opts());
    await rejects(removeImage(root, ia.id.slice(0, 12)), /has 2 names .* remove them by name/);
    const r = await removeImage(root, ia.id.slice(0, 12), { force: true });
    assert.deepEqual(r.untagged, ["docker.io/library/a:1", "docker.io/library/a:2"]);
    assert.deepEqual(r.deleted, [ia.id]);
    // a's own layer and blobs went; the shared base and b's stay.
    const refs = await references(root);
    assert.deepEqual(entries(`${root}/layers/sha256`).sort(), [...refs.layers].sort());
    assert.equal(refs.layers.size, 2);
    assert.ok(!entries(`${root}/blobs/sha256`).includes(a.manifestDigest.slice(7)));
    assert.ok(entries(`${root}/blobs/sha256`).includes(b.manifestDigest.slice(7)));
    await rejects(removeImage(root, "a:1"), /no such image: a:1/);
    // The last image: everything goes.
    assert.deepEqual((await removeImage(root, "b:1")).deleted, [ib.id]);
    assert.deepEqual(entries(`${root}/layers/sha256`), []);
    assert.deepEqual(entries(`${root}/blobs/sha256`), []);
    assert.deepEqual(entries(`${root}/tmp`), []);
  });
});

Deno.test("store: kept containers' images are never deleted; -f takes their names only", async () => {
  await withRoot(async (root) => {
    const a = await stored(root, [BASE, APP1]);
    const ia = await addImage(root, "a:1", a, opts());
    await Deno.mkdir(`${root}/containers/c1`, { recursive: true });
    await Deno.writeTextFile(
      `${root}/containers/c1/config.json`,
      JSON.stringify({ image: { id: `sha256:${ia.id}`, name: "a:1" } }),
    );
    // Read defensively: garbage, a directory, a wrong id, no record at all.
    await Deno.mkdir(`${root}/containers/c2/config.json`, { recursive: true });
    await Deno.mkdir(`${root}/containers/c3`);
    await Deno.writeTextFile(`${root}/containers/c3/config.json`, "{");
    await Deno.mkdir(`${root}/containers/c4`);
    await Deno.writeTextFile(`${root}/containers/c4/config.json`, '{"image":{"id":"../x"}}');
    await Deno.mkdir(`${root}/containers/c5`);
    assert.deepEqual([...(await containerImages(root)).entries()], [[ia.id, ["c1"]]]);

    await rejects(removeImage(root, "a:1"), /image a:1 is used by container c1/);
    assert.deepEqual(await removeImage(root, "a:1", { force: true }), {
      untagged: ["docker.io/library/a:1"],
      deleted: [],
    });
    assert.equal((await pruneImages(root, { all: true })).deleted.length, 0);
    assert.equal(entries(`${root}/layers/sha256`).length, 2);
    assert.equal((await findImage(root, ia.id))?.names.length, 0);
    await Deno.remove(`${root}/containers/c1`, { recursive: true });
    const p = await pruneImages(root);
    assert.deepEqual(p.deleted, [ia.id]);
    assert.equal(p.layers, 2);
    assert.equal(p.blobs, 4);
    assert.deepEqual(entries(`${root}/layers/sha256`), []);
  });
});

Deno.test("store: a run's hold keeps its image from rm and prune", async () => {
  await withRoot(async (root) => {
    const a = await stored(root, [BASE, APP1]);
    const ia = await addImage(root, "a:1", a, opts());
    const hold = await holdImage(root, "a:1");
    assert.ok(hold !== "missing");
    assert.deepEqual(hold.layers, [
      `${root}/layers/sha256/${sha(APP1).slice(7)}`,
      `${root}/layers/sha256/${sha(BASE).slice(7)}`,
    ]);
    // The lock is per open file: a second open in this process stands in for another run.
    await rejects(removeImage(root, "a:1"), /used by a running container/);
    await removeImage(root, ia.id, { force: true });
    assert.deepEqual((await pruneImages(root, { all: true })).deleted, []);
    assert.equal(entries(`${root}/layers/sha256`).length, 2);
    hold.release();
    assert.deepEqual((await pruneImages(root)).deleted, [ia.id]);
    assert.equal(await holdImage(root, "a:1"), "missing");
    assert.equal(await holdImage(root, ia.id), "missing");
  });
});

Deno.test("store: a missing layer directory makes the image missing (a pull mends it)", async () => {
  await withRoot(async (root) => {
    const a = await stored(root, [BASE, APP1]);
    await addImage(root, "a:1", a, opts());
    await Deno.remove(`${root}/layers/sha256/${sha(APP1).slice(7)}`, { recursive: true });
    assert.equal(await holdImage(root, "a:1"), "missing");
    await addImage(root, "a:1", a, opts());
    const h = await holdImage(root, "a:1");
    assert.ok(h !== "missing");
    h.release();
  });
});

Deno.test("store: an ambiguous id prefix is an error", async () => {
  await withRoot(async (root) => {
    const imgs = [];
    for (let i = 0; i < 20; i++) {
      imgs.push(
        await addImage(root, `n:${i}`, await stored(root, [BASE], { Env: [`I=${i}`] }), opts()),
      );
    }
    // Twenty ids over sixteen first digits: some first digit is shared.
    const counts = new Map<string, number>();
    for (const i of imgs) counts.set(i.id[0], (counts.get(i.id[0]) ?? 0) + 1);
    const shared = [...counts].find(([, n]) => n > 1)![0];
    await rejects(findImage(root, shared), /image id prefix "[0-9a-f]" is ambiguous/);
  });
});
