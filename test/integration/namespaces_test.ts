/**
 * Namespaces seen from inside: PID 1, host name, user mapping, every namespace link, the
 * network namespace's interfaces.
 */
import assert from "node:assert/strict";
import { hostNs, IMAGE, microTest, ok, run, sh, show } from "./_helpers.ts";

microTest("the command is PID 1 of a new pid namespace", async () => {
  assert.equal(ok(await sh("echo $$")).trim(), "1");
  assert.equal(ok(await sh("echo $$", ["--profile", "hardened"])).trim(), "1");
});

microTest(
  "hostname: a random 12-hex id by default, --hostname sets it, HOSTNAME matches",
  async () => {
    const [name, env] = ok(await sh('hostname; echo "$HOSTNAME"')).trim().split("\n");
    assert.match(name, /^[0-9a-f]{12}$/);
    assert.equal(env, name);

    const [name2] = ok(await sh("hostname")).trim().split("\n");
    assert.match(name2, /^[0-9a-f]{12}$/);
    assert.notEqual(name2, name, "two runs got the same random host name");

    const out = ok(
      await sh('hostname; echo "$HOSTNAME"; cat /proc/sys/kernel/hostname', [
        "--hostname",
        "web1",
      ]),
    );
    assert.deepEqual(out.trim().split("\n"), ["web1", "web1", "web1"]);
    assert.notEqual(Deno.hostname(), "web1", "the host's name must not change");
  },
);

microTest(
  "hostname: the short container id, as Docker's, even with a 100-character --name",
  async () => {
    const name = `n${Date.now()}${"x".repeat(100)}`.slice(0, 100);
    try {
      const r = await run(["run", "--name", name, IMAGE, "hostname"]);
      const hostname = ok(r).trim();
      assert.match(hostname, /^[0-9a-f]{12}$/, show(r));
      // The container's id, as ps shows it, begins with it.
      const ps = ok(await run(["ps", "-a", "--no-trunc"]));
      const line = ps.split("\n").find((l) => l.trimEnd().endsWith(` ${name}`)) ?? "";
      assert.ok(line.startsWith(hostname), `${hostname} is not the id of ${name}:\n${ps}`);
    } finally {
      await run(["rm", name]);
    }
    // --hostname: up to 64 characters (HOST_NAME_MAX); more is refused in one line.
    const h64 = "h".repeat(64);
    assert.equal(ok(await sh("hostname", ["--hostname", h64])).trim(), h64);
    const long = await sh("hostname", ["--hostname", "h".repeat(65)]);
    assert.equal(long.code, 125, show(long));
    assert.equal(long.stderr.trim().split("\n").length, 1, show(long));
    assert.match(long.stderr, /a hostname is 1 to 64 letters/, show(long));
  },
);

microTest("uid_map: identity under default, 1000000000+65536 under hardened", async () => {
  const norm = (s: string) => s.trim().split("\n").map((l) => l.trim().split(/\s+/).join(" "));
  assert.deepEqual(norm(ok(await sh("cat /proc/self/uid_map"))), ["0 0 4294967295"]);
  assert.deepEqual(
    norm(ok(await sh("cat /proc/self/uid_map /proc/self/gid_map", ["--profile", "hardened"]))),
    ["0 1000000000 65536", "0 1000000000 65536"],
  );
});

const NS_DEFAULT = ["mnt", "pid", "uts", "ipc", "net", "cgroup"];

async function containerNs(opts: string[]): Promise<Map<string, string>> {
  const kinds = [...NS_DEFAULT, "user"];
  const out = ok(
    await sh(kinds.map((k) => `echo ${k} $(readlink /proc/self/ns/${k})`).join(";"), opts),
  );
  return new Map(out.trim().split("\n").map((l) => l.split(" ") as [string, string]));
}

microTest(
  "default: mnt pid uts ipc net cgroup namespaces differ from the host's, user is shared",
  async () => {
    const ns = await containerNs([]);
    for (const k of NS_DEFAULT) {
      assert.match(ns.get(k) ?? "", new RegExp(`^${k}:\\[\\d+\\]$`), `ns ${k}`);
      assert.notEqual(ns.get(k), hostNs(k), `the ${k} namespace is the host's`);
    }
    assert.equal(ns.get("user"), hostNs("user"), "default has no user namespace");
  },
);

microTest("hardened: every namespace, user included, differs from the host's", async () => {
  const ns = await containerNs(["--profile", "hardened"]);
  for (const k of [...NS_DEFAULT, "user"]) {
    assert.match(ns.get(k) ?? "", new RegExp(`^${k}:\\[\\d+\\]$`), `ns ${k}`);
    assert.notEqual(ns.get(k), hostNs(k), `the ${k} namespace is the host's`);
  }
});

function ifaces(procNetDev: string): string[] {
  return procNetDev.trim().split("\n").slice(2).map((l) => l.split(":")[0].trim()).sort();
}

microTest("network none: only lo, and it is UP", async () => {
  for (const opts of [[], ["--network", "none"], ["--profile", "hardened"]]) {
    const out = ok(await sh("cat /proc/net/dev; echo ---; ip -o link", opts));
    const [dev, link] = out.split("---\n");
    assert.deepEqual(ifaces(dev), ["lo"], `opts ${opts.join(" ")}`);
    const lines = link.trim().split("\n");
    assert.equal(lines.length, 1, link);
    assert.match(lines[0], /^1: lo: <[^>]*\bUP\b[^>]*>/, `lo is not UP: ${link}`);
  }
});

microTest("network none: the loopback answers (ping 127.0.0.1 inside)", async () => {
  const r = await sh("ping -c 1 -W 2 127.0.0.1 >/dev/null && echo pong");
  assert.equal(ok(r).trim(), "pong");
});

microTest("--network host sees the host's interfaces", async () => {
  const host = ifaces(Deno.readTextFileSync("/proc/net/dev"));
  const out = ok(await sh("cat /proc/net/dev; readlink /proc/self/ns/net", ["--network", "host"]));
  const lines = out.trim().split("\n");
  const nsLink = lines.pop()!;
  assert.deepEqual(ifaces(lines.join("\n")), host);
  assert.equal(nsLink, hostNs("net"));
});
