/**
 * The parent's own ops: cgroups made and filled before the clone (prepare), joined by the
 * child while it waits (attach), read after the exit (supervise) and removed at the end
 * (cleanup, in reverse). Each created directory is announced before it exists, so the
 * caller records it in the run's state and a later `gc` can remove it if micro dies.
 */
import { deviceProgram } from "../cgroups/devfilter.ts";
import {
  claimMade,
  killCgroup,
  madeByMicro,
  MAKING_MODE,
  type RecordedCgroup,
  removeCgroup,
} from "../cgroups/fs.ts";
import { errnoOf, hintFor, MicroError } from "../errors.ts";
import { exists } from "../host.ts";
import { type FileError, mkdirAt, readQuiet, readTextAt, typeAt, writeTextAt } from "../files.ts";
import { removeContainerDir } from "../store/containers.ts";
import { privateDirAt } from "../store/paths.ts";
import { type HeldLock, lockFileSync } from "../store/lock.ts";
import type { Op } from "../ops.ts";
import { C, cstr, type Sys } from "../sys/mod.ts";
import type { KillTarget } from "./watchdog.ts";
import { now, span } from "../trace.ts";

const CGROUP_HINTS: Record<number, string> = {
  22: "the kernel refused this value",
  16: "the cgroup is busy (v2: a cgroup with processes cannot enable controllers)",
  2: "the controller or file does not exist on this kernel",
  13: "not allowed to write this cgroup file",
  28: "the limit is lower than what the cgroup already uses",
  17: "a cgroup of this name exists already, another run's or not micro's, and micro leaves it " +
    "alone: choose another --name or --cgroup-parent",
};

/** The error of a failed cgroup op: `e` is what Deno threw, or the errno of a `Sys` call. */
function cgroupError(o: Op, what: string, paths: Record<string, string>, e: unknown): MicroError {
  const errno = typeof e === "number" ? e : errnoOf(e, 5);
  const option = "option" in o.args ? ` (--${(o.args as { option: string }).option})` : "";
  return new MicroError(option ? `for ${option.slice(2, -1)}` : "", {
    phase: o.phase,
    plugin: o.plugin,
    op: what,
    paths,
    errno,
    hint: CGROUP_HINTS[errno] ?? hintFor(what, errno),
  });
}

function fail(o: Op, what: string, paths: Record<string, string>, e: unknown): never {
  throw cgroupError(o, what, paths, e);
}

/**
 * A shared parent cgroup vanished under this run's prepare(): another run that just ended
 * removed it, empty at that instant, between this run's mkdir of it (or its check that it
 * exists) and its mkdir of its own dir in it, or a write to one of its files (v1 cpuset).
 */
class ParentGone extends Error {
  constructor(readonly error: MicroError) {
    super("a shared parent cgroup was removed meanwhile");
  }
}

/** How many times prepare() does its cgroup work again after a ParentGone. */
const PARENT_GONE_TRIES = 5;

export interface ParentHooks {
  /** `micro start`: the overlay's upper and work exist already and are kept. */
  reuseContainerDir?: boolean;
  /**
   * Called once, before any directory is created, with every one prepare() will create,
   * so they are recorded in the run's state (one write) before the first exists. prepare()
   * then marks each record `created` as its mkdir succeeds; the caller's next state write
   * (the child's pid, before the child joins any cgroup) makes that ownership durable. A
   * child born in its cgroup (clone3, v2) is in it before that write: micro killed in
   * between leaves a dir not marked as the run's, which the child (PDEATHSIG) leaves at
   * once, so gc and `oci delete` find it empty and remove it.
   */
  onCreate?: (all: RecordedCgroup[]) => void;
  /** Called with the container's directory before it is created (for the state). */
  onContainerDir?: (dir: string) => void;
}

/** The host id container id 0 maps to in the run's `uid_map`/`gid_map` op, if any. */
export function rootHostId(plan: Op[], file: "uid_map" | "gid_map"): number | undefined {
  for (const o of plan) {
    const text = o.kind === "proc-write" && o.args.file === file
      ? o.args.content
      : o.kind === "idmap-helper" && o.args.map === file
      ? o.args.args
      : undefined;
    if (text === undefined) continue;
    const n = text.trim().split(/\s+/).map(Number);
    for (let i = 0; i + 2 < n.length; i += 3) {
      if (n[i] === 0 && Number.isInteger(n[i + 1])) return n[i + 1];
    }
    return undefined;
  }
  return undefined;
}

