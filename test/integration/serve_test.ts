/**
 * `micro serve` and its clients (MICRO_SERVE): a served command behaves as the same command
 * run in the caller's own micro (stdio, exit code, environment, directory, signals, a
 * killed client), a client the server must not serve is refused, and the server's socket
 * is its user's alone and gone when it stops.
 */
import assert from "node:assert/strict";
import {
  Background,
  exists,
  IMAGE,
  MICRO,
  microTest,
  ok,
  pidAlive,
  run,
  show,
  STATE_ROOT,
  stateEntries,
  waitFor,
  withTempDir,
} from "./_helpers.ts";

/** A server on a socket in `dir`, stopped (SIGTERM) after `fn`, with its workers. */
async function withServer(
  dir: string,
  fn: (socket: string, server: Background) => Promise<void>,
): Promise<void> {
  Deno.chmodSync(dir, 0o700);
  const socket = `${dir}/serve.sock`;
  const server = new Background(["serve", "--socket", socket]);
  try {
    assert.ok(
      await waitFor(() => server.stderr.includes("serving"), 20_000),
      `no server: ${server.stderr}`,
    );
    await fn(socket, server);
  } finally {
    server.kill("SIGTERM");
    // Its workers go with it: one left would hold the server's stderr (and its socket).
    const gone = await waitFor(() => workersOf(server.pid).length === 0, 5000);
    const left = workersOf(server.pid);
    for (const pid of left) Deno.kill(pid, "SIGKILL");
    const r = await server.result(10_000);
    assert.equal(r.code, 0, show(r));
    assert.ok(gone, `workers outlived their server: ${left.join(" ")}`);
  }
}

/** The pids of the workers started by the server `pid` (`_serve-worker PID`). */
function workersOf(pid: number): number[] {
  const out: number[] = [];
  for (const e of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(e.name)) continue;
    try {
      const argv = Deno.readTextFileSync(`/proc/${e.name}/cmdline`).split("\0");
      const k = argv.indexOf("_serve-worker");
      if (k >= 0 && argv[k + 1] === String(pid)) out.push(Number(e.name));
    } catch { /* gone */ }
  }
  return out;
}

microTest(
  "serve: a served run has the caller's stdio, exit code, environment and directory",
  async () => {
    await withTempDir(async (dir) => {
      await withServer(dir, async (socket) => {
        const env = { MICRO_SERVE: socket, GREETING: "from the caller" };
        // The image by a name relative to the caller's directory.
        const slash = IMAGE.lastIndexOf("/");
        const script = 'read x; echo "$x $GREETING"; echo err >&2; exit 7';
        const r = await run(
          ["run", "--rm", "-i", "-e", "GREETING", IMAGE.slice(slash + 1), "sh", "-c", script],
          { env, stdin: "hello\n", cwd: IMAGE.slice(0, slash) },
        );
        assert.equal(r.code, 7, show(r));
        assert.equal(r.stdout, "hello from the caller\n");
        assert.equal(r.stderr, "err\n");
        // Again in the same worker (it serves many): nothing of the first run's left.
        const again = await run(["run", "--rm", IMAGE, "sh", "-c", 'echo "[$GREETING]"'], {
          env: { MICRO_SERVE: socket },
        });
        assert.equal(ok(again), "[]\n");
        // plan too; a pipe's reader sees its end when the client exits (the worker let go).
        const plan = await run(["plan", IMAGE, "/bin/true"], { env: { MICRO_SERVE: socket } });
        assert.match(ok(plan), /bind-root/);
        const piped = await run(
          ["-c", `${MICRO} run --rm ${IMAGE} echo through | cat`],
          { cmd: "sh", env: { MICRO_SERVE: socket }, timeoutMs: 20_000 },
        );
        assert.equal(ok(piped), "through\n");
        // Served indeed: the client's trace has the worker's phases, not its own run's.
        const traced = await run(["run", "--rm", IMAGE, "true"], {
          env: { MICRO_SERVE: socket, MICRO_TRACE: "1" },
        });
        assert.doesNotMatch(traced.stderr, /not served|load run modules/, show(traced));
        assert.match(traced.stderr, /trace: total/);
      });
    });
  },
);

