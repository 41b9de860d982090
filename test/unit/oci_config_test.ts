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
  assert.deepEqual(cgroup, { parent: "micro-oci", name: "id1" });
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
    () => translate((c) => c.linux.namespaces.push({ type: "time" })),
    /time namespaces are not supported/,
  );
  throwsLine(
    () => translate((c) => (c.linux.namespaces = [{ type: "mount" }])),
    /hostname: set without a uts namespace/,
  );
});

Deno.test("oci config: what micro cannot honour is an error (MUST) or a warning (SHOULD)", () => {
  throwsLine(() => translate((c) => (c.process.scheduler = { policy: "SCHED_OTHER" })), /sched/);
  throwsLine(
    () => translate((c) => (c.hooks = { createContainer: [{ path: "/x" }] })),
    /hooks\.createContainer: hooks run inside the container are not supported/,
  );
  throwsLine(() => translate((c) => (c.hooks = { prestart: [{ path: "x" }] })), /absolute path/);
  throwsLine(
    () => translate((c) => (c.linux.resources.hugepageLimits = [])),
    /linux\.resources\.hugepageLimits: not supported/,
  );
  throwsLine(
    () => translate((c) => c.mounts.push({ destination: "/x", type: "nfs", source: "h:/x" })),
    /"nfs" is not supported/,
  );
  const { warnings, spec } = translate((c) => {
    c.mounts.push({ destination: "/data", source: "data", options: ["rbind", "rslave"] });
    c.linux.resources.memory = { limit: 1 << 26, swappiness: 0 };
  });
  assert.equal(warnings.length, 2, warnings.join("\n"));
  const data = spec.mounts.find((m) => m.destination === "/data")!;
  assert.equal(data.type, "bind");
  assert.equal(data.source, "/b/data");
  assert.deepEqual(data.options, ["rbind"]);
  assert.deepEqual(spec.linux.resources?.memory, { limit: 1 << 26 });
});

Deno.test("oci config: cgroupsPath is a parent and a leaf; systemd's form is refused", () => {
  assert.deepEqual(cgroupOf("/machine/abc", "id"), { parent: "machine", name: "abc" });
  assert.deepEqual(cgroupOf("a/b/c", "id"), { parent: "a/b", name: "c" });
  assert.deepEqual(cgroupOf("/abc", "id"), { parent: "micro-oci", name: "abc" });
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

Deno.test("oci ids and cgroupsPath: a name over NAME_MAX (255) is refused up front, in one line", () => {
  assert.equal(checkId("a".repeat(255)), "a".repeat(255));
  assert.throws(
    () => checkId("a".repeat(256)),
    (e: Error) => e.message === "invalid container id: 256 characters, over 255",
  );
  assert.throws(() => checkId("a".repeat(1024)), /1024 characters, over 255/);
  assert.throws(() => checkId("a/b"), /invalid container id "a\/b"/);
  assert.deepEqual(cgroupOf(undefined, "x"), { parent: "micro-oci", name: "x" });
  assert.deepEqual(cgroupOf(`/p/${"l".repeat(255)}`, "x"), { parent: "p", name: "l".repeat(255) });
  assert.throws(() => cgroupOf(`/p/${"l".repeat(256)}`, "x"), /not a cgroup path micro accepts/);
});
