/**
 * The offline single-file launcher (the static program and the sh stub tools/build.sh writes
 * in front of the payload) runs Deno only from a cache directory nobody but the caller can
 * change: every path from / down, checked without following links, on the fast path (the
 * program's) too. Each test plants what another
 * user could (a throwaway uid, through setpriv) and a `deno` of theirs that writes a marker;
 * root runs dist/micro and the marker must never appear: the run works from a safe place or
 * refuses with one line and exit 125.
 *
 * The cache location is steered with MICRO_CACHE_DIR and TMPDIR into a temp dir whose `tmp`
 * plays /tmp (root's, mode 1777); the default locations are tested in a mount namespace with
 * tmpfs on /tmp and /var/cache.
 */
import assert from "node:assert/strict";
import {
  exists,
  IMAGE,
  lacking,
  MICRO,
  microTest,
  NEEDS,
  run,
  type RunResult,
  show,
} from "./_helpers.ts";
import { endDetached } from "./_detached.ts";

/** The stub's cache key (its `h=` line); undefined when MICRO is not the single-file form. */
const HASH: string | undefined = (() => {
  try {
    const f = Deno.openSync(MICRO);
    try {
      const buf = new Uint8Array(65536);
      const n = f.readSync(buf) ?? 0;
      return /^h=([0-9a-f]{16})$/m.exec(new TextDecoder().decode(buf.subarray(0, n)))?.[1];
    } finally {
      f.close();
    }
  } catch {
    return undefined;
  }
})();

const NEEDS_STUB = lacking(
  NEEDS.setpriv,
  HASH ? undefined : `${MICRO} is not the offline single-file form (no launcher stub)`,
);

/** The other user: a uid no account has, only ever used through setpriv. */
const ATTACKER = 61234;
/** A non-root caller, as throwaway as ATTACKER. */
const VICTIM = 61235;

const PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/** busybox, for the stub under busybox sh; undefined when the host has none. */
const BUSYBOX = ["/usr/bin/busybox", "/bin/busybox"].find((p) => {
  try {
    return Deno.statSync(p).isFile;
  } catch {
    return false;
  }
});

/** Runs `sh -ec SCRIPT` as `uid` (gid the same, no groups); fails the test when it fails. */
async function asUser(uid: number, script: string): Promise<void> {
  const r = await run(["-ec", script], { cmd: "sh", user: { uid, gid: uid } });
  assert.equal(r.code, 0, `as uid ${uid}: ${script}\n${show(r)}`);
}

/**
 * Shell words that make DIR/deno (writing `id` to MARKER), DIR/micro.js, DIR/lib/main.js.
 */
function evil(dir: string, marker: string): string {
  return `printf '#!/bin/sh\\nid >%s\\n' '${marker}' >'${dir}/deno'; chmod 755 '${dir}/deno'; ` +
    `: >'${dir}/micro.js'; mkdir -p -m 700 '${dir}/lib'; : >'${dir}/lib/main.js'`;
}

/**
 * `micro --version` (through `shell`, e.g. busybox sh, when given) with only PATH and `env` in the environment, as root or `user`; fails
 * the test when the other user's `deno` wrote `marker`.
 */
async function version(
  marker: string,
  env: Record<string, string>,
  user?: number,
  shell?: string[],
): Promise<RunResult> {
  const r = await run(shell ? [...shell.slice(1), MICRO, "--version"] : ["--version"], {
    cmd: shell?.[0],
    clearEnv: true,
    env: { PATH, ...env },
    user: user === undefined ? undefined : { uid: user, gid: user },
    timeoutMs: 60_000,
  });
  assert.ok(!exists(marker), `the other user's deno ran: ${readMarker(marker)}\n${show(r)}`);
  return r;
}

/** The run worked: micro printed its version. */
function works(r: RunResult): void {
  assert.equal(r.code, 0, show(r));
  assert.match(r.stdout, /^micro /, show(r));
}

/** The run refused: exit 125 and one line on stderr that names `path`. */
function refused(r: RunResult, path: string): void {
  assert.equal(r.code, 125, show(r));
  assert.equal(r.stdout, "", show(r));
  const err = r.stderr.trimEnd();
  assert.ok(err.startsWith("micro: ") && !err.includes("\n"), `not one line: ${show(r)}`);
  assert.ok(err.includes(path), `the message does not name ${path}: ${show(r)}`);
}

