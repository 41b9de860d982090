/**
 * `micro exec` while a run is still setting its container up. The init is recorded in the
 * run's state from its clone on (so cleanup knows it), but it makes its root only once the
 * network is attached; until then its mount namespace shows the host's tree. A CNI plugin
 * that takes seconds holds the run in that window; exec must wait for the root (the run's
 * ready marker), not run a host binary in the host's tree; a run joining its network waits
 * too (its hosts file is written after the plugins).
 */
import assert from "node:assert/strict";
import { exists, IMAGE, lacking, microTest, show, waitFor } from "./_helpers.ts";
import { uniqueName, withHosts } from "./_netns.ts";

const NEEDS = lacking(
  ["bridge", "host-local"].every((p) => exists(`/usr/lib/cni/${p}`))
    ? undefined
    : "no CNI plugins in /usr/lib/cni (Debian: containernetworking-plugins)",
  exists("/usr/bin/python3") ? undefined : "no /usr/bin/python3 (the slow test plugin)",
);

/** A chained CNI plugin that passes the previous result on, 3 s late on ADD. */
const SLOW = `#!/usr/bin/python3
import json, os, sys, time
conf = json.load(sys.stdin)
if os.environ.get("CNI_COMMAND") == "ADD":
    time.sleep(3)
    print(json.dumps(conf.get("prevResult") or {"cniVersion": conf["cniVersion"]}))
`;

microTest(
  "exec during a run's network set-up waits until the container's root is made",
  async () => {
    const plugins = Deno.makeTempDirSync({ prefix: "micro-cni-slow-" });
    try {
      Deno.chmodSync(plugins, 0o755);
      Deno.writeTextFileSync(`${plugins}/slow`, SLOW, { mode: 0o755 });
      await withHosts(async (host) => {
        const netd = host.writeConflist({
          cniVersion: "1.0.0",
          name: "slow",
          plugins: [
            {
              type: "bridge",
              bridge: "slow0",
              isGateway: true,
              ipam: { type: "host-local", subnet: "10.79.0.0/24" },
            },
            { type: "slow" },
          ],
        });
        const env = { CNI_PATH: `${plugins}:/usr/lib/cni` };
        const name = uniqueName("ready");
        const c = host.background([
          "run",
          "--rm",
          "--name",
          name,
          "--cni-config-dir",
          netd,
          "--network",
          "slow",
          IMAGE,
          "sh",
          "-c",
          "trap 'exit 0' TERM; echo up; while :; do sleep 0.2; done",
        ], env);
        try {
          // Recorded, its root not made yet: the plugin sleeps.
          const state = `${host.stateRoot}/${name}/state.json`;
          assert.ok(
            await waitFor(() => {
              try {
                return JSON.parse(Deno.readTextFileSync(state)).containerPid > 0;
              } catch {
                return false;
              }
            }, 30_000),
            c.stderr,
          );
          const t0 = Date.now();
          // An exec, and a run joining its network (whose files it shares, written after
          // the plugins): both wait.
          const [r, j] = await Promise.all([
            host.micro([
              "exec",
              name,
              "sh",
              "-c",
              "test -e /usr/bin/python3 && echo host || echo container",
            ], env),
            host.micro([
              "run",
              "--rm",
              "--network",
              `container:${name}`,
              IMAGE,
              "cat",
              "/etc/hosts",
            ], env),
          ]);
          assert.equal(r.code, 0, show(r));
          assert.equal(r.stdout.trim(), "container", show(r));
          assert.equal(j.code, 0, show(j));
          assert.match(j.stdout, /^10\.79\.0\.\d+\s/m, show(j));
          // It waited for the plugin's 3 s (and so for the root).
          assert.ok(Date.now() - t0 > 1000, `exec took ${Date.now() - t0} ms`);
          c.kill("SIGTERM");
          assert.equal((await c.result(60_000)).code, 0, c.stderr);
        } finally {
          c.kill("SIGKILL");
          await c.result(60_000);
        }
      });
    } finally {
      Deno.removeSync(plugins, { recursive: true });
    }
  },
  { ignore: NEEDS },
);
