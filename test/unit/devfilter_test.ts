/**
 * The device allow-list: programs from `deviceProgram` run through the test interpreter
 * (test/unit/_ebpf.ts, which also verifies them), checked against the default list's known
 * answers, hand-written bytes, a reference evaluation of random rule lists, and a simulation of
 * the cgroup v1 devices controller fed with `v1Rules`.
 */
import assert from "node:assert/strict";
import {
  DEFAULT_DEVICES,
  describeProgram,
  deviceProgram,
  type DeviceRule,
  v1Rules,
} from "../../core/cgroups/devfilter.ts";
import { type DevCtx, run, verify } from "./_ebpf.ts";

/** "allow c 1:3 rwm", "deny a *:* rwm", "allow b 8:* r". */
function r(spec: string): DeviceRule {
  const m = /^(allow|deny) ([abc]) (\*|\d+):(\*|\d+) ([rwm]+)$/.exec(spec);
  if (!m) throw new Error(`bad rule spec ${spec}`);
  const num = (s: string) => (s === "*" ? null : Number(s));
  return {
    allow: m[1] === "allow",
    type: m[2] as "a" | "b" | "c",
    major: num(m[3]),
    minor: num(m[4]),
    access: m[5],
  };
}

/** "c 1:3 rw" → the context for that request. */
function req(spec: string): DevCtx {
  const m = /^([bc]) (\d+):(\d+) ([rwm]+)$/.exec(spec);
  if (!m) throw new Error(`bad request spec ${spec}`);
  return { type: m[1] as "b" | "c", major: Number(m[2]), minor: Number(m[3]), access: m[4] };
}

function allows(rules: readonly DeviceRule[], request: string | DevCtx): boolean {
  const prog = deviceProgram(rules);
  const { ret } = run(prog, typeof request === "string" ? req(request) : request);
  assert.ok(ret === 0 || ret === 1, `R0 = ${ret}`);
  return ret === 1;
}

function check(rules: readonly DeviceRule[], expect: Record<string, boolean>) {
  const got = Object.fromEntries(Object.keys(expect).map((k) => [k, allows(rules, k)]));
  assert.deepEqual(got, expect, describeProgram(deviceProgram(rules)));
}

Deno.test("default devices: the listed devices, mknod of anything, nothing else", () => {
  check(DEFAULT_DEVICES, {
    "c 1:3 rw": true, // null
    "c 1:3 r": true,
    "c 1:3 w": true,
    "c 1:5 rw": true, // zero
    "c 1:7 rw": true, // full
    "c 1:8 r": true, // random
    "c 1:9 r": true, // urandom
    "c 5:0 rw": true, // tty
    "c 5:2 rw": true, // ptmx
    "c 136:5 rw": true, // a pts
    "c 136:0 rw": true,
    "c 136:99999 w": true,
    "b 7:0 r": false, // loop device
    "b 7:0 rw": false,
    "b 8:0 r": false, // sda
    "c 1:1 r": false, // /dev/mem
    "c 1:2 r": false, // /dev/kmem
    "c 1:11 w": false, // /dev/kmsg
    "c 5:1 rw": false, // /dev/console
    "c 4:0 rw": false, // tty0
    "c 10:200 m": true, // mknod of /dev/net/tun only
    "c 10:200 rw": false,
    "c 10:200 r": false,
    "b 7:0 m": true,
    "c 135:5 rw": false,
    "c 137:5 rw": false,
  });
});

Deno.test("a rule after the defaults adds a device (--device /dev/loop3)", () => {
  const rules = [...DEFAULT_DEVICES, r("allow b 7:3 rwm")];
  check(rules, {
    "b 7:3 rw": true,
    "b 7:3 r": true,
    "b 7:3 m": true,
    "b 7:0 r": false,
    "c 7:3 r": false, // the char device with the same numbers is another device
    "c 1:3 rw": true,
  });
});

Deno.test("partial access: a request needs every bit it asks for", () => {
  const rules = [r("allow c 1:3 r")];
  check(rules, { "c 1:3 r": true, "c 1:3 rw": false, "c 1:3 w": false, "c 1:3 m": false });
  check([r("allow c 1:3 rw")], { "c 1:3 rw": true, "c 1:3 r": true, "c 1:3 m": false });
});

