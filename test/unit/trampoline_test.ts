/**
 * The exec trampoline (tools/trampoline/*.S, bytes in core/engine/trampoline.ts), run for
 * real: natively for the host's architecture, under qemu-user for the other one when it is
 * installed. Each run gets the layout micro passes ("" LABEL CANDIDATES "" ARGV, report fd
 * 3, label fd 4) or a wrong one, through bash's `exec -a` (an empty argv[0]) or qemu's
 * `-0`; in init mode (`--init`) argv[0] is "init".
 */
import assert from "node:assert/strict";
import { openLibc } from "../../core/sys/libc.ts";
import { C, cstr, cstrArray, fromBase64 } from "../../core/sys/mod.ts";
import { TRAMPOLINE, USERNS_HOLDER, VFORK_X86_64, WATCHDOG } from "../../core/engine/trampoline.ts";
import {
  EXEC_FAILED_RECORD,
  FD_LABEL,
  FD_TRAMPOLINE_REPORT,
  INIT_MODE,
  LABEL_FAILED_RECORD,
} from "../../core/engine/child.ts";
import {
  assemble,
  type Bins,
  OUTPUT,
  render,
  TRAMPOLINE_ARCHES,
  type TrampolineArch,
} from "../../tools/gen_trampoline.ts";
import { runner, which } from "./_arch.ts";

// ---- The committed bytes are the sources' --------------------------------------------------

const COMMITTED = { TRAMPOLINE, USERNS_HOLDER, WATCHDOG };
const PROGRAM_NAMES = ["TRAMPOLINE", "USERNS_HOLDER", "WATCHDOG"] as const;
const BINS = Object.fromEntries(
  PROGRAM_NAMES.map((program) => [
    program,
    Object.fromEntries(TRAMPOLINE_ARCHES.map((a) => [a, assemble(a, program)])),
  ]),
) as Record<keyof typeof COMMITTED, Record<TrampolineArch, Uint8Array | null>>;
const missing = TRAMPOLINE_ARCHES.filter((a) => BINS.TRAMPOLINE[a] === null);
const VFORK_BIN = assemble("x86_64", "VFORK");

for (const program of PROGRAM_NAMES) {
  for (const arch of TRAMPOLINE_ARCHES) {
    Deno.test({
      name: `${program} ${arch}: the committed bytes are what the source assembles to` +
        (BINS[program][arch]
          ? ""
          : ` (skipped: no assembler for ${arch}; install binutils-${arch}-linux-gnu)`),
      ignore: BINS[program][arch] === null,
      fn() {
        assert.deepEqual(COMMITTED[program][arch], BINS[program][arch]);
      },
    });
  }
}

Deno.test({
  name: "trampoline: core/engine/trampoline.ts is exactly what the generator writes" +
    (missing.length ? ` (skipped: no assembler for ${missing.join(", ")})` : ""),
  ignore: missing.length > 0 || VFORK_BIN === null,
  fn() {
    assert.equal(Deno.readTextFileSync(OUTPUT), render(BINS as Bins, VFORK_BIN!));
  },
});

Deno.test({
  name: "VFORK x86_64: the committed bytes are what the source assembles to" +
    (VFORK_BIN ? "" : " (skipped: no assembler for x86_64)"),
  ignore: VFORK_BIN === null,
  fn() {
    const committed = fromBase64(VFORK_X86_64);
    assert.deepEqual(committed, VFORK_BIN);
  },
});

// ---- The user namespace holder, run -----------------------------------------------------------

