/**
 * The container's file system: masked and read-only paths, volumes, tmpfs, symlinks in the
 * image aimed at host paths, and the host view used when there is no image.
 */
import assert from "node:assert/strict";
import { copyImage, IMAGE, MICRO, microTest, ok, run, sh, show, withTempDir } from "./_helpers.ts";

function hostHas(path: string): boolean {
  try {
    Deno.lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

for (const profile of ["default", "hardened"]) {
  microTest(`${profile}: masked paths read as empty`, async () => {
    const files = ["/proc/kcore", "/proc/keys", "/proc/timer_list"].filter(hostHas);
    const dirs = ["/sys/firmware"].filter(hostHas);
    assert.ok(files.length + dirs.length > 0, "the host has none of the masked paths");
    const script = [
      ...files.map((f) => `echo "${f} $(wc -c < ${f})"`),
      ...dirs.map((d) => `echo "${d} $(ls -A ${d} | wc -l)"`),
    ].join("; ");
    const out = ok(await sh(script, ["--profile", profile]));
    const expected = [...files, ...dirs].map((p) => `${p} 0`);
    assert.deepEqual(out.trim().split("\n").map((l) => l.replace(/\s+/g, " ")), expected);
  });

  microTest(`${profile}: masked directories cannot be written`, async () => {
    const r = await sh("touch /sys/firmware/x", ["--profile", profile]);
    assert.notEqual(r.code, 0, show(r));
    assert.match(r.stderr, /Read-only file system/);
  });

  microTest(`${profile}: read-only /proc paths refuse writes with EROFS`, async () => {
    const paths = ["/proc/sys/kernel/hostname", "/proc/sysrq-trigger"].filter(hostHas);
    for (const p of paths) {
      const r = await sh(`echo x > ${p}`, ["--profile", profile]);
      assert.notEqual(r.code, 0, `${p}: ${show(r)}`);
      assert.match(r.stderr, /Read-only file system/, `${p}: ${show(r)}`);
    }
  });
}

microTest(
  "-v HOST:CTR:ro reads, refuses writes; -v HOST:CTR writes through to the host",
  async () => {
    await withTempDir(async (dir) => {
      Deno.writeTextFileSync(`${dir}/hello`, "from host\n");
      const ro = await sh("cat /data/hello; echo x > /data/new", ["-v", `${dir}:/data:ro`]);
      assert.notEqual(ro.code, 0, show(ro));
      assert.equal(ro.stdout, "from host\n");
      assert.match(ro.stderr, /Read-only file system/);
      assert.equal(hostHas(`${dir}/new`), false);

      const rw = ok(
        await sh("cat /data/hello; echo from container > /data/new; echo ok", [
          "-v",
          `${dir}:/data`,
        ]),
      );
      assert.equal(rw, "from host\nok\n");
      assert.equal(Deno.readTextFileSync(`${dir}/new`), "from container\n");

      const rw2 = ok(await sh("echo again > /data/new2", ["-v", `${dir}:/data:rw`]));
      assert.equal(rw2, "");
      assert.equal(Deno.readTextFileSync(`${dir}/new2`), "again\n");
    });
  },
);

/** The cgroups under micro's shared parents, cgroup v1 (every hierarchy) and v2. */
function microCgroups(): string[] {
  const out: string[] = [];
  const under = (dir: string) => {
    try {
      for (const e of Deno.readDirSync(dir)) if (e.isDirectory) out.push(`${dir}/${e.name}`);
    } catch {
      // no such parent: nothing under it
    }
  };
  under("/sys/fs/cgroup/micro");
  try {
    for (const h of Deno.readDirSync("/sys/fs/cgroup")) {
      if (h.isDirectory) under(`/sys/fs/cgroup/${h.name}/micro`);
    }
  } catch {
    // no cgroup file system
  }
  return out;
}

// The child makes its root while micro attaches it (its cgroups, its id maps first in a user
// namespace): a mount that fails then is the run's error, whatever the attach met after.
for (const profile of ["default", "hardened"]) {
  microTest(
    `${profile}: a mount of the root's set-up that fails is the run's error, nothing left`,
    async () => {
      await withTempDir(async (dir) => {
        const img = copyImage(dir, ["/sys"]);
        Deno.writeTextFileSync(`${img}/sys`, "not a directory\n");
        Deno.chmodSync(dir, 0o755); // the hardened profile's mapped root reads the image
        const before = microCgroups();
        for (let i = 0; i < 3; i++) {
          const r = await run(["run", "--profile", profile, img, "/bin/true"]);
          assert.equal(r.code, 125, show(r));
          assert.match(
            r.stderr,
            /^micro: rootfs: mount: mount src=sysfs dst=\/sys .*: ENOTDIR \(\/sys in the image is not a directory\)\n$/,
            show(r),
          );
        }
        // No cgroup of these runs is left, whatever else runs beside them.
        assert.deepEqual(microCgroups().filter((c) => !before.includes(c)), []);
      });
    },
  );
}

microTest("-v does not leave the mount point it created in the image", async () => {
  await withTempDir(async (dir) => {
    const target = "/micro-test-volume-dir/sub";
    assert.equal(hostHas(`${IMAGE}/micro-test-volume-dir`), false);
    ok(await sh(`test -d ${target} && echo ok`, ["-v", `${dir}:${target}`]));
    assert.equal(hostHas(`${IMAGE}/micro-test-volume-dir`), false, "micro left its mount point");
  });
});

microTest("--tmpfs PATH is a writable tmpfs", async () => {
  const out = ok(
    await sh(
      "grep ' /scratch ' /proc/self/mountinfo; echo hi > /scratch/f && cat /scratch/f; " +
        "ls -A /scratch",
      ["--tmpfs", "/scratch"],
    ),
  );
  const [mountLine, ...rest] = out.trim().split("\n");
  const [pre, post] = mountLine.split(" - ");
  assert.match(pre.split(" ")[5], /^rw\b/, mountLine);
  assert.equal(post.split(" ")[0], "tmpfs", mountLine);
  assert.deepEqual(rest, ["hi", "f"]);
  assert.equal(hostHas(`${IMAGE}/scratch`), false, "micro left /scratch in the image");
});

/** A copy of the test image in a temp dir, removed afterwards. */
async function withImageCopy(fn: (image: string, tmp: string) => Promise<void>): Promise<void> {
  await withTempDir(async (tmp) => {
    Deno.chmodSync(tmp, 0o755); // traversable by a hardened container's root
    const image = `${tmp}/image`;
    const cp = await new Deno.Command("cp", { args: ["-a", IMAGE, image] }).output();
    assert.ok(cp.success, new TextDecoder().decode(cp.stderr));
    await fn(image, tmp);
  }, "micro-test-img-");
}

/** Host paths named by symlinks in an image: they must never be touched. */
function escapeTargets(): { abs: string; rel: string; absLink: string; relLink: string } {
  const tag = crypto.randomUUID().slice(0, 8);
  const abs = `/tmp/micro-escape-target-${tag}`;
  const rel = `/tmp/micro-escape-target-rel-${tag}`;
  return { abs, rel, absLink: abs, relLink: `../../../..${rel}` };
}

async function symlinkEscape(precreate: boolean): Promise<void> {
  await withImageCopy(async (image, tmp) => {
    const t = escapeTargets();
    try {
      Deno.symlinkSync(t.absLink, `${image}/escape`);
      Deno.mkdirSync(`${image}/deep/er`, { recursive: true });
      Deno.symlinkSync(t.relLink, `${image}/deep/er/escape2`);
      if (precreate) {
        Deno.mkdirSync(`${image}${t.abs}`);
        Deno.mkdirSync(`${image}${t.rel}`);
      }
      const src = `${tmp}/src`;
      Deno.mkdirSync(src);
      Deno.writeTextFileSync(`${src}/marker`, "bound\n");
      const r = await run([
        "run",
        "-v",
        `${src}:/escape`,
        "-v",
        `${src}:/deep/er/escape2`,
        image,
        "sh",
        "-c",
        "cat /escape/marker /deep/er/escape2/marker; " +
        `cat ${t.abs}/marker ${t.rel}/marker`,
      ]);
      // (a) nothing reached the host (the wrapper also checks the mount table)
      assert.equal(hostHas(t.abs), false, `micro created the host path ${t.abs}`);
      assert.equal(hostHas(t.rel), false, `micro created the host path ${t.rel}`);
      // (b) the binds were made inside the root, through the links
      assert.equal(r.code, 0, show(r));
      assert.equal(r.stdout, "bound\n".repeat(4));
      // micro removes the mount points it created, and only those
      assert.equal(hostHas(`${image}${t.abs}`), precreate, `${image}${t.abs}`);
      assert.equal(hostHas(`${image}${t.rel}`), precreate, `${image}${t.rel}`);
      assert.equal(Deno.readLinkSync(`${image}/escape`), t.absLink);
    } finally {
      // in case micro did write through to the host, undo it (the test has already failed)
      for (const p of [t.abs, t.rel]) {
        try {
          Deno.removeSync(p, { recursive: true });
        } catch {
          // absent, as it should be
        }
      }
    }
  });
}

microTest(
  "a volume aimed at a symlink to a host path binds inside the root (target exists in image)",
  () => symlinkEscape(true),
);

microTest(
  "a volume aimed at a dangling symlink to a host path: created and bound inside the root",
  () => symlinkEscape(false),
);

microTest("--tmpfs aimed at a dangling symlink to a host path: made inside the root", async () => {
  await withImageCopy(async (image) => {
    const t = escapeTargets();
    try {
      Deno.symlinkSync(t.absLink, `${image}/scr`);
      const r = await run([
        "run",
        "--tmpfs",
        "/scr",
        image,
        "sh",
        "-c",
        `echo x > /scr/f && cat ${t.abs}/f`,
      ]);
      assert.equal(hostHas(t.abs), false, `micro created the host path ${t.abs}`);
      assert.equal(r.code, 0, show(r));
      assert.equal(r.stdout, "x\n");
      assert.equal(hostHas(`${image}${t.abs}`), false, "micro left its mount point");
    } finally {
      try {
        Deno.removeSync(t.abs, { recursive: true });
      } catch {
        // absent, as it should be
      }
    }
  });
});

microTest("-v binds a single file, and removes the file it created as mount point", async () => {
  await withTempDir(async (dir) => {
    Deno.writeTextFileSync(`${dir}/file`, "one file\n");
    const r = await sh("cat /etc/micro-test-file; echo x >> /etc/micro-test-file", [
      "-v",
      `${dir}/file:/etc/micro-test-file:ro`,
    ]);
    assert.equal(r.stdout, "one file\n", show(r));
    assert.match(r.stderr, /Read-only file system/);
    assert.equal(hostHas(`${IMAGE}/etc/micro-test-file`), false, "micro left its mount point");
  });
});

microTest("-v with a missing host source fails with 125 naming it", async () => {
  const r = await sh("true", ["-v", "/nonexistent-micro-src:/x"]);
  assert.equal(r.code, 125, show(r));
  assert.match(r.stderr, /\/nonexistent-micro-src/);
  assert.equal(hostHas(`${IMAGE}/x`), false);
});

microTest("a volume or tmpfs on / itself is refused (125), as Docker does", async () => {
  await withTempDir(async (dir) => {
    for (const opts of [["-v", `${dir}:/`], ["-v", `${dir}:/.`], ["--tmpfs", "/"]]) {
      const r = await sh("true", opts);
      assert.equal(r.code, 125, `${opts.join(" ")}: ${show(r)}`);
      assert.equal(r.stderr.trimEnd().split("\n").length, 1, show(r));
    }
  });
});

/** What the host view should hold at /: the host's dirs that exist, plus dev proc sys tmp. */
function expectedHostViewRoot(): string[] {
  const names = ["usr", "bin", "sbin", "etc"];
  for (const e of Deno.readDirSync("/")) if (/^lib/.test(e.name)) names.push(e.name);
  return [...new Set([...names.filter((n) => hostHas(`/${n}`)), "dev", "proc", "sys", "tmp"])]
    .sort();
}

microTest("no image (default): the host's dirs read-only, an empty writable /tmp", async () => {
  const r = await run([
    "run",
    "--profile",
    "default",
    "--",
    "sh",
    "-c",
    "ls -A / | sort; echo ---; ls -A /tmp | wc -l; touch /tmp/ok && echo tmp-writable; " +
    "head -c 0 /etc/os-release && echo os-release-readable; " +
    "touch /usr/micro-test 2>&1; touch /etc/micro-test 2>&1; echo end",
  ]);
  assert.equal(r.code, 0, show(r));
  const [ls, rest] = r.stdout.split("---\n");
  assert.deepEqual(ls.trim().split("\n"), expectedHostViewRoot());
  const lines = rest.trim().split("\n");
  assert.equal(lines[0].trim(), "0", "/tmp is not empty");
  assert.equal(lines[1], "tmp-writable");
  assert.equal(lines[2], "os-release-readable");
  assert.match(lines[3], /\/usr\/micro-test.*Read-only file system/);
  assert.match(lines[4], /\/etc\/micro-test.*Read-only file system/);
  assert.equal(lines[5], "end");
  assert.equal(hostHas("/usr/micro-test"), false);
  assert.equal(hostHas("/etc/micro-test"), false);
});

/** A shell word for `s`. */
const quote = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`;

// Under hardened, Landlock leaves / itself out of the allow-list, so `ls /` is refused; each
// expected entry is checked by name instead, and every other entry of the host's / must be
// absent. The root is read-only, with the readonly plugin's tmpfs /run next to /tmp.
microTest(
  "no image (hardened): the host's dirs read-only, an empty writable /tmp, nothing else of the host's /",
  async () => {
    const expected = [...expectedHostViewRoot(), "run"].sort();
    const others = [...Deno.readDirSync("/")].map((e) => e.name)
      .filter((n) => !expected.includes(n)).sort();
    assert.ok(others.length > 0, "the host's / has nothing but what the host view binds");
    const script = [
      `for n in ${expected.map(quote).join(" ")}; do ` +
      `if [ -e "/$n" ] || [ -L "/$n" ]; then echo "present $n"; else echo "missing $n"; fi; done`,
      `for n in ${others.map(quote).join(" ")}; do ` +
      `if [ -e "/$n" ] || [ -L "/$n" ]; then echo "leaked $n"; fi; done`,
      "echo ---",
      "ls / 2>&1 >/dev/null; echo ---",
      "ls -A /tmp; echo ---",
      "touch /tmp/ok && echo tmp-writable",
      "head -c 0 /etc/os-release && echo os-release-readable",
      "touch /micro-test 2>&1; touch /usr/micro-test 2>&1; touch /etc/micro-test 2>&1; echo end",
    ].join("\n");
    const r = await run(["run", "--profile", "hardened", "--", "sh", "-c", script]);
    assert.equal(r.code, 0, show(r));
    const [names, lsRoot, tmp, rest] = r.stdout.split("---\n");
    assert.deepEqual(names.trim().split("\n"), expected.map((n) => `present ${n}`), show(r));
    // EACCES from Landlock
    assert.match(lsRoot, /^ls: .*'\/'.*: Permission denied\n$/, show(r));
    assert.equal(tmp, "", `/tmp is not empty: ${show(r)}`);
    const lines = rest.trim().split("\n");
    assert.equal(lines[0], "tmp-writable", show(r));
    assert.equal(lines[1], "os-release-readable", show(r));
    assert.match(lines[2], /\/micro-test.*Read-only file system/, show(r));
    assert.match(lines[3], /\/usr\/micro-test.*Read-only file system/, show(r));
    assert.match(lines[4], /\/etc\/micro-test.*Read-only file system/, show(r));
    assert.equal(lines[5], "end", show(r));
    assert.equal(hostHas("/usr/micro-test"), false);
    assert.equal(hostHas("/etc/micro-test"), false);
  },
);

microTest("-v :ro is read-only all the way down, submounts of the source included", async () => {
  await withTempDir(async (dir) => {
    Deno.mkdirSync(`${dir}/sub`);
    // The submount lives only in a mount namespace of this test's own.
    const script = `mount -t tmpfs t ${dir}/sub && ` +
      `${MICRO} run -v ${dir}:/data:ro ${IMAGE} sh -c ` +
      `'touch /data/x 2>&1; touch /data/sub/y 2>&1; grep " /data/sub " /proc/self/mountinfo'`;
    const out = await new Deno.Command("unshare", {
      args: ["-m", "--propagation", "private", "sh", "-c", script],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(out.stdout);
    assert.match(text, /touch: \/data\/x: Read-only file system/, text);
    assert.match(text, /touch: \/data\/sub\/y: Read-only file system/, text);
    assert.match(text, / \/data\/sub ro,/, text);
  });
});
