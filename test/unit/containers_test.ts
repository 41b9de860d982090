/**
 * Kept containers without root: the diff walker on synthetic upper/lower trees, the record
 * and name logic in a temp store, and `ps` formatting.
 */
import assert from "node:assert/strict";
import { type Change, changes, type Entry, type Tree } from "../../core/store/diff.ts";
import {
  type ContainerRecord,
  ContainerRun,
  createContainer,
  hiddenMountPoints,
  listContainers,
  newContainerId,
  readRecord,
  removeContainerDir,
  resolveContainer,
} from "../../core/store/containers.ts";
import { containerDir } from "../../core/store/paths.ts";
import { formatPs, humanDuration, statusText } from "../../core/store/ps.ts";
import { statusOf } from "../../core/store/live.ts";
import { MicroError } from "../../core/errors.ts";
import { op } from "../../core/ops.ts";
import { openLibc } from "../../core/sys/libc.ts";

// --- the diff walker ---------------------------------------------------------------------

/** A synthetic tree: path → node; a handle is a directory's path. */
interface Node {
  type: Entry["type"];
  mode?: number;
  size?: number;
  mtime?: number;
  opaque?: boolean;
}

class MapTree implements Tree<string> {
  readonly open_: string[] = [];
  constructor(readonly nodes: Map<string, Node>) {}
  static of(spec: Record<string, Node | "dir" | "file" | "wh">): MapTree {
    const nodes = new Map<string, Node>([["", { type: "dir" }]]);
    for (const [p, v] of Object.entries(spec)) {
      nodes.set(
        p,
        typeof v !== "string"
          ? v
          : v === "dir"
          ? { type: "dir" }
          : v === "wh"
          ? { type: "whiteout" }
          : { type: "other", size: 1 },
      );
    }
    return new MapTree(nodes);
  }
  list(dir: string): string[] {
    const prefix = dir === "" ? "/" : `${dir}/`;
    return [...this.nodes.keys()].filter((p) =>
      p.startsWith(prefix) && !p.slice(prefix.length).includes("/") && p !== dir
    ).map((p) => p.slice(prefix.length));
  }
  entry(dir: string, name: string): Entry | null {
    const n = this.nodes.get(`${dir}/${name}`);
    if (!n) return null;
    const mode = n.mode ?? (n.type === "dir" ? 0o40755 : 0o100644);
    return { type: n.type, mode, size: n.size ?? 4096, mtime: n.mtime ?? 1000 };
  }
  opaque(dir: string, name: string): boolean {
    return this.nodes.get(`${dir}/${name}`)?.opaque === true;
  }
  open(dir: string, name: string): string | null {
    const p = `${dir}/${name}`;
    if (this.nodes.get(p)?.type !== "dir") return null;
    this.open_.push(p);
    return p;
  }
  close(dir: string): void {
    this.open_.splice(this.open_.indexOf(dir), 1);
  }
}

/** Two trees as one Tree: handles are "u:path" or "l:path". */
function pair(upper: MapTree, lower: MapTree): Tree<string> & { openCount(): number } {
  const t = (h: string) => (h.startsWith("u:") ? upper : lower);
  const p = (h: string) => h.slice(2);
  return {
    list: (d) => t(d).list(p(d)),
    entry: (d, n) => t(d).entry(p(d), n),
    opaque: (d, n) => t(d).opaque(p(d), n),
    open: (d, n) => {
      const r = t(d).open(p(d), n);
      return r === null ? null : `${d.slice(0, 2)}${r}`;
    },
    close: (d) => t(d).close(p(d)),
    openCount: () => upper.open_.length + lower.open_.length,
  };
}

function diffOf(
  upper: MapTree,
  lower: MapTree,
  hidden: string[] = [],
): string[] {
  const fs = pair(upper, lower);
  const out = changes(fs, "u:", ["l:"], new Set(hidden)).map((c: Change) => `${c.kind} ${c.path}`);
  assert.equal(fs.openCount(), 0, "the walker left directories open");
  return out;
}

Deno.test("diff: added, changed and whited-out entries, each directory of an A or D listed first", () => {
  const lower = MapTree.of({
    "/etc": "dir",
    "/etc/passwd": "file",
    "/etc/hostname": "file",
    "/usr": "dir",
    "/usr/bin": "dir",
  });
  const upper = MapTree.of({
    // copied up only: same size, mode and mtime as the image's: not listed itself
    "/etc": "dir",
    "/etc/passwd": { type: "other", size: 9 },
    "/etc/hostname": "wh",
    "/etc/new": "file",
    "/usr": "dir",
    "/usr/bin": { type: "dir", mtime: 5000 },
    "/usr/bin/tool": "file",
    "/added": "dir",
    "/added/f": "file",
  });
  assert.deepEqual(diffOf(upper, lower), [
    "A /added",
    "A /added/f",
    "C /etc",
    "D /etc/hostname",
    "A /etc/new",
    "C /etc/passwd",
    "C /usr/bin",
    "A /usr/bin/tool",
  ]);
});

