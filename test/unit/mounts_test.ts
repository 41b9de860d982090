/**
 * Docker's mount spellings (-v, --tmpfs, --mount and their profile keys) become the same
 * spec entries, and the mount plugin plans volumes, parents-first order and /dev/shm.
 */
import assert from "node:assert/strict";
import { CGROUP_FACTS } from "./_host.ts";
import {
  parseMountFlag,
  parseTmpfs,
  parseVolumeFlag,
  splitMountOptions,
} from "../../core/mounts.ts";
import { buildSpec, planRun } from "../../core/plan.ts";
import type { HostInfo } from "../../core/plugin.ts";
import { resolveProfile } from "../../core/profile.ts";
import { type Op, op } from "../../core/ops.ts";
import { compileChild, runChild } from "../../core/engine/child.ts";
import { FakeExec, FakeExit, RecordingSys } from "../../core/sys/fake.ts";
import { PLUGINS } from "../../plugins/mod.ts";
import { F } from "./_flags.ts";

function host(over: Partial<HostInfo> = {}): HostInfo {
  return {
    arch: "x86_64",
    uid: 0,
    gid: 0,
    id: "c1",
    stateDir: "/run/micro/c1",
    containerDir: "/store/containers/c1",
    volumesDir: "/store/volumes",
    hostView: [],
    devices: ["null"],
    passwd: "root:x:0:0::/:/bin/sh\n",
    group: "root:x:0:\n",
    sourceKinds: { "/srv": "dir" },
    image: "dir",
    files: {},
    capLastCap: 40,
    lsm: { apparmor: false, selinux: false, landlock: 0 },
    ...CGROUP_FACTS,
    ...over,
  };
}

function planOf(layer: Record<string, unknown>, h = host()): Op[] {
  const { profile } = resolveProfile([], layer, PLUGINS);
  const spec = buildSpec(
    { image: "/img", args: ["sh"], terminal: false, stdin: false },
    profile,
    PLUGINS,
  );
  return planRun(spec, h, PLUGINS);
}

const mountsOf = (ops: Op[]) =>
  ops.flatMap((o) =>
    o.kind === "mount" && !["/proc", "/sys"].includes(o.args.target) &&
      !o.args.target.startsWith("/dev")
      ? [[o.args.target, o.args.source, o.args.flags.join("|"), o.args.data ?? ""]]
      : []
  );

Deno.test("tmpfs options: Docker's defaults, each option, later flags win", () => {
  assert.deepEqual(parseTmpfs("/x"), {
    destination: "/x",
    type: "tmpfs",
    source: "tmpfs",
    options: ["nosuid", "nodev", "noexec", "mode=1777"],
  });
  const t = parseTmpfs("/x/:size=2m,mode=0700,uid=65534,gid=100,exec,suid,dev,ro");
  assert.deepEqual(typeof t !== "string" && t.options, [
    "ro",
    "mode=700",
    "size=2097152",
    "uid=65534",
    "gid=100",
  ]);
  const u = parseTmpfs("/x:ro,rw,size=1g,size=4k");
  assert.deepEqual(typeof u !== "string" && u.options, [
    "nosuid",
    "nodev",
    "noexec",
    "mode=1777",
    "size=4096",
  ]);
  assert.deepEqual(typeof parseTmpfs("/x:size=12") !== "string", true);
  assert.match(parseTmpfs("/x:nr_inodes=4") as string, /^unknown tmpfs option "nr_inodes=4"/);
  assert.match(parseTmpfs("/x:mode=8") as string, /^invalid tmpfs mode "8"/);
});

Deno.test("--mount and -v give the same mounts as each other", () => {
  assert.deepEqual(
    parseMountFlag("type=bind,source=/srv,target=/data,readonly"),
    parseVolumeFlag("/srv:/data:ro"),
  );
  assert.deepEqual(
    parseMountFlag("type=bind,src=/srv,dst=/data,ro=false"),
    parseVolumeFlag("/srv:/data"),
  );
  assert.deepEqual(parseMountFlag("type=volume,src=cache,dst=/c"), parseVolumeFlag("cache:/c"));
  assert.deepEqual(parseMountFlag("dst=/c"), parseVolumeFlag("/c"));
  assert.deepEqual(
    parseMountFlag("type=tmpfs,destination=/t,tmpfs-size=1m,tmpfs-mode=700"),
    parseTmpfs("/t:size=1m,mode=700"),
  );
  assert.deepEqual(parseVolumeFlag("cache:/c:ro"), {
    destination: "/c",
    type: "volume",
    source: "cache",
    options: ["rbind", "ro"],
  });
  assert.match(
    parseMountFlag("type=volume,src=a/b,dst=/c") as string,
    /^invalid volume name "a\/b"/,
  );
  assert.match(parseMountFlag("type=bind,dst=/c") as string, /^a bind needs source=/);
  assert.match(parseMountFlag("type=bind,src=/a,dst=/c,src=/b") as string, /is given twice/);
});

