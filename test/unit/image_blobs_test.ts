/** The blob store: verified before visible, one writer per digest, partials resumed. */
import assert from "node:assert/strict";
import { BlobStore, digestOf } from "../../core/image/blobs.ts";

async function withStore(fn: (s: BlobStore, root: string) => Promise<void>) {
  const root = await Deno.makeTempDir({ prefix: "micro-blobs-" });
  try {
    await fn(new BlobStore(root), root);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
}

const enc = new TextEncoder();
const list = async (dir: string) =>
  (await Array.fromAsync(Deno.readDir(dir)).catch(() => [])).map((e) => e.name).sort();

Deno.test("blobs: put stores under blobs/sha256/<hex>, has/read/open find it", () =>
  withStore(async (s, root) => {
    const data = enc.encode('{"a":1}');
    const d = digestOf(data);
    assert.equal(await s.has(d), false);
    assert.equal(await s.put(d, data), "written");
    assert.equal(await s.put(d, data), "exists");
    assert.equal(s.path(d), `${root}/blobs/sha256/${d.slice(7)}`);
    assert.ok(await s.has(d));
    assert.deepEqual(await s.readJson(d), { a: 1 });
    assert.equal(await s.size(d), data.length);
    using f = await s.open(d);
    assert.equal((await f.stat()).size, data.length);
    await assert.rejects(s.read(d, 3), /7 bytes, more than the 3 allowed/);
    assert.deepEqual(await list(`${root}/tmp`), []);
  }));

Deno.test("blobs: a digest mismatch is refused and leaves nothing", () =>
  withStore(async (s, root) => {
    const d = digestOf(enc.encode("right"));
    await assert.rejects(
      s.ingest(d, async (w) => await w.write(enc.encode("wrong"))),
      (e: Error & { line(): string }) => {
        assert.match(
          e.line(),
          /^blob sha256:[0-9a-f]{64}: digest mismatch: the 5 bytes received hash to sha256:/,
        );
        return true;
      },
    );
    assert.equal(await s.has(d), false);
    assert.deepEqual(await list(`${root}/blobs/sha256`), []);
    assert.deepEqual(await list(`${root}/tmp`), []);
    await assert.rejects(s.put(d, enc.encode("wrong")), /digest mismatch/);
  }));

Deno.test("blobs: more bytes than the descriptor's size are refused as they come", () =>
  withStore(async (s, root) => {
    const data = enc.encode("0123456789");
    const d = digestOf(data);
    await assert.rejects(
      s.ingest(d, async (w) => {
        await w.write(data);
        await w.write(data);
      }, { size: 10 }),
      /more than the 10 bytes its descriptor announces/,
    );
    assert.deepEqual(await list(`${root}/tmp`), []);
    await assert.rejects(
      s.ingest(d, async (w) => await w.write(data.subarray(0, 4)), { size: 10 }),
      /4 bytes received|digest mismatch/,
    );
    assert.equal(await s.has(d), false);
  }));

Deno.test("blobs: concurrent writers of one blob fill it once and both succeed", () =>
  withStore(async (s) => {
    const data = new Uint8Array(1 << 20).fill(7);
    const d = digestOf(data);
    let fills = 0;
    const fill = async (w: { write(c: Uint8Array): Promise<void> }) => {
      fills++;
      for (let i = 0; i < data.length; i += 65536) {
        await w.write(data.subarray(i, i + 65536));
        await new Promise((r) => setTimeout(r, 1));
      }
    };
    const results = await Promise.all([1, 2, 3, 4].map(() => s.ingest(d, fill)));
    assert.equal(fills, 1);
    assert.deepEqual(results.sort(), ["exists", "exists", "exists", "written"]);
    assert.deepEqual(await s.read(d, 2 << 20), data);
  }));

Deno.test("blobs: a partial left by a failed writer is resumed from its end", () =>
  withStore(async (s) => {
    const data = enc.encode("abcdefghij");
    const d = digestOf(data);
    await assert.rejects(
      s.ingest(d, async (w) => {
        await w.write(data.subarray(0, 6));
        throw new Error("connection lost");
      }),
      /connection lost/,
    );
    let from = -1;
    assert.equal(
      await s.ingest(d, async (w) => {
        from = w.offset;
        await w.write(data.subarray(w.offset));
      }),
      "written",
    );
    assert.equal(from, 6);
    assert.deepEqual(await s.read(d), data);
  }));

Deno.test("blobs: a wrong partial fails as resumed, reset starts over", () =>
  withStore(async (s) => {
    const data = enc.encode("abcdefghij");
    const d = digestOf(data);
    await assert.rejects(s.ingest(d, async (w) => {
      await w.write(enc.encode("XXXX"));
      throw new Error("lost");
    }));
    await assert.rejects(
      s.ingest(d, async (w) => await w.write(data.subarray(w.offset))),
      (e: { resumed?: boolean }) => e.resumed === true,
    );
    assert.equal(
      await s.ingest(d, async (w) => {
        assert.equal(w.offset, 0); // the bad partial was removed
        await w.write(enc.encode("zz"));
        await w.reset();
        await w.write(data);
      }),
      "written",
    );
  }));

Deno.test("blobs: cleanPartials removes unlocked partials only", () =>
  withStore(async (s, root) => {
    const d = digestOf(enc.encode("x"));
    await assert.rejects(s.ingest(d, async (w) => {
      await w.write(enc.encode("y"));
      throw new Error("lost");
    }));
    assert.equal((await list(`${root}/tmp`)).length, 1);
    let release!: () => void;
    const held = new Promise<void>((r) => release = r);
    const d2 = digestOf(enc.encode("z"));
    const writing = s.ingest(d2, async (w) => {
      await w.write(enc.encode("z"));
      await held;
    });
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(await s.cleanPartials(), 1);
    assert.deepEqual(await list(`${root}/tmp`), [`sha256-${d2.slice(7)}.partial`]);
    release();
    assert.equal(await writing, "written");
  }));

Deno.test("blobs: bad digests never become paths", () =>
  withStore(async (s) => {
    assert.throws(() => s.path("sha256:../../etc/passwd"), /64 lower-case hex/);
    await assert.rejects(s.has("md5:abc"), /unsupported digest algorithm/);
  }));
