import assert from "node:assert/strict";
import { type CliIO, parseEnvFile, parseRun, type Request } from "../../core/cli.ts";
import { RUN_HELP } from "../../core/run_help.ts";
import { MicroError } from "../../core/errors.ts";
import { parseMountFlag } from "../../core/mounts.ts";

/** A fake environment and file system for `-e KEY` and `--env-file`. */
function io(env: Record<string, string> = {}, files: Record<string, string> = {}): CliIO {
  return {
    getEnv: (name) => env[name],
    cwd: () => "/work",
    readFile: (path) => {
      if (!Object.hasOwn(files, path)) throw new Deno.errors.NotFound(path);
      return files[path];
    },
  };
}

const parse = (...argv: string[]): Request => parseRun(argv, io());

function errorLine(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    if (e instanceof MicroError) {
      assert.equal(e.exitCode, 125);
      return e.line();
    }
    throw e;
  }
  throw new Error("expected an error");
}

// --- image and command ------------------------------------------------------------------

Deno.test("cli takes the first positional as the image and the rest as the command", () => {
  const r = parse("run", "img/", "/bin/sh", "-c", "id");
  assert.equal(r.command, "run");
  assert.equal(r.image, "img/");
  assert.deepEqual(r.args, ["/bin/sh", "-c", "id"]);
  assert.deepEqual(r.profiles, []);
  assert.deepEqual(r.layer, {});
  assert.equal(r.terminal, false);
  assert.equal(r.stdin, false);
  assert.equal(r.json, false);
  assert.equal(r.help, false);
  assert.equal(r.name, undefined);
});

Deno.test("cli treats -- before any positional as no image", () => {
  const r = parse("run", "--profile", "hardened", "--", "id", "-u");
  assert.equal(r.image, null);
  assert.deepEqual(r.args, ["id", "-u"]);
  assert.deepEqual(r.profiles, ["hardened"]);
});

Deno.test("cli allows -- between the image and the command", () => {
  const r = parse("run", "img", "--", "ls", "--", "-l");
  assert.equal(r.image, "img");
  assert.deepEqual(r.args, ["ls", "--", "-l"]);
});

Deno.test("cli stops parsing options at the image", () => {
  const r = parse("plan", "-t", "img", "ls", "-t", "--json");
  assert.equal(r.command, "plan");
  assert.equal(r.terminal, true);
  assert.equal(r.json, false);
  assert.deepEqual(r.args, ["ls", "-t", "--json"]);
});

Deno.test("cli accepts an image with no command (an OCI bundle brings its own)", () => {
  const r = parse("run", "bundle/");
  assert.equal(r.image, "bundle/");
  assert.deepEqual(r.args, []);
});

Deno.test("cli rejects a run with neither image nor command", () => {
  assert.equal(
    errorLine(() => parse("run", "-it")),
    "run: no command given (usage: micro run [OPTIONS] [IMAGE] [--] COMMAND)",
  );
  assert.equal(
    errorLine(() => parse("run", "--")),
    "run: no command given (usage: micro run [OPTIONS] [IMAGE] [--] COMMAND)",
  );
});

// --- option syntax ----------------------------------------------------------------------

Deno.test("cli accepts --opt value, --opt=value, -o value, -ovalue and -o=value", () => {
  for (
    const spelled of [
      ["--user", "app"],
      ["--user=app"],
      ["-u", "app"],
      ["-uapp"],
      ["-u=app"],
    ]
  ) {
    const r = parse("run", ...spelled, "img", "true");
    assert.deepEqual(r.layer, { process: { user: "app" } }, spelled.join(" "));
  }
});

Deno.test("cli combines short flags like -it, with a value option last", () => {
  const r = parse("run", "-itp", "8080:80", "img", "sh");
  assert.equal(r.terminal, true);
  assert.equal(r.stdin, true);
  assert.deepEqual(r.layer, { net: { publish: ["8080:80"] } });
});

Deno.test("cli accepts =true and =false on boolean flags", () => {
  const r = parse("run", "--tty=true", "--interactive=false", "--json", "--rm=false", "x");
  assert.equal(r.terminal, true);
  assert.equal(r.stdin, false);
  assert.equal(r.json, true);
  assert.equal(
    errorLine(() => parse("run", "--json=yes", "x")),
    'option "--json" takes no value, or "true" or "false": got "yes" (see "micro run --help")',
  );
});

