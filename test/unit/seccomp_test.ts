/**
 * The seccomp compiler, run through an independent classic-BPF interpreter (test/unit/_bpf.ts)
 * and checked against a reference evaluation of the policy written here.
 */
import assert from "node:assert/strict";
import { run, type SeccompData, verify } from "./_bpf.ts";
import {
  type Arch,
  ARCHES,
  AUDIT_ARCH,
  AUDIT_ARCH_ARM,
  AUDIT_ARCH_I386,
  SYSCALL_TABLES,
  syscallName,
  syscallNumber,
  X32_SYSCALL_BIT,
} from "../../core/seccomp/arch.ts";
import {
  actionValue,
  BPF_MAXINSNS,
  compile,
  compileProgram,
  disassemble,
  filterFlags,
  longestPath,
  retName,
  SECCOMP_RET_ALLOW,
  SECCOMP_RET_ERRNO,
  SECCOMP_RET_KILL_PROCESS,
  SECCOMP_RET_KILL_THREAD,
  SECCOMP_RET_LOG,
  SECCOMP_RET_TRAP,
  SECCOMP_RET_USER_NOTIF,
} from "../../core/seccomp/compile.ts";
import { defaultPolicy } from "../../core/seccomp/default.ts";
import {
  type ArgCondition,
  type CmpOp,
  OPS,
  parseDockerSeccomp,
  parseJsonU64,
  parseOciSeccomp,
  SeccompError,
  type SeccompPolicy,
  unknownSyscalls,
  validatePolicy,
} from "../../core/seccomp/policy.ts";
import { knownOnSomeArch, SYSCALL_NAMES } from "../../core/seccomp/names.ts";
import {
  ARM64_DEFINES,
  parseArm64Abis,
  parseGenericHeader,
  parseTbl,
} from "../../tools/gen_syscalls.ts";

const ALLOW = SECCOMP_RET_ALLOW;
const KILL_PROCESS = SECCOMP_RET_KILL_PROCESS;
const errno = (n: number) => SECCOMP_RET_ERRNO | n;
const EPERM = errno(1);
const ENOSYS = errno(38);
const EACCES = errno(13);

/** Docker's default capability set. */
const DOCKER_CAPS = [
  "CHOWN",
  "DAC_OVERRIDE",
  "FSETID",
  "FOWNER",
  "MKNOD",
  "NET_RAW",
  "SETGID",
  "SETUID",
  "SETFCAP",
  "SETPCAP",
  "NET_BIND_SERVICE",
  "SYS_CHROOT",
  "KILL",
  "AUDIT_WRITE",
];

const nr = (arch: Arch, name: string) => {
  const n = syscallNumber(arch, name);
  if (n === undefined) throw new Error(`${name} is not a syscall on ${arch}`);
  return n;
};

/** Runs `prog` for a native call of `name` on `arch`. */
function call(prog: Uint8Array, arch: Arch, name: string, ...args: (number | bigint)[]) {
  return run(prog, { arch: AUDIT_ARCH[arch], nr: nr(arch, name), args }).ret;
}

// ---- a reference evaluation of a policy, straight from the policy's meaning ---------------

const U64 = (1n << 64n) - 1n;
function holds(c: ArgCondition, arg: bigint): boolean {
  const v = BigInt(c.value);
  switch (c.op) {
    case "SCMP_CMP_EQ":
      return arg === v;
    case "SCMP_CMP_NE":
      return arg !== v;
    case "SCMP_CMP_LT":
      return arg < v;
    case "SCMP_CMP_LE":
      return arg <= v;
    case "SCMP_CMP_GT":
      return arg > v;
    case "SCMP_CMP_GE":
      return arg >= v;
    case "SCMP_CMP_MASKED_EQ":
      return (arg & v) === BigInt(c.valueTwo ?? 0);
  }
}

function reference(p: SeccompPolicy, arch: Arch, d: SeccompData): number {
  if (d.arch !== AUDIT_ARCH[arch]) return KILL_PROCESS;
  if (arch === "x86_64" && d.nr >= X32_SYSCALL_BIT) return KILL_PROCESS;
  const name = syscallName(arch, d.nr);
  const args = (d.args ?? []).map((a) => BigInt.asUintN(64, BigInt(a)));
  for (const r of p.syscalls) {
    if (name === undefined || !r.names.includes(name)) continue;
    if ((r.args ?? []).every((c) => holds(c, args[c.index] ?? 0n))) {
      return actionValue(r.action, r.errnoRet ?? 1);
    }
  }
  const named = p.syscalls.flatMap((r) => r.names).map((n) => syscallNumber(arch, n))
    .filter((n) => n !== undefined);
  const maxNamed = named.length ? Math.max(...named) : Infinity;
  const denies = p.defaultAction !== "SCMP_ACT_ALLOW" && p.defaultAction !== "SCMP_ACT_LOG";
  if (denies && (name === undefined || d.nr > maxNamed)) return ENOSYS;
  return actionValue(p.defaultAction, p.defaultErrnoRet ?? 1);
}

/** A small deterministic PRNG for argument values. */
function rng(seed: number) {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s;
  };
}

/** Values around `v` that exercise both words: ±1, the other word changed, extremes. */
function probes(v: bigint): bigint[] {
  const out = [0n, 1n, U64, v, v + 1n, v - 1n, v ^ (1n << 32n), v ^ 1n, v & 0xffffffffn];
  out.push((v & 0xffffffffn) | (0xdeadbeefn << 32n), v >> 32n, v | 0xffffffffn);
  return out.filter((x) => x >= 0n && x <= U64);
}

// ---- syscall tables ----------------------------------------------------------------------

