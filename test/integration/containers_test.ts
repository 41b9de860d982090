/**
 * Containers as Docker keeps them: a run without --rm leaves its layer and record, listed
 * by `micro ps -a`, compared with its image by `micro diff`, removed by `micro rm`; with
 * --rm nothing stays, whatever happens to the run. The store is the test process's own
 * (MICRO_ROOT, see _helpers.ts).
 */
import assert from "node:assert/strict";
import {
  Background,
  containerDirOf,
  containerNames,
  CONTAINERS,
  exists,
  IMAGE,
  microTest,
  ok,
  pidAlive,
  run,
  show,
  waitForContainer,
} from "./_helpers.ts";

const name = () => `ct-${crypto.randomUUID().slice(0, 8)}`;

/** The `micro ps -a` row of the container named `n`, split on runs of 3+ spaces. */
async function psRow(n: string, flags = ["-a"]): Promise<string[] | undefined> {
  const out = ok(await run(["ps", ...flags]));
  const lines = out.trimEnd().split("\n");
  assert.match(lines[0], /^CONTAINER ID {3}IMAGE +COMMAND +CREATED +STATUS +NAMES$/);
  return lines.slice(1).map((l) => l.split(/ {3,}/)).find((cols) => cols.at(-1) === n);
}

function oneLineError(r: { code: number; stderr: string }, re: RegExp): void {
  assert.equal(r.code, 125, show(r as never));
  const lines = r.stderr.trimEnd().split("\n");
  assert.equal(lines.length, 1, r.stderr);
  assert.match(lines[0], re);
}

microTest(
  "a run without --rm keeps its layer and record; ps -a lists it; rm removes all",
  async () => {
    const n = name();
    const r = await run([
      "run",
      "--name",
      n,
      "-e",
      "A=1",
      IMAGE,
      "sh",
      "-c",
      "echo x > /x; exit 3",
    ]);
    assert.equal(r.code, 3, show(r));
    const dir = containerDirOf(n);
    assert.ok(dir, "no container directory");
    assert.equal(Deno.readTextFileSync(`${dir}/upper/x`), "x\n");
    const rec = JSON.parse(Deno.readTextFileSync(`${dir}/config.json`));
    assert.equal(rec.name, n);
    assert.match(rec.id, /^[0-9a-f]{64}$/);
    assert.deepEqual(rec.image, { path: Deno.realPathSync(IMAGE) });
    assert.deepEqual(rec.command, ["sh", "-c", "echo x > /x; exit 3"]);
    assert.deepEqual(rec.options, ["--name", n, "-e", "A=1"]);
    assert.deepEqual(rec.profiles, ["default"]);
    assert.equal(rec.state, "exited");
    assert.equal(rec.exitCode, 3);
    const row = await psRow(n);
    assert.ok(row, "not listed by ps -a");
    assert.equal(row[0], rec.id.slice(0, 12));
    assert.equal(row[2], '"sh -c echo x > /x; …"');
    assert.match(row[4], /^Exited \(3\) (Less than a second|\d+ seconds?) ago$/);
    assert.equal(await psRow(n, []), undefined, "ps without -a lists an exited container");
    const ids = ok(await run(["ps", "-aq", "--no-trunc"])).trim().split("\n");
    assert.ok(ids.includes(rec.id));

    assert.equal(ok(await run(["rm", n])), `${n}\n`);
    assert.equal(exists(dir), false, "rm left the directory");
    assert.equal(containerDirOf(n), undefined);
    assert.equal(exists(`${CONTAINERS}/.names/${n}`), false, "rm left the name");
    assert.equal(await psRow(n), undefined);
    // The name is free again.
    ok(await run(["run", "--rm", "--name", n, IMAGE, "true"]));
  },
);

microTest("--rm leaves nothing: after an exit, a failure to start, and a kill -9", async () => {
  const before = containerNames();
  const n = name();
  assert.equal((await run(["run", "--rm", "--name", n, IMAGE, "sh", "-c", "exit 4"])).code, 4);
  // The bind source is missing: the run fails in the container's setup, after it was made.
  const bad = await run(["run", "--rm", "-v", "/nonexistent-micro-test:/x", IMAGE, "true"]);
  assert.equal(bad.code, 125, show(bad));
  const notFound = await run(["run", "--rm", IMAGE, "/no/such/command"]);
  assert.equal(notFound.code, 127, show(notFound));
  assert.deepEqual(containerNames(), before);

  const k = name();
  const bg = new Background(["run", "--rm", "--name", k, IMAGE, "sleep", "60"]);
  try {
    assert.ok(await waitForContainer(bg.pid));
    assert.ok(containerDirOf(k), "a running --rm container has no directory");
    assert.ok(await psRow(k, []), "ps does not list a running --rm container");
    bg.kill("SIGKILL");
    await bg.result();
  } finally {
    bg.kill("SIGKILL");
  }
  // The next command's gc removes it.
  ok(await run(["ps"]));
  assert.deepEqual(containerNames(), before);
});

