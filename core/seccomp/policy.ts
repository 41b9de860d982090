/**
 * The seccomp policy model. Its internal form is the OCI runtime spec's `linux.seccomp`, so an
 * OCI bundle's policy needs no conversion; Docker's profile format is converted into it for a
 * given arch and capability set (`parseDockerSeccomp`).
 */
import { errnoByName } from "../errors.ts";
import { type Arch, GO_ARCH, knownOnSomeArch, SCMP_ARCH, syscallNumber } from "./arch.ts";

export const ACTIONS = [
  "SCMP_ACT_ALLOW",
  "SCMP_ACT_ERRNO",
  "SCMP_ACT_KILL",
  "SCMP_ACT_KILL_THREAD",
  "SCMP_ACT_KILL_PROCESS",
  "SCMP_ACT_TRAP",
  "SCMP_ACT_LOG",
  // Only with `listenerPath` (micro's OCI runtime sends the listener there).
  "SCMP_ACT_NOTIFY",
] as const;
export type Action = typeof ACTIONS[number];

export const OPS = [
  "SCMP_CMP_EQ",
  "SCMP_CMP_NE",
  "SCMP_CMP_LT",
  "SCMP_CMP_LE",
  "SCMP_CMP_GT",
  "SCMP_CMP_GE",
  "SCMP_CMP_MASKED_EQ",
] as const;
export type CmpOp = typeof OPS[number];

/** seccomp(2) filter flags a policy may ask for (OCI `flags`). */
export const FILTER_FLAGS = [
  "SECCOMP_FILTER_FLAG_TSYNC",
  "SECCOMP_FILTER_FLAG_LOG",
  "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
  "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV",
] as const;
export type FilterFlag = typeof FILTER_FLAGS[number];

/** The libseccomp arch names OCI `architectures` may list. */
export const SCMP_ARCHES = [
  "SCMP_ARCH_X86",
  "SCMP_ARCH_X86_64",
  "SCMP_ARCH_X32",
  "SCMP_ARCH_ARM",
  "SCMP_ARCH_AARCH64",
  "SCMP_ARCH_MIPS",
  "SCMP_ARCH_MIPS64",
  "SCMP_ARCH_MIPS64N32",
  "SCMP_ARCH_MIPSEL",
  "SCMP_ARCH_MIPSEL64",
  "SCMP_ARCH_MIPSEL64N32",
  "SCMP_ARCH_PPC",
  "SCMP_ARCH_PPC64",
  "SCMP_ARCH_PPC64LE",
  "SCMP_ARCH_S390",
  "SCMP_ARCH_S390X",
  "SCMP_ARCH_PARISC",
  "SCMP_ARCH_PARISC64",
  "SCMP_ARCH_RISCV64",
  "SCMP_ARCH_LOONGARCH64",
  "SCMP_ARCH_M68K",
  "SCMP_ARCH_SH",
  "SCMP_ARCH_SHEB",
] as const;

/**
 * One argument condition. Values are unsigned 64-bit: a number (a safe integer) or a bigint
 * for values beyond 2^53. MASKED_EQ means `(arg & value) == valueTwo`.
 */
export interface ArgCondition {
  index: number;
  value: number | bigint;
  valueTwo?: number | bigint;
  op: CmpOp;
}

export interface SyscallRule {
  names: string[];
  action: Action;
  /** The errno of SCMP_ACT_ERRNO (EPERM when absent, as in runc). */
  errnoRet?: number;
  /** All must hold (AND). */
  args?: ArgCondition[];
}

/** OCI `linux.seccomp`. Rules are tried in order; the first that matches a call decides it. */
export interface SeccompPolicy {
  defaultAction: Action;
  defaultErrnoRet?: number;
  /** Informational: micro compiles for the native arch only and kills any other arch. */
  architectures?: string[];
  flags?: FilterFlag[];
  syscalls: SyscallRule[];
  /**
   * The unix socket the filter's listener fd goes to, with the container process state
   * (OCI: the SCMP_ACT_NOTIFY rules' supervisor), and the state's `metadata`.
   */
  listenerPath?: string;
  listenerMetadata?: string;
}

