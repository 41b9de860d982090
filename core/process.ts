/**
 * The process belongs to the core, not to a plugin: user and groups (names resolved from the
 * image's /etc/passwd and /etc/group), environment, working directory, rlimits,
 * no-new-privileges and the execve itself.
 */
import { MicroError } from "./errors.ts";
import { mapsOnlyCaller } from "./idmap.ts";
import { type Op, op, type OpArgs } from "./ops.ts";
import { DEFAULT_STOP_TIMEOUT, parseSignal } from "./signals.ts";
import type { HostInfo } from "./plugin.ts";
import { hasNamespace, type Spec } from "./spec.ts";

/** The profile's validated `process` section (see core/profile.ts). */
export interface ProcessOptions {
  env?: Record<string, string>;
  user?: string;
  defaultUser?: string;
  groups?: string[];
  cwd?: string;
  noNewPrivileges?: boolean;
  init?: boolean;
  /** By short name (`nofile`); -1 is unlimited. */
  rlimits?: Record<string, { soft: number; hard: number }>;
  oomScoreAdj?: number;
}

export const DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

interface PasswdEntry {
  name: string;
  uid: number;
  gid: number;
  home: string;
}

function parsePasswd(text: string): PasswdEntry[] {
  return text.split("\n").filter((l) => l && !l.startsWith("#")).map((l) => {
    const f = l.split(":");
    return { name: f[0], uid: Number(f[2]), gid: Number(f[3]), home: f[5] || "/" };
  }).filter((e) => Number.isInteger(e.uid) && Number.isInteger(e.gid));
}

function parseGroup(text: string): { name: string; gid: number; members: string[] }[] {
  return text.split("\n").filter((l) => l && !l.startsWith("#")).map((l) => {
    const f = l.split(":");
    return { name: f[0], gid: Number(f[2]), members: (f[3] ?? "").split(",").filter((m) => m) };
  }).filter((g) => Number.isInteger(g.gid));
}

/** Ids as runc takes them: 0 .. 2^31-1 (-1 and 2^32-1 mean "unchanged" to the kernel). */
const MAX_ID = 2 ** 31 - 1;
const validId = (n: number) => Number.isInteger(n) && n >= 0 && n <= MAX_ID;
const isId = (s: string) => /^[0-9]+$/.test(s) && validId(Number(s));

/**
 * `--user UID[:GID]` or `NAME[:GROUP]` against the image's files, as Docker does: a name
 * must exist; a bare uid takes its passwd gid (else 0); a named user gets its groups.
 */
export function resolveUser(
  userSpec: string | undefined,
  groups: string[],
  passwd: string,
  group: string,
): { uid: number; gid: number; additionalGids: number[]; home: string } {
  const users = parsePasswd(passwd);
  const grps = parseGroup(group);
  const [u = "0", g] = (userSpec ?? "0").split(":", 2);
  let entry = isId(u) ? users.find((e) => e.uid === Number(u)) : users.find((e) => e.name === u);
  if (!entry && !isId(u)) {
    throw new MicroError(`user "${u}" not found in the image's /etc/passwd`, {
      hint: "use a numeric UID[:GID] or add the user to the image",
    });
  }
  const uid = isId(u) ? Number(u) : entry!.uid;
  if (entry && (!validId(entry.uid) || !validId(entry.gid))) {
    throw new MicroError(
      `user "${entry.name}" has ids ${entry.uid}:${entry.gid} in the image's /etc/passwd: out of range`,
      { hint: `ids go from 0 to ${MAX_ID}` },
    );
  }
  if (entry && entry.uid !== uid) entry = undefined;
  const groupId = (name: string): number => {
    if (isId(name)) return Number(name);
    const found = grps.find((x) => x.name === name);
    if (found && !validId(found.gid)) {
      throw new MicroError(
        `group "${name}" has gid ${found.gid} in the image's /etc/group: out of range`,
      );
    }
    if (!found) {
      throw new MicroError(`group "${name}" not found in the image's /etc/group`, {
        hint: "use a numeric GID or add the group to the image",
      });
    }
    return found.gid;
  };
  const gid = g !== undefined ? groupId(g) : entry?.gid ?? 0;
  const additional = new Set<number>();
  if (entry && g === undefined) {
    for (const x of grps) {
      if (x.members.includes(entry.name) && x.gid !== gid && validId(x.gid)) additional.add(x.gid);
    }
  }
  for (const x of groups) additional.add(groupId(x));
  return {
    uid,
    gid,
    additionalGids: [...additional],
    home: entry?.home ?? (uid === 0 ? "/root" : "/"),
  };
}

/**
 * The user the process runs as: `--user` or the profile's `user`; else the profile's
 * `defaultUser` when the image's /etc/passwd names it (and more than root is mapped);
 * else root.
 */
export function processUser(spec: Spec, host: HostInfo): ReturnType<typeof resolveUser> {
  const p = spec.process;
  let user = p.userSpec;
  // A user namespace that maps only the caller has only root: the fallback user could not
  // exist there.
  const rootless = mapsOnlyCaller(spec, host);
  if (user === undefined && p.defaultUser !== undefined && !rootless) {
    const name = p.defaultUser.split(":")[0];
    if (parsePasswd(host.passwd).some((e) => e.name === name)) user = p.defaultUser;
  }
  return resolveUser(user, p.groupSpecs ?? [], host.passwd, host.group);
}

