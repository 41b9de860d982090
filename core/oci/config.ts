/**
 * An OCI bundle's `config.json` as micro's Spec (DESIGN.md §13): read with the project's
 * rules (a regular file, a size cap, a depth limit), checked field by field, and turned into
 * the same Spec a profile makes, so checks, plan and engine are the ones `micro run` uses.
 * A field micro cannot honour is an error where the runtime spec says MUST, a warning where
 * it says SHOULD (or where ignoring it loses nothing the container could notice).
 */
import { MicroError } from "../errors.ts";
import { FileRefused, MiB, readRegularFile } from "../files.ts";
import { check, formatPath, isPlainObject } from "../schema.ts";
import { capName } from "../caps.ts";
import {
  emptySpec,
  type Mount,
  type NamespaceType,
  type ProcessSpec,
  type SchedAttr,
  type Spec,
} from "../spec.ts";
import {
  IOPRIO_CLASSES,
  MPOL_FLAGS,
  MPOL_MODES,
  NUMA_NODES_MAX,
  parseCpuList,
  SCHED_FLAGS,
  SCHED_POLICIES,
} from "../sched.ts";
import { RLIMITS, type Sys } from "../sys/mod.ts";
import { cleanPath } from "../paths.ts";
import { isFlagOption, SUPERBLOCK_OPTIONS } from "../mounts.ts";
import { DEFAULT_PATH } from "../process.ts";
import { OCI_PARENT, OCI_RESOURCES } from "../../plugins/cgroups.ts";
import {
  type Hook,
  type HookKind,
  type InContainerHookKind,
  parseHooks,
  refuseExposedHooks,
} from "./hooks.ts";

/** runc refuses nothing below this; a config.json is a few KiB. */
export const CONFIG_CAP = 4 * MiB;
/** Nesting of a real config.json stays under 10 (seccomp args); deeper is an attack. */
export const CONFIG_DEPTH = 32;

export interface OciConfig {
  raw: string;
  json: Record<string, unknown>;
}

/** The namespaces micro joins by path (one thread may setns into them; see engine/mod.ts). */
export const JOINABLE: readonly NamespaceType[] = ["network", "ipc", "uts", "pid", "cgroup"];

export interface Translated {
  spec: Spec;
  warnings: string[];
  /** `linux.namespaces[].path`: namespaces to enter for the clone, by type. */
  joins: { type: NamespaceType; path: string }[];
  /** The cgroup: parent (relative) and leaf name. */
  cgroup: { parent: string; name: string };
  /** The raw config, for the seccomp plugin (it parses `linux.seccomp` with exact u64s). */
  raw: string;
  /** The hooks (hooks.ts): micro runs some, the container's child the others. */
  hooks: Partial<Record<HookKind | InContainerHookKind, Hook[]>>;
  /** `process.consoleSize`: set on the terminal create makes. */
  consoleSize?: { height: number; width: number };
}

function bad(field: string, why: string, hint?: string): MicroError {
  return new MicroError(`config.json: ${field}: ${why}`, {
    phase: "check",
    plugin: "oci",
    hint: hint ?? "fix the bundle's config.json (see the OCI runtime spec)",
  });
}

/** Deepest nesting of arrays and objects (iterative: no stack to overflow). */
export function depthOf(v: unknown, limit: number): number {
  let max = 0;
  const stack: [unknown, number][] = [[v, 1]];
  while (stack.length) {
    const [x, d] = stack.pop()!;
    if (x === null || typeof x !== "object") continue;
    if (d > max) max = d;
    if (max > limit) return max;
    for (const y of Object.values(x as Record<string, unknown>)) stack.push([y, d + 1]);
  }
  return max;
}

/** Parses config.json text: JSON, an object, nesting bounded. */
export function parseConfig(text: string): OciConfig {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw bad("the file", `not valid JSON: ${(e as Error).message}`);
  }
  if (!isPlainObject(json)) throw bad("the file", "the top level is not an object");
  if (depthOf(json, CONFIG_DEPTH) > CONFIG_DEPTH) {
    throw bad("the file", `nested deeper than ${CONFIG_DEPTH} levels`);
  }
  return { raw: text, json };
}

/** `BUNDLE/config.json`, a regular file under CONFIG_CAP, parsed. */
export function readConfig(sys: Sys, bundle: string): OciConfig {
  const path = `${bundle}/config.json`;
  let text: string;
  try {
    text = readRegularFile(sys, path, CONFIG_CAP);
  } catch (e) {
    if (e instanceof FileRefused) {
      throw new MicroError(`cannot read ${path}: ${e.reason}`, {
        phase: "prepare",
        plugin: "oci",
        hint: "give the bundle directory (--bundle DIR) holding config.json",
      });
    }
    throw e;
  }
  return parseConfig(text);
}

// ---- small typed readers: each names the field it refuses ----

type Obj = Record<string, unknown>;

