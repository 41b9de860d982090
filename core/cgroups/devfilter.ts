/**
 * The device allow-list: OCI `linux.resources.devices` rules compiled to a cgroup v2
 * `BPF_PROG_TYPE_CGROUP_DEVICE` eBPF program, and rendered as cgroup v1 `devices.deny` /
 * `devices.allow` lines with the same meaning.
 *
 * Meaning of a rule list (on v2, and on v1 as far as v1 can say it: see `v1Rules`): each rule says, for the devices it names, that
 * its access bits (r, w, m) are allowed or denied; a later rule overrides an earlier one, bit by
 * bit; a bit no rule speaks of is denied. A request (the kernel asks for one access: m for
 * mknod, r, w or rw for open) is allowed when every bit it asks for is allowed. So `c 1:3 rwm`
 * then a deny of `c 1:3 w` leaves `r` and `m`: opening read-write is refused, read-only is not.
 * For rules that do not overlap with different access this is runc's "last matching rule wins,
 * a request matches when all its bits are in the rule's access, default deny"; taking the bits
 * one at a time closes the hole where a deny of `w` would not match an `rw` request and an
 * earlier allow of `rwm` would then grant the write.
 *
 * The program, with R1 = `struct bpf_cgroup_dev_ctx { u32 access_type; u32 major; u32 minor }`
 * and `access_type = access << 16 | type`:
 *
 *   w3 = access_type >> 16                      the access bits still undecided
 *   if r3 == 0: r0 = 0; exit                    a request for nothing is refused
 *   then one block per rule, the last rule first (r2 is scratch):
 *     w2 = access_type & 0xffff; if r2 != TYPE goto next      (left out for type "a")
 *     r2 = major; if r2 != MAJOR goto next                    (left out for a wildcard)
 *     r2 = minor; if r2 != MINOR goto next                    (left out for a wildcard)
 *     allow:  w3 &= ~ACCESS; if r3 != 0 goto next; r0 = 1; exit
 *     deny:   w2 = w3; w2 &= ACCESS; if r2 == 0 goto next; r0 = 0; exit
 *             (a deny of rwm is just r0 = 0; exit: when the undecided bits are only bits no
 *             rule can allow, the answer is deny anyway)
 *   r0 = 0; exit                                no rule decided every bit
 *
 * Only forward jumps, all of them within one block; every path ends in exit with R0 a constant
 * 0 or 1; 32-bit loads from R1 at 0, 4 and 8; ALU32 AND/RSH/MOV; JMP with an immediate (JMP32
 * only for a major or minor of 2^31 or more, which the 64-bit compare with a sign-extended
 * immediate would get wrong). Each block loads the numbers it compares instead of keeping them
 * in registers from the start: a register left holding a known number on the way to the next
 * block would make the verifier keep one state per rule there, and its work grow with the
 * square of the rule count (on Linux 6.18, 300 rules: 140,000 instructions processed; 1,000
 * rules: over its limit of a million); reloaded, it stays linear (1,000 rules: about 45,000).
 * Rules before a deny of everything (`a *:* rwm`) are dropped: it overrides them all.
 */

export interface DeviceRule {
  allow: boolean;
  /** "a" = block and char devices. */
  type: "a" | "b" | "c";
  /** null = any. */
  major: number | null;
  /** null = any. */
  minor: number | null;
  /** A non-empty subset of "rwm". */
  access: string;
}

/** bpf_cgroup_dev_ctx.access_type, low 16 bits. */
export const BPF_DEVCG_DEV_BLOCK = 1;
export const BPF_DEVCG_DEV_CHAR = 2;
/** bpf_cgroup_dev_ctx.access_type, high 16 bits. */
export const BPF_DEVCG_ACC_MKNOD = 1;
export const BPF_DEVCG_ACC_READ = 2;
export const BPF_DEVCG_ACC_WRITE = 4;
const RWM = BPF_DEVCG_ACC_MKNOD | BPF_DEVCG_ACC_READ | BPF_DEVCG_ACC_WRITE;

