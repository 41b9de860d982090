/**
 * Created networks (core/cni/networks.ts): subnets parsed and chosen, overlaps refused, the
 * list micro writes and reads back defensively, the firewall rules found for a bridge, and
 * the net plugin's --ip and -P in plan and checks.
 */
import assert from "node:assert/strict";
import { FileRefused } from "../../core/files.ts";
import { microConfList } from "../../core/cni/config.ts";
import {
  bridgeRules,
  bridgeRulesScript,
  holdsNothing,
  internalRules,
  ISOLATION_COMMENT,
  MASQUERADE_COMMENT,
  networkRulesScript,
  parseSave,
  ruleWords,
  takeOwnRules,
} from "../../core/cni/bridge.ts";
import { freePorts } from "../../core/cni/attach.ts";
import {
  bridgeName,
  createdConfList,
  listNetworks,
  loadNetwork,
  type Network,
  planSubnet,
} from "../../core/cni/networks.ts";
import { exposedPorts } from "../../core/cni/ports.ts";
import { hostOf, parseCidr, parseRoutes } from "../../core/cni/subnet.ts";
import { MicroError } from "../../core/errors.ts";
import { planRun } from "../../core/plan.ts";
import type { HostInfo, NetFacts } from "../../core/plugin.ts";
import { PLUGINS } from "../../plugins/mod.ts";
import { loadNetHelpers, net } from "../../plugins/net.ts";
import { netHost, netSpec } from "./_net.ts";

// What plugins/net.ts loads for a network in a run (its load()), before any plan here.
await loadNetHelpers();

const ID = "ab".repeat(32);

Deno.test("subnet: CIDRs parsed; host bits, bad prefixes and junk refused with a reason", () => {
  assert.deepEqual(parseCidr("10.90.0.0/16"), { dst: 0x0a5a0000, prefix: 16 });
  assert.match(
    parseCidr("10.90.0.1/16") as string,
    /host bits set \(the network is 10\.90\.0\.0\/16\)/,
  );
  assert.match(parseCidr("10.300.0.0/16") as string, /is not an IPv4 subnet/);
  assert.match(parseCidr("10.0.0.0/31") as string, /prefix must be 8 to 30/);
  assert.match(parseCidr("10.0.0.0") as string, /is not an IPv4 subnet/);
  assert.match(parseCidr("fd00::/64") as string, /is not an IPv4 subnet/);
  const c = parseCidr("10.200.0.0/24") as { dst: number; prefix: number };
  assert.ok(hostOf(c, "10.200.0.77"));
  assert.ok(!hostOf(c, "10.200.0.0"), "the network address");
  assert.ok(!hostOf(c, "10.200.0.255"), "the broadcast address");
  assert.ok(!hostOf(c, "10.201.0.7"));
  assert.ok(!hostOf(c, "10.200.0.999"));
});

function netOf(name: string, subnet: string): Network {
  const [net] = subnet.split("/");
  const gateway = net.replace(/\.0$/, ".1");
  const list = createdConfList(
    { name, id: ID, created: "", subnet, gateway },
    false,
    "/run/micro/.networks",
  );
  return { name, id: ID, created: "", subnet, gateway, internal: false, bridge: "x", list };
}

/** /proc/net/route with a default route, a LAN 192.168.1.0/24 and a VPN's 10.0.0.0/8. */
const ROUTES = parseRoutes(
  "Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\n" +
    "eth0\t00000000\t0101A8C0\t0003\t0\t0\t0\t00000000\n" +
    "eth0\t0001A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\n",
);

Deno.test("network create: a free /16 avoids the host's routes, micro0's and the others'", () => {
  // 10.88 is what micro's own network would take: a created one starts at 10.89.
  assert.deepEqual(planSubnet({ name: "a", internal: false }, ROUTES, []), {
    subnet: "10.89.0.0/16",
    gateway: "10.89.0.1",
  });
  const others = [netOf("a", "10.89.0.0/16"), netOf("b", "10.90.0.0/24")];
  assert.equal(planSubnet({ name: "c", internal: false }, ROUTES, others).subnet, "10.91.0.0/16");
  // micro0 exists on 10.88: a created network may not take it, and 10.88 stays taken.
  const withBridge = parseRoutes(
    "Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\n" +
      "micro0\t0000580A\t00000000\t0001\t0\t0\t0\t0000FFFF\n",
  );
  assert.equal(planSubnet({ name: "d", internal: false }, withBridge, []).subnet, "10.89.0.0/16");
  assert.throws(
    () => planSubnet({ name: "d", subnet: "10.88.4.0/24", internal: false }, withBridge, []),
    /subnet 10\.88\.4\.0\/24 overlaps micro's default network "micro"/,
  );
});