/**
 * A temp dir (0755) holding `tmp` (root's, 1777, the fake /tmp) and `mark` (1777, where the
 * other user's `deno` writes its marker), removed after `fn`.
 */
async function scene(fn: (d: { root: string; tmp: string; marker: string }) => Promise<void>) {
  const root = Deno.makeTempDirSync({ prefix: "micro-launcher-" });
  try {
    Deno.chmodSync(root, 0o755);
    const tmp = `${root}/tmp`;
    Deno.mkdirSync(tmp);
    Deno.chmodSync(tmp, 0o1777);
    Deno.mkdirSync(`${root}/mark`);
    Deno.chmodSync(`${root}/mark`, 0o1777);
    const marker = `${root}/mark/ran`;
    await fn({ root, tmp, marker });
    assert.ok(!exists(marker), `the other user's deno ran: ${readMarker(marker)}`);
  } finally {
    Deno.removeSync(root, { recursive: true });
  }
}

function readMarker(path: string): string {
  try {
    return Deno.readTextFileSync(path).trim();
  } catch {
    return "(no marker)";
  }
}

/** A root-owned private directory (0700). */
function privateDir(path: string): void {
  Deno.mkdirSync(path, { mode: 0o700 });
  Deno.chmodSync(path, 0o700);
}

microTest(
  "launcher: another user's base whose HASH links to a sticky root dir (the reported attack) is refused",
  async () => {
    await scene(async ({ tmp, marker }) => {
      const base = `${tmp}/micro-0`;
      await asUser(
        ATTACKER,
        `mkdir '${base}'; ln -s '${tmp}' '${base}/${HASH}'; ${evil(tmp, marker)}`,
      );
      const r = await version(marker, { MICRO_CACHE_DIR: base });
      refused(r, base);
    });
  },
  { ignore: NEEDS_STUB },
);

microTest(
  "launcher: a symlinked base is refused, and nothing is made where it points",
  async () => {
    await scene(async ({ root, tmp, marker }) => {
      // to the other user's directory with a complete cache in it
      const theirs = `${root}/theirs`;
      await asUser(ATTACKER, `mkdir -p '${tmp}/x/${HASH}'; ${evil(`${tmp}/x/${HASH}`, marker)}`);
      Deno.renameSync(`${tmp}/x`, theirs);
      const base = `${tmp}/micro-0`;
      await asUser(ATTACKER, `ln -s '${theirs}' '${base}'`);
      refused(await version(marker, { MICRO_CACHE_DIR: base }), base);

      // to a private directory of root's: root must not unpack into it
      const rootOnly = `${root}/root-only`;
      privateDir(rootOnly);
      const base2 = `${tmp}/micro-1`;
      await asUser(ATTACKER, `ln -s '${rootOnly}' '${base2}'`);
      refused(await version(marker, { MICRO_CACHE_DIR: base2 }), base2);
      assert.deepEqual([...Deno.readDirSync(rootOnly)], [], "root unpacked where the link points");
    });
  },
  { ignore: NEEDS_STUB },
);

microTest("launcher: a symlinked HASH dir in root's own base is not followed", async () => {
  await scene(async ({ root, tmp, marker }) => {
    const base = `${root}/base`;
    privateDir(base);
    await asUser(ATTACKER, evil(tmp, marker));
    Deno.symlinkSync(tmp, `${base}/${HASH}`);
    works(await version(marker, { MICRO_CACHE_DIR: base }));
    assert.ok(Deno.lstatSync(`${base}/${HASH}`).isDirectory, "the link is still there");
  });
}, { ignore: NEEDS_STUB });

microTest("launcher: a HASH dir owned by another user is refused", async () => {
  await scene(async ({ root, marker }) => {
    const base = `${root}/base`;
    privateDir(base);
    const d = `${base}/${HASH}`;
    Deno.mkdirSync(d);
    Deno.chownSync(d, ATTACKER, ATTACKER);
    Deno.chmodSync(base, 0o755); // for the other user to fill it, then private again
    await asUser(ATTACKER, evil(d, marker));
    Deno.chmodSync(base, 0o700);
    refused(await version(marker, { MICRO_CACHE_DIR: base }), d);
  });
}, { ignore: NEEDS_STUB });