Deno.test("the last matching rule wins", () => {
  check([r("allow c 1:3 rwm"), r("deny c 1:3 rwm")], { "c 1:3 r": false, "c 1:3 m": false });
  check([r("deny c 1:3 rwm"), r("allow c 1:3 rwm")], { "c 1:3 r": true, "c 1:3 rw": true });
  // a later deny of a wildcard overrides an earlier allow of one device, and back
  check([r("allow c 1:3 rwm"), r("deny c 1:* rw")], { "c 1:3 r": false, "c 1:3 m": true });
  check([r("deny a *:* rwm"), r("allow c 1:* rw"), r("deny c 1:1 rw")], {
    "c 1:1 r": false,
    "c 1:2 r": true,
    "c 1:2 m": false,
  });
  // a deny of only w: read still works, a read-write open does not (every bit is decided by
  // the last rule speaking of it)
  check([r("allow c 1:3 rwm"), r("deny c 1:3 w")], {
    "c 1:3 r": true,
    "c 1:3 m": true,
    "c 1:3 w": false,
    "c 1:3 rw": false,
  });
  // bits from two allows add up
  check([r("allow c 1:3 r"), r("allow c 1:3 w")], { "c 1:3 rw": true, "c 1:3 m": false });
  check([r("allow c 1:* r"), r("allow c *:3 w")], {
    "c 1:3 rw": true,
    "c 1:4 rw": false,
    "c 2:3 w": true,
  });
  // rules before a deny of everything are forgotten, as on v1
  check([r("allow c 1:3 rwm"), r("deny a *:* rwm"), r("allow c 1:5 rw")], {
    "c 1:3 r": false,
    "c 1:5 rw": true,
  });
});

Deno.test("wildcards in type, major and minor", () => {
  check([r("allow c *:3 rw")], { "c 1:3 rw": true, "c 99:3 r": true, "c 1:4 r": false });
  check([r("allow c 1:* rw")], { "c 1:0 rw": true, "c 1:1048575 r": true, "c 2:0 r": false });
  check([r("allow c *:* r")], { "c 0:0 r": true, "c 4095:1048575 r": true, "b 0:0 r": false });
  check([r("allow a 8:* r")], { "b 8:1 r": true, "c 8:1 r": true, "b 9:1 r": false });
  check([r("allow a *:* m")], { "b 8:1 m": true, "c 1:1 m": true, "c 1:1 r": false });
  // privileged: everything
  check([r("allow a *:* rwm")], { "b 8:0 rw": true, "c 1:1 r": true, "b 7:0 m": true });
  check([r("allow a *:* rwm"), r("deny b 8:0 rwm")], { "b 8:0 r": false, "b 8:1 rw": true });
  check([r("deny a *:* rwm")], { "c 1:3 r": false });
});

Deno.test("the empty rule list denies everything, in two instructions", () => {
  const prog = deviceProgram([]);
  assert.equal(describeProgram(prog), "0: w0 = 0\n1: exit");
  for (const q of ["c 1:3 r", "c 1:3 m", "b 8:0 rw", "c 0:0 w"]) assert.equal(allows([], q), false);
  // so does a list that ends by denying everything
  assert.deepEqual(deviceProgram([r("allow c 1:3 rwm"), r("deny a *:* rwm")]), prog);
});

Deno.test("requests the kernel never makes are denied", () => {
  const rules = [r("allow a *:* rwm")];
  const ctx = (type: number, access: number) => ({ type, access, major: 1, minor: 3 });
  assert.equal(allows(rules, ctx(2, 0)), false, "no access bits");
  assert.equal(allows(rules, ctx(2, 8)), false, "an unknown access bit");
  assert.equal(allows(rules, ctx(2, 2 | 8)), false, "read and an unknown bit");
  assert.equal(allows([r("allow c 1:3 rwm")], ctx(3, 2)), false, "an unknown device type");
  assert.equal(allows(rules, ctx(2, 2)), true);
});