Deno.test("diff: only the direct parent of a change is listed, as moby's overlay walker", () => {
  const lower = MapTree.of({ "/a": "dir", "/a/b": "dir", "/a/b/c": "dir" });
  const upper = MapTree.of({ "/a": "dir", "/a/b": "dir", "/a/b/c": "dir", "/a/b/c/f": "file" });
  assert.deepEqual(diffOf(upper, lower), ["C /a/b/c", "A /a/b/c/f"]);
});

Deno.test("diff: a directory changed in mode or mtime is C; a tar time without fraction matches", () => {
  const lower = MapTree.of({
    "/m": "dir",
    "/t": { type: "dir", mtime: 7000 },
    "/u": { type: "dir", mtime: 7000 },
  });
  const upper = MapTree.of({
    "/m": { type: "dir", mode: 0o40700 },
    "/t": { type: "dir", mtime: 7123 }, // the same second, one side without a fraction
    "/u": { type: "dir", mtime: 8000 },
  });
  assert.deepEqual(diffOf(upper, lower), ["C /m", "C /u"]);
});

Deno.test("diff: an opaque directory the image has is D, and what it holds is new (A)", () => {
  const lower = MapTree.of({ "/home": "dir", "/home/old": "file", "/home/keep": "file" });
  const upper = MapTree.of({
    "/home": { type: "dir", opaque: true },
    "/home/keep": "file", // made again after rm -rf: new, though the image had one
    "/home/z": "file",
    "/fresh": { type: "dir", opaque: true }, // opaque but new: a plain A
  });
  assert.deepEqual(diffOf(upper, lower), ["A /fresh", "D /home", "A /home/keep", "A /home/z"]);
});

Deno.test("diff: a directory over an image file is C and its contents are A", () => {
  const lower = MapTree.of({ "/x": "file" });
  const upper = MapTree.of({ "/x": "dir", "/x/y": "file" });
  assert.deepEqual(diffOf(upper, lower), ["C /x", "A /x/y"]);
});

Deno.test("diff: the lower layers merge as overlay does (whiteouts, files and opaque dirs hide)", () => {
  // Two layers, top first: the top deleted /gone and made /d opaque.
  const top = MapTree.of({ "/gone": "wh", "/d": { type: "dir", opaque: true }, "/d/t": "file" });
  const base = MapTree.of({ "/gone": "file", "/d": "dir", "/d/b": "file", "/k": "dir" });
  const upper = MapTree.of({ "/gone": "file", "/d": "dir", "/d/t": "file", "/d/b": "file" });
  const fs: Tree<string> = {
    list: (d) => (d.startsWith("u:") ? upper : d.startsWith("t:") ? top : base).list(d.slice(2)),
    entry: (d, n) =>
      (d.startsWith("u:") ? upper : d.startsWith("t:") ? top : base).entry(d.slice(2), n),
    opaque: (d, n) =>
      (d.startsWith("u:") ? upper : d.startsWith("t:") ? top : base).opaque(d.slice(2), n),
    open: (d, n) => {
      const t = d.startsWith("u:") ? upper : d.startsWith("t:") ? top : base;
      const r = t.open(d.slice(2), n);
      return r === null ? null : `${d.slice(0, 2)}${r}`;
    },
    close: (d) => (d.startsWith("u:") ? upper : d.startsWith("t:") ? top : base).close(d.slice(2)),
  };
  const out = changes(fs, "u:", ["t:", "b:"], new Set()).map((c) => `${c.kind} ${c.path}`);
  // /gone is new over the top layer's whiteout; /d/b is hidden by the top's opaque /d.
  assert.deepEqual(out, ["C /d", "A /d/b", "C /d/t", "A /gone"]);
});

Deno.test("diff: mount points micro made count as the image's; what else the container put there is A", () => {
  const lower = MapTree.of({ "/etc": "dir" });
  const upper = MapTree.of({
    "/proc": "dir",
    "/data": "dir",
    "/data/mnt": "dir",
    "/data/file": "file",
  });
  assert.deepEqual(diffOf(upper, lower, ["/proc", "/data", "/data/mnt"]), [
    "C /data",
    "A /data/file",
  ]);
  assert.deepEqual(
    hiddenMountPoints(
      [op("credentials", "mount", "chdir", { path: "/work/here" })],
      ["/proc", "/work", "/work/here"],
      ["/etc/hostname"],
    ),
    ["/proc", "/etc/hostname"],
  );
});

// --- records and names -------------------------------------------------------------------

