/**
 * AppArmor on the real kernel: `--security-opt apparmor=PROFILE` makes the container's
 * command run confined by PROFILE, and the profile's rules are enforced inside the
 * container, with the `default` and the `hardened` profile.
 *
 * Needs AppArmor enabled (`/sys/kernel/security/apparmor`) and `apparmor_parser` to load a
 * test profile; ignored with the reason printed otherwise. The dev and CI hosts have no
 * AppArmor: this file runs in the QEMU guest of `make test-vm` (Debian's kernel booted with
 * `apparmor=1 security=apparmor`), with the parser tools/vm/prepare.sh unpacks from Debian's
 * `apparmor` package into `.cache/vm/apparmor/` (not installed on the host; the guest sees the
 * project). `$APPARMOR_PARSER`, or one installed in /usr/sbin or /sbin, is used instead when
 * present.
 *
 * micro writes `exec PROFILE` to `/proc/thread-self/attr/apparmor/exec` in the child (op
 * `lsm-label`), after the capabilities and before no_new_privs, Landlock and seccomp; the
 * kernel switches to PROFILE at the execve that follows. runc does the same write
 * (libcontainer/apparmor: `exec NAME` to attr/apparmor/exec, before no_new_privs).
 *
 * no_new_privs and AppArmor, as the kernel decides (security/apparmor/domain.c) and as the
 * steps below measure:
 * - a task that is *unconfined* may enter any profile under no_new_privs (it can only lose
 *   rights): micro runs unconfined here, so `--profile hardened` with a label works;
 * - a *confined* task under no_new_privs may not move to another profile: writing
 *   `exec OTHER` fails with EPERM; it may only stack one on its own (`stack OTHER`: the
 *   intersection of both, never more);
 * - so when micro itself runs confined (here: started under the profile micro-outer), its
 *   write of `exec PROFILE` succeeds (it comes before no_new_privs), but the execve under
 *   no_new_privs is refused with EPERM (audit: operation="exec" info="no new privs"); without
 *   no_new_privs (the default profile) the transition works. runc has the same order and so
 *   the same outcome.
 *
 * micro's container process moves to PROFILE when it execs micro's exec trampoline, an
 * in-memory file (memfd) that AppArmor names `/` (a disconnected path): a confined micro's
 * profile (OUTER) must name the target, `change_profile -> PROFILE,`; the bare
 * `change_profile,` does not cover that exec, alone or beside the named rule (measured in
 * the guest: "change_profile onexec" denied, name="/").
 *
 * Each test loads its profiles with `apparmor_parser -r` from a temp file and removes them
 * with `apparmor_parser -R` at the end, whatever happened. The guest emulates its CPU (30-80
 * times slower), so timeouts are stretched there (env MICRO_CGROUP=v2 marks it).
 */
import assert from "node:assert/strict";
import {
  IMAGE,
  MICRO,
  microTest,
  REPO,
  run,
  type RunOptions,
  type RunResult,
  show,
  withTempDir,
} from "./_helpers.ts";

/** Timeouts are multiplied by this in the (emulated) guest. */
const X = Deno.env.get("MICRO_CGROUP") === "v2" ? 8 : 1;
const RUN: RunOptions = { timeoutMs: 30_000 * X };

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

function executable(path: string): boolean {
  try {
    const st = Deno.statSync(path);
    return st.isFile && ((st.mode ?? 0) & 0o111) !== 0;
  } catch {
    return false;
  }
}

/** The apparmor_parser to load profiles with, or undefined. */
const PARSER = [
  Deno.env.get("APPARMOR_PARSER"),
  `${REPO}/.cache/vm/apparmor/root/sbin/apparmor_parser`,
  "/usr/sbin/apparmor_parser",
  "/sbin/apparmor_parser",
].find((p) => p !== undefined && p !== "" && executable(p));

/** Why these tests cannot run here, or undefined. */
const REASON: string | undefined = !exists("/sys/kernel/security/apparmor")
  ? "AppArmor is not enabled on this host (no /sys/kernel/security/apparmor); " +
    "`make test-vm` runs this file in a guest that has it"
  : PARSER === undefined
  ? "no apparmor_parser (tools/vm/prepare.sh unpacks one into .cache/vm/apparmor/; " +
    "or set APPARMOR_PARSER)"
  : undefined;

