/**
 * OCI hooks run inside the container by the engine's child (core/engine/hook.ts), driven
 * through the recording Sys: the state written before the fork with the child's pid, the
 * wait, each way a hook fails, and where the child runs each kind.
 */
import assert from "node:assert/strict";
import {
  HOOK_EXIT,
  HOOK_SIGNAL,
  HOOK_TIMEOUT,
  hookFailure,
  hookStep,
  stateBytes,
} from "../../core/engine/hook.ts";
import { compileChild, loadChildSteps } from "../../core/engine/child.ts";
import { type Op, op, type OpArgs } from "../../core/ops.ts";
import { RecordingSys } from "../../core/sys/fake.ts";

const STATE = { ociVersion: "1.2.0", id: "c1", status: "creating", bundle: "/b" };

function hook(over: Partial<OpArgs["oci-hook"]> = {}): OpArgs["oci-hook"] {
  return {
    hook: "createContainer",
    index: 0,
    path: "/bin/hook",
    args: ["hook", "a"],
    env: ["K=V"],
    state: STATE,
    ...over,
  };
}

Deno.test("hook state: valid JSON whatever the pid's width, the pid where the room is", () => {
  const { bytes, pidAt } = stateBytes({ ...STATE, annotations: { "é": "x" } });
  const text = new TextDecoder().decode(bytes);
  assert.deepEqual(JSON.parse(text), { ...STATE, pid: 0, annotations: { "é": "x" } });
  for (const pid of [1, 4194304]) {
    const b = bytes.slice();
    const digits = new TextEncoder().encode(String(pid).padEnd(10, " "));
    b.set(digits, pidAt);
    assert.equal(JSON.parse(new TextDecoder().decode(b)).pid, pid);
  }
});

