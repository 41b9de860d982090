/**
 * The run state's root (core/state.ts): micro refuses a state root it cannot trust, with an
 * error that says so, why on purpose, and the way out; also when the root appears between
 * the first look and the mkdir.
 */
import assert from "node:assert/strict";
import { MicroError } from "../../core/errors.ts";
import { createRunDir, lockRun, type RunState, writeState } from "../../core/state.ts";
import { deadNetworkRuns, gc } from "../../core/gc.ts";
import { openLibc } from "../../core/sys/libc.ts";
import { pidOfPidfd, ptracersIn } from "../../core/run.ts";
import { processStartTime, ptracersInNs } from "../../core/state.ts";
import { nothingToSweep } from "../../core/stateroot.ts";
import { RecordingSys } from "../../core/sys/fake.ts";
import { F } from "./_flags.ts";

function withTemp(fn: (dir: string) => void): void {
  const dir = Deno.makeTempDirSync({ prefix: "micro-state-test-" });
  try {
    fn(dir);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
}

function refusal(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof MicroError, `not a MicroError: ${e}`);
    return e.line();
  }
  assert.fail("not refused");
}

const me = Deno.uid() ?? 0;
const other = me === 0 ? 1000 : 0;

Deno.test("createRunDir: a state root another user owns is refused, on purpose, with the fix", () => {
  withTemp((tmp) => {
    // Made by `me`, so to a caller with another uid it is another user's directory.
    const root = `${tmp}/micro-state-${other}`;
    Deno.mkdirSync(root, { mode: 0o700 });
    const line = refusal(() => createRunDir(root, "r1", other));
    assert.equal(
      line,
      `state root: ${root} belongs to uid ${me}, not to you (${other}): refused on purpose, ` +
        "since whoever controls it could make micro kill processes and remove files " +
        (other === 0
          ? `(remove ${root}; micro makes it again)`
          : `(set XDG_RUNTIME_DIR to a private directory of yours, or have root remove ${root})`),
    );
    assert.deepEqual([...Deno.readDirSync(root)], [], "a run dir was made in it");
  });
});

Deno.test("createRunDir: a state root of yours that others may write: chmod go-w", () => {
  withTemp((tmp) => {
    const root = `${tmp}/micro`;
    Deno.mkdirSync(root);
    Deno.chmodSync(root, 0o777);
    const line = refusal(() => createRunDir(root, "r1", me));
    assert.match(line, /^state root: .*\/micro may be written by others: refused on purpose, /);
    assert.ok(line.endsWith(`(chmod go-w ${root})`), line);
  });
});

Deno.test("createRunDir: a state root that is a link is refused", () => {
  withTemp((tmp) => {
    Deno.mkdirSync(`${tmp}/real`, { mode: 0o700 });
    Deno.symlinkSync(`${tmp}/real`, `${tmp}/micro`);
    const line = refusal(() => createRunDir(`${tmp}/micro`, "r1", me));
    assert.match(line, /is not a directory: refused on purpose/);
    assert.deepEqual([...Deno.readDirSync(`${tmp}/real`)], []);
  });
});

Deno.test("createRunDir: a root squatted between the first look and the mkdir is refused", () => {
  withTemp((tmp) => {
    const root = `${tmp}/micro`;
    // The squatter wins the race: the directory appears, world-writable, as micro's
    // recursive mkdir (which accepts a directory that exists) runs.
    const real = openLibc();
    let squatted = false;
    const sys = {
      ...real,
      mkdirat(dirfd: number, path: Uint8Array, mode: number) {
        if (!squatted && new TextDecoder().decode(path.subarray(0, -1)) === root) {
          squatted = true;
          Deno.mkdirSync(root);
          Deno.chmodSync(root, 0o777);
        }
        return real.mkdirat(dirfd, path, mode);
      },
    };
    const line = refusal(() => createRunDir(root, "r1", me, sys));
    assert.match(line, /may be written by others: refused on purpose/);
    assert.ok(squatted);
    assert.deepEqual([...Deno.readDirSync(root)], [], "a run dir was made in it");
  });
});

