/**
 * Rootless id maps: /etc/subuid parsing as shadow-utils reads it, podman's map layout, the
 * probe over real files in a temp dir, the plan a rootless caller gets with and without a
 * range, its checks, and the engine running the setuid helpers.
 */
import assert from "node:assert/strict";
import { CGROUP_FACTS } from "./_host.ts";
import {
  buildMap,
  findHelper,
  hostIdOf,
  mappedCount,
  mapText,
  parseSubids,
  passwdEntry,
  probeRootlessIds,
  rootlessIdMap,
  type RootlessIds,
  rootlessMaps,
} from "../../core/idmap.ts";
import { runChecks } from "../../core/checks.ts";
import { runIdmapHelper } from "../../core/engine/idmap_helper.ts";
import { MicroError } from "../../core/errors.ts";
import { op } from "../../core/ops.ts";
import { buildSpec, formatPlan, planRun } from "../../core/plan.ts";
import type { HostInfo } from "../../core/plugin.ts";
import { resolveProfile } from "../../core/profile.ts";
import { openLibc } from "../../core/sys/libc.ts";
import { PLUGINS } from "../../plugins/mod.ts";

const SUBUID = `# ranges for rootless users
alice:100000:65536
1001:200000:65536

bob:300000:65536
alice:400000:1000
carol:500000:0
alice:600000
alice:x:10
alice:4294967000:1000
  alice:700000:5  \n`;

Deno.test("subuid: ranges by name and by uid, in file order; comments and bad lines skipped", () => {
  assert.deepEqual(parseSubids(SUBUID, "alice", 1000), [
    { start: 100000, count: 65536 },
    { start: 400000, count: 1000 },
    { start: 700000, count: 5 },
  ]);
  // A numeric owner matches the uid, whatever the name.
  assert.deepEqual(parseSubids(SUBUID, "dave", 1001), [{ start: 200000, count: 65536 }]);
  // A count of 0 is no range; an unknown user has none; "" never matches an empty owner.
  assert.deepEqual(parseSubids(SUBUID, "carol", 1002), []);
  assert.deepEqual(parseSubids(SUBUID, "nobody", 65534), []);
  assert.deepEqual(parseSubids(":1:2\n", "", 5), []);
  // A range past the last valid id (4294967294) is skipped.
  assert.deepEqual(parseSubids("x:4294967295:1\nx:4294967294:1\n", "x", 7), [
    { start: 4294967294, count: 1 },
  ]);
});

Deno.test("maps: podman's layout, root is the caller and 1..size the ranges", () => {
  assert.deepEqual(buildMap(1000, [{ start: 100000, count: 65536 }], 65536), [
    { containerID: 0, hostID: 1000, size: 1 },
    { containerID: 1, hostID: 100000, size: 65536 },
  ]);
  // Several ranges fill in order until size; a smaller size cuts the first.
  const two = [{ start: 100000, count: 10 }, { start: 300000, count: 100 }];
  assert.equal(mapText(buildMap(1000, two, 50)), "0 1000 1 1 100000 10 11 300000 40");
  assert.equal(mapText(buildMap(1000, two, 5)), "0 1000 1 1 100000 5");
  // The caller's own id is cut out of a range that holds it (lines must not overlap).
  assert.equal(
    mapText(buildMap(100005, [{ start: 100000, count: 10 }], 100)),
    "0 100005 1 1 100000 5 6 100006 4",
  );
  // The kernel takes 340 lines at most.
  const many = Array.from({ length: 500 }, (_, i) => ({ start: 100000 + 2 * i, count: 1 }));
  assert.equal(buildMap(1000, many, 1000).length, 340);
});

