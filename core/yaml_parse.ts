/**
 * A profile's text parsed into its data and the lines of its nodes, with its depth, aliases
 * and size bounded. Loaded with the yaml library by `loadYaml()` (core/yaml.ts): a run of
 * built-in profiles, parsed at build time, loads neither.
 */
import type * as Yaml from "yaml";
import type { LineTree, ParsedYaml, YamlLib } from "./yaml.ts";

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
export function parseYaml(lib: YamlLib, text: string): ParsedYaml {
  const deep = tooDeepAt(text, 3 * MAX_DEPTH);
  if (deep > 0) return { errors: [{ line: deep, reason: TOO_DEEP }] };
  try {
    return parseBounded(lib, text);
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

function parseBounded(lib: YamlLib, text: string): ParsedYaml {
  const { LineCounter, parseDocument } = lib;
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
  const lines = lineTree(lib, doc.contents, start(doc.contents), lc);
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
function lineTree(
  lib: YamlLib,
  node: unknown,
  offset: number | undefined,
  lc: Yaml.LineCounter,
): LineTree {
  const { isMap, isScalar, isSeq } = lib;
  const line = offset === undefined ? null : lc.linePos(offset).line;
  if (isMap(node) && node.items.length > 0) {
    const keys: { [key: string]: LineTree } = Object.create(null);
    for (const pair of node.items) {
      if (!isScalar(pair.key)) continue;
      const key = String(pair.key.value);
      // Keys are unique (uniqueKeys); were they not, a lookup would find the first.
      if (!Object.hasOwn(keys, key)) {
        keys[key] = lineTree(lib, pair.value, start(pair.key) ?? offset, lc);
      }
    }
    return [line, keys];
  }
  if (isSeq(node) && node.items.length > 0) {
    return [
      line,
      node.items.map((item) => item ? lineTree(lib, item, start(item) ?? offset, lc) : null),
    ];
  }
  return [line];
}

function lowerFirst(s: string): string {
  return s.charAt(0).toLowerCase() + s.slice(1);
}
