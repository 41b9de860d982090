/**
 * Hooks against the runtime spec's timing and namespaces: createRuntime in the runtime's
 * mount namespace once the container's namespaces exist, poststart once the user's process
 * runs (before start returns), poststop once the container is deleted (before delete
 * returns), each with the state JSON on stdin; a hook past its `timeout` is killed and fails
 * create.
 */
import assert from "node:assert/strict";
import { exists, microTest, show, withTempDir } from "./_helpers.ts";
import { bundle, oci } from "./_oci.ts";

const uniq = () => `h${crypto.randomUUID().slice(0, 8)}`;
const ENV = ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"];

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

/** A script at `path` (a file of the container's root or the host's), mode 755. */
function script(path: string, body: string): void {
  Deno.writeTextFileSync(path, `#!/bin/sh\n${body}\n`);
  Deno.chmodSync(path, 0o755);
}

/** A hook script run by whatever /proc/self/exe is when it is exec'd. */
function selfExeScript(dir: string): string {
  const path = `${dir}/selfexe.sh`;
  Deno.writeTextFileSync(path, "#!/proc/self/exe\nconsole.log('host runtime reached')\n");
  Deno.chmodSync(path, 0o755);
  return path;
}

/** `oci state ID`'s JSON. */
async function ociState(root: string, id: string): Promise<{ status: string; pid: number }> {
  const r = await oci(root, ["state", id]);
  assert.equal(r.code, 0, show(r));
  return JSON.parse(r.stdout);
}

microTest(
  "oci hooks: createContainer before pivot_root and startContainer after start, in the container",
  async () => {
    await withTempDir(async (dir) => {
      const root = `${dir}/state`;
      const out = `${dir}/out`;
      Deno.mkdirSync(out);
      const id = uniq();
      const hostMnt = Deno.readLinkSync("/proc/self/ns/mnt");
      const hostUts = Deno.readLinkSync("/proc/self/ns/uts");
      // createContainer: a host path (resolved before pivot_root, where the host's files are
      // still reachable), run in the container's namespaces.
      const cc = `${dir}/cc.sh`;
      script(
        cc,
        `cat >"${out}/cc.state"\nreadlink /proc/self/ns/mnt >"${out}/cc.mnt"\n` +
          `readlink /proc/self/ns/uts >"${out}/cc.uts"\necho "$1 $HOOKVAR" >"${out}/cc.argv"`,
      );
      const b = await bundle(dir, (c) => {
        // Written aside and renamed, so the test never reads a file the shell has created
        // but cat has not yet filled.
        c.process.args = [
          "sh",
          "-c",
          "cat /out/sc.state >/out/cmd.tmp && mv /out/cmd.tmp /out/cmd.saw; exec sleep 30",
        ];
        c.mounts.push({ destination: "/out", type: "bind", source: out, options: ["rbind", "rw"] });
        c.hooks = {
          createContainer: [{ path: cc, args: ["cc-argv0", "one"], env: ["HOOKVAR=set"] }],
          // startContainer: a path of the container's (resolved after pivot_root).
          startContainer: [{ path: "/sc.sh" }],
        };
      });
      script(
        `${b}/rootfs/sc.sh`,
        "cat >/out/sc.state\nreadlink /proc/self/ns/mnt >/out/sc.mnt\nls / >/out/sc.root",
      );
      const created = await oci(root, ["create", "-b", b, id]);
      assert.equal(created.code, 0, show(created));
      const st = JSON.parse(Deno.readTextFileSync(`${out}/cc.state`));
      assert.equal(st.id, id);
      assert.equal(st.status, "creating");
      assert.equal(st.bundle, b);
      // runc's: the pid the container's first process has in its own pid namespace.
      assert.equal(st.pid, 1);
      assert.notEqual(Deno.readTextFileSync(`${out}/cc.mnt`).trim(), hostMnt);
      assert.notEqual(Deno.readTextFileSync(`${out}/cc.uts`).trim(), hostUts);
      assert.equal(Deno.readTextFileSync(`${out}/cc.argv`).trim(), "one set");
      assert.ok(!exists(`${out}/sc.state`), "startContainer ran before start");
      const { pid } = await ociState(root, id);
      const ctrMnt = Deno.readLinkSync(`/proc/${pid}/ns/mnt`);
      assert.equal(Deno.readTextFileSync(`${out}/cc.mnt`).trim(), ctrMnt);
      const started = await oci(root, ["start", id]);
      assert.equal(started.code, 0, show(started));
      // The command ran after the hook: it saw the hook's file.
      const deadline = Date.now() + 10_000;
      while (!exists(`${out}/cmd.saw`) && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 50));
      }
      const sc = JSON.parse(Deno.readTextFileSync(`${out}/cmd.saw`));
      assert.equal(sc.status, "created");
      assert.equal(sc.id, id);
      assert.equal(Deno.readTextFileSync(`${out}/sc.mnt`).trim(), ctrMnt);
      // The container's root: the image's files, with /out bound in.
      assert.match(Deno.readTextFileSync(`${out}/sc.root`), /^sc\.sh$/m);
      const del = await oci(root, ["delete", "--force", id]);
      assert.equal(del.code, 0, show(del));
    });
  },
);

