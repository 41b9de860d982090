import assert from "node:assert/strict";
import { CopyUp, COPYUP_MAX_DEPTH } from "../../core/engine/copyup.ts";
import { C, type Stat, type Sys } from "../../core/sys/mod.ts";

/** An in-memory tree: path → node. */
type Node =
  | { type: "dir"; mode: number; uid: number; gid: number }
  | { type: "file"; mode: number; uid: number; gid: number; data: string }
  | { type: "link"; target: string; uid: number; gid: number }
  | { type: "fifo"; mode: number; uid: number; gid: number };

const TYPE = { dir: C.S_IFDIR, file: C.S_IFREG, link: C.S_IFLNK, fifo: 0o010000 };

/** Just the calls CopyUp makes, over two trees ("src" read, "dst" written) and a log. */
function memSys(src: Map<string, Node>) {
  const dst = new Map<string, Node>([["", { type: "dir", mode: 0o755, uid: 0, gid: 0 }]]);
  const fds = new Map<number, { tree: Map<string, Node>; path: string; read?: boolean }>();
  let next = 10;
  const dec = (b: Uint8Array) => new TextDecoder().decode(b.subarray(0, b.indexOf(0)));
  const at = (fd: number, name: Uint8Array) => {
    const f = fds.get(fd)!;
    const n = dec(name);
    return { tree: f.tree, path: n === "" ? f.path : f.path ? `${f.path}/${n}` : n };
  };
  const listed = new Set<number>();
  const log: string[] = [];
  const sys = {
    getdents64(fd: number, buf: Uint8Array) {
      if (listed.has(fd)) return 0;
      listed.add(fd);
      const f = fds.get(fd)!;
      const names = [
        ".",
        "..",
        ...[...f.tree.keys()].filter((k) =>
          k !== f.path && k.startsWith(f.path ? f.path + "/" : "") &&
          !k.slice(f.path ? f.path.length + 1 : 0).includes("/")
        ).map((k) => k.slice(k.lastIndexOf("/") + 1)),
      ];
      let off = 0;
      for (const name of names) {
        const bytes = new TextEncoder().encode(name);
        const reclen = (19 + bytes.length + 1 + 7) & ~7;
        buf.fill(0, off, off + reclen);
        buf[off + 16] = reclen & 0xff;
        buf[off + 17] = reclen >> 8;
        buf.set(bytes, off + 19);
        off += reclen;
      }
      return off;
    },
    fstatat(fd: number, name: Uint8Array, _flags: number, st: Stat) {
      const { tree, path } = at(fd, name);
      const n = tree.get(path);
      if (!n) return -2;
      st.mode = TYPE[n.type] | ("mode" in n ? n.mode : 0o777);
      st.uid = n.uid;
      st.gid = n.gid;
      st.rdev = 0;
      return 0;
    },
    openat2(fd: number, name: Uint8Array, flags: number, _mode: number, _resolve: number) {
      const { tree, path } = at(fd, name);
      if (flags & C.O_CREAT) {
        tree.set(path, { type: "file", mode: 0o600, uid: 0, gid: 0, data: "" });
      } else if (!tree.has(path)) return -2;
      else if (tree.get(path)!.type === "link") return -40;
      fds.set(next, { tree, path });
      return next++;
    },
    mkdirat(fd: number, name: Uint8Array, mode: number) {
      const { tree, path } = at(fd, name);
      tree.set(path, { type: "dir", mode, uid: 0, gid: 0 });
      return 0;
    },
    readlinkat(fd: number, name: Uint8Array, buf: Uint8Array) {
      const { tree, path } = at(fd, name);
      const t = new TextEncoder().encode((tree.get(path) as { target: string }).target);
      buf.set(t);
      return t.length;
    },
    symlinkat(target: Uint8Array, fd: number, name: Uint8Array) {
      const { tree, path } = at(fd, name);
      tree.set(path, { type: "link", target: dec(target), uid: 0, gid: 0 });
      return 0;
    },
    mknodat(fd: number, name: Uint8Array, mode: number) {
      const { tree, path } = at(fd, name);
      tree.set(path, { type: "fifo", mode: mode & 0o7777, uid: 0, gid: 0 });
      return 0;
    },
    fchownat(fd: number, name: Uint8Array, uid: number, gid: number) {
      const { tree, path } = at(fd, name);
      Object.assign(tree.get(path)!, { uid, gid });
      return 0;
    },
    fchmodat(fd: number, name: Uint8Array, mode: number) {
      const { tree, path } = at(fd, name);
      Object.assign(tree.get(path)!, { mode });
      return 0;
    },
    fchmod(fd: number, mode: number) {
      const f = fds.get(fd)!;
      Object.assign(f.tree.get(f.path)!, { mode });
      return 0;
    },
    sendfile(out: number, from: number) {
      const s = fds.get(from)!;
      if (s.read) return 0;
      s.read = true;
      const data = (s.tree.get(s.path) as { data: string }).data;
      const o = fds.get(out)!;
      (o.tree.get(o.path) as { data: string }).data = data;
      return data.length;
    },
    close(fd: number) {
      log.push(`close(${fd})`);
      return fds.delete(fd) ? 0 : -9;
    },
  };
  fds.set(3, { tree: src, path: "" });
  fds.set(4, { tree: dst, path: "" });
  return { sys: sys as unknown as Sys, dst, open: () => fds.size };
}

Deno.test("copy-up: files, directories, links and nodes with their owner and mode", () => {
  const src = new Map<string, Node>([
    ["", { type: "dir", mode: 0o755, uid: 0, gid: 0 }],
    ["f", { type: "file", mode: 0o4750, uid: 5, gid: 6, data: "hello" }],
    ["sub", { type: "dir", mode: 0o710, uid: 12, gid: 34 }],
    ["sub/x", { type: "file", mode: 0o644, uid: 0, gid: 0, data: "deep" }],
    ["lnk", { type: "link", target: "/etc/shadow", uid: 7, gid: 7 }],
    ["p", { type: "fifo", mode: 0o620, uid: 1, gid: 2 }],
  ]);
  const { sys, dst, open } = memSys(src);
  assert.equal(new CopyUp(sys).copy(3, 4), 0);
  assert.deepEqual(Object.fromEntries(dst), {
    "": { type: "dir", mode: 0o755, uid: 0, gid: 0 },
    f: { type: "file", mode: 0o4750, uid: 5, gid: 6, data: "hello" },
    sub: { type: "dir", mode: 0o710, uid: 12, gid: 34 },
    "sub/x": { type: "file", mode: 0o644, uid: 0, gid: 0, data: "deep" },
    lnk: { type: "link", target: "/etc/shadow", uid: 7, gid: 7 },
    p: { type: "fifo", mode: 0o620, uid: 1, gid: 2 },
  });
  assert.equal(open(), 2, "every fd the copy opened is closed");
});

Deno.test("copy-up: a tree deeper than the limit is refused with ELOOP, fds closed", () => {
  const src = new Map<string, Node>([["", { type: "dir", mode: 0o755, uid: 0, gid: 0 }]]);
  let p = "";
  for (let i = 0; i <= COPYUP_MAX_DEPTH; i++) {
    p = p ? `${p}/d` : "d";
    src.set(p, { type: "dir", mode: 0o755, uid: 0, gid: 0 });
  }
  const { sys, open } = memSys(src);
  assert.equal(new CopyUp(sys).copy(3, 4), -40);
  assert.equal(open(), 2);
});
