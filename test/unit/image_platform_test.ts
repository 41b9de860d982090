/** Platform names and the choice of a manifest in an index. */
import assert from "node:assert/strict";
import {
  choosePlatform,
  formatPlatform,
  hostPlatform,
  parsePlatform,
  platformMatches,
} from "../../core/image/platform.ts";

const d = (n: number) => "sha256:" + String(n).repeat(64).slice(0, 64);
const INDEX = [
  { digest: d(1), platform: { os: "linux", architecture: "amd64" } },
  { digest: d(2), platform: { os: "linux", architecture: "arm", variant: "v7" } },
  { digest: d(3), platform: { os: "linux", architecture: "arm64", variant: "v8" } },
  { digest: d(4), platform: { os: "unknown", architecture: "unknown" } },
  { digest: d(5), platform: { os: "linux", architecture: "s390x" } },
];

Deno.test("platform: names normalise as containerd's", () => {
  assert.deepEqual(parsePlatform("linux/arm64"), { os: "linux", architecture: "arm64" });
  assert.deepEqual(parsePlatform("linux/arm64/v8"), { os: "linux", architecture: "arm64" });
  assert.deepEqual(parsePlatform("linux/aarch64"), { os: "linux", architecture: "arm64" });
  assert.deepEqual(parsePlatform("x86_64"), { os: "linux", architecture: "amd64" });
  assert.deepEqual(parsePlatform("linux/arm/7"), {
    os: "linux",
    architecture: "arm",
    variant: "v7",
  });
  assert.throws(() => parsePlatform("linux/"), /invalid platform "linux\/"/);
  assert.throws(() => parsePlatform("a/b/c/d"), /invalid platform/);
  assert.equal(formatPlatform(parsePlatform("linux/arm/v6")), "linux/arm/v6");
});

Deno.test("platform: the host is linux/amd64 or linux/arm64", () => {
  const h = hostPlatform();
  assert.equal(h.os, "linux");
  assert.ok(["amd64", "arm64"].includes(h.architecture));
});

Deno.test("platform: the index entry for each platform is chosen, v8 equals no variant", () => {
  assert.equal(choosePlatform(INDEX, parsePlatform("linux/amd64")).digest, d(1));
  assert.equal(choosePlatform(INDEX, parsePlatform("linux/arm64")).digest, d(3));
  assert.equal(choosePlatform(INDEX, parsePlatform("linux/arm/v7")).digest, d(2));
  assert.ok(
    platformMatches({ os: "linux", architecture: "arm64" }, parsePlatform("linux/arm64/v8")),
  );
  assert.ok(
    !platformMatches(
      { os: "linux", architecture: "arm", variant: "v6" },
      parsePlatform("linux/arm/v7"),
    ),
  );
  assert.ok(!platformMatches(undefined, parsePlatform("linux/amd64")));
});

Deno.test("platform: no match lists what the index has, without unknown/unknown", () => {
  assert.throws(
    () => choosePlatform(INDEX, parsePlatform("linux/ppc64le")),
    (e: Error & { line(): string }) => {
      assert.equal(
        e.line(),
        "no manifest for linux/ppc64le in the image index; it has: linux/amd64, linux/arm/v7, linux/arm64, linux/s390x (choose one of those with --platform)",
      );
      return true;
    },
  );
});