/**
 * The cgroup-create ops of the plan that prepare() will carry out, and their records for the
 * run's state: a shared parent that exists already (not one the run owns) is used, never
 * created or removed. The run writes these into its first state write, so that prepare()
 * needs no write of its own when they are the same then.
 */
export function plannedCgroups(plan: Op[]): {
  creates: (Op & { kind: "cgroup-create" })[];
  records: RecordedCgroup[];
} {
  const creates = plan.filter((o): o is Op & { kind: "cgroup-create" } =>
    o.phase === "prepare" && o.kind === "cgroup-create" &&
    !(o.args.shared && !o.args.owned && exists(o.args.path))
  );
  const records: RecordedCgroup[] = creates.map(({ args: { path, shared } }) => ({
    path,
    shared,
    kill: shared ? undefined : killHow(plan, path),
  }));
  return { creates, records };
}

function killHow(plan: Op[], path: string): RecordedCgroup["kill"] {
  const k = plan.find((o) => o.kind === "cgroup-kill" && o.args.path === path);
  return k?.kind === "cgroup-kill" ? k.args.how : "signal";
}

export class ParentOps {
  private readonly done: Op[] = [];
  private containerDirMade: string | null = null;
  /** The cgroups prepare() meant to create, each marked `created` once its mkdir made it. */
  private records: RecordedCgroup[] = [];
  /** Shared locks on the volumes this run uses: `micro volume rm` waits for none of them. */
  private readonly volumeLocks: HeldLock[] = [];
  constructor(
    private readonly plan: Op[],
    private readonly sys: Sys,
    private readonly hooks: ParentHooks = {},
  ) {}

  /**
   * prepare: cgroups created and written; on error, cleanup() undoes what was done. When a
   * shared parent vanishes meanwhile (ParentGone), the cgroup work is done again from the
   * start: a shared level's mkdir takes EEXIST, the run's own dirs made already are kept
   * (a parent with a child cannot be removed), the writes put the same values; the other
   * ops done already are not redone.
   */
  prepare(): void {
    // A parent the user made (--cgroup-parent) is used, never created or removed.
    const { creates, records } = plannedCgroups(this.plan);
    this.records = records;
    if (creates.length) this.hooks.onCreate?.(records);
    for (let tries = 1;; tries++) {
      try {
        this.prepareOnce(creates, records);
        return;
      } catch (e) {
        if (!(e instanceof ParentGone)) throw e;
        if (tries >= PARENT_GONE_TRIES) throw e.error;
      }
    }
  }