function record(over: Partial<ContainerRecord> = {}): ContainerRecord {
  const id = newContainerId();
  return {
    id,
    name: id.slice(0, 12),
    runId: id.slice(0, 12),
    image: { path: "/images/x" },
    command: ["sh"],
    profiles: ["default"],
    options: [],
    rm: false,
    created: new Date().toISOString(),
    state: "created",
    pid: 1 << 22, // no such process
    startTime: 1,
    ...over,
  };
}

async function withStore(fn: (root: string) => void | Promise<void>): Promise<void> {
  const root = Deno.makeTempDirSync({ prefix: "micro-unit-store-" });
  try {
    await fn(root);
  } finally {
    Deno.removeSync(root, { recursive: true });
  }
}

Deno.test("containers: made with a record and a name; a taken name is refused", () =>
  withStore((root) => {
    const a = record({ name: "web" });
    createContainer(root, a);
    assert.deepEqual(readRecord(containerDir(root, a.id)), a);
    assert.equal(Deno.readLinkSync(`${root}/containers/.names/web`), a.id);
    const b = record({ name: "web" });
    assert.throws(
      () => createContainer(root, b),
      (e) =>
        e instanceof MicroError &&
        e.line() === `the container name "web" is already in use by container ` +
            `${a.id.slice(0, 12)} (remove it with "micro rm web", or choose another --name)`,
    );
    assert.equal(readRecord(containerDir(root, b.id)), null, "the refused one was made");
    assert.deepEqual(listContainers(root).map((r) => r.id), [a.id]);
  }));

Deno.test("containers: a name whose container is gone is taken over", () =>
  withStore((root) => {
    const a = record({ name: "web" });
    createContainer(root, a);
    // a's directory gone behind the store's back (a killed rm): its name link is stale.
    Deno.removeSync(containerDir(root, a.id), { recursive: true });
    const b = record({ name: "web" });
    createContainer(root, b);
    assert.equal(Deno.readLinkSync(`${root}/containers/.names/web`), b.id);
    assert.deepEqual(readRecord(containerDir(root, b.id)), b);
  }));

Deno.test("containers: a store that cannot be made is a one-line error, not a stack trace", () =>
  withStore((root) => {
    // A --root beneath a regular file: mkdir fails (ENOTDIR), as under a directory the
    // caller cannot write (EACCES, rootless).
    Deno.writeTextFileSync(`${root}/file`, "");
    const store = `${root}/file/store`;
    assert.throws(
      () => createContainer(store, record({ name: "web" })),
      (e) =>
        e instanceof MicroError && e.exitCode === 125 &&
        e.line().startsWith(`container store ${store}/containers: `) &&
        e.line().includes(`cannot create ${store}: ENOTDIR`) && !e.line().includes("\n") &&
        e.line().endsWith("(check --root (or MICRO_ROOT): micro must be able to write it)"),
    );
  }));

Deno.test("containers: a name whose container is gone (a crash) is taken over", () =>
  withStore((root) => {
    Deno.mkdirSync(`${root}/containers/.names`, { recursive: true });
    Deno.symlinkSync("f".repeat(64), `${root}/containers/.names/web`);
    const a = record({ name: "web" });
    createContainer(root, a);
    assert.equal(resolveContainer(root, "web").id, a.id);
  }));

Deno.test("containers: resolved by full id, name or unique id prefix, as Docker", () =>
  withStore((root) => {
    const a = record({ id: "ab" + "0".repeat(62), name: "one" });
    const b = record({ id: "ac" + "0".repeat(62), name: "two" });
    createContainer(root, a);
    createContainer(root, b);
    assert.equal(resolveContainer(root, a.id).name, "one");
    assert.equal(resolveContainer(root, "two").id, b.id);
    assert.equal(resolveContainer(root, "ab").id, a.id);
    assert.throws(() => resolveContainer(root, "a"), /matches 2 containers: one \(ab0+\), two/);
    assert.throws(() => resolveContainer(root, "three"), /no such container: three/);
    assert.throws(() => resolveContainer(root, "../x"), /no such container/);
  }));

Deno.test("containers: removal takes the directory and the name; leftovers are cleared", () =>
  withStore((root) => {
    const a = record({ name: "web" });
    createContainer(root, a);
    const dir = containerDir(root, a.id);
    Deno.mkdirSync(`${dir}/work/work`, { recursive: true, mode: 0 });
    assert.equal(removeContainerDir(dir, openLibc()), undefined);
    assert.deepEqual([...Deno.readDirSync(`${root}/containers`)].map((e) => e.name).sort(), [
      ".lock",
      ".names",
    ]);
    assert.deepEqual([...Deno.readDirSync(`${root}/containers/.names`)], []);
    assert.equal(
      removeContainerDir(dir, openLibc()),
      undefined,
      "a second removal is not an error",
    );
    // A name already taken over by another container is left to it.
    const b = record({ name: "api" });
    createContainer(root, b);
    Deno.removeSync(`${root}/containers/.names/api`);
    Deno.symlinkSync("e".repeat(64), `${root}/containers/.names/api`);
    removeContainerDir(containerDir(root, b.id), openLibc());
    assert.equal(Deno.readLinkSync(`${root}/containers/.names/api`), "e".repeat(64));
    // What a killed removal left behind goes with the next listing.
    Deno.mkdirSync(`${root}/containers/.rm-${"d".repeat(64)}/upper`, { recursive: true });
    assert.deepEqual(listContainers(root), []);
    assert.equal(
      [...Deno.readDirSync(`${root}/containers`)].some((e) => e.name.startsWith(".rm-")),
      false,
    );
  }));