Deno.test("syscall tables: spot-checked numbers on x86_64 and aarch64", () => {
  assert.equal(syscallNumber("x86_64", "read"), 0);
  assert.equal(syscallNumber("x86_64", "mount"), 165);
  assert.equal(syscallNumber("x86_64", "clone"), 56);
  assert.equal(syscallNumber("x86_64", "openat2"), 437);
  assert.equal(syscallNumber("x86_64", "rt_sigaction"), 13);
  assert.equal(syscallNumber("aarch64", "read"), 63);
  assert.equal(syscallNumber("aarch64", "mount"), 40);
  assert.equal(syscallNumber("aarch64", "clone"), 220);
  assert.equal(syscallNumber("aarch64", "openat2"), 437);
  assert.equal(syscallNumber("aarch64", "renameat"), 38);
  assert.equal(syscallNumber("aarch64", "getrlimit"), 163);
  assert.equal(syscallNumber("aarch64", "memfd_secret"), 447);
  assert.equal(syscallNumber("aarch64", "fstat"), 80);
  for (const absent of ["fork", "open", "stat", "arch_prctl", "fstat64", "fcntl64", "mmap2"]) {
    assert.equal(syscallNumber("aarch64", absent), undefined, absent);
  }
  assert.equal(syscallNumber("x86_64", "toString"), undefined);
});

Deno.test("syscall tables: x86_64 leaves out the x32 entries", () => {
  const nums = Object.values(SYSCALL_TABLES.x86_64);
  assert.ok(nums.every((n) => n < 512));
  assert.equal(new Set(nums).size, nums.length, "numbers are unique");
  assert.equal(syscallName("x86_64", 19), "readv");
});

Deno.test("syscall names: every name of the tables, and only those (a stale list fails here)", () => {
  const names = [...new Set(Object.values(SYSCALL_TABLES).flatMap((t) => Object.keys(t)))];
  assert.deepEqual(SYSCALL_NAMES.split(",").filter((n) => n).sort(), names.sort());
  assert.ok(knownOnSomeArch("openat2") && knownOnSomeArch("arch_prctl"));
  for (const bad of ["", "open,close", "opn", "toString", ",open", "OPEN"]) {
    assert.equal(knownOnSomeArch(bad), false, bad);
  }
});

Deno.test("gen_syscalls: keeps only the ABIs asked for", () => {
  const tbl = "# c\n25\t32\tfcntl64\tsys_fcntl64\n25\t64\tfcntl\tsys_fcntl\n" +
    "38\trenameat renameat\tsys_renameat\n163\trlimit\tgetrlimit\n244\tarc\tcacheflush\n" +
    "512\tx32\trt_sigaction\n";
  assert.deepEqual(
    [...parseTbl(tbl, new Set(["common", "64", "renameat", "rlimit"]))],
    [["fcntl", 25], ["renameat", 38], ["getrlimit", 163]],
  );
  assert.deepEqual(
    parseArm64Abis("syscall_abis_32 +=\nsyscall_abis_64 += renameat newstat rlimit memfd_secret\n"),
    ["renameat", "newstat", "rlimit", "memfd_secret"],
  );
});

Deno.test("gen_syscalls: reads asm-generic/unistd.h with arm64's defines", () => {
  const h = [
    "#if __BITS_PER_LONG == 32 || defined(__SYSCALL_COMPAT)",
    "#define __SC_3264(_nr, _32, _64) __SYSCALL(_nr, _32)",
    "#endif",
    "#define __NR3264_fcntl 25",
    "#ifdef __ARCH_WANT_RENAMEAT",
    "#define __NR_renameat 38",
    "#endif",
    "#ifdef __ARCH_WANT_SYNC_FILE_RANGE2",
    "#define __NR_sync_file_range2 84",
    "#else",
    "#define __NR_sync_file_range 84",
    "#endif",
    "#if defined(__ARCH_WANT_TIME32_SYSCALLS) || __BITS_PER_LONG != 32",
    "#define __NR_futex 98",
    "#endif",
    "#if __BITS_PER_LONG == 64 && !defined(__SYSCALL_COMPAT)",
    "#define __NR_fcntl __NR3264_fcntl",
    "#else",
    "#define __NR_fcntl64 __NR3264_fcntl",
    "#endif",
  ].join("\n");
  assert.deepEqual(
    Object.fromEntries(parseGenericHeader(h, ARM64_DEFINES)),
    { renameat: 38, sync_file_range: 84, futex: 98, fcntl: 25 },
  );
  assert.equal(parseGenericHeader(h, []).has("renameat"), false);
});

// ---- program shape -----------------------------------------------------------------------

const kinds: SeccompPolicy = {
  defaultAction: "SCMP_ACT_ERRNO",
  defaultErrnoRet: 1,
  syscalls: [
    { names: ["getpid"], action: "SCMP_ACT_ALLOW" },
    { names: ["getuid"], action: "SCMP_ACT_ERRNO", errnoRet: 13 },
    { names: ["gettid"], action: "SCMP_ACT_KILL" },
    { names: ["getgid"], action: "SCMP_ACT_KILL_THREAD" },
    { names: ["getppid"], action: "SCMP_ACT_KILL_PROCESS" },
    { names: ["getpgid"], action: "SCMP_ACT_TRAP" },
    { names: ["getsid"], action: "SCMP_ACT_LOG" },
    { names: ["geteuid"], action: "SCMP_ACT_ERRNO" },
  ],
};

Deno.test("compile: every action kind, on both arches", () => {
  for (const arch of ARCHES) {
    const prog = compile(kinds, arch);
    verify(prog);
    assert.equal(call(prog, arch, "getpid"), ALLOW);
    assert.equal(call(prog, arch, "getuid"), EACCES);
    assert.equal(call(prog, arch, "gettid"), SECCOMP_RET_KILL_THREAD);
    assert.equal(call(prog, arch, "getgid"), SECCOMP_RET_KILL_THREAD);
    assert.equal(call(prog, arch, "getppid"), KILL_PROCESS);
    assert.equal(call(prog, arch, "getpgid"), SECCOMP_RET_TRAP);
    assert.equal(call(prog, arch, "getsid"), SECCOMP_RET_LOG);
    assert.equal(call(prog, arch, "geteuid"), EPERM, "ERRNO without errnoRet is EPERM");
    assert.equal(call(prog, arch, "write"), EPERM, "the default");
  }
});

