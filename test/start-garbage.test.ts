// The start's garbage handed back once (src/daemon/start-garbage.ts): a full
// collection without --expose-gc on the command line, and no `gc` left
// behind for anything else in the process to call.

import t from 'tap';
import { collectStartGarbage } from '../src/daemon/start-garbage.js';

t.test('one full collection frees what the start left, without --expose-gc', async (t) => {
  t.notOk(process.execArgv.includes('--expose-gc'), 'this process was not started with --expose-gc');
  // Garbage the size of a restart's records, out of reach before the call.
  let lines: string[] | undefined = Array.from({ length: 200_000 }, (_, i) => JSON.stringify(['put', i, [i, 'map', 6, `2001:db8::${i.toString(16)}`]]));
  t.equal(lines.length, 200_000);
  lines = undefined;
  const c = collectStartGarbage();
  t.ok(c, 'a collection was made');
  if (!c) return;
  t.ok(c.heapUsedMiB.before - c.heapUsedMiB.after >= 10, `the heap gave back what was out of reach (${c.heapUsedMiB.before} → ${c.heapUsedMiB.after} MiB)`);
  t.ok(c.ms >= 0, 'and says how long it took');
});

t.test('no gc is left exposed to the rest of the process', async (t) => {
  collectStartGarbage();
  t.equal(typeof (globalThis as { gc?: unknown }).gc, 'undefined', 'the main context has no gc');
  const { runInNewContext } = await import('node:vm');
  t.equal(runInNewContext('typeof gc'), 'undefined', 'nor does a context made after it');
});