microTest("launcher: a base others or the group can write to is refused", async () => {
  for (const mode of [0o777, 0o770, 0o1777, 0o1770]) {
    await scene(async ({ root, tmp, marker }) => {
      const base = `${root}/base`;
      privateDir(base);
      Deno.chownSync(base, 0, ATTACKER); // the group: the other user's
      Deno.chmodSync(base, mode);
      await asUser(ATTACKER, `${evil(tmp, marker)}; ln -s '${tmp}' '${base}/${HASH}'`);
      refused(await version(marker, { MICRO_CACHE_DIR: base }), base);
    });
  }
}, { ignore: NEEDS_STUB });

microTest("launcher: a base owned by another user is refused", async () => {
  await scene(async ({ tmp, marker }) => {
    const base = `${tmp}/micro-0`;
    await asUser(
      ATTACKER,
      `mkdir -m 700 '${base}' '${base}/${HASH}'; ${evil(`${base}/${HASH}`, marker)}`,
    );
    refused(await version(marker, { MICRO_CACHE_DIR: base }), base);
  });
}, { ignore: NEEDS_STUB });

microTest(
  "launcher: a base under a directory others can write to (not sticky) is refused",
  async () => {
    await scene(async ({ root, marker }) => {
      const open = `${root}/open`;
      Deno.mkdirSync(open);
      Deno.chmodSync(open, 0o777);
      refused(await version(marker, { MICRO_CACHE_DIR: `${open}/cache` }), open);
    });
  },
  { ignore: NEEDS_STUB },
);

microTest(
  "launcher: a lib dir others may enter is not used: the modules are unpacked again",
  async () => {
    await scene(async ({ root, marker }) => {
      const base = `${root}/cache`;
      works(await version(marker, { MICRO_CACHE_DIR: base }));
      const lib = `${base}/${HASH}/lib`;
      // Were lib open, a file in it that others may write could be changed by them.
      Deno.chmodSync(lib, 0o755);
      Deno.chmodSync(`${lib}/main.js`, 0o666);
      // A file of the open lib's own tells it apart from a new one (an inode number does not:
      // the file system may give the new directory the old one's).
      Deno.writeTextFileSync(`${lib}/from-the-open-lib`, "", { mode: 0o600 });
      works(await version(marker, { MICRO_CACHE_DIR: base }));
      const st = Deno.lstatSync(lib);
      assert.throws(
        () => Deno.lstatSync(`${lib}/from-the-open-lib`),
        Deno.errors.NotFound,
        "the open lib was used",
      );
      assert.equal(st.mode! & 0o777, 0o700);
      assert.equal(Deno.lstatSync(`${lib}/main.js`).mode! & 0o777, 0o600);
    });
  },
  { ignore: NEEDS_STUB },
);

microTest("launcher: a symlinked deno in an otherwise good HASH dir is not run", async () => {
  await scene(async ({ root, tmp, marker }) => {
    const base = `${root}/base`;
    privateDir(base);
    const d = `${base}/${HASH}`;
    privateDir(d);
    Deno.mkdirSync(`${d}/lib`, { mode: 0o700 });
    for (const f of ["micro.js", "lib/main.js"]) {
      Deno.writeTextFileSync(`${d}/${f}`, "", { mode: 0o600 });
    }
    await asUser(ATTACKER, evil(tmp, marker));
    Deno.symlinkSync(`${tmp}/deno`, `${d}/deno`);
    works(await version(marker, { MICRO_CACHE_DIR: base }));
    assert.ok(Deno.lstatSync(`${d}/deno`).isFile, "deno is still a link");
  });
}, { ignore: NEEDS_STUB });

