// What a daemon's start loads: libraries a start may not need are loaded
// when first used, not with the daemon's code (each one is time before the
// first client is answered). Checked in a fresh process, by the CommonJS
// module cache both libraries live in.

import t from 'tap';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const dist = fileURLToPath(new URL('../src/', import.meta.url));

/** Imports the daemon's code, runs `then` (a module body), and prints which of the libraries are loaded. */
function loadedAfter(then: string): { yaml: boolean; promClient: boolean } {
  const script = `
    import { createRequire } from 'node:module';
    await import(${JSON.stringify(dist + 'cli/serve.js')});
    ${then}
    const cache = Object.keys(createRequire(import.meta.url).cache);
    console.log(JSON.stringify({ yaml: cache.some((k) => k.includes('/node_modules/yaml/')), promClient: cache.some((k) => k.includes('/node_modules/prom-client/')) }));
  `;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(r.stderr);
  return JSON.parse(r.stdout) as { yaml: boolean; promClient: boolean };
}

t.test("the daemon's code loads neither the YAML library nor prom-client", async (t) => {
  t.same(loadedAfter(''), { yaml: false, promClient: false });
});

t.test('the YAML library comes with the first policy text parsed', async (t) => {
  const load = JSON.stringify(dist + 'policy/load.js');
  const after = loadedAfter(`const { parsePolicyText } = await import(${load}); parsePolicyText('version: 1\\nrules: []\\n', 'test.yaml');`);
  t.equal(after.yaml, true);
});
