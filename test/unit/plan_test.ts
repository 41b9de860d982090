/**
 * Golden plans: the ops `micro plan` prints for the built-in profiles, on a fixed host.
 * Run with UPDATE_GOLDEN=1 to rewrite the files after an intended change, then review
 * the diff like code.
 */
import { CGROUP_FACTS } from "./_host.ts";
import assert from "node:assert/strict";
import { buildSpec, formatPlan, planRun } from "../../core/plan.ts";
import type { HostInfo } from "../../core/plugin.ts";
import type { Op } from "../../core/ops.ts";
import { resolveProfile } from "../../core/profile.ts";
import { PLUGINS } from "../../plugins/mod.ts";

const PASSWD = "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n" +
  "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n";
const GROUP = "root:x:0:\nstaff:x:50:app\napp:x:1000:\nnogroup:x:65534:\n";

function host(over: Partial<HostInfo> = {}): HostInfo {
  return {
    arch: "x86_64",
    uid: 0,
    gid: 0,
    id: "0123456789ab",
    stateDir: "/run/micro/0123456789ab",
    containerDir: "/var/lib/micro/containers/0123456789ab",
    hostView: [
      { path: "/usr", kind: "dir" },
      { path: "/bin", kind: "symlink", target: "usr/bin" },
      { path: "/lib", kind: "symlink", target: "usr/lib" },
      { path: "/etc", kind: "dir" },
    ],
    devices: ["null", "zero", "full", "random", "urandom", "tty"],
    passwd: PASSWD,
    group: GROUP,
    sourceKinds: { "/srv/data": "dir", "/srv/app.conf": "file" },
    image: "dir",
    files: {},
    capLastCap: 40,
    lsm: { apparmor: false, selinux: false, landlock: 7 },
    ...CGROUP_FACTS,
    ...over,
  };
}

function plan(profiles: string[], image: string | null, args: string[], h = host(), layer = {}) {
  const { profile } = resolveProfile(profiles, layer, PLUGINS);
  const spec = buildSpec({ image, args, terminal: false, stdin: false }, profile, PLUGINS);
  return formatPlan(planRun(spec, h, PLUGINS));
}

async function golden(name: string, actual: string) {
  const path = new URL(`../golden/${name}.plan`, import.meta.url);
  if (Deno.env.get("UPDATE_GOLDEN")) await Deno.writeTextFile(path, actual);
  assert.equal(actual, await Deno.readTextFile(path));
}

Deno.test("plan for the default profile matches its golden file", async () => {
  await golden("default", plan([], "/images/busybox", ["sh", "-c", "id"]));
});

Deno.test("plan for the hardened profile matches its golden file", async () => {
  await golden("hardened", plan(["hardened"], "/images/busybox", ["sh", "-c", "id"]));
});

Deno.test("plan for the hardened host view (no image) matches its golden file", async () => {
  await golden("hardened-hostview", plan(["hardened"], null, ["/bin/true"], host({ image: null })));
});

Deno.test("plan with binds, user, ulimits and env matches its golden file", async () => {
  const layer = {
    mount: { binds: ["/srv/data:/data:ro", "/srv/app.conf:/etc/app.conf"], tmpfs: ["/scratch"] },
    process: {
      user: "app",
      env: { FOO: "bar" },
      cwd: "/data",
      rlimits: { nofile: "512:1024" },
    },
    uts: { hostname: "web1" },
  };
  await golden("flags", plan([], "/images/busybox", ["ls"], host(), layer));
});

Deno.test("a rootless plan maps only the caller and denies setgroups first", () => {
  const out = plan(["hardened"], "/img", ["true"], host({ uid: 1000, gid: 1000 }));
  const lines = out.split("\n");
  const deny = lines.findIndex((l) => l.includes("file=setgroups content=deny"));
  const gidMap = lines.findIndex((l) => l.includes("file=gid_map"));
  assert.ok(deny >= 0 && deny < gidMap, out);
  assert.match(out, /file=uid_map content="0 1000 1\\n"/);
  assert.doesNotMatch(out, /setgroups gids/);
});