/**
 * The calls the container's process makes between loading a filter with a listener and
 * knowing the listener is at `listenerPath`: sending the fd to micro, reading its answer.
 * Notified, they would wait for a supervisor that cannot have the fd yet (runc refuses
 * `write` for the same reason).
 */
export const NOTIFY_REFUSED = ["sendmsg", "read"];

export const EPERM = 1;
export const ENOSYS = 38;
/** SECCOMP_RET_DATA holds 16 bits, but the kernel only returns -errno up to MAX_ERRNO. */
export const MAX_ERRNO = 4095;
const U64_MAX = (1n << 64n) - 1n;
const NAME = /^[a-z_][a-z0-9_]*$/;

export class SeccompError extends Error {
  constructor(readonly problems: string[]) {
    super(problems.length === 1 ? problems[0] : `${problems[0]} (and ${problems.length - 1} more)`);
    this.name = "SeccompError";
  }
}

/** An argument value as an unsigned 64-bit bigint (validated values only). */
export function u64(v: number | bigint): bigint {
  return BigInt(v);
}

const isObj = (v: unknown): v is Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v);
const q = (v: unknown) => JSON.stringify(typeof v === "bigint" ? String(v) : v);

function checkU64(v: unknown, path: string, out: string[]) {
  if (typeof v === "bigint") {
    if (v < 0n || v > U64_MAX) out.push(`${path}: ${v} is outside 0..2^64-1`);
  } else if (typeof v === "number") {
    if (!Number.isInteger(v) || v < 0) out.push(`${path}: ${v} is not an unsigned integer`);
    else if (!Number.isSafeInteger(v)) {
      out.push(`${path}: ${v} is not exact as a number; pass a bigint (or JSON text)`);
    }
  } else out.push(`${path}: must be an unsigned integer, got ${q(v)}`);
}

function checkErrno(v: unknown, path: string, out: string[]) {
  if (typeof v !== "number" || !Number.isInteger(v) || v < 0 || v > MAX_ERRNO) {
    out.push(`${path}: must be an errno from 0 to ${MAX_ERRNO}, got ${q(v)}`);
  }
}

const RULE_KEYS = new Set(["names", "action", "errnoRet", "args", "comment"]);
const POLICY_KEYS = new Set([
  "defaultAction",
  "defaultErrnoRet",
  "architectures",
  "flags",
  "syscalls",
  "listenerPath",
  "listenerMetadata",
]);

/**
 * Every problem with a policy, one line each with its path. Syscall names are only checked for
 * syntax: a name unknown to one arch's table is skipped at compile time, as libseccomp and runc
 * do (see `unknownSyscalls`).
 */
