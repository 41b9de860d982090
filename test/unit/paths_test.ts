/** Container paths: the one link-following loop behind resolveInRoot and MergedRoot. */
import assert from "node:assert/strict";
import { resolveLinks } from "../../core/paths.ts";
import { resolveInRoot } from "../../core/host.ts";
import { MergedRoot } from "../../core/store/merged.ts";
import { openLibc } from "../../core/sys/libc.ts";

/** A view given as container path → link target ("" for a plain entry). */
function view(entries: Record<string, string>) {
  const asked: string[] = [];
  const look = (p: string) => {
    asked.push(p);
    if (!(p in entries)) return null;
    return entries[p] === "" ? undefined : entries[p];
  };
  return { look, asked };
}

Deno.test("resolveLinks: links followed in the view, never out of it; missing parts as written", () => {
  const v = view({
    "/etc": "",
    "/etc/up": "../../../../etc", // `..` stops at the root
    "/abs": "/etc",
    "/loop": "/loop",
  });
  assert.equal(resolveLinks("/etc/up/passwd", v.look), "/etc/passwd");
  assert.equal(resolveLinks("abs/./x/../y", v.look), "/etc/y");
  assert.equal(resolveLinks("/", v.look), "/");
  assert.throws(() => resolveLinks("/loop/x", v.look), /too many symlinks resolving \/loop\/x/);
  // Each lookup is of a symlink-free path: what the callback is asked.
  const w = view({ "/a": "b", "/b": "" });
  assert.equal(resolveLinks("/a/c", w.look), "/b/c");
  assert.deepEqual(w.asked, ["/a", "/b", "/b/c"]);
});

Deno.test("resolveInRoot and MergedRoot.resolve agree on one directory", () => {
  const root = Deno.makeTempDirSync({ prefix: "micro-unit-paths-" });
  try {
    Deno.mkdirSync(`${root}/etc`);
    Deno.mkdirSync(`${root}/usr/lib`, { recursive: true });
    Deno.symlinkSync("../../../etc", `${root}/etc/up`);
    Deno.symlinkSync("/usr/lib", `${root}/lib`);
    Deno.symlinkSync("lib/../etc", `${root}/rel`);
    const merged = new MergedRoot(openLibc(), [root]);
    for (const p of ["/etc/up/passwd", "/lib/x/..", "/rel/up/up", "/missing/../etc", "/"]) {
      assert.equal(resolveInRoot(root, p), root + merged.resolve(p), p);
    }
    // `lib/..` is /usr (lib is /usr/lib), as the kernel resolves it.
    assert.equal(merged.resolve("/rel/up"), "/usr/etc/up");
  } finally {
    Deno.removeSync(root, { recursive: true });
  }
});
