/**
 * An OCI bundle's config.json: read with the project's rules, translated field by field.
 */
import assert from "node:assert/strict";
import {
  cgroupOf,
  CONFIG_CAP,
  CONFIG_DEPTH,
  configToSpec,
  parseConfig,
  readConfig,
} from "../../core/oci/config.ts";
import { defaultConfig } from "../../core/oci/default.ts";
import { checkId } from "../../core/oci/state.ts";
import { openLibc } from "../../core/sys/libc.ts";
import { MicroError } from "../../core/errors.ts";
import { bitmask, parseCpuList, schedAttr } from "../../core/sched.ts";
import { withAffinity } from "../../core/oci/exec.ts";
import { op } from "../../core/ops.ts";
import { processOps } from "../../core/process.ts";
import type { HostInfo } from "../../core/plugin.ts";
import { CGROUP_FACTS } from "./_host.ts";

const HOST: HostInfo = {
  arch: "x86_64",
  uid: 0,
  gid: 0,
  id: "id1",
  stateDir: "/run/micro-oci/id1",
  containerDir: "/run/micro-oci/id1/c",
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
};

// deno-lint-ignore no-explicit-any
type Config = Record<string, any>;

function translate(edit: (c: Config) => void = () => {}) {
  const c = defaultConfig(false) as Config;
  c.process.terminal = false;
  edit(c);
  return configToSpec(parseConfig(JSON.stringify(c)), "/b", "id1");
}

function throwsLine(fn: () => unknown, re: RegExp): void {
  assert.throws(fn, (e) => e instanceof MicroError && re.test(e.line()));
}

Deno.test("oci config: malformed JSON, a non-object and deep nesting are refused", () => {
  throwsLine(() => parseConfig("{"), /config\.json: the file: not valid JSON/);
  throwsLine(() => parseConfig("[1]"), /not an object/);
  const deep = "[".repeat(CONFIG_DEPTH + 5) + "]".repeat(CONFIG_DEPTH + 5);
  throwsLine(() => parseConfig(`{"a":${deep}}`), /nested deeper than 32 levels/);
  // A depth that would overflow a recursive walker is still one error line.
  const huge = "[".repeat(100_000) + "]".repeat(100_000);
  assert.throws(() => parseConfig(`{"a":${huge}}`), MicroError);
});