Deno.test("compile: the program starts with the arch check and ends in a return", () => {
  const prog = compile(kinds, "x86_64");
  const dv = new DataView(prog.buffer);
  assert.equal(dv.getUint16(0, true), 0x20, "ld [abs]");
  assert.equal(dv.getUint32(4, true), 4, "seccomp_data.arch");
  assert.equal(dv.getUint16(8, true), 0x15, "jeq");
  assert.equal(dv.getUint32(12, true), 0xC000003E, "AUDIT_ARCH_X86_64");
  assert.equal(prog.length % 8, 0);
});

Deno.test("compile: a foreign arch, i386 int 0x80 and the x32 bit are killed", () => {
  const allowAll: SeccompPolicy = {
    defaultAction: "SCMP_ACT_ALLOW",
    syscalls: [{ names: ["mount"], action: "SCMP_ACT_ERRNO" }],
  };
  for (const p of [kinds, allowAll]) {
    const x86 = compile(p, "x86_64");
    const arm = compile(p, "aarch64");
    assert.equal(run(x86, { arch: AUDIT_ARCH.aarch64, nr: 0 }).ret, KILL_PROCESS);
    assert.equal(run(arm, { arch: AUDIT_ARCH.x86_64, nr: 63 }).ret, KILL_PROCESS);
    assert.equal(run(x86, { arch: AUDIT_ARCH_I386, nr: 20 }).ret, KILL_PROCESS, "i386 getpid");
    assert.equal(run(arm, { arch: AUDIT_ARCH_ARM, nr: 20 }).ret, KILL_PROCESS, "arm32");
    for (const n of [0, 39, 165, 512, 0x3fffffff]) {
      const x32 = run(x86, { arch: AUDIT_ARCH.x86_64, nr: (X32_SYSCALL_BIT | n) >>> 0 });
      assert.equal(x32.ret, KILL_PROCESS, `x32 ${n}`);
    }
    assert.equal(run(x86, { arch: AUDIT_ARCH.x86_64, nr: 0xffffffff }).ret, KILL_PROCESS);
  }
  // on aarch64 the bit means nothing special: just an unknown number
  assert.equal(
    run(compile(kinds, "aarch64"), { arch: AUDIT_ARCH.aarch64, nr: X32_SYSCALL_BIT })
      .ret,
    ENOSYS,
  );
});

Deno.test("compile: unknown numbers get ENOSYS, known ones the default errno", () => {
  for (const arch of ARCHES) {
    const prog = compile(kinds, arch);
    const getsid = nr(arch, "getsid");
    // below the highest named number: in the table → default, not in the table → ENOSYS
    assert.equal(run(prog, { arch: AUDIT_ARCH[arch], nr: nr(arch, "mount") }).ret, EPERM);
    assert.equal(run(prog, { arch: AUDIT_ARCH[arch], nr: getsid + 1000 }).ret, ENOSYS);
    assert.equal(run(prog, { arch: AUDIT_ARCH[arch], nr: 0x3ffffff0 }).ret, ENOSYS);
    // the default policy names calls up to mseal (462): 463+ and the table's gaps → ENOSYS
    const dflt = compile(defaultPolicy([]), arch);
    for (const n of [400, 463, 470, 1000]) {
      assert.equal(run(dflt, { arch: AUDIT_ARCH[arch], nr: n }).ret, ENOSYS, `${arch} nr ${n}`);
    }
  }
  const noStub = compile(kinds, "x86_64", { unknownErrno: null });
  assert.equal(run(noStub, { arch: AUDIT_ARCH.x86_64, nr: 1000 }).ret, EPERM);
  // a denylist (default allow) leaves unknown numbers allowed
  const deny = compile({
    defaultAction: "SCMP_ACT_ALLOW",
    syscalls: [{ names: ["mount"], action: "SCMP_ACT_ERRNO" }],
  }, "x86_64");
  assert.equal(run(deny, { arch: AUDIT_ARCH.x86_64, nr: 1000 }).ret, ALLOW);
  assert.equal(call(deny, "x86_64", "mount"), EPERM);
});

Deno.test("compile: every compare op on 64-bit values, every argument, both arches", () => {
  const values = [0n, 5n, 0xffffffffn, 0x100000000n, 0x1_0000_0005n, 0xdead_beef_0000_0001n, U64];
  for (const arch of ARCHES) {
    for (const op of OPS) {
      for (const value of values) {
        for (const index of [0, 3, 5]) {
          const cond: ArgCondition = op === "SCMP_CMP_MASKED_EQ"
            ? { index, op, value: 0xff00_0000_0000_00ffn, valueTwo: value & 0xff00_0000_0000_00ffn }
            : { index, op, value };
          const p: SeccompPolicy = {
            defaultAction: "SCMP_ACT_ERRNO",
            syscalls: [{ names: ["read"], action: "SCMP_ACT_ALLOW", args: [cond] }],
          };
          const prog = compile(p, arch);
          for (const a of probes(value)) {
            const args = [0n, 0n, 0n, 0n, 0n, 0n];
            args[index] = a;
            const d = { arch: AUDIT_ARCH[arch], nr: nr(arch, "read"), args };
            const want = holds(cond, a) ? ALLOW : EPERM;
            assert.equal(run(prog, d).ret, want, `${arch} ${op} ${value} arg${index}=${a}`);
          }
        }
      }
    }
  }
});

