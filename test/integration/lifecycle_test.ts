/**
 * State, clean-up after a killed micro, rootless runs, errors, and `micro plan`.
 */
import assert from "node:assert/strict";
import {
  Background,
  exists,
  IMAGE,
  lacking,
  MICRO,
  microTest,
  NEEDS,
  ok,
  pidAlive,
  run,
  type RunResult,
  show,
  snapshot,
  stateEntries,
  waitFor,
  waitForContainer,
  withTempDir,
} from "./_helpers.ts";

for (const profile of ["default", "hardened"]) {
  microTest(
    `kill -9 of micro (${profile}): the container dies, the next command sweeps`,
    async () => {
      const before = snapshot();
      const bg = new Background(["run", "--profile", profile, IMAGE, "sleep", "100"]);
      try {
        const st = await waitForContainer(bg.pid);
        assert.ok(st?.containerPid, `no state.json with containerPid for micro ${bg.pid}`);
        assert.ok(pidAlive(st.containerPid), "the container is not running");
        bg.kill("SIGKILL");
        await bg.result();
        assert.ok(
          await waitFor(() => !pidAlive(st.containerPid!), 2000),
          `container pid ${st.containerPid} outlived micro`,
        );
        // the host's mounts are as before (the wrapper checks again at the end)
        assert.deepEqual(snapshot().mounts, before.mounts);
        assert.ok(exists(st.dir), "the state dir should be left for the next command to sweep");
        // `plan` runs the sweep like every command but `version`
        ok(await run(["plan", IMAGE, "true"]));
        assert.equal(exists(st.dir), false, `${st.dir} survived the next micro command`);
      } finally {
        bg.kill("SIGKILL");
        await bg.result();
        await run(["plan", IMAGE, "true"]);
      }
    },
  );
}

microTest("a leftover state dir is swept by the next `micro run` too", async () => {
  const bg = new Background(["run", IMAGE, "sleep", "100"]);
  try {
    const st = await waitForContainer(bg.pid);
    assert.ok(st?.containerPid);
    bg.kill("SIGKILL");
    await bg.result();
    assert.ok(await waitFor(() => !pidAlive(st.containerPid!), 2000));
    ok(await run(["run", IMAGE, "true"]));
    assert.equal(exists(st.dir), false, `${st.dir} survived micro run`);
  } finally {
    bg.kill("SIGKILL");
    await bg.result();
    await run(["plan", IMAGE, "true"]);
  }
});

microTest("state: a run's dir exists while it runs and is removed afterwards", async () => {
  const bg = new Background(["run", IMAGE, "sh", "-c", "echo ready; exec sleep 100"]);
  try {
    // once it runs: killed before execve, micro would retry (DESIGN.md §4)
    assert.ok(await bg.waitForStdout("ready\n"), bg.stderr);
    const st = await waitForContainer(bg.pid);
    assert.ok(st?.containerPid);
    assert.ok(stateEntries().includes(st.dir.split("/").pop()!));
    const mode = Deno.statSync(st.dir).mode! & 0o777;
    assert.equal(mode & 0o022, 0, `state dir ${st.dir} is group/world writable`);
    Deno.kill(st.containerPid, "SIGKILL");
    await bg.result();
    assert.equal(exists(st.dir), false);
  } finally {
    bg.kill("SIGKILL");
    await bg.result();
  }
});

// --- rootless ------------------------------------------------------------------------------

const NOBODY = 65534;

/** Why uid 65534 cannot run the binary and image in place, or undefined. */
function rootlessReason(): string | undefined {
  const base = lacking(NEEDS.setpriv);
  if (base) return base;
  const out = new Deno.Command("setpriv", {
    args: [
      `--reuid=${NOBODY}`,
      `--regid=${NOBODY}`,
      "--clear-groups",
      "sh",
      "-c",
      `test -r "$0" && test -x "$0" && test -x "$1/bin/sh" && test -r "$1/etc/passwd"`,
      MICRO,
      IMAGE,
    ],
  }).outputSync();
  return out.success
    ? undefined
    : `uid ${NOBODY} cannot read/traverse ${MICRO} or ${IMAGE} (e.g. /work not traversable)`;
}

