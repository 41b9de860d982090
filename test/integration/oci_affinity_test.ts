/**
 * OCI process.execCPUAffinity (runc 1.2: for `exec`, `initial` set before the process joins
 * the container's cgroup, `final` right before its exec) and linux.memoryPolicy (runc 1.3:
 * set_mempolicy before the exec), read back from inside: /proc/self/status's
 * Cpus_allowed_list, the policy /proc/self/numa_maps shows for each mapping.
 */
import assert from "node:assert/strict";
import { microTest, ok, show, withTempDir } from "./_helpers.ts";
import { bundle, type Config, oci } from "./_oci.ts";

const uniq = () => `a${crypto.randomUUID().slice(0, 8)}`;

function onlineCpus(): number {
  try {
    const text = Deno.readTextFileSync("/sys/devices/system/cpu/online").trim();
    return text.split(",").reduce((n, r) => {
      const [a, b] = r.split("-").map(Number);
      return n + (b === undefined ? 1 : b - a + 1);
    }, 0);
  } catch {
    return 1;
  }
}

function hasNumaMaps(): boolean {
  try {
    Deno.statSync("/proc/self/numa_maps");
    return true;
  } catch {
    return false;
  }
}

/** A running `sleep 60` made from a bundle edited by `edit`; deleted after `fn`. */
async function running(
  dir: string,
  edit: (c: Config) => void,
  fn: (root: string, id: string) => Promise<void>,
) {
  const root = `${dir}/state`;
  const b = await bundle(dir, (c) => {
    c.process.args = ["sleep", "60"];
    edit(c);
  });
  const id = uniq();
  try {
    ok(await oci(root, ["create", "-b", b, id]));
    ok(await oci(root, ["start", id]));
    await fn(root, id);
  } finally {
    await oci(root, ["delete", "--force", id]);
  }
}

const CPUS = "grep Cpus_allowed_list /proc/self/status /proc/1/status";

microTest(
  "oci exec: config.json's execCPUAffinity.final is the exec'd process's, not the first process's",
  async () => {
    await withTempDir((dir) =>
      running(
        dir,
        (c) => (c.process.execCPUAffinity = { initial: "0", final: "1" }),
        async (root, id) => {
          const r = await oci(root, ["exec", id, "sh", "-c", CPUS]);
          assert.match(ok(r), /^\/proc\/self\/status:Cpus_allowed_list:\t1$/m, show(r));
          // The spec: not applicable to the container's first process (runc too).
          assert.doesNotMatch(r.stdout, /^\/proc\/1\/status:Cpus_allowed_list:\t1$/m, show(r));
        },
      )
    );
  },
  { ignore: onlineCpus() < 2 ? "execCPUAffinity tests need two CPUs" : undefined },
);

