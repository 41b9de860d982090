/**
 * /proc/self/exe and the host's runtime (CVE-2019-5736). micro's container process is a fork
 * of the Deno runtime micro runs on (cached by the launcher); it must exec the command through
 * the sealed-memfd trampoline, so nothing in the container can run, open for writing or chmod
 * that runtime file: not as /proc/self/exe at any exec, not as /proc/1/exe afterwards, not as
 * /proc/<micro's pid>/exe when the pid namespace is off.
 */
import assert from "node:assert/strict";
import { Background, copyImage, IMAGE, microTest, ok, run, show, withTempDir } from "./_helpers.ts";

const PROFILES = ["default", "hardened"];
const REFUSAL = "micro: exec trampoline: not started by micro\n";
/** As PID 1, sh ignores SIGTERM unless it traps it; micro forwards SIGTERM to it. */
const UNTIL_TERM = "trap 'exit 0' TERM";
const IDLE = "while :; do sleep 0.1; done";

/** A private copy of the test image (traversable by hardened's mapped root). */
function copyTraversableImage(dir: string): string {
  Deno.chmodSync(dir, 0o755);
  return copyImage(dir);
}

/** The file micro's process runs from (the launcher's cached Deno runtime). */
async function runtimePath(img: string): Promise<string> {
  const bg = new Background(["run", img, "sh", "-c", `${UNTIL_TERM}; echo ready; ${IDLE}`]);
  try {
    assert.ok(await bg.waitForStdout("ready"), `no container: ${bg.stderr}`);
    const path = Deno.realPathSync(`/proc/${bg.pid}/exe`);
    // Deno itself (about 90 MB), from the launcher's cache or the compiled binary.
    assert.ok(Deno.statSync(path).size > 10_000_000, `${path} is not the runtime`);
    return path;
  } finally {
    bg.kill("SIGTERM");
    await bg.result();
  }
}

interface FileId {
  mode: number;
  size: number;
  sha256: string;
}

async function fileId(path: string): Promise<FileId> {
  const st = Deno.statSync(path);
  const hash = await crypto.subtle.digest("SHA-256", Deno.readFileSync(path));
  return {
    mode: st.mode!,
    size: st.size,
    sha256: Array.from(new Uint8Array(hash), (b) => b.toString(16).padStart(2, "0")).join(""),
  };
}

