/**
 * Policy → classic BPF program for seccomp(SECCOMP_SET_MODE_FILTER).
 *
 * Shape of the program:
 *   1. load seccomp_data.arch; anything but this arch's AUDIT_ARCH → KILL_PROCESS (this also
 *      catches i386 `int 0x80` calls on x86_64, which arrive as AUDIT_ARCH_I386, and 32-bit ARM
 *      calls on arm64);
 *   2. load nr; on x86_64, nr ≥ 0x40000000 (the x32 ABI bit) → KILL_PROCESS;
 *   3. a balanced binary search (JGE) over the syscall-number line cut into intervals, each
 *      with one outcome: an action (runs of adjacent numbers with the same unconditional
 *      outcome share one interval), or one syscall's argument rules;
 *   4. argument rules compare full 64-bit arguments (high word, then low word), first matching
 *      rule wins, else the default action.
 * Numbers the arch's table does not have, and numbers above the highest the policy names, get
 * ENOSYS rather than the default errno (as runc does), so that a program probing a syscall
 * newer than the policy falls back instead of failing with EPERM.
 */
import { type Arch, AUDIT_ARCH, SYSCALL_TABLES, syscallNumber, X32_SYSCALL_BIT } from "./arch.ts";
import {
  type Action,
  type ArgCondition,
  assertPolicy,
  ENOSYS,
  EPERM,
  type FilterFlag,
  SeccompError,
  type SeccompPolicy,
  u64,
} from "./policy.ts";

export const SECCOMP_RET_KILL_PROCESS = 0x80000000;
export const SECCOMP_RET_KILL_THREAD = 0x00000000;
export const SECCOMP_RET_TRAP = 0x00030000;
export const SECCOMP_RET_ERRNO = 0x00050000;
export const SECCOMP_RET_LOG = 0x7ffc0000;
export const SECCOMP_RET_USER_NOTIF = 0x7fc00000;
export const SECCOMP_RET_ALLOW = 0x7fff0000;
export const SECCOMP_RET_ACTION_FULL = 0xffff0000;
export const SECCOMP_RET_DATA = 0x0000ffff;

/** The kernel's limit on one filter (BPF_MAXINSNS). */
export const BPF_MAXINSNS = 4096;

// Classic BPF opcodes (linux/filter.h, linux/bpf_common.h).
export const BPF = {
  LD_W_ABS: 0x20,
  ALU_AND_K: 0x54,
  JMP_JA: 0x05,
  JMP_JEQ_K: 0x15,
  JMP_JGT_K: 0x25,
  JMP_JGE_K: 0x35,
  JMP_JSET_K: 0x45,
  RET_K: 0x06,
} as const;

/** Offsets in struct seccomp_data. */
export const SECCOMP_DATA = { nr: 0, arch: 4, instructionPointer: 8, args: 16 } as const;
/** Low and high 32-bit words of argument `i` (both arches are little-endian). */
export const argLo = (i: number) => SECCOMP_DATA.args + 8 * i;
export const argHi = (i: number) => SECCOMP_DATA.args + 8 * i + 4;

/** The SECCOMP_RET_* value of an action. */
export function actionValue(action: Action, errno: number = EPERM): number {
  switch (action) {
    case "SCMP_ACT_ALLOW":
      return SECCOMP_RET_ALLOW;
    case "SCMP_ACT_ERRNO":
      return (SECCOMP_RET_ERRNO | (errno & SECCOMP_RET_DATA)) >>> 0;
    case "SCMP_ACT_KILL":
    case "SCMP_ACT_KILL_THREAD":
      return SECCOMP_RET_KILL_THREAD;
    case "SCMP_ACT_KILL_PROCESS":
      return SECCOMP_RET_KILL_PROCESS;
    case "SCMP_ACT_TRAP":
      return SECCOMP_RET_TRAP;
    case "SCMP_ACT_LOG":
      return SECCOMP_RET_LOG;
    case "SCMP_ACT_NOTIFY":
      return SECCOMP_RET_USER_NOTIF;
  }
}