Deno.test("compile: conditions AND within a rule; the first matching rule wins", () => {
  const p: SeccompPolicy = {
    defaultAction: "SCMP_ACT_KILL_PROCESS",
    syscalls: [
      {
        names: ["write"],
        action: "SCMP_ACT_ALLOW",
        args: [
          { index: 0, op: "SCMP_CMP_GE", value: 1 },
          { index: 0, op: "SCMP_CMP_LE", value: 2 },
        ],
      },
      {
        names: ["write"],
        action: "SCMP_ACT_ERRNO",
        errnoRet: 9,
        args: [{ index: 2, op: "SCMP_CMP_GT", value: 0x1_0000_0000n }],
      },
      { names: ["write"], action: "SCMP_ACT_LOG" },
      { names: ["write"], action: "SCMP_ACT_ALLOW" },
    ],
  };
  for (const arch of ARCHES) {
    const prog = compile(p, arch);
    assert.equal(call(prog, arch, "write", 1, 0, 0x2_0000_0000n), ALLOW);
    assert.equal(call(prog, arch, "write", 2), ALLOW);
    assert.equal(call(prog, arch, "write", 3, 0, 0x2_0000_0000n), errno(9));
    assert.equal(call(prog, arch, "write", 0, 0, 0x1_0000_0000n), SECCOMP_RET_LOG);
    assert.equal(call(prog, arch, "write", 0x1_0000_0001n), SECCOMP_RET_LOG, "high word set");
    assert.equal(call(prog, arch, "read"), KILL_PROCESS);
  }
});

Deno.test("compile: random policies agree with the reference on both arches", () => {
  const next = rng(7);
  const names = ["read", "write", "openat", "close", "mmap", "ioctl", "socket", "clone", "kill"];
  const actions = ["SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_TRAP", "SCMP_ACT_LOG"] as const;
  const val = () =>
    [0n, 1n, 2n, 0xffffffffn, 0x1_0000_0000n, U64, BigInt(next() % 8)][next() % 7] |
    (next() % 4 === 0 ? BigInt(next()) << 32n : 0n);
  for (let round = 0; round < 40; round++) {
    const syscalls = Array.from({ length: 1 + (next() % 12) }, () => ({
      names: [names[next() % names.length]],
      action: actions[next() % actions.length],
      errnoRet: undefined as number | undefined,
      args: Array.from({ length: next() % 3 }, () => {
        const op = OPS[next() % OPS.length] as CmpOp;
        return { index: next() % 6, op, value: val(), valueTwo: val() };
      }),
    }));
    syscalls.forEach((r) => r.action === "SCMP_ACT_ERRNO" && (r.errnoRet = next() % 200));
    const p: SeccompPolicy = { defaultAction: "SCMP_ACT_ERRNO", defaultErrnoRet: 1, syscalls };
    for (const arch of ARCHES) {
      const prog = compile(p, arch);
      for (const name of names) {
        for (let k = 0; k < 12; k++) {
          const args = Array.from({ length: 6 }, () => val());
          const d = { arch: AUDIT_ARCH[arch], nr: nr(arch, name), args };
          assert.equal(
            retName(run(prog, d).ret),
            retName(reference(p, arch, d)),
            `${arch} round ${round} ${name}(${args.join(", ")})`,
          );
        }
      }
    }
  }
});

Deno.test("compile: long jumps past 255 instructions go through JA trampolines", () => {
  // every syscall with a multi-word condition: the tree's jumps span thousands of instructions
  const syscalls = Object.keys(SYSCALL_TABLES.x86_64).slice(0, 250).map((name, i) => ({
    names: [name],
    action: "SCMP_ACT_ALLOW" as const,
    args: [
      { index: i % 6, op: "SCMP_CMP_LE" as const, value: BigInt(i) << 20n },
      { index: (i + 1) % 6, op: "SCMP_CMP_NE" as const, value: 7 },
    ],
  }));
  const p: SeccompPolicy = { defaultAction: "SCMP_ACT_ERRNO", syscalls };
  for (const arch of ARCHES) {
    const c = compileProgram(p, arch);
    assert.ok(c.length > 1000 && c.length <= BPF_MAXINSNS, `${c.length} instructions`);
    assert.ok(
      disassemble(c.program).includes(": ja "),
      "some jumps needed trampolines",
    );
    for (const name of Object.keys(SYSCALL_TABLES[arch])) {
      for (const args of [[0, 0, 0, 0, 0, 0], [7, 7, 7, 7, 7, 7], [1n << 40n, 3, 3, 3, 3, 3]]) {
        const d = { arch: AUDIT_ARCH[arch], nr: nr(arch, name), args };
        assert.equal(run(c.program, d).ret, reference(p, arch, d), `${arch} ${name}`);
      }
    }
  }
});

Deno.test("compile: a program over 4096 instructions is refused with a clear error", () => {
  const syscalls = Object.keys(SYSCALL_TABLES.x86_64).map((name) => ({
    names: [name],
    action: "SCMP_ACT_ALLOW" as const,
    args: [0, 1, 2, 3, 4, 5].map((index) => ({
      index,
      op: "SCMP_CMP_GT" as const,
      value: 0x1_0000_0001n,
    })),
  }));
  assert.throws(
    () => compile({ defaultAction: "SCMP_ACT_ERRNO", syscalls }, "x86_64"),
    /instructions, more than the kernel's 4096/,
  );
});

// ---- the default policy ------------------------------------------------------------------

