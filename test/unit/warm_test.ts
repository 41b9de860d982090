/**
 * core/cgroups/warm.ts: the v1 join's grace period started early, through a zombie of
 * micro's own written into a cgroup.procs file (never a live process, never micro itself).
 */
import assert from "node:assert/strict";
import {
  dropLaunched,
  fromLauncher,
  joining,
  takeLaunched,
  warmAttach,
  warmDone,
} from "../../core/cgroups/warm.ts";
import { RecordingSys } from "../../core/sys/fake.ts";
import { VFORK_CODE } from "../../core/engine/vfork.ts";
import { openLibc } from "../../core/sys/libc.ts";
import { C } from "../../core/sys/mod.ts";
import { F } from "./_flags.ts";

const CODE = new Uint8Array([0xc3]);

/** A test of the module's one state: ended (warmDone) even when it fails. */
function warmTest(name: string, fn: () => Promise<void>): void {
  Deno.test(name, async () => {
    try {
      await fn();
    } finally {
      await Promise.race([warmDone(), new Promise((r) => setTimeout(r, 100))]);
    }
  });
}
const CGROUP_SUPER_MAGIC = 0x27e0eb;
const TMPFS_MAGIC = 0x01021994;

/** A cgroup v1 host: /sys/fs/cgroup a tmpfs (fd 3), the hierarchies' files cgroupfs. */
function v1Host(): RecordingSys {
  return new RecordingSys({ clonePid: 4242 })
    .returns("fstatfsType", (a) => a[0] === 3, TMPFS_MAGIC)
    .returns("fstatfsType", () => true, CGROUP_SUPER_MAGIC);
}

warmTest(
  "warm-up: on cgroup v1, a zombie of micro's own is written into a hierarchy's cgroup.procs, then reaped",
  async () => {
    const sys = v1Host();
    const written: string[] = [];
    const writeAsync = sys.writeAsync.bind(sys);
    sys.writeAsync = (fd: number, buf: Uint8Array, len: number) => {
      written.push(new TextDecoder().decode(buf.subarray(0, len)));
      return writeAsync(fd, buf, len);
    };
    warmAttach(sys, CODE, 0);
    assert.deepEqual(written, ["4242"], "not the zombie's pid");
    const calls = sys.format();
    // O_WRONLY | O_CLOEXEC | O_NOFOLLOW
    assert.ok(
      calls.includes(`open("/sys/fs/cgroup/pids/cgroup.procs", ${F.WRONLY_NOFOLLOW}, 0)`),
      calls.join("\n"),
    );
    // CLONE_VFORK: the clone returns once it has exited; the pipe's write end closed before
    const hold = calls.findIndex((c) => c.startsWith("usernsHold("));
    assert.equal(calls[hold], `usernsHold(${C.CLONE_VFORK | C.SIGCHLD}, 5, -1)`);
    assert.equal(calls[hold - 1], "close(6)");
    const exited = calls.indexOf("waitExited(4242)");
    const write = calls.findIndex((c) => c.startsWith("writeAsync("));
    assert.ok(exited >= 0 && write > exited, "written before it was checked to have exited");
    assert.match(calls[write], /^writeAsync\(4, 4\)/);
    // One at a time: a second start while it is under way (a worker's, then the run's) does nothing.
    sys.clear();
    warmAttach(sys, CODE, 0);
    assert.deepEqual(sys.format(), []);
    await warmDone();
    assert.deepEqual(sys.format(), ["close(4)", "reap(4242)"]);
    await warmDone();
    assert.equal(sys.format().length, 2, "ended twice");
  },
);

warmTest(
  "warm-up: nothing on cgroup v2 (a child is born in its cgroup), nor where no hierarchy is",
  async () => {
    const v2 = new RecordingSys().returns("fstatfsType", () => true, C.CGROUP2_SUPER_MAGIC);
    warmAttach(v2, CODE, 0);
    assert.deepEqual(v2.names().filter((n) => n === "usernsHold" || n === "writeAsync"), []);
    await warmDone();
    // /sys/fs/cgroup a tmpfs, but no file there is cgroupfs's: each closed, nothing cloned
    const none = new RecordingSys().returns("fstatfsType", () => true, TMPFS_MAGIC);
    warmAttach(none, CODE, 0);
    assert.deepEqual(none.names().filter((n) => n === "usernsHold" || n === "writeAsync"), []);
    const opened = none.format().filter((c) => c.startsWith("open(")).length;
    const closed = none.format().filter((c) => c.startsWith("close(")).length;
    assert.equal(opened, closed);
    await warmDone();
  },
);

warmTest("warm-up: a child that is not an exited one of micro's is never written", async () => {
  const sys = v1Host().returns("waitExited", () => true, -1);
  warmAttach(sys, CODE, 0);
  assert.deepEqual(sys.names().filter((n) => n === "writeAsync"), []);
  assert.deepEqual(sys.format().slice(-3), ["close(4)", "isChild(4242)", "waitpid(4242)"]);
  // and the command's one is done: no other for it
  sys.clear();
  warmAttach(sys, CODE, 0);
  assert.deepEqual(sys.format(), []);
  await warmDone();
});

