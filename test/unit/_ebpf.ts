/**
 * A small eBPF interpreter for cgroup device programs, written for the tests and independent
 * of the compiler (core/cgroups/devfilter.ts). It knows exactly the instructions the compiler
 * emits: 32-bit loads from the context, ALU32 AND/RSH/MOV with an immediate, ALU32 MOV from a
 * register, JEQ/JNE with an immediate (JMP and JMP32), and EXIT. `verify` checks what the
 * kernel's verifier would for that subset: known opcodes with their unused fields zero, jumps
 * forward and inside the program, no unreachable instruction, no falling off the end, no read
 * of an unset register, loads only through the context pointer, aligned and inside the 12-byte
 * `struct bpf_cgroup_dev_ctx`, and R0 a known 0 or 1 at every exit.
 */

export interface DevCtx {
  /** "b", "c", or the raw BPF_DEVCG_DEV_* value (1 block, 2 char). */
  type: "b" | "c" | number;
  /** A subset of "rwm", or the raw BPF_DEVCG_ACC_* bits (1 mknod, 2 read, 4 write). */
  access: string | number;
  major: number;
  minor: number;
}

export interface Result {
  /** R0 at exit. */
  ret: number;
  /** Instructions executed. */
  steps: number;
}

interface Insn {
  code: number;
  dst: number;
  src: number;
  off: number;
  imm: number;
}

const LDX_W_MEM = 0x61;
const AND32_K = 0x54, RSH32_K = 0x74, MOV32_K = 0xb4, MOV32_X = 0xbc;
const JEQ_K = 0x15, JNE_K = 0x55, JEQ32_K = 0x16, JNE32_K = 0x56;
const EXIT = 0x95;
const CTX_SIZE = 12;

function decode(prog: Uint8Array): Insn[] {
  if (prog.byteLength % 8) {
    throw new Error(`program length ${prog.byteLength} is not a multiple of 8`);
  }
  const dv = new DataView(prog.buffer, prog.byteOffset, prog.byteLength);
  const out: Insn[] = [];
  for (let i = 0; i < prog.byteLength; i += 8) {
    const regs = dv.getUint8(i + 1);
    out.push({
      code: dv.getUint8(i),
      dst: regs & 0x0f,
      src: regs >> 4,
      off: dv.getInt16(i + 2, true),
      imm: dv.getInt32(i + 4, true),
    });
  }
  return out;
}

/** What the verifier knows of a register. */
type Reg =
  | { kind: "unset" }
  | { kind: "ctx" }
  | { kind: "fp" }
  | { kind: "scalar"; value?: bigint };

const UNSET: Reg = { kind: "unset" };
const M64 = (1n << 64n) - 1n;
const M32 = 0xffffffffn;

function join(a: Reg, b: Reg): Reg {
  if (a.kind === "scalar" && b.kind === "scalar") {
    return a.value !== undefined && a.value === b.value ? a : { kind: "scalar" };
  }
  return a.kind === b.kind ? a : UNSET;
}

