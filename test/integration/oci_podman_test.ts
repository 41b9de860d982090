/**
 * podman drives micro as its OCI runtime (`--runtime` naming a link `micro-runc`), on an
 * image the test builds from the test image and loads with `podman load`. podman keeps
 * everything (storage, run state, events) in the test's temp dir; nothing reaches the
 * network (`--network none`).
 */
import assert from "node:assert/strict";
import { IMAGE, lacking, MICRO, microTest, show } from "./_helpers.ts";
import { archiveOf, dockerSave, makeImage } from "../unit/_images.ts";

function which(name: string): string | undefined {
  for (const dir of (Deno.env.get("PATH") ?? "/usr/bin:/bin").split(":")) {
    try {
      if (Deno.statSync(`${dir}/${name}`).isFile) return `${dir}/${name}`;
    } catch {
      // next
    }
  }
  return undefined;
}

const NO_PODMAN = which("podman") && which("conmon")
  ? undefined
  : "no podman and conmon (Debian: podman)";

const dec = new TextDecoder();

/**
 * podman with its state in `dir` and micro as the runtime; with `fd3`, podman gets that file
 * open at fd 3 (through a shell), as a socket-activated service's manager would pass it.
 */
async function podman(dir: string, args: string[], timeoutMs = 60_000, fd3?: string) {
  const shell = fd3 === undefined ? [] : ["-c", 'exec 3<"$0"; exec podman "$@"', fd3];
  const child = new Deno.Command(fd3 === undefined ? "podman" : "sh", {
    args: [
      ...shell,
      "--root",
      `${dir}/storage`,
      "--runroot",
      `${dir}/run`,
      "--tmpdir",
      `${dir}/tmp`,
      "--storage-driver",
      "vfs",
      "--cgroup-manager",
      "cgroupfs",
      "--events-backend",
      "file",
      "--runtime",
      `${dir}/micro-runc`,
      ...args,
    ],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    env: { CONTAINERS_CONF: `${dir}/containers.conf` },
  }).spawn();
  const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
  try {
    const out = await child.output();
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

/**
 * podman raises RLIMIT_NOFILE and RLIMIT_NPROC to 1048576 by default; a host that denies
 * micro CAP_SYS_RESOURCE (this CI's) cannot, so the run names limits below its own.
 */
const RUN = ["--network", "none", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"];

async function withPodman(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = Deno.makeTempDirSync({ prefix: "micro-podman-" });
  try {
    Deno.symlinkSync(MICRO, `${dir}/micro-runc`);
    Deno.mkdirSync(`${dir}/tmp`);
    Deno.writeTextFileSync(`${dir}/containers.conf`, '[engine]\nevents_logger = "file"\n');
    // The test image as a docker-archive (one layer), loaded with podman load.
    const tar = new Deno.Command("tar", { args: ["-C", IMAGE, "-cf", "-", "."] }).outputSync();
    assert.ok(tar.success, dec.decode(tar.stderr));
    const image = makeImage([tar.stdout], { compression: "none" });
    Deno.writeFileSync(
      `${dir}/image.tar`,
      archiveOf(dockerSave([{ image, tags: ["localhost/busy:1"] }])),
    );
    const load = await podman(dir, ["load", "-i", `${dir}/image.tar`]);
    assert.equal(load.code, 0, show(load));
    await fn(dir);
  } finally {
    await podman(dir, ["rm", "-af", "-t", "0"]);
    await podman(dir, ["rmi", "-af"]);
    Deno.removeSync(dir, { recursive: true });
  }
}

const opts = { ignore: lacking(NO_PODMAN) };

microTest("podman --runtime micro: run --rm, output and exit code", async () => {
  await withPodman(async (dir) => {
    const r = await podman(dir, [
      "run",
      "--rm",
      ...RUN,
      "localhost/busy:1",
      "sh",
      "-c",
      "echo hello; id -u; exit 3",
    ]);
    assert.equal(r.code, 3, show(r));
    assert.match(r.stdout, /^hello\n0\n$/);
    const ps = await podman(dir, ["ps", "-aq"]);
    assert.equal(ps.stdout.trim(), "", show(ps));
  });
}, opts);

microTest("podman --runtime micro: run -d, logs, stop, rm", async () => {
  await withPodman(async (dir) => {
    const d = await podman(dir, [
      "run",
      "-d",
      "--name",
      "web",
      ...RUN,
      "localhost/busy:1",
      "sh",
      "-c",
      "echo started; exec sleep 100",
    ]);
    assert.equal(d.code, 0, show(d));
    const ps = await podman(dir, ["ps", "--format", "{{.Names}} {{.Status}}"]);
    assert.match(ps.stdout, /^web Up/m, show(ps));
    let logs = "";
    for (let k = 0; k < 50 && !logs.includes("started"); k++) {
      logs = (await podman(dir, ["logs", "web"])).stdout;
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.match(logs, /started/);
    const stop = await podman(dir, ["stop", "-t", "1", "web"]);
    assert.equal(stop.code, 0, show(stop));
    const rm = await podman(dir, ["rm", "web"]);
    assert.equal(rm.code, 0, show(rm));
  });
}, opts);

microTest("podman --runtime micro: resource and security flags reach the container", async () => {
  await withPodman(async (dir) => {
    const script = [
      "cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max",
      "cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max",
      "grep -E '^(CapEff|NoNewPrivs)' /proc/self/status",
      "id",
      "touch /x 2>&1 || true",
    ].join("; ");
    const r = await podman(dir, [
      "run",
      "--rm",
      ...RUN,
      "--memory",
      "64m",
      "--pids-limit",
      "50",
      "--cap-drop",
      "ALL",
      "--read-only",
      "--security-opt",
      "no-new-privileges",
      "--user",
      "1000:1000",
      // micro mounts /sys/fs/cgroup only with a cgroup namespace (podman's default on v2).
      "--cgroupns",
      "private",
      "localhost/busy:1",
      "sh",
      "-c",
      script,
    ]);
    assert.equal(r.code, 0, show(r));
    assert.match(r.stdout, /^67108864$/m);
    assert.match(r.stdout, /^50$/m);
    assert.match(r.stdout, /CapEff:\s+0000000000000000/);
    assert.match(r.stdout, /NoNewPrivs:\s+1/);
    assert.match(r.stdout, /uid=1000/);
    assert.match(r.stdout, /Read-only file system/);
  });
}, opts);

const NO_SCRIPT = which("script") ? undefined : "no `script` binary (util-linux)";

microTest("podman --runtime micro: exec, and -it through script (console socket)", async () => {
  await withPodman(async (dir) => {
    const d = await podman(dir, [
      "run",
      "-d",
      "--name",
      "box",
      ...RUN,
      "localhost/busy:1",
      "sleep",
      "100",
    ]);
    assert.equal(d.code, 0, show(d));
    const e = await podman(dir, ["exec", "box", "sh", "-c", "ps -o pid,comm | grep ' 1 '; exit 6"]);
    assert.equal(e.code, 6, show(e));
    assert.match(e.stdout, /^\s*1 sleep$/m);
    // A terminal: podman's conmon passes --console-socket and relays the master.
    const args = (xs: string[]) => xs.map((x) => `'${x}'`).join(" ");
    const base = [
      "podman",
      "--root",
      `${dir}/storage`,
      "--runroot",
      `${dir}/run`,
      "--tmpdir",
      `${dir}/tmp`,
      "--storage-driver",
      "vfs",
      "--cgroup-manager",
      "cgroupfs",
      "--events-backend",
      "file",
      "--runtime",
      `${dir}/micro-runc`,
    ];
    for (
      const cmd of [
        [...base, "exec", "-it", "box", "sh", "-c", "tty; echo tty-ok"],
        [...base, "run", "--rm", "-it", ...RUN, "localhost/busy:1", "sh", "-c", "tty; echo tty-ok"],
      ]
    ) {
      const once = () =>
        new Deno.Command("script", {
          args: ["-qec", args(cmd), "/dev/null"],
          stdin: "null",
          env: { CONTAINERS_CONF: `${dir}/containers.conf` },
        }).output();
      let out = await once();
      // Seen once in sixty CI runs: success and not a byte relayed (conmon's console relay
      // of a short-lived -it command; podman has such flakes of its own, podman#10927). A
      // second try must show it all.
      if (out.success && out.stdout.length === 0) out = await once();
      const text = dec.decode(out.stdout);
      assert.ok(out.success, text + dec.decode(out.stderr));
      assert.match(text, /\/dev\/pts\/0\r?\n/);
      assert.match(text, /tty-ok/);
    }
    await podman(dir, ["rm", "-f", "-t", "0", "box"]);
  });
}, { ignore: lacking(NO_PODMAN, NO_SCRIPT) });

microTest("podman --runtime micro: run --preserve-fds 1 hands fd 3 to the container", async () => {
  await withPodman(async (dir) => {
    Deno.writeTextFileSync(`${dir}/three`, "passed by the caller\n");
    const r = await podman(
      dir,
      [
        "run",
        "--rm",
        "--preserve-fds",
        "1",
        ...RUN,
        "localhost/busy:1",
        "sh",
        "-c",
        // ls in a child of its own (not the last command, which the shell would exec).
        "cat <&3; ls /proc/$$/fd; true",
      ],
      60_000,
      `${dir}/three`,
    );
    assert.equal(r.code, 0, show(r));
    assert.equal(r.stdout, "passed by the caller\n0\n1\n2\n3\n", show(r));
  });
}, opts);
