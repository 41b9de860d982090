/**
 * Interactive detached containers: `run -dit` / `-di` and `micro attach` (detach keys, exit
 * codes, shared output, sig-proxy), `start -a -i`, and a terminal taken back after a killed
 * supervisor. A client gets a terminal from `script -qec`; its keys are written to script's
 * stdin.
 */
import assert from "node:assert/strict";
import {
  IMAGE,
  lacking,
  MICRO,
  microTest,
  NEEDS,
  ok,
  run,
  type RunOptions,
  show,
  sleep,
  waitFor,
} from "./_helpers.ts";
import { MODES, supervisorPid, U, withDetached } from "./_detached.ts";

const CTRL_P = "\x10";
const CTRL_Q = "\x11";

/** A micro client running while the test talks to it (on a terminal of its own with `tty`). */
class Client {
  readonly child: Deno.ChildProcess;
  out = "";
  err = "";
  private readonly writer: WritableStreamDefaultWriter<Uint8Array>;
  private readonly done: Promise<Deno.CommandStatus>;

  constructor(args: string[], o: RunOptions, tty: boolean) {
    let cmd = MICRO;
    let argv = args;
    if (tty) {
      cmd = "script";
      argv = ["-qec", [MICRO, ...args].join(" "), "/dev/null"];
    }
    if (o.user) {
      argv = [
        `--reuid=${o.user.uid}`,
        `--regid=${o.user.gid}`,
        "--clear-groups",
        cmd,
        ...argv,
      ];
      cmd = "setpriv";
    }
    this.child = new Deno.Command(cmd, {
      args: argv,
      env: o.env,
      clearEnv: o.clearEnv,
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.writer = this.child.stdin.getWriter();
    const pump = async (s: ReadableStream<Uint8Array>, key: "out" | "err") => {
      const d = new TextDecoder();
      for await (const chunk of s) this[key] += d.decode(chunk, { stream: true });
    };
    const both = Promise.all([pump(this.child.stdout, "out"), pump(this.child.stderr, "err")]);
    this.done = this.child.status.then(async (st) => {
      await both;
      return st;
    });
  }

  async type(text: string): Promise<void> {
    await this.writer.write(new TextEncoder().encode(text));
  }

  /** Types `text` (again every 2 s: the client may not read its terminal yet) until `want`. */
  async typeUntil(text: string, want: string, ms = 15_000): Promise<boolean> {
    const end = Date.now() + ms;
    while (Date.now() < end) {
      await this.type(text);
      if (await waitFor(() => this.out.includes(want), 2000)) return true;
    }
    return false;
  }

  async closeStdin(): Promise<void> {
    await this.writer.close().catch(() => {});
  }

  /** Its exit status; SIGKILL after `ms`. */
  async status(ms = 15_000): Promise<Deno.CommandStatus> {
    const t = setTimeout(() => {
      try {
        this.child.kill("SIGKILL");
      } catch { /* gone */ }
    }, ms);
    try {
      return await this.done;
    } finally {
      clearTimeout(t);
      await this.writer.close().catch(() => {});
    }
  }

  show(): string {
    return `stdout: ${JSON.stringify(this.out)}\nstderr: ${JSON.stringify(this.err)}`;
  }
}

async function stateOf(name: string, o: RunOptions): Promise<string> {
  const r = await run(["inspect", name], o);
  return r.code === 0 ? JSON.parse(r.stdout)[0].State.Status : `inspect failed: ${show(r)}`;
}

const TTY = NEEDS.script;

for (const m of MODES) {
  microTest(
    `${m.title}run -dit, attach: type into sh, detach with ctrl-p ctrl-q, attach again, exit code`,
    async () => {
      await withDetached(async (_env, _root, o) => {
        const name = `tty-${U}`;
        ok(await run(["run", "-dit", "--name", name, IMAGE, "sh"], o));
        const a = new Client(["attach", name], o, true);
        assert.ok(await a.typeUntil("echo $((6*7))x\r", "42x"), a.show());
        // The detach keys: attach ends with 0, the shell goes on.
        await a.type(CTRL_P + CTRL_Q);
        const st = await a.status();
        assert.equal(st.code, 0, a.show());
        assert.equal(await stateOf(name, o), "running");
        // Output of the terminal is logged as stdout (json-file), as Docker's.
        assert.match(ok(await run(["logs", name], o)), /42x/);
        // Again; the shell's exit code ends attach.
        const b = new Client(["attach", name], o, true);
        assert.ok(await b.typeUntil("echo again$((1+1))\r", "again2"), b.show());
        await b.type("exit 7\r");
        const st2 = await b.status();
        assert.equal(st2.code, 7, b.show());
        assert.ok(await waitFor(async () => (await stateOf(name, o)) === "exited", 10_000));
        assert.equal(ok(await run(["wait", name], o)).trim(), "7");
      }, m.user);
    },
    { ignore: lacking(m.ignore, TTY) },
  );

  microTest(
    `${m.title}run -di: stdin piped through attach; stdout and stderr apart; its exit code`,
    async () => {
      await withDetached(async (_env, _root, o) => {
        const name = `di-${U}`;
        const script = "read x; echo out; echo err >&2; read y; echo got $x $y; exit 3";
        ok(await run(["run", "-di", "--name", name, IMAGE, "sh", "-c", script], o));
        const r = await run(["attach", name], { ...o, stdin: "one\ntwo\n" });
        assert.equal(r.code, 3, show(r));
        assert.equal(r.stdout, "out\ngot one two\n");
        assert.equal(r.stderr, "err\n");
        assert.equal(ok(await run(["wait", name], o)).trim(), "3");
      }, m.user);
    },
    { ignore: m.ignore },
  );
}

microTest("attach: bad detach keys are one line, exit 125", async () => {
  await withDetached(async (_env, _root, o) => {
    const name = `keys-${U}`;
    ok(await run(["run", "-di", "--name", name, IMAGE, "sh"], o));
    for (const keys of ["ctrl-", "ctrl-1", "foo", ","]) {
      const r = await run(["attach", "--detach-keys", keys, name], o);
      assert.equal(r.code, 125, show(r));
      assert.equal(r.stderr.trim().split("\n").length, 1, show(r));
      assert.match(r.stderr, /invalid detach keys/);
    }
    const s = await run(["start", "-a", "--detach-keys=nope", name], o);
    assert.equal(s.code, 125, show(s));
    assert.match(s.stderr, /invalid detach keys/);
    // The container is untouched.
    assert.equal(await stateOf(name, o), "running");
  });
});

microTest("attach: a stopped container is refused, as Docker's; a missing one too", async () => {
  await withDetached(async (_env, _root, o) => {
    const name = `stopped-${U}`;
    ok(await run(["run", "-d", "--name", name, IMAGE, "true"], o));
    assert.ok(await waitFor(async () => (await stateOf(name, o)) === "exited", 10_000));
    const r = await run(["attach", name], o);
    assert.equal(r.code, 125, show(r));
    assert.equal(r.stderr.trim().split("\n").length, 1, show(r));
    assert.match(r.stderr, /cannot attach to a stopped container, start it first/);
    const none = await run(["attach", `nosuch-${U}`], o);
    assert.equal(none.code, 125, show(none));
    assert.equal(none.stderr.trim().split("\n").length, 1, show(none));
  });
});

microTest(
  "attach to a container without -i/-t: output from now on, SIGINT proxied, its exit code",
  async () => {
    await withDetached(async (_env, _root, o) => {
      const name = `plain-${U}`;
      const script = 'trap "echo got INT; exit 6" INT; echo before; ' +
        "while :; do sleep 0.1; [ -e /tmp/go ] && { echo tick; rm /tmp/go; }; done";
      ok(await run(["run", "-d", "--name", name, IMAGE, "sh", "-c", script], o));
      assert.ok(
        await waitFor(async () => (await run(["logs", name], o)).stdout.includes("before"), 10_000),
      );
      const a = new Client(["attach", name], o, false);
      const b = new Client(["attach", "--sig-proxy=false", name], o, false);
      // Both see what comes after they attached (shared output); nothing from before.
      await sleep(1500);
      assert.ok(
        await waitFor(async () => {
          await run(["exec", name, "touch", "/tmp/go"], o);
          return await waitFor(() => a.out.includes("tick") && b.out.includes("tick"), 1000);
        }, 15_000),
        a.show() + b.show(),
      );
      assert.ok(!a.out.includes("before"), a.show());
      // --sig-proxy=false: b's SIGINT ends b only.
      b.child.kill("SIGINT");
      const sb = await b.status();
      assert.notEqual(sb.code, 0);
      assert.equal(await stateOf(name, o), "running");
      // sig-proxy (the default): the container gets it, and attach ends with its code.
      a.child.kill("SIGINT");
      const sa = await a.status();
      assert.equal(sa.code, 6, a.show());
      assert.match(a.out, /got INT/);
    });
  },
);

microTest(
  "start -a -i of a stopped -it container attaches; the terminal survives a killed supervisor",
  async () => {
    await withDetached(async (_env, root, o) => {
      const name = `again-${U}`;
      ok(await run(["run", "-dit", "--name", name, IMAGE, "sh"], o));
      ok(await run(["stop", "-t", "1", name], o));
      const a = new Client(["start", "-a", "-i", name], o, true);
      assert.ok(await a.typeUntil("echo $((6*7))s\r", "42s"), a.show());
      await a.type(CTRL_P + CTRL_Q);
      assert.equal((await a.status()).code, 0, a.show());
      // kill -9 of the supervisor: the keeper holds the terminal's master (no hang-up), and
      // the next supervisor takes it back.
      const sup = supervisorPid(root);
      assert.ok(sup);
      Deno.kill(sup, "SIGKILL");
      await sleep(300);
      assert.equal(await stateOf(name, o), "running");
      const b = new Client(["attach", name], o, true);
      assert.ok(await b.typeUntil("echo back$((2+3))\r", "back5"), b.show());
      await b.type(CTRL_P + CTRL_Q);
      assert.equal((await b.status()).code, 0, b.show());
      assert.match(ok(await run(["logs", name], o)), /back5/);
      ok(await run(["stop", "-t", "1", name], o));
    });
  },
  { ignore: TTY },
);
