/** How the unit tests run micro's static programs (tools/trampoline/*.S) for each architecture. */
import type { TrampolineArch } from "../../tools/gen_trampoline.ts";

/** `cmd` found in PATH, or null. */
export function which(cmd: string): string | null {
  for (const dir of (Deno.env.get("PATH") ?? "/usr/bin:/bin").split(":")) {
    try {
      if (Deno.statSync(`${dir}/${cmd}`).isFile) return `${dir}/${cmd}`;
    } catch { /* not here */ }
  }
  return null;
}

/** How to run a program of `arch` here: [] natively, [qemu] emulated, null not at all. */
export function runner(arch: TrampolineArch): string[] | null {
  if (Deno.build.arch === arch) return [];
  const qemu = which(`qemu-${arch}-static`) ?? which(`qemu-${arch}`);
  return qemu ? [qemu] : null;
}