function obj(v: unknown, field: string): Obj | undefined {
  if (v === undefined || v === null) return undefined;
  if (!isPlainObject(v)) throw bad(field, "expected an object");
  return v;
}
function str(v: unknown, field: string): string | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "string") throw bad(field, "expected a string");
  return v;
}
function bool(v: unknown, field: string): boolean | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "boolean") throw bad(field, "expected true or false");
  return v;
}
function int(v: unknown, field: string, min = 0, max = 2 ** 32 - 1): number | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "number" || !Number.isInteger(v) || v < min || v > max) {
    throw bad(field, `expected an integer from ${min} to ${max}`);
  }
  return v;
}
/**
 * linux.intelRdt (resctrl) is not applied by micro: no host it was built on has resctrl (the
 * kernel needs Intel RDT or AMD QoS hardware), so it could not be tested. runc fails too
 * where resctrl is missing; the error says which case this host is.
 */
function intelRdtError(): MicroError {
  let has = false;
  try {
    has = /\sresctrl$/m.test(Deno.readTextFileSync("/proc/filesystems"));
  } catch { /* no /proc: say the general case */ }
  return has
    ? bad("linux.intelRdt", "resctrl groups are not applied by micro", "remove linux.intelRdt")
    : bad(
      "linux.intelRdt",
      "this kernel has no resctrl file system (Intel RDT or AMD QoS)",
      "remove linux.intelRdt, or run on a host with resctrl and a runtime that applies it",
    );
}
function strs(v: unknown, field: string): string[] | undefined {
  if (v === undefined || v === null) return undefined;
  if (!Array.isArray(v) || v.some((x) => typeof x !== "string")) {
    throw bad(field, "expected a list of strings");
  }
  return v as string[];
}
/** process.ioPriority: a class name and a level 0-7 (runc's validation). */
function readIoPriority(v: unknown): ProcessSpec["ioPriority"] {
  const io = obj(v, "process.ioPriority");
  if (!io) return undefined;
  known(io, ["class", "priority"], "process.ioPriority");
  const name = str(io.class, "process.ioPriority.class");
  const cls = name === undefined ? undefined : IOPRIO_CLASSES[name];
  if (cls === undefined) {
    throw bad(
      "process.ioPriority.class",
      `"${name ?? ""}" is not an I/O class`,
      `one of ${Object.keys(IOPRIO_CLASSES).join(", ")}`,
    );
  }
  return { class: cls, level: int(io.priority, "process.ioPriority.priority", 0, 7) ?? 0 };
}

/**
 * process.execCPUAffinity: `initial` and `final` CPU lists (runc's syntax, "0-3,7"); an empty
 * or absent one is not set. For `oci exec` only: the spec does not apply it to the
 * container's first process, and runc does not either.
 */
function readAffinity(v: unknown): ProcessSpec["execCPUAffinity"] {
  const a = obj(v, "process.execCPUAffinity");
  if (!a) return undefined;
  known(a, ["initial", "final"], "process.execCPUAffinity");
  const out: NonNullable<ProcessSpec["execCPUAffinity"]> = {};
  for (const k of ["initial", "final"] as const) {
    const f = `process.execCPUAffinity.${k}`;
    const text = str(a[k], f);
    if (!text) continue;
    const cpus = parseCpuList(text);
    if (typeof cpus === "string") throw bad(f, cpus, 'a CPU list such as "0-3,7"');
    out[k] = cpus;
  }
  return out.initial || out.final ? out : undefined;
}

/**
 * linux.memoryPolicy: set_mempolicy(2)'s mode, flags and nodes, as runc 1.3 takes them,
 * with the combinations the kernel always refuses named here rather than as EINVAL.
 */
function readMemoryPolicy(v: unknown): ProcessSpec["memoryPolicy"] {
  const m = obj(v, "linux.memoryPolicy");
  if (!m) return undefined;
  const f = "linux.memoryPolicy";
  known(m, ["mode", "nodes", "flags"], f);
  const name = str(m.mode, `${f}.mode`);
  const mode = name === undefined ? undefined : MPOL_MODES[name];
  if (mode === undefined) {
    throw bad(
      `${f}.mode`,
      `"${name ?? ""}" is not a memory policy mode`,
      Object.keys(MPOL_MODES).join(", "),
    );
  }
  let flags = 0;
  for (const [k, flag] of (strs(m.flags, `${f}.flags`) ?? []).entries()) {
    const bit = MPOL_FLAGS[flag];
    if (bit === undefined) {
      throw bad(
        `${f}.flags[${k}]`,
        `"${flag}" is not a memory policy flag`,
        Object.keys(MPOL_FLAGS).join(", "),
      );
    }
    flags |= bit;
  }
  if ((flags & MPOL_FLAGS.MPOL_F_STATIC_NODES) && (flags & MPOL_FLAGS.MPOL_F_RELATIVE_NODES)) {
    throw bad(`${f}.flags`, "MPOL_F_STATIC_NODES and MPOL_F_RELATIVE_NODES exclude each other");
  }
  const text = str(m.nodes, `${f}.nodes`) ?? "";
  let nodes: number[] = [];
  if (text.trim()) {
    const parsed = parseCpuList(text, NUMA_NODES_MAX - 1);
    if (typeof parsed === "string") throw bad(`${f}.nodes`, parsed, 'a node list such as "0-1,3"');
    nodes = parsed;
  }
  if ((name === "MPOL_DEFAULT" || name === "MPOL_LOCAL") && nodes.length) {
    throw bad(`${f}.nodes`, `${name} takes no nodes`, "leave nodes empty");
  }
  if (name === "MPOL_DEFAULT" && flags) {
    throw bad(`${f}.flags`, "MPOL_DEFAULT takes no flags", "leave flags empty");
  }
  if (
    !nodes.length && name !== "MPOL_DEFAULT" && name !== "MPOL_LOCAL" && name !== "MPOL_PREFERRED"
  ) {
    throw bad(`${f}.nodes`, `${name} needs at least one node`, 'a node list such as "0"');
  }
  return { mode, flags, nodes };
}

