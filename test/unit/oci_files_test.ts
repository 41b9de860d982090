/**
 * Files OCI create and exec write for the caller, in places others may write (/tmp): made
 * new, never through a link planted there.
 */
import assert from "node:assert/strict";
import { writePidFile } from "../../core/oci/runtime.ts";

Deno.test("oci --pid-file: a link planted at the temp file's name is not written through", () => {
  const dir = Deno.makeTempDirSync();
  try {
    const victim = `${dir}/victim`;
    Deno.writeTextFileSync(victim, "keep");
    // runc's and micro's old fixed temp name, planted in a directory others can write.
    Deno.symlinkSync(victim, `${dir}/.pid.micro-tmp`);
    writePidFile(`${dir}/pid`, 1234);
    assert.equal(Deno.readTextFileSync(victim), "keep");
    assert.equal(Deno.readTextFileSync(`${dir}/pid`), "1234");
    assert.deepEqual(
      [...Deno.readDirSync(dir)].map((e) => e.name).sort(),
      [".pid.micro-tmp", "pid", "victim"],
    );
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});