/** Throws, naming the instruction, on anything the kernel's verifier would refuse. */
export function verify(prog: Uint8Array): void {
  const insns = decode(prog);
  const n = insns.length;
  if (n === 0 || n > 4096) throw new Error(`program has ${n} instructions (1..4096 allowed)`);
  const states: (Reg[] | undefined)[] = new Array(n);
  const entry: Reg[] = Array.from({ length: 11 }, () => UNSET);
  entry[1] = { kind: "ctx" };
  entry[10] = { kind: "fp" };
  states[0] = entry;
  const flow = (from: number, to: number, regs: Reg[]) => {
    if (to >= n) throw new Error(`insn ${from}: falls or jumps to ${to}, past the end`);
    const s = states[to];
    states[to] = s ? s.map((r, k) => join(r, regs[k])) : regs.slice();
  };
  for (let i = 0; i < n; i++) {
    const { code, dst, src, off, imm } = insns[i];
    const at = `insn ${i} (code 0x${code.toString(16).padStart(2, "0")})`;
    const regs = states[i];
    if (!regs) throw new Error(`${at}: unreachable`);
    const out = regs.slice();
    if (dst > 10 || src > 10) throw new Error(`${at}: register r${Math.max(dst, src)}`);
    const scalar = (r: number, what: string): Reg & { kind: "scalar" } => {
      const v = regs[r];
      if (v.kind === "unset") throw new Error(`${at}: ${what} r${r} is read before it is set`);
      if (v.kind !== "scalar") throw new Error(`${at}: ${what} r${r} is a pointer (${v.kind})`);
      return v;
    };
    const writable = () => {
      if (dst === 10) throw new Error(`${at}: r10 is read-only`);
    };
    const zero = (fields: Record<string, number>) => {
      for (const [k, v] of Object.entries(fields)) {
        if (v !== 0) throw new Error(`${at}: reserved field ${k} is ${v}`);
      }
    };
    switch (code) {
      case LDX_W_MEM: {
        zero({ imm });
        writable();
        const base = regs[src];
        if (base.kind !== "ctx") {
          throw new Error(`${at}: load through r${src}, which is not the context pointer`);
        }
        if (off < 0 || off % 4 || off + 4 > CTX_SIZE) {
          throw new Error(`${at}: load at ${off} is outside the ${CTX_SIZE}-byte context`);
        }
        out[dst] = { kind: "scalar" };
        break;
      }
      case AND32_K:
      case RSH32_K:
      case MOV32_K: {
        zero({ src, off });
        writable();
        if (code === RSH32_K && (imm < 0 || imm > 31)) throw new Error(`${at}: shift by ${imm}`);
        if (code === MOV32_K) {
          out[dst] = { kind: "scalar", value: BigInt(imm >>> 0) };
        } else {
          const v = scalar(dst, "operand").value;
          out[dst] = v === undefined ? { kind: "scalar" } : {
            kind: "scalar",
            value: code === AND32_K ? (v & BigInt(imm >>> 0)) & M32 : (v & M32) >> BigInt(imm),
          };
        }
        break;
      }
      case MOV32_X: {
        zero({ off, imm });
        writable();
        const v = scalar(src, "source").value;
        out[dst] = { kind: "scalar", value: v === undefined ? undefined : v & M32 };
        break;
      }
      case JEQ_K:
      case JNE_K:
      case JEQ32_K:
      case JNE32_K:
        zero({ src });
        scalar(dst, "compared");
        if (off < 0) throw new Error(`${at}: backward jump (off ${off})`);
        flow(i, i + 1 + off, out);
        break;
      case EXIT: {
        zero({ dst, src, off, imm });
        const r0 = regs[0];
        if (r0.kind !== "scalar") throw new Error(`${at}: exit with R0 ${r0.kind}`);
        if (r0.value !== 0n && r0.value !== 1n) {
          throw new Error(`${at}: exit with R0 not a known 0 or 1 (${r0.value ?? "unknown"})`);
        }
        continue; // no fall-through
      }
      default:
        throw new Error(`${at}: unknown or unsupported opcode`);
    }
    flow(i, i + 1, out);
  }
}

const TYPES = { b: 1, c: 2 } as const;

function accessBits(a: string | number): number {
  if (typeof a === "number") return a;
  let bits = 0;
  for (const ch of a) {
    const b = ({ m: 1, r: 2, w: 4 } as Record<string, number>)[ch];
    if (!b) throw new Error(`access letter ${ch}`);
    bits |= b;
  }
  return bits;
}

/** The 12-byte context the kernel passes (little-endian). */
export function devCtx(c: DevCtx): Uint8Array {
  const b = new Uint8Array(CTX_SIZE);
  const dv = new DataView(b.buffer);
  const type = typeof c.type === "number" ? c.type : TYPES[c.type];
  dv.setUint32(0, ((accessBits(c.access) << 16) | type) >>> 0, true);
  dv.setUint32(4, c.major >>> 0, true);
  dv.setUint32(8, c.minor >>> 0, true);
  return b;
}

/** Verifies, then runs the program on the context; returns R0 at exit. */
export function run(prog: Uint8Array, c: DevCtx): Result {
  verify(prog);
  const insns = decode(prog);
  const ctx = new DataView(devCtx(c).buffer);
  const CTX = Symbol("ctx");
  const regs: (bigint | typeof CTX)[] = new Array(11).fill(0n);
  regs[1] = CTX;
  const val = (r: number) => {
    const v = regs[r];
    if (typeof v !== "bigint") throw new Error(`r${r} is a pointer`);
    return v;
  };
  let pc = 0, steps = 0;
  for (;;) {
    if (++steps > 100_000) throw new Error("too many steps");
    const { code, dst, src, off, imm } = insns[pc++];
    switch (code) {
      case LDX_W_MEM:
        regs[dst] = BigInt(ctx.getUint32(off, true));
        break;
      case AND32_K:
        regs[dst] = val(dst) & BigInt(imm >>> 0) & M32;
        break;
      case RSH32_K:
        regs[dst] = (val(dst) & M32) >> BigInt(imm);
        break;
      case MOV32_K:
        regs[dst] = BigInt(imm >>> 0);
        break;
      case MOV32_X:
        regs[dst] = val(src) & M32;
        break;
      case JEQ_K:
      case JNE_K: {
        // 64-bit compare with the immediate sign-extended
        const eq = val(dst) === (BigInt(imm) & M64);
        if (eq === (code === JEQ_K)) pc += off;
        break;
      }
      case JEQ32_K:
      case JNE32_K: {
        const eq = (val(dst) & M32) === BigInt(imm >>> 0);
        if (eq === (code === JEQ32_K)) pc += off;
        break;
      }
      case EXIT:
        return { ret: Number(val(0)), steps };
      default:
        throw new Error(`insn ${pc - 1}: opcode 0x${code.toString(16)}`);
    }
  }
}
