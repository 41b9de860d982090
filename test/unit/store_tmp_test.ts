/**
 * Removing trees of the store: the directories a removal must open up first (mode 0, as the
 * overlay's `work/work`) are reached through fds, never by name again.
 */
import assert from "node:assert/strict";
import { openUp, removeTreeAt, removeTreeSync } from "../../core/store/tmp.ts";
import { RecordingSys } from "../../core/sys/fake.ts";
import { C } from "../../core/sys/mod.ts";
import { openLibc } from "../../core/sys/libc.ts";

const DIR_PATH = C.O_PATH | C.O_DIRECTORY | C.O_NOFOLLOW | C.O_CLOEXEC;

Deno.test("openUp: each directory opened beneath its parent's fd, chmod through /proc/self/fd", () => {
  const sys = new RecordingSys();
  // fd 3: the top (mode 0), fd 4: "a" (already 0755); "link" is a symlink: ELOOP.
  sys.scriptStat(3, { mode: C.S_IFDIR | 0o000 }).scriptStat(4, { mode: C.S_IFDIR | 0o755 });
  sys.failOn("openat", (a) => a[1] === "link", 40);
  const listed: number[] = [];
  openUp(sys, "/store/tmp/rm-x", (fd) => {
    listed.push(fd);
    return fd === 3 ? ["a", "link"] : [];
  });
  assert.deepEqual(listed, [3, 4]);
  const calls = sys.calls().map((c) => [c.call, ...c.args]);
  assert.deepEqual(calls, [
    ["open", "/store/tmp/rm-x", DIR_PATH, 0],
    ["fstat", 3],
    ["fchmodat", C.AT_FDCWD, "/proc/self/fd/3", 0o700],
    ["openat", 3, "a", DIR_PATH, 0],
    ["fstat", 4],
    ["close", 4],
    ["openat", 3, "link", DIR_PATH, 0],
    ["close", 3],
  ]);
});

Deno.test("openUp: a top that is not a directory (a link swapped in) is left alone", () => {
  const sys = new RecordingSys();
  sys.failOn("open", 40); // ELOOP: O_NOFOLLOW met a symlink
  openUp(sys, "/store/tmp/rm-x", () => assert.fail("listed"));
  assert.deepEqual(sys.calls().map((c) => c.call), ["open"]);
});

Deno.test("removeTreeSync: removes a tree whose directories lost their bits; links untouched", () => {
  const root = Deno.makeTempDirSync({ prefix: "micro-unit-rmtree-" });
  try {
    const outside = `${root}/outside`;
    Deno.mkdirSync(outside, { mode: 0o500 });
    Deno.chmodSync(outside, 0o500);
    const tree = `${root}/tree`;
    Deno.mkdirSync(`${tree}/work/work/deep`, { recursive: true });
    Deno.symlinkSync(outside, `${tree}/work/link`);
    Deno.chmodSync(`${tree}/work/work`, 0);
    // fd-based opening up on the real kernel, as a rootless owner needs it.
    openUp(openLibc(), tree);
    assert.equal(Deno.statSync(`${tree}/work/work`).mode! & 0o777, 0o700);
    assert.equal(removeTreeSync(tree), undefined);
    assert.throws(() => Deno.lstatSync(tree), Deno.errors.NotFound);
    assert.equal(Deno.statSync(outside).mode! & 0o777, 0o500, "a link was followed");
    assert.equal(removeTreeSync(tree), undefined, "missing is fine");
  } finally {
    Deno.removeSync(root, { recursive: true });
  }
});

Deno.test("removeTreeAt: removes a run's tree through fds; links, missing paths, deep trees", () => {
  const root = Deno.makeTempDirSync({ prefix: "micro-unit-rmat-" });
  const sys = openLibc();
  try {
    const outside = `${root}/outside`;
    Deno.mkdirSync(`${outside}/kept`, { recursive: true });
    Deno.writeTextFileSync(`${outside}/file`, "x");
    const tree = `${root}/tree`;
    Deno.mkdirSync(`${tree}/upper/etc`, { recursive: true });
    Deno.mkdirSync(`${tree}/work/work`, { recursive: true });
    Deno.writeTextFileSync(`${tree}/config.json`, "{}");
    Deno.writeTextFileSync(`${tree}/upper/etc/hosts`, "127.0.0.1 x\n");
    Deno.symlinkSync(outside, `${tree}/upper/dirlink`);
    Deno.symlinkSync(`${outside}/file`, `${tree}/upper/filelink`);
    // More entries than one getdents64 call returns.
    for (let i = 0; i < 1500; i++) {
      Deno.writeTextFileSync(`${tree}/upper/f-${i}-${"n".repeat(20)}`, "");
    }
    // The overlay's work/work: root opens it anyway; its owner may not, and removeTreeAt
    // stops there (removeTreeSync opens it up and finishes).
    Deno.chmodSync(`${tree}/work/work`, 0);
    const rc = removeTreeAt(sys, tree);
    if ((Deno.uid() ?? 0) === 0) assert.equal(rc, 0);
    else {
      assert.equal(rc, 13); // EACCES
      assert.equal(removeTreeSync(tree, true, sys), undefined);
    }
    assert.throws(() => Deno.lstatSync(tree), Deno.errors.NotFound);
    assert.deepEqual([...Deno.readDirSync(outside)].map((e) => e.name).sort(), ["file", "kept"]);
    assert.equal(removeTreeAt(sys, tree), 0, "missing is fine");

    // A symlink named as the tree: the link goes, never what it points to.
    Deno.symlinkSync(outside, `${root}/link`);
    assert.equal(removeTreeAt(sys, `${root}/link`), 0);
    assert.throws(() => Deno.lstatSync(`${root}/link`), Deno.errors.NotFound);
    assert.equal(Deno.statSync(`${outside}/kept`).isDirectory, true);

    // Deeper than it goes: it stops with an errno, and removeTreeSync finishes with Deno's.
    let deep = `${root}/deep`;
    for (let i = 0; i < 40; i++) deep += "/d";
    Deno.mkdirSync(deep, { recursive: true });
    assert.notEqual(removeTreeAt(sys, `${root}/deep`), 0);
    assert.equal(Deno.statSync(`${root}/deep`).isDirectory, true, "stopped, not gone");
    assert.equal(removeTreeSync(`${root}/deep`, true, sys), undefined);
    assert.throws(() => Deno.lstatSync(`${root}/deep`), Deno.errors.NotFound);
  } finally {
    Deno.removeSync(root, { recursive: true });
  }
});
