/**
 * `micro stats`, `micro top`, `micro pause`/`unpause` against a running container's own
 * cgroup files, read on the host.
 */
import assert from "node:assert/strict";
import {
  Background,
  IMAGE,
  MICRO,
  microTest,
  NEEDS,
  ok,
  run,
  show,
  sleep,
  withTempDir,
} from "./_helpers.ts";

/** PID 1 counts in /tmp/count (renamed into place: never seen half written) until /tmp/stop. */
const COUNTER = "i=0; echo ready; while [ ! -e /tmp/stop ]; do i=$((i+1)); " +
  "echo $i > /tmp/c.new; mv /tmp/c.new /tmp/count; done";

interface Running {
  name: string;
  state: {
    containerPid: number;
    containerId: string;
    exec: { ops: { kind: string; args: { path: string } }[] };
  };
  cgroup: (controller: string) => string;
}

async function withCounter(opts: string[], fn: (c: Running) => Promise<void>): Promise<void> {
  const name = `stats-${crypto.randomUUID().slice(0, 8)}`;
  const bg = new Background([
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
    COUNTER,
  ]);
  try {
    assert.ok(await bg.waitForStdout("ready"), bg.stderr);
    const state = JSON.parse(Deno.readTextFileSync(`/run/micro/${name}/state.json`));
    const joins: string[] = state.exec.ops.filter((o: { kind: string }) => o.kind === "cgroup-join")
      .map((o: { args: { path: string } }) => o.args.path);
    const cgroup = (c: string) => {
      const d = joins.find((p) => p.split("/").some((seg) => seg.split(",").includes(c))) ??
        joins[0];
      assert.ok(d, `no cgroup for ${c} in ${joins}`);
      return d;
    };
    await fn({ name, state, cgroup });
  } finally {
    await run(["unpause", name]);
    await run(["exec", name, "touch", "/tmp/stop"]);
    const r = await bg.result();
    assert.equal(r.code, 0, show(r));
  }
}

const counter = (pid: number) => Number(Deno.readTextFileSync(`/proc/${pid}/root/tmp/count`));

microTest(
  "stats --no-stream --format json: memory limit, pids and usage from the cgroup files",
  async () => {
    await withCounter(["--memory", "64m", "--pids-limit", "50"], async (c) => {
      const out = ok(await run(["stats", "--no-stream", "--format", "json", c.name]));
      const row = JSON.parse(out.trim());
      assert.equal(row.Name, c.name);
      assert.equal(row.ID, c.state.containerId.slice(0, 12));
      assert.match(row.MemUsage, / \/ 64MiB$/);
      const pidsFile = `${c.cgroup("pids")}/pids.current`;
      const pids = Number(Deno.readTextFileSync(pidsFile));
      // The loop forks mv: one or two processes, as the file says at about that moment.
      assert.ok(Math.abs(Number(row.PIDs) - pids) <= 1, `${row.PIDs} vs ${pids}`);
      // A busy loop uses CPU.
      assert.ok(parseFloat(row.CPUPerc) > 1, row.CPUPerc);
      // The table, with the container's row.
      const table = ok(await run(["stats", "--no-stream"]));
      assert.match(table, /^CONTAINER ID\s+NAME\s+CPU %\s+MEM USAGE \/ LIMIT/);
      assert.match(table, new RegExp(`^${row.ID}\\s+${c.name}\\s`, "m"));
    });
  },
);

microTest("top lists the container's processes, from its cgroup", async () => {
  await withCounter([], async (c) => {
    const out = ok(await run(["top", c.name, "-o", "pid,comm"]));
    const lines = out.trim().split("\n");
    assert.match(lines[0], /PID\s+COMMAND/);
    assert.ok(lines.some((l) => l.trim().startsWith(`${c.state.containerPid} `)), out);
    assert.ok(!lines.some((l) => l.trim().startsWith(`${Deno.pid} `)), out);
  });
});

microTest(
  "pause stops the counter (freezer), unpause lets it go on; exec refuses a paused one",
  async () => {
    await withCounter([], async (c) => {
      const pid = c.state.containerPid;
      ok(await run(["pause", c.name]));
      const a = counter(pid);
      await sleep(300);
      assert.equal(counter(pid), a, "the counter advanced while paused");
      // ps shows it, as Docker does.
      const ps = ok(await run(["ps"]));
      assert.match(ps, new RegExp(`Up .* \\(Paused\\)\\s+${c.name}$`, "m"), ps);
      const refused = await run(["exec", c.name, "true"]);
      assert.equal(refused.code, 125);
      assert.match(refused.stderr, /is paused/);
      const again = await run(["pause", c.name]);
      assert.equal(again.code, 125);
      assert.match(again.stderr, /already paused/);
      ok(await run(["unpause", c.name]));
      assert.doesNotMatch(ok(await run(["ps"])), /Paused/);
      await sleep(300);
      assert.ok(counter(pid) > a, "the counter did not go on after unpause");
    });
  },
);

microTest("stats, top, pause of a container that is not running: one line, exit 125", async () => {
  for (const argv of [["stats", "--no-stream", "nosuch"], ["top", "nosuch"], ["pause", "nosuch"]]) {
    const r = await run(argv);
    assert.equal(r.code, 125, show(r));
    assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
  }
});

microTest("rootless: stats, top and pause of a container without a cgroup of its own", async () => {
  await withTempDir(async (dir) => {
    Deno.chownSync(dir, 1000, 1000);
    const asUser = (args: string[]) => [
      "--reuid=1000",
      "--regid=1000",
      "--clear-groups",
      "--",
      "env",
      "-u",
      "XDG_RUNTIME_DIR",
      `MICRO_ROOT=${dir}`,
      "HOME=/tmp",
      MICRO,
      ...args,
    ];
    const name = `stats-rl-${crypto.randomUUID().slice(0, 8)}`;
    const bg = new Background(
      asUser(["run", "--rm", "--name", name, "--tmpfs", "/tmp", IMAGE, "sh", "-c", COUNTER]),
      { cmd: "setpriv" },
    );
    const micro = (args: string[]) => run(asUser(args), { cmd: "setpriv" });
    try {
      assert.ok(await bg.waitForStdout("ready"), bg.stderr);
      const row = JSON.parse(ok(await micro(["stats", "--no-stream", "--format", "json", name])));
      assert.equal(row.Name, name);
      assert.equal(row.NetIO, "0B / 0B");
      const top = ok(await micro(["top", name, "-o", "pid,comm"]));
      assert.match(top, /\bsh\n/);
      const paused = await micro(["pause", name]);
      if (paused.code !== 0) {
        // Without a delegated cgroup there is no freezer: one line saying so.
        assert.equal(paused.code, 125, show(paused));
        assert.match(paused.stderr, /no freezer cgroup/);
      } else ok(await micro(["unpause", name]));
    } finally {
      await micro(["exec", name, "touch", "/tmp/stop"]);
      const r = await bg.result();
      assert.equal(r.code, 0, show(r));
    }
  });
}, { ignore: NEEDS.setpriv });
