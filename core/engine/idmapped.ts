/**
 * Idmapped image mounts for a root-run container with a user namespace (hardened): the
 * image's files are owned by host ids (root is 0, an image's app user 1000), which the
 * container's map (0 -> 1000000000, ...) does not cover, so in the container they would all
 * show as nobody, its own user could not read its 0700 files and a copy-up of them would
 * fail. A mount idmapped with a user namespace of the container's maps shows on-disk id N as
 * the container's N (DESIGN.md §10). The namespace must exist before the clone, so that the
 * trees are made in the parent and inherited: a throwaway process makes a new user namespace,
 * is given the container's maps, and the namespace is held by fd (crun does the same; here
 * a child cloned in micro's memory, or a small holder program where that cannot be had).
 */
import { MicroError } from "../errors.ts";
import type { Op } from "../ops.ts";
import { C, cstr, type Sys } from "../sys/mod.ts";
import { mountAttrs, mountAttrsClear, mountFlags } from "./child.ts";
import { sealedProgram, spawnSealed } from "./memfd.ts";
import { USERNS_HOLDER } from "./trampoline.ts";
import { VFORK_CODE, vforkUsable } from "./vfork.ts";

const EMPTY = cstr("");

/** The container's uid and gid maps when root runs it in a user namespace that shifts ids. */
export function shiftedMaps(ops: Op[], uid: number): { uid: string; gid: string } | null {
  if (uid !== 0) return null; // rootless: its layers are stored shifted already
  let u: string | undefined;
  let g: string | undefined;
  for (const o of ops) {
    if (o.kind !== "proc-write") continue;
    if (o.args.file === "uid_map") u = o.args.content;
    if (o.args.file === "gid_map") g = o.args.content;
  }
  if (u === undefined || g === undefined) return null;
  const identity = (m: string) => /^\s*0\s+0\s+4294967295\s*$/.test(m);
  return identity(u) && identity(g) ? null : { uid: u, gid: g };
}

/**
 * A user namespace with these maps, held by the returned fd (O_CLOEXEC): from a child cloned
 * in micro's memory where the vfork stub is (x86_64), else from micro's holder program.
 */
export async function mappedUserns(sys: Sys, maps: { uid: string; gid: string }): Promise<number> {
  return clonedUserns(sys, maps) ?? await heldUserns(sys, maps);
}

/**
 * The same from a child that micro clones sharing its memory (the vfork stub's userns_hold,
 * core/sys/mod.ts usernsHold) instead of a spawned holder program: no exec, no thread, no
 * event-loop turn. The child is in its user namespace when the clone returns; micro writes
 * its maps and opens its namespace while it waits on a pipe, then lets it go. The idmapped
 * image took 3.2 ms of a hardened run with the holder, 1.9 ms so (n=25, the stub's one-time
 * set-up, moved here from the container's clone, included). null where it cannot be had (no stub,
 * MICRO_VFORK=0, the clone refused): the holder then.
 */
function clonedUserns(sys: Sys, maps: { uid: string; gid: string }): number | null {
  if (!vforkUsable(sys)) return null;
  const pipe = new Int32Array(2);
  if (sys.pipe2(pipe, C.O_CLOEXEC) < 0) return null;
  // Its stack: off V8's moving heap (a backing store this size), alive until it is reaped.
  const stack = new Uint8Array(16 * 1024);
  const pid = sys.usernsHold(VFORK_CODE(), C.CLONE_NEWUSER | C.SIGCHLD, stack, pipe[0], pipe[1]);
  sys.close(pipe[0]);
  if (pid < 0) {
    sys.close(pipe[1]);
    return null; // refused (a kernel or filter without CLONE_VM here): the holder
  }
  try {
    return mapAndOpen(sys, pid, maps);
  } finally {
    sys.close(pipe[1]); // the child reads the end of the pipe and exits
    // Reaped when it has: nothing of the run waits for that. Its stack stays referenced
    // until then.
    sys.waitpid(pid).then(() => stack.length, () => {});
  }
}

/**
 * Writes the maps of `pid`'s user namespace (each file in one write, as the kernel wants)
 * and opens that namespace: its fd. Both holders' last step.
 */
