/**
 * Argument parsing for `micro run` and `micro plan` (DESIGN.md §1, step 1). Docker's flag
 * spellings become a Request: the image, the command, the profiles to resolve and a
 * profile-shaped layer that is merged on top of them.
 *
 *     micro run [OPTIONS] [IMAGE] [--] COMMAND [ARG...]
 *
 * Options come before IMAGE; parsing stops at the first positional or at `--`. The first
 * positional before `--` is IMAGE and the rest is the command; with `--` first, there is no
 * image (the host view is used).
 */
import { MicroError } from "./errors.ts";
import { FileRefused, formatSize, readRegularFile, TEXT_CAP } from "./files.ts";
import { openLibc } from "./sys/libc.ts";
import { checkAddHost, isIPv4, parsePublish } from "./cni/ports.ts";
import { parseBurst, parseRate } from "./cni/rate.ts";
import { parseMountFlag, parseTmpfs, parseVolumeFlag } from "./mounts.ts";
import { parseSize } from "./cgroups/units.ts";
import { parseSignal, parseStopTimeout } from "./signals.ts";

/** A plain object shaped like a profile (no `extends`, no line numbers). */
export type ProfileLayer = Record<string, unknown>;

export interface Request {
  command: "run" | "plan";
  /** The image directory or OCI bundle; null for the host view. */
  image: string | null;
  args: string[];
  /** `--profile` references in order; empty means the default profile. */
  profiles: string[];
  layer: ProfileLayer;
  /** `-t`: allocate a terminal. */
  terminal: boolean;
  /** `-i`: keep stdin open. */
  stdin: boolean;
  name?: string;
  /** `--rm`: remove the container (its layer and record) when it exits, as Docker. */
  rm: boolean;
  json: boolean;
  /** `--help` was given: print core/run_help.ts's text and do nothing else. */
  help: boolean;
  /** `--pull`: when to pull a store image (default "missing", as Docker). */
  pull?: "missing" | "always" | "never";
  /** `--entrypoint`: replaces the image's Entrypoint ("" clears it). */
  entrypoint?: string;
  /** `--root`: the image store (default: MICRO_ROOT, else the user's store). */
  root?: string;
  /** `--platform`: the platform to pull. */
  platform?: string;
  /** `--cidfile`: a file to create (exclusively) holding the container id. */
  cidfile?: string;
  /** `--label` and `--label-file`: stored in the container record (`micro ps --filter`). */
  labels?: Record<string, string>;
  /** `--stop-signal` as typed (checked): sent to init when micro gets SIGTERM. */
  stopSignal?: string;
  /** `--stop-timeout`: seconds from the stop signal to SIGKILL (-1: never). */
  stopTimeout?: number;
  /** `-a`: the streams attached (the others are /dev/null); absent: Docker's default. */
  attach?: { stdin: boolean; stdout: boolean; stderr: boolean };
  /** `-d`: run in the background, supervised (core/supervisor/). */
  detach?: boolean;
  /** `--log-opt KEY=VALUE` as typed (checked by core/supervisor/logs.ts parseLogOpts). */
  logOpts?: string[];
  /** `--restart` as typed (checked by core/supervisor/policy.ts parseRestart). */
  restart?: string;
}

/** What the parser may read from the outside: micro's environment and `--env-file` files. */
export interface CliIO {
  getEnv(name: string): string | undefined;
  readFile(path: string): string;
  /** For relative file arguments (`--security-opt seccomp=FILE`). */
  cwd(): string;
}

const DENO_IO: CliIO = {
  getEnv: (name) => Deno.env.get(name),
  readFile: (path) => readRegularFile(openLibc(), path, TEXT_CAP),
  cwd: () => Deno.cwd(),
};

type Kind = "value" | "flag";

interface OptionDef {
  long: string;
  short?: string;
  kind: Kind;
}