/** The program type and the attach type to load and attach it with. */
export const BPF_PROG_TYPE_CGROUP_DEVICE = 15;
export const BPF_CGROUP_DEVICE = 6;

const allowed = (type: "b" | "c", major: number | null, minor: number | null, access: string) => ({
  allow: true,
  type,
  major,
  minor,
  access,
});

/**
 * micro's default devices, as runc and Docker: deny everything, allow mknod of any char or block
 * device (Docker's `c *:* m`, `b *:* m`: creating a node opens nothing), and full access to
 * null, zero, full, random, urandom, tty, ptmx and the pts devices.
 */
export const DEFAULT_DEVICES: DeviceRule[] = [
  { allow: false, type: "a", major: null, minor: null, access: "rwm" },
  allowed("c", null, null, "m"),
  allowed("b", null, null, "m"),
  allowed("c", 1, 3, "rwm"), // /dev/null
  allowed("c", 1, 5, "rwm"), // /dev/zero
  allowed("c", 1, 7, "rwm"), // /dev/full
  allowed("c", 1, 8, "rwm"), // /dev/random
  allowed("c", 1, 9, "rwm"), // /dev/urandom
  allowed("c", 5, 0, "rwm"), // /dev/tty
  allowed("c", 5, 2, "rwm"), // /dev/ptmx
  allowed("c", 136, null, "rwm"), // /dev/pts/*
];

// ---------------------------------------------------------------------------------------------
// Rules

interface Norm {
  allow: boolean;
  /** 0 = any, else BPF_DEVCG_DEV_*. */
  type: number;
  major: number | null;
  minor: number | null;
  /** BPF_DEVCG_ACC_* bits, non-zero. */
  access: number;
}

function accessBits(access: string, at: string): number {
  if (typeof access !== "string" || access === "") {
    throw new TypeError(`${at}: access must be a non-empty subset of "rwm"`);
  }
  let bits = 0;
  for (const ch of access) {
    if (ch === "r") bits |= BPF_DEVCG_ACC_READ;
    else if (ch === "w") bits |= BPF_DEVCG_ACC_WRITE;
    else if (ch === "m") bits |= BPF_DEVCG_ACC_MKNOD;
    else throw new TypeError(`${at}: access ${JSON.stringify(access)}: unknown letter ${ch}`);
  }
  return bits;
}

function devNumber(v: number | null, what: string, at: string): number | null {
  if (v === null || v === undefined) return null;
  if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) {
    throw new RangeError(`${at}: ${what} ${v} is not a device number (0..4294967295 or null)`);
  }
  return v;
}

function normalize(rules: readonly DeviceRule[]): Norm[] {
  return rules.map((r, i) => {
    const at = `device rule ${i} (${formatRule(r)})`;
    const type = r.type === "a"
      ? 0
      : r.type === "b"
      ? BPF_DEVCG_DEV_BLOCK
      : r.type === "c"
      ? BPF_DEVCG_DEV_CHAR
      : -1;
    if (type < 0) throw new TypeError(`${at}: type must be "a", "b" or "c"`);
    return {
      allow: !!r.allow,
      type,
      major: devNumber(r.major, "major", at),
      minor: devNumber(r.minor, "minor", at),
      access: accessBits(r.access, at),
    };
  });
}

const accessString = (bits: number) =>
  (bits & BPF_DEVCG_ACC_READ ? "r" : "") + (bits & BPF_DEVCG_ACC_WRITE ? "w" : "") +
  (bits & BPF_DEVCG_ACC_MKNOD ? "m" : "");

/** `allow c 1:3 rwm`, `deny a *:* rwm`, `allow c 136:* rw` (for messages). */
export function formatRule(r: DeviceRule): string {
  const n = (v: number | null) => (v === null || v === undefined ? "*" : String(v));
  return `${r.allow ? "allow" : "deny"} ${r.type} ${n(r.major)}:${n(r.minor)} ${r.access}`;
}

// ---------------------------------------------------------------------------------------------
// eBPF encoding