Deno.test("cli rejects an unknown option with a hint to --help", () => {
  assert.equal(
    errorLine(() => parse("run", "--bogus", "img", "sh")),
    'unknown option "--bogus" (see "micro run --help")',
  );
  assert.equal(
    errorLine(() => parse("run", "-itx", "img", "sh")),
    'unknown option "-x" in "-itx" (see "micro run --help")',
  );
  assert.equal(
    errorLine(() => parse("run", "-h", "img")),
    'unknown option "-h" (see "micro run --help")',
  );
});

Deno.test("cli rejects an option missing its value", () => {
  assert.equal(
    errorLine(() => parse("run", "--env")),
    'option "--env" needs a value (see "micro run --help")',
  );
  assert.equal(
    errorLine(() => parse("run", "-it", "-v")),
    'option "-v" needs a value (see "micro run --help")',
  );
});

Deno.test("cli --help stops parsing and needs no command", () => {
  const r = parse("run", "--help");
  assert.equal(r.help, true);
  assert.equal(parse("plan", "-t", "--help", "--bogus").help, true);
});

Deno.test("cli help text lists every option", () => {
  for (
    const opt of [
      "--profile",
      "-p,",
      "--env ",
      "-e,",
      "--env-file",
      "--workdir",
      "-w,",
      "--user",
      "-u,",
      "--group-add",
      "--ulimit",
      "--interactive",
      "-i,",
      "--tty",
      "-t,",
      "--hostname",
      "--network",
      "--volume",
      "-v,",
      "--tmpfs",
      "--name",
      "--json",
      "--rm",
      "--help",
    ]
  ) assert.ok(RUN_HELP.includes(opt), opt);
});

// --- flags to the profile layer ---------------------------------------------------------

Deno.test("cli maps Docker flags onto a profile-shaped layer", () => {
  const r = parse(
    "run",
    "--profile",
    "hardened",
    "--profile=./web.yaml",
    "--hostname",
    "box",
    "--network",
    "host",
    "-v",
    "/srv/data:/data:ro",
    "--volume=/tmp/x:/x",
    "--tmpfs",
    "/run",
    "--tmpfs=/tmp",
    "-w",
    "/data",
    "-u",
    "1000:1000",
    "--group-add",
    "audio",
    "--group-add",
    "44",
    "--ulimit",
    "nofile=1024:4096",
    "--ulimit",
    "core=0",
    "--name",
    "web1",
    "img",
    "sh",
  );
  assert.deepEqual(r.profiles, ["hardened", "./web.yaml"]);
  assert.equal(r.name, "web1");
  assert.deepEqual(r.layer, {
    uts: { hostname: "box" },
    net: { mode: "host" },
    mount: { binds: ["/srv/data:/data:ro", "/tmp/x:/x"], tmpfs: ["/run", "/tmp"] },
    process: {
      cwd: "/data",
      user: "1000:1000",
      groups: ["audio", "44"],
      rlimits: { nofile: "1024:4096", core: "0" },
    },
  });
});

Deno.test("cli --network none sets only the net mode", () => {
  assert.deepEqual(parse("run", "--network=none", "--", "true").layer, { net: { mode: "none" } });
  assert.deepEqual(parse("run", "--network", "bridge", "--", "true").layer, {
    net: { mode: "bridge" },
  });
  assert.equal(
    errorLine(() => parse("run", "--network", "../x", "--", "true")),
    'option "--network": invalid value "../x": expected "none", "host", "bridge", ' +
      'container:NAME or a CNI network\'s name (see "micro run --help")',
  );
  assert.deepEqual(parse("run", "--network", "container:web", "--", "true").layer, {
    net: { mode: "container:web" },
  });
});