  private prepareOnce(creates: Op[], records: RecordedCgroup[]): void {
    for (const o of this.plan) {
      if (o.phase !== "prepare") continue;
      const cgroupWork = o.kind === "cgroup-create" || o.kind === "cgroup-write";
      if (!cgroupWork && this.done.includes(o)) continue;
      switch (o.kind) {
        case "cgroup-create": {
          const { path, shared } = o.args;
          if (!creates.includes(o)) continue;
          // 0755 at most, even under umask 0: a cgroup others may write is one they may fill,
          // or make a future run's directory in (runc makes them 0755 too).
          const record = records[creates.indexOf(o)];
          if (record.created && !shared) break; // made on an earlier try
          if (shared) {
            // Through sys: a parent there already (another container runs) is EEXIST, an
            // answer, where Deno's mkdir would throw the process's first error (about 1 ms).
            const rc = this.sys.mkdirat(C.AT_FDCWD, cstr(path), MAKING_MODE);
            if (rc === 0) {
              // Still the one made (not removed by another run and made again meanwhile).
              if (claimMade(this.sys, path)) record.created = true;
              else delete record.created;
            } else if (rc === -17 && record.created && !madeByMicro(this.sys, path)) {
              // Made by an earlier try, gone since, and made again by someone else than
              // micro: theirs.
              delete record.created;
            } else if (rc === -2) throw new ParentGone(cgroupError(o, "mkdir", { path }, 2));
            else if (rc !== -17) fail(o, "mkdir", { path }, -rc);
            break;
          }
          const made = this.sys.mkdirat(C.AT_FDCWD, cstr(path), 0o755);
          if (made === -2) throw new ParentGone(cgroupError(o, "mkdir", { path }, 2));
          // A run's own dir that exists already is not ours: fail, and never touch it.
          if (made < 0) fail(o, "mkdir", { path }, -made);
          record.created = true;
          break;
        }
        case "cgroup-write": {
          const { ifEmpty, fallback, optional } = o.args;
          if (optional && !exists(o.args.path)) break;
          const useFallback = !!fallback && !exists(o.args.path) && exists(fallback);
          const path = useFallback ? fallback : o.args.path;
          const value = useFallback ? o.args.fallbackValue ?? o.args.value : o.args.value;
          const held = ifEmpty ? readTextAt(this.sys, path) : "";
          if (typeof held === "string" && held.trim() !== "") break;
          // No O_CREAT: a file this kernel lacks (a unified key, a page size) is ENOENT.
          const rc = typeof held === "number" ? held : writeTextAt(this.sys, path, value);
          if (rc < 0) {
            const error = cgroupError(o, "write", { path, value: JSON.stringify(value) }, -rc);
            // Its directory gone (not a file this kernel lacks): a shared parent vanished.
            const gone = rc === -2 && !exists(path.slice(0, path.lastIndexOf("/")));
            throw gone ? new ParentGone(error) : error;
          }
          break;
        }
        case "cgroup-devices":
          this.attachDeviceFilter(o);
          break;
        case "overlay-dirs":
          this.containerDir(o);
          break;
        case "volume-dir":
          this.volumeDir(o);
          break;
      }
      if (!this.done.includes(o)) this.done.push(o);
    }
  }

  /**
   * The container's directory, with the overlay's upper and work directories owned by the
   * container's root, who mounts the overlay from inside its user namespace, through an
   * fd of this directory: ROOT/containers above it is the store owner's alone.
   */
  private containerDir(o: Op & { kind: "overlay-dirs" }): void {
    const { dir } = o.args;
    const uid = rootHostId(this.plan, "uid_map") ?? Deno.uid() ?? 0;
    const gid = rootHostId(this.plan, "gid_map") ?? Deno.gid() ?? 0;
    const parent = dir.slice(0, dir.lastIndexOf("/"));
    // Through sys (core/files.ts says why). The run made `dir` already, with the container's
    // record (core/store/containers.ts): EEXIST is the usual answer.
    const sys = this.sys;
    const up = mkdirAt(sys, parent, 0o700, true);
    if (up < 0 && up !== -17) fail(o, "mkdir", { path: parent }, -up);
    try {
      privateDirAt(sys, parent);
    } catch (e) {
      const f = e as FileError;
      fail(o, f.step, { path: f.path }, f.errno);
    }
    this.hooks.onContainerDir?.(dir);
    const rc = mkdirAt(sys, dir, 0o711);
    if (rc < 0 && rc !== -17) fail(o, "mkdir", { path: dir }, -rc);
    // `micro start`: the container's own upper and work, kept from its last run (not
    // this run's to remove).
    const isDir = (p: string) => typeAt(sys, p, false) === C.S_IFDIR;
    if (this.hooks.reuseContainerDir && isDir(`${dir}/upper`) && isDir(`${dir}/work`)) return;
    // A fresh upper is what makes the directory this run's: an existing one is not.
    for (const d of ["upper", "work"]) {
      const path = `${dir}/${d}`;
      const made = sys.mkdirat(C.AT_FDCWD, cstr(path), 0o755);
      if (made < 0) fail(o, "mkdir", { path }, -made);
      if (d === "upper") this.containerDirMade = dir; // ours from here on, whatever fails next
    }
    for (const d of ["upper", "work"]) {
      const path = `${dir}/${d}`;
      const rc = sys.fchownat(C.AT_FDCWD, cstr(path), uid, gid, C.AT_SYMLINK_NOFOLLOW);
      if (rc < 0) fail(o, "chown", { path, uid: String(uid), gid: String(gid) }, -rc);
    }
  }

