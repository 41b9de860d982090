/**
 * When the container's first process is a vfork child instead of a forked copy of micro.
 *
 * A forked child is a copy of micro's whole address space: the clone copies its page tables,
 * and from then on every page either process writes is a copy-on-write fault (about 10 µs
 * each on a PVM guest), micro's own for the rest of the run (bench/README.md, fourteenth
 * session). A vfork child (CLONE_VM | CLONE_VFORK, through the stub of
 * tools/trampoline/vfork-x86_64.S) shares micro's memory instead: micro's thread sleeps in
 * the clone while the child runs the same compiled steps (core/engine/child.ts runSteps) in a
 * JavaScript callback, on micro's heap and below micro's stack, returns from it as from any
 * other callback, and execs the trampoline from the stub. Nothing is copied, nothing faults.
 *
 * The price is that micro cannot work while the child does: nothing may need micro between
 * the clone and the exec. So a run takes this path only when
 * - the child never waits for micro's own thread: its /proc files of the attach (a user
 *   namespace's id maps, oom_score_adj) are written by a thread of micro's that the child asks
 *   (Sys.procWrites: the stub's second function, run through Deno's `nonblocking` FFI on a
 *   thread of its blocking pool; the clone stores the child's pid for it, CLONE_PARENT_SETTID).
 *   Only micro, in the parent user namespace with CAP_SETUID, may write them, and the child's
 *   user and pid namespaces come from the one clone, as on the fork path (the pid namespace is
 *   the user namespace's). micro runs as root: a rootless run's maps are newuidmap's; no CPU
 *   affinity of the attach, no network to attach (CNI, pasta, slirp4netns), no OCI hooks, no
 *   exec fifo (OCI create), no seccomp listener (the child waits for micro's ack);
 * - its cgroups are joined without micro: a cgroup v2 one at birth (the stub's clone3 with
 *   CLONE_INTO_CGROUP, as on the fork path: no cgroup.procs write at all; a kernel without
 *   it refuses the clone and the run forks), v1 ones by the child itself, which writes "0" to
 *   their cgroup.procs (micro opens them before the clone);
 * - nothing the child does acts on the memory it shares with micro, or needs one of its own:
 *   an `enter` fork into a joined pid namespace or a setns (a joined namespace: and a process
 *   there could reach micro's memory through the child), an unshare other than the cgroup
 *   and mount namespaces (kept to what is tested), a tmpfs copy-up (memory cgroups charge the
 *   memory's owner, micro, not the container), rlimits on the address space, data or stack
 *   (checked against micro's whole address space: V8 growing its heap in the child would
 *   fail), a personality (READ_IMPLIES_EXEC would make what micro maps executable), a cpuset
 *   with other memory nodes than the host's (joining it rebinds the memory's policy, and with
 *   memory_migrate moves micro's pages; on cgroup v2 any `--cpuset-mems`, whose attach at
 *   birth older kernels handled otherwise), and net_cls or net_prio (joining them re-tags every
 *   socket in the child's fd table, micro's own among them, before close_range);
 * - the watchdog, if any, is the static one (a forked watchdog is a copy of micro);
 * - the run is attached (`run -d` hands its child over, OCI runs have their own protocol);
 * - and the machine is x86_64 (the only stub so far).
 *
 * What the fork path had that this one has not (a review's findings, kept small):
 * - the static watchdog is spawned once the child has exec'd (it needs the init's pidfd), not
 *   before: if micro is killed in that half millisecond, the container's death signal (set
 *   first, and again after each credential change) still ends it, unless its command cleared
 *   that in its first instants (a set-user-ID exec); the next micro's gc then kills it;
 * - the child runs JavaScript after its seccomp filter is on (a few steps, then the return
 *   from the callback): a filter whose default kills and that refuses futex, mmap or madvise
 *   kills it inside the call (a dynamically linked command could not start under it either);
 * - a SIGKILL sent to the child from outside while it runs its steps leaves micro's runtime
 *   mid-call (micro then fails that run);
 * - the child is in the container's memory cgroup while it sets up, and its memory is micro's:
 *   an OOM kill there would take micro with it (the kernel kills every process sharing the
 *   victim's memory). Only the set-up's kernel memory is charged there (its pages are micro's,
 *   charged to micro's cgroup): 0.26 MB measured (memory.kmem.max_usage_in_bytes of a v1 run),
 *   under the least limit micro takes, 6 MB (core/cgroups/units.ts, as Docker).
 *
 * Everything else takes the fork path as before. MICRO_VFORK=0 turns this path off (a
 * benchmark compares the two in one build). The child makes itself undumpable, which with a
 * shared memory makes micro undumpable too: micro runs as root here, so its /proc files were
 * root's already, and it never dumps core on purpose.
 */