export function validatePolicy(p: unknown): string[] {
  const out: string[] = [];
  if (!isObj(p)) return ["seccomp: the policy must be an object"];
  const many = tooMany(p.syscalls, "seccomp.syscalls");
  if (many) return [many];
  for (const k of Object.keys(p)) {
    if (!POLICY_KEYS.has(k)) out.push(`seccomp.${k}: unknown key`);
  }
  if (!(ACTIONS as readonly unknown[]).includes(p.defaultAction)) {
    out.push(`seccomp.defaultAction: unknown action ${q(p.defaultAction)}`);
  } else if (p.defaultAction === "SCMP_ACT_NOTIFY") {
    out.push("seccomp.defaultAction: SCMP_ACT_NOTIFY cannot be the default (runc's rule too)");
  }
  for (const k of ["listenerPath", "listenerMetadata"]) {
    if (p[k] !== undefined && typeof p[k] !== "string") out.push(`seccomp.${k}: must be a string`);
  }
  if (typeof p.listenerPath === "string" && p.listenerPath && !p.listenerPath.startsWith("/")) {
    out.push(`seccomp.listenerPath: ${q(p.listenerPath)} is not an absolute path`);
  }
  const notify = Array.isArray(p.syscalls) &&
    p.syscalls.some((r) => isObj(r) && r.action === "SCMP_ACT_NOTIFY");
  if (notify && !p.listenerPath) {
    out.push("seccomp.listenerPath: SCMP_ACT_NOTIFY needs a listenerPath to send the fd to");
  }
  if (p.defaultErrnoRet !== undefined) {
    checkErrno(p.defaultErrnoRet, "seccomp.defaultErrnoRet", out);
    if (p.defaultAction !== "SCMP_ACT_ERRNO") {
      out.push(`seccomp.defaultErrnoRet: only meaningful with SCMP_ACT_ERRNO`);
    }
  }
  if (p.architectures !== undefined) {
    if (!Array.isArray(p.architectures)) out.push(`seccomp.architectures: must be a list`);
    else {
      p.architectures.forEach((a, i) => {
        if (!(SCMP_ARCHES as readonly unknown[]).includes(a)) {
          out.push(`seccomp.architectures[${i}]: unknown architecture ${q(a)}`);
        }
      });
    }
  }
  if (p.flags !== undefined) {
    if (!Array.isArray(p.flags)) out.push(`seccomp.flags: must be a list`);
    else {
      p.flags.forEach((f, i) => {
        if (!(FILTER_FLAGS as readonly unknown[]).includes(f)) {
          out.push(`seccomp.flags[${i}]: unknown flag ${q(f)}`);
        }
      });
    }
  }
  if (p.syscalls === undefined) return out;
  if (!Array.isArray(p.syscalls)) return [...out, `seccomp.syscalls: must be a list`];
  p.syscalls.forEach((r, i) => {
    const at = `seccomp.syscalls[${i}]`;
    if (!isObj(r)) return void out.push(`${at}: must be an object`);
    for (const k of Object.keys(r)) {
      if (!RULE_KEYS.has(k)) out.push(`${at}.${k}: unknown key`);
    }
    if (r.action === "SCMP_ACT_NOTIFY" && Array.isArray(r.names)) {
      for (const n of r.names.filter((n) => NOTIFY_REFUSED.includes(n as string))) {
        out.push(
          `${at}: SCMP_ACT_NOTIFY for ${n}: micro's set-up needs ${n} before the listener ` +
            "has the fd",
        );
      }
    }
    if (!Array.isArray(r.names) || r.names.length === 0) {
      out.push(`${at}.names: must be a non-empty list of syscall names`);
    } else {
      r.names.forEach((n, j) => {
        if (typeof n !== "string" || !NAME.test(n)) {
          out.push(`${at}.names[${j}]: ${q(n)} is not a syscall name`);
        }
      });
    }
    if (r.action === "SCMP_ACT_TRACE") {
      out.push(`${at}.action: ${r.action} is not supported`);
    } else if (!(ACTIONS as readonly unknown[]).includes(r.action)) {
      out.push(`${at}.action: unknown action ${q(r.action)}`);
    }
    if (r.errnoRet !== undefined) {
      checkErrno(r.errnoRet, `${at}.errnoRet`, out);
      if (r.action !== "SCMP_ACT_ERRNO") {
        out.push(`${at}.errnoRet: only meaningful with SCMP_ACT_ERRNO`);
      }
    }
    if (r.args === undefined || r.args === null) return;
    if (!Array.isArray(r.args)) return void out.push(`${at}.args: must be a list`);
    r.args.forEach((a, j) => {
      const ap = `${at}.args[${j}]`;
      if (!isObj(a)) return void out.push(`${ap}: must be an object`);
      for (const k of Object.keys(a)) {
        if (!["index", "value", "valueTwo", "op"].includes(k)) out.push(`${ap}.${k}: unknown key`);
      }
      if (typeof a.index !== "number" || !Number.isInteger(a.index) || a.index < 0 || a.index > 5) {
        out.push(`${ap}.index: must be an argument index from 0 to 5, got ${q(a.index)}`);
      }
      if (!(OPS as readonly unknown[]).includes(a.op)) out.push(`${ap}.op: unknown op ${q(a.op)}`);
      checkU64(a.value, `${ap}.value`, out);
      if (a.valueTwo !== undefined) checkU64(a.valueTwo, `${ap}.valueTwo`, out);
    });
  });
  return out;
}