  /**
   * A volume's directory, made on first use: its parents traversable (0711), `_data`
   * owned by the container's root (as the overlay's upper), so the container's root may
   * write it. One that exists is the volume's content: left as it is.
   */
  private volumeDir(o: Op & { kind: "volume-dir" }): void {
    const { dir, path } = o.args;
    try {
      Deno.mkdirSync(dir.slice(0, dir.lastIndexOf("/")), { recursive: true, mode: 0o711 });
      try {
        Deno.mkdirSync(dir, { mode: 0o711 });
      } catch (e) {
        if (!(e instanceof Deno.errors.AlreadyExists)) throw e;
      }
      // Held until the run ends: `micro volume rm` refuses a volume in use.
      this.volumeLocks.push(lockFileSync(`${dir}/lock`, false));
      try {
        Deno.mkdirSync(path, { mode: 0o755 });
      } catch (e) {
        if (e instanceof Deno.errors.AlreadyExists) return;
        throw e;
      }
      const uid = rootHostId(this.plan, "uid_map") ?? Deno.uid() ?? 0;
      const gid = rootHostId(this.plan, "gid_map") ?? Deno.gid() ?? 0;
      Deno.chownSync(path, uid, gid);
    } catch (e) {
      if (e instanceof MicroError) throw e;
      fail(o, "mkdir", { path }, e);
    }
  }

  /** The v2 device allow-list: load the eBPF program and attach it to the cgroup. */
  private attachDeviceFilter(o: Op & { kind: "cgroup-devices" }): void {
    const insns = deviceProgram(o.args.rules);
    const license = cstr("GPL");
    // Without a log first: a big program's log can overflow and fail a valid load.
    let log = new Uint8Array(0);
    let prog = this.sys.bpfProgLoad(15, insns, license, log); // CGROUP_DEVICE
    if (prog < 0) {
      log = new Uint8Array(1 << 20);
      prog = this.sys.bpfProgLoad(15, insns, license, log);
    }
    if (prog < 0) {
      const text = new TextDecoder().decode(log.subarray(0, Math.max(0, log.indexOf(0))));
      throw new MicroError(text ? `verifier: ${text.trim().split("\n").pop()}` : "", {
        phase: "prepare",
        plugin: o.plugin,
        op: "bpf(BPF_PROG_LOAD)",
        paths: { type: "cgroup_device", insns: String(insns.length / 8) },
        errno: -prog,
      });
    }
    const dir = this.sys.open(cstr(o.args.path), C.O_RDONLY | C.O_DIRECTORY | C.O_CLOEXEC, 0);
    const rc = dir < 0 ? dir : this.sys.bpfProgAttach(dir, prog, 6, 2); // DEVICE, ALLOW_MULTI
    if (dir >= 0) this.sys.close(dir);
    this.sys.close(prog);
    if (rc < 0) {
      throw new MicroError("", {
        phase: "prepare",
        plugin: o.plugin,
        op: "bpf(BPF_PROG_ATTACH)",
        paths: { cgroup: o.args.path },
        errno: -rc,
      });
    }
  }

  /**
   * What to kill if micro dies (the watchdog): each cgroup-kill op's directory, when this
   * run created it. Empty when the run has no cgroup of its own.
   */
  killTargets(): KillTarget[] {
    const created = new Set<string>();
    for (const o of this.done) {
      if (o.kind === "cgroup-create" && !o.args.shared) created.add(o.args.path);
    }
    return this.plan.flatMap((o) =>
      o.kind === "cgroup-kill" && created.has(o.args.path)
        ? [{ path: o.args.path, how: o.args.how }]
        : []
    );
  }

  /**
   * The one cgroup v2 directory the child joins, open, for clone3's CLONE_INTO_CGROUP: the
   * child is born in it and no cgroup.procs write (nor its wait for the kernel) is made.
   * -1 when the run joins none or several (v1's hierarchies), or the dir is not cgroup2.
   */
  cloneInto(): number {
    const joins = this.joins().map((o) => o.args.path);
    if (joins.length !== 1) return -1;
    // An affinity to set before the child joins (OCI execCPUAffinity.initial): clone, then
    // set it, then join by cgroup.procs, as runc.
    if (this.plan.some((o) => o.phase === "attach" && o.kind === "cpu-affinity")) return -1;
    const path = joins[0];
    const fd = this.sys.open(cstr(path), C.O_PATH | C.O_DIRECTORY | C.O_CLOEXEC, 0);
    if (fd < 0) return -1;
    if (this.sys.fstatfsType(fd) === C.CGROUP2_SUPER_MAGIC) return fd;
    this.sys.close(fd);
    return -1;
  }

