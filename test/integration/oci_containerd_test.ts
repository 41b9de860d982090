/**
 * containerd drives micro as it drives runc: the test starts its own containerd (socket,
 * root and state under a temp dir, no CRI plugin), imports the test image from an archive
 * it builds, and runs tasks with `ctr run --runc-binary` (a link to micro named like runc),
 * so the runc shim (containerd-shim-runc-v2) calls micro with runc's flags.
 */
import assert from "node:assert/strict";
import { IMAGE, lacking, MICRO, microTest, show, waitFor } from "./_helpers.ts";
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

const NO_CONTAINERD = which("containerd") && which("ctr") && which("containerd-shim-runc-v2")
  ? undefined
  : "no containerd, ctr and containerd-shim-runc-v2 (Debian: containerd)";

const dec = new TextDecoder();

/** `ctr` on the test's containerd, in its own namespace; killed after timeoutMs. */
async function ctr(dir: string, args: string[], timeoutMs = 60_000) {
  const child = new Deno.Command("ctr", {
    args: ["--address", `${dir}/c.sock`, "--namespace", "microtest", ...args],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
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

function ok(r: Awaited<ReturnType<typeof ctr>>): string {
  assert.equal(r.code, 0, show(r));
  return r.stdout;
}

/** A containerd of the test's own in a temp dir; killed, unmounted and removed after. */
async function withContainerd(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = Deno.makeTempDirSync({ prefix: "micro-ctrd-" });
  let daemon: Deno.ChildProcess | undefined;
  try {
    Deno.writeTextFileSync(
      `${dir}/config.toml`,
      [
        "version = 2",
        `root = "${dir}/root"`,
        `state = "${dir}/state"`,
        'disabled_plugins = ["io.containerd.grpc.v1.cri"]',
        "[grpc]",
        `  address = "${dir}/c.sock"`,
        "[ttrpc]",
        `  address = "${dir}/c.sock.ttrpc"`,
        "[debug]",
        `  address = "${dir}/debug.sock"`,
        "",
      ].join("\n"),
    );
    const log = Deno.openSync(`${dir}/containerd.log`, { write: true, create: true });
    daemon = new Deno.Command("containerd", {
      args: ["--config", `${dir}/config.toml`],
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).spawn();
    daemon.stderr.pipeTo(log.writable).catch(() => {});
    const up = await waitFor(() => {
      try {
        return Deno.statSync(`${dir}/c.sock`).isSocket === true;
      } catch {
        return false;
      }
    }, 20_000);
    assert.ok(up, "containerd did not open its socket");
    Deno.symlinkSync(MICRO, `${dir}/micro-runc`);
    // The test image as a docker-archive (one layer), imported with ctr.
    const tar = new Deno.Command("tar", { args: ["-C", IMAGE, "-cf", "-", "."] }).outputSync();
    assert.ok(tar.success, dec.decode(tar.stderr));
    const image = makeImage([tar.stdout], { compression: "none" });
    Deno.writeFileSync(
      `${dir}/image.tar`,
      archiveOf(dockerSave([{ image, tags: ["localhost/busy:1"] }])),
    );
    ok(await ctr(dir, ["image", "import", `${dir}/image.tar`]));
    await fn(dir);
  } finally {
    // Tasks first (their shims and micro's state), then the daemon, then its mounts.
    if (daemon) {
      const tasks = await ctr(dir, ["task", "ls", "-q"], 10_000).catch(() => undefined);
      for (const id of tasks?.stdout.split("\n").filter((x) => x) ?? []) {
        await ctr(dir, ["task", "kill", "-s", "KILL", id], 10_000).catch(() => {});
        await waitFor(() => false, 500);
        await ctr(dir, ["task", "rm", "-f", id], 10_000).catch(() => {});
      }
      const cs = await ctr(dir, ["container", "ls", "-q"], 10_000).catch(() => undefined);
      for (const id of cs?.stdout.split("\n").filter((x) => x) ?? []) {
        await ctr(dir, ["container", "rm", id], 10_000).catch(() => {});
      }
      try {
        daemon.kill("SIGKILL");
      } catch {
        // already gone
      }
      await daemon.status;
    }
    const mounts = Deno.readTextFileSync("/proc/self/mountinfo").split("\n")
      .map((l) => l.split(" ")[4]).filter((m) => m?.startsWith(`${dir}/`)).reverse();
    for (const m of mounts) {
      new Deno.Command("umount", { args: ["-l", m] }).outputSync();
    }
    Deno.removeSync(dir, { recursive: true });
  }
}

const RUNC = (dir: string) => ["--runc-binary", `${dir}/micro-runc`];

microTest("containerd: ctr run --rm, -d then task exec, ps, pause, kill; --tty", async () => {
  await withContainerd(async (dir) => {
    const once = await ctr(dir, [
      "run",
      "--rm",
      ...RUNC(dir),
      "localhost/busy:1",
      "once",
      "sh",
      "-c",
      "echo hello-from-micro; exit 3",
    ]);
    assert.equal(once.code, 3, show(once));
    assert.match(once.stdout, /hello-from-micro/);

    ok(await ctr(dir, ["run", "-d", ...RUNC(dir), "localhost/busy:1", "bg", "sleep", "100"]));
    assert.match(ok(await ctr(dir, ["task", "ls"])), /bg\s+\d+\s+RUNNING/);
    const ex = ok(
      await ctr(dir, ["task", "exec", "--exec-id", "e1", "bg", "sh", "-c", "echo in-exec; id -u"]),
    );
    assert.match(ex, /in-exec\n0\n/);
    const ps = ok(await ctr(dir, ["task", "ps", "bg"]));
    assert.match(ps, /^PID\s+INFO\n\d+/);
    ok(await ctr(dir, ["task", "pause", "bg"]));
    assert.match(ok(await ctr(dir, ["task", "ls"])), /bg\s+\d+\s+PAUSED/);
    ok(await ctr(dir, ["task", "resume", "bg"]));
    assert.match(ok(await ctr(dir, ["task", "ls"])), /bg\s+\d+\s+RUNNING/);
    // sleep as pid 1 ignores TERM (no handler), as under runc: KILL.
    ok(await ctr(dir, ["task", "kill", "-s", "KILL", "bg"]));
    let ls = "";
    assert.ok(
      await (async () => {
        for (let i = 0; i < 50; i++) {
          ls = ok(await ctr(dir, ["task", "ls"]));
          if (/bg\s+\d+\s+STOPPED/.test(ls)) return true;
          await waitFor(() => false, 100);
        }
        return false;
      })(),
      ls,
    );
    ok(await ctr(dir, ["task", "rm", "bg"]));
    ok(await ctr(dir, ["container", "rm", "bg"]));

    // --tty: the shim's console socket gets micro's pty master; ctr needs a terminal itself.
    const tty = await new Deno.Command("script", {
      args: [
        "-qec",
        `ctr --address ${dir}/c.sock --namespace microtest run --rm --tty ` +
        `--runc-binary ${dir}/micro-runc localhost/busy:1 tty sh -c 'tty; echo tty-ok'`,
        "/dev/null",
      ],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
    const out = dec.decode(tty.stdout);
    assert.equal(tty.code, 0, out + dec.decode(tty.stderr));
    assert.match(out, /\/dev\/pts\/\d+/);
    assert.match(out, /tty-ok/);
  });
}, { ignore: lacking(NO_CONTAINERD) });
