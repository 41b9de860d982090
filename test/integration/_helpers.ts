/**
 * Shared helpers for the integration tests: they run the real `micro` binary as root on the
 * real kernel and look from inside the container.
 *
 * - `MICRO`: `$MICRO`, else `$MICRO_BIN` (set by the Makefile), else `<repo>/dist/micro`.
 * - `IMAGE`: `$MICRO_IMAGE`, else `<repo>/dist/image`; when missing it is made with
 *   `tools/mkimage.sh` in a temp dir that is removed when the test process exits.
 * - `microTest` wraps a test with the check that the host's mount table and the state root
 *   are the same after the test as before it, and ignores it with a printed reason when the
 *   host lacks something it needs.
 */
import assert from "node:assert/strict";

export const REPO = new URL("../../", import.meta.url).pathname.replace(/\/$/, "");

export const MICRO = Deno.env.get("MICRO") ?? Deno.env.get("MICRO_BIN") ?? `${REPO}/dist/micro`;

export const STATE_ROOT = "/run/micro";

export const IS_ROOT = Deno.uid() === 0;

const TEMP_IMAGE_DIRS: string[] = [];
const TEMP_STORES: string[] = [];

/**
 * The store (kept containers, images) of every micro this test process runs, through
 * MICRO_ROOT: a temp dir of its own, removed at exit, so runs without `--rm` leave nothing
 * on the host and no test sees another process's containers. Traversable (0711): a
 * hardened container's root mounts its overlay from there.
 */
/**
 * The default profile's network (`auto`) would be micro's bridge as root: it makes micro0,
 * iptables rules and routes in the network namespace micro runs in, and these tests run in
 * the machine's own. Every micro they start gets `none` there (network tests run micro in a
 * namespace of their own and ask for bridge explicitly: test/integration/network_test.ts).
 */
export const SAFE_NETWORK_ENV = { MICRO_DEFAULT_NETWORK: "none" };
Deno.env.set("MICRO_DEFAULT_NETWORK", "none");

export const STORE_ROOT: string = (() => {
  const dir = Deno.makeTempDirSync({ prefix: "micro-test-store-" });
  Deno.chmodSync(dir, 0o711);
  Deno.env.set("MICRO_ROOT", dir);
  TEMP_STORES.push(dir);
  return dir;
})();

