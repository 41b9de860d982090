/**
 * The image store end to end: `micro pull` from Debian's docker-registry on 127.0.0.1
 * (filled with skopeo from an OCI layout this file writes), `micro run` of store images
 * (the merged view, the config's defaults and their overrides, --pull), concurrent and
 * killed pulls, `image rm` and `prune` with reference counting, and podman's unpacked tree
 * as the reference for micro's merged root. Every store is a temp dir (`--root`).
 */
import assert from "node:assert/strict";
import { gzipSync } from "node:zlib";
import {
  Background,
  IMAGE,
  lacking,
  MICRO,
  microTest,
  ok,
  run,
  show,
  waitForContainer,
  withTempDir,
} from "./_helpers.ts";
import {
  type Blob,
  enc,
  makeTlsFiles,
  missingTools,
  noise,
  run as exec,
  type Server,
  sha256,
  skopeoCopy,
  startRegistry,
  which,
  writeLayout,
} from "./_registry.ts";
import { hostPlatform } from "../../core/image/platform.ts";

const MISSING = missingTools();
const NO_PODMAN = which("podman")
  ? undefined
  : "podman is not installed (tools/install-test-deps.sh installs it)";

// ---- the test images ------------------------------------------------------------------------

function sh(cmd: string): void {
  const out = new Deno.Command("sh", { args: ["-c", cmd] }).outputSync();
  if (!out.success) throw new Error(`${cmd}: ${new TextDecoder().decode(out.stderr)}`);
}

function write(path: string, text: string | Uint8Array, mode = 0o644, owner?: [number, number]) {
  const parent = path.slice(0, path.lastIndexOf("/"));
  Deno.mkdirSync(parent, { recursive: true });
  Deno.chmodSync(parent, 0o755); // whatever the umask
  if (typeof text === "string") Deno.writeTextFileSync(path, text);
  else Deno.writeFileSync(path, text);
  Deno.chmodSync(path, mode);
  if (owner) Deno.chownSync(path, owner[0], owner[1]);
}

/** A layer from a directory: GNU tar (owners as numbers, hard links kept), gzip. */
function layerOf(dir: string): { tar: Uint8Array; blob: Blob } {
  const out = new Deno.Command("tar", {
    args: ["--numeric-owner", "--format=gnu", "-C", dir, "-cf", "-", "."],
    stdout: "piped",
  }).outputSync();
  if (!out.success) throw new Error(`tar ${dir}: ${new TextDecoder().decode(out.stderr)}`);
  const tar = out.stdout;
  const gz = gzipSync(tar, { level: 1 });
  return {
    tar,
    blob: {
      digest: sha256(gz),
      data: gz,
      mediaType: "application/vnd.oci.image.layer.v1.tar+gzip",
    },
  };
}

interface Built {
  manifest: Blob;
  blobs: Blob[];
  configDigest: string;
}

function imageOf(layers: { tar: Uint8Array; blob: Blob }[], config: object): Built {
  const cfg = enc.encode(JSON.stringify({
    architecture: hostPlatform().architecture,
    os: "linux",
    created: "2024-01-02T03:04:05Z",
    config,
    rootfs: { type: "layers", diff_ids: layers.map((l) => sha256(l.tar)) },
  }));
  const configBlob: Blob = {
    digest: sha256(cfg),
    data: cfg,
    mediaType: "application/vnd.oci.image.config.v1+json",
  };
  const m = enc.encode(JSON.stringify({
    schemaVersion: 2,
    mediaType: "application/vnd.oci.image.manifest.v1+json",
    config: { mediaType: configBlob.mediaType, digest: configBlob.digest, size: cfg.length },
    layers: layers.map((l) => ({
      mediaType: l.blob.mediaType,
      digest: l.blob.digest,
      size: l.blob.data.length,
    })),
  }));
  const manifest: Blob = {
    digest: sha256(m),
    data: m,
    mediaType: "application/vnd.oci.image.manifest.v1+json",
  };
  return {
    manifest,
    blobs: [manifest, configBlob, ...layers.map((l) => l.blob)],
    configDigest: configBlob.digest,
  };
}

const ENTRY = `#!/bin/sh
echo "args=$* cwd=$(pwd) user=$(id -u):$(id -g) greeting=$GREETING extra=$EXTRA path=$PATH"
`;

const CONFIG = {
  Env: ["PATH=/usr/bin:/bin", "GREETING=hello"],
  Entrypoint: ["/app/entry.sh"],
  Cmd: ["default-arg"],
  WorkingDir: "/app",
  User: "app",
  StopSignal: "SIGQUIT",
};

