/**
 * `micro image import FILE|DIR [NAME[:TAG]]` and `micro image export NAME|ID FILE`: the
 * reading and writing are core/image/archive.ts and core/image/export.ts; the records are
 * the store's (core/store/images.ts). argv is the whole command line after `micro`.
 */
import { MicroError } from "../core/errors.ts";

export const IMPORT_USAGE = "micro image import [--root DIR] [--platform OS/ARCH[/VARIANT]] " +
  "FILE|DIR [NAME[:TAG]]";
export const EXPORT_USAGE = "micro image export [--root DIR] NAME|ID FILE";

const IMPORT_HELP = `usage: ${IMPORT_USAGE}

Imports the images in an OCI image layout directory, an OCI archive (a tar of a layout) or a
docker save tarball (the archive itself plain, gzip or zstd; its layers too). Each image is
named as the archive names it, or NAME when the archive holds one image.

options:
  --root DIR                  the store (default /var/lib/micro as root, else
                              $XDG_DATA_HOME/micro; MICRO_ROOT sets it too)
  --platform OS/ARCH[/VAR]    the image to take from a multi-platform index (default: the host's)
`;

const EXPORT_HELP = `usage: ${EXPORT_USAGE}

Writes the image as an OCI archive to FILE (replaced only once the new one is whole), as
skopeo's oci-archive: transport, podman load and micro image import read it.

options:
  --root DIR    the store (default /var/lib/micro as root, else $XDG_DATA_HOME/micro)
`;

interface Parsed {
  root?: string;
  platform?: string;
  help: boolean;
  args: string[];
}

/** Options after `image import|export`, before or between the operands. */
function parse(argv: string[], withPlatform: boolean, usage: string): Parsed {
  const out: Parsed = { help: false, args: [] };
  const rest = argv.slice(2);
  for (let i = 0; i < rest.length; i++) {
    const a = rest[i];
    const value = (flag: string): string => {
      if (a.startsWith(`${flag}=`)) return a.slice(flag.length + 1);
      const v = rest[++i];
      if (v === undefined) throw new MicroError(`${flag} needs a value`, { hint: usage });
      return v;
    };
    if (a === "--") {
      out.args.push(...rest.slice(i + 1));
      break;
    } else if (a === "--help" || a === "-h") out.help = true;
    else if (a === "--root" || a.startsWith("--root=")) out.root = value("--root");
    else if (withPlatform && (a === "--platform" || a.startsWith("--platform="))) {
      out.platform = value("--platform");
    } else if (a.startsWith("-") && a !== "-") {
      throw new MicroError(`unknown option ${JSON.stringify(a)}`, { hint: `usage: ${usage}` });
    } else out.args.push(a);
  }
  return out;
}

async function rootOf(p: Parsed): Promise<string> {
  if (p.root !== undefined) {
    if (!p.root) throw new MicroError("--root needs a directory");
    return p.root.replace(/\/+$/, "") || "/";
  }
  const { storeRoot } = await import("../core/store/paths.ts");
  return storeRoot(Deno.uid() ?? 0);
}

const warn = (m: string) => console.error(`micro: warning: ${m}`);

/** `micro image import FILE|DIR [NAME[:TAG]]`: prints one line per image it names. */
export async function imageImport(argv: string[]): Promise<number> {
  const p = parse(argv, true, IMPORT_USAGE);
  if (p.help) {
    console.log(IMPORT_HELP.trimEnd());
    return 0;
  }
  if (p.args.length < 1 || p.args.length > 2) {
    throw new MicroError(`usage: ${IMPORT_USAGE}`);
  }
  const [source, nameArg] = p.args;
  const { familiarReference, formatReference, parseReference } = await import(
    "../core/image/reference.ts"
  );
  let name: string | undefined;
  if (nameArg !== undefined) {
    const ref = parseReference(nameArg);
    if (ref.digest) {
      throw new MicroError(`import: NAME ${JSON.stringify(nameArg)} holds a digest`, {
        hint: "name the image by repository and tag; its digest is its content's",
      });
    }
    name = formatReference(ref);
  }
  const root = await rootOf(p);
  const [{ BlobStore }, { readImageSource }, { addImage }, { openLibc }] = await Promise.all([
    import("../core/image/blobs.ts"),
    import("../core/image/archive.ts"),
    import("../core/store/images.ts"),
    import("../core/sys/libc.ts"),
  ]);
  const sys = openLibc();
  const blobs = new BlobStore(root);
  // The archive's own names are replaced by NAME: what is wrong with them does not matter.
  const nameWarn = name === undefined ? warn : () => {};
  const images = await readImageSource(source, blobs, {
    sys,
    platform: p.platform,
    warn: nameWarn,
  });
  if (name !== undefined) {
    if (images.length > 1) {
      throw new MicroError(
        `import: ${source} holds ${images.length} images; NAME names one`,
        { hint: "import it without NAME: each image keeps the name the archive gives it" },
      );
    }
    images[0].names = [name];
    images[0].ref = name;
  }
  for (const image of images) {
    const names: (string | null)[] = image.names.length ? image.names : [null];
    for (const n of names) {
      const rec = await addImage(root, n, image, { sys, warn });
      console.log(
        n === null
          ? `Loaded image ID: ${rec.id.includes(":") ? rec.id : `sha256:${rec.id}`}`
          : `Loaded image: ${familiarReference(parseReference(n))}`,
      );
    }
  }
  return 0;
}

/** `micro image export NAME|ID FILE`. */
export async function imageExport(argv: string[]): Promise<number> {
  const p = parse(argv, false, EXPORT_USAGE);
  if (p.help) {
    console.log(EXPORT_HELP.trimEnd());
    return 0;
  }
  if (p.args.length !== 2) throw new MicroError(`usage: ${EXPORT_USAGE}`);
  const [which, file] = p.args;
  const root = await rootOf(p);
  const [{ BlobStore }, { exportImage }, { findWithName }] = await Promise.all([
    import("../core/image/blobs.ts"),
    import("../core/image/export.ts"),
    import("../core/store/images.ts"),
  ]);
  const found = await findWithName(root, which);
  if (!found) {
    throw new MicroError(`export: no image ${JSON.stringify(which)} in the store ${root}`, {
      hint: "see micro image ls",
    });
  }
  await exportImage(
    // The name it was asked by, else its first: the archive's image name (none when nameless).
    {
      manifestDigest: found.image.manifestDigest,
      name: found.name ?? found.image.names[0] ?? null,
    },
    new BlobStore(root),
    file,
  );
  return 0;
}