microTest("a kept run whose micro is killed stays, listed as exited", async () => {
  const n = name();
  const bg = new Background(["run", "--name", n, IMAGE, "sleep", "60"]);
  try {
    assert.ok(await waitForContainer(bg.pid));
    const up = await psRow(n, []);
    assert.ok(up, "ps does not list the running container");
    assert.match(up[4], /^Up /);
    bg.kill("SIGKILL");
    await bg.result();
  } finally {
    bg.kill("SIGKILL");
  }
  const row = await psRow(n);
  assert.ok(row, "the killed run's container is gone");
  assert.equal(row[4], "Exited (unknown)");
  assert.equal(await psRow(n, []), undefined);
  ok(await run(["rm", n]));
  assert.equal(containerDirOf(n), undefined);
});

microTest(
  "--name is unique among containers: a taken name is one error line, exit 125",
  async () => {
    const n = name();
    ok(await run(["run", "--name", n, IMAGE, "true"]));
    const id = JSON.parse(Deno.readTextFileSync(`${containerDirOf(n)}/config.json`)).id;
    const r = await run(["run", "--name", n, IMAGE, "true"]);
    oneLineError(
      r,
      new RegExp(`the container name "${n}" is already in use by container ${id.slice(0, 12)}`),
    );
    assert.equal(containerNames().filter((c) => c.name === n).length, 1);
    // By id prefix, as Docker allows.
    assert.equal(ok(await run(["rm", id.slice(0, 10)])), `${id.slice(0, 10)}\n`);
    assert.equal(containerDirOf(n), undefined);
  },
);

microTest("diff lists added, changed and deleted paths as docker diff does", async () => {
  const n = name();
  const script = [
    "echo new > /etc/new",
    "echo more >> /etc/passwd",
    "rm /etc/hostname",
    // rm -rf and mkdir again: an opaque directory in the upper layer
    "rm -rf /home",
    "mkdir /home",
    "touch /home/z",
    "mkdir /newdir",
    "echo f > /newdir/f",
  ].join("; ");
  ok(await run(["run", "--name", n, IMAGE, "sh", "-c", script]));
  assert.ok(exists(`${IMAGE}/etc/hostname`) && exists(`${IMAGE}/home`));
  const out = ok(await run(["diff", n]));
  assert.equal(
    out,
    [
      "C /etc",
      "D /etc/hostname",
      "A /etc/new",
      "C /etc/passwd",
      "D /home",
      "A /home/z",
      "A /newdir",
      "A /newdir/f",
      "",
    ].join("\n"),
  );
  ok(await run(["rm", n]));
});

microTest("diff of a container without a layer of its own is one error line", async () => {
  const n = name();
  ok(await run(["run", "--name", n, "--", "true"]));
  oneLineError(await run(["diff", n]), /has no layer of its own: it ran on the host view/);
  oneLineError(await run(["diff", "no-such-container-xyz"]), /no such container: no-such/);
  ok(await run(["rm", n]));
});

microTest("rm refuses a running container; rm -f kills and removes it", async () => {
  const n = name();
  const bg = new Background(["run", "--name", n, IMAGE, "sleep", "60"]);
  try {
    const st = await waitForContainer(bg.pid);
    assert.ok(st);
    oneLineError(await run(["rm", n]), new RegExp(`container ${n} is running`));
    assert.ok(containerDirOf(n));
    assert.equal(ok(await run(["rm", "-f", n])), `${n}\n`);
    const r = await bg.result(10_000);
    assert.equal(r.code, 137, show(r));
    assert.equal(pidAlive(st.containerPid!), false);
    assert.equal(containerDirOf(n), undefined);
    assert.equal(await psRow(n), undefined);
  } finally {
    bg.kill("SIGKILL");
  }
});

microTest(
  "two containers of one image do not see each other's writes; each diff is its own",
  async () => {
    const a = name();
    const b = name();
    const first = new Background([
      "run",
      "--name",
      a,
      IMAGE,
      "sh",
      "-c",
      "echo a > /a; echo ready; sleep 2; ls /b 2>&1; true",
    ]);
    try {
      assert.ok(await first.waitForStdout("ready\n"));
      const out = ok(
        await run(["run", "--name", b, IMAGE, "sh", "-c", "echo b > /b; ls /a 2>&1; true"]),
      );
      assert.match(out, /No such file/);
      const r = await first.result();
      assert.match(r.stdout, /ready\n.*No such file/s);
    } finally {
      first.kill("SIGKILL");
    }
    assert.equal(ok(await run(["diff", a])), "A /a\n");
    assert.equal(ok(await run(["diff", b])), "A /b\n");
    assert.equal(exists(`${IMAGE}/a`) || exists(`${IMAGE}/b`), false);
    assert.equal(ok(await run(["rm", a, b])), `${a}\n${b}\n`);
  },
);
