/**
 * Exit codes, signal forwarding, terminals and stdin.
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
  sh,
  show,
  waitForContainer,
} from "./_helpers.ts";

microTest("exit code: the command's own", async () => {
  assert.equal((await sh("exit 3")).code, 3);
  assert.equal((await sh("exit 0")).code, 0);
  assert.equal((await sh("exit 255")).code, 255);
  assert.equal((await run(["run", IMAGE, "false"])).code, 1);
});

microTest("exit code 127: command not found, with a message", async () => {
  for (const cmd of ["nosuch", "/bin/nosuch"]) {
    const r = await run(["run", IMAGE, cmd]);
    assert.equal(r.code, 127, `${cmd}: ${show(r)}`);
    assert.match(r.stderr, new RegExp(cmd.replace(/\//g, "\\/")), `${cmd}: ${show(r)}`);
  }
  const host = await run(["run", "--", "micro-no-such-command"]);
  assert.equal(host.code, 127, show(host));
});

microTest("exit code 126: not executable, with a message", async () => {
  for (const cmd of ["/etc/passwd", "/tmp"]) {
    const r = await run(["run", IMAGE, cmd]);
    assert.equal(r.code, 126, `${cmd}: ${show(r)}`);
    assert.match(r.stderr, new RegExp(cmd.replace(/\//g, "\\/")), `${cmd}: ${show(r)}`);
  }
});

microTest("exit code 128+N: a child killed by a signal, reported by the shell", async () => {
  assert.equal((await sh("sleep 10 & kill -9 $!; wait $!; exit $?")).code, 137);
});

microTest("exit code 128+N: the container's init killed by SIGKILL from the host", async () => {
  for (const profile of ["default", "hardened"]) {
    // Wait until the command runs: a child killed before execve is a failed start that
    // micro retries once (DESIGN.md §4), with a new containerPid.
    const bg = new Background([
      "run",
      "--profile",
      profile,
      IMAGE,
      "sh",
      "-c",
      "echo ready; exec sleep 100",
    ]);
    try {
      assert.ok(await bg.waitForStdout("ready\n"), `never ready: ${bg.stderr}`);
      const st = await waitForContainer(bg.pid);
      assert.ok(st?.containerPid, `no containerPid in state.json (${profile})`);
      Deno.kill(st.containerPid, "SIGKILL");
      const r = await bg.result();
      assert.equal(r.code, 137, `${profile}: ${show(r)}`);
    } finally {
      bg.kill("SIGKILL");
      await bg.result();
    }
  }
});

const TRAP_SIGNALS: Deno.Signal[] = ["SIGTERM", "SIGUSR1", "SIGHUP", "SIGINT"];

for (const sig of TRAP_SIGNALS) {
  for (const profile of ["default", "hardened"]) {
    microTest(`${sig} to micro is forwarded to the container's init (${profile})`, async () => {
      const name = sig.slice(3);
      const bg = new Background([
        "run",
        "--profile",
        profile,
        IMAGE,
        "sh",
        "-c",
        `trap "echo got ${name}; exit 42" ${name}; echo ready; while :; do sleep 0.1; done`,
      ]);
      try {
        assert.ok(await bg.waitForStdout("ready\n"), `never ready: ${bg.stdout} ${bg.stderr}`);
        bg.kill(sig);
        const r = await bg.result();
        assert.equal(r.code, 42, show(r));
        assert.match(r.stdout, new RegExp(`got ${name}`));
      } finally {
        bg.kill("SIGKILL");
        await bg.result();
      }
    });
  }
}

// --- terminals and stdin -------------------------------------------------------------------

function scriptRun(inner: string, input: string) {
  return run(["-qec", inner, "/dev/null"], {
    cmd: "script",
    stdin: input,
    clearEnv: true,
    env: { PATH: "/usr/sbin:/usr/bin:/sbin:/bin" },
  });
}

microTest(
  "-it through a real terminal: window size, TERM, tty, exit code",
  async () => {
    const r = await scriptRun(
      `stty rows 33 cols 99; exec ${MICRO} run --rm -it ${IMAGE} sh`,
      'stty size; echo "T=$TERM"; tty; exit 7\n',
    );
    assert.equal(r.code, 7, show(r));
    const lines = r.stdout.split(/\r?\n/).map((l) => l.trim());
    assert.ok(lines.includes("33 99"), show(r));
    assert.ok(lines.includes("T=xterm"), show(r));
    assert.ok(lines.some((l) => /^\/dev\/pts\/\d+$/.test(l)), show(r));
  },
  { ignore: lacking(NEEDS.script) },
);

microTest(
  "-it under hardened: the terminal works through the user namespace",
  async () => {
    const r = await scriptRun(
      `stty rows 20 cols 70; exec ${MICRO} run --rm -it --profile hardened ${IMAGE} sh`,
      "stty size; ls -l $(tty) | cut -c1-10; exit 5\n",
    );
    assert.equal(r.code, 5, show(r));
    const lines = r.stdout.split(/\r?\n/).map((l) => l.trim());
    assert.ok(lines.includes("20 70"), show(r));
    assert.ok(lines.some((l) => /^crw--w----$|^crw-------$|^crw-rw-rw-$/.test(l)), show(r));
  },
  { ignore: lacking(NEEDS.script) },
);

microTest("-t without a terminal on micro's side still gives the container a pty", async () => {
  const r = await run(["run", "-t", IMAGE, "sh", "-c", 'tty; echo "$TERM"; exit 4']);
  assert.equal(r.code, 4, show(r));
  assert.deepEqual(r.stdout.split(/\r?\n/).filter((l) => l), ["/dev/pts/0", "xterm"]);
});

microTest("-i passes stdin; without -i the command reads /dev/null", async () => {
  assert.equal(ok(await run(["run", "-i", IMAGE, "cat"], { stdin: "hi\n" })), "hi\n");
  assert.equal(ok(await run(["run", IMAGE, "cat"], { stdin: "hi\n" })), "");
  const big = "x".repeat(200_000);
  assert.equal(ok(await run(["run", "-i", IMAGE, "wc", "-c"], { stdin: big })).trim(), "200000");
  assert.equal(
    ok(await run(["run", "-i", "--profile", "hardened", IMAGE, "cat"], { stdin: "hard\n" })),
    "hard\n",
  );
});

microTest("stdout and stderr stay separate", async () => {
  const r = await sh("echo out; echo err >&2");
  assert.equal(r.code, 0, show(r));
  assert.equal(r.stdout, "out\n");
  assert.equal(r.stderr, "err\n");
});