Deno.test("cli -p is --publish (Docker's), and the profile is only --profile", () => {
  const r = parse(
    "run",
    "-p",
    "8080:80",
    "--publish=127.0.0.1:5353:53/udp",
    "-p",
    "9000-9001:90-91",
    "--dns",
    "192.0.2.53",
    "--dns-search",
    "example.org",
    "--add-host",
    "db:192.0.2.7",
    "--cni-config-dir",
    "/etc/my-cni",
    "img",
    "sh",
  );
  assert.deepEqual(r.profiles, []);
  assert.deepEqual(r.layer, {
    net: {
      configDir: "/etc/my-cni",
      publish: ["8080:80", "127.0.0.1:5353:53/udp", "9000-9001:90-91"],
      dns: ["192.0.2.53"],
      dnsSearch: ["example.org"],
      addHosts: ["db:192.0.2.7"],
    },
  });
  assert.equal(
    errorLine(() => parse("run", "-p", "hardened", "img", "sh")),
    'option "-p": expected [HOST_IP:]HOST_PORT:CTR_PORT[/tcp|udp], e.g. 8080:80 (a host port ' +
      'is required): "hardened" (see "micro run --help")',
  );
  assert.match(errorLine(() => parse("run", "-p", "80-81:80", "img", "sh")), /differ in length/);
  assert.match(errorLine(() => parse("run", "--add-host", "db", "img", "sh")), /NAME:IP/);
});

Deno.test("cli -e sets variables and a bare KEY copies micro's own value", () => {
  const r = parseRun(
    ["run", "-e", "A=1", "-e", "B=x=y", "-e", "C=", "-e", "HOME", "-e", "UNSET", "--", "env"],
    io({ HOME: "/root" }),
  );
  assert.deepEqual(r.layer, { process: { env: { A: "1", B: "x=y", C: "", HOME: "/root" } } });
});

Deno.test("cli rejects an -e with an empty or spaced name", () => {
  assert.equal(
    errorLine(() => parse("run", "-e", "=x", "--", "env")),
    'option "-e": variable name is empty in "=x" (see "micro run --help")',
  );
  assert.equal(
    errorLine(() => parse("run", "--env", "A B=1", "--", "env")),
    'option "--env": variable name "A B" contains whitespace (see "micro run --help")',
  );
});

Deno.test("cli reads --env-file and lets -e win over it whatever the order", () => {
  const files = {
    "app.env": "# settings\n\nA=file\nB=file\n  C=indented\nHOME\nD=with # hash\r\nUNSET\n",
  };
  const r = parseRun(
    ["run", "-e", "A=flag", "--env-file", "app.env", "--", "env"],
    io({ HOME: "/root" }, files),
  );
  assert.deepEqual(r.layer, {
    process: { env: { A: "flag", B: "file", C: "indented", HOME: "/root", D: "with # hash" } },
  });
});

Deno.test("cli reports the file and line of a bad env-file line", () => {
  const files = { "bad.env": "A=1\n# ok\nB C=2\n", "empty.env": "=3\n" };
  assert.equal(
    errorLine(() => parseRun(["run", "--env-file", "bad.env", "--", "env"], io({}, files))),
    'env file "bad.env" (line 3): variable name "B C" contains whitespace',
  );
  assert.equal(
    errorLine(() => parseRun(["run", "--env-file=empty.env", "x"], io({}, files))),
    'env file "empty.env" (line 1): variable name is empty in "=3"',
  );
  assert.equal(
    errorLine(() => parseRun(["run", "--env-file", "none.env", "x"], io({}, files))),
    'env file "none.env": cannot read: no such file',
  );
});

Deno.test("parseEnvFile reads a real file", () => {
  const path = Deno.makeTempFileSync({ suffix: ".env" });
  try {
    Deno.writeTextFileSync(path, "X=1\n");
    assert.deepEqual(parseEnvFile(path), { X: "1" });
  } finally {
    Deno.removeSync(path);
  }
});

Deno.test("cli: -v takes a bind, a named volume or an anonymous one; bad ones are one line", () => {
  assert.deepEqual(parse("run", "-v", "data:/data", "-v", "/cache", "img", "sh").layer, {
    mount: { binds: ["data:/data", "/cache"] },
  });
  assert.equal(
    errorLine(() => parse("run", "--volume", "/data:data", "img", "sh")),
    'option "--volume": the container path "data": must be an absolute path without \'..\': ' +
      '"/data:data" (see "micro run --help")',
  );
  assert.equal(
    errorLine(() => parse("run", "-v", "da ta:/data", "img", "sh")),
    'option "-v": invalid volume name "da ta": letters, digits, _ . and -, starting with a ' +
      'letter or digit (a host path must be absolute): "da ta:/data" (see "micro run --help")',
  );
  assert.equal(
    errorLine(() => parse("run", "-v", "/a:/b:z", "img", "sh")),
    'option "-v": the mode "z" must be ro or rw: "/a:/b:z" (see "micro run --help")',
  );
});

