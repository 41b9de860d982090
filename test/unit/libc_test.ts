/**
 * The real libc `Sys` (core/sys/libc.ts): a call made through a longer signature than its
 * own (zero-padded) reaches the kernel with the same arguments, and failures are -errno.
 * Runs unprivileged: only calls on the test's own files, pipes and process.
 */
import assert from "node:assert/strict";
import { openLibc } from "../../core/sys/libc.ts";
import { C, cstr, cstrArray } from "../../core/sys/mod.ts";

const text = (b: Uint8Array) => new TextDecoder().decode(b.subarray(0, b.indexOf(0)));

Deno.test("libc: one Sys per process", () => {
  assert.equal(openLibc(), openLibc());
});

Deno.test("libc: calls through the shared signatures, with -errno on failure", () => {
  const sys = openLibc();
  const dir = Deno.makeTempDirSync({ prefix: "micro-libc-" });
  try {
    Deno.writeTextFileSync(`${dir}/f`, "hello");
    // b → bii (chdir), bi → bii (getcwd)
    const cwd = Deno.cwd();
    try {
      assert.equal(sys.chdir(cstr(dir)), 0);
      const buf = new Uint8Array(4096);
      assert.ok(sys.getcwd(buf) > 0);
      assert.equal(text(buf), Deno.realPathSync(dir));
    } finally {
      Deno.chdir(cwd);
    }
    // ibii → ibiii (open), ib → ibibi (fstat), ibi → ibibi (read)
    const fd = sys.open(cstr(`${dir}/f`), C.O_RDONLY | C.O_CLOEXEC, 0);
    assert.ok(fd >= 0);
    const st = { mode: 0, uid: -1, gid: -1, size: -1 };
    assert.equal(sys.fstat(fd, st), 0);
    assert.equal(st.size, 5);
    assert.equal(st.uid, Deno.uid());
    const data = new Uint8Array(16);
    assert.equal(sys.read(fd, data, 16), 5);
    assert.equal(new TextDecoder().decode(data.subarray(0, 5)), "hello");
    assert.equal(sys.close(fd), 0);
    // ibbi → ibbii (openat2 beneath a dir fd)
    const d = sys.open(cstr(dir), C.O_RDONLY | C.O_DIRECTORY | C.O_CLOEXEC, 0);
    const f2 = sys.openat2(d, cstr("f"), C.O_RDONLY | C.O_CLOEXEC, 0, C.RESOLVE_BENEATH);
    assert.ok(f2 >= 0, `openat2: ${f2}`);
    assert.equal(sys.openat2(d, cstr("../x"), C.O_RDONLY, 0, C.RESOLVE_BENEATH), -18); // EXDEV
    sys.close(f2);
    sys.close(d);
    // failures: -errno (ENOENT, EBADF)
    assert.equal(sys.open(cstr(`${dir}/missing`), C.O_RDONLY, 0), -2);
    assert.equal(sys.close(-1), -9);
    // iib → iibbi (ioctl FIONREAD on a pipe), iiib (socketpair)
    const p = new Int32Array(2);
    assert.equal(sys.pipe2(p, C.O_CLOEXEC), 0);
    assert.equal(sys.write(p[1], data, 3), 3);
    const n = new Int32Array(1);
    assert.equal(sys.ioctlBuf(p[0], C.FIONREAD, new Uint8Array(n.buffer)), 0);
    assert.equal(n[0], 3);
    sys.close(p[0]);
    sys.close(p[1]);
    const s = new Int32Array(2);
    assert.equal(sys.socketpair(C.AF_UNIX, C.SOCK_SEQPACKET | C.SOCK_CLOEXEC, s), 0);
    sys.close(s[0]);
    sys.close(s[1]);
    // bb → bbbib (capget, nanosleep)
    const sets = new Uint32Array(6);
    assert.equal(sys.capget(sets), 0);
    assert.equal(sys.sleep(1), 0);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("libc: isChild is true for a child, running or exited and not reaped, and for no one else", async () => {
  const sys = openLibc();
  const child = new Deno.Command("sh", { args: ["-c", "exit 3"], stdin: "null" }).spawn();
  try {
    assert.equal(sys.isChild(child.pid), true);
    assert.equal(sys.isChild(1), false);
    assert.equal(sys.isChild(Deno.pid), false);
  } finally {
    assert.equal((await child.status).code, 3, "WNOWAIT left the status to its waiter");
  }
  assert.equal(sys.isChild(child.pid), false, "reaped: no longer a child");
});

Deno.test("libc: spawn gives fds[i] as fd i even when a source is another's target; signals at their defaults, or a session with all blocked", async () => {
  const sys = openLibc();
  const dir = Deno.makeTempDirSync({ prefix: "micro-libc-" });
  const devNull = sys.open(cstr("/dev/null"), C.O_RDONLY | C.O_CLOEXEC, 0);
  /** What `argv` prints, spawned with fds [/dev/null, a file, this process's fd 1]. */
  const output = async (argv: string[], session: boolean) => {
    const flags = C.O_WRONLY | C.O_CREAT | 0o1000 | C.O_CLOEXEC; // O_TRUNC
    const out = sys.open(cstr(`${dir}/out`), flags, 0o600);
    assert.ok(out >= 3, `open: ${out}`);
    const pid = sys.spawn(
      cstr(argv[0]),
      cstrArray(argv),
      cstrArray([]),
      [devNull, out, 1],
      session,
    );
    sys.close(out);
    assert.ok(pid > 0, `spawn: ${pid}`);
    assert.equal((await sys.waitpid(pid)).status, 0);
    return Deno.readTextFileSync(`${dir}/out`).trim().split("\n");
  };
  try {
    // fd 2 is this process's fd 1, which the second action (the file → 1) replaces in the
    // child before the third runs: the source must have been copied first.
    assert.deepEqual(await output(["/bin/readlink", "/proc/self/fd/2"], false), [
      Deno.readLinkSync("/proc/self/fd/1"),
    ]);
    for (const session of [false, true]) {
      const argv = ["/bin/grep", "-E", "^(Sig(Blk|Ign)|NSsid):", "/proc/self/status"];
      const [sid, blk, ign] = await output(argv, session);
      // micro ignores SIGPIPE (Deno does); the child starts as Deno.Command's do.
      assert.equal(ign, "SigIgn:\t0000000000000000");
      assert.equal(blk, `SigBlk:\t${session ? "fffffffe7ffbfeff" : "0000000000000000"}`);
      const mine = /^NSsid:\s*(\d+)/m.exec(Deno.readTextFileSync("/proc/self/status"))![1];
      assert.equal(sid !== `NSsid:\t${mine}`, session, sid);
    }
  } finally {
    sys.close(devNull);
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("libc: fds travel with bytes (SCM_RIGHTS), the peer's credentials and limits are read", () => {
  const sys = openLibc();
  const s = new Int32Array(2);
  assert.equal(sys.socketpair(C.AF_UNIX, C.SOCK_STREAM | C.SOCK_CLOEXEC, s), 0);
  const p = new Int32Array(2);
  assert.equal(sys.pipe2(p, C.O_CLOEXEC), 0);
  const got: number[] = [];
  try {
    const data = new TextEncoder().encode("hello");
    assert.equal(sys.sendWithFds(s[0], data, [p[1], p[0], p[1]]), 5);
    const buf = new Uint8Array(64);
    const r = sys.recvWithFds(s[1], buf);
    got.push(...r.fds);
    assert.equal(r.n, 5);
    assert.equal(new TextDecoder().decode(buf.subarray(0, 5)), "hello");
    assert.equal(r.fds.length, 3);
    assert.equal(r.cut, false);
    // The first fd received is the pipe's write end: a byte written there reads from p[0].
    assert.equal(sys.write(r.fds[0], new Uint8Array([7]), 1), 1);
    const one = new Uint8Array(1);
    assert.equal(sys.read(p[0], one, 1), 1);
    assert.equal(one[0], 7);
    // Close-on-exec (MSG_CMSG_CLOEXEC).
    assert.equal(sys.fcntl(r.fds[1], 1, 0), 1); // F_GETFD: FD_CLOEXEC
    // No fds: none received.
    assert.equal(sys.sendWithFds(s[0], data, []), 5);
    assert.deepEqual(sys.recvWithFds(s[1], buf).fds, []);
    assert.equal(sys.sendWithFds(s[0], data, [0, 0, 0, 0, 0, 0, 0, 0, 0]), -22);
    const cred = new Int32Array(3);
    assert.equal(sys.peerCred(s[1], cred), 0);
    assert.deepEqual([...cred], [Deno.pid, Deno.uid(), Deno.gid()]);
    assert.equal(sys.peerCred(p[0], cred), -88); // ENOTSOCK
    // SO_PEERPIDFD (Linux 6.5+): a pidfd of this very process.
    const pidfd = sys.peerPidfd(s[1]);
    if (pidfd !== -92) { // ENOPROTOOPT: an older kernel
      assert.ok(pidfd > 2, `${pidfd}`);
      got.push(pidfd);
      const info = Deno.readTextFileSync(`/proc/self/fdinfo/${pidfd}`);
      assert.match(info, new RegExp(`^Pid:\\s*${Deno.pid}$`, "m"));
    }
    const lim = new Float64Array(2);
    assert.equal(sys.getrlimitOf(Deno.pid, 7, lim), 0); // RLIMIT_NOFILE
    assert.ok(lim[0] > 0 && lim[0] <= lim[1]);
    assert.equal(sys.getrlimitOf(0, 999, lim), -22);
  } finally {
    for (const fd of [...s, ...p, ...got]) sys.close(fd);
  }
});

Deno.test("libc: a unix socket bound, listened on and accepted off the main thread, close-on-exec", async () => {
  const sys = openLibc();
  const dir = Deno.makeTempDirSync({ prefix: "micro-libc-" });
  const path = new TextEncoder().encode(`${dir}/s`);
  const addr = new Uint8Array(3 + path.length);
  addr[0] = 1; // AF_UNIX
  addr.set(path, 2);
  const server = sys.socket(C.AF_UNIX, C.SOCK_STREAM | C.SOCK_CLOEXEC, 0);
  const client = sys.socket(C.AF_UNIX, C.SOCK_STREAM | C.SOCK_CLOEXEC, 0);
  let conn = -1;
  try {
    assert.equal(sys.bind(server, addr), 0);
    assert.equal(sys.bind(client, addr), -98); // EADDRINUSE
    assert.equal(sys.listen(server, 4), 0);
    const accepted = sys.acceptAsync(server);
    assert.equal(sys.connect(client, addr), 0);
    conn = await accepted;
    assert.ok(conn > 2);
    assert.equal(sys.fcntl(conn, 1, 0), 1); // FD_CLOEXEC
    assert.equal(sys.write(client, new Uint8Array([42]), 1), 1);
    const b = new Uint8Array(1);
    assert.equal(sys.read(conn, b, 1), 1);
    assert.equal(b[0], 42);
    assert.equal(await sys.acceptAsync(client), -22); // not listening: a failure
  } finally {
    for (const fd of [server, client, conn]) if (fd >= 0) sys.close(fd);
    Deno.removeSync(dir, { recursive: true });
  }
});
