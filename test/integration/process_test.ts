/**
 * The process micro starts: user and groups, environment, working directory, limits.
 */
import assert from "node:assert/strict";
import {
  exists,
  IMAGE,
  lacking,
  MICRO,
  microTest,
  ok,
  run,
  sh,
  show,
  withTempDir,
} from "./_helpers.ts";
import { bundle } from "./_oci.ts";

const ID = 'echo "$(id -u) $(id -g) $(id -G)"';

microTest("--user UID:GID", async () => {
  assert.equal(ok(await sh(ID, ["--user", "1000:1000"])).trim(), "1000 1000 1000");
  assert.equal(ok(await sh(ID, ["-u", "4242:4343"])).trim(), "4242 4343 4343");
});

microTest("--user NAME takes uid, gid and supplementary groups from the image", async () => {
  const [uid, gid, ...groups] = ok(await sh(ID, ["--user", "app"])).trim().split(" ");
  assert.equal(uid, "1000");
  assert.equal(gid, "1000");
  assert.ok(groups.includes("50"), `groups ${groups} lack staff (50)`);
  // HOME follows the user
  assert.equal(ok(await sh('echo "$HOME"', ["--user", "app"])).trim(), "/home/app");
});

microTest("--user under hardened maps through the user namespace", async () => {
  const out = ok(
    await sh(`${ID}; grep -E '^(Uid|Gid):' /proc/self/status`, [
      "--profile",
      "hardened",
      "-u",
      "app",
    ]),
  );
  const [ids, uidLine, gidLine] = out.trim().split("\n");
  assert.equal(ids.split(" ").slice(0, 2).join(" "), "1000 1000");
  assert.deepEqual(uidLine.split(/\s+/).slice(1), ["1000", "1000", "1000", "1000"]);
  assert.deepEqual(gidLine.split(/\s+/).slice(1), ["1000", "1000", "1000", "1000"]);
});

microTest("--user nosuchuser fails with 125 and one line naming the user", async () => {
  const r = await sh("id", ["--user", "nosuchuser"]);
  assert.equal(r.code, 125, show(r));
  assert.equal(r.stdout, "");
  const lines = r.stderr.trimEnd().split("\n");
  assert.equal(lines.length, 1, show(r));
  assert.match(lines[0], /^micro: .*nosuchuser/);
});

microTest("--group-add adds supplementary groups", async () => {
  const root = ok(await sh(ID, ["--group-add", "50"])).trim().split(" ");
  assert.deepEqual(root.slice(0, 2), ["0", "0"]);
  assert.ok(root.slice(2).includes("50"), root.join(" "));

  const app = ok(await sh(ID, ["-u", "app", "--group-add", "65534", "--group-add", "nogroup"]))
    .trim().split(" ");
  assert.deepEqual(app.slice(0, 2), ["1000", "1000"]);
  assert.ok(app.slice(2).includes("50"), app.join(" "));
  assert.ok(app.slice(2).includes("65534"), app.join(" "));
});

microTest("-e sets and overrides variables, the rest of the environment is clean", async () => {
  const out = ok(
    await sh("echo $FOO; echo $EMPTY.; echo $PATH; env | sort | cut -d= -f1 | tr '\\n' ' '", [
      "-e",
      "FOO=bar",
      "-e",
      "EMPTY=",
      "-e",
      "PATH=/bin",
    ], { env: { MICRO_TEST_LEAK: "1" } }),
  );
  const [foo, empty, path, names] = out.trim().split("\n");
  assert.equal(foo, "bar");
  assert.equal(empty, ".");
  assert.equal(path, "/bin");
  assert.ok(!names.includes("MICRO_TEST_LEAK"), `micro's environment leaked: ${names}`);
});

microTest("-e KEY alone copies micro's own value", async () => {
  const out = ok(
    await sh("echo $MICRO_TEST_COPY", ["-e", "MICRO_TEST_COPY"], {
      env: { MICRO_TEST_COPY: "copied" },
    }),
  );
  assert.equal(out.trim(), "copied");
});

