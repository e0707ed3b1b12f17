// Bundle src/index.ts (browser + Node) and src/node.ts (Node extras) into dist/ as minified ESM.
// Shared code (and the @noble crypto) lands in one chunk both entries import, so
// `@glueberry/client` and `@glueberry/client/node` share classes (instanceof works across them).
// Then the single-file browser bundle dist/browser/glueberry-client.js (scripts/browser-bundle.mjs).
// Type declarations come from `tsc -p tsconfig.build.json` (run after this by `npm run build`).
import { build } from 'esbuild';
import { rm } from 'node:fs/promises';
import { BROWSER_BUNDLE, buildBrowserBundle, root } from './browser-bundle.mjs';

await rm(`${root}dist`, { recursive: true, force: true });
await build({
  absWorkingDir: root,
  entryPoints: ['src/index.ts', 'src/node.ts'],
  outdir: 'dist',
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'neutral',
  target: 'es2022',
  external: ['node:*'],
  minify: true,
  sourcemap: true,
  legalComments: 'linked',
  chunkNames: 'chunks/[name]-[hash]',
  logLevel: 'warning',
});
await buildBrowserBundle();
console.log(`built dist/ and ${BROWSER_BUNDLE}`);
