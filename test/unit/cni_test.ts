/**
 * The CNI runtime (core/cni): configuration lists, the plugins' environment and stdin, ADD
 * and DEL through fake plugins (shell scripts that record what they were given), the cached
 * result, gc of a dead run's networks, ports, DNS files, the subnet choice, and the net
 * plugin's plan and checks.
 */
import assert from "node:assert/strict";
import {
  CONFIG_CAP,
  loadConfList,
  microConfList,
  parseConfList,
  untrusted,
} from "../../core/cni/config.ts";
import { hostsFile, resolvConf } from "../../core/cni/dns.ts";
import {
  addNetwork,
  CACHE_FILE,
  type CniCache,
  delNetwork,
  execPlugin,
  pluginConfig,
  pluginEnv,
  readCache,
  resultAddress,
  untrustedPlugin,
  writeCache,
} from "../../core/cni/exec.ts";
import { gcNetworks } from "../../core/cni/gc.ts";
import { currentNetns } from "../../core/cni/attach.ts";
import { jsonDepth, parseJsonLimited } from "../../core/cni/json.ts";
import { checkAddHost, parsePublish } from "../../core/cni/ports.ts";
import { chooseSubnet, parseRoutes } from "../../core/cni/subnet.ts";
import { MicroError } from "../../core/errors.ts";
import { networkProbe } from "../../core/host.ts";
import { openLibc } from "../../core/sys/libc.ts";
import { planRun } from "../../core/plan.ts";
import type { HostInfo, NetFacts } from "../../core/plugin.ts";
import { PLUGINS } from "../../plugins/mod.ts";
import { loadNetHelpers, net, resolveAuto } from "../../plugins/net.ts";
import { netHost, netSpec } from "./_net.ts";

// What plugins/net.ts loads for a network in a run (its load()), before any plan here.
await loadNetHelpers();

