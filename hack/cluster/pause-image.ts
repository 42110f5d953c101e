// Writes the sandbox ("pause") image of real nodes as an OCI archive for `ctr images import`: busybox-static sleeping
// forever, built locally from the test image factory's busybox layer, so nothing is ever pulled.
// Usage: node hack/cluster/pause-image.ts NAME FILE   (NAME as containerd's sandbox_image names it)
import { writeFileSync } from 'node:fs';
import { buildImage, ociArchive } from '../../test/support/images.ts';

const [name, file] = process.argv.slice(2);
if (!name || !file) throw new Error('usage: pause-image.ts NAME FILE');
const tag = name.slice(name.lastIndexOf(':') + 1);
const image = buildImage({
  repository: 'pause',
  tag,
  layers: [],
  command: ['/bin/busybox', 'sleep', 'infinity'],
});
writeFileSync(file, ociArchive(image, name));
