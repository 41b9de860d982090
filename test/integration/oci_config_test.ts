/**
 * config.json field by field (README "OCI runtime: config.json fields"): a bundle made by
 * `micro oci spec`, edited, run with `micro run -b`, each field read back from inside the
 * container (/proc/self/*, mountinfo, the uts names); the fields micro cannot honour are one
 * error line and exit 125; `micro plan --bundle` prints the bundle's ops.
 */
import assert from "node:assert/strict";
import { exists, MICRO, microTest, ok, run, show, withTempDir } from "./_helpers.ts";
import { bundle, type Config } from "./_oci.ts";

const uniq = () => `t${crypto.randomUUID().slice(0, 8)}`;

/** `micro --root ROOT run -b B ID`, its output through files (see oci_test.ts). */
async function runBundle(root: string, b: string) {
  const out = `${root}-out-${crypto.randomUUID()}`;
  const cmd = new Deno.Command("sh", {
    args: [
      "-c",
      `exec "$0" "$@" >"${out}.1" 2>"${out}.2"`,
      MICRO,
      "--root",
      root,
      "run",
      "-b",
      b,
      uniq(),
    ],
    stdin: "null",
  });
  const r = await cmd.output();
  const read = (p: string) => {
    const t = Deno.readTextFileSync(p);
    Deno.removeSync(p);
    return t;
  };
  return { code: r.code, signal: null, stdout: read(`${out}.1`), stderr: read(`${out}.2`) };
}

microTest("oci config: each honoured field is seen from inside the container", async () => {
  await withTempDir(async (dir) => {
    const root = `${dir}/state`;
    const host = `${dir}/host`;
    Deno.mkdirSync(host);
    Deno.writeTextFileSync(`${host}/f`, "from-host\n");
    const b = await bundle(dir, (c) => {
      c.hostname = "cfg-host";
      c.domainname = "cfg.example";
      c.process.user = { uid: 0, gid: 0, additionalGids: [5, 7], umask: 0o027 };
      c.linux.personality = { domain: "LINUX32" };
      c.process.rlimits = [{ type: "RLIMIT_NOFILE", soft: 1234, hard: 2345 }];
      c.process.oomScoreAdj = 321;
      c.process.noNewPrivileges = true;
      c.linux.sysctl = { "kernel.shmmax": "4096000" };
      c.linux.maskedPaths = [...(c.linux.maskedPaths ?? []), "/etc/secret", "/secretdir"];
      c.linux.readonlyPaths = [...(c.linux.readonlyPaths ?? []), "/data"];
      c.mounts.push(
        {
          destination: "/scratch",
          type: "tmpfs",
          source: "tmpfs",
          options: ["nodev", "noexec", "nosuid", "size=1m", "mode=700"],
        },
        { destination: "/hostro", type: "bind", source: host, options: ["rbind", "ro"] },
      );
      c.process.args = [
        "sh",
        "-c",
        [
          "hostname",
          "echo umask=$(umask)",
          "echo persona=$(cat /proc/self/personality)",
          "cat /proc/sys/kernel/domainname",
          "grep -E '^(Groups|NoNewPrivs):' /proc/self/status",
          "grep 'Max open files' /proc/self/limits",
          "echo oom=$(cat /proc/self/oom_score_adj)",
          "echo shmmax=$(cat /proc/sys/kernel/shmmax)",
          "echo secret=[$(cat /etc/secret)] dir=[$(ls /secretdir)]",
          "touch /data/x 2>&1 || true",
          "grep -E ' /(scratch|hostro) ' /proc/self/mountinfo",
          "stat -c 'scratch-mode=%a' /scratch",
          "cat /hostro/f",
        ].join("; "),
      ];
    });
    Deno.writeTextFileSync(`${b}/rootfs/etc/secret`, "hidden\n");
    Deno.mkdirSync(`${b}/rootfs/secretdir`);
    Deno.writeTextFileSync(`${b}/rootfs/secretdir/inner`, "hidden\n");
    Deno.mkdirSync(`${b}/rootfs/data`);
    const r = await runBundle(root, b);
    assert.equal(r.code, 0, show(r));
    const o = r.stdout;
    assert.match(o, /^cfg-host$/m);
    assert.match(o, /^cfg\.example$/m);
    assert.match(o, /^umask=0027$/m);
    assert.match(o, /^persona=00000008$/m);
    assert.match(o, /^Groups:\s+5 7\s*$/m);
    assert.match(o, /^NoNewPrivs:\s+1$/m);
    assert.match(o, /Max open files\s+1234\s+2345\s+files/);
    assert.match(o, /^oom=321$/m);
    assert.match(o, /^shmmax=4096000$/m);
    assert.match(o, /^secret=\[\] dir=\[\]$/m);
    assert.match(o, /Read-only file system/);
    const scratch = o.split("\n").find((l) => / \/scratch /.test(l)) ?? "";
    assert.match(scratch, /\bnosuid\b/, o);
    assert.match(scratch, /\bnodev\b/, o);
    assert.match(scratch, /\bnoexec\b/, o);
    assert.match(scratch, /size=1024k/, o);
    assert.match(o, /^scratch-mode=700$/m);
    const hostro = o.split("\n").find((l) => / \/hostro /.test(l)) ?? "";
    assert.match(hostro, / \/hostro ro,/, o);
    assert.match(o, /^from-host$/m);
    assert.deepEqual([...Deno.readDirSync(root)], []);
  });
});

