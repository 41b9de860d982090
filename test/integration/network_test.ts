/**
 * Networks (issue 11): micro's own bridge network through the CNI plugins, published
 * ports, masquerade, DNS files, and cleanup however a run ends.
 *
 * Nothing here touches this machine's own network: each test makes a network namespace
 * (`unshare -n sleep`, held by that process, so no mount appears in the host's table) that
 * plays the host, and runs micro inside it with nsenter; "the internet" is a second such
 * namespace joined to it by a veth pair made inside the first. Only loopback and addresses
 * inside these namespaces are ever contacted.
 */
import assert from "node:assert/strict";
import {
  copyImage,
  exists,
  IMAGE,
  lacking,
  microTest,
  ok,
  show,
  waitFor,
  withTempDir,
} from "./_helpers.ts";
import { AS_A_HOST, type Netns, uniqueName, withHosts } from "./_netns.ts";

const dec = new TextDecoder();

const CNI_DIR = "/usr/lib/cni";
/** host-local's leases of micro's network, under the state root. */
const LEASES = "/.networks/micro";

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

/** Lease files of host-local that name the container. */
function leasesOf(host: Netns, name: string): string[] {
  const dir = host.stateRoot + LEASES;
  try {
    return [...Deno.readDirSync(dir)].filter((e) => {
      try {
        return Deno.readTextFileSync(`${dir}/${e.name}`).split(/\s/)[0] === name;
      } catch {
        return false;
      }
    }).map((e) => e.name);
  } catch {
    return [];
  }
}