Deno.test("network create: a subnet that overlaps a route or a network, or a bad gateway, is one line", () => {
  const line = (f: () => unknown) => {
    try {
      f();
    } catch (e) {
      assert.ok(e instanceof MicroError);
      return e.line();
    }
    assert.fail("no error");
  };
  assert.equal(
    line(() => planSubnet({ name: "x", subnet: "192.168.0.0/16", internal: false }, ROUTES, [])),
    "network create: subnet 192.168.0.0/16 overlaps the host's route 192.168.1.0/24 on eth0 " +
      "(choose another --subnet)",
  );
  assert.equal(
    line(() =>
      planSubnet({ name: "x", subnet: "10.90.0.128/25", internal: false }, ROUTES, [
        netOf("b", "10.90.0.0/24"),
      ])
    ),
    'network create: subnet 10.90.0.128/25 overlaps network "b" (choose another --subnet)',
  );
  assert.match(
    line(() => planSubnet({ name: "x", subnet: "10.1.2.3/8", internal: false }, ROUTES, [])),
    /^network create: subnet "10\.1\.2\.3\/8" has host bits set/,
  );
  assert.equal(
    line(() =>
      planSubnet(
        { name: "x", subnet: "10.70.0.0/24", gateway: "10.71.0.1", internal: false },
        ROUTES,
        [],
      )
    ),
    "network create: gateway 10.71.0.1 is not a host address of 10.70.0.0/24",
  );
  assert.deepEqual(
    planSubnet(
      { name: "x", subnet: "10.70.0.0/24", gateway: "10.70.0.254", internal: false },
      ROUTES,
      [],
    ),
    { subnet: "10.70.0.0/24", gateway: "10.70.0.254" },
  );
});

Deno.test("network create: the list: a bridge of its own, ips, isolation; internal has no NAT or route", () => {
  const n = { name: "back", id: ID, created: "t", subnet: "10.70.0.0/24", gateway: "10.70.0.1" };
  const l = createdConfList(n, false, "/run/micro/.networks");
  assert.equal(bridgeName(ID), "mbr-ababababab" + "a");
  assert.equal(bridgeName(ID).length, 15, "IFNAMSIZ");
  assert.deepEqual(l.plugins.map((p) => p.type), ["bridge", "portmap", "firewall"]);
  const br = l.plugins[0] as Record<string, unknown>;
  assert.equal(br.bridge, bridgeName(ID));
  assert.equal(br.ipMasq, true);
  assert.deepEqual(br.capabilities, { ips: true });
  assert.deepEqual((br.ipam as { routes: unknown }).routes, [{ dst: "0.0.0.0/0" }]);
  assert.equal(l.plugins[2].ingressPolicy, "same-bridge");
  const i = createdConfList(n, true, "/run/micro/.networks");
  const ib = i.plugins[0] as Record<string, unknown>;
  assert.equal(ib.ipMasq, false);
  assert.deepEqual((ib.ipam as { routes: unknown }).routes, []);
  assert.equal(i.microInternal, true);
  // micro's default network is isolated from created ones too, and takes --ip.
  const m = microConfList("10.88.0.0/16", "10.88.0.1", "/run/micro/.networks");
  assert.deepEqual(m.plugins[0].capabilities, { ips: true });
  assert.equal(m.plugins[2].ingressPolicy, "same-bridge");
  // What a run gives the plugins: micro makes the isolation and masquerade itself, once per
  // bridge; the stored list stays whole (any CNI runtime can use it).
  const { list, own } = takeOwnRules(l, bridgeName(ID), n.subnet);
  assert.deepEqual(own, {
    isolate: bridgeName(ID),
    masquerade: { bridge: bridgeName(ID), subnet: "10.70.0.0/24" },
  });
  assert.equal(list.plugins[0].ipMasq, false);
  assert.equal(list.plugins[2].ingressPolicy, undefined);
  assert.equal(l.plugins[0].ipMasq, true);
  assert.equal(l.plugins[2].ingressPolicy, "same-bridge");
  // internal: no masquerade to make; another bridge's list (not micro's own): nothing taken.
  assert.deepEqual(takeOwnRules(i, bridgeName(ID), n.subnet).own, { isolate: bridgeName(ID) });
  assert.deepEqual(takeOwnRules(l, "cni0", n.subnet).own, { isolate: "cni0" });
});