/**
 * `app`: the busybox test image with extras, then a layer with a deletion, a replacement,
 * an opaque directory and a directory replaced by a file, then the app. `app2` shares the
 * first two layers. `big` adds a 24 MB layer of noise (for the killed pull).
 */
function buildImages(dir: string) {
  const l1 = `${dir}/l1`, l2 = `${dir}/l2`, l3 = `${dir}/l3`, l3b = `${dir}/l3b`, lb = `${dir}/lb`;
  sh(`cp -a ${IMAGE} ${l1}`);
  write(`${l1}/data/keep`, "keep\n");
  write(`${l1}/data/del`, "delete me\n");
  write(`${l1}/data/repl`, "old\n");
  write(`${l1}/data/dir/a`, "a\n");
  write(`${l1}/opq/x`, "x\n");
  write(`${l1}/opq/y`, "y\n");
  write(`${l1}/data/owned`, "mine\n", 0o600, [1000, 1000]);
  write(`${l1}/data/suid`, "#!/bin/sh\n", 0o4755);
  Deno.chmodSync(`${l1}/data/suid`, 0o4755);
  Deno.symlinkSync("keep", `${l1}/data/link`);
  Deno.symlinkSync("/etc/passwd", `${l1}/data/abs-link`);
  Deno.linkSync(`${l1}/data/keep`, `${l1}/data/hard`);
  Deno.mkdirSync(`${l1}/data/empty`, { mode: 0o700 });
  Deno.chmodSync(`${l1}/data/empty`, 0o700);
  sh(`mkfifo -m 0640 ${l1}/data/fifo`);

  write(`${l2}/data/.wh.del`, "");
  write(`${l2}/data/repl`, "new content\n", 0o640, [123, 456]);
  write(`${l2}/opq/.wh..wh..opq`, "");
  write(`${l2}/opq/z`, "z\n");
  write(`${l2}/data/dir`, "now a file\n");
  write(`${l2}/data/added`, "added\n", 0o640, [123, 456]);

  write(`${l3}/app/entry.sh`, ENTRY, 0o755);
  write(`${l3}/etc/motd`, "app one\n");
  write(`${l3b}/etc/motd`, "app two\n");
  write(`${lb}/big/noise`, noise(24 << 20, 7));

  const [a, b, c, c2, big] = [l1, l2, l3, l3b, lb].map(layerOf);
  return {
    app: imageOf([a, b, c], CONFIG),
    app2: imageOf([a, b, c2], { ...CONFIG, Env: ["PATH=/bin", "GREETING=two"] }),
    big: imageOf([a, big], { Cmd: ["/bin/sh"] }),
  };
}

let built: { layout: string; images: ReturnType<typeof buildImages> } | undefined;
const BUILD_DIRS: string[] = [];
globalThis.addEventListener("unload", () => {
  for (const d of BUILD_DIRS) Deno.removeSync(d, { recursive: true });
});

async function layout() {
  if (built) return built;
  const dir = Deno.makeTempDirSync({ prefix: "micro-store-images-" });
  BUILD_DIRS.push(dir);
  const images = buildImages(dir);
  await writeLayout(`${dir}/layout`, Object.values(images).flatMap((i) => i.blobs), {
    app: images.app.manifest,
    app2: images.app2.manifest,
    big: images.big.manifest,
  });
  built = { layout: `${dir}/layout`, images };
  return built;
}

interface Env {
  dir: string;
  root: string;
  registry: Server;
  /** `127.0.0.1:PORT/test/` */
  repo: string;
  images: ReturnType<typeof buildImages>;
  micro(args: string[], opts?: { timeoutMs?: number }): ReturnType<typeof run>;
}

/** A registry holding app:1, app2:1 and big:1, and an empty store, for one test. */
function storeTest(name: string, fn: (e: Env) => Promise<void>, ignore?: string) {
  microTest(name, async () => {
    await withTempDir(async (dir) => {
      // traversable by a hardened container's root (host uid 1000000000)
      Deno.chmodSync(dir, 0o711);
      const { layout: l, images } = await layout();
      const registry = await startRegistry(`${dir}/registry`);
      try {
        for (const tag of ["app", "app2", "big"]) {
          await skopeoCopy(l, tag, `${registry.host}/test/${tag}:1`, ["--dest-tls-verify=false"]);
        }
        const root = `${dir}/store`;
        await fn({
          dir,
          root,
          registry,
          repo: `${registry.host}/test/`,
          images,
          micro: (args, opts) => {
            const [verb, ...rest] = args;
            // Runs are --rm: a kept container would hold its image (tested on its own).
            const rm = verb === "run" ? ["--rm"] : [];
            return run([verb, ...rm, "--root", root, ...rest], {
              timeoutMs: opts?.timeoutMs ?? 60_000,
            });
          },
        });
      } finally {
        await registry.stop();
      }
    });
  }, { ignore: lacking(MISSING, ignore) });
}

