/**
 * runc's create/run/exec flags beyond the basics: --preserve-fds, --no-pivot, and exec's
 * --additional-gids, --cgroup, --apparmor and --process-label. Each test keeps its state
 * under a --root in its own temp dir.
 */
import assert from "node:assert/strict";
import { MICRO, microTest, ok, show, waitFor, withTempDir } from "./_helpers.ts";
import { bundle, oci } from "./_oci.ts";

const uniq = () => `t${crypto.randomUUID().slice(0, 8)}`;

/**
 * The fds the container's shell has open, one a line (ls writes them itself: a pipe would
 * show its own fds in the shell), then what it reads from fd 3 if open.
 */
const FDS_PROBE = [
  "sh",
  "-c",
  "ls /proc/$$/fd; if [ -e /proc/$$/fd/3 ]; then cat <&3; fi",
];

microTest("oci run --preserve-fds 1: fd 3 reaches the process, fd 4 does not", async () => {
  await withTempDir(async (dir) => {
    const root = `${dir}/state`;
    const b = await bundle(dir, (c) => (c.process.args = FDS_PROBE));
    Deno.writeTextFileSync(`${dir}/three`, "from fd three\n");
    Deno.writeTextFileSync(`${dir}/four`, "from fd four\n");
    const pass = `exec 3<"${dir}/three" 4<"${dir}/four"`;
    const r = await oci(root, ["run", "--preserve-fds", "1", "-b", b, uniq()], pass);
    assert.equal(ok(r), "0\n1\n2\n3\nfrom fd three\n", show(r));
    // Without the flag nothing the caller passed is there.
    const none = await oci(root, ["run", "-b", b, uniq()], pass);
    assert.equal(ok(none), "0\n1\n2\n", show(none));
    // Two: both, at their numbers.
    const two = await oci(root, ["run", "--preserve-fds=2", "-b", b, uniq()], pass);
    assert.equal(ok(two), "0\n1\n2\n3\n4\nfrom fd three\n", show(two));
  });
});

microTest("oci create --preserve-fds: the fd stays through create and start", async () => {
  await withTempDir(async (dir) => {
    const root = `${dir}/state`;
    const b = await bundle(dir, (c) => {
      // One redirection for all (busybox sh keeps a copy of fd 1 at 10 around each one).
      c.process.args = ["sh", "-c", "exec >/out/got; cat <&3; ls /proc/$$/fd; echo"];
      c.mounts.push({ destination: "/out", type: "bind", source: dir, options: ["rbind"] });
    });
    Deno.writeTextFileSync(`${dir}/three`, "created with it\n");
    const id = uniq();
    try {
      ok(await oci(root, ["create", "--preserve-fds", "1", "-b", b, id], `exec 3<"${dir}/three"`));
      ok(await oci(root, ["start", id]));
      assert.ok(
        await waitFor(() => {
          try {
            return Deno.readTextFileSync(`${dir}/got`).endsWith("\n\n");
          } catch {
            return false;
          }
        }, 5000),
      );
      assert.equal(Deno.readTextFileSync(`${dir}/got`), "created with it\n0\n1\n2\n3\n\n");
    } finally {
      await oci(root, ["delete", "--force", id]);
    }
  });
});

microTest(
  "oci --preserve-fds: an fd the caller did not pass is refused, nothing stays",
  async () => {
    await withTempDir(async (dir) => {
      const root = `${dir}/state`;
      const b = await bundle(dir, (c) => (c.process.args = FDS_PROBE));
      // fd 3 is micro's own here (its runtime's): the container must never get it.
      const r = await oci(root, ["run", "--preserve-fds", "1", "-b", b, uniq()]);
      assert.equal(r.code, 125, show(r));
      assert.match(r.stderr, /--preserve-fds 1: fd 3 was not passed to micro/);
      const bad = await oci(root, ["run", "--preserve-fds", "x", "-b", b, uniq()]);
      assert.equal(bad.code, 125, show(bad));
      let left: string[] = [];
      try {
        left = [...Deno.readDirSync(root)].map((e) => e.name);
      } catch {
        // never made
      }
      assert.deepEqual(left, []);
    });
  },
);

/** A running container of `sleep 60` under `root`; `fn` gets its id; deleted after. */
async function running(
  dir: string,
  fn: (root: string, id: string) => Promise<void>,
  edit: (c: Record<string, unknown>) => void = () => {},
) {
  const root = `${dir}/state`;
  const b = await bundle(dir, (c) => {
    c.process.args = ["sleep", "60"];
    edit(c);
  });
  const id = uniq();
  try {
    ok(await oci(root, ["create", "-b", b, id]));
    ok(await oci(root, ["start", id]));
    await fn(root, id);
  } finally {
    await oci(root, ["delete", "--force", id]);
  }
}

