/**
 * seccomp: a classic BPF filter over system calls, compiled here in the parent (a pure
 * function of the policy and the architecture) and loaded in the child: last, just before
 * exec, under no_new_privs; without it, first in the credentials phase while the process
 * still holds CAP_SYS_ADMIN, as runc does. The built-in `default` policy gives what
 * Docker's default profile protects; `file` takes an OCI `linux.seccomp` or a Docker
 * seccomp JSON file (`--security-opt seccomp=FILE`); `--security-opt seccomp=unconfined`
 * disables the plugin.
 */
import { CAPS } from "../core/caps.ts";
import { MicroError } from "../core/errors.ts";
import { type Op, op } from "../core/ops.ts";
import type { HostInfo, Plugin } from "../core/plugin.ts";
import type { Spec } from "../core/spec.ts";
import { knownOnSomeArch } from "../core/seccomp/arch.ts";
import {
  compileProgram,
  defaultPolicy,
  filterFlags,
  parseDockerSeccomp,
  parseJsonU64,
  parseOciSeccomp,
  SeccompError,
  type SeccompPolicy,
} from "../core/seccomp/mod.ts";

export interface SeccompOptions {
  /** An OCI or Docker seccomp JSON file; the built-in default policy when absent. */
  file?: string;
  /** System calls refused (EPERM) on top of the policy, whatever it allows. */
  deny?: string[];
}

/** Docker's format has `archMap` or per-rule `includes`/`excludes`; OCI's has neither. */
function isDocker(json: Record<string, unknown>): boolean {
  const rules = Array.isArray(json.syscalls) ? json.syscalls as Record<string, unknown>[] : [];
  return "archMap" in json || rules.some((r) => "includes" in r || "excludes" in r);
}

/** The capabilities the process will hold, which Docker-style policies depend on. */
function processCaps(spec: Spec): string[] {
  return spec.process.capabilities?.bounding ?? [...CAPS];
}

/** Compiled once per spec: check() finds the errors, plan() uses the program. */
const compiled = new WeakMap<Spec, ReturnType<typeof compileProgram> & { policy: SeccompPolicy }>();

/** The policy this spec asks for, or an error naming the file and what is wrong. */
export function seccompPolicy(spec: Spec, host: HostInfo): SeccompPolicy {
  const policy = basePolicy(spec, host);
  const deny = spec.micro.seccompDeny ?? [];
  // The first rule that matches a call wins, so the refusals go first.
  return deny.length
    ? {
      ...policy,
      syscalls: [{ names: deny, action: "SCMP_ACT_ERRNO", errnoRet: 1 }, ...policy.syscalls],
    }
    : policy;
}

function basePolicy(spec: Spec, host: HostInfo): SeccompPolicy {
  const file = spec.micro.seccompFile;
  if (!file) return defaultPolicy(processCaps(spec));
  const text = host.files[file];
  if (text === undefined) {
    const why = host.fileErrors?.[file];
    throw new MicroError(`seccomp profile "${file}" cannot be read${why ? `: ${why}` : ""}`, {
      phase: "check",
      plugin: "seccomp",
      hint: "give an existing OCI or Docker seccomp JSON file",
    });
  }
  try {
    // Parsed once, bounded, with 64-bit argument values kept exact.
    const json = parseJsonU64(text) as Record<string, unknown>;
    if (json === null || typeof json !== "object") return parseOciSeccomp(json);
    if (isDocker(json)) {
      return parseDockerSeccomp(json, { arch: host.arch, caps: processCaps(spec) });
    }
    const linux = json.linux as { seccomp?: unknown } | undefined;
    return parseOciSeccomp(linux?.seccomp ?? json);
  } catch (e) {
    throw seccompError(file, e);
  }
}

function seccompError(file: string, e: unknown): MicroError {
  // The first few problems: a file with 100,000 bad rules still gets one readable line.
  const why = e instanceof SeccompError
    ? e.problems.slice(0, 3).join("; ") +
      (e.problems.length > 3 ? ` (and ${e.problems.length - 3} more)` : "")
    : (e as Error).message;
  return new MicroError(`seccomp profile "${file}": ${why}`, { phase: "check", plugin: "seccomp" });
}

/** The compiled program, or an error for a policy the kernel could not take. */
function program(spec: Spec, host: HostInfo) {
  let c = compiled.get(spec);
  if (!c) {
    const policy = seccompPolicy(spec, host);
    try {
      c = { ...compileProgram(policy, host.arch), policy };
    } catch (e) {
      throw seccompError(spec.micro.seccompFile ?? "default", e);
    }
    compiled.set(spec, c);
  }
  return c;
}

function base64(bytes: Uint8Array): string {
  let s = "";
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s);
}

export const seccomp: Plugin<SeccompOptions> = {
  name: "seccomp",
  description: "system call filter: Docker's default protection, or an OCI/Docker JSON policy",
  schema: {
    type: "object",
    fields: {
      file: {
        type: "string",
        doc: "an OCI or Docker seccomp JSON file (absolute path)",
        check: (v) => v.startsWith("/") ? undefined : "must be an absolute path",
      },
      deny: {
        type: "list",
        doc: "system calls refused with EPERM whatever the policy allows",
        items: {
          type: "string",
          check: (v) => knownOnSomeArch(v) ? undefined : `no system call is named "${v}"`,
        },
      },
    },
  },
  configure(o, spec) {
    if (o.file) spec.micro.seccompFile = o.file;
    if (o.deny?.length) spec.micro.seccompDeny = [...o.deny];
    spec.micro.seccomp = true;
  },
  check(spec, host) {
    try {
      program(spec, host);
      return [];
    } catch (e) {
      if (e instanceof MicroError) return [e];
      throw e;
    }
  },
  plan(spec: Spec, host: HostInfo): Op[] {
    const { policy, ...compiled } = program(spec, host);
    return [op(spec.process.noNewPrivileges ? "restrict" : "credentials", "seccomp", "seccomp", {
      arch: host.arch,
      instructions: compiled.length,
      policy: spec.micro.seccompFile ?? "default",
      flags: filterFlags(policy),
      program: base64(compiled.program),
    })];
  },
};