Deno.test("createRunDir: a fresh root is made private and holds the run dir", () => {
  withTemp((tmp) => {
    const dir = createRunDir(`${tmp}/micro`, "r1", me);
    assert.equal(dir, `${tmp}/micro/r1`);
    const mode = Deno.statSync(`${tmp}/micro`).mode! & 0o777;
    assert.equal(mode, me === 0 ? 0o711 : 0o700);
  });
});

/** A run whose micro looks dead to this process (its start time is not this pid's). */
function deadRun(root: string, id: string): string {
  const dir = createRunDir(root, id, me);
  const state: RunState = {
    id,
    pid: Deno.pid, // as a micro in another pid namespace: a pid that is not its own here
    startTime: -1,
    image: null,
    created: new Date().toISOString(),
  };
  writeState(dir, state);
  return dir;
}

const noKill = () => assert.fail("no container recorded");

Deno.test("gc: a run whose lock is held is not dead, whatever its pid says; then it is", () => {
  withTemp((tmp) => {
    const root = `${tmp}/state`;
    const dir = deadRun(root, "cleaning");
    const sys = openLibc();
    // Its micro holds the lock (here: this process, through another open file description).
    const fd = lockRun(dir, sys);
    try {
      assert.deepEqual(gc(root, me, noKill, () => sys, () => assert.fail("warned")), []);
      assert.ok(Deno.statSync(`${dir}/state.json`).isFile, "a run cleaning up was removed");
    } finally {
      sys.close(fd);
    }
    // Its micro is gone (the kernel let the lock go): the next gc cleans it.
    assert.deepEqual(gc(root, me, noKill, () => sys, () => assert.fail("warned")), ["cleaning"]);
    assert.throws(() => Deno.statSync(dir), Deno.errors.NotFound);
  });
});

Deno.test("gc: a run that cannot be removed (EBUSY) is one warning, not a failed command", () => {
  withTemp((tmp) => {
    const root = `${tmp}/state`;
    deadRun(root, "stuck");
    deadRun(root, "fine");
    const warnings: string[] = [];
    const removed: string[] = [];
    const cleaned = gc(root, me, noKill, () => openLibc(), (m) => warnings.push(m), (d) => {
      if (d.endsWith("/stuck")) {
        throw new Deno.errors.Busy(`Device or resource busy (os error 16): remove '${d}/netns'`);
      }
      removed.push(d);
    });
    assert.deepEqual(cleaned, ["fine"]);
    assert.deepEqual(removed, [`${root}/fine`]);
    assert.deepEqual(warnings, [
      `${root}/stuck: Device or resource busy (os error 16): remove '${root}/stuck/netns'; ` +
      "left for the next gc",
    ]);
  });
});

Deno.test("gc: the run's lock is taken without blocking, and a busy one is left (recording Sys)", () => {
  withTemp((tmp) => {
    const root = `${tmp}/state`;
    const dir = deadRun(root, "r");
    Deno.writeFileSync(`${dir}/lock`, new Uint8Array());
    const sys = new RecordingSys();
    sys.failOn("flock", 11); // EWOULDBLOCK: held by the run's micro
    assert.deepEqual(gc(root, me, noKill, () => sys, () => assert.fail("warned")), []);
    assert.deepEqual(sys.format(), [
      `open("${dir}/lock", ${F.NOFOLLOW}, 0)`, // O_RDONLY|O_NOFOLLOW|O_CLOEXEC
      "flock(3, 6)",
      "close(3)",
    ]);
  });
});

Deno.test("lockRun: a lock file that exists already is refused (O_EXCL), one line", () => {
  withTemp((tmp) => {
    const dir = createRunDir(`${tmp}/state`, "r", me);
    Deno.writeFileSync(`${dir}/lock`, new Uint8Array());
    const line = refusal(() => lockRun(dir, openLibc()));
    assert.match(line, /create path=.*\/r\/lock: EEXIST/);
  });
});

