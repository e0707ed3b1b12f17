// `npm run -w web-demo build`: copy the browser bundle of js-client into static/vendor/, where
// the page imports it (./vendor/glueberry-client.js). Build the bundle first:
// `npm run -w js-client build` (`make demo` does both).
import { copyFile, mkdir, readdir } from 'node:fs/promises';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = fileURLToPath(new URL('..', import.meta.url));
const source = `${resolve(here, '../js-client/dist/browser')}/`;
const target = `${here}static/vendor/`;
const bundle = 'glueberry-client.js';

let files;
try {
  files = (await readdir(source)).filter((name) => name.startsWith(bundle));
} catch {
  files = [];
}
if (!files.includes(bundle)) {
  console.error(
    `web-demo: ${source}${bundle} does not exist; build the browser library first: npm run -w js-client build`,
  );
  process.exit(1);
}
await mkdir(target, { recursive: true });
for (const name of files) await copyFile(source + name, target + name); // the bundle and its source map
console.log(`web-demo: copied ${files.join(', ')} to static/vendor/`);
