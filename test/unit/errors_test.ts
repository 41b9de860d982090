/** The one-line error messages of core/errors.ts, with exact expected strings. */
import assert from "node:assert/strict";
import {
  errnoName,
  EXIT_CANNOT_INVOKE,
  EXIT_MICRO,
  EXIT_NOT_FOUND,
  firstLine,
  hintFor,
  MicroError,
  MicroErrors,
  oneLine,
  usageError,
} from "../../core/errors.ts";

Deno.test("a bare message prints as it is, exits 125", () => {
  const e = new MicroError('profile "x" not found');
  assert.equal(e.line(), 'profile "x" not found');
  assert.equal(e.message, 'profile "x" not found');
  assert.equal(e.name, "MicroError");
  assert.equal(e.exitCode, 125);
  assert.ok(e instanceof Error);
});

Deno.test("a message with a hint puts the hint in parentheses", () => {
  assert.equal(
    usageError("unknown flag --foo", "see micro run --help").line(),
    "unknown flag --foo (see micro run --help)",
  );
  assert.equal(usageError("no image").line(), "no image");
  assert.equal(usageError("no image").exitCode, EXIT_MICRO);
});

Deno.test("phase and plugin prefix the message", () => {
  assert.equal(new MicroError("gone", { phase: "cleanup" }).line(), "cleanup: gone");
  assert.equal(
    new MicroError("gone", { phase: "cleanup", plugin: "cgroups" }).line(),
    "cleanup: cgroups: gone",
  );
});

Deno.test("an op with paths, errno and hint reads as DESIGN.md §6 shows", () => {
  const e = new MicroError("", {
    phase: "rootfs",
    plugin: "mount",
    op: "mount",
    paths: { src: "/data", dst: "/srv", flags: "MS_BIND|MS_REC" },
    errno: 2,
    hint: "source does not exist",
  });
  assert.equal(
    e.line(),
    "rootfs: mount: mount src=/data dst=/srv flags=MS_BIND|MS_REC: ENOENT (source does not exist)",
  );
});

Deno.test("an op without paths prints just the op", () => {
  assert.equal(
    new MicroError("", { phase: "prepare", plugin: "engine", op: "pipe2", errno: 24 }).line(),
    "prepare: engine: pipe2: EMFILE",
  );
  assert.equal(new MicroError("", { op: "pipe2", paths: {} }).line(), "pipe2");
});

Deno.test("an op with a message puts the message after the op and paths", () => {
  assert.equal(
    new MicroError("short write", { op: "write", paths: { path: "/proc/1/uid_map" } }).line(),
    "write path=/proc/1/uid_map: short write",
  );
  assert.equal(
    new MicroError("short write", { phase: "attach", op: "write", errno: 5, hint: "h" }).line(),
    "attach: write: short write: EIO (h)",
  );
});

Deno.test("an errno without an op follows the message", () => {
  assert.equal(new MicroError("waitpid 7", { errno: 10 }).line(), "waitpid 7: ECHILD");
  assert.equal(new MicroError("x", { errno: 0 }).line(), "x: errno 0");
  assert.equal(new MicroError("x", { errno: 200 }).line(), "x: errno 200");
});

Deno.test("exit codes follow Docker: 125 micro, 126 cannot invoke, 127 not found", () => {
  assert.equal(EXIT_MICRO, 125);
  assert.equal(EXIT_CANNOT_INVOKE, 126);
  assert.equal(EXIT_NOT_FOUND, 127);
  assert.equal(new MicroError("x", { exitCode: EXIT_NOT_FOUND }).exitCode, 127);
  assert.equal(new MicroError("x", { exitCode: 0 }).exitCode, 0);
});

Deno.test("MicroErrors shows every error, one per line", () => {
  const errs = [
    new MicroError("bad key", { phase: "profile" }),
    new MicroError("", { op: "check", paths: { bind: "/x" }, hint: "must exist" }),
  ];
  const all = new MicroErrors(errs);
  assert.equal(all.message, "profile: bad key\ncheck bind=/x (must exist)");
  assert.equal(all.name, "MicroErrors");
  assert.equal(all.errors, errs);
  assert.equal(new MicroErrors([]).message, "");
});

Deno.test("errnoName names known errnos and numbers the rest", () => {
  assert.equal(errnoName(1), "EPERM");
  assert.equal(errnoName(2), "ENOENT");
  assert.equal(errnoName(13), "EACCES");
  assert.equal(errnoName(75), "EOVERFLOW");
  assert.equal(errnoName(95), "EOPNOTSUPP");
  assert.equal(errnoName(6), "errno 6");
});

Deno.test("hintFor prefers the op's own hint, then the errno's, else none", () => {
  assert.equal(hintFor("mount", 2), "source or destination does not exist");
  assert.equal(hintFor("bind-root", 2), "the image directory does not exist");
  assert.equal(hintFor("execve", 2), "command not found in the container; check the path and PATH");
  assert.equal(
    hintFor("execve", 13),
    "the command is not executable, or its file system is mounted noexec",
  );
  assert.equal(
    hintFor("proc-write", 1),
    "the id map is not allowed: a rootless caller may map only its own uid and gid",
  );
  // EOVERFLOW has a hint of its own, whatever the op.
  assert.equal(hintFor("mknod", 75), "an id is not mapped into the container's user namespace");
  assert.equal(hintFor("mount", 75), "an id is not mapped into the container's user namespace");
  assert.equal(hintFor("mount", 16), undefined);
  assert.equal(hintFor("", 2), undefined);
  assert.equal(hintFor("mount", 999), undefined);
});

Deno.test("a path value with spaces is quoted in the line, once", () => {
  const e = new MicroError("", {
    phase: "restrict",
    plugin: "lsm",
    op: "lsm-label",
    paths: { file: "/proc/thread-self/attr/apparmor/exec", label: "exec nope", v: '"a b"' },
    errno: 2,
  });
  assert.equal(
    e.line(),
    'restrict: lsm: lsm-label file=/proc/thread-self/attr/apparmor/exec label="exec nope" ' +
      'v="a b": ENOENT',
  );
});

Deno.test("firstLine: a MicroError's own line (one made of fields only too), else the message's first", () => {
  const fields = new MicroError("", {
    phase: "rootfs",
    op: "open_tree",
    paths: { dir: "/x" },
    errno: 2,
  });
  assert.equal(firstLine(fields), "rootfs: open_tree dir=/x: ENOENT");
  assert.equal(firstLine(new Error("one\ntwo")), "one");
  assert.equal(firstLine("plain"), "plain");
});

Deno.test("oneLine: escapes and newlines become spaces, and a long text is cut", () => {
  assert.equal(oneLine("a\nb\r\n\x1b[31mred\x1b[0m\tc\u2028d"), "a b [31mred [0m c d");
  assert.equal(oneLine("x".repeat(1000), 10), "xxxxxxxxx…");
  assert.equal(oneLine("  fine  "), "fine");
});
