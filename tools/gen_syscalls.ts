/**
 * Generates core/seccomp/syscalls_x86_64.ts and core/seccomp/syscalls_aarch64.ts (name → number)
 * from the kernel's own syscall tables.
 *
 *   deno run -A tools/gen_syscalls.ts --linux DIR [--source TEXT] [--check-headers]
 *   deno run -A tools/gen_syscalls.ts --headers
 *
 * `--linux DIR` reads a kernel tree (or a directory holding the same relative paths):
 *   - x86_64: arch/x86/entry/syscalls/syscall_64.tbl, ABIs `common` and `64` (`x32` left out).
 *   - aarch64: scripts/syscall.tbl (kernels 6.11+), ABIs `common`, `64` and the ones
 *     arch/arm64/kernel/Makefile.syscalls adds to `syscall_abis_64` (renameat, newstat, rlimit,
 *     memfd_secret at the time of writing).
 * `--source TEXT` names the tree (e.g. `torvalds/linux@<commit>`) in the generated headers.
 * `--check-headers` compares the result with the host's linux-libc-dev headers and fails on
 * any name whose number differs (catches a bad table or a bad parse).
 *
 * `--headers` is the fallback with no kernel tree: the host's
 * /usr/include/x86_64-linux-gnu/asm/unistd_64.h and /usr/include/asm-generic/unistd.h, the latter
 * read through a small preprocessor with arm64's defines.
 */

export type TableArch = "x86_64" | "aarch64";

const X86_TBL = "arch/x86/entry/syscalls/syscall_64.tbl";
const GENERIC_TBL = "scripts/syscall.tbl";
const ARM64_MAKEFILE = "arch/arm64/kernel/Makefile.syscalls";
const X86_HEADER = "/usr/include/x86_64-linux-gnu/asm/unistd_64.h";
const GENERIC_HEADER = "/usr/include/asm-generic/unistd.h";

/**
 * The defines arm64's uapi <asm/unistd.h> sets before including asm-generic/unistd.h.
 * (__ARCH_WANT_TIME32_SYSCALLS does not matter on a 64-bit arch: every time32 conditional is
 * `defined(__ARCH_WANT_TIME32_SYSCALLS) || __BITS_PER_LONG != 32`, true either way.)
 */
export const ARM64_DEFINES = [
  "__ARCH_WANT_RENAMEAT",
  "__ARCH_WANT_NEW_STAT",
  "__ARCH_WANT_SET_GET_RLIMIT",
  "__ARCH_WANT_SYS_CLONE3",
  "__ARCH_WANT_MEMFD_SECRET",
];

