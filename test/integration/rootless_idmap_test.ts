/**
 * Rootless with subordinate ids, as podman: an unprivileged caller with ranges in
 * /etc/subuid and /etc/subgid gets `0 <own> 1` + `1 <range> 65536` written by newuidmap and
 * newgidmap, so --user and images with several owners work; without a range, one warning
 * and the single-id map; a helper that fails, one line.
 *
 * Nothing on the host changes: each run happens in a private mount namespace where
 * /etc/passwd, /etc/subuid and /etc/subgid are bind-mounted temp files (the setuid helpers
 * read them at run time), for a user that exists only there.
 */
import assert from "node:assert/strict";
import {
  IMAGE,
  lacking,
  MICRO,
  microTest,
  NEEDS,
  REPO,
  run,
  type RunResult,
  show,
} from "./_helpers.ts";
import { enc, makeImage, writeLayout } from "./_registry.ts";
import { hostPlatform } from "../../core/image/platform.ts";

const UID = 54321;
const NAME = "microtest";
/** Far above what account tools hand out, and within uid_t. */
const RANGE = 2100000000;

function helpersReason(): string | undefined {
  for (const h of ["/usr/bin/newuidmap", "/usr/bin/newgidmap"]) {
    try {
      const st = Deno.statSync(h);
      if (st.uid !== 0 || !((st.mode ?? 0) & 0o4000)) return `${h} is not setuid root`;
    } catch {
      return `no ${h} (Debian: uidmap; tools/install-test-deps.sh installs it)`;
    }
  }
  return undefined;
}

/** Why UID cannot run the binary and image in place, or undefined. */
function traverseReason(): string | undefined {
  const out = new Deno.Command("setpriv", {
    args: [
      `--reuid=${UID}`,
      `--regid=${UID}`,
      "--clear-groups",
      "sh",
      "-c",
      `test -x "$0" && test -x "$1/bin/sh"`,
      MICRO,
      IMAGE,
    ],
  }).outputSync();
  return out.success ? undefined : `uid ${UID} cannot run ${MICRO} or read ${IMAGE}`;
}

const ignore = lacking(NEEDS.setpriv, NEEDS.unshare, helpersReason(), traverseReason());

interface Setup {
  subuid?: string;
  subgid?: string;
  /** The real gid the caller runs with (default: its passwd gid). */
  gid?: number;
  /** Called with the temp dir before the run (to make an image there). */
  prepare?: (dir: string) => void | Promise<void>;
  /** Called with the temp dir after the run, before it is removed. */
  inspect?: (dir: string) => void;
  /** The program run as the caller instead of micro (with the args). */
  cmd?: string;
  /** More environment for it, NAME=value. */
  env?: (dir: string) => string[];
}

