import assert from "node:assert/strict";
import { realPath, resolveTargets } from "../../core/engine/resolve.ts";
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
    assert.deepEqual(created, [`${image}/tmp/a`, `${image}/tmp/a/b`]);
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
    assert.deepEqual(created, [`${image}/elsewhere`]);
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
    assert.deepEqual(created, [`${image}/proc`]);
  });
});

Deno.test("without an image nothing is rewritten", () => {
  const ops = [op("rootfs", "mount", "bind-root", { source: null, readonly: false }), bind("/x")];
  assert.deepEqual(resolveTargets(ops), { ops, created: [], files: [] });
});
