/**
 * Created networks (issue 11): `micro network create|ls|inspect|rm`, `--network NAME`,
 * isolation between networks, `--internal`, `--ip`, `-P`, the default bridge going with its
 * last container, and 100 containers at once on one network.
 *
 * Each test runs micro inside network namespaces it makes (test/integration/_netns.ts) with
 * a private /run/micro and MICRO_ROOT in a temp dir: no bridge, route or rule is ever made
 * in this machine's own namespace, and the namespaces go when the test ends, however.
 */
import assert from "node:assert/strict";
import { hostPlatform } from "../../core/image/platform.ts";
import {
  exists,
  IMAGE,
  lacking,
  microTest,
  ok,
  type RunResult,
  show,
  sleep,
  waitFor,
} from "./_helpers.ts";
import { type Netns, uniqueName, withHosts } from "./_netns.ts";
import { makeImage, writeLayout } from "./_registry.ts";

const CNI_DIR = "/usr/lib/cni";

function which(name: string): boolean {
  return ["/usr/sbin", "/usr/bin", "/sbin", "/bin"].some((d) => exists(`${d}/${name}`));
}

const NEEDS_NET = lacking(
  ["bridge", "host-local", "portmap", "firewall"].every((p) => exists(`${CNI_DIR}/${p}`))
    ? undefined
    : `no CNI plugins in ${CNI_DIR} (Debian: containernetworking-plugins)`,
  which("iptables") ? undefined : "no iptables",
  which("nsenter") && which("unshare") ? undefined : "no nsenter/unshare (util-linux)",
  which("curl") ? undefined : "no curl",
);

/** A refusal: exit 125 and exactly one line on stderr, matching `re`. */
function oneLine(r: RunResult, re: RegExp): void {
  assert.equal(r.code, 125, show(r));
  assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
  assert.match(r.stderr, re);
}

interface Inspected {
  Name: string;
  Id: string;
  Driver: string;
  Internal: boolean;
  IPAM: { Config: { Subnet: string; Gateway: string }[] };
  Options: Record<string, string>;
  Containers: Record<string, { Name: string; IPv4Address: string; Ports: { hostPort: number }[] }>;
}

async function inspect(host: Netns, name: string): Promise<Inspected> {
  return (JSON.parse(ok(await host.micro(["network", "inspect", name]))) as Inspected[])[0];
}

const HTTPD = "trap 'exit 0' TERM; mkdir -p /tmp/www && " +
  'echo "hello from $(hostname)" > /tmp/www/index.html && httpd -p 80 -h /tmp/www && ' +
  "ip -4 -o addr show eth0; echo up; while :; do sleep 0.2; done";

const SLEEPER = "trap 'exit 0' TERM; ip -4 -o addr show eth0; echo up; while :; do sleep 0.2; done";

function addressIn(text: string): string | undefined {
  return /inet (\d+\.\d+\.\d+\.\d+)\//.exec(text)?.[1];
}

