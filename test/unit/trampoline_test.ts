/**
 * The exec trampoline (tools/trampoline/*.S, bytes in core/engine/trampoline.ts), run for
 * real: natively for the host's architecture, under qemu-user for the other one when it is
 * installed. Each run gets the layout micro passes ("" LABEL CANDIDATES "" ARGV, report fd
 * 3, label fd 4) or a wrong one, through bash's `exec -a` (an empty argv[0]) or qemu's
 * `-0`.
 */
import assert from "node:assert/strict";
import { TRAMPOLINE } from "../../core/engine/trampoline.ts";
import {
  EXEC_FAILED_RECORD,
  FD_LABEL,
  FD_TRAMPOLINE_REPORT,
  LABEL_FAILED_RECORD,
} from "../../core/engine/child.ts";
import {
  assemble,
  OUTPUT,
  render,
  TRAMPOLINE_ARCHES,
  type TrampolineArch,
} from "../../tools/gen_trampoline.ts";

function which(cmd: string): string | null {
  for (const dir of (Deno.env.get("PATH") ?? "/usr/bin:/bin").split(":")) {
    try {
      if (Deno.statSync(`${dir}/${cmd}`).isFile) return `${dir}/${cmd}`;
    } catch { /* not here */ }
  }
  return null;
}

/** How to run a program of `arch` here: [] natively, [qemu] emulated, null not at all. */
function runner(arch: TrampolineArch): string[] | null {
  if (Deno.build.arch === arch) return [];
  const qemu = which(`qemu-${arch}-static`) ?? which(`qemu-${arch}`);
  return qemu ? [qemu] : null;
}

// ---- The committed bytes are the sources' --------------------------------------------------

const BINS = Object.fromEntries(TRAMPOLINE_ARCHES.map((a) => [a, assemble(a)])) as Record<
  TrampolineArch,
  Uint8Array | null
>;
const missing = TRAMPOLINE_ARCHES.filter((a) => BINS[a] === null);

for (const arch of TRAMPOLINE_ARCHES) {
  Deno.test({
    name: `trampoline ${arch}: the committed bytes are what the source assembles to` +
      (BINS[arch]
        ? ""
        : ` (skipped: no assembler for ${arch}; install binutils-${arch}-linux-gnu)`),
    ignore: BINS[arch] === null,
    fn() {
      assert.deepEqual(TRAMPOLINE[arch], BINS[arch]);
    },
  });
}

Deno.test({
  name: "trampoline: core/engine/trampoline.ts is exactly what the generator writes" +
    (missing.length ? ` (skipped: no assembler for ${missing.join(", ")})` : ""),
  ignore: missing.length > 0,
  fn() {
    assert.equal(Deno.readTextFileSync(OUTPUT), render(BINS as Record<TrampolineArch, Uint8Array>));
  },
});

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
bin=$1 rec=$2 a0=$3 fd=$4 label=$5
shift 5
if [ "$fd" = 1 ]; then exec ${FD_TRAMPOLINE_REPORT}>"$rec"; fi
if [ -n "$label" ]; then exec ${FD_LABEL}>"$label"; fi
if [ -n "$QEMU" ]; then exec "$QEMU" -0 "$a0" "$bin" "$@"; fi
exec -a "$a0" "$bin" "$@"
`;

/**
 * Runs the trampoline with `argv` (argv[0] included), fd 3 open on a file unless `noFd`,
 * fd 4 open on another one with `labelFd`.
 */
function runTrampoline(
  arch: TrampolineArch,
  dir: string,
  argv: string[],
  { noFd = false, labelFd = false } = {},
): Ran {
  const bin = `${dir}/trampoline-${arch}`;
  Deno.writeFileSync(bin, TRAMPOLINE[arch], { mode: 0o755 });
  const rec = `${dir}/record`;
  Deno.writeFileSync(rec, new Uint8Array(0));
  const label = `${dir}/label`;
  Deno.writeFileSync(label, new Uint8Array(0));
  const qemu = runner(arch)!;
  const out = new Deno.Command("bash", {
    args: [
      "-c",
      SCRIPT,
      "bash",
      bin,
      rec,
      argv[0],
      noFd ? "0" : "1",
      labelFd ? label : "",
      ...argv.slice(1),
    ],
    env: { QEMU: qemu[0] ?? "" },
    stdout: "piped",
    stderr: "piped",
  }).outputSync();
  const bytes = Deno.readFileSync(rec);
  const words = new Int32Array(bytes.buffer, 0, Math.floor(bytes.length / 4));
  const dec = new TextDecoder();
  return {
    code: out.code,
    stdout: dec.decode(out.stdout),
    stderr: dec.decode(out.stderr),
    record: Array.from(words),
    label: Deno.readTextFileSync(label),
  };
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