/** Throws a SeccompError listing every problem, or returns the policy typed. */
export function assertPolicy(p: unknown): SeccompPolicy {
  const problems = validatePolicy(p);
  if (problems.length) throw new SeccompError(problems);
  const policy = p as SeccompPolicy;
  return { ...policy, syscalls: policy.syscalls ?? [] };
}

/** The names a policy mentions that `arch` has no number for (runc skips them; so do we). */
export function unknownSyscalls(policy: SeccompPolicy, arch: Arch): string[] {
  const seen = new Set<string>();
  for (const r of policy.syscalls) {
    for (const n of r.names) if (syscallNumber(arch, n) === undefined) seen.add(n);
  }
  return [...seen].sort();
}

/** Names no arch we know has (likely typos; worth a warning, not an error). */
export function unheardOfSyscalls(policy: SeccompPolicy): string[] {
  const seen = new Set<string>();
  for (const r of policy.syscalls) for (const n of r.names) if (!knownOnSomeArch(n)) seen.add(n);
  return [...seen].sort();
}

/**
 * Bounds on a policy, checked before any per-rule work so that a hostile file is refused in
 * milliseconds: Docker's default profile has about 60 rules, 400 names and a depth of 6, and
 * the kernel takes at most 4096 instructions anyway.
 */
export const MAX_JSON_DEPTH = 32;
export const MAX_RULES = 4096;
/** Syscall names and argument conditions, over all rules together. */
export const MAX_NAMES = 16384;
export const MAX_ARGS = 4096;

/** The first place `text`'s JSON nesting passes `max` (outside strings), or -1. */
export function jsonTooDeepAt(text: string, max: number): number {
  let depth = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22) { // a string: skip to its closing quote
      for (i++; i < text.length && text.charCodeAt(i) !== 0x22; i++) {
        if (text.charCodeAt(i) === 0x5c) i++;
      }
    } else if (c === 0x5b || c === 0x7b) {
      if (++depth > max) return i;
    } else if (c === 0x5d || c === 0x7d) depth--;
  }
  return -1;
}

/** Why the rules list `rules` is too large to look at, or undefined. */
function tooMany(rules: unknown, at: string): string | undefined {
  if (!Array.isArray(rules)) return undefined;
  if (rules.length > MAX_RULES) {
    return `${at}: ${rules.length} rules, more than the ${MAX_RULES} micro takes`;
  }
  let names = 0;
  let args = 0;
  for (const r of rules) {
    if (!isObj(r)) continue;
    if (Array.isArray(r.names)) names += r.names.length;
    if (Array.isArray(r.args)) args += r.args.length;
  }
  if (names > MAX_NAMES) {
    return `${at}: ${names} syscall names, more than the ${MAX_NAMES} micro takes`;
  }
  if (args > MAX_ARGS) {
    return `${at}: ${args} argument conditions, more than the ${MAX_ARGS} micro takes`;
  }
  return undefined;
}

/**
 * JSON.parse that keeps integers beyond 2^53 exact as bigints (argument values are u64), using
 * the reviver's source text. Nesting deeper than MAX_JSON_DEPTH is refused before parsing.
 */
export function parseJsonU64(text: string): unknown {
  if (jsonTooDeepAt(text, MAX_JSON_DEPTH) >= 0) {
    throw new SeccompError([`seccomp: nested deeper than ${MAX_JSON_DEPTH} levels`]);
  }
  type Reviver = (key: string, value: unknown, context?: { source?: string }) => unknown;
  const reviver: Reviver = (_k, v, ctx) => {
    if (typeof v === "number" && !Number.isSafeInteger(v) && ctx?.source) {
      const src = ctx.source;
      if (/^-?\d+$/.test(src)) return BigInt(src);
    }
    return v;
  };
  try {
    // The reviver costs a call per value; only numbers of 16 digits or more can need it.
    return /\d{16}/.test(text)
      ? JSON.parse(text, reviver as (k: string, v: unknown) => unknown)
      : JSON.parse(text);
  } catch (e) {
    throw new SeccompError([`seccomp: not valid JSON: ${(e as Error).message}`]);
  }
}

