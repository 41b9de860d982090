/**
 * Files micro reads from places others control (issue 7, items 4 and 11): the image's
 * /etc/passwd as a FIFO, a device, a link out, a sparse file or a file a container swaps
 * meanwhile; `--env-file`, `--security-opt seccomp=` and `--profile` naming a device or a
 * FIFO. Each must fail fast with one line and exit 125 (before the fix: hangs, or micro
 * grew until the OOM killer struck). Every image here is a temp copy of the test image.
 */
import assert from "node:assert/strict";
import { IMAGE, microTest, run, type RunResult, show, withTempDir } from "./_helpers.ts";

/** A bad run must end well within this; a 5 s kill catches a hang or a runaway read. */
const FAST_MS = 3000;

async function timed(args: string[]): Promise<RunResult & { ms: number }> {
  const t0 = performance.now();
  const r = await run(args, { timeoutMs: 5000 });
  return { ...r, ms: performance.now() - t0 };
}

/** Exit 125, one line on stderr matching `line`, fast. */
function refused(r: RunResult & { ms: number }, line: RegExp): void {
  assert.equal(r.code, 125, show(r));
  const lines = r.stderr.trimEnd().split("\n");
  assert.equal(lines.length, 1, show(r));
  assert.match(lines[0], line);
  assert.ok(r.ms < FAST_MS, `took ${Math.round(r.ms)} ms: ${show(r)}`);
}

function sh(script: string): void {
  const out = new Deno.Command("sh", { args: ["-c", script] }).outputSync();
  assert.ok(out.success, `${script}: ${new TextDecoder().decode(out.stderr)}`);
}

/** A temp copy of the test image whose etc/passwd `setup` replaces. */
function withImage(setup: string, fn: (img: string, dir: string) => Promise<void>) {
  return withTempDir(async (dir) => {
    const img = `${dir}/img`;
    sh(`cp -a '${IMAGE}' '${img}' && cd '${img}' && rm -f etc/passwd && ${setup}`);
    await fn(img, dir);
  }, "micro-files-");
}

