/**
 * OCI process.scheduler and process.ioPriority: set in the container's process before it
 * drops root (as runc), read back from inside (/proc/self/stat's nice, rt_priority and
 * policy; busybox's ionice).
 */
import assert from "node:assert/strict";
import { microTest, run, show, withTempDir } from "./_helpers.ts";
import { bundle, type Config } from "./_oci.ts";

/** /proc/self/stat's fields after the command name: nice (19), rt_priority (40), policy (41). */
const STAT = `s=$(cat /proc/self/stat); s=\${s##*) }; set -- $s; ` +
  `shift 16; n=$1; shift 21; echo "nice=$n rt=$1 policy=$2"; ionice`;

async function runWith(dir: string, edit: (c: Config) => void) {
  const b = await bundle(dir, (c) => {
    c.process.args = ["sh", "-c", STAT];
    edit(c);
  });
  return await run(["--root", `${dir}/state`, "run", "-b", b, `sched-${crypto.randomUUID()}`]);
}

/** cgroup v1 with real-time group scheduling: a new cpu cgroup has no real-time time. */
function rtGroupSched(): boolean {
  try {
    Deno.statSync("/sys/fs/cgroup/cpu/cpu.rt_runtime_us");
    return true;
  } catch {
    return false;
  }
}

microTest(
  "oci: process.scheduler and ioPriority reach the process, as root and as a user",
  async () => {
    await withTempDir(async (dir) => {
      Deno.mkdirSync(`${dir}/a`);
      const a = await runWith(`${dir}/a`, (c) => {
        c.process.scheduler = { policy: "SCHED_BATCH", nice: 7 };
        c.process.ioPriority = { class: "IOPRIO_CLASS_IDLE", priority: 7 };
      });
      assert.equal(a.code, 0, show(a));
      assert.match(a.stdout, /^nice=7 rt=0 policy=3$/m, show(a));
      assert.match(a.stdout, /^idle$/m, show(a));
      // Set while still root, kept once the process is uid 1000.
      Deno.mkdirSync(`${dir}/b`);
      const b = await runWith(`${dir}/b`, (c) => {
        c.process.user = { uid: 1000, gid: 1000 };
        c.process.scheduler = { policy: "SCHED_IDLE" };
        c.process.ioPriority = { class: "IOPRIO_CLASS_BE", priority: 3 };
      });
      assert.equal(b.code, 0, show(b));
      assert.match(b.stdout, /^nice=0 rt=0 policy=5$/m, show(b));
      assert.match(b.stdout, /^best-effort: prio 3$/m, show(b));
    });
  },
);

microTest(
  "oci: a real-time policy runs where the cgroup gives real-time time, else one error line",
  async () => {
    await withTempDir(async (dir) => {
      const r = await runWith(dir, (c) => {
        c.process.scheduler = { policy: "SCHED_FIFO", priority: 10 };
      });
      if (rtGroupSched()) {
        assert.equal(r.code, 125, show(r));
        assert.match(r.stderr, /sched-setattr policy=1 nice=0 priority=10: EPERM/, show(r));
        assert.match(r.stderr, /cpu\.rt_runtime_us/, show(r));
        assert.equal(r.stderr.trim().split("\n").length, 1, show(r));
      } else {
        assert.equal(r.code, 0, show(r));
        assert.match(r.stdout, /^nice=0 rt=10 policy=1$/m, show(r));
      }
    });
  },
);
