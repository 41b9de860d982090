/**
 * The head of dist/micro (tools/build.sh): the launcher for ARCH (tools/trampoline/launcher-
 * ARCH.S, bytes in tools/_launcher.ts) with its data appended (HASH, the Deno flags, the sh
 * stub) and its PT_LOAD sized to cover them; or the stub alone for an architecture without a
 * launcher, as before it existed.
 *
 *   deno run -A tools/mklauncher.ts ARCH HASH STUB OUT FLAG...
 */
import { LAUNCHER } from "./_launcher.ts";

/** Where the ELF header puts the one PT_LOAD's p_filesz and p_memsz (elf-ARCH.inc). */
const P_FILESZ = 64 + 32;
const P_MEMSZ = 64 + 40;
/** MAX_ARG_STRLEN (32 pages), less room to spare. */
const MAX_STUB = 120 * 1024;

/** The launcher with `hash`, `flags` and `stub` after it; null when `arch` has none. */
export function compose(
  arch: string,
  hash: string,
  flags: string[],
  stub: string,
): Uint8Array | null {
  const b64 = LAUNCHER[arch];
  if (!b64) return null;
  if (!/^[0-9a-f]{16}$/.test(hash)) throw new Error(`mklauncher: bad hash ${hash}`);
  if (!flags.length || flags.some((f) => !f || f.includes("\0"))) {
    throw new Error("mklauncher: the Deno flags must be non-empty strings");
  }
  if (stub.includes("\0")) throw new Error("mklauncher: the stub has a NUL in it");
  // It is passed as one argument (sh -c STUB): the kernel takes at most 128 KiB in one.
  if (stub.length > MAX_STUB) throw new Error(`mklauncher: the stub is over ${MAX_STUB} bytes`);
  const code = (Uint8Array as unknown as { fromBase64(s: string): Uint8Array }).fromBase64(b64);
  const view = new DataView(code.buffer);
  // `end` is the image's last label: the data go right after it.
  if (Number(view.getBigUint64(P_FILESZ, true)) !== code.length) {
    throw new Error(`mklauncher: the ${arch} launcher's PT_LOAD does not end at its end`);
  }
  const data = new TextEncoder().encode([hash, ...flags, "", stub, ""].join("\0"));
  const out = new Uint8Array(code.length + data.length);
  out.set(code);
  out.set(data, code.length);
  const v = new DataView(out.buffer);
  v.setBigUint64(P_FILESZ, BigInt(out.length), true);
  v.setBigUint64(P_MEMSZ, BigInt(out.length), true);
  return out;
}

if (import.meta.main) {
  const [arch, hash, stubPath, out, ...flags] = Deno.args;
  if (!out) {
    console.error("usage: mklauncher.ts ARCH HASH STUB OUT FLAG...");
    Deno.exit(2);
  }
  const stub = Deno.readTextFileSync(stubPath);
  Deno.writeFileSync(out, compose(arch, hash, flags, stub) ?? new TextEncoder().encode(stub));
}