microTest(
  "network create, ls, inspect, rm; a bad CIDR, an overlap, an unknown network: one line, 125",
  async () => {
    await withHosts(async (host) => {
      // A LAN route of the playing host that a network must not overlap.
      await host.sh(
        "ip link add lan0 type veth peer name lan1 && ip addr add 10.123.0.1/16 dev lan0 && " +
          "ip link set lan0 up && ip link set lan1 up",
      );
      const front = ok(await host.micro(["network", "create", "front"])).trim();
      assert.match(front, /^[0-9a-f]{64}$/);
      const back = ok(
        await host.micro([
          "network",
          "create",
          "--subnet",
          "10.124.0.0/24",
          "--gateway",
          "10.124.0.254",
          "--internal",
          "back",
        ]),
      ).trim();
      oneLine(
        await host.micro(["network", "create", "--subnet", "10.123.4.0/24", "x"]),
        /subnet 10\.123\.4\.0\/24 overlaps the host's route 10\.123\.0\.0\/16 on lan0/,
      );
      oneLine(
        await host.micro(["network", "create", "--subnet", "10.124.0.0/16", "x"]),
        /subnet 10\.124\.0\.0\/16 overlaps network "back"/,
      );
      oneLine(
        await host.micro(["network", "create", "--subnet", "10.1.2.0/33", "x"]),
        /subnet "10\.1\.2\.0\/33": the prefix must be 8 to 30/,
      );
      oneLine(
        await host.micro(["network", "create", "front"]),
        /a network named "front" already exists/,
      );
      const ls = ok(await host.micro(["network", "ls"])).split("\n");
      assert.match(ls[0], /^NETWORK ID\s+NAME\s+DRIVER\s+SCOPE$/);
      assert.match(ls[1], /^[0-9a-f]{12}\s+micro\s+bridge\s+local$/);
      assert.ok(ls.some((l) => l.startsWith(`${front.slice(0, 12)}   front`)), ls.join("\n"));
      assert.ok(ls.some((l) => l.startsWith(`${back.slice(0, 12)}   back`)), ls.join("\n"));
      const q = ok(await host.micro(["network", "ls", "-q"])).trim().split("\n");
      assert.equal(q.length, 3);
      assert.ok(q.includes(back.slice(0, 12)));

      const b = await inspect(host, "back");
      assert.equal(b.Id, back);
      assert.equal(b.Driver, "bridge");
      assert.equal(b.Internal, true);
      assert.deepEqual(b.IPAM.Config, [{ Subnet: "10.124.0.0/24", Gateway: "10.124.0.254" }]);
      assert.equal(b.Options["com.docker.network.bridge.name"], `mbr-${back.slice(0, 11)}`);
      // The free subnet avoids 10.88 (micro's own), the LAN and "back".
      const f = await inspect(host, "front");
      assert.deepEqual(f.IPAM.Config, [{ Subnet: "10.89.0.0/16", Gateway: "10.89.0.1" }]);

      oneLine(
        await host.micro(["run", "--rm", "--network", "nope", IMAGE, "true"]),
        /unknown network "nope"/,
      );
      oneLine(
        await host.micro(["run", "--rm", "--network", "back", "--ip", "10.125.0.5", IMAGE, "true"]),
        /--ip 10\.125\.0\.5 is not a host address of network "back" \(10\.124\.0\.0\/24\)/,
      );
      oneLine(
        await host.micro(["run", "--rm", "--network", "none", "--ip", "10.124.0.5", IMAGE, "true"]),
        /--ip needs a network with its own address, not "none"/,
      );

      // rm is refused while a container uses the network, and names it.
      const name = uniqueName("user");
      const bg = host.background([
        "run",
        "--rm",
        "--name",
        name,
        "--network",
        "front",
        IMAGE,
        "sh",
        "-c",
        SLEEPER,
      ]);
      try {
        assert.ok(await bg.waitForStdout("up", 30_000), bg.stderr);
        const ip = addressIn(bg.stdout);
        assert.match(ip ?? "", /^10\.89\./);
        oneLine(
          await host.micro(["network", "rm", "front"]),
          new RegExp(`network "front" is in use by container ${name}`),
        );
        const c = Object.values((await inspect(host, "front")).Containers);
        assert.deepEqual(c.map((x) => [x.Name, x.IPv4Address]), [[name, `${ip}/16`]]);
      } finally {
        bg.kill("SIGTERM");
        assert.equal((await bg.result(60_000)).code, 0, bg.stderr);
      }
      // The created bridge stays after its last container, until rm.
      assert.match(await host.sh(`ip -o link show mbr-${front.slice(0, 11)}`), /mbr-/);
      assert.match(await host.sh("iptables -S CNI-ISOLATION-STAGE-2"), /-o mbr-/);
      // micro's masquerade, one rule per bridge, stays with it too (and goes with rm below).
      assert.match(await host.sh("iptables -t nat -S POSTROUTING"), /! -o mbr-\S+ .*MASQUERADE/);
      assert.equal(ok(await host.micro(["network", "rm", "front", "back"])), "front\nback\n");
      assert.equal(await host.sh("ip -o link show type bridge"), "");
      assert.doesNotMatch(await host.sh("iptables-save"), /mbr-/);
      assert.deepEqual([...Deno.readDirSync(`${host.root}/networks`)], []);
      oneLine(await host.micro(["network", "rm", "front"]), /no network "front"/);
    });
  },
  { ignore: NEEDS_NET },
);

