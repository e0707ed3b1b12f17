// The single-file browser bundle, dist/browser/glueberry-client.js: the public API of
// `@glueberry/client` (src/browser.ts: what docs/js-client.md documents), with the @noble crypto,
// as one minified ES module without imports (so no `node:` ones), and its source map.
// The web demo copies it; scripts/size.mjs checks its min+gzip size against the budget.
import { build } from 'esbuild';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';

export const root = fileURLToPath(new URL('..', import.meta.url));
export const BROWSER_BUNDLE = 'dist/browser/glueberry-client.js';

const options = {
  absWorkingDir: root,
  entryPoints: ['src/browser.ts'],
  outfile: BROWSER_BUNDLE,
  bundle: true,
  format: 'esm',
  platform: 'browser',
  target: 'es2022',
  minify: true,
  // `_`-prefixed members are internal (ours: `@internal`; @noble's too): in this one closed file they
  // can take short names. Nothing outside the bundle reaches them (the public API has none).
  mangleProps: /^_[a-zA-Z]/,
  sourcemap: true, // glueberry-client.js.map beside it, for debugging (the bundle works without it)
  define: { GLUEBERRY_BROWSER_BUNDLE: 'true' }, // leaves out code only Node needs (src/transport.ts)
  metafile: true,
  logLevel: 'warning',
};

/**
 * The legal comments of the files the bundle holds code from (the @noble MIT notices, in the
 * `/*! … *\/` form @noble uses), each once, as one comment at the top. esbuild's
 * `legalComments: 'eof'` would repeat the name of every file before its notice.
 */
async function notices() {
  const { metafile } = await build({ ...options, write: false, sourcemap: false, legalComments: 'none' });
  const found = new Set();
  for (const [input, { bytesInOutput }] of Object.entries(Object.values(metafile.outputs)[0].inputs)) {
    if (bytesInOutput === 0) continue;
    for (const [comment] of (await readFile(`${root}${input}`, 'utf8')).matchAll(/\/\*![^]*?\*\//g)) {
      found.add(comment.slice(3, -2).trim());
    }
  }
  return `/*! ${[...found].join('; ')} */`;
}

/** Build the bundle; `write: false` returns it in memory. Throws if it would import `node:*`. */
export async function buildBrowserBundle({ write = true } = {}) {
  const result = await build({ ...options, write, legalComments: 'none', banner: { js: await notices() } });
  const imports = Object.values(result.metafile.outputs).flatMap((o) => o.imports.map((i) => i.path));
  if (imports.length > 0)
    throw new Error(`the browser bundle must be self-contained, but imports ${imports.join(', ')}`);
  return result;
}