Deno.test("maps: container id to host id, and the ids mapped from 0 without a gap", () => {
  const map = buildMap(1000, [{ start: 100000, count: 10 }, { start: 300000, count: 5 }], 100);
  assert.equal(hostIdOf(map, 0), 1000);
  assert.equal(hostIdOf(map, 1), 100000);
  assert.equal(hostIdOf(map, 10), 100009);
  assert.equal(hostIdOf(map, 11), 300000);
  assert.equal(hostIdOf(map, 16), undefined);
  assert.equal(mappedCount(map), 16);
  assert.equal(mappedCount([{ containerID: 1, hostID: 5, size: 3 }]), 0);
});

const IDS: RootlessIds = {
  user: "alice",
  subuid: [{ start: 100000, count: 65536 }],
  subgid: [{ start: 200000, count: 65536 }],
  newuidmap: "/usr/bin/newuidmap",
  newgidmap: "/usr/bin/newgidmap",
};

Deno.test("maps: a range and both helpers give the helpers' maps; else one reason", () => {
  const m = rootlessMaps(1000, 1000, IDS);
  assert.ok(!("reason" in m));
  assert.equal(mapText(m.uid), "0 1000 1 1 100000 65536");
  assert.equal(mapText(m.gid), "0 1000 1 1 200000 65536");
  const why = (ids: Partial<RootlessIds>) => {
    const r = rootlessMaps(1000, 1000, { ...IDS, ...ids });
    return "reason" in r ? r.reason : "";
  };
  assert.equal(why({ subuid: [] }), 'no range for "alice" in /etc/subuid');
  assert.equal(
    why({ subuid: [], subgid: [], user: "" }),
    "no range for uid 1000 in " +
      "/etc/subuid and /etc/subgid",
  );
  assert.equal(
    why({ newgidmap: undefined }),
    "newgidmap not found (installed by root) in PATH or /usr/bin",
  );
});

