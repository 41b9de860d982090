/**
 * The `yaml` library, loaded only when a profile file (or `micro profile show`) needs it,
 * and the parse of a profile's text into its data and the lines of its nodes.
 *
 * The library is large (about 260 KB) and V8 parses whatever is in the bundle at start-up,
 * used or not, so it is not in the bundle: the built-in profiles come parsed already
 * (`profiles/_embedded.ts`), and `tools/build.sh` bundles the library on its own into
 * `micro.yaml.js`, next to the main bundle, which `loadYaml()` imports. Its specifier is
 * computed so that `deno bundle` does not inline it.
 *
 * From source (`deno run main.ts`, `deno test`) this module imports the npm package at once,
 * so that code and tests can call `yaml()` without awaiting anything.
 */
import type * as Yaml from "yaml";

export type YamlLib = typeof Yaml;

/** The file next to the bundle that holds the library (`export default` its namespace). */
export const YAML_BUNDLE = "micro.yaml.js";

/** Whether this module runs from source, not from the bundle. */
const FROM_SOURCE = import.meta.url.endsWith("/core/yaml.ts");

let lib: YamlLib | undefined;

/** Loads the library (once). */
export async function loadYaml(): Promise<void> {
  if (lib) return;
  const spec = FROM_SOURCE ? "yaml" : new URL(`./${YAML_BUNDLE}`, import.meta.url).href;
  const mod = await import(spec);
  lib = (FROM_SOURCE ? mod : mod.default) as YamlLib;
}

/** The library; `loadYaml()` must have been awaited first. */
export function yaml(): YamlLib {
  if (!lib) throw new Error("the yaml library is not loaded: await loadYaml() first");
  return lib;
}

/**
 * The line (1-based) of each node of a document, for messages: `[line, children]`, the
 * children by key for a map and by index for a list; `null` when the node has no position.
 * A map entry's line is its key's. JSON, so that built-in profiles can carry it.
 */
export type LineTree = [
  line: number | null,
  children?: { [key: string]: LineTree } | (LineTree | null)[],
];

/** A profile's text parsed: its data and lines, or its YAML syntax errors. */
export type ParsedYaml =
  | { data: unknown; lines: LineTree }
  | { errors: { line: number; reason: string }[] };

/** Parses a profile's text (the library must be loaded). */
export function parseYaml(text: string): ParsedYaml {
  const { LineCounter, parseDocument } = yaml();
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc, prettyErrors: false, uniqueKeys: true });
  if (doc.errors.length > 0) {
    // An error found at the end of the text belongs to its last line.
    const end = Math.max(0, text.trimEnd().length - 1);
    const errors = doc.errors.map((err) => ({
      line: lc.linePos(Math.min(err.pos[0], end)).line,
      reason: lowerFirst(
        err.message.split("\n")[0].replace(/ at line \d+, column \d+:?$/, "").replace(/\.$/, ""),
      ),
    }));
    return { errors };
  }
  const lines = lineTree(doc.contents, start(doc.contents), lc);
  return { data: doc.toJS({ maxAliasCount: 1000 }), lines };
}

function start(node: unknown): number | undefined {
  return (node as { range?: number[] } | null)?.range?.[0];
}

/** The tree of `node`, at `offset` (its parent's when it has no position of its own). */
function lineTree(node: unknown, offset: number | undefined, lc: Yaml.LineCounter): LineTree {
  const { isMap, isScalar, isSeq } = yaml();
  const line = offset === undefined ? null : lc.linePos(offset).line;
  if (isMap(node) && node.items.length > 0) {
    const keys: { [key: string]: LineTree } = Object.create(null);
    for (const pair of node.items) {
      if (!isScalar(pair.key)) continue;
      const key = String(pair.key.value);
      // Keys are unique (uniqueKeys); were they not, a lookup would find the first.
      if (!Object.hasOwn(keys, key)) {
        keys[key] = lineTree(pair.value, start(pair.key) ?? offset, lc);
      }
    }
    return [line, keys];
  }
  if (isSeq(node) && node.items.length > 0) {
    return [
      line,
      node.items.map((item) => item ? lineTree(item, start(item) ?? offset, lc) : null),
    ];
  }
  return [line];
}

/**
 * The line of the node at a key path: the deepest node of the path that the document has
 * (a key of a map, an index of a list); undefined when it has no position.
 */
export function lineAt(tree: LineTree, path: readonly (string | number)[]): number | undefined {
  let node = tree;
  for (const seg of path) {
    const children = node[1];
    let next: LineTree | null | undefined;
    if (Array.isArray(children)) next = typeof seg === "number" ? children[seg] : undefined;
    else if (children && typeof seg === "string" && Object.hasOwn(children, seg)) {
      next = children[seg];
    }
    if (!next) break;
    node = next;
  }
  return node[0] ?? undefined;
}

function lowerFirst(s: string): string {
  return s.charAt(0).toLowerCase() + s.slice(1);
}

if (FROM_SOURCE) await loadYaml();
