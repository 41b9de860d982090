/**
 * MICRO_TRACE=1: each phase's milliseconds on stderr when micro exits (core/trace.ts).
 */
import assert from "node:assert/strict";
import { IMAGE, microTest, run, show } from "./_helpers.ts";

/**
 * Pure cgroup v2 (/sys/fs/cgroup is cgroup2): the child is born in its cgroup (clone3), and
 * there is no cgroup.procs write to trace.
 */
const V2 = Deno.readTextFileSync("/proc/self/mountinfo").split("\n")
  .some((l) => / \/sys\/fs\/cgroup .* - cgroup2 /.test(l));

const TRACE = /^micro: trace: (.+?)(?: ×(\d+))?\s+(\d+\.\d\d) ms$/;

function phases(stderr: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of stderr.split("\n")) {
    const m = TRACE.exec(line);
    if (m) out.set(m[1], (out.get(m[1]) ?? 0) + Number(m[3]));
  }
  return out;
}

microTest("trace: MICRO_TRACE=1 prints every phase of a run, adding up to the total", async () => {
  for (const profile of ["default", "hardened"]) {
    const r = await run(["run", "--rm", "--profile", profile, IMAGE, "/bin/true"], {
      env: { MICRO_TRACE: "1" },
    });
    assert.equal(r.code, 0, show(r));
    const p = phases(r.stderr);
    for (
      const name of [
        "deno start to main",
        "load run command",
        "signals",
        "state gc",
        "load run modules",
        "parse args",
        "profile",
        "checks",
        "plan",
        "libc bind",
        "state write",
        ...(V2 ? [] : ["first cgroup.procs write"]),
        "child set-up until exec",
        "wait (command runs)",
        "engine cleanup",
        "exit",
        "total",
      ]
    ) {
      assert.ok(p.has(name), `${profile}: no "${name}" in:\n${r.stderr}`);
    }
    // Both profiles' child is a vfork child where the stub exists (core/engine/vfork.ts): on
    // cgroup v2 born in its cgroup by the stub's clone3; hardened's id maps written by a
    // thread of micro's while micro's own sleeps.
    const vforked = Deno.build.arch === "x86_64";
    const clone = vforked ? "vfork (child set-up until exec), watchdog" : "clone (child, watchdog)";
    assert.ok(p.has(clone), `${profile}: no "${clone}" in:\n${r.stderr}`);
    // Before anything exists (cgroups, container dir), then with the child's pid.
    const writes = r.stderr.split("\n").map((l) => TRACE.exec(l))
      .filter((m) => m?.[1] === "state write").reduce((n, m) => n + Number(m![2] ?? 1), 0);
    assert.equal(writes, 2, `${profile}: state writes:\n${r.stderr}`);
    // A built-in profile's seccomp program was compiled at build time.
    assert.ok(!p.has("seccomp compile"), `${profile}: compiled at run time:\n${r.stderr}`);
    if (V2) assert.ok(!p.has("first cgroup.procs write"), `${profile}:\n${r.stderr}`);
    // Its own line where the image is idmapped for a user namespace (hardened, as root).
    assert.equal(p.has("idmapped image"), profile === "hardened", `${profile}:\n${r.stderr}`);
    let sum = 0;
    for (const [name, ms] of p) if (name !== "total") sum += ms;
    assert.ok(
      Math.abs(sum - p.get("total")!) < 1,
      `${profile}: phases do not add up:\n${r.stderr}`,
    );
  }
});

microTest(
  "trace: off without MICRO_TRACE=1; other capabilities compile seccomp at run time",
  async () => {
    const r = await run(["run", "--rm", IMAGE, "/bin/true"], { env: { MICRO_TRACE: "0" } });
    assert.equal(r.code, 0, show(r));
    assert.doesNotMatch(r.stderr, /trace/, show(r));
    // Other capabilities than the profile's: a program the build did not make.
    const capAdd = await run(["run", "--rm", "--cap-add", "SYS_PTRACE", IMAGE, "/bin/true"], {
      env: { MICRO_TRACE: "1" },
    });
    assert.equal(capAdd.code, 0, show(capAdd));
    assert.ok(phases(capAdd.stderr).has("seccomp compile"), show(capAdd));
  },
);

microTest(
  "trace: a container that runs on has micro's heap compacted once; /bin/true and --pid host not",
  async () => {
    const long = await run(["run", "--rm", IMAGE, "/bin/sleep", "1"], {
      env: { MICRO_TRACE: "1" },
    });
    assert.equal(long.code, 0, show(long));
    assert.equal(phases(long.stderr).has("heap compaction (running)"), true, show(long));
    const short = await run(["run", "--rm", IMAGE, "/bin/true"], { env: { MICRO_TRACE: "1" } });
    assert.equal(short.code, 0, show(short));
    assert.doesNotMatch(short.stderr, /compaction|malloc trim/, show(short));
    // A forked watchdog shares micro's pages: a compaction would copy them.
    const host = await run(["run", "--rm", "--pid", "host", IMAGE, "/bin/sleep", "1"], {
      env: { MICRO_TRACE: "1" },
    });
    assert.equal(host.code, 0, show(host));
    assert.doesNotMatch(host.stderr, /compaction|malloc trim/, show(host));
  },
);