microTest("image /etc/passwd as a FIFO: refused at once, not a hang", async () => {
  await withImage("mkfifo etc/passwd", async (img) => {
    refused(
      await timed(["run", "--user", "nobody", img, "true"]),
      /^micro: image file \S+\/etc\/passwd: is a FIFO, not a regular file \(/,
    );
  });
});

microTest("image /etc/passwd as a character device: refused, never read", async () => {
  await withImage("mknod etc/passwd c 1 5", async (img) => {
    refused(
      await timed(["run", "--user", "nobody", img, "true"]),
      /^micro: image file \S+\/etc\/passwd: is a character device, not a regular file/,
    );
  });
});

microTest("image /etc/passwd linking to /dev/zero: resolved in the image, refused", async () => {
  // The link lands on the image's own dev/zero, a device: refused; without one, no users.
  await withImage("ln -s /dev/zero etc/passwd && mknod dev/zero c 1 5", async (img) => {
    refused(
      await timed(["run", "--user", "nobody", img, "true"]),
      /: is a character device, not a regular file/,
    );
    sh(`rm '${img}/dev/zero'`);
    refused(
      await timed(["run", "--user", "nobody", img, "true"]),
      /^micro: check: user "nobody" not found in the image's \/etc\/passwd/,
    );
  });
});

microTest("image /etc/passwd as a 2 GiB sparse file: refused by its size", async () => {
  await withImage("truncate -s 2G etc/passwd", async (img) => {
    refused(
      await timed(["run", "--user", "nobody", img, "true"]),
      /: is 2 GiB, over the 1 MiB limit \(\/etc\/passwd must be a regular file of at most 1 MiB/,
    );
  });
});

microTest("image /etc/passwd linking out of the image: the host's file is never read", async () => {
  await withImage("true", async (img, dir) => {
    // A passwd on the host that names "ghost"; the image links to it by its host path, to
    // the host's /etc/shadow, and up and out with `..`.
    Deno.writeTextFileSync(`${dir}/hostpasswd`, "ghost:x:4242:4242::/:/bin/sh\n");
    for (const target of [`${dir}/hostpasswd`, "/etc/shadow", `../../../..${dir}/hostpasswd`]) {
      sh(`ln -sfn '${target}' '${img}/etc/passwd'`);
      refused(
        await timed(["run", "--user", "ghost", img, "true"]),
        /^micro: check: user "ghost" not found in the image's \/etc\/passwd/,
      );
    }
    // A link that stays in the image is followed, as the container sees it.
    sh(`printf 'ghost:x:4242:4242::/:/bin/sh\\n' > '${img}/etc/passwd.real'`);
    sh(`ln -sfn passwd.real '${img}/etc/passwd'`);
    const r = await run(["run", "--user", "ghost", img, "id", "-u"]);
    assert.equal(r.code, 0, show(r));
    assert.equal(r.stdout.trim(), "4242");
  });
});

microTest("image /etc/passwd swapped for a link to /dev/zero meanwhile: never read", async () => {
  // A container on a shared image swapping etc/passwd between a file and a link to the host's
  // /dev/zero: before the fix, runs read the host's /dev/zero (OOM) or crashed (TypeError).
  await withImage("cp /dev/null etc/passwd", async (img) => {
    sh(`printf 'nobody:x:65534:65534::/:/bin/sh\\n' > '${img}/etc/passwd'`);
    // A tight loop (Deno, not a shell: thousands of swaps a second) of atomic renames.
    const etc = `${img}/etc`;
    const swap = `
      const etc = ${JSON.stringify(etc)};
      for (;;) {
        Deno.symlinkSync("/dev/zero", etc + "/passwd.link");
        Deno.renameSync(etc + "/passwd.link", etc + "/passwd");
        Deno.writeTextFileSync(etc + "/passwd.new", "nobody:x:65534:65534::/:/bin/sh\\n");
        Deno.renameSync(etc + "/passwd.new", etc + "/passwd");
      }`;
    const loop = new Deno.Command(Deno.execPath(), { args: ["eval", swap] }).spawn();
    try {
      for (let i = 0; i < 20; i++) {
        const r = await timed(["run", "--user", "nobody", img, "true"]);
        assert.ok(r.ms < FAST_MS, `run ${i} took ${Math.round(r.ms)} ms: ${show(r)}`);
        if (r.code === 0) continue;
        // The link resolves in the image, where there is no dev/zero: no users.
        refused(r, /^micro: check: user "nobody" not found in the image's \/etc\/passwd/);
      }
    } finally {
      loop.kill("SIGKILL");
      await loop.status;
    }
  });
});

microTest("--env-file, seccomp= and --profile naming /dev/zero or a FIFO fail fast", async () => {
  await withTempDir(async (dir) => {
    sh(`mkfifo '${dir}/fifo'`);
    refused(
      await timed(["run", "--env-file", "/dev/zero", IMAGE, "true"]),
      /^micro: env file "\/dev\/zero": is a character device, not a regular file \(give a regular file of at most 1 MiB\)$/,
    );
    refused(
      await timed(["run", "--env-file", `${dir}/fifo`, IMAGE, "true"]),
      /: is a FIFO, not a regular file/,
    );
    refused(
      await timed(["run", "--security-opt", "seccomp=/dev/zero", IMAGE, "true"]),
      /^micro: check: seccomp: seccomp profile "\/dev\/zero" cannot be read: is a character device, not a regular file/,
    );
    refused(
      await timed(["run", "--security-opt", `seccomp=${dir}/fifo`, IMAGE, "true"]),
      /cannot be read: is a FIFO, not a regular file/,
    );
    refused(
      await timed(["run", "--profile", `${dir}/fifo`, IMAGE, "true"]),
      /^micro: profile \S+\/fifo: is a FIFO, not a regular file \(give a regular file of at most 1 MiB\)$/,
    );
    refused(
      await timed(["run", "--profile", "/dev/zero", IMAGE, "true"]),
      /^micro: profile \/dev\/zero: is a character device, not a regular file/,
    );
  }, "micro-files-");
});

microTest(
  "a profile alias bomb or 100,000 levels of nesting: one line, no stack trace",
  async () => {
    await withTempDir(async (dir) => {
      let bomb = "a0: &a0 [x, x, x, x, x, x, x, x, x]\n";
      for (let i = 1; i < 20; i++) {
        bomb += `a${i}: &a${i} [${Array(9).fill(`*a${i - 1}`).join(", ")}]\n`;
      }
      Deno.writeTextFileSync(`${dir}/bomb.yaml`, bomb);
      refused(
        await timed(["run", "--profile", `${dir}/bomb.yaml`, IMAGE, "true"]),
        /^micro: profile \S+bomb\.yaml \(line 1\): invalid yaml: aliases expand too much/,
      );
      const n = 100_000;
      Deno.writeTextFileSync(`${dir}/deep.yaml`, "mount:\n  binds:\n    " + "- ".repeat(n) + "x\n");
      refused(
        await timed(["run", "--profile", `${dir}/deep.yaml`, IMAGE, "true"]),
        /^micro: profile \S+deep\.yaml \(line 3\): invalid yaml: nesting too deep/,
      );
      const rules = Array(100_000).fill({ names: ["a"], action: "SCMP_ACT_LOG" });
      Deno.writeTextFileSync(
        `${dir}/rules.json`,
        JSON.stringify({ defaultAction: "SCMP_ACT_ERRNO", syscalls: rules }),
      );
      refused(
        await timed(["run", "--security-opt", `seccomp=${dir}/rules.json`, IMAGE, "true"]),
        /: seccomp\.syscalls: 100000 rules, more than the 4096 micro takes$/,
      );
    }, "micro-files-");
  },
);
