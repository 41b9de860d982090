/** Image references parse and normalise as Docker's distribution/reference does. */
import assert from "node:assert/strict";
import {
  familiarReference,
  formatReference,
  isLoopback,
  parseDigest,
  parseReference,
} from "../../core/image/reference.ts";
import { MicroError } from "../../core/errors.ts";

const D = "sha256:" + "ab".repeat(32);

// input → the fully normalised reference (distribution/reference normalize_test.go cases)
const VALID: [string, string][] = [
  ["alpine", "docker.io/library/alpine:latest"],
  ["alpine:3.20", "docker.io/library/alpine:3.20"],
  ["docker/docker", "docker.io/docker/docker:latest"],
  ["library/debian", "docker.io/library/debian:latest"],
  ["docker.io/docker/docker", "docker.io/docker/docker:latest"],
  ["docker.io/debian", "docker.io/library/debian:latest"],
  ["index.docker.io/docker/docker", "docker.io/docker/docker:latest"],
  ["index.docker.io/debian", "docker.io/library/debian:latest"],
  ["localhost/debian", "localhost/debian:latest"],
  ["localhost/library/debian", "localhost/library/debian:latest"],
  ["localhost:5000/x", "localhost:5000/x:latest"],
  ["127.0.0.1:5000/docker/docker", "127.0.0.1:5000/docker/docker:latest"],
  ["127.0.0.1:5000/debian", "127.0.0.1:5000/debian:latest"],
  ["192.168.0.1:8/debian", "192.168.0.1:8/debian:latest"],
  ["[fc00::1]:5000/debian", "[fc00::1]:5000/debian:latest"],
  ["registry.example:5000/team/app@" + D, "registry.example:5000/team/app@" + D],
  ["alpine:3.20@" + D, "docker.io/library/alpine:3.20@" + D],
  ["foo_bar.com:8080", "docker.io/library/foo_bar.com:8080"],
  ["foo/foo_bar.com:8080", "docker.io/foo/foo_bar.com:8080"],
  ["xn--n3h.com/myimage:xn--n3h.com", "xn--n3h.com/myimage:xn--n3h.com"],
  ["a__b/c--d/e.f", "docker.io/a__b/c--d/e.f:latest"],
  ["alpine:Latest_1.0-x", "docker.io/library/alpine:Latest_1.0-x"],
  [
    "docker.io/" + "1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a",
    "docker.io/library/1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a:latest",
  ],
  ["Foo.Example/app", "Foo.Example/app:latest"],
];

for (const [input, want] of VALID) {
  Deno.test(`reference ${input} normalises to ${want}`, () => {
    assert.equal(formatReference(parseReference(input)), want);
  });
}

const INVALID: [string, RegExp][] = [
  ["", /empty/],
  ["-", /bad repository name/],
  ["-example", /bad repository name/],
  ["docker///docker", /bad repository name/],
  ["aa/asdf$$^/aa", /bad repository name/],
  ["docker/Docker", /must be lower case/],
  ["Uppercase:tag", /must be lower case/],
  ["test:5000/Uppercase/lowercase:tag", /must be lower case/],
  ["1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a", /image id/],
  ["alpine:" + "a".repeat(129), /bad tag/],
  ["alpine:.bad", /bad tag/],
  ["alpine@sha256:abc", /bad digest/],
  ["alpine@sha256:" + "AB".repeat(32), /bad sha256 digest/],
  ["a/" + "b".repeat(260), /longer than 255/],
  ["[fe80::1%eth0]:5000/debian", /bad registry host/],
  ["alpine latest", /white space/],
  [":tag", /no repository name/],
  ["a:b:c", /bad tag|bad repository name/],
];

for (const [input, why] of INVALID) {
  Deno.test(`reference ${JSON.stringify(input.slice(0, 40))} is refused in one line`, () => {
    assert.throws(() => parseReference(input), (e: unknown) => {
      assert.ok(e instanceof MicroError);
      const line = e.line();
      assert.match(line, why);
      assert.match(line, /^invalid image reference "/);
      assert.ok(!line.includes("\n"));
      return true;
    });
  });
}

Deno.test("reference fields: a digest alone has no tag, a name alone gets latest", () => {
  assert.deepEqual(parseReference("alpine@" + D), {
    domain: "docker.io",
    path: "library/alpine",
    digest: D,
  });
  assert.deepEqual(parseReference("localhost:5000/x"), {
    domain: "localhost:5000",
    path: "x",
    tag: "latest",
  });
});

Deno.test("familiar form drops docker.io and library/", () => {
  assert.equal(familiarReference(parseReference("docker.io/library/alpine:3")), "alpine:3");
  assert.equal(familiarReference(parseReference("docker/docker")), "docker/docker:latest");
  assert.equal(familiarReference(parseReference("localhost:5000/x")), "localhost:5000/x:latest");
});

Deno.test("loopback registries are localhost, 127/8 and ::1 only", () => {
  assert.ok(isLoopback("localhost:5000"));
  assert.ok(isLoopback("127.0.0.1:5000"));
  assert.ok(isLoopback("127.1.2.3"));
  assert.ok(isLoopback("[::1]:5000"));
  assert.ok(!isLoopback("docker.io"));
  assert.ok(!isLoopback("localhost.example.com:5000"));
  assert.ok(!isLoopback("127.0.0.1.nip.io"));
});

Deno.test("parseDigest checks algorithm and length", () => {
  assert.deepEqual(parseDigest(D), { algorithm: "sha256", hex: "ab".repeat(32) });
  assert.throws(() => parseDigest("md5:" + "a".repeat(32)), /unsupported digest algorithm/);
  assert.throws(() => parseDigest("sha256:" + "a".repeat(63)), /64 lower-case hex/);
  assert.throws(() => parseDigest("sha256:../../etc/passwd"), /64 lower-case hex/);
});
