/**
 * `micro exec` into running containers, root and rootless: the exec'd process must hold
 * exactly what the container's PID 1 holds (capability sets, seccomp, no_new_privs, ids,
 * namespaces, cgroups), looked at from inside both.
 */
import assert from "node:assert/strict";
import {
  Background,
  IMAGE,
  lacking,
  MICRO,
  microTest,
  NEEDS,
  ok,
  run,
  show,
  withTempDir,
} from "./_helpers.ts";
import { assertSameAsInit, INIT } from "./_probe.ts";

const ROOTLESS = { uid: 1000, gid: 1000 };

/** micro as root, or as the rootless user with its own store (argv for Background/run). */
function as(user: typeof ROOTLESS | undefined, store: string | undefined, args: string[]) {
  if (!user) return { cmd: MICRO, args };
  return {
    cmd: "setpriv",
    args: [
      `--reuid=${user.uid}`,
      `--regid=${user.gid}`,
      "--clear-groups",
      "--",
      "env",
      "-u",
      "XDG_RUNTIME_DIR",
      `MICRO_ROOT=${store}`,
      "HOME=/tmp",
      MICRO,
      ...args,
    ],
  };
}

/**
 * Runs `fn` with a container NAME running INIT (under `opts`), stopped at the end whatever
 * happens.
 */
async function withContainer(
  opts: string[],
  fn: (
    name: string,
    exec: (args: string[], stdin?: string) => ReturnType<typeof run>,
  ) => Promise<void>,
  user?: typeof ROOTLESS,
): Promise<void> {
  await withTempDir(async (dir) => {
    if (user) Deno.chownSync(dir, user.uid, user.gid);
    const name = `exec-${crypto.randomUUID().slice(0, 8)}`;
    const start = as(user, dir, [
      "run",
      "--rm",
      "--name",
      name,
      "--tmpfs",
      "/tmp",
      ...opts,
      IMAGE,
      "sh",
      "-c",
      INIT,
    ]);
    const bg = new Background(start.args, { cmd: start.cmd });
    const exec = (args: string[], stdin?: string) => {
      const c = as(user, dir, ["exec", ...args]);
      return run(c.args, { cmd: c.cmd, stdin });
    };
    try {
      assert.ok(await bg.waitForStdout("ready"), `container did not start: ${bg.stderr}`);
      await fn(name, exec);
    } finally {
      await exec([name, "touch", "/tmp/stop"]);
      const r = await bg.result();
      assert.equal(r.code, 0, show(r));
    }
  });
}

microTest(
  "exec into a default container: the same caps, seccomp, ids, namespaces, cgroups as PID 1",
  async () => {
    await withContainer([], async (name, exec) => {
      const seen = await assertSameAsInit(name, exec);
      assert.match(seen, /uid=0\(root\)/);
      // A process of the container's pid namespace (PID 1 is the container's), at its cwd.
      const [pid, cwd] = ok(await exec([name, "sh", "-c", "echo $$; pwd"])).split("\n");
      assert.ok(Number(pid) > 1 && Number(pid) < 100, pid);
      assert.equal(cwd, "/");
    });
  },
);

for (const user of [undefined, ROOTLESS]) {
  microTest(
    `${user ? "rootless: " : ""}exec into a hardened container: no more than PID 1 (no_new_privs)`,
    async () => {
      await withContainer(["--profile", "hardened"], async (name, exec) => {
        const seen = await assertSameAsInit(name, exec);
        assert.match(seen, /^NoNewPrivs:\s+1$/m);
        assert.match(seen, /^CapEff:\s+0+$/m);
        // as root: a user namespace of its own, nobody in it; rootless without subordinate
        // ids only the caller's id is mapped, as root (README "Rootless")
        assert.match(seen, user ? /uid=0\(root\)/ : /uid=65534/);
        // Root of the container's user namespace gets no more: its bounding set is empty.
        const root = ok(
          await exec([
            "-u",
            "0",
            name,
            "sh",
            "-c",
            "id -u; grep -E '^Cap(Eff|Bnd)' /proc/self/status",
          ]),
        );
        assert.match(root, /^0\nCapEff:\s+0+\nCapBnd:\s+0+\n$/);
        // stdin with -i.
        assert.equal(ok(await exec(["-i", name, "cat"], "through stdin\n")), "through stdin\n");
      }, user);
    },
    { ignore: user ? lacking(NEEDS.setpriv) : undefined },
  );
}

