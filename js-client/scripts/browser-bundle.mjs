// The single-file browser bundle, dist/browser/glueberry-client.js: the browser API of
// `@glueberry/client` (src/browser.ts: everything but the libp2p stream framing), with the @noble
// crypto, as one minified ES module without imports (so no `node:` ones), and its source map.
// The web demo copies it; scripts/size.mjs checks its min+gzip size against the budget.
import { build } from 'esbuild';
import { fileURLToPath } from 'node:url';

export const root = fileURLToPath(new URL('..', import.meta.url));
export const BROWSER_BUNDLE = 'dist/browser/glueberry-client.js';

/** Build the bundle; `write: false` returns it in memory. Throws if it would import `node:*`. */
export async function buildBrowserBundle({ write = true } = {}) {
  const result = await build({
    absWorkingDir: root,
    entryPoints: ['src/browser.ts'],
    outfile: BROWSER_BUNDLE,
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: 'es2022',
    minify: true,
    legalComments: 'eof', // the @noble MIT notices, kept inside the single file
    sourcemap: true, // glueberry-client.js.map beside it, for debugging (the bundle works without it)
    write,
    metafile: true,
    logLevel: 'warning',
  });
  const imports = Object.values(result.metafile.outputs).flatMap((o) => o.imports.map((i) => i.path));
  if (imports.length > 0)
    throw new Error(`the browser bundle must be self-contained, but imports ${imports.join(', ')}`);
  return result;
}