Deno.test("network files: read back as micro's; another's list, a renamed one or junk is refused", () => {
  const n = { name: "back", id: ID, created: "t", subnet: "10.70.0.0/24", gateway: "10.70.0.1" };
  const good = JSON.stringify(createdConfList(n, true, "/d"));
  const files: Record<string, string> = {
    "/n/back.conflist": good,
    "/n/other.conflist": good, // names "back" inside
    "/n/foreign.conflist": JSON.stringify({
      cniVersion: "1.0.0",
      name: "foreign",
      plugins: [{ type: "bridge", bridge: "cni0" }],
    }),
    "/n/deep.conflist": "[".repeat(100) + "]".repeat(100),
  };
  const read = (path: string) => {
    if (path in files) return files[path];
    throw new FileRefused(`${path}: no such file`, 2);
  };
  const b = loadNetwork("/n", "back", read)!;
  assert.equal(b.subnet, "10.70.0.0/24");
  assert.equal(b.gateway, "10.70.0.1");
  assert.equal(b.internal, true);
  assert.equal(b.bridge, bridgeName(ID));
  assert.equal(loadNetwork("/n", "missing", read), null);
  assert.equal(loadNetwork("/n", "../etc/x", read), null, "never a path");
  assert.throws(() => loadNetwork("/n", "other", read), /it names network "back"/);
  assert.throws(() => loadNetwork("/n", "foreign", read), /not a network micro created/);
  assert.throws(() => loadNetwork("/n", "deep", read), /nested deeper than/);
  const refused = () => {
    throw new FileRefused("not a regular file", 40);
  };
  assert.throws(() => loadNetwork("/n", "x", refused), /not a regular file/);
});

Deno.test("network files: a subnet or gateway that is not one is refused (it goes into iptables-restore's script)", () => {
  const n = { name: "back", id: ID, created: "t", subnet: "10.70.0.0/24", gateway: "10.70.0.1" };
  const edited = (subnet: string, gateway: string) => {
    const l = createdConfList(n, false, "/d");
    // deno-lint-ignore no-explicit-any
    (l.plugins[0] as any).ipam.ranges = [[{ subnet, gateway }]];
    return JSON.stringify(l);
  };
  const bad: [string, string][] = [
    ["10.70.0.0/24 -j ACCEPT\n-A INPUT -j DROP", "10.70.0.1"],
    ["10.70.0.0/24\n", "10.70.0.1"],
    ["10.70.0.5/24", "10.70.0.1"],
    ["10.70.0.0/24", "10.80.0.1"],
    ["10.70.0.0/24", "10.70.0.1\nCOMMIT"],
  ];
  for (const [subnet, gateway] of bad) {
    const read = () => edited(subnet, gateway);
    assert.throws(
      () => loadNetwork("/n", "back", read),
      /back\.conflist: .*(subnet|gateway)/,
      subnet,
    );
  }
  assert.equal(
    loadNetwork("/n", "back", () => edited("10.70.0.0/24", "10.70.0.1"))!.subnet,
    "10.70.0.0/24",
  );
});