microTest("oci exec --additional-gids: appended to the process's groups", async () => {
  await withTempDir((dir) =>
    running(dir, async (root, id) => {
      const r = await oci(root, ["exec", "--additional-gids", "7", "-g", "9,11", id, "id", "-G"]);
      assert.equal(ok(r).trim(), "0 7 9 11", show(r));
      const bad = await oci(root, ["exec", "--additional-gids", "x", id, "true"]);
      assert.equal(bad.code, 125, show(bad));
      assert.match(bad.stderr, /--additional-gids "x": expected a group id/);
    })
  );
});

microTest(
  "oci exec --cgroup: the process joins an existing sub-cgroup of the container",
  async () => {
    await withTempDir((dir) =>
      running(dir, async (root, id) => {
        const v1 = `/sys/fs/cgroup/memory/micro-oci/${id}`;
        const v2 = `/sys/fs/cgroup/micro-oci/${id}`;
        const own = [v1, v2].find((p) => {
          try {
            return Deno.statSync(p).isDirectory;
          } catch {
            return false;
          }
        });
        assert.ok(own, "the container's cgroup");
        const missing = await oci(root, ["exec", "--cgroup", "sub", id, "true"]);
        assert.equal(missing.code, 125, show(missing));
        assert.match(missing.stderr, /exec --cgroup: .*\/sub does not exist/);
        Deno.mkdirSync(`${own}/sub`);
        try {
          const form = own === v1 ? "memory:sub" : "sub";
          const r = await oci(root, ["exec", "--cgroup", form, id, "cat", "/proc/self/cgroup"]);
          // Seen from the container's cgroup namespace when it has one, else the host's path.
          assert.match(ok(r), own === v1 ? /^\d+:memory:.*\/sub$/m : /^0::.*\/sub$/m, show(r));
          if (own === v1) assert.doesNotMatch(r.stdout, /^\d+:pids:.*\/sub$/m, "pids stays");
          const up = await oci(root, ["exec", "--cgroup", "../x", id, "true"]);
          assert.equal(up.code, 125, show(up));
        } finally {
          Deno.removeSync(`${own}/sub`);
        }
      })
    );
  },
);

/** The LSM label fields as `create` takes them: honoured where the LSM is enabled. */
const LSM = [
  {
    flag: "--apparmor",
    field: "apparmorProfile",
    value: "unconfined",
    enabled: () => readOr("/sys/module/apparmor/parameters/enabled").trim() === "Y",
  },
  {
    flag: "--process-label",
    field: "selinuxLabel",
    value: "system_u:system_r:container_t:s0",
    enabled: () => readOr("/sys/fs/selinux/enforce") !== "",
  },
];

function readOr(path: string): string {
  try {
    return Deno.readTextFileSync(path);
  } catch {
    return "";
  }
}

for (const l of LSM) {
  microTest(`oci exec ${l.flag}: as create takes process.${l.field}`, async () => {
    await withTempDir(async (dir) => {
      await running(dir, async (root, id) => {
        const r = await oci(root, ["exec", l.flag, l.value, id, "cat", "/proc/self/attr/current"]);
        if (l.enabled()) {
          assert.match(ok(r), new RegExp(l.value), show(r));
          return;
        }
        // Without the LSM: the error create gives for the config field.
        assert.equal(r.code, 125, show(r));
        const b2 = `${dir}/b2`;
        Deno.mkdirSync(b2);
        const c = JSON.parse(Deno.readTextFileSync(`${dir}/bundle/config.json`));
        c.process[l.field] = l.value;
        c.root.path = `${dir}/bundle/rootfs`;
        Deno.writeTextFileSync(`${b2}/config.json`, JSON.stringify(c));
        const created = await oci(`${dir}/state2`, ["create", "-b", b2, uniq()]);
        assert.equal(created.code, 125, show(created));
        assert.equal(r.stderr, created.stderr);
      });
    });
  });
}

microTest("oci exec --preserve-fds 1: fd 3 reaches the exec'd process", async () => {
  await withTempDir((dir) =>
    running(dir, async (root, id) => {
      Deno.writeTextFileSync(`${dir}/three`, "exec fd\n");
      const pass = `exec 3<"${dir}/three" 4<"${dir}/three"`;
      const r = await oci(root, ["exec", "--preserve-fds", "1", id, ...FDS_PROBE], pass);
      assert.equal(ok(r), "0\n1\n2\n3\nexec fd\n", show(r));
    })
  );
});