/** Runs `micro ARGS` as UID in a private mount namespace with the given account files. */
async function rootless(args: (dir: string) => string[], s: Setup = {}): Promise<RunResult> {
  const dir = Deno.makeTempDirSync({ prefix: "micro-rootless-idmap-" });
  try {
    Deno.chmodSync(dir, 0o755);
    const home = `${dir}/home`;
    const runtime = `${dir}/run`;
    for (const d of [home, runtime]) {
      Deno.mkdirSync(d, { mode: 0o700 });
      Deno.chownSync(d, UID, UID);
    }
    Deno.writeTextFileSync(
      `${dir}/passwd`,
      `root:x:0:0:root:/root:/bin/sh\n${NAME}:x:${UID}:${UID}::${home}:/bin/sh\n`,
    );
    Deno.writeTextFileSync(`${dir}/subuid`, s.subuid ?? `${NAME}:${RANGE}:65536\n`);
    Deno.writeTextFileSync(`${dir}/subgid`, s.subgid ?? `${UID}:${RANGE}:65536\n`);
    await s.prepare?.(dir);
    const script = `for f in passwd subuid subgid; do mount --bind "$0/$f" "/etc/$f" || exit 99; ` +
      `done; exec setpriv --reuid=${UID} --regid=${s.gid ?? UID} --clear-groups -- env -i ` +
      `HOME=${home} XDG_RUNTIME_DIR=${runtime} PATH=/usr/bin:/bin ${
        (s.env?.(dir) ?? []).join(" ")
      } "$@"`;
    const r = await run(
      ["-m", "--propagation", "private", "sh", "-c", script, dir, s.cmd ?? MICRO, ...args(dir)],
      { cmd: "unshare", timeoutMs: 60_000 },
    );
    try {
      s.inspect?.(dir);
    } catch (e) {
      throw new Error(`${(e as Error).message}\n${show(r)}`);
    }
    return r;
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
}

const lines = (text: string) => text.trim().split("\n").map((l) => l.trim().split(/\s+/).join(" "));

microTest(
  "rootless with a range: --user 1000 runs, and the map is podman's two lines",
  async () => {
    const r = await rootless(() => [
      "run",
      "--user",
      "1000",
      "--group-add",
      "5",
      IMAGE,
      "sh",
      "-c",
      "id -u; id -g; id -G; cat /proc/self/uid_map /proc/self/gid_map /proc/self/setgroups",
    ]);
    assert.equal(r.code, 0, show(r));
    assert.equal(r.stderr, "", show(r));
    assert.deepEqual(lines(r.stdout), [
      "1000",
      "1000",
      "1000 5 50", // 50: the image's /etc/group puts uid 1000 in staff
      `0 ${UID} 1`,
      `1 ${RANGE} 65536`,
      `0 ${UID} 1`,
      `1 ${RANGE} 65536`,
      "allow",
    ]);
  },
  { ignore },
);

microTest(
  "rootless with a range: files of several owners show as theirs, and copy-up works",
  async () => {
    const r = await rootless((dir) => [
      "run",
      `${dir}/img`,
      "sh",
      "-c",
      "ls -ln /owners | tail -n +2 | while read m l u g rest; do echo $u:$g ${rest##* }; done; " +
      "chown 7:8 /owners/f0 && stat -c %u:%g /owners/f0",
    ], {
      prepare(dir) {
        // The image: owned by the caller (root inside), with files of mapped host ids.
        const img = `${dir}/img`;
        const cp = new Deno.Command("cp", { args: ["-a", IMAGE, img] }).outputSync();
        assert.ok(cp.success, new TextDecoder().decode(cp.stderr));
        const chown = new Deno.Command("chown", { args: ["-R", `${UID}:${UID}`, img] })
          .outputSync();
        assert.ok(chown.success);
        Deno.mkdirSync(`${img}/owners`);
        Deno.chownSync(`${img}/owners`, UID, UID);
        const files: [string, number, number][] = [
          ["f0", UID, UID],
          ["f33", 33, 33],
          ["f1000", 1000, 100],
        ];
        for (const [name, uid, gid] of files) {
          const path = `${img}/owners/${name}`;
          Deno.writeTextFileSync(path, name);
          const host = (id: number) => id === UID ? UID : RANGE + id - 1;
          Deno.chownSync(path, host(uid), host(gid));
        }
      },
    });
    assert.equal(r.code, 0, show(r));
    assert.deepEqual(lines(r.stdout), ["0:0 f0", "1000:100 f1000", "33:33 f33", "7:8"]);
  },
  { ignore },
);

microTest("rootless without a range: the single-id map and exactly one warning", async () => {
  const r = await rootless(() => ["run", IMAGE, "cat", "/proc/self/uid_map"], {
    subuid: "# nothing for us\nsomeone:100000:65536\n",
    subgid: "",
  });
  assert.equal(r.code, 0, show(r));
  assert.deepEqual(lines(r.stdout), [`0 ${UID} 1`]);
  const err = r.stderr.trimEnd().split("\n");
  assert.equal(err.length, 1, show(r));
  assert.equal(
    err[0],
    `micro: warning: only your own uid and gid are mapped (no range for "${NAME}" in ` +
      "/etc/subuid and /etc/subgid): files of other owners show as nobody and --user must be " +
      "root; add ranges to /etc/subuid and /etc/subgid and install newuidmap and newgidmap " +
      "(Debian: uidmap), as for podman",
  );
  // --user other than root is refused there, in one line.
  const u = await rootless(() => ["run", "--user", "1000", IMAGE, "true"], { subuid: "" });
  assert.equal(u.code, 125, show(u));
  assert.equal(u.stderr.trimEnd().split("\n").length, 1, show(u));
  assert.match(u.stderr, /user 1000:1000 is not mapped in a rootless container \(no range for/);
}, { ignore });

microTest(
  "rootless: a helper that refuses the map is one line naming it, its status and why",
  async () => {
    // Running with a gid that is not the passwd one: newuidmap refuses the target process.
    const r = await rootless(() => ["run", IMAGE, "true"], { gid: UID + 1 });
    assert.equal(r.code, 125, show(r));
    const err = r.stderr.trimEnd().split("\n");
    assert.equal(err.length, 1, show(r));
    assert.match(
      err[0],
      new RegExp(
        `^micro: attach: user: newuidmap pid=\\d+ uid_map="0 ${UID} 1 1 ${RANGE} 65536": ` +
          "exit status 1: newuidmap: .*owned by a different user.*\\(check your ranges in " +
          "/etc/subuid and that /usr/bin/newuidmap is setuid root",
      ),
    );
  },
  { ignore },
);

microTest(
  "rootless with a range: a layer unpacked in the user namespace keeps its owners",
  async () => {
    const r = await rootless((dir) => [
      // Deno on a script calling unpackLayerInUserns, which runs `main.ts _unpack-layer` (what
      // the built micro runs is its own runtime and bundle: a script's main module is not).
      "-c",
      `exec "$0" run --quiet --no-lock --no-config -A ${dir}/unpack.ts`,
      Deno.execPath(),
    ], {
      prepare(dir) {
        const py = `import tarfile, io
t = tarfile.open("${dir}/layer.tar", "w")
for name, uid, gid in [("d", 0, 0), ("d/root", 0, 0), ("d/www", 33, 33), ("d/app", 1000, 100)]:
    i = tarfile.TarInfo(name); i.uid = uid; i.gid = gid
    if name == "d":
        i.type = tarfile.DIRTYPE; i.mode = 0o755; t.addfile(i)
    else:
        i.mode = 0o4755 if name == "d/app" else 0o644; i.size = 2; t.addfile(i, io.BytesIO(b"hi"))
t.close()`;
        const made = new Deno.Command("python3", { args: ["-c", py] }).outputSync();
        assert.ok(made.success, new TextDecoder().decode(made.stderr));
        for (const d of ["layer", "deno-dir"]) {
          Deno.mkdirSync(`${dir}/${d}`);
          Deno.chownSync(`${dir}/${d}`, UID, UID);
        }
        Deno.writeTextFileSync(
          `${dir}/unpack.ts`,
          `import { rootlessIdMap, unpackLayerInUserns } from "${REPO}/core/image/mod.ts";
        import { openLibc } from "${REPO}/core/sys/libc.ts";
        const sys = openLibc();
        const maps = rootlessIdMap(sys);
        if ("reason" in maps) throw new Error(maps.reason);
        const r = await unpackLayerInUserns(sys, maps, "${dir}/layer.tar", "${dir}/layer", {
          exe: [Deno.execPath(), "run", "-A", "--quiet", "${REPO}/main.ts"],
        });
        console.log(JSON.stringify(r.warnings));`,
        );
      },
      cmd: "sh",
      env: (dir) => [`DENO_DIR=${dir}/deno-dir`],
      inspect(dir) {
        const owner = (p: string) => {
          const st = Deno.lstatSync(`${dir}/layer/${p}`);
          return `${st.uid}:${st.gid} ${((st.mode ?? 0) & 0o7777).toString(8)}`;
        };
        // Container id N is host id RANGE+N-1; root is the caller; setuid kept after chown.
        assert.deepEqual(
          ["d", "d/root", "d/www", "d/app"].map(owner),
          [
            `${UID}:${UID} 755`,
            `${UID}:${UID} 644`,
            `${RANGE + 32}:${RANGE + 32} 644`,
            `${RANGE + 999}:${RANGE + 99} 4755`,
          ],
        );
      },
    });
    assert.equal(r.code, 0, show(r));
    assert.equal(r.stdout.trim(), "[]", show(r));
  },
  { ignore },
);

microTest(
  "rootless with a range: an imported image keeps its owners, --user 1000 writes, rm and rmi leave nothing",
  async () => {
    const script = `M="$1"; D="$2"; S="$HOME/.local/share/micro"
"$M" image import "$D/layout" own:1 >/dev/null || exit 1
"$M" run --name c1 --user 1000 own:1 /bin/busybox sh -c \\
  '/bin/busybox stat -c "%u:%g %n" /owners/www /owners/app; /bin/busybox mkdir /tmp/d; echo x > /tmp/d/mine; /bin/busybox stat -c %u /tmp/d/mine' || exit 2
"$M" rm c1 >/dev/null || exit 3
"$M" rmi own:1 >/dev/null || exit 4
ls -A "$S/layers/sha256" "$S/containers" "$S/tmp"`;
    const r = await rootless((dir) => ["-c", script, MICRO, MICRO, dir], {
      cmd: "sh",
      async prepare(dir) {
        const image = makeImage([
          [
            { path: "bin", dir: true },
            { path: "bin/busybox", data: Deno.readFileSync("/bin/busybox"), mode: 0o755 },
            { path: "tmp", dir: true, mode: 0o1777 },
          ],
          [
            // A directory of another owner: its entries are not the caller's to unlink.
            { path: "owners", dir: true, uid: 33, gid: 33 },
            { path: "owners/www", data: enc.encode("w"), uid: 33, gid: 33 },
            { path: "owners/app", data: enc.encode("a"), uid: 1000, gid: 100 },
          ],
        ], hostPlatform().architecture);
        await writeLayout(`${dir}/layout`, image.blobs, { own: image.manifest });
      },
    });
    assert.equal(r.code, 0, show(r));
    const out = lines(r.stdout);
    assert.deepEqual(out.slice(0, 3), ["33:33 /owners/www", "1000:100 /owners/app", "1000"]);
    // The store's listing: only the containers' lock and name index; no layer, nothing in tmp.
    assert.deepEqual(out.slice(3).filter((l) => l !== "" && !l.endsWith(":")), [".lock", ".names"]);
    assert.doesNotMatch(r.stderr, /warning/, show(r));
  },
  { ignore },
);

microTest(
  "rootless with a range: --user 1000 reopens /dev/stdout and /dev/stderr (micro's pipes)",
  async () => {
    for (const opts of [["--user", "1000"], ["--profile", "hardened"], []]) {
      const r = await rootless(() => [
        "run",
        ...opts,
        IMAGE,
        "sh",
        "-c",
        "echo out >/dev/stdout; echo err >/dev/stderr",
      ]);
      assert.equal(r.code, 0, show(r));
      assert.equal(r.stdout, "out\n", show(r));
      assert.match(r.stderr, /(^|\n)err\n$/, show(r));
    }
  },
  { ignore },
);

microTest(
  "rootless with an unwritable MICRO_ROOT: one line naming the path and the errno",
  async () => {
    const r = await rootless(() => ["run", IMAGE, "true"], {
      prepare: (dir) => Deno.mkdirSync(`${dir}/ro`, { mode: 0o555 }),
      env: (dir) => [`MICRO_ROOT=${dir}/ro/store`],
    });
    assert.equal(r.code, 125, show(r));
    const errors = r.stderr.split("\n").filter((l) => l && !l.includes("warning"));
    assert.equal(errors.length, 1, show(r));
    assert.match(
      errors[0],
      /^micro: container store .*\/ro\/store\/containers: cannot create .*\/ro\/store: EACCES/,
    );
  },
  { ignore },
);