Deno.test("majors and minors of 2^31 and more compare as u32 (JMP32)", () => {
  const big = {
    allow: true,
    type: "c" as const,
    major: 0xffffffff,
    minor: 0x80000000,
    access: "r",
  };
  const prog = deviceProgram([big]);
  assert.match(describeProgram(prog), /r2 = \*\(u32 \*\)\(r1 \+4\)\n.*: if w2 != 4294967295 goto/);
  assert.match(describeProgram(prog), /r2 = \*\(u32 \*\)\(r1 \+8\)\n.*: if w2 != 2147483648 goto/);
  const q = (major: number, minor: number) => ({ type: "c" as const, access: "r", major, minor });
  assert.equal(allows([big], q(0xffffffff, 0x80000000)), true);
  assert.equal(allows([big], q(0x7fffffff, 0x80000000)), false);
  assert.equal(allows([big], q(0xffffffff, 0)), false);
});

/** struct bpf_insn as hex: code, src<<4|dst, off (le16), imm (le32). */
function hexInsns(prog: Uint8Array): string[] {
  const out: string[] = [];
  for (let i = 0; i < prog.length; i += 8) {
    out.push([...prog.subarray(i, i + 8)].map((b) => b.toString(16).padStart(2, "0")).join(""));
  }
  return out;
}

Deno.test("one allow rule, instruction by instruction", () => {
  const prog = deviceProgram([r("allow c 1:3 rw")]);
  assert.deepEqual(hexInsns(prog), [
    "6113000000000000", // 0: r3 = *(u32 *)(r1 +0)      access_type
    "7403000010000000", // 1: w3 >>= 16                 access
    "5503020000000000", // 2: if r3 != 0 goto +2 <5>
    "b400000000000000", // 3: w0 = 0                    no access asked: deny
    "9500000000000000", // 4: exit
    "6112000000000000", // 5: r2 = *(u32 *)(r1 +0)
    "54020000ffff0000", // 6: w2 &= 0xffff              type
    "5502080002000000", // 7: if r2 != 2 goto +8 <16>   not a char device
    "6112040000000000", // 8: r2 = *(u32 *)(r1 +4)      major
    "5502060001000000", // 9: if r2 != 1 goto +6 <16>
    "6112080000000000", // 10: r2 = *(u32 *)(r1 +8)     minor
    "5502040003000000", // 11: if r2 != 3 goto +4 <16>
    "54030000f9ffffff", // 12: w3 &= 0xfffffff9         read and write decided
    "5503020000000000", // 13: if r3 != 0 goto +2 <16>  something else asked (m)
    "b400000001000000", // 14: w0 = 1
    "9500000000000000", // 15: exit
    "b400000000000000", // 16: w0 = 0                   no rule decided every bit
    "9500000000000000", // 17: exit
  ]);
  assert.equal(
    describeProgram(prog),
    [
      " 0: r3 = *(u32 *)(r1 +0)",
      " 1: w3 >>= 16",
      " 2: if r3 != 0 goto +2 <5>",
      " 3: w0 = 0",
      " 4: exit",
      " 5: r2 = *(u32 *)(r1 +0)",
      " 6: w2 &= 0xffff",
      " 7: if r2 != 2 goto +8 <16>",
      " 8: r2 = *(u32 *)(r1 +4)",
      " 9: if r2 != 1 goto +6 <16>",
      "10: r2 = *(u32 *)(r1 +8)",
      "11: if r2 != 3 goto +4 <16>",
      "12: w3 &= 0xfffffff9",
      "13: if r3 != 0 goto +2 <16>",
      "14: w0 = 1",
      "15: exit",
      "16: w0 = 0",
      "17: exit",
    ].join("\n"),
  );
});

