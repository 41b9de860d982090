/**
 * The container's stdio: pipes without a terminal (no host fd reaches the container), a pty
 * with one; relays that never block signal handling or exit; signals from the first moment.
 */
import assert from "node:assert/strict";
import {
  IMAGE,
  lacking,
  MICRO,
  microTest,
  NEEDS,
  run,
  show,
  sleep,
  STORE_ROOT,
  withTempDir,
} from "./_helpers.ts";

const dec = new TextDecoder();

/**
 * `sh -c SCRIPT` on the host, with MICRO and IMAGE in its environment; `$M` runs micro
 * killed (SIGKILL) after 12 s, so a micro that hangs fails the test instead of holding it.
 */
function host(script: string, shell = "sh") {
  return run(["-c", script], {
    cmd: shell,
    env: { MICRO, IMAGE, PATH: "/usr/sbin:/usr/bin:/sbin:/bin", M: `timeout -s KILL 12 ${MICRO}` },
    timeoutMs: 30_000,
  });
}

/** Under script(1): micro's stdio is a real terminal that `input` is typed into. */
function underScript(inner: string, input: string) {
  return run(["-qec", inner, "/dev/null"], {
    cmd: "script",
    stdin: input,
    clearEnv: true,
    // The test's own store: a run without --rm leaves its container there, not in the host's.
    env: { PATH: "/usr/sbin:/usr/bin:/sbin:/bin", MICRO, IMAGE, MICRO_ROOT: STORE_ROOT },
  });
}

/** micro with stdin fed `y\n` without end, stdout collected. */
class Flooded {
  readonly child: Deno.ChildProcess;
  stdout = "";
  readonly done: Promise<Deno.CommandStatus>;
  private feeding = true;

