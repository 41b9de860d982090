/**
 * micro as an OCI runtime: bundles made with `micro oci spec` and the test image, driven
 * through create/start/state/kill/delete and run, as podman's conmon and containerd's shim
 * drive runc. Every test keeps its state under a --root in its own temp dir.
 */
import assert from "node:assert/strict";
import {
  exists,
  MICRO,
  microTest,
  ok,
  pidAlive,
  run,
  type RunOptions,
  show,
  sleep,
  waitFor,
  withTempDir,
} from "./_helpers.ts";
import { bundle } from "./_oci.ts";

/**
 * `micro --root ROOT ARGS`: create's container keeps the caller's stdout and stderr, so
 * they go to files here (a pipe would stay open as long as the container runs).
 */
async function oci(root: string, args: string[], opts: RunOptions = {}) {
  const out = `${root.slice(0, root.lastIndexOf("/"))}/out-${crypto.randomUUID()}`;
  const cmd = new Deno.Command("sh", {
    args: ["-c", `exec "$0" "$@" >"${out}.1" 2>"${out}.2"`, MICRO, "--root", root, ...args],
    stdin: "null",
    cwd: opts.cwd,
  });
  const r = await cmd.output();
  const read = (p: string) => {
    const t = Deno.readTextFileSync(p);
    Deno.removeSync(p);
    return t;
  };
  return { code: r.code, signal: null, stdout: read(`${out}.1`), stderr: read(`${out}.2`) };
}

function state(json: string): { status: string; pid: number; id: string; bundle: string } {
  return JSON.parse(json);
}

function cgroupDirs(id: string): string[] {
  const out: string[] = [];
  for (const e of Deno.readDirSync("/sys/fs/cgroup")) {
    for (
      const p of [`/sys/fs/cgroup/${e.name}/micro-oci/${id}`, `/sys/fs/cgroup/micro-oci/${id}`]
    ) {
      try {
        Deno.statSync(p);
        out.push(p);
      } catch {
        // not there
      }
    }
  }
  return out;
}

function exe(pid: number): string {
  try {
    return Deno.readLinkSync(`/proc/${pid}/exe`);
  } catch {
    return "";
  }
}

const uniq = () => `t${crypto.randomUUID().slice(0, 8)}`;

microTest("oci: create leaves the process waiting before its exec; start runs it", async () => {
  await withTempDir(async (dir) => {
    const root = `${dir}/state`;
    const b = await bundle(dir, (c) => (c.process.args = ["sleep", "60"]));
    const id = uniq();
    try {
      ok(await oci(root, ["create", "--bundle", b, "--pid-file", `${dir}/pid`, id]));
      const s = state(ok(await oci(root, ["state", id])));
      assert.equal(s.status, "created");
      assert.equal(s.id, id);
      assert.equal(s.bundle, b);
      assert.ok(s.pid > 0);
      assert.equal(Deno.readTextFileSync(`${dir}/pid`), String(s.pid));
      // Not exec'd yet: its executable is still micro's runtime, not the command.
      assert.ok(pidAlive(s.pid));
      assert.doesNotMatch(exe(s.pid), /busybox|sleep/);
      assert.ok(cgroupDirs(id).length > 0, "the cgroup exists at create");
      const list = ok(await oci(root, ["list", "--format", "json"]));
      assert.equal(JSON.parse(list)[0].status, "created");

      ok(await oci(root, ["start", id]));
      assert.ok(await waitFor(() => /busybox|sleep/.test(exe(s.pid)), 5000), exe(s.pid));
      assert.equal(state(ok(await oci(root, ["state", id]))).status, "running");
      const again = await oci(root, ["start", id]);
      assert.equal(again.code, 125, show(again));

      ok(await oci(root, ["kill", id, "KILL"]));
      assert.ok(await waitFor(() => !pidAlive(s.pid), 5000));
      assert.equal(state(ok(await oci(root, ["state", id]))).status, "stopped");
      ok(await oci(root, ["delete", id]));
      assert.deepEqual(cgroupDirs(id), []);
      assert.deepEqual([...Deno.readDirSync(root)], []);
      const gone = await oci(root, ["state", id]);
      assert.equal(gone.code, 125, show(gone));
      assert.match(gone.stderr, /does not exist/);
    } finally {
      await oci(root, ["delete", "--force", id]);
    }
  });
});