/** wget from a container on `network` to `url`; its output, or "" when it failed. */
async function fetchFrom(host: Netns, network: string, url: string): Promise<string> {
  const r = await host.micro([
    "run",
    "--rm",
    "--network",
    network,
    IMAGE,
    "sh",
    "-c",
    `timeout 3 wget -q -O - ${url} || echo FAILED`,
  ]);
  return ok(r);
}

microTest(
  "one network's containers talk; other networks are isolated; --internal has no way out",
  async () => {
    await withHosts(async (host) => {
      ok(await host.micro(["network", "create", "a"]));
      ok(await host.micro(["network", "create", "b"]));
      ok(await host.micro(["network", "create", "--subnet", "10.77.0.0/24", "--internal", "c"]));
      const srv = host.background(["run", "--rm", "--network", "a", IMAGE, "sh", "-c", HTTPD]);
      try {
        assert.ok(await srv.waitForStdout("up", 30_000), srv.stderr);
        const ip = addressIn(srv.stdout)!;
        const url = `http://${ip}/`;
        assert.match(await fetchFrom(host, "a", url), /^hello from [0-9a-f]{12}\n$/);
        // Docker's DOCKER-ISOLATION: another network, and micro's own, do not get through.
        assert.equal(await fetchFrom(host, "b", url), "FAILED\n");
        assert.equal(await fetchFrom(host, "bridge", url), "FAILED\n");
        // The playing host (the gateway side) still reaches it, as Docker's host does.
        assert.match(await host.sh(`curl -s -m 2 ${url}`), /^hello from /);
      } finally {
        srv.kill("SIGTERM");
        assert.equal((await srv.result(60_000)).code, 0, srv.stderr);
      }
      // "the internet" from a, and not from the internal c (no route, no masquerade);
      // c's containers still reach their gateway.
      const out = (net: string) =>
        host.micro([
          "run",
          "--rm",
          "--network",
          net,
          IMAGE,
          "sh",
          "-c",
          "ip route; ping -c 1 -W 2 203.0.113.2 >/dev/null 2>&1 && echo OUT || echo NO-OUT; " +
          "ping -c 1 -W 2 $(ip route | sed -n 's/.* src //p' | cut -d. -f1-3).1 >/dev/null && " +
          "echo GW || echo NO-GW",
        ]);
      const fromA = ok(await out("a"));
      assert.match(fromA, /^default via /m);
      assert.match(fromA, /^OUT$/m);
      const fromC = ok(await out("c"));
      assert.doesNotMatch(fromC, /^default/m);
      assert.match(fromC, /^NO-OUT$/m);
      assert.match(fromC, /^GW$/m);
      assert.doesNotMatch(await host.sh("iptables -t nat -S"), /10\.77\.0\./);
    });
  },
  { ignore: NEEDS_NET },
);

microTest(
  "--ip asks for an address; micro0 goes with its last container, a created bridge stays",
  async () => {
    await withHosts(async (host) => {
      const first = host.background([
        "run",
        "--rm",
        "--network",
        "bridge",
        "--ip",
        "10.88.0.50",
        IMAGE,
        "sh",
        "-c",
        SLEEPER,
      ]);
      try {
        assert.ok(await first.waitForStdout("up", 30_000), first.stderr);
        assert.equal(addressIn(first.stdout), "10.88.0.50");
        // The same address again while it is taken: host-local refuses it, one line.
        const again = await host.micro(["run", "--rm", "--ip", "10.88.0.50", IMAGE, "true"]);
        assert.equal(again.code, 125, show(again));
        assert.equal(again.stderr.trim().split("\n").length, 1, again.stderr);
        // A second container comes and goes: the bridge stays for the first.
        ok(await host.micro(["run", "--rm", "--network", "bridge", IMAGE, "true"]));
        assert.match(await host.sh("ip -o link show micro0"), /micro0/);
      } finally {
        first.kill("SIGTERM");
        assert.equal((await first.result(60_000)).code, 0, first.stderr);
      }
      assert.equal(await host.sh("ip -o link show micro0 2>/dev/null || true"), "");
      assert.doesNotMatch(await host.sh("iptables-save"), /micro0/);
      assert.equal(await host.sh("ip -o link show type veth | grep -v up0 || true"), "");
    });
  },
  { ignore: NEEDS_NET },
);