Deno.test("probe: the caller's name from passwd, its ranges, and setuid-root helpers only", () => {
  const dir = Deno.makeTempDirSync({ prefix: "micro-idmap-" });
  try {
    Deno.writeTextFileSync(`${dir}/passwd`, "root:x:0:0::/root:/bin/sh\nalice:x:1000:1001::/:/\n");
    Deno.writeTextFileSync(`${dir}/subuid`, "alice:100000:65536\n");
    Deno.writeTextFileSync(`${dir}/subgid`, "1000:200000:65536\n");
    // A helper that root did not install does not count.
    Deno.writeTextFileSync(`${dir}/newuidmap`, "#!/bin/sh\n");
    Deno.chmodSync(`${dir}/newuidmap`, 0o4755);
    if (Deno.uid() === 0) Deno.chownSync(`${dir}/newuidmap`, 1000, 1000);
    const sys = openLibc();
    const files = {
      passwd: `${dir}/passwd`,
      subuid: `${dir}/subuid`,
      subgid: `${dir}/subgid`,
      path: dir,
    };
    const ids = probeRootlessIds(sys, 1000, files);
    assert.equal(ids.user, "alice");
    assert.equal(ids.passwdGid, 1001);
    assert.deepEqual(ids.subuid, [{ start: 100000, count: 65536 }]);
    assert.deepEqual(ids.subgid, [{ start: 200000, count: 65536 }]);
    assert.equal(findHelper(sys, "newuidmap", dir) === `${dir}/newuidmap`, false);
    // A missing file, or one that is not a regular file, has no range.
    Deno.removeSync(`${dir}/subgid`);
    Deno.mkdirSync(`${dir}/subgid`);
    const none = probeRootlessIds(sys, 1000, files);
    assert.deepEqual(none.subgid, []);
    assert.equal(none.newuidmap, undefined);
    const map = rootlessIdMap(sys, 1000, 1001, 65536, files);
    assert.deepEqual(map, { reason: 'no range for "alice" in /etc/subgid' });
    if (Deno.uid() === 0) {
      // As root here: one owned by root and executable by others is found first in PATH.
      Deno.chownSync(`${dir}/newuidmap`, 0, 0);
      assert.equal(findHelper(sys, "newuidmap", `relative:${dir}`), `${dir}/newuidmap`);
      Deno.chmodSync(`${dir}/newuidmap`, 0o4750);
      assert.notEqual(findHelper(sys, "newuidmap", dir), `${dir}/newuidmap`);
    }
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("passwd: the name and primary gid of a uid", () => {
  assert.deepEqual(passwdEntry("a:x:1:2::/:/\nb:x:1000:100::/:/\n", 1000), { name: "b", gid: 100 });
  assert.equal(passwdEntry("a:x:1:2::/:/\n", 1000), null);
});

// ---- plans ------------------------------------------------------------------------------

const PASSWD = "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n" +
  "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n";
const GROUP = "root:x:0:\nstaff:x:50:app\napp:x:1000:\nnogroup:x:65534:\n";

function host(over: Partial<HostInfo> = {}): HostInfo {
  return {
    arch: "x86_64",
    uid: 1000,
    gid: 1000,
    id: "0123456789ab",
    stateDir: "/run/user/1000/micro/0123456789ab",
    containerDir: "/home/alice/.local/share/micro/containers/0123456789ab",
    hostView: [],
    devices: ["null"],
    passwd: PASSWD,
    group: GROUP,
    sourceKinds: {},
    image: "dir",
    files: {},
    capLastCap: 40,
    lsm: { apparmor: false, selinux: false, landlock: 0 },
    ...CGROUP_FACTS,
    rootlessIds: IDS,
    ...over,
  };
}

/** A rootless run's spec: its user plugin is on (as core/run.ts turns it on without root). */
function specOf(profiles: string[], layer: Record<string, unknown> = {}) {
  const { profile } = resolveProfile(profiles, { user: {}, ...layer }, PLUGINS);
  return buildSpec(
    { image: "/img", args: ["id"], terminal: false, stdin: false },
    profile,
    PLUGINS,
  );
}

function plan(profiles: string[], h: HostInfo, layer: Record<string, unknown> = {}) {
  return formatPlan(planRun(specOf(profiles, layer), h, PLUGINS));
}

Deno.test("plan: a rootless range is mapped by the helpers, setgroups stays allowed", () => {
  const out = plan(["hardened"], host(), { process: { groups: ["staff"] } });
  assert.match(
    out,
    /attach +user +idmap-helper helper=\/usr\/bin\/newuidmap map=uid_map args="0 1000 1 1 100000 65536"/,
  );
  assert.match(
    out,
    /attach +user +idmap-helper helper=\/usr\/bin\/newgidmap map=gid_map args="0 1000 1 1 200000 65536"/,
  );
  assert.doesNotMatch(out, /proc-write/);
  assert.doesNotMatch(out, /user +skipped/);
  // hardened's fallback user exists in the image and is mapped now; --group-add works.
  assert.match(out, /setgroups gids=\[50\]/);
  assert.match(out, /setresuid uid=65534/);
  assert.match(out, /mode=0620,gid=5/);
  // uid before gid, as podman; both before the child's own set-up.
  const lines = out.split("\n");
  const u = lines.findIndex((l) => l.includes("map=uid_map"));
  const g = lines.findIndex((l) => l.includes("map=gid_map"));
  assert.ok(u >= 0 && u < g, out);
});

Deno.test("plan: the user plugin's size sets how many ids sit above root", () => {
  const out = plan([], host(), { user: { size: 1000 } });
  assert.match(out, /args="0 1000 1 1 100000 1000"/);
});

Deno.test("plan: without a range, the single-id map and one warning (a skipped op)", () => {
  const h = host({ rootlessIds: { ...IDS, subuid: [] } });
  const out = plan(["hardened"], h);
  assert.match(out, /file=setgroups content=deny/);
  assert.match(out, /file=uid_map content="0 1000 1\\n"/);
  const skipped = planRun(specOf(["hardened"]), h, PLUGINS).filter((o) =>
    o.kind === "skipped" && o.plugin === "user"
  );
  assert.equal(skipped.length, 1, out);
  assert.equal(
    skipped[0].kind === "skipped" && skipped[0].args.reason,
    'only your own uid and gid are mapped (no range for "alice" in /etc/subuid): files of ' +
      "other owners show as nobody and --user must be root; add ranges to /etc/subuid and " +
      "/etc/subgid and install newuidmap and newgidmap (Debian: uidmap), as for podman",
  );
  assert.doesNotMatch(out, /idmap-helper/);
  assert.match(out, /setresuid uid=0/);
});

Deno.test("plan: as root nothing changes (the micro account's range, no helpers)", () => {
  const out = plan(["hardened"], host({ uid: 0, gid: 0, rootlessIds: undefined }));
  assert.match(out, /file=uid_map content="0 1000000000 65536\\n"/);
  assert.doesNotMatch(out, /idmap-helper|user +skipped/);
});

Deno.test("checks: --user is allowed rootless within the range, refused past it or without one", () => {
  const check = (h: HostInfo, user: string, size?: number) =>
    runChecks(specOf([], { process: { user }, ...(size ? { user: { size } } : {}) }), h)
      .map((e) => e.line());
  assert.deepEqual(check(host(), "1000"), []);
  assert.deepEqual(check(host(), "app"), []);
  assert.deepEqual(check(host(), "1000", 100), [
    "check: uid 1000, gid 1000 not mapped in this rootless container (ids 0 to 100 are) " +
    "(use a lower id, or a larger range in /etc/subuid and /etc/subgid (user plugin size))",
  ]);
  const none = check(host({ rootlessIds: { ...IDS, newuidmap: undefined } }), "1000");
  assert.equal(none.length, 1);
  assert.match(
    none[0],
    /^check: user 1000:1000 is not mapped in a rootless container \(newuidmap /,
  );
  assert.match(none[0], /add ranges to \/etc\/subuid and \/etc\/subgid and install uidmap/);
});

// ---- the engine runs the helpers ----------------------------------------------------------

Deno.test("engine: the helper gets the pid and the map; a failure is one line", async () => {
  const dir = Deno.makeTempDirSync({ prefix: "micro-idmap-" });
  try {
    const helper = `${dir}/newuidmap`;
    Deno.writeTextFileSync(
      helper,
      `#!/bin/sh\necho "$@" > ${dir}/args\nenv > ${dir}/env\n` +
        `[ "$2" = 0 ] && exit 0\necho "newuidmap: uid range [1-2) -> [5-6) not allowed" >&2\n` +
        `echo second line >&2\nexit 1\n`,
    );
    Deno.chmodSync(helper, 0o755);
    const ok = op("attach", "user", "idmap-helper", { helper, map: "uid_map", args: "0 1000 1" });
    await runIdmapHelper(ok as never, 4242, openLibc());
    assert.equal(Deno.readTextFileSync(`${dir}/args`), "4242 0 1000 1\n");
    // Nothing of micro's environment reaches the setuid helper.
    assert.doesNotMatch(Deno.readTextFileSync(`${dir}/env`), /^HOME=/m);
    const bad = op("attach", "user", "idmap-helper", { helper, map: "uid_map", args: "1 5 1" });
    const e = await runIdmapHelper(bad as never, 4242, openLibc()).then(() => null, (e) => e);
    assert.ok(e instanceof MicroError);
    assert.equal(
      e.line(),
      'attach: user: newuidmap pid=4242 uid_map="1 5 1": exit status 1: newuidmap: uid range ' +
        "[1-2) -> [5-6) not allowed; second line (check your ranges in /etc/subuid and that " +
        `${helper} is setuid root (or has file capabilities))`,
    );
    const gone = op("attach", "user", "idmap-helper", {
      helper: `${dir}/missing`,
      map: "gid_map",
      args: "0 1000 1",
    });
    const m = await runIdmapHelper(gone as never, 1, openLibc()).then(() => null, (e) => e);
    assert.match(
      m.line(),
      /^attach: user: missing pid=1 gid_map="0 1000 1": cannot run .*: ENOENT/,
    );
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});
