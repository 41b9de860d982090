/**
 * Attacks on the container's root from the security review (issue 7), each reproduced as
 * it was found: an image whose /proc is a symlink, a volume aimed at procfs through an
 * image link, the image directory swapped for a link to / while micro starts and while it
 * cleans up, runs on one image racing over the mount points micro makes there, and a
 * directory fd leaked by micro's caller reached through the working directory.
 */
import assert from "node:assert/strict";
import {
  Background,
  copyImage,
  exists,
  IMAGE,
  MICRO,
  microTest,
  ok,
  run,
  show,
  STATE_ROOT,
  waitForContainer,
  withTempDir,
} from "./_helpers.ts";

/** A profile like `base` with the overlay plugin off: the image directory is bound itself. */
function noOverlay(dir: string, base = "default"): string {
  const p = `${dir}/no-overlay-${base}.yaml`;
  Deno.writeTextFileSync(p, `extends: ${base}\noverlay: {enabled: false}\n`);
  return p;
}

microTest(
  "an image whose /proc is a symlink is refused: proc goes on a real directory",
  async () => {
    await withTempDir(async (dir) => {
      const img = copyImage(dir, ["/proc"]);
      Deno.mkdirSync(`${img}/p1`);
      Deno.mkdirSync(`${img}/p2`);
      Deno.symlinkSync("p1", `${img}/proc`);
      const r = await run(["run", img, "sh", "-c", "echo ran"]);
      assert.equal(r.code, 125, show(r));
      assert.equal(r.stdout, "");
      assert.match(r.stderr, /\/proc in the image is a symlink \(to \/p1\): proc must be mounted/);
      assert.equal(r.stderr.trim().split("\n").length, 1, show(r));
      // Nothing was made in the image.
      assert.deepEqual([...Deno.readDirSync(`${img}/p1`)], []);
    });
  },
);

microTest("/sys through a symlink is refused the same way", async () => {
  await withTempDir(async (dir) => {
    const img = copyImage(dir, ["/sys"]);
    Deno.mkdirSync(`${img}/s`);
    Deno.symlinkSync("/s", `${img}/sys`);
    const r = await run(["run", img, "true"]);
    assert.equal(r.code, 125, show(r));
    assert.match(r.stderr, /\/sys in the image is a symlink \(to \/s\): sysfs must be mounted/);
  });
});

for (const profile of ["default", "hardened"]) {
  microTest(`${profile}: masks and read-only paths hold in the procfs micro mounted`, async () => {
    const out = ok(
      await run([
        "run",
        "--profile",
        profile,
        IMAGE,
        "sh",
        "-c",
        "echo 1 > /proc/sys/fs/lease-break-time; echo w=$?; wc -c < /proc/timer_list; " +
        "grep -c ' /proc/sys ' /proc/self/mountinfo",
      ]),
    );
    const [w, timer, sysMount] = out.trim().split("\n").map((l) => l.trim());
    assert.equal(w, "w=1");
    assert.equal(timer, "0");
    assert.equal(sysMount, "1");
  });
}

