/**
 * linux.resources beyond Docker's flags, through `micro oci create` on a bundle: the files
 * in the container's cgroup hold the values, as runc's fs (v1) and fs2 (v2) write them.
 * Runs on the host (cgroup v1 hybrid: the v1 tests) and in the QEMU guest (cgroup v2:
 * the v2 tests; `make test-vm`). v1 hierarchies the host does not mount (hugetlb, net_cls,
 * net_prio) are mounted only inside a mount namespace the test makes.
 */
import assert from "node:assert/strict";
import { exists, MICRO, microTest, NEEDS, ok, show, withTempDir } from "./_helpers.ts";
import { bundle, type Config, oci } from "./_oci.ts";

/** The cgroup mounts of this host: v1 controller → mount point, and the cgroup2 mount. */
function layout(): { v1: Record<string, string>; v2?: string } {
  const v1: Record<string, string> = {};
  let v2: string | undefined;
  for (const line of Deno.readTextFileSync("/proc/self/mountinfo").split("\n")) {
    const sep = line.indexOf(" - ");
    if (sep < 0) continue;
    const mountPoint = line.slice(0, sep).split(" ")[4];
    const [fstype, , opts = ""] = line.slice(sep + 3).split(" ");
    if (fstype === "cgroup2") v2 ??= mountPoint;
    if (fstype === "cgroup") { for (const o of opts.split(",")) v1[o] ??= mountPoint; }
  }
  return { v1, v2 };
}

const L = layout();
const V1 = Object.keys(L.v1).length > 0;
const V2_CONTROLLERS = !V1 && L.v2
  ? Deno.readTextFileSync(`${L.v2}/cgroup.controllers`).trim().split(/\s+/)
  : [];
const ONLY_V1 = V1 ? undefined : "needs cgroup v1 (the host; the guest is v2)";
const ONLY_V2 = !V1 && L.v2 ? undefined : "needs pure cgroup v2 (make test-vm)";

const uniq = () => `r${crypto.randomUUID().slice(0, 8)}`;
const read = (p: string) => Deno.readTextFileSync(p).trim();

/** The container's cgroup directory for `ctl` (v1), or its one v2 directory. */
function dirOf(id: string, ctl?: string, parent = "micro-oci"): string {
  return ctl ? `${L.v1[ctl]}/${parent}/${id}` : `${L.v2}/${parent}/${id}`;
}

/** A bundle running `sleep 60` with `resources` as linux.resources (and `edit` after). */
function resBundle(dir: string, resources: Config, edit: (c: Config) => void = () => {}) {
  return bundle(dir, (c) => {
    c.process.args = ["sleep", "60"];
    c.linux.resources = { ...c.linux.resources, ...resources };
    edit(c);
  });
}

/**
 * `script` by sh in a private mount namespace of its own (with micro as `$M`): what it mounts
 * (a v1 hierarchy the host does not mount) is gone with it.
 */
async function inMountNamespace(
  script: string,
): Promise<{ code: number; out: string; err: string }> {
  const r = await new Deno.Command("unshare", {
    args: ["-m", "--propagation", "private", "sh", "-c", script],
    env: { M: MICRO },
    stdin: "null",
  }).output();
  const dec = new TextDecoder();
  return { code: r.code, out: dec.decode(r.stdout), err: dec.decode(r.stderr) };
}

/** create, `check` while it runs, then delete --force whatever happens. */
async function created(
  dir: string,
  b: string,
  check: (id: string, root: string) => Promise<void> | void,
) {
  const root = `${dir}/state`;
  const id = uniq();
  try {
    ok(await oci(root, ["create", "-b", b, id]));
    await check(id, root);
  } finally {
    await oci(root, ["delete", "--force", id]);
  }
}

