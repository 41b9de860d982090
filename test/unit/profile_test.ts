import assert from "node:assert/strict";
import { parseRun } from "../../core/cli.ts";
import { MicroError, MicroErrors } from "../../core/errors.ts";
import {
  MAX_EXTENDS_DEPTH,
  mergeLayers,
  normalizePath,
  type PluginSchema,
  type ResolveOptions,
  resolveProfile,
  RLIM_INFINITY,
} from "../../core/profile.ts";
import { listProfiles, profileToYaml, showProfile } from "../../core/profile_show.ts";
import type { Schema } from "../../core/schema_types.ts";
import { EMBEDDED } from "../../profiles/_embedded.ts";
import { EMBEDDED_FILE, readProfiles, render } from "../../tools/embed_profiles.ts";

const abs = (v: string) => v.startsWith("/") ? undefined : "must be an absolute path";
const paths: Schema = { type: "list", items: { type: "string", check: abs } };

import { caps } from "../../plugins/caps.ts";
import { lsm } from "../../plugins/lsm.ts";
import { readonly } from "../../plugins/readonly.ts";
import { seccomp } from "../../plugins/seccomp.ts";
import { cgroups } from "../../plugins/cgroups.ts";

/** Small stand-ins for the real plugins: the same names and option shapes. */
const PLUGINS: PluginSchema[] = [
  {
    name: "mount",
    schema: {
      type: "object",
      fields: {
        masked: paths,
        readonly: paths,
        binds: { type: "list", items: { type: "string" } },
        tmpfs: paths,
      },
    },
  },
  { name: "uts", schema: { type: "object", fields: { hostname: { type: "string" } } } },
  {
    name: "net",
    schema: {
      type: "object",
      fields: { mode: { type: "string", enum: ["none", "host", "auto"] } },
    },
  },
  { name: "user", schema: { type: "object", fields: { size: { type: "integer", min: 1 } } } },
  ...["pid", "ipc", "cgroupns", "overlay"].map((name) => ({
    name,
    schema: { type: "object", fields: {} } as const,
  })),
  // The hardening plugins' own schemas: the built-in profiles use them.
  caps,
  readonly,
  lsm,
  seccomp,
  cgroups,
];

/** Profiles in memory: files by path, plus built-ins. */
function fake(files: Record<string, string>, builtins?: Record<string, string>): ResolveOptions {
  return {
    readFile: (path) => {
      if (!Object.hasOwn(files, path)) throw new Deno.errors.NotFound(path);
      return files[path];
    },
    builtins: builtins ?? EMBEDDED,
  };
}

/** The lines of the error thrown by `fn`. */
function errorLines(fn: () => unknown): string[] {
  try {
    fn();
  } catch (e) {
    if (e instanceof MicroErrors) return e.errors.map((x) => x.line());
    if (e instanceof MicroError) return [e.line()];
    throw e;
  }
  throw new Error("expected an error");
}

// --- built-in profiles ------------------------------------------------------------------

Deno.test("embedded profiles are up to date with profiles/*.yaml", () => {
  const want = render(readProfiles());
  const have = Deno.readTextFileSync(EMBEDDED_FILE);
  assert.equal(
    have,
    want,
    "profiles/_embedded.ts is stale: run deno run -A tools/embed_profiles.ts",
  );
  assert.deepEqual(Object.keys(EMBEDDED).sort(), Object.keys(readProfiles()));
});

const MOD_URL = new URL("../../plugins/mod.ts", import.meta.url);
let hasPluginsMod = false;
try {
  hasPluginsMod = Deno.statSync(MOD_URL).isFile;
} catch { /* not written yet */ }

Deno.test({
  name: "built-in profiles validate against the real plugin schemas",
  ignore: !hasPluginsMod,
  fn: async () => {
    const { PLUGINS: real } = await import(MOD_URL.href) as { PLUGINS: PluginSchema[] };
    for (const name of Object.keys(EMBEDDED)) {
      const { profile } = resolveProfile([name], null, real);
      assert.ok(profile.sections.mount?.enabled, `${name}: mount enabled`);
    }
    // Every flag's layer fits the real schemas too.
    const req = parseRun([
      "run",
      ...["--hostname", "box", "--network", "host", "-v", "/srv:/srv:ro", "--tmpfs", "/run"],
      ...["-w", "/srv", "-u", "1000:1000", "--group-add", "44", "--ulimit", "nofile=1:2"],
      ...["-e", "A=1", "img", "sh"],
    ]);
    const { profile } = resolveProfile(["hardened"], req.layer, real);
    assert.deepEqual(profile.sections.uts.options, { hostname: "box" });
    assert.deepEqual(profile.sections.net.options, { mode: "host" });
    assert.deepEqual(profile.sections.mount.options.binds, ["/srv:/srv:ro"]);
  },
});
if (!hasPluginsMod) {
  console.log("ignored: built-in profiles vs real schemas: plugins/mod.ts does not exist yet");
}