for (const arch of TRAMPOLINE_ARCHES) {
  const how = runner(arch);
  Deno.test({
    name: `USERNS_HOLDER ${arch}: unshares a user namespace, says so with one byte, waits ` +
      `for EOF on stdin, exits 0; or exits with the errno having written nothing` +
      (how === null ? ` (skipped: no qemu-${arch}-static or qemu-${arch})` : ""),
    ignore: how === null,
    async fn() {
      const dir = Deno.makeTempDirSync({ prefix: "micro-holder-test-" });
      try {
        const bin = `${dir}/holder-${arch}`;
        Deno.writeFileSync(bin, USERNS_HOLDER[arch], { mode: 0o755 });
        const child = new Deno.Command(how![0] ?? bin, {
          args: how!.length ? [bin] : [],
          stdin: "piped",
          stdout: "piped",
          stderr: "piped",
        }).spawn();
        const reader = child.stdout.getReader();
        const first = await reader.read();
        if (first.done) {
          // qemu-user runs threads of its own, and a threaded process cannot unshare a user
          // namespace: EINVAL. Natively, root can; a user only where the host allows it
          // (EPERM, or ENOSPC with user.max_user_namespaces=0).
          assert.ok(how!.length > 0 || Deno.uid() !== 0, "natively, root's unshare failed");
          const status = await child.status;
          assert.ok([1, 22, 28].includes(status.code), `exit ${status.code}`);
          await child.stdin.close();
        } else {
          assert.deepEqual([...first.value], [46]); // "."
          if (!how!.length) {
            const own = Deno.readLinkSync("/proc/self/ns/user");
            assert.notEqual(Deno.readLinkSync(`/proc/${child.pid}/ns/user`), own);
          }
          // It waits: still there a moment later, until its stdin ends.
          await new Promise((r) => setTimeout(r, 50));
          assert.ok(Deno.statSync(`/proc/${child.pid}`).isDirectory, "it did not wait");
          await child.stdin.close();
          const status = await child.status;
          assert.equal(status.code, 0);
          assert.ok((await reader.read()).done, "it wrote more than one byte");
        }
        reader.releaseLock();
        await child.stderr.cancel();
      } finally {
        Deno.removeSync(dir, { recursive: true });
      }
    },
  });
}

// ---- The watchdog program, run ------------------------------------------------------------------

for (const arch of TRAMPOLINE_ARCHES) {
  const how = runner(arch);
  for (const died of [false, true]) {
    Deno.test({
      name: `WATCHDOG ${arch}: ` + (died
        ? "EOF on fd 0 (micro died): SIGKILL through the pidfd on fd 3, cgroup.kill on fd 4's " +
          "dir, freezer.state THAWED on fd 5's, exit 0"
        : "a byte on fd 0 (a normal end): exit 0, nothing killed or written") +
        (how === null ? ` (skipped: no qemu-${arch}-static or qemu-${arch})` : ""),
      ignore: how === null,
      async fn() {
        const dir = Deno.makeTempDirSync({ prefix: "micro-watchdog-prog-" });
        const sys = openLibc();
        const victim = new Deno.Command("sleep", { args: ["30"] }).spawn();
        const fds: number[] = [];
        try {
          Deno.writeTextFileSync(`${dir}/cgroup.kill`, "");
          Deno.writeTextFileSync(`${dir}/freezer.state`, "FROZEN\n");
          const bin = `${dir}/watchdog-${arch}`;
          Deno.writeFileSync(bin, WATCHDOG[arch], { mode: 0o755 });
          const pipe = new Int32Array(2);
          assert.equal(sys.pipe2(pipe, C.O_CLOEXEC), 0);
          fds.push(pipe[0], pipe[1]);
          const pidfd = sys.pidfdOpen(victim.pid, 0);
          assert.ok(pidfd >= 0, `pidfd_open: ${pidfd}`);
          fds.push(pidfd);
          const dirFd = sys.open(cstr(dir), C.O_RDONLY | C.O_DIRECTORY | C.O_CLOEXEC, 0);
          fds.push(dirFd);
          const devNull = sys.open(cstr("/dev/null"), C.O_RDWR | C.O_CLOEXEC, 0);
          fds.push(devNull);
          // An fd micro inherited without close-on-exec: the program closes it.
          const stray = sys.open(cstr("/dev/null"), C.O_RDONLY, 0);
          fds.push(stray);
          const argv = how!.length ? [how![0], bin] : [bin];
          const pid = sys.spawn(cstr(argv[0]), cstrArray(argv), cstrArray([]), [
            pipe[0],
            devNull,
            devNull,
            pidfd,
            dirFd,
            dirFd,
          ], true); // as micro spawns it: its own session, every signal blocked
          assert.ok(pid > 0, `spawn: ${pid}`);
          // Its own session, every catchable signal ignored, / as its cwd (natively: qemu
          // is the process there).
          await new Promise((r) =>
            setTimeout(r, how!.length ? 500 : 100)
          );
          if (!how!.length) {
            const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
            const session = stat.slice(stat.lastIndexOf(")") + 2).split(" ")[3];
            assert.equal(Number(session), pid, "not a session leader");
            const status = Deno.readTextFileSync(`/proc/${pid}/status`);
            const ign = /^SigIgn:\s*(\w+)/m.exec(status);
            // Unblocked once ignored: a blocked signal would stay queued though ignored.
            assert.equal(/^SigBlk:\s*(\w+)/m.exec(status)?.[1], "0000000000000000");
            assert.equal(ign?.[1], "fffffffffffbfeff");
            assert.equal(Deno.readLinkSync(`/proc/${pid}/cwd`), "/");
            const open = [...Deno.readDirSync(`/proc/${pid}/fd`)].map((e) => e.name).sort();
            assert.deepEqual(open, ["0", "1", "2", "3", "4", "5"]);
          }
          if (!died) sys.write(pipe[1], new Uint8Array([0]), 1);
          sys.close(pipe[1]);
          fds.splice(fds.indexOf(pipe[1]), 1);
          const { status } = await sys.waitpid(pid);
          assert.equal(status, 0, `exit status ${status}`);
          if (died) {
            const st = await victim.status;
            assert.equal(st.signal, "SIGKILL");
          } else {
            assert.ok(Deno.statSync(`/proc/${victim.pid}`).isDirectory, "the victim was killed");
          }
          assert.equal(Deno.readTextFileSync(`${dir}/cgroup.kill`), died ? "1" : "");
          assert.equal(
            Deno.readTextFileSync(`${dir}/freezer.state`),
            died ? "THAWED\n" : "FROZEN\n",
          );
        } finally {
          for (const fd of fds) sys.close(fd);
          try {
            victim.kill("SIGKILL");
          } catch { /* gone */ }
          await victim.status;
          Deno.removeSync(dir, { recursive: true });
        }
      },
    });
  }
}

