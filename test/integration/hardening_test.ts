/**
 * Hardening seen from inside a container: what `--profile hardened` refuses and with which
 * errno, the process's security state in /proc/self/status, --cap-add, the seccomp, read-only
 * and LSM options.
 *
 * Every escape attempt runs in a container of its own as `ATTEMPT; echo status $?; echo
 * still-running; exit 7`: the attempt must fail with the expected errno, and the container
 * must go on (the next command runs, the exit code is the script's own 7).
 *
 * Which layer answers: seccomp (Docker's default policy without CAP_SYS_ADMIN and friends)
 * refuses mount, unshare, setns, reboot, kexec, modules, bpf, perf_event_open, keyctl,
 * open_by_handle_at, sethostname, settimeofday and the like with EPERM (clone3 with ENOSYS,
 * so that libc falls back to clone); the kernel's capability checks refuse raw sockets,
 * mknod of devices, chown and setuid with EPERM (binding a port below 1024 with EACCES); the
 * read-only root and /proc/sys refuse writes with EROFS; Landlock refuses opening what its
 * allow-list leaves out with EACCES.
 *
 * Calls busybox cannot make come from a small static C program (hardening_probe.c), built
 * with gcc into a temp copy of the image; those tests are ignored when gcc or a static libc
 * is missing.
 */
import assert from "node:assert/strict";
import {
  IMAGE,
  IS_ROOT,
  microTest,
  ok,
  run,
  type RunResult,
  sh,
  show,
  withTempDir,
} from "./_helpers.ts";

const HARDENED = ["--profile", "hardened"];

/** Host uid of the hardened container's root (the default range of the user plugin). */
const CONTAINER_ROOT = 1000000000;

/** What an attempt's script prints after the attempt, and the exit code it asks for. */
const TAIL = 'echo "status $?"; echo still-running; exit 7';

