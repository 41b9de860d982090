/**
 * OCI idmapped bind mounts (mounts[].uidMappings/gidMappings): the source's on-disk ids N
 * show as the mapping's host side of N in the container, and a file the container's user
 * makes is stored with the on-disk id that maps to it; the bind's flags (ro) still apply.
 */
import assert from "node:assert/strict";
import { microTest, run, show, withTempDir } from "./_helpers.ts";
import { bundle } from "./_oci.ts";

const MAP = [{ containerID: 0, hostID: 1000, size: 2000 }];

microTest("oci: an idmapped bind shows on-disk ids through its mappings, ro kept", async () => {
  await withTempDir(async (dir) => {
    const src = `${dir}/src`;
    Deno.mkdirSync(`${src}/sub`, { recursive: true });
    Deno.writeTextFileSync(`${src}/f`, "hi");
    Deno.writeTextFileSync(`${src}/sub/g`, "");
    Deno.chownSync(`${src}/sub/g`, 1234, 1234);
    const b = await bundle(dir, (c) => {
      c.process.user = { uid: 1000, gid: 1000 };
      c.process.args = [
        "sh",
        "-c",
        'stat -c "%u:%g %n" /m/f /m/sub/g /ro/f /plain/f; echo x > /m/new && echo made; ' +
        "echo x > /ro/x 2>/dev/null || echo ro-refused; grep -c idmapped /proc/self/mountinfo",
      ];
      c.mounts.push(
        {
          destination: "/m",
          type: "bind",
          source: src,
          options: ["rbind", "idmap"],
          uidMappings: MAP,
          gidMappings: MAP,
        },
        {
          destination: "/ro",
          type: "bind",
          source: src,
          options: ["rbind", "ro"],
          uidMappings: MAP,
          gidMappings: MAP,
        },
        { destination: "/plain", type: "bind", source: src, options: ["rbind", "ro"] },
      );
    });
    const r = await run(["--root", `${dir}/state`, "run", "-b", b, "idmap1"]);
    assert.equal(r.code, 0, show(r));
    assert.match(r.stdout, /^1000:1000 \/m\/f$/m, show(r));
    assert.match(r.stdout, /^2234:2234 \/m\/sub\/g$/m, show(r));
    assert.match(r.stdout, /^1000:1000 \/ro\/f$/m, show(r));
    assert.match(r.stdout, /^0:0 \/plain\/f$/m, show(r));
    assert.match(r.stdout, /^made$/m, show(r));
    assert.match(r.stdout, /^ro-refused$/m, show(r));
    assert.match(r.stdout, /^2$/m, show(r));
    // uid 1000 in the container is on-disk 0 through the mapping.
    const st = Deno.statSync(`${src}/new`);
    assert.deepEqual([st.uid, st.gid], [0, 0]);
  });
});

microTest("oci: idmap without mappings, or mappings on a tmpfs, is one error line", async () => {
  await withTempDir(async (dir) => {
    const cases: [string, Record<string, unknown>, RegExp][] = [
      [
        "no maps",
        { destination: "/m", type: "bind", source: dir, options: ["rbind", "idmap"] },
        /idmap without uidMappings and gidMappings/,
      ],
      [
        "tmpfs",
        {
          destination: "/m",
          type: "tmpfs",
          source: "tmpfs",
          options: [],
          uidMappings: MAP,
          gidMappings: MAP,
        },
        /idmapped mounts are bind mounts only/,
      ],
    ];
    for (const [name, mount, re] of cases) {
      const d = `${dir}/${name.replace(/ /g, "-")}`;
      Deno.mkdirSync(d);
      const b = await bundle(d, (c) => {
        c.process.args = ["true"];
        c.mounts.push(mount);
      });
      const r = await run(["--root", `${d}/state`, "run", "-b", b, "idmap2"]);
      assert.equal(r.code, 125, `${name}: ${show(r)}`);
      assert.match(r.stderr, re, name);
      assert.equal(r.stderr.trim().split("\n").length, 1, `${name}: ${r.stderr}`);
    }
  });
});