// ---- Running it ------------------------------------------------------------------------------

interface Ran {
  code: number;
  stdout: string;
  stderr: string;
  /** What was written to fd 3, as 32-bit words. */
  record: number[];
  /** What was written to fd 4. */
  label: string;
}

const SCRIPT = `
set -e
bin=$1 rec=$2 a0=$3 fd=$4 label=$5 pre=$6
shift 6
i=3; while [ "$i" -lt $((3 + pre)) ]; do eval "exec $i</dev/null"; i=$((i + 1)); done
if [ "$fd" = 1 ]; then eval "exec $((${FD_TRAMPOLINE_REPORT} + pre))>\"\$rec\""; fi
if [ -n "$label" ]; then eval "exec $((${FD_LABEL} + pre))>\"\$label\""; fi
if [ -n "$QEMU" ]; then exec "$QEMU" -0 "$a0" "$bin" "$@"; fi
exec -a "$a0" "$bin" "$@"
`;

interface RunOptions {
  /** No fd 3. */
  noFd?: boolean;
  /** fd 4 open on a file. */
  labelFd?: boolean;
  /** Run as nobody (when this test runs as root), through setpriv. */
  nobody?: boolean;
  /** Fds 3 to 2+N open on /dev/null (`--preserve-fds`), the report and label fds above. */
  preserve?: number;
}

/** As root, setpriv drops to nobody; otherwise this user already is no root. */
const NOBODY = Deno.uid() === 0
  ? ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
  : [];

/** The command that runs the trampoline with `argv` (argv[0] included); see `RunOptions`. */
function trampolineCommand(
  arch: TrampolineArch,
  dir: string,
  argv: string[],
  { noFd = false, labelFd = false, nobody = false, preserve = 0 }: RunOptions,
): Deno.Command {
  const bin = `${dir}/trampoline-${arch}`;
  Deno.writeFileSync(bin, TRAMPOLINE[arch], { mode: 0o755 });
  const rec = `${dir}/record`;
  Deno.writeFileSync(rec, new Uint8Array(0), { mode: 0o666 });
  const label = `${dir}/label`;
  Deno.writeFileSync(label, new Uint8Array(0), { mode: 0o666 });
  if (nobody) Deno.chmodSync(dir, 0o755);
  const qemu = runner(arch)!;
  const prefix = nobody ? NOBODY : [];
  return new Deno.Command(prefix[0] ?? "bash", {
    args: [
      ...(prefix.length ? [...prefix.slice(1), "bash"] : []),
      "-c",
      SCRIPT,
      "bash",
      bin,
      rec,
      argv[0],
      noFd ? "0" : "1",
      labelFd ? label : "",
      String(preserve),
      ...argv.slice(1),
    ],
    env: { QEMU: qemu[0] ?? "" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  });
}

function ran(dir: string, out: Deno.CommandOutput): Ran {
  const bytes = Deno.readFileSync(`${dir}/record`);
  const words = new Int32Array(bytes.buffer, 0, Math.floor(bytes.length / 4));
  const dec = new TextDecoder();
  return {
    code: out.code,
    stdout: dec.decode(out.stdout),
    stderr: dec.decode(out.stderr),
    record: Array.from(words),
    label: Deno.readTextFileSync(`${dir}/label`),
  };
}

/** Runs the trampoline with `argv` (argv[0] included) to its end; see `RunOptions`. */
function runTrampoline(
  arch: TrampolineArch,
  dir: string,
  argv: string[],
  opts: RunOptions = {},
): Ran {
  return ran(dir, trampolineCommand(arch, dir, argv, opts).outputSync());
}

const REFUSAL = "micro: exec trampoline: not started by micro\n";

function withDir(fn: (dir: string) => void): void {
  const dir = Deno.makeTempDirSync({ prefix: "micro-trampoline-test-" });
  try {
    // A file that is not executable (EACCES), one that is but is no program (ENOEXEC).
    Deno.writeTextFileSync(`${dir}/noexec`, "#!/bin/sh\necho no\n", { mode: 0o644 });
    Deno.writeFileSync(`${dir}/garbage`, new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]), {
      mode: 0o755,
    });
    fn(dir);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
}