Deno.test("default policy: Docker's protections, no capabilities (hardened)", () => {
  const CLONE_NEWUSER = 0x10000000;
  const SIGCHLD = 17;
  const CLONE_THREAD_FLAGS = 0x003d0f00; // glibc pthread_create's flags
  for (const arch of ARCHES) {
    const prog = compile(defaultPolicy([]), arch);
    assert.equal(call(prog, arch, "read", 0), ALLOW);
    assert.equal(call(prog, arch, "write", 1), ALLOW);
    assert.equal(call(prog, arch, "execve"), ALLOW);
    assert.equal(call(prog, arch, "mount"), EPERM);
    assert.equal(call(prog, arch, "umount2"), EPERM);
    assert.equal(call(prog, arch, "clone", CLONE_NEWUSER | SIGCHLD), EPERM);
    assert.equal(call(prog, arch, "clone", 0x20000000 | SIGCHLD), EPERM, "CLONE_NEWNS");
    assert.equal(call(prog, arch, "clone", SIGCHLD), ALLOW);
    assert.equal(call(prog, arch, "clone", CLONE_THREAD_FLAGS), ALLOW);
    assert.equal(call(prog, arch, "clone", (1n << 32n) | BigInt(SIGCHLD)), ALLOW, "high bits");
    assert.equal(call(prog, arch, "clone3"), ENOSYS);
    assert.equal(call(prog, arch, "unshare", CLONE_NEWUSER), EPERM);
    assert.equal(call(prog, arch, "setns"), EPERM);
    assert.equal(call(prog, arch, "socket", 40, 1, 0), EPERM, "AF_VSOCK");
    assert.equal(call(prog, arch, "socket", 38, 5, 0), EPERM, "AF_ALG");
    assert.equal(call(prog, arch, "socket", 2, 1, 0), ALLOW, "AF_INET");
    assert.equal(call(prog, arch, "socket", 1, 1, 0), ALLOW, "AF_UNIX");
    assert.equal(call(prog, arch, "socket", 10, 2, 0), ALLOW, "AF_INET6");
    assert.equal(call(prog, arch, "socket", 16, 3, 0), ALLOW, "AF_NETLINK");
    assert.equal(call(prog, arch, "socket", (1n << 32n) | 2n), EPERM, "high word set");
    assert.equal(call(prog, arch, "personality", 0x8), ALLOW);
    assert.equal(call(prog, arch, "personality", 0xffffffff), ALLOW);
    assert.equal(call(prog, arch, "personality", 0x400000), EPERM, "ADDR_NO_RANDOMIZE");
    assert.equal(call(prog, arch, "ptrace"), ALLOW, "as Docker on kernels ≥ 4.8");
    assert.equal(call(prog, arch, "chroot"), EPERM);
    for (
      const name of [
        "reboot",
        "kexec_load",
        "kexec_file_load",
        "init_module",
        "finit_module",
        "delete_module",
        "bpf",
        "perf_event_open",
        "keyctl",
        "add_key",
        "request_key",
        "userfaultfd",
        "open_by_handle_at",
        "swapon",
        "swapoff",
        "acct",
        "settimeofday",
        "clock_settime",
        "pivot_root",
        "quotactl",
        "lookup_dcookie",
        "kcmp",
        "move_pages",
        "mbind",
        "set_mempolicy",
        "get_mempolicy",
        "syslog",
        "fsopen",
        "fsmount",
        "fsconfig",
        "fspick",
        "open_tree",
        "move_mount",
        "io_uring_setup",
        "sethostname",
        "setdomainname",
        "vhangup",
        "process_madvise",
        "pidfd_getfd",
      ]
    ) {
      assert.equal(call(prog, arch, name), EPERM, `${arch} ${name}`);
    }
    if (arch === "x86_64") {
      for (const name of ["iopl", "ioperm", "uselib", "ustat", "sysfs", "_sysctl", "nfsservctl"]) {
        assert.equal(call(prog, arch, name), EPERM, name);
      }
      assert.equal(call(prog, arch, "arch_prctl"), ALLOW);
      assert.equal(call(prog, arch, "fork"), ALLOW);
    }
  }
});

Deno.test("default policy: capabilities unlock what they unlock in Docker", () => {
  for (const arch of ARCHES) {
    const docker = compile(defaultPolicy(DOCKER_CAPS), arch);
    assert.equal(call(docker, arch, "chroot"), ALLOW, "CAP_SYS_CHROOT is a Docker default");
    assert.equal(call(docker, arch, "mount"), EPERM);
    const admin = compile(defaultPolicy(["sys_admin"]), arch);
    assert.equal(call(admin, arch, "mount"), ALLOW);
    assert.equal(call(admin, arch, "unshare", 0x10000000), ALLOW);
    assert.equal(call(admin, arch, "clone", 0x10000000), ALLOW);
    assert.equal(call(admin, arch, "clone3"), ALLOW);
    assert.equal(call(admin, arch, "bpf"), ALLOW);
    assert.equal(call(admin, arch, "socket", 40), EPERM, "families do not depend on caps");
    const ptrace = compile(defaultPolicy(["CAP_SYS_PTRACE", "CAP_SYS_TIME", "CAP_SYS_BOOT"]), arch);
    assert.equal(call(ptrace, arch, "kcmp"), ALLOW);
    assert.equal(call(ptrace, arch, "settimeofday"), ALLOW);
    assert.equal(call(ptrace, arch, "reboot"), ALLOW);
    assert.equal(call(ptrace, arch, "kexec_load"), EPERM, "nothing unlocks kexec");
  }
});

Deno.test("default policy: well under 4096 instructions, short paths for common calls", () => {
  for (const arch of ARCHES) {
    for (const caps of [[], DOCKER_CAPS, ["CAP_SYS_ADMIN"]]) {
      const c = compileProgram(defaultPolicy(caps), arch);
      assert.ok(c.length < 400, `${arch}: ${c.length} instructions`);
      assert.ok(longestPath(c.program) < 50, `${arch}: longest path ${longestPath(c.program)}`);
    }
    const prog = compile(defaultPolicy([]), arch);
    let worst = 0;
    for (const name of Object.keys(SYSCALL_TABLES[arch])) {
      const { steps } = run(prog, { arch: AUDIT_ARCH[arch], nr: nr(arch, name), args: [40] });
      worst = Math.max(worst, steps);
    }
    assert.ok(worst <= longestPath(prog));
    for (const name of ["read", "write", "futex", "epoll_wait", "openat", "close", "mmap"]) {
      if (syscallNumber(arch, name) === undefined) continue;
      const { steps } = run(prog, { arch: AUDIT_ARCH[arch], nr: nr(arch, name) });
      assert.ok(steps <= 16, `${arch} ${name}: ${steps} instructions executed`);
    }
  }
});

