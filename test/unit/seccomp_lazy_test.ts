/**
 * The seccomp compiler is loaded only for a program that is not precompiled (plugins/seccomp.ts
 * `load`): a run of a built-in profile does not load it. Its own test module, so that no other
 * test has loaded the compiler in this isolate before.
 */
import assert from "node:assert/strict";
import { buildSpec } from "../../core/plan.ts";
import { resolveProfile } from "../../core/profile.ts";
import type { HostInfo } from "../../core/plugin.ts";
import { PLUGINS } from "../../plugins/mod.ts";
import { seccomp } from "../../plugins/seccomp.ts";

function spec(layer: Record<string, unknown> = {}) {
  const { profile } = resolveProfile([], layer, PLUGINS);
  return buildSpec(
    { image: "/images/busybox", args: ["true"], terminal: false, stdin: false },
    profile,
    PLUGINS,
  );
}

const host = { arch: "x86_64", files: {} } as unknown as HostInfo;

Deno.test("seccomp: a built-in profile's program is precompiled and loads no compiler; another loads it", async () => {
  const builtin = spec();
  await seccomp.load!(builtin, host);
  assert.deepEqual(seccomp.check!(builtin, host), []);
  assert.equal(seccomp.plan(builtin, host).length, 1);
  // A capability set no built-in profile has: compiled, which needs the compiler load() loads.
  const other = spec({ caps: { drop: ["CAP_NET_RAW"] } });
  assert.throws(() => seccomp.check!(other, host), /seccomp compiler was not loaded/);
  await seccomp.load!(other, host);
  assert.deepEqual(seccomp.check!(other, host), []);
});