microTest("launcher: the first run unpacks into a private dir; later runs reuse it", async () => {
  await scene(async ({ root, tmp, marker }) => {
    // a base under a sticky directory (as /tmp/micro-UID), and a missing one (made)
    for (const base of [`${root}/cache`, `${tmp}/micro-0`]) {
      works(await version(marker, { MICRO_CACHE_DIR: base }));
      const d = `${base}/${HASH}`;
      for (const p of [base, d]) {
        const st = Deno.lstatSync(p);
        assert.ok(st.isDirectory && st.uid === 0 && (st.mode! & 0o777) === 0o700, p);
      }
      const before = ["", "/deno", "/micro.js", "/lib/main.js", "/lib"].map((f) => {
        const st = Deno.lstatSync(d + f);
        assert.ok(st.uid === 0 && (st.mode! & 0o022) === 0, `${d + f} is not private`);
        return st.ino;
      });
      works(await version(marker, { MICRO_CACHE_DIR: base }));
      const after = ["", "/deno", "/micro.js", "/lib/main.js", "/lib"].map((f) =>
        Deno.lstatSync(d + f).ino
      );
      assert.deepEqual(after, before, "the second run unpacked again");
      const names = [...Deno.readDirSync(base)].map((e) => e.name).sort();
      assert.deepEqual(
        names.filter((n) => n.startsWith(".") && n !== ".lock"),
        [],
        "leftovers in the base",
      );
    }
  });
}, { ignore: NEEDS_STUB });

microTest(
  "launcher: root without HOME, or with another user's (sudo -E), unpacks into /var/cache/micro",
  async () => {
    // /tmp and /var/cache are tmpfs in a mount namespace of this test. The other user plants
    // the reported attack in that /tmp, and a home of theirs with a cache linked the same way.
    const plant = `mkdir /tmp/micro-0 /tmp/home /tmp/home/.cache /tmp/home/.cache/micro
ln -s /tmp /tmp/micro-0/${HASH}; ln -s /tmp /tmp/home/.cache/micro/${HASH}
${evil("/tmp", "/tmp/ran")}`;
    const script = `set -e
mount -t tmpfs -o mode=1777 micro-test /tmp
mount -t tmpfs -o mode=755 micro-test /var/cache
setpriv --reuid=${ATTACKER} --regid=${ATTACKER} --clear-groups sh -ec "$PLANT"
for home in '' /tmp/home; do
  rc=0
  env -i PATH="$PATH" \${home:+HOME=$home} "$MICRO" --version || rc=$?
  echo "rc=$rc"
  if [ -e /tmp/ran ]; then echo "MARKER: $(cat /tmp/ran)"; fi
done
if [ -f /var/cache/micro/${HASH}/micro.js ]; then echo CACHED; fi
`;
    const r = await run(["-m", "sh", "-c", script], {
      cmd: "unshare",
      env: { PLANT: plant, MICRO, PATH },
      timeoutMs: 60_000,
    });
    assert.equal(r.code, 0, show(r));
    assert.doesNotMatch(r.stdout, /MARKER/, show(r));
    assert.equal(r.stdout.match(/^micro /gm)?.length, 2, show(r));
    assert.equal(r.stdout.match(/^rc=0$/gm)?.length, 2, show(r));
    assert.match(r.stdout, /^CACHED$/m, show(r));
  },
  {
    ignore: lacking(
      NEEDS_STUB,
      NEEDS.unshare,
      /^\/(tmp|var\/cache)\//.test(MICRO) ? `${MICRO} is hidden by the test's tmpfs` : undefined,
    ),
  },
);

microTest(
  "launcher: a user without HOME unpacks into TMPDIR/micro-UID, only when it is theirs",
  async () => {
    await scene(async ({ tmp, marker }) => {
      const base = `${tmp}/micro-${VICTIM}`;
      await asUser(
        ATTACKER,
        `mkdir '${base}'; ln -s '${tmp}' '${base}/${HASH}'; ${evil(tmp, marker)}`,
      );
      const r = await version(marker, { TMPDIR: tmp }, VICTIM);
      refused(r, base);

      Deno.removeSync(base, { recursive: true });
      works(await version(marker, { TMPDIR: tmp }, VICTIM));
      const st = Deno.lstatSync(`${base}/${HASH}`);
      assert.ok(st.isDirectory && st.uid === VICTIM, "not unpacked into the caller's own dir");
    });
  },
  { ignore: NEEDS_STUB },
);