Deno.test("default policy agrees with the reference for every syscall of both tables", () => {
  for (const caps of [[], DOCKER_CAPS]) {
    const p = defaultPolicy(caps);
    for (const arch of ARCHES) {
      const prog = compile(p, arch);
      for (const name of Object.keys(SYSCALL_TABLES[arch])) {
        for (const args of [[], [0x10000000], [40], [2], [8], [0x7E020000n | (1n << 32n)]]) {
          const d = { arch: AUDIT_ARCH[arch], nr: nr(arch, name), args };
          assert.equal(run(prog, d).ret, reference(p, arch, d), `${arch} ${name}(${args})`);
        }
      }
    }
  }
});

// ---- policy forms ------------------------------------------------------------------------

const FIXTURE = Deno.readTextFileSync(new URL("./seccomp_docker_profile.json", import.meta.url));

Deno.test("Docker profile: includes and excludes by caps, arches and kernel", () => {
  for (const arch of ARCHES) {
    const plain = parseDockerSeccomp(FIXTURE, { arch, caps: [] });
    assert.deepEqual(
      plain.architectures,
      arch === "x86_64"
        ? ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
        : ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"],
    );
    const prog = compile(plain, arch);
    assert.equal(call(prog, arch, "read"), ALLOW);
    assert.equal(call(prog, arch, "getppid"), ALLOW, "singular name");
    assert.equal(call(prog, arch, "ptrace"), ALLOW, "minKernel with no kernel given");
    assert.equal(call(prog, arch, "mount"), EPERM);
    assert.equal(call(prog, arch, "clone", 0x10000000), EPERM);
    assert.equal(call(prog, arch, "clone", 17), ALLOW);
    assert.equal(call(prog, arch, "clone3"), ENOSYS);
    assert.equal(call(prog, arch, "chroot"), EPERM);
    assert.equal(call(prog, arch, "socket", 2), ALLOW);
    assert.equal(call(prog, arch, "socket", 10), ALLOW);
    assert.equal(call(prog, arch, "socket", 40), EPERM);
    assert.equal(call(prog, arch, "personality", 0xffffffff), ALLOW);
    assert.equal(call(prog, arch, "personality", 0), EPERM);
    assert.equal(call(prog, arch, "lseek", 3, 5), ALLOW);
    assert.equal(call(prog, arch, "lseek", 3, U64), EPERM, "value beyond 2^53 kept exact");
    assert.equal(call(prog, arch, "lseek", 3, U64 - 1n), ALLOW);
    assert.equal(call(prog, arch, "kexec_load"), KILL_PROCESS);
    assert.equal(call(prog, arch, "reboot"), SECCOMP_RET_TRAP);
    assert.equal(call(prog, arch, "uname"), EPERM, "excluded on kernels ≥ 5.0 (assumed)");
    assert.equal(call(prog, arch, "kcmp"), EPERM, "needs both caps");
    if (arch === "x86_64") {
      assert.equal(call(prog, arch, "arch_prctl"), ALLOW);
      assert.equal(call(prog, arch, "getrandom"), EPERM, "arm64 only");
    } else assert.equal(call(prog, arch, "getrandom"), ALLOW);

    const admin = compile(
      parseDockerSeccomp(FIXTURE, { arch, caps: ["sys_admin", "CAP_SYS_CHROOT"] }),
      arch,
    );
    assert.equal(call(admin, arch, "mount"), ALLOW);
    assert.equal(call(admin, arch, "clone", 0x10000000), ALLOW);
    assert.equal(call(admin, arch, "clone3"), ALLOW);
    assert.equal(call(admin, arch, "chroot"), ALLOW);
    assert.equal(call(admin, arch, "kcmp"), EPERM);
    const both = compile(
      parseDockerSeccomp(FIXTURE, { arch, caps: ["SYS_ADMIN", "SYS_PTRACE"] }),
      arch,
    );
    assert.equal(call(both, arch, "kcmp"), ALLOW);

    const old = compile(parseDockerSeccomp(FIXTURE, { arch, caps: [], kernel: "4.4.0-1" }), arch);
    assert.equal(call(old, arch, "ptrace"), EPERM, "minKernel 4.8 not met");
    assert.equal(call(old, arch, "uname"), SECCOMP_RET_LOG, "not excluded below 5.0");
    const recent = parseDockerSeccomp(FIXTURE, { arch, caps: [], kernel: "6.18.44-fc" });
    assert.equal(call(compile(recent, arch), arch, "ptrace"), ALLOW);
  }
});

Deno.test("Docker profile: unknown names are skipped, not errors", () => {
  const p = parseDockerSeccomp(FIXTURE, { arch: "x86_64", caps: [] });
  assert.deepEqual(unknownSyscalls(p, "x86_64"), ["no_such_syscall", "vm86"]);
  assert.deepEqual(unknownSyscalls(p, "aarch64").includes("fstat"), false);
  const c = compileProgram(parseDockerSeccomp(FIXTURE, { arch: "aarch64", caps: [] }), "aarch64");
  assert.equal(c.skipped.includes("arch_prctl"), false, "filtered out by includes.arches");
  assert.ok(c.skipped.includes("vm86"));
});

Deno.test("Docker profile: format errors are one line each", () => {
  const bad = (doc: unknown) => () => parseDockerSeccomp(doc, { arch: "x86_64", caps: [] });
  assert.throws(
    bad({ defaultAction: "SCMP_ACT_ERRNO", syscalls: [{ name: "read", names: ["write"] }] }),
    /syscalls\[0\]: use either "name" or "names", not both/,
  );
  assert.throws(
    bad({ defaultAction: "SCMP_ACT_ERRNO", architectures: [], archMap: [] }),
    /either "architectures" or "archMap"/,
  );
  assert.throws(
    bad({ defaultAction: "SCMP_ACT_ERRNO", syscalls: [{ names: ["read"], includes: { os: 1 } }] }),
    /syscalls\[0\]\.includes\.os: unknown key/,
  );
  assert.throws(bad("{"), /not valid JSON/);
});

