/**
 * Containers as Docker keeps them (DESIGN.md §10). Every run is a container with its own
 * directory `ROOT/containers/<id>/`: `config.json` (its record) and, with the overlay
 * plugin, the overlay's `upper` and `work`. With `--rm` the run removes it at exit (and gc
 * after a killed run); without, it stays, exited, until `micro rm`.
 *
 * Names are unique among containers: `ROOT/containers/.names/<name>` is a symlink to the
 * id, made, checked and removed only under the flock of `ROOT/containers/.lock`. A link
 * whose container is gone (a crash between the two) is stale and taken over. Removal
 * renames the directory to `.rm-<id>` first, so a half-removed container never looks like
 * one; listing clears what a killed removal left.
 */
import { isoTime } from "../clock.ts";
import { MicroError } from "../errors.ts";
import type { Op } from "../ops.ts";
import { containerDir, privateDirAt } from "./paths.ts";
import { resolveRef } from "./resolve.ts";
import { removeTreeSync as removeTree } from "./tmp.ts";
import { FileError, mkdirAt, readLinkAt, readQuiet, replaceTextAt, typeAt } from "../files.ts";
import { openLibc } from "../sys/libc.ts";
import { C, cstr, decodeText, randomHex, type Sys } from "../sys/mod.ts";

/** What a container runs from: a directory image, or a store image (id and name). */
export interface ImageRef {
  /** A root file system directory (its real path). */
  path?: string;
  /** A store image: its id (config digest) and the reference it was run by. */
  id?: string;
  name?: string;
}

/** `config.json`: written before the run starts, updated when it starts and ends. */
export interface ContainerRecord {
  /** 64 hex digits; the first 12 are the short id shown by `ps` (and the default name). */
  id: string;
  name: string;
  /** The run's id in the state root (its state dir, cgroup, default hostname): the name. */
  runId: string;
  /** null: the host view (no image). */
  image: ImageRef | null;
  /** The overlay's lower directories, top first: what `diff` compares the upper with. */
  lower?: string[];
  /** Their identity when the container was made, checked again before `diff` reads them. */
  lowerIds?: { dev: number; ino: number }[];
  /** Set when the container has a layer of its own (`upper`); `userxattr` names its xattrs. */
  layer?: { userxattr: boolean };
  /** Mount points micro made in the upper layer: setup, not the container's changes. */
  mountPoints?: string[];
  command: string[];
  profiles: string[];
  /** The options given to `micro run`, as typed. */
  options: string[];
  rm: boolean;
  /** `--label`, `--label-file`: what `micro ps --filter label=` matches. */
  labels?: Record<string, string>;
  /** `--stop-signal` (else the image's) and `--stop-timeout`, as the run used them. */
  stopSignal?: string;
  stopTimeout?: number;
  created: string;
  /** created: not started yet (or failed to start); running; exited. */
  state: "created" | "running" | "exited";
  /** micro's own pid and start time (clock ticks since boot) for this run. */
  pid: number;
  startTime: number;
  startedAt?: string;
  /** The exit code `micro run` returned; absent when it did not get to return one. */
  exitCode?: number;
  finishedAt?: string;
  /** Why it failed to start, when it did. */
  error?: string;
}

const ID = /^[0-9a-f]{64}$/;
const RECORD_CAP = 1 << 20;

/** A new container id: 64 random hex digits, as Docker's. */
export function newContainerId(): string {
  return randomHex(openLibc(), 32);
}

export function containersDir(root: string): string {
  return `${root}/containers`;
}

/**
 * Runs `fn` holding the exclusive flock of `ROOT/containers/.lock` (made with the directory
 * when missing): names are chosen, and containers made and removed, one at a time.
 */