const BPF_LDX = 0x01, BPF_ALU = 0x04, BPF_JMP = 0x05, BPF_JMP32 = 0x06;
const BPF_W = 0x00, BPF_MEM = 0x60;
const BPF_K = 0x00, BPF_X = 0x08;
const BPF_AND = 0x50, BPF_RSH = 0x70, BPF_MOV = 0xb0;
const BPF_JEQ = 0x10, BPF_JNE = 0x50, BPF_EXIT = 0x90;

interface Insn {
  code: number;
  dst: number;
  src: number;
  off: number;
  imm: number;
  /** A jump to a label, resolved into `off` at the end. */
  to?: Label;
}

/** A place in the program, known once the code before it is emitted. */
interface Label {
  at: number;
}

const ldxw = (dst: number, src: number, off: number): Insn => ({
  code: BPF_LDX | BPF_W | BPF_MEM,
  dst,
  src,
  off,
  imm: 0,
});
const alu32 = (op: number, dst: number, imm: number): Insn => ({
  code: BPF_ALU | op | BPF_K,
  dst,
  src: 0,
  off: 0,
  imm: imm | 0,
});
const mov32r = (dst: number, src: number): Insn => ({
  code: BPF_ALU | BPF_MOV | BPF_X,
  dst,
  src,
  off: 0,
  imm: 0,
});
/** if dst OP imm goto to; JMP32 when imm does not fit a sign-extended s32 (≥ 2^31). */
const jmpK = (op: number, dst: number, imm: number, to: Label): Insn => ({
  code: (imm > 0x7fffffff ? BPF_JMP32 : BPF_JMP) | op | BPF_K,
  dst,
  src: 0,
  off: 0,
  imm: imm | 0,
  to,
});
const exit = (): Insn => ({ code: BPF_JMP | BPF_EXIT, dst: 0, src: 0, off: 0, imm: 0 });
const ret = (v: 0 | 1): Insn[] => [alu32(BPF_MOV, 0, v), exit()];

function encode(insns: Insn[]): Uint8Array {
  const out = new Uint8Array(insns.length * 8);
  const dv = new DataView(out.buffer);
  insns.forEach((ins, i) => {
    let off = ins.off;
    if (ins.to) {
      off = ins.to.at - (i + 1);
      if (off < 0 || off > 0x7fff) throw new RangeError(`device program: jump offset ${off}`);
    }
    dv.setUint8(i * 8, ins.code);
    dv.setUint8(i * 8 + 1, (ins.src << 4) | ins.dst);
    dv.setInt16(i * 8 + 2, off, true);
    dv.setInt32(i * 8 + 4, ins.imm, true);
  });
  return out;
}

/**
 * The BPF_PROG_TYPE_CGROUP_DEVICE program (struct bpf_insn array, little-endian) enforcing
 * `rules` (see the module comment for the meaning). Throws on a malformed rule.
 */
export function deviceProgram(rules: readonly DeviceRule[]): Uint8Array {
  const norm = normalize(rules);
  const asked: Label = { at: -1 };
  const insns: Insn[] = [
    ldxw(3, 1, 0),
    alu32(BPF_RSH, 3, 16),
    jmpK(BPF_JNE, 3, 0, asked),
    ...ret(0),
  ];
  const prologue = asked.at = insns.length;
  for (let i = norm.length - 1; i >= 0; i--) {
    const r = norm[i];
    const everyDevice = r.type === 0 && r.major === null && r.minor === null;
    // A deny of everything overrides every rule before it: the default deny follows.
    if (everyDevice && !r.allow && r.access === RWM) break;
    const next: Label = { at: -1 };
    if (r.type !== 0) {
      insns.push(ldxw(2, 1, 0), alu32(BPF_AND, 2, 0xffff), jmpK(BPF_JNE, 2, r.type, next));
    }
    if (r.major !== null) insns.push(ldxw(2, 1, 4), jmpK(BPF_JNE, 2, r.major, next));
    if (r.minor !== null) insns.push(ldxw(2, 1, 8), jmpK(BPF_JNE, 2, r.minor, next));
    if (r.allow) {
      insns.push(alu32(BPF_AND, 3, ~r.access), jmpK(BPF_JNE, 3, 0, next), ...ret(1));
    } else if (r.access === RWM) {
      insns.push(...ret(0));
    } else {
      insns.push(mov32r(2, 3), alu32(BPF_AND, 2, r.access), jmpK(BPF_JEQ, 2, 0, next), ...ret(0));
    }
    next.at = insns.length;
    // An allow of everything decides every request it can: what follows is only the deny.
    if (everyDevice && r.allow && r.access === RWM) break;
  }
  // No rule left: deny everything, without the load.
  if (insns.length === prologue) return encode(ret(0));
  return encode([...insns, ...ret(0)]);
}

