/**
 * Time namespaces: OCI linux.timeOffsets (a "time" namespace in linux.namespaces) and the
 * timens plugin of a profile. The container's /proc/self/timens_offsets shows the offsets and
 * /proc/uptime the boot-time one; an exec (OCI and micro's) enters the same namespace.
 */
import assert from "node:assert/strict";
import { Background, IMAGE, microTest, ok, run, show, withTempDir } from "./_helpers.ts";
import { bundle } from "./_oci.ts";

const DAYS_1000 = 86_400_000;

/** The first field of /proc/uptime in `text`, whichever line holds it. */
function uptimes(text: string): number[] {
  return [...text.matchAll(/^(\d+\.\d+) \d+\.\d+$/gm)].map((m) => Number(m[1]));
}

microTest("timens: OCI linux.timeOffsets are the container's clocks, and exec's", async () => {
  await withTempDir(async (dir) => {
    const b = await bundle(dir, (c) => {
      c.process.args = [
        "sh",
        "-c",
        "cat /proc/self/timens_offsets /proc/uptime; echo ready; sleep 20",
      ];
      c.linux.namespaces.push({ type: "time" });
      c.linux.timeOffsets = {
        boottime: { secs: DAYS_1000 },
        monotonic: { secs: 5000, nanosecs: 7 },
      };
    });
    const root = `${dir}/state`;
    const bg = new Background(["--root", root, "run", "-b", b, "tn-oci"]);
    try {
      assert.ok(await bg.waitForStdout("ready\n", 20_000), bg.stdout + bg.stderr);
      assert.match(bg.stdout, /^monotonic\s+5000\s+7$/m, bg.stdout);
      assert.match(bg.stdout, /^boottime\s+86400000\s+0$/m, bg.stdout);
      const host = Number(Deno.readTextFileSync("/proc/uptime").split(" ")[0]);
      const [inside] = uptimes(bg.stdout);
      assert.ok(inside >= DAYS_1000 && inside < DAYS_1000 + host + 60, bg.stdout);
      const e = ok(await run(["--root", root, "exec", "tn-oci", "cat", "/proc/uptime"]));
      assert.ok(uptimes(e)[0] >= DAYS_1000, e);
    } finally {
      bg.kill("SIGTERM");
      await run(["--root", root, "kill", "tn-oci", "KILL"]);
      await bg.result(20_000);
      await run(["--root", root, "delete", "--force", "tn-oci"]);
    }
  });
});

microTest("timens: a profile's timens section; micro exec enters the namespace", async () => {
  await withTempDir(async (dir) => {
    Deno.writeTextFileSync(`${dir}/p.yaml`, "extends: default\ntimens:\n  boottime: 86400000\n");
    const name = `tn-${crypto.randomUUID().slice(0, 8)}`;
    const bg = new Background([
      "run",
      "--rm",
      "--name",
      name,
      "--profile",
      `${dir}/p.yaml`,
      IMAGE,
      "sh",
      "-c",
      "trap 'exit 0' TERM; cat /proc/uptime; echo ready; sleep 20 & wait",
    ]);
    try {
      assert.ok(await bg.waitForStdout("ready\n", 20_000), bg.stdout + bg.stderr);
      assert.ok(uptimes(bg.stdout)[0] >= DAYS_1000, bg.stdout);
      const e = ok(await run(["exec", name, "cat", "/proc/uptime"]));
      assert.ok(uptimes(e)[0] >= DAYS_1000, e);
      // Without the section: the host's clock.
      const plain = ok(await run(["run", "--rm", IMAGE, "cat", "/proc/uptime"]));
      assert.ok(uptimes(plain)[0] < DAYS_1000, plain);
    } finally {
      bg.kill("SIGTERM");
      const r = await bg.result(20_000);
      assert.equal(r.code, 0, show(r));
    }
  });
});

microTest(
  "timens: without a proc mount, an image's own /proc/self/timens_offsets is refused",
  async () => {
    await withTempDir(async (dir) => {
      const b = await bundle(dir, (c) => {
        c.process.args = ["cat", "/proc/self/timens_offsets"];
        c.mounts = c.mounts.filter((m: { destination: string }) => m.destination !== "/proc");
        c.linux.namespaces.push({ type: "time" });
        c.linux.timeOffsets = { boottime: { secs: DAYS_1000 } };
        c.linux.maskedPaths = [];
        c.linux.readonlyPaths = [];
        c.root.readonly = false;
      });
      // A hostile image: a file where procfs's would be, which the offsets must not go into.
      Deno.mkdirSync(`${b}/rootfs/proc/self`, { recursive: true });
      Deno.writeTextFileSync(`${b}/rootfs/proc/self/timens_offsets`, "");
      const root = `${dir}/state`;
      const r = await run(["--root", root, "run", "-b", b, "tn-noproc"]);
      try {
        assert.equal(r.code, 125, show(r));
        assert.match(r.stderr, /timens_offsets is not procfs's/, show(r));
        assert.equal(Deno.readTextFileSync(`${b}/rootfs/proc/self/timens_offsets`), "");
      } finally {
        await run(["--root", root, "delete", "--force", "tn-noproc"]);
      }
    });
  },
);
