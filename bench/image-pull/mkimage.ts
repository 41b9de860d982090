/**
 * Writes the benchmark image as an OCI layout: LAYERS layers of MB/LAYERS megabytes each,
 * half incompressible noise and half text, gzipped, so the pull moves about MB megabytes.
 *
 *   deno run -A bench/image-pull/mkimage.ts DIR [MB=100] [LAYERS=5]
 */
import {
  enc,
  makeImage,
  noise,
  type TarFile,
  writeLayout,
} from "../../test/integration/_registry.ts";

const [dir, mbArg, layersArg] = Deno.args;
const mb = Number(mbArg ?? 100);
const n = Number(layersArg ?? 5);
const per = Math.floor((mb * 1e6) / n);
const layers: TarFile[][] = [];
for (let i = 0; i < n; i++) {
  const text = enc.encode(
    Array.from({ length: per / 64 }, (_, j) => `layer ${i} line ${j} ${"x".repeat(40)}\n`).join(""),
  );
  layers.push([
    { path: `l${i}`, dir: true },
    { path: `l${i}/noise`, data: noise(Math.floor(per * 0.9), i + 1) },
    { path: `l${i}/text`, data: text },
  ]);
}
const image = makeImage(layers);
await writeLayout(dir, image.blobs, { big: image.manifest });
const total = image.layers.reduce((a, l) => a + l.data.length, 0);
console.log(`${n} layers, ${(total / 1e6).toFixed(1)} MB compressed`);