/** An OCI `linux.seccomp` object (or its JSON text) → the validated policy. */
export function parseOciSeccomp(json: string | unknown): SeccompPolicy {
  return assertPolicy(typeof json === "string" ? parseJsonU64(json) : json);
}

/** `CAP_SYS_ADMIN`, `sys_admin`, `SYS_ADMIN` → `CAP_SYS_ADMIN`. */
export function capName(cap: string): string {
  const up = cap.trim().toUpperCase();
  return up.startsWith("CAP_") ? up : `CAP_${up}`;
}

/** a.b.c version ≥ min.major.minor (missing parts are 0). */
function versionAtLeast(version: string, min: string): boolean {
  const a = version.split(/[.-]/).map((x) => parseInt(x, 10) || 0);
  const b = min.split(/[.-]/).map((x) => parseInt(x, 10) || 0);
  for (let i = 0; i < Math.max(a.length, b.length, 2); i++) {
    if ((a[i] ?? 0) !== (b[i] ?? 0)) return (a[i] ?? 0) > (b[i] ?? 0);
  }
  return true;
}

/**
 * containers-common's profiles (podman) spell errnos by name (`"errno": "EPERM"`) beside or
 * instead of Docker's numeric `errnoRet`; both are taken.
 */
function symbolicErrno(v: unknown, at: string, problems: string[]): number | undefined {
  const n = typeof v === "string" ? errnoByName(v) : undefined;
  if (n === undefined) problems.push(`${at}: unknown errno ${JSON.stringify(v)}`);
  return n;
}

export interface DockerOptions {
  arch: Arch;
  /** The container's capabilities (bounding set), any case, with or without `CAP_`. */
  caps: string[];
  /** The host kernel's release for `minKernel` filters; absent means "new enough for all". */
  kernel?: string;
}

const DOCKER_KEYS = new Set([
  "defaultAction",
  "defaultErrnoRet",
  "defaultErrno",
  "architectures",
  "archMap",
  "syscalls",
  "flags",
]);
const DOCKER_RULE_KEYS = new Set([
  "name",
  "names",
  "action",
  "errnoRet",
  "errno",
  "args",
  "comment",
  "includes",
  "excludes",
]);
const FILTER_KEYS = new Set(["arches", "caps", "minKernel"]);

/**
 * A Docker seccomp profile (JSON text or object) → the OCI form for one arch and capability
 * set, as moby does it: a rule is dropped when `excludes` names the arch, or a cap the
 * container has, or a kernel at most as new as the host's; and unless `includes` names the
 * arch (when it lists arches), every cap it lists is held, and the kernel is new enough.
 * `archMap` becomes `architectures`: the native arch and its sub-architectures.
 */
