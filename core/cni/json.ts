/**
 * JSON from files and programs micro does not control (CNI configuration lists, plugin
 * results): nesting is counted before JSON.parse, so a deep `[[[[...` cannot exhaust the
 * stack, and the text is bounded by whoever read it.
 */

/** Deeper than any CNI configuration or result needs (they nest 5 or 6 levels). */
export const MAX_JSON_DEPTH = 64;

/** The deepest nesting of arrays and objects in `text`, strings skipped. */
export function jsonDepth(text: string): number {
  let depth = 0;
  let max = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i++; // backslash: skip the escaped character
      else if (c === 0x22) inString = false;
      continue;
    }
    if (c === 0x22) inString = true;
    else if (c === 0x5b || c === 0x7b) {
      if (++depth > max) max = depth;
    } else if (c === 0x5d || c === 0x7d) depth--;
  }
  return max;
}

/** JSON.parse with a nesting limit; throws an Error with a short reason. */
export function parseJsonLimited(text: string, maxDepth = MAX_JSON_DEPTH): unknown {
  if (jsonDepth(text) > maxDepth) throw new Error(`nested deeper than ${maxDepth} levels`);
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new Error(`not valid JSON: ${(e as Error).message.split("\n")[0]}`);
  }
}