async function withDir<T>(fn: (dir: string) => Promise<T> | T): Promise<T> {
  const dir = Deno.makeTempDirSync({ prefix: "micro-cni-test-" });
  try {
    return await fn(dir);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
}

// --- configuration lists ----------------------------------------------------------------

Deno.test("cni: a conflist is parsed; a .conf is a list of one; name and version kept", () => {
  const l = parseConfList(
    '{"cniVersion":"1.0.0","name":"n1","plugins":[{"type":"bridge","bridge":"b0"}]}',
  );
  assert.deepEqual(l, {
    cniVersion: "1.0.0",
    name: "n1",
    plugins: [{ type: "bridge", bridge: "b0" }],
  });
  const one = parseConfList('{"cniVersion":"0.4.0","name":"n2","type":"macvlan","x":1}', true);
  assert.deepEqual(one, { cniVersion: "0.4.0", name: "n2", plugins: [{ type: "macvlan", x: 1 }] });
});

Deno.test("cni: a plugin type that is a path, an unknown version, no plugins are refused", () => {
  const bad = (text: string) => {
    try {
      parseConfList(text);
    } catch (e) {
      return (e as Error).message;
    }
    throw new Error("expected a refusal");
  };
  assert.match(
    bad('{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"../../bin/sh"}]}'),
    /plugins\[0\]\.type must be a plugin's file name/,
  );
  assert.match(
    bad('{"cniVersion":"9.9.9","name":"n","plugins":[{"type":"x"}]}'),
    /not supported/,
  );
  assert.match(bad('{"cniVersion":"1.0.0","name":"n","plugins":[]}'), /non-empty/);
  assert.match(bad('{"cniVersion":"1.0.0","name":"a/b","plugins":[{"type":"x"}]}'), /name/);
  assert.match(bad("[1]"), /not a JSON object/);
});

Deno.test("cni: JSON nested deeper than the limit is refused before JSON.parse", () => {
  const deep = "[".repeat(100_000) + "]".repeat(100_000);
  assert.equal(jsonDepth(deep), 100_000);
  assert.throws(() => parseJsonLimited(deep), /nested deeper than 64 levels/);
  // brackets inside strings do not count
  assert.equal(jsonDepth('{"a":"[[[[[[","b":[1]}'), 2);
  assert.deepEqual(parseJsonLimited('{"a":"[\\"[["}'), { a: '["[[' });
});

Deno.test("cni: the loader takes the first file of that name in name order, skips what it cannot read", async () => {
  await withDir((dir) => {
    const list = (name: string, type: string) =>
      JSON.stringify({ cniVersion: "1.0.0", name, plugins: [{ type }] });
    Deno.writeTextFileSync(`${dir}/20-b.conflist`, list("web", "second"));
    Deno.writeTextFileSync(`${dir}/10-a.conflist`, list("web", "first"));
    Deno.writeTextFileSync(`${dir}/05-big.conflist`, " ".repeat(CONFIG_CAP + 1));
    Deno.writeTextFileSync(`${dir}/06-deep.conflist`, "[".repeat(1000));
    Deno.writeTextFileSync(`${dir}/notes.txt`, "not a config");
    Deno.mkdirSync(`${dir}/07-dir.conflist`);
    new Deno.Command("mkfifo", { args: [`${dir}/08-fifo.conflist`] }).outputSync();
    assert.equal(loadConfList(dir, "web").plugins[0].type, "first");
    try {
      loadConfList(dir, "other");
      assert.fail("expected an error");
    } catch (e) {
      assert.ok(e instanceof MicroError);
      const line = e.line();
      assert.match(line, /^unknown network "other": no CNI configuration of that name in /);
      assert.match(line, /05-big\.conflist: is 1 MiB, over the 1 MiB limit/);
      assert.match(line, /06-deep\.conflist: nested deeper than 64 levels/);
      assert.match(line, /07-dir\.conflist: is a directory/);
      assert.match(line, /08-fifo\.conflist: is a FIFO, not a regular file/);
      assert.ok(!line.includes("\n"));
    }
  });
});

Deno.test("cni: micro's own list is podman's default shape on micro0", () => {
  const l = microConfList("10.88.0.0/16", "10.88.0.1", "/run/micro/.networks");
  assert.deepEqual(l.plugins.map((p) => p.type), ["bridge", "portmap", "firewall"]);
  assert.equal(l.plugins[0].bridge, "micro0");
  assert.equal(l.plugins[0].ipMasq, true);
  assert.deepEqual((l.plugins[0].ipam as { ranges: unknown }).ranges, [[{
    subnet: "10.88.0.0/16",
    gateway: "10.88.0.1",
  }]]);
  assert.deepEqual(l.plugins[1].capabilities, { portMappings: true });
});

// --- environment, stdin, ADD and DEL through fake plugins --------------------------------

Deno.test("cni: a plugin's environment is CNI_* and a fixed PATH, nothing of micro's", () => {
  const a = {
    containerId: "c1",
    netns: "/proc/1/ns/net",
    ifName: "eth0",
    cniPath: ["/a", "/b"],
    args: [["K8S_POD_NAME", "x"]] as [string, string][],
  };
  assert.deepEqual(pluginEnv("ADD", a), {
    CNI_COMMAND: "ADD",
    CNI_CONTAINERID: "c1",
    CNI_NETNS: "/proc/1/ns/net",
    CNI_IFNAME: "eth0",
    CNI_PATH: "/a:/b",
    CNI_ARGS: "K8S_POD_NAME=x",
    PATH: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
  });
  // DEL after the namespace is gone: no CNI_NETNS at all (the spec allows it)
  assert.equal(pluginEnv("DEL", { ...a, netns: "" }).CNI_NETNS, undefined);
});

Deno.test("cni: runtimeConfig goes only to plugins that declare the capability", () => {
  const list = microConfList("10.88.0.0/16", "10.88.0.1", "/x");
  const rc = { portMappings: [{ hostPort: 1, containerPort: 2, protocol: "tcp", hostIP: "" }] };
  const bridge = pluginConfig(list, list.plugins[0], rc, undefined);
  const portmap = pluginConfig(list, list.plugins[1], rc, { ips: [] });
  assert.equal(bridge.runtimeConfig, undefined);
  assert.equal(bridge.prevResult, undefined);
  assert.equal(bridge.name, "micro");
  assert.equal(bridge.cniVersion, "1.0.0");
  assert.deepEqual(portmap.runtimeConfig, rc);
  assert.deepEqual(portmap.prevResult, { ips: [] });
});

/**
 * Fake plugins in `dir`: each appends "NAME CMD" plus its environment and stdin to `log`
 * and prints a result naming itself (ADD), or fails as told by a file named `fail-NAME`.
 */
function fakePlugins(dir: string, names: string[]): string {
  const log = `${dir}/log`;
  for (const name of names) {
    Deno.writeTextFileSync(
      `${dir}/${name}`,
      `#!/bin/sh
in=$(cat)
{ echo "== ${name} $CNI_COMMAND"; env | sort | grep -v '^PWD=\\|^SHLVL=\\|^_='; echo "$in"; } >> ${log}
if [ -e ${dir}/fail-${name} ]; then
  echo '{"cniVersion":"1.0.0","code":11,"msg":"no luck","details":"on purpose"}'; exit 1
fi
[ "$CNI_COMMAND" = ADD ] && printf '{"cniVersion":"1.0.0","ips":[{"address":"10.9.0.%s/16"}],"by":"${name}"}' ${
        names.indexOf(name) + 2
      }
exit 0
`,
      { mode: 0o755 },
    );
  }
  return log;
}

function entries(log: string): { head: string; env: Record<string, string>; stdin: unknown }[] {
  return Deno.readTextFileSync(log).split("== ").slice(1).map((block) => {
    const lines = block.trimEnd().split("\n");
    const env: Record<string, string> = {};
    for (const l of lines.slice(1, -1)) {
      env[l.slice(0, l.indexOf("="))] = l.slice(l.indexOf("=") + 1);
    }
    return { head: lines[0], env, stdin: JSON.parse(lines[lines.length - 1]) };
  });
}

function fakeList(names: string[]) {
  return {
    cniVersion: "1.0.0",
    name: "fake",
    plugins: names.map((type) => ({ type, capabilities: { portMappings: true } })),
  };
}

Deno.test("cni: ADD runs the plugins in order, each result the next one's prevResult", async () => {
  await withDir(async (dir) => {
    const log = fakePlugins(dir, ["one", "two"]);
    const a = { containerId: "c9", netns: "/proc/1/ns/net", ifName: "eth0", cniPath: [dir] };
    const result = await addNetwork(fakeList(["one", "two"]), a);
    assert.deepEqual(result, {
      cniVersion: "1.0.0",
      ips: [{ address: "10.9.0.3/16" }],
      by: "two",
    });
    assert.equal(resultAddress(result), "10.9.0.3");
    const e = entries(log);
    assert.deepEqual(e.map((x) => x.head), ["one ADD", "two ADD"]);
    assert.equal(e[0].env.CNI_CONTAINERID, "c9");
    assert.equal(e[0].env.CNI_IFNAME, "eth0");
    assert.equal(e[0].env.HOME, undefined, "micro's own environment leaked");
    assert.equal((e[0].stdin as { prevResult?: unknown }).prevResult, undefined);
    assert.equal((e[1].stdin as { prevResult: { by: string } }).prevResult.by, "one");
  });
});

Deno.test("cni: DEL runs in reverse with the cached result; all run even when one fails", async () => {
  await withDir(async (dir) => {
    const log = fakePlugins(dir, ["one", "two"]);
    Deno.writeTextFileSync(`${dir}/fail-two`, "");
    const a = { containerId: "c9", netns: "", ifName: "eth0", cniPath: [dir] };
    const cached = { cniVersion: "1.0.0", ips: [], by: "cache" };
    await assert.rejects(
      () => delNetwork(fakeList(["one", "two"]), a, cached),
      (e: unknown) => {
        assert.ok(e instanceof MicroError);
        assert.equal(
          e.line(),
          "cleanup: net: CNI DEL network=fake plugin=two: no luck: on purpose (CNI error 11)",
        );
        return true;
      },
    );
    const e = entries(log);
    assert.deepEqual(e.map((x) => x.head), ["two DEL", "one DEL"]);
    assert.equal((e[1].stdin as { prevResult: { by: string } }).prevResult.by, "cache");
    assert.equal(e[1].env.CNI_NETNS, undefined);
  });
});

Deno.test("cni: a failed ADD is one line, and what was added is DELeted again", async () => {
  await withDir(async (dir) => {
    const log = fakePlugins(dir, ["one", "two"]);
    Deno.writeTextFileSync(`${dir}/fail-two`, "");
    const a = { containerId: "c9", netns: "/proc/1/ns/net", ifName: "eth0", cniPath: [dir] };
    await assert.rejects(() => addNetwork(fakeList(["one", "two"]), a), /no luck: on purpose/);
    assert.deepEqual(entries(log).map((x) => x.head), [
      "one ADD",
      "two ADD",
      "two DEL",
      "one DEL",
    ]);
  });
});

Deno.test("cni: a plugin's message is one line for the terminal, cut, with no escapes", async () => {
  await withDir(async (dir) => {
    const said = { code: 7, msg: "bad\nline\u001b[2J", details: "y".repeat(5000) };
    Deno.writeTextFileSync(`${dir}/said.json`, JSON.stringify(said));
    Deno.writeTextFileSync(
      `${dir}/noisy`,
      `#!/bin/sh\ncat >/dev/null\ncat ${dir}/said.json\nexit 1\n`,
      { mode: 0o755 },
    );
    const a = { containerId: "c9", netns: "/x", ifName: "eth0", cniPath: [dir] };
    await assert.rejects(
      () => execPlugin("ADD", fakeList(["noisy"]), { type: "noisy" }, a),
      (e: unknown) => {
        assert.ok(e instanceof MicroError);
        const line = e.line();
        assert.ok(!line.includes("\n") && !line.includes("\u001b"), line);
        assert.match(line, /: bad line \[2J: y+… \(CNI error 7\)$/);
        assert.ok(line.length < 600, `${line.length}`);
        return true;
      },
    );
  });
});

Deno.test("cni: a plugin that hangs, with a child holding its stdout, is killed with the child at the timeout", async () => {
  await withDir(async (dir) => {
    Deno.writeTextFileSync(
      `${dir}/hangs`,
      `#!/bin/sh
cat >/dev/null
sleep 300 &
echo $! > ${dir}/bg
exit 0
`,
      { mode: 0o755 },
    );
    const a = { containerId: "c9", netns: "/x", ifName: "eth0", cniPath: [dir] };
    const began = Date.now();
    await assert.rejects(
      () => execPlugin("ADD", fakeList(["hangs"]), { type: "hangs" }, a, undefined, 500),
      (e: unknown) => {
        assert.ok(e instanceof MicroError);
        assert.match(
          e.line(),
          /CNI ADD network=fake plugin=hangs: it did not finish in 0.5 s; killed with what it/,
        );
        return true;
      },
    );
    assert.ok(Date.now() - began < 10_000);
    const bg = Number(Deno.readTextFileSync(`${dir}/bg`).trim());
    // The background sleep was in the plugin's process group: it is gone (or a zombie of init).
    for (let i = 0; i < 50; i++) {
      let state = "";
      try {
        state = Deno.readTextFileSync(`/proc/${bg}/stat`).split(") ")[1]?.[0] ?? "";
      } catch { /* gone */ }
      if (state === "" || state === "Z") return;
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.fail(`the plugin's background child ${bg} still runs`);
  });
});

Deno.test("cni: a plugin missing from CNI_PATH names the path and the package", async () => {
  await withDir(async (dir) => {
    const a = { containerId: "c9", netns: "/x", ifName: "eth0", cniPath: [dir] };
    await assert.rejects(
      () => addNetwork(fakeList(["nothere"]), a),
      (e: unknown) => {
        assert.ok(e instanceof MicroError);
        assert.match(e.line(), /no plugin binary "nothere" in .*containernetworking-plugins/);
        return true;
      },
    );
  });
});

// --- the cache and gc -------------------------------------------------------------------

function cacheFor(dir: string, hostNetns: string): CniCache {
  return {
    kind: "cniCacheV1",
    containerId: "dead1",
    ifName: "eth0",
    cniPath: [dir],
    runtimeConfig: { portMappings: [] },
    config: fakeList(["one", "two"]),
    hostNetns,
    result: { cniVersion: "1.0.0", ips: [], by: "cache" },
  };
}

Deno.test("cni: the cache is written atomically and read back; junk is an error", async () => {
  await withDir((dir) => {
    const c = cacheFor(dir, "net:[1]");
    writeCache(`${dir}/${CACHE_FILE}`, c);
    assert.deepEqual(readCache(`${dir}/${CACHE_FILE}`), c);
    assert.equal(readCache(`${dir}/none.json`), null);
    Deno.writeTextFileSync(`${dir}/junk.json`, '{"kind":"other"}');
    assert.throws(() => readCache(`${dir}/junk.json`), /not a CNI cache record/);
  });
});

Deno.test("cni gc: a dead run's networks are DELeted from its cache, then the record goes", async () => {
  await withDir(async (dir) => {
    const log = fakePlugins(dir, ["one", "two"]);
    const run = `${dir}/run1`;
    Deno.mkdirSync(run);
    writeCache(`${run}/${CACHE_FILE}`, cacheFor(dir, currentNetns()));
    assert.deepEqual(await gcNetworks([{ dir: run }], dir), []);
    const e = entries(log);
    assert.deepEqual(e.map((x) => x.head), ["two DEL", "one DEL"]);
    assert.equal(e[0].env.CNI_CONTAINERID, "dead1");
    assert.equal((e[0].stdin as { prevResult: { by: string } }).prevResult.by, "cache");
    assert.ok(!Deno.statSync(run).isFile);
    assert.throws(() => Deno.statSync(`${run}/${CACHE_FILE}`));
  });
});

Deno.test("cni gc: a run of another network namespace is left alone", async () => {
  await withDir(async (dir) => {
    fakePlugins(dir, ["one", "two"]);
    const run = `${dir}/run1`;
    Deno.mkdirSync(run);
    writeCache(`${run}/${CACHE_FILE}`, cacheFor(dir, "net:[1]"));
    assert.deepEqual(await gcNetworks([{ dir: run }], dir), []);
    assert.throws(() => Deno.statSync(`${dir}/log`), "a plugin ran");
    assert.ok(Deno.statSync(`${run}/${CACHE_FILE}`).isFile);
  });
});

// --- ports, DNS files, subnets ----------------------------------------------------------

Deno.test("publish: Docker's forms, ranges, protocols and refusals", () => {
  assert.deepEqual(parsePublish("8080:80"), [
    { hostPort: 8080, containerPort: 80, protocol: "tcp", hostIP: "" },
  ]);
  assert.deepEqual(parsePublish("127.0.0.1:53:5353/udp"), [
    { hostPort: 53, containerPort: 5353, protocol: "udp", hostIP: "127.0.0.1" },
  ]);
  assert.deepEqual(parsePublish("[::1]:8080:80"), [
    { hostPort: 8080, containerPort: 80, protocol: "tcp", hostIP: "::1" },
  ]);
  assert.deepEqual((parsePublish("9000-9002:80-82") as unknown[]).length, 3);
  assert.match(parsePublish("80") as string, /a host port is required/);
  assert.match(parsePublish("8080:80/sctp") as string, /not tcp or udp/);
  assert.match(parsePublish("0:80") as string, /not a port/);
  assert.match(parsePublish("70000:80") as string, /not a port/);
  assert.match(parsePublish("host:8080:80") as string, /not an IP address/);
});

Deno.test("resolv.conf: loopback resolvers are replaced as Docker does", () => {
  const host = "# generated\nnameserver 127.0.0.53\nsearch lan corp\noptions edns0 trust-ad\n";
  assert.equal(
    resolvConf(host, "nameserver 192.0.2.1\nnameserver 192.0.2.2\n"),
    "search lan corp\nnameserver 192.0.2.1\nnameserver 192.0.2.2\noptions edns0 trust-ad\n",
  );
  // no upstream list: Docker's fallback
  assert.equal(
    resolvConf(host, ""),
    "search lan corp\nnameserver 8.8.8.8\nnameserver 8.8.4.4\n" +
      "options edns0 trust-ad\n",
  );
  // a real resolver is kept; --dns and --dns-search replace
  assert.equal(resolvConf("nameserver 192.0.2.9\n", ""), "nameserver 192.0.2.9\n");
  assert.equal(
    resolvConf(host, "", { servers: ["192.0.2.5"], search: ["example.org"] }),
    "search example.org\nnameserver 192.0.2.5\noptions edns0 trust-ad\n",
  );
});

Deno.test("hosts: localhost, the --add-host entries, then the container's name and address", () => {
  const text = hostsFile("web", "10.88.0.2", ["db:192.0.2.7", "v6:2001:db8::1"]);
  const lines = text.trim().split("\n");
  assert.equal(lines[0], "127.0.0.1\tlocalhost");
  assert.ok(lines.includes("192.0.2.7\tdb"));
  assert.ok(lines.includes("2001:db8::1\tv6"));
  assert.equal(lines[lines.length - 1], "10.88.0.2\tweb");
  assert.equal(checkAddHost("db:192.0.2.7"), undefined);
  assert.match(checkAddHost("db") ?? "", /NAME:IP/);
  assert.match(checkAddHost("db:nope") ?? "", /not an IP address/);
});

const ROUTES = `Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0
eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
`;

Deno.test("subnet: 10.88.0.0/16 unless a host route overlaps it; the bridge's own wins", () => {
  const routes = parseRoutes(ROUTES);
  assert.deepEqual(routes, [
    { iface: "eth0", dst: 0, prefix: 0 },
    { iface: "eth0", dst: 0xc0000200, prefix: 24 },
  ]);
  assert.deepEqual(chooseSubnet(routes, "micro0"), {
    subnet: "10.88.0.0/16",
    gateway: "10.88.0.1",
  });
  // a VPN's 10.0.0.0/8 covers every 10.x candidate: the next family is taken
  const vpn = [...routes, { iface: "tun0", dst: 0x0a000000, prefix: 8 }];
  assert.deepEqual(chooseSubnet(vpn, "micro0"), { subnet: "172.31.0.0/16", gateway: "172.31.0.1" });
  // 10.88.5.0/24 on the LAN: 10.89 is the next
  const lan = [{ iface: "eth1", dst: 0x0a580500, prefix: 24 }];
  assert.equal(chooseSubnet(lan, "micro0")?.subnet, "10.89.0.0/16");
  // the bridge exists already (with a route of its own): its subnet stays
  const mine = [...vpn, { iface: "micro0", dst: 0x0a580000, prefix: 16 }];
  assert.equal(chooseSubnet(mine, "micro0")?.subnet, "10.88.0.0/16");
});

// --- the net plugin: auto, plan and checks ----------------------------------------------

/** The fixture's host, with a loopback resolver (the case resolv.conf handling is about). */
function host(over: Partial<HostInfo> = {}, net?: Partial<NetFacts>): HostInfo {
  return netHost(over, { resolv: "nameserver 127.0.0.53\n", ...net });
}

const spec = netSpec;

Deno.test("net auto: bridge as root when the host has it, else none with one reason", () => {
  const s1 = spec();
  assert.equal(s1.micro.network, "auto");
  resolveAuto(s1, host());
  assert.equal(s1.micro.network, "bridge");
  assert.deepEqual(s1.micro.runFiles, ["hosts", "hostname", "resolv.conf"]);

  const s2 = spec();
  resolveAuto(s2, host({}, { missing: ["iptables (Debian: apt install iptables)"] }));
  assert.equal(s2.micro.network, "none");
  assert.equal(s2.micro.runFiles, undefined);
  assert.equal(
    s2.micro.networkFallback,
    "no bridge network, running with --network none: needs iptables (Debian: apt install iptables)",
  );
  // rootless: none, silently (pasta comes later)
  const s3 = spec();
  resolveAuto(s3, host({ uid: 1000 }, { missing: ["root"] }));
  assert.equal(s3.micro.network, "none");
  assert.equal(s3.micro.networkFallback, undefined);
  // MICRO_DEFAULT_NETWORK=none: none, silently
  const s4 = spec();
  resolveAuto(s4, host({}, { defaultNetwork: "none" }));
  assert.equal(s4.micro.network, "none");
  assert.equal(s4.micro.networkFallback, undefined);
  // -p asks for a network; but MICRO_DEFAULT_NETWORK=none wins, and the check refuses -p
  const s6 = spec({ net: { publish: ["8080:80"] } });
  resolveAuto(s6, host({ uid: 0 }, { missing: [] }));
  assert.equal(s6.micro.network, "bridge");
  const s7 = spec({ net: { publish: ["8080:80"] } });
  resolveAuto(s7, host({}, { defaultNetwork: "none" }));
  assert.equal(s7.micro.network, "none");
  assert.match(net.check!(s7, host())[0].line(), /--publish needs a network/);
  // hardened keeps none whatever the host has
  const s5 = spec({}, ["hardened"]);
  resolveAuto(s5, host());
  assert.equal(s5.micro.network, "none");
});

Deno.test("networkProbe: auto made none by MICRO_DEFAULT_NETWORK gives the same facts without the CNI modules", async () => {
  const before = Deno.env.get("MICRO_DEFAULT_NETWORK");
  Deno.env.set("MICRO_DEFAULT_NETWORK", "none");
  try {
    const s = spec();
    assert.equal(s.micro.network, "auto");
    const probe = await networkProbe(s);
    const { probeNetwork } = await import("../../core/cni/probe.ts");
    assert.ok(probe && probe !== probeNetwork, "the CNI probe was used");
    const sys = openLibc();
    assert.deepEqual(probe(s, sys, 0), probeNetwork(s, sys, 0));
    assert.equal(probe(s, sys, 0).defaultNetwork, "none");
    Deno.env.set("MICRO_DEFAULT_NETWORK", "bridge");
    assert.equal(await networkProbe(s), probeNetwork);
  } finally {
    if (before === undefined) Deno.env.delete("MICRO_DEFAULT_NETWORK");
    else Deno.env.set("MICRO_DEFAULT_NETWORK", before);
  }
});

Deno.test("net bridge: ADD in attach with the ports, the DNS files bound, DEL at cleanup", () => {
  const s = spec({
    net: { mode: "bridge", publish: ["8080:80"], dns: ["192.0.2.53"], addHosts: ["db:192.0.2.7"] },
  });
  const ops = planRun(s, host(), PLUGINS);
  const add = ops.find((o) => o.kind === "cni-add");
  assert.ok(add && add.kind === "cni-add");
  assert.equal(add.phase, "attach");
  assert.equal(add.args.containerId, "web");
  assert.equal(add.args.cache, "/run/micro/web/cni.json");
  assert.deepEqual(add.args.portMappings, [
    { hostPort: 8080, containerPort: 80, protocol: "tcp", hostIP: "" },
  ]);
  assert.deepEqual(add.args.files, {
    dir: "/run/micro/web",
    hostname: "web",
    resolv: "nameserver 192.0.2.53\n",
    addHosts: ["db:192.0.2.7"],
  });
  assert.ok(ops.some((o) => o.kind === "cni-del" && o.phase === "cleanup"));
  const binds = ops.filter((o) => o.kind === "mount" && o.args.source.startsWith("/run/micro/web/"))
    .map((o) => o.kind === "mount" ? `${o.args.source} ${o.args.target} ${o.args.attached}` : "");
  // Written by the attach: the child binds them only after it waited for it.
  assert.deepEqual(binds, [
    "/run/micro/web/hosts /etc/hosts true",
    "/run/micro/web/hostname /etc/hostname true",
    "/run/micro/web/resolv.conf /etc/resolv.conf true",
  ]);
  // before pivot_root, so the state dir is still reachable
  const pivot = ops.findIndex((o) => o.kind === "pivot-root");
  assert.ok(ops.findIndex((o) => o.kind === "mount" && o.args.target === "/etc/hosts") < pivot);
});

Deno.test("net checks: a missing piece is one line naming it; -p needs a network", () => {
  const s = spec({ net: { mode: "bridge" } });
  const errs = net.check!(
    s,
    host({}, {
      missing: [
        "the CNI plugins bridge, portmap in /usr/lib/cni (Debian: apt install " +
        "containernetworking-plugins, or set CNI_PATH)",
      ],
    }),
  );
  assert.deepEqual(errs.map((e) => e.line()), [
    "check: net: --network bridge needs the CNI plugins bridge, portmap in /usr/lib/cni " +
    "(Debian: apt install containernetworking-plugins, or set CNI_PATH)",
  ]);
  const h = spec({ net: { mode: "host", publish: ["80:80"] } });
  assert.match(net.check!(h, host())[0].line(), /--publish needs a network with its own address/);
});

// --- what micro runs as root: only what root (or the caller) alone may write ------------

Deno.test("cni: a config directory or file others may write is refused (they would choose root's plugins)", async () => {
  await withDir((dir) => {
    const list = JSON.stringify({ cniVersion: "1.0.0", name: "web", plugins: [{ type: "x" }] });
    const nets = `${dir}/nets`;
    Deno.mkdirSync(nets, { mode: 0o755 });
    Deno.writeTextFileSync(`${nets}/10-web.conflist`, list, { mode: 0o644 });
    assert.equal(loadConfList(nets, "web").plugins[0].type, "x");
    // A file another user may write: skipped, and named with why.
    Deno.chmodSync(`${nets}/10-web.conflist`, 0o666);
    assert.throws(
      () => loadConfList(nets, "web"),
      (e) =>
        e instanceof MicroError &&
        /skipped 10-web\.conflist: may be written by others: refused/.test(e.line()),
    );
    Deno.chmodSync(`${nets}/10-web.conflist`, 0o644);
    // A directory others may write (a sticky /tmp as well): files could be swapped in.
    Deno.chmodSync(nets, 0o1777);
    assert.throws(
      () => loadConfList(nets, "web"),
      (e) =>
        e instanceof MicroError &&
        e.line() ===
          `network "web": the CNI config directory ${nets} may be written by others: refused ` +
            "on purpose, since whoever writes there chooses the plugins micro runs as root and " +
            `their configuration (chmod go-w ${nets} (owned by root), or give another with ` +
            "--cni-config-dir)",
    );
  });
});

Deno.test("cni: untrusted: another owner than root or the caller, or group/world write", () => {
  assert.equal(untrusted({ uid: 0, mode: 0o100755 }, 0), undefined);
  assert.equal(untrusted({ uid: 1000, mode: 0o100755 }, 1000), undefined);
  assert.equal(untrusted({ uid: 1000, mode: 0o100755 }, 0), "belongs to uid 1000");
  assert.equal(untrusted({ uid: 0, mode: 0o100775 }, 0), "may be written by others");
  assert.equal(untrusted({ uid: 0, mode: 0o040757 }, 0), "may be written by others");
});

Deno.test("cni: a plugin binary, or its CNI_PATH directory, others may write is not run", async () => {
  await withDir(async (dir) => {
    const log = fakePlugins(dir, ["one"]);
    const list = parseConfList(
      JSON.stringify({ cniVersion: "1.0.0", name: "web", plugins: [{ type: "one" }] }),
    );
    const a = { containerId: "c1", netns: "/proc/self/ns/net", ifName: "eth0", cniPath: [dir] };
    for (
      const [what, mode, why] of [
        ["binary", 0o757, `${dir}/one may be written by others`],
        ["directory", 0o777, `its directory ${dir} may be written by others`],
      ] as const
    ) {
      Deno.chmodSync(what === "binary" ? `${dir}/one` : dir, mode);
      assert.equal(untrustedPlugin(`${dir}/one`), why);
      await assert.rejects(
        () => addNetwork(list, a),
        (e) => e instanceof MicroError && e.line().includes(`refused to run the plugin: ${why}`),
      );
      assert.throws(() => Deno.statSync(log), "the plugin ran");
      Deno.chmodSync(what === "binary" ? `${dir}/one` : dir, what === "binary" ? 0o755 : 0o700);
    }
    assert.equal(untrustedPlugin(`${dir}/one`), undefined);
    // A link in CNI_PATH to a binary in a directory others may write.
    Deno.mkdirSync(`${dir}/open`, { mode: 0o777 });
    Deno.chmodSync(`${dir}/open`, 0o777);
    Deno.copyFileSync(`${dir}/one`, `${dir}/open/two`);
    Deno.chmodSync(`${dir}/open/two`, 0o755);
    Deno.symlinkSync(`${dir}/open/two`, `${dir}/two`);
    assert.equal(
      untrustedPlugin(`${dir}/two`),
      `its directory ${Deno.realPathSync(dir)}/open may be written by others`,
    );
  });
});

Deno.test("cni: a cache record whose plugins or paths a config file could not have is refused", async () => {
  await withDir((dir) => {
    const path = `${dir}/${CACHE_FILE}`;
    const good = cacheFor(dir, "net:[1]");
    for (
      const bad of [
        { config: { ...good.config, plugins: [{ type: "../../tmp/evil" }] } },
        { cniPath: ["bin"] },
        { ifName: "eth0/../x" },
      ]
    ) {
      writeCache(path, { ...good, ...bad } as typeof good);
      assert.throws(() => readCache(path), /plugins\[0\]\.type|not a CNI cache record/);
    }
  });
});

Deno.test("net container:NAME: no namespace of its own, a join and the shared files; its own choices refused", () => {
  const s = spec({ net: { mode: "container:web" } });
  assert.equal(s.micro.network, "container");
  assert.deepEqual(s.micro.join, { network: "web" });
  assert.equal(s.linux.namespaces.some((n) => n.type === "network"), false);
  assert.deepEqual(net.check!(s, host()), []);
  const ops = net.plan!(s, host());
  assert.deepEqual(ops.map((o) => o.kind), ["join", "net-join-files"]);
  assert.deepEqual(ops[0].args, { flag: "CLONE_NEWNET", container: "web" });
  assert.deepEqual((ops[1].args as { names: string[] }).names, [
    "hosts",
    "hostname",
    "resolv.conf",
  ]);
  const p = spec({ net: { mode: "container:web", publish: ["80:80"], dns: ["1.1.1.1"] } });
  assert.match(
    net.check!(p, host())[0].line(),
    /--publish, --dns cannot be used with --network container:web/,
  );
  // A user namespace of the container's own cannot join the host-owned namespace.
  const h = spec({ net: { mode: "container:web" } }, ["hardened"]);
  assert.match(
    net.check!(h, host())[0].line(),
    /--network container:web cannot be used with a user/,
  );
});