microTest(
  "-P publishes the image's exposed ports on free host ports, reached from the playing host",
  async () => {
    await withHosts(async (host) => {
      // A store image whose config exposes 80/tcp (busybox from the test image).
      const layout = `${host.root}/layout`;
      const image = makeImage(
        [[{ path: "bin", dir: true }, {
          path: "bin/busybox",
          data: Deno.readFileSync(`${IMAGE}/bin/busybox`),
          mode: 0o755,
        }]],
        hostPlatform().architecture,
        { ExposedPorts: { "80/tcp": {} } },
      );
      await writeLayout(layout, image.blobs, { web: image.manifest });
      ok(await host.micro(["image", "import", layout, "web:1"]));
      const name = uniqueName("pub");
      const web = host.background([
        "run",
        "--rm",
        "--name",
        name,
        "-P",
        "web:1",
        "/bin/busybox",
        "sh",
        "-c",
        "/bin/busybox mkdir -p /tmp/www && echo published > /tmp/www/index.html && " +
        "/bin/busybox httpd -p 80 -h /tmp/www && echo up && exec /bin/busybox sleep 600",
      ]);
      try {
        assert.ok(await web.waitForStdout("up", 60_000), web.stderr);
        const c = Object.values((await inspect(host, "micro")).Containers);
        assert.equal(c.length, 1, JSON.stringify(c));
        const port = c[0].Ports[0]?.hostPort;
        assert.ok(port > 0, JSON.stringify(c));
        let body = "";
        for (let i = 0; i < 50 && body !== "published\n"; i++) {
          body = await host.sh(`curl -s -m 2 http://127.0.0.1:${port}/ || true`);
          if (body !== "published\n") await sleep(100);
        }
        assert.equal(body, "published\n");
      } finally {
        // Stopped through micro (SIGKILL of micro would leave its cgroups to a gc in this
        // namespace, which goes with the test: host-wide cgroup directories would stay).
        await host.micro(["stop", "-t", "1", name]).catch(() => {});
        try {
          web.kill("SIGKILL");
        } catch { /* ended */ }
        await web.result(60_000);
      }
    });
  },
  { ignore: NEEDS_NET },
);

microTest(
  "--internal: nothing crosses the bridge's edge, either way, even with a route the container sets",
  async () => {
    await withHosts(async (host, internet) => {
      ok(await host.micro(["network", "create", "--subnet", "10.78.0.0/24", "--internal", "in"]));
      // "The internet" knows the way back: only the drop rule can stop the traffic.
      await internet.sh("ip route add 10.78.0.0/24 via 203.0.113.1");
      const name = uniqueName("internal");
      const srv = host.background([
        "run",
        "--rm",
        "--name",
        name,
        "--network",
        "in",
        "--cap-add",
        "NET_ADMIN",
        IMAGE,
        "sh",
        "-c",
        "ip route add default via 10.78.0.1; " +
        "ping -c 1 -W 2 203.0.113.2 >/dev/null 2>&1 && echo OUT || echo NO-OUT; " +
        "ping -c 1 -W 2 10.78.0.1 >/dev/null 2>&1 && echo GW || echo NO-GW; " + SLEEPER,
      ]);
      try {
        assert.ok(await srv.waitForStdout("up", 30_000), srv.stderr);
        assert.match(srv.stdout, /^NO-OUT$/m);
        assert.match(srv.stdout, /^GW$/m);
        const ip = addressIn(srv.stdout)!;
        const inbound = await internet.sh(
          `ping -c 1 -W 2 ${ip} >/dev/null 2>&1 && echo IN || echo NO-IN`,
        );
        assert.equal(inbound, "NO-IN\n");
        assert.match(await host.sh("iptables -S FORWARD"), /^-A FORWARD -j MICRO-INTERNAL$/m);
      } finally {
        await host.micro(["stop", "-t", "1", name]).catch(() => {});
        await srv.result(60_000);
      }
      // The rules go with the network, and micro's chain with its last rule.
      ok(await host.micro(["network", "rm", "in"]));
      assert.doesNotMatch(await host.sh("iptables-save"), /MICRO-INTERNAL/);
    });
  },
  { ignore: NEEDS_NET },
);