/** Fills `spec.process` from the profile's `process` section and the request. */
export function configureProcess(o: ProcessOptions, spec: Spec): void {
  const p = spec.process;
  p.userSpec = o.user;
  p.defaultUser = o.defaultUser;
  p.groupSpecs = o.groups ?? [];
  p.cwd = o.cwd ?? p.cwd;
  p.noNewPrivileges = o.noNewPrivileges ?? false;
  if (o.init) p.init = true;
  p.envMap = { PATH: DEFAULT_PATH, ...(o.env ?? {}) };
  if (o.oomScoreAdj !== undefined) p.oomScoreAdj = o.oomScoreAdj;
  p.rlimits = Object.entries(o.rlimits ?? {}).map(([name, r]) => ({
    type: `RLIMIT_${name.toUpperCase()}`,
    soft: r.soft,
    hard: r.hard,
  }));
}

/** The core's ops: credentials, rlimits, no_new_privs, chdir and execve. */
export function processOps(spec: Spec, host: HostInfo): Op[] {
  const p = spec.process;
  const who = processUser(spec, host);
  const hostname = hasNamespace(spec, "uts")
    ? (spec.hostname || host.hostname || host.id)
    : undefined;
  const env: Record<string, string> = { ...(p.envMap ?? {}) };
  env.HOME ??= who.home;
  // An OCI config.json's environment is the caller's (runc adds only HOME).
  if (hostname && !spec.micro.oci) env.HOSTNAME ??= hostname;
  if (p.terminal && !spec.micro.oci) env.TERM ??= "xterm";
  const envList = Object.entries(env).map(([k, v]) => `${k}=${v}`);
  const cmd = p.args[0] ?? "";
  const path = cmd.includes("/")
    ? [cmd]
    : (env.PATH ?? DEFAULT_PATH).split(":").filter((d) => d).map((d) => `${d}/${cmd}`);
  // setgroups is denied in a user namespace that maps only the caller; there the list must
  // stay empty.
  const rootlessUserns = mapsOnlyCaller(spec, host);
  const ops: Op[] = [];
  // Written by micro into the waiting child's /proc/PID; the command inherits it at exec.
  if (p.oomScoreAdj !== undefined) {
    ops.push(op("attach", "process", "proc-write", {
      file: "oom_score_adj",
      content: String(p.oomScoreAdj),
    }));
  }
  if (p.terminal) ops.push(op("rootfs", "process", "console", {}));
  if (!spec.micro.noNewKeyring) ops.push(op("identity", "process", "session-keyring", {}));
  for (const r of p.rlimits) {
    ops.push(op("credentials", "process", "setrlimit", {
      resource: r.type.replace(/^RLIMIT_/, "").toLowerCase(),
      soft: r.soft,
      hard: r.hard,
    }));
  }
  if (p.umask !== undefined) ops.push(op("credentials", "process", "umask", { mask: p.umask }));
  if (p.personality !== undefined) {
    ops.push(op("credentials", "process", "personality", { persona: p.personality }));
  }
  // As runc: while the process is still root with its capabilities (an RT class or policy
  // needs CAP_SYS_ADMIN or CAP_SYS_NICE), so the command starts with them.
  if (p.ioPriority) ops.push(op("credentials", "process", "ioprio", { ...p.ioPriority }));
  if (p.scheduler) ops.push(op("credentials", "process", "sched-setattr", { ...p.scheduler }));
  // Inherited across fork and kept across execve: the command allocates under it.
  if (p.memoryPolicy) {
    ops.push(op("credentials", "process", "mempolicy", {
      ...p.memoryPolicy,
      nodes: [...p.memoryPolicy.nodes],
    }));
  }
  // micro's pipes and terminal are the container root's: another user gets them.
  if (who.uid !== 0) ops.push(op("credentials", "process", "stdio-owner", { uid: who.uid }));
  if (!rootlessUserns || who.additionalGids.length) {
    ops.push(op("credentials", "process", "setgroups", { gids: who.additionalGids }));
  }
  ops.push(
    op("credentials", "process", "setresgid", { gid: who.gid }),
    op("credentials", "process", "setresuid", { uid: who.uid }),
  );
  if (p.noNewPrivileges) ops.push(op("restrict", "process", "no-new-privs", {}));
  ops.push(
    op("exec", "process", "chdir", { path: p.cwd }),
    op("exec", "process", "execve", {
      args: p.args,
      env: envList,
      path,
      ...(p.init ? { init: true } : {}),
    }),
  );
  // Shown when not Docker's default (SIGTERM, 10 s); the run reads it back from the plan.
  if (spec.micro.stopSignal !== undefined || spec.micro.stopTimeout !== undefined) {
    ops.push(op("supervise", "process", "stop", stopOf(spec)));
  }
  return ops;
}

/**
 * What SIGTERM to micro does to the running container (`docker stop`): the signal
 * (`--stop-signal`, else the image's StopSignal, else SIGTERM) and the seconds until SIGKILL.
 */
export function stopOf(spec: Spec): OpArgs["stop"] {
  const given = spec.micro.stopSignal;
  const n = given === undefined ? undefined : parseSignal(given);
  return {
    signal: n === undefined ? "SIGTERM" : given!,
    number: n ?? 15,
    timeout: spec.micro.stopTimeout ?? DEFAULT_STOP_TIMEOUT,
  };
}