microTest("rootless: an unprivileged caller gets a user namespace mapping it to root", async () => {
  await withTempDir(async (home) => {
    Deno.chmodSync(home, 0o755);
    Deno.chownSync(home, NOBODY, NOBODY);
    const runtime = `${home}/run`;
    Deno.mkdirSync(runtime, { mode: 0o700 });
    Deno.chownSync(runtime, NOBODY, NOBODY);
    const env = { HOME: home, XDG_RUNTIME_DIR: runtime, PATH: "/usr/bin:/bin" };
    const r = await run(
      ["run", IMAGE, "sh", "-c", "id -u; cat /proc/self/uid_map /proc/self/gid_map; echo $$"],
      { user: { uid: NOBODY, gid: NOBODY }, env, clearEnv: true, timeoutMs: 60_000 },
    );
    assert.equal(r.code, 0, show(r));
    const lines = r.stdout.trim().split("\n").map((l) => l.trim().split(/\s+/).join(" "));
    assert.deepEqual(lines, ["0", "0 65534 1", "0 65534 1", "1"]);
    // the rootless state root is under $XDG_RUNTIME_DIR and is left empty
    assert.deepEqual(stateEntries(`${runtime}/micro`), []);
  }, "micro-rootless-");
}, { ignore: rootlessReason() });

microTest("rootless: --user other than 0 fails cleanly (only one id is mapped)", async () => {
  await withTempDir(async (home) => {
    Deno.chmodSync(home, 0o755);
    Deno.chownSync(home, NOBODY, NOBODY);
    const env = { HOME: home, XDG_RUNTIME_DIR: home, PATH: "/usr/bin:/bin" };
    const r = await run(["run", "-u", "1000", IMAGE, "id", "-u"], {
      user: { uid: NOBODY, gid: NOBODY },
      env,
      clearEnv: true,
      timeoutMs: 60_000,
    });
    assert.equal(r.code, 125, show(r));
    assert.equal(r.stderr.trimEnd().split("\n").length, 1, show(r));
    assert.doesNotMatch(r.stderr, /^\s+at /m);
  }, "micro-rootless-");
}, { ignore: rootlessReason() });

microTest("rootless: a squatted state root is refused, saying why and the fix", async () => {
  // Without XDG_RUNTIME_DIR the rootless state root is /tmp/micro-state-UID, which any user
  // can create first. micro fails closed; the error must say so and how to get past it. The
  // squat happens in a /tmp of a private mount namespace, so the host's /tmp is untouched.
  await withTempDir(async (home) => {
    Deno.chmodSync(home, 0o755);
    Deno.chownSync(home, NOBODY, NOBODY);
    const root = `/tmp/micro-state-${NOBODY}`;
    // The binary, the image and the home may live under /tmp themselves (a CI checkout):
    // the old /tmp stays reachable at /mnt (in this namespace only) and those paths are
    // bound back into the fresh one.
    const keep = [home, MICRO.slice(0, MICRO.lastIndexOf("/")), IMAGE]
      .filter((p) => p.startsWith("/tmp/"));
    const script = `mount --bind /tmp /mnt && mount -t tmpfs tmpfs /tmp && ` +
      `for p in $KEEP; do mkdir -p "$p" && mount --bind "/mnt\${p#/tmp}" "$p" || exit 1; done && ` +
      `mkdir -m 0755 ${root} && ` +
      `exec setpriv --reuid=${NOBODY} --regid=${NOBODY} --clear-groups -- ` +
      `env -i HOME=${home} PATH=/usr/bin:/bin "$0" run "$1" true`;
    const r = await run(["-m", "--propagation", "private", "sh", "-c", script, MICRO, IMAGE], {
      cmd: "unshare",
      timeoutMs: 60_000,
      env: { KEEP: keep.join(" ") },
    });
    assertOneLineError(r, /belongs to uid 0, not to you \(65534\): refused on purpose/);
    assert.ok(
      r.stderr.includes(
        `(set XDG_RUNTIME_DIR to a private directory of yours, or have root remove ${root})`,
      ),
      show(r),
    );
  }, "micro-rootless-");
}, { ignore: rootlessReason() ?? lacking(NEEDS.unshare) });

// --- errors --------------------------------------------------------------------------------

function assertOneLineError(r: RunResult, re: RegExp) {
  assert.equal(r.code, 125, show(r));
  const lines = r.stderr.trimEnd().split("\n");
  assert.equal(lines.length, 1, `not one line:\n${r.stderr}`);
  assert.match(lines[0], /^micro: /);
  assert.match(lines[0], re);
  assert.doesNotMatch(r.stderr, /\bat .*:\d+:\d+/, "a stack trace was printed");
}

microTest("error: a profile path that does not exist", async () => {
  const r = await run(["run", "--profile", "/nonexistent.yaml", IMAGE, "true"]);
  assertOneLineError(r, /\/nonexistent\.yaml/);
});

microTest("error: an unknown option", async () => {
  assertOneLineError(await run(["run", "--bogus", IMAGE, "true"]), /--bogus/);
  assertOneLineError(await run(["run", "-Z", IMAGE, "true"]), /-Z/);
});

