/**
 * The OCI runtime's state: one directory per container under the root (`--root`, default
 * /run/micro-oci as root, `$XDG_RUNTIME_DIR/micro-oci` rootless), holding `state.json` and,
 * between `create` and `start`, the exec fifo the container's process waits on.
 */
import { MicroError } from "../errors.ts";
import type { RecordedCgroup } from "../cgroups/fs.ts";
import type { Hook } from "./hooks.ts";
import { newId, processStartTime, untrustedRoot, untrustedRootError } from "../state.ts";
import { C, cstr, type Sys } from "../sys/mod.ts";
import { freezerOf, isFrozen } from "../stats/cgroup.ts";

export const OCI_VERSION = "1.2.0";

export interface OciState {
  id: string;
  /** The container's first process (the command after `start`), and its start time. */
  pid: number;
  startTime: number;
  bundle: string;
  rootfs: string;
  created: string;
  owner: string;
  annotations: Record<string, string>;
  /**
   * Set while create runs once the child exists: its pid and the cgroups create made are
   * durable before the child joins them, so a delete after a killed create finds both.
   */
  creating?: boolean;
  /** `create --no-new-keyring`: its execs keep the caller's session keyring too. */
  noNewKeyring?: boolean;
  /** The cgroups create made (removed by delete). */
  cgroups: RecordedCgroup[];
  /** config.json's poststart and poststop hooks, run by start and delete. */
  hooks?: Partial<Record<"poststart" | "poststop", Hook[]>>;
}

export type Status = "creating" | "created" | "running" | "paused" | "stopped";

export function defaultOciRoot(uid: number): string {
  if (uid === 0) return "/run/micro-oci";
  const xdg = Deno.env.get("XDG_RUNTIME_DIR");
  return xdg ? `${xdg}/micro-oci` : `/tmp/micro-oci-${uid}`;
}

/**
 * runc's rule for ids: they name a directory, so no `/`, no `..`. And at most NAME_MAX (255)
 * characters: the id is the state directory's name and, without `cgroupsPath`, the
 * cgroup's; a longer one would fail half-way with ENAMETOOLONG.
 */
export function checkId(id: string | undefined): string {
  if (!id) throw new MicroError("no container id given", { hint: "give the container's ID" });
  if (id.length > 255) {
    throw new MicroError(`invalid container id: ${id.length} characters, over 255`, {
      hint: "an id names a directory: give one of at most 255 characters",
    });
  }
  if (!/^[A-Za-z0-9][A-Za-z0-9_+.-]*$/.test(id)) {
    throw new MicroError(`invalid container id "${id}"`, {
      hint: "an id is letters, digits, _ + . - (not starting with a punctuation mark)",
    });
  }
  return id;
}

/** The state root, made (0700) when missing, and refused when others could write it. */
export function ociRoot(root: string, uid: number, make: boolean): string {
  let bad = untrustedRoot(root, uid);
  if (bad) throw untrustedRootError(root, uid, bad);
  if (make) {
    Deno.mkdirSync(root, { recursive: true, mode: 0o700 });
    bad = untrustedRoot(root, uid);
    if (bad) throw untrustedRootError(root, uid, bad);
  }
  return root;
}

/**
 * Serialises the verbs on one container (create, start, kill, delete, pause, resume,
 * update, exec's set-up), as runc does through its state: an exclusive flock(2) on the
 * container's directory, held until the verb is done. A delete removes the directory while
 * holding it, so a verb that waited finds its fd no longer names `ROOT/ID` and looks again:
 * the container is gone, or another made since. -1 when there is no such container.
 */
export function lockContainer(root: string, id: string, sys: Sys): number {
  const dir = `${root}/${checkId(id)}`;
  const path = cstr(dir);
  const here = new Float64Array(2);
  const there = new Float64Array(2);
  for (let k = 0; k < 100; k++) {
    const fd = sys.open(path, C.O_RDONLY | C.O_DIRECTORY | C.O_NOFOLLOW | C.O_CLOEXEC, 0);
    if (fd === -2) return -1;
    if (fd < 0) {
      throw new MicroError("", {
        phase: "lock",
        plugin: "oci",
        op: "open",
        paths: { dir },
        errno: -fd,
      });
    }
    let rc = sys.flock(fd, C.LOCK_EX);
    while (rc === -4) rc = sys.flock(fd, C.LOCK_EX);
    if (rc < 0) {
      sys.close(fd);
      throw new MicroError("", {
        phase: "lock",
        plugin: "oci",
        op: "flock",
        paths: { dir },
        errno: -rc,
      });
    }
    // Still the directory at ROOT/ID (not one a delete removed meanwhile)?
    const again = sys.open(path, C.O_PATH | C.O_DIRECTORY | C.O_NOFOLLOW | C.O_CLOEXEC, 0);
    const same = again >= 0 && sys.fstatId(fd, here) >= 0 && sys.fstatId(again, there) >= 0 &&
      here[0] === there[0] && here[1] === there[1];
    if (again >= 0) sys.close(again);
    if (same) return fd;
    sys.close(fd);
    if (again === -2) return -1;
  }
  throw new MicroError(`container "${id}": its directory kept being replaced`, {
    hint: "another program is making and removing it: stop that, then try again",
  });
}

/**
 * `create`'s directory, made and locked before it has its name: a temp directory, locked,
 * renamed to ROOT/ID without replacing one (so no other verb ever sees it unlocked). The
 * lock's fd, or -1 when ROOT/ID exists.
 */