microTest("a volume aimed at /proc through an image link is refused (data -> /proc)", async () => {
  await withTempDir(async (dir) => {
    const img = copyImage(dir);
    Deno.symlinkSync("/proc", `${img}/data`);
    Deno.symlinkSync("../sys/kernel", `${img}/k`);
    Deno.mkdirSync(`${dir}/vol`);
    for (const [opt, dest] of [["-v", `${dir}/vol:/data`], ["-v", `${dir}/vol:/k`]]) {
      const r = await run(["run", opt, dest, img, "true"]);
      assert.equal(r.code, 125, show(r));
      assert.match(r.stderr, /is inside the container's \/(proc|sys)/, show(r));
    }
    // Straight at /proc or /sys, too.
    for (const dest of ["/proc/sys", "/sys/kernel"]) {
      const r = await run(["run", "-v", `${dir}/vol:${dest}`, img, "true"]);
      assert.equal(r.code, 125, show(r));
      assert.match(r.stderr, /inside the container's/, show(r));
    }
  });
});

microTest("a file over /proc/meminfo (lxcfs style) is allowed, as runc allows it", async () => {
  await withTempDir(async (dir) => {
    Deno.writeTextFileSync(`${dir}/meminfo`, "MemTotal: 42 kB\n");
    const out = ok(
      await run(["run", "-v", `${dir}/meminfo:/proc/meminfo:ro`, IMAGE, "cat", "/proc/meminfo"]),
    );
    assert.equal(out, "MemTotal: 42 kB\n");
  });
});

/**
 * Swaps `img` for a symlink to `target` as soon as `trigger` exists, from a shell loop
 * (tighter than a JS poll); returns the swapper process.
 */
function swapWhen(trigger: string, img: string, target: string): Deno.ChildProcess {
  const script = `while [ ! -e "$1" ]; do :; done; mv "$2" "$2.real" && ln -s "$3" "$2"`;
  return new Deno.Command("sh", {
    args: ["-c", script, "sh", trigger, img, target],
    stdout: "null",
    stderr: "null",
  }).spawn();
}

microTest(
  "the image swapped for a link to / while micro starts: the container never sees /",
  async () => {
    await withTempDir(async (dir) => {
      // A file only the host's root has.
      const marker = `/micro-test-host-root-${crypto.randomUUID().slice(0, 8)}`;
      Deno.writeTextFileSync(marker, "host\n");
      try {
        for (let i = 0; i < 8; i++) {
          const img = copyImage(`${dir}`);
          const name = `swap${i}-${crypto.randomUUID().slice(0, 6)}`;
          const swapper = swapWhen(`${STATE_ROOT}/${name}`, img, "/");
          const r = await run([
            "run",
            "--name",
            name,
            img,
            "sh",
            "-c",
            `cat ${marker} 2>/dev/null; test -e /etc/micro-image && echo image`,
          ]);
          await swapper.status;
          assert.doesNotMatch(r.stdout, /host/, `run ${i} saw the host's root: ${show(r)}`);
          assert.ok(r.code === 0 && r.stdout === "image\n", `run ${i}: ${show(r)}`);
          Deno.removeSync(img);
          Deno.removeSync(`${img}.real`, { recursive: true });
        }
      } finally {
        Deno.removeSync(marker);
      }
    });
  },
);

microTest("the image swapped for a link at cleanup: micro removes nothing outside it", async () => {
  await withTempDir(async (dir) => {
    const img = copyImage(dir);
    // The run creates /victim in the image (-w makes a missing working directory) and
    // removes it at the end; the host directory the link points to has its own /victim.
    const host = `${dir}/host`;
    Deno.mkdirSync(`${host}/victim`, { recursive: true });
    const bg = new Background([
      "run",
      "--profile",
      noOverlay(dir),
      "-w",
      "/victim",
      img,
      "sh",
      "-c",
      "pwd; sleep 1",
    ]);
    try {
      assert.ok(await waitForContainer(bg.pid), "the container did not start");
      assert.ok(await bg.waitForStdout("/victim\n"));
      Deno.renameSync(img, `${img}.real`);
      Deno.symlinkSync(host, img);
      const r = await bg.result();
      assert.equal(r.code, 0, show(r));
    } finally {
      bg.kill("SIGKILL");
    }
    assert.ok(exists(`${host}/victim`), "micro removed a directory outside the image");
    assert.equal(exists(`${img}.real/victim`), true, "left for a later run on the real image");
  });
});

microTest("runs racing on one image never lose the mount points another run uses", async () => {
  await withTempDir(async (dir) => {
    // Without the overlay: the mount points are made in the image directory itself.
    const plain = noOverlay(dir);
    const hardened = noOverlay(dir, "hardened");
    // No /proc /dev /sys /run /tmp: every run needs them made, and hardened needs /run.
    const img = copyImage(dir, ["/proc", "/dev", "/sys", "/run", "/tmp"]);
    const long = new Background([
      "run",
      "--profile",
      plain,
      img,
      "sh",
      "-c",
      "echo started; sleep 3; test -r /proc/self/stat && ls /dev/null && echo still",
    ]);
    try {
      assert.ok(await long.waitForStdout("started\n"));
      const runs = await Promise.all(
        Array.from(
          { length: 24 },
          (_, i) =>
            run([
              "run",
              "--profile",
              i % 2 ? hardened : plain,
              img,
              "sh",
              "-c",
              "echo ok",
            ], { timeoutMs: 60_000 }),
        ),
      );
      for (const r of runs) assert.equal(r.code, 0, show(r));
      const l = await long.result(20_000);
      assert.equal(l.code, 0, show(l));
      assert.match(l.stdout, /still/);
    } finally {
      long.kill("SIGKILL");
    }
    // The last run out removed what runs made there, and the shared record with it.
    for (const d of ["/proc", "/dev", "/sys", "/run", "/tmp"]) {
      assert.equal(exists(`${img}${d}`), false, `${d} left in the image`);
    }
    assert.equal(exists(`${STATE_ROOT}/.images`), false);
  });
});

microTest("a directory fd leaked by micro's caller is closed before -w is resolved", async () => {
  await withTempDir(async (dir) => {
    const img = copyImage(dir);
    Deno.symlinkSync("/proc/self/fd/7", `${img}/app`);
    Deno.mkdirSync(`${dir}/hostdir/secret`, { recursive: true });
    for (const w of ["/app", "/proc/self/fd/7"]) {
      const r = await run([
        "-c",
        `exec 7<"$1"; shift; exec "$@"`,
        "sh",
        `${dir}/hostdir`,
        MICRO,
        "run",
        "-w",
        w,
        img,
        "sh",
        "-c",
        "ls; cd ../../..; ls",
      ], { cmd: "sh" });
      assert.doesNotMatch(r.stdout, /secret/, `-w ${w}: ${show(r)}`);
      assert.equal(r.code, 125, `-w ${w}: ${show(r)}`);
      assert.match(r.stderr, /(chdir|mkdir) path=.*ENOENT/, `-w ${w}: ${show(r)}`);
    }
  });
});

microTest("no fd of micro's caller reaches the container", async () => {
  await withTempDir(async (dir) => {
    const out = ok(
      await run([
        "-c",
        `exec 7<"$1" 9<"$1"; shift; exec "$@"`,
        "sh",
        dir,
        MICRO,
        "run",
        IMAGE,
        "ls",
        "/proc/self/fd",
      ], { cmd: "sh" }),
    );
    // ls's own directory fd is the only one above 2.
    assert.deepEqual(out.trim().split(/\s+/).filter((f) => Number(f) > 3), []);
  });
});
