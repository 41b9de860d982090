import assert from "node:assert/strict";
import { MicroError } from "../../core/errors.ts";
import { check, formatPath, type Locate, validate } from "../../core/schema.ts";
import type { Schema } from "../../core/schema_types.ts";

const BIND: Schema = {
  type: "object",
  fields: {
    source: { type: "string", check: (v) => v.startsWith("/") ? undefined : "must be absolute" },
    readonly: { type: "boolean" },
  },
};

const SCHEMA: Schema = {
  type: "object",
  fields: {
    name: { type: "string" },
    mode: { type: "string", enum: ["none", "host"] },
    size: { type: "integer", min: 1, max: 10 },
    count: { type: "integer", min: 0 },
    binds: { type: "list", items: BIND },
    env: {
      type: "map",
      values: { type: "string" },
      keyCheck: (k) => k.includes("=") ? 'contains "="' : undefined,
    },
    user: {
      type: "oneOf",
      options: [{ type: "string", check: (v) => v ? undefined : "is empty" }, {
        type: "integer",
        min: 0,
      }],
    },
  },
};

function reasons(value: unknown): string[] {
  return check(value, SCHEMA).map((i) => `${formatPath(i.path)}: ${i.reason}`);
}

Deno.test("schema accepts a value that fits every field", () => {
  assert.deepEqual(
    reasons({
      name: "x",
      mode: "host",
      size: 3,
      count: 0,
      binds: [{ source: "/a", readonly: true }],
      env: { A: "1" },
      user: 1000,
    }),
    [],
  );
});

Deno.test("schema formats key paths with dots, indexes and quoted odd keys", () => {
  assert.equal(formatPath(["mount", "binds", 2, "source"]), "mount.binds[2].source");
  assert.equal(formatPath(["process", "env", "A.B"]), 'process.env["A.B"]');
  assert.equal(formatPath([]), "");
});

Deno.test("schema names an unknown key by its path and suggests a near one", () => {
  assert.deepEqual(reasons({ binds: [{ source: "/a" }, { sorce: "/b" }] }), [
    'binds[1].sorce: unknown key: did you mean "source"?',
  ]);
  assert.deepEqual(reasons({ zzz: 1 }), [
    'zzz: unknown key: expected one of "name", "mode", "size", "count", "binds", "env", "user"',
  ]);
});

Deno.test("schema reports a wrong type with the value it got", () => {
  assert.deepEqual(reasons({ name: 3, size: "3", binds: {}, env: [], mode: null }), [
    "name: expected a string, got 3 (quote it)",
    'size: expected an integer, got "3"',
    "binds: expected a list, got a map",
    "env: expected a map, got a list",
    "mode: expected a string, got null",
  ]);
  assert.deepEqual(reasons({ size: 1.5 }), ["size: expected an integer, got 1.5"]);
});

Deno.test("schema reports enum, range and check failures with the value quoted", () => {
  assert.deepEqual(
    reasons({ mode: "bridge", size: 11, count: -1, binds: [{ source: "rel" }] }),
    [
      'mode: invalid value "bridge": expected one of "none", "host"',
      "size: invalid value 11: expected an integer from 1 to 10",
      "count: invalid value -1: expected an integer >= 0",
      'binds[0].source: invalid value "rel": must be absolute',
    ],
  );
});

Deno.test("schema checks map keys and map values", () => {
  assert.deepEqual(reasons({ env: { "A=B": "x", C: true } }), [
    'env["A=B"]: invalid key "A=B": contains "="',
    "env.C: expected a string, got true (quote it)",
  ]);
});

Deno.test("schema oneOf takes the first fitting option and reports the closest", () => {
  assert.deepEqual(reasons({ user: "app" }), []);
  assert.deepEqual(reasons({ user: 0 }), []);
  assert.deepEqual(reasons({ user: "" }), ['user: invalid value "": is empty']);
  assert.deepEqual(reasons({ user: -1 }), ["user: invalid value -1: expected an integer >= 0"]);
  assert.deepEqual(reasons({ user: [] }), ["user: expected a string or an integer, got a list"]);
});

Deno.test("schema validate gives one-line errors with the source, path and line", () => {
  const locate: Locate = (path) => path[0] === "mode" ? { line: 4 } : undefined;
  const errors = validate({ mode: "x", size: 0 }, SCHEMA, "profile web.yaml", locate);
  assert.ok(errors.every((e) => e instanceof MicroError && e.exitCode === 125));
  assert.deepEqual(errors.map((e) => e.line()), [
    'profile web.yaml: mode (line 4): invalid value "x": expected one of "none", "host"',
    "profile web.yaml: size: invalid value 0: expected an integer from 1 to 10",
  ]);
});

Deno.test("schema validate reports a top-level type error without a path", () => {
  const errors = validate("text", SCHEMA, "profile a.yaml", () => ({ line: 1 }));
  assert.deepEqual(errors.map((e) => e.line()), [
    'profile a.yaml (line 1): expected a map, got "text"',
  ]);
});
