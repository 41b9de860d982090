/**
 * `--init`: the exec trampoline stays as the container's PID 1 (as Docker's docker-init),
 * forwards signals to the command and reaps zombies. Without it a PID 1 that has no handler
 * for TERM (a plain `sleep`) cannot be stopped by TERM, and orphans that PID 1 never waits
 * for stay zombies; both are shown here first, then fixed by `--init`.
 */
import assert from "node:assert/strict";
import { TRAMPOLINE } from "../../core/engine/trampoline.ts";
import {
  Background,
  IMAGE,
  microTest,
  run,
  show,
  sleep,
  waitForContainer,
  withTempDir,
} from "./_helpers.ts";

const ARCH = Deno.build.arch as keyof typeof TRAMPOLINE;

/**
 * Runs `sh -c 'echo ready; exec sleep 1000'` and sends micro TERM once the sleep runs, as
 * `docker stop` does (micro forwards it to PID 1). Not stopped within 5 s, PID 1 gets
 * SIGKILL from here, as `docker stop` sends after its timeout (a loaded host may take a
 * few seconds to stop even an init that forwards TERM at once).
 */
async function termSleep(opts: string[]): Promise<{ stopped: boolean; code: number }> {
  const bg = new Background([
    "run",
    "--rm",
    ...opts,
    IMAGE,
    "sh",
    "-c",
    "echo ready; exec sleep 1000",
  ]);
  try {
    assert.ok(await bg.waitForStdout("ready"), `no container: ${bg.stderr}`);
    const state = await waitForContainer(bg.pid);
    assert.ok(state?.containerPid, "micro recorded no container pid");
    await sleep(300); // the exec of sleep
    const done = bg.result(20_000);
    bg.kill("SIGTERM");
    const stopped = await Promise.race([done.then(() => true), sleep(5_000).then(() => false)]);
    if (!stopped) {
      try {
        Deno.kill(state.containerPid, "SIGKILL");
      } catch (e) {
        // It stopped just now, after the wait: TERM did stop it.
        if (!(e instanceof Deno.errors.NotFound)) throw e;
      }
    }
    const r = await done;
    assert.equal(r.signal, null, show(r));
    return { stopped, code: r.code };
  } finally {
    bg.kill("SIGKILL");
    await bg.result();
  }
}

microTest("without --init, a sleep as PID 1 ignores TERM: only SIGKILL stops it", async () => {
  const r = await termSleep([]);
  assert.equal(r.stopped, false, "sleep as PID 1 has no TERM handler: the kernel drops TERM");
  assert.equal(r.code, 137);
});

for (const profile of ["default", "hardened"]) {
  microTest(`${profile}: --init: TERM to micro stops a sleep at once, exit 143`, async () => {
    const r = await termSleep(["--profile", profile, "--init"]);
    assert.deepEqual(r, { stopped: true, code: 143 });
  });
}

/**
 * PID 1 is `sleep 2`, which waits for no child. A double fork (the middle one reaped by the
 * shell before its exec) orphans `sleep 0.4` to PID 1, with a `sleep 0.2` of its own that
 * it never waits for: both end as zombies of PID 1 unless PID 1 reaps them. A checker, a
 * child of the command, counts zombies after a second.
 */
const ZOMBIES = `sh -c "sh -c 'sleep 0.2 & exec sleep 0.4' &"; ` +
  "(sleep 1; echo zombies=$(grep -l '^State:.Z' /proc/[0-9]*/status 2>/dev/null | wc -l)) & " +
  "exec sleep 2";

microTest("without --init, orphans of a PID 1 that never waits stay zombies", async () => {
  const r = await run(["run", "--rm", IMAGE, "sh", "-c", ZOMBIES]);
  assert.equal(r.code, 0, show(r));
  assert.equal(r.stdout, "zombies=2\n", show(r));
});

microTest("--init reaps every zombie, the orphaned one too", async () => {
  const r = await run(["run", "--rm", "--init", IMAGE, "sh", "-c", ZOMBIES]);
  assert.equal(r.code, 0, show(r));
  assert.equal(r.stdout, "zombies=0\n", show(r));
});

microTest(
  "--init without a pid namespace: the init is a subreaper; orphans come to it",
  async () => {
    await withTempDir(async (dir) => {
      const profile = `${dir}/nopid.yaml`;
      Deno.writeTextFileSync(profile, "extends: default\npid:\n  enabled: false\n");
      const script = [
        "o=$(sh -c 'sleep 0.6 >/dev/null & echo $!')",
        "sleep 0.2",
        "pp=$(sed -n 's/^PPid:\\t//p' /proc/$o/status)",
        'echo "parent=$([ "$pp" = "$PPID" ] && echo init || echo "$pp, not $PPID")"',
        "sleep 1",
        "[ -e /proc/$o ] && echo after=$(sed -n 's/^State:\\t//p' /proc/$o/status) || echo after=gone",
      ].join("; ");
      const r = await run([
        "run",
        "--rm",
        "--init",
        "--profile",
        profile,
        IMAGE,
        "sh",
        "-c",
        script,
      ]);
      assert.equal(r.code, 0, show(r));
      assert.equal(r.stdout, "parent=init\nafter=gone\n", show(r));
    });
  },
);

