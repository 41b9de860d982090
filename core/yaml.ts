/**
 * The `yaml` library, loaded only when a profile file (or `micro profile show`) needs it,
 * with the parse of a profile's text into its data and the lines of its nodes
 * (core/yaml_parse.ts, loaded with it).
 *
 * The library is large (about 260 KB) and V8 parses whatever is in the bundle at start-up,
 * used or not, so it is not in the bundle: the built-in profiles come parsed already
 * (`profiles/_embedded.ts`), and `tools/build.sh` bundles the library on its own into
 * `micro.yaml.js`, in the main bundle's lib/, which `loadYaml()` imports. Its specifier is
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
  // The parse too: a run with built-in profiles only (parsed at build time) loads neither.
  parser = await import("./yaml_parse.ts");
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

/** The parse (core/yaml_parse.ts), loaded with the library by `loadYaml()`. */
let parser: typeof import("./yaml_parse.ts") | undefined;

/**
 * Parses a profile's text (the library must be loaded): its data and lines, or its YAML
 * errors, with depth, aliases and size bounded (core/yaml_parse.ts).
 */
export function parseYaml(text: string): ParsedYaml {
  if (!parser) throw new Error("the yaml library is not loaded: await loadYaml() first");
  return parser.parseYaml(yaml(), text);
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

if (FROM_SOURCE) await loadYaml();
