/**
 * Idmapped images (core/engine/idmapped.ts): which maps, the mount_setattr call, and the user
 * namespace: micro's holder program is spawned from a sealed memfd (no clone of micro's
 * process), and every failure closes what it made and reaps the holder. The success path
 * runs for real in the hardened integration tests (the image's files owned by root show as
 * root in the container).
 */
import assert from "node:assert/strict";
import { idmapTree, mappedUserns, shiftedMaps } from "../../core/engine/idmapped.ts";
import { MicroError } from "../../core/errors.ts";
import { op } from "../../core/ops.ts";
import { RecordingSys } from "../../core/sys/fake.ts";
import { C } from "../../core/sys/mod.ts";

const maps = (uid: string, gid: string) => [
  op("attach", "user", "proc-write", { file: "uid_map", content: uid }),
  op("attach", "user", "proc-write", { file: "gid_map", content: gid }),
];

Deno.test("shiftedMaps: root with a shifting user namespace gets its maps", () => {
  const ops = maps("0 1000000000 65536\n", "0 1000000000 65536\n");
  assert.deepEqual(shiftedMaps(ops, 0), {
    uid: "0 1000000000 65536\n",
    gid: "0 1000000000 65536\n",
  });
});

Deno.test("shiftedMaps: nothing to idmap rootless, without a user namespace, or identity", () => {
  assert.equal(shiftedMaps(maps("0 1000 1\n", "0 1000 1\n"), 1000), null);
  assert.equal(shiftedMaps([], 0), null);
  assert.equal(shiftedMaps(maps("0 0 4294967295\n", "0 0 4294967295\n"), 0), null);
});

Deno.test("idmapTree: mount_setattr with MOUNT_ATTR_IDMAP and the namespace's fd", () => {
  const sys = new RecordingSys();
  assert.equal(idmapTree(sys, 7, 9), 0);
  assert.deepEqual(sys.calls(), [{
    call: "mountSetattr",
    args: [7, "", C.AT_EMPTY_PATH | C.AT_RECURSIVE, C.MOUNT_ATTR_IDMAP, 0, 9],
  }]);
});

const MAPS = { uid: "0 1000000000 65536\n", gid: "0 1000000000 65536\n" };

Deno.test("mappedUserns: the holder is spawned, never cloned; a failed unshare is its errno", async () => {
  const sys = new RecordingSys();
  sys.waitStatus = 22 << 8; // the holder exits with EINVAL, having written nothing
  let err: unknown;
  try {
    await mappedUserns(sys, MAPS);
  } catch (e) {
    err = e;
  }
  assert.ok(err instanceof MicroError, String(err));
  assert.equal(err.line(), "prepare: user: unshare(CLONE_NEWUSER): EINVAL");
  assert.equal(sys.names().includes("clone"), false);
  const f = sys.format();
  // memfd 3, stdin pipe 4/5, stdout pipe 6/7: the holder gets 4 and 7.
  assert.ok(f.includes('memfdCreate("micro-userns", 0x13)'), f.join("\n"));
  assert.ok(f.includes('spawn("/proc/self/fd/3", ["micro-userns"], [], [4,7])'), f.join("\n"));
  // Every fd closed, the holder reaped once.
  for (const fd of [3, 4, 5, 6, 7]) assert.ok(f.includes(`close(${fd})`), `fd ${fd} left open`);
  assert.equal(sys.names().filter((n) => n === "waitpid").length, 1);
});

Deno.test("mappedUserns: a spawn that fails closes the memfd and both pipes; nothing to reap", async () => {
  const sys = new RecordingSys().failOn("spawn", 13);
  let err: unknown;
  try {
    await mappedUserns(sys, MAPS);
  } catch (e) {
    err = e;
  }
  assert.ok(err instanceof MicroError, String(err));
  assert.equal(err.line(), "prepare: user: posix_spawn(micro-userns): EACCES");
  const f = sys.format();
  for (const fd of [3, 4, 5, 6, 7]) assert.ok(f.includes(`close(${fd})`), `fd ${fd} left open`);
  assert.equal(sys.names().includes("waitpid"), false);
});
