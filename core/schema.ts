/**
 * Checks a value against the schema language of `schema_types.ts`. `check` returns plain
 * issues (a key path and a reason); `validate` turns them into one-line `MicroError`s that
 * name the source, the key path and, where known, the line:
 *
 *     profile ./web.yaml: mount.binds[2] (line 7): invalid value "data:/srv": ...
 */
import { MicroError } from "./errors.ts";
import type { Schema } from "./schema_types.ts";

/** A key path: object keys and list indexes, from the top of the document. */
export type KeyPath = (string | number)[];

/** Finds the line of the node at a key path (1-based), when the source has lines. */
export type Locate = (path: KeyPath) => { line: number } | undefined;

export interface Issue {
  path: KeyPath;
  reason: string;
}

/**
 * `mount.binds[2].source`; keys that are not plain words are quoted: `env["A.B"]`. An
 * append key keeps its `+`: `lsm.landlock.paths+`.
 */
export function formatPath(path: KeyPath): string {
  let out = "";
  for (const seg of path) {
    if (typeof seg === "number") out += `[${seg}]`;
    else if (/^[A-Za-z_][A-Za-z0-9_-]*\+?$/.test(seg)) out += out ? `.${seg}` : seg;
    else out += `[${JSON.stringify(seg)}]`;
  }
  return out;
}

/** A value as shown in a message: strings quoted, long ones cut short. */
export function showValue(v: unknown): string {
  if (v === null || v === undefined) return "null";
  if (typeof v === "string") {
    return JSON.stringify(v.length > 60 ? v.slice(0, 57) + "..." : v);
  }
  if (Array.isArray(v)) return "a list";
  if (typeof v === "object") return "a map";
  return String(v);
}

export function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

const TYPE_NAMES: Record<Schema["type"], string> = {
  boolean: "a boolean",
  string: "a string",
  integer: "an integer",
  number: "a number",
  list: "a list",
  map: "a map",
  object: "a map",
  oneOf: "a value",
};

function typeName(schema: Schema): string {
  if (schema.type !== "oneOf") return TYPE_NAMES[schema.type];
  const names = [...new Set(schema.options.map(typeName))];
  return names.length <= 2
    ? names.join(" or ")
    : `${names.slice(0, -1).join(", ")} or ${names[names.length - 1]}`;
}

/** Whether the value has the JavaScript shape the schema expects (not its range). */
function shapeFits(value: unknown, schema: Schema): boolean {
  switch (schema.type) {
    case "boolean":
      return typeof value === "boolean";
    case "string":
      return typeof value === "string";
    case "integer":
      return typeof value === "number" && Number.isInteger(value);
    case "number":
      return typeof value === "number" && Number.isFinite(value);
    case "list":
      return Array.isArray(value);
    case "map":
    case "object":
      return isPlainObject(value);
    case "oneOf":
      return schema.options.some((o) => shapeFits(value, o));
  }
}

function quoteList(items: readonly string[]): string {
  return items.map((s) => JSON.stringify(s)).join(", ");
}

/** Edit distance, to suggest the key a typo meant. */
function distance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let diag = row[0];
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const next = Math.min(row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] === b[j - 1] ? 0 : 1));
      diag = row[j];
      row[j] = next;
    }
  }
  return row[b.length];
}

function unknownKeyReason(key: string, known: string[]): string {
  if (known.length === 0) return "unknown key: no keys are allowed here";
  const close = known
    .map((k) => ({ k, d: distance(key.toLowerCase(), k.toLowerCase()) }))
    .filter(({ k, d }) => d <= Math.max(1, Math.floor(k.length / 3)))
    .sort((x, y) => x.d - y.d)[0];
  if (close) return `unknown key: did you mean ${JSON.stringify(close.k)}?`;
  return `unknown key: expected one of ${quoteList(known)}`;
}

function typeReason(value: unknown, schema: Schema): string {
  let reason = `expected ${typeName(schema)}, got ${showValue(value)}`;
  if (
    schema.type === "string" && (typeof value === "number" || typeof value === "boolean")
  ) reason += " (quote it)";
  return reason;
}

export interface CheckOptions {
  /**
   * Accept `KEY+` beside a list field `KEY` of an object: "append to the list the layers
   * below made" (profiles only; `mergeLayers` applies it).
   */
  appendKeys?: boolean;
}

/** The suffix that makes a profile key append to an inherited list: `paths+: [...]`. */
export const APPEND_SUFFIX = "+";

/** Why `KEY+` cannot stand here, or undefined when it appends to the list field `KEY`. */
function appendReason(
  name: string,
  fields: Record<string, Schema>,
  siblings: Record<string, unknown>,
): string | undefined {
  const target = Object.hasOwn(fields, name) ? fields[name] : undefined;
  if (!target) return unknownKeyReason(name, Object.keys(fields));
  if (target.type === "map" || target.type === "object") {
    return `cannot append: ${name} is a map, and maps merge key by key: write "${name}:"`;
  }
  if (target.type !== "list") {
    return `cannot append: ${name} is ${typeName(target)}, not a list`;
  }
  if (Object.hasOwn(siblings, name)) {
    return `both ${name} and ${name}${APPEND_SUFFIX}: give one (${name} replaces the ` +
      `inherited list, ${name}${APPEND_SUFFIX} appends to it)`;
  }
  return undefined;
}

