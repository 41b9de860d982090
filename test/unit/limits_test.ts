/**
 * Parsing with bounds (issue 7, item 11): a YAML alias bomb, 100,000 levels of nesting in
 * YAML or JSON and a 100,000-rule seccomp file are each refused fast, with one line.
 */
import assert from "node:assert/strict";
import { MicroError, MicroErrors } from "../../core/errors.ts";
import { type PluginSchema, resolveProfile } from "../../core/profile.ts";
import { parseDockerSeccomp, parseJsonU64, parseOciSeccomp } from "../../core/seccomp/mod.ts";
import { parseYaml } from "../../core/yaml.ts";
import { tooDeepAt } from "../../core/yaml_parse.ts";
import { EMBEDDED } from "../../profiles/_embedded.ts";

const NO_PLUGINS: PluginSchema[] = [];

/** A temp dir for the test, removed even when it fails. */
function withTemp(fn: (dir: string) => void): void {
  const dir = Deno.makeTempDirSync({ prefix: "micro-limits-" });
  try {
    fn(dir);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
}

function oneLine(fn: () => unknown, ms = 1000): string {
  const t0 = performance.now();
  try {
    fn();
  } catch (e) {
    assert.ok(performance.now() - t0 < ms, `took ${performance.now() - t0} ms`);
    if (e instanceof MicroErrors) return e.errors.map((x) => x.line()).join("\n");
    if (e instanceof MicroError) return e.line();
    throw e;
  }
  throw new Error("expected an error");
}

// --- YAML bounds -----------------------------------------------------------------------------

function yamlErrors(text: string, ms = 1000): string[] {
  const t0 = performance.now();
  const r = parseYaml(text);
  assert.ok(performance.now() - t0 < ms, `took ${performance.now() - t0} ms`);
  return "errors" in r ? r.errors.map((e) => `${e.line}: ${e.reason}`) : [];
}

Deno.test("yaml: 100,000 levels of nesting are refused fast, in every spelling", () => {
  const deep = "1: nesting too deep (more than 64 levels)";
  const n = 100_000;
  assert.deepEqual(yamlErrors("a: " + "[".repeat(n) + "]".repeat(n)), [deep]);
  assert.deepEqual(yamlErrors("a: " + "{b: ".repeat(n) + "1" + "}".repeat(n)), [deep]);
  assert.deepEqual(yamlErrors("a: " + "? ".repeat(n) + "1"), [deep]);
  assert.deepEqual(yamlErrors("a:\n  " + "- ".repeat(n) + "x"), [
    "2: nesting too deep (more than 64 levels)",
  ]);
  const indented = Array.from({ length: 1000 }, (_, i) => " ".repeat(i) + "k:").join("\n");
  assert.match(yamlErrors(indented)[0], /^\d+: nesting too deep/);
  // The parsed data's depth is the rule: 64 levels pass, 65 do not.
  assert.deepEqual(yamlErrors("a: " + "[".repeat(63) + "]".repeat(63)), []);
  assert.deepEqual(yamlErrors("a: " + "[".repeat(64) + "]".repeat(64)), [deep]);
});

Deno.test("yaml: the depth scan skips quoted text, comments and block scalars", () => {
  const many = "[".repeat(300);
  assert.equal(tooDeepAt(`a: "${many}"\nb: '${many}'\n# ${many}\n`, 10), 0);
  assert.equal(tooDeepAt(`a: |\n  ${many}\n  x\nb: >\n  ${many}\nc: 1\n`, 10), 0);
  assert.equal(tooDeepAt(`a: x${many}\n`, 10), 0); // a plain scalar's brackets
  assert.equal(tooDeepAt(`a: [b, "]]]]]]\n]]]]", ${many}]\n`, 10), 2);
  // The built-in profiles are far from the bound the parser is protected by.
  for (const text of Object.values(EMBEDDED)) assert.equal(tooDeepAt(text, 32), 0);
});

Deno.test("yaml: an alias bomb is refused fast, with one line", () => {
  let bomb = "a0: &a0 [x, x, x, x, x, x, x, x, x]\n";
  for (let i = 1; i < 20; i++) {
    bomb += `a${i}: &a${i} [${Array(9).fill(`*a${i - 1}`).join(", ")}]\n`;
  }
  assert.deepEqual(yamlErrors(bomb), ["1: aliases expand too much (more than 1000)"]);
  withTemp((dir) => {
    Deno.writeTextFileSync(`${dir}/bomb.yaml`, bomb);
    assert.equal(
      oneLine(() => resolveProfile([`${dir}/bomb.yaml`], null, NO_PLUGINS)),
      `profile ${dir}/bomb.yaml (line 1): invalid yaml: aliases expand too much (more than 1000)`,
    );
    Deno.writeTextFileSync(`${dir}/deep.yaml`, "a: " + "[".repeat(100_000) + "]".repeat(100_000));
    assert.equal(
      oneLine(() => resolveProfile([`${dir}/deep.yaml`], null, NO_PLUGINS)),
      `profile ${dir}/deep.yaml (line 1): invalid yaml: nesting too deep (more than 64 levels)`,
    );
  });
});

// --- seccomp JSON bounds ---------------------------------------------------------------------

function seccompProblem(fn: () => unknown, ms = 300): string {
  const t0 = performance.now();
  try {
    fn();
  } catch (e) {
    assert.ok(performance.now() - t0 < ms, `took ${performance.now() - t0} ms`);
    return (e as Error).message;
  }
  throw new Error("expected an error");
}

Deno.test("seccomp JSON: 100,000 rules are refused in milliseconds", () => {
  const rule = { names: ["read"], action: "SCMP_ACT_BOGUS" };
  const text = JSON.stringify({
    defaultAction: "SCMP_ACT_ERRNO",
    syscalls: Array(100_000).fill(rule),
  });
  const json = parseJsonU64(text);
  assert.equal(
    seccompProblem(() => parseOciSeccomp(json)),
    "seccomp.syscalls: 100000 rules, more than the 4096 micro takes",
  );
  assert.equal(
    seccompProblem(() => parseDockerSeccomp(json, { arch: "x86_64", caps: [] })),
    "seccomp profile.syscalls: 100000 rules, more than the 4096 micro takes",
  );
  const names = { names: Array(5000).fill("read"), action: "SCMP_ACT_ALLOW" };
  assert.match(
    seccompProblem(() =>
      parseOciSeccomp({ defaultAction: "SCMP_ACT_ERRNO", syscalls: Array(4).fill(names) })
    ),
    /^seccomp\.syscalls: 20000 syscall names, more than the 16384 micro takes$/,
  );
});

Deno.test("seccomp JSON: 100,000 levels of nesting are refused before parsing", () => {
  const n = 100_000;
  assert.equal(
    seccompProblem(() => parseJsonU64("[".repeat(n) + "]".repeat(n))),
    "seccomp: nested deeper than 32 levels",
  );
  // Brackets in strings do not count.
  assert.deepEqual(parseJsonU64(JSON.stringify({ a: "[".repeat(100) })), { a: "[".repeat(100) });
});