microTest(
  "network check: CNI CHECK passes on a healthy container, fails in one line once its veth is gone",
  async () => {
    await withHosts(async (host) => {
      const name = uniqueName("check");
      const srv = host.background([
        "run",
        "--rm",
        "--name",
        name,
        "--network",
        "bridge",
        IMAGE,
        "sh",
        "-c",
        SLEEPER,
      ]);
      try {
        assert.ok(await srv.waitForStdout("up", 30_000), srv.stderr);
        assert.equal(ok(await host.micro(["network", "check", name])), `${name}: ok\n`);
        // The host side of the container's veth, deleted behind micro's back.
        const veth = (await host.sh("ip -o link show master micro0 type veth"))
          .match(/^\d+: ([^@:]+)/m)?.[1];
        assert.ok(veth, "a veth on micro0");
        await host.sh(`ip link del ${veth}`);
        oneLine(await host.micro(["network", "check", name]), /CNI CHECK/);
        // Not running, unknown: one line too.
        oneLine(await host.micro(["network", "check", "nosuch"]), /no such container/);
      } finally {
        await host.micro(["stop", "-t", "1", name]).catch(() => {});
        await srv.result(60_000);
      }
    });
  },
  { ignore: NEEDS_NET },
);

microTest(
  "--network container:NAME joins a running container's network and its DNS files",
  async () => {
    await withHosts(async (host) => {
      const name = uniqueName("first");
      const first = host.background([
        "run",
        "--rm",
        "--name",
        name,
        "--network",
        "bridge",
        "--add-host",
        "db.example:10.1.2.3",
        IMAGE,
        "sh",
        "-c",
        HTTPD,
      ]);
      try {
        assert.ok(await first.waitForStdout("up", 30_000), first.stderr);
        const ip = addressIn(first.stdout)!;
        // By id prefix too, as the lifecycle commands take it.
        const ps = ok(await host.micro(["ps"])).split("\n").find((l) => l.endsWith(name));
        const prefix = ps?.split(" ")[0].slice(0, 8) ?? "";
        assert.match(prefix, /^[0-9a-f]{8}$/, ps);
        for (const ref of [name, prefix]) {
          const out = ok(
            await host.micro([
              "run",
              "--rm",
              "--network",
              `container:${ref}`,
              IMAGE,
              "sh",
              "-c",
              "ip -4 -o addr show eth0; wget -q -O - http://127.0.0.1/; cat /etc/hosts",
            ]),
          );
          assert.equal(addressIn(out), ip, out);
          assert.match(out, /^hello from /m);
          assert.match(out, /^10\.1\.2\.3\s+db\.example$/m);
        }
        // Its own choices for a network it does not own: one line, 125.
        oneLine(
          await host.micro([
            "run",
            "--rm",
            "--network",
            `container:${name}`,
            "-p",
            "81:80",
            IMAGE,
            "true",
          ]),
          /--publish cannot be used with --network container:/,
        );
      } finally {
        await host.micro(["stop", "-t", "1", name]).catch(() => {});
        await first.result(60_000);
      }
      oneLine(
        await host.micro(["run", "--rm", "--network", `container:${name}`, IMAGE, "true"]),
        /no such container|is not running/,
      );
    });
  },
  { ignore: NEEDS_NET },
);

