/**
 * The store against the host's other users (the CVE-2021-41091 class): a layer or a kept
 * container's upper may hold set-user-ID root programs and device nodes of the image's or
 * the container's choosing. If another user can walk the store's path down to them, the
 * host runs them as root. Nothing below ROOT/layers or ROOT/containers may be reachable by
 * anyone but the store's owner, and a store image must still run in a user namespace
 * (`hardened`), whose root is another host user.
 */
import assert from "node:assert/strict";
import { makeImage, writeLayout } from "./_registry.ts";
import { microTest, ok, run, show, withTempDir } from "./_helpers.ts";

const NOBODY = 65534;

/** `path`'s lstat as the user nobody (no capabilities): "ok" or the error's code. */
async function statAsNobody(path: string): Promise<string> {
  const r = await new Deno.Command("setpriv", {
    args: [
      `--reuid=${NOBODY}`,
      `--regid=${NOBODY}`,
      "--clear-groups",
      "--inh-caps=-all",
      "stat",
      "-c",
      "%A",
      path,
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  return r.success ? "ok" : new TextDecoder().decode(r.stderr).trim();
}

microTest(
  "another user reaches no set-user-ID file of a layer or of a kept container's upper",
  () =>
    withTempDir(async (dir) => {
      Deno.chmodSync(dir, 0o755);
      // A store some tool or an older micro made searchable by others.
      const root = `${dir}/store`;
      Deno.mkdirSync(root, { mode: 0o711 });
      Deno.chmodSync(root, 0o711);
      const busybox = Deno.readFileSync("/bin/busybox");
      const image = makeImage([[
        { path: "bin", dir: true },
        { path: "bin/busybox", data: busybox, mode: 0o755 },
        { path: "bin/rootsh", data: busybox, mode: 0o4755 },
        { path: "tmp", dir: true, mode: 0o1777 },
      ]]);
      await writeLayout(`${dir}/layout`, image.blobs, { evil: image.manifest });
      ok(await run(["image", "import", "--root", root, `${dir}/layout`, "evil:1"]));
      const layer = [...Deno.readDirSync(`${root}/layers/sha256`)][0].name;
      const inLayer = `${root}/layers/sha256/${layer}/bin/rootsh`;
      assert.equal(Deno.lstatSync(inLayer).mode! & 0o4000, 0o4000);
      // A kept container writes its own set-user-ID root copy into its upper.
      const name = `perm-${crypto.randomUUID().slice(0, 8)}`;
      const r = await run([
        "run",
        "--root",
        root,
        "--name",
        name,
        "evil:1",
        "/bin/busybox",
        "sh",
        "-c",
        "/bin/busybox cp /bin/busybox /suid && /bin/busybox chmod 4755 /suid",
      ]);
      assert.equal(r.code, 0, show(r));
      const id = [...Deno.readDirSync(`${root}/containers`)]
        .find((e) => /^[0-9a-f]{64}$/.test(e.name))!.name;
      const inUpper = `${root}/containers/${id}/upper/suid`;
      assert.equal(Deno.lstatSync(inUpper).mode! & 0o4000, 0o4000);
      try {
        for (const path of [inLayer, inUpper]) {
          assert.match(await statAsNobody(path), /Permission denied/, path);
        }
        // Still runs in a user namespace whose root is another host user, and rm works.
        const h = await run([
          "run",
          "--rm",
          "--root",
          root,
          "--profile",
          "hardened",
          "evil:1",
          "/bin/busybox",
          "sh",
          "-c",
          "echo ok > /tmp/x && /bin/busybox cat /tmp/x",
        ]);
        assert.equal(h.code, 0, show(h));
        assert.equal(h.stdout, "ok\n");
      } finally {
        ok(await run(["rm", "--root", root, name]));
      }
    }),
);

microTest("micro _remove-tree removes only a store's container and temporary trees", async () => {
  await withTempDir(async (dir) => {
    const victim = `${dir}/victim`;
    Deno.mkdirSync(victim);
    Deno.writeTextFileSync(`${victim}/keep`, "keep");
    const id = "a".repeat(64);
    Deno.mkdirSync(`${dir}/store/containers/${id}/upper`, { recursive: true });
    Deno.mkdirSync(`${dir}/store/tmp/layer-x`, { recursive: true });
    // A symlinked tmp leads elsewhere: refused, nothing followed.
    Deno.mkdirSync(`${dir}/evil`);
    Deno.symlinkSync(victim, `${dir}/evil/tmp`);
    for (const bad of [victim, `${dir}/evil/tmp/keep`, `${dir}/store/containers/../../victim`]) {
      const r = await run(["_remove-tree", bad]);
      assert.equal(r.code, 125, show(r));
    }
    assert.equal(Deno.readTextFileSync(`${victim}/keep`), "keep");
    ok(await run(["_remove-tree", `${dir}/store/containers/${id}`]));
    ok(await run(["_remove-tree", `${dir}/store/tmp/layer-x`]));
    assert.deepEqual([...Deno.readDirSync(`${dir}/store/containers`)], []);
    assert.deepEqual([...Deno.readDirSync(`${dir}/store/tmp`)], []);
  });
});