microTest("oci config: mount options: a bind's own flags, atime modes, propagation", async () => {
  await withTempDir(async (dir) => {
    const root = `${dir}/state`;
    const host = `${dir}/host`;
    Deno.mkdirSync(host);
    const b = await bundle(dir, (c) => {
      c.mounts.push(
        // podman's binds: the kernel ignores nosuid, nodev, noexec on a bind mount(2), so
        // they must be applied apart.
        {
          destination: "/b1",
          type: "bind",
          source: host,
          options: ["rbind", "nosuid", "nodev", "noexec", "noatime", "rprivate"],
        },
        { destination: "/b2", type: "bind", source: host, options: ["rbind", "ro", "rshared"] },
        { destination: "/b3", type: "bind", source: host, options: ["bind", "nodiratime"] },
        {
          destination: "/t",
          type: "tmpfs",
          source: "tmpfs",
          options: ["noatime", "sync", "dirsync", "unbindable", "size=1m"],
        },
      );
      c.process.args = ["sh", "-c", "grep -E ' /(b1|b2|b3|t) ' /proc/self/mountinfo"];
    });
    const r = await runBundle(root, b);
    assert.equal(r.code, 0, show(r));
    const line = (m: string) => r.stdout.split("\n").find((l) => l.includes(` ${m} `)) ?? "";
    assert.match(line("/b1"), / \/b1 rw,nosuid,nodev,noexec,noatime - /, r.stdout);
    assert.match(line("/b2"), / \/b2 ro,\S* shared:\d+ - /, r.stdout);
    assert.match(line("/b3"), / \/b3 rw,nodiratime,/, r.stdout);
    assert.match(line("/t"), / \/t rw,noatime unbindable - tmpfs \S+ rw,sync,dirsync,/, r.stdout);
  });
});