microTest("oci: delete refuses a running container; --force kills and removes it", async () => {
  await withTempDir(async (dir) => {
    const root = `${dir}/state`;
    const b = await bundle(dir, (c) => (c.process.args = ["sleep", "60"]));
    const id = uniq();
    try {
      ok(await oci(root, ["create", "-b", b, id]));
      ok(await oci(root, ["start", id]));
      const { pid } = state(ok(await oci(root, ["state", id])));
      const refused = await oci(root, ["delete", id]);
      assert.equal(refused.code, 125, show(refused));
      assert.match(refused.stderr, /running/);
      ok(await oci(root, ["delete", "--force", id]));
      assert.ok(await waitFor(() => !pidAlive(pid), 5000));
      assert.deepEqual(cgroupDirs(id), []);
      assert.deepEqual([...Deno.readDirSync(root)], []);
      // Deleting what is not there with --force is not an error (containerd relies on it).
      ok(await oci(root, ["delete", "--force", id]));
    } finally {
      await oci(root, ["delete", "--force", id]);
    }
  });
});

microTest("oci: an id over NAME_MAX is one line up front; nothing is made", async () => {
  await withTempDir(async (dir) => {
    const root = `${dir}/state`;
    const b = await bundle(dir, (c) => (c.process.args = ["true"]));
    const id = `${uniq()}${"x".repeat(300)}`;
    for (const verb of [["create", "-b", b, id], ["run", "-b", b, id], ["state", id]]) {
      const r = await oci(root, verb);
      assert.equal(r.code, 125, show(r));
      assert.equal(r.stderr.trim().split("\n").length, 1, show(r));
      assert.match(r.stderr, /invalid container id: \d+ characters, over 255/);
    }
    let left: string[] = [];
    try {
      left = [...Deno.readDirSync(root)].map((e) => e.name);
    } catch { /* never made */ }
    assert.deepEqual(left, []);
    assert.deepEqual(cgroupDirs(id.slice(0, 255)), []);
  });
});

microTest(
  "oci: a create killed half-way (state creating): every verb is safe on its stale pid",
  async () => {
    await withTempDir(async (dir) => {
      const root = `${dir}/state`;
      Deno.mkdirSync(root, { mode: 0o700 });
      // A host process that has the recorded pid now: start time not the one create recorded.
      const bystander = new Deno.Command("sleep", { args: ["60"] }).spawn();
      try {
        const stat = Deno.readTextFileSync(`/proc/${bystander.pid}/stat`);
        const start = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19]);
        const craft = (id: string, startTime: number) => {
          Deno.mkdirSync(`${root}/${id}`, { mode: 0o711 });
          Deno.writeTextFileSync(
            `${root}/${id}/state.json`,
            JSON.stringify({
              id,
              pid: bystander.pid,
              startTime,
              bundle: dir,
              rootfs: `${dir}/rootfs`,
              created: new Date().toISOString(),
              owner: "root",
              annotations: {},
              cgroups: [],
              creating: true,
            }),
          );
        };
        // The pid was given out again: the container is stopped, and nothing signals the pid.
        const stale = uniq();
        craft(stale, start + 1);
        assert.match(ok(await oci(root, ["state", stale])), /"status": ?"stopped"/);
        for (const verb of [["start", stale], ["kill", stale, "KILL"], ["exec", stale, "true"]]) {
          const r = await oci(root, verb);
          assert.equal(r.code, 125, show(r));
          assert.equal(r.stderr.trim().split("\n").length, 1, show(r));
        }
        ok(await oci(root, ["delete", stale]));
        assert.ok(pidAlive(bystander.pid), "delete killed a process that only had the pid");
        assert.equal(exists(`${root}/${stale}`), false);
        // Its own child, still there (the pid and start time match): being created, so
        // start, kill and exec refuse; delete needs --force, as runc's.
        const busy = uniq();
        craft(busy, start);
        assert.match(ok(await oci(root, ["state", busy])), /"status": ?"creating"/);
        for (
          const verb of [["start", busy], ["kill", busy], ["exec", busy, "true"], ["delete", busy]]
        ) {
          const r = await oci(root, verb);
          assert.equal(r.code, 125, show(r));
          assert.equal(r.stderr.trim().split("\n").length, 1, show(r));
        }
        assert.ok(pidAlive(bystander.pid));
        ok(await oci(root, ["delete", "--force", busy]));
        assert.ok(await waitFor(() => !pidAlive(bystander.pid), 5000), "--force spared it");
        assert.equal(exists(`${root}/${busy}`), false);
      } finally {
        try {
          bystander.kill("SIGKILL");
        } catch { /* gone */ }
        await bystander.status;
      }
    });
  },
);

