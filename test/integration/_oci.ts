/** Shared by the OCI tests: a bundle made by `micro oci spec`, edited, the image as rootfs. */
import assert from "node:assert/strict";
import { IMAGE, MICRO, ok, run, type RunResult } from "./_helpers.ts";

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

/**
 * `micro --root ROOT ARGS` from a shell that first runs `pre` (`exec 3<FILE`: fds the caller
 * passes); stdout and stderr go to files beside ROOT, read and removed after: a created
 * container keeps micro's stdio (the caller's, as runc's), and a pipe would stay open as long
 * as it runs.
 */
export async function oci(root: string, args: string[], pre = ""): Promise<RunResult> {
  const out = `${root.slice(0, root.lastIndexOf("/"))}/out-${crypto.randomUUID()}`;
  const r = await new Deno.Command("sh", {
    args: ["-c", `${pre}\nexec "$0" "$@" >"${out}.1" 2>"${out}.2"`, MICRO, "--root", root, ...args],
    stdin: "null",
  }).output();
  const read = (p: string) => {
    const t = Deno.readTextFileSync(p);
    Deno.removeSync(p);
    return t;
  };
  return { code: r.code, signal: null, stdout: read(`${out}.1`), stderr: read(`${out}.2`) };
}