export function withContainersLock<T>(root: string, fn: () => T, sys = openLibc()): T {
  const dir = containersDir(root);
  const made = mkdirAt(sys, root, 0o700, true);
  if (made < 0 && made !== -17) throw new FileError("create", root, -made);
  privateDirAt(sys, dir);
  const path = `${dir}/.lock`;
  const lock = sys.open(cstr(path), LOCK_OPEN, 0o600);
  if (lock < 0) throw new FileError("open", path, -lock);
  try {
    let rc: number;
    do rc = sys.flock(lock, C.LOCK_EX); while (rc === -4); // EINTR
    if (rc < 0) throw new FileError("lock", path, -rc);
    return fn();
  } finally {
    sys.close(lock); // releases the lock
  }
}

/** Writes the record atomically (a temporary file renamed over it). */
export function writeRecord(dir: string, rec: ContainerRecord, sys = openLibc()): void {
  replaceTextAt(sys, `${dir}/config.json`, JSON.stringify(rec, null, 2) + "\n", 0o644);
}

/** The record in `dir`, or null when there is none (or it is not a regular file we wrote). */
export function readRecord(dir: string): ContainerRecord | null {
  let file: Deno.FsFile;
  try {
    file = Deno.openSync(`${dir}/config.json`);
  } catch {
    return null;
  }
  try {
    const st = file.statSync();
    if (!st.isFile || st.size > RECORD_CAP) return null;
    const buf = new Uint8Array(st.size);
    let n = 0;
    while (n < buf.length) {
      const got = file.readSync(buf.subarray(n));
      if (got === null) break;
      n += got;
    }
    const rec = JSON.parse(decodeText(buf.subarray(0, n)));
    if (
      typeof rec !== "object" || rec === null || !ID.test(rec.id) || typeof rec.name !== "string"
    ) {
      return null;
    }
    return rec as ContainerRecord;
  } catch {
    return null;
  } finally {
    file.close();
  }
}

function namesDir(root: string): string {
  return `${containersDir(root)}/.names`;
}

function readLink(path: string): string | null {
  try {
    return Deno.readLinkSync(path);
  } catch {
    return null;
  }
}

/** The error for a name in use, as Docker's "Conflict. The container name ... is in use". */
export function nameConflict(name: string, other: ContainerRecord): MicroError {
  return new MicroError(
    `the container name "${name}" is already in use by container ${other.id.slice(0, 12)}`,
    { hint: `remove it with "micro rm ${name}", or choose another --name` },
  );
}

/**
 * Makes the container: takes its name, then its directory and record, under the lock.
 * Throws a MicroError when the name is in use by another container.
 */
export function createContainer(root: string, rec: ContainerRecord): void {
  try {
    makeContainer(root, rec);
  } catch (e) {
    if (e instanceof MicroError && !(e instanceof FileError)) throw e;
    // An unwritable --root (a rootless MICRO_ROOT under a directory of root's, say): one
    // line naming the call, the path and the errno, not a stack trace.
    throw new MicroError(
      `container store ${containersDir(root)}: ${String((e as Error).message).split("\n")[0]}`,
      { hint: "check --root (or MICRO_ROOT): micro must be able to write it" },
    );
  }
}

function makeContainer(root: string, rec: ContainerRecord): void {
  const sys = openLibc();
  withContainersLock(root, () => {
    const names = namesDir(root);
    const made = mkdirAt(sys, names, 0o700, true);
    if (made < 0 && made !== -17) throw new FileError("create", names, -made);
    const link = `${names}/${rec.name}`;
    // The name taken first, looked at only when taken already (through sys, as the rest).
    const id = cstr(rec.id);
    let rc = sys.symlinkat(id, C.AT_FDCWD, cstr(link));
    if (rc === -17) {
      const target = readLinkAt(sys, link);
      if (target !== null) {
        const other = ID.test(target) ? readRecord(containerDir(root, target)) : null;
        if (other && other.name === rec.name) throw nameConflict(rec.name, other);
        sys.unlinkat(C.AT_FDCWD, cstr(link), 0); // stale: its container is gone
      }
      rc = sys.symlinkat(id, C.AT_FDCWD, cstr(link));
    }
    if (rc < 0) throw new FileError("link", link, -rc);
    const dir = containerDir(root, rec.id);
    rc = mkdirAt(sys, dir, 0o711);
    if (rc < 0) throw new FileError("create", dir, -rc);
    writeRecord(dir, rec, sys);
  }, sys);
}