  /**
   * The run's cgroup.procs files, open for writing, for a vfork child that joins its cgroups
   * itself (core/engine/vfork.ts). A file that cannot be opened fails as its write would.
   */
  openProcs(): { fd: number; path: string }[] {
    const out: { fd: number; path: string }[] = [];
    for (const o of this.joins()) {
      const path = `${o.args.path}/cgroup.procs`;
      const fd = this.sys.open(cstr(path), C.O_WRONLY | C.O_CLOEXEC, 0);
      if (fd < 0) {
        for (const p of out) this.sys.close(p.fd);
        fail(o, "open", { path }, -fd);
      }
      out.push({ fd, path });
    }
    return out;
  }

  /** The attach's cgroup joins, in plan order. */
  private joins() {
    return this.plan.flatMap((o) => o.phase === "attach" && o.kind === "cgroup-join" ? [o] : []);
  }

  /** attach: the child joins every cgroup of the run (none when it was born in its one). */
  attach(pid: number, born = false): void {
    if (born) return;
    let first = true;
    for (const o of this.joins()) {
      const path = `${o.args.path}/cgroup.procs`;
      const t = now();
      const rc = writeTextAt(this.sys, path, String(pid));
      if (rc < 0) fail(o, "write", { path, pid: String(pid) }, -rc);
      // The first attach of a v1 hierarchy waits for an RCU grace period (bench/README.md).
      if (first) span("first cgroup.procs write", t);
      first = false;
    }
  }

  /** supervise: the memory limit the OOM killer enforced, if it struck. */
  oomKilled(): number | undefined {
    for (const o of this.plan) {
      if (o.kind !== "cgroup-oom") continue;
      const text = readQuiet(this.sys, o.args.path); // none: no OOM accounting
      const m = text === null ? null : new RegExp(`^${o.args.key} (\\d+)$`, "m").exec(text);
      if (m && Number(m[1]) > 0) return o.args.limit;
    }
    return undefined;
  }

  /**
   * cleanup, in reverse: kill what is left, remove the run's cgroups, then the shared
   * parents once empty. Problems are returned, not thrown: cleanup always runs to the end.
   */
  cleanup(): string[] {
    const problems: string[] = [];
    const created = new Set(
      this.done.filter((o) => o.kind === "cgroup-create").map((o) => o.args.path as string),
    );
    const ops = this.plan.filter((o) => o.phase === "cleanup").reverse();
    for (const o of ops) {
      if (o.kind === "cgroup-kill" && created.has(o.args.path)) {
        if (!killCgroup(o.args.path, o.args.how, () => this.sys, this.sys)) {
          problems.push(`cgroup ${o.args.path}: processes still running after SIGKILL`);
        }
      }
      if (o.kind === "overlay-remove" && this.containerDirMade === o.args.dir) {
        const why = removeContainerDir(o.args.dir, this.sys);
        if (why) problems.push(`container directory ${o.args.dir} not removed: ${why}`);
      }
      if (o.kind === "cgroup-remove" && o.args.shared && created.has(o.args.path)) {
        // Once empty, and only micro's (one it found there unmarked is an admin's): one rmdir
        // through sys, as in use (EBUSY: another container's) is an answer there, where
        // Deno's would throw the process's first error (about 1 ms).
        const made = this.records.some((r) => r.path === o.args.path && r.created);
        if (made || madeByMicro(this.sys, o.args.path)) {
          this.sys.unlinkat(C.AT_FDCWD, cstr(o.args.path), C.AT_REMOVEDIR);
        }
      } else if (o.kind === "cgroup-remove" && created.has(o.args.path)) {
        const why = removeCgroup(o.args.path, false, () => this.sys, this.sys);
        if (why) problems.push(`cgroup ${o.args.path} not removed: ${why}`);
      }
    }
    for (const l of this.volumeLocks.splice(0)) l.release();
    return problems;
  }
}