microTest("oci: delete of a created container kills its waiting process", async () => {
  await withTempDir(async (dir) => {
    const root = `${dir}/state`;
    const b = await bundle(dir, (c) => (c.process.args = ["sleep", "60"]));
    const id = uniq();
    ok(await oci(root, ["create", "-b", b, id]));
    const { pid } = state(ok(await oci(root, ["state", id])));
    ok(await oci(root, ["delete", id]));
    assert.ok(await waitFor(() => !pidAlive(pid), 5000));
    assert.deepEqual(cgroupDirs(id), []);
  });
});

microTest(
  "oci: run -b: the command's output and exit code, config fields seen inside",
  async () => {
    await withTempDir(async (dir) => {
      const root = `${dir}/state`;
      const script = [
        "id",
        "pwd",
        "hostname",
        'echo "FOO=$FOO"',
        "cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max",
        "grep CapEff /proc/self/status",
        "touch /rootfile 2>&1 || true",
        "grep ' /scratch ' /proc/mounts",
        "echo x > /scratch/f && echo scratch-ok",
        "exit 7",
      ].join("; ");
      const b = await bundle(dir, (c) => {
        c.process.args = ["sh", "-c", script];
        c.process.env.push("FOO=bar");
        c.process.cwd = "/tmp";
        c.process.user = { uid: 1000, gid: 1000, additionalGids: [5] };
        c.hostname = "oci-test";
        c.mounts.push({
          destination: "/scratch",
          type: "tmpfs",
          source: "tmpfs",
          options: ["nosuid", "size=1m"],
        });
        c.linux.resources.memory = { limit: 64 * 1024 * 1024 };
      });
      const id = uniq();
      const r = await oci(root, ["run", "-b", b, id]);
      assert.equal(r.code, 7, show(r));
      assert.match(r.stdout, /uid=1000\(app\) gid=1000\(app\) groups=5/);
      assert.match(r.stdout, /^\/tmp$/m);
      assert.match(r.stdout, /^oci-test$/m);
      assert.match(r.stdout, /^FOO=bar$/m);
      assert.match(r.stdout, /^67108864$/m);
      // runc's spec: CAP_AUDIT_WRITE, CAP_KILL, CAP_NET_BIND_SERVICE.
      assert.match(r.stdout, /CapEff:\s+0000000020000420/);
      assert.match(r.stdout, /Read-only file system/);
      assert.match(r.stdout, /tmpfs \/scratch tmpfs rw,nosuid/);
      assert.match(r.stdout, /scratch-ok/);
      assert.deepEqual(cgroupDirs(id), []);
      assert.deepEqual([...Deno.readDirSync(root)], []);
    });
  },
);

microTest(
  "oci: runc-style invocations reach the OCI verbs (global flag, -b, a runc link)",
  async () => {
    await withTempDir(async (dir) => {
      const root = `${dir}/state`;
      const b = await bundle(dir, (c) => (c.process.args = ["true"]));
      // micro run -b BUNDLE ID, with no "oci": the bundle flag routes it.
      const r = await run(["--root", root, "run", "-b", b, uniq()], { stdin: "" });
      assert.equal(r.code, 0, show(r));
      const direct = await run(["run", "--bundle", b, uniq()], {
        env: { XDG_RUNTIME_DIR: dir },
        stdin: "",
      });
      assert.equal(direct.code, 0, show(direct));
      // A link named runc: `runc --version` and `runc list` are runc's.
      Deno.symlinkSync(MICRO, `${dir}/runc`);
      const v = await run(["--version"], { cmd: `${dir}/runc` });
      assert.match(ok(v), /^micro version .*\ncommit: .*\nspec: 1\.2\.0/);
      const l = await run(["--root", root, "list"], { cmd: `${dir}/runc` });
      assert.match(ok(l), /^ID\s+PID\s+STATUS\s+BUNDLE/);
      // runc's error log: --log with --log-format json gets the error as JSON.
      const bad = await run([
        "--root",
        root,
        "--log",
        `${dir}/log`,
        "--log-format",
        "json",
        "state",
        "nope",
      ]);
      assert.equal(bad.code, 125, show(bad));
      const line = JSON.parse(Deno.readTextFileSync(`${dir}/log`).trim());
      assert.equal(line.level, "error");
      assert.match(line.msg, /does not exist/);
    });
  },
);