Deno.test("cli rejects a relative --workdir or --tmpfs and unknown tmpfs options", () => {
  assert.equal(
    errorLine(() => parse("run", "-w", "srv", "img", "sh")),
    'option "-w": working directory "srv" is not absolute (see "micro run --help")',
  );
  assert.equal(
    errorLine(() => parse("run", "--tmpfs", "run", "img", "sh")),
    'option "--tmpfs": the container path "run": must be an absolute path without \'..\': ' +
      '"run" (see "micro run --help")',
  );
  assert.equal(
    errorLine(() => parse("run", "--tmpfs", "/run:size=1m,bogus", "img", "sh")),
    'option "--tmpfs": unknown tmpfs option "bogus" (known: size, mode, uid, gid, ro, rw, ' +
      'exec, noexec, suid, nosuid, dev, nodev): "/run:size=1m,bogus" (see "micro run --help")',
  );
  for (const bad of ["size=1x", "size=0", "mode=999", "uid=-1", "gid=a", "size"]) {
    assert.match(
      errorLine(() => parse("run", "--tmpfs", `/run:${bad}`, "img", "sh")),
      /^option "--tmpfs": (invalid|unknown) tmpfs/,
      bad,
    );
  }
  assert.match(
    errorLine(() => parse("run", "--shm-size", "64q", "img", "sh")),
    /^option "--shm-size": invalid size "64q"/,
  );
});

Deno.test("cli: --tmpfs options, --mount and --shm-size become the mount plugin's keys", () => {
  const r = parse(
    "run",
    "--tmpfs",
    "/run:size=1m,mode=0700,uid=65534,gid=65534,exec",
    "--mount",
    "type=bind,src=/srv,dst=/srv,ro",
    "--mount",
    "type=volume,source=cache,target=/cache",
    "--shm-size",
    "128m",
    "img",
    "sh",
  );
  assert.deepEqual(r.layer, {
    mount: {
      tmpfs: ["/run:size=1m,mode=0700,uid=65534,gid=65534,exec"],
      mounts: ["type=bind,src=/srv,dst=/srv,ro", "type=volume,source=cache,target=/cache"],
      shmSize: "128m",
    },
  });
  assert.deepEqual(
    parseMountFlag("type=bind,src=/a,dst=/b,bind-propagation=rshared"),
    { destination: "/b", type: "bind", source: "/a", options: ["rbind", "rshared"] },
  );
  assert.match(
    errorLine(() =>
      parse("run", "--mount", "type=bind,src=/a,dst=/b,bind-propagation=up", "img", "sh")
    ),
    /^option "--mount": bind-propagation=up: expected one of private, rprivate, shared/,
  );
  assert.match(
    errorLine(() => parse("run", "--mount", "type=tmpfs,dst=/b,src=/x", "img", "sh")),
    /^option "--mount": unknown key "source" for type=tmpfs/,
  );
  assert.match(
    errorLine(() => parse("run", "--mount", "type=bind,src=/a", "img", "sh")),
    /^option "--mount": a mount needs target=PATH/,
  );
});

Deno.test("cli rejects a --ulimit without NAME=", () => {
  assert.equal(
    errorLine(() => parse("run", "--ulimit", "1024", "img", "sh")),
    'option "--ulimit": expected NAME=SOFT[:HARD], got "1024" (see "micro run --help")',
  );
});

Deno.test("cli --rm asks for the container's removal at exit; without it the container stays", () => {
  assert.equal(parse("run", "--rm", "img", "sh").rm, true);
  assert.equal(parse("run", "img", "sh").rm, false);
  assert.equal(parse("run", "--rm=false", "img", "sh").rm, false);
  const { rm: _a, ...withRm } = parse("run", "--rm", "img", "sh");
  const { rm: _b, ...without } = parse("run", "img", "sh");
  assert.deepEqual(withRm, without);
});

Deno.test("cli rejects a verb other than run and plan", () => {
  assert.equal(
    errorLine(() => parse("exec", "x")),
    'unknown command "exec": expected "run" or "plan" (see "micro --help")',
  );
});

// --- hardening flags ----------------------------------------------------------------------