function entries(dir: string): string[] {
  try {
    return [...Deno.readDirSync(dir)].map((e) => e.name).sort();
  } catch {
    return [];
  }
}

/** Every layer dir and blob of the store, checked: blobs hash to their names. */
function storeContents(root: string): { layers: string[]; blobs: string[]; tmp: string[] } {
  const blobs = entries(`${root}/blobs/sha256`);
  for (const b of blobs) {
    assert.equal(sha256(Deno.readFileSync(`${root}/blobs/sha256/${b}`)), `sha256:${b}`);
  }
  return { layers: entries(`${root}/layers/sha256`), blobs, tmp: entries(`${root}/tmp`) };
}

// ---- tests ----------------------------------------------------------------------------------

storeTest("pull, then run: the merged view (deletion, replacement, opaque dir)", async (e) => {
  const pulled = ok(await e.micro(["pull", `${e.repo}app:1`]));
  assert.match(pulled, new RegExp(`^Digest: ${e.images.app.manifest.digest}$`, "m"));
  assert.match(pulled, /^Status: Downloaded newer image for .*test\/app:1$/m);
  assert.equal(pulled.trim().split("\n").pop(), `${e.repo}app:1`);
  const s = storeContents(e.root);
  assert.equal(s.layers.length, 3);
  assert.deepEqual(s.tmp, []);
  const out = ok(
    await e.micro([
      "run",
      "--entrypoint",
      "",
      "-u",
      "0",
      `${e.repo}app:1`,
      "sh",
      "-c",
      "ls -A /data; echo --; cat /data/repl; stat -c '%a %u:%g' /data/repl; echo --; " +
      "ls -A /opq; cat /data/dir; cat /data/del 2>&1; readlink /data/link; cat /etc/motd",
    ]),
  );
  const [data, repl, rest] = out.split("--\n");
  assert.deepEqual(data.trim().split(/\s+/), [
    "abs-link",
    "added",
    "dir",
    "empty",
    "fifo",
    "hard",
    "keep",
    "link",
    "owned",
    "repl",
    "suid",
  ]);
  assert.equal(repl, "new content\n640 123:456\n");
  assert.match(
    rest,
    /^z\nnow a file\ncat: can't open '\/data\/del': No such file or directory\nkeep\napp one\n$/,
  );
  // Nothing a container wrote reached a layer.
  ok(
    await e.micro([
      "run",
      "--entrypoint",
      "",
      "-u",
      "0",
      `${e.repo}app:1`,
      "sh",
      "-c",
      "echo x > /data/keep; rm /data/added",
    ]),
  );
  const again = ok(
    await e.micro([
      "run",
      "-u",
      "0",
      "--entrypoint",
      "",
      `${e.repo}app:1`,
      "cat",
      "/data/keep",
      "/data/added",
    ]),
  );
  assert.equal(again, "keep\nadded\n");
  assert.deepEqual(storeContents(e.root).layers, s.layers);
});