/** A readable name for a SECCOMP_RET_* value: `ALLOW`, `ERRNO(1)`, `KILL_PROCESS`, ... */
export function retName(k: number): string {
  const action = (k & SECCOMP_RET_ACTION_FULL) >>> 0;
  const data = k & SECCOMP_RET_DATA;
  switch (action) {
    case SECCOMP_RET_KILL_PROCESS:
      return "KILL_PROCESS";
    case SECCOMP_RET_KILL_THREAD:
      return "KILL_THREAD";
    case SECCOMP_RET_TRAP:
      return data ? `TRAP(${data})` : "TRAP";
    case SECCOMP_RET_ERRNO:
      return `ERRNO(${data})`;
    case SECCOMP_RET_LOG:
      return "LOG";
    case SECCOMP_RET_USER_NOTIF:
      return "USER_NOTIF";
    case SECCOMP_RET_ALLOW:
      return "ALLOW";
    default:
      return `0x${(k >>> 0).toString(16)}`;
  }
}

export interface CompileOptions {
  /**
   * The errno for numbers absent from the arch's table or above the highest number the policy
   * names, when the default action denies. Default ENOSYS; null gives them the default action.
   */
  unknownErrno?: number | null;
}

export interface Compiled {
  /** struct sock_filter[]: u16 code, u8 jt, u8 jf, u32 k, little-endian; 8 bytes each. */
  program: Uint8Array;
  /** Number of instructions (sock_fprog.len). */
  length: number;
  /** Policy names this arch's table has no number for (skipped, as libseccomp does). */
  skipped: string[];
  /** Intervals of the syscall-number line the binary search tells apart. */
  intervals: number;
}

// ---- intermediate form -------------------------------------------------------------------

type Label = { id: number };
type Item =
  | { t: "label"; label: Label }
  | { t: "ld"; off: number }
  | { t: "and"; k: number }
  | { t: "ret"; k: number }
  | { t: "jmp"; code: number; k: number; T: Label; F: Label };