Deno.test("no --profile resolves the default profile", () => {
  const { profile, sources } = resolveProfile([], null, PLUGINS, fake({}));
  assert.deepEqual(sources, ["builtin:default"]);
  assert.match(profile.description ?? "", /docker run/);
  assert.equal(
    profile.process.env.PATH,
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
  );
  assert.equal(profile.process.noNewPrivileges, false);
  for (const name of ["mount", "pid", "uts", "ipc", "net", "cgroupns"]) {
    assert.equal(profile.sections[name].enabled, true, name);
  }
  assert.deepEqual(profile.sections.user, { enabled: false, options: {} });
  assert.deepEqual(profile.sections.net.options, { mode: "auto" });
  assert.ok((profile.sections.mount.options.masked as string[]).includes("/proc/kcore"));
});

Deno.test("hardened extends default and adds the user namespace and no_new_privs", () => {
  const { profile, sources } = resolveProfile(["hardened"], null, PLUGINS, fake({}));
  assert.deepEqual(sources, ["builtin:default", "builtin:hardened"]);
  assert.match(profile.description ?? "", /including user/);
  assert.equal(profile.process.noNewPrivileges, true);
  assert.deepEqual(profile.sections.user, { enabled: true, options: {} });
  assert.equal(profile.sections.net.enabled, true);
  assert.ok(profile.process.env.PATH);
});

Deno.test("built-in profiles never read the disk", () => {
  const opts: ResolveOptions = {
    readFile: () => {
      throw new Error("read from disk");
    },
  };
  assert.doesNotThrow(() => resolveProfile(["hardened"], null, PLUGINS, opts));
});

Deno.test("listProfiles gives each built-in's name and description", () => {
  const list = listProfiles();
  assert.deepEqual(list.map((p) => p.name), ["default", "hardened"]);
  assert.ok(list.every((p) => p.description.length > 0));
  assert.deepEqual(listProfiles({ b: "description: bee\n", a: "{}\n" }), [
    { name: "a", description: "" },
    { name: "b", description: "bee" },
  ]);
});

// --- extends and composition ------------------------------------------------------------

Deno.test("a name without / or .yaml is a built-in, anything else is a file", () => {
  const opts = fake({ "web.yml": "uts: {hostname: web}\n", "./x": "uts: {hostname: x}\n" });
  assert.deepEqual(resolveProfile(["web.yml"], null, PLUGINS, opts).sources, ["web.yml"]);
  assert.deepEqual(resolveProfile(["./x"], null, PLUGINS, opts).sources, ["./x"]);
});

Deno.test("extends paths are relative to the extending file", () => {
  const opts = fake({
    "conf/app/web.yaml": "extends: ../base/common.yaml\nuts: {hostname: web}\n",
    "conf/base/common.yaml": "extends: [default, more.yaml]\nnet: {mode: host}\n",
    "conf/base/more.yaml": "ipc: {enabled: false}\n",
  });
  const { profile, sources } = resolveProfile(["conf/app/web.yaml"], null, PLUGINS, opts);
  assert.deepEqual(sources, [
    "builtin:default",
    "conf/base/more.yaml",
    "conf/base/common.yaml",
    "conf/app/web.yaml",
  ]);
  assert.deepEqual(profile.sections.uts.options, { hostname: "web" });
  assert.deepEqual(profile.sections.net.options, { mode: "host" });
  assert.equal(profile.sections.ipc.enabled, false);
});

