/**
 * A real service: Debian's nginx (a root made by mmdebstrap from the configured Debian
 * mirror, built once and kept in a cache directory) serving a page under `default` and under
 * `hardened` with the README's recipe, its access log on /dev/stdout. The page is fetched by
 * curl in the same container (its own network namespace: nothing leaves it).
 */
import assert from "node:assert/strict";
import { lacking, microTest, run, show } from "./_helpers.ts";

const CACHE = Deno.env.get("MICRO_TEST_CACHE") ?? "/var/cache/micro-tests";
const ROOT = `${CACHE}/nginx-bookworm`;

/** nginx's configuration from the README's recipe: everything it writes in /run and /tmp. */
const CONF = `daemon off;
pid /run/nginx.pid;
error_log stderr;
events {}
http {
  access_log /dev/stdout;
  client_body_temp_path /tmp/body;
  proxy_temp_path /tmp/proxy;
  fastcgi_temp_path /tmp/fastcgi;
  uwsgi_temp_path /tmp/uwsgi;
  scgi_temp_path /tmp/scgi;
  server { listen 8080; root /var/www/html; }
}
`;

function mmdebstrapReason(): string | undefined {
  try {
    Deno.statSync("/usr/bin/mmdebstrap");
    return undefined;
  } catch {
    return "no mmdebstrap (tools/install-test-deps.sh installs it)";
  }
}

/** The Debian root, made once (about 25 s): mmdebstrap into a temp dir, renamed into place. */
async function nginxRoot(): Promise<string> {
  try {
    if (Deno.statSync(`${ROOT}/.complete`).isFile) return ROOT;
  } catch { /* not made yet */ }
  Deno.mkdirSync(CACHE, { recursive: true, mode: 0o755 });
  const tmp = `${ROOT}.tmp-${Deno.pid}`;
  try {
    const r = await run(
      ["--quiet", "--variant=apt", "--include=nginx-light,curl", "bookworm", tmp],
      { cmd: "mmdebstrap", timeoutMs: 600_000 },
    );
    assert.equal(r.code, 0, `mmdebstrap failed (is the Debian mirror reachable?)\n${show(r)}`);
    Deno.writeTextFileSync(`${tmp}/var/www/html/index.html`, "hello from micro\n");
    Deno.writeTextFileSync(`${tmp}/etc/nginx/micro.conf`, CONF);
    Deno.writeTextFileSync(`${tmp}/.complete`, "");
    try {
      Deno.removeSync(ROOT, { recursive: true }); // an incomplete one
    } catch { /* none */ }
    Deno.renameSync(tmp, ROOT);
  } finally {
    try {
      Deno.removeSync(tmp, { recursive: true });
    } catch { /* renamed */ }
  }
  return ROOT;
}

/** nginx started in the background, the page fetched, nginx stopped: the container's script. */
const SCRIPT = "nginx -e stderr -c /etc/nginx/micro.conf & " +
  "for i in $(seq 50); do curl -sf http://127.0.0.1:8080/ && break; sleep 0.1; done; " +
  'kill -TERM $!; wait $!; echo "nginx exited $?"';

for (const profile of ["default", "hardened"]) {
  microTest(`nginx serves a page under ${profile}, its access log on /dev/stdout`, async () => {
    const root = await nginxRoot();
    const r = await run(["run", "--rm", "--profile", profile, root, "sh", "-c", SCRIPT], {
      timeoutMs: 60_000,
    });
    assert.equal(r.code, 0, show(r));
    assert.match(r.stdout, /^hello from micro$/m, show(r));
    // The access log line nginx's worker (www-data, or nobody under hardened) wrote.
    assert.match(r.stdout, /"GET \/ HTTP\/1\.1" 200 17 "-" "curl\//, show(r));
    assert.match(r.stdout, /^nginx exited 0$/m, show(r));
    assert.doesNotMatch(r.stderr, /\[(emerg|alert|crit)\]/, show(r));
  }, { ignore: lacking(mmdebstrapReason()) });
}
