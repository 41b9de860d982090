/**
 * The bandwidth plugin: tc's rate and size units, the default burst, the limits in the
 * net plugin's ADD (the CNI `bandwidth` capability), micro's list running the plugin only
 * when a limit is asked, and the checks (none, host, a list without the capability).
 */
import assert from "node:assert/strict";
import { BANDWIDTH_PLUGIN } from "../../core/cni/config.ts";
import { pluginConfig } from "../../core/cni/exec.ts";
import { defaultBurst, formatRate, parseBurst, parseRate } from "../../core/cni/rate.ts";
import { parseRun } from "../../core/cli.ts";
import { MicroError } from "../../core/errors.ts";
import { planRun } from "../../core/plan.ts";
import type { HostInfo, NetFacts } from "../../core/plugin.ts";
import { bandwidth } from "../../plugins/bandwidth.ts";
import { PLUGINS } from "../../plugins/mod.ts";
import { loadNetHelpers, resolveAuto } from "../../plugins/net.ts";
import { microList, netHost, netSpec } from "./_net.ts";

// What plugins/net.ts loads for a network in a run (its load()), before any plan here.
await loadNetHelpers();

Deno.test("bandwidth: rates in tc's units, bare numbers are bit/s; junk and zero refused", () => {
  assert.equal(parseRate("10mbit"), 10_000_000);
  assert.equal(parseRate("512kbit"), 512_000);
  assert.equal(parseRate("1gbit"), 1_000_000_000);
  assert.equal(parseRate("1.5Mbit"), 1_500_000);
  assert.equal(parseRate("2mibit"), 2 * 1024 * 1024);
  assert.equal(parseRate("1mbps"), 8_000_000); // tc: bytes per second
  assert.equal(parseRate("64000"), 64_000);
  assert.equal(parseRate(64000), 64_000);
  for (const bad of ["", "fast", "10 mbits", "-1mbit", "10mb", "1e6", "0", "7bit", "2tbit"]) {
    assert.equal(typeof parseRate(bad), "string", bad);
  }
  assert.match(parseRate("10mb") as string, /"10mb" is not a rate: .*10mbit/);
});

Deno.test("bandwidth: bursts in tc's sizes (bare: bytes), at least a packet", () => {
  assert.equal(parseBurst("32kb"), 32 * 1024 * 8);
  assert.equal(parseBurst("256kbit"), 256 * 1024);
  assert.equal(parseBurst("1m"), 8 * 1024 * 1024);
  assert.equal(parseBurst("2000"), 16_000);
  assert.match(parseBurst("1000") as string, /smaller than one packet/);
  assert.match(parseBurst("5gb") as string, /above 4gb/);
  assert.match(parseBurst("lots") as string, /not a size/);
});

Deno.test("bandwidth: the default burst is 100 ms of the rate, at least 32 KiB", () => {
  assert.equal(defaultBurst(20_000_000), 2_000_000);
  assert.equal(defaultBurst(512_000), 32 * 1024 * 8);
  assert.equal(formatRate(5_000_000), "5mbit");
  assert.equal(formatRate(512_000), "512kbit");
  assert.equal(formatRate(1234), "1234bit");
});

/** The fixture's host, micro's list with the rate limiter chained (a limit was asked for). */
function host(over: Partial<HostInfo> = {}, net?: Partial<NetFacts>): HostInfo {
  const list = microList();
  list.plugins.push(BANDWIDTH_PLUGIN);
  return netHost(over, { config: JSON.stringify(list), ...net });
}

const spec = netSpec;

