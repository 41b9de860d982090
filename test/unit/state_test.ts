/**
 * The run state's root (core/state.ts): micro refuses a state root it cannot trust, with an
 * error that says so, why on purpose, and the way out; also when the root appears between
 * the first look and the mkdir.
 */
import assert from "node:assert/strict";
import { MicroError } from "../../core/errors.ts";
import { createRunDir } from "../../core/state.ts";

function withTemp(fn: (dir: string) => void): void {
  const dir = Deno.makeTempDirSync({ prefix: "micro-state-test-" });
  try {
    fn(dir);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
}

function refusal(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof MicroError, `not a MicroError: ${e}`);
    return e.line();
  }
  assert.fail("not refused");
}

const me = Deno.uid() ?? 0;
const other = me === 0 ? 1000 : 0;

Deno.test("createRunDir: a state root another user owns is refused, on purpose, with the fix", () => {
  withTemp((tmp) => {
    // Made by `me`, so to a caller with another uid it is another user's directory.
    const root = `${tmp}/micro-state-${other}`;
    Deno.mkdirSync(root, { mode: 0o700 });
    const line = refusal(() => createRunDir(root, "r1", other));
    assert.equal(
      line,
      `state root: ${root} belongs to uid ${me}, not to you (${other}): refused on purpose, ` +
        "since whoever controls it could make micro kill processes and remove files " +
        (other === 0
          ? `(remove ${root}; micro makes it again)`
          : `(set XDG_RUNTIME_DIR to a private directory of yours, or have root remove ${root})`),
    );
    assert.deepEqual([...Deno.readDirSync(root)], [], "a run dir was made in it");
  });
});

Deno.test("createRunDir: a state root of yours that others may write: chmod go-w", () => {
  withTemp((tmp) => {
    const root = `${tmp}/micro`;
    Deno.mkdirSync(root);
    Deno.chmodSync(root, 0o777);
    const line = refusal(() => createRunDir(root, "r1", me));
    assert.match(line, /^state root: .*\/micro may be written by others: refused on purpose, /);
    assert.ok(line.endsWith(`(chmod go-w ${root})`), line);
  });
});

Deno.test("createRunDir: a state root that is a link is refused", () => {
  withTemp((tmp) => {
    Deno.mkdirSync(`${tmp}/real`, { mode: 0o700 });
    Deno.symlinkSync(`${tmp}/real`, `${tmp}/micro`);
    const line = refusal(() => createRunDir(`${tmp}/micro`, "r1", me));
    assert.match(line, /is not a directory: refused on purpose/);
    assert.deepEqual([...Deno.readDirSync(`${tmp}/real`)], []);
  });
});

Deno.test("createRunDir: a root squatted between the first look and the mkdir is refused", () => {
  withTemp((tmp) => {
    const root = `${tmp}/micro`;
    // The squatter wins the race: the directory appears, world-writable, as micro's
    // recursive mkdir (which accepts a directory that exists) runs.
    const mkdir = Deno.mkdirSync;
    Deno.mkdirSync = (path: string | URL, options?: Deno.MkdirOptions) => {
      if (path === root) {
        Deno.mkdirSync = mkdir;
        mkdir(root);
        Deno.chmodSync(root, 0o777);
      }
      return mkdir(path, options);
    };
    try {
      const line = refusal(() => createRunDir(root, "r1", me));
      assert.match(line, /may be written by others: refused on purpose/);
    } finally {
      Deno.mkdirSync = mkdir;
    }
    assert.deepEqual([...Deno.readDirSync(root)], [], "a run dir was made in it");
  });
});

Deno.test("createRunDir: a fresh root is made private and holds the run dir", () => {
  withTemp((tmp) => {
    const dir = createRunDir(`${tmp}/micro`, "r1", me);
    assert.equal(dir, `${tmp}/micro/r1`);
    const mode = Deno.statSync(`${tmp}/micro`).mode! & 0o777;
    assert.equal(mode, me === 0 ? 0o711 : 0o700);
  });
});