const OPTIONS: OptionDef[] = [
  { long: "profile", kind: "value" },
  { long: "publish", short: "p", kind: "value" },
  { long: "publish-all", short: "P", kind: "flag" },
  { long: "ip", kind: "value" },
  { long: "dns", kind: "value" },
  { long: "dns-search", kind: "value" },
  { long: "add-host", kind: "value" },
  { long: "cni-config-dir", kind: "value" },
  { long: "egress-rate", kind: "value" },
  { long: "ingress-rate", kind: "value" },
  { long: "egress-burst", kind: "value" },
  { long: "ingress-burst", kind: "value" },
  { long: "env", short: "e", kind: "value" },
  { long: "env-file", kind: "value" },
  { long: "workdir", short: "w", kind: "value" },
  { long: "user", short: "u", kind: "value" },
  { long: "group-add", kind: "value" },
  { long: "ulimit", kind: "value" },
  { long: "interactive", short: "i", kind: "flag" },
  { long: "tty", short: "t", kind: "flag" },
  { long: "init", kind: "flag" },
  { long: "hostname", kind: "value" },
  { long: "network", kind: "value" },
  { long: "volume", short: "v", kind: "value" },
  { long: "tmpfs", kind: "value" },
  { long: "mount", kind: "value" },
  { long: "shm-size", kind: "value" },
  { long: "cpus", kind: "value" },
  { long: "cpu-shares", kind: "value" },
  { long: "cpu-weight", kind: "value" },
  { long: "cpuset-cpus", kind: "value" },
  { long: "cpuset-mems", kind: "value" },
  { long: "memory", short: "m", kind: "value" },
  { long: "memory-swap", kind: "value" },
  { long: "memory-reservation", kind: "value" },
  { long: "pids-limit", kind: "value" },
  { long: "blkio-weight", kind: "value" },
  { long: "device-read-bps", kind: "value" },
  { long: "device-write-bps", kind: "value" },
  { long: "device-read-iops", kind: "value" },
  { long: "device-write-iops", kind: "value" },
  { long: "device", kind: "value" },
  { long: "cgroup-parent", kind: "value" },
  { long: "cap-add", kind: "value" },
  { long: "cap-drop", kind: "value" },
  { long: "read-only", kind: "flag" },
  { long: "security-opt", kind: "value" },
  { long: "name", kind: "value" },
  { long: "json", kind: "flag" },
  { long: "rm", kind: "flag" },
  { long: "help", kind: "flag" },
  { long: "pull", kind: "value" },
  { long: "platform", kind: "value" },
  { long: "entrypoint", kind: "value" },
  { long: "root", kind: "value" },
  { long: "privileged", kind: "flag" },
  { long: "pid", kind: "value" },
  { long: "ipc", kind: "value" },
  { long: "uts", kind: "value" },
  { long: "userns", kind: "value" },
  { long: "sysctl", kind: "value" },
  { long: "oom-kill-disable", kind: "flag" },
  { long: "oom-score-adj", kind: "value" },
  { long: "stop-signal", kind: "value" },
  { long: "stop-timeout", kind: "value" },
  { long: "label", short: "l", kind: "value" },
  { long: "label-file", kind: "value" },
  { long: "cidfile", kind: "value" },
  { long: "attach", short: "a", kind: "value" },
  { long: "detach", short: "d", kind: "flag" },
  { long: "log-opt", kind: "value" },
  { long: "restart", kind: "value" },
];

/** Docker's resource flags to the cgroups plugin's option names. */
const CGROUP_KEYS: Record<string, string> = {
  "cpus": "cpus",
  "cpu-shares": "cpuShares",
  "cpu-weight": "cpuWeight",
  "cpuset-cpus": "cpusetCpus",
  "cpuset-mems": "cpusetMems",
  "memory": "memory",
  "memory-swap": "memorySwap",
  "memory-reservation": "memoryReservation",
  "pids-limit": "pidsLimit",
  "blkio-weight": "blkioWeight",
  "device-read-bps": "deviceReadBps",
  "device-write-bps": "deviceWriteBps",
  "device-read-iops": "deviceReadIops",
  "device-write-iops": "deviceWriteIops",
  "device": "devices",
  "cgroup-parent": "parent",
};