/**
 * mounts[].uidMappings/gidMappings: both or neither, on a bind mount only (runc's rules),
 * as uid_map/gid_map text. `idmap`/`ridmap` without mappings are refused: micro does not
 * take the container's own maps for them.
 */
function readIdmap(o: Obj, f: string, type: string, options: string[]): Mount["idmap"] {
  const asked = options.includes("idmap") || options.includes("ridmap");
  if (o.uidMappings === undefined && o.gidMappings === undefined) {
    if (asked) {
      throw bad(`${f}.options`, "idmap without uidMappings and gidMappings", "give both");
    }
    return undefined;
  }
  if (type !== "bind") throw bad(f, "idmapped mounts are bind mounts only");
  const text = (v: unknown, field: string) => {
    const lines = list(v, field).map((m, k) => {
      const e = obj(m, `${field}[${k}]`)!;
      known(e, ["containerID", "hostID", "size"], `${field}[${k}]`);
      // Every field is required: a missing one is not 0 (that would map nothing, or root).
      const at = (key: string, min: number) => int(e[key] ?? -1, `${field}[${k}].${key}`, min);
      return `${at("containerID", 0)} ${at("hostID", 0)} ${at("size", 1)}\n`;
    });
    if (!lines.length || lines.length > 340) {
      throw bad(field, "expected 1 to 340 mappings (the kernel's limit)");
    }
    return lines.join("");
  };
  return {
    uid: text(o.uidMappings, `${f}.uidMappings`),
    gid: text(o.gidMappings, `${f}.gidMappings`),
  };
}

/** linux.timeOffsets: seconds and nanoseconds per clock (monotonic, boottime), as runc. */
function readTimeOffsets(v: unknown): Spec["linux"]["timeOffsets"] {
  const t = obj(v, "linux.timeOffsets");
  if (!t) return undefined;
  known(t, ["monotonic", "boottime"], "linux.timeOffsets");
  const out: NonNullable<Spec["linux"]["timeOffsets"]> = {};
  for (const clock of ["monotonic", "boottime"] as const) {
    const f = `linux.timeOffsets.${clock}`;
    const c = obj(t[clock], f);
    if (!c) continue;
    known(c, ["secs", "nanosecs"], f);
    // The kernel takes offsets of up to about ±146 years (KTIME_SEC_MAX / 2).
    const secs = int(c.secs, `${f}.secs`, -(2 ** 32), 2 ** 32) ?? 0;
    out[clock] = { secs, nanosecs: int(c.nanosecs, `${f}.nanosecs`, 0, 999_999_999) ?? 0 };
  }
  return out;
}

/** process.scheduler: a policy, its nice or priority, flags, and SCHED_DEADLINE's times. */
function readScheduler(v: unknown): SchedAttr | undefined {
  const s = obj(v, "process.scheduler");
  if (!s) return undefined;
  const f = "process.scheduler";
  known(s, ["policy", "nice", "priority", "flags", "runtime", "deadline", "period"], f);
  const name = str(s.policy, `${f}.policy`);
  const policy = name === undefined ? undefined : SCHED_POLICIES[name];
  if (policy === undefined) {
    throw bad(
      `${f}.policy`,
      `"${name ?? ""}" is not a scheduling policy`,
      `one of ${Object.keys(SCHED_POLICIES).join(", ")}`,
    );
  }
  const nice = s.nice === undefined ? 0 : int(s.nice, `${f}.nice`, -20, 19)!;
  const priority = int(s.priority, `${f}.priority`, 0, 99) ?? 0;
  if (priority !== 0 && name !== "SCHED_FIFO" && name !== "SCHED_RR") {
    throw bad(
      `${f}.priority`,
      `a priority is for SCHED_FIFO and SCHED_RR, not ${name}`,
      "remove it, or use nice",
    );
  }
  let flags = 0;
  for (const [k, flag] of (strs(s.flags, `${f}.flags`) ?? []).entries()) {
    const bit = SCHED_FLAGS[flag];
    if (bit === undefined) throw bad(`${f}.flags[${k}]`, `"${flag}" is not a scheduler flag`);
    // The kernel reads util_min/util_max only from a larger struct sched_attr than the OCI
    // fields fill: the run would fail with EINVAL in the child.
    if (bit & (SCHED_FLAGS.SCHED_FLAG_UTIL_CLAMP_MIN | SCHED_FLAGS.SCHED_FLAG_UTIL_CLAMP_MAX)) {
      throw bad(`${f}.flags[${k}]`, `"${flag}" needs clamp values the OCI spec has no field for`);
    }
    flags |= bit;
  }
  // runc's rule: the times are SCHED_DEADLINE's (any other policy would have them ignored).
  const times = ["runtime", "deadline", "period"].filter((k) => s[k] !== undefined);
  if (times.length && name !== "SCHED_DEADLINE") {
    throw bad(`${f}.${times[0]}`, `for SCHED_DEADLINE only, not ${name}`, "remove it");
  }
  const ns = (x: unknown, k: string) => int(x, `${f}.${k}`, 0, Number.MAX_SAFE_INTEGER) ?? 0;
  return {
    policy,
    flags,
    nice,
    priority,
    runtime: ns(s.runtime, "runtime"),
    deadline: ns(s.deadline, "deadline"),
    period: ns(s.period, "period"),
  };
}