microTest(
  "oci --no-pivot: the root is moved onto / and chrooted into; exec sees it too",
  async () => {
    await withTempDir(async (dir) => {
      const root = `${dir}/state`;
      const b = await bundle(dir, (c) => {
        c.process.args = [
          "sh",
          "-c",
          "cat /marker; chroot / /bin/true || echo no chroot; sleep 60",
        ];
      });
      Deno.writeTextFileSync(`${b}/rootfs/marker`, "in the rootfs\n");
      const id = uniq();
      try {
        ok(await oci(root, ["create", "--no-pivot", "-b", b, id]));
        ok(await oci(root, ["start", id]));
        const r = await oci(root, ["exec", id, "sh", "-c", "cat /marker; ls /..; cat /marker"]);
        assert.match(ok(r), /^in the rootfs\n(.*\n)*in the rootfs\n$/, show(r));
        assert.doesNotMatch(r.stdout, /\bbundle\b|\bstate\b/, "nothing of the host above it");
      } finally {
        await oci(root, ["delete", "--force", id]);
      }
      // The container's own view, and no way out: CAP_SYS_CHROOT is not kept.
      const out = `${dir}/run-out`;
      const id2 = uniq();
      const run = new Deno.Command("sh", {
        args: [
          "-c",
          `exec "$0" --root "$1" run --no-pivot -b "$2" "$3" >"${out}" 2>&1`,
          MICRO,
          root,
          b,
          id2,
        ],
        stdin: "null",
      }).spawn();
      try {
        const said = await waitFor(() => readOr(out).includes("no chroot"), 10_000);
        assert.ok(said, readOr(out));
        assert.match(readOr(out), /^in the rootfs\n.*Operation not permitted/);
      } finally {
        await oci(root, ["delete", "--force", id2]);
        await run.status;
      }
    });
  },
);

microTest("oci --no-pivot: refused while the container keeps CAP_SYS_CHROOT", async () => {
  await withTempDir(async (dir) => {
    const root = `${dir}/state`;
    const b = await bundle(dir, (c) => {
      c.process.args = ["true"];
      c.process.capabilities.bounding.push("CAP_SYS_CHROOT");
    });
    const r = await oci(root, ["run", "--no-pivot", "-b", b, uniq()]);
    assert.equal(r.code, 125, show(r));
    assert.match(r.stderr, /--no-pivot: the container keeps CAP_SYS_CHROOT, which escape a chroot/);
    ok(await oci(root, ["run", "-b", b, uniq()]));
  });
});

microTest(
  "oci exec into a paused container is refused, --ignore-paused too, naming why",
  async () => {
    await withTempDir((dir) =>
      running(dir, async (root, id) => {
        ok(await oci(root, ["pause", id]));
        try {
          const plain = await oci(root, ["exec", id, "true"]);
          assert.equal(plain.code, 125, show(plain));
          assert.match(plain.stderr, /is paused: exec needs a running container.*resume it first/);
          const ignore = await oci(root, ["exec", "--ignore-paused", id, "true"]);
          assert.equal(ignore.code, 125, show(ignore));
          assert.match(ignore.stderr, /--ignore-paused: .* its process would freeze/);
        } finally {
          ok(await oci(root, ["resume", id]));
        }
        ok(await oci(root, ["exec", id, "true"]));
      })
    );
  },
);

microTest("oci run --keep: the stopped container stays for state and delete", async () => {
  await withTempDir(async (dir) => {
    const root = `${dir}/state`;
    const b = await bundle(dir, (c) => (c.process.args = ["sh", "-c", "exit 4"]));
    const id = uniq();
    try {
      const r = await oci(root, ["run", "--keep", "-b", b, id]);
      assert.equal(r.code, 4, show(r));
      assert.equal(JSON.parse(ok(await oci(root, ["state", id]))).status, "stopped");
      ok(await oci(root, ["delete", id]));
      assert.deepEqual([...Deno.readDirSync(root)], []);
      // Without it, run deletes the container itself.
      const gone = await oci(root, ["run", "-b", b, uniq()]);
      assert.equal(gone.code, 4, show(gone));
      assert.deepEqual([...Deno.readDirSync(root)], []);
    } finally {
      await oci(root, ["delete", "--force", id]);
    }
  });
});