Deno.test("cli --cap-add and --cap-drop fill caps.add and caps.drop in order, as given", () => {
  const r = parse(
    "run",
    "--cap-drop",
    "ALL",
    "--cap-add",
    "NET_BIND_SERVICE",
    "--cap-add=cap_sys_time",
    "--cap-drop=mknod",
    "img",
    "sh",
  );
  assert.deepEqual(r.layer, {
    caps: { add: ["NET_BIND_SERVICE", "cap_sys_time"], drop: ["ALL", "mknod"] },
  });
  assert.deepEqual(parse("run", "--cap-add", "all", "img", "sh").layer, { caps: { add: ["all"] } });
  assert.deepEqual(parse("run", "--cap-drop", "NET_RAW", "img", "sh").layer, {
    caps: { drop: ["NET_RAW"] },
  });
  // Names are checked against capabilities(7) by the profile schema, not here.
  assert.deepEqual(parse("run", "--cap-add", "NET_FOO", "img", "sh").layer, {
    caps: { add: ["NET_FOO"] },
  });
  assert.equal(
    errorLine(() => parse("run", "--cap-add")),
    'option "--cap-add" needs a value (see "micro run --help")',
  );
});

Deno.test("cli --init sets process.init (or clears a profile's with =false)", () => {
  assert.deepEqual(parse("run", "--init", "img", "sleep", "1").layer, { process: { init: true } });
  assert.deepEqual(parse("run", "--init=false", "img", "sh").layer, { process: { init: false } });
  assert.deepEqual(parse("run", "--init", "img", "sh").args, ["sh"]);
});

Deno.test("cli --read-only turns the readonly plugin on (or off with =false)", () => {
  assert.deepEqual(parse("run", "--read-only", "img", "sh").layer, { readonly: { enabled: true } });
  assert.deepEqual(parse("run", "--read-only=true", "img", "sh").layer, {
    readonly: { enabled: true },
  });
  assert.deepEqual(parse("run", "--read-only=false", "img", "sh").layer, {
    readonly: { enabled: false },
  });
  assert.equal(
    errorLine(() => parse("run", "--read-only=yes", "img", "sh")),
    'option "--read-only" takes no value, or "true" or "false": got "yes" ' +
      '(see "micro run --help")',
  );
});

Deno.test("cli --security-opt no-new-privileges[=bool] sets process.noNewPrivileges", () => {
  const nnp = (...opts: string[]) =>
    parse("run", ...opts.flatMap((o) => ["--security-opt", o]), "img", "sh").layer;
  assert.deepEqual(nnp("no-new-privileges"), { process: { noNewPrivileges: true } });
  assert.deepEqual(nnp("no-new-privileges=true"), { process: { noNewPrivileges: true } });
  assert.deepEqual(nnp("no-new-privileges:true"), { process: { noNewPrivileges: true } });
  assert.deepEqual(nnp("no-new-privileges=false"), { process: { noNewPrivileges: false } });
  assert.deepEqual(nnp("no-new-privileges:false"), { process: { noNewPrivileges: false } });
  // The last one wins.
  assert.deepEqual(nnp("no-new-privileges", "no-new-privileges=false"), {
    process: { noNewPrivileges: false },
  });
  assert.deepEqual(
    parse("run", "--security-opt=no-new-privileges", "-u", "app", "img", "sh").layer,
    { process: { noNewPrivileges: true, user: "app" } },
  );
  for (const bad of ["no-new-privileges=yes", "no-new-privileges=", "no-new-privileges:1"]) {
    assert.equal(
      errorLine(() => parse("run", "--security-opt", bad, "img", "sh")),
      `option "--security-opt": no-new-privileges takes true or false: "${bad}" ` +
        '(see "micro run --help")',
    );
  }
});

Deno.test("cli --security-opt seccomp=FILE|unconfined configures the seccomp plugin", () => {
  assert.deepEqual(parse("run", "--security-opt", "seccomp=unconfined", "img", "sh").layer, {
    seccomp: { enabled: false },
  });
  assert.deepEqual(parse("run", "--security-opt", "seccomp=/etc/micro/p.json", "img", "sh").layer, {
    seccomp: { file: "/etc/micro/p.json" },
  });
  assert.deepEqual(parse("run", "--security-opt=seccomp:/etc/micro/p.json", "img", "sh").layer, {
    seccomp: { file: "/etc/micro/p.json" },
  });
  for (const bad of ["seccomp", "seccomp=", "seccomp:"]) {
    assert.equal(
      errorLine(() => parse("run", "--security-opt", bad, "img", "sh")),
      `option "--security-opt": seccomp needs a file or unconfined: "${bad}" ` +
        '(see "micro run --help")',
    );
  }
});

