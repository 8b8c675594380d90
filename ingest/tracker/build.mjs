// Builds dist/t.js (the tracker, minified ES5) and dist/cmp.js (the demo
// page's consent banner with @iabtcf bundled) from src/. The outputs are
// committed so that go build needs no npm; run `npm run build` after
// changing src/ or package-lock.json. `node build.mjs --check` builds in
// memory and exits 1 when a committed file differs (a Go test runs it).
import * as esbuild from 'esbuild';
import { readFile, writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

const dir = path.dirname(fileURLToPath(import.meta.url));
const check = process.argv.includes('--check');

const builds = [
  {
    entryPoints: ['src/t.js'],
    outfile: 'dist/t.js',
    target: 'es5', // fails the build on syntax older browsers cannot run
    minify: true,
    legalComments: 'none',
  },
  {
    entryPoints: ['src/cmp.js'],
    outfile: 'dist/cmp.js',
    bundle: true,
    format: 'iife',
    target: 'es2017',
    minify: true,
    banner: { js: '/* jobpixel demo consent banner; bundles @iabtcf/core and @iabtcf/cmpapi (Apache-2.0, IAB Europe) */' },
  },
];

let stale = 0;
for (const b of builds) {
  const res = await esbuild.build({ ...b, absWorkingDir: dir, write: false, logLevel: 'error', charset: 'utf8' });
  const out = res.outputFiles[0];
  const file = path.join(dir, b.outfile);
  if (check) {
    const old = await readFile(file).catch(() => Buffer.alloc(0));
    if (!Buffer.from(out.contents).equals(old)) {
      console.error(`${b.outfile} is not up to date with src/: run npm run build --prefix ingest/tracker`);
      stale++;
    }
  } else {
    await writeFile(file, out.contents);
    console.log(`${b.outfile}: ${out.contents.length} bytes`);
  }
}
process.exit(stale ? 1 : 0);
