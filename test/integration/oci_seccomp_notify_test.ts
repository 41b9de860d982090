/**
 * OCI linux.seccomp.listenerPath with SCMP_ACT_NOTIFY: the filter's listener fd reaches a
 * seccomp agent the test starts (a python3 script on a unix socket in a temp dir) with the
 * container process state, as runc sends it; the agent answers one notified mkdir.
 */
import assert from "node:assert/strict";
import { exists, microTest, ok, show, waitFor, withTempDir } from "./_helpers.ts";
import { bundle, type Config, oci } from "./_oci.ts";

/**
 * Accepts one connection, keeps the state JSON and the number of fds in OUT, then answers the
 * first notification (its syscall number in OUT.nr) with ERRNO, or success when 0 (the call
 * then did nothing). struct seccomp_notif is 80 bytes, seccomp_notif_resp 24 (linux/seccomp.h).
 */
const AGENT = `
import socket, sys, struct, fcntl, json
path, out, errno_ret = sys.argv[1], sys.argv[2], int(sys.argv[3])
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(path)
s.listen(1)
open(out + ".ready", "w").close()
c, _ = s.accept()
msg, fds, _, _ = socket.recv_fds(c, 65536, 4)
with open(out, "w") as f:
    json.dump({"message": json.loads(msg), "fds": len(fds)}, f)
RECV, SEND = 0xc0502100, 0xc0182101
buf = bytearray(80)
fcntl.ioctl(fds[0], RECV, buf)
nid, pid, flags, nr = struct.unpack_from("<QIIi", buf)
with open(out + ".nr", "w") as f:
    f.write(str(nr))
fcntl.ioctl(fds[0], SEND, bytearray(struct.pack("<QqiI", nid, 0, -errno_ret, 0)))
`;

function python(): string | undefined {
  for (const p of ["/usr/bin/python3", "/usr/local/bin/python3"]) {
    try {
      Deno.statSync(p);
      return p;
    } catch {
      // next
    }
  }
  try {
    const r = new Deno.Command("sh", { args: ["-c", "command -v python3"] }).outputSync();
    const p = new TextDecoder().decode(r.stdout).trim();
    return r.success && p ? p : undefined;
  } catch {
    return undefined;
  }
}
const PYTHON = python();

