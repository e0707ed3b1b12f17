// Keeps the page's modules (static/*.js, loaded natively by the browser, no build step) honest:
// each one parses, imports only files that exist by a relative path, is reached from app.js,
// stays under MAX_LINES, and no import circle forms between them. index.html loads app.js as a
// module and runs no inline script (a Content-Security-Policy without 'unsafe-inline' is coming).
//
// Imports are read with regular expressions, not a parser: that is enough for plain
// `import … from '…'` / `export … from '…'` statements at the start of a line, and
// `importsOf` refuses a file where it might miss one (an `import` it cannot read).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const STATIC = join(ROOT, 'static');
const VENDOR = join(STATIC, 'vendor'); // the built browser bundle: not ours, maybe not built yet
const ENTRY = 'app.js';
const MAX_LINES = 500;

/** Every .js/.mjs file under `dir` (recursively), as paths relative to `base`. */
function jsFiles(dir, base = dir, skip = []) {
  const out = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (skip.includes(path)) continue;
    if (entry.isDirectory()) out.push(...jsFiles(path, base, skip));
    else if (/\.m?js$/.test(entry.name)) out.push(relative(base, path));
  }
  return out.sort();
}

const FROM_RE = /^[ \t]*(?:import|export)\b[^'";]*?\bfrom\s*(['"])([^'"]+)\1/gm;
const BARE_RE = /^[ \t]*import\s*(['"])([^'"]+)\1/gm; // import './side-effect.js'
const DYNAMIC_RE = /\bimport\s*\(\s*(['"])([^'"]+)\1\s*\)/g;

/** The module specifiers a source imports (statically or with a literal `import('…')`). */
export function importsOf(source) {
  const found = [];
  for (const re of [FROM_RE, BARE_RE, DYNAMIC_RE]) {
    for (const match of source.matchAll(re)) found.push(match[2]);
  }
  // Every line that starts an import statement, and every import(…), must have been read.
  const statements = source.match(/^[ \t]*import\b(?!\s*[(.])/gm)?.length ?? 0;
  const reexports = source.match(/^[ \t]*export\b[^'";]*?\bfrom\s*['"]/gm)?.length ?? 0;
  const calls = source.match(/\bimport\s*\(/g)?.length ?? 0;
  if (found.length !== statements + reexports + calls) {
    throw new Error(`read ${found.length} imports of ${statements + reexports + calls}: write them as import … from '…'`);
  }
  return found;
}

/** The first import circle in `graph` (module -> modules it imports), as a path, or null. */
export function findCircle(graph) {
  const done = new Set();
  const path = [];
  const visit = (name) => {
    const at = path.indexOf(name);
    if (at !== -1) return [...path.slice(at), name];
    if (done.has(name)) return null;
    path.push(name);
    for (const next of graph.get(name) ?? []) {
      const circle = visit(next);
      if (circle) return circle;
    }
    path.pop();
    done.add(name);
    return null;
  };
  for (const name of graph.keys()) {
    const circle = visit(name);
    if (circle) return circle;
  }
  return null;
}

/** The page's module graph: each module under static/ (not vendor/) -> the modules it imports. */
function pageGraph() {
  const graph = new Map();
  const problems = [];
  for (const name of jsFiles(STATIC, STATIC, [VENDOR])) {
    const edges = [];
    let specifiers = [];
    try {
      specifiers = importsOf(readFileSync(join(STATIC, name), 'utf8'));
    } catch (error) {
      problems.push(`${name}: ${error.message}`);
    }
    for (const specifier of specifiers) {
      if (!/^\.\.?\//.test(specifier)) {
        problems.push(`${name}: '${specifier}' is not a relative path (the browser has no import map here)`);
        continue;
      }
      const target = resolve(STATIC, dirname(name), specifier);
      if (target.startsWith(VENDOR + '/')) continue; // the bundle: a leaf, built by `npm run build`
      if (!target.startsWith(STATIC + '/') || !existsSync(target)) {
        problems.push(`${name}: '${specifier}' is not a file under static/`);
        continue;
      }
      edges.push(relative(STATIC, target));
    }
    graph.set(name, edges);
  }
  return { graph, problems };
}

const lineCount = (text) => text.split('\n').length - (text.endsWith('\n') ? 1 : 0);

describe('the page modules (static/)', () => {
  const { graph, problems } = pageGraph();

  test('import only files under static/, by relative paths', () => {
    assert.deepEqual(problems, []);
  });

  test('form no import circle', () => {
    const circle = findCircle(graph);
    assert.equal(circle, null, `import circle: ${circle?.join(' → ')}`);
  });

  test(`are at most ${MAX_LINES} lines each`, () => {
    const long = [...graph.keys()]
      .map((name) => [name, lineCount(readFileSync(join(STATIC, name), 'utf8'))])
      .filter(([, lines]) => lines > MAX_LINES)
      .map(([name, lines]) => `${name}: ${lines} lines`);
    assert.deepEqual(long, [], 'split these modules');
  });

  test(`are all reached from ${ENTRY}`, () => {
    const reached = new Set();
    const walk = (name) => {
      if (reached.has(name)) return;
      reached.add(name);
      for (const next of graph.get(name) ?? []) walk(next);
    };
    walk(ENTRY);
    assert.deepEqual([...graph.keys()].filter((name) => !reached.has(name)), [], 'modules nothing imports');
  });

  test('parse, and so do the scripts and tests (node --check)', () => {
    const files = [
      ...[...graph.keys()].map((name) => join(STATIC, name)),
      ...jsFiles(join(ROOT, 'scripts')).map((name) => join(ROOT, 'scripts', name)),
      ...jsFiles(join(ROOT, 'test')).map((name) => join(ROOT, 'test', name)),
    ];
    for (const file of files) {
      const run = spawnSync(process.execPath, ['--check', file], { encoding: 'utf8' });
      assert.equal(run.status, 0, `${relative(ROOT, file)}:\n${run.stderr}`);
    }
  });
});

describe('index.html', () => {
  const html = readFileSync(join(STATIC, 'index.html'), 'utf8');
  const scripts = [...html.matchAll(/<script\b([^>]*)>([\s\S]*?)<\/script>/gi)];

  test(`loads ${ENTRY} as a module, and no other script`, () => {
    assert.deepEqual(
      scripts.map(([, attrs]) => attrs.trim()),
      [`type="module" src="${ENTRY}"`],
    );
  });

  test('runs no inline script (no script body, no on… handler attribute)', () => {
    assert.deepEqual(scripts.map(([, , body]) => body.trim()).filter(Boolean), []);
    assert.deepEqual(html.match(/<[^>]*\son[a-z]+\s*=/gi) ?? [], []);
  });
});

describe('the checks themselves', () => {
  test('findCircle finds a circle, and only a circle', () => {
    const graph = (edges) => new Map(Object.entries(edges));
    assert.deepEqual(findCircle(graph({ 'a.js': ['b.js'], 'b.js': ['c.js'], 'c.js': ['a.js'] })), [
      'a.js',
      'b.js',
      'c.js',
      'a.js',
    ]);
    assert.deepEqual(findCircle(graph({ 'a.js': ['a.js'] })), ['a.js', 'a.js']);
    assert.equal(findCircle(graph({ 'a.js': ['b.js', 'c.js'], 'b.js': ['c.js'], 'c.js': [] })), null);
  });

  test('importsOf reads every form of import the page may use', () => {
    const source = [
      "import { a, b } from './a.js';",
      'import {',
      '  c,',
      "} from './c.js';",
      "import * as d from './d.js';",
      "import './e.js';",
      "export { f } from './f.js';",
      "const g = await import('./g.js');",
      "// import { h } from './h.js' (a comment: not an import)",
    ].join('\n');
    assert.deepEqual(importsOf(source).sort(), ['./a.js', './c.js', './d.js', './e.js', './f.js', './g.js']);
  });

  test('importsOf refuses an import it cannot read', () => {
    assert.throws(() => importsOf('const name = "./x.js";\nawait import(name);'), /read 0 imports of 1/);
  });
});