for (const profile of PROFILES) {
  microTest(
    `${profile}: a #!/proc/self/exe script as the command never runs the host runtime`,
    async () => {
      await withTempDir(async (dir) => {
        const img = copyTraversableImage(dir);
        // Deno would take this file for a script (the #! line is a comment in JavaScript).
        Deno.writeTextFileSync(`${img}/evil`, "#!/proc/self/exe\nconsole.log('host runtime');\n", {
          mode: 0o755,
        });
        const r = await run(["run", "--profile", profile, img, "/evil"]);
        assert.equal(r.code, 126, show(r));
        assert.equal(r.stdout, "", show(r));
        // The kernel runs the interpreter, /proc/self/exe, from the trampoline: it is the
        // trampoline again, which refuses. Under hardened, Landlock refuses the exec already.
        if (profile === "default") assert.equal(r.stderr, REFUSAL, show(r));
        else assert.match(r.stderr, /^micro: exec: process: execve path=\/evil: EACCES/, show(r));
      });
    },
  );

  microTest(
    `${profile}: /proc/self/exe as the command is the trampoline, which refuses`,
    async () => {
      for (const cmd of ["/proc/self/exe", "/proc/1/exe"]) {
        const r = await run(["run", "--profile", profile, IMAGE, cmd, "eval", "console.log(1)"]);
        assert.equal(r.code, 126, `${cmd}: ${show(r)}`);
        assert.equal(r.stdout, "", `${cmd}: ${show(r)}`);
        assert.equal(r.stderr, REFUSAL, `${cmd}: ${show(r)}`);
      }
    },
  );

  microTest(
    `${profile}: /proc/1/exe is the command's own file; the host's runtime stays byte- and mode-identical`,
    async () => {
      await withTempDir(async (dir) => {
        const img = copyTraversableImage(dir);
        const runtime = await runtimePath(img);
        const before = await fileId(runtime);
        const busybox = Deno.statSync(`${img}/bin/busybox`).mode!;
        const script = [
          "readlink /proc/1/exe",
          "cmp /proc/1/exe /bin/busybox && echo same",
          "chmod 4777 /proc/1/exe 2>/dev/null; echo chmod=$?",
          "(echo x >> /proc/1/exe) 2>/dev/null; echo write=$?",
          "(: > /proc/self/exe) 2>/dev/null; echo truncate=$?",
        ].join("; ");
        const out = ok(await run(["run", "--profile", profile, img, "sh", "-c", script]));
        const lines = out.trim().split("\n");
        assert.deepEqual(lines.slice(0, 2), ["/bin/busybox", "same"], out);
        // A running program cannot be written (ETXTBSY), whoever asks.
        assert.deepEqual(lines.slice(3), ["write=1", "truncate=1"], out);
        if (profile === "default") {
          // The container's root may chmod its own files, as under Docker: the change lands
          // on its copy in the container's own layer (the overlay), not even on the image.
          assert.equal(lines[2], "chmod=0", out);
          assert.equal(Deno.statSync(`${img}/bin/busybox`).mode, busybox);
        } else {
          // hardened: a read-only root, in a user namespace that does not own the image.
          assert.equal(lines[2], "chmod=1", out);
          assert.equal(Deno.statSync(`${img}/bin/busybox`).mode, busybox);
        }
        assert.deepEqual(await fileId(runtime), before, `${runtime} changed`);
      });
    },
  );
}

microTest(
  "pid namespace off: /proc/<micro>/exe, mem and fd are refused to the container",
  async () => {
    await withTempDir(async (dir) => {
      const img = copyTraversableImage(dir);
      const profile = `${dir}/nopid.yaml`;
      Deno.writeTextFileSync(profile, "extends: default\npid:\n  enabled: false\n");
      const runtime = await runtimePath(img);
      const before = await fileId(runtime);
      const script = [
        UNTIL_TERM,
        "pp=$(sed -n 's/^PPid:\\t//p' /proc/$$/status)",
        "echo micro=$pp",
        "readlink /proc/$pp/exe >/dev/null 2>&1; echo readlink=$?",
        "cat /proc/$pp/exe >/dev/null 2>&1; echo open=$?",
        "chmod 4777 /proc/$pp/exe 2>/dev/null; echo chmod=$?",
        "dd if=/proc/$pp/mem of=/dev/null bs=1 count=1 2>/dev/null; echo mem=$?",
        "readlink /proc/$pp/fd/0 >/dev/null 2>&1; echo fd=$?",
        "readlink /proc/$pp/root >/dev/null 2>&1; echo root=$?",
        "echo done",
        IDLE,
      ].join("; ");
      const bg = new Background(["run", "--profile", profile, img, "sh", "-c", script]);
      try {
        assert.ok(await bg.waitForStdout("done"), `${bg.stdout}\n${bg.stderr}`);
        const got = Object.fromEntries(
          bg.stdout.trim().split("\n").filter((l) => l.includes("=")).map((l) => l.split("=")),
        );
        // The container's parent is micro itself (the launcher execs Deno in its own process).
        assert.equal(Number(got.micro), bg.pid, bg.stdout);
        assert.deepEqual(
          { ...got, micro: undefined },
          {
            micro: undefined,
            readlink: "1",
            open: "1",
            chmod: "1",
            mem: "1",
            fd: "1",
            root: "1",
          },
          bg.stdout,
        );
      } finally {
        bg.kill("SIGTERM");
        await bg.result();
      }
      assert.deepEqual(await fileId(runtime), before, `${runtime} changed`);
    });
  },
);