Deno.test("extends reads real files relative to the extending file", () => {
  const dir = Deno.makeTempDirSync();
  try {
    Deno.mkdirSync(`${dir}/a`);
    Deno.writeTextFileSync(`${dir}/a/top.yaml`, "extends: ../base.yaml\n");
    Deno.writeTextFileSync(`${dir}/base.yaml`, "uts: {hostname: base}\n");
    const { profile, sources } = resolveProfile([`${dir}/a/top.yaml`], null, PLUGINS);
    assert.deepEqual(sources, [`${dir}/base.yaml`, `${dir}/a/top.yaml`]);
    assert.deepEqual(profile.sections.uts.options, { hostname: "base" });
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("a profile reached twice is applied once, where it is first reached", () => {
  const opts = fake({
    "a.yaml": "extends: default\nnet: {mode: host}\n",
    "b.yaml": "extends: default\nuts: {hostname: b}\n",
    "top.yaml": "extends: [a.yaml, b.yaml]\n",
  });
  const { profile, sources } = resolveProfile(["top.yaml"], null, PLUGINS, opts);
  assert.deepEqual(sources, ["builtin:default", "a.yaml", "b.yaml", "top.yaml"]);
  assert.deepEqual(profile.sections.net.options, { mode: "host" });
});

Deno.test("--profile layers compose left to right, later wins", () => {
  const opts = fake({
    "one.yaml": "uts: {hostname: one}\nnet: {mode: host}\n",
    "two.yaml": "uts: {hostname: two}\n",
  });
  const { profile, sources } = resolveProfile(
    ["hardened", "one.yaml", "two.yaml"],
    null,
    PLUGINS,
    opts,
  );
  assert.deepEqual(sources, ["builtin:default", "builtin:hardened", "one.yaml", "two.yaml"]);
  assert.deepEqual(profile.sections.uts.options, { hostname: "two" });
  assert.deepEqual(profile.sections.net.options, { mode: "host" });
  assert.equal(profile.process.noNewPrivileges, true);
});

Deno.test("later profile replaces lists and scalars and deep-merges maps", () => {
  const opts = fake({
    "base.yaml": "description: base\nmount: {masked: [/a, /b], readonly: [/r]}\n" +
      "process: {env: {A: '1', B: '2'}, user: app, groups: [audio]}\n",
    "top.yaml": "extends: base.yaml\ndescription: top\nmount: {masked: [/c]}\n" +
      "process: {env: {B: '3'}, user: '1000:1000', groups: [video]}\n",
  });
  const { profile } = resolveProfile(["top.yaml"], null, PLUGINS, opts);
  assert.equal(profile.description, "top");
  assert.deepEqual(profile.sections.mount.options, { masked: ["/c"], readonly: ["/r"] });
  assert.deepEqual(profile.process.env, { A: "1", B: "3" });
  assert.equal(profile.process.user, "1000:1000");
  assert.deepEqual(profile.process.groups, ["video"]);
});

Deno.test("a present section is enabled unless enabled: false; an absent one is off", () => {
  const opts = fake({
    "off.yaml": "extends: default\nnet: {enabled: false}\npid:\n",
    "on.yaml": "net: {mode: host}\n",
  }, { default: "net: {mode: none}\n" });
  const off = resolveProfile(["off.yaml"], null, PLUGINS, opts).profile.sections;
  assert.deepEqual(off.net, { enabled: false, options: { mode: "none" } });
  assert.deepEqual(off.pid, { enabled: true, options: {} });
  assert.deepEqual(off.ipc, { enabled: false, options: {} });
  const on = resolveProfile(["off.yaml", "on.yaml"], null, PLUGINS, opts).profile.sections;
  assert.deepEqual(on.net, { enabled: true, options: { mode: "host" } });
});

Deno.test("command line appends binds and tmpfs, merges env and replaces scalars", () => {
  const opts = fake({
    "web.yaml": "mount: {binds: ['/srv:/srv:ro'], tmpfs: [/run], masked: [/m]}\n" +
      "uts: {hostname: web}\nprocess: {env: {A: '1'}, cwd: /srv, groups: [g1]}\n",
  });
  const flags = {
    mount: { binds: ["/data:/data"], tmpfs: ["/tmp"] },
    uts: { hostname: "cli" },
    process: { env: { B: "2" }, cwd: "/data", groups: ["g2"] },
  };
  const { profile, sources } = resolveProfile(["web.yaml"], flags, PLUGINS, opts);
  assert.deepEqual(sources, ["web.yaml", "command line"]);
  assert.deepEqual(profile.sections.mount.options, {
    binds: ["/srv:/srv:ro", "/data:/data"],
    tmpfs: ["/run", "/tmp"],
    masked: ["/m"],
  });
  assert.deepEqual(profile.sections.uts.options, { hostname: "cli" });
  assert.deepEqual(profile.process.env, { A: "1", B: "2" });
  assert.equal(profile.process.cwd, "/data");
  assert.deepEqual(profile.process.groups, ["g2"]);
});

Deno.test("command line section turns its plugin on", () => {
  const opts = fake({}, { default: "uts: {enabled: false}\n" });
  const { profile } = resolveProfile([], { uts: { hostname: "h" } }, PLUGINS, opts);
  assert.deepEqual(profile.sections.uts, { enabled: true, options: { hostname: "h" } });
});

Deno.test("process values are normalized: numeric user and groups, parsed rlimits", () => {
  const opts = fake({
    "p.yaml": "process:\n  user: 1000\n  groups: [10, wheel]\n  noNewPrivileges: true\n" +
      "  rlimits:\n    nofile: 1024\n    nproc: '10:20'\n    core: unlimited\n" +
      "    stack: '8388608:unlimited'\n",
  });
  const { process } = resolveProfile(["p.yaml"], null, PLUGINS, opts).profile;
  assert.equal(process.user, "1000");
  assert.deepEqual(process.groups, ["10", "wheel"]);
  assert.equal(process.noNewPrivileges, true);
  assert.deepEqual(process.rlimits, {
    nofile: { soft: 1024, hard: 1024 },
    nproc: { soft: 10, hard: 20 },
    core: { soft: RLIM_INFINITY, hard: RLIM_INFINITY },
    stack: { soft: 8388608, hard: RLIM_INFINITY },
  });
});

Deno.test("process.init resolves, is inherited and is shown", () => {
  const opts = fake({
    "a.yaml": "process:\n  init: true\n",
    "b.yaml": "extends: a.yaml\n",
    "bad.yaml": "process:\n  init: yes please\n",
  });
  assert.equal(resolveProfile(["b.yaml"], null, PLUGINS, opts).profile.process.init, true);
  assert.equal(resolveProfile([], null, PLUGINS, opts).profile.process.init, false);
  assert.equal(
    resolveProfile(["b.yaml"], { process: { init: false } }, PLUGINS, opts).profile.process.init,
    false,
  );
  assert.match(
    profileToYaml(resolveProfile(["b.yaml"], null, PLUGINS, opts)),
    /\n {2}init: true\n/,
  );
  assert.equal(errorLines(() => resolveProfile(["bad.yaml"], null, PLUGINS, opts)).length, 1);
});

Deno.test("showProfile prints YAML that resolves to the same profile", () => {
  const text = showProfile("hardened", PLUGINS, fake({}));
  assert.match(text, /^# resolved from: builtin:default, builtin:hardened\n/);
  assert.match(text, /noNewPrivileges: true/);
  const opts = fake({
    "p.yaml": "extends: hardened\nprocess: {user: 1000, rlimits: {nofile: '1:2', core: 0}}\n",
  });
  const first = resolveProfile(["p.yaml"], null, PLUGINS, opts).profile;
  const shown = profileToYaml(resolveProfile(["p.yaml"], null, PLUGINS, opts));
  const again = resolveProfile(["shown.yaml"], null, PLUGINS, fake({ "shown.yaml": shown }));
  assert.deepEqual(again.profile, first);
});

Deno.test("normalizePath folds . and .. segments", () => {
  assert.equal(normalizePath("a/./b/../c.yaml"), "a/c.yaml");
  assert.equal(normalizePath("../x/../../y"), "../../y");
  assert.equal(normalizePath("/a/../../b"), "/b");
  assert.equal(normalizePath("a/.."), ".");
});

// --- appending to inherited lists (KEY+) ------------------------------------------------

/** hardened's Landlock paths, as the built-in lists them. */
function hardenedLandlock(): { path: string; access: string[] }[] {
  const { profile } = resolveProfile(["hardened"], null, PLUGINS, fake({}));
  const ll = profile.sections.lsm.options.landlock as { paths: { path: string }[] };
  return ll.paths as { path: string; access: string[] }[];
}

Deno.test("paths+ appends /app to hardened's Landlock paths and keeps the rest", () => {
  const inherited = hardenedLandlock();
  assert.ok(inherited.some((p) => p.path === "/bin"));
  const opts = fake({
    "app.yaml": "extends: hardened\nlsm:\n  landlock:\n    paths+:\n" +
      "      - { path: /app, access: [read, execute] }\n",
  });
  const { profile } = resolveProfile(["app.yaml"], null, PLUGINS, opts);
  assert.deepEqual(profile.sections.lsm.options, {
    landlock: {
      paths: [...inherited, { path: "/app", access: ["read", "execute"] }],
      optional: true,
    },
  });
});

Deno.test("a plain list key still replaces the inherited list", () => {
  const opts = fake({
    "app.yaml": "extends: hardened\nlsm: {landlock: {paths: [{path: /app, access: [read]}]}}\n",
  });
  const ll = resolveProfile(["app.yaml"], null, PLUGINS, opts).profile.sections.lsm.options;
  assert.deepEqual(ll, {
    landlock: { paths: [{ path: "/app", access: ["read"] }], optional: true },
  });
});

Deno.test("KEY+ works on every list key, beside maps that merge key by key", () => {
  const opts = fake({
    "base.yaml": "mount: {masked: [/a], tmpfs: [/run]}\ncaps: {drop: [ALL]}\n" +
      "seccomp: {deny: [ptrace]}\nreadonly: {tmpfs: [/tmp]}\n" +
      "process: {env: {A: '1'}, groups: [audio]}\ncgroups: {devices: ['/dev/null']}\n",
    "top.yaml": "extends: base.yaml\nmount: {masked+: [/b], tmpfs+: [/srv]}\n" +
      "caps: {add+: [CHOWN], drop+: [NET_RAW]}\nseccomp: {deny+: [process_vm_readv]}\n" +
      "readonly: {tmpfs+: [/var/cache]}\nprocess: {env: {B: '2'}, groups+: [video]}\n" +
      "cgroups: {devices+: ['/dev/zero'], resources: {devices+: [{allow: false}]}}\n",
  });
  const { profile } = resolveProfile(["top.yaml"], null, PLUGINS, opts);
  const s = profile.sections;
  assert.deepEqual(s.mount.options, { masked: ["/a", "/b"], tmpfs: ["/run", "/srv"] });
  // Appending to a list no layer below has is the list itself.
  assert.deepEqual(s.caps.options, { drop: ["ALL", "NET_RAW"], add: ["CHOWN"] });
  assert.deepEqual(s.seccomp.options, { deny: ["ptrace", "process_vm_readv"] });
  assert.deepEqual(s.readonly.options, { tmpfs: ["/tmp", "/var/cache"] });
  assert.deepEqual(s.cgroups.options, {
    devices: ["/dev/null", "/dev/zero"],
    resources: { devices: [{ allow: false }] },
  });
  assert.deepEqual(profile.process.env, { A: "1", B: "2" });
  assert.deepEqual(profile.process.groups, ["audio", "video"]);
});

Deno.test("appends accumulate down an extends chain, in order, and flags append last", () => {
  const opts = fake({
    "a.yaml": "extends: b.yaml\nmount: {masked+: [/a]}\n",
    "b.yaml": "extends: c.yaml\nmount: {masked+: [/b]}\n",
    "c.yaml": "extends: d.yaml\nmount: {masked: [/c]}\n",
    "d.yaml": "mount: {masked: [/d], tmpfs: [/run]}\n",
    "e.yaml": "mount: {masked+: [/e]}\n",
  });
  const { profile, sources } = resolveProfile(
    ["a.yaml", "e.yaml"],
    {
      mount: { tmpfs: ["/x"] },
    },
    PLUGINS,
    opts,
  );
  assert.deepEqual(sources, ["d.yaml", "c.yaml", "b.yaml", "a.yaml", "e.yaml", "command line"]);
  // c.yaml's plain key replaced d's list; the appends below it build on c's.
  assert.deepEqual(profile.sections.mount.options, {
    masked: ["/c", "/b", "/a", "/e"],
    tmpfs: ["/run", "/x"],
  });
});

Deno.test("mergeLayers: KEY+ appends, KEY replaces, maps merge, the base is not changed", () => {
  const base = { m: { list: [1], keep: [0], sub: { x: 1 } } };
  const out = mergeLayers(base, { m: { "list+": [2], keep: [9], sub: { y: 2 } } });
  assert.deepEqual(out, { m: { list: [1, 2], keep: [9], sub: { x: 1, y: 2 } } });
  assert.deepEqual(base, { m: { list: [1], keep: [0], sub: { x: 1 } } });
  assert.deepEqual(mergeLayers({}, { "l+": ["a"] }), { l: ["a"] });
  // A map key ending with + whose value is not a list is a plain key (env names may).
  assert.deepEqual(mergeLayers({ env: { A: "1" } }, { env: { "B+": "2" } }), {
    env: { A: "1", "B+": "2" },
  });
  // A key "__proto__" (JSON.parse and YAML make one) is merged as a key, not a prototype.
  const over = JSON.parse('{"labels": {"__proto__": {"polluted": "1"}, "a": "b"}}');
  const merged = mergeLayers({ labels: { z: "y" } }, over) as { labels: object };
  assert.equal(Object.getPrototypeOf(merged.labels), Object.prototype);
  assert.deepEqual(Object.keys(merged.labels), ["z", "__proto__", "a"]);
  assert.equal((merged.labels as Record<string, unknown>).polluted, undefined);
});

Deno.test("KEY+ on anything but a list key is an error naming the key and the line", () => {
  const opts = fake({
    "bad.yaml": [
      "extends+: [default]",
      "process:",
      "  env+: {A: '1'}",
      "lsm:",
      "  landlock:",
      "    optional+: [true]",
      "    paths: []",
      "    paths+: [{path: /app, access+: [read]}]",
      "uts: {hostname+: [a]}",
      "mount: {maskd+: [/x]}",
      "net+: {mode: host}",
    ].join("\n") + "\n",
  });
  assert.deepEqual(errorLines(() => resolveProfile(["bad.yaml"], null, PLUGINS, opts)), [
    "profile bad.yaml: extends+ (line 1): cannot append: extends is a string or a list, " +
    "not a list",
    "profile bad.yaml: process.env+ (line 3): cannot append: env is a map, and maps merge " +
    'key by key: write "env:"',
    "profile bad.yaml: lsm.landlock.optional+ (line 6): cannot append: optional is a " +
    "boolean, not a list",
    "profile bad.yaml: lsm.landlock.paths+ (line 8): both paths and paths+: give one (paths " +
    "replaces the inherited list, paths+ appends to it)",
    "profile bad.yaml: uts.hostname+ (line 9): cannot append: hostname is a string, not a list",
    'profile bad.yaml: mount.maskd+ (line 10): unknown key: did you mean "masked"?',
    "profile bad.yaml: net+ (line 11): cannot append: net is a map, and maps merge key by " +
    'key: write "net:"',
  ]);
  // Inside a list item nothing merges, so nothing appends there.
  const item = fake({
    "item.yaml": "lsm: {landlock: {paths+: [{path: /app, access+: [read]}]}}\n",
  });
  assert.deepEqual(errorLines(() => resolveProfile(["item.yaml"], null, PLUGINS, item)), [
    "profile item.yaml: lsm.landlock.paths+[0].access+ (line 1): unknown key: did you mean " +
    '"access"?',
  ]);
});

Deno.test("an extends chain deeper than MAX_EXTENDS_DEPTH is an error naming its ends", () => {
  const chain = (n: number) => {
    const files: Record<string, string> = {};
    for (let i = 1; i < n; i++) files[`p${i}.yaml`] = `extends: p${i + 1}.yaml\n`;
    files[`p${n}.yaml`] = "mount: {masked: [/x]}\n";
    return fake(files);
  };
  const ok = resolveProfile(["p1.yaml"], null, PLUGINS, chain(MAX_EXTENDS_DEPTH));
  assert.equal(ok.sources.length, MAX_EXTENDS_DEPTH);
  const n = MAX_EXTENDS_DEPTH;
  assert.deepEqual(
    errorLines(() => resolveProfile(["p1.yaml"], null, PLUGINS, chain(n + 1))),
    [
      `profile p${n}.yaml: extends (line 1): extends too deep: more than ${n} profiles in a ` +
      `chain (p1.yaml -> ... -> p${n + 1}.yaml): flatten some of them`,
    ],
  );
});

Deno.test("profile show prints the merged list, without + keys, that resolves the same", () => {
  const opts = fake({
    "app.yaml": "extends: hardened\nlsm: {landlock: {paths+: [{path: /app, access: [read, " +
      "execute]}]}}\n",
  });
  const text = showProfile("app.yaml", PLUGINS, opts);
  assert.ok(!text.includes("+:"), text);
  assert.match(text, /path: \/bin\n/);
  assert.match(text, /path: \/app\n/);
  const first = resolveProfile(["app.yaml"], null, PLUGINS, opts).profile;
  const again = resolveProfile(["s.yaml"], null, PLUGINS, fake({ "s.yaml": text }));
  assert.deepEqual(again.profile, first);
});

// --- errors -----------------------------------------------------------------------------

Deno.test("bad YAML syntax names the file and the line", () => {
  const opts = fake({ "bad.yaml": "uts:\n  hostname: a\nnet: [none\n" });
  assert.deepEqual(errorLines(() => resolveProfile(["bad.yaml"], null, PLUGINS, opts)), [
    "profile bad.yaml (line 3): invalid yaml: flow sequence in block collection must be " +
    "sufficiently indented and end with a ]",
  ]);
});

Deno.test("duplicate keys are a YAML error", () => {
  const opts = fake({ "dup.yaml": "uts: {}\nuts: {}\n" });
  assert.deepEqual(errorLines(() => resolveProfile(["dup.yaml"], null, PLUGINS, opts)), [
    "profile dup.yaml (line 2): invalid yaml: map keys must be unique",
  ]);
});

Deno.test("unknown keys name the key path and line", () => {
  const opts = fake({
    "web.yaml": "description: x\nmount:\n  binds: []\n  bindz: [/a]\nnetwork: {}\n" +
      "process:\n  environment: {}\n",
  });
  assert.deepEqual(errorLines(() => resolveProfile(["web.yaml"], null, PLUGINS, opts)), [
    'profile web.yaml: mount.bindz (line 4): unknown key: did you mean "binds"?',
    'profile web.yaml: network (line 5): unknown key: expected one of "description", ' +
    '"extends", "process", "mount", "uts", "net", "user", "pid", "ipc", "cgroupns", "overlay", "caps", ' +
    '"readonly", "lsm", "seccomp", "cgroups"',
    'profile web.yaml: process.environment (line 7): unknown key: expected one of "env", ' +
    '"user", "defaultUser", "groups", "cwd", "noNewPrivileges", "init", "oomScoreAdj", "rlimits"',
  ]);
});

Deno.test("a plugin with no options accepts only enabled", () => {
  const opts = fake({ "p.yaml": "pid:\n  shared: true\n" });
  assert.deepEqual(errorLines(() => resolveProfile(["p.yaml"], null, PLUGINS, opts)), [
    'profile p.yaml: pid.shared (line 2): unknown key: expected one of "enabled"',
  ]);
});

Deno.test("wrong types and bad values are all reported together", () => {
  const opts = fake({
    "web.yaml": [
      "mount:",
      "  masked: [/ok, relative]",
      "  tmpfs: /tmp",
      "net: {mode: bridge, enabled: 'no'}",
      "user: {size: 0}",
      "process:",
      "  env: {A: 1}",
      "  cwd: srv",
      "  user: 'a:b:c'",
      "  groups: [[x]]",
      "  rlimits: {nofile: '20:10', nofil: 1, core: lots}",
      "extends: 3",
      "",
    ].join("\n"),
  });
  assert.deepEqual(errorLines(() => resolveProfile(["web.yaml"], null, PLUGINS, opts)), [
    'profile web.yaml: mount.masked[1] (line 2): invalid value "relative": must be an absolute path',
    'profile web.yaml: mount.tmpfs (line 3): expected a list, got "/tmp"',
    'profile web.yaml: net.mode (line 4): invalid value "bridge": expected one of "none", "host", "auto"',
    'profile web.yaml: net.enabled (line 4): expected a boolean, got "no"',
    "profile web.yaml: user.size (line 5): invalid value 0: expected an integer >= 1",
    "profile web.yaml: process.env.A (line 7): expected a string, got 1 (quote it)",
    'profile web.yaml: process.cwd (line 8): invalid value "srv": expected an absolute path',
    'profile web.yaml: process.user (line 9): invalid value "a:b:c": expected UID[:GID] or ' +
    "NAME[:GROUP]",
    "profile web.yaml: process.groups[0] (line 10): expected a string or an integer, got a list",
    'profile web.yaml: process.rlimits.nofile (line 11): invalid value "20:10": the soft ' +
    "limit is larger than the hard limit",
    'profile web.yaml: process.rlimits.nofil (line 11): invalid key "nofil": unknown rlimit: ' +
    'expected one of "as", "core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", ' +
    '"nice", "nofile", "nproc", "rss", "rtprio", "rttime", "sigpending", "stack"',
    'profile web.yaml: process.rlimits.core (line 11): invalid value "lots": expected ' +
    'SOFT[:HARD], each a number or "unlimited"',
    "profile web.yaml: extends (line 12): expected a string or a list, got 3",
  ]);
});

Deno.test("a profile that is not a map is an error on its first line", () => {
  const opts = fake({ "list.yaml": "- a\n- b\n" });
  assert.deepEqual(errorLines(() => resolveProfile(["list.yaml"], null, PLUGINS, opts)), [
    "profile list.yaml (line 1): expected a map, got a list",
  ]);
});

Deno.test("an empty profile file is an empty layer", () => {
  const opts = fake({ "empty.yaml": "# nothing\n" });
  const { sources } = resolveProfile(["empty.yaml"], null, PLUGINS, opts);
  assert.deepEqual(sources, ["empty.yaml"]);
});

Deno.test("missing files name the file, or the extends line that names them", () => {
  const opts = fake({ "conf/web.yaml": "description: x\nextends:\n  - default\n  - base.yaml\n" });
  assert.deepEqual(
    errorLines(() => resolveProfile(["nope.yaml", "conf/web.yaml"], null, PLUGINS, opts)),
    [
      "profile nope.yaml: no such file",
      'profile conf/web.yaml: extends[1] (line 4): cannot read "conf/base.yaml": no such file',
    ],
  );
});

Deno.test("an unknown built-in name lists the known ones", () => {
  const opts = fake({ "web.yaml": "extends: hardend\n" });
  assert.deepEqual(
    errorLines(() => resolveProfile(["harden", "web.yaml"], null, PLUGINS, opts)),
    [
      'profile builtin:harden: no such built-in profile: expected one of "default", "hardened"',
      'profile web.yaml: extends (line 1): unknown built-in profile "hardend": expected one of ' +
      '"default", "hardened"',
    ],
  );
});

Deno.test("an extends cycle is an error naming the chain", () => {
  const opts = fake({
    "a.yaml": "extends: sub/b.yaml\n",
    "sub/b.yaml": "uts: {}\nextends: [../c.yaml]\n",
    "c.yaml": "extends: a.yaml\n",
  });
  assert.deepEqual(errorLines(() => resolveProfile(["a.yaml"], null, PLUGINS, opts)), [
    "profile c.yaml: extends (line 1): cycle: a.yaml -> sub/b.yaml -> c.yaml -> a.yaml",
  ]);
  const self = fake({ "s.yaml": "extends: [default, ./s.yaml]\n" });
  assert.deepEqual(errorLines(() => resolveProfile(["s.yaml"], null, PLUGINS, self)), [
    "profile s.yaml: extends[1] (line 1): cycle: s.yaml -> s.yaml",
  ]);
});

Deno.test("command-line values are validated and named without a line", () => {
  const flags = { process: { cwd: "rel", rlimits: { nofile: "x" } }, net: { mode: "bridge" } };
  assert.deepEqual(errorLines(() => resolveProfile([], flags, PLUGINS, fake({}))), [
    'command line: process.cwd: invalid value "rel": expected an absolute path',
    'command line: process.rlimits.nofile: invalid value "x": expected SOFT[:HARD], each a ' +
    'number or "unlimited"',
    'command line: net.mode: invalid value "bridge": expected one of "none", "host", "auto"',
  ]);
});

Deno.test("one error is a MicroError and several are MicroErrors, exit code 125", () => {
  const opts = fake({ "one.yaml": "foo: 1\n", "two.yaml": "foo: 1\nbar: 2\n" });
  try {
    resolveProfile(["one.yaml"], null, PLUGINS, opts);
    assert.fail("expected an error");
  } catch (e) {
    assert.ok(e instanceof MicroError);
    assert.equal(e.exitCode, 125);
  }
  try {
    resolveProfile(["two.yaml"], null, PLUGINS, opts);
    assert.fail("expected an error");
  } catch (e) {
    assert.ok(e instanceof MicroErrors);
    assert.equal(e.errors.length, 2);
    assert.ok(!e.message.includes("    at "), "no stack trace in the message");
  }
});