/** Every container in the store (records that cannot be read are skipped). */
export function listContainers(root: string): ContainerRecord[] {
  const dir = containersDir(root);
  let entries: Deno.DirEntry[];
  try {
    entries = [...Deno.readDirSync(dir)];
  } catch {
    return [];
  }
  const out: ContainerRecord[] = [];
  for (const e of entries) {
    if (e.name.startsWith(".rm-") && e.isDirectory) {
      // What a killed `rm` left: renamed away already, so no container's any more.
      removeTree(`${dir}/${e.name}`);
      continue;
    }
    if (!ID.test(e.name) || !e.isDirectory) continue;
    const rec = readRecord(`${dir}/${e.name}`);
    if (rec && rec.id === e.name) out.push(rec);
  }
  return out;
}

/**
 * The container `ref` names, as Docker resolves it (core/store/resolve.ts): a full id, else
 * a name, else a unique prefix of an id. Throws a MicroError when none or several match.
 */
export function resolveContainer(root: string, ref: string): ContainerRecord {
  return resolveRef(ref, {
    byId: (id) => {
      const rec = readRecord(containerDir(root, id));
      return rec && rec.id === id ? rec : null;
    },
    byName: (name) => {
      const target = readLink(`${namesDir(root)}/${name}`);
      if (target === null || !ID.test(target)) return null;
      const rec = readRecord(containerDir(root, target));
      return rec && rec.name === name ? rec : null;
    },
    all: () => listContainers(root).map((rec) => ({ id: rec.id, name: rec.name, value: rec })),
  });
}

/**
 * Removes a container's directory `ROOT/containers/<id>` and its name: renamed to
 * `.rm-<id>` under the lock (the name link dropped when it still points at this id), then
 * removed outside it. Nothing in it is followed. Returns why it failed, if it did.
 *
 * Through `sys` (the real libc's), as a run's last steps: the lock, the record's name, the
 * rename and the link each take a call or two and no Deno error when something is gone; the
 * tree goes through `removeTreeAt` first. The store exists (the directory is in it), so the
 * lock file is opened, not made with its directory as `withContainersLock` does.
 */
export function removeContainerDir(dir: string, sys: Sys): string | undefined {
  const slash = dir.lastIndexOf("/");
  const parent = dir.slice(0, slash);
  const id = dir.slice(slash + 1);
  const trash = `${parent}/.rm-${id}`;
  const trashThere = () => typeAt(sys, trash, false) !== 0;
  if (typeAt(sys, dir, false) === 0) {
    // Gone already (or a killed removal's leftovers).
    return trashThere() ? removeTree(trash, true, sys) : undefined;
  }
  const lock = sys.open(cstr(`${parent}/.lock`), LOCK_OPEN, 0o600);
  if (lock === -2) return undefined; // its store is gone, and it with it
  // Not a store we can lock (a read-only parent): removed in place.
  if (lock < 0) return removeTree(dir, true, sys);
  let rc: number;
  try {
    do rc = sys.flock(lock, C.LOCK_EX); while (rc === -4); // EINTR
    if (rc === 0) {
      const name = recordName(sys, dir, id);
      if (trashThere()) removeTree(trash, true, sys);
      rc = sys.renameat2(C.AT_FDCWD, cstr(dir), C.AT_FDCWD, cstr(trash), 0);
      if (rc === 0 && name !== undefined && /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/.test(name)) {
        const link = `${namesDir(parent.slice(0, parent.lastIndexOf("/")))}/${name}`;
        if (readLinkAt(sys, link) === id) sys.unlinkat(C.AT_FDCWD, cstr(link), 0);
      }
    }
  } finally {
    sys.close(lock); // releases the lock
  }
  if (rc === -2) return undefined; // removed meanwhile
  // Not renamed (a store we cannot rename in): removed in place.
  return removeTree(rc === 0 ? trash : dir, true, sys);
}