microTest(
  "launcher: with busybox as /bin/sh, the reported attack is refused and the fast path works",
  async () => {
    // The launcher runs the stub with /bin/sh: here busybox, bound over it in a mount
    // namespace of the run's own.
    const bb = [
      "unshare",
      "-m",
      "sh",
      "-ec",
      `mount --bind '${BUSYBOX}' "$(readlink -f /bin/sh)"; exec "$0" "$@"`,
    ];
    await scene(async ({ tmp, marker }) => {
      const bad = `${tmp}/micro-0`;
      await asUser(
        ATTACKER,
        `mkdir '${bad}'; ln -s '${tmp}' '${bad}/${HASH}'; ${evil(tmp, marker)}`,
      );
      refused(await version(marker, { MICRO_CACHE_DIR: bad }, undefined, bb), bad);
      const good = `${tmp}/micro-good`;
      works(await version(marker, { MICRO_CACHE_DIR: good }, undefined, bb));
      const ino = Deno.lstatSync(`${good}/${HASH}/deno`).ino;
      works(await version(marker, { MICRO_CACHE_DIR: good }, undefined, bb));
      assert.equal(Deno.lstatSync(`${good}/${HASH}/deno`).ino, ino, "unpacked again");
    });
  },
  { ignore: lacking(NEEDS_STUB, NEEDS.unshare, BUSYBOX ? undefined : "no busybox") },
);

/** Whether MICRO starts with the launcher program (an ELF), not with the stub. */
const ELF = (() => {
  try {
    const f = Deno.openSync(MICRO);
    try {
      const b = new Uint8Array(4);
      f.readSync(b);
      return b[0] === 0x7f && b[1] === 0x45 && b[2] === 0x4c && b[3] === 0x46;
    } finally {
      f.close();
    }
  } catch {
    return false;
  }
})();

microTest(
  "launcher: the fast path execs Deno directly (no shell), with the stub's arguments and environment",
  async () => {
    await scene(async ({ root, tmp, marker }) => {
      const base = `${tmp}/micro-fast`;
      works(await version(marker, { MICRO_CACHE_DIR: base }));
      // An old stamp: the fast path refreshes it, as the stub's touch -c does.
      Deno.utimeSync(`${base}/${HASH}`, 1000, 1000);
      const log = `${root}/strace`;
      const r = await run(
        ["-f", "-qq", "-e", "trace=execve", "-v", "-s", "4096", "-o", log, MICRO, "x", "a b"],
        {
          cmd: "strace",
          clearEnv: true,
          env: { PATH, MICRO_CACHE_DIR: base, DENO_DIR: "/nowhere", MICRO_EXE: "/bad" },
        },
      );
      assert.notEqual(r.code, 0, show(r)); // "x" is no command
      const execs = Deno.readTextFileSync(log).split("\n").filter((l) => l.includes("execve("));
      const d = `${base}/${HASH}`;
      assert.equal(execs.length, 2, `more than the launcher and Deno ran:\n${execs.join("\n")}`);
      assert.ok(execs[1].includes(`execve("${d}/deno", ["${d}/deno", "run", "--v8-flags=`));
      assert.ok(execs[1].includes(`"${d}/micro.js", "x", "a b"]`), execs[1]);
      for (const v of [`DENO_DIR=${d}/deno_dir`, "DENO_NO_UPDATE_CHECK=1", `MICRO_EXE=${MICRO}`]) {
        assert.equal(execs[1].split(`"${v}"`).length, 2, `${v} not once in ${execs[1]}`);
      }
      assert.ok(!execs[1].includes("/nowhere") && !execs[1].includes('"MICRO_EXE=/bad"'));
      assert.ok(Deno.statSync(d).mtime!.getTime() > 1_000_000, "the stamp was not refreshed");
    });
  },
  { ignore: lacking(NEEDS_STUB, ELF ? undefined : `${MICRO} has no launcher program`) },
);

/** The names in `dir`, sorted. */
function names(dir: string): string[] {
  return [...Deno.readDirSync(dir)].map((e) => e.name).sort();
}

/** A micro-made-looking version name that is not this build's. */
function otherHash(seed: string): string {
  return seed.repeat(16).slice(0, 16);
}

