/**
 * The last step of tools/build.sh on lib/ (the minified, code-split bundle and its linked
 * source maps):
 * - a literal dynamic import of a chunk, `import("./x.js")`, becomes `import(["./x.js"][0])`:
 *   Deno reads at start every module a literal one names, transitively (every command's
 *   chunks), and a non-literal one only when it runs;
 * - each source map follows: the columns of what the rewrite moved shifted (most minified
 *   chunks are one line, so a shift moves the rest of the line), `sourcesContent`
 *   dropped (the sources are not shipped: a map only places a stack frame), and each source
 *   named `micro:PATH` by its path in the repository, so an internal error's stack reads
 *   `at f (micro:core/engine/mod.ts:412:9)` wherever the bundle was unpacked.
 *
 *   deno run -A tools/finish_lib.ts LIBDIR
 */

const B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const DIGIT = new Map([...B64].map((c, i) => [c, i]));

/** One segment's fields (Base64 VLQ, as the source map format has them). */
export function decodeSegment(text: string): number[] {
  if (!text) throw new Error("source map: an empty segment");
  const out: number[] = [];
  let value = 0;
  let shift = 0;
  for (const c of text) {
    const d = DIGIT.get(c);
    if (d === undefined) throw new Error(`source map: "${c}" is not a Base64 digit`);
    value += (d & 31) * 2 ** shift;
    if (d & 32) {
      shift += 5;
      continue;
    }
    out.push(value % 2 === 1 ? -(value - 1) / 2 : value / 2);
    value = 0;
    shift = 0;
  }
  if (shift) throw new Error("source map: a segment ends inside a number");
  return out;
}

export function encodeSegment(fields: number[]): string {
  let out = "";
  for (const f of fields) {
    let v = f < 0 ? -f * 2 + 1 : f * 2;
    do {
      let d = v % 32;
      v = Math.floor(v / 32);
      if (v > 0) d |= 32;
      out += B64[d];
    } while (v > 0);
  }
  return out;
}

/**
 * `mappings` with the generated columns moved: `shifts[line]` lists [column, by] pairs in
 * column order, and a segment at a column after one moves by its `by` (by all before it).
 */
export function shiftColumns(mappings: string, shifts: Map<number, [number, number][]>): string {
  if (!shifts.size) return mappings;
  return mappings.split(";").map((line, n) => {
    const moves = shifts.get(n);
    if (!moves || !line) return line;
    let col = 0;
    let prevOut = 0;
    return line.split(",").map((seg) => {
      const f = decodeSegment(seg);
      col += f[0];
      let by = 0;
      for (const [at, d] of moves) if (at < col) by += d;
      const out = col + by;
      f[0] = out - prevOut;
      prevOut = out;
      return encodeSegment(f);
    }).join(",");
  }).join(";");
}

const DYNAMIC = /import\("(\.\/[A-Za-z0-9_.-]+\.js)"\)/g;

/** A chunk's text with its literal dynamic imports made non-literal, and what moved where. */
export function rewriteImports(text: string): {
  text: string;
  shifts: Map<number, [number, number][]>;
} {
  // Source maps count these as line breaks too; esbuild's ASCII output has none.
  if (/[\r\u2028\u2029]/.test(text)) throw new Error("a chunk holds a line break other than \\n");
  const shifts = new Map<number, [number, number][]>();
  const lines = text.split("\n").map((line, n) =>
    line.replace(DYNAMIC, (_m, path: string, at: number) => {
      // In the line's columns before any rewrite (a later match's `at` is too): the string
      // after `import(` moves by the `[` (1), what follows its closing quote by `][0]` too.
      const list = shifts.get(n) ?? [];
      list.push([at + 6, 1], [at + 8 + path.length, 4]);
      shifts.set(n, list);
      return `import(["${path}"][0])`;
    })
  );
  return { text: lines.join("\n"), shifts };
}

/** A map's source as `micro:PATH`: its path under the repository (the build dir is dist/X/lib). */
export function sourceName(source: string): string {
  return `micro:${source.replace(/^(\.\.\/)+/, "")}`;
}

if (import.meta.main) {
  const dir = Deno.args[0];
  if (!dir) throw new Error("usage: finish_lib.ts LIBDIR");
  for (const e of Deno.readDirSync(dir)) {
    if (!e.isFile || !e.name.endsWith(".js")) continue;
    const path = `${dir}/${e.name}`;
    const { text, shifts } = rewriteImports(Deno.readTextFileSync(path));
    Deno.writeTextFileSync(path, text);
    let map: { sources: string[]; sourcesContent?: unknown; mappings: string };
    try {
      map = JSON.parse(Deno.readTextFileSync(`${path}.map`));
    } catch (err) {
      if (err instanceof Deno.errors.NotFound) continue;
      throw err;
    }
    delete map.sourcesContent;
    map.sources = map.sources.map(sourceName);
    map.mappings = shiftColumns(map.mappings, shifts);
    Deno.writeTextFileSync(`${path}.map`, JSON.stringify(map));
  }
}
