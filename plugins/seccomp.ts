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
import { now, span } from "../core/trace.ts";
import type { Arch } from "../core/seccomp/arch.ts";
import { knownOnSomeArch } from "../core/seccomp/names.ts";
import { PRECOMPILED } from "../core/seccomp/_precompiled.ts";
import type { SeccompPolicy } from "../core/seccomp/mod.ts";

type Compiler = typeof import("../core/seccomp/mod.ts");
/**
 * The compiler and the policy parsers, loaded only for a program that is not precompiled (a
 * policy file, a capability set no built-in profile has): about 35 kB a run with a
 * built-in profile does not load.
 */
let loaded: Compiler | undefined;

/** Loads the seccomp compiler (every caller that may compile awaits it first). */
export async function loadSeccompCompiler(): Promise<void> {
  loaded ??= await import("../core/seccomp/mod.ts");
}

function compiler(): Compiler {
  if (!loaded) throw new Error("internal: the seccomp compiler was not loaded");
  return loaded;
}

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

/** A compiled program as the plan carries it. */
export interface Program {
  /** struct sock_filter[] in base64. */
  program: string;
  instructions: number;
  /** seccomp(2) flags. */
  flags: number;
  /** Where the listener of SCMP_ACT_NOTIFY rules goes (OCI listenerPath), and its metadata. */
  listener?: { path: string; metadata: string };
}

/** Compiled (or found precompiled) once per spec: check() finds the errors, plan() uses it. */
const compiled = new WeakMap<Spec, Program>();

/**
 * The key of this spec's program in the precompiled table: every input the compiler's
 * output depends on (the default policy is a function of the capabilities; `deny` adds a
 * rule; the syscall table is the architecture's). Undefined with a policy file, whose
 * program is always compiled at run time.
 */
export function seccompKey(spec: Spec, arch: Arch): string | undefined {
  if (spec.micro.seccompFile) return undefined;
  const deny = spec.micro.seccompDeny ?? [];
  return `default ${arch} caps=${processCaps(spec).join(",")} deny=${deny.join(",")}`;
}

/** The default policy's program for this spec, compiled now (tools/gen_seccomp.ts). */
export function compileFresh(spec: Spec, arch: Arch): Program {
  const policy = seccompPolicy(spec, { arch, files: {} } as unknown as HostInfo);
  const { compileProgram, filterFlags } = compiler();
  const c = compileProgram(policy, arch);
  return { program: base64(c.program), instructions: c.length, flags: filterFlags(policy) };
}

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
  const { defaultPolicy, parseDockerSeccomp, parseJsonU64, parseOciSeccomp } = compiler();
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
  const why = loaded && e instanceof loaded.SeccompError
    ? e.problems.slice(0, 3).join("; ") +
      (e.problems.length > 3 ? ` (and ${e.problems.length - 3} more)` : "")
    : (e as Error).message;
  return new MicroError(`seccomp profile "${file}": ${why}`, { phase: "check", plugin: "seccomp" });
}

/** The compiled program, or an error for a policy the kernel could not take. */
function program(spec: Spec, host: HostInfo): Program {
  let c = compiled.get(spec);
  if (c) return c;
  const key = seccompKey(spec, host.arch);
  c = key === undefined ? undefined : PRECOMPILED[key];
  if (!c) {
    const t = now();
    const policy = seccompPolicy(spec, host);
    const { compileProgram, filterFlags, SECCOMP_FILTER_FLAG_NEW_LISTENER, SeccompError } =
      compiler();
    try {
      const p = compileProgram(policy, host.arch);
      c = { program: base64(p.program), instructions: p.length, flags: filterFlags(policy) };
      if (c.flags & SECCOMP_FILTER_FLAG_NEW_LISTENER) {
        // Only micro's OCI runtime has a caller's agent to hand the listener to.
        if (!spec.micro.oci) {
          throw new SeccompError([
            "SCMP_ACT_NOTIFY: only the OCI runtime (micro oci create, run) sends the listener",
          ]);
        }
        c.listener = { path: policy.listenerPath!, metadata: policy.listenerMetadata ?? "" };
      }
    } catch (e) {
      throw seccompError(spec.micro.seccompFile ?? "default", e);
    }
    span("seccomp compile", t);
  }
  compiled.set(spec, c);
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
  async load(spec, host) {
    const key = seccompKey(spec, host.arch);
    if (key === undefined || !PRECOMPILED[key]) await loadSeccompCompiler();
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
    const c = program(spec, host);
    return [op(spec.process.noNewPrivileges ? "restrict" : "credentials", "seccomp", "seccomp", {
      arch: host.arch,
      instructions: c.instructions,
      policy: spec.micro.seccompFile ?? "default",
      flags: c.flags,
      program: c.program,
      ...(c.listener ? { listener: { ...c.listener } } : {}),
    })];
  },
};
