/**
 * Signals go to a process through a pidfd checked against what micro recorded (its start
 * time, or its cgroup), never by a pid checked earlier: a pid the kernel gave out again
 * belongs to an unrelated host process.
 */
import assert from "node:assert/strict";
import { killRecorded, processStartTime, signalProcess } from "../../core/state.ts";
import { kill, signalMember } from "../../core/oci/runtime.ts";
import type { OciState } from "../../core/oci/state.ts";
import { RecordingSys } from "../../core/sys/fake.ts";
import { openLibc } from "../../core/sys/libc.ts";
import { stopLeftHelper } from "../../core/usernet/record.ts";

const me = Deno.pid;
const myStart = processStartTime(me);

function ociState(startTime: number): OciState {
  return {
    id: "c1",
    pid: me,
    startTime,
    bundle: "/b",
    rootfs: "/b/rootfs",
    created: "",
    owner: "root",
    annotations: {},
    cgroups: [],
  };
}

Deno.test("signalProcess signals through the pidfd it opened, then closes it", () => {
  const sys = new RecordingSys();
  assert.equal(signalProcess(sys, me, myStart, 15), 0);
  assert.deepEqual(sys.names(), ["pidfdOpen", "pidfdSendSignal", "close"]);
  assert.ok(!sys.names().includes("kill"));
});

Deno.test("signalProcess leaves a pid whose start time is not the recorded one", () => {
  const sys = new RecordingSys();
  assert.equal(signalProcess(sys, me, myStart + 1, 9), -3);
  assert.deepEqual(sys.names(), ["pidfdOpen", "close"]);
});

Deno.test("signalProcess reports a process gone before the pidfd (ESRCH)", () => {
  const sys = new RecordingSys().failOn("pidfdOpen", 3);
  assert.equal(signalProcess(sys, me, myStart, 9), -3);
  assert.deepEqual(sys.names(), ["pidfdOpen"]);
});

Deno.test("oci kill signals the container's process by pidfd, never kill(2) by pid", () => {
  const root = Deno.makeTempDirSync();
  try {
    Deno.mkdirSync(`${root}/c1`);
    Deno.writeTextFileSync(`${root}/c1/state.json`, JSON.stringify(ociState(myStart)));
    const sys = new RecordingSys();
    kill(root, "c1", 0, false, sys);
    assert.ok(!sys.names().includes("kill"), sys.names().join(" "));
    assert.deepEqual(sys.calls().find((c) => c.call === "pidfdSendSignal")?.args.slice(1), [0]);
  } finally {
    Deno.removeSync(root, { recursive: true });
  }
});

Deno.test("oci signalMember leaves a pid that is no longer in the container's cgroup", () => {
  const sys = new RecordingSys();
  // No cgroup of its own: an extra pid is never one of the container's.
  assert.equal(signalMember(ociState(myStart), 1, 9, sys), -3);
  assert.ok(!sys.names().includes("pidfdSendSignal"));
  assert.ok(!sys.names().includes("kill"));
});

Deno.test("killRecorded (gc, rm -f) kills a pid only while its start time is the recorded one", async () => {
  const child = new Deno.Command("sleep", { args: ["30"] }).spawn();
  try {
    const start = processStartTime(child.pid);
    assert.ok(start > 0);
    // Recorded with another start time: the pid now names another process, left alone.
    killRecorded(child.pid, start + 1);
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(processStartTime(child.pid), start);
    killRecorded(child.pid, start);
    assert.equal((await child.status).signal, "SIGKILL");
  } finally {
    try {
      child.kill("SIGKILL");
    } catch { /* gone */ }
  }
});

Deno.test("a rootless network helper left behind is killed through a pidfd checked after it is open", async () => {
  const dir = Deno.makeTempDirSync();
  // Stands for pasta: its command line names the run's pid file, as micro started it.
  const child = new Deno.Command("sh", {
    args: ["-c", "sleep 30; :", "pasta", `${dir}/pasta.pid`],
  }).spawn();
  try {
    Deno.writeTextFileSync(`${dir}/pasta.pid`, String(child.pid));
    for (
      let i = 0;
      i < 100 && !Deno.readTextFileSync(`/proc/${child.pid}/cmdline`).includes(dir);
      i++
    ) {
      await new Promise((r) => setTimeout(r, 10));
    }
    const fake = new RecordingSys();
    assert.equal(stopLeftHelper(dir, () => fake), true);
    assert.deepEqual(fake.names(), ["pidfdOpen", "pidfdSendSignal", "close"]);
    assert.ok(stopLeftHelper(dir, openLibc));
    assert.equal((await child.status).signal, "SIGKILL");
    // Gone: its pid file names no process with that command line, and libc is not opened.
    assert.equal(stopLeftHelper(dir, () => assert.fail("no helper: no signal")), false);
  } finally {
    try {
      child.kill("SIGKILL");
    } catch { /* gone */ }
    Deno.removeSync(dir, { recursive: true });
  }
});
