/**
 * The cgroups plugin on the real kernel: memory, pids, cpu and block I/O limits enforced,
 * the device allow-list enforced by the cgroup, limits the host cannot honour refused before
 * the container starts, and nothing left under /sys/fs/cgroup afterwards (also after
 * `kill -9` of micro, once the next micro command has swept).
 *
 * The same file runs on the developer's host (cgroup v1 controllers, or hybrid: v1 beside an
 * empty cgroup2 mount) and in the QEMU guest of `make test-vm` (pure cgroup v2, env
 * MICRO_CGROUP=v2): the layout is read from /proc/self/mountinfo and each check looks at the
 * files of that layout. The guest emulates its CPU (30-80x slower), so every step is light
 * and its timeouts are stretched there.
 *
 * Each run is named (`--name cgtest-...`) so that its cgroup directories are known:
 * v1 `/sys/fs/cgroup/<controller>/micro/<id>`, v2 `/sys/fs/cgroup/micro/<id>`. Other people
 * may run micro on this machine at the same time: only this test's own directories are
 * asserted gone, and the shared `micro` parent only when no micro run exists at all.
 *
 * To look at a running container from the host, the container prints `ready` and then waits
 * for a file `go` to appear in its `/scratch` volume (a host temp dir); the host inspects,
 * creates `go`, and the container's command ends by itself.
 */
import assert from "node:assert/strict";
import {
  Background,
  exists,
  IMAGE,
  MICRO,
  microTest,
  pidAlive,
  run,
  type RunResult,
  show,
  sleep,
  STATE_ROOT,
  stateEntries,
  waitFor,
  waitForContainer,
  withTempDir,
} from "./_helpers.ts";

// ---------------------------------------------------------------------------------------
// The host's cgroup layout.

interface Layout {
  mode: "v1" | "hybrid" | "v2" | "none";
  /** v1: controller → mount point. */
  v1: Record<string, string>;
  /** The cgroup2 mount point, if any. */
  v2?: string;
}

/** The controllers micro puts every run in on v1 (plugins/cgroups.ts V1_ALWAYS). */
const V1_USED = ["cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids"];

function readLayout(): Layout {
  const v1: Record<string, string> = {};
  let v2: string | undefined;
  for (const line of Deno.readTextFileSync("/proc/self/mountinfo").split("\n")) {
    const sep = line.indexOf(" - ");
    if (sep < 0) continue;
    const mountPoint = line.slice(0, sep).split(" ")[4];
    const [fstype, , superOpts = ""] = line.slice(sep + 3).split(" ");
    if (fstype === "cgroup2") v2 ??= mountPoint;
    if (fstype !== "cgroup") continue;
    for (const opt of superOpts.split(",")) {
      if (V1_USED.includes(opt)) v1[opt] ??= mountPoint;
    }
  }
  const hasV1 = Object.keys(v1).length > 0;
  const mode = hasV1 ? (v2 ? "hybrid" : "v1") : v2 ? "v2" : "none";
  return { mode, v1, v2 };
}

const LAYOUT = readLayout();
const V2 = LAYOUT.mode === "v2";
/** Set by tools/vm/run.sh: pure cgroup v2 in an emulated (slow) guest. */
const WANT = Deno.env.get("MICRO_CGROUP");
const SLOW = WANT === "v2";
/** Timeouts are multiplied by this in the guest. */
const X = SLOW ? 8 : 1;

function read(path: string): string | undefined {
  try {
    return Deno.readTextFileSync(path);
  } catch {
    return undefined;
  }
}

/** Why the cgroup tests cannot run here, or undefined. */
const LAYOUT_REASON: string | undefined = (() => {
  if (LAYOUT.mode === "none") return "no cgroup file system mounted";
  if (V2) {
    const have = (read(`${LAYOUT.v2}/cgroup.controllers`) ?? "").trim().split(/\s+/);
    const missing = ["cpu", "memory", "pids"].filter((c) => !have.includes(c));
    if (missing.length) return `cgroup v2 without the ${missing.join(", ")} controller(s)`;
    return undefined;
  }
  const missing = V1_USED.filter((c) => !LAYOUT.v1[c]);
  return missing.length ? `cgroup v1 without the ${missing.join(", ")} controller(s)` : undefined;
})();

/**
 * The directories of run `id` under `parent`: one per v1 hierarchy micro uses (co-mounted
 * controllers share one), or the one v2 directory.
 */
function runDirs(id: string, parent = "micro"): string[] {
  if (V2) return [`${LAYOUT.v2}/${parent}/${id}`];
  return [...new Set(V1_USED.filter((c) => LAYOUT.v1[c]).map((c) => `${LAYOUT.v1[c]}/${parent}`))]
    .map((p) => `${p}/${id}`);
}

function parentDirs(parent = "micro"): string[] {
  return runDirs("", parent).map((d) => d.replace(/\/$/, ""));
}

/** A v1 cpuset cgroup a test made by hand given the root's CPUs and nodes (none until then). */
function fillCpuset(dir: string): void {
  for (const f of ["cpuset.cpus", "cpuset.mems"]) {
    const up = read(`${LAYOUT.v1.cpuset}/${f}`)?.trim() ?? "0";
    Deno.writeTextFileSync(`${dir}/${f}`, up);
  }
}

/** Removes the cgroup dirs a test made, the last made first; one gone already is fine. */
function removeDirs(made: string[]): void {
  for (const dir of [...made].reverse()) {
    try {
      Deno.removeSync(dir);
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) console.error(`cannot remove ${dir}: ${e}`);
    }
  }
}

/** A file of run `id`'s cgroup: `ctl` names the v1 controller (ignored on v2). */
function cgFile(ctl: string, id: string, file: string, parent = "micro"): string {
  return V2 ? `${LAYOUT.v2}/${parent}/${id}/${file}` : `${LAYOUT.v1[ctl]}/${parent}/${id}/${file}`;
}

function cgRead(ctl: string, id: string, file: string, parent = "micro"): string {
  const path = cgFile(ctl, id, file, parent);
  const text = read(path);
  assert.ok(text !== undefined, `cannot read ${path}`);
  return text.trim();
}

/** A /proc/PID/cgroup line of a hierarchy micro uses (v2: the one line `0::PATH`). */
function usedLine(line: string): boolean {
  const controllers = line.split(":")[1] ?? "";
  return V2 ? line.startsWith("0::") : controllers.split(",").some((c) => V1_USED.includes(c));
}

/**
 * Run `id`'s cgroup directories are gone (and, on a hybrid host, micro made none in the
 * empty cgroup2 tree); the shared parent too, unless some micro run still exists.
 */
function assertCgroupsGone(id: string, parent = "micro", parentKept = false): void {
  const left = runDirs(id, parent).filter(exists);
  if (LAYOUT.mode === "hybrid" && exists(`${LAYOUT.v2}/${parent}/${id}`)) {
    left.push(`${LAYOUT.v2}/${parent}/${id}`);
  }
  assert.deepEqual(left, [], `run ${id}: cgroup directories left behind`);
  // Existence first, then the state root: a run records its state dir before it creates its
  // cgroups and removes it after removing them, so "a parent exists and no run exists"
  // afterwards can only be a leftover.
  const parents = parentDirs(parent).filter(exists);
  if (!parentKept && parents.length && stateEntries().length === 0) {
    assert.deepEqual(parents, [], `shared parent cgroup(s) left although no micro run exists`);
  }
}

/** A run name unique to this test process. */
function newId(what: string): string {
  return `cgtest-${what}-${crypto.randomUUID().slice(0, 8)}`;
}

const dec = new TextDecoder();

