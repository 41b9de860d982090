/**
 * The lock between OCI verbs on one id: start and delete --force racing never start a
 * container that delete removed (start fails and the command never ran, or start won and
 * delete killed it), and leave nothing behind either way.
 */
import assert from "node:assert/strict";
import { exists, microTest, ok, pidAlive, show, sleep, withTempDir } from "./_helpers.ts";
import { bundle, oci } from "./_oci.ts";

function cgroupDirs(id: string): string[] {
  const out: string[] = [];
  for (const e of Deno.readDirSync("/sys/fs/cgroup")) {
    for (
      const p of [`/sys/fs/cgroup/${e.name}/micro-oci/${id}`, `/sys/fs/cgroup/micro-oci/${id}`]
    ) {
      if (exists(p)) out.push(p);
    }
  }
  return out;
}

microTest(
  "oci lock: start and delete --force racing leave nothing, never start a deleted one",
  async () => {
    await withTempDir(async (dir) => {
      const root = `${dir}/state`;
      const out = `${dir}/out`;
      Deno.mkdirSync(out);
      const b = await bundle(dir, (c) => {
        c.mounts.push({ destination: "/out", type: "bind", source: out, options: ["rbind"] });
      });
      const config = JSON.parse(Deno.readTextFileSync(`${b}/config.json`));
      const seen = { started: 0, refused: 0 };
      for (let k = 0; k < 8; k++) {
        const id = `race${k}-${crypto.randomUUID().slice(0, 6)}`;
        const marker = `${out}/${id}`;
        config.process.args = ["sh", "-c", `touch /out/${id}; exec sleep 60`];
        Deno.writeTextFileSync(`${b}/config.json`, JSON.stringify(config));
        ok(await oci(root, ["create", "-b", b, id]));
        const pid = JSON.parse(ok(await oci(root, ["state", id]))).pid as number;
        const lag = k % 4 * 10;
        const [start, del] = await Promise.all([
          (k % 2 ? sleep(lag) : Promise.resolve()).then(() => oci(root, ["start", id])),
          (k % 2 ? Promise.resolve() : sleep(lag)).then(() => oci(root, ["delete", "--force", id])),
        ]);
        try {
          assert.equal(del.code, 0, show(del));
          if (start.code === 0) {
            seen.started++;
          } else {
            seen.refused++;
            assert.match(start.stderr, /does not exist|is stopped/, show(start));
            await sleep(200);
            assert.ok(!exists(marker), `start failed, yet the command ran: ${show(start)}`);
          }
          assert.ok(!pidAlive(pid), "the container's process is gone");
          assert.deepEqual(cgroupDirs(id), []);
          assert.deepEqual([...Deno.readDirSync(root)].map((e) => e.name), []);
        } finally {
          await oci(root, ["delete", "--force", id]);
        }
      }
      console.log(`  start won ${seen.started}, delete won ${seen.refused}`);
    });
  },
);

microTest("oci lock: a verb waits for the create that holds the id", async () => {
  await withTempDir(async (dir) => {
    const root = `${dir}/state`;
    const gate = `${dir}/gate`;
    // A createRuntime hook that blocks create until the test opens the gate.
    const hook = `${dir}/hook.sh`;
    Deno.writeTextFileSync(hook, `#!/bin/sh\nwhile [ ! -e "${gate}" ]; do sleep 0.05; done\n`);
    Deno.chmodSync(hook, 0o755);
    const b = await bundle(dir, (c) => {
      c.process.args = ["sleep", "60"];
      c.hooks = { createRuntime: [{ path: hook }] };
    });
    const id = `wait-${crypto.randomUUID().slice(0, 6)}`;
    try {
      const create = oci(root, ["create", "-b", b, id]);
      await sleep(300);
      let killed = false;
      const kill = oci(root, ["kill", id, "KILL"]).then((r) => (killed = true, r));
      await sleep(500);
      assert.ok(!killed, "kill waits while create holds the id");
      Deno.writeTextFileSync(gate, "");
      ok(await create);
      ok(await kill);
    } finally {
      Deno.writeTextFileSync(gate, "");
      await oci(root, ["delete", "--force", id]);
    }
  });
});