function hostHas(path: string): boolean {
  try {
    Deno.lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

/** Runs `ATTEMPT` in IMAGE and checks the container went on after it. */
async function attempt(
  cmd: string,
  opts: string[] = HARDENED,
  image = IMAGE,
): Promise<{ r: RunResult; status: number }> {
  const r = await run(["run", ...opts, image, "sh", "-c", `${cmd}; ${TAIL}`]);
  assert.equal(r.code, 7, `the container did not go on after \`${cmd}\`: ${show(r)}`);
  assert.match(r.stdout, /still-running\n$/, show(r));
  const m = r.stdout.match(/status (\d+)\n/);
  assert.ok(m, show(r));
  return { r, status: Number(m[1]) };
}

/** Parses the `Key:\tvalue` lines of /proc/self/status. */
function status(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.trim().split("\n")) {
    const i = line.indexOf(":");
    if (i > 0) out[line.slice(0, i)] = line.slice(i + 1).trim();
  }
  return out;
}

const SECURITY_KEYS = [
  "NoNewPrivs",
  "Seccomp",
  "Seccomp_filters",
  "CapInh",
  "CapPrm",
  "CapEff",
  "CapBnd",
  "CapAmb",
];

/** The security lines of the container's /proc/self/status (read by grep, not a shell pipe). */
async function securityStatus(opts: string[]): Promise<Record<string, string>> {
  const r = await run([
    "run",
    ...opts,
    IMAGE,
    "grep",
    "-E",
    "^(NoNewPrivs|Seccomp|Cap)",
    "/proc/self/status",
  ]);
  const s = status(ok(r));
  return Object.fromEntries(SECURITY_KEYS.map((k) => [k, s[k]]));
}

// --- the process's security state ------------------------------------------------------------

const NO_CAPS = "0000000000000000";
const DOCKER_CAPS = "00000000a80425fb";

microTest(
  "hardened: /proc/self/status shows NoNewPrivs 1, Seccomp 2 with one filter, all five capability sets empty",
  async () => {
    assert.deepEqual(await securityStatus(HARDENED), {
      NoNewPrivs: "1",
      Seccomp: "2",
      Seccomp_filters: "1",
      CapInh: NO_CAPS,
      CapPrm: NO_CAPS,
      CapEff: NO_CAPS,
      CapBnd: NO_CAPS,
      CapAmb: NO_CAPS,
    });
  },
);

microTest(
  "default: Docker's capability set 00000000a80425fb, Seccomp 2 with one filter, NoNewPrivs 0",
  async () => {
    assert.deepEqual(await securityStatus([]), {
      NoNewPrivs: "0",
      Seccomp: "2",
      Seccomp_filters: "1",
      CapInh: NO_CAPS,
      CapPrm: DOCKER_CAPS,
      CapEff: DOCKER_CAPS,
      CapBnd: DOCKER_CAPS,
      CapAmb: NO_CAPS,
    });
  },
);

microTest(
  "hardened --network host --cap-add NET_BIND_SERVICE: exit 125 before the run, one line saying why",
  async () => {
    const opts = [...HARDENED, "--network", "host", "--cap-add", "NET_BIND_SERVICE"];
    const r = await sh("echo ran", opts);
    assert.equal(r.code, 125, show(r));
    assert.equal(r.stdout, "", show(r));
    assert.equal(
      r.stderr,
      "micro: check: added capability NET_BIND_SERVICE cannot work with the host's network " +
        "namespace: capabilities held in the container's user namespace do not count there " +
        "(give the container a network namespace of its own with --network none, or run " +
        "without a user namespace)\n",
    );
    // In a network namespace of its own the capability works: root and nobody bind port 80.
    for (const user of ["0", "65534"]) {
      const bound = await sh(
        "nc -l -p 80 & sleep 0.3; netstat -ltn | grep -c ':80 '; kill %1",
        [...HARDENED, "--cap-add", "NET_BIND_SERVICE", "--user", user],
      );
      assert.equal(ok(bound).trim(), "1", show(bound));
    }
  },
);

microTest("--security-opt seccomp=unconfined: Seccomp 0 under default and hardened", async () => {
  for (const [opts, nnp] of [[[], "0"], [HARDENED, "1"]] as const) {
    const s = await securityStatus([...opts, "--security-opt", "seccomp=unconfined"]);
    assert.equal(s.Seccomp, "0", `${opts.join(" ")}: ${JSON.stringify(s)}`);
    assert.equal(s.Seccomp_filters, "0", `${opts.join(" ")}: ${JSON.stringify(s)}`);
    // no_new_privs is the profile's business, not the filter's
    assert.equal(s.NoNewPrivs, nnp, `${opts.join(" ")}: ${JSON.stringify(s)}`);
  }
});

// --- escape attempts with busybox ------------------------------------------------------------

interface BusyboxAttempt {
  /** What is tried, and the errno that must answer (with the layer that answers it). */
  what: string;
  cmd: string;
  stderr: RegExp;
  /** busybox `date -s` reports the failure but exits 0. */
  exitsZero?: boolean;
  /** A command run after the attempt whose output must match `afterOut`. */
  after?: string;
  afterOut?: RegExp;
  ignore?: string;
}

const BUSYBOX_ATTEMPTS: BusyboxAttempt[] = [
  {
    what: "mount -t tmpfs: EPERM (seccomp, no CAP_SYS_ADMIN)",
    cmd: "mount -t tmpfs none /tmp",
    // busybox says this for EPERM and EACCES; the probe below pins EPERM
    stderr: /mount: permission denied \(are you root\?\)/,
  },
  {
    what: "umount /proc: EPERM",
    cmd: "umount /proc",
    stderr: /can't unmount \/proc: Operation not permitted/,
  },
  {
    what: "umount /tmp: EPERM",
    cmd: "umount /tmp",
    stderr: /can't unmount \/tmp: Operation not permitted/,
  },
  {
    what: "unshare -U: EPERM",
    cmd: "unshare -U true",
    stderr: /unshare\(0x10000000\): Operation not permitted/,
  },
  {
    what: "unshare -m: EPERM",
    cmd: "unshare -m true",
    stderr: /unshare\(0x20000\): Operation not permitted/,
  },
  {
    what: "setns (nsenter -t 1 -m): EPERM",
    cmd: "nsenter -t 1 -m true",
    stderr: /setns\(\): can't reassociate to namespace 'mnt': Operation not permitted/,
  },
  {
    what: "reboot -f: EPERM",
    cmd: "reboot -f",
    stderr: /reboot: .*Operation not permitted/,
  },
  {
    what: "ping (a raw socket): refused (no CAP_NET_RAW; the probe pins EPERM)",
    cmd: "ping -c 1 -W 1 127.0.0.1",
    stderr: /ping: permission denied \(are you root\?\)/,
  },
  {
    what: "sethostname (hostname foo): EPERM, the name unchanged",
    cmd: "hostname micro-foo",
    stderr: /hostname: sethostname: Operation not permitted/,
    after: "hostname",
    afterOut: /^[0-9a-f]{12}$/m,
  },
  {
    what: "settimeofday (date -s): EPERM, the clock unchanged",
    cmd: "date -s '2001-02-03 04:05:06'",
    stderr: /date: can't set date: Operation not permitted/,
    exitsZero: true,
    after: "date +%Y",
    afterOut: /^20[2-9]\d$/m,
  },
  {
    what: "mknod of a block device: EPERM (no CAP_MKNOD)",
    cmd: "mknod /tmp/blk b 8 0",
    stderr: /mknod: \/tmp\/blk: Operation not permitted/,
    after: "test -e /tmp/blk && echo created || echo absent",
    afterOut: /^absent$/m,
  },
  {
    what: "writing to /: EROFS (read-only root)",
    cmd: "touch /micro-hardening-test",
    stderr: /touch: \/micro-hardening-test: Read-only file system/,
  },
  {
    what: "writing to /usr: EROFS",
    cmd: "mkdir /usr/micro-hardening-test",
    stderr: /mkdir: can't create directory '\/usr\/micro-hardening-test': Read-only file system/,
  },
  {
    what: "writing /proc/sys/kernel/hostname: EROFS",
    cmd: "echo x > /proc/sys/kernel/hostname",
    stderr: /can't create \/proc\/sys\/kernel\/hostname: Read-only file system/,
  },
  {
    what: "writing /proc/sys/kernel/core_pattern: EROFS",
    cmd: "echo x > /proc/sys/kernel/core_pattern",
    stderr: /can't create \/proc\/sys\/kernel\/core_pattern: Read-only file system/,
  },
  {
    what: "writing /proc/sysrq-trigger: EROFS",
    cmd: "echo h > /proc/sysrq-trigger",
    stderr: /can't create \/proc\/sysrq-trigger: Read-only file system/,
    ignore: hostHas("/proc/sysrq-trigger")
      ? undefined
      : "the host has no /proc/sysrq-trigger (kernel without CONFIG_MAGIC_SYSRQ)",
  },
  {
    what: "listing / (outside the Landlock allow-list): EACCES",
    cmd: "ls /",
    stderr: /ls: can't open '\/': Permission denied/,
  },
  {
    what: "listing /home/app (mode 0755, outside the Landlock allow-list): EACCES",
    cmd: "ls /home/app",
    stderr: /ls: can't open '\/home\/app': Permission denied/,
  },
];

for (const a of BUSYBOX_ATTEMPTS) {
  microTest(`hardened (busybox): ${a.what}; the container goes on`, async () => {
    const cmd = a.after ? `${a.cmd}; s=$?; ${a.after}; (exit $s)` : a.cmd;
    const { r, status: st } = await attempt(cmd);
    if (a.exitsZero) assert.equal(st, 0, show(r));
    else assert.notEqual(st, 0, `\`${a.cmd}\` succeeded: ${show(r)}`);
    assert.match(r.stderr, a.stderr, show(r));
    if (a.afterOut) assert.match(r.stdout, a.afterOut, show(r));
  }, { ignore: a.ignore });
}

microTest(
  "Landlock, not file modes, refuses /home/app: the default profile as nobody lists it",
  async () => {
    const { r, status: st } = await attempt("ls -a /home/app", ["--user", "nobody"]);
    assert.equal(st, 0, show(r));
    assert.match(r.stdout, /^\.\.$/m, show(r));
  },
);

microTest(
  "default and hardened: a shell pipeline works (pipe and pipe2 allowed, as Docker does)",
  async () => {
    for (const opts of [[], HARDENED]) {
      const r = await sh('echo piped | cat; echo "$(echo substituted)"', opts);
      assert.equal(r.code, 0, `${opts.join(" ")}: ${show(r)}`);
      assert.equal(r.stdout, "piped\nsubstituted\n", `${opts.join(" ")}: ${show(r)}`);
    }
  },
);

// Under hardened the child runs as the user namespace's root, which cannot write to an image
// owned by host root; the mount points a run needs must still be made (the parent lists them
// before the clone and removes them after), as they are under default.
microTest(
  "hardened: -v and --tmpfs on paths the image lacks: the mount points are made, used and removed",
  async () => {
    await withTempDir(async (dir) => {
      Deno.chmodSync(dir, 0o777); // writable by the container's nobody
      const r = await sh(
        "echo v > /micro-test-vol/f && cat /micro-test-vol/f && " +
          "echo t > /micro-test-tmpfs/f && cat /micro-test-tmpfs/f",
        [...HARDENED, "-v", `${dir}:/micro-test-vol`, "--tmpfs", "/micro-test-tmpfs"],
      );
      assert.equal(r.code, 0, show(r));
      assert.equal(r.stdout, "v\nt\n");
      assert.equal(Deno.readTextFileSync(`${dir}/f`), "v\n");
      for (const p of ["/micro-test-vol", "/micro-test-tmpfs"]) {
        assert.equal(hostHas(`${IMAGE}${p}`), false, `micro left ${p} in the image`);
      }
    });
  },
);

// --- the seccomp, read-only and LSM options ---------------------------------------------------

/** A Docker-format seccomp profile: everything allowed but mkdir, refused with EPERM (1). */
const DENY_MKDIR = {
  defaultAction: "SCMP_ACT_ALLOW",
  archMap: [
    { architecture: "SCMP_ARCH_X86_64", subArchitectures: ["SCMP_ARCH_X86", "SCMP_ARCH_X32"] },
    { architecture: "SCMP_ARCH_AARCH64", subArchitectures: ["SCMP_ARCH_ARM"] },
  ],
  syscalls: [{ names: ["mkdir", "mkdirat"], action: "SCMP_ACT_ERRNO", errnoRet: 1 }],
};

microTest(
  "--security-opt seccomp=FILE (Docker format, mkdir -> errno 1): mkdir fails with EPERM, the rest works",
  async () => {
    await withTempDir(async (dir) => {
      const file = `${dir}/deny-mkdir.json`;
      Deno.writeTextFileSync(file, JSON.stringify(DENY_MKDIR));
      // --tmpfs /tmp: the default profile's root is the image itself
      for (const opts of [["--tmpfs", "/tmp"], HARDENED]) {
        const { r, status: st } = await attempt(
          "mkdir /tmp/d; s=$?; echo written > /tmp/f && cat /tmp/f && ls /tmp; " +
            "grep -E '^Seccomp:' /proc/self/status; (exit $s)",
          [...opts, "--security-opt", `seccomp=${file}`],
        );
        const where = opts.join(" ");
        assert.notEqual(st, 0, `${where}: ${show(r)}`);
        assert.match(
          r.stderr,
          /mkdir: can't create directory '\/tmp\/d': Operation not permitted/,
          `${where}: ${show(r)}`,
        );
        assert.match(r.stdout, /^written\nf\nSeccomp:\s+2\n/, `${where}: ${show(r)}`);
      }
    });
  },
);

microTest("--read-only under default: / is read-only, /tmp and /run writable tmpfs", async () => {
  const { r, status: st } = await attempt(
    "touch /micro-ro-test; s=$?; touch /tmp/t && echo tmp-writable; touch /run/t && echo run-writable; " +
      "grep -E ' / | /tmp | /run ' /proc/self/mountinfo; (exit $s)",
    ["--read-only"],
  );
  assert.notEqual(st, 0, show(r));
  assert.match(r.stderr, /touch: \/micro-ro-test: Read-only file system/, show(r));
  const lines = r.stdout.trim().split("\n");
  assert.deepEqual(lines.slice(0, 2), ["tmp-writable", "run-writable"], show(r));
  const mounts = new Map(
    lines.slice(2, -2).map((l) => {
      const [pre, post] = l.split(" - ");
      const f = pre.split(" ");
      return [f[4], { opts: f[5], fstype: post.split(" ")[0] }];
    }),
  );
  assert.match(mounts.get("/")?.opts ?? "", /^ro\b/, show(r));
  for (const p of ["/tmp", "/run"]) {
    assert.match(mounts.get(p)?.opts ?? "", /^rw\b/, `${p}: ${show(r)}`);
    assert.equal(mounts.get(p)?.fstype, "tmpfs", `${p}: ${show(r)}`);
  }
  assert.equal(hostHas(`${IMAGE}/micro-ro-test`), false);
});

function lsmHost(): { apparmor: boolean; selinux: boolean } {
  const lsms = (() => {
    try {
      return Deno.readTextFileSync("/sys/kernel/security/lsm");
    } catch {
      return "";
    }
  })();
  return {
    apparmor: lsms.includes("apparmor") ||
      hostHas("/sys/module/apparmor/parameters/enabled") &&
        Deno.readTextFileSync("/sys/module/apparmor/parameters/enabled").trim() === "Y",
    selinux: lsms.includes("selinux") || hostHas("/sys/fs/selinux/enforce"),
  };
}

const LSM = lsmHost();

microTest(
  "--security-opt apparmor=x on a host without AppArmor: exit 125, one line naming AppArmor",
  async () => {
    for (const opts of [[], HARDENED]) {
      const r = await sh("echo ran", [...opts, "--security-opt", "apparmor=x"]);
      assert.equal(r.code, 125, show(r));
      assert.equal(r.stdout, "");
      const lines = r.stderr.trimEnd().split("\n");
      assert.equal(lines.length, 1, show(r));
      assert.match(lines[0], /^micro: .*requires AppArmor/, show(r));
    }
  },
  { ignore: LSM.apparmor ? "the host has AppArmor" : undefined },
);

microTest(
  "--security-opt label=type:... on a host without SELinux: exit 125, one line naming SELinux",
  async () => {
    const r = await sh("echo ran", ["--security-opt", "label=type:container_t"]);
    assert.equal(r.code, 125, show(r));
    const lines = r.stderr.trimEnd().split("\n");
    assert.equal(lines.length, 1, show(r));
    assert.match(lines[0], /^micro: .*requires SELinux/, show(r));
  },
  { ignore: LSM.selinux ? "the host has SELinux" : undefined },
);

microTest(
  "a profile with an optional AppArmor profile runs without AppArmor; `micro plan` shows it skipped",
  async () => {
    await withTempDir(async (dir) => {
      const profile = `${dir}/optional-apparmor.yaml`;
      Deno.writeTextFileSync(
        profile,
        "extends: hardened\nlsm:\n  apparmor: { profile: x, optional: true }\n",
      );
      assert.equal(ok(await sh("echo ran", ["--profile", profile])), "ran\n");
      const plan = ok(await run(["plan", "--profile", profile, IMAGE, "true"]));
      const skipped = plan.split("\n").filter((l) => /\bskipped\b/.test(l));
      assert.equal(skipped.length, 1, plan);
      assert.match(skipped[0], /\blsm\s+skipped\b.*apparmor/, plan);
      // Landlock, which the host has, is still there
      assert.match(plan, /\blsm\s+landlock\b/, plan);
    });
  },
  { ignore: LSM.apparmor ? "the host has AppArmor" : undefined },
);

// --- system calls through a C probe ------------------------------------------------------------

/** Why the probe cannot be built here, or undefined. */
const PROBE_MISSING: string | undefined = (() => {
  if (!IS_ROOT) return undefined; // every test is ignored anyway
  try {
    const out = new Deno.Command("gcc", { args: ["-print-file-name=libc.a"] }).outputSync();
    const path = new TextDecoder().decode(out.stdout).trim();
    if (!out.success || !path.startsWith("/")) return "no static libc (libc.a) for gcc -static";
    return undefined;
  } catch {
    return "no gcc to build the C probe (hardening_probe.c)";
  }
})();

const PROBE_SOURCE = new URL("./hardening_probe.c", import.meta.url).pathname;

/**
 * A copy of the test image holding the probe in /usr/local/bin (mode 0755), a setuid copy
 * owned by the container's root (host uid 1000000000) and one owned by host root, a file in
 * /home/app that file modes let anyone read, and empty /vol and /scratch mount points
 * (made here so that these tests do not depend on micro making them; see the test of -v and
 * --tmpfs on paths the image lacks). Removed after `fn`.
 */
async function withProbeImage(fn: (image: string, tmp: string) => Promise<void>): Promise<void> {
  await withTempDir(async (tmp) => {
    Deno.chmodSync(tmp, 0o755); // traversable by the container's root
    const image = `${tmp}/image`;
    const cp = await new Deno.Command("cp", { args: ["-a", IMAGE, image] }).output();
    assert.ok(cp.success, new TextDecoder().decode(cp.stderr));
    const bin = `${image}/usr/local/bin`;
    Deno.mkdirSync(bin, { recursive: true });
    Deno.chmodSync(`${image}/usr/local`, 0o755);
    Deno.chmodSync(bin, 0o755);
    const cc = await new Deno.Command("gcc", {
      args: ["-static", "-O2", "-o", `${bin}/probe`, PROBE_SOURCE],
    }).output();
    assert.ok(cc.success, `gcc: ${new TextDecoder().decode(cc.stderr)}`);
    Deno.chmodSync(`${bin}/probe`, 0o755);
    for (
      const [name, owner] of [["probe-suid", CONTAINER_ROOT], ["probe-suid-hostroot", 0]] as const
    ) {
      Deno.copyFileSync(`${bin}/probe`, `${bin}/${name}`);
      Deno.chownSync(`${bin}/${name}`, owner, owner);
      Deno.chmodSync(`${bin}/${name}`, 0o4755);
    }
    Deno.writeTextFileSync(`${image}/home/app/secret`, "app's file\n");
    Deno.chownSync(`${image}/home/app/secret`, 1000, 1000);
    Deno.chmodSync(`${image}/home/app/secret`, 0o644);
    for (const d of ["vol", "scratch"]) {
      Deno.mkdirSync(`${image}/${d}`);
      Deno.chmodSync(`${image}/${d}`, 0o755);
    }
    await fn(image, tmp);
  }, "micro-test-hardening-");
}

interface ProbeCase {
  call: string;
  args?: string[];
  errno: string;
  /** Which check refuses it. */
  by: string;
}

/** Calls a hardened container must not make, with the errno and the layer that refuses them. */
const REFUSED: ProbeCase[] = [
  { call: "mount", errno: "EPERM", by: "seccomp" },
  { call: "umount", errno: "EPERM", by: "seccomp" },
  { call: "unshare-user", errno: "EPERM", by: "seccomp" },
  { call: "unshare-mnt", errno: "EPERM", by: "seccomp" },
  { call: "clone-newuser", errno: "EPERM", by: "seccomp, clone flag check" },
  { call: "clone-newns", errno: "EPERM", by: "seccomp, clone flag check" },
  { call: "clone3", errno: "ENOSYS", by: "seccomp, so that libc falls back to clone" },
  { call: "setns", errno: "EPERM", by: "seccomp" },
  { call: "reboot", errno: "EPERM", by: "seccomp" },
  { call: "kexec_load", errno: "EPERM", by: "seccomp" },
  { call: "kexec_file_load", errno: "EPERM", by: "seccomp" },
  { call: "init_module", errno: "EPERM", by: "seccomp" },
  { call: "finit_module", errno: "EPERM", by: "seccomp" },
  { call: "delete_module", errno: "EPERM", by: "seccomp" },
  { call: "bpf", errno: "EPERM", by: "seccomp" },
  { call: "perf_event_open", errno: "EPERM", by: "seccomp" },
  { call: "keyctl", errno: "EPERM", by: "seccomp" },
  { call: "add_key", errno: "EPERM", by: "seccomp" },
  { call: "request_key", errno: "EPERM", by: "seccomp" },
  { call: "open_by_handle_at", errno: "EPERM", by: "seccomp" },
  { call: "userfaultfd", errno: "EPERM", by: "seccomp" },
  { call: "swapon", errno: "EPERM", by: "seccomp" },
  { call: "acct", errno: "EPERM", by: "seccomp" },
  { call: "chroot", errno: "EPERM", by: "seccomp" },
  { call: "pivot_root", errno: "EPERM", by: "seccomp" },
  { call: "iopl", errno: "EPERM", by: "seccomp" },
  { call: "syslog", errno: "EPERM", by: "seccomp" },
  { call: "io_uring_setup", errno: "EPERM", by: "seccomp" },
  { call: "sethostname", errno: "EPERM", by: "seccomp" },
  { call: "settimeofday", errno: "EPERM", by: "seccomp" },
  { call: "clock_settime", errno: "EPERM", by: "seccomp" },
  { call: "vsock", errno: "EPERM", by: "seccomp, socket family check" },
  {
    call: "personality",
    args: ["0x400000"],
    errno: "EPERM",
    by: "seccomp, READ_IMPLIES_EXEC refused",
  },
  { call: "raw-inet", errno: "EPERM", by: "no CAP_NET_RAW" },
  { call: "raw-packet", errno: "EPERM", by: "no CAP_NET_RAW" },
  { call: "mknod-block", errno: "EPERM", by: "no CAP_MKNOD" },
  { call: "setuid", errno: "EPERM", by: "no CAP_SETUID" },
  { call: "chown", args: ["/tmp", "0"], errno: "EPERM", by: "no CAP_CHOWN" },
  { call: "bind", args: ["80"], errno: "EACCES", by: "no CAP_NET_BIND_SERVICE" },
  { call: "open", args: ["/", "d"], errno: "EACCES", by: "Landlock" },
  { call: "open", args: ["/home/app/secret"], errno: "EACCES", by: "Landlock" },
  { call: "open", args: ["/micro-x", "w"], errno: "EROFS", by: "read-only root" },
  { call: "open", args: ["/usr/micro-x", "w"], errno: "EROFS", by: "read-only root" },
];

/** Calls Docker's default policy allows, which a container needs. */
const ALLOWED: ProbeCase[] = [
  { call: "pipe", errno: "ok", by: "Docker's allow-list" },
  { call: "pipe2", errno: "ok", by: "Docker's allow-list" },
  { call: "getrandom", errno: "ok", by: "Docker's allow-list" },
  { call: "personality", args: ["0xffffffff"], errno: "ok", by: "the query" },
  { call: "open", args: ["/etc/passwd"], errno: "ok", by: "Landlock allows /etc" },
];

function probeLine(c: ProbeCase): string {
  return `probe ${[c.call, ...(c.args ?? [])].join(" ")}`;
}

microTest(
  "hardened, through a C probe in a copy of the image",
  async (t) => {
    await withProbeImage(async (image, tmp) => {
      for (const c of [...REFUSED, ...ALLOWED]) {
        const cmd = probeLine(c);
        const name = c.errno === "ok" ? "allowed" : c.errno;
        await t.step(`${cmd.slice(6)}: ${name} (${c.by}); the container goes on`, async () => {
          const { r, status: st } = await attempt(cmd, HARDENED, image);
          assert.match(r.stdout, new RegExp(`^${c.call} ${c.errno}\\n`), show(r));
          assert.equal(st, c.errno === "ok" ? 0 : 1, show(r));
        });
      }

      await t.step(
        "as the container's root (uid 0, no capabilities) the same calls fail",
        async () => {
          // setuid(0) and chown to 0 are no-ops for root
          const cases = REFUSED.filter((c) => c.call !== "setuid" && c.call !== "chown");
          const script = cases.map(probeLine).join("; ");
          const r = await run(["run", ...HARDENED, "--user", "0", image, "sh", "-c", script]);
          const got = r.stdout.trim().split("\n");
          assert.deepEqual(got, cases.map((c) => `${c.call} ${c.errno}`), show(r));
        },
      );

      // Docker's profile allows ptrace on kernels >= 4.8; hardened refuses it (and
      // process_vm_readv/writev) through seccomp.deny, whatever the target.
      await t.step("ptrace of a host process: EPERM (seccomp deny)", async () => {
        const { r } = await attempt(`probe ptrace ${Deno.pid}`, HARDENED, image);
        assert.match(r.stdout, /^ptrace EPERM\n/, show(r));
      });

      await t.step("ptrace of a process of the same uid: EPERM (seccomp deny)", async () => {
        const { r } = await attempt("sleep 5 & probe ptrace $!", HARDENED, image);
        assert.match(r.stdout, /^ptrace EPERM\n/, show(r));
      });

      await t.step(
        "ptrace of another uid's process (PID 1, root): EPERM (no CAP_SYS_PTRACE)",
        async () => {
          // SETUID and SETGID only to make a second uid; the tracer drops them with its uid.
          const { r } = await attempt(
            "probe as 1000 ids; probe as 1000 ptrace 1",
            [...HARDENED, "--user", "0", "--cap-add", "SETUID", "--cap-add", "SETGID"],
            image,
          );
          assert.match(r.stdout, /^1000 1000 1000\nptrace EPERM\n/, show(r));
        },
      );

      await t.step(
        "a setuid binary owned by the container's root does not raise the uid (no_new_privs)",
        async () => {
          const { r } = await attempt(
            "probe-suid ids; probe-suid-hostroot ids; probe ids",
            HARDENED,
            image,
          );
          assert.match(r.stdout, /^(65534 65534 65534\n){3}/, show(r));
        },
      );

      await t.step(
        "control: without no_new_privs (default profile) the setuid binary works",
        async () => {
          const suid = await attempt("probe-suid-hostroot ids", ["--user", "app"], image);
          assert.match(suid.r.stdout, /^1000 0 0\n/, show(suid.r));
          const nnp = await attempt(
            "probe-suid-hostroot ids",
            ["--user", "app", "--security-opt", "no-new-privileges"],
            image,
          );
          assert.match(nnp.r.stdout, /^1000 1000 1000\n/, show(nnp.r));
        },
      );

      await t.step(
        "chmod u+s on a copy in /tmp: allowed (own file) but it cannot run (Landlock: no execute in /tmp; nosuid)",
        async () => {
          const { r, status: st } = await attempt(
            "cp /usr/local/bin/probe /tmp/p && chmod u+s /tmp/p && ls -ln /tmp/p; " +
              "probe chown /tmp/p 0; /tmp/p ids",
            HARDENED,
            image,
          );
          assert.match(r.stdout, /^-rwsr-xr-x\s+1\s+65534\s+65534\s/, show(r));
          assert.match(r.stdout, /^chown EPERM$/m, show(r));
          assert.equal(st, 126, show(r));
          assert.match(r.stderr, /\/tmp\/p: Permission denied/, show(r));
          assert.doesNotMatch(r.stdout, /^\d+ 0 /m, show(r));
        },
      );

      await t.step(
        "volumes are usable (Landlock allows them, binds keep execute); a setuid copy there stays 65534",
        async () => {
          const vol = `${tmp}/vol`;
          Deno.mkdirSync(vol);
          Deno.chmodSync(vol, 0o777);
          const { r, status: st } = await attempt(
            "cp /usr/local/bin/probe /vol/p && chmod u+s /vol/p && /vol/p ids && " +
              "echo hi > /scratch/f && cat /scratch/f && cp /usr/local/bin/probe /scratch/p && " +
              "/scratch/p ids",
            [...HARDENED, "-v", `${vol}:/vol`, "--tmpfs", "/scratch"],
            image,
          );
          assert.match(r.stdout, /^65534 65534 65534\nhi\n/, show(r));
          // a tmpfs is writable, not executable
          assert.equal(st, 126, show(r));
          assert.match(r.stderr, /\/scratch\/p: Permission denied/, show(r));
        },
      );

      await t.step("reading a file outside the Landlock allow-list: EACCES", async () => {
        const { r, status: st } = await attempt("cat /home/app/secret", HARDENED, image);
        assert.notEqual(st, 0, show(r));
        assert.match(r.stderr, /cat: can't open '\/home\/app\/secret': Permission denied/);
        // control: file modes let nobody read it
        const ctl = await attempt("cat /home/app/secret", ["--user", "nobody"], image);
        assert.equal(ctl.r.stdout, "app's file\nstatus 0\nstill-running\n", show(ctl.r));
      });

      await t.step(
        "--cap-add NET_BIND_SERVICE: nobody binds port 80 and nothing more",
        async () => {
          const listening = "grep -qE ':0050 0+:0000 0A' /proc/net/tcp /proc/net/tcp6";
          const { r } = await attempt(
            [
              "grep -E '^Cap' /proc/self/status",
              "id -u",
              "nc -l -p 80 > /tmp/got &",
              `i=0; until ${listening}; do i=$((i+1)); [ $i -ge 100 ] && break; sleep 0.05; done`,
              `${listening} && echo listening`,
              "nc 127.0.0.1 80 < /etc/hostname; wait",
              "cat /tmp/got",
              "probe raw-inet; probe raw-packet; probe chown /tmp/got 0; probe mount; probe setuid",
            ].join("\n"),
            [...HARDENED, "--cap-add", "NET_BIND_SERVICE"],
            image,
          );
          const lines = r.stdout.trim().split("\n");
          const caps = status(lines.slice(0, 5).join("\n"));
          assert.equal(caps.CapEff, "0000000000000400", show(r));
          assert.equal(caps.CapPrm, "0000000000000400", show(r));
          assert.equal(caps.CapAmb, "0000000000000400", show(r));
          assert.equal(caps.CapBnd, "0000000000000400", show(r));
          assert.deepEqual(lines.slice(5, 13), [
            "65534",
            "listening",
            "micro",
            "raw-inet EPERM",
            "raw-packet EPERM",
            "chown EPERM",
            "mount EPERM",
            "setuid EPERM",
          ], show(r));
        },
      );
    });
  },
  { ignore: PROBE_MISSING },
);
