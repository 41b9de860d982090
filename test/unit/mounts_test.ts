/**
 * Docker's mount spellings (-v, --tmpfs, --mount and their profile keys) become the same
 * spec entries, and the mount plugin plans volumes, parents-first order and /dev/shm.
 */
import assert from "node:assert/strict";
import { CGROUP_FACTS } from "./_host.ts";
import { parseMountFlag, parseTmpfs, parseVolumeFlag } from "../../core/mounts.ts";
import { buildSpec, planRun } from "../../core/plan.ts";
import type { HostInfo } from "../../core/plugin.ts";
import { resolveProfile } from "../../core/profile.ts";
import type { Op } from "../../core/ops.ts";
import { PLUGINS } from "../../plugins/mod.ts";

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
