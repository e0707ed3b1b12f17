// Bundle the integration scenarios that run from source (test-integration/proof-*.ts with
// examples/proof-handshake.ts) into build/integration/: proof-node.mjs for Node (the `ws` package
// stays external) and proof-browser.js for a page. Run by tests/gateway/test_proof_handshake.py.
import { build } from 'esbuild';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const common = { absWorkingDir: root, bundle: true, format: 'esm', target: 'es2022', logLevel: 'warning' };
await build({
  ...common,
  entryPoints: ['test-integration/proof-node.ts'],
  outfile: 'build/integration/proof-node.mjs',
  platform: 'node',
  external: ['ws'],
});
await build({
  ...common,
  entryPoints: ['test-integration/proof-browser.ts'],
  outfile: 'build/integration/proof-browser.js',
  platform: 'browser',
  define: { GLUEBERRY_BROWSER_BUNDLE: 'true' },
});
