import assert from "node:assert/strict";
import { idmapTree, shiftedMaps } from "../../core/engine/idmapped.ts";
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