function list(v: unknown, field: string): unknown[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) throw bad(field, "expected a list");
  return v;
}
function absolute(p: string, field: string): string {
  if (!p.startsWith("/")) throw bad(field, `"${p}" is not an absolute path`);
  return cleanPath(p);
}

/** Keys of `o` outside `known`: an error (a typo would be silently ignored otherwise). */
function known(o: Obj, keys: readonly string[], field: string): void {
  for (const k of Object.keys(o)) {
    if (!keys.includes(k)) throw bad(`${field}.${k}`, "unknown field");
  }
}

const NS_TYPES: Record<string, NamespaceType> = {
  pid: "pid",
  network: "network",
  mount: "mount",
  ipc: "ipc",
  uts: "uts",
  user: "user",
  cgroup: "cgroup",
  time: "time",
};

/** The plugin that makes each namespace. */
const NS_PLUGIN: Record<NamespaceType, string> = {
  mount: "mount",
  pid: "pid",
  uts: "uts",
  ipc: "ipc",
  network: "net",
  user: "user",
  cgroup: "cgroupns",
  time: "timens",
};

/** runc's and crun's extension: the tmpfs starts with what the image had there. */
const TMPCOPYUP = new Set(["tmpcopyup", "notmpcopyup"]);
/** Propagation options other than the private every mount has. */
const PROPAGATES = new Set(["shared", "rshared", "slave", "rslave", "unbindable", "runbindable"]);

/** linux.personality.domain → personality(2)'s persona (PER_LINUX, PER_LINUX32). */
const PERSONALITY: Record<string, number> = { LINUX: 0, LINUX32: 0x0008 };

const MOUNT_TYPES = ["bind", "tmpfs", "proc", "sysfs", "devpts", "mqueue", "cgroup", "cgroup2"];

/**
 * linux.resources fields runc leaves unapplied, with its reason: kernel memory limits are
 * deprecated (runc: "Kernel memory settings are ignored and will be removed"); v1's
 * use_hierarchy is always on in the kernels micro runs on; checkBeforeUpdate is for update.
 */
const RESOURCE_IGNORED: Record<string, Record<string, string>> = {
  memory: {
    kernel: "kernel memory limits are deprecated and ignored, as runc does",
    kernelTCP: "kernel memory limits are deprecated and ignored, as runc does",
    useHierarchy: "ignored: cgroup v2 is always hierarchical, v1 hierarchies are set by the host",
    checkBeforeUpdate: "ignored: micro's update writes the limit and the kernel checks it",
  },
};

/** The linux.resources groups micro applies (see plugins/cgroups.ts's OCI_RESOURCES). */
const RESOURCE_GROUPS = [
  "memory",
  "cpu",
  "pids",
  "blockIO",
  "devices",
  "hugepageLimits",
  "network",
  "rdma",
  "unified",
];

/** The rlimit types config.json may name (RLIMIT_CPU ...), from core/sys/mod.ts's table. */
const RLIMIT_TYPES = Object.keys(RLIMITS).map((k) => k.toUpperCase());

/**
 * config.json → Spec. `bundle` is the bundle's absolute path (root.path and relative bind
 * sources are resolved against it); `id` the container's id.
 */