microTest(
  "serve: the client's signals reach the run; a client killed takes its container with it",
  async () => {
    await withTempDir(async (dir) => {
      await withServer(dir, async (socket) => {
        const before = new Set(stateEntries(STATE_ROOT));
        const term = new Background([
          "run",
          "--rm",
          IMAGE,
          "sh",
          "-c",
          "trap 'exit 3' TERM; echo up; while :; do sleep 0.1; done",
        ], {
          env: { MICRO_SERVE: socket },
        });
        assert.ok(await term.waitForStdout("up"), term.stderr);
        term.kill("SIGTERM");
        const t = await term.result(15_000);
        assert.equal(t.code, 3, show(t));
        const killed = new Background(
          ["run", "--rm", IMAGE, "sh", "-c", "echo up; exec sleep 60"],
          {
            env: { MICRO_SERVE: socket },
          },
        );
        assert.ok(await killed.waitForStdout("up"), killed.stderr);
        const runs = stateEntries(STATE_ROOT).filter((e) => !before.has(e));
        assert.equal(runs.length, 1, runs.join(" "));
        const statePid =
          JSON.parse(Deno.readTextFileSync(`${STATE_ROOT}/${runs[0]}/state.json`)).pid;
        killed.kill("SIGKILL");
        await killed.result();
        // Its micro (the worker) goes as a killed micro would, its container with it.
        assert.ok(
          await waitFor(() => !pidAlive(statePid), 10_000),
          "the worker outlived its client",
        );
        // The next command's gc removes what it left, as after a killed micro.
        ok(await run(["run", "--rm", IMAGE, "true"], { env: { MICRO_SERVE: socket } }));
        assert.deepEqual(stateEntries(STATE_ROOT).filter((e) => !before.has(e)), []);
      });
    });
  },
);

microTest(
  "serve: a client in other namespaces runs its command itself; the socket is the user's alone",
  async () => {
    await withTempDir(async (dir) => {
      await withServer(dir, async (socket) => {
        assert.equal(Deno.lstatSync(socket).mode! & 0o777, 0o600);
        // Not served (the reason in the trace), but run all the same, in its own process.
        const r = await run(["-n", MICRO, "run", "--rm", IMAGE, "sh", "-c", "echo here; exit 4"], {
          cmd: "unshare",
          env: { MICRO_SERVE: socket, MICRO_TRACE: "1" },
        });
        assert.equal(r.code, 4, show(r));
        assert.equal(r.stdout, "here\n");
        assert.match(r.stderr, /serve: not served: the client is in another net namespace/);
        assert.match(r.stderr, /trace: load run modules/, "not run in the client's own process");
        // A second server on the same socket is refused; the first goes on.
        const second = await run(["serve", "--socket", socket], { timeoutMs: 20_000 });
        assert.equal(second.code, 125, show(second));
        assert.match(second.stderr, /another micro serve listens on/);
        ok(await run(["run", "--rm", IMAGE, "true"], { env: { MICRO_SERVE: socket } }));
      });
      assert.ok(!exists(`${dir}/serve.sock`), "the socket outlived its server");
      // No server: the command runs here.
      const none = await run(["run", "--rm", IMAGE, "sh", "-c", "exit 5"], {
        env: { MICRO_SERVE: `${dir}/serve.sock`, MICRO_TRACE: "1" },
      });
      assert.equal(none.code, 5, show(none));
      assert.match(none.stderr, /serve: not served: connect .*serve\.sock: ENOENT/);
    });
  },
);

microTest(
  "serve: a read of the client's stdin left pending ends the worker, not the next client's input",
  async () => {
    await withTempDir(async (dir) => {
      await withServer(dir, async (socket, server) => {
        // stdin stays open (sleep holds the pipe) and the container never reads it.
        const r = await run(
          ["-c", `sleep 2 | ${MICRO} run --rm -i ${IMAGE} true; echo "code $?"`],
          {
            cmd: "sh",
            env: { MICRO_SERVE: socket },
          },
        );
        assert.equal(ok(r), "code 0\n");
        assert.ok(
          await waitFor(() => server.stderr.includes("a call left on the client's stdio"), 5000),
          server.stderr,
        );
        ok(await run(["run", "--rm", IMAGE, "true"], { env: { MICRO_SERVE: socket } }));
      });
    });
  },
);
