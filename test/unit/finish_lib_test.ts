/**
 * tools/finish_lib.ts: the bundle's literal dynamic imports made non-literal with the source
 * maps following, so a stack trace of the minified bundle still names the right line and
 * column of the repository's file.
 */
import assert from "node:assert/strict";
import {
  decodeSegment,
  encodeSegment,
  rewriteImports,
  shiftColumns,
  sourceName,
} from "../../tools/finish_lib.ts";

Deno.test("finish_lib: Base64 VLQ segments decode what they encode", () => {
  for (const fields of [[0], [1, -1, 15, -16], [16, 1000, -1000, 123456789], [0, 0, 0, 0, 0]]) {
    assert.deepEqual(decodeSegment(encodeSegment(fields)), fields);
  }
  assert.equal(encodeSegment([0, 0, 16, 1]), "AAgBC"); // the format's own example values
  assert.throws(() => decodeSegment("g"), /ends inside a number/);
  assert.throws(() => decodeSegment(""), /an empty segment/);
});

Deno.test("finish_lib: a rewrite moves the columns after it on its line, not before or elsewhere", () => {
  const { text, shifts } = rewriteImports(
    'a;import("./x.js");b;import("./y.js");c\nimport("./z.js")',
  );
  assert.equal(text, 'a;import(["./x.js"][0]);b;import(["./y.js"][0]);c\nimport(["./z.js"][0])');
  assert.deepEqual([...shifts], [[0, [[8, 1], [16, 4], [27, 1], [35, 4]]], [1, [[6, 1], [14, 4]]]]);
  // Line 0: segments at columns 0 ("a"), 9 (the first string), 19 ("b"), 38 ("c"); line 1:
  // at 0 (the import) and 7 (its string).
  const seg = (col: number) => encodeSegment([col, 0, 0, 0]);
  const mappings = [seg(0), seg(9), seg(10), seg(19)].join(",") + ";" + [seg(0), seg(7)].join(",");
  const moved = shiftColumns(mappings, shifts).split(";").map((line) => {
    let col = 0;
    return line.split(",").map((s) => col += decodeSegment(s)[0]);
  });
  // The string moves by its "[" (1); what follows an import by 5; "c" by 10.
  assert.deepEqual(moved, [[0, 10, 24, 48], [0, 8]]);
  // ... to where those characters are in the rewritten text.
  const [l0, l1] = text.split("\n");
  assert.deepEqual([l0[10], l0[24], l0[48], l1[8]], ['"', "b", "c", '"']);
  assert.equal(sourceName("../../../core/run.ts"), "micro:core/run.ts");
  assert.throws(() => rewriteImports("a;\r\nb"), /line break other than/);
});

Deno.test("finish_lib: a minified, split bundle's stack trace names the source's line and column", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.mkdir(`${dir}/src`);
    await Deno.writeTextFile(
      `${dir}/src/a.ts`,
      "export function one(): number {\n  return 1;\n}\n",
    );
    await Deno.writeTextFile(
      `${dir}/src/m.ts`,
      [
        'const { one } = await import("./a.ts");',
        "function fail(n: number): never {",
        "  throw new Error(`here ${n}`);",
        "}",
        "try {",
        "  fail(one());",
        "} catch (e) {",
        "  console.log((e as Error).stack);",
        "}",
      ].join("\n"),
    );
    const deno = Deno.execPath();
    const cmd = (args: string[]) =>
      new Deno.Command(deno, { args, cwd: dir, stdout: "piped", stderr: "piped" }).output();
    const bundle = await cmd([
      "bundle",
      "--quiet",
      "--no-config",
      "--platform",
      "deno",
      "--code-splitting",
      "--minify",
      "--sourcemap=linked",
      "--outdir",
      "out",
      "src/m.ts",
    ]);
    assert.equal(bundle.code, 0, new TextDecoder().decode(bundle.stderr));
    const tool = new URL("../../tools/finish_lib.ts", import.meta.url).pathname;
    const finish = await cmd(["run", "--quiet", "--no-config", "-A", tool, "out"]);
    assert.equal(finish.code, 0, new TextDecoder().decode(finish.stderr));
    const js = await Deno.readTextFile(`${dir}/out/m.js`);
    assert.match(js, /import\(\["\.\/a-[A-Z0-9]+\.js"\]\[0\]\)/);
    const map = JSON.parse(await Deno.readTextFile(`${dir}/out/m.js.map`));
    assert.equal(map.sourcesContent, undefined);
    assert.deepEqual(map.sources, ["micro:src/m.ts"]);
    const r = await cmd(["run", "--quiet", "--no-config", "-A", "out/m.js"]);
    const out = new TextDecoder().decode(r.stdout);
    // The throw is after the rewritten import on the one minified line: its column moved.
    assert.match(out, /Error: here 1\n\s+at \S+ \(micro:src\/m\.ts:3:9\)/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
