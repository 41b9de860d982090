/**
 * The launcher in front of dist/micro (tools/trampoline/launcher-ARCH.S, composed by
 * tools/mklauncher.ts), run for real: natively for the host's architecture, under qemu-user
 * for the other one when it is installed. Its `deno` is a shell script that prints what it
 * was given, its stub one that says it ran: each case checks which of the two ran and how.
 * The attacks on the cache directory are test/integration/launcher_test.ts's, on dist/micro.
 */
import assert from "node:assert/strict";
import { compose } from "../../tools/mklauncher.ts";
import {
  assemble,
  LAUNCHER_OUTPUT,
  renderLauncher,
  TRAMPOLINE_ARCHES,
  type TrampolineArch,
} from "../../tools/gen_trampoline.ts";
import { runner } from "./_arch.ts";
import { exists } from "../../core/host.ts";

/**
 * Whether the launcher starts its warm-up here (root aside): /sys/fs/cgroup not cgroup2, and
 * a v1 hierarchy's root cgroup.procs there.
 */
const V1 = (() => {
  const type = new Deno.Command("stat", { args: ["-f", "-c", "%T", "/sys/fs/cgroup"] })
    .outputSync();
  return new TextDecoder().decode(type.stdout).trim() !== "cgroup2fs" &&
    ["pids", "memory", "cpu"].some((c) => exists(`/sys/fs/cgroup/${c}/cgroup.procs`));
})();

const HASH = "0123456789abcdef";
const FLAGS = ["--v8-flags=--single-threaded", "-A", "--quiet"];
/** The stub says it ran; with STUB_OUT set, it also lists its fds' targets there. */
const STUB = 'echo "stub $0 $*"; [ -z "$STUB_OUT" ] || ls -l /proc/$$/fd/ > "$STUB_OUT"';

const ROOT = Deno.uid() === 0;

Deno.test({
  name: "launcher: tools/_launcher.ts is what the sources assemble to",
  ignore: TRAMPOLINE_ARCHES.some((a) => assemble(a, "LAUNCHER") === null),
  fn() {
    const bins = Object.fromEntries(
      TRAMPOLINE_ARCHES.map((a) => [a, assemble(a, "LAUNCHER")!]),
    ) as Record<TrampolineArch, Uint8Array>;
    assert.equal(Deno.readTextFileSync(LAUNCHER_OUTPUT), renderLauncher(bins));
  },
});

Deno.test("launcher: compose appends the data and sizes the PT_LOAD to cover it", () => {
  for (const arch of TRAMPOLINE_ARCHES) {
    const head = compose(arch, HASH, FLAGS, STUB)!;
    const v = new DataView(head.buffer);
    assert.equal(Number(v.getBigUint64(96, true)), head.length);
    assert.equal(Number(v.getBigUint64(104, true)), head.length);
    const tail = new TextDecoder().decode(head.subarray(head.length - 200));
    assert.ok(tail.endsWith(`${HASH}\0${FLAGS.join("\0")}\0\0${STUB}\0`), arch);
  }
  assert.equal(compose("riscv64", HASH, FLAGS, STUB), null);
  assert.throws(() => compose("x86_64", "nothex", FLAGS, STUB));
  assert.throws(() => compose("x86_64", HASH, [], STUB));
  assert.throws(() => compose("x86_64", HASH, FLAGS, "#".repeat(130 * 1024)));
});

type Out = { code: number; stdout: string; stderr: string };