microTest(
  "launcher: ten concurrent first runs unpack once, the others wait for it, all ten run",
  async () => {
    await scene(async ({ root, marker }) => {
      // gzip(1), which the launcher runs to unpack the Deno runtime, through a wrapper that
      // logs each call and is slow enough that the ten runs surely overlap.
      const bin = `${root}/bin`;
      Deno.mkdirSync(bin);
      const log = `${root}/gzip.log`;
      const real = ["/usr/bin/gzip", "/bin/gzip"].find(exists)!;
      Deno.writeTextFileSync(
        `${bin}/gzip`,
        `#!/bin/sh\necho "$$" >>'${log}'\nsleep 0.5\nexec ${real} "$@"\n`,
        { mode: 0o755 },
      );
      const base = `${root}/cache`;
      const env = { MICRO_CACHE_DIR: base, PATH: `${bin}:${PATH}` };
      const results = await Promise.all(
        Array.from({ length: 10 }, () => version(marker, env)),
      );
      for (const r of results) works(r);
      const calls = Deno.readTextFileSync(log).trim().split("\n");
      assert.equal(calls.length, 1, `the runtime was unpacked ${calls.length} times`);
      const left = names(base);
      const runtimes = left.filter((n) => n.startsWith("deno-"));
      assert.equal(runtimes.length, 1, `runtimes: ${left}`);
      assert.deepEqual(left, [".lock", HASH!, ...runtimes].sort(), "one version, no leftovers");
    });
  },
  { ignore: NEEDS_STUB },
);

microTest(
  "launcher: a cache directory on a noexec file system is refused in one line, not unpacked into",
  async () => {
    await scene(async ({ root, tmp, marker }) => {
      // In a mount namespace of the test: $root/nx a tmpfs mounted noexec; /var/cache a
      // tmpfs (root's next place when its home cache cannot be used).
      const nx = `${root}/nx`;
      Deno.mkdirSync(nx);
      const script = `set -e
mount -t tmpfs -o noexec,mode=755 micro-test '${nx}'
mount -t tmpfs -o mode=755 micro-test /var/cache
mkdir -m 700 '${nx}/cache' '${nx}/home'
for i in 1 2; do
  rc=0
  env -i PATH="$PATH" MICRO_CACHE_DIR='${nx}/cache' "$MICRO" --version 2>'${root}/err' || rc=$?
  echo "rc=$rc"
  echo "err=$(cat '${root}/err')"
  echo "left=$(ls -A '${nx}/cache')"
done
rc=0
env -i PATH="$PATH" HOME='${nx}/home' TMPDIR='${tmp}' "$MICRO" --version 2>'${root}/err' || rc=$?
echo "home rc=$rc"
echo "home err=$(cat '${root}/err')"
if [ -f /var/cache/micro/${HASH}/micro.js ]; then echo CACHED; fi
`;
      const r = await run(["-m", "sh", "-c", script], {
        cmd: "unshare",
        env: { MICRO, PATH },
        timeoutMs: 60_000,
      });
      assert.equal(r.code, 0, show(r));
      const runs = r.stdout.split(/^rc=/m).slice(1);
      assert.equal(runs.length, 2, show(r));
      for (const out of runs) {
        assert.match(out, /^125\n/, show(r));
        const err = /^err=(.*)$/m.exec(out)?.[1] ?? "";
        assert.ok(err.startsWith("micro: "), `not micro's line: ${show(r)}`);
        assert.ok(err.includes(`${nx}/cache`) && err.includes("noexec"), show(r));
        assert.ok(err.includes("MICRO_CACHE_DIR"), `no way out given: ${show(r)}`);
        assert.match(out, /^left=$/m, `unpacked into the noexec dir: ${show(r)}`);
        // one line: the err= line is followed by left=
        assert.match(out, /^err=.*\nleft=/m, `not one line: ${show(r)}`);
      }
      // The default place on noexec: the next one is used, and the line says why.
      assert.match(r.stdout, /^home rc=0$/m, show(r));
      assert.match(r.stdout, /^home err=micro: unpacking into \/var\/cache\/micro, not .*noexec/m);
      assert.match(r.stdout, /^CACHED$/m, show(r));
      assert.ok(!exists(marker));
    });
  },
  {
    ignore: lacking(
      NEEDS_STUB,
      NEEDS.unshare,
      /^\/var\/cache\//.test(MICRO) ? `${MICRO} is hidden by the test's tmpfs` : undefined,
    ),
  },
);