export function configToSpec(config: OciConfig, bundle: string, id: string): Translated {
  const c = config.json;
  const warnings: string[] = [];
  const warn = (m: string) => warnings.push(m);
  known(c, [
    "ociVersion",
    "process",
    "root",
    "hostname",
    "domainname",
    "mounts",
    "hooks",
    "annotations",
    "linux",
  ], "config");
  const version = str(c.ociVersion, "ociVersion");
  if (version === undefined) throw bad("ociVersion", "missing");
  if (!/^1\.[0-9]+\.[0-9]+/.test(version)) {
    warn(`config.json: ociVersion "${version}": micro implements 1.x (1.2.0)`);
  }
  const spec = emptySpec();
  spec.micro.oci = { bundle };
  const plugins = new Set<string>(["mount", "cgroups"]);

  // process
  const p = obj(c.process, "process");
  if (!p) throw bad("process", "missing", "create and run need a process to start");
  known(p, [
    "terminal",
    "consoleSize",
    "cwd",
    "env",
    "args",
    "commandLine",
    "rlimits",
    "apparmorProfile",
    "capabilities",
    "noNewPrivileges",
    "oomScoreAdj",
    "scheduler",
    "selinuxLabel",
    "ioPriority",
    "execCPUAffinity",
    "user",
  ], "process");
  const args = strs(p.args, "process.args");
  if (!args?.length) throw bad("process.args", "missing or empty");
  spec.process.args = args;
  spec.process.terminal = bool(p.terminal, "process.terminal") ?? false;
  const size = obj(p.consoleSize, "process.consoleSize");
  let consoleSize: Translated["consoleSize"];
  if (size) {
    known(size, ["height", "width"], "process.consoleSize");
    consoleSize = {
      height: int(size.height, "process.consoleSize.height", 0, 65535) ?? 0,
      width: int(size.width, "process.consoleSize.width", 0, 65535) ?? 0,
    };
  }
  spec.process.stdin = true;
  spec.process.cwd = absolute(str(p.cwd, "process.cwd") ?? "", "process.cwd");
  const env: Record<string, string> = {};
  for (const e of strs(p.env, "process.env") ?? []) {
    const k = e.indexOf("=");
    if (k <= 0) throw bad("process.env", `"${e}" is not KEY=VALUE`);
    env[e.slice(0, k)] = e.slice(k + 1);
  }
  spec.process.envMap = env;
  if (p.commandLine !== undefined) throw bad("process.commandLine", "Windows only");
  const affinity = readAffinity(p.execCPUAffinity);
  if (affinity) spec.process.execCPUAffinity = affinity;
  const ioPriority = readIoPriority(p.ioPriority);
  if (ioPriority) spec.process.ioPriority = ioPriority;
  const scheduler = readScheduler(p.scheduler);
  if (scheduler) spec.process.scheduler = scheduler;
  const u = obj(p.user, "process.user");
  if (!u) throw bad("process.user", "missing");
  known(u, ["uid", "gid", "umask", "additionalGids", "username"], "process.user");
  const uid = int(u.uid, "process.user.uid") ?? 0;
  const gid = int(u.gid, "process.user.gid") ?? 0;
  const groups = list(u.additionalGids, "process.user.additionalGids").map((g, k) =>
    int(g, `process.user.additionalGids[${k}]`)!
  );
  spec.process.userSpec = `${uid}:${gid}`;
  spec.process.groupSpecs = groups.map(String);
  const umask = int(u.umask, "process.user.umask", 0, 0o777);
  if (umask !== undefined) spec.process.umask = umask;
  spec.process.rlimits = list(p.rlimits, "process.rlimits").map((r, k) => {
    const f = `process.rlimits[${k}]`;
    const o = obj(r, f)!;
    known(o, ["type", "soft", "hard"], f);
    const type = str(o.type, `${f}.type`) ?? "";
    if (!RLIMIT_TYPES.includes(type.replace(/^RLIMIT_/, ""))) throw bad(`${f}.type`, `"${type}"`);
    const max = Number.MAX_SAFE_INTEGER;
    return {
      type,
      soft: int(o.soft, `${f}.soft`, 0, max)!,
      hard: int(o.hard, `${f}.hard`, 0, max)!,
    };
  });
  spec.process.noNewPrivileges = bool(p.noNewPrivileges, "process.noNewPrivileges") ?? false;
  const oom = int(p.oomScoreAdj, "process.oomScoreAdj", -1000, 1000);
  if (oom !== undefined) spec.process.oomScoreAdj = oom;
  const aa = str(p.apparmorProfile, "process.apparmorProfile");
  const se = str(p.selinuxLabel, "process.selinuxLabel");
  if (aa) spec.process.apparmorProfile = aa;
  if (se) spec.process.selinuxLabel = se;
  if (aa || se) plugins.add("lsm");
  const caps = obj(p.capabilities, "process.capabilities");
  if (caps) {
    known(caps, ["bounding", "effective", "permitted", "inheritable", "ambient"], "process.caps");
    const set = (k: string) =>
      (strs(caps[k], `process.capabilities.${k}`) ?? []).map((n) => {
        const name = capName(n);
        if (!name) throw bad(`process.capabilities.${k}`, `unknown capability "${n}"`);
        return name;
      });
    spec.process.capabilities = {
      bounding: set("bounding"),
      effective: set("effective"),
      permitted: set("permitted"),
      inheritable: set("inheritable"),
      ambient: set("ambient"),
    };
    spec.micro.ambientCaps = spec.process.capabilities.ambient;
    spec.micro.addedCaps = [];
    plugins.add("caps");
  }

  // root
  const root = obj(c.root, "root");
  if (!root) throw bad("root", "missing");
  known(root, ["path", "readonly"], "root");
  const rootPath = str(root.path, "root.path");
  if (!rootPath) throw bad("root.path", "missing");
  spec.root.path = cleanPath(rootPath.startsWith("/") ? rootPath : `${bundle}/${rootPath}`);
  spec.root.readonly = bool(root.readonly, "root.readonly") ?? false;

  // hostname, domainname
  const hostname = str(c.hostname, "hostname");
  if (hostname) spec.hostname = hostname;
  const domainname = str(c.domainname, "domainname");

  // linux
  const l = obj(c.linux, "linux") ?? {};
  known(l, [
    "namespaces",
    "uidMappings",
    "gidMappings",
    "timeOffsets",
    "devices",
    "cgroupsPath",
    "rootfsPropagation",
    "resources",
    "intelRdt",
    "sysctl",
    "seccomp",
    "maskedPaths",
    "readonlyPaths",
    "mountLabel",
    "personality",
    "memoryPolicy",
  ], "linux");
  const joins: Translated["joins"] = [];
  for (const [k, n] of list(l.namespaces, "linux.namespaces").entries()) {
    const f = `linux.namespaces[${k}]`;
    const o = obj(n, f)!;
    known(o, ["type", "path"], f);
    const type = NS_TYPES[str(o.type, `${f}.type`) ?? ""];
    if (!type) throw bad(`${f}.type`, `unknown namespace type "${o.type}"`);
    if (spec.linux.namespaces.some((x) => x.type === type) || joins.some((j) => j.type === type)) {
      throw bad(f, `namespace "${type}" given twice`);
    }
    const path = str(o.path, `${f}.path`);
    if (path) {
      if (!JOINABLE.includes(type)) {
        throw bad(
          `${f}.path`,
          `joining a ${type} namespace by path is not supported by micro`,
          "micro's parent is multi-threaded: the kernel refuses setns into mount, user and " +
            "time namespaces there; leave out the path",
        );
      }
      joins.push({ type, path: absolute(path, `${f}.path`) });
      continue;
    }
    spec.linux.namespaces.push({ type });
    plugins.add(NS_PLUGIN[type]);
  }
  if (!spec.linux.namespaces.some((n) => n.type === "mount")) {
    throw bad("linux.namespaces", "no mount namespace", "micro needs a mount namespace of its own");
  }
  if (hostname && !spec.linux.namespaces.some((n) => n.type === "uts")) {
    throw bad("hostname", "set without a uts namespace of the container's own");
  }
  if (domainname && !spec.linux.namespaces.some((n) => n.type === "uts")) {
    throw bad("domainname", "set without a uts namespace of the container's own");
  }
  const maps = (v: unknown, f: string) =>
    list(v, f).map((m, k) => {
      const o = obj(m, `${f}[${k}]`)!;
      known(o, ["containerID", "hostID", "size"], `${f}[${k}]`);
      return {
        containerID: int(o.containerID, `${f}[${k}].containerID`)!,
        hostID: int(o.hostID, `${f}[${k}].hostID`)!,
        size: int(o.size, `${f}[${k}].size`, 1)!,
      };
    });
  spec.linux.uidMappings = maps(l.uidMappings, "linux.uidMappings");
  spec.linux.gidMappings = maps(l.gidMappings, "linux.gidMappings");
  const userns = spec.linux.namespaces.some((n) => n.type === "user");
  if (userns && (!spec.linux.uidMappings.length || !spec.linux.gidMappings.length)) {
    throw bad("linux.uidMappings", "a user namespace needs uidMappings and gidMappings");
  }
  if (!userns && (spec.linux.uidMappings.length || spec.linux.gidMappings.length)) {
    throw bad("linux.uidMappings", "given without a user namespace");
  }
  const persona = obj(l.personality, "linux.personality");
  if (persona) {
    known(persona, ["domain", "flags"], "linux.personality");
    const domain = str(persona.domain, "linux.personality.domain");
    if (!domain || !(domain in PERSONALITY)) {
      throw bad("linux.personality.domain", `"${domain}": expected LINUX or LINUX32`);
    }
    // The spec names no flag values; runc refuses any too.
    if ((strs(persona.flags, "linux.personality.flags") ?? []).length) {
      throw bad("linux.personality.flags", "not supported by micro", "leave flags empty");
    }
    spec.process.personality = PERSONALITY[domain];
  }
  if (l.intelRdt !== undefined && l.intelRdt !== null) throw intelRdtError();
  const mpol = readMemoryPolicy(l.memoryPolicy);
  if (mpol) spec.process.memoryPolicy = mpol;
  const offsets = readTimeOffsets(l.timeOffsets);
  if (offsets) {
    if (!spec.linux.namespaces.some((n) => n.type === "time")) {
      throw bad("linux.timeOffsets", "set without a time namespace of the container's own");
    }
    spec.linux.timeOffsets = offsets;
  }
  const propagation = str(l.rootfsPropagation, "linux.rootfsPropagation");
  if (propagation && !["private", "rprivate", "slave", "rslave"].includes(propagation)) {
    throw bad(
      "linux.rootfsPropagation",
      `"${propagation}": micro's root is private or a slave of the host's`,
      "use rslave (mounts of the host's reach the container) or rprivate",
    );
  }
  if (propagation === "slave" || propagation === "rslave") spec.linux.rootfsSlave = true;
  const mountLabel = str(l.mountLabel, "linux.mountLabel");
  if (mountLabel) spec.linux.mountLabel = mountLabel;

  // devices: made with mknod (in a user namespace, bound from the host's node of the same
  // path, as runc); the cgroup's rules come from linux.resources.devices only, as runc's.
  for (const [k, d] of list(l.devices, "linux.devices").entries()) {
    const f = `linux.devices[${k}]`;
    const o = obj(d, f)!;
    known(o, ["type", "path", "major", "minor", "fileMode", "uid", "gid"], f);
    const path = absolute(str(o.path, `${f}.path`) ?? "", `${f}.path`);
    if (!path.startsWith("/dev/")) throw bad(`${f}.path`, "micro adds devices under /dev only");
    const type = str(o.type, `${f}.type`) ?? "";
    if (!["c", "b", "u", "p"].includes(type)) {
      throw bad(`${f}.type`, `"${type}": expected c, b, u or p`);
    }
    const number = (key: "major" | "minor", max: number) => {
      const n = int(o[key], `${f}.${key}`, 0, max);
      if (n === undefined && type !== "p") throw bad(`${f}.${key}`, `required for type ${type}`);
      return n ?? 0;
    };
    spec.linux.devices.push({
      path,
      hostPath: path,
      access: "rwm",
      node: {
        type: type as "c" | "b" | "u" | "p",
        major: number("major", 0xfff),
        minor: number("minor", 0xfffff),
        mode: int(o.fileMode, `${f}.fileMode`, 0, 0o7777) ?? 0o666,
        uid: int(o.uid, `${f}.uid`) ?? 0,
        gid: int(o.gid, `${f}.gid`) ?? 0,
      },
    });
  }

  // resources, cgroupsPath
  const res = obj(l.resources, "linux.resources") ?? {};
  const r: Obj = {};
  for (const [k, v] of Object.entries(res)) {
    if (v === null || v === undefined) continue;
    if (!RESOURCE_GROUPS.includes(k)) {
      throw bad(`linux.resources.${k}`, "not a field of the runtime spec's linux.resources");
    }
    // An empty unified (runc's and podman's default) asks nothing, on v1 hosts too.
    if (k === "unified" && isPlainObject(v) && Object.keys(v).length === 0) continue;
    if (k === "hugepageLimits" || k === "unified" || k === "rdma") {
      if (Array.isArray(v) ? !v.length : isPlainObject(v) && !Object.keys(v).length) continue;
      r[k] = v; // checked with the rest below (OCI_RESOURCES)
      continue;
    }
    if (k === "devices") {
      // OCI's wildcard is an absent major/minor; runc's default writes them as null.
      r.devices = list(v, "linux.resources.devices").map((x) =>
        isPlainObject(x)
          ? Object.fromEntries(Object.entries(x).filter(([, y]) => y !== null && y !== -1))
          : x
      );
      continue;
    }
    const o = obj(v, `linux.resources.${k}`)!;
    const kept: Obj = {};
    for (const [kk, vv] of Object.entries(o)) {
      if (vv === null || vv === undefined) continue;
      if (k === "memory" && kk === "disableOOMKiller") {
        if (vv === true) spec.micro.oomKillDisable = true;
        continue;
      }
      const ignored = RESOURCE_IGNORED[k]?.[kk];
      if (ignored) {
        warn(`config.json: linux.resources.${k}.${kk}: ${ignored}`);
        continue;
      }
      kept[kk] = vv;
    }
    r[k] = kept;
  }
  const issues = check(r, OCI_RESOURCES);
  if (issues.length) {
    const i = issues[0];
    throw bad(`linux.resources${i.path.length ? "." + formatPath(i.path) : ""}`, i.reason);
  }
  const cgroupsPath = str(l.cgroupsPath, "linux.cgroupsPath");
  const cgroup = cgroupOf(cgroupsPath, id);

  // sysctl
  const sysctl = obj(l.sysctl, "linux.sysctl");
  if (sysctl && Object.keys(sysctl).length) {
    spec.linux.sysctl = {};
    for (const [k, v] of Object.entries(sysctl)) {
      spec.linux.sysctl[k] = str(v, `linux.sysctl.${k}`)!;
    }
    plugins.add("sysctl");
  }
  // domainname: the uts namespace's kernel.domainname, written by the sysctl plugin (the
  // only place micro writes it; the field wins over a sysctl of the same name, as in runc).
  if (domainname) {
    spec.linux.sysctl = { ...spec.linux.sysctl, "kernel.domainname": domainname };
    plugins.add("sysctl");
  }

  // seccomp: the seccomp plugin reads linux.seccomp from the raw text (exact 64-bit values)
  if (l.seccomp !== undefined && l.seccomp !== null) {
    obj(l.seccomp, "linux.seccomp");
    spec.micro.seccomp = true;
    spec.micro.seccompFile = `${bundle}/config.json`;
    plugins.add("seccomp");
  }

  spec.linux.maskedPaths = (strs(l.maskedPaths, "linux.maskedPaths") ?? []).map((x) =>
    absolute(x, "linux.maskedPaths")
  );
  spec.linux.readonlyPaths = (strs(l.readonlyPaths, "linux.readonlyPaths") ?? []).map((x) =>
    absolute(x, "linux.readonlyPaths")
  );

  // mounts, in order
  let cgroupMount: "ro" | "rw" | "none" = "none";
  for (const [k, m] of list(c.mounts, "mounts").entries()) {
    const f = `mounts[${k}]`;
    const o = obj(m, f)!;
    known(o, ["destination", "source", "options", "type", "uidMappings", "gidMappings"], f);
    const destination = absolute(str(o.destination, `${f}.destination`) ?? "", `${f}.destination`);
    const given = strs(o.options, `${f}.options`) ?? [];
    // runc's idmap (this mount) and ridmap (and those below it): micro idmaps the tree the
    // bind makes, recursive with rbind, whenever the mappings are given.
    const options = given.filter((x) => x !== "idmap" && x !== "ridmap");
    const isBind = options.includes("bind") || options.includes("rbind");
    let type = str(o.type, `${f}.type`) ?? (isBind ? "bind" : "");
    if (isBind || type === "none") type = "bind";
    if (!MOUNT_TYPES.includes(type)) {
      throw bad(`${f}.type`, `"${type}" is not supported by micro (${MOUNT_TYPES.join(", ")})`);
    }
    if (type === "cgroup" || type === "cgroup2") {
      if (destination !== "/sys/fs/cgroup") {
        throw bad(`${f}.destination`, "micro mounts the cgroup tree only at /sys/fs/cgroup");
      }
      cgroupMount = options.includes("rw") && !options.includes("ro") ? "rw" : "ro";
      continue;
    }
    let source = str(o.source, `${f}.source`) ?? type;
    if (type === "bind" && !source.startsWith("/")) source = cleanPath(`${bundle}/${source}`);
    const kept: string[] = [];
    const data: string[] = [];
    for (const opt of options) {
      if (isFlagOption(opt)) {
        kept.push(opt);
        // runc's way too: a remount of a bind changes the mount's flags, never its
        // file system's.
        if (type === "bind" && SUPERBLOCK_OPTIONS.has(opt)) {
          warn(
            `config.json: ${f} (${destination}): "${opt}" is the file system's option: ` +
              "a bind mount keeps the source's",
          );
        }
        if ((type === "proc" || type === "sysfs") && PROPAGATES.has(opt)) {
          warn(`config.json: ${f} (${destination}): "${opt}": micro's ${type} mount is private`);
        }
      } else if (TMPCOPYUP.has(opt)) {
        if (type === "tmpfs") kept.push(opt);
        else warn(`config.json: ${f} (${destination}): "${opt}" applies to a tmpfs only`);
      } else if (type === "bind") {
        throw bad(`${f}.options`, `"${opt}" is not a bind mount option micro knows`);
      } else data.push(opt);
    }
    if (type === "bind" && !kept.includes("bind") && !kept.includes("rbind")) kept.push("rbind");
    const idmap = readIdmap(o, f, type, given);
    spec.mounts.push({
      destination,
      type: type as Mount["type"],
      source,
      options: data.length ? [...kept, data.join(",")] : kept,
      ...(idmap ? { idmap } : {}),
    });
  }
  if (cgroupMount !== "none" && !spec.linux.namespaces.some((n) => n.type === "cgroup")) {
    warn(
      "config.json: the cgroup mount at /sys/fs/cgroup is not made without a cgroup namespace " +
        "of the container's own (micro shows only the container's cgroup there)",
    );
    cgroupMount = "none";
  }
  const hooks = parseHooks(c.hooks);
  refuseExposedHooks(
    hooks,
    spec.linux.namespaces.some((n) => n.type === "user") || joins.some((j) => j.type === "user"),
    spec.process.capabilities?.bounding,
  );

  // plugins, in micro's plugin order (plugins/mod.ts); their micro.* fields set as a
  // profile would
  spec.micro.network = "none";
  spec.micro.devices = ["null", "zero", "full", "random", "urandom", "tty"];
  spec.linux.resources = r as Spec["linux"]["resources"];
  if (r.devices) spec.micro.ociDevices = r.devices as NonNullable<Spec["micro"]["ociDevices"]>;
  spec.micro.cgroupLimits = Object.keys(r).length > 0;
  spec.micro.cgroup = {
    parent: cgroup.parent,
    ...(cgroup.own ? { ownParent: true } : {}),
    // A config.json's limits are MUSTs: the run fails where the host cannot apply them.
    required: true,
    mount: cgroupMount,
    rates: { readBps: [], writeBps: [], readIops: [], writeIops: [] },
  };
  spec.micro.plugins = ORDER.filter((n) => plugins.has(n));
  if (!spec.process.envMap.PATH && !args[0].includes("/")) {
    warn(`config.json: process.env has no PATH: ${args[0]} is looked up in ${DEFAULT_PATH}`);
  }
  return {
    spec,
    warnings,
    joins,
    cgroup,
    raw: config.raw,
    hooks,
    ...(consoleSize ? { consoleSize } : {}),
  };
}