const LOCK_OPEN = C.O_RDWR | C.O_CREAT | C.O_NOFOLLOW | C.O_CLOEXEC;

/** The name in a container's record (through `sys`), when it is the record of `id`. */
function recordName(sys: Sys, dir: string, id: string): string | undefined {
  const text = readQuiet(sys, `${dir}/config.json`, RECORD_CAP);
  if (text === null) return undefined;
  try {
    const rec = JSON.parse(text);
    return rec?.id === id && typeof rec.name === "string" ? rec.name : undefined;
  } catch {
    return undefined; // not a record micro wrote
  }
}

/**
 * The mount points to hide from `diff`: those the run made in the upper layer (Docker keeps
 * them in a layer of their own), but not the working directory, which Docker's diff shows.
 */
export function hiddenMountPoints(ops: Op[], created: string[], files: string[]): string[] {
  const cd = ops.find((o) => o.kind === "chdir");
  const cwd = cd?.kind === "chdir" ? cd.args.path : null;
  const shown = (p: string) => cwd !== null && (cwd === p || cwd.startsWith(p + "/"));
  return [...created, ...files].filter((p) => !shown(p));
}

/**
 * A run's container, from the side of the run: made before the engine starts, marked
 * running when the container's init exists, exited at the end. A `--rm` container's end
 * is not recorded: the run removes it then.
 */
export class ContainerRun {
  readonly dir: string;
  /** Set once this run made the directory (and took the name): only then is it ours. */
  made = false;

  constructor(private readonly root: string, readonly record: ContainerRecord) {
    this.dir = containerDir(root, record.id);
  }

  create(): void {
    createContainer(this.root, this.record);
    this.made = true;
  }

  /**
   * `micro start`: the kept container `prev` runs again with its id, name, creation time
   * and restart counts (its directory and layer are kept; `reuse` instead of `create`).
   */
  again(prev: ContainerRecord): void {
    const keep = prev as ContainerRecord & { restartCount?: number; backoff?: number };
    const rec = this.record as ContainerRecord & { restartCount?: number; backoff?: number };
    rec.created = prev.created;
    rec.options = prev.options;
    rec.command = prev.command;
    if (prev.mountPoints) rec.mountPoints = prev.mountPoints;
    if (keep.restartCount !== undefined) rec.restartCount = keep.restartCount;
    if (keep.backoff !== undefined) rec.backoff = keep.backoff;
  }

  /** The container's directory exists (`again`): the record is rewritten, and ours. */
  reuse(): void {
    this.made = true;
    delete this.record.exitCode;
    delete this.record.finishedAt;
    delete this.record.error;
    this.save(true);
  }

  started(): void {
    this.record.state = "running";
    this.record.startedAt = isoTime();
    this.save(true); // a --rm container too: ps lists it while it runs
  }

  exited(code: number): void {
    this.record.state = "exited";
    this.record.exitCode = code;
    this.record.finishedAt = isoTime();
    this.save();
  }

  /** The run failed: exited if the container had started, else still "created" (Docker). */
  failed(e: unknown): void {
    if (this.record.state === "running") this.record.state = "exited";
    this.record.exitCode = e instanceof MicroError ? e.exitCode : 125;
    this.record.finishedAt = isoTime();
    this.record.error = e instanceof MicroError ? e.line() : String(e).split("\n")[0];
    this.save();
  }

  private save(evenRm = false): void {
    if (!this.made || (this.record.rm && !evenRm)) return;
    try {
      writeRecord(this.dir, this.record);
    } catch (e) {
      console.error(`micro: warning: container record ${this.dir}/config.json: ${e}`);
    }
  }
}