microTest(
  "oci hooks: a failing createContainer hook fails create, naming it; nothing is left",
  async () => {
    await withTempDir(async (dir) => {
      const root = `${dir}/state`;
      const cases: [Record<string, unknown>, RegExp][] = [
        [{ path: hook(dir, "bad", "exit 3") }, /createContainer\[0\].*: exit status 3/],
        [{ path: `${dir}/missing` }, /createContainer\[0\].*: ENOENT/],
        [
          { path: hook(dir, "slow", "sleep 20"), timeout: 1 },
          /createContainer\[0\].*: timed out after 1 s/,
        ],
        // CVE-2019-5736's way in: at the hook's exec /proc/self/exe is micro's trampoline
        // (it refuses, 126), never the host's Deno runtime.
        [{ path: selfExeScript(dir) }, /createContainer\[0\].*: exit status 126/],
      ];
      for (const [h, want] of cases) {
        const b = `${dir}/b${uniq()}`;
        Deno.mkdirSync(b);
        const made = await bundle(b, (c) => {
          c.process.args = ["true"];
          c.hooks = { createContainer: [h] };
        });
        const t0 = Date.now();
        const r = await oci(root, ["create", "-b", made, uniq()]);
        assert.equal(r.code, 125, show(r));
        assert.match(r.stderr, want);
        assert.ok(Date.now() - t0 < 10_000, "the timeout ended the hook");
        assert.deepEqual([...Deno.readDirSync(root)], []);
      }
    });
  },
);

microTest(
  "oci hooks: a failing startContainer hook stops the container before its command",
  async () => {
    await withTempDir(async (dir) => {
      const root = `${dir}/state`;
      const out = `${dir}/out`;
      Deno.mkdirSync(out);
      const id = uniq();
      const b = await bundle(dir, (c) => {
        c.process.args = ["touch", "/out/ran"];
        c.mounts.push({ destination: "/out", type: "bind", source: out, options: ["rbind", "rw"] });
        c.hooks = { startContainer: [{ path: "/sc.sh" }] };
      });
      script(`${b}/rootfs/sc.sh`, "touch /out/hook; exit 4");
      const created = await oci(root, ["create", "-b", b, id]);
      assert.equal(created.code, 0, show(created));
      const started = await oci(root, ["start", id]);
      assert.equal(started.code, 0, show(started));
      const deadline = Date.now() + 10_000;
      while ((await ociState(root, id)).status !== "stopped" && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 50));
      }
      assert.equal((await ociState(root, id)).status, "stopped");
      assert.ok(exists(`${out}/hook`), "the hook ran");
      assert.ok(!exists(`${out}/ran`), "the command ran after a failed startContainer hook");
      const del = await oci(root, ["delete", id]);
      assert.equal(del.code, 0, show(del));
    });
  },
);