/** A shell command that says whether fds 3 and 4 reached it. */
const PROBE = [
  [FD_TRAMPOLINE_REPORT, FD_LABEL].map((fd) =>
    `[ -e /proc/$$/fd/${fd} ] && echo open || echo closed`
  )
    .join("; "),
];

for (const arch of TRAMPOLINE_ARCHES) {
  const how = runner(arch);
  const skip = how === null
    ? ` (skipped: no qemu-${arch}-static or qemu-${arch}; install qemu-user-static)`
    : "";
  const t = (name: string, fn: (dir: string) => void) =>
    Deno.test({
      name: `trampoline ${arch}: ${name}${skip}`,
      ignore: how === null,
      fn: () => withDir(fn),
    });

  t(
    "runs the first candidate that exists, with the command's argv; fd 3 is closed there",
    (d) => {
      const r = runTrampoline(arch, d, [
        "",
        "",
        "/nonexistent/sh",
        "/bin/sh",
        "",
        "sh",
        "-c",
        ...PROBE,
      ]);
      assert.equal(r.stderr, "");
      assert.equal(r.stdout, "closed\nclosed\n");
      assert.equal(r.code, 0);
      assert.deepEqual(r.record, [], "nothing is reported when the command runs");
      const args = runTrampoline(arch, d, ["", "", "/bin/echo", "", "echo", "a", "", "b c"]);
      assert.equal(
        args.stdout,
        "a  b c\n",
        "an empty argument after the separator is the command's",
      );
    },
  );

  t('one "+" per preserved fd: fd 3 reaches the command, the report is fd 4', (d) => {
    for (const mode of ["+", "init+"]) {
      const r = runTrampoline(arch, d, [mode, "", "/bin/sh", "", "sh", "-c", ...PROBE], {
        preserve: 1,
      });
      assert.equal(r.stderr, "", mode);
      assert.equal(r.stdout, "open\nclosed\n", mode);
      assert.equal(r.code, 0, mode);
      const none = runTrampoline(arch, d, [mode, "", "/nonexistent/a", "", "a"], { preserve: 1 });
      assert.equal(none.code, 127, mode);
      assert.deepEqual(none.record, [EXEC_FAILED_RECORD, 2], mode);
    }
    const bad = runTrampoline(arch, d, ["+x", "", "/bin/sh", "", "sh"], { preserve: 1 });
    assert.equal(bad.stderr, REFUSAL);
    assert.equal(bad.code, 126);
  });

  t("ENOENT and ENOTDIR move on; EACCES is remembered but a later candidate still runs", (d) => {
    const r = runTrampoline(arch, d, [
      "",
      "",
      "/nonexistent/echo",
      "/etc/passwd/echo",
      `${d}/noexec`,
      "/bin/echo",
      "",
      "echo",
      "ran",
    ]);
    assert.equal(r.stdout, "ran\n");
    assert.equal(r.code, 0);
  });

  t("no candidate at all: [EXEC_FAILED, ENOENT] on fd 3 and exit 127", (d) => {
    const r = runTrampoline(arch, d, ["", "", "/nonexistent/a", "/etc/passwd/b", "", "a"]);
    assert.equal(r.code, 127);
    assert.deepEqual(r.record, [EXEC_FAILED_RECORD, 2]);
    assert.equal(r.stdout + r.stderr, "");
  });

  t("only EACCES and ENOENT: the EACCES is reported", (d) => {
    const r = runTrampoline(arch, d, ["", "", `${d}/noexec`, "/nonexistent/a", "", "a"]);
    assert.equal(r.code, 127);
    assert.deepEqual(r.record, [EXEC_FAILED_RECORD, 13]);
  });

  t("any other error stops the search (ENOEXEC): later candidates are not tried", (d) => {
    const r = runTrampoline(arch, d, ["", "", `${d}/garbage`, "/bin/echo", "", "echo", "ran"]);
    assert.equal(r.code, 127);
    assert.deepEqual(r.record, [EXEC_FAILED_RECORD, 8]);
    assert.equal(r.stdout, "");
  });

  t("a label is written to fd 4, which is closed before the command runs", (d) => {
    const r = runTrampoline(
      arch,
      d,
      ["", "exec micro-test", "/bin/sh", "", "sh", "-c", ...PROBE],
      { labelFd: true },
    );
    assert.equal(r.stderr, "");
    assert.equal(r.label, "exec micro-test", "the label, without its NUL");
    assert.equal(r.stdout, "closed\nclosed\n");
    assert.equal(r.code, 0);
    assert.deepEqual(r.record, []);
  });

  t("a label that cannot be written: [LABEL_FAILED, errno], and no candidate is tried", (d) => {
    // No fd 4: EBADF.
    const r = runTrampoline(arch, d, [
      "",
      "system_u:system_r:container_t:s0",
      "/bin/echo",
      "",
      "echo",
      "ran",
    ]);
    assert.equal(r.code, 127);
    assert.deepEqual(r.record, [LABEL_FAILED_RECORD, 9]);
    assert.equal(r.stdout + r.stderr, "");
  });

  t("any other layout does nothing but print one line and exit 126", (d) => {
    for (
      const argv of [
        ["/proc/self/exe"], // `micro run IMG /proc/self/exe`
        ["/proc/self/exe", "/script", "arg"], // the interpreter of a #!/proc/self/exe script
        ["", "", "/bin/echo", "x"], // no separator
        ["", "", "", "echo", "x"], // no candidate
        ["", "/bin/echo", "", "echo", "x"], // no label slot: /bin/echo is taken for it
        ["x", "", "/bin/echo", "", "echo", "x"], // argv[0] not empty
        [""],
        ["", ""],
        ["", "", ""],
      ]
    ) {
      const r = runTrampoline(arch, d, argv);
      assert.equal(r.code, 126, JSON.stringify(argv));
      assert.equal(r.stderr, REFUSAL);
      assert.equal(r.stdout, "");
      assert.deepEqual(r.record, [], "nothing is written to fd 3");
    }
  });

  t("without fd 3 (not started by micro) it refuses even a good layout", (d) => {
    const r = runTrampoline(arch, d, ["", "", "/bin/echo", "", "echo", "ran"], { noFd: true });
    assert.equal(r.code, 126);
    assert.equal(r.stdout, "");
    assert.equal(r.stderr, REFUSAL);
  });

  // Native only: under qemu-user the kernel would run the interpreter without qemu.
  Deno.test({
    name: `trampoline ${arch}: as the interpreter of a script it started, it refuses` +
      (how?.length === 0 ? "" : " (skipped: needs this machine's architecture)"),
    ignore: how?.length !== 0,
    fn: () =>
      withDir((d) => {
        const script = `${d}/script`;
        Deno.writeTextFileSync(script, `#!${d}/trampoline-${arch}\necho should-not-run\n`, {
          mode: 0o755,
        });
        // fd 3 is close-on-exec by the time the kernel runs the interpreter.
        const r = runTrampoline(arch, d, ["", "", script, "", script]);
        assert.equal(r.code, 126);
        assert.equal(r.stderr, REFUSAL);
        assert.equal(r.stdout, "");
        assert.deepEqual(r.record, []);
      }),
  });
}