microTest("error: a profile with an unknown key names the file, key path and line", async () => {
  await withTempDir(async (dir) => {
    const file = `${dir}/bad.yaml`;
    Deno.writeTextFileSync(
      file,
      "extends: default\nprocess:\n  env:\n    A: b\n  bogus: 1\n",
    );
    const r = await run(["run", "--profile", file, IMAGE, "true"]);
    assertOneLineError(r, new RegExp(`${file}.*process\\.bogus.*line 5`));
    // plan validates the same way
    assertOneLineError(
      await run(["plan", "--profile", file, IMAGE, "true"]),
      new RegExp(`${file}.*process\\.bogus.*line 5`),
    );
  });
});

microTest("error: invalid YAML names the file and line", async () => {
  await withTempDir(async (dir) => {
    const file = `${dir}/broken.yaml`;
    Deno.writeTextFileSync(file, "extends: default\nprocess: [\n");
    assertOneLineError(
      await run(["run", "--profile", file, IMAGE, "true"]),
      new RegExp(`${file}.*line 2`),
    );
  });
});

microTest("error: an image that does not exist", async () => {
  const r = await run(["run", "/nonexistent-micro-image", "true"]);
  assertOneLineError(r, /\/nonexistent-micro-image/);
});

microTest("error: bad flag values", async () => {
  // Never `bridge` here: it would build micro0 in this machine's own network namespace.
  assertOneLineError(await run(["run", "--network", "../x", IMAGE, "true"]), /--network/);
  assertOneLineError(
    await run(["run", "--network", "nosuchnet", "--cni-config-dir", "/nonexistent", IMAGE, "true"]),
    /network "nosuchnet"/,
  );
  assertOneLineError(await run(["run", "-p", "80", IMAGE, "true"]), /a host port is required/);
  assertOneLineError(await run(["run", "--ulimit", "nofile=x", IMAGE, "true"]), /nofile/);
  assertOneLineError(await run(["run", "-w", "relative", IMAGE, "true"]), /relative/);
});

microTest(
  "error: a CNI config directory others may write is refused before any plugin runs",
  async () => {
    await withTempDir(async (dir) => {
      // Another user could put a conflist here whose host-local `dataDir` makes root write
      // files anywhere, or that picks any plugin of CNI_PATH. The only plugin on CNI_PATH is
      // a fake that leaves a mark (never a real one: this is the machine's own namespace).
      const nets = `${dir}/nets`;
      Deno.mkdirSync(nets);
      Deno.chmodSync(nets, 0o777);
      Deno.mkdirSync(`${dir}/bin`);
      Deno.writeTextFileSync(`${dir}/bin/mark`, `#!/bin/sh\ntouch ${dir}/ran\nexit 1\n`, {
        mode: 0o755,
      });
      Deno.writeTextFileSync(
        `${nets}/10-web.conflist`,
        JSON.stringify({ cniVersion: "1.0.0", name: "web", plugins: [{ type: "mark" }] }),
      );
      const r = await run(["run", "--network", "web", "--cni-config-dir", nets, IMAGE, "true"], {
        env: { CNI_PATH: `${dir}/bin` },
      });
      assertOneLineError(r, /CNI config directory .* may be written by others: refused on purpose/);
      assert.ok(!exists(`${dir}/ran`), "a plugin ran");
    });
  },
);

// --- plan, profile, version ----------------------------------------------------------------

microTest("micro plan prints ops in phase order and creates nothing", async () => {
  const before = stateEntries();
  const r = await run(["plan", "--profile", "hardened", IMAGE, "true"]);
  assert.equal(r.code, 0, show(r));
  const phases = r.stdout.trim().split("\n").map((l) => l.trim().split(/\s+/)[1]);
  const order = ["clone", "attach", "rootfs", "identity", "credentials", "restrict", "exec"];
  for (const p of order) assert.ok(phases.includes(p), `phase ${p} missing:\n${r.stdout}`);
  const ranks = phases.map((p) => order.indexOf(p)).filter((i) => i >= 0);
  assert.deepEqual(ranks, [...ranks].sort((a, b) => a - b), "phases out of order");
  assert.match(r.stdout, /CLONE_NEWUSER/);
  assert.match(r.stdout, /uid_map.*0 1000000000 65536/);
  assert.match(r.stdout, /no-new-privs/);
  assert.match(r.stdout, /execve/);
  assert.deepEqual(stateEntries(), before);
});

