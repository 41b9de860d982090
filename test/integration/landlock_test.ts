/**
 * Landlock under `--profile hardened`, and profiles that extend it: a command outside its
 * execute paths is refused with an error that names Landlock's rule set (not "noexec"), and
 * a profile that appends the path with `paths+:` runs it while keeping hardened's own paths
 * (`/bin/sh` still runs). A profile that sets `paths:` replaces the list instead.
 */
import assert from "node:assert/strict";
import {
  copyImage,
  exists,
  IMAGE,
  IS_ROOT,
  MICRO,
  microTest,
  ok,
  run,
  show,
  withTempDir,
} from "./_helpers.ts";

const HELLO = "#!/bin/sh\necho hello from app\n";

/** Whether micro applies Landlock here (the plan has its op, not `skipped`). */
const NO_LANDLOCK: string | undefined = await (async () => {
  if (!IS_ROOT || !exists(MICRO)) return undefined; // microTest says why
  const r = await run(["plan", "--profile", "hardened", IMAGE, "true"]);
  return /\blandlock\b.*\babi=/.test(r.stdout) ? undefined : "this kernel has no Landlock";
})();

/** A traversable copy of the test image with /app/hello.sh, and profile files beside it. */
function setUp(dir: string): { img: string; append: string; replace: string } {
  Deno.chmodSync(dir, 0o755);
  const img = copyImage(dir);
  Deno.mkdirSync(`${img}/app`, { mode: 0o755 });
  Deno.writeTextFileSync(`${img}/app/hello.sh`, HELLO, { mode: 0o755 });
  Deno.chmodSync(`${img}/app/hello.sh`, 0o755);
  const append = `${dir}/app-append.yaml`;
  Deno.writeTextFileSync(
    append,
    "extends: hardened\nlsm:\n  landlock:\n    paths+:\n" +
      "      - { path: /app, access: [read, execute] }\n",
  );
  const replace = `${dir}/app-replace.yaml`;
  Deno.writeTextFileSync(
    replace,
    "extends: hardened\nlsm:\n  landlock:\n    paths:\n" +
      "      - { path: /app, access: [read, execute] }\n",
  );
  return { img, append, replace };
}

microTest(
  "hardened: exec outside Landlock's paths is EACCES naming its rule set and lsm.landlock.paths+",
  async () => {
    await withTempDir(async (dir) => {
      const { img } = setUp(dir);
      const r = await run(["run", "--rm", "--profile", "hardened", img, "/app/hello.sh"]);
      assert.equal(r.code, 126, show(r));
      assert.equal(r.stdout, "", show(r));
      const lines = r.stderr.trimEnd().split("\n");
      assert.equal(lines.length, 1, show(r));
      assert.equal(
        lines[0],
        "micro: exec: process: execve path=/app/hello.sh: EACCES (Landlock's rule set does " +
          "not allow executing /app/hello.sh: add {path: /app, access: [read, execute]} to " +
          "lsm.landlock.paths+ in a profile that extends this one)",
        show(r),
      );
      assert.doesNotMatch(r.stderr, /noexec/, show(r));
      // Found through PATH the same way.
      const p = await run([
        "run",
        "--rm",
        "--profile",
        "hardened",
        "-e",
        "PATH=/app:/bin",
        img,
        "hello.sh",
      ]);
      assert.equal(p.code, 126, show(p));
      assert.match(
        p.stderr,
        /execve path=hello\.sh: EACCES \(Landlock's rule set .*\/app\/hello\.sh/,
      );
    });
  },
  { ignore: NO_LANDLOCK },
);

microTest(
  "a profile extending hardened with paths+: [/app] runs /app/hello.sh and still /bin/sh",
  async () => {
    await withTempDir(async (dir) => {
      const { img, append } = setUp(dir);
      const out = ok(await run(["run", "--rm", "--profile", append, img, "/app/hello.sh"]));
      assert.equal(out, "hello from app\n");
      // hardened's own paths are still there: /bin/sh runs, /etc reads, / stays refused.
      const sh = ok(
        await run([
          "run",
          "--rm",
          "--profile",
          append,
          img,
          "/bin/sh",
          "-c",
          "id -un; head -c 5 /etc/passwd; echo; ls / >/dev/null 2>&1 || echo refused",
        ]),
      );
      assert.equal(sh, "nobody\nroot:\nrefused\n");
      // profile show and plan show the merged list.
      const shown = ok(await run(["profile", "show", append]));
      assert.match(shown, /path: \/bin\n/, shown);
      assert.match(shown, /path: \/app\n/, shown);
      assert.doesNotMatch(shown, /paths\+/, shown);
      const plan = ok(await run(["plan", "--profile", append, img, "/app/hello.sh"]));
      const ll = plan.split("\n").find((l) => /\blandlock\b/.test(l)) ?? "";
      assert.match(ll, /\/bin/, plan);
      assert.match(ll, /\/app/, plan);
    });
  },
  { ignore: NO_LANDLOCK },
);

microTest(
  "a profile that sets paths: replaces hardened's list: /bin/sh is then refused by Landlock",
  async () => {
    await withTempDir(async (dir) => {
      const { img, replace } = setUp(dir);
      const r = await run(["run", "--rm", "--profile", replace, img, "/bin/sh", "-c", "true"]);
      assert.equal(r.code, 126, show(r));
      assert.match(r.stderr, /Landlock's rule set does not allow executing \/bin\/sh/, show(r));
    });
  },
  { ignore: NO_LANDLOCK },
);

microTest("an append on a key that is not a list is refused before the run", async () => {
  await withTempDir(async (dir) => {
    const bad = `${dir}/bad.yaml`;
    Deno.writeTextFileSync(bad, "extends: hardened\nlsm:\n  landlock:\n    optional+: [true]\n");
    const r = await run(["run", "--rm", "--profile", bad, "/", "true"]);
    assert.equal(r.code, 125, show(r));
    assert.equal(
      r.stderr,
      `micro: profile ${bad}: lsm.landlock.optional+ (line 4): cannot append: optional is a ` +
        "boolean, not a list\n",
    );
  });
});
