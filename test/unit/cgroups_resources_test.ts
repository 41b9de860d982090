/**
 * The linux.resources fields beyond Docker's flags (hugepageLimits, network, rdma, unified,
 * swappiness, real-time, idle, burst, leaf and per-device weights): the files runc's fs (v1)
 * and fs2 (v2) write for each, what v2 leaves unapplied, and what is refused.
 */
import assert from "node:assert/strict";
import {
  type Resources,
  unifiedKeyProblem,
  v1Controllers,
  v1Writes,
  v2Controllers,
  v2Ignored,
  v2Writes,
} from "../../core/cgroups/resources.ts";
import type { CgroupLayout } from "../../core/cgroups/layout.ts";
import { configToSpec, parseConfig } from "../../core/oci/config.ts";
import { defaultConfig, features } from "../../core/oci/default.ts";
import { updateResources } from "../../core/oci/update.ts";
import { MicroError } from "../../core/errors.ts";
import { buildSpec, planRun } from "../../core/plan.ts";
import type { HostInfo } from "../../core/plugin.ts";
import { resolveProfile } from "../../core/profile.ts";
import { PLUGINS } from "../../plugins/mod.ts";
import { CGROUP_FACTS } from "./_host.ts";

const EXTRA: Resources = {
  cpu: { realtimePeriod: 1000000, realtimeRuntime: 10000, idle: 0, burst: 20000, quota: 50000 },
  memory: { swappiness: 10 },
  blockIO: {
    leafWeight: 300,
    weightDevice: [{ major: 8, minor: 0, weight: 200, leafWeight: 100 }, {
      major: 8,
      minor: 16,
      weight: 1000,
    }],
  },
  hugepageLimits: [{ pageSize: "2MB", limit: 4194304 }],
  network: { classID: 0x100001, priorities: [{ name: "lo", priority: 3 }] },
  rdma: { mlx5_0: { hcaHandles: 3, hcaObjects: 1000 }, mlx4_0: { hcaObjects: 10 } },
};

const show = (w: ReturnType<typeof v1Writes>) =>
  w.map((x) =>
    `${x.controller}/${x.file}=${x.value}` +
    (x.fallback ? ` | ${x.fallback.file}=${x.fallback.value}` : "") +
    (x.optional ? " (if present)" : "")
  );

Deno.test("v1Writes: runc's fs files for the fields beyond Docker's flags, in its order", () => {
  assert.deepEqual(show(v1Writes(EXTRA)), [
    // The real-time period before the runtime.
    "cpu/cpu.rt_period_us=1000000",
    "cpu/cpu.rt_runtime_us=10000",
    "cpu/cpu.cfs_quota_us=50000",
    "cpu/cpu.cfs_burst_us=20000",
    "cpu/cpu.idle=0",
    "memory/memory.swappiness=10",
    "blkio/blkio.leaf_weight=300",
    // BFQ's file where CFQ's is missing (kernels >= 5.0), as runc's detectWeightFilenames.
    "blkio/blkio.weight_device=8:0 200 | blkio.bfq.weight_device=8:0 200",
    "blkio/blkio.leaf_weight_device=8:0 100",
    "blkio/blkio.weight_device=8:16 1000 | blkio.bfq.weight_device=8:16 1000",
    "hugetlb/hugetlb.2MB.limit_in_bytes=4194304",
    "hugetlb/hugetlb.2MB.rsvd.limit_in_bytes=4194304 (if present)",
    `net_cls/net_cls.classid=${0x100001}`,
    "net_prio/net_prio.ifpriomap=lo 3",
    "rdma/rdma.max=mlx5_0 hca_handle=3 hca_object=1000",
    "rdma/rdma.max=mlx4_0 hca_object=10",
  ]);
  // swappiness -1 leaves the kernel's value (runc); idle 0 and burst 0 are written.
  assert.deepEqual(show(v1Writes({ memory: { swappiness: -1 } })), []);
  assert.deepEqual(show(v1Writes({ cpu: { burst: 0 } })), ["cpu/cpu.cfs_burst_us=0"]);
  // unified has no v1 file: refused before (plugins/cgroups.ts), never written here.
  assert.deepEqual(v1Writes({ unified: { "memory.high": "1" } }), []);
});