microTest(
  "launcher: an unusable MICRO_CACHE_DIR is refused in one line (exit 125), never replaced by another place",
  async () => {
    await scene(async ({ root, tmp, marker }) => {
      const env = (dir: string) => ({ MICRO_CACHE_DIR: dir, TMPDIR: tmp, HOME: `${root}/home` });
      // a missing parent (a typo, an unmounted disk): not made
      refused(await version(marker, env(`${root}/nope/cache`)), `${root}/nope`);
      assert.ok(!exists(`${root}/nope`), "the missing parent was made");
      // a regular file
      Deno.writeTextFileSync(`${root}/file`, "");
      refused(await version(marker, env(`${root}/file`)), `${root}/file`);
      // another user's
      const theirs = `${tmp}/theirs`;
      await asUser(ATTACKER, `mkdir -m 700 '${theirs}'`);
      refused(await version(marker, env(theirs)), theirs);
      // nothing was unpacked anywhere else
      assert.ok(!exists(`${root}/home`) && !exists(`${tmp}/micro-0`), "unpacked elsewhere");
    });
  },
  { ignore: NEEDS_STUB },
);

microTest(
  "launcher: unpacking a new version removes micro's old ones, and nothing that is not micro's",
  async () => {
    await scene(async ({ root, tmp, marker }) => {
      const base = `${root}/cache`;
      privateDir(base);
      const twoHoursAgo = new Date(Date.now() - 2 * 3600_000);
      /** A version dir as an older build left it, last started from two hours ago. */
      const oldVersion = (name: string, deno = "") => {
        const d = `${base}/${name}`;
        privateDir(d);
        Deno.mkdirSync(`${d}/lib`, { mode: 0o700 });
        for (const f of ["micro.js", "lib/main.js"]) {
          Deno.writeTextFileSync(`${d}/${f}`, "");
        }
        if (deno) Deno.copyFileSync(deno, `${d}/deno`);
        Deno.utimeSync(d, twoHoursAgo, twoHoursAgo);
        return d;
      };
      const old = oldVersion(otherHash("a"));
      Deno.writeTextFileSync(`${base}/deno-${otherHash("b")}`, "", { mode: 0o755 });
      Deno.mkdirSync(`${base}/.new.${otherHash("c")}.999999999`); // a dead run's temp dir
      // kept: not micro's names, a link, another user's, recent, in use
      const foreign = [`${base}/foreign`, `${base}/${otherHash("d")}x`, `${base}/deno-x`];
      for (const f of foreign) privateDir(f);
      Deno.symlinkSync(tmp, `${base}/${otherHash("e")}`);
      Deno.writeTextFileSync(`${tmp}/keep`, "");
      const other = `${base}/${otherHash("f")}`;
      privateDir(other);
      Deno.chownSync(other, ATTACKER, ATTACKER);
      Deno.utimeSync(other, twoHoursAgo, twoHoursAgo);
      const recent = `${base}/${otherHash("1")}`;
      privateDir(recent);
      const sleep = ["/usr/bin/sleep", "/bin/sleep"].find(exists)!;
      const busy = oldVersion(otherHash("2"), sleep);
      const running = new Deno.Command(`${busy}/deno`, { args: ["60"], stdin: "null" })
        .spawn();
      try {
        Deno.utimeSync(busy, twoHoursAgo, twoHoursAgo);
        works(await version(marker, { MICRO_CACHE_DIR: base }));
        const left = names(base);
        assert.ok(!left.includes(otherHash("a")), `the old version is still there: ${left}`);
        assert.ok(!exists(old), old);
        assert.ok(!left.includes(`deno-${otherHash("b")}`), `the unused runtime: ${left}`);
        assert.ok(!left.some((n) => n.startsWith(".new.")), `the dead run's temp: ${left}`);
        for (const f of [...foreign, other, recent, busy]) assert.ok(exists(f), `removed ${f}`);
        assert.ok(Deno.lstatSync(`${base}/${otherHash("e")}`).isSymlink, "the link was removed");
        assert.ok(exists(`${tmp}/keep`), "removed through the link");
        assert.ok(left.includes(HASH!), `this build's version is missing: ${left}`);
      } finally {
        running.kill("SIGKILL");
        await running.status;
      }
    });
  },
  { ignore: NEEDS_STUB },
);