warmTest(
  "warm-up: none while one's write has not returned (a worker's next client); the end waits for all",
  async () => {
    const sys = v1Host();
    let release!: (n: number) => void;
    sys.writeAsync = () => new Promise<number>((r) => release = r);
    warmAttach(sys, CODE, 0);
    const done = warmDone();
    sys.clear();
    warmAttach(sys, CODE, 0); // the next command: the first one's grace period covers it
    assert.deepEqual(sys.format(), []);
    let over = false;
    void done.then(() => over = true);
    await new Promise((r) => setTimeout(r, 0));
    assert.equal(over, false, "ended before the write returned");
    release(4);
    await done;
    assert.deepEqual(sys.format(), ["close(4)", "reap(4242)"]);
    // and then the next may have one
    await warmDone();
    sys.clear();
    warmAttach(sys, CODE, 0);
    assert.ok(sys.names().includes("usernsHold"));
    release(4);
    await warmDone();
  },
);

warmTest("warm-up: a refused clone (no CLONE_VM here) leaves nothing open", async () => {
  const sys = v1Host().failOn("usernsHold", () => true, 1);
  warmAttach(sys, CODE, 0);
  const opened = sys.format().filter((c) => c.startsWith("open(") || c.startsWith("pipe2")).length;
  assert.equal(sys.names().filter((n) => n === "close").length, opened + 1); // a pipe is two
  await warmDone();
  assert.deepEqual(sys.names().filter((n) => n === "reap" || n === "writeAsync"), []);
});

Deno.test({
  name: "warm-up on this kernel: this process stays where it is, no zombie and no fd is left",
  ignore: Deno.uid() !== 0 || !openLibc().canVfork() ||
    !isFile("/sys/fs/cgroup/pids/cgroup.procs"),
  async fn() {
    const sys = openLibc();
    // A first one binds what it calls, which keeps an fd (of Deno's binary) for good.
    warmAttach(sys, VFORK_CODE());
    await warmDone();
    const cgroups = Deno.readTextFileSync("/proc/self/cgroup");
    const fds = [...Deno.readDirSync("/proc/self/fd")].length;
    const spy = Object.create(sys) as typeof sys;
    let zombie = 0;
    let wrote: Promise<number> | undefined;
    spy.usernsHold = (...a) => zombie = sys.usernsHold(...a);
    spy.writeAsync = (...a) => wrote = sys.writeAsync(...a);
    warmAttach(spy, VFORK_CODE());
    assert.ok(zombie > 0, "no child");
    assert.ok(wrote, "not written");
    assert.equal(await wrote, String(zombie).length, "the kernel refused the write");
    await warmDone();
    assert.equal(Deno.readTextFileSync("/proc/self/cgroup"), cgroups);
    assert.equal(sys.isChild(zombie), false, "the zombie is left");
    assert.equal([...Deno.readDirSync("/proc/self/fd")].length, fds);
  },
});

function isFile(path: string): boolean {
  try {
    return Deno.statSync(path).isFile;
  } catch {
    return false;
  }
}

warmTest(
  "warm-up: the launcher's child (MICRO_WARM=PID,FD) is the command's warm-up: its fd made close-on-exec, none of its own started, stopped (its pipe closed) as the container is about to join, done once it has exited",
  async () => {
    const sys = v1Host();
    const release = sys.holdWaits();
    await fromLauncher("4321,7", sys);
    takeLaunched();
    assert.deepEqual(sys.format(), ["fcntl(7, 0x2, 0x1)", "isChild(4321)", "waitpid(4321)"]);
    // Under way: the command's own start does nothing (the worker's or the run's).
    sys.clear();
    warmAttach(sys, CODE, 0);
    assert.deepEqual(sys.format(), []);
    joining();
    joining();
    assert.deepEqual(sys.format(), ["close(7)"], "closed once, at the join");
    let done = false;
    const end = warmDone().then(() => done = true);
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(done, false, "done before the launcher's child exited");
    release();
    await end;
    // Taken once: nothing is left for the end of the command.
    dropLaunched();
    assert.deepEqual(sys.format(), ["close(7)"]);
  },
);

warmTest(
  "warm-up: a command that ends before its join (a failed start) stops the launcher's child at its end",
  async () => {
    const sys = v1Host();
    await fromLauncher("4321,7", sys);
    takeLaunched();
    sys.clear();
    await warmDone();
    assert.deepEqual(sys.format(), ["close(7)"]);
  },
);

warmTest(
  "warm-up: a MICRO_WARM that is no child of this process's (reaped already: the caller ignores SIGCHLD) is not waited for, its fd made close-on-exec all the same; a malformed one is nothing",
  async () => {
    const sys = v1Host().failOn("isChild", 10); // ECHILD
    await fromLauncher("4321,7", sys);
    takeLaunched();
    assert.deepEqual(sys.format(), ["fcntl(7, 0x2, 0x1)", "isChild(4321)"]);
    // Not taken: the command's own warm-up runs.
    warmAttach(sys, CODE, 0);
    assert.ok(sys.names().includes("writeAsync"));
    await warmDone();
    for (
      const bad of [
        "",
        "4321",
        "0,7",
        "-1,7",
        "4321,2",
        "4321,",
        "12abc,7",
        "4194305,7",
        "1".repeat(8) + ",7",
        " 42,7",
      ]
    ) {
      const none = new RecordingSys();
      await fromLauncher(bad, none);
      takeLaunched();
      dropLaunched();
      assert.deepEqual(none.format(), [], JSON.stringify(bad));
    }
  },
);

warmTest(
  "warm-up: a command that did not take the launcher's child (a served client, run --help) stops it at its end and reaps it if it has exited, once",
  async () => {
    const sys = new RecordingSys();
    await fromLauncher("4321,7", sys);
    sys.clear();
    dropLaunched();
    dropLaunched();
    assert.deepEqual(sys.format(), ["close(7)", "reap(4321)"]);
  },
);
