/** `micro profile list|show`. */
import { MicroError } from "../core/errors.ts";
import { gcState } from "./_gc.ts";

export async function profile(argv: string[]): Promise<number> {
  await gcState();
  const { loadYaml } = await import("../core/profile.ts");
  const { listProfiles, showProfile } = await import("../core/profile_show.ts");
  const { PLUGINS } = await import("../plugins/mod.ts");
  if (argv[1] === "list") {
    const all = listProfiles();
    const w = Math.max(...all.map((p) => p.name.length));
    for (const p of all) console.log(`${p.name.padEnd(w)}  ${p.description}`);
    return 0;
  }
  if (argv[1] === "show" && argv.length > 2) {
    await loadYaml();
    console.log(showProfile(argv.slice(2), PLUGINS).trimEnd());
    return 0;
  }
  throw new MicroError(`usage: micro profile list | micro profile show NAME|PATH...`);
}
