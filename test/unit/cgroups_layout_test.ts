/**
 * Which cgroup layout a host has (core/cgroups/layout.ts), from sample /proc/self/mountinfo
 * and /proc/self/cgroup texts: pure v2, pure v1 (with co-mounted `cpu,cpuacct`), hybrid (this
 * project's build hosts), none, and where a rootless caller may create cgroups.
 */
import assert from "node:assert/strict";
import { type CgroupLayout, detectLayout, parseMounts } from "../../core/cgroups/layout.ts";

const V2_MOUNTINFO = [
  "22 1 0:21 / / rw,relatime shared:1 - ext4 /dev/sda1 rw",
  "35 22 0:30 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 " +
  "rw,nsdelegate,memory_recursiveprot",
  "36 22 0:31 / /proc rw,nosuid,nodev,noexec,relatime shared:13 - proc proc rw",
].join("\n");

/** A systemd v1 host: cpu and cpuacct co-mounted, a named hierarchy for systemd, no cgroup2. */
const V1_MOUNTINFO = [
  "22 1 0:21 / / rw,relatime shared:1 - ext4 /dev/sda1 rw",
  "25 22 0:22 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755",
  "26 25 0:23 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:10 - cgroup " +
  "cgroup rw,xattr,name=systemd",
  "27 25 0:24 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:11 - cgroup " +
  "cgroup rw,cpu,cpuacct",
  "28 25 0:25 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:12 - cgroup " +
  "cgroup rw,memory",
  "29 25 0:26 / /sys/fs/cgroup/pids rw,nosuid,nodev,noexec,relatime shared:13 - cgroup cgroup " +
  "rw,pids",
  "30 25 0:27 / /sys/fs/cgroup/net_cls,net_prio rw,nosuid,nodev,noexec,relatime shared:14 - " +
  "cgroup cgroup rw,net_cls,net_prio",
  "31 25 0:28 / /sys/fs/cgroup/cpuset rw,nosuid,nodev,noexec,relatime shared:15 - cgroup " +
  "cgroup rw,cpuset",
  "32 25 0:29 / /sys/fs/cgroup/devices rw,nosuid,nodev,noexec,relatime shared:16 - cgroup " +
  "cgroup rw,devices",
  "33 25 0:30 / /sys/fs/cgroup/freezer rw,nosuid,nodev,noexec,relatime shared:17 - cgroup " +
  "cgroup rw,freezer",
  "34 25 0:31 / /sys/fs/cgroup/blkio rw,nosuid,nodev,noexec,relatime shared:18 - cgroup " +
  "cgroup rw,blkio",
].join("\n");

/** This host's /proc/self/mountinfo: separate cpu and cpuacct, an empty cgroup2 beside them. */
const HYBRID_MOUNTINFO = `31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
`;

const NONE_MOUNTINFO = "22 1 0:21 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n" +
  "36 22 0:31 / /proc rw,nosuid,nodev,noexec,relatime shared:13 - proc proc rw\n";

const ALL_V2 = "cpuset cpu io memory hugetlb pids rdma misc\n";
const USER_SLICE = "/user.slice/user-1000.slice/user@1000.service/app.slice";

function layout(
  mountinfo: string,
  opts: {
    uid?: number;
    selfCgroup?: string;
    files?: Record<string, string>;
    writable?: string[];
  } = {},
): CgroupLayout {
  const files = opts.files ?? {};
  return detectLayout({
    mountinfo,
    selfCgroup: opts.selfCgroup ?? "0::/\n",
    uid: opts.uid ?? 0,
    read: (p) => files[p],
    canWrite: (p) => (opts.writable ?? []).includes(p),
  });
}

Deno.test("parseMounts: cgroup v1 controllers by mount point, the first cgroup2 mount", () => {
  assert.deepEqual(parseMounts(V2_MOUNTINFO), { v1: {}, v2: "/sys/fs/cgroup" });
  const v1 = parseMounts(V1_MOUNTINFO);
  assert.equal(v1.v2, undefined);
  assert.deepEqual(v1.v1, {
    cpu: "/sys/fs/cgroup/cpu,cpuacct",
    cpuacct: "/sys/fs/cgroup/cpu,cpuacct",
    memory: "/sys/fs/cgroup/memory",
    pids: "/sys/fs/cgroup/pids",
    net_cls: "/sys/fs/cgroup/net_cls,net_prio",
    net_prio: "/sys/fs/cgroup/net_cls,net_prio",
    cpuset: "/sys/fs/cgroup/cpuset",
    devices: "/sys/fs/cgroup/devices",
    freezer: "/sys/fs/cgroup/freezer",
    blkio: "/sys/fs/cgroup/blkio",
  });
  // name=systemd and the tmpfs holding the hierarchies are not controllers.
  assert.ok(!Object.values(v1.v1).includes("/sys/fs/cgroup/systemd"));
  const hybrid = parseMounts(HYBRID_MOUNTINFO);
  assert.equal(hybrid.v2, "/sys/fs/cgroup/unified");
  assert.equal(hybrid.v1.cpu, "/sys/fs/cgroup/cpu");
  assert.equal(hybrid.v1.cpuacct, "/sys/fs/cgroup/cpuacct");
  assert.deepEqual(parseMounts(NONE_MOUNTINFO), { v1: {}, v2: undefined });
  assert.deepEqual(parseMounts(""), { v1: {}, v2: undefined });
});