function command(cmd: string, args: string[]): { ok: boolean; out: string; err: string } {
  try {
    const o = new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).outputSync();
    return { ok: o.success, out: dec.decode(o.stdout), err: dec.decode(o.stderr) };
  } catch (e) {
    return { ok: false, out: "", err: String(e) };
  }
}

/** Runs `micro run [OPTS...] IMAGE sh -c SCRIPT` with the guest's longer timeout. */
function sh(script: string, opts: string[] = []): Promise<RunResult> {
  return run(["run", ...opts, IMAGE, "sh", "-c", script], { timeoutMs: 30_000 * X });
}

/** The last line of a run's stdout (what the container printed last). */
function lastLine(r: RunResult): string {
  return r.stdout.trim().split("\n").pop() ?? "";
}

/** The container waits for this before its last step: `until [ -e /scratch/go ] ...`. */
const WAIT_GO = "until [ -e /scratch/go ]; do sleep 0.1; done";

/**
 * Runs `micro run --name ID -v TMP:/scratch OPTS... IMAGE sh -c SCRIPT` in the background;
 * SCRIPT prints `ready` and then waits for /scratch/go (WAIT_GO, or a loop of its own).
 * Once it is ready, `inspect` runs on the host with the container's pid; then `go` is
 * created and the run's result is returned. A run that ends without getting ready is an
 * error, unless `mayFail` (then `inspect` is not called and the result is returned).
 */
async function whileRunning(
  id: string,
  opts: string[],
  script: string,
  inspect: (containerPid: number) => Promise<void> | void,
  mayFail = false,
): Promise<RunResult> {
  return await withTempDir(async (scratch) => {
    Deno.chmodSync(scratch, 0o777);
    const bg = new Background([
      "run",
      "--name",
      id,
      "-v",
      `${scratch}:/scratch`,
      ...opts,
      IMAGE,
      "sh",
      "-c",
      script,
    ]);
    let exited = false;
    const done = bg.result(120_000 * X).then((r) => {
      exited = true;
      return r;
    });
    let failure: unknown;
    try {
      await waitFor(() => exited || bg.stdout.includes("ready\n"), 20_000 * X);
      if (!bg.stdout.includes("ready\n")) {
        bg.kill("SIGKILL");
        const r = await done;
        if (mayFail) return r;
        throw new Error(`run ${id} never got ready: ${show(r)}`);
      }
      const st = await waitForContainer(bg.pid, 10_000 * X);
      assert.ok(st?.containerPid, `run ${id}: no containerPid in its state.json`);
      await inspect(st.containerPid);
    } catch (e) {
      failure = e;
    }
    Deno.writeTextFileSync(`${scratch}/go`, "");
    const r = await done;
    if (failure !== undefined) throw failure;
    return r;
  }, "micro-cgtest-");
}

/** Container script: start, then report /proc/uptime before and after `cmd` and its status. */
function timed(cmd: string): string {
  return `read a _ </proc/uptime; ${cmd}; s=$?; read b _ </proc/uptime; echo "$a $b $s"`;
}

/** Seconds between the two uptimes of a `timed` line, and the command's status. */
function elapsed(r: RunResult): { seconds: number; status: number } {
  const [a, b, s] = lastLine(r).split(" ");
  assert.ok(a && b && s !== undefined, `no timing line: ${show(r)}`);
  return { seconds: Number(b) - Number(a), status: Number(s) };
}

function cgTest(name: string, fn: () => Promise<void>, ignore?: string): void {
  microTest(name, fn, { ignore: LAYOUT_REASON ?? ignore });
}

// ---------------------------------------------------------------------------------------
// Block devices for the I/O and device tests: a loop device on a temp file.

function which(name: string): boolean {
  return (Deno.env.get("PATH") ?? "/usr/sbin:/usr/bin:/sbin:/bin").split(":")
    .some((dir) => exists(`${dir}/${name}`));
}

const LOOP_REASON = !which("losetup")
  ? "no `losetup` (util-linux mount package)"
  : !exists("/dev/loop-control")
  ? "no /dev/loop-control (loop driver missing)"
  : undefined;

interface Loop {
  path: string;
  major: number;
  minor: number;
}

/**
 * A 20 MiB loop device on a temp file for `fn`; detached and the file removed afterwards,
 * whatever happens (a loop device is host state).
 */
async function withLoop<T>(fn: (loop: Loop) => Promise<T>): Promise<T> {
  const file = Deno.makeTempFileSync({ prefix: "micro-cgtest-loop-" });
  let path: string | undefined;
  let result: T | undefined;
  let failed = false;
  let failure: unknown;
  try {
    Deno.truncateSync(file, 20 * 2 ** 20);
    const r = command("losetup", ["-f", "--show", file]);
    assert.ok(r.ok, `losetup -f --show ${file}: ${r.err}`);
    path = r.out.trim();
    const rdev = Deno.statSync(path).rdev ?? 0;
    const major = ((rdev >>> 8) & 0xfff) | (Math.floor(rdev / 2 ** 32) & ~0xfff);
    const minor = (rdev & 0xff) | ((rdev >>> 12) & ~0xff);
    result = await fn({ path, major, minor });
  } catch (e) {
    failed = true;
    failure = e;
  }
  const problems: string[] = [];
  if (path) {
    const d = command("losetup", ["-d", path]);
    if (!d.ok) problems.push(`losetup -d ${path}: ${d.err.trim()}`);
  }
  try {
    Deno.removeSync(file);
  } catch (e) {
    problems.push(`rm ${file}: ${e}`);
  }
  if (failed) throw failure;
  if (problems.length) throw new Error(`loop device cleanup: ${problems.join("; ")}`);
  return result as T;
}

/** Whether `path` lies on a mount with `nodev` (device nodes there cannot be opened). */
function onNodevMount(path: string): boolean {
  let best = "";
  let nodev = false;
  for (const line of Deno.readTextFileSync("/proc/self/mountinfo").trim().split("\n")) {
    const f = line.split(" ");
    const mp = f[4].replace(/\\040/g, " ");
    const inside = mp === "/" || path === mp || path.startsWith(`${mp}/`);
    if (inside && mp.length >= best.length) {
      best = mp;
      nodev = f[5].split(",").includes("nodev");
    }
  }
  return nodev;
}

const TMP_NODEV_REASON = (() => {
  const dir = Deno.makeTempDirSync({ prefix: "micro-cgtest-" });
  try {
    return onNodevMount(Deno.realPathSync(dir))
      ? `the temp dir ${dir} is on a nodev mount (device nodes made there cannot be opened)`
      : undefined;
  } finally {
    Deno.removeSync(dir);
  }
})();

// ---------------------------------------------------------------------------------------

microTest("cgroup layout: the one MICRO_CGROUP names, else any with the controllers", () => {
  if (WANT === "v2") {
    assert.equal(LAYOUT.mode, "v2", `MICRO_CGROUP=v2 but this kernel shows ${LAYOUT.mode}`);
    assert.equal(LAYOUT_REASON, undefined, "MICRO_CGROUP=v2: the tests would be ignored");
  } else if (WANT === "v1") {
    assert.ok(LAYOUT.mode === "v1" || LAYOUT.mode === "hybrid", `got ${LAYOUT.mode}`);
  }
  console.log(`cgroup layout: ${LAYOUT.mode}${LAYOUT_REASON ? ` (${LAYOUT_REASON})` : ""}`);
}, { noHostCheck: true });

// 1. memory -------------------------------------------------------------------------------

const OOM_32 = "micro: container killed by the OOM killer (memory limit 32 MiB)";
/**
 * 100 MiB written to /dev/shm, a tmpfs (64 MiB) whose pages are charged to the writer's
 * memory cgroup and cannot be reclaimed without swap: the OOM killer strikes at 32 MiB.
 * Cheap in the emulated guest (block copies, no byte-by-byte loop). The container's own
 * stderr is closed so that micro's is all that is on stderr.
 */
