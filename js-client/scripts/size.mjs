// Size of the browser bundle: everything `@glueberry/client` exports, with the @noble crypto,
// bundled and minified as an application bundler would, then gzipped. Fails above the budget.
import { build } from 'esbuild';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';

const BUDGET = 30_000; // bytes, min+gzip ("30 KB"; 1 KB = 1000 bytes, the stricter reading)

const root = fileURLToPath(new URL('..', import.meta.url));
const result = await build({
  absWorkingDir: root,
  entryPoints: ['src/index.ts'],
  bundle: true,
  format: 'esm',
  platform: 'browser',
  target: 'es2022',
  minify: true,
  legalComments: 'none',
  write: false,
  logLevel: 'warning',
});
const code = result.outputFiles[0].contents;
const gzipped = gzipSync(code, { level: 9 }).length;
const kb = (n) => (n / 1000).toFixed(1);
console.log(`browser bundle: ${code.length} bytes minified, ${gzipped} bytes min+gzip (${kb(gzipped)} KB); budget ${BUDGET} bytes (${kb(BUDGET)} KB)`);
if (gzipped > BUDGET) {
  console.error(`size: over budget by ${gzipped - BUDGET} bytes`);
  process.exit(1);
}