Deno.test("deadNetworkRuns: a run whose lock is held is not DELeted; a dead one comes with its lock", () => {
  withTemp((tmp) => {
    const root = `${tmp}/state`;
    const dir = deadRun(root, "net");
    Deno.writeTextFileSync(`${dir}/cni.json`, "{}");
    const sys = openLibc();
    const fd = lockRun(dir, sys);
    try {
      assert.deepEqual(deadNetworkRuns(root, me, () => sys), []);
    } finally {
      sys.close(fd);
    }
    const runs = deadNetworkRuns(root, me, () => sys);
    assert.equal(runs.length, 1);
    assert.equal(runs[0].dir, dir);
    assert.ok((runs[0].lock ?? -1) >= 0, "DEL must run holding the run's lock");
    // Held: another gc meanwhile leaves the run to this one.
    assert.deepEqual(deadNetworkRuns(root, me, () => sys), []);
    sys.close(runs[0].lock!);
  });
});

Deno.test("ptracersIn: the processes of that pid namespace whose bounding set has SYS_PTRACE", () => {
  withTemp((proc) => {
    const task = (pid: number, ns: string, capBnd: string) => {
      Deno.mkdirSync(`${proc}/${pid}/ns`, { recursive: true });
      Deno.symlinkSync(ns, `${proc}/${pid}/ns/pid`);
      Deno.writeTextFileSync(`${proc}/${pid}/status`, `Name:\tx\nCapBnd:\t${capBnd}\n`);
    };
    task(1, "pid:[7]", "00000000a80425fb"); // the target's init: Docker's default set
    task(20, "pid:[7]", "00000000a80c25fb"); // a process there with SYS_PTRACE (bit 19)
    task(30, "pid:[8]", "000001ffffffffff"); // another namespace: not seen from there
    Deno.mkdirSync(`${proc}/self`);
    assert.deepEqual(ptracersIn(1, proc), [20]);
    assert.deepEqual(ptracersIn(30, proc), [30]);
    assert.deepEqual(ptracersIn(99, proc), []); // gone
    // By the namespace (an OCI linux.namespaces path's link), as run's by a pid.
    assert.deepEqual(ptracersInNs("pid:[7]", proc), [20]);
    assert.deepEqual(ptracersInNs("pid:[9]", proc), []);
    Deno.mkdirSync(`${proc}/self/fdinfo`);
    Deno.writeTextFileSync(`${proc}/self/fdinfo/5`, "pos:\t0\nflags:\t02000002\nPid:\t20\n");
    assert.equal(pidOfPidfd(5, proc), 20);
    assert.equal(pidOfPidfd(6, proc), -1);
  });
});

Deno.test("nothingToSweep: only when every run's micro lives and no restart is noted", () => {
  withTemp((tmp) => {
    const root = `${tmp}/state`;
    assert.ok(nothingToSweep(root, me), "no state root: nothing to sweep");
    Deno.mkdirSync(root, { mode: 0o700 });
    assert.ok(nothingToSweep(root, me), "an empty root");
    // A run of a live micro (this process) is left alone by gc: nothing to sweep.
    const live = `${root}/live`;
    Deno.mkdirSync(live);
    writeState(live, {
      id: "live",
      pid: Deno.pid,
      startTime: processStartTime(Deno.pid),
      image: null,
      created: "",
    } as RunState);
    assert.ok(nothingToSweep(root, me), "a live run");
    // A dir with no state yet: the full sweep decides (it skips young ones).
    Deno.mkdirSync(`${root}/young`);
    assert.equal(nothingToSweep(root, me), false, "a run dir without a state");
    Deno.removeSync(`${root}/young`);
    // A dead run: the sweep has work.
    deadRun(root, "dead");
    assert.equal(nothingToSweep(root, me), false, "a dead run");
    assert.deepEqual(gc(root, me, noKill, openLibc, () => assert.fail("warned")), ["dead"]);
    assert.ok(nothingToSweep(root, me), "swept");
    // A restart noted for the supervisor: the sweep pings it.
    Deno.mkdirSync(`${root}/.supervisor/restarts`, { recursive: true });
    Deno.writeTextFileSync(`${root}/.supervisor/restarts/abc`, "{}");
    assert.equal(nothingToSweep(root, me), false, "a noted restart");
    Deno.removeSync(`${root}/.supervisor`, { recursive: true });
    // A root micro will not use: the sweep leaves it too (the run refuses it).
    Deno.chmodSync(root, 0o777);
    assert.ok(nothingToSweep(root, me), "an untrusted root is never swept");
  });
});