/** The agent on `${dir}/agent.sock`, answering with `errno`; stopped after `fn`. */
async function withAgent<T>(dir: string, errno: number, fn: (out: string) => Promise<T>) {
  Deno.writeTextFileSync(`${dir}/agent.py`, AGENT);
  const out = `${dir}/agent.out`;
  const agent = new Deno.Command(PYTHON!, {
    args: [`${dir}/agent.py`, `${dir}/agent.sock`, out, String(errno)],
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  try {
    assert.ok(await waitFor(() => exists(`${out}.ready`), 10_000), "the agent did not start");
    return await fn(out);
  } finally {
    try {
      agent.kill("SIGKILL");
    } catch {
      // it has answered and left
    }
    await agent.status;
  }
}

const uniq = () => `n${crypto.randomUUID().slice(0, 8)}`;

/** mkdir and mkdirat go to the agent; everything else is allowed. */
function notifyMkdir(dir: string, c: Config) {
  c.linux.seccomp = {
    defaultAction: "SCMP_ACT_ALLOW",
    listenerPath: `${dir}/agent.sock`,
    listenerMetadata: "meta-1",
    syscalls: [{ names: ["mkdir", "mkdirat"], action: "SCMP_ACT_NOTIFY" }],
  };
}

/** mkdir's and mkdirat's numbers here. */
const MKDIR = Deno.build.arch === "aarch64" ? ["34"] : ["83", "258"];

const NEEDS_PYTHON = PYTHON ? undefined : "seccomp notify tests need python3 for their agent";

microTest(
  "oci run: the listener goes to listenerPath with the process state; the agent answers mkdir",
  async () => {
    await withTempDir(async (dir) => {
      const b = await bundle(dir, (c) => {
        c.process.args = ["sh", "-c", "mkdir /tmp/made; echo rc=$?; ls -d /tmp/made"];
        notifyMkdir(dir, c);
      });
      const id = uniq();
      await withAgent(dir, 0, async (out) => {
        const r = await oci(`${dir}/state`, ["run", "-b", b, id]);
        // The agent said success without making it: mkdir returns 0, no directory.
        assert.match(r.stdout, /^rc=0$/m, show(r));
        assert.match(r.stderr, /\/tmp\/made: No such file or directory/, show(r));
        const got = JSON.parse(Deno.readTextFileSync(out));
        assert.equal(got.fds, 1);
        const m = got.message;
        assert.equal(m.ociVersion, "1.2.0");
        assert.deepEqual(m.fds, ["seccompFd"]);
        assert.equal(m.metadata, "meta-1");
        assert.ok(Number.isInteger(m.pid) && m.pid > 1, JSON.stringify(m));
        assert.equal(m.state.id, id);
        assert.equal(m.state.status, "creating");
        assert.equal(m.state.pid, m.pid);
        assert.equal(m.state.bundle, b);
        assert.ok(MKDIR.includes(Deno.readTextFileSync(`${out}.nr`)));
      });
    });
  },
  { ignore: NEEDS_PYTHON },
);

microTest(
  "oci exec: an exec'd process's listener goes to the agent too (status running); its errno is mkdir's",
  async () => {
    await withTempDir(async (dir) => {
      const root = `${dir}/state`;
      // The first process never calls mkdir: its listener goes to a first agent, unanswered.
      const b = await bundle(dir, (c) => {
        c.process.args = ["sleep", "60"];
        notifyMkdir(dir, c);
      });
      const id = uniq();
      try {
        await withAgent(dir, 0, async () => {
          ok(await oci(root, ["create", "-b", b, id]));
          ok(await oci(root, ["start", id]));
        });
        Deno.removeSync(`${dir}/agent.sock`);
        Deno.removeSync(`${dir}/agent.out.ready`);
        await withAgent(dir, 13, async (out) => {
          const r = await oci(root, ["exec", id, "sh", "-c", "mkdir /tmp/x; echo rc=$?"]);
          assert.match(r.stdout, /^rc=1$/m, show(r));
          assert.match(r.stderr, /Permission denied/, show(r));
          const m = JSON.parse(Deno.readTextFileSync(out)).message;
          assert.equal(m.state.status, "running");
          assert.notEqual(m.pid, m.state.pid, "the exec'd process, not the first one");
        });
      } finally {
        await oci(root, ["delete", "--force", id]);
      }
    });
  },
  { ignore: NEEDS_PYTHON },
);

microTest(
  "oci create: no agent at listenerPath is one error line, and nothing is left",
  async () => {
    await withTempDir(async (dir) => {
      const b = await bundle(dir, (c) => {
        c.process.args = ["true"];
        notifyMkdir(dir, c);
      });
      const r = await oci(`${dir}/state`, ["create", "-b", b, uniq()]);
      assert.equal(r.code, 125, show(r));
      assert.match(
        r.stderr,
        /^micro: restrict: seccomp: connect listenerPath=\S+agent\.sock: ENOENT \(the seccomp agent listens/,
      );
      assert.equal(r.stderr.trim().split("\n").length, 1, show(r));
      assert.deepEqual([...Deno.readDirSync(`${dir}/state`)].map((e) => e.name), []);
      // read and sendmsg are micro's before the agent has the fd: refused before anything.
      const c = JSON.parse(Deno.readTextFileSync(`${b}/config.json`));
      c.linux.seccomp.syscalls.push({ names: ["read"], action: "SCMP_ACT_NOTIFY" });
      Deno.writeTextFileSync(`${b}/config.json`, JSON.stringify(c));
      const refused = await oci(`${dir}/state`, ["create", "-b", b, uniq()]);
      assert.equal(refused.code, 125, show(refused));
      assert.match(refused.stderr, /SCMP_ACT_NOTIFY for read: micro's set-up needs read/);
    });
  },
);
