/** The architectures the seccomp compiler targets: syscall tables and audit arch values. */
import { SYSCALLS_AARCH64 } from "./syscalls_aarch64.ts";
import { SYSCALLS_X86_64 } from "./syscalls_x86_64.ts";

export type Arch = "x86_64" | "aarch64";
export const ARCHES: readonly Arch[] = ["x86_64", "aarch64"];

/** seccomp_data.arch of a native call (AUDIT_ARCH_*: EM_* | __AUDIT_ARCH_64BIT | _LE). */
export const AUDIT_ARCH: Readonly<Record<Arch, number>> = {
  x86_64: 0xC000003E,
  aarch64: 0xC00000B7,
};
/** seccomp_data.arch of an i386 `int 0x80` call on an x86_64 kernel. */
export const AUDIT_ARCH_I386 = 0x40000003;
/** seccomp_data.arch of a 32-bit ARM (compat) call on an arm64 kernel. */
export const AUDIT_ARCH_ARM = 0x40000028;
/** On x86_64, x32 calls arrive with AUDIT_ARCH_X86_64 and this bit set in nr. */
export const X32_SYSCALL_BIT = 0x40000000;

/** libseccomp's name for each arch (OCI `architectures`, Docker `archMap`). */
export const SCMP_ARCH: Readonly<Record<Arch, string>> = {
  x86_64: "SCMP_ARCH_X86_64",
  aarch64: "SCMP_ARCH_AARCH64",
};
/** Go's name for each arch (Docker profile `arches`). */
export const GO_ARCH: Readonly<Record<Arch, string>> = { x86_64: "amd64", aarch64: "arm64" };

export const SYSCALL_TABLES: Readonly<Record<Arch, Readonly<Record<string, number>>>> = {
  x86_64: SYSCALLS_X86_64,
  aarch64: SYSCALLS_AARCH64,
};

/** The syscall's number on `arch`, or undefined when the arch (or this table) lacks it. */
export function syscallNumber(arch: Arch, name: string): number | undefined {
  const table = SYSCALL_TABLES[arch];
  return Object.hasOwn(table, name) ? table[name] : undefined;
}

const byNumber = new Map<Arch, Map<number, string>>();

/** The syscall's name on `arch` from its number, or undefined. */
export function syscallName(arch: Arch, nr: number): string | undefined {
  let m = byNumber.get(arch);
  if (!m) {
    m = new Map(Object.entries(SYSCALL_TABLES[arch]).map(([k, v]) => [v, k]));
    byNumber.set(arch, m);
  }
  return m.get(nr);
}

/** True when `name` is a syscall on any arch we know (so it is not a typo). */
export { knownOnSomeArch } from "./names.ts";