const BY_LONG = new Map(OPTIONS.map((o) => [o.long, o]));
const BY_SHORT = new Map(OPTIONS.filter((o) => o.short).map((o) => [o.short!, o]));

const HELP_HINT = 'see "micro run --help"';

/** Throws a usage error (exit code 125); `null` for no hint. */
function fail(message: string, hint: string | null = HELP_HINT): never {
  throw new MicroError(message, hint === null ? {} : { hint });
}

/** One option occurrence in command-line order. */
interface Given {
  opt: OptionDef;
  /** As typed, for messages: `--env`, `-e`. */
  spelled: string;
  value: string;
}

function parseFlagValue(spelled: string, value: string): string {
  if (value === "true" || value === "false") return value;
  fail(`option "${spelled}" takes no value, or "true" or "false": got "${value}"`);
}

/** Splits argv (after the verb) into options, the image and the command. */
function scan(argv: readonly string[]) {
  const given: Given[] = [];
  let i = 0;
  const next = (spelled: string): string => {
    if (i + 1 >= argv.length) fail(`option "${spelled}" needs a value`);
    return argv[++i];
  };
  for (; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--" || !a.startsWith("-") || a === "-") break;
    if (a.startsWith("--")) {
      const eq = a.indexOf("=");
      const name = eq < 0 ? a.slice(2) : a.slice(2, eq);
      const spelled = `--${name}`;
      const opt = BY_LONG.get(name);
      if (!opt) fail(`unknown option "${spelled}"`);
      if (opt.kind === "flag") {
        const value = eq < 0 ? "true" : parseFlagValue(spelled, a.slice(eq + 1));
        given.push({ opt, spelled, value });
      } else {
        given.push({ opt, spelled, value: eq < 0 ? next(spelled) : a.slice(eq + 1) });
      }
      if (opt.long === "help" && given[given.length - 1].value === "true") break;
      continue;
    }
    // A cluster of short options: -it, -e KEY=V, -eKEY=V, -e=KEY=V.
    for (let j = 1; j < a.length; j++) {
      const spelled = `-${a[j]}`;
      const opt = BY_SHORT.get(a[j]);
      if (!opt) fail(`unknown option "${spelled}"${j > 1 ? ` in "${a}"` : ""}`);
      if (opt.kind === "flag") {
        given.push({ opt, spelled, value: "true" });
        continue;
      }
      let rest = a.slice(j + 1);
      if (rest.startsWith("=")) rest = rest.slice(1);
      given.push({ opt, spelled, value: rest !== "" ? rest : next(spelled) });
      break;
    }
  }
  let image: string | null = null;
  let args: string[];
  if (i < argv.length && argv[i] === "--") {
    args = argv.slice(i + 1);
  } else {
    image = i < argv.length ? argv[i] : null;
    const rest = argv.slice(i + 1);
    args = rest[0] === "--" ? rest.slice(1) : rest;
  }
  return { given, image, args };
}

/**
 * Docker's `--security-opt` forms (`key=value` or `key:value`) as profile options:
 * no-new-privileges, seccomp=FILE|unconfined, apparmor=PROFILE, label=PART:VALUE.
 */
