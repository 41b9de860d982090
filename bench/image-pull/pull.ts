/**
 * The registry client alone (download and verify into the blob store at ROOT, no unpacking),
 * for test/integration/image_registry_test.ts's killed pull; `micro pull` does the rest.
 *
 *   deno run -A bench/image-pull/pull.ts REF ROOT [--platform=OS/ARCH] [--tls-verify=false]
 *     [--progress] [--json]
 *
 * Prints the one-line error and exits 125 on failure, as micro does.
 */
import { BlobStore, parseReference, progressRenderer, pullImage } from "../../core/image/mod.ts";
import { MicroError } from "../../core/errors.ts";

const args = Deno.args.filter((a) => !a.startsWith("--"));
const flags = new Map(
  Deno.args.filter((a) => a.startsWith("--")).map((a) => {
    const [k, v] = a.slice(2).split("=");
    return [k, v ?? "true"] as const;
  }),
);
if (args.length !== 2) {
  console.error(
    "usage: pull.ts REF ROOT [--platform=OS/ARCH] [--tls-verify=false] [--progress] [--json]",
  );
  Deno.exit(2);
}
const renderer = flags.has("progress") ? progressRenderer() : undefined;
try {
  const image = await pullImage(parseReference(args[0]), {
    platform: flags.get("platform"),
    tlsVerify: flags.get("tls-verify") === "false" ? false : undefined,
    onProgress: renderer?.onProgress,
  }, new BlobStore(args[1]));
  renderer?.finish();
  if (flags.has("json")) {
    console.log(JSON.stringify({ ...image, manifest: undefined, config: undefined }));
  } else console.log(`${image.ref}: ${image.manifestDigest}`);
} catch (e) {
  renderer?.finish();
  if (e instanceof MicroError) {
    console.error(`micro: ${e.line()}`);
    Deno.exit(e.exitCode);
  }
  throw e;
}