storeTest(
  "the image config gives Entrypoint, Cmd, Env, WorkingDir, User; flags override",
  async (e) => {
    const ref = `${e.repo}app:1`;
    const line = async (...args: string[]) => ok(await e.micro(["run", ...args])).trim();
    // The first run pulls (--pull=missing is the default) and prints the progress on stderr.
    const first = await e.micro(["run", ref]);
    assert.equal(first.code, 0, show(first));
    assert.match(first.stderr, /layer [0-9a-f]{12}: done/);
    assert.equal(
      first.stdout.trim(),
      "args=default-arg cwd=/app user=1000:1000 greeting=hello extra= path=/usr/bin:/bin",
    );
    assert.equal(
      await line(ref, "given", "args"),
      "args=given args cwd=/app user=1000:1000 greeting=hello extra= path=/usr/bin:/bin",
    );
    assert.equal(
      await line("-e", "GREETING=bye", "-e", "EXTRA=1", "-w", "/tmp", "-u", "0:0", ref),
      "args=default-arg cwd=/tmp user=0:0 greeting=bye extra=1 path=/usr/bin:/bin",
    );
    // --entrypoint replaces the Entrypoint and drops the image's Cmd; "" clears it.
    assert.equal(await line("--entrypoint", "/bin/echo", ref), "");
    assert.equal(await line("--entrypoint", "/bin/echo", ref, "a", "b"), "a b");
    assert.equal(
      await line("--entrypoint", "", ref, "sh", "-c", "echo $GREETING $HOME"),
      "hello /home/app",
    );
    const none = await e.micro(["run", "--entrypoint", "", ref]);
    assert.equal(none.code, 125, show(none));
    assert.match(none.stderr, /^micro: no command: the image has no Entrypoint or Cmd/);
    // The image's User wins over a profile's defaultUser (hardened: nobody). Hardened's
    // Landlock rules let it execute only the system's directories: /bin/id, not /app.
    assert.match(
      await line("--profile", "hardened", "--entrypoint", "/bin/id", ref),
      /^uid=1000\(app\) gid=1000\(app\)/,
    );
    // Hardened's user namespace shifts ids (0 -> 1000000000): the layers are idmapped to it,
    // so the image's owners show as themselves and its user reads its own 0600 file.
    // (Landlock lets it read /data too: a profile that adds it to hardened's paths.)
    const prof = `${e.dir}/data.yaml`;
    Deno.writeTextFileSync(
      prof,
      "extends: [hardened]\nlsm:\n  landlock:\n    paths+:\n      - {path: /data, access: [read]}\n",
    );
    const hardenedCat = ["--profile", prof, "--entrypoint", "/bin/sh", ref, "-c"];
    assert.equal(
      await line(...hardenedCat, "stat -c %u:%g /data/repl /data/owned /bin/sh; cat /data/owned"),
      "123:456\n1000:1000\n0:0\nmine",
    );
    // micro plan shows the image's command and user.
    const plan = ok(await e.micro(["plan", ref]));
    assert.match(plan, /bind-root .*"lowers":\["[^"]+\/layers\/sha256\/[0-9a-f]{64}"/);
    assert.match(plan, /execve args=\["\/app\/entry.sh","default-arg"\]/);
    assert.match(plan, /setresuid uid=1000/);
  },
);

storeTest(
  "--pull=never on a missing image: one line, exit 125; --pull=always pulls again",
  async (e) => {
    const never = await e.micro(["run", "--pull=never", `${e.repo}app:1`]);
    assert.equal(never.code, 125, show(never));
    assert.equal(never.stderr.trim().split("\n").length, 1, show(never));
    assert.match(never.stderr, /^micro: image ".*app:1" is not in the store/);
    assert.equal(entries(`${e.root}/layers/sha256`).length, 0);

    const tag = `${e.repo}moving:1`;
    const { layout: l } = await layout();
    await skopeoCopy(l, "app", tag, ["--dest-tls-verify=false"]);
    ok(await e.micro(["pull", tag]));
    assert.match(
      ok(await e.micro(["run", "--entrypoint", "", tag, "cat", "/etc/motd"])),
      /app one/,
    );
    // The tag moves in the registry: missing (the default) keeps the stored image ...
    await skopeoCopy(l, "app2", tag, ["--dest-tls-verify=false"]);
    assert.match(
      ok(await e.micro(["run", "--entrypoint", "", tag, "cat", "/etc/motd"])),
      /app one/,
    );
    // ... always takes the new one.
    const always = await e.micro([
      "run",
      "--pull=always",
      "--entrypoint",
      "",
      tag,
      "cat",
      "/etc/motd",
    ]);
    assert.equal(always.code, 0, show(always));
    assert.equal(always.stdout, "app two\n");
    assert.match(always.stderr, /Already exists|already exists/);
    // The old image lost its name: dangling, and prune takes it and its own layer.
    const ls = ok(await e.micro(["image", "ls"]));
    assert.match(ls, /^<none>\s+<none>\s+/m);
    assert.equal(entries(`${e.root}/layers/sha256`).length, 4);
    const pruned = ok(await e.micro(["image", "prune"]));
    assert.match(pruned, /deleted: sha256:/);
    assert.equal(entries(`${e.root}/layers/sha256`).length, 3);
    assert.match(
      ok(await e.micro(["run", "--pull=never", "--entrypoint", "", tag, "cat", "/etc/motd"])),
      /app two/,
    );
  },
);

storeTest(
  "two concurrent pulls sharing layers both succeed and store each layer once",
  async (e) => {
    const [a, b] = await Promise.all([
      e.micro(["pull", `${e.repo}app:1`]),
      e.micro(["pull", `${e.repo}app2:1`]),
    ]);
    assert.equal(a.code, 0, show(a));
    assert.equal(b.code, 0, show(b));
    const s = storeContents(e.root);
    assert.equal(s.layers.length, 4, "two shared layers and one of each");
    assert.deepEqual(s.tmp, []);
    // And the same image twice at once.
    Deno.removeSync(e.root, { recursive: true });
    const same = await Promise.all([1, 2, 3].map(() => e.micro(["pull", `${e.repo}app:1`])));
    for (const r of same) assert.equal(r.code, 0, show(r));
    assert.equal(storeContents(e.root).layers.length, 3);
    assert.deepEqual(storeContents(e.root).tmp, []);
    assert.match(
      ok(await e.micro(["run", "--entrypoint", "", `${e.repo}app2:1`, "cat", "/etc/motd"])),
      /app two/,
    );
  },
);

/** `micro pull` killed with SIGKILL as soon as stderr shows `marker`; its stderr. */
async function pullKilledAt(root: string, ref: string, marker: RegExp) {
  const child = new Deno.Command(MICRO, {
    args: ["pull", "--root", root, ref],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  let err = "";
  const d = new TextDecoder();
  for await (const chunk of child.stderr) {
    err += d.decode(chunk, { stream: true });
    if (marker.test(err)) {
      child.kill("SIGKILL");
      break;
    }
  }
  const status = await child.status;
  return { err, signal: status.signal };
}

storeTest("a pull killed with SIGKILL, then repeated: the store stays consistent", async (e) => {
  const ref = `${e.repo}big:1`;
  const bigLayer = e.images.big.blobs[3].digest.slice(7, 19);
  const want = sha256(noise(24 << 20, 7)).slice(7);
  for (const at of ["downloading", "extracting"]) {
    if (entries(e.root).length) Deno.removeSync(e.root, { recursive: true });
    const killed = await pullKilledAt(e.root, ref, new RegExp(`layer ${bigLayer}: ${at}`));
    assert.equal(killed.signal, "SIGKILL", `the pull ended before the kill: ${killed.err}`);
    const mid = storeContents(e.root); // every blob there is whole (checked)
    assert.ok(mid.layers.length <= 1, `the big layer is not whole yet: ${mid.layers}`);
    assert.deepEqual(entries(`${e.root}/images`).filter((n) => n.endsWith(".json")), []);
    const again = await e.micro(["pull", ref]);
    assert.equal(again.code, 0, show(again));
    const after = storeContents(e.root);
    assert.deepEqual(after.tmp, [], "the next command cleaned ROOT/tmp");
    assert.equal(after.layers.length, 2);
    const sum = ok(await e.micro(["run", "--pull=never", ref, "sha256sum", "/big/noise"]));
    assert.equal(sum.split(" ")[0], want);
  }
});

storeTest(
  "a kept container of a store image holds it; diff shows its changes; rm frees it",
  async (e) => {
    const ref = `${e.repo}app:1`;
    const kept = await run([
      "run",
      "--root",
      e.root,
      "--name",
      "keeper",
      "-u",
      "0:0", // the image's User (app) may not write to /
      "--entrypoint",
      "",
      ref,
      "sh",
      "-c",
      "echo added > /added && rm /etc/motd",
    ]);
    assert.equal(kept.code, 0, show(kept));
    const ps = ok(await e.micro(["ps", "-a"]));
    assert.match(ps, new RegExp(`${e.repo.replace(/[.]/g, "\\.")}app:1 .*keeper`));
    const diff = ok(await e.micro(["diff", "keeper"]));
    assert.match(diff, /^A \/added$/m);
    assert.match(diff, /^C \/etc$/m);
    assert.match(diff, /^D \/etc\/motd$/m);
    // The mount points micro made in the layer for the run are not the container's changes.
    assert.doesNotMatch(diff, /^A \/(proc|sys|dev)$/m);
    const refused = await e.micro(["rmi", ref]);
    assert.equal(refused.code, 125, show(refused));
    assert.match(refused.stderr, /is used by container keeper/);
    ok(await e.micro(["rm", "keeper"]));
    const removed = ok(await e.micro(["rmi", ref]));
    assert.match(removed, /Deleted: sha256:/);
  },
);

storeTest("image rm refuses what containers use, -f takes the names; prune", async (e) => {
  const ref = `${e.repo}app:1`;
  ok(await e.micro(["pull", ref]));
  ok(await e.micro(["pull", `${e.repo}app2:1`]));
  const id = e.images.app.configDigest.slice(7);
  // A kept container's record names the image (written by `micro run` without --rm).
  Deno.mkdirSync(`${e.root}/containers/kept1`, { recursive: true });
  Deno.writeTextFileSync(
    `${e.root}/containers/kept1/config.json`,
    JSON.stringify({ image: { id: `sha256:${id}`, name: ref } }),
  );
  // Garbage next to it is ignored.
  Deno.mkdirSync(`${e.root}/containers/junk`);
  Deno.writeTextFileSync(`${e.root}/containers/junk/config.json`, "{not json");
  const refused = await e.micro(["rmi", ref]);
  assert.equal(refused.code, 125, show(refused));
  assert.match(refused.stderr, /is used by container kept1/);
  const forced = ok(await e.micro(["rmi", "-f", ref]));
  assert.match(forced, /^Untagged: .*app:1$/m);
  assert.doesNotMatch(forced, /Deleted/);
  // Nameless but kept: prune -a leaves it, its layers stay, the kept container can use it.
  ok(await e.micro(["image", "prune", "-a"]));
  assert.ok(entries(`${e.root}/images`).includes(`${id}.json`));
  const run1 = await e.micro(["run", "--entrypoint", "", id.slice(0, 12), "cat", "/etc/motd"]);
  assert.equal(run1.stdout, "app one\n", show(run1));
  assert.equal(entries(`${e.root}/layers/sha256`).length, 3, "app2 was pruned, app's stay");
  // Without the container, prune deletes it and everything it alone used.
  Deno.removeSync(`${e.root}/containers/kept1`, { recursive: true });
  const pruned = ok(await e.micro(["image", "prune"]));
  assert.match(pruned, new RegExp(`deleted: sha256:${id}`));
  const s = storeContents(e.root);
  assert.deepEqual(s.layers, []);
  assert.deepEqual(s.blobs, []);
});

/**
 * A container of `ref` that runs until `stop()` (which makes it exit by itself, so micro
 * cleans up as after any run); `pid` is its init as the host sees it.
 */
async function waitingContainer(root: string, ref: string) {
  const bg = new Background([
    "run",
    "--rm",
    "--root",
    root,
    "--entrypoint",
    "",
    ref,
    "sh",
    "-c",
    "echo ready; while [ ! -e /run/done ]; do sleep 0.05; done",
  ]);
  let pid = 0;
  try {
    assert.ok(await bg.waitForStdout("ready", 30_000), bg.stderr);
    const state = await waitForContainer(bg.pid);
    assert.ok(state?.containerPid, "no container pid");
    pid = state.containerPid;
  } catch (e) {
    bg.kill("SIGKILL");
    await bg.result();
    throw e;
  }
  return {
    pid,
    async stop() {
      Deno.writeTextFileSync(`/proc/${pid}/root/run/done`, "");
      const r = await bg.result(30_000);
      assert.equal(r.code, 0, show(r));
    },
  };
}

storeTest("a running container holds its image; rm by id; names and ids", async (e) => {
  const ref = `${e.repo}app:1`;
  ok(await e.micro(["pull", ref]));
  const c = await waitingContainer(e.root, ref);
  try {
    const busy = await e.micro(["image", "rm", ref]);
    assert.equal(busy.code, 125, show(busy));
    assert.match(busy.stderr, /is used by container [0-9a-f]{12} /);
    const forced = ok(await e.micro(["image", "rm", "-f", ref]));
    assert.doesNotMatch(forced, /Deleted/);
    assert.equal(entries(`${e.root}/layers/sha256`).length, 3);
  } finally {
    await c.stop();
  }
  // Gone with its last user: prune deletes it.
  ok(await e.micro(["image", "prune"]));
  assert.deepEqual(entries(`${e.root}/layers/sha256`), []);

  // rm by id with several names needs -f; inspect and ls by name and id.
  ok(await e.micro(["pull", ref]));
  const id = e.images.app.configDigest.slice(7);
  await skopeoCopy((await layout()).layout, "app", `${e.repo}other:2`, ["--dest-tls-verify=false"]);
  ok(await e.micro(["pull", `${e.repo}other:2`]));
  const inspect = JSON.parse(ok(await e.micro(["image", "inspect", `${e.repo}other:2`])));
  assert.equal(inspect[0].Id, `sha256:${id}`);
  assert.deepEqual(inspect[0].RepoTags.sort(), [`${e.repo}app:1`, `${e.repo}other:2`]);
  assert.equal(inspect[0].Config.WorkingDir, "/app");
  assert.equal(inspect[0].RootFS.Layers.length, 3);
  const byDigest = JSON.parse(
    ok(await e.micro(["image", "inspect", `${e.repo}app@${e.images.app.manifest.digest}`])),
  );
  assert.equal(byDigest[0].Id, `sha256:${id}`);
  const lsq = ok(await e.micro(["images", "-q"]));
  assert.equal(lsq.trim(), id.slice(0, 12));
  const two = await e.micro(["rmi", id.slice(0, 12)]);
  assert.equal(two.code, 125, show(two));
  assert.match(two.stderr, /has 2 names/);
  const gone = ok(await e.micro(["rmi", "-f", id.slice(0, 12)]));
  assert.match(gone, /Untagged: .*app:1\nUntagged: .*other:2\nDeleted: sha256:/);
  assert.deepEqual(storeContents(e.root).layers, []);
  const missing = await e.micro(["rmi", "nothere"]);
  assert.equal(missing.code, 125);
  assert.match(missing.stderr, /no such image: nothere/);
});

storeTest("100 concurrent runs of one store image all succeed and leave nothing", async (e) => {
  const ref = `${e.repo}app:1`;
  ok(await e.micro(["pull", ref]));
  const runs = await Promise.all(
    Array.from({ length: 100 }, (_, i) =>
      e.micro(
        [
          "run",
          "-u",
          "0",
          "--entrypoint",
          "",
          ref,
          "sh",
          "-c",
          `echo ${i} > /data/keep; cat /data/keep`,
        ],
        { timeoutMs: 120_000 },
      )),
  );
  runs.forEach((r, i) => {
    assert.equal(r.code, 0, show(r));
    assert.equal(r.stdout, `${i}\n`);
  });
  // Only the store's own bookkeeping stays (its lock, the empty name index).
  assert.deepEqual(entries(`${e.root}/containers`).filter((n) => !n.startsWith(".")), []);
  assert.deepEqual(entries(`${e.root}/containers/.names`), []);
  assert.equal(storeContents(e.root).layers.length, 3);
  assert.equal(ok(await e.micro(["run", "--entrypoint", "", ref, "cat", "/data/keep"])), "keep\n");
});

storeTest("micro's merged root equals podman's unpacked image", async (e) => {
  const ref = `${e.repo}app:1`;
  ok(await e.micro(["pull", ref]));
  const podman = [
    "--root",
    `${e.dir}/podman`,
    "--runroot",
    `${e.dir}/podman-run`,
    "--storage-driver",
    "overlay",
  ];
  try {
    await exec("podman", [...podman, "pull", "-q", "--tls-verify=false", ref]);
    const mounted = (await exec("podman", [...podman, "image", "mount", ref])).trim();
    const theirs = tree(mounted);
    const c = await waitingContainer(e.root, ref);
    let ours: string[];
    try {
      ours = tree(`/proc/${c.pid}/root`);
    } finally {
      await c.stop();
    }
    assert.ok(theirs.length > 250, `podman's tree: ${theirs.length} entries`);
    assert.deepEqual(ours, theirs);
  } finally {
    await exec("podman", [...podman, "image", "unmount", "--all"]).catch(() => "");
    await exec("podman", [...podman, "rmi", "-af"]).catch(() => "");
  }
}, NO_PODMAN);

/**
 * Every path under `root` (but the mount points /proc, /sys, /dev and what is below them):
 * type, mode, owner, size (files and links) and link target, sorted.
 */
function tree(root: string): string[] {
  const out: string[] = [];
  const walk = (rel: string) => {
    for (const e of Deno.readDirSync(`${root}${rel}`)) {
      const p = `${rel}/${e.name}`;
      if (rel === "" && ["proc", "sys", "dev"].includes(e.name)) continue;
      const st = Deno.lstatSync(`${root}${p}`);
      const type = st.isSymlink
        ? "l"
        : st.isDirectory
        ? "d"
        : st.isFile
        ? "f"
        : st.isFifo
        ? "p"
        : st.isCharDevice
        ? "c"
        : "?";
      const size = st.isFile || st.isSymlink ? ` ${st.size}` : "";
      const link = st.isSymlink ? ` -> ${Deno.readLinkSync(`${root}${p}`)}` : "";
      out.push(
        `${p} ${type} ${((st.mode ?? 0) & 0o7777).toString(8)} ${st.uid}:${st.gid}${size}${link}`,
      );
      if (st.isDirectory) walk(p);
    }
  };
  walk("");
  return out.sort();
}

microTest("micro login and logout; a pull from a registry with htpasswd over TLS", async () => {
  await withTempDir(async (dir) => {
    const { layout: l } = await layout();
    const tls = await makeTlsFiles(dir);
    await exec("htpasswd", ["-Bbc", `${dir}/htpasswd`, "alice", "s3cret"]);
    const reg = await startRegistry(`${dir}/reg`, { tls, htpasswd: `${dir}/htpasswd` });
    try {
      await Deno.mkdir(`${dir}/skopeo-certs`);
      await Deno.copyFile(tls.ca, `${dir}/skopeo-certs/ca.crt`);
      await skopeoCopy(l, "app", `${reg.host}/private/app:1`, [
        `--dest-cert-dir=${dir}/skopeo-certs`,
        "--dest-creds=alice:s3cret",
      ]);
      // micro's auth file and Docker's config in the temp dir, not the real ones.
      const env = { XDG_CONFIG_HOME: `${dir}/config`, DOCKER_CONFIG: `${dir}/docker` };
      const m = (args: string[], stdin?: string) => run(args, { env, stdin });
      const ref = `${reg.host}/private/app:1`;
      const pull = ["pull", "--root", `${dir}/store`, "--tls-verify=false", ref];
      const anon = await m(pull);
      assert.equal(anon.code, 125, show(anon));
      assert.match(anon.stderr, /401 Unauthorized/);
      const login = ["login", "-u", "alice", "--password-stdin", "--tls-verify=false", reg.host];
      const wrong = await m(login, "wrong\n");
      assert.equal(wrong.code, 125, show(wrong));
      assert.match(wrong.stderr, /wrong username or password/);
      assert.doesNotMatch(wrong.stderr + wrong.stdout, /wrong\n|s3cret/);
      const onCmdLine = await m(["login", "-u", "alice", "-p", "s3cret", reg.host]);
      assert.equal(onCmdLine.code, 125);
      assert.match(onCmdLine.stderr, /a password on the command line is not accepted/);
      const good = await m(login, "s3cret\n");
      assert.equal(good.code, 0, show(good));
      assert.match(good.stdout, /^Login Succeeded/);
      const auth = Deno.statSync(`${dir}/config/micro/auth.json`);
      assert.equal((auth.mode ?? 0) & 0o777, 0o600);
      ok(await m(pull));
      const motd = await m([
        "run",
        "--root",
        `${dir}/store`,
        "--pull=never",
        "--entrypoint",
        "",
        ref,
        "cat",
        "/etc/motd",
      ]);
      assert.equal(motd.stdout, "app one\n", show(motd));
      assert.match(ok(await m(["logout", reg.host])), /Removed login credentials for 127/);
      assert.match(ok(await m(["logout", reg.host])), /Not logged in to 127/);
      const after = await m(pull);
      assert.equal(after.code, 125, show(after));
    } finally {
      await reg.stop();
    }
  });
}, { ignore: MISSING });

storeTest(
  "rootless: pull and run a store image, every file the caller's, one warning",
  async (e) => {
    const root = `${e.dir}/rootless`;
    Deno.mkdirSync(root);
    Deno.chownSync(root, 1000, 1000);
    const as = (args: string[]) =>
      run(args, { user: { uid: 1000, gid: 1000 }, env: { HOME: root }, timeoutMs: 60_000 });
    const ref = `${e.repo}app:1`;
    const pulled = await as(["pull", "--root", `${root}/store`, ref]);
    assert.equal(pulled.code, 0, show(pulled));
    assert.equal(
      pulled.stderr.match(/warning: rootless: every file of the image belongs to you/g)?.length,
      1,
    );
    const out = ok(
      await as([
        "run",
        "--rm",
        "--root",
        `${root}/store`,
        // The image's User (app, 1000) is not mapped: rootless maps only the caller, as root.
        "-u",
        "0",
        "--entrypoint",
        "",
        ref,
        "sh",
        "-c",
        "ls -A /opq; cat /data/del 2>/dev/null || echo deleted; stat -c '%u:%g' /data/repl; " +
        "echo w > /data/keep && cat /data/keep; id -u",
      ]),
    );
    assert.equal(out, "z\ndeleted\n0:0\nw\n0\n");
    const layer = `${root}/store/layers/sha256/${entries(`${root}/store/layers/sha256`)[0]}`;
    assert.equal(Deno.statSync(layer).uid, 1000);
    assert.equal(
      ok(await as(["image", "rm", "--root", `${root}/store`, ref])).includes("Deleted"),
      true,
    );
    assert.deepEqual(entries(`${root}/store/layers/sha256`), []);
  },
);