Deno.test("bandwidth: a profile's limits go to ADD as the bandwidth capability, in bits", () => {
  const s = spec({ net: { mode: "bridge" }, bandwidth: { egress: "10mbit", ingress: 5000000 } });
  assert.deepEqual(s.micro.bandwidth, {
    ingressRate: 5_000_000,
    ingressBurst: 500_000,
    egressRate: 10_000_000,
    egressBurst: 1_000_000,
  });
  assert.deepEqual(bandwidth.check!(s, host()), []);
  const add = planRun(s, host(), PLUGINS).find((o) => o.kind === "cni-add");
  assert.ok(add?.kind === "cni-add");
  assert.deepEqual(add.args.bandwidth, s.micro.bandwidth);
  // only the plugin declaring the capability gets it (libcni's rule)
  const conf = pluginConfig(
    JSON.parse(host().net!.config!),
    BANDWIDTH_PLUGIN,
    { bandwidth: add.args.bandwidth, portMappings: [] },
    {},
  );
  assert.deepEqual(conf.runtimeConfig, { bandwidth: add.args.bandwidth });
  // without a limit: no bandwidth in ADD
  const plain = planRun(spec({ net: { mode: "bridge" } }), host(), PLUGINS)
    .find((o) => o.kind === "cni-add");
  assert.ok(plain?.kind === "cni-add" && plain.args.bandwidth === undefined);
});

Deno.test("bandwidth: the flags set the profile section; bad values are one line", () => {
  const req = parseRun([
    "run",
    "--egress-rate",
    "5mbit",
    "--ingress-rate",
    "20mbit",
    "--ingress-burst",
    "64kb",
    "img",
  ]);
  assert.deepEqual(req.layer.bandwidth, {
    egress: "5mbit",
    ingress: "20mbit",
    ingressBurst: "64kb",
  });
  const s = spec({ net: { mode: "bridge" }, ...req.layer });
  assert.equal(s.micro.bandwidth?.ingressBurst, 64 * 1024 * 8);
  assert.equal(s.micro.bandwidth?.egressBurst, 500_000);
  assert.throws(
    () => parseRun(["run", "--egress-rate", "lots", "img"]),
    (e: unknown) =>
      e instanceof MicroError && /--egress-rate.*"lots" is not a rate/.test(e.line()) &&
      !e.line().includes("\n"),
  );
  // a profile with a bad rate names its path
  assert.throws(() => spec({ bandwidth: { egress: "10mb" } }), /bandwidth\.egress/);
});

Deno.test("bandwidth: on none or host, an error naming the option; a burst needs its rate", () => {
  for (const mode of ["none", "host"]) {
    const s = spec({ net: { mode }, bandwidth: { egress: "5mbit" } });
    const errs = bandwidth.check!(s, host());
    assert.equal(errs.length, 1);
    assert.match(
      errs[0].line(),
      new RegExp(`--egress-rate needs a CNI network .*--network ${mode}`),
    );
  }
  const s = spec({ net: { mode: "bridge" }, bandwidth: { ingressBurst: "64kb" } });
  assert.match(bandwidth.check!(s, host())[0].line(), /--ingress-burst without --ingress-rate/);
});

Deno.test("bandwidth: a CNI list without the capability is one line naming the network", () => {
  const list = { cniVersion: "1.0.0", name: "lan", plugins: [{ type: "bridge" }] };
  const s = spec({ net: { mode: "lan" }, bandwidth: { ingress: "5mbit" } });
  const errs = bandwidth.check!(s, host({}, { config: JSON.stringify(list) }));
  assert.equal(errs.length, 1);
  assert.match(
    errs[0].line(),
    /--ingress-rate: network "lan" has no plugin with the "bandwidth" capability/,
  );
  list.plugins.push({ type: "bandwidth", capabilities: { bandwidth: true } } as never);
  assert.deepEqual(bandwidth.check!(s, host({}, { config: JSON.stringify(list) })), []);
});

Deno.test("bandwidth: a limit asks for a network: auto becomes bridge (not under =none)", () => {
  const s = spec({ bandwidth: { egress: "5mbit" } });
  resolveAuto(s, host());
  assert.equal(s.micro.network, "bridge");
  const t = spec({ bandwidth: { egress: "5mbit" } });
  resolveAuto(t, host({}, { defaultNetwork: "none" }));
  assert.equal(t.micro.network, "none");
  assert.match(bandwidth.check!(t, host())[0].line(), /--egress-rate needs a CNI network/);
});
