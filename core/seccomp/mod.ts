/**
 * seccomp: policies (OCI and Docker forms), the built-in `default` policy, and the compiler
 * to a classic BPF program for seccomp(SECCOMP_SET_MODE_FILTER).
 */
export {
  type Arch,
  ARCHES,
  AUDIT_ARCH,
  AUDIT_ARCH_I386,
  syscallName,
  syscallNumber,
  X32_SYSCALL_BIT,
} from "./arch.ts";
export {
  type Action,
  type ArgCondition,
  assertPolicy,
  capName,
  type CmpOp,
  type DockerOptions,
  ENOSYS,
  EPERM,
  type FilterFlag,
  parseDockerSeccomp,
  parseJsonU64,
  parseOciSeccomp,
  SeccompError,
  type SeccompPolicy,
  type SyscallRule,
  unheardOfSyscalls,
  unknownSyscalls,
  validatePolicy,
} from "./policy.ts";
export { defaultPolicy } from "./default.ts";
export {
  actionValue,
  compile,
  type Compiled,
  type CompileOptions,
  compileProgram,
  disassemble,
  FILTER_FLAG_VALUES,
  filterFlags,
  longestPath,
  retName,
  SECCOMP_FILTER_FLAG_NEW_LISTENER,
} from "./compile.ts";
