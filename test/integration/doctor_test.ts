/** `micro doctor` on this host, as root and rootless. */
import assert from "node:assert/strict";
import { lacking, microTest, NEEDS, run, show } from "./_helpers.ts";

const FACTS = [
  "kernel",
  "user namespaces",
  "subordinate ids",
  "cgroups",
  "overlay",
  "seccomp",
  "landlock",
  "apparmor",
  "selinux",
  "pidfd",
  "clone3",
  "cni plugins",
  "rootless network",
];

microTest("doctor: every host fact, and the built-in profiles that can run here", async () => {
  const r = await run(["doctor"]);
  assert.equal(r.code, 0, show(r));
  for (const f of FACTS) assert.match(r.stdout, new RegExp(`^  ${f}\\s+(yes|no) `, "m"), f);
  assert.match(
    r.stdout,
    new RegExp(`^  kernel\\s+yes\\s+${Deno.osRelease().replace(/\./g, "\\.")}`, "m"),
  );
  assert.match(r.stdout, /^ {2}default\s+can run here$/m);
  assert.match(r.stdout, /^ {2}hardened\s+can run here$/m);
  const json = JSON.parse((await run(["doctor", "--format", "json"])).stdout);
  assert.deepEqual(json.host.map((f: { name: string }) => f.name), FACTS);
  // The facts as the kernel gives them.
  const cg = json.host.find((f: { name: string }) => f.name === "cgroups");
  const mode = Deno.readTextFileSync("/proc/self/mountinfo").includes(" - cgroup ")
    ? /v1|hybrid/
    : /v2/;
  assert.match(cg.detail, mode);
  const pidfd = json.host.find((f: { name: string }) => f.name === "pidfd");
  assert.equal(pidfd.ok, true);
});

microTest("doctor rootless: the caller's subordinate ids and cgroup delegation", async () => {
  const r = await run(["doctor"], { user: { uid: 1000, gid: 1000 }, env: { HOME: "/tmp" } });
  assert.equal(r.code, 0, show(r));
  assert.match(r.stdout, /^ {2}subordinate ids\s+(yes|no)\s+\S+: \d+ uids, \d+ gids/m);
  assert.match(r.stdout, /^ {2}default\s+can run here$/m);
}, { ignore: lacking(NEEDS.setpriv) });