/** Parses a syscall .tbl (`<number> <abi> <name> [<entry point> ...]`), keeping `abis`. */
export function parseTbl(text: string, abis: ReadonlySet<string>): Map<string, number> {
  const out = new Map<string, number>();
  for (const [i, raw] of text.split("\n").entries()) {
    const line = raw.replace(/#.*/, "").trim();
    if (!line) continue;
    const [nr, abi, name] = line.split(/\s+/);
    if (!/^\d+$/.test(nr) || !abi || !name) throw new Error(`line ${i + 1}: cannot parse "${raw}"`);
    if (!abis.has(abi)) continue;
    const prev = out.get(name);
    if (prev !== undefined && prev !== Number(nr)) {
      throw new Error(`line ${i + 1}: "${name}" is both ${prev} and ${nr}`);
    }
    out.set(name, Number(nr));
  }
  return out;
}

/** The extra 64-bit ABIs of arm64, from `syscall_abis_64 += ...` in Makefile.syscalls. */
export function parseArm64Abis(makefile: string): string[] {
  const abis: string[] = [];
  for (const m of makefile.matchAll(/^\s*syscall_abis_64\s*\+?=\s*(.*)$/gm)) {
    abis.push(...m[1].split(/[\s,]+/).filter(Boolean));
  }
  return abis;
}

/** `#define __NR_name N` lines of an arch header such as x86's unistd_64.h. */
export function parseSimpleHeader(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const m of text.matchAll(/^#define\s+__NR_(\w+)\s+(\d+)\s*$/gm)) out.set(m[1], Number(m[2]));
  return out;
}

/**
 * asm-generic/unistd.h for a 64-bit arch with `defines` set: a minimal preprocessor for the
 * conditionals it uses (#if/#ifdef/#ifndef/#else/#endif with defined(), ||, &&, !, and
 * __BITS_PER_LONG compared to a number), then `__NR_x N` and `__NR_x __NR3264_y` defines.
 */
export function parseGenericHeader(text: string, defines: readonly string[]): Map<string, number> {
  const defined = new Set<string>(defines);
  const values = new Map<string, string>([["__BITS_PER_LONG", "64"]]);
  const stack: { active: boolean; parent: boolean; taken: boolean }[] = [];
  const active = () => stack.every((s) => s.active);
  const evalCond = (expr: string): boolean => {
    const js = expr
      .replace(/\/\*.*?\*\//g, "")
      .replace(/defined\s*\(\s*(\w+)\s*\)/g, (_, n) => (defined.has(n) ? "1" : "0"))
      .replace(/defined\s+(\w+)/g, (_, n) => (defined.has(n) ? "1" : "0"))
      .replace(/\b__BITS_PER_LONG\b/g, values.get("__BITS_PER_LONG")!)
      .replace(/\b[A-Za-z_]\w*\b/g, "0");
    if (!/^[\d\s()|&!=<>]*$/.test(js)) throw new Error(`cannot evaluate #if ${expr}`);
    return Boolean(new Function(`return (${js});`)());
  };
  const nr = new Map<string, string>();
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    let m: RegExpMatchArray | null;
    if ((m = line.match(/^#\s*ifdef\s+(\w+)/))) {
      const c = defined.has(m[1]);
      stack.push({ active: c, parent: active(), taken: c });
    } else if ((m = line.match(/^#\s*ifndef\s+(\w+)/))) {
      const c = !defined.has(m[1]);
      stack.push({ active: c, parent: active(), taken: c });
    } else if ((m = line.match(/^#\s*if\s+(.*)$/))) {
      const c = evalCond(m[1]);
      stack.push({ active: c, parent: active(), taken: c });
    } else if (/^#\s*else\b/.test(line)) {
      const top = stack[stack.length - 1];
      top.active = !top.taken;
      top.taken = true;
    } else if (/^#\s*endif\b/.test(line)) {
      stack.pop();
    } else if (!active()) {
      continue;
    } else if ((m = line.match(/^#\s*define\s+(\w+)\s+(\S+)/))) {
      defined.add(m[1]);
      if (m[1].startsWith("__NR")) nr.set(m[1], m[2]);
    } else if ((m = line.match(/^#\s*define\s+(\w+)\s*$/))) {
      defined.add(m[1]);
    } else if ((m = line.match(/^#\s*undef\s+(\w+)/))) {
      defined.delete(m[1]);
      nr.delete(m[1]);
    }
  }
  const resolve = (v: string, depth = 0): number | undefined => {
    if (/^\d+$/.test(v)) return Number(v);
    const next = nr.get(v);
    return next === undefined || depth > 4 ? undefined : resolve(next, depth + 1);
  };
  const out = new Map<string, number>();
  for (const [k, v] of nr) {
    if (!k.startsWith("__NR_") || k === "__NR_syscalls" || k === "__NR_arch_specific_syscall") {
      continue;
    }
    const n = resolve(v);
    if (n !== undefined) out.set(k.slice(5), n);
  }
  return out;
}

/** The TypeScript module for one arch's table. */
export function render(arch: TableArch, table: Map<string, number>, source: string[]): string {
  const constName = arch === "x86_64" ? "SYSCALLS_X86_64" : "SYSCALLS_AARCH64";
  const entries = [...table].sort((a, b) => a[1] - b[1] || (a[0] < b[0] ? -1 : 1));
  const max = entries.length ? entries[entries.length - 1][1] : 0;
  return [
    `// Generated by tools/gen_syscalls.ts. Do not edit; run the tool again.`,
    ...source.map((s) => `// ${s}`),
    ``,
    `/** ${arch} system call numbers by name (${entries.length} calls, highest ${max}). */`,
    `export const ${constName}: Readonly<Record<string, number>> = Object.freeze({`,
    ...entries.map(([name, n]) => `  ${name}: ${n},`),
    `});`,
    ``,
  ].join("\n");
}

/** Numbers that differ between table and headers; names only the headers have are notes. */
function compare(
  arch: string,
  table: Map<string, number>,
  header: Map<string, number>,
): { problems: string[]; notes: string[] } {
  const problems: string[] = [];
  const notes: string[] = [];
  for (const [name, n] of header) {
    const t = table.get(name);
    if (t === undefined) notes.push(`${arch}: "${name}" (${n}) is in the headers only`);
    else if (t !== n) problems.push(`${arch}: "${name}" is ${t} in the table, ${n} in the headers`);
  }
  return { problems, notes };
}

const names = (notes: string[]) => notes.map((n) => n.split('"')[1]).join(", ");

async function main(args: string[]) {
  const flag = (name: string) => {
    const i = args.indexOf(name);
    return i < 0 ? undefined : args[i + 1];
  };
  const outDir = new URL("../core/seccomp/", import.meta.url);
  let x86: Map<string, number>;
  let arm: Map<string, number>;
  let x86Source: string[];
  let armSource: string[];
  const linux = flag("--linux");
  if (linux) {
    const source = flag("--source") ?? linux;
    const armAbis = parseArm64Abis(await Deno.readTextFile(`${linux}/${ARM64_MAKEFILE}`));
    x86 = parseTbl(await Deno.readTextFile(`${linux}/${X86_TBL}`), new Set(["common", "64"]));
    const abis = ["common", "64", ...armAbis];
    arm = parseTbl(await Deno.readTextFile(`${linux}/${GENERIC_TBL}`), new Set(abis));
    x86Source = [`Source: ${X86_TBL} of ${source}`, `ABIs: common, 64 (x32 entries left out)`];
    armSource = [
      `Source: ${GENERIC_TBL} of ${source}`,
      `ABIs: ${abis.join(", ")} (common, 64 and syscall_abis_64 of ${ARM64_MAKEFILE})`,
    ];
    if (args.includes("--check-headers")) {
      const a = compare("x86_64", x86, parseSimpleHeader(await Deno.readTextFile(X86_HEADER)));
      const b = compare(
        "aarch64",
        arm,
        parseGenericHeader(await Deno.readTextFile(GENERIC_HEADER), ARM64_DEFINES),
      );
      const problems = [...a.problems, ...b.problems];
      if (problems.length) {
        console.error(problems.join("\n"));
        Deno.exit(1);
      }
      for (const n of [...a.notes, ...b.notes]) console.error(`note: ${n}`);
      const checked = "Checked against the host's linux-libc-dev headers: no number differs";
      x86Source.push(`${checked}${a.notes.length ? `; headers only: ${names(a.notes)}` : ""}`);
      armSource.push(`${checked}${b.notes.length ? `; headers only: ${names(b.notes)}` : ""}`);
    }
  } else if (args.includes("--headers")) {
    x86 = parseSimpleHeader(await Deno.readTextFile(X86_HEADER));
    arm = parseGenericHeader(await Deno.readTextFile(GENERIC_HEADER), ARM64_DEFINES);
    x86Source = [`Source: ${X86_HEADER} (host linux-libc-dev)`];
    armSource = [`Source: ${GENERIC_HEADER} (host linux-libc-dev) with ${ARM64_DEFINES.join(" ")}`];
  } else {
    console.error(
      "usage: gen_syscalls.ts --linux DIR [--source TEXT] [--check-headers] | --headers",
    );
    Deno.exit(2);
  }
  await Deno.writeTextFile(new URL("syscalls_x86_64.ts", outDir), render("x86_64", x86, x86Source));
  await Deno.writeTextFile(
    new URL("syscalls_aarch64.ts", outDir),
    render("aarch64", arm, armSource),
  );
  console.log(`x86_64: ${x86.size} calls; aarch64: ${arm.size} calls`);
}

if (import.meta.main) await main(Deno.args);