/** A scene: DIR/micro (the launcher), DIR/cache/HASH complete, the stub and deno echoing. */
function scene(arch: TrampolineArch) {
  const dir = Deno.makeTempDirSync({ prefix: "micro-launcher-unit-" });
  Deno.chmodSync(dir, 0o755);
  const exe = `${dir}/micro`;
  Deno.writeFileSync(exe, compose(arch, HASH, FLAGS, STUB)!, { mode: 0o755 });
  Deno.chmodSync(exe, 0o755);
  const base = `${dir}/cache`;
  const d = `${base}/${HASH}`;
  for (const p of [base, d, `${d}/lib`]) Deno.mkdirSync(p, { mode: 0o700 });
  for (const p of [base, d, `${d}/lib`]) Deno.chmodSync(p, 0o700);
  Deno.writeTextFileSync(
    `${d}/deno`,
    '#!/bin/sh\necho "deno $0 $*"; echo "env $DENO_DIR $DENO_NO_UPDATE_CHECK $MICRO_EXE $KEEP"\n',
  );
  Deno.chmodSync(`${d}/deno`, 0o755);
  for (const p of [`${d}/micro.js`, `${d}/lib/main.js`]) {
    Deno.writeTextFileSync(p, "");
    Deno.chmodSync(p, 0o600);
  }
  const run = (env: Record<string, string>, args = ["a b", "c"], cwd = "/"): Out => {
    const [cmd, ...pre] = [...runner(arch)!, exe];
    const r = new Deno.Command(cmd, {
      args: [...pre, ...args],
      clearEnv: true,
      env: { PATH: "/usr/bin:/bin", KEEP: "kept", ...env },
      cwd,
      stdout: "piped",
      stderr: "piped",
    }).outputSync();
    const t = new TextDecoder();
    return { code: r.code, stdout: t.decode(r.stdout), stderr: t.decode(r.stderr) };
  };
  const clean = () => Deno.removeSync(dir, { recursive: true });
  return { dir, exe, base, d, run, clean };
}

