/** WWW-Authenticate parsing and the auth files (Docker's config.json and micro's own). */
import assert from "node:assert/strict";
import {
  authKey,
  decodeAuthEntry,
  findAuth,
  lookupCredentials,
  parseChallenges,
  storeCredentials,
} from "../../core/image/auth.ts";

Deno.test("challenge: Docker Hub's Bearer header", () => {
  assert.deepEqual(
    parseChallenges(
      'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull"',
    ),
    [{
      scheme: "bearer",
      params: {
        realm: "https://auth.docker.io/token",
        service: "registry.docker.io",
        scope: "repository:library/alpine:pull",
      },
    }],
  );
});

Deno.test("challenge: basic, token values, spaces, escapes and several challenges", () => {
  assert.deepEqual(parseChallenges('Basic realm="Registry Realm"'), [
    { scheme: "basic", params: { realm: "Registry Realm" } },
  ]);
  assert.deepEqual(
    parseChallenges(
      'Bearer realm = "https://a/t" , service=reg, error="insufficient_scope", Basic realm="x\\"y"',
    ),
    [
      {
        scheme: "bearer",
        params: { realm: "https://a/t", service: "reg", error: "insufficient_scope" },
      },
      { scheme: "basic", params: { realm: 'x"y' } },
    ],
  );
  assert.deepEqual(parseChallenges("Negotiate"), [{ scheme: "negotiate", params: {} }]);
  assert.deepEqual(parseChallenges(""), []);
  assert.deepEqual(parseChallenges('Bearer realm="unterminated'), [
    { scheme: "bearer", params: { realm: "unterminated" } },
  ]);
});

Deno.test("docker config: base64 auth decodes to user and password (colons in the password)", () => {
  assert.deepEqual(decodeAuthEntry({ auth: btoa("alice:pa:ss") }), {
    username: "alice",
    password: "pa:ss",
  });
  assert.deepEqual(decodeAuthEntry({ username: "bob", password: "x" }), {
    username: "bob",
    password: "x",
  });
  assert.equal(decodeAuthEntry({}), undefined); // a credential helper's placeholder
  assert.equal(decodeAuthEntry({ auth: "" }), undefined);
  assert.throws(() => decodeAuthEntry({ auth: "!!!" }), /not valid base64/);
  assert.throws(() => decodeAuthEntry({ auth: btoa("nocolon") }), /user:password/);
});

Deno.test("docker config: keys are normalised as Docker does", () => {
  const file = {
    auths: {
      "https://index.docker.io/v1/": { auth: btoa("hub:1") },
      "http://registry.example:5000/v2/": { auth: btoa("ex:2") },
      "localhost:5000": { auth: btoa("lo:3") },
    },
  };
  assert.equal(findAuth(file, "docker.io")?.username, "hub");
  assert.equal(findAuth(file, "registry.example:5000")?.username, "ex");
  assert.equal(findAuth(file, "localhost:5000")?.username, "lo");
  assert.equal(findAuth(file, "localhost:5001"), undefined);
  assert.equal(authKey("https://index.docker.io/v1/"), "docker.io");
  assert.equal(authKey("registry-1.docker.io"), "docker.io");
});

Deno.test("auth files: micro's wins over Docker's, stored 0600, removed on logout", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const docker = `${dir}/docker.json`;
    const own = `${dir}/cfg/micro/auth.json`;
    await Deno.writeTextFile(
      docker,
      JSON.stringify({ auths: { "r.example": { auth: btoa("d:1") } }, credsStore: "x" }),
    );
    assert.equal(
      (await lookupCredentials("r.example", { authFile: own, dockerConfig: docker }))
        ?.username,
      "d",
    );
    assert.ok(await storeCredentials("r.example", { username: "m", password: "2" }, own));
    assert.equal((await Deno.stat(own)).mode! & 0o777, 0o600);
    assert.equal((await Deno.stat(`${dir}/cfg/micro`)).mode! & 0o777, 0o700);
    assert.equal(
      (await lookupCredentials("r.example", { authFile: own, dockerConfig: docker }))
        ?.username,
      "m",
    );
    assert.equal(
      await lookupCredentials("r.example", { authFile: own, dockerConfig: null }).then(
        (c) => c?.password,
      ),
      "2",
    );
    assert.ok(await storeCredentials("r.example", undefined, own));
    assert.equal(await storeCredentials("r.example", undefined, own), false);
    assert.equal(
      await lookupCredentials("r.example", { authFile: own, dockerConfig: null }),
      undefined,
    );
    assert.deepEqual(JSON.parse(await Deno.readTextFile(own)), { auths: {} });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("auth files: bad JSON and non-files are one-line errors", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/bad.json`, "{");
    await assert.rejects(
      lookupCredentials("x", { authFile: `${dir}/bad.json`, dockerConfig: null }),
      /auth file .*bad\.json: not valid JSON/,
    );
    await assert.rejects(
      lookupCredentials("x", { authFile: dir, dockerConfig: null }),
      /not a regular file/,
    );
    assert.equal(
      await lookupCredentials("x", { authFile: `${dir}/none`, dockerConfig: `${dir}/none2` }),
      undefined,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