class Asm {
  items: Item[] = [];
  #next = 0;
  label(): Label {
    return { id: this.#next++ };
  }
  place(label: Label) {
    this.items.push({ t: "label", label });
  }
  ld(off: number) {
    this.items.push({ t: "ld", off });
  }
  and(k: number) {
    this.items.push({ t: "and", k: k >>> 0 });
  }
  ret(k: number) {
    this.items.push({ t: "ret", k: k >>> 0 });
  }
  jmp(code: number, k: number, T: Label, F: Label) {
    this.items.push({ t: "jmp", code, k: k >>> 0, T, F });
  }
}

/**
 * Lays out the items, turning every conditional jump whose target is more than 255
 * instructions ahead into a short jump to a `JA` trampoline placed right after it.
 */
function assemble(items: Item[]): Uint8Array {
  // size of each jmp: 1 (near), 2 ("t" or "f" far: one trampoline), 3 (both far)
  const size = new Map<number, { n: number; far: "t" | "f" | "" }>();
  items.forEach((it, i) => it.t === "jmp" && size.set(i, { n: 1, far: "" }));
  let pos: number[] = [];
  let labelPos = new Map<number, number>();
  const layout = () => {
    pos = [];
    labelPos = new Map();
    let p = 0;
    items.forEach((it, i) => {
      pos.push(p);
      if (it.t === "label") labelPos.set(it.label.id, p);
      else p += it.t === "jmp" ? size.get(i)!.n : 1;
    });
    return p;
  };
  for (let changed = true; changed;) {
    changed = false;
    layout();
    items.forEach((it, i) => {
      if (it.t !== "jmp") return;
      const s = size.get(i)!;
      const p = pos[i];
      const t = labelPos.get(it.T.id)! - (p + 1);
      const f = labelPos.get(it.F.id)! - (p + 1);
      let want: { n: number; far: "t" | "f" | "" };
      if (s.n === 1 && t <= 255 && f <= 255) want = s;
      else if (s.n <= 2 && s.far !== "f" && f <= 255) want = { n: 2, far: "t" };
      else if (s.n <= 2 && s.far !== "t" && t <= 255) want = { n: 2, far: "f" };
      else want = { n: 3, far: "" };
      if (want.n !== s.n || want.far !== s.far) {
        size.set(i, want);
        changed = true;
      }
    });
  }
  const total = layout();
  if (total > BPF_MAXINSNS) {
    throw new SeccompError([
      `seccomp: the program has ${total} instructions, more than the kernel's ${BPF_MAXINSNS}`,
    ]);
  }
  const out = new Uint8Array(total * 8);
  const dv = new DataView(out.buffer);
  let p = 0;
  const put = (code: number, jt: number, jf: number, k: number) => {
    if (jt < 0 || jt > 255 || jf < 0 || jf > 255 || k < 0) {
      throw new Error(`seccomp: internal error: bad jump at ${p} (${jt}, ${jf}, ${k})`);
    }
    dv.setUint16(p * 8, code, true);
    dv.setUint8(p * 8 + 2, jt);
    dv.setUint8(p * 8 + 3, jf);
    dv.setUint32(p * 8 + 4, k >>> 0, true);
    p++;
  };
  items.forEach((it, i) => {
    switch (it.t) {
      case "label":
        return;
      case "ld":
        return put(BPF.LD_W_ABS, 0, 0, it.off);
      case "and":
        return put(BPF.ALU_AND_K, 0, 0, it.k);
      case "ret":
        return put(BPF.RET_K, 0, 0, it.k);
      case "jmp": {
        const s = size.get(i)!;
        const T = labelPos.get(it.T.id)!;
        const F = labelPos.get(it.F.id)!;
        const at = p;
        if (s.n === 1) put(it.code, T - (at + 1), F - (at + 1), it.k);
        else if (s.n === 2 && s.far === "t") {
          put(it.code, 0, F - (at + 1), it.k);
          put(BPF.JMP_JA, 0, 0, T - (at + 2));
        } else if (s.n === 2) {
          put(it.code, T - (at + 1), 0, it.k);
          put(BPF.JMP_JA, 0, 0, F - (at + 2));
        } else {
          put(it.code, 0, 1, it.k);
          put(BPF.JMP_JA, 0, 0, T - (at + 2));
          put(BPF.JMP_JA, 0, 0, F - (at + 3));
        }
      }
    }
  });
  return out;
}

// ---- rules -------------------------------------------------------------------------------

interface Rule {
  ret: number;
  conds: { index: number; op: ArgCondition["op"]; value: bigint; valueTwo: bigint }[];
}

const hi = (v: bigint) => Number((v >> 32n) & 0xffffffffn);
const lo = (v: bigint) => Number(v & 0xffffffffn);

/** One 64-bit condition: falls through when it holds, jumps to `fail` when not. */
function emitCond(a: Asm, c: Rule["conds"][number], fail: Label) {
  const pass = a.label();
  const H = hi(c.value);
  const L = lo(c.value);
  const step = a.label();
  switch (c.op) {
    case "SCMP_CMP_EQ":
      a.ld(argHi(c.index));
      a.jmp(BPF.JMP_JEQ_K, H, step, fail);
      a.place(step);
      a.ld(argLo(c.index));
      a.jmp(BPF.JMP_JEQ_K, L, pass, fail);
      break;
    case "SCMP_CMP_NE":
      a.ld(argHi(c.index));
      a.jmp(BPF.JMP_JEQ_K, H, step, pass);
      a.place(step);
      a.ld(argLo(c.index));
      a.jmp(BPF.JMP_JEQ_K, L, fail, pass);
      break;
    case "SCMP_CMP_GT":
    case "SCMP_CMP_GE": {
      // hi > H → pass; hi == H → compare lo; hi < H → fail (impossible when H is 0)
      a.ld(argHi(c.index));
      if (H === 0) a.jmp(BPF.JMP_JEQ_K, 0, step, pass);
      else {
        const eq = a.label();
        a.jmp(BPF.JMP_JGT_K, H, pass, eq);
        a.place(eq);
        a.jmp(BPF.JMP_JEQ_K, H, step, fail);
      }
      a.place(step);
      a.ld(argLo(c.index));
      a.jmp(c.op === "SCMP_CMP_GT" ? BPF.JMP_JGT_K : BPF.JMP_JGE_K, L, pass, fail);
      break;
    }
    case "SCMP_CMP_LT":
    case "SCMP_CMP_LE": {
      // hi < H → pass (impossible when H is 0); hi == H → compare lo; hi > H → fail
      a.ld(argHi(c.index));
      if (H !== 0) {
        const ge = a.label();
        a.jmp(BPF.JMP_JGE_K, H, ge, pass);
        a.place(ge);
      }
      a.jmp(BPF.JMP_JEQ_K, H, step, fail);
      a.place(step);
      a.ld(argLo(c.index));
      a.jmp(c.op === "SCMP_CMP_LT" ? BPF.JMP_JGE_K : BPF.JMP_JGT_K, L, fail, pass);
      break;
    }
    case "SCMP_CMP_MASKED_EQ": {
      // (arg & value) == valueTwo, word by word; a zero high mask needs no high-word test
      const MH = hi(c.value);
      const DH = hi(c.valueTwo);
      if (MH !== 0 || DH !== 0) {
        a.ld(argHi(c.index));
        if (MH !== 0xffffffff) a.and(MH);
        a.jmp(BPF.JMP_JEQ_K, DH, step, fail);
      }
      a.place(step);
      a.ld(argLo(c.index));
      if (L !== 0xffffffff) a.and(L);
      a.jmp(BPF.JMP_JEQ_K, lo(c.valueTwo), pass, fail);
      break;
    }
  }
  a.place(pass);
}

/** A syscall's rules, first match wins, then the default. */
function emitRules(a: Asm, rules: Rule[], dflt: number) {
  for (let i = 0; i < rules.length;) {
    const r = rules[i];
    if (r.conds.length === 0) {
      a.ret(r.ret);
      return;
    }
    // A run of rules with one action and one EQ test each on the same argument and high word:
    // load the words once and test the low word against each value in turn.
    const c0 = r.conds[0];
    let j = i + 1;
    if (r.conds.length === 1 && c0.op === "SCMP_CMP_EQ") {
      while (
        j < rules.length && rules[j].ret === r.ret && rules[j].conds.length === 1 &&
        rules[j].conds[0].op === "SCMP_CMP_EQ" && rules[j].conds[0].index === c0.index &&
        hi(rules[j].conds[0].value) === hi(c0.value)
      ) j++;
    }
    const next = a.label();
    if (j - i > 1) {
      const step = a.label();
      const match = a.label();
      a.ld(argHi(c0.index));
      a.jmp(BPF.JMP_JEQ_K, hi(c0.value), step, next);
      a.place(step);
      a.ld(argLo(c0.index));
      for (let k = i; k < j; k++) {
        const cont = k === j - 1 ? next : a.label();
        a.jmp(BPF.JMP_JEQ_K, lo(rules[k].conds[0].value), match, cont);
        if (k !== j - 1) a.place(cont);
      }
      a.place(match);
      a.ret(r.ret);
    } else {
      for (const c of r.conds) emitCond(a, c, next);
      a.ret(r.ret);
    }
    a.place(next);
    i = j;
  }
  a.ret(dflt);
}

type Leaf = { ret: number } | { rules: Rule[]; nr: number };
interface Interval {
  lo: number;
  leaf: Leaf;
}

/** Compiles and reports what it did; see `compile` for the bytes alone. */
export function compileProgram(
  policy: SeccompPolicy,
  arch: Arch,
  opts: CompileOptions = {},
): Compiled {
  const p = assertPolicy(policy);
  const dflt = actionValue(p.defaultAction, p.defaultErrnoRet ?? EPERM);
  const denies = p.defaultAction !== "SCMP_ACT_ALLOW" && p.defaultAction !== "SCMP_ACT_LOG";
  const unknownErrno = opts.unknownErrno === undefined ? ENOSYS : opts.unknownErrno;
  const unknownRet = denies && unknownErrno !== null
    ? actionValue("SCMP_ACT_ERRNO", unknownErrno)
    : dflt;

  // Rules per syscall number, in policy order.
  const byNr = new Map<number, Rule[]>();
  const skipped = new Set<string>();
  for (const r of p.syscalls) {
    const ret = actionValue(r.action, r.errnoRet ?? EPERM);
    const conds = (r.args ?? []).map((c) => ({
      index: c.index,
      op: c.op,
      value: u64(c.value),
      valueTwo: u64(c.valueTwo ?? 0),
    }));
    for (const name of r.names) {
      const nr = syscallNumber(arch, name);
      if (nr === undefined) {
        skipped.add(name);
        continue;
      }
      const list = byNr.get(nr) ?? [];
      // rules after an unconditional one are never reached
      if (!list.some((x) => x.conds.length === 0)) list.push({ ret, conds });
      byNr.set(nr, list);
    }
  }
  const maxNamed = byNr.size ? Math.max(...byNr.keys()) : Infinity;
  const table = new Set(Object.values(SYSCALL_TABLES[arch]));
  const leafOf = (nr: number): Leaf => {
    const rules = byNr.get(nr);
    if (rules) {
      const live = [...rules];
      // trailing rules that decide what the default would decide change nothing
      while (live.length && live[live.length - 1].ret === dflt) live.pop();
      if (live.length === 0) return { ret: dflt };
      if (live[0].conds.length === 0) return { ret: live[0].ret };
      return { rules: live, nr };
    }
    return { ret: table.has(nr) && nr <= maxNamed ? dflt : unknownRet };
  };

  // Cut the number line where the outcome may change, then merge equal neighbours.
  const cuts = new Set<number>([0]);
  for (const n of [...table, ...byNr.keys()]) {
    cuts.add(n);
    cuts.add(n + 1);
  }
  if (Number.isFinite(maxNamed)) cuts.add(maxNamed + 1);
  const top = arch === "x86_64" ? X32_SYSCALL_BIT : 2 ** 32;
  const points = [...cuts].filter((c) => c < top).sort((a, b) => a - b);
  const intervals: Interval[] = [];
  for (const lo of points) {
    const leaf = leafOf(lo);
    const prev = intervals[intervals.length - 1];
    if (prev && "ret" in prev.leaf && "ret" in leaf && prev.leaf.ret === leaf.ret) continue;
    intervals.push({ lo, leaf });
  }

  const a = new Asm();
  const archOk = a.label();
  const badArch = a.label();
  a.ld(SECCOMP_DATA.arch);
  a.jmp(BPF.JMP_JEQ_K, AUDIT_ARCH[arch], archOk, badArch);
  a.place(badArch);
  a.ret(SECCOMP_RET_KILL_PROCESS);
  a.place(archOk);
  a.ld(SECCOMP_DATA.nr);
  if (arch === "x86_64") {
    const x32 = a.label();
    const native = a.label();
    a.jmp(BPF.JMP_JGE_K, X32_SYSCALL_BIT, x32, native);
    a.place(x32);
    a.ret(SECCOMP_RET_KILL_PROCESS);
    a.place(native);
  }
  const tree = (i: number, j: number) => {
    if (j - i === 1) {
      const leaf = intervals[i].leaf;
      if ("ret" in leaf) a.ret(leaf.ret);
      else emitRules(a, leaf.rules, dflt);
      return;
    }
    const mid = (i + j) >> 1;
    const left = a.label();
    const right = a.label();
    a.jmp(BPF.JMP_JGE_K, intervals[mid].lo, right, left);
    a.place(left);
    tree(i, mid);
    a.place(right);
    tree(mid, j);
  };
  tree(0, intervals.length);
  const program = assemble(a.items);
  return {
    program,
    length: program.length / 8,
    skipped: [...skipped].sort(),
    intervals: intervals.length,
  };
}

/** seccomp(2) SECCOMP_FILTER_FLAG_* values. */
export const FILTER_FLAG_VALUES: Readonly<Record<FilterFlag, number>> = {
  SECCOMP_FILTER_FLAG_TSYNC: 1,
  SECCOMP_FILTER_FLAG_LOG: 2,
  SECCOMP_FILTER_FLAG_SPEC_ALLOW: 4,
  SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV: 32,
};

/** The `flags` argument of seccomp(SECCOMP_SET_MODE_FILTER) a policy asks for (0 if none). */
export function filterFlags(policy: SeccompPolicy): number {
  let flags = (policy.flags ?? []).reduce((f, name) => f | FILTER_FLAG_VALUES[name], 0);
  if (policy.syscalls.some((r) => r.action === "SCMP_ACT_NOTIFY")) {
    flags |= SECCOMP_FILTER_FLAG_NEW_LISTENER;
    // TSYNC with a listener: the kernel wants TSYNC_ESRCH too (Linux 5.7+).
    if (flags & FILTER_FLAG_VALUES.SECCOMP_FILTER_FLAG_TSYNC) {
      flags |= SECCOMP_FILTER_FLAG_TSYNC_ESRCH;
    }
  }
  return flags;
}

/** seccomp(2) returns the filter's listener fd (SCMP_ACT_NOTIFY rules): Linux 5.0+. */
export const SECCOMP_FILTER_FLAG_NEW_LISTENER = 8;
const SECCOMP_FILTER_FLAG_TSYNC_ESRCH = 16;

/** The policy as a seccomp BPF program for `arch` (struct sock_filter[], little-endian). */
export function compile(policy: SeccompPolicy, arch: Arch, opts: CompileOptions = {}): Uint8Array {
  return compileProgram(policy, arch, opts).program;
}

/** One decoded instruction. */
export interface Insn {
  code: number;
  jt: number;
  jf: number;
  k: number;
}

export function decode(program: Uint8Array): Insn[] {
  const dv = new DataView(program.buffer, program.byteOffset, program.byteLength);
  const out: Insn[] = [];
  for (let i = 0; i + 8 <= program.byteLength; i += 8) {
    out.push({
      code: dv.getUint16(i, true),
      jt: dv.getUint8(i + 2),
      jf: dv.getUint8(i + 3),
      k: dv.getUint32(i + 4, true),
    });
  }
  return out;
}

/** The most instructions any one call can execute (the program is a DAG: jumps go forward). */
export function longestPath(program: Uint8Array): number {
  const insns = decode(program);
  const longest = new Array<number>(insns.length + 1).fill(0);
  for (let i = insns.length - 1; i >= 0; i--) {
    const { code, jt, jf, k } = insns[i];
    if (code === BPF.RET_K) longest[i] = 1;
    else if (code === BPF.JMP_JA) longest[i] = 1 + longest[i + 1 + k];
    else if ((code & 0x07) === 0x05) {
      longest[i] = 1 + Math.max(longest[i + 1 + jt], longest[i + 1 + jf]);
    } else longest[i] = 1 + longest[i + 1];
  }
  return longest[0];
}

const hex = (k: number) => `0x${(k >>> 0).toString(16)}`;

/** A readable listing, one instruction a line, with syscall names and action names. */
export function disassemble(program: Uint8Array, arch?: Arch): string {
  const names = new Map<number, string>(
    arch ? Object.entries(SYSCALL_TABLES[arch]).map(([n, v]) => [v, n]) : [],
  );
  const field = (k: number) =>
    k === SECCOMP_DATA.nr
      ? "nr"
      : k === SECCOMP_DATA.arch
      ? "arch"
      : k >= SECCOMP_DATA.args
      ? `args[${(k - 16) >> 3}].${(k - 16) % 8 ? "hi" : "lo"}`
      : `[${k}]`;
  let loaded = -1; // the field last loaded in program order: names are shown for nr compares
  return decode(program).map(({ code, jt, jf, k }, i) => {
    const at = String(i).padStart(4, " ");
    const to = (o: number) => String(i + 1 + o);
    const cond = (op: string) => {
      const nm = loaded === SECCOMP_DATA.nr ? names.get(k) : undefined;
      const note = nm !== undefined ? `  ; ${nm}` : "";
      return `${op} #${k < 1024 ? k : hex(k)}  jt ${to(jt)}  jf ${to(jf)}${note}`;
    };
    let text: string;
    switch (code) {
      case BPF.LD_W_ABS:
        loaded = k;
        text = `ld   ${field(k)}`;
        break;
      case BPF.ALU_AND_K:
        text = `and  #${hex(k)}`;
        break;
      case BPF.RET_K:
        text = `ret  ${retName(k)}`;
        break;
      case BPF.JMP_JA:
        text = `ja   ${to(k)}`;
        break;
      case BPF.JMP_JEQ_K:
        text = cond("jeq ");
        break;
      case BPF.JMP_JGT_K:
        text = cond("jgt ");
        break;
      case BPF.JMP_JGE_K:
        text = cond("jge ");
        break;
      case BPF.JMP_JSET_K:
        text = cond("jset");
        break;
      default:
        text = `.insn code=${hex(code)} jt=${jt} jf=${jf} k=${hex(k)}`;
    }
    return `${at}: ${text}`;
  }).join("\n");
}
