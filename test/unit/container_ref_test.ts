/** core/store/resolve.ts: one resolver of a container NAME, ID and ID prefix for every command. */
import assert from "node:assert/strict";
import { MicroError } from "../../core/errors.ts";
import { type Candidate, resolveRef } from "../../core/store/resolve.ts";

const A = "ab12" + "0".repeat(60);
const B = "ab34" + "0".repeat(60);
/** A name that is hex and also a prefix of B's id: Docker takes the name first. */
const C = "cd" + "1".repeat(62);

function lookup(list: Candidate<string>[], calls: string[] = []) {
  return {
    byId: (id: string) => {
      calls.push(`id ${id}`);
      return list.find((c) => c.id === id)?.value ?? null;
    },
    byName: (name: string) => {
      calls.push(`name ${name}`);
      return list.find((c) => c.name === name)?.value ?? null;
    },
    all: () => {
      calls.push("all");
      return list;
    },
  };
}

const LIST: Candidate<string>[] = [
  { id: A, name: "web", value: "web" },
  { id: B, name: "db", value: "db" },
  { id: C, name: "ab34", value: "named-ab34" },
];

Deno.test("resolveRef: a full id, a name, a unique id prefix", () => {
  assert.equal(resolveRef(A, lookup(LIST)), "web");
  assert.equal(resolveRef("db", lookup(LIST)), "db");
  assert.equal(resolveRef("ab1", lookup(LIST)), "web");
  assert.equal(resolveRef("cd1", lookup(LIST)), "named-ab34");
});

Deno.test("resolveRef: a name wins over an id prefix it also is (Docker's order)", () => {
  assert.equal(resolveRef("ab34", lookup(LIST)), "named-ab34");
});

Deno.test("resolveRef: an exact name or id never lists every container", () => {
  const calls: string[] = [];
  resolveRef("db", lookup(LIST, calls));
  resolveRef(B, lookup(LIST, calls));
  assert.deepEqual(calls, ["name db", `id ${B}`]);
});

Deno.test("resolveRef: an ambiguous prefix is refused, naming every candidate", () => {
  assert.throws(
    () => resolveRef("ab", lookup(LIST)),
    (e: unknown) =>
      e instanceof MicroError &&
      e.line() === 'container id prefix "ab" matches 2 containers: ' +
          "db (ab3400000000), web (ab1200000000) (give more of the id, or the name)" &&
      !e.line().includes("\n"),
  );
});

Deno.test("resolveRef: nothing, or what cannot be a name, is one line: no such container", () => {
  for (const ref of ["", "zz", "../etc", ".hidden", "a/b", "-f", "abc9"]) {
    const calls: string[] = [];
    assert.throws(
      () => resolveRef(ref, lookup(LIST, calls)),
      (e: unknown) => e instanceof MicroError && e.line().startsWith(`no such container: ${ref}`),
    );
    // A path is never looked up by name (it would be joined to a directory).
    if (/[/.]/.test(ref[0] ?? "") || ref.includes("/") || ref === "") {
      assert.ok(!calls.some((c) => c.startsWith("name")), `${ref}: ${calls}`);
    }
  }
});
