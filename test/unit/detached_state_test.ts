/** gc and detached runs: a container outlives its killed supervisor and is not swept. */
import assert from "node:assert/strict";
import { createRunDir, processStartTime, readState, writeState } from "../../core/state.ts";
import { gc, unsupervised } from "../../core/gc.ts";
import { createContainer, readRecord } from "../../core/store/containers.ts";
import { clearRestart, markRestart, pendingRestarts } from "../../core/supervisor/pending.ts";
import type { RestartPolicy } from "../../core/supervisor/policy.ts";
import { openLibc } from "../../core/sys/libc.ts";

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

Deno.test("gc: a detached container that ended unseen gets the restart its policy asks for", () => {
  const root = Deno.makeTempDirSync();
  try {
    const uid = Deno.uid() ?? 0;
    const state = `${root}/state`;
    const store = `${root}/store`;
    const cases: [string, RestartPolicy | undefined, number, boolean][] = [
      ["always", { name: "always", max: 0 }, 7, true],
      ["fail-left", { name: "on-failure", max: 3 }, 2, true],
      ["fail-done", { name: "on-failure", max: 3 }, 3, false],
      ["none", undefined, 0, false],
    ];
    for (const [name, restart, count, _] of cases) {
      const id = name.padEnd(64, "0").replace(/[^0-9a-f]/g, "a");
      createContainer(
        store,
        {
          id,
          name,
          runId: name,
          image: null,
          command: ["sleep"],
          profiles: ["default"],
          options: ["-d"],
          rm: false,
          created: new Date().toISOString(),
          state: "running",
          pid: 999_999_999,
          startTime: 5,
          restartCount: count,
        } as Parameters<typeof createContainer>[1],
      );
      writeState(
        createRunDir(state, name, uid),
        {
          id: name,
          pid: 999_999_999, // the supervisor, gone
          startTime: 5,
          image: null,
          created: new Date().toISOString(),
          detached: true,
          record: `${store}/containers/${id}`,
          containerPid: Deno.pid,
          containerStartTime: -7, // ended
          ...(restart ? { restart } : {}),
        } as Parameters<typeof writeState>[1],
      );
    }
    assert.equal(unsupervised(state, uid), false);
    const t0 = Date.now();
    assert.deepEqual(gc(state, uid, () => {}, noSys).sort(), cases.map((c) => c[0]).sort());
    const noted = new Map(pendingRestarts(openLibc(), state));
    assert.deepEqual(
      [...noted.keys()].sort(),
      cases.filter((c) => c[3]).map((c) => c[0]).sort(),
    );
    for (const [name, p] of noted) {
      const rec = readRecord(p.recordDir)!;
      assert.equal(rec.name, name);
      assert.equal(p.id, rec.id);
      assert.equal(rec.state, "exited");
      // the back-off moved on: 100 ms first
      assert.ok(p.due >= t0 + 100 && p.due <= Date.now() + 100, `${p.due - t0}`);
    }
    // the next command's gc asks for a supervisor to start them
    assert.equal(unsupervised(state, uid), true);
    for (const name of noted.keys()) clearRestart(state, name);
    assert.equal(unsupervised(state, uid), false);
  } finally {
    Deno.removeSync(root, { recursive: true });
  }
});

Deno.test("restart notes: written whole, read back, and a note that is not one removed", () => {
  const root = Deno.makeTempDirSync();
  try {
    const sys = openLibc();
    markRestart(root, "web", { recordDir: "/x", id: "a".repeat(64), due: 5 });
    Deno.writeTextFileSync(`${root}/.supervisor/restarts/bad`, "{not json");
    Deno.mkdirSync(`${root}/.supervisor/restarts/dir`);
    assert.deepEqual(pendingRestarts(sys, root), [[
      "web",
      { recordDir: "/x", id: "a".repeat(64), due: 5 },
    ]]);
    assert.deepEqual(
      [...Deno.readDirSync(`${root}/.supervisor/restarts`)].map((e) => e.name).sort(),
      ["web"],
    );
    clearRestart(root, "web");
    assert.deepEqual(pendingRestarts(sys, root), []);
  } finally {
    Deno.removeSync(root, { recursive: true });
  }
});
