/**
 * Running store images: a directory or a reference (`isDirectoryImage`), the image config's
 * defaults under the flags (Docker's Entrypoint and Cmd rules), the merged view of layers
 * (whiteouts, opaque directories, links) read before the overlay exists, the overlay's
 * lower layers as fsconfig values, and the flags.
 */
import assert from "node:assert/strict";
import { MicroError } from "../../core/errors.ts";
import { parseRun } from "../../core/cli.ts";
import { lowerDirs } from "../../core/engine/child.ts";
import { resolveTargets } from "../../core/engine/resolve.ts";
import { isDirectoryImage } from "../../core/run.ts";
import { imageDefaults } from "../../core/store/config.ts";
import { MergedRoot } from "../../core/store/merged.ts";
import { C, cstr } from "../../core/sys/mod.ts";
import { openLibc } from "../../core/sys/libc.ts";
import type { Op } from "../../core/ops.ts";

const dec = new TextDecoder();
const text = (b: Uint8Array) =>
  dec.decode(b.subarray(0, b.indexOf(0) < 0 ? b.length : b.indexOf(0)));

Deno.test("run: a path that exists or starts with / ./ ../ is a directory; the rest a reference", () => {
  const dirs = new Set(["img", "dist/image"]);
  const isDir = (p: string) => dirs.has(p);
  for (
    const d of ["/srv/root", "./img", "../x/y", ".", "..", "img", "dist/image", "/nonexistent"]
  ) {
    assert.equal(isDirectoryImage(d, isDir), true, d);
  }
  for (
    const r of [
      "alpine",
      "alpine:3.20",
      "localhost:5000/app",
      "team/app@sha256:" + "a".repeat(64),
      ".hidden",
      "abc123",
    ]
  ) {
    assert.equal(isDirectoryImage(r, isDir), false, r);
  }
});

Deno.test("config: Entrypoint + Cmd; a command replaces Cmd; --entrypoint drops Cmd", () => {
  const c = { Entrypoint: ["/entry", "-x"], Cmd: ["serve"], Env: ["A=1", "PATH=/opt/bin", "BAD"] };
  assert.deepEqual(imageDefaults(c, { args: [] }).args, ["/entry", "-x", "serve"]);
  assert.deepEqual(imageDefaults(c, { args: ["run", "it"] }).args, ["/entry", "-x", "run", "it"]);
  assert.deepEqual(imageDefaults(c, { args: [], entrypoint: "/bin/sh" }).args, ["/bin/sh"]);
  assert.deepEqual(imageDefaults(c, { args: ["-c", "x"], entrypoint: "/bin/sh" }).args, [
    "/bin/sh",
    "-c",
    "x",
  ]);
  assert.deepEqual(imageDefaults(c, { args: ["ls"], entrypoint: "" }).args, ["ls"]);
  assert.deepEqual(imageDefaults({ Cmd: ["/bin/sh"] }, { args: [] }).args, ["/bin/sh"]);
  assert.deepEqual(imageDefaults({ Cmd: ["/bin/sh"], Entrypoint: null }, { args: ["id"] }).args, [
    "id",
  ]);
  assert.deepEqual(imageDefaults(c, { args: [] }).env, { A: "1", PATH: "/opt/bin" });
  for (const bad of [{ args: [], entrypoint: "" }, { args: [] }]) {
    assert.throws(
      () => imageDefaults(bad.entrypoint === "" ? c : {}, bad),
      (e) =>
        e instanceof MicroError && /no command: the image has no Entrypoint or Cmd/.test(e.line()),
    );
  }
});

Deno.test("config: WorkingDir, User and StopSignal are taken when set", () => {
  const d = imageDefaults({
    Cmd: ["x"],
    WorkingDir: "/srv",
    User: "app:staff",
    StopSignal: "SIGQUIT",
  }, {
    args: [],
  });
  assert.equal(d.cwd, "/srv");
  assert.equal(d.user, "app:staff");
  assert.equal(d.stopSignal, "SIGQUIT");
  const none = imageDefaults({ Cmd: ["x"], WorkingDir: "", User: "" }, { args: [] });
  assert.equal(none.cwd, undefined);
  assert.equal(none.user, undefined);
  assert.equal(imageDefaults({ Cmd: ["x"], WorkingDir: "rel" }, { args: [] }).cwd, "/rel");
  assert.deepEqual(imageDefaults(undefined, { args: ["a"] }), { args: ["a"], env: {} });
});

Deno.test("cli: --pull, --entrypoint, --root, --platform", () => {
  const io = { getEnv: () => undefined, readFile: () => "", cwd: () => "/home/u" };
  const r = parseRun(
    [
      "run",
      "--pull=never",
      "--entrypoint",
      "",
      "--root",
      "store",
      "--platform",
      "linux/arm64",
      "alpine",
    ],
    io,
  );
  assert.equal(r.pull, "never");
  assert.equal(r.entrypoint, "");
  assert.equal(r.root, "/home/u/store");
  assert.equal(r.platform, "linux/arm64");
  assert.equal(r.image, "alpine");
  assert.deepEqual(r.args, []);
  assert.throws(
    () => parseRun(["run", "--pull=sometimes", "alpine"], io),
    (e) => e instanceof MicroError && /expected "missing", "always" or "never"/.test(e.line()),
  );
  assert.throws(() => parseRun(["run", "--platform", "arm64", "alpine"], io), MicroError);
});