  constructor(args: string[]) {
    const child = new Deno.Command(MICRO, {
      args,
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.child = child;
    const w = child.stdin.getWriter();
    const chunk = new TextEncoder().encode("y\n".repeat(32768));
    void (async () => {
      try {
        while (this.feeding) await w.write(chunk);
      } catch { /* micro exited */ }
    })();
    void (async () => {
      for await (const c of child.stdout) this.stdout += dec.decode(c);
    })();
    void child.stderr.cancel();
    this.done = child.status;
  }

  async result(ms: number): Promise<Deno.CommandStatus | "timeout"> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const r = await Promise.race([
      this.done,
      new Promise<"timeout">((res) => timer = setTimeout(() => res("timeout"), ms)),
    ]);
    clearTimeout(timer);
    this.feeding = false;
    if (r === "timeout") {
      try {
        this.child.kill("SIGKILL");
      } catch { /* gone */ }
      await this.done;
    }
    return r;
  }
}

// --- item 9: -i -t never blocks micro ------------------------------------------------------

microTest(
  "-i -t: a flood on stdin into a command that exits at once: exit 0, promptly",
  async () => {
    const t0 = Date.now();
    const r = await host('yes | $M run -i -t "$IMAGE" true; echo "status $?"');
    assert.match(r.stdout, /status 0\n$/, show(r));
    assert.ok(Date.now() - t0 < 10_000, `took ${Date.now() - t0} ms`);
  },
);

microTest("-i -t: SIGTERM reaches a container that does not read its flooded stdin", async () => {
  const f = new Flooded([
    "run",
    "-i",
    "-t",
    IMAGE,
    "sh",
    "-c",
    'trap "exit 3" TERM; echo ready; while :; do sleep 0.1; done',
  ]);
  const deadline = Date.now() + 10_000;
  while (!f.stdout.includes("ready") && Date.now() < deadline) await sleep(20);
  assert.ok(f.stdout.includes("ready"), "never ready");
  await sleep(300); // the pty's input buffer is full by now
  f.child.kill("SIGTERM");
  const st = await f.result(8_000);
  assert.notEqual(st, "timeout", "micro did not end after SIGTERM");
  assert.equal((st as Deno.CommandStatus).code, 3);
});

microTest("-i -t: stdin's EOF reaches the container as ^D at a line start", async () => {
  const r = await host('echo hi | $M run -it "$IMAGE" sh; echo "status $?"');
  assert.match(r.stdout, /hi: not found/, show(r));
  assert.match(r.stdout, /status 127\n$/, show(r));
  // A line that does not end: the first ^D ends it, the second is the EOF.
  const cat = await host('printf abc | $M run -it "$IMAGE" cat; echo "status $?"');
  assert.match(cat.stdout, /abc/, show(cat));
  assert.match(cat.stdout, /status 0\n$/, show(cat));
});

microTest(
  "-i -t: micro's terminal is restored when the container ends",
  async () => {
    const r = await underScript(
      'a=$(stty -g); "$MICRO" run -it "$IMAGE" sh -c "exit 4"; s=$?; b=$(stty -g); ' +
        '[ "$a" = "$b" ] && echo "restored $s" || echo "changed $s"',
      "",
    );
    assert.match(r.stdout, /restored 4/, show(r));
  },
  { ignore: lacking(NEEDS.script) },
);

// --- item 12: no host fd in the container --------------------------------------------------

microTest(
  "without -t, stdout and stderr are pipes; stdin is a pipe with -i, else /dev/null",
  async () => {
    await withTempDir(async (dir) => {
      // micro's own stdout and stderr are files: the container must see pipes, not them.
      const probe = "for i in 0 1 2; do readlink /proc/self/fd/$i; done";
      for (const [opt, stdin] of [["", "/dev/null"], ["-i", "pipe"]]) {
        const r = await host(
          `echo x | $M run ${opt} "$IMAGE" sh -c '${probe}' > ${dir}/out 2> ${dir}/err`,
        );
        assert.equal(r.code, 0, show(r));
        const [fd0, fd1, fd2] = Deno.readTextFileSync(`${dir}/out`).trim().split("\n");
        if (stdin === "pipe") assert.match(fd0, /^pipe:\[\d+\]$/);
        else assert.equal(fd0, "/dev/null");
        assert.match(fd1, /^pipe:\[\d+\]$/, `fd 1 with ${opt || "no -i"}: ${fd1}`);
        assert.match(fd2, /^pipe:\[\d+\]$/, `fd 2 with ${opt || "no -i"}: ${fd2}`);
        assert.notEqual(fd1, fd2);
      }
    });
  },
);

microTest(
  "without -i, the container cannot read the user's terminal through stderr",
  async () => {
    const r = await underScript(
      `"$MICRO" run "$IMAGE" sh -c 'if x=$(head -c 12 <&2); then echo "read:$x"; else echo "no read"; fi'`,
      "typed-secret\n",
    );
    assert.match(r.stdout, /no read/, show(r));
    assert.doesNotMatch(r.stdout, /read:typed-secret/, show(r));
  },
  { ignore: lacking(NEEDS.script) },
);

microTest(
  "reopening /proc/self/fd/1 cannot reach the host file micro's stdout goes to",
  async () => {
    await withTempDir(async (dir) => {
      const log = `${dir}/log`;
      Deno.writeTextFileSync(log, "host line\n");
      const r = await host(
        `$M run "$IMAGE" sh -c 'head -c 100 /proc/self/fd/1 >&2 & p=$!; sleep 0.3; ` +
          `kill $p 2>/dev/null; echo one; echo two > /proc/self/fd/1; echo three' >> ${log}`,
      );
      assert.equal(r.code, 0, show(r));
      // Appended through the relay, in order; never truncated, never read back.
      assert.equal(Deno.readTextFileSync(log), "host line\none\ntwo\nthree\n");
      assert.doesNotMatch(r.stderr, /host line/, show(r));
    });
  },
);

microTest("stdout and stderr arrive byte-exact and apart: 10 MB, then exit", async () => {
  const size = 10 * 1024 * 1024;
  const child = new Deno.Command(MICRO, {
    args: [
      "run",
      "--tmpfs",
      "/scratch",
      IMAGE,
      "sh",
      "-c",
      `head -c ${size} /dev/urandom > /scratch/r; md5sum /scratch/r >&2; cat /scratch/r`,
    ],
    stdout: "piped",
    stderr: "piped",
  });
  const out = await child.output();
  assert.equal(out.code, 0, dec.decode(out.stderr));
  assert.equal(out.stdout.length, size);
  const sum = dec.decode(out.stderr).split(" ")[0];
  const hex = await md5(out.stdout);
  assert.equal(hex, sum);
});

async function md5(data: Uint8Array): Promise<string> {
  const c = new Deno.Command("md5sum", { stdin: "piped", stdout: "piped" }).spawn();
  const w = c.stdin.getWriter();
  await w.write(data);
  await w.close();
  return dec.decode((await c.output()).stdout).split(" ")[0];
}

microTest(
  "a consumer that closes early ends the run promptly: `micro run IMG yes | head -1`",
  async () => {
    const t0 = Date.now();
    const r = await host('$M run "$IMAGE" yes | head -1; echo "status ${PIPESTATUS[0]}"', "bash");
    // busybox yes, as PID 1, sees EPIPE (a PID 1 ignores SIGPIPE) and exits 1; 141 elsewhere.
    assert.match(r.stdout, /^y\nstatus (1|141)\n$/, show(r));
    assert.ok(Date.now() - t0 < 10_000, `took ${Date.now() - t0} ms`);
  },
);

microTest(
  "a process outside a pid namespace that keeps stdout open does not hold micro",
  async () => {
    await withTempDir(async (dir) => {
      const profile = `${dir}/nopid.yaml`;
      Deno.writeTextFileSync(profile, "extends: default\npid: { enabled: false }\n");
      const t0 = Date.now();
      const r = await run(
        ["run", "--profile", profile, IMAGE, "sh", "-c", "sleep 30 & echo $!; echo done"],
        { timeoutMs: 20_000 },
      );
      try {
        assert.equal(r.code, 0, show(r));
        assert.match(r.stdout, /done\n$/, show(r));
        assert.ok(Date.now() - t0 < 8_000, `took ${Date.now() - t0} ms`);
      } finally {
        const pid = Number(r.stdout.split("\n")[0]);
        if (pid > 1) {
          try {
            Deno.kill(pid, "SIGKILL");
          } catch { /* gone with the cgroup */ }
        }
      }
    });
  },
);

// --- item 13: signals from the very start ---------------------------------------------------

microTest("SIGTERM at any early moment leaves nothing behind and exits 143", async () => {
  const delays = [0, 5, 20, 40, 80, 120, 150, 170, 190, 210, 230, 260, 300, 400];
  const seen: string[] = [];
  for (let round = 0; round < 2; round++) {
    for (const ms of delays) {
      const child = new Deno.Command(MICRO, {
        args: [
          "run",
          IMAGE,
          "sh",
          "-c",
          'trap "exit 143" TERM; echo ready; while :; do sleep 0.05; done',
        ],
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      await sleep(ms);
      child.kill("SIGTERM");
      const output = child.output();
      const timer = setTimeout(() => {
        try {
          child.kill("SIGKILL");
        } catch { /* gone */ }
      }, 10_000);
      const out = await output;
      clearTimeout(timer);
      const what = out.signal ? `signal ${out.signal}` : `code ${out.code}`;
      seen.push(`${ms}ms: ${what}`);
      assert.ok(
        out.signal === "SIGTERM" || out.code === 143,
        `SIGTERM after ${ms} ms: ${what}\n${dec.decode(out.stderr)}`,
      );
    }
  }
  console.log(seen.join(", "));
});

// --- issue 9, bug 1: a user that is not root writes its own stdio ---------------------------

/** Writes through /dev/stdout and /dev/stderr (reopened: the pipe's own permissions count). */
const REOPEN = "id -u; echo out >/dev/stdout; echo err >/dev/stderr";

microTest(
  "a user that is not root reopens /dev/stdout and /dev/stderr: pipes, a file, hardened too",
  async () => {
    await withTempDir(async (dir) => {
      for (const opts of ["--profile hardened", "--profile hardened --user 0", "--user 1000"]) {
        // micro's stdout and stderr are pipes here ...
        const r = await host(`$M run ${opts} "$IMAGE" sh -c '${REOPEN}'`);
        assert.equal(r.code, 0, `${opts}: ${show(r)}`);
        assert.match(r.stdout, /^\d+\nout\n$/, `${opts}: ${show(r)}`);
        assert.equal(r.stderr, "err\n", `${opts}: ${show(r)}`);
        // ... and files here (the container still gets micro's pipes) ...
        const f = await host(
          `$M run ${opts} "$IMAGE" sh -c '${REOPEN}' >${dir}/out 2>${dir}/err; echo "status $?"`,
        );
        assert.equal(f.stdout, "status 0\n", `${opts}: ${show(f)}`);
        assert.match(Deno.readTextFileSync(`${dir}/out`), /^\d+\nout\n$/, opts);
        assert.equal(Deno.readTextFileSync(`${dir}/err`), "err\n", opts);
        // ... and with -i, /dev/stdin is micro's pipe too.
        const i = await host(`echo in | $M run -i ${opts} "$IMAGE" cat /dev/stdin`);
        assert.equal(i.stdout, "in\n", `${opts}: ${show(i)}`);
      }
      // The file micro's output goes to is left as it was (micro writes it, not the user).
      const st = Deno.statSync(`${dir}/out`);
      assert.equal(st.uid, 0);
    });
  },
);

microTest(
  "-t: a user that is not root reopens /dev/stdout and /dev/stderr (the terminal is its own)",
  async () => {
    for (const opts of ["--profile hardened", "--user 1000"]) {
      const r = await underScript(
        `"$MICRO" run --rm -t ${opts} "$IMAGE" sh -c '${REOPEN}; stat -c %U /proc/self/fd/0'; ` +
          'echo "status $?"',
        "",
      );
      assert.match(r.stdout, /^out\r*$/m, `${opts}: ${show(r)}`);
      assert.match(r.stdout, /^err\r*$/m, `${opts}: ${show(r)}`);
      assert.doesNotMatch(r.stdout, /denied/, `${opts}: ${show(r)}`);
      assert.match(r.stdout, /status 0/, `${opts}: ${show(r)}`);
    }
  },
  { ignore: lacking(NEEDS.script) },
);