import { fromBase64, type Sys } from "../sys/mod.ts";
import type { Op } from "../ops.ts";
import { VFORK_X86_64 } from "./trampoline.ts";

/** The vfork stub's machine code (x86_64), decoded once. */
let vforkCode: Uint8Array | undefined;
export const VFORK_CODE = (): Uint8Array => vforkCode ??= fromBase64(VFORK_X86_64);

/** How long micro waits for its writer thread to say it runs before it clones (ms). */
export const WRITER_START_MS = 2000;

/** The kinds of op whose presence sends a run down the fork path (see above). */
const FORK_ONLY: ReadonlySet<string> = new Set([
  "cni-add",
  "net-join-files",
  "usernet-start",
  "oci-hook",
  "idmap-helper",
  "cpu-affinity",
  "enter",
  "setns",
  "time-offsets",
  "personality",
]);

/** Rlimits checked against the whole address space, micro's while the child shares it. */
const MEMORY_RLIMITS: ReadonlySet<string> = new Set(["as", "data", "stack"]);

/** Where the kernel refused the vfork clone once: that Sys (the process) forks from then on. */
const refused = new WeakSet<Sys>();

/**
 * Whether a vfork child may be tried at all here: a stub for this architecture, not refused
 * by the kernel before, not turned off (MICRO_VFORK=0).
 */
export function vforkUsable(sys: Sys): boolean {
  return !refused.has(sys) && sys.canVfork() && Deno.env.get("MICRO_VFORK") !== "0";
}

/** Remembers that the kernel refused the vfork clone (the fork path then starts again). */
export function vforkRefused(sys: Sys): void {
  refused.add(sys);
}

export interface VforkQuestion {
  plan: readonly Op[];
  childOps: readonly Op[];
  flags: number;
  /** The child's sync mode on the fork path (core/engine/mod.ts syncMode). */
  mode: string | undefined;
  /** A cgroup v2 directory the child is cloned into (clone3), or -1. */
  into: number;
  /** What rules out the path in the engine's own options. */
  options: {
    join: boolean;
    enter: boolean;
    execFifo: boolean;
    detached: boolean;
    seccompListener: boolean;
  };
  /** The watchdog is a forked copy of micro (not the static program). */
  forkedWatchdog: boolean;
}

/** Whether this run's first process can be a vfork child (see above for why each rule). */
export function canVfork(q: VforkQuestion, sys: Sys): boolean {
  if (!vforkUsable(sys)) return false;
  if (q.mode !== "root" && q.mode !== "maps") return false;
  // Written by micro's thread, the maps need root's rights in micro's user namespace.
  if (q.mode === "maps" && (Deno.uid() ?? 0) !== 0) return false;
  if (q.forkedWatchdog) return false;
  const o = q.options;
  if (o.join || o.enter || o.execFifo || o.detached || o.seccompListener) return false;
  for (const op of [...q.plan, ...q.childOps]) {
    if (FORK_ONLY.has(op.kind)) return false;
    const args = op.args as {
      flag?: string;
      copyUp?: unknown;
      listener?: unknown;
      resource?: string;
      path?: string;
      value?: string;
      ifEmpty?: boolean;
    };
    if (op.kind === "unshare" && args.flag !== "CLONE_NEWCGROUP" && args.flag !== "CLONE_NEWNS") {
      return false;
    }
    if (op.kind === "mount" && args.copyUp) return false;
    if (op.kind === "seccomp" && args.listener) return false;
    if (op.kind === "setrlimit" && MEMORY_RLIMITS.has(args.resource ?? "")) return false;
    if (op.kind === "cgroup-join" && /\/net_(cls|prio)[,/]/.test(`${args.path}/`)) return false;
  }
  // The host's nodes are what a shared cpuset parent gets (ifEmpty); the run's own differ.
  const mems = q.plan.flatMap((o) =>
    o.kind === "cgroup-write" && String((o.args as { path: string }).path).endsWith("/cpuset.mems")
      ? [o.args as { value: string; ifEmpty?: boolean }]
      : []
  );
  const host = mems.find((m) => m.ifEmpty)?.value;
  if (mems.some((m) => !m.ifEmpty && host !== undefined && m.value !== host)) return false;
  if (q.into >= 0 && mems.some((m) => !m.ifEmpty)) return false;
  return true;
}