/** The profile the containers run under, and the one it may change or stack to. */
const PROFILE = "micro-test";
const CHILD = "micro-test-child";
/** The profile micro itself runs under in the "micro confined" steps. */
const OUTER = "micro-outer";
/** The file PROFILE refuses to let anyone write. */
const DENIED = "/tmp/apparmor-denied";

/*
 * `file,` allows every file access (read, write, link, lock, mmap, exec inheriting the
 * profile), less the one denied file; the other rules allow everything of their kind.
 * `change_profile,` lets the command move to (or stack) any profile, for the no_new_privs
 * steps: stacking too needs a change_profile rule, and apparmor_parser 3.0.8 refuses the
 * narrower `change_profile -> &NAME` ("does not support stacking of named transitions").
 *
 * The label applies at execve, after pivot_root, so AppArmor sees the container's paths
 * (`/tmp/apparmor-denied`). attach_disconnected matters for what lives outside the new root:
 * without it, in the guest, `ls -l /proc/self/fd` in the container was refused a stat of the
 * stdout micro passed in (the host's /dev/console: "Failed name lookup - disconnected path").
 */
const PROFILES = `
profile ${PROFILE} flags=(attach_disconnected,mediate_deleted) {
  file,
  deny ${DENIED} w,
  capability,
  network,
  signal,
  ptrace,
  mount,
  umount,
  pivot_root,
  unix,
  change_profile,
}

profile ${CHILD} flags=(attach_disconnected,mediate_deleted) {
  file,
  capability,
  network,
  signal,
  ptrace,
  unix,
}

profile ${OUTER} flags=(attach_disconnected,mediate_deleted) {
  file,
  capability,
  network,
  signal,
  ptrace,
  mount,
  umount,
  remount,
  pivot_root,
  unix,
  change_profile -> ${PROFILE},
}
`;

const dec = new TextDecoder();

/** Runs apparmor_parser (with no config file: the kernel's own features) on `args`. */
function parser(args: string[]): void {
  const o = new Deno.Command(PARSER!, {
    args: ["--config-file=/dev/null", "--skip-cache", ...args],
    stdout: "piped",
    stderr: "piped",
  }).outputSync();
  const err = dec.decode(o.stderr).trim();
  if (!o.success) throw new Error(`apparmor_parser ${args.join(" ")} failed: ${err}`);
  if (err) console.log(`apparmor_parser ${args.join(" ")}: ${err}`);
}

/** The names of the loaded profiles, with their modes ("micro-test (enforce)"). */
function loaded(): string[] {
  try {
    return Deno.readTextFileSync("/sys/kernel/security/apparmor/profiles").trim().split("\n");
  } catch {
    return [];
  }
}

/** Runs `fn` with PROFILES loaded; unloads them afterwards, whatever happened. */
async function withProfiles(fn: () => Promise<void>): Promise<void> {
  await withTempDir(async (dir) => {
    const file = `${dir}/micro-test.aa`;
    Deno.writeTextFileSync(file, PROFILES);
    parser(["--replace", file]);
    try {
      const names = loaded();
      for (const p of [PROFILE, CHILD, OUTER]) {
        assert.ok(names.includes(`${p} (enforce)`), `${p} not loaded: ${names.join(", ")}`);
      }
      await fn();
    } finally {
      parser(["--remove", file]);
      const ours = [PROFILE, CHILD, OUTER].map((p) => `${p} `);
      const left = loaded().filter((l) => ours.some((p) => l.startsWith(p)));
      assert.deepEqual(left, [], "the test profiles are still loaded");
    }
  }, "micro-apparmor-");
}

function aaTest(name: string, fn: (t: Deno.TestContext) => Promise<void>): void {
  microTest(name, fn, { ignore: REASON });
}

/** `micro run OPTS... IMAGE sh -c SCRIPT` with the guest's longer timeout. */
function sh(script: string, opts: string[]): Promise<RunResult> {
  return run(["run", ...opts, IMAGE, "sh", "-c", script], RUN);
}

