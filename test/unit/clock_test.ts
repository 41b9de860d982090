import assert from "node:assert/strict";
import { isoTime } from "../../core/clock.ts";

Deno.test("isoTime writes what Date's toISOString writes, days, leap years and edges included", () => {
  const at = (iso: string) => Date.parse(iso);
  const edges = [
    0,
    -1,
    1,
    at("1969-12-31T23:59:59.999Z"),
    at("2000-02-29T12:00:00.000Z"),
    at("2000-03-01T00:00:00.000Z"),
    at("2024-02-29T23:59:59.999Z"),
    at("2100-02-28T23:59:59.999Z"),
    at("2100-03-01T00:00:00.000Z"),
    at("2026-12-31T23:59:59.999Z"),
    at("2027-01-01T00:00:00.000Z"),
    at("0000-01-01T00:00:00.000Z"),
    at("9999-12-31T23:59:59.999Z"),
    at("1600-02-29T00:00:00.000Z"),
    Date.now(),
  ];
  for (const ms of edges) assert.equal(isoTime(ms), new Date(ms).toISOString(), String(ms));
  // outside the four-digit years: Date's own form
  for (const ms of [at("-000001-01-01T00:00:00.000Z"), at("+010000-01-01T00:00:00.000Z")]) {
    assert.equal(isoTime(ms), new Date(ms).toISOString());
  }
  // and a spread of times across five centuries
  let seed = 42;
  const next = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
  for (let i = 0; i < 20_000; i++) {
    const ms = Math.floor((next() - 0.5) * 2 * 1.6e13);
    assert.equal(isoTime(ms), new Date(ms).toISOString(), String(ms));
  }
});