Deno.test("oci config: config.json must be a regular file under the cap", () => {
  const dir = Deno.makeTempDirSync();
  try {
    const sys = openLibc();
    throwsLine(() => readConfig(sys, dir), /cannot read .*config\.json: no such file/);
    Deno.writeTextFileSync(`${dir}/config.json`, " ".repeat(CONFIG_CAP + 1));
    throwsLine(() => readConfig(sys, dir), /over the 4 MiB limit/);
    Deno.removeSync(`${dir}/config.json`);
    Deno.mkdirSync(`${dir}/config.json`);
    throwsLine(() => readConfig(sys, dir), /a directory, not a regular file/);
    Deno.removeSync(`${dir}/config.json`);
    Deno.writeTextFileSync(`${dir}/config.json`, JSON.stringify(defaultConfig(false)));
    assert.equal(readConfig(sys, dir).json.ociVersion, "1.2.0");
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("oci config: unknown fields are errors naming their path", () => {
  throwsLine(() => translate((c) => (c.bogus = 1)), /config\.bogus: unknown field/);
  throwsLine(() => translate((c) => (c.process.user.nme = 1)), /process\.user\.nme: unknown/);
  throwsLine(() => translate((c) => (c.linux.sekcomp = {})), /linux\.sekcomp: unknown field/);
  throwsLine(
    () => translate((c) => (c.linux.resources.memory = { limit: "1g" })),
    /linux\.resources\.memory\.limit/,
  );
});

Deno.test("oci config: runc's default spec becomes micro's spec", () => {
  const { spec, warnings, joins, cgroup } = translate();
  assert.deepEqual(spec.process.args, ["sh"]);
  assert.equal(spec.process.userSpec, "0:0");
  assert.equal(spec.process.noNewPrivileges, true);
  assert.deepEqual(spec.process.rlimits, [{ type: "RLIMIT_NOFILE", soft: 1024, hard: 1024 }]);
  assert.deepEqual(spec.process.capabilities?.bounding, [
    "CAP_AUDIT_WRITE",
    "CAP_KILL",
    "CAP_NET_BIND_SERVICE",
  ]);
  assert.equal(spec.root.path, "/b/rootfs");
  assert.equal(spec.root.readonly, true);
  assert.equal(spec.hostname, "micro");
  assert.deepEqual(spec.mounts.map((m) => `${m.type}:${m.destination}`), [
    "proc:/proc",
    "tmpfs:/dev",
    "devpts:/dev/pts",
    "tmpfs:/dev/shm",
    "mqueue:/dev/mqueue",
    "sysfs:/sys",
  ]);
  // The cgroup mount becomes the cgroups plugin's read-only /sys/fs/cgroup.
  assert.equal(spec.micro.cgroup?.mount, "ro");
  assert.deepEqual(spec.micro.plugins, [
    "mount",
    "pid",
    "uts",
    "ipc",
    "net",
    "cgroupns",
    "cgroups",
    "caps",
  ]);
  assert.deepEqual(joins, []);
  assert.deepEqual(cgroup, { parent: "micro-oci", name: "id1", own: true });
  // relatime on the cgroup mount is dropped with it; nothing else is unapplied.
  assert.deepEqual(warnings, []);
});

Deno.test("oci config: namespace paths join what one thread may enter; others are refused", () => {
  const { spec, joins } = translate((c) => {
    c.linux.namespaces = c.linux.namespaces.map((n: Config) =>
      n.type === "network" ? { type: "network", path: "/run/netns/x" } : n
    );
  });
  assert.deepEqual(joins, [{ type: "network", path: "/run/netns/x" }]);
  assert.ok(!spec.micro.plugins.includes("net"));
  throwsLine(
    () =>
      translate((c) => {
        c.linux.namespaces = c.linux.namespaces.map((n: Config) =>
          n.type === "mount" ? { type: "mount", path: "/proc/1/ns/mnt" } : n
        );
      }),
    /joining a mount namespace by path is not supported/,
  );
  throwsLine(
    () => translate((c) => (c.linux.timeOffsets = { boottime: { secs: 1 } })),
    /linux\.timeOffsets: set without a time namespace/,
  );
  throwsLine(
    () => translate((c) => c.linux.namespaces.push({ type: "time", path: "/proc/1/ns/time" })),
    /joining a time namespace by path is not supported/,
  );
  throwsLine(
    () => translate((c) => (c.linux.namespaces = [{ type: "mount" }])),
    /hostname: set without a uts namespace/,
  );
});

Deno.test("oci config: what micro cannot honour is an error (MUST) or a warning (SHOULD)", () => {
  throwsLine(
    () => translate((c) => (c.linux.intelRdt = { closID: "x" })),
    /linux\.intelRdt: (this kernel has no resctrl|resctrl groups are not applied)/,
  );
  throwsLine(() => translate((c) => (c.hooks = { prestart: [{ path: "x" }] })), /absolute path/);
  throwsLine(
    () => translate((c) => (c.linux.resources.hugepages = [])),
    /linux\.resources\.hugepages: not a field of the runtime spec's linux\.resources/,
  );
  throwsLine(
    () => translate((c) => c.mounts.push({ destination: "/x", type: "nfs", source: "h:/x" })),
    /"nfs" is not supported/,
  );
  const { warnings, spec } = translate((c) => {
    c.mounts.push({ destination: "/data", source: "data", options: ["rbind", "rslave", "sync"] });
    // runc: "Kernel memory settings are ignored and will be removed".
    c.linux.resources.memory = { limit: 1 << 26, kernel: 1 << 24 };
  });
  assert.ok(
    warnings.some((w) => /memory\.kernel: kernel memory limits are deprecated and ignored/.test(w)),
    warnings.join("\n"),
  );
  assert.equal(warnings.length, 2, warnings.join("\n"));
  assert.ok(
    warnings.some((w) => /mounts\[\d+\] \(\/data\): "sync" is the file system.s option/.test(w)),
  );
  const data = spec.mounts.find((m) => m.destination === "/data")!;
  assert.equal(data.type, "bind");
  assert.equal(data.source, "/b/data");
  assert.deepEqual(data.options, ["rbind", "rslave", "sync"]);
  assert.deepEqual(spec.linux.resources?.memory, { limit: 1 << 26 });
});

Deno.test("oci config: cgroupsPath is a parent and a leaf; systemd's form is refused", () => {
  assert.deepEqual(cgroupOf("/machine/abc", "id"), { parent: "machine", name: "abc" });
  assert.deepEqual(cgroupOf("a/b/c", "id"), { parent: "a/b", name: "c" });
  assert.deepEqual(cgroupOf("/abc", "id"), { parent: "micro-oci", name: "abc", own: true });
  throwsLine(() => cgroupOf("system.slice:libpod:abc", "id"), /systemd cgroup path/);
  throwsLine(() => cgroupOf("/a/../b", "id"), /not a cgroup path/);
});

Deno.test("oci config: domainname is the uts namespace's kernel.domainname, via sysctl", () => {
  const t = translate((c) => {
    c.domainname = "example.org";
    c.linux.sysctl = { "kernel.domainname": "other", "kernel.shmmax": "1" };
  });
  assert.deepEqual(t.spec.linux.sysctl, {
    "kernel.domainname": "example.org",
    "kernel.shmmax": "1",
  });
  assert.ok(t.spec.micro.plugins.includes("sysctl"));
  throwsLine(
    () =>
      translate((c) => {
        c.domainname = "x";
        delete c.hostname;
        c.linux.namespaces = [{ type: "mount" }];
      }),
    /domainname: set without a uts namespace/,
  );
});

Deno.test("oci config: umask and personality reach the process (LINUX32 is 0x8)", () => {
  const { spec } = translate((c) => {
    c.process.user.umask = 0o077;
    c.linux.personality = { domain: "LINUX32" };
  });
  assert.equal(spec.process.umask, 0o077);
  assert.equal(spec.process.personality, 8);
  assert.equal(
    translate((c) => (c.linux.personality = { domain: "LINUX" })).spec.process.personality,
    0,
  );
  throwsLine(
    () => translate((c) => (c.linux.personality = { domain: "SVR4" })),
    /linux\.personality\.domain: "SVR4"/,
  );
  throwsLine(
    () => translate((c) => (c.linux.personality = { domain: "LINUX", flags: ["x"] })),
    /linux\.personality\.flags: not supported/,
  );
});

Deno.test("oci config: process.scheduler and process.ioPriority become sched_setattr and ioprio_set ops", () => {
  const spec = translate((c) => {
    c.process.scheduler = {
      policy: "SCHED_DEADLINE",
      flags: ["SCHED_FLAG_RESET_ON_FORK", "SCHED_FLAG_DL_OVERRUN"],
      runtime: 10_000_000,
      deadline: 30_000_000,
      period: 30_000_000,
    };
    c.process.ioPriority = { class: "IOPRIO_CLASS_IDLE", priority: 7 };
  }).spec;
  assert.deepEqual(spec.process.scheduler, {
    policy: 6,
    flags: 0x5,
    nice: 0,
    priority: 0,
    runtime: 10_000_000,
    deadline: 30_000_000,
    period: 30_000_000,
  });
  assert.deepEqual(spec.process.ioPriority, { class: 3, level: 7 });
  // struct sched_attr (SCHED_ATTR_SIZE_VER0): size, policy, flags, nice, priority, times.
  const v = new DataView(schedAttr(spec.process.scheduler!).buffer);
  assert.equal(v.byteLength, 48);
  assert.deepEqual(
    [v.getUint32(0, true), v.getUint32(4, true), Number(v.getBigUint64(8, true))],
    [48, 6, 5],
  );
  assert.equal(Number(v.getBigUint64(40, true)), 30_000_000);
  const batch = translate((c) => (c.process.scheduler = { policy: "SCHED_BATCH", nice: -5 }));
  assert.equal(
    new DataView(schedAttr(batch.spec.process.scheduler!).buffer).getInt32(16, true),
    -5,
  );
  for (
    const [edit, re] of [
      [(c: Config) => (c.process.scheduler = {}), /scheduler\.policy: "" is not a scheduling/],
      [
        (c: Config) => (c.process.scheduler = { policy: "SCHED_OTHER", priority: 5 }),
        /scheduler\.priority: a priority is for SCHED_FIFO and SCHED_RR, not SCHED_OTHER/,
      ],
      [(c: Config) => (c.process.scheduler = { policy: "SCHED_RR", nice: 20 }), /nice/],
      [
        (c: Config) => (c.process.scheduler = { policy: "SCHED_RR", flags: ["NOPE"] }),
        /scheduler\.flags\[0\]: "NOPE"/,
      ],
      [
        (
          c: Config,
        ) => (c.process.scheduler = {
          policy: "SCHED_OTHER",
          flags: ["SCHED_FLAG_UTIL_CLAMP_MIN"],
        }),
        /scheduler\.flags\[0\]: "SCHED_FLAG_UTIL_CLAMP_MIN" needs clamp values/,
      ],
      [
        (c: Config) => (c.process.scheduler = { policy: "SCHED_FIFO", priority: 1, period: 5 }),
        /scheduler\.period: for SCHED_DEADLINE only, not SCHED_FIFO/,
      ],
      [(c: Config) => (c.process.ioPriority = { class: "IDLE" }), /ioPriority\.class: "IDLE"/],
      [(c: Config) => (c.process.ioPriority = { class: "IOPRIO_CLASS_BE", x: 1 }), /ioPriority/],
    ] as const
  ) throwsLine(() => translate(edit), re);
});

Deno.test("oci config: a time namespace with linux.timeOffsets: unshared and written by the child", () => {
  const t = translate((c) => {
    c.linux.namespaces.push({ type: "time" });
    c.linux.timeOffsets = { monotonic: { secs: -5, nanosecs: 7 }, boottime: { secs: 86400 } };
  });
  assert.deepEqual(t.spec.linux.timeOffsets, {
    monotonic: { secs: -5, nanosecs: 7 },
    boottime: { secs: 86400, nanosecs: 0 },
  });
  assert.ok(t.spec.micro.plugins?.includes("timens"), String(t.spec.micro.plugins));
  const bad = [
    [{ realtime: { secs: 1 } }, /linux\.timeOffsets\.realtime: unknown field/],
    [{ boottime: { secs: 1.5 } }, /boottime\.secs: expected an integer/],
    [{ boottime: { nanosecs: 1e9 } }, /boottime\.nanosecs/],
  ] as const;
  for (const [offsets, re] of bad) {
    throwsLine(() =>
      translate((c) => {
        c.linux.namespaces.push({ type: "time" });
        c.linux.timeOffsets = offsets;
      }), re);
  }
});

Deno.test("oci config: idmapped binds carry their maps as uid_map text; others are refused", () => {
  const map = [{ containerID: 0, hostID: 1000, size: 10 }, {
    containerID: 10,
    hostID: 5000,
    size: 1,
  }];
  const t = translate((c) =>
    c.mounts.push({
      destination: "/m",
      type: "bind",
      source: "/srv",
      options: ["rbind", "ridmap", "ro"],
      uidMappings: map,
      gidMappings: [map[0]],
    })
  );
  const m = t.spec.mounts.find((x) => x.destination === "/m")!;
  assert.deepEqual(m.idmap, { uid: "0 1000 10\n10 5000 1\n", gid: "0 1000 10\n" });
  assert.deepEqual(m.options, ["rbind", "ro"]);
  const bind = (extra: Config) => (c: Config) =>
    c.mounts.push({
      destination: "/m",
      type: "bind",
      source: "/srv",
      options: ["rbind"],
      ...extra,
    });
  throwsLine(() => translate(bind({ options: ["idmap"] })), /idmap without uidMappings/);
  throwsLine(
    () => translate(bind({ uidMappings: map, gidMappings: [{ containerID: 0, hostID: 1 }] })),
    /gidMappings\[0\]\.size: expected an integer from 1/,
  );
  throwsLine(() => translate(bind({ uidMappings: [], gidMappings: map })), /1 to 340 mappings/);
});

Deno.test("oci ids and cgroupsPath: a name over NAME_MAX (255) is refused up front, in one line", () => {
  assert.equal(checkId("a".repeat(255)), "a".repeat(255));
  assert.throws(
    () => checkId("a".repeat(256)),
    (e: Error) => e.message === "invalid container id: 256 characters, over 255",
  );
  assert.throws(() => checkId("a".repeat(1024)), /1024 characters, over 255/);
  assert.throws(() => checkId("a/b"), /invalid container id "a\/b"/);
  assert.deepEqual(cgroupOf(undefined, "x"), { parent: "micro-oci", name: "x", own: true });
  assert.deepEqual(cgroupOf(`/p/${"l".repeat(255)}`, "x"), { parent: "p", name: "l".repeat(255) });
  assert.throws(() => cgroupOf(`/p/${"l".repeat(256)}`, "x"), /not a cgroup path micro accepts/);
});

Deno.test("oci config: createContainer and startContainer hooks are taken, checked as the others", () => {
  const t = translate((c) => (c.hooks = {
    createContainer: [{ path: "/x", args: ["x", "1"], timeout: 2 }],
    startContainer: [{ path: "/y" }],
  }));
  assert.deepEqual(t.hooks.createContainer, [{ path: "/x", args: ["x", "1"], timeout: 2 }]);
  assert.deepEqual(t.hooks.startContainer, [{ path: "/y" }]);
  throwsLine(
    () => translate((c) => (c.hooks = { startContainer: [{ path: "y" }] })),
    /hooks\.startContainer\[0\]\.path: expected an absolute path/,
  );
});

Deno.test("oci config: startContainer hooks refused where they may hold CAP_SYS_PTRACE in the host's user namespace", () => {
  const sc = { startContainer: [{ path: "/y" }] };
  const ptrace = (c: Config) => {
    for (const k of Object.keys(c.process.capabilities)) {
      c.process.capabilities[k] = [...c.process.capabilities[k], "CAP_SYS_PTRACE"];
    }
  };
  const refused = /hooks\.startContainer: refused: .*CAP_SYS_PTRACE.*user namespace/;
  throwsLine(() => translate((c) => (ptrace(c), c.hooks = sc)), refused);
  // No capabilities given: root keeps every one of its own.
  throwsLine(() => translate((c) => (delete c.process.capabilities, c.hooks = sc)), refused);
  // Taken: without the capability, in a user namespace of the container's (its
  // CAP_SYS_PTRACE is over that namespace only), or with no startContainer hook.
  translate((c) => (c.hooks = sc));
  translate((c) => {
    ptrace(c);
    c.hooks = sc;
    c.linux.namespaces.push({ type: "user" });
    c.linux.uidMappings = [{ containerID: 0, hostID: 100000, size: 65536 }];
    c.linux.gidMappings = [{ containerID: 0, hostID: 100000, size: 65536 }];
  });
  translate((c) => (ptrace(c), c.hooks = { createContainer: [{ path: "/x" }] }));
});

Deno.test("oci config: CPU and node lists read as runc's ToCPUSet reads them", () => {
  const ok: [string, number[]][] = [
    ["0", [0]],
    ["0-1", [0, 1]],
    [",0,1,", [0, 1]],
    ["0,1,2-3", [0, 1, 2, 3]],
    ["1, 2, 1-2", [1, 2]],
    ["    , 1   , 3  ,  5-7,    ", [1, 3, 5, 6, 7]],
    ["127-129, 1", [1, 127, 128, 129]],
    ["65536", [65536]],
  ];
  for (const [text, cpus] of ok) assert.deepEqual(parseCpuList(text), cpus, text);
  for (const text of ["-", "1-", "-3", ",", " ", "54-53", "1 - 2", "65537", "0-65537", "a"]) {
    assert.equal(typeof parseCpuList(text), "string", text);
  }
  // Whole 64-bit words, little-endian.
  assert.deepEqual([...bitmask([0, 9])], [1, 2, 0, 0, 0, 0, 0, 0]);
  assert.equal(bitmask([64]).length, 16);
});

Deno.test("oci config: process.execCPUAffinity is kept for exec (not the first process's ops)", () => {
  const t = translate((c) => (c.process.execCPUAffinity = { initial: "0", final: "0-1" }));
  assert.deepEqual(t.spec.process.execCPUAffinity, { initial: [0], final: [0, 1] });
  const only = translate((c) => (c.process.execCPUAffinity = { final: "1", initial: "" }));
  assert.deepEqual(only.spec.process.execCPUAffinity, { final: [1] });
  assert.equal(
    translate((c) => (c.process.execCPUAffinity = {})).spec.process.execCPUAffinity,
    undefined,
  );
  throwsLine(
    () => translate((c) => (c.process.execCPUAffinity = { initial: "3-1" })),
    /process\.execCPUAffinity\.initial: "3-1": the range ends before it starts/,
  );
  throwsLine(
    () => translate((c) => (c.process.execCPUAffinity = { later: "1" })),
    /process\.execCPUAffinity\.later: unknown field/,
  );
  // exec: initial in attach (the parent, before the cgroup join), final right before chdir.
  const ops = withAffinity([
    op("attach", "cgroups", "cgroup-join", { path: "/sys/fs/cgroup/x" }),
    op("credentials", "process", "setresuid", { uid: 0 }),
    op("exec", "process", "chdir", { path: "/" }),
    op("exec", "process", "execve", { args: ["sh"], env: [], path: ["/bin/sh"] }),
  ], t.spec.process.execCPUAffinity);
  assert.deepEqual(ops.map((o) => `${o.phase}:${o.kind}`), [
    "attach:cpu-affinity",
    "attach:cgroup-join",
    "credentials:setresuid",
    "exec:cpu-affinity",
    "exec:chdir",
    "exec:execve",
  ]);
  assert.deepEqual(ops[0].args, { cpus: [0] });
  assert.deepEqual(ops[3].args, { cpus: [0, 1] });
});

Deno.test("oci config: linux.memoryPolicy becomes one set_mempolicy op; what the kernel always refuses is named", () => {
  const t = translate((c) =>
    c.linux.memoryPolicy = { mode: "MPOL_BIND", nodes: "0", flags: ["MPOL_F_STATIC_NODES"] }
  );
  assert.deepEqual(t.spec.process.memoryPolicy, { mode: 2, flags: 1 << 15, nodes: [0] });
  const ops = processOps(t.spec, HOST).filter((o) => o.kind === "mempolicy");
  assert.deepEqual(ops.map((o) => [o.phase, o.args]), [
    ["credentials", { mode: 2, flags: 1 << 15, nodes: [0] }],
  ]);
  assert.deepEqual(
    translate((c) => (c.linux.memoryPolicy = { mode: "MPOL_LOCAL" })).spec.process.memoryPolicy,
    { mode: 4, flags: 0, nodes: [] },
  );
  assert.deepEqual(
    translate((c) => (c.linux.memoryPolicy = { mode: "MPOL_PREFERRED", nodes: "" })).spec
      .process.memoryPolicy,
    { mode: 1, flags: 0, nodes: [] },
  );
  const bad: [Config, RegExp][] = [
    [{ mode: "MPOL_NOPE", nodes: "0" }, /memoryPolicy\.mode: "MPOL_NOPE" is not a memory/],
    [{ mode: "MPOL_BIND", nodes: "0", flags: ["X"] }, /memoryPolicy\.flags\[0\]: "X"/],
    [{ mode: "MPOL_BIND" }, /memoryPolicy\.nodes: MPOL_BIND needs at least one node/],
    [{ mode: "MPOL_INTERLEAVE", nodes: "0-" }, /memoryPolicy\.nodes: "0-" is not/],
    [{ mode: "MPOL_BIND", nodes: "1024" }, /memoryPolicy\.nodes: 1024 is above 1023/],
    [{ mode: "MPOL_DEFAULT", nodes: "0" }, /memoryPolicy\.nodes: MPOL_DEFAULT takes no nodes/],
    [{ mode: "MPOL_LOCAL", nodes: "0" }, /MPOL_LOCAL takes no nodes/],
    [{ mode: "MPOL_DEFAULT", flags: ["MPOL_F_STATIC_NODES"] }, /MPOL_DEFAULT takes no flags/],
    [
      { mode: "MPOL_BIND", nodes: "0", flags: ["MPOL_F_STATIC_NODES", "MPOL_F_RELATIVE_NODES"] },
      /exclude each other/,
    ],
    [{ mode: "MPOL_BIND", nodes: "0", policy: 1 }, /memoryPolicy\.policy: unknown field/],
  ];
  for (const [mpol, re] of bad) {
    throwsLine(() => translate((c) => (c.linux.memoryPolicy = mpol)), re);
  }
});

Deno.test("oci config: mount options are flags, propagation or the file system's data", () => {
  const { warnings, spec } = translate((c) => {
    c.mounts.push({
      destination: "/t",
      type: "tmpfs",
      source: "tmpfs",
      options: ["noatime", "nodiratime", "sync", "rshared", "rnosuid", "size=1m", "tmpcopyup"],
    });
    c.mounts.push({ destination: "/p", type: "proc", source: "proc", options: ["shared"] });
  });
  const t = spec.mounts.find((m) => m.destination === "/t")!;
  assert.deepEqual(t.options, [
    "noatime",
    "nodiratime",
    "sync",
    "rshared",
    "rnosuid",
    "tmpcopyup",
    "size=1m",
  ]);
  assert.deepEqual(warnings, [
    'config.json: mounts[8] (/p): "shared": micro\'s proc mount is private',
  ]);
  throwsLine(
    () =>
      translate((c) =>
        c.mounts.push({ destination: "/x", type: "bind", source: "/x", options: ["size=1m"] })
      ),
    /"size=1m" is not a bind mount option micro knows/,
  );
});

Deno.test("oci config: linux.devices need a type and, but for p, their numbers", () => {
  const { spec } = translate((c) => {
    c.linux.devices = [{ path: "/dev/x", type: "b", major: 8, minor: 16, fileMode: 0o600 }];
  });
  assert.deepEqual(spec.linux.devices, [{
    path: "/dev/x",
    hostPath: "/dev/x",
    access: "rwm",
    node: { type: "b", major: 8, minor: 16, mode: 0o600, uid: 0, gid: 0 },
  }]);
  throwsLine(
    () => translate((c) => c.linux.devices = [{ path: "/dev/x", type: "q", major: 1, minor: 1 }]),
    /linux\.devices\[0\]\.type.*"q": expected c, b, u or p/,
  );
  throwsLine(
    () => translate((c) => c.linux.devices = [{ path: "/dev/x", type: "c", minor: 1 }]),
    /linux\.devices\[0\]\.major.*required for type c/,
  );
});
