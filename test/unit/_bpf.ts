/**
 * A small classic-BPF interpreter for seccomp programs, written for the tests and independent
 * of the compiler: it runs a program on a struct seccomp_data and returns the action value.
 * `verify` checks what the kernel's checker would (every jump lands inside the program, only
 * forward; loads are aligned and inside seccomp_data; the last instruction returns).
 */

export interface SeccompData {
  nr: number;
  arch: number;
  instructionPointer?: bigint;
  /** Up to six 64-bit arguments (missing ones are 0). */
  args?: (bigint | number)[];
}

export interface Result {
  /** The SECCOMP_RET_* value returned. */
  ret: number;
  /** Instructions executed. */
  steps: number;
}

const BPF_CLASS = (c: number) => c & 0x07;
const LD = 0x00, LDX = 0x01, ST = 0x02, STX = 0x03, ALU = 0x04, JMP = 0x05, RET = 0x06, MISC = 0x07;
const SIZE_W = 0x00, MODE_ABS = 0x20, MODE_IMM = 0x00, MODE_MEM = 0x60;
const SRC_X = 0x08;

interface Insn {
  code: number;
  jt: number;
  jf: number;
  k: number;
}

function decode(prog: Uint8Array): Insn[] {
  if (prog.byteLength % 8) {
    throw new Error(`program length ${prog.byteLength} is not a multiple of 8`);
  }
  const dv = new DataView(prog.buffer, prog.byteOffset, prog.byteLength);
  const out: Insn[] = [];
  for (let i = 0; i < prog.byteLength; i += 8) {
    out.push({
      code: dv.getUint16(i, true),
      jt: dv.getUint8(i + 2),
      jf: dv.getUint8(i + 3),
      k: dv.getUint32(i + 4, true),
    });
  }
  return out;
}

/** Throws on anything the kernel's checker would refuse (for the subset seccomp uses). */
export function verify(prog: Uint8Array): void {
  const insns = decode(prog);
  const n = insns.length;
  if (n === 0 || n > 4096) throw new Error(`program has ${n} instructions (1..4096 allowed)`);
  insns.forEach(({ code, jt, jf, k }, i) => {
    const cls = BPF_CLASS(code);
    const at = `insn ${i} (code 0x${code.toString(16)})`;
    const target = (off: number) => {
      if (i + 1 + off >= n) throw new Error(`${at}: jump to ${i + 1 + off} is outside the program`);
    };
    switch (cls) {
      case LD:
        if (code === (LD | SIZE_W | MODE_ABS)) {
          if (k % 4 || k + 4 > 64) throw new Error(`${at}: load at ${k} outside seccomp_data`);
        } else if (code === (LD | MODE_IMM)) { /* ok */ }
        else if (code === (LD | MODE_MEM)) {
          if (k > 15) throw new Error(`${at}: scratch slot ${k}`);
        } else throw new Error(`${at}: unsupported load`);
        break;
      case LDX:
        if (code !== (LDX | MODE_IMM) && code !== (LDX | MODE_MEM)) {
          throw new Error(`${at}: unsupported ldx`);
        }
        break;
      case ST:
      case STX:
        if (k > 15) throw new Error(`${at}: scratch slot ${k}`);
        break;
      case ALU:
        if ((code & 0xf0) !== 0x50 && (code & 0xf0) !== 0x40 && (code & 0xf0) !== 0x00) {
          throw new Error(`${at}: unsupported alu op`);
        }
        break;
      case JMP:
        if ((code & 0xf0) === 0x00) target(k);
        else if ([0x10, 0x20, 0x30, 0x40].includes(code & 0xf0)) {
          target(jt);
          target(jf);
        } else throw new Error(`${at}: unsupported jump`);
        break;
      case RET:
        if (code !== (RET | 0x00)) throw new Error(`${at}: only RET K is supported`);
        break;
      case MISC:
        break;
    }
  });
  if (BPF_CLASS(insns[n - 1].code) !== RET) throw new Error(`the last instruction does not return`);
}

function dataWord(d: SeccompData, off: number): number {
  const args = d.args ?? [];
  if (off === 0) return d.nr >>> 0;
  if (off === 4) return d.arch >>> 0;
  const word = (v: bigint, high: boolean) =>
    Number(high ? (v >> 32n) & 0xffffffffn : v & 0xffffffffn);
  if (off === 8 || off === 12) return word(d.instructionPointer ?? 0n, off === 12);
  const i = (off - 16) >> 3;
  return word(BigInt.asUintN(64, BigInt(args[i] ?? 0)), (off - 16) % 8 === 4);
}

/** Runs the program on `data`. */
export function run(prog: Uint8Array, data: SeccompData): Result {
  verify(prog);
  const insns = decode(prog);
  let A = 0, X = 0, pc = 0, steps = 0;
  const mem = new Array<number>(16).fill(0);
  for (;;) {
    const { code, jt, jf, k } = insns[pc];
    steps++;
    pc++;
    switch (BPF_CLASS(code)) {
      case LD:
        A = code === (LD | MODE_IMM) ? k : code === (LD | MODE_MEM) ? mem[k] : dataWord(data, k);
        break;
      case LDX:
        X = code === (LDX | MODE_IMM) ? k : mem[k];
        break;
      case ST:
        mem[k] = A;
        break;
      case STX:
        mem[k] = X;
        break;
      case ALU: {
        const v = code & SRC_X ? X : k;
        const op = code & 0xf0;
        A = (op === 0x50 ? A & v : op === 0x40 ? A | v : A + v) >>> 0;
        break;
      }
      case JMP: {
        const v = code & SRC_X ? X : k;
        switch (code & 0xf0) {
          case 0x00:
            pc += k;
            break;
          case 0x10:
            pc += A === v ? jt : jf;
            break;
          case 0x20:
            pc += A > v ? jt : jf;
            break;
          case 0x30:
            pc += A >= v ? jt : jf;
            break;
          case 0x40:
            pc += (A & v) !== 0 ? jt : jf;
            break;
        }
        break;
      }
      case RET:
        return { ret: k >>> 0, steps };
      case MISC:
        if (code === (MISC | 0x00)) X = A;
        else A = X;
        break;
    }
  }
}
