/**
 * Reading files others may control (issue 7, items 4 and 11): a FIFO, a device, a directory,
 * a huge or sparse file and a link out of an image are each refused fast, with one line.
 */
import assert from "node:assert/strict";
import { parseEnvFile } from "../../core/cli.ts";
import { MicroError, MicroErrors } from "../../core/errors.ts";
import { privateDirAt } from "../../core/store/paths.ts";
import {
  FileRefused,
  formatSize,
  MiB,
  mkdirAt,
  readInRoot,
  readQuiet,
  readRegularFile,
  readRegularFileIfThere,
  readTextAt,
  replaceTextAt,
  TEXT_CAP,
  typeAt,
} from "../../core/files.ts";
import { type PluginSchema, resolveProfile } from "../../core/profile.ts";
import { RecordingSys } from "../../core/sys/fake.ts";
import { openLibc } from "../../core/sys/libc.ts";
import { C, cstr } from "../../core/sys/mod.ts";

const sys = openLibc();

/** A temp dir for the test, removed even when it fails. */
function withTemp(fn: (dir: string) => void): void {
  const dir = Deno.makeTempDirSync({ prefix: "micro-files-" });
  try {
    fn(dir);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
}

/** The FileRefused `fn` throws, within `ms` milliseconds. */
function refused(fn: () => unknown, ms = 1000): FileRefused {
  const t0 = performance.now();
  try {
    fn();
  } catch (e) {
    assert.ok(performance.now() - t0 < ms, `took ${performance.now() - t0} ms`);
    if (e instanceof FileRefused) return e;
    throw e;
  }
  throw new Error("expected FileRefused");
}

function mkfifo(path: string): void {
  const out = new Deno.Command("mkfifo", { args: [path] }).outputSync();
  assert.ok(out.success, "mkfifo");
}

// --- the reader, on the real kernel -----------------------------------------------------

Deno.test("reader: a regular file within the cap is read whole", () => {
  withTemp((dir) => {
    Deno.writeTextFileSync(`${dir}/f`, "a=1\nb=2\n");
    assert.equal(readRegularFile(sys, `${dir}/f`, 16), "a=1\nb=2\n");
    Deno.writeTextFileSync(`${dir}/big`, "x".repeat(200_000));
    assert.equal(readRegularFile(sys, `${dir}/big`, MiB).length, 200_000);
  });
});

Deno.test("reader: a FIFO is refused at once, without blocking", () => {
  withTemp((dir) => {
    mkfifo(`${dir}/fifo`);
    assert.equal(
      refused(() => readRegularFile(sys, `${dir}/fifo`, MiB)).reason,
      "is a FIFO, not a regular file",
    );
  });
});

Deno.test("reader: a character device, a directory and a socket are refused", () => {
  assert.equal(
    refused(() => readRegularFile(sys, "/dev/zero", MiB)).reason,
    "is a character device, not a regular file",
  );
  assert.equal(
    refused(() => readRegularFile(sys, "/", MiB)).reason,
    "is a directory, not a regular file",
  );
  withTemp((dir) => {
    const l = Deno.listen({ transport: "unix", path: `${dir}/sock` });
    try {
      assert.equal(
        refused(() => readRegularFile(sys, `${dir}/sock`, MiB)).reason,
        "is a socket, not a regular file",
      );
    } finally {
      l.close();
    }
  });
});

Deno.test("reader: a file over the cap is refused; a 4 GiB sparse file by its size, at once", () => {
  withTemp((dir) => {
    Deno.writeTextFileSync(`${dir}/f`, "x".repeat(17));
    assert.equal(readRegularFile(sys, `${dir}/f`, 17).length, 17);
    assert.equal(
      refused(() => readRegularFile(sys, `${dir}/f`, 16)).reason,
      "is 17 bytes, over the 16 bytes limit",
    );
    Deno.writeTextFileSync(`${dir}/sparse`, "");
    Deno.truncateSync(`${dir}/sparse`, 4 * 1024 * MiB);
    assert.equal(
      refused(() => readRegularFile(sys, `${dir}/sparse`, MiB), 100).reason,
      "is 4 GiB, over the 1 MiB limit",
    );
  });
});

Deno.test("reader: a missing file is an errno reason", () => {
  const e = refused(() => readRegularFile(sys, "/nonexistent/micro-file", MiB));
  assert.equal(e.reason, "no such file");
  assert.equal(e.errno, 2);
});

Deno.test("reader: in an image, links resolve inside it and never reach the host", () => {
  withTemp((dir) => {
    Deno.mkdirSync(`${dir}/etc`);
    Deno.mkdirSync(`${dir}/real`);
    Deno.writeTextFileSync(`${dir}/real/passwd`, "root:x:0:0::/:/bin/sh\n");
    const root = sys.open(cstr(dir), C.O_PATH | C.O_DIRECTORY | C.O_CLOEXEC, 0);
    assert.ok(root >= 0);
    try {
      const at = (link: string) => {
        try {
          Deno.removeSync(`${dir}/etc/passwd`);
        } catch { /* first time */ }
        Deno.symlinkSync(link, `${dir}/etc/passwd`);
        return readInRoot(sys, root, "/etc/passwd", MiB);
      };
      // A link that stays in the image is followed, as inside the container.
      assert.equal(at("/real/passwd"), "root:x:0:0::/:/bin/sh\n");
      assert.equal(at("../real/passwd"), "root:x:0:0::/:/bin/sh\n");
      // Links to the host's files land in the image, where they do not exist.
      assert.equal(at("/etc/shadow"), null);
      assert.equal(at("../../../../../../etc/hostname"), null);
      assert.equal(at("/proc/self/root/etc/hostname"), null);
      assert.equal(at("/dev/zero"), null);
      // A link the image holds to the same name loops inside the image: refused.
      Deno.mkdirSync(`${dir}/dev`);
      Deno.symlinkSync("/dev/zero", `${dir}/dev/zero`);
      assert.equal(
        refused(() => at("/dev/zero")).reason,
        "too many levels of symbolic links",
      );
      Deno.removeSync(`${dir}/etc/passwd`);
      mkfifo(`${dir}/etc/passwd`);
      assert.equal(
        refused(() => readInRoot(sys, root, "/etc/passwd", MiB)).reason,
        "is a FIFO, not a regular file",
      );
      assert.equal(readInRoot(sys, root, "/etc/group", MiB), null);
    } finally {
      sys.close(root);
    }
  });
});

// --- the reader's calls (the recording fake) -------------------------------------------

Deno.test("reader: opens O_PATH in the root, checks the type, then reads through the fd", () => {
  const fake = new RecordingSys();
  fake.scriptStat(3, { mode: C.S_IFREG | 0o644, size: 5 });
  fake.scriptRead(4, new TextEncoder().encode("root\n"), new Uint8Array(0));
  assert.equal(readInRoot(fake, 9, "/etc/passwd", MiB), "root\n");
  assert.deepEqual(fake.format(), [
    'openat2(9, "/etc/passwd", 0x280000, 0, 0x12)', // O_PATH|O_CLOEXEC; IN_ROOT|NO_MAGICLINKS
    "fstat(3)",
    'open("/proc/self/fd/3", 0x80900, 0)', // O_RDONLY|O_NONBLOCK|O_NOCTTY|O_CLOEXEC
    "read(4, 65536)",
    "read(4, 65536)",
    "close(4)",
    "close(3)",
  ]);
});

Deno.test("reader: a FIFO or device is never opened for reading", () => {
  for (const [mode, kind] of [[C.S_IFIFO, "a FIFO"], [C.S_IFCHR, "a character device"]] as const) {
    const fake = new RecordingSys();
    fake.scriptStat(3, { mode: mode | 0o644 });
    assert.equal(
      refused(() => readRegularFile(fake, "/x", MiB)).reason,
      `is ${kind}, not a regular file`,
    );
    assert.deepEqual(fake.names(), ["open", "fstat", "close"]);
  }
});

Deno.test("reader: a file that grows past the cap while read is refused at the cap", () => {
  const fake = new RecordingSys();
  fake.scriptStat(3, { size: 10 });
  // Unscripted reads return the whole buffer: an endless file.
  assert.equal(
    refused(() => readRegularFile(fake, "/x", 100_000)).reason,
    "is larger than the 97.7 KiB limit",
  );
  assert.equal(fake.names().filter((n) => n === "read").length, 2);
  assert.deepEqual(fake.names().slice(-2), ["close", "close"]);
});

Deno.test("reader: sizes are written for people", () => {
  assert.equal(formatSize(12), "12 bytes");
  assert.equal(formatSize(MiB), "1 MiB");
  assert.equal(formatSize(1536), "1.5 KiB");
  assert.equal(formatSize(4 * 1024 * MiB), "4 GiB");
});

// --- env files and profiles ---------------------------------------------------------------

const NO_PLUGINS: PluginSchema[] = [];

function oneLine(fn: () => unknown, ms = 1000): string {
  const t0 = performance.now();
  try {
    fn();
  } catch (e) {
    assert.ok(performance.now() - t0 < ms, `took ${performance.now() - t0} ms`);
    if (e instanceof MicroErrors) return e.errors.map((x) => x.line()).join("\n");
    if (e instanceof MicroError) return e.line();
    throw e;
  }
  throw new Error("expected an error");
}

Deno.test("env file: /dev/zero, a FIFO and an oversized file are one-line errors", () => {
  assert.equal(
    oneLine(() => parseEnvFile("/dev/zero")),
    'env file "/dev/zero": is a character device, not a regular file ' +
      "(give a regular file of at most 1 MiB)",
  );
  withTemp((dir) => {
    mkfifo(`${dir}/fifo`);
    assert.match(oneLine(() => parseEnvFile(`${dir}/fifo`)), /: is a FIFO, not a regular file \(/);
    Deno.writeTextFileSync(`${dir}/big`, "");
    Deno.truncateSync(`${dir}/big`, TEXT_CAP + 1);
    assert.match(oneLine(() => parseEnvFile(`${dir}/big`)), /: is 1 MiB, over the 1 MiB limit/);
    assert.equal(
      oneLine(() => parseEnvFile(`${dir}/missing`)),
      `env file "${dir}/missing": cannot read: no such file`,
    );
  });
});

Deno.test("profile: a FIFO, a 4 GiB sparse file and a 60 MB file are refused fast", () => {
  withTemp((dir) => {
    mkfifo(`${dir}/fifo.yaml`);
    assert.equal(
      oneLine(() => resolveProfile([`${dir}/fifo.yaml`], null, NO_PLUGINS)),
      `profile ${dir}/fifo.yaml: is a FIFO, not a regular file ` +
        "(give a regular file of at most 1 MiB)",
    );
    Deno.writeTextFileSync(`${dir}/sparse.yaml`, "");
    Deno.truncateSync(`${dir}/sparse.yaml`, 4 * 1024 * MiB);
    assert.match(
      oneLine(() => resolveProfile([`${dir}/sparse.yaml`], null, NO_PLUGINS)),
      /: is 4 GiB, over the 1 MiB limit/,
    );
    const line = "description: " + "x".repeat(1000) + "\n";
    Deno.writeTextFileSync(`${dir}/big.yaml`, line.repeat(60_000));
    assert.match(
      oneLine(() => resolveProfile([`${dir}/big.yaml`], null, NO_PLUGINS), 200),
      /^profile \S+big\.yaml: is 58 MiB, over the 1 MiB limit/,
    );
    // Through `extends` too.
    Deno.writeTextFileSync(`${dir}/top.yaml`, "extends: fifo.yaml\n");
    assert.match(
      oneLine(() => resolveProfile([`${dir}/top.yaml`], null, NO_PLUGINS)),
      /cannot read "\S+fifo\.yaml": is a FIFO, not a regular file/,
    );
  });
});

Deno.test("files: the quiet readers answer null or 0 for what is missing, and throw for nothing", () => {
  withTemp((dir) => {
    Deno.writeTextFileSync(`${dir}/f`, "x".repeat(10_000));
    Deno.mkdirSync(`${dir}/d`);
    Deno.symlinkSync("f", `${dir}/l`);
    Deno.symlinkSync("nowhere", `${dir}/dangling`);
    // readQuiet: the whole text (past its first 4 KiB buffer), null when missing or over cap.
    assert.equal(readQuiet(sys, `${dir}/f`), "x".repeat(10_000));
    assert.equal(readQuiet(sys, `${dir}/missing`), null);
    assert.equal(readQuiet(sys, `${dir}/f`, 8192), null);
    assert.equal(readQuiet(sys, `${dir}/f`, 10_000)?.length, 10_000, "exactly the cap");
    assert.equal(readQuiet(sys, `${dir}/f`, 9_999), null, "one byte over");
    assert.equal(readQuiet(sys, `${dir}/f`, 100), null, "a cap under the first buffer");
    assert.equal(readQuiet(sys, "/proc/sys/kernel/cap_last_cap")?.trim().length! > 0, true);
    // typeAt: follows a final link unless told not to; 0 for nothing (a dangling link too).
    assert.equal(typeAt(sys, `${dir}/f`), C.S_IFREG);
    assert.equal(typeAt(sys, `${dir}/d`), C.S_IFDIR);
    assert.equal(typeAt(sys, `${dir}/l`), C.S_IFREG);
    assert.equal(typeAt(sys, `${dir}/l`, false), C.S_IFLNK);
    assert.equal(typeAt(sys, `${dir}/dangling`), 0);
    assert.equal(typeAt(sys, `${dir}/dangling`, false), C.S_IFLNK);
    assert.equal(typeAt(sys, `${dir}/missing`), 0);
    // readRegularFileIfThere: null for ENOENT only; a refused file still throws.
    assert.equal(readRegularFileIfThere(sys, `${dir}/missing`, TEXT_CAP), null);
    assert.equal(readRegularFileIfThere(sys, `${dir}/f`, TEXT_CAP)?.length, 10_000);
    assert.match(
      refused(() => readRegularFileIfThere(sys, `${dir}/d`, TEXT_CAP)).reason,
      /is a directory/,
    );
    assert.match(
      refused(() => readRegularFileIfThere(sys, `${dir}/f/x`, TEXT_CAP)).reason,
      /not a directory/,
    );
  });
});

Deno.test("micro's own files through Sys: exact modes, links, dangling links, replaced whole", () => {
  const tmp = Deno.makeTempDirSync({ prefix: "micro-unit-ownfiles-" });
  const sys = openLibc();
  const mode = (p: string) => Deno.statSync(p).mode! & 0o777;
  try {
    // mkdirAt: parents made, every level at the mode exactly; EEXIST for what is there.
    assert.equal(mkdirAt(sys, `${tmp}/a/b/c`, 0o711, true), 0);
    assert.deepEqual([mode(`${tmp}/a`), mode(`${tmp}/a/b`), mode(`${tmp}/a/b/c`)], [
      0o711,
      0o711,
      0o711,
    ]);
    assert.equal(mkdirAt(sys, `${tmp}/a/b/c`, 0o700), -17);
    // privateDirAt: made 0700; an open directory closed to others; a link to a directory
    // followed; a dangling link and a file refused.
    privateDirAt(sys, `${tmp}/p1`);
    assert.equal(mode(`${tmp}/p1`), 0o700);
    Deno.mkdirSync(`${tmp}/p2`);
    Deno.chmodSync(`${tmp}/p2`, 0o755);
    Deno.symlinkSync(`${tmp}/p2`, `${tmp}/link`);
    privateDirAt(sys, `${tmp}/link`);
    assert.equal(mode(`${tmp}/p2`), 0o700);
    Deno.symlinkSync(`${tmp}/nowhere`, `${tmp}/dangling`);
    assert.throws(() => privateDirAt(sys, `${tmp}/dangling`), /cannot open .*dangling: ENOENT/);
    assert.throws(() => Deno.lstatSync(`${tmp}/nowhere`), Deno.errors.NotFound);
    Deno.writeTextFileSync(`${tmp}/file`, "");
    assert.throws(() => privateDirAt(sys, `${tmp}/file`), /cannot open .*file: ENOTDIR/);
    // replaceTextAt: the new text at the mode asked, whatever a stale tmp file's was.
    Deno.writeTextFileSync(`${tmp}/.state.json.tmp`, "stale", { mode: 0o666 });
    Deno.chmodSync(`${tmp}/.state.json.tmp`, 0o666);
    replaceTextAt(sys, `${tmp}/state.json`, "{}\n", 0o600);
    assert.equal(Deno.readTextFileSync(`${tmp}/state.json`), "{}\n");
    assert.equal(mode(`${tmp}/state.json`), 0o600);
    assert.throws(() => Deno.lstatSync(`${tmp}/.state.json.tmp`), Deno.errors.NotFound);
    // A stale tmp name that is a hard link to another file, or a FIFO: a new file is written,
    // the other file is not truncated, and no open blocks.
    Deno.writeTextFileSync(`${tmp}/other`, "keep");
    Deno.linkSync(`${tmp}/other`, `${tmp}/.state.json.tmp`);
    replaceTextAt(sys, `${tmp}/state.json`, "{1}\n", 0o600);
    assert.equal(Deno.readTextFileSync(`${tmp}/other`), "keep");
    assert.equal(Deno.readTextFileSync(`${tmp}/state.json`), "{1}\n");
    const fifo = new Deno.Command("mkfifo", { args: [`${tmp}/.state.json.tmp`] }).outputSync();
    assert.ok(fifo.success);
    replaceTextAt(sys, `${tmp}/state.json`, "{}\n", 0o600);
    assert.equal(Deno.readTextFileSync(`${tmp}/state.json`), "{}\n");
    assert.ok(Deno.lstatSync(`${tmp}/state.json`).isFile);
    assert.throws(
      () => replaceTextAt(sys, `${tmp}/none/state.json`, "", 0o600),
      /cannot create .*\/none\/\.state\.json\.tmp: ENOENT/,
    );
    // readTextAt: text, or -errno.
    assert.equal(readTextAt(sys, `${tmp}/state.json`), "{}\n");
    assert.equal(readTextAt(sys, `${tmp}/missing`), -2);
    assert.equal(readTextAt(sys, `${tmp}/state.json`, 2), -27); // EFBIG: over the cap
  } finally {
    Deno.removeSync(tmp, { recursive: true });
  }
});