Deno.test("a partial deny after an allow, instruction by instruction", () => {
  const prog = deviceProgram([r("allow c *:* rwm"), r("deny b 8:* w")]);
  assert.deepEqual(hexInsns(prog).slice(5), [
    "6112000000000000", // 5: r2 = *(u32 *)(r1 +0)      the deny first
    "54020000ffff0000", // 6: w2 &= 0xffff
    "5502070001000000", // 7: if r2 != 1 goto +7 <15>   not a block device
    "6112040000000000", // 8: r2 = *(u32 *)(r1 +4)
    "5502050008000000", // 9: if r2 != 8 goto +5 <15>   no minor check: a wildcard
    "bc32000000000000", // 10: w2 = w3
    "5402000004000000", // 11: w2 &= 0x4
    "1502020000000000", // 12: if r2 == 0 goto +2 <15>  no write asked: not this rule's
    "b400000000000000", // 13: w0 = 0
    "9500000000000000", // 14: exit
    "6112000000000000", // 15: r2 = *(u32 *)(r1 +0)     the allow
    "54020000ffff0000", // 16: w2 &= 0xffff
    "5502040002000000", // 17: if r2 != 2 goto +4 <22>  not a char device
    "54030000f8ffffff", // 18: w3 &= 0xfffffff8
    "5503020000000000", // 19: if r3 != 0 goto +2 <22>
    "b400000001000000", // 20: w0 = 1
    "9500000000000000", // 21: exit
    "b400000000000000", // 22: w0 = 0
    "9500000000000000", // 23: exit
  ]);
});

// ---------------------------------------------------------------------------------------------
// Reference evaluation and random rule lists

const BITS = { m: 1, r: 2, w: 4 } as Record<string, number>;
const bitsOf = (a: string | number) =>
  typeof a === "number" ? a : [...a].reduce((b, ch) => b | BITS[ch], 0);
const typeNum = (t: DevCtx["type"]) => (t === "b" ? 1 : t === "c" ? 2 : t);

function ruleMatches(rule: DeviceRule, q: DevCtx): boolean {
  const t = typeNum(q.type);
  return (rule.type === "a" || (rule.type === "b" ? 1 : 2) === t) &&
    (rule.major === null || rule.major === q.major) &&
    (rule.minor === null || rule.minor === q.minor);
}

/** Every asked bit is allowed by the last rule that names the device and the bit. */
function reference(rules: readonly DeviceRule[], q: DevCtx): boolean {
  const asked = bitsOf(q.access);
  if (asked === 0) return false;
  for (let bit = 1; bit <= asked; bit <<= 1) {
    if (!(asked & bit)) continue;
    let ok = false;
    for (const rule of rules) {
      if (ruleMatches(rule, q) && bitsOf(rule.access) & bit) ok = rule.allow;
    }
    if (!ok) return false;
  }
  return true;
}

/** The cgroup v1 devices controller (security/device_cgroup.c), for what v1Rules writes. */
class V1Cgroup {
  defaultAllow = true;
  ex: { type: string; major: number | null; minor: number | null; access: number }[] = [];

  write(file: "allow" | "deny", line: string) {
    if (line === "a") {
      this.ex = [];
      this.defaultAllow = file === "allow";
      return;
    }
    const m = /^([abc]) (\*|\d+):(\*|\d+) ([rwm]+)$/.exec(line);
    assert.ok(m, `v1 line ${JSON.stringify(line)}`);
    const e = {
      type: m[1],
      major: m[2] === "*" ? null : Number(m[2]),
      minor: m[3] === "*" ? null : Number(m[3]),
      access: bitsOf(m[4]),
    };
    const same = this.ex.find((x) =>
      x.type === e.type && x.major === e.major && x.minor === e.minor
    );
    // allow adds an exception on a default-deny cgroup and removes one on a default-allow one
    if ((file === "allow") !== this.defaultAllow) {
      if (same) same.access |= e.access;
      else this.ex.push(e);
    } else if (same) {
      same.access &= ~e.access;
      if (!same.access) this.ex.splice(this.ex.indexOf(same), 1);
    }
  }

  allows(q: DevCtx): boolean {
    const t = typeNum(q.type) === 1 ? "b" : "c";
    const asked = bitsOf(q.access);
    const hit = (partial: boolean) =>
      this.ex.some((x) =>
        (x.type === "a" || x.type === t) && (x.major === null || x.major === q.major) &&
        (x.minor === null || x.minor === q.minor) &&
        (partial ? (asked & x.access) !== 0 : (asked & ~x.access) === 0)
      );
    return this.defaultAllow ? !hit(true) : hit(false);
  }
}

function v1Allows(rules: readonly DeviceRule[], q: DevCtx): boolean {
  const { deny, allow } = v1Rules(rules);
  const cg = new V1Cgroup();
  for (const l of deny) cg.write("deny", l);
  for (const l of allow) cg.write("allow", l);
  return cg.allows(q);
}

