/**
 * The container's child and, without a pid namespace of the container's own, the watchdog
 * are copies of micro that run JavaScript until they exec or exit (DESIGN.md §4). Nothing may be compiled in them: compiling allocates through
 * malloc, whose lock another thread of micro may have held at the instant of the copy
 * (core/v8.ts). V8's own log, turned on through DENO_V8_FLAGS, says which functions each
 * process parsed or compiled; strace says which process wrote which line.
 */
import assert from "node:assert/strict";
import { IMAGE, MICRO, microTest, run, withTempDir } from "./_helpers.ts";

/** Log events that mean a function was parsed or compiled (not just run). */
const COMPILED = /function,(parse|full-parse|parse-function|interpreter|baseline|maglev|turbofan)/;

/**
 * strace's lines with each call another process's line interrupted made whole again: strace
 * splits it into `PID clone(ARGS <unfinished ...>` and `PID <... clone resumed>REST` (the
 * container's child makes its root while micro forks the watchdog).
 */
function merged(trace: string): string[] {
  const open = new Map<string, string>();
  const out: string[] = [];
  for (const line of trace.split("\n")) {
    const cut = /^(\d+) +(.*) <unfinished \.\.\.>$/.exec(line);
    if (cut) {
      open.set(cut[1], cut[2]);
      continue;
    }
    const resumed = /^(\d+) +<\.\.\. [a-z0-9_]+ resumed>(.*)$/.exec(line);
    if (resumed && open.has(resumed[1])) {
      out.push(`${resumed[1]} ${open.get(resumed[1])}${resumed[2]}`);
      open.delete(resumed[1]);
      continue;
    }
    out.push(line);
  }
  return out;
}

/**
 * The pids of the processes micro copied itself into: clones by micro's main thread (from
 * its first V8 log line on: the launcher, a shell script that execs Deno in its own pid,
 * forks too) that are not threads or vforks.
 */
function copies(lines: string[]): number[] {
  const first = lines.findIndex((l) => l.includes(" write(") && l.includes("function,"));
  const micro = lines[first]?.split(" ", 1)[0];
  const out: number[] = [];
  for (const line of lines.slice(first)) {
    const m = /^(\d+) +clone3?\((.*)\) += (\d+)$/.exec(line);
    if (m && m[1] === micro && !/CLONE_THREAD|CLONE_VM/.test(m[2])) out.push(Number(m[3]));
  }
  return out;
}

microTest("fork copies: the container's child and the watchdog compile nothing", async () => {
  await withTempDir(async (dir) => {
    // With a pid namespace of its own the watchdog is a static program (not a copy); with
    // the host's (`--pid host`) it is a fork of micro.
    for (
      const [profile, ...flags] of [["default"], ["hardened"], ["default", "--pid", "host"]]
    ) {
      const label = [profile, ...flags].join(" ");
      const trace = `${dir}/${label.replaceAll(" ", "_")}.strace`;
      const r = await run([
        "-f",
        "-qq",
        "-s",
        "200",
        "-e",
        "trace=write,clone,clone3",
        "-o",
        trace,
        MICRO,
        "run",
        "--rm",
        "--profile",
        profile,
        ...flags,
        IMAGE,
        "/bin/true",
      ], {
        cmd: "strace",
        env: {
          MICRO_DEFAULT_NETWORK: "none",
          // The log goes to stdout, which the child keeps open. A log file's fd is one the
          // child closes (close_range), and each failed write of a log line then sets errno
          // between a failing system call and micro's read of errno: a step that failed
          // with ENOENT (a mask's missing path, which is no failure) was read as EBADF and
          // failed the run (seen 2 runs in 150 of `--pid host` here, once in CI). Not with
          // `-t`: the child's stdout is then /dev/null opened read-only until its console.
          DENO_V8_FLAGS: "--log-function-events,--logfile=-,--no-logfile-per-isolate",
        },
        timeoutMs: 60_000,
      });
      assert.equal(r.code, 0, `${label}: exit ${r.code}, stderr:\n${r.stderr}`); // stdout: the log
      const text = Deno.readTextFileSync(trace);
      const lines = merged(text);
      const pids = copies(lines);
      // The child, and with the host's pid namespace (as root, with cgroups of the run's
      // own) the watchdog. The child is no copy where it is a vfork child (core/engine/vfork.ts:
      // x86_64, a static watchdog; on cgroup v2 the stub's clone3; hardened's id maps written
      // by micro's thread): it shares micro's memory, and its malloc locks are micro's own,
      // which it may take. `--pid host` forks (a forked watchdog).
      const vforked = !flags.length && Deno.build.arch === "x86_64";
      const want = (vforked ? 0 : 1) + (flags.length ? 1 : 0);
      assert.equal(pids.length, want, `${label}: copies ${pids} in:\n${text.slice(0, 4000)}`);
      if (vforked) {
        assert.ok(
          lines.some((l) => /^\d+ +clone3?\(.*CLONE_VM\|CLONE_VFORK.*CLONE_NEWNS/.test(l)),
          `${label}: no vfork child in:\n${text.slice(0, 4000)}`,
        );
        continue;
      }
      const byCopy = lines.filter((l) =>
        pids.includes(Number(l.split(" ", 1)[0])) && l.includes(" write(")
      );
      // The log reaches the copies (else this test could not fail): the container's child
      // (its first copy with a mount namespace) runs functions, which V8 logs.
      const child = lines.map((l) => /^\d+ +clone3?\(.*CLONE_NEWNS.*\) += (\d+)$/.exec(l)?.[1])
        .find((p) => p !== undefined);
      assert.ok(
        byCopy.some((l) => l.startsWith(`${child} `) && l.includes("function,first-execution")),
        `${label}: no V8 log line from the child ${child}:\n${byCopy.join("\n")}`,
      );
      const compiled = byCopy.filter((l) => COMPILED.test(l));
      assert.deepEqual(compiled, [], `${label}: compiled in a copy of micro`);
    }
  });
});