Deno.test("mount plugin: volumes are made in the store (named) or the container (anonymous)", () => {
  const ops = planOf({ mount: { binds: ["cache:/cache:ro", "/anon"], mounts: ["dst=/more"] } });
  assert.deepEqual(
    ops.filter((o) => o.kind === "volume-dir").map((o) => [o.phase, o.args]),
    [
      ["prepare", { dir: "/store/volumes/cache", path: "/store/volumes/cache/_data" }],
      ["prepare", {
        dir: "/store/containers/c1/volumes/0",
        path: "/store/containers/c1/volumes/0/_data",
      }],
      ["prepare", {
        dir: "/store/containers/c1/volumes/1",
        path: "/store/containers/c1/volumes/1/_data",
      }],
    ],
  );
  assert.deepEqual(mountsOf(ops), [
    ["/cache", "/store/volumes/cache/_data", "MS_BIND|MS_REC|MS_RDONLY", ""],
    ["/anon", "/store/containers/c1/volumes/0/_data", "MS_BIND|MS_REC", ""],
    ["/more", "/store/containers/c1/volumes/1/_data", "MS_BIND|MS_REC", ""],
  ]);
  // Without a store to keep it in, a named volume is refused before anything runs.
  const { profile } = resolveProfile([], { mount: { binds: ["cache:/c"] } }, PLUGINS);
  const spec = buildSpec(
    { image: "/img", args: ["sh"], terminal: false, stdin: false },
    profile,
    PLUGINS,
  );
  const mount = PLUGINS.find((p) => p.name === "mount")!;
  assert.match(
    mount.check!(spec, host({ volumesDir: undefined }))[0].message,
    /volume "cache": there is no image store/,
  );
});

Deno.test("mount plugin: parents are mounted before what goes inside them, else in order", () => {
  const ops = planOf({
    mount: { tmpfs: ["/data/cache:size=1m", "/b"], binds: ["/srv:/data"] },
    readonly: {},
  });
  assert.deepEqual(mountsOf(ops).map((m) => m[0]), ["/data", "/b", "/tmp", "/run", "/data/cache"]);
});

Deno.test("mount plugin: --shm-size sizes /dev/shm (Docker's 64m by default)", () => {
  const shm = (ops: Op[]) => ops.find((o) => o.kind === "mount" && o.args.target === "/dev/shm");
  const data = (o?: Op) => o?.kind === "mount" ? o.args.data : undefined;
  assert.equal(data(shm(planOf({}))), "mode=1777,size=67108864");
  assert.equal(data(shm(planOf({ mount: { shmSize: "1g" } }))), "mode=1777,size=1073741824");
  assert.equal(data(shm(planOf({ mount: { shmSize: 4096 } }))), "mode=1777,size=4096");
});

// --- /sys/fs/cgroup ---------------------------------------------------------------------

const cgroupMountOf = (ops: Op[]) => ops.find((o) => o.kind === "cgroup-mount");

Deno.test("cgroups plugin: /sys/fs/cgroup shows the hierarchies the container has a cgroup in", () => {
  // v1 with cpu and cpuacct co-mounted, and net_cls (no cgroup of the container's) apart.
  const dir = (d: string) => `/sys/fs/cgroup/${d}`;
  const v1 = {
    cpu: dir("cpu,cpuacct"),
    cpuacct: dir("cpu,cpuacct"),
    memory: dir("memory"),
    pids: dir("pids"),
    net_cls: dir("net_cls"),
  };
  const h = host({ cgroup: { ...CGROUP_FACTS.cgroup, v1 } });
  const m = cgroupMountOf(planOf({}, h));
  assert.deepEqual(m?.phase, "rootfs");
  assert.deepEqual(m?.args, {
    version: 1,
    hierarchies: [
      { name: "cpu,cpuacct", controllers: ["cpu", "cpuacct"], links: ["cpu", "cpuacct"] },
      { name: "memory", controllers: ["memory"], links: [] },
      { name: "pids", controllers: ["pids"], links: [] },
    ],
    readonly: true,
  });
  // After the cgroup namespace is entered: its root is the container's cgroup.
  const ops = planOf({}, h);
  const at = (kind: string) => ops.findIndex((o) => o.kind === kind);
  assert.ok(at("unshare") < at("cgroup-mount") && at("pivot-root") < at("cgroup-mount"));

  const v2 = host({
    cgroup: {
      mode: "v2",
      v1: {},
      v2: { mount: "/sys/fs/cgroup", controllers: ["memory"] },
      base: "",
      writable: true,
    },
  });
  assert.deepEqual(cgroupMountOf(planOf({ cgroups: { mount: "rw" } }, v2))?.args, {
    version: 2,
    hierarchies: [],
    readonly: false,
  });
  // No cgroup namespace (the mount would show micro's cgroup and the host's above it), no
  // cgroup of its own (limits skipped), or a profile that says none: nothing is mounted.
  assert.equal(cgroupMountOf(planOf({ cgroupns: { enabled: false } }, h)), undefined);
  assert.equal(cgroupMountOf(planOf({ cgroups: { mount: "none" } }, h)), undefined);
  const unwritable = host({ uid: 1000, cgroup: { ...CGROUP_FACTS.cgroup, writable: false } });
  assert.equal(cgroupMountOf(planOf({}, unwritable)), undefined);
});