microTest(
  "the plugins' shared chains micro made go with its last bridge; a chain that was there stays",
  async () => {
    await withHosts(async (host) => {
      // Someone else's CNI-FORWARD (another runtime's, say) exists before micro's first ADD.
      await host.sh("iptables -N CNI-FORWARD");
      ok(await host.micro(["run", "--rm", "--network", "bridge", "-p", "8080:80", IMAGE, "true"]));
      const saved = await host.sh("iptables-save");
      assert.match(saved, /^:CNI-FORWARD /m);
      for (const chain of ["CNI-ADMIN", "CNI-ISOLATION-STAGE-1", "CNI-HOSTPORT-DNAT"]) {
        assert.doesNotMatch(saved, new RegExp(`${chain}\\b`), saved);
      }
      // While a created network keeps its bridge (and its isolation rules), they stay.
      ok(await host.micro(["network", "create", "kept"]));
      ok(await host.micro(["run", "--rm", "--network", "kept", IMAGE, "true"]));
      ok(await host.micro(["run", "--rm", "--network", "bridge", IMAGE, "true"]));
      assert.match(await host.sh("iptables-save"), /^:CNI-ISOLATION-STAGE-1 /m);
      ok(await host.micro(["network", "rm", "kept"]));
      assert.doesNotMatch(await host.sh("iptables-save"), /CNI-ISOLATION/);
    });
  },
  { ignore: NEEDS_NET },
);

/** How many containers the concurrency test starts (MICRO_NET_MANY overrides, for a quick run). */
const MANY = Number(Deno.env.get("MICRO_NET_MANY") ?? "100");

microTest(
  `${MANY} containers at once on one network: distinct addresses, each reaches the gateway`,
  async () => {
    await withHosts(async (host) => {
      ok(await host.micro(["network", "create", "--subnet", "10.66.0.0/24", "many"]));
      const go = `${host.root}/go`;
      Deno.mkdirSync(go);
      const started = Date.now();
      const runs = Array.from({ length: MANY }, () =>
        host.background([
          "run",
          "--rm",
          "--network",
          "many",
          "-v",
          `${go}:/go:ro`,
          IMAGE,
          "sh",
          "-c",
          "ip -4 -o addr show eth0; ping -c 1 -W 5 10.66.0.1 >/dev/null && echo reached; " +
          "echo up; while [ ! -e /go/now ]; do sleep 0.2; done",
        ]));
      try {
        // Each is up, or has failed (then its stderr says why, without waiting for the rest).
        for (const r of runs) {
          let ended = false;
          r.result(900_000).then(() => ended = true);
          await waitFor(() => ended || r.stdout.includes("up"), 600_000);
          assert.ok(r.stdout.includes("up"), r.stderr);
        }
        const all = Date.now() - started;
        const addrs = runs.map((r) => addressIn(r.stdout));
        assert.ok(addrs.every((a) => a?.startsWith("10.66.0.")), addrs.join(" "));
        assert.equal(new Set(addrs).size, MANY, "every address is distinct");
        const unreached = runs.filter((r) => !r.stdout.includes("reached"));
        assert.equal(unreached.length, 0, unreached.map((r) => r.stdout).join("\n"));
        console.log(`${MANY} containers up and attached at once in ${all} ms`);
      } finally {
        Deno.writeTextFileSync(`${go}/now`, "");
        for (const r of runs) {
          const res = await r.result(120_000);
          assert.equal(res.code, 0, res.stderr);
        }
      }
      // Nothing of theirs is left: no veth, no lease.
      assert.equal(await host.sh("ip -o link show type veth | grep -v up0 || true"), "");
      const leases = [...Deno.readDirSync(`${host.stateRoot}/.networks/many`)]
        .filter((e) => /^\d+\.\d+\.\d+\.\d+$/.test(e.name));
      assert.deepEqual(leases, []);
    });
  },
  { ignore: NEEDS_NET },
);
