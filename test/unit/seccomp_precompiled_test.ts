/**
 * The built-in profiles' seccomp programs compiled at build time (tools/gen_seccomp.ts):
 * the table shipped equals what the compiler makes now, and a run uses it only when every
 * input of the compiler is the same.
 */
import assert from "node:assert/strict";
import { CGROUP_FACTS } from "./_host.ts";
import { buildSpec, planRun } from "../../core/plan.ts";
import type { HostInfo } from "../../core/plugin.ts";
import { resolveProfile } from "../../core/profile.ts";
import { ARCHES } from "../../core/seccomp/arch.ts";
import { PRECOMPILED } from "../../core/seccomp/_precompiled.ts";
import { PLUGINS } from "../../plugins/mod.ts";
import { compileFresh, seccompKey } from "../../plugins/seccomp.ts";
import { OUTPUT, precompile, render } from "../../tools/gen_seccomp.ts";

function spec(profiles: string[], layer: Record<string, unknown> = {}) {
  const { profile } = resolveProfile(profiles, layer, PLUGINS);
  return buildSpec(
    { image: "/img", args: ["/bin/true"], terminal: false, stdin: false },
    profile,
    PLUGINS,
  );
}

function host(arch: "x86_64" | "aarch64"): HostInfo {
  return {
    arch,
    uid: 0,
    gid: 0,
    id: "0123456789ab",
    stateDir: "/run/micro/0123456789ab",
    containerDir: "/var/lib/micro/containers/0123456789ab",
    hostView: [],
    devices: ["null", "zero"],
    passwd: "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n",
    group: "root:x:0:\nnogroup:x:65534:\n",
    sourceKinds: {},
    image: "dir",
    files: {},
    capLastCap: 40,
    lsm: { apparmor: false, selinux: false, landlock: 7 },
    ...CGROUP_FACTS,
  };
}

function seccompOp(profiles: string[], arch: "x86_64" | "aarch64", layer = {}) {
  const s = spec(profiles, layer);
  const o = planRun(s, host(arch), PLUGINS).find((o) => o.kind === "seccomp");
  assert.ok(o && o.kind === "seccomp");
  return { spec: s, args: o.args };
}

Deno.test("precompiled seccomp: the table shipped is what the compiler makes now", () => {
  assert.equal(
    Deno.readTextFileSync(OUTPUT),
    render(),
    "core/seccomp/_precompiled.ts is stale: run deno run -A tools/gen_seccomp.ts",
  );
});

Deno.test("precompiled seccomp: default and hardened, on both arches", () => {
  const table = precompile();
  for (const name of ["default", "hardened"]) {
    for (const arch of ARCHES) {
      const key = seccompKey(spec([name]), arch)!;
      assert.ok(key in PRECOMPILED, `${name} ${arch} is not precompiled`);
      assert.deepEqual(PRECOMPILED[key], compileFresh(spec([name]), arch));
      assert.deepEqual(table[key], PRECOMPILED[key]);
    }
  }
});

Deno.test("precompiled seccomp: a run of a built-in profile takes its program from the table", () => {
  const key = seccompKey(spec(["hardened"]), "x86_64")!;
  const saved = PRECOMPILED[key];
  try {
    PRECOMPILED[key] = { ...saved, program: "bWFya2Vy", instructions: 1 };
    const { args } = seccompOp(["hardened"], "x86_64");
    assert.equal(args.program, "bWFya2Vy");
    assert.equal(args.instructions, 1);
  } finally {
    PRECOMPILED[key] = saved;
  }
});

Deno.test("precompiled seccomp: other capabilities or refusals compile at run time", () => {
  for (
    const layer of [
      { caps: { add: ["SYS_ADMIN"] } },
      { seccomp: { deny: ["mkdir"] } },
    ]
  ) {
    const { spec: s, args } = seccompOp(["default"], "x86_64", layer);
    const key = seccompKey(s, "x86_64")!;
    assert.ok(!(key in PRECOMPILED), `${JSON.stringify(layer)} has a precompiled program`);
    const fresh = compileFresh(s, "x86_64");
    assert.equal(args.program, fresh.program);
    assert.notEqual(args.program, PRECOMPILED[seccompKey(spec(["default"]), "x86_64")!].program);
  }
});

Deno.test("precompiled seccomp: a policy file has no key", () => {
  const s = spec(["default"], { seccomp: { file: "/etc/seccomp.json" } });
  assert.equal(seccompKey(s, "x86_64"), undefined);
});