microTest("run --json prints id, exit code and signal on stderr", async () => {
  const r = await run(["run", "--json", IMAGE, "sh", "-c", "echo out; exit 3"]);
  assert.equal(r.code, 3, show(r));
  assert.equal(r.stdout, "out\n");
  const last = r.stderr.trimEnd().split("\n").pop()!;
  const j = JSON.parse(last);
  assert.match(j.id, /^[0-9a-f]{12}$/);
  assert.equal(j.exitCode, 3);
  assert.equal(j.signal, null);
});

microTest("--name names the run: state dir, and a second run with it fails", async () => {
  const name = `micro-test-${crypto.randomUUID().slice(0, 8)}`;
  const bg = new Background(["run", "--name", name, IMAGE, "sh", "-c", "hostname; sleep 100"]);
  try {
    const st = await waitForContainer(bg.pid);
    assert.equal(st?.dir, `/run/micro/${name}`);
    // The hostname is the short container id, as Docker's, not the name.
    assert.ok(await waitFor(() => /^[0-9a-f]{12}\n/.test(bg.stdout), 10_000), bg.stdout);
    const second = await run(["run", "--name", name, IMAGE, "true"]);
    assertOneLineError(second, new RegExp(name));
  } finally {
    bg.kill("SIGKILL");
    await bg.result();
    await run(["plan", IMAGE, "true"]);
  }
});

microTest("micro profile list / show, micro version", async () => {
  const list = ok(await run(["profile", "list"]));
  assert.match(list, /^default\b/m);
  assert.match(list, /^hardened\b/m);
  const show_ = ok(await run(["profile", "show", "hardened"]));
  assert.match(show_, /noNewPrivileges: true/);
  assertOneLineError(await run(["profile", "show", "nosuchprofile"]), /nosuchprofile/);
  assert.match(ok(await run(["version"])), /^micro \d+\.\d+\.\d+/);
});

microTest(
  "a run whose micro is in another pid namespace is not swept by a gc outside it",
  async () => {
    // A private state root (a tmpfs in this mount namespace); the run's micro is pid 1-ish
    // of a pid namespace of its own, so its recorded pid names another process out here.
    // Before the run's lock, the gc below took it for dead: it removed its state and
    // killed its container through its cgroups.
    const script = `mount -t tmpfs -o mode=0711 tmpfs /run/micro || exit 1
      unshare -p -f -m --mount-proc "$0" run --name pidns "$1" sleep 3 >/dev/null 2>&1 &
      for i in $(seq 100); do grep -qs containerPid /run/micro/pidns/state.json && break; sleep 0.1; done
      grep -qs containerPid /run/micro/pidns/state.json || { echo "no state"; exit 1; }
      "$0" plan -- true >/dev/null || exit 1
      test -e /run/micro/pidns/state.json && echo kept
      wait # the run ends by itself, and cleans up after itself`;
    const r = await run(["-m", "--propagation", "private", "sh", "-c", script, MICRO, IMAGE], {
      cmd: "unshare",
      timeoutMs: 60_000,
    });
    assert.equal(r.code, 0, show(r));
    assert.equal(r.stdout, "kept\n", show(r));
  },
  { ignore: lacking(NEEDS.unshare) },
);

microTest(
  "a state dir that cannot be removed (EBUSY) is a warning: the command's exit code stands",
  async () => {
    // A mount left in the run's state dir (as a netns pin whose unmount failed) makes its
    // removal fail with EBUSY; micro used to turn that into an internal error (125), and
    // every later command's gc with it.
    const script = `mount -t tmpfs -o mode=0711 tmpfs /run/micro || exit 1
      "$0" run --name busy "$1" sh -c 'sleep 1; exit 7' 2>/tmp/busy.err.$$ &
      for i in $(seq 100); do grep -qs containerPid /run/micro/busy/state.json && break; sleep 0.05; done
      touch /run/micro/busy/pin && mount --bind /dev/null /run/micro/busy/pin || exit 1
      wait $!; echo "code=$?"
      cat /tmp/busy.err.$$ >&2; rm -f /tmp/busy.err.$$
      "$0" plan -- true >/dev/null && echo "gc ok"
      umount /run/micro/busy/pin
      "$0" plan -- true >/dev/null && test ! -e /run/micro/busy && echo swept`;
    const r = await run(["-m", "--propagation", "private", "sh", "-c", script, MICRO, IMAGE], {
      cmd: "unshare",
      timeoutMs: 60_000,
    });
    assert.equal(r.stdout, "code=7\ngc ok\nswept\n", show(r));
    assert.match(r.stderr, /^micro: warning: cleanup: \/run\/micro\/busy: .*busy.*; left for/im);
    assert.ok(!/internal error/.test(r.stderr), show(r));
  },
  { ignore: lacking(NEEDS.unshare) },
);