function securityOpt(layer: ProfileLayer, spelled: string, text: string, io: CliIO): void {
  const m = /^([a-z-]+)(?:[=:](.*))?$/.exec(text);
  const key = m?.[1] ?? "";
  const value = m?.[2];
  const bad = (why: string): never => fail(`option "${spelled}": ${why}: "${text}"`);
  switch (key) {
    case "no-new-privileges":
      if (value !== undefined && value !== "true" && value !== "false") {
        bad("no-new-privileges takes true or false");
      }
      section(layer, "process").noNewPrivileges = value !== "false";
      return;
    case "seccomp":
      if (!value) bad("seccomp needs a file or unconfined");
      if (value === "unconfined") section(layer, "seccomp").enabled = false;
      else section(layer, "seccomp").file = value!.startsWith("/") ? value : `${io.cwd()}/${value}`;
      return;
    case "apparmor":
      if (!value) bad("apparmor needs a profile name");
      section(section(layer, "lsm"), "apparmor").profile = value;
      return;
    case "label": {
      const [part, v] = (value ?? "").split(":", 2).concat([""]).slice(0, 2);
      if (value === "disable") bad("label=disable is not supported: use a profile without selinux");
      if (!["user", "role", "type", "level"].includes(part) || v === "") {
        bad("label takes user:USER, role:ROLE, type:TYPE or level:LEVEL");
      }
      // The level keeps its own colons (s0:c1,c2).
      section(section(layer, "lsm"), "selinux")[part] = value!.slice(part.length + 1);
      return;
    }
    default:
      bad("unknown security option (no-new-privileges, seccomp, apparmor, label)");
  }
}

/** `KEY=VALUE`, or `KEY` alone for micro's own value (skipped when micro has none). */
function envEntry(
  text: string,
  io: CliIO,
  where: string,
  hint: string | null,
): [string, string] | undefined {
  const eq = text.indexOf("=");
  const key = eq < 0 ? text : text.slice(0, eq);
  if (key === "") fail(`${where}: variable name is empty in "${text}"`, hint);
  if (/\s/.test(key)) fail(`${where}: variable name "${key}" contains whitespace`, hint);
  if (eq >= 0) return [key, text.slice(eq + 1)];
  const value = io.getEnv(key);
  return value === undefined ? undefined : [key, value];
}

/** Docker's env-file format: `KEY=VALUE` or `KEY` lines, `#` comments, blank lines. */
export function parseEnvFile(path: string, io: CliIO = DENO_IO): Record<string, string> {
  let text: string;
  try {
    text = io.readFile(path);
  } catch (e) {
    if (e instanceof FileRefused && e.errno === undefined) {
      fail(
        `env file "${path}": ${e.reason}`,
        `give a regular file of at most ${formatSize(TEXT_CAP)}`,
      );
    }
    const reason = e instanceof FileRefused
      ? e.reason
      : e instanceof Deno.errors.NotFound
      ? "no such file"
      : e instanceof Deno.errors.PermissionDenied
      ? "permission denied"
      : e instanceof Deno.errors.IsADirectory
      ? "is a directory"
      : String(e instanceof Error ? e.message : e).split("\n")[0];
    fail(`env file "${path}": cannot read: ${reason}`, null);
  }
  const env: Record<string, string> = {};
  text.split(/\r?\n/).forEach((raw, n) => {
    const line = raw.replace(/^\s+/, "");
    if (line === "" || line.startsWith("#")) return;
    const entry = envEntry(line, io, `env file "${path}" (line ${n + 1})`, null);
    if (entry) env[entry[0]] = entry[1];
  });
  return env;
}

/** A mount flag checked by the parser its profile key uses (core/mounts.ts). */
function mountFlag(spelled: string, v: string, parse: (v: string) => unknown): string {
  const m = parse(v);
  if (typeof m === "string") fail(`option "${spelled}": ${m}: "${v}"`);
  return v;
}

/** The flags that name a namespace mode, and the plugin each one's namespace belongs to. */
const NAMESPACE_FLAGS: Record<string, { plugin: string; modes: string[]; join: boolean }> = {
  pid: { plugin: "pid", modes: ["host"], join: true },
  ipc: { plugin: "ipc", modes: ["host", "shareable", "private"], join: true },
  uts: { plugin: "uts", modes: ["host"], join: false },
  userns: { plugin: "user", modes: ["host"], join: false },
};