/** Asserts that nothing of container `name` is left in the playing host. */
async function assertClean(host: Netns, name: string): Promise<void> {
  // A veth whose container namespace died goes with it, asynchronously in the kernel.
  let veths = "";
  await waitFor(() => false, 0);
  for (let i = 0; i < 100; i++) {
    veths = (await host.sh("ip -o link show type veth")).split("\n")
      .filter((l) => l && !l.includes("up0")).join("\n");
    if (veths === "") break;
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.equal(veths, "", "a veth of the container is left");
  assert.deepEqual(leasesOf(host, name), [], "an IPAM lease of the container is left");
  const rules = await host.sh("iptables-save");
  assert.ok(!rules.includes(`id: \\"${name}\\"`), `iptables rules of ${name} are left:\n${rules}`);
  assert.ok(!/^-A CNI-DN-/m.test(rules), `a port mapping is left:\n${rules}`);
  assert.ok(!exists(`${host.stateRoot}/${name}`), "the run's state dir is left");
}

// The container's first process makes its root while micro attaches its network: a mount that
// fails then (here /sys, a file in the image) is the run's error, whatever the attach met
// after it (its network namespace going with it), and the network is undone.
microTest(
  "bridge: a mount of the root's set-up that fails is the run's error; nothing left after",
  async () => {
    await withHosts(async (host) => {
      await withTempDir(async (dir) => {
        const img = copyImage(dir, ["/sys"]);
        Deno.writeTextFileSync(`${img}/sys`, "not a directory\n");
        for (let i = 0; i < 3; i++) {
          const name = uniqueName("bad");
          const r = await host.micro([
            "run",
            "--rm",
            "--name",
            name,
            "--network",
            "bridge",
            img,
            "true",
          ]);
          assert.equal(r.code, 125, show(r));
          assert.match(
            r.stderr,
            /^micro: rootfs: mount: mount src=sysfs dst=\/sys .*: ENOTDIR \(\/sys in the image is not a directory\)\n$/,
            show(r),
          );
          await assertClean(host, name);
        }
        assert.equal(await host.sh("ip -o link show micro0 2>/dev/null || true"), "");
      });
    });
  },
  { ignore: NEEDS_NET },
);

microTest(
  "bridge: the address, the default route, and the DNS files; nothing left after",
  async () => {
    await withHosts(async (host) => {
      const name = uniqueName("net");
      const out = ok(
        await host.micro([
          "run",
          "--rm",
          "--name",
          name,
          "--network",
          "bridge",
          "--dns-search",
          "example.org",
          "--add-host",
          "db:192.0.2.7",
          IMAGE,
          "sh",
          "-c",
          "ip -4 -o addr show eth0; ip route; echo ==; cat /etc/resolv.conf; echo ==; " +
          "cat /etc/hosts; echo ==; cat /etc/hostname; hostname; echo ==; " +
          "grep -E ' /etc/(hosts|hostname|resolv.conf) ' /proc/self/mountinfo | wc -l",
        ]),
      );
      const [net, resolv, hosts, hostname, mounts] = out.split("==\n");
      const addr = /inet (10\.88\.\d+\.\d+)\/16/.exec(net)?.[1];
      assert.ok(addr, `no 10.88.0.0/16 address on eth0:\n${out}`);
      assert.match(net, /^default via 10\.88\.0\.1 dev eth0/m);
      // The host's resolv.conf, its search list replaced.
      assert.match(resolv, /^search example\.org$/m);
      assert.match(resolv, /^nameserver /m);
      assert.doesNotMatch(resolv, /nameserver 127\./);
      const lines = hosts.trim().split("\n");
      assert.equal(lines[0], "127.0.0.1\tlocalhost");
      assert.ok(lines.includes("192.0.2.7\tdb"), hosts);
      // The hostname is the short container id, as Docker's (not the name).
      const short = hostname.split("\n")[0];
      assert.match(short, /^[0-9a-f]{12}$/);
      assert.equal(lines[lines.length - 1], `${addr}\t${short}`);
      assert.equal(hostname, `${short}\n${short}\n`);
      assert.equal(mounts.trim(), "3");
      // The image's own files are untouched.
      assert.ok(
        !exists(`${IMAGE}/etc/resolv.conf`) ||
          !Deno.readTextFileSync(`${IMAGE}/etc/resolv.conf`).includes("example.org"),
      );
      await assertClean(host, name);
      // micro's default network's bridge goes with its last container (issue 11).
      assert.equal(await host.sh("ip -o link show micro0 2>/dev/null || true"), "");
    });
  },
  { ignore: NEEDS_NET },
);

microTest("bridge: outgoing traffic is masqueraded as the playing host's address", async () => {
  await withHosts(async (host, internet) => {
    const listener = new Deno.Command("nsenter", {
      args: [
        `--net=${internet.path}`,
        "python3",
        "-c",
        "import socket\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n" +
        "s.bind(('203.0.113.2',9000))\ns.listen()\nprint('listening',flush=True)\n" +
        "c,a=s.accept()\nc.sendall(b'hello\\n')\nc.close()\nprint(a[0],flush=True)\n",
      ],
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    try {
      const reader = listener.stdout.getReader();
      const first = dec.decode((await reader.read()).value);
      assert.match(first, /listening/);
      const name = uniqueName("masq");
      const r = await host.micro([
        "run",
        "--rm",
        "--name",
        name,
        "--network",
        "bridge",
        IMAGE,
        "sh",
        "-c",
        "nc 203.0.113.2 9000 </dev/null",
      ]);
      assert.equal(ok(r).trim(), "hello", show(r));
      let seen = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        seen += dec.decode(value);
      }
      assert.equal(seen.trim(), "203.0.113.1", "the peer saw the container's own address");
      await assertClean(host, name);
    } finally {
      try {
        listener.kill("SIGKILL");
      } catch { /* exited */ }
      await listener.output().catch(() => {});
    }
  });
}, { ignore: lacking(NEEDS_NET, which("python3") ? undefined : "no python3") });

/** A web server that stops on SIGTERM (a shell init with a trap; httpd daemonized). */
const HTTPD = "trap 'exit 0' TERM; mkdir -p /tmp/www && " +
  'echo "hello from $(hostname)" > /tmp/www/index.html && httpd -p 80 -h /tmp/www && ' +
  "echo up && while :; do sleep 0.2; done";

microTest(
  "-p 8080:80: reached from the playing host; a port in use is one line, exit 125",
  async () => {
    await withHosts(async (host) => {
      const name = uniqueName("web");
      const web = host.background([
        "run",
        "--rm",
        "--name",
        name,
        "-p",
        "8080:80",
        IMAGE,
        "sh",
        "-c",
        HTTPD,
      ]);
      try {
        assert.ok(await web.waitForStdout("up", 30_000), web.stderr);
        // The playing host's own address and its loopback both reach the container.
        for (const url of ["http://203.0.113.1:8080/", "http://127.0.0.1:8080/"]) {
          let body = "";
          for (let i = 0; i < 50 && !body.includes("hello"); i++) {
            body = await host.sh(`curl -s -m 2 ${url} || true`);
            if (!body.includes("hello")) await new Promise((r) => setTimeout(r, 100));
          }
          assert.match(body, /^hello from [0-9a-f]{12}\n$/, url);
        }
        // The same host port again: refused before anything is made.
        const again = await host.micro(["run", "--rm", "-p", "8080:80", IMAGE, "true"]);
        assert.equal(again.code, 125, show(again));
        assert.equal(again.stderr.trim().split("\n").length, 1, again.stderr);
        assert.match(again.stderr, /0\.0\.0\.0:8080\/tcp is published by container/);
      } finally {
        web.kill("SIGTERM");
        assert.equal((await web.result(60_000)).code, 0, web.stderr);
      }
      await assertClean(host, name);
    });
  },
  { ignore: NEEDS_NET },
);

microTest("-p: a host port a process listens on is one line, exit 125", async () => {
  await withHosts(async (host) => {
    const listener = new Deno.Command("nsenter", {
      args: [
        `--net=${host.path}`,
        "python3",
        "-c",
        "import socket,time\ns=socket.socket()\n" +
        "s.bind(('0.0.0.0',8081))\ns.listen()\nprint('listening',flush=True)\ntime.sleep(60)\n",
      ],
      stdout: "piped",
      stderr: "null",
    }).spawn();
    try {
      const reader = listener.stdout.getReader();
      assert.match(dec.decode((await reader.read()).value), /listening/);
      reader.releaseLock();
      const name = uniqueName("busy");
      const r = await host.micro(["run", "--rm", "--name", name, "-p", "8081:80", IMAGE, "true"]);
      assert.equal(r.code, 125, show(r));
      assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
      assert.match(r.stderr, /publish port=0\.0\.0\.0:8081\/tcp: the port is already in use/);
      await assertClean(host, name);
    } finally {
      listener.kill("SIGKILL");
      await listener.output().catch(() => {});
    }
  });
}, { ignore: lacking(NEEDS_NET, which("python3") ? undefined : "no python3") });

microTest("bridge: two containers on the network talk to each other", async () => {
  await withHosts(async (host) => {
    const a = uniqueName("srv");
    const b = uniqueName("cli");
    const srv = host.background([
      "run",
      "--rm",
      "--name",
      a,
      "--network",
      "bridge",
      IMAGE,
      "sh",
      "-c",
      `ip -4 -o addr show eth0; ${HTTPD}`,
    ]);
    try {
      assert.ok(await srv.waitForStdout("up", 30_000), srv.stderr);
      const ip = /inet (10\.88\.\d+\.\d+)/.exec(srv.stdout)?.[1];
      assert.ok(ip, srv.stdout);
      const r = await host.micro([
        "run",
        "--rm",
        "--name",
        b,
        "--network",
        "bridge",
        IMAGE,
        "wget",
        "-q",
        "-O",
        "-",
        `http://${ip}/`,
      ]);
      assert.match(ok(r), /^hello from [0-9a-f]{12}\n$/);
    } finally {
      srv.kill("SIGTERM");
      assert.equal((await srv.result(60_000)).code, 0, srv.stderr);
    }
    await assertClean(host, b);
    await assertClean(host, a);
  });
}, { ignore: NEEDS_NET });

microTest(
  "kill -9 of micro: the next micro command DELs the network (no veth, lease, rules)",
  async () => {
    await withTempDir(async (dir) => {
      // Plugins that log each call, so the test knows whether its own gc ran DEL.
      const log = `${dir}/log`;
      for (const p of ["bridge", "host-local", "portmap", "firewall"]) {
        Deno.writeTextFileSync(
          `${dir}/${p}`,
          `#!/bin/sh\necho "$CNI_COMMAND ${p} $CNI_CONTAINERID" >> ${log}\nexec ${CNI_DIR}/${p}\n`,
          { mode: 0o755 },
        );
      }
      await killedRun(dir, log);
    });
  },
  { ignore: NEEDS_NET },
);

async function killedRun(cniPath: string, log: string): Promise<void> {
  await withHosts(async (host) => {
    const name = uniqueName("killed");
    const bg = host.background(
      [
        "run",
        "--rm",
        "--name",
        name,
        "-p",
        "8082:80",
        IMAGE,
        "sh",
        "-c",
        "echo up; exec sleep 600",
      ],
      { CNI_PATH: cniPath },
    );
    try {
      assert.ok(await bg.waitForStdout("up", 30_000), bg.stderr);
      const dir = `${host.stateRoot}/${name}`;
      const state = JSON.parse(Deno.readTextFileSync(`${dir}/state.json`));
      assert.ok(exists(`${dir}/cni.json`));
      assert.equal(leasesOf(host, name).length, 1);
      Deno.kill(state.pid, "SIGKILL");
      await bg.result();
      // The watchdog kills the container; the pinned namespace keeps its interface.
      assert.ok(exists(`${dir}/cni.json`));
      // micro ps runs gc: DEL from the record, in reverse (host-local is bridge's IPAM, run
      // by it), then the state goes.
      ok(await host.micro(["ps", "-a"]));
      const dels = Deno.readTextFileSync(log).split("\n").filter((l) => l.startsWith("DEL"));
      assert.deepEqual(dels, [
        `DEL firewall ${name}`,
        `DEL portmap ${name}`,
        `DEL bridge ${name}`,
        `DEL host-local ${name}`,
      ]);
      await assertClean(host, name);
      // It was micro0's last container: gc takes the bridge too.
      assert.equal(await host.sh("ip -o link show micro0 2>/dev/null || true"), "");
    } finally {
      bg.kill("SIGKILL");
      await bg.result();
    }
  });
}

microTest("the default profile uses the bridge as root; hardened keeps only lo", async () => {
  await withHosts(async (host) => {
    const auto = AS_A_HOST;
    const d = ok(await host.micro(["run", "--rm", IMAGE, "ip", "-o", "link"], auto));
    assert.match(d, /eth0@/);
    const h = ok(
      await host.micro(["run", "--rm", "--profile", "hardened", IMAGE, "ip", "-o", "link"], auto),
    );
    assert.doesNotMatch(h, /eth0/);
    // Without the plugins: the default goes on with none and one warning; bridge asked for
    // is one line naming what is missing and how to get it.
    const none = { ...auto, CNI_PATH: "/nonexistent" };
    const w = await host.micro(["run", "--rm", IMAGE, "ip", "-o", "link"], none);
    assert.doesNotMatch(ok(w), /eth0/);
    assert.equal(w.stderr.trim().split("\n").length, 1, w.stderr);
    assert.match(w.stderr, /^micro: warning: no bridge network, running with --network none: /);
    const e = await host.micro(["run", "--rm", "--network", "bridge", IMAGE, "true"], none);
    assert.equal(e.code, 125, show(e));
    assert.equal(e.stderr.trim().split("\n").length, 1, e.stderr);
    assert.match(e.stderr, /--network bridge needs the CNI plugins .* containernetworking-plugins/);
  });
}, { ignore: NEEDS_NET });

microTest(
  "bridge: a detached container keeps its network when other runs end; a run -d nobody took leaves nothing",
  async () => {
    await withHosts(async (host) => {
      const d = uniqueName("det");
      /** A detached `sleep` on the bridge, through `verb` (run, or the runner itself). */
      const sleeper = (
        verb: string,
        name: string,
      ) => [verb, "-d", "--name", name, "--network", "bridge", IMAGE, "sleep", "1000"];
      const supervisor = () => {
        try {
          return Number(Deno.readTextFileSync(`${host.stateRoot}/.supervisor/pid`).trim());
        } catch {
          return 0;
        }
      };
      try {
        ok(await host.micro(sleeper("run", d)));
        // The detached container's runner has left: its veth still makes the bridge in use.
        const f = uniqueName("fg");
        ok(await host.micro(["run", "--rm", "--name", f, "--network", "bridge", IMAGE, "true"]));
        assert.match(
          await host.sh("ip -o link show micro0"),
          /micro0/,
          "a run's end took the bridge",
        );
        const gw = "ip route | awk '/default/ { print $3 }'";
        ok(await host.micro(["exec", d, "sh", "-c", `ping -c 1 -W 2 $(${gw})`]));
        ok(await host.micro(["rm", "-f", d]));
        await assertClean(host, d);
        assert.ok(
          await waitFor(async () => !(await host.sh("ip -o link show type bridge")).trim(), 5000),
          "the bridge outlived the last container",
        );
        // The runner of a run -d whose hand-over fails (no supervisor reads it) kills the
        // container and undoes the whole run: network, cgroups, state.
        const x = uniqueName("lost");
        const r = await host.micro(sleeper("_run-detached", x));
        assert.equal(r.code, 125, show(r));
        assert.match(r.stderr, /the supervisor did not take the container/);
        await assertClean(host, x);
        assert.equal((await host.sh("ip -o link show type bridge")).trim(), "", "a bridge is left");
        for (const c of ["pids", "memory", "cpu"]) {
          assert.ok(!exists(`/sys/fs/cgroup/${c}/micro/${x}`), `its ${c} cgroup is left`);
        }
      } finally {
        await host.micro(["rm", "-f", d]);
        const pid = supervisor();
        if (pid) await waitFor(() => !exists(`/proc/${pid}`), 5000);
        try {
          if (pid) Deno.kill(pid, "SIGKILL");
        } catch { /* gone */ }
      }
    });
  },
  { ignore: NEEDS_NET },
);
