/**
 * The overlay plugin: the image is the read-only lower layer of a copy-on-write root, so a
 * directory image is never written, by the container or by micro, and containers of one
 * image do not see each other's writes.
 */
import assert from "node:assert/strict";
import {
  Background,
  containerDirOf,
  containerNames,
  copyImage,
  exists,
  IMAGE,
  microTest,
  ok,
  run,
  show,
  waitForContainer,
  withTempDir,
} from "./_helpers.ts";

/** Every path in `dir` with its type, mode, owner, size and mtime: what "unchanged" means. */
function tree(dir: string): string {
  const out = new Deno.Command("find", {
    args: [dir, "-printf", "%P %y %m %U:%G %s %T@\\n"],
  }).outputSync();
  return new TextDecoder().decode(out.stdout).split("\n").sort().join("\n");
}

const name = () => `ov-${crypto.randomUUID().slice(0, 8)}`;

for (const profile of ["default", "hardened"]) {
  microTest(`${profile}: the image directory is never written, mount points included`, async () => {
    await withTempDir(async (dir) => {
      const img = copyImage(dir, ["/proc", "/dev", "/sys", "/run", "/tmp"]);
      const before = tree(img);
      const before_ = containerNames();
      const id = name();
      const script = profile === "default"
        ? "echo new > /etc/new; rm /etc/hostname; mkdir /srv; pwd"
        : "pwd; touch /etc/new 2>/dev/null || echo read-only";
      const out = ok(
        await run([
          "run",
          "--rm",
          "--name",
          id,
          "--profile",
          profile,
          "-w",
          "/work/here",
          img,
          "sh",
          "-c",
          script,
        ]),
      );
      assert.match(out, /^\/work\/here\n/);
      if (profile === "hardened") assert.match(out, /read-only/);
      assert.equal(tree(img), before, "the image changed");
      assert.deepEqual(containerNames(), before_, "the container's layer was left");
    });
  });
}

microTest("the container sees its own writes over the image, and only its own", async () => {
  await withTempDir(async (dir) => {
    const img = copyImage(dir);
    const a = new Background([
      "run",
      img,
      "sh",
      "-c",
      "echo a > /etc/mine; echo ready; sleep 2; cat /etc/mine; ls /etc/theirs 2>&1",
    ]);
    try {
      assert.ok(await a.waitForStdout("ready\n"));
      const b = ok(
        await run(["run", img, "sh", "-c", "echo b > /etc/theirs; cat /etc/mine 2>&1; true"]),
      );
      assert.match(b, /No such file/);
      const r = await a.result();
      assert.equal(r.code, 1, show(r));
      assert.match(r.stdout, /ready\na\n.*No such file/s);
    } finally {
      a.kill("SIGKILL");
    }
    assert.equal(exists(`${img}/etc/mine`) || exists(`${img}/etc/theirs`), false);
  });
});

microTest("a deletion in the container hides the image's file (an overlay whiteout)", async () => {
  const out = ok(
    await run(["run", IMAGE, "sh", "-c", "rm /etc/hostname; ls /etc/hostname 2>&1; echo done"]),
  );
  assert.match(out, /No such file.*\ndone/s);
  assert.ok(exists(`${IMAGE}/etc/hostname`));
});

microTest("many runs of one image at once all succeed and leave nothing", async () => {
  await withTempDir(async (dir) => {
    const img = copyImage(dir, ["/proc", "/dev", "/sys", "/run", "/tmp"]);
    const before = tree(img);
    const kept = containerNames();
    const ids = Array.from({ length: 40 }, name);
    const runs = await Promise.all(ids.map((id, i) =>
      run(
        [
          "run",
          "--rm",
          "--name",
          id,
          ...(i % 2 ? ["--profile", "hardened"] : []),
          img,
          "sh",
          "-c",
          "echo ok",
        ],
        { timeoutMs: 90_000 },
      )
    ));
    for (const r of runs) assert.equal(r.stdout, "ok\n", show(r));
    assert.equal(tree(img), before);
    assert.deepEqual(containerNames(), kept, "a container's layer was left");
  });
});

microTest(
  "a --rm container's layer is removed by the next command after micro is killed",
  async () => {
    const id = name();
    const bg = new Background([
      "run",
      "--rm",
      "--name",
      id,
      IMAGE,
      "sh",
      "-c",
      "echo x > /x; sleep 30",
    ]);
    const dir = () => containerDirOf(id);
    let made: string | undefined;
    try {
      assert.ok(await waitForContainer(bg.pid));
      made = dir();
      assert.ok(made && exists(`${made}/upper`));
      bg.kill("SIGKILL");
      await bg.result();
    } finally {
      bg.kill("SIGKILL");
    }
    // Any micro command collects what a killed run left.
    ok(await run(["run", "--rm", IMAGE, "true"]));
    assert.equal(exists(made!), false);
    assert.equal(dir(), undefined);
  },
);

microTest("overlay can be turned off: the directory is bound as it is", async () => {
  await withTempDir(async (dir) => {
    const img = copyImage(dir);
    Deno.writeTextFileSync(`${dir}/p.yaml`, "extends: default\noverlay: {enabled: false}\n");
    ok(await run(["run", "--profile", `${dir}/p.yaml`, img, "sh", "-c", "echo hi > /etc/direct"]));
    assert.equal(Deno.readTextFileSync(`${img}/etc/direct`), "hi\n");
  });
});

microTest(
  "root with a user namespace that shifts ids: the image is idmapped, copy-up of its files works",
  async () => {
    await withTempDir(async (dir) => {
      const img = copyImage(dir);
      Deno.writeTextFileSync(`${img}/etc/owned`, "mine\n");
      Deno.chownSync(`${img}/etc/owned`, 1000, 1000);
      Deno.chmodSync(`${img}/etc/owned`, 0o600);
      const before = tree(img);
      // hardened's user namespace (0 -> 1000000000), with a writable root Landlock allows
      const prof = `${dir}/rw.yaml`;
      Deno.writeTextFileSync(
        prof,
        "extends: [hardened]\nreadonly: {enabled: false}\nlsm: {enabled: false}\n",
      );
      const out = ok(
        await run([
          "run",
          "--rm",
          "--profile",
          prof,
          "-u",
          "0",
          img,
          "sh",
          "-c",
          "stat -c %u:%g /etc/passwd /etc/owned; echo x >> /etc/passwd && tail -n 1 /etc/passwd; " +
          "stat -c %u:%g /etc/passwd; head -n 1 /proc/self/uid_map | tr -s ' '",
        ]),
      );
      assert.equal(out, "0:0\n1000:1000\nx\n0:0\n 0 1000000000 65536\n");
      // The image's user reads its own 0600 file (--user 1000 under the same map).
      const as1000 = ok(
        await run(["run", "--rm", "--profile", prof, "-u", "1000", img, "cat", "/etc/owned"]),
      );
      assert.equal(as1000, "mine\n");
      assert.equal(tree(img), before, "the image changed");
    });
  },
);