microTest("oci: a bad config.json is one error line, and nothing is left", async () => {
  await withTempDir(async (dir) => {
    const root = `${dir}/state`;
    const b = await bundle(dir, (c) => (c.process.bogus = 1));
    const r = await oci(root, ["create", "-b", b, uniq()]);
    assert.equal(r.code, 125, show(r));
    assert.match(r.stderr, /config\.json: process\.bogus: unknown field/);
    Deno.writeTextFileSync(`${b}/config.json`, "{");
    const r2 = await oci(root, ["create", "-b", b, uniq()]);
    assert.match(r2.stderr, /not valid JSON/);
    assert.deepEqual([...Deno.readDirSync(root)], []);
    await sleep(0);
  });
});

/** Receives the terminal's master on a console socket, starts the container, reads it. */
const RECVTTY = `
import socket, array, subprocess, os, sys, time
micro, root, bundle, sock, cid = sys.argv[1:6]
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); s.bind(sock); s.listen(1)
p = subprocess.Popen([micro, "oci", "--root", root, "create", "-b", bundle, "--console-socket", sock, cid])
c, _ = s.accept()
fds = array.array("i")
msg, anc, flags, addr = c.recvmsg(16, socket.CMSG_LEN(4))
for lvl, typ, data in anc: fds.frombytes(data[:4])
if p.wait() != 0: sys.exit("create failed")
subprocess.run([micro, "oci", "--root", root, "start", cid], check=True)
out = b""
try:
    while True:
        d = os.read(fds[0], 4096)
        if not d: break
        out += d
except OSError:
    pass
sys.stdout.write(out.decode())
`;

const NO_PYTHON = (() => {
  try {
    return new Deno.Command("python3", { args: ["-c", "1"] }).outputSync().success
      ? undefined
      : "python3 does not run";
  } catch {
    return "no python3 (the console socket's receiver)";
  }
})();

microTest("oci: --console-socket gets the terminal's master (SCM_RIGHTS), sized", async () => {
  await withTempDir(async (dir) => {
    const root = `${dir}/state`;
    const b = await bundle(dir, (c) => {
      c.process.terminal = true;
      c.process.consoleSize = { height: 30, width: 100 };
      c.process.args = ["sh", "-c", "tty; stty size; echo done"];
    });
    const id = uniq();
    try {
      const out = await new Deno.Command("python3", {
        args: ["-c", RECVTTY, MICRO, root, b, `${dir}/console.sock`, id],
        stdin: "null",
      }).output();
      const text = new TextDecoder().decode(out.stdout);
      assert.ok(out.success, new TextDecoder().decode(out.stderr));
      assert.match(text, /^\/dev\/pts\/0\r?$/m);
      assert.match(text, /^30 100\r?$/m);
      assert.match(text, /done/);
    } finally {
      await oci(root, ["delete", "--force", id]);
    }
  });
}, { ignore: NO_PYTHON });