/** Whether anything is at `path` (a link itself counts; it is not followed). */
export function exists(path: string): boolean {
  try {
    Deno.lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

/** The test image; built into a temp dir when neither $MICRO_IMAGE nor dist/image exists. */
export const IMAGE: string = (() => {
  const given = Deno.env.get("MICRO_IMAGE") ?? `${REPO}/dist/image`;
  if (exists(`${given}/bin/sh`)) return given;
  const dir = Deno.makeTempDirSync({ prefix: "micro-test-image-" });
  // traversable by the hardened container's root (host uid 1000000000) and rootless users
  Deno.chmodSync(dir, 0o755);
  TEMP_IMAGE_DIRS.push(dir);
  const image = `${dir}/image`;
  const out = new Deno.Command(`${REPO}/tools/mkimage.sh`, { args: [image] }).outputSync();
  if (!out.success) {
    throw new Error(`tools/mkimage.sh ${image} failed: ${new TextDecoder().decode(out.stderr)}`);
  }
  return image;
})();

globalThis.addEventListener("unload", () => {
  for (const d of [...TEMP_IMAGE_DIRS, ...TEMP_STORES]) {
    try {
      Deno.removeSync(d, { recursive: true });
    } catch {
      // best effort
    }
  }
});

export interface RunResult {
  code: number;
  signal: Deno.Signal | null;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  /** Written to the child's stdin, which is then closed; without it stdin is /dev/null. */
  stdin?: string;
  env?: Record<string, string>;
  /** Start from an empty environment (plus `env`). */
  clearEnv?: boolean;
  /** Run as this uid:gid (through setpriv, groups cleared). */
  user?: { uid: number; gid: number };
  cwd?: string;
  /** The program to run instead of MICRO. */
  cmd?: string;
  /** Kill the process after this many ms (default 30000). */
  timeoutMs?: number;
}

const dec = new TextDecoder();

/** A private copy of the test image in `dir`, as `dir/img`, without the `drop` paths. */
export function copyImage(dir: string, drop: string[] = []): string {
  const img = `${dir}/img`;
  const cp = new Deno.Command("cp", { args: ["-a", IMAGE, img] }).outputSync();
  assert.ok(cp.success, new TextDecoder().decode(cp.stderr));
  for (const d of drop) Deno.removeSync(`${img}${d}`, { recursive: true });
  return img;
}

/** Runs `micro ARGS...` (or `opts.cmd`) and collects its exit code and output. */
export async function run(args: string[], opts: RunOptions = {}): Promise<RunResult> {
  let cmd = opts.cmd ?? MICRO;
  let argv = args;
  if (opts.user) {
    argv = [
      `--reuid=${opts.user.uid}`,
      `--regid=${opts.user.gid}`,
      "--clear-groups",
      "--",
      cmd,
      ...args,
    ];
    cmd = "setpriv";
  }
  const child = new Deno.Command(cmd, {
    args: argv,
    stdin: opts.stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
    // An empty environment keeps the safe network (see SAFE_NETWORK_ENV) unless told.
    env: opts.clearEnv ? { ...SAFE_NETWORK_ENV, ...opts.env } : opts.env,
    clearEnv: opts.clearEnv,
    cwd: opts.cwd,
  }).spawn();
  const timer = setTimeout(() => {
    try {
      child.kill("SIGKILL");
    } catch {
      // already gone
    }
  }, opts.timeoutMs ?? 30_000);
  try {
    if (opts.stdin !== undefined) {
      const w = child.stdin.getWriter();
      try {
        await w.write(new TextEncoder().encode(opts.stdin));
        await w.close();
      } catch {
        // the child may exit without reading its stdin
      }
    }
    // A process that kept micro's stdout (a fork of micro hung before it closed its fds)
    // must fail the test, not hang the suite: give up on the pipes some time after the kill.
    let hung: ReturnType<typeof setTimeout> | undefined;
    const out = await Promise.race([
      child.output(),
      new Promise<never>((_, reject) => {
        hung = setTimeout(
          () =>
            reject(new Error(`${cmd} ${argv.join(" ")}: its output stayed open after it ended`)),
          (opts.timeoutMs ?? 30_000) + 30_000,
        );
      }),
    ]).finally(() => clearTimeout(hung));
    return {
      code: out.code,
      signal: out.signal,
      stdout: dec.decode(out.stdout),
      stderr: dec.decode(out.stderr),
    };
  } finally {
    clearTimeout(timer);
  }
}

/** Runs `micro run [OPTS...] IMAGE sh -c SCRIPT`. */
export function sh(script: string, opts: string[] = [], ro: RunOptions = {}): Promise<RunResult> {
  return run(["run", ...opts, IMAGE, "sh", "-c", script], ro);
}

/** Formats a result for assertion messages. */
export function show(r: RunResult): string {
  return `exit ${r.code}${r.signal ? ` (signal ${r.signal})` : ""}\n--- stdout\n${r.stdout}` +
    `--- stderr\n${r.stderr}`;
}

/** Asserts the run exited 0 and returns its stdout. */
export function ok(r: RunResult): string {
  assert.equal(r.code, 0, show(r));
  return r.stdout;
}

/**
 * The host's mount table: "mount point source fstype" per line of /proc/self/mountinfo,
 * sorted, nothing ignored.
 */
export function hostMounts(): string[] {
  const lines = Deno.readTextFileSync("/proc/self/mountinfo").trim().split("\n");
  return lines.map((line) => {
    const [pre, post] = line.split(" - ");
    const f = pre.split(" ");
    const g = post.split(" ");
    // mount id, parent, major:minor, root, mount point; fstype, source
    return `${f[4]} ${f[3]} ${g[0]} ${g[1]}`;
  }).sort();
}

/** The names in the state root (empty when it does not exist). */
export function stateEntries(root = STATE_ROOT): string[] {
  try {
    return [...Deno.readDirSync(root)].map((e) => e.name).sort();
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return [];
    throw e;
  }
}

/**
 * micro's cgroup directories on the host: its parents (`micro`, `micro-oci`) and what is
 * below them, two levels deep, in every hierarchy (as tools/leftovers.sh lists them).
 */
export function microCgroups(): string[] {
  const found: string[] = [];
  const dirs = (path: string): string[] => {
    try {
      return [...Deno.readDirSync(path)].filter((e) => e.isDirectory).map((e) =>
        `${path}/${e.name}`
      );
    } catch {
      return [];
    }
  };
  for (const root of ["/sys/fs/cgroup", ...dirs("/sys/fs/cgroup")]) {
    for (const parent of ["micro", "micro-oci"]) {
      const top = `${root}/${parent}`;
      const runs = dirs(top);
      if (runs.length === 0 && !existsDir(top)) continue;
      found.push(top);
      for (const run of runs) found.push(run, ...dirs(run));
    }
  }
  return found.sort();
}

function existsDir(path: string): boolean {
  try {
    return Deno.statSync(path).isDirectory;
  } catch {
    return false;
  }
}

/**
 * Asserts the host's mount table, the state root and micro's cgroups equal the `before`
 * snapshot. A new cgroup gets 5 seconds to go (a killed run's cleanup still finishing), as
 * in tools/leftovers.sh, which would otherwise report it after the whole suite without
 * naming the test.
 */
export async function assertHostUnchanged(
  before: { mounts: string[]; state: string[]; cgroups: string[] },
): Promise<void> {
  let cgroups: string[] = [];
  for (let i = 0; i < 50; i++) {
    cgroups = ours(microCgroups().filter((c) => !before.cgroups.includes(c)));
    if (cgroups.length === 0) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.deepEqual(cgroups, [], "micro's cgroups on the host have new directories");
  const mounts = hostMounts();
  const added = mounts.filter((m) => !before.mounts.includes(m));
  const removed = before.mounts.filter((m) => !mounts.includes(m));
  assert.deepEqual(
    { added, removed },
    { added: [], removed: [] },
    "the host's mount table changed",
  );
  // Entries that vanished were swept (ours or another user's leftovers: both fine). New ones
  // are ours unless they belong to a live micro that this test process did not start (other
  // people run micro on this machine too).
  // Dot entries are not runs: `.images` holds the shared records of image directories that
  // runs (ours or others') use while they run; the tests that use them check them.
  const added_ = stateEntries().filter((e) =>
    !before.state.includes(e) && !e.startsWith(".") && !foreignRun(e)
  );
  assert.deepEqual(added_, [], `the state root ${STATE_ROOT} has new entries`);
}

/**
 * New cgroup dirs less those of live micro runs this test process did not start (other people
 * run micro on this machine too, as for the state root): a run's dirs are named after it, and
 * a parent (`micro`) counts only when nothing left below it is another's.
 */
function ours(added: string[]): string[] {
  const foreign = stateEntries().filter((e) => !e.startsWith(".") && foreignRun(e));
  if (foreign.length === 0) return added;
  const theirs = (c: string) => foreign.some((id) => c.includes(`/micro/${id}`));
  const kept = added.filter((c) => !theirs(c));
  return kept.filter((c) =>
    !/\/micro(-oci)?$/.test(c) || !added.some((d) => d.startsWith(`${c}/`) && theirs(d))
  );
}

/** A state dir of a running micro whose parent is not this test process. */
function foreignRun(entry: string): boolean {
  try {
    const s = JSON.parse(Deno.readTextFileSync(`${STATE_ROOT}/${entry}/state.json`));
    const stat = Deno.readTextFileSync(`/proc/${s.pid}/stat`);
    const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
    return ppid !== Deno.pid;
  } catch {
    return false;
  }
}

export function snapshot(): { mounts: string[]; state: string[]; cgroups: string[] } {
  return { mounts: hostMounts(), state: stateEntries(), cgroups: microCgroups() };
}

// ---------------------------------------------------------------------------------------
// Features the host may lack. Each is a reason string when lacking, undefined when present.

function which(name: string): string | undefined {
  for (const dir of (Deno.env.get("PATH") ?? "/usr/sbin:/usr/bin:/sbin:/bin").split(":")) {
    try {
      const st = Deno.statSync(`${dir}/${name}`);
      if (st.isFile && ((st.mode ?? 0) & 0o111)) return `${dir}/${name}`;
    } catch {
      // next
    }
  }
  return undefined;
}

export const NEEDS = {
  root: IS_ROOT ? undefined : "the integration tests need root",
  script: which("script") ? undefined : "no `script` binary (util-linux)",
  setpriv: which("setpriv") ? undefined : "no `setpriv` binary (util-linux)",
  unshare: which("unshare") ? undefined : "no `unshare` binary (util-linux)",
  micro: exists(MICRO) ? undefined : `the micro binary ${MICRO} does not exist`,
};

const printed = new Set<string>();

/** Combines reasons; the first one present wins. */
export function lacking(...reasons: (string | undefined)[]): string | undefined {
  return reasons.find((r) => r !== undefined);
}

export interface MicroTestOptions {
  /** A reason to ignore the test (the host lacks something), printed once. */
  ignore?: string;
  /** Skip the mount table / state root check (for tests that must not be wrapped). */
  noHostCheck?: boolean;
}

/**
 * Registers a test that needs root and the micro binary, checking that the host's mount
 * table and the state root are unchanged after it.
 */
export function microTest(
  name: string,
  fn: (t: Deno.TestContext) => Promise<void> | void,
  opts: MicroTestOptions = {},
): void {
  const reason = lacking(NEEDS.root, NEEDS.micro, opts.ignore);
  if (reason !== undefined && !printed.has(reason)) {
    printed.add(reason);
    console.log(`ignoring tests: ${reason}`);
  }
  Deno.test({
    name,
    ignore: reason !== undefined,
    // Subprocess output streams and timers are ours to manage; micro's runs end in the test.
    fn: async (t) => {
      const before = snapshot();
      let failure: unknown;
      try {
        await fn(t);
      } catch (e) {
        failure = e;
      }
      try {
        if (!opts.noHostCheck) await assertHostUnchanged(before);
      } catch (e) {
        if (failure === undefined) throw e;
        // Both: report the test's own failure first, it usually explains the other.
        throw new Error(`${String(failure)}\n\nand then: ${String(e)}`, { cause: failure });
      }
      if (failure !== undefined) throw failure;
    },
  });
}

/** A temp dir removed (recursively) after `fn`, even when it throws. */
export async function withTempDir<T>(
  fn: (dir: string) => Promise<T> | T,
  prefix = "micro-test-",
): Promise<T> {
  const dir = Deno.makeTempDirSync({ prefix });
  try {
    return await fn(dir);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
}

/** Reads a host namespace link, e.g. `net:[4026531840]`. */
export function hostNs(kind: string): string {
  return Deno.readLinkSync(`/proc/self/ns/${kind}`);
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/**
 * Polls `cond` every 20 ms until true or `ms` elapsed; returns the last value. `cond` may be
 * async (a micro command per poll): it is awaited, never run twice at once.
 */
export async function waitFor(
  cond: () => boolean | Promise<boolean>,
  ms: number,
): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await cond()) return true;
    await sleep(20);
  }
  return await cond();
}

/** A micro process running in the background whose stdout is read as it arrives. */
export class Background {
  readonly child: Deno.ChildProcess;
  stdout = "";
  stderr = "";
  readonly #done: Promise<RunResult>;

  constructor(args: string[], opts: { cmd?: string; env?: Record<string, string> } = {}) {
    const child = new Deno.Command(opts.cmd ?? MICRO, {
      args,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      env: opts.env,
    }).spawn();
    this.child = child;
    const pump = async (s: ReadableStream<Uint8Array>, key: "stdout" | "stderr") => {
      const d = new TextDecoder();
      for await (const chunk of s) this[key] += d.decode(chunk, { stream: true });
    };
    const out = pump(child.stdout, "stdout");
    const err = pump(child.stderr, "stderr");
    this.#done = (async () => {
      const status = await child.status;
      await Promise.all([out, err]);
      return {
        code: status.code,
        signal: status.signal,
        stdout: this.stdout,
        stderr: this.stderr,
      };
    })();
  }

  get pid(): number {
    return this.child.pid;
  }

  /** Waits until stdout contains `text`; false after `ms`. */
  waitForStdout(text: string, ms = 10_000): Promise<boolean> {
    return waitFor(() => this.stdout.includes(text), ms);
  }

  kill(signal: Deno.Signal): void {
    try {
      this.child.kill(signal);
    } catch {
      // already gone
    }
  }

  /** The exit status; kills the process with SIGKILL after `ms`. */
  async result(ms = 15_000): Promise<RunResult> {
    const timer = setTimeout(() => this.kill("SIGKILL"), ms);
    try {
      return await this.#done;
    } finally {
      clearTimeout(timer);
    }
  }
}