Deno.test("detectLayout: pure v2 as root, controllers from the root's cgroup.controllers", () => {
  assert.deepEqual(
    layout(V2_MOUNTINFO, { files: { "/sys/fs/cgroup/cgroup.controllers": ALL_V2 } }),
    {
      mode: "v2",
      v1: {},
      v2: {
        mount: "/sys/fs/cgroup",
        controllers: ["cpuset", "cpu", "io", "memory", "hugetlb", "pids", "rdma", "misc"],
      },
      base: "",
      writable: true,
    },
  );
  // No cgroup.controllers to read: no controllers, still v2.
  assert.deepEqual(layout(V2_MOUNTINFO).v2, { mount: "/sys/fs/cgroup", controllers: [] });
});

Deno.test("detectLayout: a systemd name=systemd v1 mount beside cgroup2 is still pure v2", () => {
  const mountinfo = V2_MOUNTINFO + "\n" +
    "40 35 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd";
  assert.equal(layout(mountinfo).mode, "v2");
});

Deno.test("detectLayout: pure v1 as root, co-mounted cpu,cpuacct at one directory", () => {
  const l = layout(V1_MOUNTINFO);
  assert.equal(l.mode, "v1");
  assert.equal(l.v2, undefined);
  assert.ok(!("v2" in l), "no v2 key on a v1 host");
  assert.equal(l.v1.cpu, "/sys/fs/cgroup/cpu,cpuacct");
  assert.equal(l.v1.cpuacct, l.v1.cpu);
  assert.equal(l.base, "");
  assert.equal(l.writable, true);
});

Deno.test("detectLayout: hybrid (this host): separate cpu and cpuacct, empty cgroup2", () => {
  const l = layout(HYBRID_MOUNTINFO, {
    files: { "/sys/fs/cgroup/unified/cgroup.controllers": "\n" },
  });
  assert.deepEqual(l, {
    mode: "hybrid",
    v1: Object.fromEntries(
      ["cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids"].map((c) => [
        c,
        `/sys/fs/cgroup/${c}`,
      ]),
    ),
    v2: { mount: "/sys/fs/cgroup/unified", controllers: [] },
    base: "",
    writable: true,
  });
});

Deno.test("detectLayout: no cgroup file system at all", () => {
  const l = layout(NONE_MOUNTINFO);
  assert.equal(l.mode, "none");
  assert.deepEqual(l.v1, {});
  assert.equal(l.v2, undefined);
  assert.equal(layout(NONE_MOUNTINFO, { uid: 1000 }).writable, false);
});

Deno.test("detectLayout: rootless on v2 uses the systemd-delegated subtree it owns", () => {
  const l = layout(V2_MOUNTINFO, {
    uid: 1000,
    selfCgroup: `0::${USER_SLICE}/x.scope\n`,
    files: {
      "/sys/fs/cgroup/cgroup.controllers": ALL_V2,
      [`/sys/fs/cgroup${USER_SLICE}/cgroup.controllers`]: "cpu memory pids\n",
    },
    writable: [`/sys/fs/cgroup${USER_SLICE}/cgroup.subtree_control`],
  });
  assert.deepEqual(l, {
    mode: "v2",
    v1: {},
    // The delegated subtree's controllers, not the root's.
    v2: { mount: "/sys/fs/cgroup", controllers: ["cpu", "memory", "pids"] },
    base: USER_SLICE,
    writable: true,
  });
});

Deno.test("detectLayout: rootless on v2 without delegation is not writable", () => {
  const files = {
    "/sys/fs/cgroup/cgroup.controllers": ALL_V2,
    [`/sys/fs/cgroup${USER_SLICE}/cgroup.controllers`]: "memory pids\n",
  };
  // The same subtree, but its subtree_control is not the caller's to write.
  const l = layout(V2_MOUNTINFO, { uid: 1000, selfCgroup: `0::${USER_SLICE}/x.scope\n`, files });
  assert.equal(l.mode, "v2");
  assert.equal(l.writable, false);
  assert.equal(l.base, "");
  // A login session scope is not under user@UID.service: systemd delegated nothing there,
  // even if the file happens to be writable.
  const session = "/user.slice/user-1000.slice/session-2";
  const s = layout(V2_MOUNTINFO, {
    uid: 1000,
    selfCgroup: `0::${session}.scope\n`,
    files,
    writable: [`/sys/fs/cgroup/user.slice/user-1000.slice/cgroup.subtree_control`],
  });
  assert.equal(s.writable, false);
  assert.equal(s.base, "");
});

Deno.test("detectLayout: rootless on v1 or hybrid is never writable; root always is", () => {
  for (const mountinfo of [V1_MOUNTINFO, HYBRID_MOUNTINFO]) {
    const everything = (_: string) => true;
    const l = detectLayout({
      mountinfo,
      selfCgroup: `0::${USER_SLICE}/x.scope\n`,
      uid: 1000,
      read: () => undefined,
      canWrite: everything,
    });
    assert.equal(l.writable, false, l.mode);
    assert.equal(l.base, "", l.mode);
    assert.equal(layout(mountinfo).writable, true, l.mode);
  }
});