Deno.test("containers: a run's record goes created → running → exited; --rm's end is not written", () =>
  withStore((root) => {
    const run = new ContainerRun(root, record({ name: "job" }));
    run.create();
    run.started();
    assert.equal(readRecord(run.dir)?.state, "running");
    run.exited(3);
    const rec = readRecord(run.dir)!;
    assert.equal(rec.state, "exited");
    assert.equal(rec.exitCode, 3);
    assert.ok(rec.finishedAt);

    const rm = new ContainerRun(root, record({ name: "tmp", rm: true }));
    rm.create();
    rm.started();
    rm.exited(0);
    assert.equal(readRecord(rm.dir)?.state, "running");

    const failed = new ContainerRun(root, record({ name: "bad" }));
    failed.create();
    failed.failed(new MicroError("boom", { exitCode: 127 }));
    const f = readRecord(failed.dir)!;
    assert.equal(f.state, "created");
    assert.equal(f.exitCode, 127);
    assert.equal(f.error, "boom");
  }));

Deno.test("containers: a record saying running whose micro is gone is exited, code unknown", () =>
  withStore((root) => {
    const rec = record({ state: "running" });
    assert.deepEqual(statusOf(rec, `${root}/no-state`), { state: "exited", exitCode: null });
    const done = { ...rec, state: "exited" as const, exitCode: 0, finishedAt: "x" };
    assert.deepEqual(statusOf(done, `${root}/no-state`), {
      state: "exited",
      exitCode: 0,
      finishedAt: "x",
    });
  }));

// --- ps ----------------------------------------------------------------------------------

Deno.test("ps: Docker's durations, status and table layout", () => {
  assert.equal(humanDuration(500), "Less than a second");
  assert.equal(humanDuration(1000), "1 second");
  assert.equal(humanDuration(59_000), "59 seconds");
  assert.equal(humanDuration(61_000), "About a minute");
  assert.equal(humanDuration(45 * 60_000), "45 minutes");
  assert.equal(humanDuration(3_600_000), "About an hour");
  assert.equal(humanDuration(5 * 3_600_000), "5 hours");
  assert.equal(humanDuration(3 * 86_400_000), "3 days");
  const now = Date.parse("2025-01-01T12:00:00Z");
  const rec: ContainerRecord = {
    id: "0123456789ab" + "c".repeat(52),
    name: "web",
    runId: "web",
    image: { path: "/images/busybox" },
    command: ["sh", "-c", "echo hello world; sleep 1000"],
    profiles: ["default"],
    options: [],
    rm: false,
    created: "2025-01-01T11:55:00Z",
    state: "exited",
    pid: 1,
    startTime: 1,
    exitCode: 2,
    finishedAt: "2025-01-01T11:59:30Z",
  };
  const exited = {
    rec,
    status: { state: "exited" as const, exitCode: 2, finishedAt: rec.finishedAt },
  };
  assert.equal(statusText(exited, now), "Exited (2) 30 seconds ago");
  assert.equal(
    statusText({
      rec: { ...rec, startedAt: "2025-01-01T11:58:00Z" },
      status: { state: "running", exitCode: null },
    }, now),
    "Up 2 minutes",
  );
  assert.equal(
    statusText({
      rec: { ...rec, startedAt: "2025-01-01T11:58:00Z" },
      status: { state: "running", exitCode: null, paused: true },
    }, now),
    "Up 2 minutes (Paused)",
  );
  assert.equal(
    statusText({ rec, status: { state: "exited", exitCode: null } }, now),
    "Exited (unknown)",
  );
  assert.equal(
    formatPs([exited], { quiet: false, trunc: true, now }),
    "CONTAINER ID   IMAGE             COMMAND                  CREATED         STATUS                      NAMES\n" +
      '0123456789ab   /images/busybox   "sh -c echo hello wo…"   5 minutes ago   Exited (2) 30 seconds ago   web\n',
  );
  assert.equal(formatPs([exited], { quiet: true, trunc: true, now }), "0123456789ab\n");
  assert.equal(formatPs([exited], { quiet: true, trunc: false, now }), `${rec.id}\n`);
});
