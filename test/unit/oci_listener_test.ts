/** OCI listenerPath: the seccomp listener and the container process state, to the agent. */
import assert from "node:assert/strict";
import { listenerOf, seccompAgent, sendListener } from "../../core/oci/listener.ts";
import { op } from "../../core/ops.ts";
import { MicroError } from "../../core/errors.ts";
import { RecordingSys } from "../../core/sys/fake.ts";

const ARGS = { arch: "x86_64", instructions: 1, policy: "/b/config.json", flags: 8, program: "" };
const SECCOMP = op("restrict", "seccomp", "seccomp", {
  ...ARGS,
  listener: { path: "/run/agent.sock", metadata: "meta" },
});

Deno.test("listenerPath: one sendmsg of the process state with the fd, on a connection closed after", () => {
  const sys = new RecordingSys();
  const agent = seccompAgent([SECCOMP], (pid) => ({ id: "c1", status: "creating", pid }), sys)!;
  agent(33, 4242);
  const calls = sys.calls();
  assert.deepEqual(calls.map((c) => c.call), ["socket", "connect", "sendWithFd", "close"]);
  const [sock, text, fd] = calls[2].args as [number, string, number];
  assert.equal(fd, 33);
  assert.equal(sock, sys.results()[0]);
  assert.deepEqual(JSON.parse(text), {
    ociVersion: "1.2.0",
    fds: ["seccompFd"],
    pid: 4242,
    metadata: "meta",
    state: { id: "c1", status: "creating", pid: 4242 },
  });
  // sockaddr_un: AF_UNIX, the path, its NUL.
  assert.equal(calls[1].args[1], 2 + "/run/agent.sock".length + 1);
  assert.deepEqual(calls[3].args, [sock]);
  // No SCMP_ACT_NOTIFY rule: nothing to send, no handler.
  assert.equal(
    listenerOf([op("restrict", "seccomp", "seccomp", ARGS)]),
    undefined,
  );
});

Deno.test("listenerPath: no agent listening is one line naming the path; the socket is closed", () => {
  const sys = new RecordingSys().failOn("connect", 111);
  assert.throws(
    () => sendListener("/run/agent.sock", "", 33, 1, {}, sys),
    (e) =>
      e instanceof MicroError &&
      e.line().startsWith(
        "restrict: seccomp: connect listenerPath=/run/agent.sock: ECONNREFUSED (the seccomp agent",
      ),
  );
  assert.ok(sys.format().includes(`close(${sys.results()[0]})`));
  assert.throws(
    () => sendListener(`/${"x".repeat(120)}`, "", 33, 1, {}, new RecordingSys()),
    (e) => e instanceof MicroError && /at most 107 bytes/.test(e.line()),
  );
});
