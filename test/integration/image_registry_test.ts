/**
 * Pulling from registries on loopback: Debian's docker-registry (distribution 2.8) plain,
 * with htpasswd over TLS from a CA made here, and with Bearer tokens from a token server the
 * test runs; and a fake registry for the faults (corrupt blob, dropped connection, a pull
 * killed mid-download, concurrent pulls sharing layers). Every server listens on 127.0.0.1
 * and is stopped in `finally`.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { MicroError } from "../../core/errors.ts";
import { BlobStore } from "../../core/image/blobs.ts";
import { parseReference } from "../../core/image/reference.ts";
import { login, logout, pullImage, type PullOptions } from "../../core/image/registry.ts";
import { hostPlatform } from "../../core/image/platform.ts";
import {
  type Blob,
  enc,
  freePort,
  makeImage,
  makeIndex,
  makeTlsFiles,
  missingTools,
  noise,
  run,
  skopeoCopy,
  startFakeRegistry,
  startRegistry,
  startTokenServer,
  type TarFile,
  type TestImage,
  writeLayout,
} from "./_registry.ts";

const MISSING = missingTools();
if (MISSING) console.log(`image_registry_test: skipped: ${MISSING}`);
const REPO = new URL("../../", import.meta.url).pathname;

function test(name: string, fn: (dir: string) => Promise<void>) {
  Deno.test({
    name,
    ignore: MISSING !== undefined,
    sanitizeResources: false,
    sanitizeOps: false,
    async fn() {
      const dir = await Deno.makeTempDir({ prefix: "micro-registry-test-" });
      try {
        await fn(dir);
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    },
  });
}

/** Options that keep the test away from the real auth files and CA directories. */
function isolated(dir: string, more: PullOptions = {}): PullOptions {
  return {
    authFile: `${dir}/auth.json`,
    dockerConfig: null,
    certDirs: [],
    retryDelayMs: 20,
    ...more,
  };
}

/** The error's one line, asserting it is one. */
async function errorLine(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof MicroError, `not a MicroError: ${e}`);
    const line = e.line();
    assert.ok(!line.includes("\n"), line);
    assert.equal(e.exitCode, 125);
    return line;
  }
  assert.fail("expected a failure");
}

/** Every blob file in the store hashes to its name; returns their digests. */
async function storeDigests(root: string): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(`${root}/blobs/sha256`)) {
    const data = await Deno.readFile(`${root}/blobs/sha256/${e.name}`);
    assert.equal(createHash("sha256").update(data).digest("hex"), e.name);
    out.push(`sha256:${e.name}`);
  }
  return out.sort();
}

async function tmpEntries(root: string): Promise<string[]> {
  return (await Array.fromAsync(Deno.readDir(`${root}/tmp`)).catch(() => [])).map((e) => e.name);
}

function busyboxFiles(): TarFile[] {
  try {
    return [{ path: "bin", dir: true }, {
      path: "bin/busybox",
      data: Deno.readFileSync("/bin/busybox"),
      mode: 0o755,
    }];
  } catch {
    return [{ path: "bin", dir: true }, { path: "bin/busybox", data: noise(1 << 20, 9) }];
  }
}

/** A three-layer amd64 image, and an index with it and an arm64 one. */
function testImages() {
  const app = makeImage([
    busyboxFiles(),
    [{ path: "etc", dir: true }, { path: "etc/motd", data: enc.encode("hello\n") }],
    [{ path: "data", dir: true }, { path: "data/blob", data: noise(300_000, 1) }],
  ], hostPlatform().architecture);
  const foreignArch = hostPlatform().architecture === "amd64" ? "arm64" : "amd64";
  const foreign = makeImage([[{ path: "foreign", data: enc.encode(foreignArch) }]], foreignArch);
  const index = makeIndex([
    { image: foreign, architecture: foreignArch },
    { image: app, architecture: hostPlatform().architecture },
  ]);
  return { app, foreign, foreignArch, index };
}

function assertPulled(
  got: Awaited<ReturnType<typeof pullImage>>,
  image: TestImage,
  ref: string,
) {
  assert.equal(got.ref, ref);
  assert.equal(got.manifestDigest, image.manifest.digest);
  assert.equal(got.configDigest, image.config.digest);
  assert.deepEqual(got.layers.map((l) => l.digest), image.layers.map((l) => l.digest));
  assert.deepEqual(got.config.rootfs?.type, "layers");
}