// ---------------------------------------------------------------------------------------------
// Disassembly

const ALU_NAMES: Record<number, string> = {
  0x00: "+=",
  0x10: "-=",
  0x20: "*=",
  0x30: "/=",
  0x40: "|=",
  0x50: "&=",
  0x60: "<<=",
  0x70: ">>=",
  0x90: "%=",
  0xa0: "^=",
  0xb0: "=",
  0xc0: "s>>=",
};
const JMP_NAMES: Record<number, string> = {
  0x10: "==",
  0x20: ">",
  0x30: ">=",
  0x40: "&",
  0x50: "!=",
  0x60: "s>",
  0x70: "s>=",
  0xa0: "<",
  0xb0: "<=",
  0xc0: "s<",
  0xd0: "s<=",
};
const SIZE_NAMES: Record<number, string> = { 0x00: "u32", 0x08: "u16", 0x10: "u8", 0x18: "u64" };

const BIT_OPS = new Set([0x40, 0x50, 0xa0]);
const hex32 = (v: number) => `0x${(v >>> 0).toString(16)}`;

/**
 * One line per instruction, in bpftool's notation: `r2 = *(u32 *)(r1 +0)`, `w2 &= 0xffff`,
 * `if r4 != 136 goto +4 <13>` (the target index in angle brackets).
 */
export function describeProgram(p: Uint8Array): string {
  if (p.byteLength % 8) {
    throw new RangeError(`program length ${p.byteLength} is not a multiple of 8`);
  }
  const dv = new DataView(p.buffer, p.byteOffset, p.byteLength);
  const n = p.byteLength / 8;
  const width = String(Math.max(n - 1, 0)).length;
  const lines: string[] = [];
  for (let i = 0; i < n; i++) {
    const code = dv.getUint8(i * 8);
    const regs = dv.getUint8(i * 8 + 1);
    const dst = regs & 0x0f, src = regs >> 4;
    const off = dv.getInt16(i * 8 + 2, true);
    const imm = dv.getInt32(i * 8 + 4, true);
    const cls = code & 0x07, op = code & 0xf0, isX = (code & 0x08) !== 0;
    let text: string | undefined;
    if (cls === BPF_LDX && (code & 0xe0) === BPF_MEM && SIZE_NAMES[code & 0x18]) {
      text = `r${dst} = *(${SIZE_NAMES[code & 0x18]} *)(r${src} ${off < 0 ? "-" : "+"}${
        Math.abs(off)
      })`;
    } else if ((cls === BPF_ALU || cls === 0x07) && ALU_NAMES[op] !== undefined) {
      const r = cls === BPF_ALU ? "w" : "r";
      const k = BIT_OPS.has(op) ? hex32(imm) : String(imm);
      text = `${r}${dst} ${ALU_NAMES[op]} ${isX ? `${r}${src}` : k}`;
    } else if (code === (BPF_JMP | BPF_EXIT)) {
      text = "exit";
    } else if (code === BPF_JMP) {
      text = `goto ${off >= 0 ? "+" : ""}${off} <${i + 1 + off}>`;
    } else if ((cls === BPF_JMP || cls === BPF_JMP32) && JMP_NAMES[op] !== undefined) {
      const r = cls === BPF_JMP ? "r" : "w";
      text = `if ${r}${dst} ${JMP_NAMES[op]} ${
        isX ? `${r}${src}` : cls === BPF_JMP32 ? imm >>> 0 : imm
      } goto ${off >= 0 ? "+" : ""}${off} <${i + 1 + off}>`;
    }
    text ??= `.insn code=0x${code.toString(16).padStart(2, "0")} dst=r${dst} src=r${src} ` +
      `off=${off} imm=${imm}`;
    lines.push(`${String(i).padStart(width)}: ${text}`);
  }
  return lines.join("\n");
}