/**
 * The owner of `/proc/PID/environ`: root for a task that is not dumpable, whatever its uid
 * (proc(5); the directory itself keeps the task's uid on recent kernels).
 */
function procOwner(pid: number): number | null {
  try {
    return Deno.statSync(`/proc/${pid}/environ`).uid;
  } catch {
    return null;
  }
}

// Native and as root only: it runs the trampoline as nobody and reads /proc/PID's owner.
for (const arch of TRAMPOLINE_ARCHES) {
  const native = runner(arch)?.length === 0;
  Deno.test({
    name: `trampoline ${arch}: makes itself undumpable before the label and the candidates` +
      (native && Deno.uid() === 0 ? "" : " (skipped: needs root and this machine's architecture)"),
    ignore: !native || Deno.uid() !== 0,
    fn: async () => {
      const d = Deno.makeTempDirSync({ prefix: "micro-trampoline-test-" });
      let child: Deno.ChildProcess | undefined;
      try {
        Deno.chmodSync(d, 0o755);
        const bin = `${d}/trampoline-${arch}`;
        Deno.writeFileSync(bin, TRAMPOLINE[arch], { mode: 0o755 });
        Deno.writeFileSync(`${d}/record`, new Uint8Array(0), { mode: 0o666 });
        // A label larger than a pipe's 64 KiB, written to a FIFO nobody reads: the trampoline
        // blocks in that write, after the point where it must have dropped its dumpable flag.
        const label = "x".repeat(100_000);
        const fifo = new Deno.Command("mkfifo", { args: ["-m", "666", `${d}/fifo`] }).outputSync();
        assert.ok(fifo.success, "mkfifo");
        child = new Deno.Command(NOBODY[0] ?? "bash", {
          args: [
            ...NOBODY.slice(1),
            "bash",
            "-c",
            `exec ${FD_LABEL}<>"$1/fifo" ${FD_TRAMPOLINE_REPORT}>"$1/record"; ` +
            `exec -a "" "$2" "$3" /bin/true "" true`,
            "bash",
            d,
            bin,
            label,
          ],
          stdin: "null",
          stdout: "null",
          stderr: "null",
        }).spawn();
        const pid = child.pid;
        let owner: number | null = null;
        for (let i = 0; i < 500; i++) {
          const comm = (() => {
            try {
              return Deno.readTextFileSync(`/proc/${pid}/comm`).trim();
            } catch {
              return "";
            }
          })();
          owner = procOwner(pid);
          if (comm.startsWith("trampoline") && owner === 0) break;
          await new Promise((r) => setTimeout(r, 10));
        }
        assert.equal(
          owner,
          0,
          "/proc/PID/environ of the blocked trampoline is root's: not dumpable",
        );
      } finally {
        if (child) {
          try {
            child.kill("SIGKILL");
          } catch { /* gone */ }
          await child.status;
        }
        Deno.removeSync(d, { recursive: true });
      }
    },
  });
}