export function makeLockedDir(root: string, id: string, sys: Sys): number {
  const dir = `${root}/${checkId(id)}`;
  removeStaleNew(root);
  const tmp = `${root}/${NEW_PREFIX}${Deno.pid}-${newId()}`;
  Deno.mkdirSync(tmp, { mode: 0o711 });
  Deno.chmodSync(tmp, 0o711);
  const fd = sys.open(cstr(tmp), C.O_RDONLY | C.O_DIRECTORY | C.O_NOFOLLOW | C.O_CLOEXEC, 0);
  let rc = fd < 0 ? fd : sys.flock(fd, C.LOCK_EX);
  if (rc >= 0) rc = sys.renameat2(C.AT_FDCWD, cstr(tmp), C.AT_FDCWD, cstr(dir), C.RENAME_NOREPLACE);
  if (rc >= 0) return fd;
  if (fd >= 0) sys.close(fd);
  Deno.removeSync(tmp);
  if (rc === -17) return -1;
  throw new MicroError("", {
    phase: "prepare",
    plugin: "oci",
    op: "rename",
    paths: { from: tmp, to: dir },
    errno: -rc,
  });
}

const NEW_PREFIX = ".new-";

/**
 * A create killed between its mkdir and its rename leaves an empty `.new-PID-*` directory:
 * removed at once when PID is gone, else (PID reused, or a name without one) when older than
 * a minute; rmdir only, while it is still empty, as such a leftover is. Create and delete
 * call it, so a `delete --force` after a killed create leaves nothing.
 */
export function removeStaleNew(root: string): void {
  const old = Date.now() - 60_000;
  try {
    for (const e of Deno.readDirSync(root)) {
      if (!e.isDirectory || !e.name.startsWith(NEW_PREFIX)) continue;
      const pid = /^(\d+)-/.exec(e.name.slice(NEW_PREFIX.length))?.[1];
      try {
        const gone = pid !== undefined && ["", "Z", "X"].includes(procState(Number(pid)));
        const st = gone ? undefined : Deno.lstatSync(`${root}/${e.name}`);
        if (gone || (st?.mtime?.getTime() ?? Infinity) < old) Deno.removeSync(`${root}/${e.name}`);
      } catch {
        // gone meanwhile, or not empty: not a leftover of create
      }
    }
  } catch {
    // the root cannot be listed: create fails on its own below
  }
}

export function writeOciState(dir: string, st: OciState): void {
  const tmp = `${dir}/.state.json.tmp`;
  Deno.writeTextFileSync(tmp, JSON.stringify(st) + "\n", { mode: 0o600 });
  Deno.renameSync(tmp, `${dir}/state.json`);
}

/** The state of container `id`, or an error naming it when it does not exist. */
export function loadOciState(root: string, id: string): { dir: string; state: OciState } {
  const dir = `${root}/${checkId(id)}`;
  let text: string;
  try {
    text = Deno.readTextFileSync(`${dir}/state.json`);
  } catch {
    throw new MicroError(`container "${id}" does not exist`, {
      hint: `see "micro oci list" (state root ${root})`,
    });
  }
  try {
    return { dir, state: JSON.parse(text) as OciState };
  } catch {
    throw new MicroError(`container "${id}": ${dir}/state.json is damaged`, {
      hint: `remove it with "micro oci delete --force ${id}"`,
    });
  }
}

/** /proc/PID/stat's state letter, or "" when the process is gone. */
function procState(pid: number): string {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
  } catch {
    return "";
  }
}

/** The container's process is the one create started (same start time) and not a zombie. */
export function alive(st: OciState): boolean {
  if (!st.pid) return false;
  const s = procState(st.pid);
  return s !== "" && s !== "Z" && s !== "X" && processStartTime(st.pid) === st.startTime;
}

export function statusOf(dir: string, st: OciState): Status {
  if (!st.pid) return "creating";
  // A create that ended half-way (micro killed after the clone): its child, once gone, is
  // a stopped container for delete to clean up, not one still being created.
  if (!alive(st)) return "stopped";
  if (st.creating) return "creating";
  try {
    Deno.lstatSync(`${dir}/exec.fifo`);
    return "created";
  } catch {
    return isFrozen0(ownCgroups(st)) ? "paused" : "running";
  }
}

/** The container's own cgroup directories (not a shared parent), for its freezer. */
export function ownCgroups(st: OciState): string[] {
  return st.cgroups.filter((c) => !c.shared && c.created).map((c) => c.path);
}

function readFile(path: string): string | undefined {
  try {
    return Deno.readTextFileSync(path);
  } catch {
    return undefined;
  }
}

function isFrozen0(dirs: string[]): boolean {
  const f = freezerOf(dirs, readFile);
  return f !== undefined && isFrozen(f, readFile);
}

/** The state JSON of the runtime spec (what `state` prints). */
export function specState(dir: string, st: OciState): Record<string, unknown> {
  const status = statusOf(dir, st);
  return {
    ociVersion: OCI_VERSION,
    id: st.id,
    pid: status === "stopped" ? 0 : st.pid,
    status,
    bundle: st.bundle,
    rootfs: st.rootfs,
    created: st.created,
    owner: st.owner,
    ...(Object.keys(st.annotations).length ? { annotations: st.annotations } : {}),
  };
}