microTest(
  "oci config: tmpcopyup: the tmpfs starts with a copy of the image's directory",
  async () => {
    await withTempDir(async (dir) => {
      const root = `${dir}/state`;
      const b = await bundle(dir, (c) => {
        c.mounts.push(
          { destination: "/cu", type: "tmpfs", source: "tmpfs", options: ["tmpcopyup", "size=1m"] },
          { destination: "/ro", type: "tmpfs", source: "tmpfs", options: ["tmpcopyup", "ro"] },
        );
        c.process.args = [
          "sh",
          "-c",
          [
            "stat -c '%n %F %u:%g %a' /cu/f /cu/sub /cu/sub/deep/x /cu/fifo /cu/lnk",
            "cat /cu/f /cu/sub/deep/x /ro/r",
            "readlink /cu/lnk",
            "echo new >/cu/new && echo wrote",
            "echo x >/ro/x 2>/dev/null || echo ro-refused",
            "grep -E ' /(cu|ro) ' /proc/self/mountinfo",
          ].join("; "),
        ];
      });
      const cu = `${b}/rootfs/cu`;
      Deno.mkdirSync(`${cu}/sub/deep`, { recursive: true });
      Deno.writeTextFileSync(`${cu}/f`, "hello\n");
      Deno.chmodSync(`${cu}/f`, 0o4750);
      Deno.chownSync(`${cu}/sub`, 12, 34);
      Deno.chmodSync(`${cu}/sub`, 0o751);
      Deno.writeTextFileSync(`${cu}/sub/deep/x`, "deep\n");
      // A link in the image is copied as a link, never followed (here: to the host's file).
      Deno.symlinkSync(`${dir}/host-secret`, `${cu}/lnk`);
      Deno.writeTextFileSync(`${dir}/host-secret`, "secret\n");
      new Deno.Command("mkfifo", { args: [`${cu}/fifo`] }).outputSync();
      Deno.mkdirSync(`${b}/rootfs/ro`);
      Deno.writeTextFileSync(`${b}/rootfs/ro/r`, "in-ro\n");
      const r = await runBundle(root, b);
      assert.equal(r.code, 0, show(r));
      const o = r.stdout;
      assert.match(o, /^\/cu\/f regular file 0:0 4750$/m, o);
      assert.match(o, /^\/cu\/sub directory 12:34 751$/m, o);
      assert.match(o, /^\/cu\/sub\/deep\/x regular file 0:0 644$/m, o);
      assert.match(o, /^\/cu\/fifo fifo 0:0 /m, o);
      assert.match(o, /^\/cu\/lnk symbolic link /m, o);
      assert.match(o, /^hello\ndeep\nin-ro$/m, o);
      assert.match(o, new RegExp(`^${dir}/host-secret$`, "m"));
      assert.doesNotMatch(o, /secret\n.*secret/s);
      assert.match(o, /^wrote$/m);
      assert.match(o, /^ro-refused$/m);
      assert.match(o, / \/cu rw,\S* - tmpfs /, o);
      assert.match(o, / \/ro ro,\S* - tmpfs /, o);
      // The image is not written.
      assert.equal(exists(`${cu}/new`), false);
    });
  },
);

microTest(
  "oci config: rootfsPropagation rslave: the host's later mounts reach the container",
  async () => {
    await withTempDir(async (dir) => {
      const h = `${dir}/h`;
      Deno.mkdirSync(`${h}`);
      for (const mode of ["rslave", "rprivate"]) {
        const b = await bundle(`${dir}`, (c) => {
          c.linux.rootfsPropagation = mode;
          c.mounts.push({ destination: "/h", type: "bind", source: h, options: ["rbind"] });
          c.process.args = [
            "sh",
            "-c",
            "touch /h/ready; while [ ! -e /h/go ]; do sleep 0.05; done; " +
            "grep -c ' /h/sub ' /proc/self/mountinfo || true",
          ];
        });
        // The "host" is a mount namespace of the test's own: a shared tmpfs at h, and a
        // second tmpfs mounted under it while the container runs.
        const script = `set -e
mount -t tmpfs t "${h}"; mount --make-shared "${h}"; mkdir "${h}/sub"
"${MICRO}" --root "${dir}/state" run -b "${b}" ${uniq()} >"${dir}/out" 2>&1 &
i=0; while [ ! -e "${h}/ready" ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done
mount -t tmpfs t2 "${h}/sub"; touch "${h}/go"; wait $!`;
        const r = await new Deno.Command("unshare", {
          args: ["-m", "--propagation", "private", "sh", "-c", script],
        }).output();
        const out = Deno.readTextFileSync(`${dir}/out`);
        assert.equal(r.code, 0, out + new TextDecoder().decode(r.stderr));
        assert.equal(out.trim(), mode === "rslave" ? "1" : "0", `${mode}: ${out}`);
        Deno.removeSync(b, { recursive: true });
      }
    });
  },
);

