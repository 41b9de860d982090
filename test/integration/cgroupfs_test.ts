/**
 * /sys/fs/cgroup inside the container, as programs that size themselves read it (the JVM,
 * Go, .NET): the container's own cgroup, read-only, showing its limits and nothing of the
 * host's other cgroups. v1 on the dev hosts, v2 in the guest (`make test-vm`).
 */
import assert from "node:assert/strict";
import { microTest, ok, sh, show, withTempDir } from "./_helpers.ts";

/** The host's layout: v2 when /sys/fs/cgroup itself is cgroup2, else v1 controllers. */
const MOUNTINFO = Deno.readTextFileSync("/proc/self/mountinfo");
const V2 = MOUNTINFO.split("\n").some((l) => / \/sys\/fs\/cgroup .* - cgroup2 /.test(l));
const V1_MEMORY = MOUNTINFO.split("\n").some((l) =>
  / \/sys\/fs\/cgroup\/memory .* - cgroup cgroup \S*memory/.test(l)
);
const NO_LAYOUT = V2 || V1_MEMORY ? undefined : "neither cgroup v2 nor a v1 memory hierarchy";
const opts = { ignore: NO_LAYOUT };

const LIMITS = ["--rm", "-m", "64m", "--pids-limit", "50"];

microTest("/sys/fs/cgroup shows the container's own limits (-m, --pids-limit)", async () => {
  const files = V2
    ? "cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/pids.max"
    : "cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids/pids.max";
  for (const profile of ["default", "hardened"]) {
    const out = ok(await sh(files, [...LIMITS, "--profile", profile]));
    assert.equal(out, "67108864\n50\n", `${profile}: ${out}`);
  }
}, opts);

microTest("/sys/fs/cgroup holds no cgroup but the container's, and cannot be written", async () => {
  const root = V2 ? "/sys/fs/cgroup" : "/sys/fs/cgroup/memory";
  const script = [
    // no other cgroup below the container's: no directory at all
    `find ${root} -mindepth 1 -type d | wc -l`,
    // every process listed is one of the container's (read by the shell itself: no
    // helper process that is gone by the time it is looked for)
    `n=0; while read p; do n=$((n + 1)); [ -d /proc/$p ] || echo "foreign $p"; done ` +
    `< ${root}/cgroup.procs; echo "procs $n"`,
    V2
      ? "ls /sys/fs/cgroup | grep -c '^cgroup.controllers$'"
      : "ls /sys/fs/cgroup | tr '\\n' ' '; echo",
    `mkdir ${root}/x 2>/dev/null || echo mkdir-refused`,
    `echo 1 > ${
      V2 ? `${root}/pids.max` : `${root}/memory.limit_in_bytes`
    } 2>/dev/null || echo write-refused`,
    `awk '$5 ~ "^/sys/fs/cgroup" { print $5, substr($6, 1, 2) }' /proc/self/mountinfo`,
  ].join("; ");
  const out = ok(await sh(script, LIMITS)).trim().split("\n");
  assert.equal(out[0], "0", out.join("\n"));
  assert.equal(out[1], "procs 1", out.join("\n"));
  if (V2) assert.equal(out[2], "1");
  else {
    // Only the hierarchies the container has a cgroup in: not name=systemd, net_cls, ...
    for (const h of out[2].trim().split(" ")) {
      assert.ok(
        ["blkio", "cpu", "cpuacct", "cpuset", "devices", "freezer", "memory", "pids"].includes(h) ||
          /^cpu,cpuacct$|^cpuacct,cpu$/.test(h),
        `unexpected ${h}`,
      );
    }
  }
  assert.deepEqual(out.slice(3, 5), ["mkdir-refused", "write-refused"]);
  const mounts = out.slice(5);
  assert.ok(mounts.length >= 1 && mounts.every((m) => m.endsWith(" ro")), mounts.join("\n"));
}, opts);

microTest(
  "--network host: the host's /sys/fs/cgroup stays hidden under the container's",
  async () => {
    const root = V2 ? "/sys/fs/cgroup" : "/sys/fs/cgroup/memory";
    const out = ok(
      await sh(
        `find ${root} -mindepth 1 -type d | wc -l; cat ${root}/${
          V2 ? "memory.max" : "memory.limit_in_bytes"
        }`,
        [
          ...LIMITS,
          "--network",
          "host",
        ],
      ),
    );
    assert.equal(out, "0\n67108864\n");
  },
  opts,
);

microTest("cgroups.mount: none leaves /sys/fs/cgroup as sysfs has it (empty)", async () => {
  await withTempDir(async (dir) => {
    Deno.writeTextFileSync(`${dir}/p.yaml`, "extends: default\ncgroups:\n  mount: none\n");
    const r = await sh("ls -A /sys/fs/cgroup | wc -l", [...LIMITS, "--profile", `${dir}/p.yaml`]);
    assert.equal(r.stdout, "0\n", show(r));
  });
}, opts);