Deno.test("v2Writes: runc's fs2 files; unified last; per-device weights to BFQ else io.weight", () => {
  assert.deepEqual(
    show(v2Writes({ ...EXTRA, unified: { "memory.high": "50M", "pids.max": "7" } })),
    [
      // cpu.idle before the weight and cpu.max; the burst after cpu.max.
      "unified/cpu.idle=0",
      "unified/cpu.max=50000 100000",
      "unified/cpu.max.burst=20000",
      "unified/io.bfq.weight=8:0 200 | io.weight=8:0 1920",
      "unified/io.bfq.weight=8:16 1000 | io.weight=8:16 10000",
      "unified/hugetlb.2MB.max=4194304",
      "unified/hugetlb.2MB.rsvd.max=4194304 (if present)",
      "unified/rdma.max=mlx5_0 hca_handle=3 hca_object=1000",
      "unified/rdma.max=mlx4_0 hca_object=10",
      "unified/memory.high=50M",
      "unified/pids.max=7",
    ],
  );
  // A unified key overrides the field's write by coming after it.
  const w = show(v2Writes({ pids: { limit: 5 }, unified: { "pids.max": "9" } }));
  assert.deepEqual(w, ["unified/pids.max=5", "unified/pids.max=9"]);
});

Deno.test("v2Ignored: what runc's fs2 has no file for, each with its reason", () => {
  assert.deepEqual(v2Ignored(EXTRA), [
    "cpu.realtimeRuntime/realtimePeriod: cgroup v2 has no real-time bandwidth files",
    "memory.swappiness: cgroup v2 has no per-cgroup swappiness",
    "blockIO.leafWeight: cgroup v2 has no leaf weights",
    "network: net_cls and net_prio are cgroup v1 controllers (v2 has none)",
  ]);
  assert.deepEqual(v2Ignored({ memory: { swappiness: -1 }, cpu: { idle: 1, burst: 5 } }), []);
});

Deno.test("v1Controllers/v2Controllers: hugetlb, net_cls, net_prio, rdma, unified's own", () => {
  assert.deepEqual(v1Controllers(EXTRA), [
    "cpu",
    "memory",
    "blkio",
    "hugetlb",
    "net_cls",
    "net_prio",
    "rdma",
  ]);
  assert.deepEqual(v2Controllers(EXTRA), ["cpu", "memory", "io", "hugetlb", "rdma"]);
  assert.deepEqual(v1Controllers({ cpu: { idle: 0 } }), ["cpu"]);
  // cgroup.* files belong to no controller.
  assert.deepEqual(
    v2Controllers({ unified: { "memory.high": "1", "cgroup.max.depth": "2", "misc.max": "x" } }),
    ["memory", "misc"],
  );
});

Deno.test("unifiedKeyProblem: one file of the container's own cgroup, CONTROLLER.PARAMETER", () => {
  for (const ok of ["memory.high", "cpu.max.burst", "cgroup.max.depth", "hugetlb.2MB.max"]) {
    assert.equal(unifiedKeyProblem(ok), undefined, ok);
  }
  for (const bad of ["../memory.max", "a/memory.max", "..", ".", "/memory.max"]) {
    assert.match(unifiedKeyProblem(bad) ?? "", /no '\/', not '\.\.'/, bad);
  }
  for (const bad of ["memory", "memory.", ".max", "Memory.max", "memory.max\n", ""]) {
    assert.match(unifiedKeyProblem(bad) ?? "", /CONTROLLER\.PARAMETER/, JSON.stringify(bad));
  }
});