function prng(seed: number) {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = seed;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const REQUESTS: DevCtx[] = [];
for (const type of ["b", "c"] as const) {
  for (const major of [1, 5, 136, 7]) {
    for (const minor of [3, 5, 0]) {
      for (const access of ["m", "r", "w", "rw"]) REQUESTS.push({ type, major, minor, access });
    }
  }
}

Deno.test("random rule lists: the program agrees with the reference and with v1", () => {
  const rand = prng(4);
  const pick = <T>(xs: readonly T[]) => xs[Math.floor(rand() * xs.length)];
  let v1Checked = 0, v1Refused = 0;
  for (let n = 0; n < 400; n++) {
    const rules: DeviceRule[] = [];
    const count = Math.floor(rand() * 7);
    if (rand() < 0.5) rules.push(r("deny a *:* rwm"));
    for (let i = 0; i < count; i++) {
      const access = pick(["r", "w", "m", "rw", "rm", "wm", "rwm", "rwm"]);
      rules.push({
        allow: rand() < 0.7,
        type: pick(["a", "b", "c", "c"] as const),
        major: pick([null, 1, 5, 136, 136]),
        minor: pick([null, null, 3, 5]),
        access,
      });
    }
    const prog = deviceProgram(rules);
    verify(prog);
    let v1: ReturnType<typeof v1Rules> | null = null;
    try {
      v1 = v1Rules(rules);
    } catch (e) {
      assert.match((e as Error).message, /cgroup v1 cannot express/);
      v1Refused++;
    }
    for (const q of REQUESTS) {
      const want = reference(rules, q);
      const got = run(prog, q).ret === 1;
      const what = `${JSON.stringify(q)} under\n${rules.map((x) => JSON.stringify(x)).join("\n")}`;
      assert.equal(got, want, `program: ${what}\n${describeProgram(prog)}`);
      if (v1) assert.equal(v1Allows(rules, q), want, `v1 ${JSON.stringify(v1)}: ${what}`);
    }
    if (v1) v1Checked++;
  }
  // both outcomes of v1Rules were exercised
  assert.ok(v1Checked > 100 && v1Refused > 20, `v1 checked ${v1Checked}, refused ${v1Refused}`);
});

// ---------------------------------------------------------------------------------------------
// cgroup v1

Deno.test("v1Rules: the default list", () => {
  assert.deepEqual(v1Rules(DEFAULT_DEVICES), {
    deny: ["a"],
    allow: [
      "c *:* m",
      "b *:* m",
      "c 1:3 rwm",
      "c 1:5 rwm",
      "c 1:7 rwm",
      "c 1:8 rwm",
      "c 1:9 rwm",
      "c 5:0 rwm",
      "c 5:2 rwm",
      "c 136:* rwm",
    ],
  });
  for (const q of ["c 1:3 rw", "c 136:5 rw", "b 7:0 r", "c 1:1 r", "c 10:200 m", "c 10:200 rw"]) {
    assert.equal(v1Allows(DEFAULT_DEVICES, req(q)), allows(DEFAULT_DEVICES, q), q);
  }
});

Deno.test("v1Rules: merged, combined, overridden, redundant", () => {
  assert.deepEqual(v1Rules([]), { deny: ["a"], allow: [] });
  assert.deepEqual(v1Rules([r("allow a *:* rwm")]), {
    deny: ["a"],
    allow: ["c *:* rwm", "b *:* rwm"],
  });
  assert.deepEqual(v1Rules([r("allow c 1:3 r"), r("allow c 1:3 w")]).allow, ["c 1:3 rw"]);
  assert.deepEqual(v1Rules([r("allow c 1:3 rwm"), r("deny c 1:3 w")]).allow, ["c 1:3 rm"]);
  assert.deepEqual(v1Rules([r("allow c 1:3 rwm"), r("deny a *:* rwm")]).allow, []);
  // bits from two overlapping wildcards: their intersection gets its own line
  assert.deepEqual(v1Rules([r("allow c 1:* r"), r("allow c *:3 w")]).allow, [
    "c 1:* r",
    "c *:3 w",
    "c 1:3 rw",
  ]);
  // a line a wider one already covers is left out
  assert.deepEqual(v1Rules([r("allow c 1:* rw"), r("allow c 1:3 r")]).allow, ["c 1:* rw"]);
});

Deno.test("v1Rules: a hole in a wildcard allow cannot be written for v1", () => {
  assert.throws(
    () => v1Rules([...DEFAULT_DEVICES, r("deny c 10:200 m")]),
    /cgroup v1 cannot express this device list: c \*:\* m is allowed but c 10:200 m is denied/,
  );
  assert.throws(() => v1Rules([r("allow a *:* rwm"), r("deny b 8:0 w")]), /b 8:0 w is denied/);
  // the program has no such limit
  check([...DEFAULT_DEVICES, r("deny c 10:200 m")], { "c 10:200 m": false, "c 10:201 m": true });
});

Deno.test("malformed rules are refused, naming the rule", () => {
  const bad = (x: Partial<DeviceRule>) => ({ ...r("allow c 1:3 rwm"), ...x }) as DeviceRule;
  assert.throws(() => deviceProgram([bad({ access: "" })]), /device rule 0 .*non-empty/);
  assert.throws(() => deviceProgram([bad({ access: "rx" })]), /unknown letter x/);
  assert.throws(
    () => deviceProgram([r("deny a *:* rwm"), bad({ type: "p" as "c" })]),
    /device rule 1 .*type must be/,
  );
  assert.throws(() => deviceProgram([bad({ major: -1 })]), /major -1 is not a device number/);
  assert.throws(() => deviceProgram([bad({ minor: 1.5 })]), /minor 1.5/);
  assert.throws(() => deviceProgram([bad({ major: 2 ** 32 })]), /major 4294967296/);
  assert.throws(() => v1Rules([bad({ access: "q" })]), /unknown letter q/);
});

// ---------------------------------------------------------------------------------------------
// The test verifier itself

Deno.test("the test verifier refuses what the kernel would", () => {
  const prog = (...hex: string[]) =>
    new Uint8Array(hex.flatMap((h) => h.match(/../g)!.map((b) => parseInt(b, 16))));
  const RET0 = ["b400000000000000", "9500000000000000"];
  verify(prog(...RET0));
  assert.throws(() => verify(prog("9500000000000000")), /exit with R0 unset/);
  assert.throws(() => verify(prog("b400000002000000", "9500000000000000")), /known 0 or 1/);
  assert.throws(
    () => verify(prog("6110000000000000", "9500000000000000")),
    /R0 not a known 0 or 1 \(unknown\)/,
  );
  assert.throws(() => verify(prog("b400000000000000")), /past the end/);
  assert.throws(() => verify(prog("6120000000000000", ...RET0)), /not the context pointer/);
  assert.throws(() => verify(prog("61120c0000000000", ...RET0)), /outside the 12-byte context/);
  assert.throws(() => verify(prog("6112020000000000", ...RET0)), /outside the 12-byte/);
  assert.throws(() => verify(prog("5402000001000000", ...RET0)), /r2 is read before it is set/);
  assert.throws(() => verify(prog("bc12000000000000", ...RET0)), /source r1 is a pointer/);
  assert.throws(() => verify(prog("1501ffff00000000", ...RET0)), /pointer|backward/);
  assert.throws(
    () => verify(prog("b403000000000000", "1503ffff00000000", ...RET0)),
    /backward jump/,
  );
  assert.throws(
    () => verify(prog("b403000000000000", "1503050000000000", ...RET0)),
    /jumps to 7, past the end/,
  );
  assert.throws(() => verify(prog(...RET0, ...RET0)), /insn 2 .*unreachable/);
  assert.throws(() => verify(prog("0700000001000000", ...RET0)), /unknown or unsupported/);
  assert.throws(() => verify(prog("b410000000000000", ...RET0)), /reserved field src/);
  // R0 set on one branch only
  assert.throws(
    () =>
      verify(prog(
        "b403000000000000",
        "1503010000000000",
        "b400000001000000",
        "9500000000000000",
      )),
    /insn 3 .*exit with R0 unset/,
  );
});
