/**
 * `micro pause`/`unpause` and `micro exec` take the container's lock (core/exec/find.ts
 * withRunning) as rm, stop, kill, start and restart do, and find the container again once
 * they hold it; a SIGKILLed paused container is thawed (core/stats/mod.ts thawKilled).
 */
import assert from "node:assert/strict";
import { MicroError } from "../../core/errors.ts";
import { withRunning } from "../../core/exec/find.ts";
import { processStartTime } from "../../core/state.ts";
import { thawKilled } from "../../core/stats/mod.ts";
import { RecordingSys } from "../../core/sys/fake.ts";

const ID = "abc123" + "0".repeat(58);

/** A state root with run `web` (alive: this process), its record dir with config.json. */
async function withRun(fn: (root: string, record: string) => Promise<void>): Promise<void> {
  const dir = Deno.makeTempDirSync();
  try {
    const root = `${dir}/state`;
    const record = `${dir}/store/containers/${ID}`;
    Deno.mkdirSync(`${root}/web`, { recursive: true, mode: 0o700 });
    Deno.chmodSync(root, 0o700);
    Deno.mkdirSync(record, { recursive: true });
    Deno.writeTextFileSync(`${record}/config.json`, "{}");
    writeRun(root, record, ID);
    await fn(root, record);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
}

function writeRun(root: string, record: string, containerId: string, startTime?: number) {
  Deno.writeTextFileSync(
    `${root}/web/state.json`,
    JSON.stringify({
      id: "web",
      pid: Deno.pid,
      startTime: processStartTime(Deno.pid),
      containerPid: Deno.pid,
      containerStartTime: startTime ?? processStartTime(Deno.pid),
      image: null,
      created: "",
      containerId,
      record,
    }),
  );
}

const uid = Deno.uid()!;
const oneLine = (re: RegExp) => (e: unknown) =>
  e instanceof MicroError && re.test(e.line()) && !e.line().includes("\n");

Deno.test("withRunning: runs fn holding the lock in the container's record dir", () =>
  withRun(async (root, record) => {
    const sys = new RecordingSys();
    const got = await withRunning("abc1", uid, sys, (f) => Promise.resolve(f.name), root);
    assert.equal(got, "web");
    const calls = sys.calls().map((c) => c.call);
    assert.deepEqual(calls.filter((c) => c !== "close"), ["open", "flock"]);
    assert.equal(sys.calls()[0].args[0], `${record}/lock`);
    assert.equal(calls.at(-1), "close"); // the lock let go of
  }));

Deno.test("withRunning: a container rm removed while it waited is one line, fn not run", () =>
  withRun(async (root, record) => {
    // The rm holds the lock first, and removes the record before letting go.
    const sys = new RecordingSys().failOn(
      "flock",
      () => {
        Deno.removeSync(`${record}/config.json`);
        return true;
      },
      11,
      1,
    );
    let ran = false;
    await assert.rejects(
      withRunning("web", uid, sys, () => Promise.resolve(ran = true), root),
      oneLine(/^no such container: web/),
    );
    assert.equal(ran, false);
  }));

Deno.test("withRunning: another container of the same name by then is not the one found", () =>
  withRun(async (root, record) => {
    const sys = new RecordingSys().failOn(
      "flock",
      () => {
        writeRun(root, record, "f".repeat(64));
        return true;
      },
      11,
      1,
    );
    await assert.rejects(
      withRunning("web", uid, sys, () => Promise.resolve(), root),
      oneLine(/^no such container: web/),
    );
  }));

Deno.test("withRunning: a container stopped while it waited is one line: not running", () =>
  withRun(async (root, record) => {
    const sys = new RecordingSys().failOn(
      "flock",
      () => {
        writeRun(root, record, ID, 1); // its init is another process now
        return true;
      },
      11,
      1,
    );
    await assert.rejects(
      withRunning("web", uid, sys, () => Promise.resolve(), root),
      oneLine(/^container "web" is not running/),
    );
  }));

Deno.test("withRunning: a lock held past the wait is one line saying busy", () =>
  withRun(async (root) => {
    const sys = new RecordingSys().failOn("flock", () => true, 11);
    await assert.rejects(
      withRunning("web", uid, sys, () => Promise.resolve(), root, 100),
      oneLine(/^container web is busy \(another micro command holds its lock\)/),
    );
  }));

Deno.test("thawKilled: a frozen v1 or v2 freezer is thawed; a thawed one is left alone", () => {
  const dir = Deno.makeTempDirSync();
  try {
    const state = (path: string) => ({
      id: "web",
      pid: 1,
      startTime: 1,
      image: null,
      created: "",
      cgroups: [{ path }],
    });
    Deno.mkdirSync(`${dir}/v1`);
    Deno.writeTextFileSync(`${dir}/v1/freezer.state`, "FROZEN\n");
    thawKilled(state(`${dir}/v1`) as never);
    assert.equal(Deno.readTextFileSync(`${dir}/v1/freezer.state`), "THAWED");
    Deno.mkdirSync(`${dir}/v2`);
    Deno.writeTextFileSync(`${dir}/v2/cgroup.freeze`, "1\n");
    Deno.writeTextFileSync(`${dir}/v2/cgroup.events`, "populated 1\nfrozen 1\n");
    thawKilled(state(`${dir}/v2`) as never);
    assert.equal(Deno.readTextFileSync(`${dir}/v2/cgroup.freeze`), "0");
    Deno.mkdirSync(`${dir}/thawed`);
    Deno.writeTextFileSync(`${dir}/thawed/freezer.state`, "THAWED\n");
    thawKilled(state(`${dir}/thawed`) as never);
    assert.equal(Deno.readTextFileSync(`${dir}/thawed/freezer.state`), "THAWED\n");
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});