// ---------------------------------------------------------------------------------------------
// The plan on each cgroup layout

const V2: CgroupLayout = {
  mode: "v2",
  v1: {},
  v2: { mount: "/sys/fs/cgroup", controllers: ["cpuset", "cpu", "io", "memory", "pids"] },
  base: "",
  writable: true,
};
const HYBRID_ALL: CgroupLayout = {
  mode: "hybrid",
  v1: {
    cpu: "/sys/fs/cgroup/cpu",
    memory: "/sys/fs/cgroup/memory",
    devices: "/sys/fs/cgroup/devices",
    hugetlb: "/sys/fs/cgroup/hugetlb",
    net_cls: "/sys/fs/cgroup/net_cls,net_prio",
    net_prio: "/sys/fs/cgroup/net_cls,net_prio",
  },
  v2: { mount: "/sys/fs/cgroup/unified", controllers: [] },
  base: "",
  writable: true,
};

function host(cgroup: CgroupLayout): HostInfo {
  return {
    arch: "x86_64",
    uid: 0,
    gid: 0,
    id: "0123456789ab",
    stateDir: "/run/micro/0123456789ab",
    containerDir: "/var/lib/micro/containers/0123456789ab",
    hostView: [],
    devices: ["null"],
    passwd: "root:x:0:0:root:/root:/bin/sh\n",
    group: "root:x:0:\n",
    sourceKinds: {},
    image: "dir",
    files: {},
    capLastCap: 40,
    lsm: { apparmor: false, selinux: false, landlock: 0 },
    ...CGROUP_FACTS,
    cgroup,
  };
}

function plan(resources: Record<string, unknown>, cgroup: CgroupLayout) {
  const { profile } = resolveProfile([], { cgroups: { resources } }, PLUGINS);
  const input = { image: "/img", args: ["true"], terminal: false, stdin: false };
  const spec = buildSpec(input, profile, PLUGINS);
  const h = host(cgroup);
  const errors = PLUGINS.find((p) => p.name === "cgroups")!.check!(spec, h)
    .map((e) => e.line());
  return { errors, ops: errors.length ? [] : planRun(spec, h, PLUGINS) };
}

Deno.test("plan v1: the hierarchies only these limits need are created, written and joined", () => {
  const { errors, ops } = plan({
    hugepageLimits: [{ pageSize: "2MB", limit: 2097152 }],
    network: { classID: 7, priorities: [{ name: "lo", priority: 1 }] },
  }, HYBRID_ALL);
  assert.deepEqual(errors, []);
  const dir = (c: string) => `/sys/fs/cgroup/${c}/micro/0123456789ab`;
  const of = (kind: string) =>
    ops.filter((o) => o.kind === kind).map((o) => (o.args as { path: string }).path);
  for (const d of [dir("hugetlb"), dir("net_cls,net_prio")]) {
    assert.ok(of("cgroup-create").includes(d), d);
    assert.ok(of("cgroup-join").includes(d), d);
    assert.ok(of("cgroup-remove").includes(d), d);
  }
  const writes = ops.flatMap((o) =>
    o.kind === "cgroup-write" ? [`${o.args.path}=${o.args.value}${o.args.optional ? "?" : ""}`] : []
  );
  for (
    const want of [
      `${dir("hugetlb")}/hugetlb.2MB.limit_in_bytes=2097152`,
      `${dir("hugetlb")}/hugetlb.2MB.rsvd.limit_in_bytes=2097152?`,
      `${dir("net_cls,net_prio")}/net_cls.classid=7`,
      `${dir("net_cls,net_prio")}/net_prio.ifpriomap=lo 1`,
    ]
  ) assert.ok(writes.includes(want), `${want} in\n${writes.join("\n")}`);
});

