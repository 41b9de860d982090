/** `micro login` and `micro logout`: credentials in micro's auth file (core/image/auth.ts). */
import { MicroError } from "../core/errors.ts";

const LOGIN_USAGE =
  "usage: micro login [-u USER] [--password-stdin] [--tls-verify=false] [REGISTRY]";

/** Reads one line from stdin; without echo when `secret` and stdin is a terminal. */
async function readLine(prompt: string, secret: boolean): Promise<string> {
  const tty = Deno.stdin.isTerminal();
  if (tty) await Deno.stderr.write(new TextEncoder().encode(prompt));
  if (tty && secret) Deno.stdin.setRaw(true);
  const bytes: number[] = [];
  const buf = new Uint8Array(1);
  try {
    for (;;) {
      const n = await Deno.stdin.read(buf);
      if (n === null) break;
      const c = buf[0];
      if (c === 0x0a || c === 0x0d) break;
      if (tty && secret && c === 0x03) throw new MicroError("login: interrupted");
      if (tty && secret && (c === 0x7f || c === 0x08)) {
        bytes.pop();
        continue;
      }
      bytes.push(c);
    }
  } finally {
    if (tty && secret) {
      Deno.stdin.setRaw(false);
      await Deno.stderr.write(new TextEncoder().encode("\n"));
    }
  }
  return new TextDecoder().decode(new Uint8Array(bytes));
}

/** All of stdin (for --password-stdin), without the final newline. */
async function readAll(): Promise<string> {
  const chunks: Uint8Array[] = [];
  let n = 0;
  for await (const c of Deno.stdin.readable) {
    n += c.length;
    if (n > 64 << 10) throw new MicroError("login: the password on stdin is longer than 64 KiB");
    chunks.push(c);
  }
  const all = new Uint8Array(n);
  let o = 0;
  for (const c of chunks) {
    all.set(c, o);
    o += c.length;
  }
  return new TextDecoder().decode(all).replace(/\r?\n$/, "");
}

export async function login(argv: string[]): Promise<number> {
  let username: string | undefined;
  let passwordStdin = false;
  let tlsVerify = true;
  const rest: string[] = [];
  const args = argv.slice(1);
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === "-u" || a === "--username") {
      if (i + 1 >= args.length) throw new MicroError(`option "${a}" needs a value`);
      username = args[++i];
    } else if (a.startsWith("--username=")) username = a.slice(11);
    else if (a === "--password-stdin") passwordStdin = true;
    else if (a === "--tls-verify=false") tlsVerify = false;
    else if (a === "--tls-verify" || a === "--tls-verify=true") tlsVerify = true;
    else if (a === "-p" || a.startsWith("--password")) {
      throw new MicroError(`option "${a}": a password on the command line is not accepted`, {
        hint: "use --password-stdin, or type it at the prompt",
      });
    } else if (a === "--help" || a === "-h") {
      console.log(LOGIN_USAGE);
      return 0;
    } else if (a.startsWith("-")) {
      throw new MicroError(`unknown option "${a}"`, { hint: LOGIN_USAGE });
    } else rest.push(a);
  }
  if (rest.length > 1) throw new MicroError(LOGIN_USAGE);
  const registry = rest[0] ?? "docker.io";
  const { login: doLogin } = await import("../core/image/registry.ts");
  if (username === undefined) {
    if (passwordStdin || !Deno.stdin.isTerminal()) {
      throw new MicroError("login: no username", { hint: "give one with -u USER" });
    }
    username = (await readLine("Username: ", false)).trim();
  }
  const password = passwordStdin ? await readAll() : await readLine("Password: ", true);
  if (password === "") throw new MicroError("login: the password is empty");
  const key = await doLogin(registry, { username, password }, { tlsVerify });
  console.log(`Login Succeeded (${key})`);
  return 0;
}

export async function logout(argv: string[]): Promise<number> {
  const rest = argv.slice(1);
  if (rest.length > 1 || rest.some((a) => a.startsWith("-"))) {
    throw new MicroError("usage: micro logout [REGISTRY]");
  }
  const registry = rest[0] ?? "docker.io";
  const { logout: doLogout, loginDomain } = await import("../core/image/registry.ts");
  const removed = await doLogout(registry);
  const key = loginDomain(registry);
  console.log(removed ? `Removed login credentials for ${key}` : `Not logged in to ${key}`);
  return 0;
}