export interface StateInfo {
  dir: string;
  pid: number;
  containerPid?: number;
}

/** The state dir of the micro process `microPid` once it has recorded its container pid. */
export function findState(microPid: number, root = STATE_ROOT): StateInfo | undefined {
  for (const name of stateEntries(root)) {
    try {
      const s = JSON.parse(Deno.readTextFileSync(`${root}/${name}/state.json`));
      if (s.pid === microPid) return { dir: `${root}/${name}`, ...s };
    } catch {
      // not written yet, or not a run dir
    }
  }
  return undefined;
}

/** Waits for micro's state.json to name the container's pid. */
export async function waitForContainer(
  microPid: number,
  ms = 10_000,
  root = STATE_ROOT,
): Promise<StateInfo | undefined> {
  let found: StateInfo | undefined;
  await waitFor(() => {
    found = findState(microPid, root);
    return found?.containerPid !== undefined;
  }, ms);
  return found?.containerPid !== undefined ? found : undefined;
}

export function pidAlive(pid: number): boolean {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    // a zombie is dead for our purpose
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------------------------------
// Kept containers (runs without --rm) in STORE_ROOT.

export const CONTAINERS = `${STORE_ROOT}/containers`;

/** The container directory of the container named `name`, or undefined when it has none. */
export function containerDirOf(name: string): string | undefined {
  try {
    const id = Deno.readLinkSync(`${CONTAINERS}/.names/${name}`);
    return exists(`${CONTAINERS}/${id}/config.json`) ? `${CONTAINERS}/${id}` : undefined;
  } catch {
    return undefined;
  }
}

/** The records of every container in the store: [id, name] pairs. */
export function containerNames(): { id: string; name: string }[] {
  const out: { id: string; name: string }[] = [];
  try {
    for (const e of Deno.readDirSync(CONTAINERS)) {
      if (!/^[0-9a-f]{64}$/.test(e.name)) continue;
      try {
        const rec = JSON.parse(Deno.readTextFileSync(`${CONTAINERS}/${e.name}/config.json`));
        out.push({ id: rec.id, name: rec.name });
      } catch {
        out.push({ id: e.name, name: "" }); // a directory without a record: a leak
      }
    }
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  return out;
}
