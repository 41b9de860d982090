/**
 * Rootless networks: pasta's and slirp4netns's command lines from the published ports,
 * the API request of a port, and rootless `auto` choosing pasta where it is installed.
 */
import assert from "node:assert/strict";
import { hostfwdRequest, pastaArgs, slirpArgs } from "../../core/usernet/args.ts";
import { buildSpec } from "../../core/plan.ts";
import { resolveProfile } from "../../core/profile.ts";
import { PLUGINS } from "../../plugins/mod.ts";
import { loadNetHelpers, resolveAuto } from "../../plugins/net.ts";

// What plugins/net.ts loads for a network in a run (its load()), before any plan here.
await loadNetHelpers();

const WEB = { hostPort: 8080, containerPort: 80, protocol: "tcp" as const, hostIP: "" };

Deno.test("usernet: pasta forwards only the published ports, nothing back to the host", () => {
  const args = pastaArgs(
    [WEB, { hostPort: 5353, containerPort: 53, protocol: "udp", hostIP: "127.0.0.1" }],
    "/run/user/1000/micro/web/pasta.pid",
    4242,
  );
  assert.deepEqual(args, [
    "--config-net",
    "--quiet",
    "--ns-ifname",
    "eth0",
    "-t",
    "8080:80",
    "-u",
    "127.0.0.1/5353:53",
    "-T",
    "none",
    "-U",
    "none",
    "--no-map-gw",
    "--pid",
    "/run/user/1000/micro/web/pasta.pid",
    "4242",
  ]);
  const none = pastaArgs([], "/p", 1);
  assert.deepEqual(none.slice(4, 8), ["-t", "none", "-u", "none"]);
});

Deno.test("usernet: slirp4netns exits with micro's pipe, no host loopback, ports by API", () => {
  const args = slirpArgs("/run/user/1000/micro/web/slirp4netns.sock", 4242);
  for (const a of ["--exit-fd=0", "--ready-fd=1", "--disable-host-loopback", "--configure"]) {
    assert.ok(args.includes(a), a);
  }
  assert.deepEqual(args.slice(-2), ["4242", "eth0"]);
  assert.deepEqual(hostfwdRequest(WEB), {
    execute: "add_hostfwd",
    arguments: {
      proto: "tcp",
      host_addr: "0.0.0.0",
      host_port: 8080,
      guest_addr: "10.0.2.100",
      guest_port: 80,
    },
  });
});

Deno.test("usernet: rootless auto is pasta where installed, none otherwise or under =none", () => {
  const spec = () =>
    buildSpec(
      { image: "/images/busybox", args: ["true"], terminal: false, stdin: false },
      resolveProfile([], {}, PLUGINS).profile,
      PLUGINS,
    );
  const a = spec();
  resolveAuto(a, { uid: 1000, net: { missing: ["root"], helpers: { pasta: "/usr/bin/pasta" } } });
  assert.equal(a.micro.network, "pasta");
  assert.deepEqual(a.micro.runFiles, ["hosts", "hostname", "resolv.conf"]);
  const b = spec();
  resolveAuto(b, { uid: 1000, net: { missing: ["root"], helpers: {} } });
  assert.equal(b.micro.network, "none");
  const c = spec();
  resolveAuto(c, {
    uid: 1000,
    net: { missing: ["root"], defaultNetwork: "none", helpers: { pasta: "/usr/bin/pasta" } },
  });
  assert.equal(c.micro.network, "none");
  // root keeps the bridge
  const d = spec();
  resolveAuto(d, { uid: 0, net: { missing: [], helpers: { pasta: "/usr/bin/pasta" } } });
  assert.equal(d.micro.network, "bridge");
});