Deno.test("check v1: an unmounted controller is an error naming it (runc: cannot set X limit)", () => {
  const { errors } = plan({
    hugepageLimits: [{ pageSize: "2MB", limit: 2097152 }],
    rdma: { mlx5_0: { hcaHandles: 1 } },
    network: { classID: 7 },
  }, { ...HYBRID_ALL, v1: { memory: "/sys/fs/cgroup/memory", devices: "/d" } });
  assert.deepEqual(errors, [
    "check: cgroups: --resources.hugepageLimits: the hugetlb controller is not mounted (cgroup v1)",
    "check: cgroups: --resources.network.classID: the net_cls controller is not mounted (cgroup v1)",
    "check: cgroups: --resources.rdma: the rdma controller is not mounted (cgroup v1)",
  ]);
});

Deno.test("check: unified is refused on v1 and hybrid; on v2 a key's controller must be there", () => {
  const onHybrid = plan({ unified: { "memory.high": "1M" } }, HYBRID_ALL).errors;
  assert.equal(onHybrid.length, 1);
  assert.match(onHybrid[0], /--resources\.unified: this host is cgroup hybrid: unified keys need/);
  const missing = plan({ unified: { "hugetlb.2MB.max": "0", "memory.high": "1M" } }, V2).errors;
  assert.deepEqual(missing, [
    "check: cgroups: --resources.unified.hugetlb.2MB.max: the hugetlb controller is not " +
    "available in this cgroup v2 tree (/sys/fs/cgroup/cgroup.controllers lists the host's " +
    "controllers)",
  ]);
  // A bad key never gets that far: the schema names it.
  assert.throws(
    () => plan({ unified: { "../cgroup.procs": "1" } }, V2),
    (e: Error) => /resources\.unified.*no '\/', not '\.\.'/.test(e.message),
  );
});

Deno.test("plan v2: unified keys' controllers are enabled; v1-only fields are skipped ops", () => {
  const { errors, ops } = plan({
    unified: { "memory.high": "64M" },
    memory: { swappiness: 5 },
    network: { classID: 1 },
    cpu: { idle: 1 },
  }, V2);
  assert.deepEqual(errors, []);
  const subtree = ops.flatMap((o) =>
    o.kind === "cgroup-write" && o.args.path.endsWith("subtree_control") ? [o.args.value] : []
  );
  assert.deepEqual(subtree, ["+cpu +memory", "+cpu +memory"]);
  const writes = ops.flatMap((o) => o.kind === "cgroup-write" ? [o.args.path] : []);
  assert.ok(writes.includes("/sys/fs/cgroup/micro/0123456789ab/memory.high"));
  assert.ok(writes.includes("/sys/fs/cgroup/micro/0123456789ab/cpu.idle"));
  const skipped = ops.flatMap((o) => o.kind === "skipped" ? [o.args.reason] : []);
  assert.deepEqual(skipped, [
    "resources.memory.swappiness: cgroup v2 has no per-cgroup swappiness: ignored (as runc)",
    "resources.network: net_cls and net_prio are cgroup v1 controllers (v2 has none): " +
    "ignored (as runc)",
  ]);
});

// ---------------------------------------------------------------------------------------------
// config.json, update, features

// deno-lint-ignore no-explicit-any
type Config = any;

function translate(edit: (c: Config) => void) {
  const c = defaultConfig(false) as Config;
  c.process.terminal = false;
  edit(c);
  return configToSpec(parseConfig(JSON.stringify(c)), "/b", "id1");
}

const line = (fn: () => unknown) => {
  try {
    fn();
  } catch (e) {
    if (e instanceof MicroError) return e.line();
    throw e;
  }
  return "";
};