microTest("--init: exit codes are the command's; 128+N when signal N killed it", async () => {
  for (const [script, code] of [["exit 3", 3], ["kill -KILL $$", 137], ["kill -TERM $$", 143]]) {
    const r = await run(["run", "--rm", "--init", IMAGE, "sh", "-c", String(script)]);
    assert.equal(r.code, code, `${script}: ${show(r)}`);
  }
});

microTest(
  "--init: a command that is missing or not executable is one line, 127 or 126",
  async () => {
    for (const init of [[], ["--init"]]) {
      const gone = await run(["run", "--rm", ...init, IMAGE, "nosuch"]);
      assert.equal(gone.code, 127, show(gone));
      assert.equal(
        gone.stderr,
        "micro: exec: process: execve path=nosuch: ENOENT (command not found in the container; " +
          "check the path and PATH)\n",
      );
      const noexec = await run(["run", "--rm", ...init, IMAGE, "/etc/passwd"]);
      assert.equal(noexec.code, 126, show(noexec));
      assert.match(noexec.stderr, /^micro: exec: process: execve path=\/etc\/passwd: EACCES .*\n$/);
    }
  },
);

for (const profile of ["default", "hardened"]) {
  microTest(
    `${profile}: --init: /proc/1 (the init) is closed to the command, and is not micro`,
    async () => {
      // The command runs as the container's root (default) or nobody in a user namespace
      // (hardened), without CAP_SYS_PTRACE: the init is not dumpable, so its exe, maps, mem
      // and environ are closed though the uid is the same.
      const script = [
        "readlink /proc/1/exe >/dev/null 2>&1; echo exe=$?",
        "cat /proc/1/maps >/dev/null 2>&1; echo maps=$?",
        "dd if=/proc/1/mem of=/dev/null bs=1 count=1 2>/dev/null; echo mem=$?",
        "cat /proc/1/environ >/dev/null 2>&1; echo environ=$?",
        "echo uid=$(stat -c %u /proc/1/status)/$(id -u)",
      ].join("; ");
      const r = await run([
        "run",
        "--rm",
        "--init",
        "--profile",
        profile,
        IMAGE,
        "sh",
        "-c",
        script,
      ]);
      assert.equal(r.code, 0, show(r));
      // /proc/1's owner: the root of the init's memory's user namespace. The default's is
      // the container's root. Hardened's init exec'd an execute-only memfd of the host's root,
      // which moves its memory to the host's user namespace (the kernel's would_dump): its
      // root is unmapped in the container and shows as the overflow uid, 65534, which is also
      // the command's uid there; the four closed files above are what says it is not dumpable.
      const uid = profile === "default" ? "0/0" : "65534/65534";
      assert.equal(
        r.stdout,
        `exe=1\nmaps=1\nmem=1\nenviron=1\nuid=${uid}\n`,
        show(r),
      );
    },
  );
}

microTest(
  "--init with CAP_SYS_PTRACE: /proc/1/exe is the sealed trampoline, nothing of micro",
  async () => {
    const script = [
      "readlink /proc/1/exe",
      "wc -c < /proc/1/exe",
      "grep -v -e memfd: -e '\\[' /proc/1/maps | wc -l",
      "(echo x >> /proc/1/exe) 2>/dev/null; echo write=$?",
      "/proc/1/exe; echo run=$?",
    ].join("; ");
    const r = await run([
      "run",
      "--rm",
      "--init",
      "--cap-add",
      "SYS_PTRACE",
      IMAGE,
      "sh",
      "-c",
      script,
    ]);
    assert.equal(r.code, 0, show(r));
    assert.equal(
      r.stdout,
      `/memfd:micro-exec (deleted)\n${TRAMPOLINE[ARCH].length}\n0\nwrite=1\nrun=126\n`,
      show(r),
    );
    assert.equal(r.stderr, "micro: exec trampoline: not started by micro\n", show(r));
  },
);

microTest("--init -t: the command's process group is the terminal's foreground", async () => {
  const script = "read x x x x pgrp x x tpgid x < /proc/self/stat; " +
    'echo "pid=$$ pgrp=$pgrp tpgid=$tpgid"';
  const r = await run(["run", "--rm", "--init", "-t", IMAGE, "sh", "-c", script]);
  assert.equal(r.code, 0, show(r));
  assert.match(r.stdout, /^pid=2 pgrp=2 tpgid=2\r?\n$/, show(r));
});

microTest(
  "--init: a policy that denies what the init needs fails at once, in one line (125)",
  async () => {
    await withTempDir(async (dir) => {
      // Each of these would leave the init unable to wait for signals, to reap, or to start
      // the command; before the init tried them up front, a denied rt_sigtimedwait spun.
      for (const names of [["rt_sigtimedwait"], ["wait4"], ["fork", "clone"]]) {
        const policy = `${dir}/policy.json`;
        Deno.writeTextFileSync(
          policy,
          JSON.stringify({
            defaultAction: "SCMP_ACT_ALLOW",
            syscalls: [{ names, action: "SCMP_ACT_ERRNO" }],
          }),
        );
        const r = await run(
          ["run", "--rm", "--init", "--security-opt", `seccomp=${policy}`, IMAGE, "true"],
          { timeoutMs: 10_000 },
        );
        assert.equal(r.code, 125, `${names}: ${show(r)}`);
        assert.match(
          r.stderr,
          /^micro: exec: process: init: EPERM \(the seccomp policy denies a call the init needs: .*\)\n$/,
          `${names}: ${show(r)}`,
        );
      }
    });
  },
);
