/**
 * The device programs in the real kernel's verifier: bpf(BPF_PROG_LOAD) of a
 * BPF_PROG_TYPE_CGROUP_DEVICE program must return a file descriptor. Load only, no attach, so
 * the host is unchanged; the fd is closed (which frees the program). Needs root (CAP_BPF or
 * CAP_SYS_ADMIN); ignored with the reason otherwise.
 */
import assert from "node:assert/strict";
import {
  BPF_PROG_TYPE_CGROUP_DEVICE,
  DEFAULT_DEVICES,
  describeProgram,
  deviceProgram,
  type DeviceRule,
} from "../../core/cgroups/devfilter.ts";

const NR_BPF = ({ x86_64: 321, aarch64: 280 } as Record<string, number>)[Deno.build.arch];
const NR_CLOSE = ({ x86_64: 3, aarch64: 57 } as Record<string, number>)[Deno.build.arch];
const BPF_PROG_LOAD = 5;

const reason = Deno.build.os !== "linux" || NR_BPF === undefined
  ? `not Linux on x86_64 or aarch64 (${Deno.build.os} ${Deno.build.arch})`
  : Deno.uid() !== 0
  ? "not root: loading a cgroup device program needs CAP_BPF or CAP_SYS_ADMIN"
  : null;
if (reason) console.log(`devfilter_kernel_test: ignored: ${reason}`);

interface Loaded {
  fd: number;
  errno: number;
  /** The verifier's log (empty when the load succeeded). */
  log: string;
}

let lib:
  | Deno.DynamicLibrary<{
    syscall: { parameters: ["i64", "i64", "buffer", "i64"]; result: "i64" };
    __errno_location: { parameters: []; result: "pointer" };
  }>
  | null = null;

/**
 * bpf(BPF_PROG_LOAD, ...); without a log first (a large program's log at level 1 can overflow
 * the buffer, which fails the load with ENOSPC), then, on failure, again with it.
 */
function load(prog: Uint8Array): Loaded {
  const first = loadWithLog(prog, 0);
  if (first.fd >= 0) return first;
  const again = loadWithLog(prog, 1);
  if (again.fd >= 0) close(again.fd);
  // the first errno: the second may be ENOSPC, the log not fitting (the kernel keeps its end)
  return { fd: -1, errno: first.errno, log: again.log };
}

function loadWithLog(prog: Uint8Array, logLevel: number): Loaded {
  lib ??= Deno.dlopen("libc.so.6", {
    syscall: { parameters: ["i64", "i64", "buffer", "i64"], result: "i64" },
    __errno_location: { parameters: [], result: "pointer" },
  });
  const license = new TextEncoder().encode("GPL\0");
  const log = new Uint8Array(1 << 16);
  // union bpf_attr, the BPF_PROG_LOAD part up to expected_attach_type
  const attr = new Uint8Array(72);
  const dv = new DataView(attr.buffer);
  const addr = (b: Uint8Array) => BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(b)));
  dv.setUint32(0, BPF_PROG_TYPE_CGROUP_DEVICE, true); // prog_type
  dv.setUint32(4, prog.length / 8, true); // insn_cnt
  dv.setBigUint64(8, addr(prog), true); // insns
  dv.setBigUint64(16, addr(license), true); // license
  if (logLevel) {
    dv.setUint32(24, logLevel, true); // log_level
    dv.setUint32(28, log.length, true); // log_size
    dv.setBigUint64(32, addr(log), true); // log_buf
  }
  attr.set(new TextEncoder().encode("micro_devices"), 48); // prog_name (16 bytes)
  const fd = Number(lib.symbols.syscall(BigInt(NR_BPF), BigInt(BPF_PROG_LOAD), attr, 72n));
  const errno = fd < 0
    ? new Deno.UnsafePointerView(lib.symbols.__errno_location()!).getInt32(0)
    : 0;
  const end = log.indexOf(0);
  return { fd, errno, log: new TextDecoder().decode(log.subarray(0, end < 0 ? log.length : end)) };
}

function close(fd: number) {
  lib!.symbols.syscall(BigInt(NR_CLOSE), BigInt(fd), null, 0n);
}

function assertLoads(name: string, rules: readonly DeviceRule[]) {
  const prog = deviceProgram(rules);
  const r = load(prog);
  try {
    assert.ok(
      r.fd >= 0,
      `${name}: BPF_PROG_LOAD failed with errno ${r.errno}\n--- program\n${
        describeProgram(prog)
      }\n--- verifier log\n${r.log}`,
    );
  } finally {
    if (r.fd >= 0) close(r.fd);
  }
}

const rule = (spec: string): DeviceRule => {
  const [verdict, type, numbers, access] = spec.split(" ");
  const [major, minor] = numbers.split(":").map((s) => (s === "*" ? null : Number(s)));
  return { allow: verdict === "allow", type: type as "a" | "b" | "c", major, minor, access };
};

Deno.test({
  name: "the kernel's verifier accepts the device programs",
  ignore: reason !== null,
  fn() {
    assertLoads("default devices", DEFAULT_DEVICES);
    assertLoads("default devices and a loop device", [...DEFAULT_DEVICES, rule("allow b 7:3 rwm")]);
    assertLoads("no rules", []);
    assertLoads("privileged", [rule("allow a *:* rwm")]);
    assertLoads("privileged but one disk", [rule("allow a *:* rwm"), rule("deny b 8:0 rwm")]);
    assertLoads("partial deny", [rule("allow c *:* rwm"), rule("deny c 1:3 w")]);
    assertLoads("wildcards", [rule("allow a 8:* r"), rule("allow c *:3 w"), rule("allow a *:* m")]);
    assertLoads("JMP32 for a major of 2^32-1", [rule("allow c 4294967295:2147483648 rw")]);
    // The verifier's work must grow linearly with the rules: with numbers kept in registers
    // across blocks, 1,000 rules went over its limit of a million instructions processed.
    const many: DeviceRule[] = [rule("deny a *:* rwm")];
    const accesses = ["r", "w", "m", "rw", "rwm"];
    for (let i = 0; i < 1000; i++) {
      const verdict = i % 3 ? "allow" : "deny";
      many.push(rule(`${verdict} ${"bc"[i % 2]} ${i % 7 ? i : "*"}:${i} ${accesses[i % 5]}`));
    }
    assertLoads("1,000 rules", many);
  },
});

Deno.test({
  name: "the load really runs the verifier: R0 unset or not 0/1 at exit is refused",
  ignore: reason !== null,
  fn() {
    const cases: [string, number[], RegExp][] = [
      // r0 = *(u32 *)(r1 + 0); exit
      ["R0 unknown", [0x61, 0x10, 0, 0, 0, 0, 0, 0, 0x95, 0, 0, 0, 0, 0, 0, 0], /R0 .*\[0, 1\]/],
      // exit
      ["R0 unset", [0x95, 0, 0, 0, 0, 0, 0, 0], /R0 !read_ok/],
    ];
    for (const [what, bytes, why] of cases) {
      const r = load(new Uint8Array(bytes));
      if (r.fd >= 0) close(r.fd);
      assert.ok(r.fd < 0, `${what}: the kernel accepted it`);
      assert.match(r.log, why, `${what}: errno ${r.errno}\n${r.log}`);
    }
  },
});
