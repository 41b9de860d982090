/**
 * The network plugin loads core/cni/netplan.ts (DNS files, subnets, the rootless helpers'
 * names) only for a network that needs it (plugins/net.ts `load`): a run with --network
 * none or host does not load it. Its own test module, so that no other test has loaded the
 * helpers in this isolate before.
 */
import assert from "node:assert/strict";
import { buildSpec } from "../../core/plan.ts";
import { resolveProfile } from "../../core/profile.ts";
import type { HostInfo } from "../../core/plugin.ts";
import { PLUGINS } from "../../plugins/mod.ts";
import { net } from "../../plugins/net.ts";

function spec(mode: string) {
  const { profile } = resolveProfile([], { net: { mode } }, PLUGINS);
  return buildSpec(
    { image: "/images/busybox", args: ["true"], terminal: false, stdin: false },
    profile,
    PLUGINS,
  );
}

const host = {
  uid: 0,
  id: "c1",
  hostname: "",
  stateDir: "/run/micro/c1",
  net: {
    cniPath: ["/usr/lib/cni"],
    missing: [],
    config: { name: "micro", cniVersion: "1.0.0", plugins: [] },
    resolv: "nameserver 10.0.0.1\n",
    resolvUpstream: "",
  },
} as unknown as HostInfo;

Deno.test("net: none and host plan without the helpers; bridge needs what load() loads", async () => {
  for (const mode of ["none", "host"]) {
    const s = spec(mode);
    await net.load!(s, host);
    assert.deepEqual(net.check!(s, host), []);
    net.plan(s, host);
  }
  const bridge = spec("bridge");
  assert.throws(() => net.plan(bridge, host), /network plugin's helpers were not loaded/);
  await net.load!(bridge, host);
  const add = net.plan(bridge, host).find((o) => o.kind === "cni-add");
  assert.ok(add && add.kind === "cni-add");
  assert.match(add.args.files!.resolv, /nameserver 10\.0\.0\.1/);
});
