/** Shared by the OCI tests: a bundle made by `micro oci spec`, edited, the image as rootfs. */
import assert from "node:assert/strict";
import { IMAGE, ok, run } from "./_helpers.ts";

// deno-lint-ignore no-explicit-any
export type Config = Record<string, any>;

/** A bundle in `dir`: `micro oci spec`'s config.json (edited by `edit`), the image as rootfs. */
export async function bundle(dir: string, edit: (c: Config) => void): Promise<string> {
  const b = `${dir}/bundle`;
  Deno.mkdirSync(b);
  ok(await run(["oci", "spec"], { cwd: b }));
  const cp = new Deno.Command("cp", { args: ["-a", IMAGE, `${b}/rootfs`] }).outputSync();
  assert.ok(cp.success, new TextDecoder().decode(cp.stderr));
  const c = JSON.parse(Deno.readTextFileSync(`${b}/config.json`));
  c.process.terminal = false;
  edit(c);
  Deno.writeTextFileSync(`${b}/config.json`, JSON.stringify(c));
  return b;
}
