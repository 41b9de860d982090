import assert from "node:assert/strict";
import {
  createMountPoints,
  realPath,
  removeMountPoints,
  resolveTargets,
} from "../../core/engine/resolve.ts";
import { openLibc } from "../../core/sys/libc.ts";
import type { MicroError } from "../../core/errors.ts";
import { type Op, op } from "../../core/ops.ts";

function withImage(fn: (image: string) => void) {
  const image = Deno.makeTempDirSync({ prefix: "micro-resolve-" });
  try {
    fn(image);
  } finally {
    Deno.removeSync(image, { recursive: true });
  }
}

const bind = (target: string): Op =>
  op("rootfs", "mount", "mount", {
    source: "/srv",
    target,
    fstype: "",
    flags: ["MS_BIND"],
    create: "dir",
  });

Deno.test("realPath follows absolute and relative links without leaving the root", () => {
  withImage((image) => {
    Deno.mkdirSync(`${image}/srv`);
    Deno.symlinkSync("/tmp/outside", `${image}/abs`);
    Deno.symlinkSync("../../../../srv/x", `${image}/rel`);
    Deno.symlinkSync("srv", `${image}/short`);
    assert.equal(realPath(image, "/abs"), "/tmp/outside");
    assert.equal(realPath(image, "/rel"), "/srv/x");
    assert.equal(realPath(image, "/short/a/../b"), "/srv/b");
  });
});

Deno.test("a destination through a dangling link is rewritten and its dirs listed for cleanup", () => {
  withImage((image) => {
    Deno.mkdirSync(`${image}/tmp`);
    Deno.symlinkSync("/tmp/a/b", `${image}/escape`);
    const { ops, created } = resolveTargets([
      op("rootfs", "mount", "bind-root", { source: image, readonly: false }),
      bind("/escape"),
    ]);
    const m = ops[1];
    assert.equal(m.kind === "mount" && m.args.target, "/tmp/a/b");
    assert.deepEqual(created, ["/tmp/a", "/tmp/a/b"]);
  });
});

Deno.test("what lies on an earlier mount is followed through it but not listed for cleanup", () => {
  withImage((image) => {
    Deno.symlinkSync("/elsewhere", `${image}/dev`);
    const dev = op("rootfs", "mount", "mount", {
      source: "tmpfs",
      target: "/dev",
      fstype: "tmpfs",
      flags: [],
      create: "dir",
    });
    const { ops, created } = resolveTargets([
      op("rootfs", "mount", "bind-root", { source: image, readonly: false }),
      dev,
      bind("/dev/shm"),
    ]);
    // /dev is a link to /elsewhere, so the tmpfs lands there and /dev/shm is on it.
    assert.equal(ops[1].kind === "mount" && ops[1].args.target, "/elsewhere");
    assert.equal(ops[2].kind === "mount" && ops[2].args.target, "/elsewhere/shm");
    assert.deepEqual(created, ["/elsewhere"]);
  });
});

Deno.test("a destination under an earlier mount is left to the kernel", () => {
  withImage((image) => {
    const proc = op("rootfs", "mount", "mount", {
      source: "proc",
      target: "/proc",
      fstype: "proc",
      flags: [],
      create: "dir",
    });
    const { ops, created } = resolveTargets([
      op("rootfs", "mount", "bind-root", { source: image, readonly: false }),
      proc,
      bind("/proc/sys/x"),
    ]);
    assert.equal(ops[2].kind === "mount" && ops[2].args.target, "/proc/sys/x");
    assert.deepEqual(created, ["/proc"]);
  });
});

Deno.test("without an image nothing is rewritten", () => {
  const ops = [op("rootfs", "mount", "bind-root", { source: null, readonly: false }), bind("/x")];
  assert.deepEqual(resolveTargets(ops), { ops, created: [], files: [] });
});