Deno.test("sealedProgram: the trampoline's memfd is execute-only (0111), and such a file's exec leaves its process undumpable from the start", async () => {
  const { sealedProgram } = await import("../../core/engine/memfd.ts");
  const sys = openLibc();
  const fd = sealedProgram(
    sys,
    "micro-test",
    TRAMPOLINE[Deno.build.arch === "aarch64" ? "aarch64" : "x86_64"],
    true,
  );
  try {
    const st = { mode: 0, size: 0, uid: 0, gid: 0 };
    assert.equal(sys.fstat(fd, st), 0);
    assert.equal(st.mode & 0o7777, 0o111);
  } finally {
    sys.close(fd);
  }
  if (Deno.uid() !== 0) return; // the kernel's side needs another user to exec as
  // The kernel's side (would_dump): a file the exec'ing process may not read is exec'd
  // undumpable, so no tracer of that uid can attach even while the exec runs. Shown with
  // sleep, no prctl of its own: its /proc/PID/environ is root's at 0111, its user's at 0755.
  const d = Deno.makeTempDirSync({ prefix: "micro-trampoline-test-" });
  try {
    Deno.chmodSync(d, 0o755);
    const owners: number[] = [];
    for (const mode of [0o111, 0o755]) {
      Deno.copyFileSync("/bin/sleep", `${d}/sleep`);
      Deno.chmodSync(`${d}/sleep`, mode);
      // Through sh: setpriv itself may still hold capabilities as it execs (its keep-caps),
      // which let it read any file; sh runs as nobody with none.
      const child = new Deno.Command(NOBODY[0], {
        args: [...NOBODY.slice(1), "sh", "-c", 'exec "$0" 5', `${d}/sleep`],
        stdin: "null",
      }).spawn();
      try {
        let owner: number | null = null;
        for (let i = 0; i < 500; i++) {
          const comm = (() => {
            try {
              return Deno.readTextFileSync(`/proc/${child.pid}/comm`).trim();
            } catch {
              return "";
            }
          })();
          if (comm === "sleep") {
            owner = procOwner(child.pid);
            break;
          }
          await new Promise((r) => setTimeout(r, 10));
        }
        owners.push(owner ?? -1);
      } finally {
        child.kill("SIGKILL");
        await child.status;
      }
    }
    assert.deepEqual(owners, [0, 65534]);
  } finally {
    Deno.removeSync(d, { recursive: true });
  }
});