function mapAndOpen(sys: Sys, pid: number, maps: { uid: string; gid: string }): number {
  for (const [file, content] of [["uid_map", maps.uid], ["gid_map", maps.gid]]) {
    const fd = sys.open(cstr(`/proc/${pid}/${file}`), C.O_WRONLY | C.O_CLOEXEC, 0);
    if (fd < 0) throw idmapError(`open /proc/${pid}/${file}`, fd);
    const bytes = new TextEncoder().encode(content);
    const n = sys.write(fd, bytes, bytes.length);
    sys.close(fd);
    if (n < 0) throw idmapError(`write /proc/${pid}/${file}`, n);
    if (n !== bytes.length) {
      throw new MicroError(`idmapped image: /proc/${pid}/${file}: a short write (${n} bytes)`);
    }
  }
  const ns = sys.open(cstr(`/proc/${pid}/ns/user`), C.O_RDONLY | C.O_CLOEXEC, 0);
  if (ns < 0) throw idmapError(`open /proc/${pid}/ns/user`, ns);
  return ns;
}

/**
 * The same from micro's holder program (tools/trampoline/userns-ARCH.S), where there is no
 * vfork stub: spawned from a sealed memfd with pipes as its stdin and stdout, it unshares one
 * and says so with a byte, its maps are written and its namespace opened, and the end of its
 * stdin lets it go. A spawn (posix_spawn: vfork and exec) copies none of micro's memory;
 * cloning micro's process for it, as before, cost about 12 ms of a hardened run, and
 * Deno.Command's first use about 10.
 */
async function heldUserns(sys: Sys, maps: { uid: string; gid: string }): Promise<number> {
  const input = new Int32Array(2);
  const output = new Int32Array(2);
  const fds: number[] = [];
  const closeAll = () => {
    for (const fd of fds.splice(0)) sys.close(fd);
  };
  let pid = -1;
  try {
    const memfd = sealedProgram(sys, "micro-userns", USERNS_HOLDER[sys.arch]);
    fds.push(memfd);
    let rc = sys.pipe2(input, C.O_CLOEXEC);
    if (rc < 0) throw idmapError("pipe2", rc);
    fds.push(input[0], input[1]);
    rc = sys.pipe2(output, C.O_CLOEXEC);
    if (rc < 0) throw idmapError("pipe2", rc);
    fds.push(output[0], output[1]);
    pid = spawnSealed(sys, memfd, "micro-userns", [input[0], output[1]]);
    if (pid < 0) throw idmapError("posix_spawn(micro-userns)", pid);
    // Only micro's ends stay open here: the holder's EOF on stdin is input[1]'s close.
    for (const fd of [memfd, input[0], output[1]]) {
      sys.close(fd);
      fds.splice(fds.indexOf(fd), 1);
    }
    const one = new Uint8Array(1);
    if (await sys.readAsync(output[0], one, 1) !== 1) {
      // It wrote nothing: the unshare failed, and its exit code is the errno.
      const { status } = await sys.waitpid(pid);
      pid = -1;
      throw idmapError("unshare(CLONE_NEWUSER)", -((status >> 8) & 0xff));
    }
    return mapAndOpen(sys, pid, maps);
  } finally {
    closeAll(); // the holder reads EOF and exits
    // Reaped when it has (about 0.45 ms later here): nothing of the run waits for that.
    if (pid > 0) sys.waitpid(pid).catch(() => {});
  }
}

/**
 * Idmaps the detached tree `fd` (from open_tree OPEN_TREE_CLONE) with `userns`: 0, or
 * -errno (EINVAL: a kernel or file system without idmapped mounts).
 */
export function idmapTree(sys: Sys, fd: number, userns: number): number {
  return sys.mountSetattr(
    fd,
    EMPTY,
    C.AT_EMPTY_PATH | C.AT_RECURSIVE,
    C.MOUNT_ATTR_IDMAP,
    0,
    userns,
  );
}

/** What to tell the user when the kernel refused (warned once; the run goes on unmapped). */
export function idmapWarning(rc: number): string {
  return `the image's files show as nobody in the container's user namespace: idmapping its ` +
    `mount failed (errno ${-rc}; Linux 5.19+ idmaps overlay layers)`;
}

function idmapError(what: string, rc: number): MicroError {
  return new MicroError("", { phase: "prepare", plugin: "user", op: what, errno: -rc });
}

export interface IdmappedImage {
  /** The ops, a store image's lower layers replaced by their idmapped copies' fd paths. */
  ops: Op[];
  /** The idmapped layer trees (the child keeps them at FD_IDMAPPED + k). */
  layerFds: number[];
  /** Where the child attaches them (directories made here): the lower directories. */
  layerMounts: string[];
  /** Closes the layer trees (after the child has them). */
  close(): void;
}

/**
 * Idmaps the image for a root-run container whose user namespace shifts ids: the
 * directory image's detached tree `tree` in place, or a store image's `layers` each as a
 * detached idmapped copy. When the kernel cannot, the run goes on unmapped with one warning.
 */