microTest("oci: hooks run with the state on stdin, at create, start and delete", async () => {
  await withTempDir(async (dir) => {
    const root = `${dir}/state`;
    const log = `${dir}/hooks.log`;
    // Each hook logs its name, the state it read, and the namespace it runs in beside the
    // container's (runtime hooks run in micro's, the host's here).
    Deno.writeTextFileSync(
      `${dir}/hook.sh`,
      `#!/bin/sh
st=$(cat)
pid=$(echo "$st" | sed 's/.*"pid":\\([0-9]*\\).*/\\1/')
echo "$1 $HOOK_ENV $st self=$(readlink /proc/self/ns/net) ct=$(readlink /proc/$pid/ns/net 2>/dev/null)" >> ${log}
`,
      { mode: 0o755 },
    );
    const hook = (name: string) => ({
      path: `${dir}/hook.sh`,
      args: ["hook.sh", name],
      env: ["HOOK_ENV=yes"],
      timeout: 10,
    });
    const b = await bundle(dir, (c) => {
      c.process.args = ["sleep", "60"];
      c.hooks = {
        prestart: [hook("prestart")],
        createRuntime: [hook("createRuntime")],
        poststart: [hook("poststart")],
        poststop: [hook("poststop")],
      };
    });
    const id = uniq();
    try {
      ok(await oci(root, ["create", "-b", b, id]));
      const { pid } = state(ok(await oci(root, ["state", id])));
      const lines = () => Deno.readTextFileSync(log).trim().split("\n");
      assert.equal(lines().length, 2, lines().join("\n"));
      const host = Deno.readLinkSync("/proc/self/ns/net");
      for (const [k, name] of ["prestart", "createRuntime"].entries()) {
        const l = lines()[k];
        assert.ok(l.startsWith(`${name} yes {`), l);
        assert.match(l, new RegExp(`"status":"creating","pid":${pid}`));
        assert.match(l, new RegExp(`self=${host.replace(/[[\]]/g, "\\$&")}`));
        assert.doesNotMatch(l, new RegExp(`ct=${host.replace(/[[\]]/g, "\\$&")}`));
        assert.match(l, /ct=net:\[/);
      }
      ok(await oci(root, ["start", id]));
      assert.match(lines()[2], /^poststart yes .*"status":"running"/);
      ok(await oci(root, ["delete", "--force", id]));
      assert.match(lines()[3], /^poststop yes .*"status":"stopped"/);
    } finally {
      await oci(root, ["delete", "--force", id]);
    }
  });
});

microTest("oci: a failing prestart hook fails create, and nothing is left", async () => {
  await withTempDir(async (dir) => {
    const root = `${dir}/state`;
    const b = await bundle(dir, (c) => {
      c.process.args = ["sleep", "60"];
      c.hooks = { prestart: [{ path: "/bin/sh", args: ["sh", "-c", "echo nope >&2; exit 3"] }] };
    });
    const id = uniq();
    const r = await oci(root, ["create", "-b", b, id]);
    assert.equal(r.code, 125, show(r));
    assert.match(r.stderr, /hooks\.prestart\[0\] \/bin\/sh: exit status 3: nope/);
    assert.deepEqual([...Deno.readDirSync(root)], []);
    assert.deepEqual(cgroupDirs(id), []);
  });
});

microTest(
  "oci: exec runs a process in the container's namespaces, cgroup and restrictions",
  async () => {
    await withTempDir(async (dir) => {
      const root = `${dir}/state`;
      const b = await bundle(dir, (c) => {
        c.process.args = ["sleep", "60"];
        c.hostname = "exec-test";
      });
      Deno.writeTextFileSync(`${b}/rootfs/only-in-rootfs`, "yes\n");
      const id = uniq();
      try {
        ok(await oci(root, ["create", "-b", b, id]));
        ok(await oci(root, ["start", id]));
        const { pid } = state(ok(await oci(root, ["state", id])));
        const r = await oci(root, [
          "exec",
          id,
          "sh",
          "-c",
          "hostname; cat /only-in-rootfs; ps -o pid,comm | grep ' 1 '; grep CapEff /proc/self/status; " +
          "cat /proc/self/cgroup | grep pids; exit 5",
        ]);
        assert.equal(r.code, 5, show(r));
        assert.match(r.stdout, /^exec-test$/m);
        assert.match(r.stdout, /^yes$/m);
        assert.match(r.stdout, /^\s*1 sleep$/m, "PID 1 of its pid namespace is the container's");
        assert.match(r.stdout, /CapEff:\s+0000000020000420/);
        assert.match(r.stdout, /pids:\/$/m, "in the container's cgroup (its namespace's root)");
        for (const ns of ["mnt", "pid", "uts", "net", "ipc"]) {
          assert.notEqual(
            Deno.readLinkSync(`/proc/${pid}/ns/${ns}`),
            Deno.readLinkSync(`/proc/self/ns/${ns}`),
          );
        }
        const flags = await oci(root, [
          "exec",
          "--user",
          "1000:1000",
          "--env",
          "X=1",
          "--cwd",
          "/tmp",
          id,
          "sh",
          "-c",
          'id -u; pwd; echo "X=$X"',
        ]);
        assert.equal(ok(flags), "1000\n/tmp\nX=1\n");
        Deno.writeTextFileSync(
          `${dir}/process.json`,
          JSON.stringify({
            args: ["sh", "-c", "id -u; echo $P"],
            env: ["P=from-json", "PATH=/bin:/usr/bin"],
            cwd: "/",
            user: { uid: 1000, gid: 1000 },
          }),
        );
        assert.equal(
          ok(await oci(root, ["exec", "--process", `${dir}/process.json`, id])),
          "1000\nfrom-json\n",
        );
        // --detach with --pid-file: exec returns once the process runs.
        ok(await oci(root, ["exec", "-d", "--pid-file", `${dir}/exec.pid`, id, "sleep", "30"]));
        const epid = Number(Deno.readTextFileSync(`${dir}/exec.pid`));
        assert.ok(pidAlive(epid));
        assert.equal(
          Deno.readLinkSync(`/proc/${epid}/ns/pid`),
          Deno.readLinkSync(`/proc/${pid}/ns/pid`),
        );
        // ps: the container's processes (runc's JSON of pids, and ps(1) cut to them).
        const pids = JSON.parse(ok(await oci(root, ["ps", "--format", "json", id])));
        assert.deepEqual([...pids].sort(), [pid, epid].sort());
        const table = ok(await oci(root, ["ps", id]));
        assert.match(table, /^UID\s+PID/);
        assert.equal(table.trim().split("\n").length, 3, table);
        // kill --all reaches it through the cgroup.
        ok(await oci(root, ["kill", "--all", id, "KILL"]));
        assert.ok(await waitFor(() => !pidAlive(epid) && !pidAlive(pid), 5000));
        ok(await oci(root, ["delete", id]));
        assert.deepEqual(cgroupDirs(id), []);
      } finally {
        await oci(root, ["delete", "--force", id]);
      }
    });
  },
);

microTest(
  "oci: exec into a created container is refused (micro's runtime is still there)",
  async () => {
    await withTempDir(async (dir) => {
      const root = `${dir}/state`;
      const b = await bundle(dir, (c) => (c.process.args = ["sleep", "60"]));
      const id = uniq();
      try {
        ok(await oci(root, ["create", "-b", b, id]));
        const r = await oci(root, ["exec", id, "cat", "/proc/1/cmdline"]);
        assert.equal(r.code, 125, show(r));
        assert.match(r.stderr, /is created: exec needs a running container/);
      } finally {
        await oci(root, ["delete", "--force", id]);
      }
    });
  },
);

microTest("oci: pause freezes the container's cgroup (state paused), resume thaws it", async () => {
  await withTempDir(async (dir) => {
    const root = `${dir}/state`;
    const b = await bundle(dir, (c) => (c.process.args = ["sleep", "60"]));
    const id = uniq();
    try {
      ok(await oci(root, ["create", "-b", b, id]));
      const early = await oci(root, ["pause", id]);
      assert.equal(early.code, 125, show(early));
      assert.match(early.stderr, /is created, not running/);
      ok(await oci(root, ["start", id]));
      const { pid } = state(ok(await oci(root, ["state", id])));
      ok(await oci(root, ["pause", id]));
      assert.equal(state(ok(await oci(root, ["state", id]))).status, "paused");
      // The kernel's own view: cgroup.events (v2) or freezer.state (v1).
      const read = (p: string) => {
        try {
          return Deno.readTextFileSync(p);
        } catch {
          return "";
        }
      };
      const frozen = cgroupDirs(id).some((d) =>
        /frozen 1/.test(read(`${d}/cgroup.events`)) || read(`${d}/freezer.state`) === "FROZEN\n"
      );
      assert.ok(frozen, "the container's cgroup is frozen");
      const twice = await oci(root, ["pause", id]);
      assert.equal(twice.code, 125, show(twice));
      assert.match(twice.stderr, /already paused/);
      ok(await oci(root, ["resume", id]));
      assert.equal(state(ok(await oci(root, ["state", id]))).status, "running");
      ok(await oci(root, ["kill", id, "KILL"]));
      assert.ok(await waitFor(() => !pidAlive(pid), 5000));
      ok(await oci(root, ["delete", id]));
    } finally {
      await oci(root, ["delete", "--force", id]);
    }
  });
});

microTest(
  "oci: update writes flags and the resources JSON (stdin or -r) to the live cgroup",
  async () => {
    await withTempDir(async (dir) => {
      const root = `${dir}/state`;
      const b = await bundle(dir, (c) => (c.process.args = ["sleep", "60"]));
      const id = uniq();
      const file = (name: string) => {
        for (const d of cgroupDirs(id)) {
          try {
            return Deno.readTextFileSync(`${d}/${name}`).trim();
          } catch {
            // another hierarchy
          }
        }
        return "";
      };
      // A v2 host has its unified hierarchy at the top (a hybrid one has it at unified/).
      const v2 = (() => {
        try {
          return Deno.statSync("/sys/fs/cgroup/cgroup.controllers").isFile;
        } catch {
          return false;
        }
      })();
      try {
        ok(await oci(root, ["create", "-b", b, id]));
        ok(await oci(root, ["start", id]));
        ok(
          await oci(root, [
            "update",
            "--memory",
            "64m",
            "--pids-limit",
            "33",
            "--cpu-quota",
            "50000",
            id,
          ]),
        );
        assert.equal(file(v2 ? "memory.max" : "memory.limit_in_bytes"), String(64 << 20));
        assert.equal(file("pids.max"), "33");
        if (v2) assert.match(file("cpu.max"), /^50000 /);
        else assert.equal(file("cpu.cfs_quota_us"), "50000");
        Deno.writeTextFileSync(`${dir}/r.json`, '{"pids":{"limit":44}}');
        ok(await oci(root, ["update", "-r", `${dir}/r.json`, id]));
        assert.equal(file("pids.max"), "44");
        const bad = await oci(root, ["update", "--memory", "lots", id]);
        assert.equal(bad.code, 125, show(bad));
        assert.match(bad.stderr, /--memory: "lots" is not a number or size/);
        const other = await oci(root, ["update", "-r", `${dir}/n.json`, id]);
        assert.equal(other.code, 125, show(other));
      } finally {
        await oci(root, ["delete", "--force", id]);
      }
    });
  },
);

microTest(
  "oci: --systemd-cgroup is one line naming why (no systemd here, or cgroupfs only)",
  async () => {
    await withTempDir(async (dir) => {
      const r = await oci(`${dir}/state`, ["--systemd-cgroup", "state", "x"]);
      assert.equal(r.code, 125, show(r));
      let booted = false;
      try {
        booted = Deno.statSync("/run/systemd/system").isDirectory;
      } catch {
        // no systemd
      }
      assert.match(r.stderr, booted ? /micro manages cgroupfs itself/ : /there is no systemd/);
      assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
    });
  },
);

microTest(
  "oci: --pid-file in a directory others write: a link planted at the temp name is not followed",
  async () => {
    await withTempDir(async (dir) => {
      const root = `${dir}/state`;
      const b = await bundle(dir, (c) => (c.process.args = ["sleep", "60"]));
      const id = uniq();
      const shared = `${dir}/shared`;
      Deno.mkdirSync(shared, { mode: 0o1777 });
      Deno.chmodSync(shared, 0o1777);
      const victim = `${dir}/victim`;
      Deno.writeTextFileSync(victim, "keep");
      // The fixed temp name root's write used to go through.
      Deno.symlinkSync(victim, `${shared}/.pid.micro-tmp`);
      try {
        ok(await oci(root, ["create", "--bundle", b, "--pid-file", `${shared}/pid`, id]));
        assert.equal(Deno.readTextFileSync(victim), "keep");
        const s = state(ok(await oci(root, ["state", id])));
        assert.equal(Deno.readTextFileSync(`${shared}/pid`), String(s.pid));
      } finally {
        await oci(root, ["delete", "--force", id]);
      }
    });
  },
);
