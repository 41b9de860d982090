/**
 * Docker's flags of issue 9, each checked from inside the container (or from the host where
 * the effect is the host's: the cgroup, the cidfile, the stop timing).
 */
import assert from "node:assert/strict";
import {
  Background,
  hostNs,
  IMAGE,
  microTest,
  ok,
  run,
  sh,
  show,
  waitForContainer,
  withTempDir,
} from "./_helpers.ts";

const ONE_LINE = /^micro: [^\n]+\n$/;

/** The capability mask of `field` in this process's /proc/self/status. */
function ownCaps(field: string): bigint {
  const m = new RegExp(`^${field}:\\s*([0-9a-f]+)$`, "m").exec(
    Deno.readTextFileSync("/proc/self/status"),
  );
  return BigInt(`0x${m![1]}`);
}

microTest("micro -v and micro --version print what micro version prints", async () => {
  const v = ok(await run(["version"]));
  assert.match(v, /^micro \S+ \(deno /);
  assert.equal(ok(await run(["-v"])), v);
  assert.equal(ok(await run(["--version"])), v);
});

microTest("--pid host: the host's processes are visible, this test's among them", async () => {
  const out = ok(
    await sh(`test -d /proc/${Deno.pid} && echo seen; echo $$`, ["--rm", "--pid", "host"]),
  );
  const [seen, self] = out.trim().split("\n");
  assert.equal(seen, "seen");
  assert.notEqual(self, "1");
  // Without it, the container is PID 1 and sees nothing of the host.
  assert.equal(ok(await sh(`test -d /proc/${Deno.pid} || echo $$`, ["--rm"])).trim(), "1");
});

microTest("--ipc host shares the host's System V IPC (its /proc/sysvipc)", async () => {
  const out = ok(
    await sh("readlink /proc/self/ns/ipc; test -e /dev/mqueue/x || echo no-own-mqueue", [
      "--rm",
      "--ipc",
      "host",
    ]),
  );
  assert.deepEqual(out.trim().split("\n"), [hostNs("ipc"), "no-own-mqueue"]);
  const shm = (s: string) => s.split("\n").slice(1).filter((l) => l.trim()).length;
  const inside = ok(await sh("cat /proc/sysvipc/shm", ["--rm", "--ipc", "host"]));
  assert.equal(shm(inside), shm(Deno.readTextFileSync("/proc/sysvipc/shm")));
  assert.notEqual(ok(await sh("readlink /proc/self/ns/ipc", ["--rm"])).trim(), hostNs("ipc"));
});

microTest("--uts host shows the host's hostname; with --hostname it is refused", async () => {
  assert.equal(ok(await sh("hostname", ["--rm", "--uts", "host"])).trim(), Deno.hostname());
  const r = await sh("hostname", ["--rm", "--uts", "host", "--hostname", "box"]);
  assert.equal(r.code, 125, show(r));
  assert.match(r.stderr, ONE_LINE);
});

microTest("--userns host under hardened: no user namespace of its own", async () => {
  const out = ok(
    await sh("readlink /proc/self/ns/user", ["--rm", "--profile", "hardened", "--userns", "host"]),
  );
  assert.equal(out.trim(), hostNs("user"));
  const own = ok(await sh("readlink /proc/self/ns/user", ["--rm", "--profile", "hardened"]));
  assert.notEqual(own.trim(), hostNs("user"));
});

microTest(
  "--sysctl: a namespaced one reads back inside; the host's stays; others refused",
  async () => {
    const host = Deno.readTextFileSync("/proc/sys/net/ipv4/ip_forward").trim();
    const want = host === "1" ? "0" : "1";
    const out = ok(
      await sh("cat /proc/sys/net/ipv4/ip_forward /proc/sys/kernel/shmmni", [
        "--rm",
        "--sysctl",
        `net.ipv4.ip_forward=${want}`,
        "--sysctl",
        "kernel.shmmni=1234",
      ]),
    );
    assert.deepEqual(out.trim().split("\n"), [want, "1234"]);
    assert.equal(Deno.readTextFileSync("/proc/sys/net/ipv4/ip_forward").trim(), host);
    // /proc/sys stays read-only for the container itself.
    const w = await sh("echo 1 > /proc/sys/net/ipv4/ip_forward", ["--rm"]);
    assert.notEqual(w.code, 0, show(w));
    for (
      const bad of [
        ["--sysctl", "kernel.core_pattern=|/tmp/x"],
        ["--network", "host", "--sysctl", "net.ipv4.ip_forward=1"],
      ]
    ) {
      const r = await sh("true", ["--rm", ...bad]);
      assert.equal(r.code, 125, show(r));
      assert.match(r.stderr, ONE_LINE);
      assert.match(r.stderr, /not allowed/);
    }
  },
);

microTest(
  "--stop-signal and --stop-timeout: TERM to micro sends the signal, KILL follows",
  async () => {
    const script = 'trap "echo got-usr1" USR1; trap "echo got-term" TERM; echo ready; ' +
      "while :; do sleep 0.05; done";
    const bg = new Background([
      "run",
      "--rm",
      "--stop-signal",
      "SIGUSR1",
      "--stop-timeout",
      "2",
      IMAGE,
      "sh",
      "-c",
      script,
    ]);
    assert.ok(await bg.waitForStdout("ready"), bg.stderr);
    const t0 = Date.now();
    bg.kill("SIGTERM");
    const r = await bg.result(15_000);
    const took = Date.now() - t0;
    assert.match(r.stdout, /got-usr1/);
    assert.doesNotMatch(r.stdout, /got-term/);
    assert.equal(r.code, 137, show(r));
    // Two seconds after TERM (never before); the bound above allows for a loaded host.
    assert.ok(took >= 1900 && took < 12_000, `killed after ${took} ms`);

    // The default: TERM itself, and the command's own exit when it obeys.
    const bg2 = new Background([
      "run",
      "--rm",
      IMAGE,
      "sh",
      "-c",
      'trap "exit 3" TERM; echo ready; while :; do sleep 0.05; done',
    ]);
    assert.ok(await bg2.waitForStdout("ready"), bg2.stderr);
    bg2.kill("SIGTERM");
    assert.equal((await bg2.result()).code, 3);
  },
);

microTest("--cidfile holds the container id; an existing file is refused and kept", async () => {
  await withTempDir(async (dir) => {
    const file = `${dir}/cid`;
    ok(await sh("true", ["--name", "cidtest", "--cidfile", file]));
    const id = Deno.readTextFileSync(file);
    assert.match(id, /^[0-9a-f]{64}$/);
    assert.equal(ok(await run(["ps", "-a", "-q", "--no-trunc", "--filter", "label=none"])), "");
    const listed = ok(await run(["ps", "-a", "--no-trunc"]));
    assert.ok(listed.includes(id), listed);
    ok(await run(["rm", "cidtest"]));
    const r = await sh("true", ["--rm", "--cidfile", file]);
    assert.equal(r.code, 125, show(r));
    assert.match(r.stderr, ONE_LINE);
    assert.match(r.stderr, /EEXIST/);
    assert.equal(Deno.readTextFileSync(file), id);
  });
});

microTest("--label is stored; micro ps --filter label=K[=V] selects by it", async () => {
  ok(await sh("true", ["--name", "lab1", "--label", "app=web", "--label", "tier"]));
  ok(await sh("true", ["--name", "lab2", "--label", "app=db"]));
  try {
    const names = async (...f: string[]) =>
      ok(await run(["ps", "-a", ...f.flatMap((x) => ["--filter", x])])).trim().split("\n")
        .slice(1).map((l) => l.split(/\s+/).pop()).sort();
    assert.deepEqual(await names("label=app"), ["lab1", "lab2"]);
    assert.deepEqual(await names("label=app=web"), ["lab1"]);
    assert.deepEqual(await names("label=app", "label=tier"), ["lab1"]);
    assert.deepEqual(await names("label=nothing"), []);
    const r = await run(["ps", "--filter", "status=running"]);
    assert.equal(r.code, 125, show(r));
    assert.match(r.stderr, ONE_LINE);
  } finally {
    await run(["rm", "lab1", "lab2"]);
  }
});

microTest("--oom-score-adj 500 is the command's; lowering it needs CAP_SYS_RESOURCE", async () => {
  assert.equal(
    ok(await sh("cat /proc/self/oom_score_adj", ["--rm", "--oom-score-adj", "500"])).trim(),
    "500",
  );
  const own = Number(Deno.readTextFileSync("/proc/self/oom_score_adj"));
  const r = await sh("cat /proc/self/oom_score_adj", ["--rm", "--oom-score-adj", String(own - 1)]);
  if (ownCaps("CapEff") & (1n << 24n)) {
    assert.equal(ok(r).trim(), String(own - 1));
  } else {
    assert.equal(r.code, 125, show(r));
    assert.match(r.stderr, ONE_LINE);
    assert.match(r.stderr, /oom_score_adj.*CAP_SYS_RESOURCE/);
  }
});

microTest("--oom-kill-disable: the memory cgroup's OOM killer is off (cgroup v1)", async () => {
  const bg = new Background([
    "run",
    "--rm",
    "--name",
    "oomoff",
    "--oom-kill-disable",
    "--stop-timeout",
    "0",
    "-m",
    "64m",
    IMAGE,
    "sh",
    "-c",
    "echo ready; sleep 10",
  ]);
  try {
    assert.ok(await bg.waitForStdout("ready"), bg.stderr);
    const file = "/sys/fs/cgroup/memory/micro/oomoff/memory.oom_control";
    assert.match(Deno.readTextFileSync(file), /^oom_kill_disable 1$/m);
  } finally {
    // micro stops it and cleans up (a SIGKILL of micro would leave its state to gc).
    bg.kill("SIGTERM");
    await bg.result();
  }
}, {
  ignore: (() => {
    try {
      Deno.statSync("/sys/fs/cgroup/memory/memory.oom_control");
      return undefined;
    } catch {
      return "no cgroup v1 memory controller (--oom-kill-disable is v1 only)";
    }
  })(),
});

microTest(
  "--privileged: every capability micro holds, no seccomp, the host's devices",
  async () => {
    const out = ok(
      await sh(
        "grep -E '^(CapEff|Seccomp):' /proc/self/status; ls /dev; test -e /proc/sys/kernel && " +
          "touch /proc/sysrq-trigger 2>/dev/null; mount | grep -c ' /proc/sys ' || true",
        ["--rm", "--privileged"],
      ),
    );
    const capEff = BigInt(`0x${/CapEff:\s*([0-9a-f]+)/.exec(out)![1]}`);
    assert.equal(capEff, ownCaps("CapBnd"));
    assert.match(out, /^Seccomp:\s*0$/m);
    // Every char and block device at the top of the host's /dev is there (ptmx: its own).
    const names = new Set(out.split("\n"));
    for (const e of Deno.readDirSync("/dev")) {
      const st = Deno.lstatSync(`/dev/${e.name}`);
      if ((st.isCharDevice || st.isBlockDevice) && e.name !== "ptmx") {
        assert.ok(names.has(e.name), `/dev/${e.name} missing`);
      }
    }
    // No read-only bind over /proc/sys.
    assert.match(out, /^0$/m);
    // The default stays confined.
    const plain = ok(await sh("grep Seccomp: /proc/self/status; ls /dev", ["--rm"]));
    assert.match(plain, /Seccomp:\s*2/);
  },
);

microTest("--pid and --ipc container:NAME join a running container's namespaces", async () => {
  const bg = new Background([
    "run",
    "--rm",
    "--name",
    "jointgt",
    "--stop-timeout",
    "0",
    IMAGE,
    "sh",
    "-c",
    "echo ready; sleep 20",
  ]);
  try {
    assert.ok(await bg.waitForStdout("ready"), bg.stderr);
    const st = await waitForContainer(bg.pid);
    assert.ok(st?.containerPid);
    const ns = (k: string) => Deno.readLinkSync(`/proc/${st!.containerPid}/ns/${k}`);
    const out = ok(
      await sh("readlink /proc/self/ns/pid; readlink /proc/self/ns/ipc; cat /proc/1/cmdline", [
        "--rm",
        "--pid",
        "container:jointgt",
        "--ipc",
        "container:jointgt",
      ]),
    );
    const [pid, ipc, init] = out.split("\n");
    assert.equal(pid, ns("pid"));
    assert.equal(ipc, ns("ipc"));
    // The target's init (its shell exec'd the last command).
    assert.equal(init, "sleep\u000020\u0000");
    // micro itself went back to its own namespaces: a later plain run is PID 1 again.
    assert.equal(ok(await sh("echo $$", ["--rm"])).trim(), "1");
    // One line for a container that is not running, and for a user namespace of its own.
    for (
      const extra of [["--pid", "container:nosuch"], [
        "--profile",
        "hardened",
        "--pid",
        "container:jointgt",
      ]]
    ) {
      const r = await sh("true", ["--rm", ...extra]);
      assert.equal(r.code, 125, show(r));
      assert.match(r.stderr, ONE_LINE);
    }
  } finally {
    // micro stops it and cleans up (a SIGKILL of micro would leave its state to gc).
    bg.kill("SIGTERM");
    await bg.result();
  }
});

microTest(
  "--pid container:NAME is refused when a process there may hold CAP_SYS_PTRACE",
  async () => {
    // From there it could attach to micro's child (root, every capability, micro's fds and
    // memory, the host's mounts) between its clone and its exec.
    const bg = new Background([
      "run",
      "--rm",
      "--name",
      "ptracer",
      "--cap-add",
      "SYS_PTRACE",
      "--stop-timeout",
      "0",
      IMAGE,
      "sh",
      "-c",
      "echo ready; sleep 20",
    ]);
    try {
      assert.ok(await bg.waitForStdout("ready"), bg.stderr);
      const r = await sh("echo joined", ["--rm", "--pid", "container:ptracer"]);
      assert.equal(r.code, 125, show(r));
      assert.equal(r.stdout, "", show(r));
      assert.match(r.stderr, ONE_LINE);
      assert.match(
        r.stderr,
        /--pid container:ptracer: refused: process .* may hold CAP_SYS_PTRACE/,
      );
      // Its ipc namespace shows no process: that join stays allowed.
      assert.equal(ok(await sh("echo joined", ["--rm", "--ipc", "container:ptracer"])), "joined\n");
    } finally {
      bg.kill("SIGTERM");
      await bg.result();
    }
  },
);

microTest("-a stdout: only stdout is relayed; stderr goes to /dev/null", async () => {
  const r = await sh("echo out; echo err >&2", ["--rm", "-a", "stdout"]);
  assert.equal(r.code, 0, show(r));
  assert.equal(r.stdout, "out\n");
  assert.equal(r.stderr, "");
  const e = await sh("echo out; echo err >&2", ["--rm", "-a", "stderr"]);
  assert.equal(e.stdout, "");
  assert.equal(e.stderr, "err\n");
});