Deno.test("network ls: the lists of a directory, bad ones skipped with a warning", () => {
  const dir = Deno.makeTempDirSync({ prefix: "micro-net-test-" });
  try {
    const n = { name: "back", id: ID, created: "t", subnet: "10.70.0.0/24", gateway: "10.70.0.1" };
    Deno.writeTextFileSync(`${dir}/back.conflist`, JSON.stringify(createdConfList(n, false, "/d")));
    Deno.writeTextFileSync(`${dir}/junk.conflist`, "{");
    Deno.writeTextFileSync(`${dir}/notes.txt`, "x");
    const warnings: string[] = [];
    const got = listNetworks(dir, (m) => warnings.push(m));
    assert.deepEqual(got.map((x) => x.name), ["back"]);
    assert.equal(warnings.length, 1);
    assert.match(warnings[0], /network "junk": .*junk\.conflist: not valid JSON/);
    assert.deepEqual(listNetworks(`${dir}/absent`), []);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("network rm: the isolation rules that name the bridge, quoted comments kept whole", () => {
  const saved = "-N CNI-ISOLATION-STAGE-1\n" +
    '-A CNI-ISOLATION-STAGE-1 -i mbr-1 ! -o mbr-1 -m comment --comment "CNI firewall plugin rules ' +
    '(ingressPolicy: same-bridge)" -j CNI-ISOLATION-STAGE-2\n' +
    '-A CNI-ISOLATION-STAGE-1 -i mbr-10 ! -o mbr-10 -m comment --comment "x" -j CNI-ISOLATION-STAGE-2\n' +
    '-A CNI-ISOLATION-STAGE-1 -m comment --comment "x" -j RETURN\n';
  assert.deepEqual(bridgeRules(saved, "mbr-1"), [[
    "CNI-ISOLATION-STAGE-1",
    "-i",
    "mbr-1",
    "!",
    "-o",
    "mbr-1",
    "-m",
    "comment",
    "--comment",
    "CNI firewall plugin rules (ingressPolicy: same-bridge)",
    "-j",
    "CNI-ISOLATION-STAGE-2",
  ]]);
  assert.deepEqual(ruleWords('a "b \\"c\\"" d'), ["a", 'b "c"', "d"]);
});

Deno.test("-P: the image's ExposedPorts, junk skipped; -p for the same port wins", () => {
  assert.deepEqual(exposedPorts({ ExposedPorts: { "80/tcp": {}, "53/udp": {}, "8080": {} } }), [
    { containerPort: 53, protocol: "udp" },
    { containerPort: 80, protocol: "tcp" },
    { containerPort: 8080, protocol: "tcp" },
  ]);
  assert.deepEqual(exposedPorts({ ExposedPorts: { "0/tcp": {}, "x": {}, "80/sctp": {} } }), []);
  assert.deepEqual(exposedPorts({ ExposedPorts: ["80/tcp"] }), []);
  assert.deepEqual(exposedPorts(undefined), []);
  const taken = [{ hostPort: 8080, containerPort: 80, protocol: "tcp" as const, hostIP: "" }];
  const got = freePorts([{ containerPort: 80, protocol: "tcp" }, {
    containerPort: 443,
    protocol: "tcp",
  }], taken);
  assert.equal(got.length, 1);
  assert.equal(got[0].containerPort, 443);
  assert.ok(got[0].hostPort > 0 && got[0].hostPort !== 8080);
});

// --- the net plugin ------------------------------------------------------------------------

/** The fixture's host, with what the probe knows of micro's own network. */
function host(net: Partial<NetFacts> = {}): HostInfo {
  return netHost({}, {
    subnet: "10.88.0.0/16",
    ips: true,
    transientBridge: "micro0",
    ownRules: { isolate: "micro0", masquerade: { bridge: "micro0", subnet: "10.88.0.0/16" } },
    ...net,
  });
}

const spec = (layer: Record<string, unknown>) => netSpec(layer);

Deno.test("net --ip and -P: in the ADD op, with the bridge that goes with the last container", () => {
  const s = spec({ net: { mode: "bridge", ip: "10.88.0.9", publishAll: true } });
  s.micro.net!.exposed = [{ containerPort: 80, protocol: "tcp" }];
  const add = planRun(s, host(), PLUGINS).find((o) => o.kind === "cni-add");
  assert.ok(add && add.kind === "cni-add");
  assert.equal(add.args.ip, "10.88.0.9");
  assert.deepEqual(add.args.publishAll, [{ containerPort: 80, protocol: "tcp" }]);
  assert.equal(add.args.transientBridge, "micro0");
  assert.deepEqual(add.args.ownRules, {
    isolate: "micro0",
    masquerade: { bridge: "micro0", subnet: "10.88.0.0/16" },
  });
  // a created network's bridge stays: no transientBridge from the probe
  const c = spec({ net: { mode: "back" } });
  const add2 = planRun(c, host({ transientBridge: undefined }), PLUGINS).find((o) =>
    o.kind === "cni-add"
  );
  assert.ok(add2 && add2.kind === "cni-add");
  assert.equal(add2.args.transientBridge, undefined);
  assert.equal(add2.args.network, "back");
});

Deno.test("net checks: --ip outside the subnet, on none or host, or without ips: one line each", () => {
  const lines = (layer: Record<string, unknown>, facts: Partial<NetFacts> = {}) =>
    net.check!(spec(layer), host(facts)).map((e) => e.line());
  assert.deepEqual(lines({ net: { mode: "bridge", ip: "10.88.3.4" } }), []);
  assert.deepEqual(lines({ net: { mode: "bridge", ip: "10.99.0.4" } }), [
    'check: net: --ip 10.99.0.4 is not a host address of network "micro" (10.88.0.0/16) ' +
    "(choose an address inside the subnet (micro network inspect))",
  ]);
  assert.match(
    lines({ net: { mode: "none", ip: "10.88.0.4" } })[0],
    /--ip needs a network with its own address, not "none"/,
  );
  assert.match(lines({ net: { mode: "host", ip: "10.88.0.4" } })[0], /not "host"/);
  assert.match(
    lines({ net: { mode: "theirs", ip: "10.0.0.4" } }, { ips: false, subnet: undefined })[0],
    /--ip 10\.0\.0\.4: network "theirs" takes no ips capability/,
  );
});

Deno.test("network: an internal bridge's drop rules name it both ways and are found again for removal", () => {
  const rules = internalRules("mbr-1");
  assert.deepEqual(rules, [
    ["MICRO-INTERNAL", "-i", "mbr-1", "!", "-o", "mbr-1", "-j", "DROP"],
    ["MICRO-INTERNAL", "-o", "mbr-1", "!", "-i", "mbr-1", "-j", "DROP"],
  ]);
  // As `iptables -S MICRO-INTERNAL` prints them, with another network's rule beside.
  const saved = "-N MICRO-INTERNAL\n" +
    [...rules, ...internalRules("mbr-2")].map((r) => `-A ${r.join(" ")}`).join("\n");
  assert.deepEqual(bridgeRules(saved, "mbr-1"), rules);
});

Deno.test("network: isolation and internal rules after ADD: only what is missing, in one script", () => {
  const c = `-m comment --comment "${ISOLATION_COMMENT}"`;
  // Right after the first ADD: the firewall plugin's CNI-FORWARD jump is FORWARD's first rule.
  const fresh = {
    filter: {
      chains: ["INPUT", "FORWARD", "OUTPUT", "CNI-FORWARD", "CNI-ADMIN"],
      rules: ['-A FORWARD -m comment --comment "CNI firewall plugin rules" -j CNI-FORWARD'],
    },
    nat: { chains: [] as string[], rules: [] as string[] },
  };
  const first = networkRulesScript(fresh, { isolate: "micro0" });
  assert.deepEqual(first.made, ["CNI-ISOLATION-STAGE-1", "CNI-ISOLATION-STAGE-2"]);
  assert.equal(
    first.script,
    "*filter\n-N CNI-ISOLATION-STAGE-1\n-N CNI-ISOLATION-STAGE-2\n" +
      `-I FORWARD 1 ${c} -j CNI-ISOLATION-STAGE-1\n` +
      `-I CNI-ISOLATION-STAGE-1 1 -i micro0 ! -o micro0 ${c} -j CNI-ISOLATION-STAGE-2\n` +
      `-A CNI-ISOLATION-STAGE-1 ${c} -j RETURN\n` +
      `-I CNI-ISOLATION-STAGE-2 1 -o micro0 ${c} -j DROP\n` +
      `-A CNI-ISOLATION-STAGE-2 ${c} -j RETURN\nCOMMIT\n`,
  );
  // As iptables-save prints them once made (what the plugin made was the same, word for word).
  const made = {
    filter: {
      chains: [...fresh.filter.chains, "CNI-ISOLATION-STAGE-1", "CNI-ISOLATION-STAGE-2"],
      rules: [
        `-A FORWARD ${c} -j CNI-ISOLATION-STAGE-1`,
        ...fresh.filter.rules,
        `-A CNI-ISOLATION-STAGE-1 -i micro0 ! -o micro0 ${c} -j CNI-ISOLATION-STAGE-2`,
        `-A CNI-ISOLATION-STAGE-1 ${c} -j RETURN`,
        `-A CNI-ISOLATION-STAGE-2 -o micro0 ${c} -j DROP`,
        `-A CNI-ISOLATION-STAGE-2 ${c} -j RETURN`,
      ],
    },
    nat: { chains: [] as string[], rules: [] as string[] },
  };
  assert.deepEqual(networkRulesScript(made, { isolate: "micro0" }), { script: "", made: [] });
  // Another bridge: its two rules first in the stages, nothing else.
  assert.equal(
    networkRulesScript(made, { isolate: "mbr-1" }).script,
    `*filter\n-I CNI-ISOLATION-STAGE-1 1 -i mbr-1 ! -o mbr-1 ${c} -j CNI-ISOLATION-STAGE-2\n` +
      `-I CNI-ISOLATION-STAGE-2 1 -o mbr-1 ${c} -j DROP\nCOMMIT\n`,
  );
  // A comment cannot pass for a rule: the rule words are compared without it.
  const fake = structuredClone(made);
  fake.filter.rules[4] =
    '-A CNI-ISOLATION-STAGE-2 -m comment --comment "-o mbr-1 -j DROP" -j RETURN';
  assert.match(
    networkRulesScript(fake, { isolate: "mbr-1" }).script,
    /-I CNI-ISOLATION-STAGE-2 1 -o mbr-1 /,
  );
  // Internal: its chain, its jump first in FORWARD (moved when the isolation jump went first).
  const internal = networkRulesScript(fresh, { isolate: "mbr-1", internal: "mbr-1" });
  assert.deepEqual(internal.made, [
    "CNI-ISOLATION-STAGE-1",
    "CNI-ISOLATION-STAGE-2",
    "MICRO-INTERNAL",
  ]);
  assert.match(
    internal.script,
    /-I FORWARD 1 -j MICRO-INTERNAL\n-A MICRO-INTERNAL -i mbr-1 ! -o mbr-1 -j DROP\n-A MICRO-INTERNAL -o mbr-1 ! -i mbr-1 -j DROP\nCOMMIT\n$/,
  );
  const ready = structuredClone(made);
  ready.filter.chains.push("MICRO-INTERNAL");
  ready.filter.rules.splice(1, 0, "-A FORWARD -j MICRO-INTERNAL");
  ready.filter.rules.push(...internalRules("mbr-1").map((r) => `-A ${r.join(" ")}`));
  const moved = networkRulesScript(ready, { isolate: "micro0", internal: "mbr-1" }).script;
  assert.equal(
    moved,
    "*filter\n-D FORWARD -j MICRO-INTERNAL\n-I FORWARD 1 -j MICRO-INTERNAL\nCOMMIT\n",
  );
  // The masquerade: once per bridge, in the nat table, found again (its comment aside).
  const m = `-m comment --comment "${MASQUERADE_COMMENT}"`;
  const masq = { bridge: "micro0", subnet: "10.88.0.0/16" };
  assert.equal(
    networkRulesScript(made, { isolate: "micro0", masquerade: masq }).script,
    `*nat\n-A POSTROUTING -s 10.88.0.0/16 ! -d 224.0.0.0/4 ! -o micro0 ${m} -j MASQUERADE\nCOMMIT\n`,
  );
  const masqed = structuredClone(made);
  masqed.nat.rules.push(
    '-A POSTROUTING -s 10.88.0.0/16 ! -d 224.0.0.0/4 ! -o micro0 -m comment --comment "x" -j MASQUERADE',
  );
  assert.equal(networkRulesScript(masqed, { masquerade: masq }).script, "");
  ready.filter.rules.splice(1, 1);
  ready.filter.rules.unshift("-A FORWARD -j MICRO-INTERNAL");
  assert.equal(networkRulesScript(ready, { isolate: "micro0", internal: "mbr-1" }).script, "");
});

Deno.test("network: shared chains hold nothing only with the plugins' fixed rules and jumps among them", () => {
  const rules = (lines: string[]) => lines.map((l) => ruleWords(l).slice(2));
  const mine = ["CNI-FORWARD", "CNI-ADMIN", "CNI-HOSTPORT-MASQ"];
  assert.equal(
    holdsNothing(
      rules([
        '-A CNI-FORWARD -m comment --comment "admin" -j CNI-ADMIN',
        "-A CNI-HOSTPORT-MASQ -m mark --mark 0x2000/0x2000 -j MASQUERADE",
        '-A CNI-ISOLATION-STAGE-1 -m comment --comment "x" -j RETURN',
      ]),
      mine,
    ),
    true,
  );
  // A container's rule, or a jump to a chain micro did not make: kept.
  assert.equal(holdsNothing(rules(["-A CNI-FORWARD -s 10.88.0.2/32 -j ACCEPT"]), mine), false);
  assert.equal(holdsNothing(rules(["-A CNI-FORWARD -j CNI-OTHER"]), mine), false);
});

Deno.test("a bridge's rules, micro's emptied chains and the shared chains go in one restore script", () => {
  const masq = `-m comment --comment "${MASQUERADE_COMMENT}"`;
  const saved = {
    filter: {
      chains: [
        "FORWARD",
        "CNI-FORWARD",
        "CNI-ISOLATION-STAGE-1",
        "CNI-ISOLATION-STAGE-2",
        "MICRO-INTERNAL",
      ],
      rules: [
        "-A FORWARD -j MICRO-INTERNAL",
        '-A FORWARD -m comment --comment "CNI firewall plugin rules" -j CNI-FORWARD',
        "-A FORWARD -j CNI-ISOLATION-STAGE-1",
        '-A CNI-ISOLATION-STAGE-1 -i mbr-1 ! -o mbr-1 -m comment --comment "x y" -j CNI-ISOLATION-STAGE-2',
        "-A CNI-ISOLATION-STAGE-1 -j RETURN",
        "-A CNI-ISOLATION-STAGE-2 -o mbr-1 -j DROP",
        "-A CNI-ISOLATION-STAGE-2 -j RETURN",
        "-A MICRO-INTERNAL -i mbr-1 ! -o mbr-1 -j DROP",
        "-A MICRO-INTERNAL -o mbr-1 ! -i mbr-1 -j DROP",
      ],
    },
    nat: {
      chains: ["POSTROUTING", "CNI-HOSTPORT-MASQ"],
      rules: [
        "-A POSTROUTING -j CNI-HOSTPORT-MASQ",
        // micro's masquerade of mbr-1, of mbr-2, and a rule of someone else's like it.
        `-A POSTROUTING -s 10.70.0.0/24 ! -d 224.0.0.0/4 ! -o mbr-1 ${masq} -j MASQUERADE`,
        `-A POSTROUTING -s 10.71.0.0/24 ! -d 224.0.0.0/4 ! -o mbr-2 ${masq} -j MASQUERADE`,
        "-A POSTROUTING -s 10.70.0.0/24 ! -d 224.0.0.0/4 ! -o mbr-1 -j MASQUERADE",
      ],
    },
  };
  const recorded = {
    filter: ["CNI-FORWARD", "CNI-ISOLATION-STAGE-1", "CNI-ISOLATION-STAGE-2"],
    nat: ["CNI-HOSTPORT-MASQ"],
  };
  const { script, shared } = bridgeRulesScript(saved, "mbr-1", recorded);
  assert.equal(shared, true);
  assert.equal(
    script,
    "*filter\n" +
      '-D CNI-ISOLATION-STAGE-1 -i mbr-1 ! -o mbr-1 -m comment --comment "x y" -j CNI-ISOLATION-STAGE-2\n' +
      "-D CNI-ISOLATION-STAGE-2 -o mbr-1 -j DROP\n" +
      "-D MICRO-INTERNAL -i mbr-1 ! -o mbr-1 -j DROP\n" +
      "-D MICRO-INTERNAL -o mbr-1 ! -i mbr-1 -j DROP\n" +
      "-D FORWARD -j MICRO-INTERNAL\n" +
      "-X MICRO-INTERNAL\n" +
      '-D FORWARD -m comment --comment "CNI firewall plugin rules" -j CNI-FORWARD\n' +
      "-D FORWARD -j CNI-ISOLATION-STAGE-1\n" +
      "-F CNI-FORWARD\n-F CNI-ISOLATION-STAGE-1\n-F CNI-ISOLATION-STAGE-2\n" +
      "-X CNI-FORWARD\n-X CNI-ISOLATION-STAGE-1\n-X CNI-ISOLATION-STAGE-2\n" +
      "COMMIT\n" +
      `*nat\n-D POSTROUTING -s 10.70.0.0/24 ! -d 224.0.0.0/4 ! -o mbr-1 ${masq} -j MASQUERADE\n` +
      "-D POSTROUTING -j CNI-HOSTPORT-MASQ\n-F CNI-HOSTPORT-MASQ\n-X CNI-HOSTPORT-MASQ\nCOMMIT\n",
  );
  // Another bridge's rules stay, and with them the shared chains and the internal chain.
  saved.filter.rules.push("-A CNI-ISOLATION-STAGE-2 -o mbr-2 -j DROP");
  saved.filter.rules.push("-A MICRO-INTERNAL -i mbr-2 ! -o mbr-2 -j DROP");
  const kept = bridgeRulesScript(saved, "mbr-1", recorded);
  assert.equal(kept.shared, false);
  assert.doesNotMatch(kept.script, /-X|-F|mbr-2|CNI-HOSTPORT/);
  // Nothing recorded (the chains were there before micro): only the bridge's own rules.
  assert.doesNotMatch(bridgeRulesScript(saved, "mbr-1", null).script, /CNI-FORWARD/);
});

Deno.test("a bridge's restore script is not steered by hostile comments, chains or rules of others", () => {
  const mine = {
    filter: ["CNI-FORWARD", "CNI-ISOLATION-STAGE-1", "CNI-ISOLATION-STAGE-2"],
    nat: ["CNI-HOSTPORT-MASQ"],
  };
  // A comment with a newline: iptables-save prints it raw, so its second line looks like a
  // rule (and a table, and a COMMIT) of its own. As printed by iptables v1.8.9 here.
  const text = [
    "*filter",
    ":FORWARD ACCEPT [0:0]",
    ":CNI-ISOLATION-STAGE-1 - [0:0]",
    ":MICRO-INTERNAL - [0:0]",
    '-A FORWARD -m comment --comment "x',
    "COMMIT",
    "*nat",
    '-A CNI-ISOLATION-STAGE-1 -i mbr-1 -j DROP" -j ACCEPT',
    '-A CNI-ISOLATION-STAGE-1 -i eth9 -m comment --comment "y',
    '-A MICRO-INTERNAL -i mbr-1 -j DROP" -j MICRO-INTERNAL',
    "-A MICRO-INTERNAL -i mbr-1 ! -o mbr-1 -j DROP",
    "COMMIT",
    "*mangle",
    ":MICRO-INTERNAL - [0:0]",
    "-A MICRO-INTERNAL -i mbr-1 -j DROP",
    "COMMIT",
    "",
  ].join("\n");
  const saved = parseSave(text);
  assert.deepEqual(saved.filter.chains, ["FORWARD", "CNI-ISOLATION-STAGE-1", "MICRO-INTERNAL"]);
  assert.equal(saved.filter.rules.length, 3);
  assert.deepEqual(saved.nat, { chains: [], rules: [] });
  const { script } = bridgeRulesScript(saved, "mbr-1", null);
  // Only the bridge's own one-line rule; the chain stays, for a rule that jumps into it is
  // one no restore line can name.
  assert.equal(script, "*filter\n-D MICRO-INTERNAL -i mbr-1 ! -o mbr-1 -j DROP\nCOMMIT\n");
  for (const line of script.split("\n")) assert.doesNotMatch(line, /"/);

  // Words inside a comment are not options: neither `-i BRIDGE` nor a jump.
  const worded = {
    filter: {
      chains: ["FORWARD", "CNI-ISOLATION-STAGE-2", "MICRO-INTERNAL"],
      rules: [
        "-A CNI-ISOLATION-STAGE-2 -o eth0 -m comment --comment -o -m comment --comment mbr-1 -j DROP",
        "-A FORWARD -m comment --comment -j -j MICRO-INTERNAL",
        "-A FORWARD -g MICRO-INTERNAL",
      ],
    },
    nat: { chains: [] as string[], rules: [] as string[] },
  };
  assert.equal(
    bridgeRulesScript(worded, "mbr-1", null).script,
    "*filter\n-D FORWARD -m comment --comment -j -j MICRO-INTERNAL\n-D FORWARD -g MICRO-INTERNAL\n" +
      "-X MICRO-INTERNAL\nCOMMIT\n",
  );

  // A shared chain holding a rule no restore line can name is not flushed.
  const shared = parseSave(
    [
      "*filter",
      ":FORWARD ACCEPT [0:0]",
      ":CNI-FORWARD - [0:0]",
      "-A FORWARD -j CNI-FORWARD",
      '-A CNI-FORWARD -m comment --comment "a',
      'b" -j RETURN',
      "COMMIT",
    ].join("\n"),
  );
  assert.equal(bridgeRulesScript(shared, "mbr-1", mine).shared, false);
  assert.equal(bridgeRulesScript(shared, "mbr-1", mine).script, "");
});

Deno.test("net checks: a --name that makes slirp4netns's API socket path too long is one line", () => {
  const lines = (stateDir: string) =>
    net.check!(
      spec({ net: { mode: "slirp4netns" } }),
      netHost({ uid: 1000, stateDir }, { helpers: { slirp4netns: "/usr/bin/slirp4netns" } }),
    ).map((e) => e.line());
  // /run/user/1000/micro/ and a 128-character --name: 166 bytes with the socket's name.
  const long = `/run/user/1000/micro/${"n".repeat(128)}`;
  assert.deepEqual(lines(long), [
    `check: net: --network slirp4netns: its API socket ${long}/slirp4netns.sock is 166 bytes, ` +
    "over the 107 a unix socket path can have " +
    "(give a shorter --name (or a shorter XDG_RUNTIME_DIR), or use pasta)",
  ]);
  // 107 bytes fit.
  assert.deepEqual(lines(`/r/${"n".repeat(107 - 3 - 17)}`), []);
});
