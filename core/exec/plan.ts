/**
 * `micro exec`'s plan: ops, as a run's, executed by the same engine. Instead of clone flags,
 * one `enter` op joins the running container's namespaces; the parent puts the child in the
 * container's cgroups; then the container's own credentials and restrict ops (recorded by
 * its run), a chdir and the execve. Pure: no I/O.
 */
import { MicroError } from "../errors.ts";
import { type Op, op } from "../ops.ts";
import { DEFAULT_PATH } from "../process.ts";
import type { ExecRecord } from "./record.ts";

export interface ExecRequest {
  /** NAME, id or id prefix, as typed. */
  container: string;
  args: string[];
  /** -u USER[:GROUP] */
  user?: string;
  /** -w DIR */
  cwd?: string;
  /** -e and --env-file, in order: K=V. */
  env: string[];
  terminal: boolean;
  stdin: boolean;
  detach: boolean;
}

/** -u resolved against the container's /etc/passwd and /etc/group. */
export interface ExecUser {
  uid: number;
  gid: number;
  additionalGids: number[];
  home: string;
}

/** The user ops exec replaces when -u is given. */
const USER_KINDS = ["stdio-owner", "setgroups", "setresgid", "setresuid"];

/**
 * The exec plan. `namespaces`: the CLONE_NEW* names of the container's namespaces that are
 * not micro's own (compared by inode when exec runs); `user`: -u resolved, if given.
 */
export function execPlan(
  record: ExecRecord,
  req: ExecRequest,
  namespaces: string[],
  user?: ExecUser,
): Op[] {
  const recorded = record.ops;
  const execve = recorded.find((o) => o.kind === "execve");
  const chdir = recorded.find((o) => o.kind === "chdir");
  if (execve?.kind !== "execve") {
    throw new MicroError(`container "${req.container}" has no recorded process to repeat`, {
      hint: "it was started by an older micro: restart it",
    });
  }
  const ops: Op[] = [
    op("rootfs", "exec", "enter", { container: req.container, flags: namespaces }),
  ];
  // In the container's user namespace, become its root first: the terminal it makes (and
  // anything else) then belongs to an id of the container, as its own process's do.
  if (namespaces.includes("CLONE_NEWUSER")) ops.push(op("rootfs", "exec", "userns-root", {}));
  if (req.terminal) ops.push(op("rootfs", "process", "console", {}));
  ops.push(...recorded.filter((o) => o.phase === "attach"));
  const creds = recorded.filter((o) => o.phase === "credentials" || o.phase === "restrict");
  if (user) {
    const at = creds.findIndex((o) => USER_KINDS.includes(o.kind));
    // setgroups is refused in a user namespace that maps only the caller: the run had none.
    const hadGroups = creds.some((o) => o.kind === "setgroups");
    const mine: Op[] = [];
    if (user.uid !== 0) mine.push(op("credentials", "process", "stdio-owner", { uid: user.uid }));
    if (hadGroups || user.additionalGids.length) {
      mine.push(op("credentials", "process", "setgroups", { gids: user.additionalGids }));
    }
    mine.push(
      op("credentials", "process", "setresgid", { gid: user.gid }),
      op("credentials", "process", "setresuid", { uid: user.uid }),
    );
    const rest = creds.filter((o) => !USER_KINDS.includes(o.kind));
    const pos = at < 0
      ? rest.length
      : creds.slice(0, at).filter((o) => !USER_KINDS.includes(o.kind)).length;
    rest.splice(pos, 0, ...mine);
    ops.push(...rest);
  } else {
    ops.push(...creds);
  }
  const env = new Map<string, string>();
  for (const kv of execve.args.env) {
    const eq = kv.indexOf("=");
    if (eq > 0) env.set(kv.slice(0, eq), kv.slice(eq + 1));
  }
  if (user) env.set("HOME", user.home);
  if (req.terminal && !env.has("TERM")) env.set("TERM", "xterm");
  for (const kv of req.env) {
    const eq = kv.indexOf("=");
    env.set(kv.slice(0, eq), kv.slice(eq + 1));
  }
  const cmd = req.args[0] ?? "";
  const path = cmd.includes("/")
    ? [cmd]
    : (env.get("PATH") ?? DEFAULT_PATH).split(":").filter((d) => d).map((d) => `${d}/${cmd}`);
  const cwd = req.cwd ?? (chdir?.kind === "chdir" ? chdir.args.path : "/");
  ops.push(
    op("exec", "process", "chdir", { path: cwd }),
    op("exec", "process", "execve", {
      args: req.args,
      env: [...env].map(([k, v]) => `${k}=${v}`),
      path,
    }),
  );
  return ops;
}