const DEFAULT = ["--tmpfs", "/tmp"]; // the denied file is not written into the image
const HARDENED = ["--profile", "hardened"]; // a read-only root with a tmpfs /tmp
const CONFINED = ["--security-opt", `apparmor=${PROFILE}`];

/**
 * What the container reports: its label (both files), whether a write to another /tmp file
 * and to DENIED worked, and its NoNewPrivs; the shell's own errors are on stderr.
 */
const PROBE = [
  "cat /proc/self/attr/current",
  "cat /proc/self/attr/apparmor/current",
  "echo ok >/tmp/allowed && echo allowed-written",
  `echo x >${DENIED} && echo denied-written`,
  "grep NoNewPrivs /proc/self/status",
  "exit 0",
].join("\n");

interface Probe {
  current: string;
  apparmorCurrent: string;
  allowed: boolean;
  denied: boolean;
  noNewPrivs: string;
}

function probe(r: RunResult): Probe {
  assert.equal(r.code, 0, show(r));
  const lines = r.stdout.split("\n");
  return {
    current: lines[0],
    apparmorCurrent: lines[1],
    allowed: lines.includes("allowed-written"),
    denied: lines.includes("denied-written"),
    noNewPrivs: (r.stdout.match(/^NoNewPrivs:\s*(\d)/m) ?? [])[1] ?? "?",
  };
}

/** The container ran as PROFILE in enforce mode, DENIED refused with EACCES, the rest allowed. */
function assertConfined(r: RunResult, noNewPrivs: string): void {
  const p = probe(r);
  assert.equal(p.current, `${PROFILE} (enforce)`, show(r));
  assert.equal(p.apparmorCurrent, `${PROFILE} (enforce)`, show(r));
  assert.ok(p.allowed, `a write to /tmp/allowed was refused: ${show(r)}`);
  assert.ok(!p.denied, `the write to ${DENIED} went through: ${show(r)}`);
  assert.match(r.stderr, new RegExp(`${DENIED}: Permission denied`), show(r));
  assert.equal(p.noNewPrivs, noNewPrivs, show(r));
}

aaTest(
  "micro plan --security-opt apparmor=PROFILE: an lsm-label op writing `exec PROFILE`, " +
    "after the capabilities and before no_new_privs, Landlock and seccomp",
  async () => {
    const cases: [string[], string[]][] = [
      // default: seccomp is loaded before the uid switch (credentials), as it has no
      // no_new_privs
      [[], ["capabilities", "lsm-label"]],
      [HARDENED, ["capabilities", "lsm-label", "no-new-privs", "landlock", "seccomp"]],
    ];
    for (const [opts, restrict] of cases) {
      const r = await run(["plan", ...opts, ...CONFINED, IMAGE, "true"], RUN);
      assert.equal(r.code, 0, show(r));
      const ops = r.stdout.split("\n").map((l) => l.trim().split(/\s+/));
      // "N  PHASE  PLUGIN  KIND ARGS..."
      assert.deepEqual(ops.filter((o) => o[1] === "restrict").map((o) => o[3]), restrict, r.stdout);
      const label = r.stdout.split("\n").filter((l) => /\blsm-label\b/.test(l));
      assert.equal(label.length, 1, r.stdout);
      assert.match(
        label[0],
        new RegExp(
          `restrict +lsm +lsm-label file=/proc/thread-self/attr/apparmor/exec ` +
            `value="exec ${PROFILE}"$`,
        ),
      );
      assert.doesNotMatch(r.stdout, /\bskipped\b/, r.stdout);
    }
  },
);