Deno.test("mount points are created and removed inside the image, never through its links", () => {
  withImage((image) => {
    const outside = Deno.makeTempDirSync({ prefix: "micro-outside-" });
    try {
      const sys = openLibc();
      Deno.mkdirSync(`${image}/tmp`);
      createMountPoints(image, ["/tmp/a", "/tmp/a/b", "/tmp/f"], ["/tmp/f"], sys);
      assert.ok(Deno.statSync(`${image}/tmp/a/b`).isDirectory);
      assert.ok(Deno.statSync(`${image}/tmp/f`).isFile);
      // The image's owner swaps /tmp for a link to a host directory before the cleanup:
      // the removal resolves /tmp inside the image, where the link points nowhere.
      Deno.writeTextFileSync(`${outside}/f`, "precious");
      Deno.mkdirSync(`${outside}/a/b`, { recursive: true });
      Deno.renameSync(`${image}/tmp`, `${image}/tmp.real`);
      Deno.symlinkSync(outside, `${image}/tmp`);
      removeMountPoints(image, ["/tmp/a", "/tmp/a/b", "/tmp/f"], ["/tmp/f"], sys);
      assert.equal(Deno.readTextFileSync(`${outside}/f`), "precious");
      assert.ok(Deno.statSync(`${outside}/a/b`).isDirectory);
      // Creating through that link fails inside the image instead of writing outside.
      assert.throws(
        () => createMountPoints(image, ["/tmp/new"], [], sys),
        (e: MicroError) => /mkdir image=.* path=\/tmp\/new: (ENOENT|ELOOP)/.test(e.line()),
      );
      assert.throws(() => Deno.statSync(`${outside}/new`));
      // With the directory back, the same removal cleans up.
      Deno.removeSync(`${image}/tmp`);
      Deno.renameSync(`${image}/tmp.real`, `${image}/tmp`);
      removeMountPoints(image, ["/tmp/a", "/tmp/a/b", "/tmp/f"], ["/tmp/f"], sys);
      assert.deepEqual([...Deno.readDirSync(`${image}/tmp`)], []);
    } finally {
      Deno.removeSync(outside, { recursive: true });
    }
  });
});

Deno.test("a destination that resolves to the image's root is refused", () => {
  withImage((image) => {
    Deno.symlinkSync("/", `${image}/dev`);
    assert.throws(
      () =>
        resolveTargets([
          op("rootfs", "mount", "bind-root", { source: image, readonly: false }),
          bind("/dev"),
        ]),
      /is the image's root/,
    );
  });
});

Deno.test("a working directory the image lacks is made like a mount point, and removed after", () => {
  withImage((image) => {
    const { ops, created } = resolveTargets([
      op("rootfs", "mount", "bind-root", { source: image, readonly: false }),
      op("exec", "process", "chdir", { path: "/srv/app" }),
    ]);
    assert.deepEqual(created, ["/srv", "/srv/app"]);
    assert.equal(ops[1].kind === "chdir" && ops[1].args.path, "/srv/app");
  });
});

const procMount = (target = "/proc"): Op =>
  op("rootfs", "mount", "mount", {
    source: "proc",
    target,
    fstype: "proc",
    flags: ["MS_NOSUID"],
    create: "dir",
    kernelFs: "proc",
  });

Deno.test("proc on a symlinked /proc is refused before anything runs (runc's rule)", () => {
  withImage((image) => {
    Deno.mkdirSync(`${image}/p1`);
    Deno.symlinkSync("p1", `${image}/proc`);
    assert.throws(
      () =>
        resolveTargets([
          op("rootfs", "mount", "bind-root", { source: image, readonly: false }),
          procMount(),
        ]),
      (e: MicroError) =>
        /\/proc in the image is a symlink \(to \/p1\): proc must be mounted on an ordinary/.test(
          e.line(),
        ),
    );
  });
});

Deno.test("a mount landing in /proc or /sys, through a link or not, is refused", () => {
  withImage((image) => {
    Deno.mkdirSync(`${image}/proc`);
    Deno.symlinkSync("/proc/sys", `${image}/data`);
    for (const target of ["/data", "/proc/sys/kernel", "/proc"]) {
      assert.throws(
        () =>
          resolveTargets([
            op("rootfs", "mount", "bind-root", { source: image, readonly: false }),
            procMount(),
            bind(target),
          ]),
        (e: MicroError) => /inside the container's \/proc/.test(e.line()),
        target,
      );
    }
  });
});

Deno.test("a file over /proc/meminfo is allowed and marked for the child", () => {
  withImage((image) => {
    Deno.mkdirSync(`${image}/proc`);
    const { ops } = resolveTargets([
      op("rootfs", "mount", "bind-root", { source: image, readonly: false }),
      procMount(),
      op("rootfs", "mount", "mount", {
        source: "/srv/meminfo",
        target: "/proc/meminfo",
        fstype: "",
        flags: ["MS_BIND"],
        create: "file",
      }),
    ]);
    const m = ops[2];
    assert.equal(m.kind === "mount" && m.args.overProc, true);
  });
});

Deno.test("resolveTargets looks the image up through the directory it is given (the fd)", () => {
  withImage((image) => {
    Deno.mkdirSync(`${image}/real`);
    const fd = Deno.openSync(image, { read: true });
    try {
      // The op names a path that does not exist; the lookup goes through the fd's dir.
      const { created } = resolveTargets(
        [
          op("rootfs", "mount", "bind-root", { source: "/nonexistent", readonly: false }),
          bind("/real/x"),
        ],
        image,
      );
      assert.deepEqual(created, ["/real/x"]);
    } finally {
      fd.close();
    }
  });
});
