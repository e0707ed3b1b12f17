// Compile src/ and test/ with esbuild (one .js per .ts, imports untouched) into build/test-out,
// then run the compiled test files with Node's built-in test runner.
// Usage: npm test [-- test/name.test.ts ...]
import { build } from 'esbuild';
import { spawnSync } from 'node:child_process';
import { readdir, rm } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const out = 'build/test-out';
const ts = async (dir) => (await readdir(`${root}${dir}`)).filter((f) => f.endsWith('.ts')).map((f) => `${dir}/${f}`);

await rm(`${root}${out}`, { recursive: true, force: true });
await build({
  absWorkingDir: root,
  entryPoints: [...(await ts('src')), ...(await ts('test'))],
  outdir: out,
  outbase: '.',
  format: 'esm',
  platform: 'node',
  target: 'node20',
  sourcemap: 'inline',
  logLevel: 'warning',
});

const selected = process.argv.slice(2);
const tests = (selected.length > 0 ? selected : (await ts('test')).filter((f) => f.endsWith('.test.ts')))
  .map((f) => `${out}/${f.replace(/^\.\//, '').replace(/\.ts$/, '.js')}`);
const run = spawnSync(process.execPath, ['--enable-source-maps', '--test', '--test-reporter=spec', ...tests], { cwd: root, stdio: 'inherit' });
process.exit(run.status ?? 1);