Deno.test("config.json: every linux.resources field reaches the spec; bad ones are one line", () => {
  const { spec, warnings } = translate((c) => {
    c.linux.resources = {
      ...c.linux.resources,
      memory: { swappiness: 0, kernelTCP: 1 << 20 },
      cpu: { realtimeRuntime: 950, realtimePeriod: 1000, idle: 1, burst: 0 },
      blockIO: { leafWeight: 10, weightDevice: [{ major: 8, minor: 0, weight: 10 }] },
      hugepageLimits: [{ pageSize: "1GB", limit: 0 }],
      network: { classID: 5, priorities: [{ name: "eth0", priority: 2 }] },
      rdma: { mlx5_0: { hcaHandles: 1 } },
      unified: { "memory.oom.group": "1" },
    };
  });
  const r = spec.linux.resources!;
  assert.deepEqual(r.memory, { swappiness: 0 });
  assert.deepEqual(r.cpu, { realtimeRuntime: 950, realtimePeriod: 1000, idle: 1, burst: 0 });
  assert.deepEqual(r.blockIO?.weightDevice, [{ major: 8, minor: 0, weight: 10 }]);
  assert.deepEqual(r.hugepageLimits, [{ pageSize: "1GB", limit: 0 }]);
  assert.deepEqual(r.network, { classID: 5, priorities: [{ name: "eth0", priority: 2 }] });
  assert.deepEqual(r.rdma, { mlx5_0: { hcaHandles: 1 } });
  assert.deepEqual(r.unified, { "memory.oom.group": "1" });
  assert.deepEqual(warnings, [
    "config.json: linux.resources.memory.kernelTCP: kernel memory limits are deprecated and " +
    "ignored, as runc does",
  ]);
  // podman's and runc's empty defaults ask nothing.
  const empty = translate((c) => {
    c.linux.resources = { unified: {}, hugepageLimits: [], rdma: {} };
  }).spec.linux.resources!;
  assert.deepEqual(empty, {});
  const cases: [Record<string, unknown>, RegExp][] = [
    [
      { unified: { "../../x.y": "1" } },
      /linux\.resources\.unified\["\.\.\/\.\.\/x\.y"\]: invalid key "\.\.\/\.\.\/x\.y": must be a file name/,
    ],
    [{ unified: { "memory.high": 5 } }, /unified\["memory\.high"\]: expected a string/],
    [{ hugepageLimits: [{ pageSize: "2M", limit: 1 }] }, /pageSize.*expected a size like 2MB/],
    [{ memory: { swappiness: 101 } }, /memory\.swappiness/],
    [{ cpu: { idle: 2 } }, /cpu\.idle/],
    [{ network: { priorities: [{ name: "a/b", priority: 1 }] } }, /expected an interface name/],
    [{ blockIO: { weightDevice: [{ major: 8, minor: 0, weight: 5 }] } }, /weightDevice/],
  ];
  for (const [res, re] of cases) {
    const got = line(() => translate((c) => (c.linux.resources = res)));
    assert.match(got, re, JSON.stringify(res));
  }
});

Deno.test("update: takes the new fields and runc's flags for them; checks them first", () => {
  const r = updateResources(
    JSON.stringify({
      unified: { "memory.high": "1G" },
      hugepageLimits: null,
      cpu: { shares: null },
    }),
    { "--cpu-burst": "1000", "--cpu-idle": "1", "--cpu-rt-period": "100", "--cpu-rt-runtime": "5" },
  );
  assert.deepEqual(r, {
    unified: { "memory.high": "1G" },
    cpu: { burst: 1000, idle: 1, realtimePeriod: 100, realtimeRuntime: 5 },
  });
  assert.match(
    line(() => updateResources(JSON.stringify({ unified: { "a/b.c": "1" } }), {})),
    /update: resources\.unified\["a\/b\.c"\]: invalid key "a\/b\.c": must be a file name/,
  );
  assert.match(
    line(() => updateResources(JSON.stringify({ devices: [] }), {})),
    /resources\.devices cannot be changed/,
  );
});

Deno.test("features: rdma, as runc 1.1+ says it", () => {
  const f = features() as { linux: { cgroup: Record<string, boolean> } };
  assert.equal(f.linux.cgroup.rdma, true);
});