test("docker-registry over plain http: a multi-layer image and a multi-platform index", async (dir) => {
  const { app, foreign, foreignArch, index } = testImages();
  const layout = `${dir}/layout`;
  await writeLayout(layout, [...app.blobs, ...foreign.blobs, index], {
    app: app.manifest,
    multi: index,
  });
  const reg = await startRegistry(`${dir}/reg`);
  try {
    await skopeoCopy(layout, "app", `${reg.host}/team/app:1`, ["--dest-tls-verify=false"]);
    await skopeoCopy(layout, "multi", `${reg.host}/team/multi:1`, ["--dest-tls-verify=false"]);
    const root = `${dir}/store`;
    const store = new BlobStore(root);
    const events: string[] = [];
    const got = await pullImage(
      parseReference(`${reg.host}/team/app:1`),
      isolated(dir, { onProgress: (e) => events.push(`${e.kind}:${e.state}`) }),
      store,
    );
    assertPulled(got, app, `${reg.host}/team/app:1`);
    assert.deepEqual(await storeDigests(root), app.blobs.map((b) => b.digest).sort());
    assert.deepEqual(await tmpEntries(root), []);
    assert.ok(events.includes("layer:downloading") && events.includes("layer:done"), events.join());

    // the index: the host's platform by default, another one on request, a missing one listed
    const multi = await pullImage(parseReference(`${reg.host}/team/multi:1`), isolated(dir), store);
    assertPulled(multi, app, `${reg.host}/team/multi:1`);
    assert.equal(multi.indexDigest, index.digest);
    assert.ok(await store.has(index.digest));
    const other = await pullImage(
      parseReference(`${reg.host}/team/multi@${index.digest}`),
      isolated(dir, { platform: `linux/${foreignArch}` }),
      store,
    );
    assertPulled(other, foreign, `${reg.host}/team/multi@${index.digest}`);
    assert.equal(other.platform, `linux/${foreignArch}`);
    const noPlatform = await errorLine(
      pullImage(
        parseReference(`${reg.host}/team/multi:1`),
        isolated(dir, { platform: "linux/s390x" }),
        store,
      ),
    );
    assert.match(
      noPlatform,
      /no manifest for linux\/s390x in the image index of .*; it has: linux\/(amd64|arm64), linux\/(arm64|amd64)/,
    );
    // a single-platform image for another platform is refused
    const wrong = await errorLine(
      pullImage(
        parseReference(`${reg.host}/team/app:1`),
        isolated(dir, { platform: `linux/${foreignArch}` }),
        store,
      ),
    );
    assert.match(wrong, /is an image for linux\/\w+, not linux\//);

    // registry errors: status and the registry's code
    const unknown = await errorLine(
      pullImage(parseReference(`${reg.host}/team/app:nope`), isolated(dir), store),
    );
    assert.match(
      unknown,
      /^pull: GET http:\/\/127\.0\.0\.1:\d+\/v2\/team\/app\/manifests\/nope: 404 Not Found: MANIFEST_UNKNOWN: manifest unknown/,
    );
    const badDigest = "sha256:" + "0".repeat(64);
    const unknownDigest = await errorLine(
      pullImage(parseReference(`${reg.host}/team/app@${badDigest}`), isolated(dir), store),
    );
    assert.match(unknownDigest, /404 Not Found: MANIFEST_UNKNOWN/);
  } finally {
    await reg.stop();
  }
  // no network: nothing listens there any more
  const gone = await errorLine(
    pullImage(parseReference(`${reg.host}/team/app:1`), isolated(dir), new BlobStore(`${dir}/s2`)),
  );
  assert.match(
    gone,
    /^pull: GET https:\/\/127\.0\.0\.1:\d+\/v2\/: connection refused \(is the registry running/,
  );
});

test("docker-registry with htpasswd over TLS: login, pull with a CA directory, wrong password", async (dir) => {
  const { app } = testImages();
  const layout = `${dir}/layout`;
  await writeLayout(layout, app.blobs, { app: app.manifest });
  const tls = await makeTlsFiles(dir);
  await run("htpasswd", ["-Bbc", `${dir}/htpasswd`, "alice", "s3cret"]);
  const reg = await startRegistry(`${dir}/reg`, { tls, htpasswd: `${dir}/htpasswd` });
  try {
    const skopeoCerts = `${dir}/skopeo-certs`;
    await Deno.mkdir(skopeoCerts);
    await Deno.copyFile(tls.ca, `${skopeoCerts}/ca.crt`);
    await skopeoCopy(layout, "app", `${reg.host}/private/app:1`, [
      `--dest-cert-dir=${skopeoCerts}`,
      "--dest-creds=alice:s3cret",
    ]);
    // micro's certs.d layout: DIR/HOST:PORT/ca.crt
    const certs = `${dir}/certs.d`;
    await Deno.mkdir(`${certs}/${reg.host}`, { recursive: true });
    await Deno.copyFile(tls.ca, `${certs}/${reg.host}/ca.crt`);
    const opts = isolated(dir, { certDirs: [certs] });
    const store = new BlobStore(`${dir}/store`);
    const ref = parseReference(`${reg.host}/private/app:1`);

    const anon = await errorLine(pullImage(ref, opts, store));
    assert.match(
      anon,
      /401 Unauthorized: UNAUTHORIZED: authentication required \(log in with micro login 127\.0\.0\.1:\d+/,
    );

    const wrong = await errorLine(
      login(reg.host, { username: "alice", password: "wrong" }, {
        authFile: opts.authFile,
        certDirs: [certs],
      }),
    );
    assert.match(wrong, /^login: 127\.0\.0\.1:\d+: wrong username or password/);
    assert.ok(!wrong.includes("wrong\b") && !wrong.includes("s3cret"));
    await assert.rejects(Deno.stat(opts.authFile!)); // nothing stored

    assert.equal(
      await login(reg.host, { username: "alice", password: "s3cret" }, {
        authFile: opts.authFile,
        certDirs: [certs],
      }),
      reg.host,
    );
    assert.equal((await Deno.stat(opts.authFile!)).mode! & 0o777, 0o600);
    assertPulled(await pullImage(ref, opts, store), app, `${reg.host}/private/app:1`);

    // without the CA: a one-line TLS error; with tlsVerify false: no check
    const untrusted = await errorLine(
      pullImage(ref, { ...opts, certDirs: [] }, new BlobStore(`${dir}/s2`)),
    );
    assert.match(
      untrusted,
      /^pull: GET https:\/\/127\.0\.0\.1:\d+\/v2\/: TLS: .*(certificate|UnknownIssuer).*\(the registry's certificate is not trusted/,
    );
    const insecure = await pullImage(
      ref,
      { ...opts, certDirs: [], tlsVerify: false },
      new BlobStore(`${dir}/s3`),
    );
    assert.equal(insecure.manifestDigest, app.manifest.digest);

    assert.equal(await logout(reg.host, { authFile: opts.authFile }), true);
    assert.equal(await logout(reg.host, { authFile: opts.authFile }), false);
    await errorLine(pullImage(ref, opts, new BlobStore(`${dir}/s4`)));
  } finally {
    await reg.stop();
  }
});

test("docker-registry with Bearer tokens: anonymous and credentialed tokens from a token server", async (dir) => {
  const { app } = testImages();
  const layout = `${dir}/layout`;
  await writeLayout(layout, app.blobs, { app: app.manifest });
  const tokens = await startTokenServer(dir, { alice: "t0ken-pw" });
  let reg;
  try {
    reg = await startRegistry(`${dir}/reg`, { token: tokens });
    // skopeo gets its tokens from the same server
    for (const repo of ["public/app", "private/app"]) {
      await skopeoCopy(layout, "app", `${reg.host}/${repo}:1`, [
        "--dest-tls-verify=false",
        "--dest-creds=alice:t0ken-pw",
      ]);
    }
    tokens.requests.length = 0;
    const store = new BlobStore(`${dir}/store`);
    const pub = await pullImage(parseReference(`${reg.host}/public/app:1`), isolated(dir), store);
    assertPulled(pub, app, `${reg.host}/public/app:1`);
    assert.ok(tokens.requests.length >= 1);
    assert.deepEqual(tokens.requests[0], { user: "", scope: "repository:public/app:pull" });

    const denied = await errorLine(
      pullImage(
        parseReference(`${reg.host}/private/app:1`),
        isolated(dir),
        new BlobStore(`${dir}/s2`),
      ),
    );
    assert.match(denied, /401 Unauthorized: UNAUTHORIZED: authentication required/);

    // credentials from a Docker config.json
    const dockerConfig = `${dir}/docker-config.json`;
    await Deno.writeTextFile(
      dockerConfig,
      JSON.stringify({ auths: { [`http://${reg.host}`]: { auth: btoa("alice:t0ken-pw") } } }),
    );
    tokens.requests.length = 0;
    const priv = await pullImage(
      parseReference(`${reg.host}/private/app:1`),
      { ...isolated(dir), dockerConfig },
      new BlobStore(`${dir}/s3`),
    );
    assertPulled(priv, app, `${reg.host}/private/app:1`);
    assert.deepEqual(tokens.requests[0], { user: "alice", scope: "repository:private/app:pull" });

    // login goes through the token server too
    const wrong = await errorLine(
      login(reg.host, { username: "alice", password: "nope" }, { authFile: `${dir}/a.json` }),
    );
    assert.match(
      wrong,
      /^login: 127\.0\.0\.1:\d+: wrong username or password: the token server http:\/\/127\.0\.0\.1:\d+\/token answered 401/,
    );
    assert.equal(
      await login(reg.host, { username: "alice", password: "t0ken-pw" }, {
        authFile: `${dir}/a.json`,
      }),
      reg.host,
    );
  } finally {
    await reg?.stop();
    await tokens.stop();
  }
});

function fakeRepo(image: TestImage, tag = "1") {
  return { tags: { [tag]: image.manifest }, blobs: image.blobs };
}

test("fake registry: a corrupt blob is refused and nothing of it stays in the store", async (dir) => {
  const image = makeImage([[{ path: "a", data: noise(100_000, 2) }], [{
    path: "b",
    data: noise(50_000, 3),
  }]]);
  const bad = image.layers[1].digest;
  const fake = startFakeRegistry({ "x/app": fakeRepo(image) }, { corrupt: new Set([bad]) });
  try {
    const root = `${dir}/store`;
    const line = await errorLine(
      pullImage(parseReference(`${fake.host}/x/app:1`), isolated(dir), new BlobStore(root)),
    );
    assert.match(
      line,
      new RegExp(`^blob ${bad}: digest mismatch: the \\d+ bytes received hash to sha256:`),
    );
    assert.ok(!(await storeDigests(root)).includes(bad));
    assert.deepEqual((await tmpEntries(root)).filter((n) => n.includes(bad.slice(7))), []);
  } finally {
    await fake.stop();
  }
});

test("fake registry: a connection dropped mid-blob is retried and resumed with Range", async (dir) => {
  const image = makeImage([[{ path: "big", data: noise(1_000_000, 4) }]]);
  const layer = image.layers[0];
  const fake = startFakeRegistry({ "x/app": fakeRepo(image) }, {
    dropAfter: new Map([[layer.digest, 300_000]]),
  });
  try {
    const events: string[] = [];
    const got = await pullImage(
      parseReference(`${fake.host}/x/app:1`),
      isolated(dir, { onProgress: (e) => e.state === "retrying" && events.push(e.message ?? "") }),
      new BlobStore(`${dir}/store`),
    );
    assertPulled(got, image, `${fake.host}/x/app:1`);
    const gets = fake.blobGets.filter((g) => g.digest === layer.digest);
    assert.equal(gets.length, 2, JSON.stringify(gets));
    assert.equal(gets[0].range, "");
    assert.match(gets[1].range, /^bytes=\d+-$/);
    assert.ok(Number(gets[1].range.slice(6, -1)) > 0);
    assert.equal(events.length, 1);
    assert.match(events[0], /download broke off at byte \d+|connection closed at byte/);
    assert.deepEqual(await storeDigests(`${dir}/store`), image.blobs.map((b) => b.digest).sort());
  } finally {
    await fake.stop();
  }
  // a registry that ignores Range: the retry takes the whole blob again
  const fake2 = startFakeRegistry({ "x/app": fakeRepo(image) }, {
    dropAfter: new Map([[layer.digest, 300_000]]),
    ranges: false,
  });
  try {
    const got = await pullImage(
      parseReference(`${fake2.host}/x/app:1`),
      isolated(dir),
      new BlobStore(`${dir}/s2`),
    );
    assert.equal(got.manifestDigest, image.manifest.digest);
    assert.equal(fake2.blobGets.filter((g) => g.digest === layer.digest).length, 2);
  } finally {
    await fake2.stop();
  }
});

test("fake registry: concurrent pulls of images sharing layers both succeed, each blob once", async (dir) => {
  const base: TarFile[] = [{ path: "base", data: noise(400_000, 5) }];
  const a = makeImage([base, [{ path: "a", data: noise(100_000, 6) }]]);
  const b = makeImage([base, [{ path: "b", data: noise(100_000, 7) }]]);
  assert.equal(a.layers[0].digest, b.layers[0].digest);
  const fake = startFakeRegistry({ "x/a": fakeRepo(a), "x/b": fakeRepo(b) }, { rate: 2_000_000 });
  try {
    const root = `${dir}/store`;
    const [ga, gb] = await Promise.all([
      pullImage(parseReference(`${fake.host}/x/a:1`), isolated(dir), new BlobStore(root)),
      pullImage(parseReference(`${fake.host}/x/b:1`), isolated(dir), new BlobStore(root)),
    ]);
    assertPulled(ga, a, `${fake.host}/x/a:1`);
    assertPulled(gb, b, `${fake.host}/x/b:1`);
    assert.equal(fake.blobGets.filter((g) => g.digest === a.layers[0].digest).length, 1);
    const all = [...new Set([...a.blobs, ...b.blobs].map((x) => x.digest))].sort();
    assert.deepEqual(await storeDigests(root), all);
    assert.deepEqual(await tmpEntries(root), []);
  } finally {
    await fake.stop();
  }
});

test("fake registry: a pull killed mid-download leaves the store consistent, the next one resumes", async (dir) => {
  const image = makeImage([[{ path: "slow", data: noise(2_000_000, 8) }]]);
  const layer = image.layers[0];
  const opts = { rate: 400_000 } as { rate?: number };
  const fake = startFakeRegistry({ "x/slow": fakeRepo(image) }, opts);
  const root = `${dir}/store`;
  try {
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        "--no-check",
        `${REPO}bench/image-pull/pull.ts`,
        `${fake.host}/x/slow:1`,
        root,
      ],
      stdout: "null",
      stderr: "null",
      env: { XDG_CONFIG_HOME: `${dir}/cfg`, DOCKER_CONFIG: `${dir}/docker` },
    }).spawn();
    const partial = `${root}/tmp/sha256-${layer.digest.slice(7)}.partial`;
    let size = 0;
    try {
      for (let i = 0; i < 400 && size < 200_000; i++) {
        await new Promise((r) => setTimeout(r, 25));
        size = (await Deno.stat(partial).catch(() => ({ size: 0 }))).size;
      }
    } finally {
      child.kill("SIGKILL");
      await child.status;
    }
    assert.ok(size >= 200_000, `the partial did not grow: ${size}`);
    // visible blobs are whole and verified; the layer is not among them
    const visible = await storeDigests(root);
    assert.ok(!visible.includes(layer.digest));
    opts.rate = undefined;
    const got = await pullImage(
      parseReference(`${fake.host}/x/slow:1`),
      isolated(dir),
      new BlobStore(root),
    );
    assertPulled(got, image, `${fake.host}/x/slow:1`);
    const gets = fake.blobGets.filter((g) => g.digest === layer.digest);
    assert.match(gets.at(-1)!.range, /^bytes=\d+-$/, "the second pull resumed from the partial");
    assert.deepEqual(await storeDigests(root), image.blobs.map((b: Blob) => b.digest).sort());
    assert.deepEqual(await tmpEntries(root), []);
  } finally {
    await fake.stop();
  }
});

test("a blob redirect to another host is followed without the registry's credentials", async (dir) => {
  const image = makeImage([[{ path: "a", data: noise(200_000, 10) }]]);
  const seen: (string | null)[] = [];
  const cdnPort = freePort();
  const cdn = Deno.serve({ hostname: "127.0.0.1", port: cdnPort, onListen() {} }, (req) => {
    seen.push(req.headers.get("authorization"));
    const b = image.blobs.find((x) => x.digest === new URL(req.url).pathname.slice(1));
    return b ? new Response(b.data as Uint8Array<ArrayBuffer>) : new Response("", { status: 404 });
  });
  const regPort = freePort();
  const reg = Deno.serve({ hostname: "127.0.0.1", port: regPort, onListen() {} }, (req) => {
    const u = new URL(req.url);
    if (req.headers.get("authorization") !== `Basic ${btoa("u:p")}`) {
      return new Response("", { status: 401, headers: { "www-authenticate": 'Basic realm="t"' } });
    }
    if (u.pathname === "/v2/") return new Response("{}");
    if (u.pathname.includes("/manifests/")) {
      return new Response(image.manifest.data as Uint8Array<ArrayBuffer>, {
        headers: { "content-type": image.manifest.mediaType },
      });
    }
    const d = u.pathname.split("/").at(-1);
    return new Response(null, {
      status: 307,
      headers: { location: `http://localhost:${cdnPort}/${d}` },
    });
  });
  try {
    const got = await pullImage(
      parseReference(`127.0.0.1:${regPort}/x/app:1`),
      isolated(dir, { credentials: { username: "u", password: "p" } }),
      new BlobStore(`${dir}/store`),
    );
    assertPulled(got, image, `127.0.0.1:${regPort}/x/app:1`);
    assert.deepEqual(seen, [null, null]); // config and layer, neither with the credentials
  } finally {
    await reg.shutdown();
    await cdn.shutdown();
  }
});