Deno.test("cli --security-opt seccomp=FILE makes a relative file absolute with the cwd", () => {
  assert.deepEqual(parse("run", "--security-opt", "seccomp=profiles/p.json", "img", "sh").layer, {
    seccomp: { file: "/work/profiles/p.json" },
  });
  const elsewhere: CliIO = { ...io(), cwd: () => "/home/me" };
  assert.deepEqual(
    parseRun(["run", "--security-opt", "seccomp=p.json", "img", "sh"], elsewhere).layer,
    { seccomp: { file: "/home/me/p.json" } },
  );
  // The file is not read here: the host probe reads it, and a check reports it.
  let reads = 0;
  const counting: CliIO = {
    ...io(),
    readFile: () => {
      reads++;
      return "";
    },
  };
  parseRun(["run", "--security-opt", "seccomp=p.json", "img", "sh"], counting);
  assert.equal(reads, 0);
});

Deno.test("cli --security-opt apparmor=PROFILE and label=PART:VALUE configure the lsm plugin", () => {
  const r = parse(
    "run",
    "--security-opt",
    "apparmor=docker-default",
    "--security-opt",
    "label=user:system_u",
    "--security-opt",
    "label:role:system_r",
    "--security-opt=label=type:svirt_lxc_net_t",
    "--security-opt",
    "label=level:s0:c100,c200",
    "img",
    "sh",
  );
  assert.deepEqual(r.layer, {
    lsm: {
      apparmor: { profile: "docker-default" },
      selinux: {
        user: "system_u",
        role: "system_r",
        type: "svirt_lxc_net_t",
        level: "s0:c100,c200",
      },
    },
  });
  assert.deepEqual(parse("run", "--security-opt", "apparmor:unconfined", "img", "sh").layer, {
    lsm: { apparmor: { profile: "unconfined" } },
  });
  for (const bad of ["apparmor", "apparmor="]) {
    assert.equal(
      errorLine(() => parse("run", "--security-opt", bad, "img", "sh")),
      `option "--security-opt": apparmor needs a profile name: "${bad}" (see "micro run --help")`,
    );
  }
});

Deno.test("cli --security-opt label errors: disable, an unknown part, an empty value", () => {
  assert.equal(
    errorLine(() => parse("run", "--security-opt", "label=disable", "img", "sh")),
    'option "--security-opt": label=disable is not supported: use a profile without selinux: ' +
      '"label=disable" (see "micro run --help")',
  );
  for (const bad of ["label=foo:bar", "label=type:", "label=type", "label", "label=:x"]) {
    assert.equal(
      errorLine(() => parse("run", "--security-opt", bad, "img", "sh")),
      'option "--security-opt": label takes user:USER, role:ROLE, type:TYPE or level:LEVEL: ' +
        `"${bad}" (see "micro run --help")`,
      bad,
    );
  }
});

Deno.test("cli --security-opt rejects an unknown key, naming the ones it knows", () => {
  for (const bad of ["privileged", "systempaths=unconfined", "Seccomp=unconfined", "=x", ""]) {
    assert.equal(
      errorLine(() => parse("run", "--security-opt", bad, "img", "sh")),
      'option "--security-opt": unknown security option (no-new-privileges, seccomp, apparmor, ' +
        `label): "${bad}" (see "micro run --help")`,
      bad,
    );
  }
  assert.equal(
    errorLine(() => parse("run", "--security-opt")),
    'option "--security-opt" needs a value (see "micro run --help")',
  );
});

Deno.test("cli help text lists the hardening options", () => {
  for (const opt of ["--cap-add", "--cap-drop", "--read-only", "--security-opt"]) {
    assert.ok(RUN_HELP.includes(opt), opt);
  }
  for (const form of ["no-new-privileges", "seccomp=FILE|unconfined", "apparmor=", "label="]) {
    assert.ok(RUN_HELP.includes(form), form);
  }
});

Deno.test("--name takes Docker's container names only: it names micro's directories", () => {
  assert.equal(parseRun(["run", "--name", "web-1.a_b", "img", "true"], io()).name, "web-1.a_b");
  for (const bad of ["../x", "a/b", "-x", ".x", ""]) {
    assert.throws(
      () => parseRun(["run", `--name=${bad}`, "img", "true"], io()),
      (e: Error) => e.message === `option "--name": invalid name "${bad}"`,
    );
  }
});