/** create is refused: exit 125 and one line matching `re`, nothing left behind. */
async function refused(dir: string, b: string, re: RegExp) {
  const root = `${dir}/state`;
  const id = uniq();
  try {
    const r = await oci(root, ["create", "-b", b, id]);
    assert.equal(r.code, 125, show(r));
    const lines = r.stderr.trim().split("\n").filter((l) => !/^micro: warning:/.test(l));
    assert.equal(lines.length, 1, r.stderr);
    assert.match(lines[0], re);
    assert.ok(!exists(`${root}/${id}`), "no state left");
  } finally {
    await oci(root, ["delete", "--force", id]);
  }
}

// ---------------------------------------------------------------------------------------------
// cgroup v1 (the host)

microTest(
  "oci resources v1: swappiness, cpu.idle, cfs burst in the container's files; update changes them",
  async () => {
    await withTempDir(async (dir) => {
      const b = await resBundle(dir, {
        memory: { limit: 64 << 20, swappiness: 17 },
        cpu: { quota: 50000, period: 100000, burst: 20000, idle: 1 },
      });
      await created(dir, b, async (id, root) => {
        assert.equal(read(`${dirOf(id, "memory")}/memory.swappiness`), "17");
        assert.equal(read(`${dirOf(id, "cpu")}/cpu.cfs_burst_us`), "20000");
        assert.equal(read(`${dirOf(id, "cpu")}/cpu.idle`), "1");
        Deno.writeTextFileSync(
          `${dir}/r.json`,
          JSON.stringify({ memory: { swappiness: 3 }, cpu: { idle: 0 } }),
        );
        ok(await oci(root, ["update", "-r", `${dir}/r.json`, "--cpu-burst", "10000", id]));
        assert.equal(read(`${dirOf(id, "memory")}/memory.swappiness`), "3");
        assert.equal(read(`${dirOf(id, "cpu")}/cpu.idle`), "0");
        assert.equal(read(`${dirOf(id, "cpu")}/cpu.cfs_burst_us`), "10000");
        // unified has no v1 file: refused as runc does.
        Deno.writeTextFileSync(`${dir}/u.json`, '{"unified":{"memory.high":"1M"}}');
        const u = await oci(root, ["update", "-r", `${dir}/u.json`, id]);
        assert.equal(u.code, 125, show(u));
        assert.match(u.stderr, /resources\.unified: the container's cgroups are v1/);
      });
    });
  },
  { ignore: ONLY_V1 },
);

microTest(
  "oci resources v1: real-time runtime is written period first; a parent without budget is one line",
  async () => {
    await withTempDir(async (dir) => {
      // runc gives no budget to the parents it creates: neither does micro.
      const poor = await resBundle(dir, { cpu: { realtimePeriod: 100000, realtimeRuntime: 1000 } });
      await refused(
        dir,
        poor,
        /cpu\.rt_runtime_us.*(EINVAL|EBUSY)|(EINVAL|EBUSY).*cpu\.rt_runtime_us/,
      );
      // With a parent that has a budget (made here, removed after), the files hold the values.
      const parent = `mt-rt-${uniq()}`;
      const pdir = `${L.v1.cpu}/${parent}`;
      Deno.mkdirSync(pdir);
      try {
        // 5% of the parent's period (1 s) holds the child's 2% (2 ms in 100 ms).
        Deno.writeTextFileSync(`${pdir}/cpu.rt_runtime_us`, "50000");
        Deno.removeSync(`${dir}/bundle`, { recursive: true });
        const id = uniq();
        const b = await resBundle(
          dir,
          { cpu: { realtimePeriod: 100000, realtimeRuntime: 2000 } },
          (c) => (c.linux.cgroupsPath = `/${parent}/${id}`),
        );
        const root = `${dir}/state`;
        try {
          ok(await oci(root, ["create", "-b", b, id]));
          assert.equal(read(`${pdir}/${id}/cpu.rt_period_us`), "100000");
          assert.equal(read(`${pdir}/${id}/cpu.rt_runtime_us`), "2000");
        } finally {
          await oci(root, ["delete", "--force", id]);
        }
        assert.ok(!exists(`${pdir}/${id}`), "the container's cgroup is removed");
      } finally {
        Deno.removeSync(pdir);
      }
    });
  },
  { ignore: ONLY_V1 },
);

microTest(
  "oci resources v1: unified and an unmounted hugetlb/net_cls/net_prio are refused naming it",
  async () => {
    await withTempDir(async (dir) => {
      const cases: [Config, RegExp][] = [
        [
          { unified: { "memory.high": "1M" } },
          /--resources\.unified: this host is cgroup (v1|hybrid): unified keys need cgroup v2/,
        ],
      ];
      // runc: "cannot set hugetlb limit: container could not join or create cgroup".
      if (!L.v1.hugetlb) {
        cases.push([
          { hugepageLimits: [{ pageSize: "2MB", limit: 2097152 }] },
          /--resources\.hugepageLimits: the hugetlb controller is not mounted \(cgroup v1\)/,
        ]);
      }
      if (!L.v1.net_cls) {
        cases.push([
          { network: { classID: 1 } },
          /--resources\.network\.classID: the net_cls controller is not mounted/,
        ]);
      }
      if (!L.v1.rdma) {
        cases.push([
          { rdma: { mlx5_0: { hcaHandles: 1 } } },
          /--resources\.rdma: the rdma controller is not mounted/,
        ]);
      }
      for (const [res, re] of cases) {
        const b = await resBundle(dir, res);
        await refused(dir, b, re);
        Deno.removeSync(b, { recursive: true });
      }
    });
  },
  { ignore: ONLY_V1 },
);

microTest(
  "oci resources v1: hugetlb, net_cls and net_prio files hold the values (hierarchies mounted in a namespace of the test's)",
  async () => {
    await withTempDir(async (dir) => {
      const pages = `${dir}/hugetlb`;
      const net = `${dir}/net`;
      Deno.mkdirSync(pages);
      Deno.mkdirSync(net);
      const b = await resBundle(dir, {
        hugepageLimits: [{ pageSize: "2MB", limit: 4 << 20 }],
        network: { classID: 0x100002, priorities: [{ name: "lo", priority: 5 }] },
      });
      const id = uniq();
      const root = `${dir}/state`;
      // Everything inside one private mount namespace: the hierarchies are mounted there
      // only, micro runs there, and the namespace (and its mounts) ends with the shell.
      const script = `set -e
mount -t cgroup -o hugetlb none "${pages}"
mount -t cgroup -o net_cls,net_prio none "${net}"
trap '"$M" --root "${root}" delete --force ${id} >/dev/null 2>&1 || true
  rmdir "${pages}/micro-oci" "${net}/micro-oci" 2>/dev/null || true
  umount "${pages}" "${net}"' EXIT
"$M" --root "${root}" create -b "${b}" ${id}
echo "huge=$(cat "${pages}/micro-oci/${id}/hugetlb.2MB.limit_in_bytes")"
echo "classid=$(cat "${net}/micro-oci/${id}/net_cls.classid")"
echo "prio=$(grep '^lo ' "${net}/micro-oci/${id}/net_prio.ifpriomap")"
"$M" --root "${root}" delete --force ${id}
test ! -e "${net}/micro-oci/${id}" && echo removed
`;
      const { code, out, err } = await inMountNamespace(script);
      assert.equal(code, 0, `${out}\n${err}`);
      assert.match(out, new RegExp(`huge=${4 << 20}\n`));
      assert.match(out, new RegExp(`classid=${0x100002}\n`));
      assert.match(out, /prio=lo 5\n/);
      assert.match(out, /removed\n/);
    });
  },
  { ignore: ONLY_V1 ?? NEEDS.unshare },
);

microTest(
  "oci v1: micro-oci made by micro goes with the last delete; one an admin made (with a limit) stays",
  async () => {
    await withTempDir(async (dir) => {
      // hugetlb, mounted in the test's mount namespace: a hierarchy of the test's own where
      // the host mounts none (the kernel's one hugetlb hierarchy where it does: then the
      // test leaves it alone unless it holds no cgroup at all).
      const pages = `${dir}/hugetlb`;
      Deno.mkdirSync(pages);
      const b = await resBundle(dir, { hugepageLimits: [{ pageSize: "2MB", limit: 4 << 20 }] });
      const root = `${dir}/state`;
      const [a, c] = [uniq(), uniq()];
      const script = `set -e
mount -t cgroup -o hugetlb none "${pages}"
if ls -d "${pages}"/*/ >/dev/null 2>&1; then umount "${pages}"; echo "in use"; exit 0; fi
trap '"$M" --root "${root}" delete --force ${a} >/dev/null 2>&1 || true
  "$M" --root "${root}" delete --force ${c} >/dev/null 2>&1 || true
  rmdir "${pages}/micro-oci" 2>/dev/null || true
  umount "${pages}"' EXIT
"$M" --root "${root}" create -b "${b}" ${a}
"$M" --root "${root}" delete --force ${a}
test ! -e "${pages}/micro-oci" && echo "micro's removed"
mkdir "${pages}/micro-oci"
echo $((8 << 20)) > "${pages}/micro-oci/hugetlb.2MB.limit_in_bytes"
"$M" --root "${root}" create -b "${b}" ${c}
"$M" --root "${root}" delete --force ${c}
test ! -e "${pages}/micro-oci/${c}" && echo "container's removed"
echo "admin's limit=$(cat "${pages}/micro-oci/hugetlb.2MB.limit_in_bytes")"
`;
      const { code, out, err } = await inMountNamespace(script);
      assert.equal(code, 0, `${out}\n${err}`);
      if (out === "in use\n") {
        console.log("skipped: this host's hugetlb hierarchy holds cgroups of its own");
        return;
      }
      assert.equal(
        out,
        `micro's removed\ncontainer's removed\nadmin's limit=${8 << 20}\n`,
        `${out}\n${err}`,
      );
    });
  },
  { ignore: ONLY_V1 ?? NEEDS.unshare },
);

// ---------------------------------------------------------------------------------------------
// cgroup v2 (the guest)

microTest(
  "oci resources v2: unified keys, cpu.idle, cpu.max.burst, hugetlb, swap land in the files; update writes unified",
  async () => {
    await withTempDir(async (dir) => {
      const hugetlb = V2_CONTROLLERS.includes("hugetlb") &&
        exists("/sys/kernel/mm/hugepages/hugepages-2048kB");
      const b = await resBundle(dir, {
        memory: { limit: 64 << 20, swap: 96 << 20, swappiness: 10 },
        cpu: { quota: 50000, period: 100000, burst: 10000, idle: 0 },
        ...(hugetlb ? { hugepageLimits: [{ pageSize: "2MB", limit: 4 << 20 }] } : {}),
        network: { classID: 3 },
        unified: { "memory.high": "48M", "pids.max": "21" },
      });
      const root = `${dir}/state`;
      const id = uniq();
      try {
        const c = await oci(root, ["create", "-b", b, id]);
        assert.equal(c.code, 0, show(c));
        // What v2 has no file for is a warning each, as runc leaves them unapplied.
        assert.match(c.stderr, /memory\.swappiness: cgroup v2 has no per-cgroup swappiness/);
        assert.match(c.stderr, /network: net_cls and net_prio are cgroup v1 controllers/);
        const d = dirOf(id);
        assert.equal(read(`${d}/memory.high`), String(48 << 20));
        assert.equal(read(`${d}/pids.max`), "21");
        assert.equal(read(`${d}/memory.swap.max`), String(32 << 20));
        assert.equal(read(`${d}/cpu.idle`), "0");
        assert.equal(read(`${d}/cpu.max`), "50000 100000");
        assert.equal(read(`${d}/cpu.max.burst`), "10000");
        if (hugetlb) assert.equal(read(`${d}/hugetlb.2MB.max`), String(4 << 20));
        Deno.writeTextFileSync(
          `${dir}/r.json`,
          JSON.stringify({ unified: { "memory.high": "max" }, cpu: { idle: 1 } }),
        );
        ok(await oci(root, ["update", "-r", `${dir}/r.json`, id]));
        assert.equal(read(`${d}/memory.high`), "max");
        assert.equal(read(`${d}/cpu.idle`), "1");
      } finally {
        await oci(root, ["delete", "--force", id]);
      }
    });
  },
  { ignore: ONLY_V2 },
);

microTest(
  "oci resources v2: a unified key's controller must be there, a path is refused, rdma.max names its errno",
  async () => {
    await withTempDir(async (dir) => {
      const cases: [Config, RegExp][] = [
        [
          { unified: { "net_cls.classid": "1" } },
          /--resources\.unified\.net_cls\.classid: the net_cls controller is not available/,
        ],
        [
          { unified: { "../../cgroup.procs": "1" } },
          /linux\.resources\.unified\["\.\.\/\.\.\/cgroup\.procs"\]: invalid key .*no '\/', not '\.\.'/,
        ],
      ];
      if (V2_CONTROLLERS.includes("rdma")) {
        // No RDMA device in the guest: the kernel refuses the line, said with its errno.
        cases.push([
          { rdma: { nosuchdev0: { hcaHandles: 1 } } },
          /rdma\.max.*E[A-Z]+|E[A-Z]+.*rdma\.max/,
        ]);
      }
      for (const [res, re] of cases) {
        const b = await resBundle(dir, res);
        await refused(dir, b, re);
        Deno.removeSync(b, { recursive: true });
      }
    });
  },
  { ignore: ONLY_V2 },
);

microTest(
  "oci resources v2: a per-device weight goes to io.bfq.weight, else io.weight's device line",
  async () => {
    await withTempDir(async (dir) => {
      // The guest's loop0, with iocost enabled on it for the test (io.weight takes a
      // device line only there; without BFQ or iocost the kernel says EIO). The guest's
      // root is thrown away at power-off; a real host's io.cost.qos is never touched.
      const guest = Deno.env.get("MICRO_CGROUP") === "v2";
      const dev = "/dev/loop0";
      const rdev = Deno.statSync(dev).rdev!;
      const major = Math.floor(rdev / 256) & 0xfff;
      const minor = (rdev & 0xff) | ((rdev >> 12) & 0xfff00);
      const qos = `${L.v2}/io.cost.qos`;
      if (guest) Deno.writeTextFileSync(qos, `${major}:${minor} enable=1`);
      const b = await resBundle(dir, {
        blockIO: { weightDevice: [{ major, minor, weight: 200 }] },
      });
      const root = `${dir}/state`;
      const id = uniq();
      try {
        const c = await oci(root, ["create", "-b", b, id]);
        if (!guest && c.code !== 0) {
          // A host without BFQ or iocost on the device: one line, its errno.
          assert.match(c.stderr, /io\.(bfq\.)?weight.*E[A-Z]+/, show(c));
          return;
        }
        assert.equal(c.code, 0, show(c));
        const d = dirOf(id);
        const bfq = exists(`${d}/io.bfq.weight`);
        const text = read(`${d}/${bfq ? "io.bfq.weight" : "io.weight"}`);
        // BFQ takes blkio's 10..1000; io.weight its own 1..10000 scale (runc's conversion).
        assert.match(text, new RegExp(`^${major}:${minor} ${bfq ? 200 : 1920}$`, "m"), text);
      } finally {
        await oci(root, ["delete", "--force", id]);
        if (guest) Deno.writeTextFileSync(qos, `${major}:${minor} enable=0`);
      }
    });
  },
  { ignore: ONLY_V2 ?? (exists("/dev/loop0") ? undefined : "no /dev/loop0") },
);
