/**
 * The `yaml` library, loaded only when a profile file (or `micro profile show`) needs it,
 * and the parse of a profile's text into its data and the lines of its nodes.
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

/** The deepest a profile may nest (maps and lists; micro's own options need five). */
export const MAX_DEPTH = 64;
/** Alias expansions toJS may make (the library's own guard against alias bombs). */
export const MAX_ALIASES = 1000;
/** Nodes a profile's data may hold once its aliases are expanded. */
export const MAX_NODES = 100_000;

const TOO_DEEP = `nesting too deep (more than ${MAX_DEPTH} levels)`;

/**
 * Parses a profile's text (the library must be loaded). Depth, aliases and size are bounded,
 * and a problem with them is a YAML error like the others (one line, with a line number):
 * the library recurses per level, so 100,000 levels overflow its stack after seconds.
 */
export function parseYaml(text: string): ParsedYaml {
  const deep = tooDeepAt(text, 3 * MAX_DEPTH);
  if (deep > 0) return { errors: [{ line: deep, reason: TOO_DEEP }] };
  try {
    return parseBounded(text);
  } catch (e) {
    // Last resort: a depth the scan under-estimated, or an alias bomb.
    if (e instanceof RangeError) return { errors: [{ line: 1, reason: TOO_DEEP }] };
    if (e instanceof ReferenceError && /alias/i.test(e.message)) {
      return {
        errors: [{ line: 1, reason: `aliases expand too much (more than ${MAX_ALIASES})` }],
      };
    }
    throw e;
  }
}

function parseBounded(text: string): ParsedYaml {
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
  const data = doc.toJS({ maxAliasCount: MAX_ALIASES });
  const shape = measure(data);
  if (shape) return { errors: [{ line: 1, reason: shape }] };
  const lines = lineTree(doc.contents, start(doc.contents), lc);
  return { data, lines };
}

/** Why `data` is too deep or too large once aliases are expanded, or undefined. */
function measure(data: unknown): string | undefined {
  const stack: [unknown, number][] = [[data, 0]];
  let nodes = 0;
  while (stack.length) {
    const [v, depth] = stack.pop()!;
    if (++nodes > MAX_NODES) {
      return `too large once aliases are expanded (more than ${MAX_NODES} nodes)`;
    }
    if (typeof v !== "object" || v === null) continue;
    if (depth >= MAX_DEPTH) return TOO_DEEP;
    for (const child of Object.values(v)) stack.push([child, depth + 1]);
  }
  return undefined;
}

/**
 * The first line (1-based) where an upper bound on the YAML text's nesting passes `max`, or
 * 0; found in one pass without the parser. A line's bound is its parent line's (the last
 * line indented less) plus one, plus its block indicators (`- `, `? `, `: `) and the flow
 * brackets open; quoted text, comments and block scalars are skipped. It over-counts (about
 * twice the real depth), never under-counts what the parser would recurse into.
 */
export function tooDeepAt(text: string, max: number): number {
  const parents: { col: number; base: number; depth: number }[] = [];
  let flow = 0; // flow brackets open
  let quote = ""; // the quote a flow scalar is open with, across lines
  let block = -1; // the indentation a block scalar's text is deeper than
  let base = 0;
  const lines = text.split("\n");
  for (let n = 0; n < lines.length; n++) {
    const l = lines[n];
    let i = 0;
    while (l[i] === " ") i++;
    const blank = i === l.length || l[i] === "#" || l[i] === "\r";
    if (block >= 0) {
      if (blank || i > block) continue;
      block = -1;
    }
    if (flow === 0) {
      if (blank) continue;
      while (parents.length && parents[parents.length - 1].col > i) parents.pop();
      const top = parents[parents.length - 1];
      if (top?.col === i) {
        base = top.base;
        parents.pop();
      } else base = top ? top.depth + 1 : 0;
    }
    const col = i;
    let depth = base;
    let atStart = quote === ""; // where a node may start
    const spaceAt = (j: number) => j >= l.length || l[j] === " " || l[j] === "\t" || l[j] === "\r";
    for (; i < l.length; i++) {
      const ch = l[i];
      if (quote) {
        if (ch === "\\" && quote === '"') i++;
        else if (ch === quote && quote === "'" && l[i + 1] === "'") i++;
        else if (ch === quote) quote = "";
        continue;
      }
      if (ch === " " || ch === "\t" || ch === "\r") continue;
      if (ch === "#" && (i === 0 || spaceAt(i - 1))) break;
      if ((ch === "-" || ch === "?" || ch === ":") && spaceAt(i + 1) && (atStart || ch === ":")) {
        depth++;
        atStart = true;
      } else if (ch === ":" && flow > 0) {
        atStart = true;
      } else if (atStart && (ch === "'" || ch === '"')) {
        quote = ch;
        atStart = false;
      } else if (atStart && (ch === "&" || ch === "!")) {
        while (i + 1 < l.length && !spaceAt(i + 1)) i++;
      } else if (atStart && flow === 0 && (ch === "|" || ch === ">")) {
        block = col;
        break;
      } else if ((ch === "[" || ch === "{") && (atStart || flow > 0)) {
        flow++;
        atStart = true;
      } else if ((ch === "]" || ch === "}") && flow > 0) {
        flow--;
        atStart = false;
      } else if (ch === "," && flow > 0) {
        atStart = true;
      } else atStart = false;
      if (depth + flow > max) return n + 1;
    }
    // A quoted block scalar ends with its line (else it is a plain one, not counted).
    if (flow === 0) quote = "";
    if (flow === 0) parents.push({ col, base, depth });
  }
  return 0;
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