for (const arch of TRAMPOLINE_ARCHES) {
  const how = runner(arch);
  const skip = how === null ? ` (skipped: no qemu-${arch}-static)` : "";
  const test = (name: string, fn: (s: ReturnType<typeof scene>) => void) =>
    Deno.test({
      name: `launcher ${arch}: ${name}${skip}`,
      ignore: how === null || !ROOT,
      fn() {
        const s = scene(arch);
        try {
          fn(s);
        } finally {
          s.clean();
        }
      },
    });

  test("a complete cache: Deno exec'd with the flags, micro.js and the arguments", (s) => {
    const r = s.run({ MICRO_CACHE_DIR: s.base, DENO_DIR: "/x", MICRO_EXE: "/y" });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(
      r.stdout,
      `deno ${s.d}/deno run ${FLAGS.join(" ")} ${s.d}/micro.js a b c\n` +
        `env ${s.d}/deno_dir 1 ${s.exe} kept\n`,
    );
  });

  test("XDG_CACHE_HOME/micro, then HOME/.cache/micro", (s) => {
    Deno.mkdirSync(`${s.dir}/xdg`, { mode: 0o755 });
    Deno.renameSync(s.base, `${s.dir}/xdg/micro`);
    const xdg = s.run({ XDG_CACHE_HOME: `${s.dir}/xdg`, HOME: "/nonexistent" });
    assert.match(xdg.stdout, new RegExp(`^deno ${s.dir}/xdg/micro/${HASH}/deno run `), xdg.stderr);
    Deno.mkdirSync(`${s.dir}/.cache`, { mode: 0o755 });
    Deno.renameSync(`${s.dir}/xdg/micro`, `${s.dir}/.cache/micro`);
    const home = s.run({ HOME: s.dir });
    assert.match(home.stdout, new RegExp(`^deno ${s.dir}/.cache/micro/${HASH}/deno run `));
  });

  test("a relative path to it: MICRO_EXE is made absolute (the working directory in front, as the stub's $PWD/$0)", (s) => {
    const [cmd, ...pre] = [...runner(arch)!, "./micro"];
    const r = new Deno.Command(cmd, {
      args: [...pre, "v"],
      clearEnv: true,
      env: { PATH: "/usr/bin:/bin", MICRO_CACHE_DIR: s.base },
      cwd: s.dir,
      stdout: "piped",
    }).outputSync();
    assert.match(
      new TextDecoder().decode(r.stdout),
      new RegExp(`^env .* ${s.dir}/(\\./)?micro \n`, "m"),
    );
  });

  test("anything not as the stub's fast path wants goes to the stub", (s) => {
    const stub = (r: Out) => assert.equal(r.stdout, `stub ${s.exe} a b c\n`, r.stderr);
    stub(s.run({ MICRO_CACHE_DIR: `${s.base}/` })); // not tidy: the stub's to tidy
    stub(s.run({ MICRO_CACHE_DIR: `${s.dir}//cache` }));
    stub(s.run({ MICRO_CACHE_DIR: `${s.dir}/./cache` }));
    stub(s.run({ MICRO_CACHE_DIR: `${s.dir}/../${s.dir.split("/").pop()}/cache` }));
    stub(s.run({ MICRO_CACHE_DIR: "cache" }, ["a b", "c"], s.dir)); // relative
    stub(s.run({ MICRO_CACHE_DIR: "/" + "x".repeat(3900) })); // too long for its buffer
    Deno.chmodSync(s.base, 0o770); // group-writable
    stub(s.run({ MICRO_CACHE_DIR: s.base }));
    Deno.chmodSync(s.base, 0o700);
    Deno.chmodSync(`${s.d}/lib`, 0o750); // lib others may enter
    stub(s.run({ MICRO_CACHE_DIR: s.base }));
    Deno.chmodSync(`${s.d}/lib`, 0o700);
    Deno.chmodSync(`${s.d}/deno`, 0o644); // not executable
    stub(s.run({ MICRO_CACHE_DIR: s.base }));
    Deno.chmodSync(`${s.d}/deno`, 0o755);
    Deno.chownSync(`${s.d}/micro.js`, 61234, 61234); // another user's
    stub(s.run({ MICRO_CACHE_DIR: s.base }));
    Deno.chownSync(`${s.d}/micro.js`, 0, 0);
    Deno.removeSync(`${s.d}/lib/main.js`);
    Deno.symlinkSync(`${s.d}/micro.js`, `${s.d}/lib/main.js`); // a link
    stub(s.run({ MICRO_CACHE_DIR: s.base }));
    Deno.removeSync(`${s.d}/lib/main.js`);
    Deno.writeTextFileSync(`${s.d}/lib/main.js`, "");
    Deno.chmodSync(`${s.d}/lib/main.js`, 0o600);
    Deno.chmodSync(s.dir, 0o777); // a directory above others can write (not sticky)
    stub(s.run({ MICRO_CACHE_DIR: s.base }));
    Deno.chmodSync(s.dir, 0o1777); // sticky: fine above the base
    assert.match(s.run({ MICRO_CACHE_DIR: s.base }).stdout, /^deno /);
    Deno.chmodSync(s.dir, 0o755);
  });

  test("a path to it longer than 4000 bytes (its MAX_NAME): the stub", (s) => {
    let deep = s.dir;
    while (deep.length < 4010) { // over MAX_NAME, under PATH_MAX with "/micro"
      deep += "/" + "d".repeat(Math.min(200, 4040 - deep.length));
      Deno.mkdirSync(deep);
    }
    Deno.copyFileSync(s.exe, `${deep}/micro`);
    Deno.chmodSync(`${deep}/micro`, 0o755);
    const [cmd, ...pre] = [...runner(arch)!, `${deep}/micro`];
    const r = new Deno.Command(cmd, {
      args: [...pre, "v"],
      clearEnv: true,
      env: { PATH: "/usr/bin:/bin", MICRO_CACHE_DIR: s.base },
      stdout: "piped",
    }).outputSync();
    assert.equal(new TextDecoder().decode(r.stdout), `stub ${deep}/micro v\n`);
  });

  test("as another user: their own cache runs; one of root's goes to the stub", (s) => {
    const user = 61235;
    const as = (env: Record<string, string>): string => {
      const [cmd, ...pre] = [...runner(arch)!, s.exe];
      const r = new Deno.Command(cmd, {
        args: [...pre, "a"],
        clearEnv: true,
        env: { PATH: "/usr/bin:/bin", ...env },
        uid: user,
        gid: user,
        stdout: "piped",
      }).outputSync();
      return new TextDecoder().decode(r.stdout);
    };
    assert.equal(as({ MICRO_CACHE_DIR: s.base }), `stub ${s.exe} a\n`); // root's, not theirs
    for (const p of [s.base, s.d, `${s.d}/lib`, `${s.d}/deno`, `${s.d}/micro.js`]) {
      Deno.chownSync(p, user, user);
    }
    assert.equal(as({ MICRO_CACHE_DIR: s.base }), `stub ${s.exe} a\n`); // lib/main.js root's
    Deno.chownSync(`${s.d}/lib/main.js`, user, user);
    assert.match(as({ MICRO_CACHE_DIR: s.base }), /^deno /);
  });

  test("/bin/sh that cannot run: one line with the errno, exit 125", (s) => {
    const r = new Deno.Command("unshare", {
      args: [
        "-m",
        "sh",
        "-c",
        'mount --bind /dev/null "$(readlink -f /bin/sh)" && exec "$@"',
        "sh",
        ...runner(arch)!,
        s.exe,
      ],
      clearEnv: true,
      env: { PATH: "/usr/bin:/bin", MICRO_CACHE_DIR: `${s.dir}/none` },
      stderr: "piped",
    }).outputSync();
    assert.equal(r.code, 125);
    assert.match(
      new TextDecoder().decode(r.stderr),
      /^micro: launcher: cannot run \/bin\/sh \(errno 13\), [^\n]*\n$/,
    );
  });

  test("run, exec and OCI create as root on cgroup v1: MICRO_WARM names its child that started the grace period; nothing else gets one, nor the caller's", (s) => {
    // The fake Deno runs a script under the real one (the same process) that says whether
    // MICRO_WARM's pid is its child and its fd a pipe's write end, that the child still
    // writes (a zombie's pid, every 2 ms) until that end is closed, and that it then exits.
    Deno.writeTextFileSync(
      `${s.dir}/check.ts`,
      `import { openLibc } from "${new URL("../../core/sys/libc.ts", import.meta.url).href}";
const [pid, fd] = Deno.env.get("MICRO_WARM")!.split(",").map(Number);
const sys = openLibc();
const mine = sys.isChild(pid) ? "mine" : "not mine";
const pipe = Deno.readLinkSync(\`/proc/self/fd/\${fd}\`).startsWith("pipe:") ? "pipe" : "not a pipe";
await new Promise((r) => setTimeout(r, 20));
// Its fds: cgroup.procs and the pipe's read end, none of the caller's (qemu-user's own aside).
const fds = [...Deno.readDirSync(\`/proc/\${pid}/fd\`)].map((e) => Deno.readLinkSync(\`/proc/\${pid}/fd/\${e.name}\`));
const own = fds.filter((l) => l.startsWith("pipe:") || l.endsWith("cgroup.procs")).length;
const kept = ${runner(arch)!.length} ? own : fds.length;
await new Promise((r) => setTimeout(r, 100));
const writing = sys.reap(pid).pid === 0 ? "writing" : "gone";
sys.close(fd);
const exited = sys.waitExited(pid) ? "exited" : "not exited";
console.log(\`warm \${mine} \${pipe} \${kept} fds \${writing} \${exited} \${sys.reap(pid).status}\`);
`,
    );
    Deno.writeTextFileSync(
      `${s.d}/deno`,
      `#!/bin/sh
[ -n "$MICRO_WARM" ] || { echo "warm none"; exit 0; }
exec "${Deno.execPath()}" run -A --no-config --quiet "${s.dir}/check.ts"
`,
    );
    const warm = (args: string[], env: Record<string, string> = {}, uid?: number) => {
      const [cmd, ...pre] = [...runner(arch)!, s.exe];
      const r = new Deno.Command(cmd, {
        args: [...pre, ...args],
        clearEnv: true,
        env: { PATH: "/usr/bin:/bin", MICRO_CACHE_DIR: s.base, ...env },
        uid,
        stdout: "piped",
        stderr: "piped",
      }).outputSync();
      const t = new TextDecoder();
      assert.equal(r.code, 0, t.decode(r.stderr));
      return t.decode(r.stdout);
    };
    const started = V1 ? "warm mine pipe 2 fds writing exited 0\n" : "warm none\n";
    assert.equal(warm(["run", "img", "true"]), started);
    assert.equal(warm(["exec", "c", "true"]), started);
    assert.equal(warm(["run", "img"], { MICRO_WARM: "1" }), started); // the caller's replaced
    // An OCI runtime's verbs, after runc's global flags (a value-taking one's value skipped).
    for (
      const oci of [
        ["create", "id"],
        ["--root", "/r", "run", "-b", "b", "id"],
        ["--root=/r", "create", "id"],
        ["--log", "l", "--log-format", "json", "--debug", "exec", "id"],
        ["--systemd-cgroup", "--rootless", "false", "create", "id"],
      ]
    ) {
      assert.equal(warm(oci), started, oci.join(" "));
    }
    for (
      const other of [
        ["version"],
        ["runner"],
        ["ps"],
        [],
        ["plan", "run"],
        ["--root", "/r", "ps"],
        ["--root", "/r"],
        ["--root"],
        ["--log", "run"],
        ["--debug"],
      ]
    ) {
      assert.equal(warm(other), "warm none\n", other.join(" "));
    }
    assert.equal(warm(["version"], { MICRO_WARM: "1" }), "warm none\n"); // never passed on
    // Not root: nothing (its cache made the user's).
    for (const p of [s.dir, s.base, s.d, `${s.d}/lib`, `${s.d}/deno`, `${s.d}/micro.js`]) {
      Deno.chownSync(p, 61235, 61235);
    }
    Deno.chownSync(`${s.d}/lib/main.js`, 61235, 61235);
    assert.equal(warm(["run", "img"], {}, 61235), "warm none\n");
  });

  test("a caller without stdin, stdout and stderr: no warm-up (its pipe would be Deno's fd 0 to 2)", (s) => {
    const out = `${s.dir}/out`;
    Deno.writeTextFileSync(
      `${s.d}/deno`,
      `#!/bin/sh\necho "\${MICRO_WARM:-none} $(ls /proc/$$/fd | wc -l)" > ${out}\n`,
    );
    const warm = (closed: boolean) => {
      const [cmd, ...pre] = [...runner(arch)!, s.exe];
      const close = closed ? "0<&- 1>&- 2>&-" : "";
      const r = new Deno.Command("sh", {
        args: ["-c", `exec "$@" ${close}`, "sh", cmd, ...pre, "run", "img"],
        clearEnv: true,
        env: { PATH: "/usr/bin:/bin", MICRO_CACHE_DIR: s.base },
      }).outputSync();
      assert.equal(r.code, 0);
      return Deno.readTextFileSync(out).trim();
    };
    if (!V1) return;
    assert.match(warm(false), /^[1-9][0-9]*,[3-9][0-9]* /);
    assert.match(warm(true), /^none /);
  });

  test("a Deno that cannot be exec'd after the warm-up: the stub runs without the warm-up's pipe", (s) => {
    // No #! and no ELF: execve fails (ENOEXEC) once the cache was judged safe and W started.
    Deno.writeTextFileSync(`${s.d}/deno`, "not a program\n");
    const listed = (args: string[]) => {
      const stub = `${s.dir}/stub-fds`;
      const [cmd, ...pre] = [...runner(arch)!, s.exe];
      new Deno.Command(cmd, {
        args: [...pre, ...args],
        clearEnv: true,
        env: { PATH: "/usr/bin:/bin", MICRO_CACHE_DIR: s.base, STUB_OUT: stub },
        stdin: "null",
        stdout: "null",
        stderr: "null",
      }).outputSync();
      return Deno.readTextFileSync(stub);
    };
    // The stub lists its fds (STUB_OUT): a run's are a `version`'s (no warm-up), no pipe more.
    const fds = (out: string) => [...out.matchAll(/ (\d+) -> /g)].map((m) => m[1]).sort();
    const run = listed(["run", "img"]);
    assert.ok(fds(run).length >= 3, run);
    assert.deepEqual(fds(run), fds(listed(["version"])), run);
  });

  test("an old stamp is refreshed; a recent one is left alone", (s) => {
    Deno.utimeSync(s.d, 1000, 1000);
    s.run({ MICRO_CACHE_DIR: s.base });
    assert.ok(Deno.statSync(s.d).mtime!.getTime() > Date.now() - 60_000, "not refreshed");
    const recent = new Date(Date.now() - 100_000);
    Deno.utimeSync(s.d, recent, recent);
    s.run({ MICRO_CACHE_DIR: s.base });
    assert.equal(
      Math.floor(Deno.statSync(s.d).mtime!.getTime() / 1000),
      Math.floor(+recent / 1000),
    );
  });
}

Deno.test({
  name: "launcher: set-uid, it refuses to run (the caller's environment would pick what runs)",
  ignore: !ROOT || runner(Deno.build.arch as TrampolineArch)?.length !== 0,
  fn() {
    const s = scene(Deno.build.arch as TrampolineArch);
    try {
      Deno.chmodSync(s.exe, 0o4755);
      const r = new Deno.Command(s.exe, {
        args: ["a"],
        clearEnv: true,
        env: { PATH: "/usr/bin:/bin", MICRO_CACHE_DIR: s.base },
        uid: 61235,
        gid: 61235,
        stdout: "piped",
        stderr: "piped",
      }).outputSync();
      assert.equal(r.code, 125);
      assert.equal(new TextDecoder().decode(r.stdout), "");
      assert.match(new TextDecoder().decode(r.stderr), /^micro: launcher: refusing to run set-uid/);
    } finally {
      s.clean();
    }
  },
});