/**
 * `--pid`, `--ipc`, `--uts`, `--userns`: `host` turns the namespace's plugin off (no new
 * namespace of that kind); `container:NAME` joins a running micro container's (`join`);
 * `shareable` and `private` are an own ipc namespace, which is what micro always makes
 * (any process allowed to may join it through /proc).
 */
function namespaceMode(layer: ProfileLayer, spelled: string, flag: string, value: string): void {
  const ns = NAMESPACE_FLAGS[flag];
  const join = ns.join && value.startsWith("container:") ? value.slice(10) : undefined;
  if (join !== undefined) {
    if (!/^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$/.test(join)) {
      fail(`option "${spelled}": invalid container name "${join}"`);
    }
    Object.assign(section(layer, ns.plugin), { enabled: true, join });
    return;
  }
  if (!ns.modes.includes(value)) {
    const modes = [...ns.modes, ...(ns.join ? ["container:NAME"] : [])];
    fail(
      `option "${spelled}": invalid value "${value}": expected ${
        modes.map((m) => `"${m}"`).join(", ")
      }`,
    );
  }
  section(layer, ns.plugin).enabled = value !== "host";
}

/**
 * `--privileged`, as Docker defines it: every capability, no seccomp filter, no LSM (nor
 * Landlock), no masked or read-only paths, the host's devices in /dev and every device
 * allowed by the cgroup. It wins over the options given with it.
 */
function applyPrivileged(layer: ProfileLayer): void {
  // An empty drop list replaces any a profile below has.
  Object.assign(section(layer, "caps"), { add: ["ALL"], drop: [] });
  section(layer, "seccomp").enabled = false;
  section(layer, "lsm").enabled = false;
  Object.assign(section(layer, "mount"), { masked: [], readonly: [], hostDevices: true });
  const cgroups = section(layer, "cgroups");
  const resources = (cgroups.resources ??= {}) as Record<string, unknown>;
  resources.devices = [{ allow: true, access: "rwm" }];
}

/** `KEY=VALUE`, or `KEY` alone for an empty value (as Docker). */
function labelEntry(text: string, where: string, hint: string | null): [string, string] {
  const eq = text.indexOf("=");
  const key = eq < 0 ? text : text.slice(0, eq);
  if (key === "" || /\s/.test(key)) {
    fail(`${where}: invalid label "${text}": expected KEY=VALUE`, hint);
  }
  return [key, eq < 0 ? "" : text.slice(eq + 1)];
}

/** Docker's label-file format: `KEY=VALUE` lines, `#` comments, blank lines. */
export function parseLabelFile(path: string, io: CliIO = DENO_IO): Record<string, string> {
  let text: string;
  try {
    text = io.readFile(path);
  } catch (e) {
    const reason = e instanceof FileRefused
      ? e.reason
      : e instanceof Deno.errors.NotFound
      ? "no such file"
      : String(e instanceof Error ? e.message : e).split("\n")[0];
    fail(
      `label file "${path}": cannot read: ${reason}`,
      `give a regular file of at most ${formatSize(TEXT_CAP)}`,
    );
  }
  const labels: Record<string, string> = {};
  text.split(/\r?\n/).forEach((raw, n) => {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) return;
    const [k, v] = labelEntry(line, `label file "${path}" (line ${n + 1})`, null);
    labels[k] = v;
  });
  return labels;
}

function section(layer: ProfileLayer, name: string): Record<string, unknown> {
  return (layer[name] ??= {}) as Record<string, unknown>;
}

/**
 * Parses `micro run ...` or `micro plan ...`: argv[0] is the verb. Throws a MicroError
 * (exit code 125, no stack trace) for a bad option.
 */