// ---------------------------------------------------------------------------------------------
// cgroup v1

interface Pattern {
  type: number;
  major: number | null;
  minor: number | null;
}

const within = (p: Pattern, q: Pattern) =>
  p.type === q.type && (q.major === null || q.major === p.major) &&
  (q.minor === null || q.minor === p.minor);

function intersect(p: Pattern, q: Pattern): Pattern | null {
  if (p.type !== q.type) return null;
  if (p.major !== null && q.major !== null && p.major !== q.major) return null;
  if (p.minor !== null && q.minor !== null && p.minor !== q.minor) return null;
  return { type: p.type, major: p.major ?? q.major, minor: p.minor ?? q.minor };
}

const patternKey = (p: Pattern) =>
  `${p.type === BPF_DEVCG_DEV_BLOCK ? "b" : "c"} ${p.major ?? "*"}:${p.minor ?? "*"}`;

/**
 * The same rules as cgroup v1 lines: write each of `deny` to `devices.deny` (it is always `a`:
 * forget every exception and deny everything), then each of `allow` to `devices.allow`. v1
 * allows a request when one allow line covers all its bits, and cannot deny part of what a
 * wider line allows; the lines are computed so that the outcome is the program's for every
 * device, and a rule list v1 cannot express (a deny punching a hole in a wildcard allow, such
 * as `c *:* m` then a deny of `c 1:3 m`) throws.
 */
export function v1Rules(rules: readonly DeviceRule[]): { deny: string[]; allow: string[] } {
  // "a" rules become a char and a block rule.
  const norm = normalize(rules).flatMap((r) =>
    r.type === 0 ? [BPF_DEVCG_DEV_CHAR, BPF_DEVCG_DEV_BLOCK].map((type) => ({ ...r, type })) : [r]
  );
  // Every pattern a rule names, closed under intersection: each device then has one smallest
  // pattern holding it, and every device of that smallest pattern gets the same answer.
  const patterns: Pattern[] = [];
  const add = (p: Pattern) => {
    if (!patterns.some((q) => patternKey(q) === patternKey(p))) patterns.push(p);
  };
  for (const r of norm) add({ type: r.type, major: r.major, minor: r.minor });
  for (let i = 0; i < patterns.length; i++) {
    for (let j = 0; j < i; j++) {
      const x = intersect(patterns[i], patterns[j]);
      if (x) add(x);
    }
  }
  // The bits allowed on the devices of p that no smaller pattern holds: each bit as the last
  // rule speaking of it says.
  const allowed = (p: Pattern) => {
    let bits = 0;
    for (const r of norm) {
      if (!within(p, r)) continue;
      bits = r.allow ? bits | r.access : bits & ~r.access;
    }
    return bits;
  };
  const bits = patterns.map(allowed);
  const allow: string[] = [];
  patterns.forEach((p, i) => {
    let redundant = false;
    patterns.forEach((q, j) => {
      if (i === j || !within(p, q)) return;
      const lost = bits[j] & ~bits[i];
      if (lost) {
        throw new Error(
          `cgroup v1 cannot express this device list: ${patternKey(q)} ${
            accessString(bits[j])
          } is allowed but ${patternKey(p)} ${accessString(lost)} is denied`,
        );
      }
      if (bits[j] === bits[i]) redundant = true;
    });
    if (bits[i] && !redundant) allow.push(`${patternKey(p)} ${accessString(bits[i])}`);
  });
  return { deny: ["a"], allow };
}