const HOG = "exec 2>/dev/null; dd if=/dev/zero of=/dev/shm/hog bs=1M count=100";

cgTest("--memory 32m: a memory hog is killed, exit 137 and one OOM line", async () => {
  const id = newId("oom");
  const r = await sh(HOG, ["--name", id, "--memory", "32m"]);
  assert.equal(r.code, 137, show(r));
  assert.equal(r.stderr, `${OOM_32}\n`, show(r));
  assertCgroupsGone(id);

  const idJ = newId("oomjson");
  const j = await sh(HOG, ["--name", idJ, "--memory", "32m", "--json"]);
  assert.equal(j.code, 137, show(j));
  const lines = j.stderr.trim().split("\n");
  assert.equal(lines.length, 2, show(j));
  assert.equal(lines[0], OOM_32, show(j));
  const json = JSON.parse(lines[1]);
  assert.equal(json.id, idJ);
  assert.equal(json.exitCode, 137);
  assert.equal(json.oomKilled, true, show(j));
  assertCgroupsGone(idJ);
});

cgTest("--memory 32m: a run under the limit exits 0 with no OOM report", async () => {
  const id = newId("nooom");
  const small = "exec 2>/dev/null; dd if=/dev/zero of=/dev/shm/small bs=1M count=8 && echo done";
  const r = await sh(small, ["--name", id, "--memory", "32m", "--json"]);
  assert.equal(r.code, 0, show(r));
  assert.equal(r.stdout, "done\n", show(r));
  assert.doesNotMatch(r.stderr, /OOM/, show(r));
  const json = JSON.parse(r.stderr.trim());
  assert.deepEqual(json, { id, exitCode: 0, signal: null, oomKilled: false });
  assertCgroupsGone(id);
  // A process that dies of SIGKILL without the OOM killer is not reported as OOM-killed.
  const idK = newId("kill9");
  const k = await sh(`exec 2>/dev/null; sh -c 'kill -9 $$'; exit $?`, [
    "--name",
    idK,
    "--memory",
    "32m",
    "--json",
  ]);
  assert.equal(k.code, 137, show(k));
  assert.doesNotMatch(k.stderr, /OOM/, show(k));
  assert.equal(JSON.parse(k.stderr.trim()).oomKilled, false, show(k));
  assertCgroupsGone(idK);
});

cgTest(
  "--memory 32m: a process killed under a surviving init is a warning, its code stands",
  async () => {
    const id = newId("oomchild");
    // The hog runs as a child; the init shell goes on and exits 3 by itself.
    const script =
      "dd if=/dev/zero of=/dev/shm/hog bs=1M count=100 2>/dev/null; rm -f /dev/shm/hog; exit 3";
    const r = await sh(script, ["--name", id, "--memory", "32m", "--json"]);
    assert.equal(r.code, 3, show(r));
    const lines = r.stderr.trim().split("\n");
    assert.deepEqual(lines.slice(0, -1), [
      "micro: warning: the OOM killer killed a process in the container (memory limit 32 MiB)",
    ], show(r));
    assert.deepEqual(JSON.parse(lines.at(-1)!), { id, exitCode: 3, signal: null, oomKilled: true });
    assertCgroupsGone(id);
  },
);

// 2. pids -----------------------------------------------------------------------------------

