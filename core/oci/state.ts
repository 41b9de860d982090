/**
 * The OCI runtime's state: one directory per container under the root (`--root`, default
 * /run/micro-oci as root, `$XDG_RUNTIME_DIR/micro-oci` rootless), holding `state.json` and,
 * between `create` and `start`, the exec fifo the container's process waits on.
 */
import { MicroError } from "../errors.ts";
import type { RecordedCgroup } from "../cgroups/fs.ts";
import type { Hook } from "./hooks.ts";
import { processStartTime, untrustedRoot, untrustedRootError } from "../state.ts";
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