aaTest(
  "--security-opt apparmor=PROFILE: the command runs confined, the profile is enforced",
  async (t) => {
    await withProfiles(async () => {
      await t.step("without it: unconfined, the same write works (the control)", async () => {
        const p = probe(await sh(PROBE, DEFAULT));
        assert.equal(p.current, "unconfined");
        assert.ok(p.allowed && p.denied, JSON.stringify(p));
      });

      await t.step(
        `default profile: label "${PROFILE} (enforce)", ${DENIED} refused (EACCES)`,
        async () => {
          assertConfined(await sh(PROBE, [...DEFAULT, ...CONFINED]), "0");
        },
      );

      await t.step(
        "hardened profile (user namespace, nobody, no_new_privs, Landlock, seccomp): " +
          "the same, as micro is unconfined when it sets the label",
        async () => {
          assertConfined(await sh(PROBE, [...HARDENED, ...CONFINED]), "1");
        },
      );

      const change = (how: "exec" | "stack") =>
        `echo -n '${how} ${CHILD}' >/proc/self/attr/apparmor/exec && echo ${how}-set; ` +
        "cat /proc/self/attr/current";

      await t.step(
        "without no_new_privs the confined command may change to a profile it allows",
        async () => {
          const r = await sh(`${change("exec")}; exit 0`, [...DEFAULT, ...CONFINED]);
          assert.equal(r.code, 0, show(r));
          assert.deepEqual(r.stdout.split("\n"), ["exec-set", `${CHILD} (enforce)`, ""], show(r));
        },
      );

      await t.step(
        "under no_new_privs (hardened) it may not change profile (EPERM), only stack one",
        async () => {
          const r = await sh(`${change("exec")}; ${change("stack")}; exit 0`, [
            ...HARDENED,
            ...CONFINED,
          ]);
          assert.equal(r.code, 0, show(r));
          assert.deepEqual(r.stdout.split("\n"), [
            `${PROFILE} (enforce)`,
            "stack-set",
            `${PROFILE}//&${CHILD} (enforce)`,
            "",
          ], show(r));
          assert.match(r.stderr, /Operation not permitted/, show(r));
        },
      );

      /** `micro run OPTS... IMAGE sh -c SCRIPT` with micro itself confined by OUTER. */
      const confinedMicro = (script: string, opts: string[]) =>
        run([
          "-c",
          `echo -n 'exec ${OUTER}' >/proc/self/attr/apparmor/exec && exec "$@"`,
          "sh",
          MICRO,
          "run",
          ...opts,
          IMAGE,
          "sh",
          "-c",
          script,
        ], { ...RUN, cmd: "sh" });
      const LABEL = "cat /proc/self/attr/current";

      await t.step(
        `micro itself confined (${OUTER}), no no_new_privs: the command runs as ${PROFILE}`,
        async () => {
          const r = await confinedMicro(LABEL, [...DEFAULT, ...CONFINED]);
          assert.equal(r.code, 0, show(r));
          assert.equal(r.stdout, `${PROFILE} (enforce)\n`, show(r));
          // The control: the same confined micro without a label passes its own on.
          const c = await confinedMicro(LABEL, DEFAULT);
          assert.equal(c.stdout, `${OUTER} (enforce)\n`, show(c));
        },
      );

      await t.step(
        `micro itself confined (${OUTER}), hardened: the execve is refused (EPERM, the ` +
          "kernel's no_new_privs rule; runc sets its label at the same point)",
        async () => {
          const r = await confinedMicro(LABEL, [...HARDENED, ...CONFINED]);
          assert.equal(r.code, 126, show(r));
          assert.equal(r.stdout, "", show(r));
          assert.match(r.stderr, /^micro: exec: process: execve path=sh: EPERM/, show(r));
        },
      );

      await t.step("apparmor=unconfined: the command runs unconfined", async () => {
        const r = await sh("cat /proc/self/attr/current", [
          ...DEFAULT,
          "--security-opt",
          "apparmor=unconfined",
        ]);
        assert.equal(r.code, 0, show(r));
        assert.equal(r.stdout, "unconfined\n", show(r));
      });

      await t.step(
        "a profile that is not loaded: exit 125, the lsm-label op and ENOENT",
        async () => {
          const r = await sh("echo ran", [
            ...DEFAULT,
            "--security-opt",
            "apparmor=micro-test-not-loaded",
          ]);
          assert.equal(r.code, 125, show(r));
          assert.equal(r.stdout, "", show(r));
          const lines = r.stderr.trim().split("\n");
          assert.equal(lines.length, 1, show(r));
          assert.match(lines[0], /^micro: .*lsm-label .*micro-test-not-loaded.*: ENOENT/, show(r));
        },
      );
    });
  },
);