export async function idmapImage(
  sys: Sys,
  ops: Op[],
  uid: number,
  tree: number,
  layers: readonly string[] | undefined,
  stageDir: string,
  warn: (m: string) => void,
): Promise<IdmappedImage> {
  const none: IdmappedImage = { ops, layerFds: [], layerMounts: [], close() {} };
  const maps = shiftedMaps(ops, uid);
  if (maps === null || (tree < 0 && !layers?.length)) return none;
  const userns = await mappedUserns(sys, maps);
  const fds: number[] = [];
  const closeAll = () => {
    for (const fd of fds.splice(0)) sys.close(fd);
  };
  try {
    if (tree >= 0) {
      const rc = idmapTree(sys, tree, userns);
      if (rc < 0) {
        warn(idmapWarning(rc));
        return none;
      }
    }
    if (!layers?.length) return none;
    for (const path of layers) {
      const fd = sys.openTree(C.AT_FDCWD, cstr(path), C.OPEN_TREE_CLONE | C.O_CLOEXEC);
      if (fd < 0) throw idmapError(`open_tree ${path}`, fd);
      fds.push(fd);
      const rc = idmapTree(sys, fd, userns);
      if (rc < 0) {
        closeAll();
        warn(idmapWarning(rc));
        return none;
      }
    }
    // In the run's state directory: the child's mounts there go with its mount namespace.
    const lowers = layers.map((_, k) => `${stageDir}/${k}`);
    for (const d of [stageDir, ...lowers]) Deno.mkdirSync(d, { mode: 0o755 });
    return {
      ops: ops.map((o) =>
        o.kind === "bind-root" && o.args.overlay?.lowers
          ? { ...o, args: { ...o.args, overlay: { ...o.args.overlay, lowers } } }
          : o
      ),
      layerFds: fds,
      layerMounts: lowers,
      close: closeAll,
    };
  } catch (e) {
    closeAll();
    throw e;
  } finally {
    sys.close(userns);
  }
}

export interface IdmappedBinds {
  /** The ops, each idmapped bind given the index of its tree (`tree`). */
  ops: Op[];
  /** The detached idmapped trees, by index (the child attaches them at their targets). */
  fds: number[];
  close(): void;
}

/**
 * The idmapped binds of a plan (OCI mounts with uidMappings/gidMappings): each source's
 * tree detached (open_tree, recursive for rbind), idmapped with a user namespace of its
 * maps and given the bind's flags, all in the parent; the child only attaches it. A kernel
 * or file system without idmapped mounts is an error naming the source (runc's too).
 */
export async function idmapBinds(sys: Sys, ops: Op[]): Promise<IdmappedBinds> {
  const fds: number[] = [];
  const userns = new Map<string, number>();
  const closeAll = () => {
    for (const fd of fds.splice(0)) sys.close(fd);
  };
  const out: Op[] = [];
  try {
    for (const o of ops) {
      if (o.kind !== "mount" || !o.args.idmap) {
        out.push(o);
        continue;
      }
      const { idmap, source } = o.args;
      const key = `${idmap.uid}|${idmap.gid}`;
      let ns = userns.get(key);
      if (ns === undefined) {
        ns = await mappedUserns(sys, idmap);
        userns.set(key, ns);
      }
      const flags = mountFlags(o.args.flags);
      const recursive = (flags & C.MS_REC) !== 0;
      const fd = sys.openTree(
        C.AT_FDCWD,
        cstr(source),
        C.OPEN_TREE_CLONE | C.O_CLOEXEC | (recursive ? C.AT_RECURSIVE : 0),
      );
      if (fd < 0) throw bindError(o, "open_tree", fd);
      fds.push(fd);
      const rc = sys.mountSetattr(
        fd,
        EMPTY,
        C.AT_EMPTY_PATH | (recursive ? C.AT_RECURSIVE : 0),
        C.MOUNT_ATTR_IDMAP | mountAttrs(flags),
        mountAttrsClear(flags),
        ns,
      );
      if (rc < 0) throw bindError(o, "mount_setattr(MOUNT_ATTR_IDMAP)", rc);
      out.push({ ...o, args: { ...o.args, tree: fds.length - 1 } });
    }
    return { ops: out, fds, close: closeAll };
  } catch (e) {
    closeAll();
    throw e;
  } finally {
    for (const fd of userns.values()) sys.close(fd);
  }
}

function bindError(o: Op & { kind: "mount" }, what: string, rc: number): MicroError {
  return new MicroError("", {
    phase: "prepare",
    plugin: "mount",
    op: what,
    paths: { source: o.args.source, target: o.args.target },
    errno: -rc,
    hint: rc === -22 || rc === -95
      ? "the source's file system or this kernel cannot idmap mounts (Linux 5.12+; tmpfs 6.3+)"
      : undefined,
  });
}