cgTest("--pids-limit 20: a fork bomb is held at the limit, the host unharmed", async () => {
  const id = newId("pids");
  // busybox sh gives up at the first failed fork ("can't fork"): the bomb runs in its own
  // shell, which records how far it got; PID 1 then counts /proc with builtins only (no
  // fork is possible while the sleeps fill the cgroup) and busy-waits for `go`.
  const bomb = "i=0; while [ $i -lt 50 ]; do sleep 60 & i=$((i+1)); echo $i >/scratch/n; done";
  const script = [
    `sh -c '${bomb}' 2>/scratch/err`,
    "n=0; for p in /proc/[0-9]*; do n=$((n+1)); done",
    "read s </scratch/n; read e </scratch/err",
    `echo "started=$s live=$n"; echo "error=$e"`,
    "echo ready",
    "until [ -e /scratch/go ]; do :; done",
  ].join("\n");
  let current = -1;
  let events = "";
  let max = "";
  const r = await whileRunning(id, ["--pids-limit", "20"], script, () => {
    current = Number(cgRead("pids", id, "pids.current"));
    max = cgRead("pids", id, "pids.max");
    events = cgRead("pids", id, "pids.events");
  });
  assert.equal(r.code, 0, show(r));
  const m = /started=(\d+) live=(\d+)/.exec(r.stdout);
  assert.ok(m, show(r));
  const [started, live] = [Number(m[1]), Number(m[2])];
  assert.ok(started < 50, `all 50 forks succeeded under --pids-limit 20: ${show(r)}`);
  assert.ok(live <= 20, `${live} processes alive in the container: ${show(r)}`);
  assert.match(r.stdout, /error=.*(can't fork|Resource temporarily unavailable)/, show(r));
  assert.equal(max, "20");
  assert.ok(current > 0 && current <= 20, `pids.current ${current} while the bomb was held`);
  assert.match(events, /^max [1-9]\d*$/m, `pids.events: ${events}`);
  assertCgroupsGone(id);
  // The host can still start processes and containers.
  const after = await sh("echo fine");
  assert.equal(after.code, 0, show(after));
  assert.equal(after.stdout, "fine\n");
});

// 3. cpu ------------------------------------------------------------------------------------

/** The cgroup's CPU time so far, in ns: v1 cpuacct.usage, v2 cpu.stat usage_usec. */
function cpuUsageNs(id: string): number {
  if (!V2) return Number(cgRead("cpuacct", id, "cpuacct.usage"));
  const m = /^usage_usec (\d+)$/m.exec(cgRead("cpu", id, "cpu.stat"));
  assert.ok(m, `no usage_usec in ${cgFile("cpu", id, "cpu.stat")}`);
  return Number(m[1]) * 1000;
}

cgTest("--cpus 0.2: a busy loop gets about a fifth of a CPU (the cgroup's usage)", async () => {
  const id = newId("cpu");
  // [ is a builtin: the loop forks nothing, it only spins.
  const script = "echo ready; while [ ! -e /scratch/go ]; do :; done";
  const windowMs = SLOW ? 4000 : 2000;
  let cpus = 0;
  let stat = "";
  const r = await whileRunning(id, ["--cpus", "0.2"], script, async () => {
    await sleep(300); // past the start and the first period
    const u0 = cpuUsageNs(id);
    const t0 = performance.now();
    await sleep(windowMs);
    const u1 = cpuUsageNs(id);
    const t1 = performance.now();
    cpus = (u1 - u0) / ((t1 - t0) * 1e6);
    stat = cgRead("cpu", id, "cpu.stat");
  });
  assert.equal(r.code, 0, show(r));
  const [lo, hi] = SLOW ? [0.05, 0.45] : [0.1, 0.3];
  assert.ok(cpus >= lo && cpus <= hi, `used ${cpus.toFixed(3)} CPUs, want ${lo}..${hi}`);
  assert.match(stat, /^nr_throttled [1-9]\d*$/m, `the quota never throttled: ${stat}`);
  assertCgroupsGone(id);
});

// 4. block I/O ------------------------------------------------------------------------------

/**
 * busybox dd has oflag=direct and iflag=direct: O_DIRECT I/O on the loop device bypasses
 * the page cache, so the throttle (which sees only the bios the container submits) is what
 * paces it. 3 MiB at 1 MiB/s takes about 3 s; unthrottled, a few ms.
 */
cgTest("--device-write-bps / --device-read-bps throttle direct I/O on a loop device", async () => {
  await withLoop(async (loop) => {
    const dev = `${loop.major}:${loop.minor}`;
    const write = `dd if=/dev/zero of=${loop.path} bs=1M count=3 oflag=direct 2>/dev/null`;
    const read_ = `dd if=${loop.path} of=/dev/null bs=1M count=3 iflag=direct 2>/dev/null`;

    const idFree = newId("io-free");
    const free = elapsed(await sh(timed(write), ["--name", idFree, "--device", loop.path]));
    assert.equal(free.status, 0, "unthrottled dd failed");
    assert.ok(free.seconds < (SLOW ? 2 : 1), `unthrottled: ${free.seconds} s for 3 MiB`);
    assertCgroupsGone(idFree);

    const idW = newId("io-wbps");
    let limit = "";
    const rw = await whileRunning(
      idW,
      ["--device", loop.path, "--device-write-bps", `${loop.path}:1mb`],
      `echo ready; ${WAIT_GO}; ${timed(write)}`,
      () => {
        limit = V2
          ? cgRead("io", idW, "io.max")
          : cgRead("blkio", idW, "blkio.throttle.write_bps_device");
      },
    );
    assert.equal(rw.code, 0, show(rw));
    if (V2) assert.match(limit, new RegExp(`^${dev} .*wbps=1048576`, "m"), `io.max: ${limit}`);
    else assert.equal(limit, `${dev} 1048576`);
    const w = elapsed(rw);
    assert.equal(w.status, 0, show(rw));
    assert.ok(w.seconds >= 2.5, `3 MiB written at --device-write-bps 1mb in ${w.seconds} s`);
    assert.ok(w.seconds < 3 * 5 * X, `throttled write took ${w.seconds} s`);
    assertCgroupsGone(idW);

    const idR = newId("io-rbps");
    const rr = await sh(timed(read_), [
      "--name",
      idR,
      "--device",
      loop.path,
      "--device-read-bps",
      `${loop.path}:1mb`,
    ]);
    assert.equal(rr.code, 0, show(rr));
    const rd = elapsed(rr);
    assert.equal(rd.status, 0, show(rr));
    assert.ok(rd.seconds >= 2.5, `3 MiB read at --device-read-bps 1mb in ${rd.seconds} s`);
    assertCgroupsGone(idR);
  });
}, LOOP_REASON);

// 5. devices --------------------------------------------------------------------------------

cgTest("--device adds a loop device; an undeclared one is refused by the cgroup", async () => {
  await withLoop(async (loop) => {
    await withTempDir(async (scratch) => {
      const node = `b ${loop.major} ${loop.minor}`;
      // Declared: the node is there, readable, and a second node with the same numbers
      // works too (the cgroup allows the numbers, not a path).
      const idA = newId("dev-add");
      const a = await sh(
        [
          `ls -l ${loop.path}`,
          `head -c 512 ${loop.path} | wc -c`,
          `mknod /scratch/again ${node} && head -c 512 /scratch/again | wc -c`,
          "rm -f /scratch/again",
        ].join("; "),
        ["--name", idA, "-v", `${scratch}:/scratch`, "--device", loop.path],
      );
      assert.equal(a.code, 0, show(a));
      const [ls, n1, n2] = a.stdout.trim().split("\n");
      assert.match(ls, new RegExp(`^b.* ${loop.major}, +${loop.minor} .*${loop.path}$`), show(a));
      assert.equal(n1.trim(), "512", show(a));
      assert.equal(n2?.trim(), "512", show(a));
      assertCgroupsGone(idA);

      // Undeclared: not in /dev, and a node made by hand (CAP_MKNOD, on a volume without
      // nodev) cannot be opened: EPERM from the cgroup (a nodev mount would say EACCES).
      const idU = newId("dev-deny");
      const u = await sh(
        [
          `[ -e ${loop.path} ] && echo present || echo absent`,
          `mknod /scratch/x ${node} 2>&1; echo mknod=$?`,
          "head -c 1 /scratch/x 2>&1 >/dev/null; echo head=$?",
          "rm -f /scratch/x",
        ].join("; "),
        ["--name", idU, "-v", `${scratch}:/scratch`],
      );
      assert.equal(u.code, 0, show(u));
      assert.match(u.stdout, /^absent$/m, show(u));
      if (/^mknod=0$/m.test(u.stdout)) {
        assert.match(u.stdout, /Operation not permitted\nhead=1$/m, show(u));
      } else {
        // Refusing even mknod is the cgroup too (Docker allows it: `b *:* m`).
        assert.match(u.stdout, /Operation not permitted\nmknod=1$/m, show(u));
      }
      assertCgroupsGone(idU);

      // Declared read-only (HOST:CTR:r): reads work, writes are refused.
      const idR = newId("dev-ro");
      const r = await sh(
        [
          "ls -l /dev/xdisk",
          "head -c 512 /dev/xdisk | wc -c",
          "dd if=/dev/zero of=/dev/xdisk bs=512 count=1 2>&1; echo dd=$?",
        ].join("; "),
        ["--name", idR, "--device", `${loop.path}:/dev/xdisk:r`],
      );
      assert.equal(r.code, 0, show(r));
      const lines = r.stdout.trim().split("\n");
      assert.match(lines[0], /^b.* \/dev\/xdisk$/, show(r));
      assert.equal(lines[1].trim(), "512", show(r));
      assert.match(r.stdout, /Operation not permitted\ndd=1$/m, show(r));
      assertCgroupsGone(idR);
    }, "micro-cgtest-");
  });
}, LOOP_REASON ?? TMP_NODEV_REASON);

// 6. limits in the cgroup files -------------------------------------------------------------

cgTest("limits are in the cgroup's files while the container runs", async () => {
  const id = newId("limits");
  const memsw = V2 || exists(`${LAYOUT.v1.memory}/memory.memsw.limit_in_bytes`);
  const opts = [
    "--memory",
    "64m",
    "--memory-reservation",
    "32m",
    ...(memsw ? ["--memory-swap", "128m"] : []),
    "--pids-limit",
    "33",
    "--cpus",
    "1.5",
    "--cpuset-cpus",
    "0",
    "--cpu-shares",
    "512",
  ];
  const got: Record<string, string> = {};
  const want: Record<string, string> = {};
  const r = await whileRunning(id, opts, `echo ready; ${WAIT_GO}`, () => {
    const files: [string, string, string][] = V2
      ? [
        ["memory", "memory.max", "67108864"],
        ["memory", "memory.low", "33554432"],
        // Docker's --memory-swap is memory plus swap; v2's swap.max is the swap alone
        ["memory", "memory.swap.max", "67108864"],
        ["pids", "pids.max", "33"],
        ["cpu", "cpu.max", "150000 100000"],
        ["cpuset", "cpuset.cpus", "0"],
        // crun's and runc >= 1.3.2's curve (1024 shares ↔ weight 100):
        // ceil(10^((l² + 125 l) / 612 - 7/34)) with l = log2(512) = 9
        ["cpu", "cpu.weight", "59"],
      ]
      : [
        ["memory", "memory.limit_in_bytes", "67108864"],
        ["memory", "memory.soft_limit_in_bytes", "33554432"],
        ...(memsw
          ? [["memory", "memory.memsw.limit_in_bytes", "134217728"] as [string, string, string]]
          : []),
        ["pids", "pids.max", "33"],
        ["cpu", "cpu.cfs_quota_us", "150000"],
        ["cpu", "cpu.cfs_period_us", "100000"],
        ["cpuset", "cpuset.cpus", "0"],
        ["cpu", "cpu.shares", "512"],
      ];
    for (const [ctl, file, value] of files) {
      got[file] = read(cgFile(ctl, id, file))?.trim() ?? "(missing)";
      want[file] = value;
    }
  });
  assert.equal(r.code, 0, show(r));
  assert.deepEqual(got, want);
  assertCgroupsGone(id);
});

cgTest("--blkio-weight 300 lands in the kernel's weight file", async () => {
  // Which weight file this kernel has (CFQ's blkio.weight is gone since 5.0; BFQ has
  // blkio.bfq.weight, v2 io.bfq.weight; v2 iocost has io.weight): the files of a fresh
  // cgroup of our own (they are not on the root; on v2 the root passes io on to children).
  const probe = V2 ? `${LAYOUT.v2}/${newId("bw-probe")}` : `${LAYOUT.v1.blkio}/${newId("bw")}`;
  let files: string[];
  Deno.mkdirSync(probe);
  try {
    files = [...Deno.readDirSync(probe)].map((e) => e.name);
  } finally {
    Deno.removeSync(probe);
  }
  // runc: v1 blkio.weight, else blkio.bfq.weight; v2 io.bfq.weight as is, else io.weight
  // converted (1 + (300 - 10) * 9999 / 990 = 2930).
  const accept: Record<string, string[]> = V2
    ? { "io.bfq.weight": ["default 300", "300"], "io.weight": ["default 2930"] }
    : { "blkio.weight": ["300"], "blkio.bfq.weight": ["300"] };
  const present = Object.keys(accept).filter((f) => files.includes(f));
  if (present.length === 0) {
    console.log(`ignored: this kernel has none of ${Object.keys(accept).join(", ")}`);
    return;
  }
  const id = newId("bw");
  const got: Record<string, string> = {};
  const r = await whileRunning(id, ["--blkio-weight", "300"], `echo ready; ${WAIT_GO}`, () => {
    for (const f of present) got[f] = cgRead("blkio", id, f).split("\n")[0];
  }, true);
  assert.equal(r.code, 0, `--blkio-weight 300 with ${present.join(", ")}: ${show(r)}`);
  assert.ok(
    present.some((f) => accept[f].includes(got[f])),
    `none of ${present.join(", ")} holds the weight: ${JSON.stringify(got)}`,
  );
  assertCgroupsGone(id);
});

for (const nested of [false, true]) {
  const what = nested ? "NAME/SUB" : "NAME";
  cgTest(
    `--cgroup-parent ${what}: the run's cgroups are ${what}/<id>, all removed after`,
    async () => {
      const top = newId("parent");
      const parent = nested ? `${top}/sub` : top;
      const id = newId("par");
      let procCgroup = "";
      let dirs: string[] = [];
      let limit = "";
      const r = await whileRunning(
        id,
        ["--cgroup-parent", parent, "--memory", "64m"],
        `echo ready; ${WAIT_GO}`,
        (pid) => {
          procCgroup = read(`/proc/${pid}/cgroup`) ?? "";
          dirs = runDirs(id, parent).filter(exists);
          limit = cgRead("memory", id, V2 ? "memory.max" : "memory.limit_in_bytes", parent);
        },
      );
      assert.equal(r.code, 0, show(r));
      assert.deepEqual(dirs, runDirs(id, parent), "cgroup dirs missing under the parent");
      assert.equal(limit, "67108864");
      // The host's view of the container's cgroups: PARENT/<id> in every hierarchy used.
      const lines = procCgroup.trim().split("\n").filter(usedLine);
      assert.equal(lines.length, runDirs(id, parent).length, procCgroup);
      for (const l of lines) {
        assert.ok(l.endsWith(`:/${parent}/${id}`), `host view: ${procCgroup}`);
      }
      assertCgroupsGone(id, parent);
      // micro made every level of the parent for this run, so it removes them too.
      const left = [...parentDirs(parent), ...parentDirs(top)].filter(exists);
      assert.deepEqual(left, [], "the parent made for the run is left");
      assert.ok(runDirs(id).every((d) => !exists(d)), "also made under micro/");
    },
  );
}

cgTest("--cgroup-parent NAME: a parent that existed before is used and kept", async () => {
  const parent = newId("own");
  const made: string[] = [];
  try {
    // A parent the administrator made, with a limit of its own for what runs under it.
    for (const dir of parentDirs(parent)) {
      Deno.mkdirSync(dir);
      made.push(dir);
    }
    if (!V2) fillCpuset(`${LAYOUT.v1.cpuset}/${parent}`);
    const limitFile = V2 ? "memory.max" : "memory.limit_in_bytes";
    const memDir = V2 ? `${LAYOUT.v2}/${parent}` : `${LAYOUT.v1.memory}/${parent}`;
    Deno.writeTextFileSync(`${memDir}/${limitFile}`, String(256 * 2 ** 20));
    const id = newId("own");
    const r = await sh("true", ["--name", id, "--cgroup-parent", parent]);
    assert.equal(r.code, 0, show(r));
    // The parent was there before: micro uses it and leaves it in place.
    assertCgroupsGone(id, parent, true);
    const gone = made.filter((d) => !exists(d));
    assert.deepEqual(gone, [], "micro removed a parent cgroup it did not create");
    assert.equal(read(`${memDir}/${limitFile}`)?.trim(), String(256 * 2 ** 20));
  } finally {
    removeDirs(made);
  }
});

cgTest(
  "a parent micro was killed while making (sticky, not yet marked) is micro's: removed",
  async () => {
    const parent = "micro";
    const made: string[] = [];
    const there = parentDirs(parent).filter(exists);
    assert.deepEqual(there, [], "micro's parent is there before the test: a container runs?");
    try {
      // What a micro SIGKILLed between a shared parent's mkdir and its mark leaves: made with
      // the sticky bit (core/cgroups/fs.ts claimMade), no trusted.micro.
      for (const dir of parentDirs(parent)) {
        const mk = await new Deno.Command("mkdir", { args: ["-m", "1755", dir] }).output();
        assert.equal(mk.code, 0, new TextDecoder().decode(mk.stderr));
        made.push(dir);
      }
      if (!V2) fillCpuset(`${LAYOUT.v1.cpuset}/${parent}`);
      const id = newId("half");
      const r = await sh("true", ["--name", id]);
      assert.equal(r.code, 0, show(r));
      assertCgroupsGone(id, parent);
      assert.deepEqual(made.filter(exists), [], "a parent left half-made by micro stays for good");
    } finally {
      removeDirs(made);
    }
  },
);

cgTest(
  "a run's cgroup that exists already (not micro's): the run fails, its processes live on",
  async () => {
    // `--cgroup-parent P --name N` where P/N is someone else's cgroup with a process in it:
    // the mkdir fails with EEXIST, and neither the failed run's cleanup nor a later gc may
    // kill that process or remove the cgroup.
    const parent = newId("victim");
    const name = newId("svc");
    const made: string[] = [];
    const victim = new Deno.Command("sleep", { args: ["1000"], stdout: "null", stderr: "null" })
      .spawn();
    try {
      for (const dir of parentDirs(parent)) {
        for (const d of [dir, `${dir}/${name}`]) {
          Deno.mkdirSync(d);
          made.push(d);
          if (!V2 && d.startsWith(`${LAYOUT.v1.cpuset}/`)) fillCpuset(d);
        }
        Deno.writeTextFileSync(`${dir}/${name}/cgroup.procs`, String(victim.pid));
      }
      const dirs = runDirs(name, parent);
      const alive = (when: string) => {
        assert.ok(pidAlive(victim.pid), `the other program's process was killed ${when}`);
        assert.deepEqual(dirs.filter((d) => !exists(d)), [], `its cgroup was removed ${when}`);
        for (const d of dirs) {
          assert.equal(read(`${d}/cgroup.procs`)?.trim(), String(victim.pid), `${d} ${when}`);
        }
      };
      const r = await sh("echo started", ["--cgroup-parent", parent, "--name", name]);
      await sleep(200);
      alive("by the failed run");
      assert.equal(r.code, 125, show(r));
      assert.equal(r.stdout, "", show(r));
      const lines = r.stderr.trim().split("\n");
      assert.equal(lines.length, 1, show(r));
      assert.match(
        lines[0],
        /^micro: prepare: cgroups: mkdir path=.*: EEXIST \(a cgroup of this name/,
      );
      assert.match(lines[0], /micro leaves it alone: choose another --name or --cgroup-parent\)$/);
      // A micro killed right after the failed mkdir leaves a state that names the dirs it
      // meant to create (the intent) but not as created: the next command's gc must not
      // kill or empty them either. That state lives in a tmpfs state root of a private mount
      // namespace, where only this test's `micro plan` sweeps it (not other micro commands
      // on this machine, which may be older builds).
      const state = JSON.stringify({
        id: name,
        pid: 1,
        startTime: -1, // not init's start time: that micro is gone
        image: null,
        cgroups: dirs.map((path) => ({
          path,
          shared: false,
          kill: V2
            ? "cgroup.kill"
            : path.startsWith(`${LAYOUT.v1.freezer}/`)
            ? "freezer"
            : "signal",
        })),
        created: new Date().toISOString(),
      });
      const script = `mount -t tmpfs -o mode=0711 tmpfs ${STATE_ROOT} || exit 1
        mkdir ${STATE_ROOT}/${name} && printf %s "$1" > ${STATE_ROOT}/${name}/state.json
        "$0" plan -- true >/dev/null || exit 1
        [ ! -e ${STATE_ROOT}/${name} ] && echo swept`;
      const g = await run(
        ["-m", "--propagation", "private", "sh", "-c", script, MICRO, state],
        { cmd: "unshare", timeoutMs: 30_000 * X },
      );
      assert.equal(g.code, 0, show(g));
      assert.equal(g.stdout, "swept\n", show(g));
      alive("by the next command's gc");
    } finally {
      try {
        victim.kill("SIGKILL");
      } catch { /* killed already (the bug this test is about) */ }
      await victim.status;
      for (const d of made) {
        await waitFor(() => (read(`${d}/cgroup.procs`) ?? "").trim() === "", 2000);
      }
      removeDirs(made);
    }
  },
);

// 7. limits the host cannot honour ----------------------------------------------------------

cgTest(
  "limits the host cannot honour: exit 125 before the start, one line naming the option",
  async () => {
    const cases: [string[], string][] = [
      [["--cpuset-cpus", "99"], "--cpuset-cpus"],
      [["--cpuset-mems", "63"], "--cpuset-mems"],
      [["--device-write-bps", "/dev/nonexistent:1mb"], "--device-write-bps"],
      [["--device-read-bps", "/dev/null:1mb"], "--device-read-bps"],
      [["--device-write-iops", "/dev/zero:10"], "--device-write-iops"],
      [["--device", "/nonexistent"], "--device"],
    ];
    for (const [opts, option] of cases) {
      const id = newId("refused");
      const r = await sh("echo started", ["--name", id, ...opts]);
      const what = `${opts.join(" ")}: ${show(r)}`;
      assert.equal(r.code, 125, what);
      assert.equal(r.stdout, "", what);
      const lines = r.stderr.trim().split("\n");
      assert.equal(lines.length, 1, what);
      assert.match(lines[0], /^micro: /, what);
      assert.ok(lines[0].includes(`${option}:`), `the error does not name ${option}: ${what}`);
      assert.ok(!exists(`${STATE_ROOT}/${id}`), what);
      assertCgroupsGone(id);
    }
  },
);

cgTest(
  "limits Docker refuses: exit 125 before the start, one line saying why",
  async () => {
    const cpus = (Deno.readTextFileSync("/sys/devices/system/cpu/online").trim().split(","))
      .reduce((n, r) => {
        const [a, b = a] = r.split("-").map(Number);
        return n + b - a + 1;
      }, 0);
    const profile = `memory-${crypto.randomUUID()}.yaml`;
    const cases: [string[], RegExp][] = [
      // Before: "the container's first process died of signal 9 before exec".
      [["-m", "100000"], /cgroups\.memory: invalid value "100000": below 6m/],
      [["--memory-reservation", "1k"], /cgroups\.memoryReservation: .*below 6m/],
      [["-m", "8m", "--memory-swap", "7m"], /--memory-swap: 7 MiB is below --memory 8 MiB/],
      [["--memory-swap", "64m"], /--memory-swap: needs --memory/],
      [
        ["--cpus", String(cpus + 1)],
        new RegExp(
          `--cpus: ${cpus + 1} is out of range: the range of CPUs is from 0\\.01 ` +
            `to ${cpus}\\.00, as there (is|are) only ${cpus} CPUs? available`,
        ),
      ],
      [["--cpus", "0.001"], /--cpus: 0.001 is out of range/],
      [["--profile", profile], /cgroups\.memory \(line 3\): .*below 6m/],
    ];
    await withTempDir(async (dir) => {
      Deno.writeTextFileSync(`${dir}/${profile}`, "extends: default\ncgroups:\n  memory: 1m\n");
      for (const [opts, why] of cases) {
        const id = newId("docker-refused");
        const args = opts.map((o) => o === profile ? `${dir}/${profile}` : o);
        const r = await sh("echo started", ["--name", id, ...args]);
        const what = `${opts.join(" ")}: ${show(r)}`;
        assert.equal(r.code, 125, what);
        assert.equal(r.stdout, "", what);
        const lines = r.stderr.trim().split("\n");
        assert.equal(lines.length, 1, what);
        // The schema refuses a size (flag or profile); the check the rest.
        assert.match(lines[0], /^micro: (check: cgroups|command line|profile [^:]+): /, what);
        assert.match(lines[0], why, what);
        assertCgroupsGone(id);
      }
    });
    // At the limits, it runs.
    for (const opts of [["-m", "6m"], ["--cpus", String(cpus)]]) {
      const r = await sh("echo started", ["--rm", ...opts]);
      assert.equal(r.stdout, "started\n", `${opts.join(" ")}: ${show(r)}`);
    }
  },
);

cgTest("--name is a plain name: not a path out of the state root or micro's cgroup", async () => {
  // Docker allows [a-zA-Z0-9][a-zA-Z0-9_.-]*. The run's name is a path component of its
  // state dir (/run/micro/NAME) and of each of its cgroups (.../micro/NAME): "../x" would
  // put them beside /run/micro and beside micro's parent cgroup.
  const base = newId("escape");
  const name = `../${base}`;
  const outside = [
    `${STATE_ROOT.replace(/\/[^/]+$/, "")}/${base}`,
    ...runDirs(base, "micro/..").map((p) => p.replace("/micro/../", "/")),
  ];
  const bg = new Background(["run", "--name", name, IMAGE, "sh", "-c", "echo ready; sleep 2"]);
  let seen: string[] = [];
  try {
    let exited = false;
    const done = bg.result(60_000 * X).then((r) => {
      exited = true;
      return r;
    });
    await waitFor(() => exited || bg.stdout.includes("ready\n"), 20_000 * X);
    seen = outside.filter(exists);
    const r = await done;
    assert.equal(r.code, 125, `--name ${name} accepted; made outside micro's own: ${seen}`);
    assert.equal(r.stderr.trim().split("\n").length, 1, show(r));
    assert.match(r.stderr, /name/, show(r));
  } finally {
    bg.kill("SIGKILL");
    await bg.result();
    // A safety net: micro removes what it made when the run ends.
    for (const d of outside.filter(exists)) {
      try {
        Deno.removeSync(d, { recursive: !d.startsWith("/sys/") });
      } catch {
        // best effort
      }
    }
  }
  assert.deepEqual(outside.filter(exists), [], "left outside micro's own directories");
});

// 8. nothing left, also after kill -9 of micro --------------------------------------------------

for (const next of [["plan", IMAGE, "true"], ["run", IMAGE, "true"]]) {
  cgTest(
    `kill -9 of micro: the container dies, its cgroups stay until \`micro ${next[0]}\``,
    async () => {
      const id = newId("kill");
      const bg = new Background([
        "run",
        "--name",
        id,
        "--memory",
        "64m",
        "--pids-limit",
        "50",
        IMAGE,
        "sh",
        "-c",
        "echo ready; exec sleep 1000",
      ]);
      try {
        assert.ok(await bg.waitForStdout("ready\n", 20_000 * X), `never ready: ${bg.stderr}`);
        const st = await waitForContainer(bg.pid, 10_000 * X);
        assert.ok(st?.containerPid, "no containerPid in state.json");
        const dirs = runDirs(id);
        assert.deepEqual(dirs.filter((d) => !exists(d)), [], "cgroup dirs missing while running");
        const procs = read(`${cgFile("memory", id, "cgroup.procs")}`)?.trim().split("\n");
        assert.deepEqual(procs, [String(st.containerPid)], "the container is not in its cgroup");
        bg.kill("SIGKILL");
        await bg.result(30_000 * X);
        assert.ok(
          await waitFor(() => !pidAlive(st.containerPid!), 5000 * X),
          `container pid ${st.containerPid} outlived micro`,
        );
        // Left for the next command (unless someone else's micro swept first).
        const kept = dirs.filter(exists);
        if (kept.length === 0 && !exists(st.dir)) {
          console.log("note: another micro command swept the run before this test looked");
        } else {
          assert.deepEqual(kept, dirs, "some cgroup dirs vanished while micro was dead");
          // nothing runs in them
          for (const d of dirs) assert.equal(read(`${d}/cgroup.procs`)?.trim(), "", d);
        }
        const r = await run(next, { timeoutMs: 30_000 * X });
        assert.equal(r.code, 0, show(r));
        assert.equal(exists(st.dir), false, `${st.dir} survived micro ${next[0]}`);
        assertCgroupsGone(id);
      } finally {
        bg.kill("SIGKILL");
        await bg.result();
        await run(["plan", IMAGE, "true"], { timeoutMs: 30_000 * X });
      }
    },
  );
}

// 8b. the watchdog: the container dies with micro even when it clears PDEATHSIG -----------------

/** The children of process `pid` (every thread's). */
function childrenOf(pid: number): number[] {
  const out: number[] = [];
  for (const t of Deno.readDirSync(`/proc/${pid}/task`)) {
    const text = read(`/proc/${pid}/task/${t.name}/children`) ?? "";
    out.push(...text.trim().split(/\s+/).filter((x) => x).map(Number));
  }
  return out;
}

/** Fields of /proc/PID/stat after the command: [state, ppid, pgrp, session, ...]. */
function statFields(pid: number): string[] {
  const stat = read(`/proc/${pid}/stat`) ?? "";
  return stat.slice(stat.lastIndexOf(")") + 2).split(" ");
}

/** Runs a command with some calls refused: `deny_syscalls.py NRS ERRNO -- COMMAND...`. */
const DENY = new URL("../deny_syscalls.py", import.meta.url).pathname;

// 0: pidfds work; 38 (ENOSYS): a kernel before 5.3; 1 (EPERM): a seccomp filter around micro.
for (const refused of [0, 38, 1]) {
  const noPidfd = refused !== 0;
  cgTest(
    "kill -9 of micro whose container cleared PDEATHSIG: the watchdog kills it, gc removes the dirs" +
      (noPidfd ? ` (pidfd_open refused with errno ${refused}: the forked watchdog)` : ""),
    async () => {
      // The host view (no image) has the host's setpriv: the container's init clears its
      // parent-death signal, so only the watchdog can take it down when micro is killed. The
      // run's state root is a tmpfs of a private mount namespace, so that no other micro
      // command on this machine sweeps the dead run (and kills the container) first. With
      // `noPidfd`, micro runs under a seccomp filter that refuses pidfd_open (an old kernel,
      // or an old runtime's profile around micro): the static watchdog cannot kill through a
      // pidfd, so micro forks its own.
      const id = newId("pdeath");
      const wrap = noPidfd ? `python3 ${DENY} 434 ${refused} -- ` : "";
      await withTempDir(async (scratch) => {
        const script = `mount -t tmpfs -o mode=0711 tmpfs ${STATE_ROOT} || exit 1
        ${wrap}"$0" run --name ${id} -- /usr/bin/setpriv --pdeathsig clear sleep 1000 &
        echo "micro=$!"
        until [ -e "$1/go" ]; do sleep 0.05; done
        "$0" plan -- true && echo swept`;
        const bg = new Background(
          ["-m", "--propagation", "private", "sh", "-c", script, MICRO, scratch],
          { cmd: "unshare" },
        );
        let microPid = 0;
        try {
          assert.ok(await bg.waitForStdout("micro=", 10_000 * X), bg.stderr);
          await waitFor(() => /micro=\d+\n/.test(bg.stdout), 2000);
          microPid = Number(/micro=(\d+)/.exec(bg.stdout)![1]);
          const root = `/proc/${bg.pid}/root${STATE_ROOT}`;
          const st = await waitForContainer(microPid, 20_000 * X, root);
          assert.ok(st?.containerPid, `no containerPid in state.json: ${bg.stderr}`);
          const dirs = runDirs(id);
          // setpriv has exec'd sleep: the parent-death signal is cleared from here on.
          assert.ok(
            await waitFor(
              () => (read(`/proc/${st.containerPid}/comm`) ?? "").trim() === "sleep",
              10_000 * X,
            ),
            "the container never ran sleep",
          );
          // The static program, or (pidfd_open refused) a fork of micro.
          const guards = childrenOf(microPid).filter((p) => p !== st.containerPid);
          assert.equal(guards.length, 1, `micro's children: ${childrenOf(microPid)}`);
          const comm = (pid: number) => (read(`/proc/${pid}/comm`) ?? "").trim();
          assert.equal(comm(guards[0]) === comm(microPid), noPidfd, comm(guards[0]));
          Deno.kill(microPid, "SIGKILL");
          // No micro command runs meanwhile: the watchdog alone must do it.
          assert.ok(
            await waitFor(() => !pidAlive(st.containerPid!), 3000 * X),
            `container pid ${st.containerPid} outlived micro (PDEATHSIG cleared)`,
          );
          // The watchdog only kills: the directories and the state wait for the next command.
          assert.ok(exists(`${root}/${id}/state.json`), "the state was removed");
          assert.deepEqual(
            dirs.filter(exists),
            dirs,
            "cgroup dirs vanished before the next command",
          );
          for (const d of dirs) assert.equal(read(`${d}/cgroup.procs`)?.trim(), "", d);
          Deno.writeTextFileSync(`${scratch}/go`, "");
          const r = await bg.result(30_000 * X);
          assert.equal(r.code, 0, show(r));
          assert.match(r.stdout, /swept\n$/, show(r));
          assertCgroupsGone(id);
        } finally {
          Deno.writeTextFileSync(`${scratch}/go`, "");
          if (microPid) {
            try {
              Deno.kill(microPid, "SIGKILL");
            } catch { /* gone */ }
          }
          await bg.result(30_000 * X);
          // A failed run's leftovers: its state went with the namespace, so no gc will come.
          for (const d of runDirs(id).filter(exists)) {
            for (const p of (read(`${d}/cgroup.procs`) ?? "").split("\n").filter((x) => x)) {
              try {
                Deno.kill(Number(p), "SIGKILL");
              } catch { /* gone */ }
            }
            await waitFor(() => (read(`${d}/cgroup.procs`) ?? "").trim() === "", 2000);
            try {
              Deno.removeSync(d);
            } catch { /* reported by the assertions above */ }
          }
        }
      }, "micro-cgtest-");
    },
    noPidfd && !which("python3") ? "no python3 (the seccomp filter around micro)" : undefined,
  );
}

cgTest(
  "the watchdog: outside the container, its own session, holding only its pipe, the init's pidfd and the cgroup; gone after a normal end",
  async () => {
    const id = newId("wd");
    let watchdog = 0;
    let micro = 0;
    await withTempDir(async (scratch) => {
      Deno.chmodSync(scratch, 0o777);
      const bg = new Background(
        [
          "run",
          "--name",
          id,
          "-v",
          `${scratch}:/scratch`,
          IMAGE,
          "sh",
          "-c",
          `echo ready; ${WAIT_GO}; echo bye`,
        ],
      );
      micro = bg.pid;
      try {
        assert.ok(await bg.waitForStdout("ready\n", 20_000 * X), `never ready: ${bg.stderr}`);
        const st = await waitForContainer(bg.pid, 10_000 * X);
        assert.ok(st?.containerPid, "no containerPid in state.json");
        const others = childrenOf(bg.pid).filter((p) => p !== st.containerPid);
        assert.equal(others.length, 1, `micro's children: ${childrenOf(bg.pid)}`);
        watchdog = others[0];
        // Not in the container's namespaces: the host's pid and mount namespaces.
        for (const ns of ["pid", "mnt"]) {
          assert.equal(
            Deno.readLinkSync(`/proc/${watchdog}/ns/${ns}`),
            Deno.readLinkSync(`/proc/self/ns/${ns}`),
            ns,
          );
        }
        // Its own session and process group: a group kill of micro spares it.
        const [, , pgrp, session] = statFields(watchdog);
        assert.equal(Number(session), watchdog, "not a session leader");
        assert.equal(Number(pgrp), watchdog);
        assert.notEqual(statFields(bg.pid)[3], session);
        // It ignores the signals a terminal or a group kill sends; it is not dumpable.
        const status = read(`/proc/${watchdog}/status`) ?? "";
        const ignored = BigInt(`0x${/^SigIgn:\s*(\w+)/m.exec(status)?.[1] ?? "0"}`);
        for (const sig of [1, 2, 3, 15]) {
          assert.ok(ignored & (1n << BigInt(sig - 1)), `signal ${sig}`);
        }
        // Its fds (the static program: the container has a pid namespace of its own): the
        // pipe from micro, /dev/null as stdout and stderr, a pidfd of the container's init,
        // the v2 cgroup dir it writes cgroup.kill in or the v1 freezer dir it thaws; nothing
        // else of micro's.
        const fds = Object.fromEntries(
          [...Deno.readDirSync(`/proc/${watchdog}/fd`)].map((e) => [
            e.name,
            Deno.readLinkSync(`/proc/${watchdog}/fd/${e.name}`),
          ]),
        );
        const killDir = V2 ? runDirs(id)[0] : `${LAYOUT.v1.freezer}/micro/${id}`;
        assert.deepEqual(Object.keys(fds).sort(), ["0", "1", "2", "3", "4", "5"], `fds: ${fds}`);
        assert.match(fds[0], /^pipe:/, JSON.stringify(fds));
        assert.equal(fds[1], "/dev/null");
        assert.equal(fds[2], "/dev/null");
        assert.equal(fds[3], "anon_inode:[pidfd]");
        assert.equal(fds[V2 ? 4 : 5], killDir, JSON.stringify(fds));
        assert.equal(fds[V2 ? 5 : 4], "/dev/null", JSON.stringify(fds));
        assert.equal(Deno.readLinkSync(`/proc/${watchdog}/cwd`), "/");
        // Killing the watchdog alone does not disturb the run (no SIGPIPE at the end).
        Deno.kill(watchdog, "SIGKILL");
        await sleep(100);
        Deno.writeTextFileSync(`${scratch}/go`, "");
        const r = await bg.result(30_000 * X);
        assert.equal(r.code, 0, show(r));
        assert.match(r.stdout, /bye\n$/);
      } finally {
        bg.kill("SIGKILL");
        await bg.result();
      }
    }, "micro-cgtest-");
    assertCgroupsGone(id);
    // And after a normal end, the watchdog of a run that was not disturbed leaves too.
    const id2 = newId("wd2");
    const bg2 = new Background(["run", "--name", id2, IMAGE, "sh", "-c", "echo ready; sleep 1"]);
    let wd2 = 0;
    try {
      assert.ok(await bg2.waitForStdout("ready\n", 20_000 * X), bg2.stderr);
      const st = await waitForContainer(bg2.pid, 10_000 * X);
      wd2 = childrenOf(bg2.pid).find((p) => p !== st?.containerPid) ?? 0;
      assert.ok(wd2 > 0, "no watchdog");
      const r = await bg2.result(30_000 * X);
      assert.equal(r.code, 0, show(r));
      assert.ok(await waitFor(() => !pidAlive(wd2), 2000 * X), `watchdog ${wd2} outlived micro`);
    } finally {
      bg2.kill("SIGKILL");
      await bg2.result();
    }
    assertCgroupsGone(id2);
    assert.ok(micro > 0 && watchdog > 0);
  },
);

// 9. cgroup namespace -------------------------------------------------------------------------

for (const profile of ["default", "hardened"]) {
  cgTest(
    `/proc/self/cgroup inside is / everywhere (${profile}); the host sees micro/<id>`,
    async () => {
      const id = newId(`ns-${profile}`);
      let host = "";
      const r = await whileRunning(
        id,
        ["--profile", profile, "--memory", "64m"],
        `cat /proc/self/cgroup; echo ready; ${WAIT_GO}`,
        (pid) => {
          host = read(`/proc/${pid}/cgroup`) ?? "";
        },
      );
      assert.equal(r.code, 0, show(r));
      const inside = r.stdout.replace(/ready\n$/, "").trim().split("\n");
      assert.ok(inside.length >= runDirs(id).length, show(r));
      for (const line of inside) assert.match(line, /^\d+:[^:]*:\/$/, `inside: ${r.stdout}`);
      // The host's view: every hierarchy micro uses has the run's cgroup.
      const used = host.trim().split("\n")
        .filter(usedLine);
      assert.equal(used.length, runDirs(id).length, host);
      for (const l of used) assert.ok(l.endsWith(`:/micro/${id}`), `host view: ${host}`);
      assertCgroupsGone(id);
    },
  );
}

// 10. joining ---------------------------------------------------------------------------------

cgTest(
  "v2: the child is born in its cgroup (clone3 CLONE_INTO_CGROUP): no cgroup.procs write; v1 writes one",
  async () => {
    const r = await run(["run", "--rm", "--memory", "64m", IMAGE, "/bin/true"], {
      env: { MICRO_TRACE: "1" },
      timeoutMs: 30_000 * X,
    });
    assert.equal(r.code, 0, show(r));
    assert.match(r.stderr, /micro: trace: (clone|vfork) \(child/, show(r));
    // The phase is traced only when micro writes cgroup.procs (core/engine/parent.ts attach),
    // or its vfork child does (core/engine/child.ts, cgroupProcs).
    const wrote = /first cgroup\.procs write/.test(r.stderr);
    assert.equal(wrote, !V2, show(r));
  },
);
