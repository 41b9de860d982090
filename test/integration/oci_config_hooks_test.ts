/**
 * Hooks against the runtime spec's timing and namespaces: createRuntime in the runtime's
 * mount namespace once the container's namespaces exist, poststart once the user's process
 * runs (before start returns), poststop once the container is deleted (before delete
 * returns), each with the state JSON on stdin; a hook past its `timeout` is killed and fails
 * create.
 */
import assert from "node:assert/strict";
import { MICRO, microTest, show, withTempDir } from "./_helpers.ts";
import { bundle } from "./_oci.ts";

const uniq = () => `h${crypto.randomUUID().slice(0, 8)}`;
const ENV = ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"];

/** `micro --root ROOT ARGS`, output through files (create's container keeps its stdio). */
async function oci(root: string, args: string[]) {
  const out = `${root}-out-${crypto.randomUUID()}`;
  const r = await new Deno.Command("sh", {
    args: ["-c", `exec "$0" "$@" >"${out}.1" 2>"${out}.2"`, MICRO, "--root", root, ...args],
    stdin: "null",
  }).output();
  const read = (p: string) => {
    const t = Deno.readTextFileSync(p);
    Deno.removeSync(p);
    return t;
  };
  return { code: r.code, signal: null, stdout: read(`${out}.1`), stderr: read(`${out}.2`) };
}

/** A hook script in `dir`: reads the state from stdin into NAME.state, then runs `body`. */
function hook(dir: string, name: string, body: string): string {
  const path = `${dir}/${name}.sh`;
  Deno.writeTextFileSync(
    path,
    `#!/bin/sh\nstate=$(cat)\necho "$state" >"${dir}/${name}.state"\n` +
      `pid=$(echo "$state" | sed -n 's/.*"pid":\\([0-9]*\\).*/\\1/p')\n${body}\n`,
  );
  Deno.chmodSync(path, 0o755);
  return path;
}

microTest("oci hooks: each at its moment, in its namespaces, with the state", async () => {
  await withTempDir(async (dir) => {
    const root = `${dir}/state`;
    const id = uniq();
    const hostMnt = Deno.readLinkSync("/proc/self/ns/mnt");
    const hostUts = Deno.readLinkSync("/proc/self/ns/uts");
    const b = await bundle(dir, (c) => {
      c.process.args = ["sleep", "30"];
      c.hooks = {
        createRuntime: [{
          path: hook(
            dir,
            "cr",
            `readlink /proc/self/ns/mnt >"${dir}/cr.self"\n` +
              `readlink /proc/$pid/ns/mnt >"${dir}/cr.mnt"\n` +
              `readlink /proc/$pid/ns/uts >"${dir}/cr.uts"`,
          ),
          env: ENV,
        }],
        poststart: [{
          path: hook(dir, "ps", `cat /proc/$pid/cmdline | tr '\\0' ' ' >"${dir}/ps.cmd"`),
          env: ENV,
        }],
        poststop: [{
          path: hook(
            dir,
            "stop",
            `if [ -e "${root}/${id}" ]; then echo there; else echo gone; fi >"${dir}/stop.out"`,
          ),
          env: ENV,
        }],
      };
    });
    const created = await oci(root, ["create", "-b", b, id]);
    assert.equal(created.code, 0, show(created));
    const cr = JSON.parse(Deno.readTextFileSync(`${dir}/cr.state`));
    assert.equal(cr.id, id);
    assert.equal(cr.status, "creating");
    assert.ok(cr.pid > 0);
    // In the runtime's mount namespace; the container's namespaces exist already.
    assert.equal(Deno.readTextFileSync(`${dir}/cr.self`).trim(), hostMnt);
    assert.notEqual(Deno.readTextFileSync(`${dir}/cr.mnt`).trim(), hostMnt);
    assert.notEqual(Deno.readTextFileSync(`${dir}/cr.uts`).trim(), hostUts);
    assert.ok(!exists(`${dir}/ps.state`), "poststart ran before start");
    const started = await oci(root, ["start", id]);
    assert.equal(started.code, 0, show(started));
    // Before start returned, the user's process ran (sleep, not micro's waiting child).
    assert.match(Deno.readTextFileSync(`${dir}/ps.cmd`), /^sleep 30/);
    assert.equal(JSON.parse(Deno.readTextFileSync(`${dir}/ps.state`)).status, "running");
    assert.ok(!exists(`${dir}/stop.state`), "poststop ran before delete");
    const del = await oci(root, ["delete", "--force", id]);
    assert.equal(del.code, 0, show(del));
    // Before delete returned, after the container was gone.
    assert.equal(JSON.parse(Deno.readTextFileSync(`${dir}/stop.state`)).status, "stopped");
    assert.equal(Deno.readTextFileSync(`${dir}/stop.out`).trim(), "gone");
  });
});

microTest("oci hooks: a prestart hook past its timeout is killed and fails create", async () => {
  await withTempDir(async (dir) => {
    const root = `${dir}/state`;
    const b = await bundle(dir, (c) => {
      c.process.args = ["true"];
      c.hooks = {
        // A child of the hook holds its stderr: the timeout must not wait for that pipe.
        createRuntime: [{
          path: hook(dir, "slow", `sleep 20 & echo $! >"${dir}/slow.child"; wait`),
          env: ENV,
          timeout: 1,
        }],
      };
    });
    const t0 = Date.now();
    const r = await oci(root, ["create", "-b", b, uniq()]);
    const took = Date.now() - t0;
    assert.equal(r.code, 125, show(r));
    assert.match(r.stderr, /createRuntime/);
    assert.match(r.stderr, /tim/i);
    assert.ok(took < 8000, `create took ${took} ms with a 1 s hook timeout`);
    assert.deepEqual([...Deno.readDirSync(root)], []);
    // The hook itself was killed (runc and crun kill the hook process, not its children).
    const child = Number(Deno.readTextFileSync(`${dir}/slow.child`).trim());
    try {
      Deno.kill(child, "SIGKILL");
    } catch {
      // gone
    }
  });
});

function exists(p: string): boolean {
  try {
    Deno.statSync(p);
    return true;
  } catch {
    return false;
  }
}

for (const kind of ["createContainer", "startContainer"]) {
  microTest(`oci hooks: a ${kind} hook is refused (never skipped), nothing is made`, async () => {
    await withTempDir(async (dir) => {
      const root = `${dir}/state`;
      const ran = `${dir}/ran`;
      const b = await bundle(dir, (c) => {
        c.process.args = ["true"];
        c.hooks = { [kind]: [{ path: hook(dir, "h", `touch "${ran}"`) }] };
      });
      const id = uniq();
      for (const verb of ["create", "run"]) {
        const r = await oci(root, [verb, "-b", b, id]);
        assert.equal(r.code, 125, show(r));
        assert.match(r.stderr, new RegExp(`hooks\\.${kind}: hooks run inside the container`));
        assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
      }
      assert.throws(() => Deno.statSync(ran), "the hook never ran");
      let left: string[] = [];
      try {
        left = [...Deno.readDirSync(root)].map((e) => e.name);
      } catch {
        // never made
      }
      assert.deepEqual(left, []);
    });
  });
}