Deno.test("ops come out in the fixed phase order", () => {
  const order = [
    "prepare",
    "clone",
    "attach",
    "rootfs",
    "identity",
    "credentials",
    "restrict",
    "exec",
    "supervise",
    "cleanup",
  ];
  const phases = plan(["hardened"], "/img", ["true"]).trim().split("\n").map((l) =>
    l.trim().split(/\s+/)[1]
  );
  const ranks = phases.map((p) => order.indexOf(p));
  assert.ok(ranks.every((r) => r >= 0), phases.join(","));
  assert.deepEqual(ranks, [...ranks].sort((a, b) => a - b));
});

Deno.test("--init (process.init) marks the execve op, which micro plan shows", () => {
  const execve = (layer: Record<string, unknown>) =>
    plan(["default"], "/images/busybox", ["sleep", "1"], host(), layer).split("\n")
      .find((l) => l.includes(" execve "))!;
  assert.match(execve({ process: { init: true } }), / init=true$/);
  assert.doesNotMatch(execve({}), /init=/);
});

Deno.test("--rm plans the container directory's removal at the end; a kept one has none", () => {
  const ops = (remove: boolean) => {
    const { profile } = resolveProfile([], {}, PLUGINS);
    const spec = buildSpec(
      { image: "/images/busybox", args: ["true"], terminal: false, stdin: false, remove },
      profile,
      PLUGINS,
    );
    return planRun(spec, host(), PLUGINS).filter((o) => o.plugin === "overlay")
      .map((o) => `${o.phase} ${o.kind}`);
  };
  assert.deepEqual(ops(true), ["prepare overlay-dirs", "cleanup overlay-remove"]);
  assert.deepEqual(ops(false), ["prepare overlay-dirs"]);
});

Deno.test("the default hostname is the short container id, as Docker's, whatever the name", () => {
  // A name may be 128 characters; a hostname at most 64 (sethostname: EINVAL beyond).
  const name = "a".repeat(100);
  const named = host({ id: name, stateDir: `/run/micro/${name}`, hostname: "3f4e5d6c7b8a" });
  const out = plan([], "/images/busybox", ["sh"], named);
  assert.match(out, /sethostname name=3f4e5d6c7b8a\n/);
  assert.match(out, /"HOSTNAME=3f4e5d6c7b8a"/);
  assert.doesNotMatch(out, /sethostname name=a{100}/);
  // --hostname wins; up to 64 characters.
  const h64 = "h".repeat(64);
  const given = plan([], "/images/busybox", ["sh"], named, { uts: { hostname: h64 } });
  assert.match(given, new RegExp(`sethostname name=${h64}\\n`));
  assert.throws(
    () => resolveProfile([], { uts: { hostname: "h".repeat(65) } }, PLUGINS),
    /a hostname is 1 to 64 letters, digits, dots and dashes/,
  );
});

Deno.test("every run joins a new session keyring before its credentials; OCI --no-new-keyring not", () => {
  const { profile } = resolveProfile(["default"], {}, PLUGINS);
  const spec = () =>
    buildSpec(
      { image: "/images/busybox", args: ["true"], terminal: false, stdin: false },
      profile,
      PLUGINS,
    );
  const ops = planRun(spec(), host(), PLUGINS);
  const k = ops.findIndex((o) => o.kind === "session-keyring");
  assert.ok(k >= 0 && ops[k].phase === "identity");
  assert.ok(k < ops.findIndex((o) => o.kind === "seccomp"), "before seccomp refuses keyctl");
  const oci = spec();
  oci.micro.noNewKeyring = true;
  assert.ok(!planRun(oci, host(), PLUGINS).some((o) => o.kind === "session-keyring"));
});

Deno.test("formatPlan: one line per op; plain strings bare, others as JSON, long ones by size", () => {
  const long = "x".repeat(121);
  const op = (phase: string, plugin: string, kind: string, args: Record<string, unknown>) =>
    ({ phase, plugin, kind, args }) as unknown as Op;
  const text = formatPlan([
    op("rootfs", "mount", "mount", { target: "/proc", flags: ["MS_NOSUID"], data: "a b" }),
    op("exec", "process", "execve", { args: ["sh", "-c", "echo hi"], env: [], n: 3, u: undefined }),
    op("restrict", "seccomp", "seccomp", { program: long, empty: "" }),
  ]);
  assert.equal(
    text,
    '  1  rootfs      mount    mount target=/proc flags=["MS_NOSUID"] data="a b"\n' +
      '  2  exec        process  execve args=["sh","-c","echo hi"] env=[] n=3 u=undefined\n' +
      '  3  restrict    seccomp  seccomp program="<121 bytes>" empty=\n',
  );
});