Deno.test("hook step: state with the child's pid into the pipe before the fork; exit 0 is success", () => {
  const sys = new RecordingSys({ clonePid: 77 });
  sys.pid = 1;
  // Running for two polls, then exited 0.
  sys.returns("wait4", (a) => a[1] === 1, 0, 2);
  const rc = hookStep(hook(), 1012, sys, false)();
  assert.equal(rc, 0);
  const calls = sys.format();
  const at = (p: string) => calls.findIndex((c) => c.startsWith(p));
  assert.ok(at("pipe2") < at("write(") && at("write(") < at("clone("), calls.join("\n"));
  const [, w] = JSON.parse(/^pipe2\((\[\d+,\d+\])/.exec(calls[at("pipe2")])![1]);
  const state = JSON.parse(new TextDecoder().decode(Uint8Array.from(sys.written(w))));
  assert.equal(state.pid, 1);
  assert.equal(state.status, "creating");
  assert.equal(calls.filter((c) => c.startsWith("wait4(77, 1)")).length, 3);
  assert.equal(calls.filter((c) => c.startsWith("sleep(")).length, 2);
});

Deno.test("hook step: the state goes into a non-blocking write end: a pipe smaller than the state fails the hook instead of blocking the child for ever", () => {
  // A user over fs.pipe-user-pages-soft gets one-page pipes: a blocking write of a larger
  // state would never return (the hook that would read it is not forked yet).
  const sys = new RecordingSys({ clonePid: 77 });
  sys.returns("write", () => true, 4096, 1);
  const big = hook({ state: { ...STATE, annotations: { a: "x".repeat(8000) } } });
  const rc = hookStep(big, 1012, sys, false)();
  assert.equal(rc, -5);
  const calls = sys.format();
  const pipe = calls.find((c) => c.startsWith("pipe2("))!;
  const [, w] = JSON.parse(/^pipe2\((\[\d+,\d+\])/.exec(pipe)![1]);
  const nonblock = calls.indexOf(`fcntl(${w}, 0x4, 0x800)`);
  assert.ok(
    nonblock >= 0 && nonblock < calls.findIndex((c) => c.startsWith("write(")),
    calls.join("\n"),
  );
  assert.equal(calls.some((c) => c.startsWith("clone(")), false);
});

Deno.test("hook step: exit status, signal and timeout come back as their codes", () => {
  const exit3 = new RecordingSys({ clonePid: 77 }).scriptWait(3 << 8);
  assert.equal(hookStep(hook(), 1012, exit3, false)(), -(HOOK_EXIT + 3));
  const killed = new RecordingSys({ clonePid: 77 }).scriptWait(9);
  assert.equal(hookStep(hook(), 1012, killed, false)(), -(HOOK_SIGNAL + 9));
  const slow = new RecordingSys({ clonePid: 77 }).returns("wait4", (a) => a[1] === 1, 0);
  const rc = hookStep(hook({ timeout: 1 }), 1012, slow, false)();
  assert.equal(rc, -HOOK_TIMEOUT);
  assert.ok(slow.format().includes("kill(77, 9)"));
  assert.equal(hookFailure(HOOK_EXIT + 3), "exit status 3");
  assert.equal(hookFailure(HOOK_SIGNAL + 9), "killed by signal 9");
  assert.equal(hookFailure(HOOK_TIMEOUT, "1"), "timed out after 1 s");
  assert.equal(hookFailure(2), undefined);
});

Deno.test("hook step: a startContainer failure is said on stderr (no micro listens then)", () => {
  const sys = new RecordingSys({ clonePid: 77 }).scriptWait(4 << 8);
  hookStep(hook({ hook: "startContainer" }), 1012, sys, true)();
  assert.match(
    new TextDecoder().decode(Uint8Array.from(sys.written(2))),
    /hooks\.startContainer\[0\] \/bin\/hook failed/,
  );
});

Deno.test("hook step: the fork execs the hook through the trampoline, with only its fds", () => {
  const sys = new RecordingSys({ clonePid: 0 });
  try {
    hookStep(hook(), 1012, sys, false)();
  } catch {
    // FakeExit: the fork's exit(127) after the (fake) failed exec
  }
  const calls = sys.format();
  const tail = calls.slice(calls.findIndex((c) => c.startsWith("clone(")) + 1);
  // The state pipe [3,4] and the trampoline's record pipe [5,6].
  assert.deepEqual(tail.slice(0, 5), [
    "prctl(1, 9, 0, 0, 0)",
    "dup3(3, 0, 0x0)",
    "dup3(6, 3, 0x0)",
    "closeRange(4, 0x3f3, 0x0)",
    "closeRange(1013, 0x7fffffff, 0x0)",
  ]);
  const exec = tail.find((c) => c.startsWith("execveat"))!;
  assert.equal(
    exec,
    'execveat(1012, "", ["","","/bin/hook","","hook","a"], ["K=V"], 0x1000)',
  );
  // The fake's exec fails with ENOENT: the record the trampoline would send, on fd 3.
  assert.deepEqual([...new Int32Array(Uint8Array.from(sys.written(3)).buffer)], [-4, 2]);
});

Deno.test("hook step: exit 127 with the trampoline's record is the exec's errno", () => {
  const sys = new RecordingSys({ clonePid: 77 }).scriptWait(127 << 8);
  sys.scriptRead(5, new Uint8Array(new Int32Array([-4, 13]).buffer));
  assert.equal(hookStep(hook(), 1012, sys, false)(), -13);
  const plain = new RecordingSys({ clonePid: 77 }).scriptWait(127 << 8);
  plain.scriptRead(5, new Uint8Array(0));
  assert.equal(hookStep(hook(), 1012, plain, false)(), -(HOOK_EXIT + 127));
});

Deno.test("child: createContainer hooks run right before pivot_root, startContainer after the exec fifo", async () => {
  const ops: Op[] = [
    op("rootfs", "mount", "pivot-root", {}),
    op(
      "exec",
      "oci",
      "oci-hook",
      hook({ hook: "startContainer", state: { ...STATE, status: "created" } }),
    ),
    op("exec", "oci", "oci-hook", hook()),
    op("exec", "process", "execve", { args: ["true"], env: [], path: ["/bin/true"] }),
  ];
  await loadChildSteps(ops);
  const prog = compileChild(ops, {
    rootPath: "/r",
    syncRead: 50,
    syncWrite: 51,
    report: 1010,
    stdio: [54, 55, 56],
    exe: 57,
    execFifo: 58,
  }, new RecordingSys());
  const kinds = prog.info.map((i) => i.kind === "oci-hook" ? i.paths.hook : i.kind);
  const pivot = kinds.indexOf("pivot-root");
  assert.equal(kinds[pivot - 1], "createContainer[0]");
  assert.equal(kinds.indexOf("exec fifo") + 1, kinds.indexOf("startContainer[0]"));
  assert.equal(kinds.filter((k) => k === "createContainer[0]").length, 1);
});