/** plugins/mod.ts's order (kept here so this module does not load every plugin). */
const ORDER = [
  "mount",
  "overlay",
  "user",
  "pid",
  "uts",
  "ipc",
  "net",
  "cgroupns",
  "timens",
  "cgroups",
  "caps",
  "lsm",
  "readonly",
  "sysctl",
  "seccomp",
];

/**
 * `linux.cgroupsPath` ("/a/b/leaf" or "a/b/leaf") as a parent and a leaf; none, or a leaf
 * alone: micro's own parent (`micro-oci`, `own`: removed once empty, as a run's `micro` is)
 * and the container's id or the leaf. systemd's "slice:prefix:name" form needs
 * --systemd-cgroup, which micro refuses.
 */
export function cgroupOf(
  path: string | undefined,
  id: string,
): { parent: string; name: string; own?: true } {
  if (!path) return { parent: OCI_PARENT, name: id, own: true };
  if (path.includes(":")) {
    throw bad(
      "linux.cgroupsPath",
      `"${path}" is a systemd cgroup path: micro manages cgroupfs itself`,
      'configure the caller for cgroupfs (podman: cgroup_manager = "cgroupfs")',
    );
  }
  const parts = path.split("/").filter((x) => x);
  const ok = /^[A-Za-z0-9_.@-]+$/;
  if (
    !parts.length || parts.some((x) => !ok.test(x) || x === "." || x === ".." || x.length > 255)
  ) {
    throw bad("linux.cgroupsPath", `"${path}" is not a cgroup path micro accepts`);
  }
  const name = parts.pop()!;
  return parts.length ? { parent: parts.join("/"), name } : { parent: OCI_PARENT, name, own: true };
}