Deno.test("OCI policy: validation errors name the path, one line each", () => {
  const errs = validatePolicy({
    defaultAction: "SCMP_ACT_DENY",
    architectures: ["SCMP_ARCH_X86_64", "SCMP_ARCH_VAX"],
    flags: ["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_FAST"],
    syscalls: [
      { names: ["read"], action: "SCMP_ACT_ALLOW", errnoRet: 1 },
      { names: [], action: "SCMP_ACT_ALLOW" },
      {
        names: ["write"],
        action: "SCMP_ACT_ALLOW",
        args: [{ index: 6, value: 1, op: "SCMP_CMP_EQ" }],
      },
      {
        names: ["write"],
        action: "SCMP_ACT_ALLOW",
        args: [{ index: 0, value: -1, op: "SCMP_CMP_LIKE" }],
      },
      { names: ["write"], action: "SCMP_ACT_NOTIFY" },
      { names: ["Not A Name"], action: "SCMP_ACT_ERRNO", errnoRet: 5000 },
    ],
  });
  assert.deepEqual(errs, [
    `seccomp.defaultAction: unknown action "SCMP_ACT_DENY"`,
    `seccomp.listenerPath: SCMP_ACT_NOTIFY needs a listenerPath to send the fd to`,
    `seccomp.architectures[1]: unknown architecture "SCMP_ARCH_VAX"`,
    `seccomp.flags[1]: unknown flag "SECCOMP_FILTER_FLAG_FAST"`,
    `seccomp.syscalls[0].errnoRet: only meaningful with SCMP_ACT_ERRNO`,
    `seccomp.syscalls[1].names: must be a non-empty list of syscall names`,
    `seccomp.syscalls[2].args[0].index: must be an argument index from 0 to 5, got 6`,
    `seccomp.syscalls[3].args[0].op: unknown op "SCMP_CMP_LIKE"`,
    `seccomp.syscalls[3].args[0].value: -1 is not an unsigned integer`,
    `seccomp.syscalls[5].names[0]: "Not A Name" is not a syscall name`,
    `seccomp.syscalls[5].errnoRet: must be an errno from 0 to 4095, got 5000`,
  ]);
  for (const e of errs) assert.ok(!e.includes("\n"));
  assert.throws(
    () => parseOciSeccomp({ defaultAction: "SCMP_ACT_ALLOW", syscalls: [{ names: ["x"] }] }),
    (e: unknown) => e instanceof SeccompError && /unknown action undefined/.test(e.message),
  );
});

Deno.test("OCI policy: JSON text keeps 64-bit values exact; unknown names are fine", () => {
  const text = `{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["read","frobnicate"],
    "action":"SCMP_ACT_ERRNO","errnoRet":5,
    "args":[{"index":2,"value":18446744073709551615,"op":"SCMP_CMP_EQ"}]}]}`;
  const p = parseOciSeccomp(text);
  assert.equal(p.syscalls[0].args![0].value, U64);
  for (const arch of ARCHES) {
    const prog = compile(p, arch);
    assert.equal(call(prog, arch, "read", 0, 0, U64), errno(5));
    assert.equal(call(prog, arch, "read", 0, 0, U64 - 1n), ALLOW);
  }
  assert.deepEqual(unknownSyscalls(p, "x86_64"), ["frobnicate"]);
  assert.equal(parseJsonU64("9007199254740993"), 9007199254740993n);
  assert.throws(
    () =>
      parseOciSeccomp({
        defaultAction: "SCMP_ACT_ERRNO",
        syscalls: [{
          names: ["read"],
          action: "SCMP_ACT_ALLOW",
          args: [{ index: 0, value: 2 ** 60, op: "SCMP_CMP_EQ" }],
        }],
      }),
    /not exact as a number; pass a bigint/,
  );
});

Deno.test("disassemble: one readable line per instruction", () => {
  const c = compileProgram(defaultPolicy([]), "x86_64");
  const text = disassemble(c.program, "x86_64");
  const lines = text.split("\n");
  assert.equal(lines.length, c.length);
  assert.equal(lines[0].trim(), "0: ld   arch");
  assert.ok(lines[1].includes("jeq  #0xc000003e  jt 3  jf 2"));
  assert.equal(lines[2].trim(), "2: ret  KILL_PROCESS");
  assert.ok(text.includes("ld   args[0].lo"));
  assert.ok(text.includes("and  #0x7e020000"));
  assert.ok(text.includes("ret  ERRNO(38)"));
  assert.match(text, /; socket/);
});

Deno.test("filterFlags: the seccomp(2) flags a policy asks for", () => {
  assert.equal(filterFlags(defaultPolicy([])), 0);
  const p = parseOciSeccomp({
    defaultAction: "SCMP_ACT_ALLOW",
    flags: ["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW"],
    syscalls: [],
  });
  assert.equal(filterFlags(p), 6);
});

