/**
 * Limits refused before the run, from a flag or a profile: a memory limit below the 6 MB a
 * container starts in (it used to die of signal 9 before exec, or fail a mount with
 * EINVAL), and `--cpus` above the host's CPU count (Docker refuses both). Each is one line,
 * exit 125, and nothing runs.
 */
import assert from "node:assert/strict";
import { IMAGE, microTest, ok, run, show, withTempDir } from "./_helpers.ts";

const WHY = "below 6m, the least memory a container starts in (0: no limit)";

microTest("-m 100000 is refused in one line; -m 0 is no limit and -m 6m runs", async () => {
  const r = await run(["run", "--rm", "-m", "100000", IMAGE, "echo", "ran"]);
  assert.equal(r.code, 125, show(r));
  assert.equal(r.stdout, "", show(r));
  assert.equal(r.stderr, `micro: command line: cgroups.memory: invalid value "100000": ${WHY}\n`);
  for (const m of ["0", "6m"]) {
    assert.equal(ok(await run(["run", "--rm", "-m", m, IMAGE, "echo", "ran"])), "ran\n");
  }
});

microTest("a profile's memory below 6m names the file, key and line", async () => {
  await withTempDir(async (dir) => {
    const p = `${dir}/small.yaml`;
    Deno.writeTextFileSync(p, "extends: default\ncgroups:\n  memoryReservation: 1m\n");
    const r = await run(["run", "--rm", "--profile", p, IMAGE, "echo", "ran"]);
    assert.equal(r.code, 125, show(r));
    assert.equal(
      r.stderr,
      `micro: profile ${p}: cgroups.memoryReservation (line 3): invalid value "1m": ${WHY}\n`,
    );
  });
});

microTest("--cpus above the host's CPU count is refused naming the count", async () => {
  // What micro counts: the host's online CPUs ("0-1,4" is 3).
  const online = Deno.readTextFileSync("/sys/devices/system/cpu/online").trim();
  const n = online.split(",").reduce((sum, r) => {
    const [a, b = a] = r.split("-").map(Number);
    return sum + b - a + 1;
  }, 0);
  const r = await run(["run", "--rm", "--cpus", String(n + 1), IMAGE, "echo", "ran"]);
  assert.equal(r.code, 125, show(r));
  assert.equal(r.stdout, "", show(r));
  assert.equal(
    r.stderr,
    `micro: check: cgroups: --cpus: ${n + 1} is out of range: the range of CPUs is from 0.01 ` +
      `to ${n}.00, as there ${n === 1 ? "is only 1 CPU" : `are only ${n} CPUs`} available ` +
      `(${online} online)\n`,
  );
  assert.equal(ok(await run(["run", "--rm", "--cpus", String(n), IMAGE, "echo", "ran"])), "ran\n");
});