microTest(
  "oci config: linux.devices: nodes of the config's numbers, mode and owner; the cgroup's rules decide",
  async () => {
    await withTempDir(async (dir) => {
      const b = await bundle(dir, (c) => {
        c.linux.devices = [
          // A path the host lacks, as podman's --device /dev/null:/dev/mynull gives it.
          { path: "/dev/mynull", type: "c", major: 1, minor: 3, fileMode: 0o666, uid: 5, gid: 6 },
          // kmsg: not among the devices every container may use.
          { path: "/dev/sub/kmsg", type: "c", major: 1, minor: 11, fileMode: 0o640 },
          { path: "/dev/fifo", type: "p" },
        ];
        c.linux.resources.devices = [
          { allow: false, access: "rwm" },
          { allow: true, type: "c", major: 1, minor: 3, access: "rwm" },
        ];
        c.process.args = [
          "sh",
          "-c",
          "stat -c '%n %F %t:%T %u:%g %a' /dev/mynull /dev/sub/kmsg /dev/fifo; " +
          "echo x >/dev/mynull && echo wrote; head -c1 /dev/sub/kmsg || echo kmsg-denied",
        ];
      });
      const r = await runBundle(`${dir}/state`, b);
      assert.equal(r.code, 0, show(r));
      const o = r.stdout;
      assert.match(o, /^\/dev\/mynull character special file 1:3 5:6 666$/m, o);
      assert.match(o, /^\/dev\/sub\/kmsg character special file 1:b 0:0 640$/m, o);
      assert.match(o, /^\/dev\/fifo fifo 0:0 0:0 666$/m, o);
      assert.match(o, /^wrote$/m);
      // Not in linux.resources.devices: the device cgroup refuses it (runc's way).
      assert.match(o, /^kmsg-denied$/m);
      assert.match(r.stderr, /Operation not permitted/);
    });
  },
);

microTest("oci config: a field micro cannot honour is one error line, exit 125", async () => {
  await withTempDir(async (dir) => {
    const cases: [string, (c: Config) => void, RegExp][] = [
      [
        "personality flags",
        (c) => (c.linux.personality = { domain: "LINUX", flags: ["SHORT_INODE"] }),
        /linux\.personality\.flags/,
      ],
      ["timeOffsets", (c) => (c.linux.timeOffsets = { monotonic: { secs: 1 } }), /timeOffsets/],
      [
        "scheduler",
        (c) => (c.process.scheduler = { policy: "SCHED_BOGUS" }),
        /process\.scheduler\.policy: "SCHED_BOGUS" is not a scheduling policy/,
      ],
      [
        "ioPriority",
        (c) => (c.process.ioPriority = { class: "IOPRIO_CLASS_IDLE", priority: 9 }),
        /process\.ioPriority\.priority/,
      ],
      [
        "idmapped mount with one side's mappings",
        (c) =>
          c.mounts.push({
            destination: "/m",
            type: "bind",
            source: "/tmp",
            options: ["rbind"],
            uidMappings: [{ containerID: 0, hostID: 1000, size: 1 }],
          }),
        /mounts\[\d+\]\.gidMappings: expected 1 to 340 mappings/,
      ],
      [
        "shared rootfs",
        (c) => (c.linux.rootfsPropagation = "shared"),
        /linux\.rootfsPropagation/,
      ],
    ];
    for (const [name, edit, re] of cases) {
      const d = `${dir}/${name.replace(/ /g, "-")}`;
      Deno.mkdirSync(d);
      const b = await bundle(d, (c) => {
        c.process.args = ["true"];
        edit(c);
      });
      const r = await runBundle(`${d}/state`, b);
      assert.equal(r.code, 125, `${name}: ${show(r)}`);
      assert.match(r.stderr, re, name);
      assert.equal(r.stderr.trim().split("\n").length, 1, `${name}: ${r.stderr}`);
    }
  });
});

microTest(
  "oci config: a SHOULD micro does not apply is a warning, and the run goes on",
  async () => {
    await withTempDir(async (dir) => {
      const b = await bundle(dir, (c) => {
        c.mounts.push({ destination: "/m", type: "bind", source: "/tmp", options: ["sync"] });
        c.process.args = ["true"];
      });
      const r = await runBundle(`${dir}/state`, b);
      assert.equal(r.code, 0, show(r));
      assert.match(r.stderr, /\(\/m\): "sync" is the file system's option/);
    });
  },
);

microTest("oci config: `micro plan --bundle` prints the ops of the bundle's run", async () => {
  await withTempDir(async (dir) => {
    const b = await bundle(dir, (c) => {
      c.hostname = "plan-host";
      c.process.user.umask = 0o027;
      c.linux.personality = { domain: "LINUX32" };
      c.linux.sysctl = { "kernel.shmmax": "4096000" };
    });
    const out = ok(await run(["plan", "--bundle", b]));
    assert.match(out, /plan-host/);
    assert.match(out, /shmmax/);
    assert.match(out, /umask.*mask=23\b/);
    assert.match(out, /personality.*persona=8\b/);
    assert.match(out, /rootfs/);
  });
});
