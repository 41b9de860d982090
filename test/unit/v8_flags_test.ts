/**
 * micro's V8 flags (core/v8.ts): the number-string caches' full sizes, rounded up to a power
 * of two by V8, must be above its initial 128 entries, or V8 fails a CHECK (the process
 * aborts) at the first collision; and they must stay small (what an attached run holds,
 * bench/README.md).
 */
import assert from "node:assert/strict";
import { V8_FLAGS } from "../../core/v8.ts";

Deno.test("V8 flags: the number-string caches' full sizes are above 128 and small", () => {
  const flags = V8_FLAGS.split(",");
  for (const name of ["--smi-string-cache-size", "--double-string-cache-size"]) {
    const flag = flags.find((f) => f.startsWith(`${name}=`));
    assert.ok(flag, `${name} missing in ${V8_FLAGS}`);
    const n = Number(flag.slice(name.length + 1));
    assert.ok(Number.isInteger(n) && n > 128, `${flag}: above 128`);
    assert.ok(n <= 1024, `${flag}: an attached run holds 16 bytes an entry`);
  }
});

Deno.test("V8 flags: a Deno under them converts numbers past a collision (the caches at full size)", async () => {
  const script = "let n = 0; for (let i = 1; i < 3000; i++) n += String(i * 7).length + " +
    "String(i + 0.5).length; console.log(n);";
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["eval", `--v8-flags=${V8_FLAGS}`, script],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
  assert.match(new TextDecoder().decode(out.stdout), /^\d+\n$/);
});
