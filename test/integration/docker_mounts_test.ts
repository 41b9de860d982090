/**
 * Docker's mount flags from inside the container: hardened's writable places for a user
 * who is not root, --tmpfs with each option (mountinfo, stat, statfs, exec), --shm-size,
 * --mount of each type, and named volumes that outlive runs until `micro volume rm`.
 */
import assert from "node:assert/strict";
import {
  containerDirOf,
  exists,
  IMAGE,
  MICRO,
  microTest,
  ok,
  run,
  sh,
  show,
  STORE_ROOT,
  withTempDir,
} from "./_helpers.ts";

/** The mountinfo line of `path`'s mount, as "mount-options - fstype source super-options". */
const MOUNT_LINE = (path: string) =>
  `awk '$5 == "${path}" { for (i = 6; i <= NF; i++) printf "%s ", $i; print "" }' ` +
  "/proc/self/mountinfo";

microTest(
  "hardened: the container's user (nobody) writes /run and /tmp of the read-only root",
  async () => {
    const out = ok(
      await sh(
        "id -un; echo pid > /run/x && echo tmp > /tmp/x && cat /run/x /tmp/x; " +
          "stat -c '%n %a' /run /tmp; touch /etc/x 2>/dev/null || echo root-ro",
        ["--rm", "--profile", "hardened"],
      ),
    );
    // Before: /run was a root-owned 755 tmpfs, and nginx's pid file could not be written.
    assert.equal(out, "nobody\npid\ntmp\n/run 1777\n/tmp 1777\nroot-ro\n");
  },
);

microTest(
  "--tmpfs PATH:OPTS: size, mode, uid, gid and the flags, as the kernel shows them",
  async () => {
    const script = [
      MOUNT_LINE("/t"),
      "stat -c '%a %u %g' /t",
      // statfs: 1K blocks of the tmpfs and of /dev/shm (--shm-size)
      "df -k /t /dev/shm | awk 'NR > 1 { print $2 }'",
      // noexec (Docker's default): a copy of a program cannot be run from there
      "cp /bin/busybox /t/true; /t/true 2>/dev/null && echo t-exec || echo t-noexec",
      MOUNT_LINE("/e"),
      "cp /bin/busybox /e/true; /e/true && echo e-exec",
      MOUNT_LINE("/r"),
      "touch /r/x 2>/dev/null || echo r-ro",
    ].join("; ");
    const out = ok(
      await sh(script, [
        "--rm",
        "--tmpfs",
        "/t:size=4m,mode=0700,uid=1000,gid=1001",
        "--tmpfs",
        "/e:exec,suid,dev,size=2m",
        "--tmpfs",
        "/r:ro",
        "--shm-size",
        "2m",
      ]),
    ).trim().split("\n");
    assert.match(
      out[0],
      /^rw,nosuid,nodev,noexec,\S* .*- tmpfs tmpfs rw,size=4096k,mode=700,uid=1000,gid=1001 $/,
    );
    assert.equal(out[1], "700 1000 1001");
    assert.deepEqual(out.slice(2, 4), ["4096", "2048"]);
    assert.equal(out[4], "t-noexec");
    // exec, suid, dev: none of the three flags
    assert.match(out[5], /^rw,relatime .*- tmpfs tmpfs rw,size=2048k $/);
    assert.equal(out[6], "e-exec");
    assert.match(out[7], /^ro,nosuid,nodev,noexec,/);
    assert.equal(out[8], "r-ro");
  },
);

microTest("--tmpfs refuses an unknown option in one line, before anything runs", async () => {
  const r = await run(["run", "--rm", "--tmpfs", "/t:size=1m,nr_blocks=4", IMAGE, "true"]);
  assert.equal(r.code, 125, show(r));
  assert.equal(r.stderr.trim().split("\n").length, 1, show(r));
  assert.match(r.stderr, /unknown tmpfs option "nr_blocks=4"/);
});

