/** gc and detached runs: a container outlives its killed supervisor and is not swept. */
import assert from "node:assert/strict";
import { createRunDir, gc, processStartTime, readState, writeState } from "../../core/state.ts";
import { createContainer, readRecord } from "../../core/store/containers.ts";

const noSys = () => {
  throw new Error("libc is not needed");
};

Deno.test("gc: a detached container whose supervisor died is left (alive) or recorded (gone)", () => {
  const root = Deno.makeTempDirSync();
  try {
    const uid = Deno.uid() ?? 0;
    const state = `${root}/state`;
    const store = `${root}/store`;
    const id = "b".repeat(64);
    createContainer(store, {
      id,
      name: "d",
      runId: "d",
      image: null,
      command: ["sleep"],
      profiles: ["default"],
      options: ["-d"],
      rm: false,
      created: new Date().toISOString(),
      state: "running",
      pid: 999_999_999,
      startTime: 5,
    });
    const record = `${store}/containers/${id}`;
    const dir = createRunDir(state, "d", uid);
    const base = {
      id: "d",
      pid: 999_999_999, // the supervisor, gone
      startTime: 5,
      image: null,
      created: new Date().toISOString(),
      detached: true,
      record,
    };
    // The container (this process stands for it) runs: gc neither kills it nor sweeps it.
    writeState(dir, {
      ...base,
      containerPid: Deno.pid,
      containerStartTime: processStartTime(Deno.pid),
    });
    const kills: number[] = [];
    assert.deepEqual(gc(state, uid, (p) => kills.push(p), noSys), []);
    assert.equal(kills.length, 0);
    assert.ok(readState(dir));
    // It ended while nothing supervised it: swept, and its record says exited, code unknown.
    writeState(dir, { ...base, containerPid: Deno.pid, containerStartTime: -7 });
    assert.deepEqual(gc(state, uid, (p) => kills.push(p), noSys), ["d"]);
    assert.equal(kills.length, 0);
    const rec = readRecord(record)!;
    assert.equal(rec.state, "exited");
    assert.equal(rec.exitCode, undefined);
    assert.match(rec.error ?? "", /unknown/);
  } finally {
    Deno.removeSync(root, { recursive: true });
  }
});