microTest(
  "launcher: a run from an extracted version stamps it as started (so another build keeps it)",
  async () => {
    await scene(async ({ root, marker }) => {
      const base = `${root}/cache`;
      works(await version(marker, { MICRO_CACHE_DIR: base }));
      const d = `${base}/${HASH}`;
      const twoHoursAgo = new Date(Date.now() - 2 * 3600_000);
      Deno.utimeSync(d, twoHoursAgo, twoHoursAgo);
      works(await version(marker, { MICRO_CACHE_DIR: base }));
      const age = Date.now() - Deno.statSync(d).mtime!.getTime();
      assert.ok(age < 600_000, `not stamped: last started ${age / 1000} s ago`);
    });
  },
  { ignore: NEEDS_STUB },
);

microTest(
  "launcher: Deno's cache logs are folded into their databases by the command after which they hold pages",
  async () => {
    await scene(async ({ root }) => {
      const base = `${root}/cache`;
      const dir = `${base}/${HASH}/deno_dir`;
      const wal = (db: string) => {
        try {
          return Deno.statSync(`${dir}/${db}-wal`).size;
        } catch {
          return 0; // no log
        }
      };
      // The first command compiles its modules (the logs fill) and folds them in as it ends;
      // one after it finds nothing to fold, and Deno reads its cache from the databases.
      for (let i = 0; i < 3; i++) {
        const r = await run(["profile", "list"], {
          clearEnv: true,
          env: { PATH, MICRO_CACHE_DIR: base, MICRO_TRACE: "1" },
          timeoutMs: 60_000,
        });
        assert.equal(r.code, 0, show(r));
        for (const db of ["v8_code_cache_v2", "dep_analysis_cache_v2"]) {
          assert.equal(wal(db), 0, `${db}'s log after run ${i}:\n${show(r)}`);
        }
        if (i === 0) assert.match(r.stderr, /deno cache fold/, show(r));
        if (i === 2) assert.doesNotMatch(r.stderr, /deno cache fold/, show(r));
      }
      assert.ok(Deno.statSync(`${dir}/v8_code_cache_v2`).size > 100_000, "no code cache");
    });
  },
  { ignore: NEEDS_STUB },
);

microTest(
  "launcher: a deno.json above a cache under /tmp does not steer the processes micro starts (the supervisor)",
  async () => {
    await scene(async ({ root, tmp, marker }) => {
      // The cache in a sticky directory (the last-resort /tmp/micro-UID, or MICRO_CACHE_DIR
      // there), and another user's deno.json above it whose import map swaps micro's chunks.
      const base = `${tmp}/micro-0`;
      Deno.mkdirSync(`${root}/evil`);
      Deno.writeTextFileSync(
        `${root}/evil/main.js`,
        `Deno.writeTextFileSync(${JSON.stringify(marker)}, "hijacked " + Deno.args.join(" "));\n`,
      );
      Deno.writeTextFileSync(
        `${tmp}/deno.json`,
        JSON.stringify({ imports: { [`file://${base}/${HASH}/lib/`]: `file://${root}/evil/` } }),
      );
      const state = `${root}/state`;
      Deno.mkdirSync(state, { mode: 0o711 });
      const env = {
        PATH,
        MICRO_CACHE_DIR: base,
        MICRO_STATE_ROOT: state,
        MICRO_ROOT: `${root}/store`,
        MICRO_DEFAULT_NETWORK: "none",
      };
      try {
        const r = await run(["run", "-d", "--rm", IMAGE, "true"], {
          clearEnv: true,
          env,
          timeoutMs: 60_000,
        });
        assert.equal(r.code, 0, show(r));
        assert.ok(!exists(marker), `the import map ran: ${readMarker(marker)}`);
      } finally {
        await endDetached(state, { clearEnv: true, env, timeoutMs: 60_000 });
      }
    });
  },
  { ignore: NEEDS_STUB },
);