microTest("--mount type=bind (readonly), type=tmpfs and type=volume from inside", async () => {
  await withTempDir(async (dir) => {
    Deno.writeTextFileSync(`${dir}/f`, "host\n");
    const out = ok(
      await sh(
        `cat /b/f; echo x > /b/g 2>/dev/null || echo b-ro; ${MOUNT_LINE("/t")}; ` +
          "echo v > /v/f && cat /v/f",
        [
          "--rm",
          "--mount",
          `type=bind,src=${dir},dst=/b,readonly`,
          "--mount",
          "type=tmpfs,destination=/t,tmpfs-size=1m,tmpfs-mode=1770",
          "--mount",
          "type=volume,target=/v",
        ],
      ),
    ).trim().split("\n");
    assert.deepEqual(out.slice(0, 2), ["host", "b-ro"]);
    assert.match(out[2], /- tmpfs tmpfs rw,size=1024k,mode=1770 $/);
    assert.equal(out[3], "v");
    assert.equal(exists(`${dir}/g`), false);
  });
});

microTest(
  "a named volume outlives its runs, is refused to rm while in use, and is removed",
  async () => {
    const name = `vol-${crypto.randomUUID().slice(0, 8)}`;
    const data = `${STORE_ROOT}/volumes/${name}/_data`;
    try {
      ok(await sh("echo first > /data/f", ["--rm", "-v", `${name}:/data`]));
      assert.equal(Deno.readTextFileSync(`${data}/f`), "first\n");
      // The same volume through --mount, read-only, in a second run.
      const second = ok(
        await sh("cat /d/f; echo x > /d/g 2>/dev/null || echo ro", [
          "--rm",
          "--mount",
          `type=volume,source=${name},target=/d,readonly`,
        ]),
      );
      assert.equal(second, "first\nro\n");
      assert.match(ok(await run(["volume", "ls", "-q"])), new RegExp(`^${name}$`, "m"));

      // In use by a running container: refused, and left as it is.
      const child = new Deno.Command(MICRO, {
        args: [
          "run",
          "--rm",
          "-v",
          `${name}:/data`,
          IMAGE,
          "sh",
          "-c",
          "trap 'exit 0' TERM; touch /data/up; sleep 30 & wait",
        ],
        stdout: "null",
        stderr: "null",
      }).spawn();
      try {
        for (let i = 0; i < 100 && !exists(`${data}/up`); i++) {
          await new Promise((r) => setTimeout(r, 100));
        }
        const refused = await run(["volume", "rm", name]);
        assert.equal(refused.code, 125, show(refused));
        assert.match(refused.stderr, /is in use by a running container/);
        assert.ok(exists(`${data}/f`));
      } finally {
        child.kill("SIGTERM");
        await child.status;
      }
      ok(await run(["volume", "rm", name]));
      assert.equal(exists(`${STORE_ROOT}/volumes/${name}`), false);
      assert.doesNotMatch(ok(await run(["volume", "ls", "-q"])), new RegExp(`^${name}$`, "m"));
      const again = await run(["volume", "rm", name]);
      assert.equal(again.code, 125, show(again));
    } finally {
      try {
        Deno.removeSync(`${STORE_ROOT}/volumes/${name}`, { recursive: true });
      } catch { /* removed by the test */ }
    }
  },
);

microTest(
  "an anonymous volume lives in its container's directory and goes with micro rm",
  async () => {
    const name = `anon-${crypto.randomUUID().slice(0, 8)}`;
    ok(await sh("echo kept > /cache/f", ["--name", name, "-v", "/cache"]));
    const dir = containerDirOf(name);
    assert.ok(dir, "the container is kept");
    assert.equal(Deno.readTextFileSync(`${dir}/volumes/0/_data/f`), "kept\n");
    ok(await run(["rm", name]));
    assert.equal(exists(dir!), false);
  },
);