microTest(
  "oci hooks: a startContainer hook never reaches the host's runtime through its parent's /proc/PID/exe",
  async () => {
    await withTempDir(async (dir) => {
      const root = `${dir}/state`;
      const out = `${dir}/out`;
      Deno.mkdirSync(out);
      // The hook is the image's file; its parent is micro's child, still micro's runtime
      // (the host's Deno binary) until its own exec.
      const body = "head -c 4 /proc/$PPID/exe >/out/exe.tmp 2>/out/exe.err; " +
        "mv /out/exe.tmp /out/exe; touch /out/hook";
      const make = async (sub: string, ptrace: boolean) => {
        Deno.mkdirSync(`${dir}/${sub}`);
        const b = await bundle(`${dir}/${sub}`, (c) => {
          c.process.args = ["touch", "/out/ran"];
          c.mounts.push({
            destination: "/out",
            type: "bind",
            source: out,
            options: ["rbind", "rw"],
          });
          if (ptrace) {
            for (const k of Object.keys(c.process.capabilities)) {
              c.process.capabilities[k].push("CAP_SYS_PTRACE");
            }
          }
          c.hooks = { startContainer: [{ path: "/sc.sh" }] };
        });
        script(`${b}/rootfs/sc.sh`, body);
        return b;
      };
      // With CAP_SYS_PTRACE in the host's user namespace the non-dumpable flag stops nothing
      // (runc and crun run their init from a memfd copy; micro's child is its runtime): refused.
      const exposed = await make("p", true);
      const bad = uniq();
      const r = await oci(root, ["create", "-b", exposed, bad]);
      if (r.code === 0) await oci(root, ["delete", "--force", bad]);
      assert.equal(r.code, 125, show(r));
      assert.match(r.stderr, /startContainer.*CAP_SYS_PTRACE/);
      assert.equal(r.stderr.trim().split("\n").length, 1, show(r));
      assert.ok(!exists(`${out}/hook`), "the hook ran");
      assert.deepEqual([...Deno.readDirSync(root)], []);
      // Without it the hook runs, and its parent's exe stays closed to it (not dumpable).
      const id = uniq();
      const plain = await make("q", false);
      const created = await oci(root, ["create", "-b", plain, id]);
      assert.equal(created.code, 0, show(created));
      try {
        const started = await oci(root, ["start", id]);
        assert.equal(started.code, 0, show(started));
        const deadline = Date.now() + 10_000;
        while (!exists(`${out}/ran`) && Date.now() < deadline) {
          await new Promise((res) => setTimeout(res, 50));
        }
        assert.ok(exists(`${out}/hook`), "the hook did not run");
        assert.equal(Deno.readTextFileSync(`${out}/exe`), "", "the hook read micro's runtime");
        assert.match(Deno.readTextFileSync(`${out}/exe.err`), /denied/i);
      } finally {
        const del = await oci(root, ["delete", "--force", id]);
        assert.equal(del.code, 0, show(del));
      }
    });
  },
);

microTest(
  "oci: joining a pid namespace where a process may hold CAP_SYS_PTRACE is refused (it could take over micro's child)",
  async () => {
    await withTempDir(async (dir) => {
      const root = `${dir}/state`;
      /** A detached holder of a pid namespace, and a bundle that joins it. */
      const pair = async (sub: string, ptrace: boolean) => {
        Deno.mkdirSync(`${dir}/${sub}a`);
        const a = await bundle(`${dir}/${sub}a`, (c) => {
          c.process.args = ["sleep", "60"];
          if (!ptrace) return;
          for (const k of Object.keys(c.process.capabilities)) {
            c.process.capabilities[k] = [...c.process.capabilities[k], "CAP_SYS_PTRACE"];
          }
        });
        const holder = uniq();
        const ran = await oci(root, ["run", "-d", "-b", a, holder]);
        assert.equal(ran.code, 0, show(ran));
        const { pid } = await ociState(root, holder);
        Deno.mkdirSync(`${dir}/${sub}b`);
        const b = await bundle(`${dir}/${sub}b`, (c) => {
          c.process.args = ["true"];
          c.linux.namespaces = c.linux.namespaces.map((n: { type: string }) =>
            n.type === "pid" ? { type: "pid", path: `/proc/${pid}/ns/pid` } : n
          );
        });
        return { holder, b };
      };
      const held: string[] = [];
      try {
        const p = await pair("p", true);
        held.push(p.holder);
        const joiner = uniq();
        const r = await oci(root, ["run", "-b", p.b, joiner]);
        if (r.code === 0) await oci(root, ["delete", "--force", joiner]);
        assert.equal(r.code, 125, show(r));
        assert.match(r.stderr, /pid.*CAP_SYS_PTRACE/);
        assert.equal(r.stderr.trim().split("\n").length, 1, show(r));
        // Without it there, the join is made.
        const q = await pair("q", false);
        held.push(q.holder);
        const ok = await oci(root, ["run", "-b", q.b, uniq()]);
        assert.equal(ok.code, 0, show(ok));
      } finally {
        for (const h of held) await oci(root, ["delete", "--force", h]);
      }
    });
  },
);