Deno.test("child: v1 /sys/fs/cgroup is a tmpfs found beneath micro's sysfs, a cgroup mount per hierarchy, then read-only", () => {
  const sys = new RecordingSys();
  const ops = [
    op("rootfs", "mount", "bind-root", { source: "/img", readonly: false }),
    op("rootfs", "mount", "mount", {
      source: "sysfs",
      target: "/sys",
      fstype: "sysfs",
      flags: ["MS_RDONLY"],
      kernelFs: "sys",
    }),
    op("rootfs", "cgroups", "cgroup-mount", {
      version: 1,
      hierarchies: [{
        name: "cpu,cpuacct",
        controllers: ["cpu", "cpuacct"],
        links: ["cpu", "cpuacct"],
      }],
      readonly: true,
    }),
  ];
  const ctx = {
    rootPath: "/r",
    syncRead: 50,
    syncWrite: 51,
    report: 1010,
    stdio: [54, 55, 56] as const,
    exe: 57,
  };
  const prog = compileChild(ops, ctx, sys);
  assert.deepEqual(sys.format(), [], "compiling makes no call");
  try {
    runChild(prog, sys);
  } catch (e) {
    if (!(e instanceof FakeExit || e instanceof FakeExec)) throw e;
  }
  const calls = sys.format({ results: true });
  const from = calls.findIndex((c) => c.startsWith('openat2(1004, "fs/cgroup"'));
  assert.deepEqual(calls.slice(from, from + 24), [
    // beneath the sysfs root (RESOLVE_BENEATH, no symlinks), never by name from the root
    `openat2(1004, "fs/cgroup", ${F.PATH_DIR}, 0, 0xe) = 7`,
    'fsopen("tmpfs", 1) = 8',
    'fsconfig(8, 1, "source", "tmpfs", 0) = 0',
    'fsconfig(8, 1, "mode", "755", 0) = 0',
    "fsconfig(8, 6, null, null, 0) = 0",
    "fsmount(8, 0x1, 0xe) = 9",
    "close(8) = 0",
    'moveMount(9, "", 7, "", 0x44) = 0',
    "close(7) = 0",
    'mkdirat(9, "cpu,cpuacct", 0o755) = 0',
    `openat2(9, "cpu,cpuacct", ${F.PATH_DIR}, 0, 0xe) = 10`,
    'fsopen("cgroup", 1) = 11',
    'fsconfig(11, 1, "source", "cgroup", 0) = 0',
    'fsconfig(11, 0, "cpu", null, 0) = 0',
    'fsconfig(11, 0, "cpuacct", null, 0) = 0',
    "fsconfig(11, 6, null, null, 0) = 0",
    // read-only, nosuid, nodev, noexec
    "fsmount(11, 0x1, 0xf) = 12",
    "close(11) = 0",
    'moveMount(12, "", 10, "", 0x44) = 0',
    "close(10) = 0",
    "close(12) = 0",
    'symlinkat("cpu,cpuacct", 9, "cpu") = 0',
    'symlinkat("cpu,cpuacct", 9, "cpuacct") = 0',
    // the tmpfs itself read-only once its directories are made
    'mountSetattr(9, "", 0x1000, 1, 0) = 0',
  ]);
});

Deno.test("splitMountOptions: flags set and cleared in order, one atime mode, propagation", () => {
  assert.deepEqual(
    splitMountOptions(["rbind", "ro", "nosuid", "rw", "noatime", "strictatime", "rslave", "x=1"]),
    {
      flags: ["MS_BIND", "MS_REC", "MS_NOSUID", "MS_STRICTATIME"],
      propagation: ["MS_SLAVE", "MS_REC"],
      data: ["x=1"],
    },
  );
  assert.deepEqual(splitMountOptions(["rro", "rnoexec", "sync", "private", "defaults"]), {
    flags: ["MS_RDONLY", "MS_NOEXEC", "MS_SYNCHRONOUS"],
    propagation: [],
    data: [],
  });
  assert.deepEqual(splitMountOptions(["shared", "rprivate"]).propagation, []);
  assert.deepEqual(splitMountOptions(["unbindable"]).propagation, ["MS_UNBINDABLE"]);
});