microTest("exec -u, -w, -e, --env-file and the command's exit code", async () => {
  await withTempDir(async (dir) => {
    Deno.writeTextFileSync(`${dir}/env`, "# vars\nFROM_FILE=yes\n");
    await withContainer([], async (name, exec) => {
      const r = await exec([
        "-u",
        "1000:1000",
        "-w",
        "/tmp",
        "-e",
        "FOO=bar",
        "--env-file",
        `${dir}/env`,
        name,
        "sh",
        "-c",
        'id -u; id -g; pwd; echo "$FOO $FROM_FILE"; grep CapEff /proc/self/status; exit 7',
      ]);
      assert.equal(r.code, 7, show(r));
      assert.deepEqual(r.stdout.trim().split("\n").slice(0, 4), [
        "1000",
        "1000",
        "/tmp",
        "bar yes",
      ]);
      assert.match(r.stdout, /CapEff:\s+0+\n/);
      assert.equal((await exec([name, "sh", "-c", "kill -9 $$"])).code, 137);
      // A name, looked up in the container's own /etc/passwd.
      assert.equal(ok(await exec(["-u", "app", name, "id", "-un"])), "app\n");
      const nobody = await exec(["-u", "nosuchuser", name, "true"]);
      assert.equal(nobody.code, 125);
      assert.match(nobody.stderr, /user "nosuchuser" not found/);
      const missing = await exec([name, "/no/such/command"]);
      assert.equal(missing.code, 127, show(missing));
      assert.equal(missing.stderr.trim().split("\n").length, 1, missing.stderr);
    });
  });
});

microTest("exec leaks no fd beyond stdio and its cwd is inside the container", async () => {
  await withContainer(["--profile", "hardened"], async (name, exec) => {
    assert.equal(ok(await exec([name, "sh", "-c", "ls /proc/$$/fd; :"])), "0\n1\n2\n");
    assert.equal(
      ok(await exec(["-w", "/proc", name, "sh", "-c", "pwd; readlink /proc/$$/cwd"])),
      "/proc\n/proc\n",
    );
    // /proc/self/exe is the command, never micro's runtime.
    assert.equal(ok(await exec([name, "readlink", "/proc/self/exe"])).trim(), "/bin/busybox");
  });
});

microTest("exec -t gives a terminal (through script); -d returns at once", async () => {
  await withContainer([], async (name, exec) => {
    const tty = await run(
      [
        "-qec",
        `${MICRO} exec -t ${name} sh -c 'test -t 0 && test -t 1 && echo TTY; exit 3'`,
        "/dev/null",
      ],
      { cmd: "script" },
    );
    assert.equal(tty.code, 3, show(tty));
    assert.match(tty.stdout, /TTY/);
    const t0 = Date.now();
    const d = await exec(["-d", name, "sh", "-c", "sleep 1; touch /tmp/detached"]);
    assert.equal(d.code, 0, show(d));
    assert.ok(Date.now() - t0 < 900, `exec -d took ${Date.now() - t0} ms`);
    // By the clock, not a count of execs (they got faster: 30 took less than its sleep 1).
    let found = false;
    for (const until = Date.now() + 20_000; !found && Date.now() < until;) {
      found = (await exec([name, "test", "-e", "/tmp/detached"])).code === 0;
      if (!found) await new Promise((r) => setTimeout(r, 100));
    }
    assert.ok(found, "the detached command did not run to its end");
  });
}, { ignore: NEEDS.script });

microTest(
  "exec into a container that is gone, or was never there: one line, exit 125",
  async () => {
    const name = `exec-gone-${crypto.randomUUID().slice(0, 8)}`;
    ok(await run(["run", "--rm", "--name", name, IMAGE, "true"]));
    for (const target of [name, "0123456789ab"]) {
      const r = await run(["exec", target, "true"]);
      assert.equal(r.code, 125, show(r));
      assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
      assert.match(r.stderr, /no such container/);
    }
  },
);

microTest("exec finds a container by a unique prefix of its id", async () => {
  await withContainer([], async (name, exec) => {
    const file = `/run/micro/${name}/state.json`;
    const st = JSON.parse(Deno.readTextFileSync(file));
    // It holds the command's environment: its owner's alone.
    assert.equal(Deno.statSync(file).mode! & 0o777, 0o600);
    assert.match(st.containerId, /^[0-9a-f]{64}$/);
    assert.equal(
      ok(await exec([st.containerId.slice(0, 10), "hostname"])),
      ok(await exec([name, "hostname"])),
    );
  });
});

microTest("rootless: exec holds the same as PID 1", async () => {
  await withContainer([], async (name, exec) => {
    const seen = await assertSameAsInit(name, exec);
    assert.match(seen, /uid=0\(root\)/);
    const u = await exec(["-w", "/", name, "sh", "-c", "cat /proc/self/uid_map"]);
    assert.match(ok(u), /^\s*0\s+1000\s+1\s*$/m);
  }, ROOTLESS);
}, { ignore: lacking(NEEDS.setpriv) });