Deno.test("overlay: lower layers joined with ':' (escaped) while they fit, else lowerdir+", () => {
  const short = lowerDirs(["/s/l/a", "/s/l/b:c", "/s/l/d\\e"]);
  assert.equal(text(short.key), "lowerdir");
  assert.deepEqual(short.values.map(text), ["/s/l/a:/s/l/b\\:c:/s/l/d\\\\e"]);
  const long = Array.from(
    { length: 4 },
    (_, i) => `/var/lib/micro/layers/sha256/${String(i).repeat(64)}`,
  );
  const l = lowerDirs(long);
  assert.equal(text(l.key), "lowerdir+");
  assert.deepEqual(l.values.map(text), long);
  assert.equal(
    text(lowerDirs().values[0]),
    "/proc/self/fd/" + text(lowerDirs().values[0]).split("/").pop(),
  );
});

// ---- the merged view --------------------------------------------------------------------

async function layers(fn: (top: string, mid: string, low: string) => void): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "micro-merged-" });
  const [top, mid, low] = ["top", "mid", "low"].map((n) => `${dir}/${n}`);
  for (const l of [top, mid, low]) await Deno.mkdir(l);
  fn(top, mid, low);
  return dir;
}

function put(path: string, text = "") {
  Deno.mkdirSync(path.slice(0, path.lastIndexOf("/")), { recursive: true });
  Deno.writeTextFileSync(path, text);
}

Deno.test("merged view: whiteouts, opaque dirs, files over dirs, links resolved inside", async () => {
  const sys = openLibc();
  const whiteout = (path: string) => {
    Deno.mkdirSync(path.slice(0, path.lastIndexOf("/")), { recursive: true });
    assert.ok(sys.mknodat(C.AT_FDCWD, cstr(path), C.S_IFCHR, 0, 0) >= 0, `mknod ${path}`);
  };
  const opaque = (path: string) => {
    Deno.mkdirSync(path, { recursive: true });
    const rc = sys.lsetxattr(
      cstr(path),
      cstr("user.overlay.opaque"),
      new TextEncoder().encode("y"),
      0,
    );
    assert.ok(rc >= 0, `setxattr ${path}: ${-rc}`);
  };
  const dir = await layers((top, mid, low) => {
    put(`${low}/etc/passwd`, "low\n");
    put(`${low}/etc/group`, "g\n");
    put(`${low}/gone/x`, "x");
    put(`${low}/opq/old`, "old");
    put(`${low}/d/inner`, "in");
    put(`${low}/keep/a`, "a");
    put(`${mid}/etc/passwd`, "mid\n");
    whiteout(`${mid}/gone`);
    opaque(`${mid}/opq`);
    put(`${mid}/opq/new`, "new");
    put(`${mid}/d`, "now a file");
    Deno.symlinkSync("/keep", `${mid}/abs`);
    Deno.symlinkSync("../../../keep", `${mid}/up`);
    put(`${top}/etc/motd`, "hi");
    Deno.mkdirSync(`${top}/keep`);
    put(`${top}/keep/b`, "b");
    Deno.symlinkSync("/etc/passwd", `${top}/etc/pw-link`);
  });
  try {
    const v = new MergedRoot(sys, ["top", "mid", "low"].map((n) => `${dir}/${n}`));
    assert.equal(v.readFile("/etc/passwd", 1024), "mid\n");
    assert.equal(v.readFile("/etc/group", 1024), "g\n");
    assert.equal(v.readFile("/etc/pw-link", 1024), "mid\n");
    assert.equal(v.readFile("/etc/missing", 1024), null);
    assert.equal(v.exists("/gone"), false);
    assert.equal(v.exists("/gone/x"), false);
    assert.equal(v.exists("/opq/old"), false);
    assert.equal(v.exists("/opq/new"), true);
    assert.equal(v.exists("/d/inner"), false);
    assert.equal(v.lookup("/d")?.info.isFile, true);
    assert.equal(v.exists("/keep/a"), true, "a directory merges with the one below");
    assert.equal(v.exists("/keep/b"), true);
    assert.equal(v.resolve("/abs/a"), "/keep/a");
    assert.equal(v.resolve("/up/a"), "/keep/a", ".. never leaves the root");
    assert.equal(v.resolve("/etc/pw-link"), "/etc/passwd");
    assert.equal(v.resolve("/new/dir/x"), "/new/dir/x");
    // Mount targets are resolved in the view: /abs/mnt is really /keep/mnt, and missing.
    const ops: Op[] = [
      {
        phase: "rootfs",
        plugin: "mount",
        kind: "bind-root",
        args: { source: "x", readonly: false },
      },
      {
        phase: "rootfs",
        plugin: "mount",
        kind: "mount",
        args: { source: "/h", target: "/abs/mnt", fstype: "", flags: ["MS_BIND"], create: "dir" },
      },
    ];
    const r = resolveTargets(ops, v);
    assert.equal((r.ops[1].args as { target: string }).target, "/keep/mnt");
    assert.deepEqual(r.created, ["/keep/mnt"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