microTest(
  "oci exec --process: execCPUAffinity initial alone stays; a CPU that is not online is one error line",
  async () => {
    await withTempDir((dir) =>
      running(dir, () => {}, async (root, id) => {
        const proc = (affinity: Config) => {
          const p = `${dir}/p-${uniq()}.json`;
          Deno.writeTextFileSync(
            p,
            JSON.stringify({
              args: ["grep", "Cpus_allowed_list", "/proc/self/status"],
              cwd: "/",
              user: { uid: 0, gid: 0 },
              execCPUAffinity: affinity,
            }),
          );
          return p;
        };
        const initial = await oci(root, ["exec", "--process", proc({ initial: "1" }), id]);
        assert.equal(ok(initial), "Cpus_allowed_list:\t1\n", show(initial));
        const both = await oci(root, ["exec", "--process", proc({ initial: "1", final: "0" }), id]);
        assert.equal(ok(both), "Cpus_allowed_list:\t0\n", show(both));
        const final = await oci(root, ["exec", "--process", proc({ final: "4000" }), id]);
        assert.equal(final.code, 125, show(final));
        assert.match(
          final.stderr,
          /^micro: exec: process: cpu-affinity cpus=4000: EINVAL \(none of the CPUs is online/,
          show(final),
        );
        assert.equal(final.stderr.trim().split("\n").length, 1, show(final));
        const first = await oci(root, ["exec", "--process", proc({ initial: "4000" }), id]);
        assert.equal(first.code, 125, show(first));
        assert.match(
          first.stderr,
          /attach: process: sched_setaffinity pid=\d+ cpus=4000: EINVAL/,
          show(first),
        );
        const bad = await oci(root, ["exec", "--process", proc({ final: "1-0" }), id]);
        assert.equal(bad.code, 125, show(bad));
        assert.match(bad.stderr, /execCPUAffinity\.final: "1-0": the range ends before it starts/);
        // The container is still there and running.
        assert.match(ok(await oci(root, ["state", id])), /"status": ?"running"/);
      })
    );
  },
  { ignore: onlineCpus() < 2 ? "execCPUAffinity tests need two CPUs" : undefined },
);

const POLICY = "head -1 /proc/self/numa_maps";

async function runPolicy(dir: string, policy: Config, user = 0) {
  const b = await bundle(dir, (c) => {
    c.process.args = ["sh", "-c", POLICY];
    c.process.user = { uid: user, gid: user };
    c.linux.memoryPolicy = policy;
  });
  return await oci(`${dir}/state`, ["run", "-b", b, uniq()]);
}

microTest(
  "oci: linux.memoryPolicy is the process's memory policy (modes, flags), as root and as a user",
  async () => {
    const cases: [Config, number, RegExp][] = [
      [{ mode: "MPOL_BIND", nodes: "0" }, 0, / bind:0 /],
      [{ mode: "MPOL_BIND", nodes: "0", flags: ["MPOL_F_STATIC_NODES"] }, 1000, / bind=static:0 /],
      [{ mode: "MPOL_INTERLEAVE", nodes: "0" }, 0, / interleave:0 /],
      [
        { mode: "MPOL_PREFERRED", nodes: "0", flags: ["MPOL_F_RELATIVE_NODES"] },
        0,
        / prefer=relative:0 /,
      ],
      [{ mode: "MPOL_LOCAL" }, 0, / local /],
      [{ mode: "MPOL_DEFAULT" }, 0, / default /],
    ];
    for (const [policy, user, re] of cases) {
      await withTempDir(async (dir) => {
        const r = await runPolicy(dir, policy, user);
        assert.match(ok(r), re, `${JSON.stringify(policy)}: ${show(r)}`);
      });
    }
  },
  { ignore: hasNumaMaps() ? undefined : "this kernel has no /proc/self/numa_maps (CONFIG_NUMA)" },
);

microTest(
  "oci: a memory policy on a node that does not exist fails create with one line; exec gets the policy",
  async () => {
    await withTempDir(async (dir) => {
      // One past the highest online node.
      const online = Deno.readTextFileSync("/sys/devices/system/node/online").trim();
      const missing = Math.max(...online.split(/[,-]/).map(Number)) + 1;
      const r = await runPolicy(dir, { mode: "MPOL_BIND", nodes: String(missing) });
      assert.equal(r.code, 125, show(r));
      assert.match(
        r.stderr,
        new RegExp(
          `^micro: credentials: process: mempolicy mode=MPOL_BIND flags=0x0 nodes=${missing}: EINVAL \\(.*not online`,
        ),
        show(r),
      );
      assert.equal(r.stderr.trim().split("\n").length, 1, show(r));
      assert.deepEqual([...Deno.readDirSync(`${dir}/state`)].map((e) => e.name), []);
    });
    await withTempDir((dir) =>
      running(
        dir,
        (c) => (c.linux.memoryPolicy = { mode: "MPOL_INTERLEAVE", nodes: "0" }),
        async (root, id) => {
          const r = await oci(root, ["exec", id, "sh", "-c", POLICY]);
          assert.match(ok(r), / interleave:0 /, show(r));
        },
      )
    );
  },
  { ignore: hasNumaMaps() ? undefined : "this kernel has no /proc/self/numa_maps (CONFIG_NUMA)" },
);
