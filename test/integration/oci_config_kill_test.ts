/**
 * `kill -9` at random moments: `micro run -b` and `micro create` SIGKILLed at a random delay
 * (then the container's own process too, where it got that far), `micro delete --force`,
 * and nothing of the run is left: no mount under the test's dir in the host's table, no
 * cgroup dir of the container, no entry under the test's --root. The seed is printed;
 * MICRO_KILL_SEED replays a run, MICRO_KILL_ROUNDS sets the count (default 20).
 */
import assert from "node:assert/strict";
import { IMAGE, MICRO, microTest, ok, run, sleep, withTempDir } from "./_helpers.ts";

/** mulberry32: a small seeded generator, so a failing sequence can be replayed. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

/** The container's cgroup dirs (v1 hierarchies and v2), as oci_test.ts looks for them. */
function cgroupDirs(id: string): string[] {
  const out: string[] = [];
  for (const e of Deno.readDirSync("/sys/fs/cgroup")) {
    for (
      const p of [`/sys/fs/cgroup/${e.name}/micro-oci/${id}`, `/sys/fs/cgroup/micro-oci/${id}`]
    ) {
      try {
        if (Deno.statSync(p).isDirectory) out.push(p);
      } catch {
        // not there
      }
    }
  }
  return [...new Set(out)];
}

/** Processes left in the container's cgroups: killed, so a failing test leaves nothing. */
function killLeft(id: string): number[] {
  const pids = new Set<number>();
  for (const d of cgroupDirs(id)) {
    try {
      for (const l of Deno.readTextFileSync(`${d}/cgroup.procs`).split("\n")) {
        if (l) pids.add(Number(l));
      }
    } catch {
      // gone meanwhile
    }
  }
  for (const p of pids) {
    try {
      Deno.kill(p, "SIGKILL");
    } catch {
      // gone
    }
  }
  return [...pids];
}

function mountsUnder(dir: string): string[] {
  return Deno.readTextFileSync("/proc/self/mountinfo").split("\n").filter((l) => l.includes(dir));
}

microTest("oci: kill -9 of micro and the container at random moments leaves nothing", async () => {
  const seed = Number(Deno.env.get("MICRO_KILL_SEED") ?? Date.now() % 2 ** 31);
  const rounds = Number(Deno.env.get("MICRO_KILL_ROUNDS") ?? 20);
  console.log(`kill -9 test: seed ${seed} (MICRO_KILL_SEED=${seed} replays it)`);
  const random = rng(seed);
  await withTempDir(async (dir) => {
    const b = `${dir}/bundle`;
    Deno.mkdirSync(b);
    ok(await run(["oci", "spec"], { cwd: b }));
    const cp = new Deno.Command("cp", { args: ["-a", IMAGE, `${b}/rootfs`] }).outputSync();
    assert.ok(cp.success);
    const c = JSON.parse(Deno.readTextFileSync(`${b}/config.json`));
    c.process.terminal = false;
    c.process.args = ["sleep", "100"];
    c.mounts.push({ destination: "/scratch", type: "tmpfs", source: "tmpfs", options: [] });
    c.linux.resources.memory = { limit: 64 * 1024 * 1024 };
    Deno.writeTextFileSync(`${b}/config.json`, JSON.stringify(c));
    const root = `${dir}/state`;
    const problems: string[] = [];
    for (let k = 0; k < rounds; k++) {
      const id = `k${seed % 10000}-${k}`;
      const verb = random() < 0.5 ? "run" : "create";
      const delay = Math.floor(random() * 400);
      const micro = new Deno.Command(MICRO, {
        args: ["--root", root, verb, "-b", b, id],
        stdin: "null",
        stdout: "null",
        stderr: "null",
      }).spawn();
      await sleep(delay);
      try {
        micro.kill("SIGKILL");
      } catch {
        // it had already exited (create returns once the container waits)
      }
      await micro.status;
      // The container's process, where micro recorded one.
      const st = await run(["--root", root, "state", id]);
      if (st.code === 0) {
        const pid = JSON.parse(st.stdout).pid;
        if (pid > 0) {
          try {
            Deno.kill(pid, "SIGKILL");
          } catch {
            // not there
          }
        }
      }
      const del = await run(["--root", root, "delete", "--force", id]);
      if (del.code !== 0 && !/does not exist/.test(del.stderr)) {
        problems.push(`round ${k} (${verb}, ${delay} ms): delete --force: ${del.stderr.trim()}`);
      }
      await sleep(50);
      const left = {
        mounts: mountsUnder(dir),
        cgroups: cgroupDirs(id),
        state: (() => {
          try {
            return [...Deno.readDirSync(root)].map((e) => e.name);
          } catch {
            return [];
          }
        })(),
      };
      if (left.mounts.length || left.cgroups.length || left.state.length) {
        problems.push(`round ${k} (${verb}, ${delay} ms): left ${JSON.stringify(left)}`);
        // Clean up what this round left, so the next rounds and the host check stay apart.
        killLeft(id);
        await sleep(100);
        for (const d of cgroupDirs(id)) {
          try {
            Deno.removeSync(d);
          } catch {
            // still busy
          }
        }
        for (const l of left.mounts.reverse()) {
          const point = l.split(" ")[4];
          new Deno.Command("umount", { args: ["-l", point] }).outputSync();
        }
        try {
          Deno.removeSync(root, { recursive: true });
        } catch {
          // not there
        }
      }
    }
    assert.deepEqual(problems, [], `seed ${seed}:\n${problems.join("\n")}`);
  });
});