microTest("--env-file reads KEY=VALUE lines; -e after it wins", async () => {
  await withTempDir(async (dir) => {
    const file = `${dir}/env`;
    Deno.writeTextFileSync(file, "# a comment\nA=1\n\nB=two words\nC=from-file\n");
    const out = ok(
      await sh('echo "$A|$B|$C"', ["--env-file", file, "-e", "C=from-flag"]),
    );
    assert.equal(out.trim(), "1|two words|from-flag");
  });
});

microTest("-w sets the working directory", async () => {
  assert.equal(ok(await sh("pwd", ["-w", "/tmp"])).trim(), "/tmp");
  assert.equal(ok(await sh("pwd")).trim(), "/");
  const r = await sh("pwd", ["-w", "/no/such/dir"]);
  // a missing working directory is either created (docker) or reported as micro's failure
  if (r.code !== 0) {
    assert.equal(r.code, 125, show(r));
    assert.match(r.stderr, /\/no\/such\/dir/);
  } else {
    assert.equal(r.stdout.trim(), "/no/such/dir");
  }
});

microTest("--ulimit nofile=512:1024", async () => {
  const out = ok(await sh("ulimit -n; ulimit -Hn", ["--ulimit", "nofile=512:1024"]));
  assert.deepEqual(out.trim().split("\n"), ["512", "1024"]);
  const soft = ok(await sh("ulimit -n; ulimit -Hn", ["--ulimit", "nofile=300"]));
  assert.deepEqual(soft.trim().split("\n"), ["300", "300"]);
});

microTest("hardened sets no_new_privs; default does not", async () => {
  const nnp = async (opts: string[]) =>
    ok(await sh("grep NoNewPrivs /proc/self/status", opts)).trim().split(/\s+/)[1];
  assert.equal(await nnp(["--profile", "hardened"]), "1");
  assert.equal(await nnp([]), "0");
});

/** keyctl calls of micro and its children, as strace shows them. */
async function keyctlCalls(args: string[]): Promise<string> {
  const dir = Deno.makeTempDirSync({ prefix: "micro-keyring-" });
  try {
    const r = await run(["-f", "-e", "trace=keyctl", "-o", `${dir}/trace`, MICRO, ...args], {
      cmd: "strace",
    });
    assert.equal(r.code, 0, show(r));
    return Deno.readTextFileSync(`${dir}/trace`);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
}

microTest(
  "a container joins a new anonymous session keyring (as runc), not its caller's",
  async () => {
    const trace = await keyctlCalls(["run", "--rm", "--network", "none", IMAGE, "true"]);
    // NULL: a new keyring, never one found by name.
    assert.match(trace, /keyctl\(KEYCTL_JOIN_SESSION_KEYRING, NULL\) = \d+/);
  },
  { ignore: lacking(exists("/usr/bin/strace") ? undefined : "no strace") },
);

microTest(
  "oci exec joins a new session keyring too, unless create had --no-new-keyring",
  async () => {
    await withTempDir(async (dir) => {
      const b = await bundle(dir, (c) => (c.process.args = ["sleep", "30"]));
      const root = `${dir}/state`;
      // The container keeps create's stdio: /dev/null, so nothing waits on a pipe it holds.
      const oci = (...args: string[]) =>
        run(["-c", 'exec "$0" "$@" >/dev/null 2>&1', MICRO, "--root", root, ...args], {
          cmd: "sh",
        });
      const cases = [["kr1", [], true], ["kr2", ["--no-new-keyring"], false]] as const;
      for (const [id, extra, joins] of cases) {
        assert.equal((await oci("create", ...extra, "-b", b, id)).code, 0, id);
        try {
          assert.equal((await oci("start", id)).code, 0, id);
          const trace = await keyctlCalls(["--root", root, "exec", id, "true"]);
          const joined = /KEYCTL_JOIN_SESSION_KEYRING, NULL\) = \d+/.test(trace);
          assert.equal(joined, joins, `${id}: ${trace}`);
        } finally {
          await oci("delete", "--force", id);
        }
      }
    });
  },
  { ignore: lacking(exists("/usr/bin/strace") ? undefined : "no strace") },
);