export function parseRun(argv: readonly string[], io: CliIO = DENO_IO): Request {
  const command = argv[0];
  if (command !== "run" && command !== "plan") {
    fail(`unknown command "${command ?? ""}": expected "run" or "plan"`, 'see "micro --help"');
  }
  const { given, image, args } = scan(argv.slice(1));
  const req: Request = {
    command,
    image,
    args,
    profiles: [],
    layer: {},
    terminal: false,
    stdin: false,
    rm: false,
    json: false,
    help: false,
  };
  const layer = req.layer;
  const fileEnv: Record<string, string> = {};
  const flagEnv: Record<string, string> = {};
  const groups: string[] = [];
  const rlimits: Record<string, string> = {};
  const binds: string[] = [];
  const tmpfs: string[] = [];
  const mounts: string[] = [];
  const capAdd: string[] = [];
  const capDrop: string[] = [];
  const publish: string[] = [];
  const dns: string[] = [];
  const dnsSearch: string[] = [];
  const addHosts: string[] = [];
  const fileLabels: Record<string, string> = {};
  const flagLabels: Record<string, string> = {};
  let privileged = false;
  const process = () => section(layer, "process");

  for (const { opt, spelled, value } of given) {
    const on = value === "true";
    switch (opt.long) {
      case "profile":
        if (value === "") fail(`option "${spelled}" needs a profile name or path`);
        req.profiles.push(value);
        break;
      case "env": {
        const entry = envEntry(value, io, `option "${spelled}"`, HELP_HINT);
        if (entry) flagEnv[entry[0]] = entry[1];
        break;
      }
      case "env-file":
        Object.assign(fileEnv, parseEnvFile(value, io));
        break;
      case "workdir":
        if (!value.startsWith("/")) {
          fail(`option "${spelled}": working directory "${value}" is not absolute`);
        }
        process().cwd = value;
        break;
      case "user":
        if (value === "") fail(`option "${spelled}" needs UID[:GID] or NAME[:GROUP]`);
        process().user = value;
        break;
      case "group-add":
        groups.push(value);
        break;
      case "ulimit": {
        const eq = value.indexOf("=");
        if (eq <= 0) fail(`option "${spelled}": expected NAME=SOFT[:HARD], got "${value}"`);
        rlimits[value.slice(0, eq)] = value.slice(eq + 1);
        break;
      }
      case "interactive":
        req.stdin = on;
        break;
      case "tty":
        req.terminal = on;
        break;
      case "init":
        process().init = on;
        break;
      case "hostname":
        section(layer, "uts").hostname = value;
        break;
      case "network":
        if (!/^(container:)?[a-zA-Z0-9][a-zA-Z0-9_.-]*$/.test(value)) {
          fail(
            `option "${spelled}": invalid value "${value}": expected "none", "host", "bridge", ` +
              "container:NAME or a CNI network's name",
          );
        }
        section(layer, "net").mode = value;
        break;
      case "publish": {
        const r = parsePublish(value);
        if (typeof r === "string") fail(`option "${spelled}": ${r}: "${value}"`);
        publish.push(value);
        break;
      }
      case "publish-all":
        section(layer, "net").publishAll = on;
        break;
      case "ip":
        if (!isIPv4(value)) fail(`option "${spelled}": "${value}" is not an IPv4 address`);
        section(layer, "net").ip = value;
        break;
      case "dns":
        dns.push(value);
        break;
      case "dns-search":
        dnsSearch.push(value);
        break;
      case "add-host": {
        const why = checkAddHost(value);
        if (why) fail(`option "${spelled}": ${why}`);
        addHosts.push(value);
        break;
      }
      case "cni-config-dir":
        if (value === "") fail(`option "${spelled}" needs a directory`);
        section(layer, "net").configDir = value.startsWith("/") ? value : `${io.cwd()}/${value}`;
        break;
      case "egress-rate":
      case "ingress-rate":
      case "egress-burst":
      case "ingress-burst": {
        const burst = opt.long.endsWith("burst");
        const r = burst ? parseBurst(value) : parseRate(value);
        if (typeof r === "string") fail(`option "${spelled}": ${r}`);
        const key = opt.long.startsWith("egress") ? "egress" : "ingress";
        section(layer, "bandwidth")[burst ? `${key}Burst` : key] = value;
        break;
      }
      case "volume":
        binds.push(mountFlag(spelled, value, parseVolumeFlag));
        break;
      case "tmpfs":
        tmpfs.push(mountFlag(spelled, value, (v) => parseTmpfs(v)));
        break;
      case "mount":
        mounts.push(mountFlag(spelled, value, parseMountFlag));
        break;
      case "shm-size": {
        const n = parseSize(value);
        if (n === undefined || n === 0 || value.includes(".")) {
          fail(`option "${spelled}": invalid size "${value}": expected e.g. 64m, 1g or 67108864`);
        }
        section(layer, "mount").shmSize = value;
        break;
      }
      case "cpus":
      case "cpuset-cpus":
      case "cpuset-mems":
      case "memory":
      case "memory-swap":
      case "memory-reservation":
      case "cgroup-parent":
        section(layer, "cgroups")[CGROUP_KEYS[opt.long]] =
          opt.long === "memory-swap" && value === "-1" ? -1 : value;
        break;
      case "cpu-shares":
      case "cpu-weight":
      case "pids-limit":
      case "blkio-weight": {
        if (!/^-?\d+$/.test(value)) fail(`option "${spelled}" takes an integer, got "${value}"`);
        section(layer, "cgroups")[CGROUP_KEYS[opt.long]] = Number(value);
        break;
      }
      case "device-read-bps":
      case "device-write-bps":
      case "device-read-iops":
      case "device-write-iops":
      case "device": {
        const list = (section(layer, "cgroups")[CGROUP_KEYS[opt.long]] ??= []) as string[];
        list.push(value);
        break;
      }
      case "cap-add":
        capAdd.push(value);
        break;
      case "cap-drop":
        capDrop.push(value);
        break;
      case "read-only":
        section(layer, "readonly").enabled = on;
        break;
      case "security-opt":
        securityOpt(layer, spelled, value, io);
        break;
      case "name":
        // Docker's rule: the name becomes a directory of micro's (state, cgroup).
        if (!/^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$/.test(value)) {
          fail(
            `option "${spelled}": invalid name "${value}"`,
            "a name is letters, digits, _ . and -, starting with a letter or digit",
          );
        }
        req.name = value;
        break;
      case "json":
        req.json = on;
        break;
      case "rm":
        req.rm = on;
        break;
      case "detach":
        req.detach = on;
        break;
      case "log-opt":
        (req.logOpts ??= []).push(value);
        break;
      case "restart":
        req.restart = value;
        break;
      case "help":
        req.help = on;
        break;
      case "pull":
        if (value !== "missing" && value !== "always" && value !== "never") {
          fail(
            `option "${spelled}": invalid value "${value}": expected "missing", "always" or "never"`,
          );
        }
        req.pull = value;
        break;
      case "platform":
        if (!/^[a-z0-9_]+\/[a-z0-9_]+(\/[a-z0-9_]+)?$/.test(value)) {
          fail(`option "${spelled}": expected OS/ARCH[/VARIANT], got "${value}"`);
        }
        req.platform = value;
        break;
      case "entrypoint":
        req.entrypoint = value;
        break;
      case "root":
        if (value === "") fail(`option "${spelled}" needs a directory`);
        req.root = value.startsWith("/") ? value : `${io.cwd()}/${value}`;
        break;
      case "privileged":
        privileged = on;
        break;
      case "pid":
      case "ipc":
      case "uts":
      case "userns":
        namespaceMode(layer, spelled, opt.long, value);
        break;
      case "sysctl": {
        const eq = value.indexOf("=");
        const key = eq < 0 ? "" : value.slice(0, eq);
        if (!/^[a-z0-9_][a-z0-9_.\/-]*$/i.test(key)) {
          fail(`option "${spelled}": expected KEY=VALUE, got "${value}"`);
        }
        // Docker spells the separators as dots or slashes; the profile keeps dots.
        const values = (section(layer, "sysctl").values ??= {}) as Record<string, string>;
        values[key.replaceAll("/", ".")] = value.slice(eq + 1);
        break;
      }
      case "oom-kill-disable":
        section(layer, "cgroups").oomKillDisable = on;
        break;
      case "oom-score-adj":
        if (!/^-?\d+$/.test(value) || Math.abs(Number(value)) > 1000) {
          fail(`option "${spelled}" takes an integer from -1000 to 1000, got "${value}"`);
        }
        process().oomScoreAdj = Number(value);
        break;
      case "stop-signal": {
        if (parseSignal(value) === undefined) {
          fail(
            `option "${spelled}": unknown signal "${value}"`,
            "give a name (SIGTERM, TERM, SIGRTMIN+3) or a number from 1 to 64",
          );
        }
        req.stopSignal = value;
        break;
      }
      case "stop-timeout":
        req.stopTimeout = parseStopTimeout(value) ??
          fail(`option "${spelled}" takes a number of seconds (-1: never kill), got "${value}"`);
        break;
      case "label": {
        const [k, v] = labelEntry(value, `option "${spelled}"`, HELP_HINT);
        flagLabels[k] = v;
        break;
      }
      case "label-file":
        Object.assign(fileLabels, parseLabelFile(value, io));
        break;
      case "cidfile":
        if (value === "") fail(`option "${spelled}" needs a file name`);
        req.cidfile = value.startsWith("/") ? value : `${io.cwd()}/${value}`;
        break;
      case "attach": {
        const stream = value.toLowerCase();
        if (stream !== "stdin" && stream !== "stdout" && stream !== "stderr") {
          fail(
            `option "${spelled}": invalid stream "${value}": expected "stdin", "stdout" or "stderr"`,
          );
        }
        req.attach ??= { stdin: false, stdout: false, stderr: false };
        req.attach[stream] = true;
        break;
      }
    }
  }

  // Docker reads --env-file first, then -e, whatever their order on the command line.
  const env = { ...fileEnv, ...flagEnv };
  if (Object.keys(env).length > 0) process().env = env;
  if (groups.length > 0) process().groups = groups;
  if (Object.keys(rlimits).length > 0) process().rlimits = rlimits;
  if (binds.length > 0) section(layer, "mount").binds = binds;
  if (tmpfs.length > 0) section(layer, "mount").tmpfs = tmpfs;
  if (mounts.length > 0) section(layer, "mount").mounts = mounts;
  if (capAdd.length > 0) section(layer, "caps").add = capAdd;
  if (capDrop.length > 0) section(layer, "caps").drop = capDrop;
  if (publish.length > 0) section(layer, "net").publish = publish;
  if (dns.length > 0) section(layer, "net").dns = dns;
  if (dnsSearch.length > 0) section(layer, "net").dnsSearch = dnsSearch;
  if (addHosts.length > 0) section(layer, "net").addHosts = addHosts;
  // As Docker: --label-file first, then --label.
  const labels = { ...fileLabels, ...flagLabels };
  if (Object.keys(labels).length > 0) req.labels = labels;
  if (privileged) applyPrivileged(layer);
  // As Docker: with -a, stdin is relayed only when named (and -i keeps it open).
  if (req.attach && !req.attach.stdin) req.stdin = false;
  const uts = layer.uts as { enabled?: boolean; hostname?: string } | undefined;
  if (uts?.enabled === false && uts.hostname !== undefined) {
    fail(`options "--uts host" and "--hostname" conflict: the host's hostname is shared`);
  }

  if (!req.help && req.image === null && req.args.length === 0) {
    fail(`${command}: no command given`, `usage: micro ${command} [OPTIONS] [IMAGE] [--] COMMAND`);
  }
  return req;
}