export function parseDockerSeccomp(json: string | unknown, opts: DockerOptions): SeccompPolicy {
  const doc = typeof json === "string" ? parseJsonU64(json) : json;
  const problems: string[] = [];
  if (!isObj(doc)) throw new SeccompError(["seccomp profile: must be a JSON object"]);
  const many = tooMany(doc.syscalls, "seccomp profile.syscalls");
  if (many) throw new SeccompError([many]);
  for (const k of Object.keys(doc)) {
    if (!DOCKER_KEYS.has(k)) problems.push(`seccomp profile.${k}: unknown key`);
  }
  const caps = new Set(opts.caps.map(capName));
  const goArch = GO_ARCH[opts.arch];
  const kernelOk = (min: unknown) =>
    opts.kernel === undefined || versionAtLeast(opts.kernel, String(min));

  const out: Record<string, unknown> = { defaultAction: doc.defaultAction, syscalls: [] };
  if (doc.defaultErrnoRet !== undefined) out.defaultErrnoRet = doc.defaultErrnoRet;
  else if (doc.defaultErrno !== undefined) {
    out.defaultErrnoRet = symbolicErrno(doc.defaultErrno, "seccomp profile.defaultErrno", problems);
  }
  if (doc.flags !== undefined) out.flags = doc.flags;
  if (doc.architectures !== undefined && doc.archMap !== undefined) {
    problems.push(`seccomp profile: use either "architectures" or "archMap", not both`);
  }
  if (doc.architectures !== undefined) out.architectures = doc.architectures;
  if (Array.isArray(doc.archMap)) {
    for (const m of doc.archMap) {
      if (isObj(m) && m.architecture === SCMP_ARCH[opts.arch]) {
        const subs = Array.isArray(m.subArchitectures) ? m.subArchitectures : [];
        out.architectures = [m.architecture, ...subs];
      }
    }
  } else if (doc.archMap !== undefined && doc.archMap !== null) {
    problems.push(`seccomp profile.archMap: must be a list`);
  }

  const rules = doc.syscalls ?? [];
  if (!Array.isArray(rules)) problems.push(`seccomp profile.syscalls: must be a list`);
  else {
    rules.forEach((r, i) => {
      const at = `seccomp profile.syscalls[${i}]`;
      if (!isObj(r)) return void problems.push(`${at}: must be an object`);
      for (const k of Object.keys(r)) {
        if (!DOCKER_RULE_KEYS.has(k)) problems.push(`${at}.${k}: unknown key`);
      }
      for (const f of ["includes", "excludes"] as const) {
        const v = r[f];
        if (v === undefined || v === null) continue;
        if (!isObj(v)) problems.push(`${at}.${f}: must be an object`);
        else {
          for (const k of Object.keys(v)) {
            if (!FILTER_KEYS.has(k)) problems.push(`${at}.${f}.${k}: unknown key`);
          }
        }
      }
      let names = r.names;
      if (r.name !== undefined) {
        if (Array.isArray(r.names) && r.names.length) {
          return void problems.push(`${at}: use either "name" or "names", not both`);
        }
        names = [r.name];
      }
      const ex = isObj(r.excludes) ? r.excludes : {};
      const inc = isObj(r.includes) ? r.includes : {};
      const list = (v: unknown) => (Array.isArray(v) ? v.map(String) : []);
      if (list(ex.arches).includes(goArch)) return;
      if (list(ex.caps).some((c) => caps.has(capName(c)))) return;
      if (ex.minKernel !== undefined && ex.minKernel !== null && kernelOk(ex.minKernel)) return;
      if (list(inc.arches).length && !list(inc.arches).includes(goArch)) return;
      if (!list(inc.caps).every((c) => caps.has(capName(c)))) return;
      if (inc.minKernel !== undefined && inc.minKernel !== null && !kernelOk(inc.minKernel)) return;
      const rule: Record<string, unknown> = { names, action: r.action };
      if (r.errnoRet !== undefined && r.errnoRet !== null) rule.errnoRet = r.errnoRet;
      else if (r.errno !== undefined && r.errno !== null && r.errno !== "") {
        rule.errnoRet = symbolicErrno(r.errno, `${at}.errno`, problems);
      }
      if (Array.isArray(r.args) && r.args.length) {
        rule.args = r.args.map((a) => {
          if (!isObj(a)) return a;
          const c: Record<string, unknown> = { index: a.index, value: a.value, op: a.op };
          if (a.valueTwo !== undefined && a.valueTwo !== 0) c.valueTwo = a.valueTwo;
          return c;
        });
      } else if (r.args !== undefined && r.args !== null && !Array.isArray(r.args)) {
        rule.args = r.args;
      }
      (out.syscalls as unknown[]).push(rule);
    });
  }
  if (problems.length) throw new SeccompError(problems);
  return assertPolicy(out);
}