// ---- Init mode (`micro run --init`) ------------------------------------------------------

/** Waits until `path` holds a line (a pid the command wrote), up to 10 s. */
async function waitForFile(path: string): Promise<string> {
  for (let i = 0; i < 1000; i++) {
    try {
      const text = Deno.readTextFileSync(path);
      if (text.endsWith("\n")) return text.trim();
    } catch { /* not yet */ }
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`${path} was never written`);
}

for (const arch of TRAMPOLINE_ARCHES) {
  const how = runner(arch);
  const native = how?.length === 0;
  const skip = how === null
    ? ` (skipped: no qemu-${arch}-static or qemu-${arch}; install qemu-user-static)`
    : "";
  const t = (name: string, fn: (dir: string) => void | Promise<void>, ignore = false) =>
    Deno.test({
      name: `trampoline ${arch} init: ${name}${ignore ? "" : skip}`,
      ignore: how === null || ignore,
      fn: async () => {
        const dir = Deno.makeTempDirSync({ prefix: "micro-trampoline-test-" });
        try {
          await fn(dir);
        } finally {
          Deno.removeSync(dir, { recursive: true });
        }
      },
    });
  const init = (...rest: string[]) => [INIT_MODE, "", ...rest];

  t(
    "runs the command as its child, in a process group of its own, and exits with its code",
    async (d) => {
      const script = [
        "read x x x x pgrp x < /proc/self/stat",
        'echo "$$ $PPID $pgrp"',
        ...PROBE,
        // The init keeps neither the report socket nor the label fd (qemu has fds of its own).
        native ? "[ -e /proc/$PPID/fd/3 ] || [ -e /proc/$PPID/fd/4 ] && echo init-holds-fds" : ":",
        "exit 7",
      ].join("; ");
      const child = trampolineCommand(
        arch,
        d,
        init("/nonexistent/sh", "/bin/sh", "", "sh", "-c", script),
        {},
      ).spawn();
      const r = ran(d, await child.output());
      assert.equal(r.stderr, "");
      const [ids, ...rest] = r.stdout.split("\n");
      const [pid, ppid, pgrp] = ids.split(" ").map(Number);
      assert.equal(ppid, child.pid, "the command's parent is the init");
      assert.notEqual(pid, child.pid);
      assert.equal(pgrp, pid, "the command leads its own process group");
      assert.deepEqual(rest, ["closed", "closed", ""], "fds 3 and 4 do not reach the command");
      assert.equal(r.code, 7);
      assert.deepEqual(r.record, []);
    },
  );

  t("a command killed by signal N: exit 128+N, as Docker's init", (d) => {
    const r = runTrampoline(arch, d, init("/bin/sh", "", "sh", "-c", "kill -KILL $$"));
    assert.equal(r.code, 137);
    const s = runTrampoline(arch, d, init("/bin/sh", "", "sh", "-c", "kill -SEGV $$"));
    assert.equal(s.code, 128 + 11);
  });

  t("no candidate: the command's [EXEC_FAILED, errno] on fd 3 and exit 127", (d) => {
    const r = runTrampoline(arch, d, init("/nonexistent/a", `${d}/nope`, "", "a"));
    assert.equal(r.code, 127);
    assert.deepEqual(r.record, [EXEC_FAILED_RECORD, 2]);
    assert.equal(r.stdout + r.stderr, "");
    const l = runTrampoline(arch, d, ["init", "some-label", "/bin/echo", "", "echo", "ran"]);
    assert.equal(l.code, 127);
    assert.deepEqual(l.record, [LABEL_FAILED_RECORD, 9], "no fd 4: EBADF");
    assert.equal(l.stdout, "");
  });

  t("other spellings of init, or no fd 3, are refused as any bad layout", (d) => {
    for (const a0 of ["ini", "initx", "Init", "init "]) {
      const r = runTrampoline(arch, d, [a0, "", "/bin/echo", "", "echo", "ran"]);
      assert.equal(r.code, 126, a0);
      assert.equal(r.stderr, REFUSAL, a0);
      assert.equal(r.stdout, "", a0);
    }
    const r = runTrampoline(arch, d, init("/bin/echo", "", "echo", "ran"), { noFd: true });
    assert.equal(r.code, 126);
    assert.equal(r.stderr, REFUSAL);
    assert.equal(r.stdout, "");
  });

  t(
    "TERM to the init goes to the command; killed by it, the command makes the init exit 143",
    async (d) => {
      // The command is a plain sleep: it has no handler, so TERM kills it; the init then
      // exits 143 itself (it is not killed: it blocks every signal).
      const ready = `${d}/ready`;
      const child = trampolineCommand(
        arch,
        d,
        init("/bin/sh", "", "sh", "-c", `echo $$ > ${ready}; exec sleep 30`),
        {},
      ).spawn();
      const pid = await waitForFile(ready);
      await new Promise((r) => setTimeout(r, 100)); // the exec of sleep
      Deno.kill(child.pid, "SIGTERM");
      const out = await child.output();
      assert.equal(out.signal, null, "the init was not killed itself");
      assert.equal(out.code, 143);
      assert.ok(!exists(`/proc/${pid}`), "the command is gone");
    },
  );

  t("USR1, HUP and INT are forwarded too", async (d) => {
    for (const sig of ["SIGUSR1", "SIGHUP", "SIGINT"] as const) {
      const ready = `${d}/ready`;
      try {
        Deno.removeSync(ready);
      } catch { /* first round */ }
      const name = sig.slice(3);
      const child = trampolineCommand(
        arch,
        d,
        init(
          "/bin/sh",
          "",
          "sh",
          "-c",
          `trap 'echo got ${name}; exit 3' ${name}; echo $$ > ${ready}; ` +
            "while :; do sleep 0.05; done",
        ),
        {},
      ).spawn();
      await waitForFile(ready);
      Deno.kill(child.pid, sig);
      const out = await child.output();
      assert.equal(new TextDecoder().decode(out.stdout), `got ${name}\n`, sig);
      assert.equal(out.code, 3, sig);
    }
  });

  // qemu-user refuses PR_SET_CHILD_SUBREAPER, so orphans go past the emulated init there.
  t(
    "an orphan is reparented to the init (a subreaper) and reaped when it exits" +
      (native ? "" : " (skipped: needs this machine's architecture)"),
    (d) => {
      // The subshell leaves `sleep 0.5` orphaned at once; while it runs its parent is the
      // init; after it exits nothing of it is left (it would stay a zombie, state Z, if the
      // init did not reap it).
      const script = [
        "(sleep 0.5 & echo $! > " + `${d}/orphan)`,
        "o=$(cat " + `${d}/orphan)`,
        "sleep 0.2",
        "read x x s pp x < /proc/$o/stat",
        'echo "state=$s parent=$([ $pp = $PPID ] && echo init)"',
        "sleep 0.8",
        "if [ -e /proc/$o ]; then read x x s x < /proc/$o/stat; echo after=$s; " +
        "else echo after=gone; fi",
      ].join("; ");
      const r = runTrampoline(arch, d, init("/bin/sh", "", "sh", "-c", script));
      assert.equal(r.stderr, "");
      assert.equal(r.stdout, "state=S parent=init\nafter=gone\n");
      assert.equal(r.code, 0);
    },
    !native,
  );

  t(
    "the init is not dumpable (its /proc files are root's, its maps closed); its command is again" +
      (NOBODY.length === 0 || which("setpriv") ? "" : " (skipped: no setpriv)"),
    (d) => {
      const script = [
        "me=$(id -u)",
        'echo "init=$(stat -c %u /proc/$PPID/status) command=$(stat -c %u /proc/$$/status)' +
        ' me=$me"',
        "cat /proc/$PPID/maps >/dev/null 2>&1; echo maps=$?",
        "cat /proc/$$/maps >/dev/null 2>&1; echo own=$?",
      ].join("; ");
      const r = runTrampoline(arch, d, init("/bin/sh", "", "sh", "-c", script), { nobody: true });
      assert.equal(r.stderr, "");
      const me = NOBODY.length ? 65534 : Deno.uid();
      assert.equal(r.stdout, `init=0 command=${me} me=${me}\nmaps=1\nown=0\n`);
      assert.equal(r.code, 0);
    },
    NOBODY.length > 0 && !which("setpriv"),
  );
}

function exists(path: string): boolean {
  try {
    Deno.lstatSync(path);
    return true;
  } catch {
    return false;
  }
}
