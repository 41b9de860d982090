/**
 * The bundle's entry (tools/build.sh): `micro version` answered without loading the rest.
 * V8 reads the whole of a bundle before it runs any of it (about 700 KB here, a few
 * milliseconds even from the code cache), so main.ts is bundled on its own into `lib/`
 * (main.js and its chunks, each loaded by the commands that need it), next to this one,
 * and imported here for every other command. Its specifier is computed so that
 * `deno bundle` does not inline it. From source, main.ts is the entry and this file is not
 * used.
 */
import { VERSION } from "./core/version.ts";

/** main.ts's bundle, next to this one: lib/main.js, which imports its chunks. */
export const MAIN_BUNDLE = "lib/main.js";

const first = Deno.args[0];
if ((first === "version" || first === "--version" || first === "-v") && !traced() && !asRunc()) {
  console.log(`micro ${VERSION} (deno ${Deno.version.deno}, v8 ${Deno.version.v8})`);
  Deno.exit(0);
}
await import(new URL(`./${MAIN_BUNDLE}`, import.meta.url).href);

/** Called by a runc name (main.ts looksLikeRunc): runc's `--version` is main.ts's to print. */
function asRunc(): boolean {
  try {
    const exe = Deno.env.get("MICRO_EXE") ?? "";
    return /runc$/.test(exe.slice(exe.lastIndexOf("/") + 1));
  } catch {
    return false;
  }
}

/** With MICRO_TRACE=1, main.ts answers (it prints the phase trace). */
function traced(): boolean {
  try {
    return Deno.env.get("MICRO_TRACE") === "1";
  } catch {
    return false;
  }
}