/** Every issue with `value` against `schema`; an empty list means the value is valid. */
export function check(
  value: unknown,
  schema: Schema,
  path: KeyPath = [],
  opts: CheckOptions = {},
): Issue[] {
  const issues: Issue[] = [];
  const add = (reason: string, at: KeyPath = path) => issues.push({ path: at, reason });
  if (schema.type !== "oneOf" && !shapeFits(value, schema)) {
    add(typeReason(value, schema));
    return issues;
  }
  switch (schema.type) {
    case "boolean":
      break;
    case "string": {
      const s = value as string;
      if (schema.enum && !schema.enum.includes(s)) {
        add(`invalid value ${showValue(s)}: expected one of ${quoteList(schema.enum)}`);
      } else if (schema.check) {
        const reason = schema.check(s);
        if (reason) add(`invalid value ${showValue(s)}: ${reason}`);
      }
      break;
    }
    case "integer":
    case "number": {
      const n = value as number;
      const { min, max } = schema;
      if ((min !== undefined && n < min) || (max !== undefined && n > max)) {
        const range = min !== undefined && max !== undefined
          ? `from ${min} to ${max}`
          : min !== undefined
          ? `>= ${min}`
          : `<= ${max}`;
        add(`invalid value ${n}: expected ${TYPE_NAMES[schema.type]} ${range}`);
      } else if (schema.type === "integer" && schema.check) {
        const reason = schema.check(n);
        if (reason) add(`invalid value ${n}: ${reason}`);
      }
      break;
    }
    case "list": {
      // Items replace whole: nothing inside a list is merged, so nothing there appends.
      const inner = { ...opts, appendKeys: false };
      (value as unknown[]).forEach((item, i) => {
        issues.push(...check(item, schema.items, [...path, i], inner));
      });
      break;
    }
    case "map":
      for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
        // A map of lists would make `KEY+` ambiguous (a key, or an append?): reserved.
        const reason = opts.appendKeys && schema.values.type === "list" &&
            k.endsWith(APPEND_SUFFIX)
          ? `a key ending with "${APPEND_SUFFIX}" is reserved`
          : schema.keyCheck?.(k);
        if (reason) add(`invalid key ${showValue(k)}: ${reason}`, [...path, k]);
        else issues.push(...check(v, schema.values, [...path, k], opts));
      }
      break;
    case "object": {
      const known = Object.keys(schema.fields);
      for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
        const field = Object.hasOwn(schema.fields, k) ? schema.fields[k] : undefined;
        if (field) {
          issues.push(...check(v, field, [...path, k], opts));
        } else if (opts.appendKeys && k.length > 1 && k.endsWith(APPEND_SUFFIX)) {
          const name = k.slice(0, -APPEND_SUFFIX.length);
          const reason = appendReason(name, schema.fields, value as Record<string, unknown>);
          if (reason) add(reason, [...path, k]);
          else issues.push(...check(v, schema.fields[name], [...path, k], opts));
        } else add(unknownKeyReason(k, known), [...path, k]);
      }
      break;
    }
    case "oneOf": {
      // The first option that fits wins; otherwise report against the first option whose
      // shape fits (a string with a bad value), or a type error naming every option.
      const fitting = schema.options.filter((o) => shapeFits(value, o));
      if (fitting.length === 0) {
        add(typeReason(value, schema));
        break;
      }
      let first: Issue[] | undefined;
      for (const option of fitting) {
        const found = check(value, option, path, opts);
        if (found.length === 0) return [];
        first ??= found;
      }
      issues.push(...first!);
      break;
    }
  }
  return issues;
}

/** The one-line message for an issue: `LABEL: KEY.PATH (line N): reason`. */
export function issueLine(label: string, issue: Issue, locate?: Locate): string {
  const where = formatPath(issue.path);
  const line = locate?.(issue.path)?.line;
  let head = label;
  if (where) head += `: ${where}`;
  if (line !== undefined) head += ` (line ${line})`;
  return `${head}: ${issue.reason}`;
}

/**
 * Validates `value` and returns one `MicroError` (exit code 125) per issue. `label` names
 * the source, such as `profile ./web.yaml`, `profile builtin:default` or `command line`.
 */
export function validate(
  value: unknown,
  schema: Schema,
  label: string,
  locate?: Locate,
  path: KeyPath = [],
  opts: CheckOptions = {},
): MicroError[] {
  return check(value, schema, path, opts).map((issue) =>
    new MicroError(issueLine(label, issue, locate))
  );
}