Deno.test("the default policy allows every system call Docker's default profile allows on x86_64", async () => {
  const { defaultPolicy } = await import("../../core/seccomp/mod.ts");
  const { DOCKER_DEFAULT_CAPS } = await import("../../core/caps.ts");
  // moby's profiles/seccomp/default.json, the unconditional allow-list for 64-bit names.
  const docker = `accept accept4 access adjtimex alarm bind brk capget capset chdir chmod chown
    clock_adjtime clock_getres clock_gettime clock_nanosleep close close_range connect
    copy_file_range creat dup dup2 dup3 epoll_create epoll_create1 epoll_ctl epoll_ctl_old
    epoll_pwait epoll_pwait2 epoll_wait epoll_wait_old eventfd eventfd2 execve execveat exit
    exit_group faccessat faccessat2 fadvise64 fallocate fanotify_mark fchdir fchmod fchmodat
    fchown fchownat fcntl fdatasync fgetxattr flistxattr flock fork fremovexattr fsetxattr fstat
    fstatfs fsync ftruncate futex futimesat get_robust_list get_thread_area getcpu getcwd getdents
    getdents64 getegid geteuid getgid getgroups getitimer getpeername getpgid getpgrp getpid
    getppid getpriority getrandom getresgid getresuid getrlimit getrusage getsid getsockname
    getsockopt gettid gettimeofday getuid getxattr inotify_add_watch inotify_init inotify_init1
    inotify_rm_watch io_cancel io_destroy io_getevents io_setup io_submit ioctl ioprio_get
    ioprio_set ipc kill landlock_add_rule landlock_create_ruleset landlock_restrict_self lchown
    lgetxattr link linkat listen listxattr llistxattr lremovexattr lseek lsetxattr lstat madvise
    membarrier memfd_create memfd_secret mincore mkdir mkdirat mknod mknodat mlock mlock2 mlockall
    mmap mprotect mq_getsetattr mq_notify mq_open mq_timedreceive mq_timedsend mq_unlink mremap
    msgctl msgget msgrcv msgsnd msync munlock munlockall munmap name_to_handle_at nanosleep
    newfstatat open openat openat2 pause pidfd_open pidfd_send_signal pipe pipe2 pkey_alloc
    pkey_free pkey_mprotect poll ppoll prctl pread64 preadv preadv2 prlimit64 process_mrelease
    pselect6 pwrite64 pwritev pwritev2 read readahead readlink readlinkat readv recvfrom recvmmsg
    recvmsg remap_file_pages removexattr rename renameat renameat2 restart_syscall rmdir rseq
    rt_sigaction rt_sigpending rt_sigprocmask rt_sigqueueinfo rt_sigreturn rt_sigsuspend
    rt_sigtimedwait rt_tgsigqueueinfo sched_get_priority_max sched_get_priority_min
    sched_getaffinity sched_getattr sched_getparam sched_getscheduler sched_rr_get_interval
    sched_setaffinity sched_setattr sched_setparam sched_setscheduler sched_yield seccomp select
    semctl semget semop semtimedop sendfile sendmmsg sendmsg sendto set_robust_list
    set_thread_area set_tid_address setfsgid setfsuid setgid setgroups setitimer setpgid
    setpriority setregid setresgid setresuid setreuid setrlimit setsid setsockopt setuid setxattr
    shmat shmctl shmdt shmget shutdown sigaltstack signalfd signalfd4 socketpair splice stat statfs
    statx symlink symlinkat sync sync_file_range syncfs sysinfo tee tgkill time timer_create
    timer_delete timer_getoverrun timer_gettime timer_settime timerfd_create timerfd_gettime
    timerfd_settime times tkill truncate umask uname unlink unlinkat utime utimensat utimes vfork
    wait4 waitid write writev arch_prctl modify_ldt`.split(/\s+/).filter(Boolean);
  const allowed = new Set(
    defaultPolicy([...DOCKER_DEFAULT_CAPS]).syscalls.filter((r) => r.action === "SCMP_ACT_ALLOW")
      .flatMap((r) => r.names),
  );
  const missing = docker.filter((n) => !allowed.has(n) && n !== "ipc");
  if (missing.length) throw new Error(`not allowed: ${missing.join(" ")}`);
});

Deno.test("SCMP_ACT_NOTIFY: USER_NOTIF in the program, a listener flag, and the rules runc and micro need", () => {
  const policy = parseOciSeccomp({
    defaultAction: "SCMP_ACT_ALLOW",
    listenerPath: "/run/agent.sock",
    listenerMetadata: "m",
    flags: ["SECCOMP_FILTER_FLAG_TSYNC"],
    syscalls: [{ names: ["mkdir", "mkdirat"], action: "SCMP_ACT_NOTIFY" }],
  });
  assert.equal(policy.listenerPath, "/run/agent.sock");
  assert.equal(policy.listenerMetadata, "m");
  for (const arch of ["x86_64", "aarch64"] as const) {
    const prog = compile(policy, arch);
    assert.equal(call(prog, arch, "mkdirat"), SECCOMP_RET_USER_NOTIF);
    assert.equal(call(prog, arch, "getpid"), SECCOMP_RET_ALLOW);
  }
  assert.equal(retName(SECCOMP_RET_USER_NOTIF), "USER_NOTIF");
  // NEW_LISTENER (8); with TSYNC (1) the kernel wants TSYNC_ESRCH (16) too.
  assert.equal(filterFlags(policy), 1 | 8 | 16);
  assert.equal(filterFlags({ ...policy, flags: [] }), 8);
  assert.equal(filterFlags({ ...policy, syscalls: [] }), 1);
  const rule = { names: ["mkdir"], action: "SCMP_ACT_NOTIFY" };
  assert.deepEqual(validatePolicy({ defaultAction: "SCMP_ACT_ALLOW", syscalls: [rule] }), [
    "seccomp.listenerPath: SCMP_ACT_NOTIFY needs a listenerPath to send the fd to",
  ]);
  assert.deepEqual(
    validatePolicy({
      defaultAction: "SCMP_ACT_NOTIFY",
      listenerPath: "agent.sock",
      listenerMetadata: 5,
      syscalls: [rule, { names: ["read", "sendmsg", "write"], action: "SCMP_ACT_NOTIFY" }],
    }),
    [
      "seccomp.defaultAction: SCMP_ACT_NOTIFY cannot be the default (runc's rule too)",
      "seccomp.listenerMetadata: must be a string",
      'seccomp.listenerPath: "agent.sock" is not an absolute path',
      "seccomp.syscalls[1]: SCMP_ACT_NOTIFY for read: micro's set-up needs read before the " +
      "listener has the fd",
      "seccomp.syscalls[1]: SCMP_ACT_NOTIFY for sendmsg: micro's set-up needs sendmsg before " +
      "the listener has the fd",
    ],
  );
});
